//! `cargo xtask run`: the README's first command. Sets up, builds the release binary and
//! replaces itself with `injector serve`, on the demo lab when the daemon offers it.

use crate::{cmd, setup};
use anyhow::{Context as _, Result};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// The flag of `injector serve` that starts the demo lab (issue 5). `run` passes it as soon as
/// `injector help serve` lists it, so the README's command needs no change when the lab lands.
pub const LAB_FLAG: &str = "--lab";

pub fn run(extra: &[String]) -> Result<()> {
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "injector"]))?;
    let bin = cmd::target_dir().join("release/injector");
    let mut args = vec!["serve".to_string()];
    if cmd::help_lists(&bin, &["help", "serve"], LAB_FLAG)? {
        args.push(LAB_FLAG.to_string());
    } else {
        println!("run: this build of injector has no demo lab yet; starting the daemon alone");
    }
    args.extend(extra.iter().cloned());
    let mut c = Command::new(&bin);
    c.args(&args);
    eprintln!("$ {}", cmd::display(&c));
    // exec: Ctrl-C and signals go straight to the daemon, and its exit status is ours.
    Err(c.exec()).with_context(|| format!("cannot start {}", bin.display()))
}
