//! The bench's network: two namespaces (client A, server B) whose veths
//! meet on a bridge in a third namespace M, where the daemon and the
//! userland proxies run as they would in a host's namespace. M is the
//! bench's own rather than the host's: the host's firewall (Docker's
//! FORWARD DROP, seen by bridged packets through br_netfilter) must not be
//! touched, and a fresh namespace has none. The bridge has an address so
//! proxies in M sit between A and B. Removing the three namespaces removes
//! everything; the `Net` does it when dropped, whatever happened.

use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

pub const A_ADDR: &str = "10.213.0.1";
pub const B_ADDR: &str = "10.213.0.2";
/// M's address on the bridge: where the proxies under test listen.
pub const HOST_ADDR: &str = "10.213.0.254";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
    M,
}

pub struct Net {
    pub a: String,
    pub b: String,
    pub m: String,
    files: [File; 3],
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Enters the network namespace `f` on the calling thread.
pub fn enter(f: &File) -> std::io::Result<()> {
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Net {
    /// Removes the namespaces of earlier runs that did not end normally
    /// (Ctrl-C, kill): named after a process that no longer exists.
    pub fn sweep_stale() {
        let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("injb-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("bench: removing namespace {name} of an earlier run");
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }

    pub fn new() -> Result<Net> {
        let id = std::process::id();
        let names = [
            format!("injb-{id}-a"),
            format!("injb-{id}-b"),
            format!("injb-{id}-m"),
        ];
        // The guard exists from the first command on, so a failure half
        // way removes what was made.
        let mut made = Partial { names: vec![] };
        for ns in &names {
            ip(&["netns", "add", ns])?;
            made.names.push(ns.clone());
        }
        let [a, b, m] = &names;
        let bridge = "br0";
        ip(&["-n", m, "link", "set", "lo", "up"])?;
        ip(&["-n", m, "link", "add", bridge, "type", "bridge"])?;
        ip(&[
            "-n",
            m,
            "addr",
            "add",
            &format!("{HOST_ADDR}/24"),
            "dev",
            bridge,
        ])?;
        ip(&["-n", m, "link", "set", bridge, "up"])?;
        for (ns, end, addr) in [(a, "veth-a", A_ADDR), (b, "veth-b", B_ADDR)] {
            ip(&[
                "-n", m, "link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["-n", m, "link", "set", end, "master", bridge])?;
            ip(&["-n", m, "link", "set", end, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let open = |ns: &str| {
            File::open(format!("/var/run/netns/{ns}")).with_context(|| format!("open netns {ns}"))
        };
        let files = [open(a)?, open(b)?, open(m)?];
        made.names.clear();
        Ok(Net {
            a: a.clone(),
            b: b.clone(),
            m: m.clone(),
            files,
        })
    }

    fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
            Side::M => &self.m,
        }
    }

    pub fn file(&self, side: Side) -> &File {
        &self.files[side as usize]
    }

    /// Runs `f` on a thread inside a namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>> {
        let fd = self.file(side).try_clone()?;
        Ok(std::thread::spawn(move || {
            enter(&fd).expect("setns");
            f()
        }))
    }

    /// A command run inside a namespace (`ip netns exec`).
    pub fn exec(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name(side), program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Partial {
            names: vec![self.a.clone(), self.b.clone(), self.m.clone()],
        }
        .clean();
    }
}

/// What `Net::new` made so far.
struct Partial {
    names: Vec<String>,
}

impl Partial {
    fn clean(&mut self) {
        // A namespace goes with its interfaces: veths, their peers, the
        // bridge.
        for ns in self.names.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        self.clean();
    }
}
