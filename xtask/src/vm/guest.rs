//! The contract between xtask and the VM's /init: the script /init runs, and the `VMTEST:`
//! lines it prints on the serial console, which xtask reads back into a report.

use anyhow::{Result, ensure};

const TAG: &str = "VMTEST: ";

/// A guest script: set up, run commands one after the other, print the verdict, power off.
pub struct Plan<'a> {
    /// Shell lines run first; a failure there sets `status=1` itself (see [`boot_prelude`]).
    pub prelude: String,
    /// Each run: a name for the report, then the command line (absolute path first).
    pub runs: Vec<(String, Vec<String>)>,
    /// How the guest ends once the verdict is printed.
    pub poweroff: &'a str,
}

/// What an initramfs /init must do itself: mount the file systems a test expects and load
/// `modules` (a module that fails to load fails the run, by name).
pub fn boot_prelude(modules: &[&str]) -> String {
    r#"mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ip link set lo up
for m in MODULES; do
  modprobe "$m" || { echo "VMTEST: module $m failed to load"; status=1; }
done
"#
    .replace("MODULES", &modules.join(" "))
}

pub fn script(plan: &Plan) -> Result<String> {
    let mut s = String::from(
        r#"#!/bin/sh
# Written by `cargo xtask vm-test`; the VMTEST lines are read back by xtask (xtask/src/vm/guest.rs).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root RUST_BACKTRACE=1
status=0
up() { read -r s _ < /proc/uptime; echo "$s"; }
run() {
  name=$1; shift
  echo "VMTEST: run $name at $(up)"
  "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then echo "VMTEST: pass $name at $(up)"; else echo "VMTEST: fail $name exit=$rc at $(up)"; status=1; fi
}
"#,
    );
    s.push_str(&plan.prelude);
    s.push_str("echo \"VMTEST: kernel $(uname -r)\"\ncd /tmp\n");
    for (name, argv) in &plan.runs {
        ensure!(
            !name.contains(char::is_whitespace),
            "run name {name:?} has a space"
        );
        let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        s.push_str(&format!("run {name} {}\n", words.join(" ")));
    }
    s.push_str(
        r#"if [ "$status" -eq 0 ]; then echo "VMTEST: success"; else echo "VMTEST: failure"; fi
sync
"#,
    );
    s.push_str(plan.poweroff);
    s.push('\n');
    Ok(s)
}

/// Single-quotes a word for sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[derive(Debug, PartialEq)]
pub struct Run {
    pub name: String,
    /// None: the run started but never finished (a hang, a panic, a timeout).
    pub exit: Option<i32>,
    /// Guest uptime at its start and end, in seconds.
    pub started: Option<f64>,
    pub ended: Option<f64>,
    /// What it printed, for the report of a failure.
    pub output: Vec<String>,
}

impl Run {
    fn new(name: &str, started: Option<f64>) -> Self {
        Self {
            name: name.to_string(),
            exit: None,
            started,
            ended: None,
            output: Vec::new(),
        }
    }

    pub fn seconds(&self) -> Option<f64> {
        Some(self.ended? - self.started?)
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub kernel: Option<String>,
    pub module_failures: Vec<String>,
    pub runs: Vec<Run>,
    /// The final verdict line: Some(true) for `VMTEST: success`; None if it never came.
    pub verdict: Option<bool>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdict == Some(true)
            && self.module_failures.is_empty()
            && self.runs.iter().all(|r| r.exit == Some(0))
    }
}

/// Reads the serial console. Kernel messages may precede a tag on the same line, so a tag is
/// looked for anywhere in a line.
pub fn parse(lines: &[String]) -> Report {
    let mut r = Report::default();
    let mut current: Option<Run> = None;
    for line in lines {
        let Some(msg) = line.find(TAG).map(|i| &line[i + TAG.len()..]) else {
            if let Some(run) = current.as_mut() {
                run.output.push(line.clone());
            }
            continue;
        };
        let mut words = msg.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let name = rest.first().copied().unwrap_or_default();
        // `run NAME at T`, `pass NAME at T`, `fail NAME exit=N at T`
        let at = rest
            .iter()
            .skip_while(|w| **w != "at")
            .nth(1)
            .and_then(|t| t.parse().ok());
        match verb {
            "kernel" => r.kernel = Some(name.to_string()),
            "module" => r.module_failures.push(name.to_string()),
            "run" => {
                r.runs.extend(current.take());
                current = Some(Run::new(name, at));
            }
            "pass" | "fail" => {
                let exit = if verb == "pass" {
                    0
                } else {
                    rest.iter()
                        .find_map(|w| w.strip_prefix("exit=")?.parse().ok())
                        .unwrap_or(-1)
                };
                let mut run = current
                    .take()
                    .filter(|c| c.name == name)
                    .unwrap_or_else(|| Run::new(name, None));
                run.exit = Some(exit);
                run.ended = at;
                r.runs.push(run);
            }
            "success" => r.verdict = Some(true),
            "failure" => r.verdict = Some(false),
            _ => {}
        }
    }
    r.runs.extend(current.take());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let r = parse(&lines(
            "[    0.0] Linux version 6.1\nVMTEST: kernel 6.1.0-56-cloud-amd64\nVMTEST: run kernel_netem at 3.25\n\
             running 3 tests\ntest result: ok\nVMTEST: pass kernel_netem at 5.75\nVMTEST: success\n",
        ));
        assert!(r.passed());
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].output, ["running 3 tests", "test result: ok"]);
        assert_eq!(r.runs[0].seconds(), Some(2.5));
    }

    #[test]
    fn a_failed_binary_a_failed_module_or_a_missing_verdict_fails() {
        let failed = parse(&lines(
            "VMTEST: run a at 1.0\nVMTEST: fail a exit=101 at 2.0\nVMTEST: run b\nVMTEST: pass b\nVMTEST: failure\n",
        ));
        assert!(!failed.passed());
        assert_eq!(failed.runs[0].exit, Some(101));
        assert_eq!(failed.runs[1].exit, Some(0));

        let module = parse(&lines(
            "VMTEST: module sch_netem failed to load\nVMTEST: success\n",
        ));
        assert!(!module.passed());
        assert_eq!(module.module_failures, ["sch_netem"]);

        // The VM died in the middle of a test: no exit code, no verdict.
        let hung = parse(&lines(
            "VMTEST: run a\nsome output\n[ 9.1] Kernel panic - not syncing\n",
        ));
        assert!(!hung.passed());
        assert_eq!(hung.verdict, None);
        assert_eq!(hung.runs[0].exit, None);
        assert_eq!(hung.runs[0].output.len(), 2);
    }

    #[test]
    fn tags_after_kernel_noise_on_the_same_line_count() {
        let r = parse(&lines("[ 3.2] random: crng initVMTEST: success\n"));
        assert_eq!(r.verdict, Some(true));
    }

    #[test]
    fn the_script_quotes_arguments_and_ends_with_the_verdict() {
        let s = script(&Plan {
            prelude: boot_prelude(&["sch_netem", "veth"]),
            runs: vec![(
                "t".into(),
                vec!["/tests/t".into(), "--test-threads=1".into(), "it's".into()],
            )],
            poweroff: "poweroff -f",
        })
        .unwrap();
        assert!(s.contains("for m in sch_netem veth; do"));
        assert!(s.contains(r"run t '/tests/t' '--test-threads=1' 'it'\''s'"));
        assert!(s.trim_end().ends_with("poweroff -f"));
        let bad = Plan {
            prelude: String::new(),
            runs: vec![("a b".into(), vec![])],
            poweroff: "",
        };
        assert!(script(&bad).is_err());
    }
}
