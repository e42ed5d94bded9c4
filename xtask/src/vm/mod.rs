//! `cargo xtask vm-test`: boots Debian's stock kernel under qemu and runs the `kernel_*`
//! integration tests of `injector` there (netem, fq and everything the build kernel lacks),
//! plus `injector doctor --json`. One summary at the end; an error on any failure.
//!
//! Pieces: kernel.rs fetches the kernel, build.rs builds static test binaries, initramfs.rs
//! packs them with busybox and the modules, guest.rs is the /init script and the reading of
//! its output, qemu.rs boots. `--provision` (provision.rs) boots a Debian image instead and
//! runs vagrant/provision.sh in it. Everything is cached under target/vm/.

mod build;
mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod provision;
mod qemu;

pub use build::host_tests;

use crate::cmd;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous: TCG runs the guest 10 to 50 times slower than the host.
const TIMEOUT_SECS: u64 = 900;

const DOCTOR: &str = "injector-doctor";

/// Test binaries of `injector` whose names start with this run in the VM by default.
const KERNEL_TEST_PREFIX: &str = "kernel_";

/// Loaded at boot, so a module the stock kernel cannot load fails the run by name: the qdiscs
/// and classifiers the product builds on, veth and ifb for fixtures, matchall + mirred for ifb
/// redirects on kernels without tcx,
/// inet_diag for socket destroy.
const MODULES: &[&str] = &[
    "sch_netem",
    "sch_fq",
    "sch_htb",
    "sch_tbf",
    "sch_ingress",
    "cls_bpf",
    "cls_matchall",
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
    #[arg(long, default_value_t = TIMEOUT_SECS)]
    pub timeout: u64,
    /// Show everything the VM prints, not only the VMTEST lines.
    #[arg(long)]
    pub verbose: bool,
    /// Instead of the tests: boot a Debian 12 image with systemd and run
    /// vagrant/provision.sh in it, then check Docker, injector.service and the API.
    #[arg(long)]
    pub provision: bool,
}

impl VmOptions {
    /// Everything, with the default timeout: what `cargo xtask test` runs.
    pub fn all(provision: bool, verbose: bool) -> Self {
        Self {
            tests: Vec::new(),
            filter: None,
            timeout: TIMEOUT_SECS,
            verbose,
            provision,
        }
    }
}

fn vm_dir() -> PathBuf {
    cmd::target_dir().join("vm")
}

pub fn vm_test(opts: &VmOptions) -> Result<()> {
    let dir = vm_dir();
    std::fs::create_dir_all(&dir)?;
    let kernel = kernel::prepare(&dir)?;
    let built = build::build()?;
    if opts.provision {
        return provision::provision(&dir, &kernel, &built.injector, opts);
    }
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
            DOCTOR.to_string(),
            vec!["/bin/injector".into(), "doctor".into(), "--json".into()],
        ));
    }
    let init = guest::script(&guest::Plan {
        prelude: guest::boot_prelude(MODULES),
        runs,
        poweroff: "poweroff -f",
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
    let skipped: &[&str] = if doctor {
        &[]
    } else {
        &["injector-doctor (this injector has no doctor command yet)"]
    };
    summary(&kernel.package, &serial, &report, &[DOCTOR], skipped, &log)
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

/// `injector doctor` is being written; until `injector help` lists it as available, the VM
/// skips it (said in the summary), and from then on its failure fails the run.
fn has_doctor(injector: &Path) -> Result<bool> {
    cmd::help_lists(injector, &["help"], "doctor")
}

/// Prints the one summary of a VM run; an error unless every run passed and the VM powered
/// off by itself. The output of a failed run is shown, and always that of the runs in `show`.
fn summary(
    package: &str,
    serial: &qemu::Serial,
    report: &guest::Report,
    show: &[&str],
    skipped: &[&str],
    log: &Path,
) -> Result<()> {
    println!(
        "\nvm-test summary ({package}, {:.1} s in the VM)",
        serial.elapsed.as_secs_f64()
    );
    if let Some(k) = &report.kernel {
        println!("  kernel {k}");
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
        let time = r
            .seconds()
            .map(|t| format!("{t:>7.1} s"))
            .unwrap_or_default();
        println!("  {verdict:<16} {:<32}{time}", r.name);
        if show.contains(&r.name.as_str()) || r.exit != Some(0) {
            for l in &r.output {
                println!("    | {l}");
            }
        }
    }
    for s in skipped {
        println!("  {:<16} {s}", "skipped");
    }
    match serial.end {
        qemu::End::PoweredOff => {}
        qemu::End::Panicked => println!("  FAIL the kernel panicked"),
        qemu::End::TimedOut => {
            println!(
                "  FAIL no end after {:.0} s: qemu killed",
                serial.elapsed.as_secs_f64()
            )
        }
    }
    if report.passed() && serial.end == qemu::End::PoweredOff {
        println!("vm-test: passed ({} runs)", report.runs.len());
        return Ok(());
    }
    if report.verdict.is_none() {
        println!("  last console lines:");
        for l in serial.lines.iter().rev().take(40).rev() {
            println!("    | {l}");
        }
        if !serial.qemu_stderr.trim().is_empty() {
            println!("  qemu said: {}", serial.qemu_stderr.trim());
        }
    }
    bail!("vm-test failed (whole console: {})", log.display())
}
