//! The VM's whole userland, as one initramfs: static busybox (shell, mount, ip, modprobe),
//! the kernel modules the product uses, the static test binaries and `injector`, and /init.

use super::cpio::Cpio;
use super::kernel::{self, Kernel, ModuleDeps};
use anyhow::{Context as _, Result};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

/// Debian's busybox-static; the VM has no C library, so only static programs run there.
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "mkdir",
    "ip",
    "poweroff",
    "cat",
    "ls",
    "uname",
    "sleep",
    "dmesg",
    "sync",
    "[",
    "switch_root",
];

/// Every qdisc, classifier and action is shipped, so the kernel's own module requests work too.
const SHIP_DIRS: &[&str] = &["kernel/net/sched"];

pub struct Contents<'a> {
    pub kernel: &'a Kernel,
    /// Modules loaded at boot (their dependencies come along).
    pub modules: &'a [&'a str],
    /// (path inside the VM, file on the host)
    pub binaries: Vec<(String, &'a Path)>,
    pub init: &'a str,
}

pub fn write(path: &Path, c: &Contents) -> Result<()> {
    let out = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut a = Cpio::new(BufWriter::new(out));
    for d in ["proc", "sys", "dev", "run", "tmp", "root", "etc"] {
        a.dir(d)?;
    }
    // The kernel opens it for /init's stdio before anything is mounted.
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.symlink("var/run", "../run")?;

    a.copy("bin/busybox", 0o755, Path::new(BUSYBOX))?;
    for applet in APPLETS {
        a.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    // The kernel runs /sbin/modprobe when it wants a module.
    a.symlink("sbin/modprobe", "../bin/busybox")?;

    let mods = c.kernel.modules_dir();
    let deps = ModuleDeps::parse(&fs::read_to_string(mods.join("modules.dep"))?);
    let keep = deps.closure(c.modules, SHIP_DIRS)?;
    let dest = format!("lib/modules/{}", c.kernel.release);
    for m in &keep {
        a.copy(&format!("{dest}/{m}"), 0o644, &mods.join(m))?;
    }
    a.file(
        &format!("{dest}/modules.dep"),
        0o644,
        deps.render(&keep).as_bytes(),
    )?;
    let aliases = fs::read_to_string(mods.join("modules.alias")).unwrap_or_default();
    a.file(
        &format!("{dest}/modules.alias"),
        0o644,
        kernel::filter_aliases(&aliases, &keep).as_bytes(),
    )?;

    for (dest, src) in &c.binaries {
        a.copy(dest, 0o755, src)?;
    }
    a.file("init", 0o755, c.init.as_bytes())?;
    a.finish()?;
    Ok(())
}
