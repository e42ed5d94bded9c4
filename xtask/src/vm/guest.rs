//! The contract between xtask and the VM's /init: the script /init runs, and the `VMTEST:`
//! lines it prints on the serial console, which xtask reads back into a report.

use anyhow::{Result, ensure};

const TAG: &str = "VMTEST: ";

/// What /init does after mounting the usual file systems.
pub struct Plan<'a> {
    /// Modules to load with modprobe before anything runs; a failure fails the run.
    pub modules: &'a [&'a str],
    /// Each run: a name for the report, then the command line (absolute path first).
    pub runs: Vec<(String, Vec<String>)>,
}

pub fn init_script(plan: &Plan) -> Result<String> {
    let mut s = String::from(
        r#"#!/bin/sh
# Written by `cargo xtask vm-test`; the VMTEST lines are read back by xtask (xtask/src/vm/guest.rs).
export PATH=/bin:/sbin HOME=/root RUST_BACKTRACE=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ip link set lo up
status=0
echo "VMTEST: kernel $(uname -r)"
for m in MODULES; do
  modprobe "$m" || { echo "VMTEST: module $m failed to load"; status=1; }
done
run() {
  name=$1; shift
  echo "VMTEST: run $name"
  "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then echo "VMTEST: pass $name"; else echo "VMTEST: fail $name exit=$rc"; status=1; fi
}
cd /tmp
"#,
    )
    .replace("MODULES", &plan.modules.join(" "));
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
poweroff -f
"#,
    );
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
    /// What it printed, for the report of a failure.
    pub output: Vec<String>,
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
        let msg = msg.trim_end();
        if let Some(k) = msg.strip_prefix("kernel ") {
            r.kernel = Some(k.to_string());
        } else if let Some(m) = msg.strip_prefix("module ") {
            r.module_failures
                .push(m.split_whitespace().next().unwrap_or(m).to_string());
        } else if let Some(name) = msg.strip_prefix("run ") {
            r.runs.extend(current.take());
            current = Some(Run {
                name: name.to_string(),
                exit: None,
                output: Vec::new(),
            });
        } else if let Some(name) = msg.strip_prefix("pass ") {
            finish(&mut r, &mut current, name, 0);
        } else if let Some(rest) = msg.strip_prefix("fail ") {
            let (name, code) = rest.split_once(" exit=").unwrap_or((rest, "-1"));
            finish(&mut r, &mut current, name, code.parse().unwrap_or(-1));
        } else if msg == "success" {
            r.verdict = Some(true);
        } else if msg == "failure" {
            r.verdict = Some(false);
        }
    }
    r.runs.extend(current.take());
    r
}

fn finish(r: &mut Report, current: &mut Option<Run>, name: &str, exit: i32) {
    let mut run = current
        .take()
        .filter(|c| c.name == name)
        .unwrap_or_else(|| Run {
            name: name.to_string(),
            exit: None,
            output: Vec::new(),
        });
    run.exit = Some(exit);
    r.runs.push(run);
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
            "[    0.0] Linux version 6.1\nVMTEST: kernel 6.1.0-56-cloud-amd64\nVMTEST: run kernel_netem\n\
             running 3 tests\ntest result: ok\nVMTEST: pass kernel_netem\nVMTEST: success\n",
        ));
        assert!(r.passed());
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].output, ["running 3 tests", "test result: ok"]);
    }

    #[test]
    fn a_failed_binary_a_failed_module_or_a_missing_verdict_fails() {
        let failed = parse(&lines(
            "VMTEST: run a\nVMTEST: fail a exit=101\nVMTEST: run b\nVMTEST: pass b\nVMTEST: failure\n",
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
        let s = init_script(&Plan {
            modules: &["sch_netem", "veth"],
            runs: vec![(
                "t".into(),
                vec!["/tests/t".into(), "--test-threads=1".into(), "it's".into()],
            )],
        })
        .unwrap();
        assert!(s.contains("for m in sch_netem veth; do"));
        assert!(s.contains(r"run t '/tests/t' '--test-threads=1' 'it'\''s'"));
        assert!(s.trim_end().ends_with("poweroff -f"));
        assert!(
            init_script(&Plan {
                modules: &[],
                runs: vec![("a b".into(), vec![])]
            })
            .is_err()
        );
    }
}
