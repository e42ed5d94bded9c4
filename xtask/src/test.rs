//! `cargo xtask test`: the README's second command and CI's entry point. Sets up, then runs
//! every check even when an earlier one failed, and ends with one summary.

use crate::{cmd, scripts, setup, vm};
use anyhow::{Result, bail};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct TestOptions {
    /// Skip both VM steps (for a quick local loop; CI runs them).
    #[arg(long)]
    pub no_vm: bool,
    /// Skip the provisioning check in the VM (vm-provision), the slowest step.
    #[arg(long)]
    pub no_provision: bool,
    /// Show everything the VMs print.
    #[arg(long)]
    pub verbose: bool,
}

struct Step {
    name: &'static str,
    elapsed: Duration,
    error: Option<String>,
}

pub fn test(opts: &TestOptions) -> Result<()> {
    // Nothing below can work without the toolchain: stop at once if setup fails.
    setup::setup()?;
    let mut steps = Vec::new();
    let mut step = |name: &'static str, f: &dyn Fn() -> Result<()>| {
        println!("\n==> {name}");
        let start = Instant::now();
        let error = f().err().map(|e| format!("{e:#}"));
        if let Some(e) = &error {
            eprintln!("{name}: FAILED: {e}");
        }
        steps.push(Step {
            name,
            elapsed: start.elapsed(),
            error,
        });
    };
    step("fmt", &|| {
        cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
    });
    step("clippy", &|| {
        cmd::run(cmd::cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "injector-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    // The eBPF crate is no_std with its own panic handler: lint it on nightly with panic=abort.
    step("clippy-ebpf", &|| {
        cmd::run(cmd::cargo().args([
            "+nightly",
            "clippy",
            "-p",
            "injector-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-C",
            "panic=abort",
            "-Zpanic_abort_tests",
        ]))
    });
    step("scripts", &scripts::check);
    step("tests", &vm::host_tests);
    if !opts.no_vm {
        step("vm-test", &|| {
            vm::vm_test(&vm::VmOptions::all(false, opts.verbose))
        });
        if !opts.no_provision {
            step("vm-provision", &|| {
                vm::vm_test(&vm::VmOptions::all(true, opts.verbose))
            });
        }
    }
    summary(&steps)
}

fn summary(steps: &[Step]) -> Result<()> {
    println!("\n==> summary");
    for s in steps {
        let verdict = if s.error.is_some() { "FAIL" } else { "ok  " };
        println!(
            "  {verdict} {:<12} {:>7.1} s",
            s.name,
            s.elapsed.as_secs_f64()
        );
    }
    let failed: Vec<_> = steps.iter().filter(|s| s.error.is_some()).collect();
    if failed.is_empty() {
        println!("all {} steps passed", steps.len());
        return Ok(());
    }
    for s in &failed {
        println!("  {}: {}", s.name, s.error.as_deref().unwrap_or_default());
    }
    bail!("{} of {} steps failed", failed.len(), steps.len())
}
