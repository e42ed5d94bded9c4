//! `cargo xtask vm-test --provision`: runs vagrant/provision.sh as Vagrant would, inside a
//! Debian 12 userland booted with systemd on the stock kernel, then checks what it promises:
//! Docker runs, injector.service is active and answers on 127.0.0.1:8474, and a second run
//! succeeds too (idempotence).
//!
//! The VM has no network, so the script runs in its `--binary` mode: it installs the injector
//! built on the host, and finds Docker already in the image (debootstrap put it there from
//! Debian's mirror). Not validated here: rustup's download and the build from source inside
//! the box, which are the README's commands that CI runs on the host anyway.

use super::kernel::Kernel;
use super::{guest, initramfs, qemu};
use crate::cmd;
use anyhow::{Context as _, Result};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SUITE: &str = "bookworm";
/// Part of the cached image's name: bump it when PACKAGES or `configure` change.
const IMAGE_VERSION: u32 = 3;
const MIRROR: &str = "http://deb.debian.org/debian";
/// A Vagrant box's base, minus what a headless test needs not: systemd as init, Docker from
/// Debian, and what provision.sh and the checks call.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "udev",
    "kmod",
    "iproute2",
    "ca-certificates",
    "curl",
    "procps",
    "docker.io",
    // Debian's kernel boots with AppArmor on, and then dockerd cannot start a container
    // without apparmor_parser to load its docker-default profile.
    "apparmor",
];
/// What is checked after provisioning; their (short) output is always shown.
const CHECKS: [&str; 3] = [
    "docker-running",
    "injector-service-active",
    "api-answers-on-8474",
];
/// The initramfs only finds the root disk and hands over to systemd.
const DISK_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// A oneshot unit of the image: mounts the payload disk (the second one) and runs its run.sh,
/// whose output goes to the serial console.
const PAYLOAD_UNIT: &str = "[Unit]
Description=Payload of cargo xtask vm-test --provision (second disk)
After=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /payload && mount -o ro /dev/vdb /payload && exec sh /payload/run.sh'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
";

const SWITCH_ROOT_INIT: &str = r#"#!/bin/sh
# Written by `cargo xtask vm-test --provision`: find the root disk, hand over to systemd.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in MODULES; do modprobe "$m"; done
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /newroot
if ! mount -t ext4 /dev/vda /newroot; then
  echo "VMTEST: failure (cannot mount the root disk)"
  poweroff -f
fi
umount /proc /sys /dev
exec switch_root /newroot /sbin/init
"#;

pub fn provision(
    dir: &Path,
    kernel: &Kernel,
    injector: &Path,
    opts: &super::VmOptions,
) -> Result<()> {
    let base = rootfs(dir, kernel)?;
    let payload = payload(dir, injector)?;
    let initrd = dir.join("initramfs-provision.cpio");
    let init = SWITCH_ROOT_INIT.replace("MODULES", &DISK_MODULES.join(" "));
    initramfs::write(
        &initrd,
        &initramfs::Contents {
            kernel,
            modules: DISK_MODULES,
            binaries: Vec::new(),
            init: &init,
        },
    )?;
    let log = dir.join("serial-provision.log");
    println!(
        "vm-test --provision: booting Debian {SUITE} with systemd on {}",
        kernel.package
    );
    let drive = |file: &Path, fmt: &str, opt: &str| {
        format!("file={},if=virtio,format={fmt},{opt}", file.display())
    };
    let serial = qemu::boot(&qemu::Boot {
        kernel: &kernel.vmlinuz,
        initrd: &initrd,
        append: "console=ttyS0 panic=-1 quiet",
        memory_mib: 2048,
        // snapshot: the cached image stays as debootstrap left it.
        extra: vec![
            "-drive".into(),
            drive(&base, "qcow2", "snapshot=on"),
            "-drive".into(),
            drive(&payload, "raw", "readonly=on"),
        ],
        timeout: Duration::from_secs(opts.timeout),
        log: &log,
        verbose: opts.verbose,
    })?;
    let report = guest::parse(&serial.lines);
    super::summary(&kernel.package, &serial, &report, &CHECKS, &[], &log)
}

