//! Boots a kernel under qemu with software emulation and collects the serial console.
//! TCG, not KVM: the build machines' KVM fails at run time on stock kernels (aya-notes §4.2),
//! and qemu only falls back from KVM when it is absent, not when it breaks.

use anyhow::{Context as _, Result};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: &'a str,
    pub memory_mib: u32,
    /// More qemu arguments (disks).
    pub extra: Vec<String>,
    pub timeout: Duration,
    /// Where the whole console goes.
    pub log: &'a Path,
    /// Echo every console line (otherwise only the VMTEST lines).
    pub verbose: bool,
}

#[derive(Debug, PartialEq)]
pub enum End {
    PoweredOff,
    Panicked,
    TimedOut,
}

pub struct Serial {
    pub lines: Vec<String>,
    pub end: End,
    pub elapsed: Duration,
    /// What qemu itself printed on stderr.
    pub qemu_stderr: String,
}

pub fn boot(b: &Boot) -> Result<Serial> {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-cpu", "max", "-smp", "2"])
        .args(["-m", &format!("{}M", b.memory_mib)])
        // No default NIC, VGA or monitor: nothing to emulate but what the test needs.
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(b.kernel)
        .arg("-initrd")
        .arg(b.initrd)
        .args(["-append", b.append])
        .args(&b.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {}", crate::cmd::display(&c));
    let start = Instant::now();
    let mut child = c
        .spawn()
        .context("cannot start qemu-system-x86_64 (cargo xtask setup installs it)")?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let mut log = File::create(b.log).with_context(|| format!("creating {}", b.log.display()))?;
    let mut lines = Vec::new();
    let deadline = start + b.timeout;
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                if b.verbose {
                    println!("  | {line}");
                } else if let Some(i) = line.find("VMTEST: ") {
                    println!("  {}", &line[i..]);
                }
                let panicked = line.contains("Kernel panic - not syncing");
                lines.push(line);
                if panicked {
                    break End::Panicked;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break End::PoweredOff,
            Err(mpsc::RecvTimeoutError::Timeout) => break End::TimedOut,
        }
    };
    if end != End::PoweredOff {
        // A panicked kernel with panic=-1 reboots, which -no-reboot turns into an exit; kill
        // anyway so a wedged guest never outlives the run.
        let _ = child.kill();
    }
    child.wait()?;
    Ok(Serial {
        lines,
        end,
        elapsed: start.elapsed(),
        qemu_stderr: err_thread.join().unwrap_or_default(),
    })
}
