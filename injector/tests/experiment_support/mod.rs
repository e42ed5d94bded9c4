//! Fixtures for the experiment suites: a loopback HTTP service whose
//! answer can be switched (200 or an error status), a listen proxy in
//! front of it on a real daemon, and policy text built around both.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::conformance_support::Daemon;

/// A tiny HTTP/1.1 shop: answers every request with `status` and "ok".
pub struct Shop {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    pub served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Shop {
    pub fn start() -> Shop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the shop");
        let addr = listener.local_addr().expect("shop address");
        let status = Arc::new(AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sv, sp) = (status.clone(), served.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (st, sv) = (st.clone(), sv.clone());
                thread::spawn(move || answer(conn, &st, &sv));
            }
        });
        Shop {
            addr,
            status,
            served,
            stop,
        }
    }

    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::Relaxed);
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(mut conn: TcpStream, status: &AtomicU16, served: &AtomicUsize) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Headers, then as much body as Content-Length says.
    let head_end = loop {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    served.fetch_add(1, Ordering::Relaxed);
    let code = status.load(Ordering::Relaxed);
    let _ = conn.write_all(
        format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes(),
    );
}

/// One GET through `addr` (host:port): the status, or None on any failure.
pub fn get_status(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

/// Creates a listen proxy `name` in front of `upstream` on loopback and
/// returns the address it listens on.
pub fn listen_proxy(d: &Daemon, name: &str, upstream: SocketAddr) -> String {
    let r = d.post(
        "/proxies",
        &format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#),
    );
    assert_eq!(r.status, 201, "create proxy {name}: {}", r.text());
    r.json()["listen"]
        .as_str()
        .expect("listen address")
        .to_string()
}

/// The toxics on a proxy, as the API lists them.
pub fn toxics(d: &Daemon, proxy: &str) -> Vec<Value> {
    let r = d.get(&format!("/proxies/{proxy}/toxics"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().cloned().unwrap_or_default()
}

/// What a test policy varies; the rest is fixed and short.
pub struct Plan<'a> {
    pub name: &'a str,
    /// host:port of the listen proxy the probe goes through.
    pub via: &'a str,
    pub proxy: &'a str,
    pub holds: &'a [&'a str],
    pub abort: &'a [&'a str],
    /// `[[method]]` tables, as TOML.
    pub method: &'a str,
    pub max_duration: &'a str,
    pub verify: &'a str,
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Plan<'_> {
    pub fn toml(&self) -> String {
        format!(
            r#"[experiment]
name = "{name}"
description = "a test experiment"

[steady_state]
baseline = "800ms"
interval = "50ms"
timeout = "1s"

[[steady_state.probe]]
name = "shop"
type = "http"
url = "http://{via}/checkout"
expect_status = 200
slis = ["success_rate >= 99%", "p95 < 2s"]

[hypothesis]
text = "the shop keeps answering"
holds = [{holds}]

[blast_radius]
proxies = ["{proxy}"]
max_duration = "{max}"

[abort]
when = [{abort}]

{method}

[rollback]
verify = "{verify}"
"#,
            name = self.name,
            via = self.via,
            holds = list(self.holds),
            proxy = self.proxy,
            max = self.max_duration,
            abort = list(self.abort),
            method = self.method,
            verify = self.verify,
        )
    }
}

pub fn injector() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_injector"));
    c.env_remove("TOXIPROXY_URL").env_remove("INJECTOR_TOKEN");
    c
}

pub struct Ran {
    pub out: Output,
    pub dir: tempfile::TempDir,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    /// The one log file with this extension.
    pub fn log(&self, ext: &str) -> String {
        let found: Vec<PathBuf> = std::fs::read_dir(self.logs())
            .expect("the log directory exists")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        assert_eq!(found.len(), 1, "one .{ext} log in {:?}", self.logs());
        std::fs::read_to_string(&found[0]).unwrap()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.log("json")).expect("the JSON log parses")
    }
    pub fn explain(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }
}

pub fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `injector run <policy> --host <d> --out <tmp>/logs`, to its end.
pub fn run(d: &Daemon, policy: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(dir.path(), policy);
    let out = injector()
        .arg("run")
        .arg(&path)
        .arg("--host")
        .arg(d.url())
        .arg("--out")
        .arg(dir.path().join("logs"))
        .output()
        .expect("run injector run");
    Ran { out, dir }
}
