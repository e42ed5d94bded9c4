//! `cargo xtask vm-test`: boots Debian's stock kernel under qemu and runs the `kernel_*`
//! integration tests of `injector` there (netem, fq and everything the build kernel lacks),
//! plus `injector doctor --json`. One summary at the end; an error on any failure.
//!
//! Pieces: kernel.rs fetches the kernel, build.rs builds static test binaries, initramfs.rs
//! packs them with busybox and the modules, guest.rs is the /init script and the reading of
//! its output, qemu.rs boots. Everything is cached under target/vm/.

mod build;
mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod qemu;

pub use build::host_tests;

use crate::cmd;
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Test binaries of `injector` whose names start with this run in the VM by default.
const KERNEL_TEST_PREFIX: &str = "kernel_";

/// Loaded at boot, so a module the stock kernel cannot load fails the run by name: the qdiscs
/// and classifier the product builds on, veth and ifb for fixtures, mirred for ifb redirects,
/// inet_diag for socket destroy.
const MODULES: &[&str] = &[
    "sch_netem",
    "sch_fq",
    "sch_htb",
    "sch_tbf",
    "sch_ingress",
    "cls_bpf",
    "act_mirred",
    "veth",
    "ifb",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
];

#[derive(clap::Args, Clone)]
pub struct VmOptions {
    /// Run only these test binaries of `injector` (file names such as kernel_netem; repeatable).
    /// Default: every kernel_* binary.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Run only the tests whose names contain this (handed to each test binary).
    #[arg(long)]
    pub filter: Option<String>,
    /// Seconds before the VM is killed.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Show everything the VM prints, not only the VMTEST lines.
    #[arg(long)]
    pub verbose: bool,
}

pub fn vm_dir() -> PathBuf {
    cmd::target_dir().join("vm")
}

pub fn vm_test(opts: &VmOptions) -> Result<()> {
    let dir = vm_dir();
    std::fs::create_dir_all(&dir)?;
    let kernel = kernel::prepare(&dir)?;
    let built = build::build()?;
    let tests = select(&built.tests, &opts.tests)?;
    if tests.is_empty() {
        println!(
            "vm-test: injector has no {KERNEL_TEST_PREFIX}* tests yet; the VM only loads the modules"
        );
    }

    let mut runs = Vec::new();
    let mut binaries = vec![("bin/injector".to_string(), built.injector.as_path())];
    for t in &tests {
        let dest = format!("tests/{}", t.name);
        let mut argv = vec![format!("/{dest}"), "--test-threads=1".to_string()];
        argv.extend(opts.filter.clone());
        runs.push((t.name.clone(), argv));
        binaries.push((dest, t.path.as_path()));
    }
    let doctor = has_doctor(&built.injector)?;
    if doctor {
        runs.push((
            "injector-doctor".to_string(),
            vec!["/bin/injector".into(), "doctor".into(), "--json".into()],
        ));
    }
    let init = guest::init_script(&guest::Plan {
        modules: MODULES,
        runs,
    })?;
    let initrd = dir.join("initramfs.cpio");
    initramfs::write(
        &initrd,
        &initramfs::Contents {
            kernel: &kernel,
            modules: MODULES,
            binaries,
            init: &init,
        },
    )?;

    let log = dir.join("serial.log");
    println!("vm-test: booting {} under qemu (TCG)", kernel.package);
    let serial = qemu::boot(&qemu::Boot {
        kernel: &kernel.vmlinuz,
        initrd: &initrd,
        // panic=-1 + -no-reboot: a panic ends qemu at once instead of hanging the run.
        append: "console=ttyS0 panic=-1 quiet",
        memory_mib: 2048,
        extra: Vec::new(),
        timeout: Duration::from_secs(opts.timeout),
        log: &log,
        verbose: opts.verbose,
    })?;
    let report = guest::parse(&serial.lines);
    summary(&kernel.package, &serial, &report, doctor, &log)
}

/// The tests to run: those named, or every kernel_* one. A name that matches nothing is an
/// error, so a typo cannot pass as an empty success.
fn select<'a>(all: &'a [build::Exe], names: &[String]) -> Result<Vec<&'a build::Exe>> {
    if names.is_empty() {
        return Ok(all
            .iter()
            .filter(|e| e.name.starts_with(KERNEL_TEST_PREFIX))
            .collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|e| &e.name == n).with_context(|| {
                let known: Vec<_> = all.iter().map(|e| e.name.as_str()).collect();
                format!(
                    "injector has no test binary {n} (it has: {})",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// `injector doctor` is being written; until the binary has it, the VM skips it (said in the
/// summary), and from then on its failure fails the run.
fn has_doctor(injector: &std::path::Path) -> Result<bool> {
    let help = Command::new(injector)
        .arg("--help")
        .output()
        .context("running injector --help")?;
    Ok(String::from_utf8_lossy(&help.stdout)
        .lines()
        .any(|l| l.trim_start().starts_with("doctor")))
}

fn summary(
    package: &str,
    serial: &qemu::Serial,
    report: &guest::Report,
    doctor: bool,
    log: &std::path::Path,
) -> Result<()> {
    println!(
        "\nvm-test summary ({package}, {:.1} s in the VM)",
        serial.elapsed.as_secs_f64()
    );
    if let Some(k) = &report.kernel {
        println!(
            "  kernel {k}; modules loaded: {}",
            MODULES.len() - report.module_failures.len()
        );
    }
    for m in &report.module_failures {
        println!("  FAIL module {m} did not load");
    }
    for r in &report.runs {
        let verdict = match r.exit {
            Some(0) => "pass".to_string(),
            Some(code) => format!("FAIL (exit {code})"),
            None => "FAIL (never finished)".to_string(),
        };
        println!("  {verdict:<16} {}", r.name);
        if r.name == "injector-doctor" || r.exit != Some(0) {
            for l in &r.output {
                println!("    | {l}");
            }
        }
    }
    if !doctor {
        println!("  skipped          injector-doctor (this injector has no doctor command yet)");
    }
    match serial.end {
        qemu::End::PoweredOff => {}
        qemu::End::Panicked => println!("  FAIL the kernel panicked"),
        qemu::End::TimedOut => println!(
            "  FAIL no end after {:.0} s: qemu killed",
            serial.elapsed.as_secs_f64()
        ),
    }
    if report.passed() && serial.end == qemu::End::PoweredOff {
        println!(
            "vm-test: passed ({} test binaries)",
            report.runs.len() - usize::from(doctor)
        );
        return Ok(());
    }
    if report.verdict.is_none() {
        let tail: Vec<_> = serial.lines.iter().rev().take(40).rev().collect();
        println!("  last console lines:");
        for l in tail {
            println!("    | {l}");
        }
        if !serial.qemu_stderr.trim().is_empty() {
            println!("  qemu said: {}", serial.qemu_stderr.trim());
        }
    }
    bail!("vm-test failed (whole console: {})", log.display())
}
