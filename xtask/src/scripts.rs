//! Static checks of what is not Rust: the shell scripts parse (`bash -n`) and pass shellcheck,
//! and the Vagrantfile is valid Ruby (`ruby -c`). Vagrant itself cannot run here (no nested
//! virtualisation for its providers); the provisioning script also runs for real in the
//! stock-kernel VM (`cargo xtask vm-test --provision`).

use crate::cmd;
use anyhow::{Result, bail};
use std::process::Command;

const SHELL_SCRIPTS: &[&str] = &[".ci/run", "vagrant/provision.sh"];
const RUBY_FILES: &[&str] = &["vagrant/Vagrantfile"];

pub fn check() -> Result<()> {
    let root = cmd::root();
    let mut failed = Vec::new();
    let mut check = |what: String, c: &mut Command| {
        if cmd::run(c.current_dir(&root)).is_err() {
            failed.push(what);
        }
    };
    for s in SHELL_SCRIPTS {
        check(format!("bash -n {s}"), Command::new("bash").args(["-n", s]));
        check(format!("shellcheck {s}"), Command::new("shellcheck").arg(s));
    }
    for f in RUBY_FILES {
        check(format!("ruby -c {f}"), Command::new("ruby").args(["-c", f]));
    }
    if !failed.is_empty() {
        bail!("script checks failed: {}", failed.join(", "));
    }
    Ok(())
}
