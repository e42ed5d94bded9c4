//! Shared by the black-box suites: a real `injector serve` process per
//! test (killed on drop), a raw HTTP/1.1 client that shows every byte the
//! daemon sends, and loopback services for upstreams.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// One daemon, killed (and its log shown if the test failed) on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// A daemon for the ToxiProxy API: listen proxies only, so it starts
    /// at once and needs no BPF (kernel-native suites use `with_kernel`).
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        let mut args = vec!["--proxy-only"];
        args.extend_from_slice(extra);
        Daemon::spawn(&args)
    }

    /// A daemon with the kernel data plane loaded.
    pub fn with_kernel() -> Daemon {
        Daemon::spawn(&[])
    }

    /// A daemon with the kernel data plane and more `serve` flags.
    pub fn with_kernel_and(extra: &[&str]) -> Daemon {
        Daemon::spawn(extra)
    }

    /// A daemon with the kernel data plane logging at `RUST_LOG=level`.
    pub fn with_kernel_logging(level: &str) -> Daemon {
        Daemon::spawn_logging(&[], level)
    }

    fn spawn(extra: &[&str]) -> Daemon {
        Daemon::spawn_logging(extra, "info")
    }

    /// `injector serve --port <free> <extra...>`, waiting until /version answers.
    fn spawn_logging(extra: &[&str], level: &str) -> Daemon {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("daemon.log");
            let port = free_port();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_injector"));
            cmd.arg("serve")
                .arg("--port")
                .arg(port.to_string())
                .args(extra)
                .env_remove("INJECTOR_TOKEN")
                .env_remove("INJECTOR_TOKEN_FILE")
                .env("RUST_LOG", level)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"));
            let child = cmd.spawn().expect("spawn injector serve");
            let mut d = Daemon {
                child,
                port,
                log,
                _dir: dir,
            };
            if d.wait_ready() {
                return d;
            }
            last = d.log_text();
        }
        panic!("injector serve did not come up; last log:\n{last}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.get("/version").status == 200
            {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's process id (to stop or kill it in crash tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `injector -h <this daemon> <args...>`, as a user types it.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_injector"))
            .args(["-h", &self.url()])
            .args(args)
            .env_remove("TOXIPROXY_URL")
            .output()
            .expect("run the injector CLI")
    }

    /// The process still runs and still answers.
    /// Waits up to `t` for the process to end; true if it still runs.
    pub fn alive_after(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && self.get("/version").status == 200
    }

    /// Sends a request exactly as given (a full HTTP/1.1 request).
    pub fn raw(&self, request: &[u8]) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the daemon");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.write_all(request).expect("send request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read response");
        Resp::parse(&buf)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            req.push_str("User-Agent: conformance-test\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or(b"");
        if !body.is_empty() || method == "POST" || method == "PATCH" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, Some(body.as_bytes()), &[])
    }
    pub fn patch(&self, path: &str, body: &str) -> Resp {
        self.request("PATCH", path, Some(body.as_bytes()), &[])
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[])
    }

    /// Creates a disabled proxy (no listener needed) and checks the 201.
    pub fn disabled_proxy(&self, name: &str) {
        let r = self.post(
            "/proxies",
            &format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":false}}"#),
        );
        assert_eq!(r.status, 201, "create {name}: {}", r.text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: the daemon removes what it installed in the kernel.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- injector serve log ---\n{}", self.log_text());
        }
    }
}

/// A response as it came off the wire.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn parse(buf: &[u8]) -> Resp {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts ToxiProxy's error form: status, text/plain, nosniff, the
    /// exact JSON object and a trailing newline.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        let want = format!(
            "{}\n",
            go_escape(&serde_json::json!({"error": message, "status": status}).to_string())
        );
        assert_eq!((self.status, self.text()), (status, want), "error response");
        assert_eq!(
            self.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
    }

    /// Asserts a success with compact JSON (no newline) of the given value.
    #[track_caller]
    pub fn assert_json(&self, status: u16, body: &str) {
        assert_eq!((self.status, self.text()), (status, body.to_string()));
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// Go's encoder escapes these HTML characters inside strings.
pub fn go_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// A loopback TCP echo service; stops accepting on drop.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = conn.shutdown(Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Sends `msg` through `addr` and reads the echo back.
pub fn echo_through(addr: &str, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

/// A live GET /events stream. Opening it waits for the response head, so
/// the daemon has subscribed before the test changes anything.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub fn open(port: u16) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-type:") {
                assert!(lower.contains("text/event-stream"), "{line:?}");
            }
        }
        Events { reader }
    }

    /// The JSON of the next `data:` line.
    pub fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read an event");
            assert!(n > 0, "event stream closed");
            if let Some(d) = line.trim_end().strip_prefix("data:") {
                return serde_json::from_str(d.trim()).expect("event JSON");
            }
        }
    }
}
