//! `cargo xtask fuzz`: runs the cargo-fuzz targets of fuzz/ (one per parser a
//! client or a packet reaches) under libFuzzer, each for a bounded time, with
//! the seeds of fuzz/seeds as a starting corpus. Installs cargo-fuzz first.
//! A crash stops the run and leaves its input under fuzz/artifacts/.

use crate::cmd;
use anyhow::{Result, bail};
use clap::Args;
use std::process::Command;

pub const TARGETS: [&str; 4] = ["api_body", "policy", "packet", "upstream"];

#[derive(Args, Debug)]
pub struct FuzzOptions {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Targets to run (all by default).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    targets: Vec<String>,
}

pub fn fuzz(opts: &FuzzOptions) -> Result<()> {
    let probe = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success());
    if probe.ok() != Some(true) {
        println!("fuzz: installing cargo-fuzz");
        cmd::run(cmd::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let root = cmd::root();
    let targets: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        opts.targets.iter().map(String::as_str).collect()
    };
    let mut failed = Vec::new();
    for t in targets {
        // libFuzzer writes new inputs to the first directory only: keep the
        // growing corpus under target/, the checked-in seeds read-only.
        let corpus = cmd::target_dir().join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/seeds").join(t);
        let mut c = cmd::cargo();
        c.current_dir(&root)
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", t])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", opts.seconds));
        println!("\n==> fuzz {t} ({} s)", opts.seconds);
        if let Err(e) = cmd::run(&mut c) {
            eprintln!("fuzz {t}: {e:#}");
            failed.push(t);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs under fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    Ok(())
}