/// The Debian image, built once per kernel release (its modules are inside) and cached.
fn rootfs(dir: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let image = dir.join(format!(
        "rootfs-{SUITE}-v{IMAGE_VERSION}-{}.qcow2",
        kernel.release
    ));
    if image.exists() {
        return Ok(image);
    }
    let root = dir.join("rootfs.build");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    println!("vm-test --provision: building the Debian {SUITE} image (once; a few minutes)");
    cmd::run(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={}", PACKAGES.join(",")),
            ])
            .arg(SUITE)
            .arg(&root)
            .arg(MIRROR),
    )?;
    configure(&root, kernel)?;
    let raw = dir.join("rootfs.raw");
    // Room for the lab's images and the logs beside the ~700 MB of the system.
    make_ext4(&raw, &root, 4 << 30)?;
    cmd::run(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&image),
    )?;
    fs::remove_file(&raw)?;
    fs::remove_dir_all(&root)?;
    Ok(image)
}

fn configure(root: &Path, kernel: &Kernel) -> Result<()> {
    fs::write(root.join("etc/hostname"), "injector-vm\n")?;
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost injector-vm\n::1 localhost\n",
    )?;
    let units = root.join("etc/systemd/system");
    // No login prompts on the console the test reads.
    for unit in ["serial-getty@ttyS0.service", "getty@tty1.service"] {
        symlink("/dev/null", units.join(unit))?;
    }
    // A Vagrant box has no Docker before provisioning: the script must start it itself.
    for enabled in [
        "multi-user.target.wants/docker.service",
        "sockets.target.wants/docker.socket",
    ] {
        match fs::remove_file(units.join(enabled)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    fs::write(units.join("vmtest.service"), PAYLOAD_UNIT)?;
    fs::create_dir_all(units.join("multi-user.target.wants"))?;
    symlink(
        "/etc/systemd/system/vmtest.service",
        units.join("multi-user.target.wants/vmtest.service"),
    )?;
    // All of the kernel's modules: Docker loads bridge, overlay, netfilter on demand.
    let modules = root.join("lib/modules");
    fs::create_dir_all(&modules)?;
    cmd::run(
        Command::new("cp")
            .arg("-a")
            .arg(kernel.modules_dir())
            .arg(&modules),
    )?;
    // The image's own depmod: its kmod wants the binary indexes busybox's depmod does not write.
    cmd::run(
        Command::new("chroot")
            .arg(root)
            .args(["depmod", &kernel.release]),
    )
}

/// The second disk: provision.sh, the injector binary, and run.sh (what the guest runs).
fn payload(dir: &Path, injector: &Path) -> Result<PathBuf> {
    let stage = dir.join("payload");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(&stage)?;
    fs::copy(
        cmd::root().join("vagrant/provision.sh"),
        stage.join("provision.sh"),
    )?;
    fs::copy(injector, stage.join("injector"))?;
    let provision = || -> Vec<String> {
        [
            "bash",
            "/payload/provision.sh",
            "--binary",
            "/payload/injector",
        ]
        .map(String::from)
        .into()
    };
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    let run = guest::script(&guest::Plan {
        prelude: String::new(),
        runs: vec![
            ("provision".into(), provision()),
            // Provisioning twice must work: `vagrant provision` reruns it on a live box.
            ("provision-again".into(), provision()),
            (
                CHECKS[0].into(),
                words(&["docker", "info", "--format", "server {{.ServerVersion}}"]),
            ),
            (
                CHECKS[1].into(),
                words(&["systemctl", "is-active", "injector.service"]),
            ),
            (
                CHECKS[2].into(),
                words(&[
                    "curl",
                    "-sS",
                    "--fail",
                    "--retry",
                    "20",
                    "--retry-connrefused",
                    "--retry-delay",
                    "1",
                    "http://127.0.0.1:8474/version",
                ]),
            ),
        ],
        poweroff: "systemctl poweroff --no-block",
    })?;
    fs::write(stage.join("run.sh"), run)?;
    let image = dir.join("payload.img");
    let size = fs::metadata(injector)?.len() + (64 << 20);
    make_ext4(&image, &stage, size)?;
    Ok(image)
}

fn make_ext4(image: &Path, from: &Path, bytes: u64) -> Result<()> {
    if image.exists() {
        fs::remove_file(image)?;
    }
    fs::File::create(image)
        .and_then(|f| f.set_len(bytes))
        .with_context(|| format!("creating {}", image.display()))?;
    // -d fills the file system from a directory: no loop mount, no root-only mount calls.
    cmd::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(from)
            .arg(image),
    )
}
