//! The processes under test: `injector serve` (release build) and, when
//! TOXIPROXY_BIN names one, ToxiProxy's server. Each is stopped with
//! SIGTERM when dropped (injector then removes every fault it installed).
//! Also what /proc says about a process: RSS and CPU time.

use anyhow::{Result, bail};
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::api::Api;

pub struct Daemon {
    child: Child,
    pub api: Api,
}

/// The daemons run in the bench's namespace M, which nothing else uses:
/// any port is free there.
const PORT: u16 = 8474;

impl Daemon {
    pub fn injector(bin: &Path, netns: &File) -> Result<Daemon> {
        let mut c = Command::new(bin);
        c.args(["serve", "--port", &PORT.to_string()])
            .env("RUST_LOG", "warn");
        Daemon::start(c, PORT, netns)
    }

    pub fn toxiproxy(bin: &str, netns: &File) -> Result<Daemon> {
        let mut c = Command::new(bin);
        c.args(["-host", "127.0.0.1", "-port", &(PORT + 1).to_string()]);
        Daemon::start(c, PORT + 1, netns)
    }

    fn start(mut c: Command, port: u16, netns: &File) -> Result<Daemon> {
        let fd = netns.as_raw_fd();
        // Safety: setns is async-signal-safe and touches no memory.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut d = Daemon {
            child,
            api: Api::new(&format!("127.0.0.1:{port}"), netns.try_clone()?),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = d.child.try_wait() {
                bail!("{:?} exited at start ({status})", c.get_program());
            }
            if d.api.call("GET", "/version", None).is_ok() {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{:?} did not answer on port {port}", c.get_program())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user + system) a process used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: utime and stime
    // are the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU use of a process while `f` runs, in % of one core.
pub fn cpu_during<T>(pid: u32, f: impl FnOnce() -> T) -> (T, f64) {
    let (c0, t0) = (cpu_time(pid), Instant::now());
    let out = f();
    let (c1, t1) = (cpu_time(pid), Instant::now());
    let pct = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64().max(1e-3) * 100.0;
    (out, pct)
}
