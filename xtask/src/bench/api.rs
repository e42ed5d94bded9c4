//! A minimal HTTP/1.1 client for the ToxiProxy API (injector's or
//! ToxiProxy's own), keeping its connection open: the scale step sends tens
//! of thousands of requests.

use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;

use super::net::enter;

pub struct Api {
    addr: String,
    /// The network namespace the daemon listens in.
    netns: File,
    conn: Option<BufReader<TcpStream>>,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Api {
    pub fn new(addr: &str, netns: File) -> Api {
        Api {
            addr: addr.to_string(),
            netns,
            conn: None,
        }
    }

    /// A connection made from inside the daemon's namespace (a socket
    /// stays in the namespace it was made in).
    fn connect(&self) -> Result<TcpStream> {
        let ns = self.netns.try_clone()?;
        let addr = self.addr.clone();
        std::thread::spawn(move || -> Result<TcpStream> {
            enter(&ns)?;
            TcpStream::connect(&addr).with_context(|| format!("connect to the API at {addr}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("connect thread panicked"))?
    }

    pub fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
        // A kept-alive connection the server closed meanwhile fails once:
        // the request is sent again on a fresh one.
        match self.try_call(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.conn = None;
                self.try_call(method, path, body)
            }
        }
    }

    /// Fails unless the answer is 2xx.
    pub fn ok(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
        let r = self.call(method, path, body)?;
        if !(200..300).contains(&r.status) {
            bail!("{method} {path}: {} {}", r.status, r.body);
        }
        Ok(r)
    }

    fn try_call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
        if self.conn.is_none() {
            let s = self.connect()?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        conn.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut buf = vec![0u8; length];
        conn.read_exact(&mut buf)?;
        if close {
            self.conn = None;
        }
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&buf).into_owned(),
        })
    }
}
