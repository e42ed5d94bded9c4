//! Probes: the requests that measure the steady state, and what a client
//! would have seen when one fails (`status 502`, `timeout`, `connection
//! refused`, `connection reset`, `dns SERVFAIL`, `exit status 1`). Each
//! probe opens a new connection, so per-connection faults (ToxiProxy's
//! toxicity) are sampled as real clients meet them.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::{
    net::{TcpStream, UdpSocket},
    sync::{mpsc, watch},
    task::JoinSet,
};

use super::sli::{Sample, Sli};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Check {
    Http {
        url: String,
        method: String,
        /// Accepted statuses; empty = any 2xx.
        expect_status: Vec<u16>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        headers: Vec<(String, String)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    Tcp {
        address: String,
    },
    /// Succeeds on a NOERROR answer with at least one record.
    Dns {
        name: String,
        server: String,
        record: String,
    },
    /// Succeeds when the program exits 0.
    Command {
        argv: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    pub name: String,
    #[serde(flatten)]
    pub check: Check,
    #[serde(serialize_with = "super::policy::ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "super::policy::ser_duration")]
    pub timeout: Duration,
    /// The steady state this probe must show.
    pub slis: Vec<Sli>,
}

/// Probes of one kind never run more than this many at once (a slow fault
/// must not turn the probe into a load test).
const MAX_IN_FLIGHT: usize = 64;

impl Probe {
    /// Runs one attempt: Ok, or what the client saw.
    pub async fn attempt(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.check.run()).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        }
    }

    /// Probes every `interval` until `stop` turns true, then waits for the
    /// attempts still in flight (each bounded by the timeout).
    pub fn spawn(
        self: Arc<Self>,
        index: usize,
        origin: Instant,
        tx: mpsc::UnboundedSender<Sample>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut running = JoinSet::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    break;
                }
                while running.try_join_next().is_some() {}
                if running.len() >= MAX_IN_FLIGHT {
                    continue;
                }
                let (probe, tx) = (self.clone(), tx.clone());
                running.spawn(async move {
                    let start = Instant::now();
                    let result = probe.attempt().await;
                    let end = Instant::now();
                    let _ = tx.send(Sample {
                        probe: index,
                        start_ms: ms_since(origin, start),
                        end_ms: ms_since(origin, end),
                        latency_ms: (end - start).as_secs_f64() * 1000.0,
                        ok: result.is_ok(),
                        error: result.err(),
                    });
                });
            }
            while running.join_next().await.is_some() {}
        })
    }
}

pub fn ms_since(origin: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(origin).as_secs_f64() * 1000.0
}

impl Check {
    async fn run(&self) -> Result<(), String> {
        match self {
            Check::Http {
                url,
                method,
                expect_status,
                headers,
                body,
            } => http(url, method, expect_status, headers, body.as_deref()).await,
            Check::Tcp { address } => TcpStream::connect(address.as_str())
                .await
                .map(drop)
                .map_err(|e| io_words(&e)),
            Check::Dns {
                name,
                server,
                record,
            } => dns(name, server, record).await,
            Check::Command { argv } => command(argv).await,
        }
    }
}

/// The words a client would use for a socket error.
fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "timeout".into(),
        UnexpectedEof => "connection closed".into(),
        BrokenPipe => "connection reset".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

fn hyper_words(e: &hyper::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_words(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        "connection closed before a response".into()
    } else {
        e.to_string()
    }
}

/// `http://host:port/path` split into what a request needs.
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) => {
            return Err(format!(
                "{s}:// is not supported by the HTTP probe; use http://"
            ));
        }
        None => return Err(format!("URL {url:?} needs http://")),
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in URL {url:?}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Ok((host, uri.port_u16().unwrap_or(80), path))
}

async fn http(
    url: &str,
    method: &str,
    expect: &[u16],
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<(), String> {
    let (host, port, path) = split_url(url)?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| io_words(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_words(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "injector-probe")
        .header(header::CONNECTION, "close");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| hyper_words(&e))?;
    let status = resp.status().as_u16();
    // The whole body: a fault that cuts or stalls it is a failure too.
    resp.into_body()
        .collect()
        .await
        .map_err(|e| hyper_words(&e))?;
    let ok = if expect.is_empty() {
        (200..300).contains(&status)
    } else {
        expect.contains(&status)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The first `nameserver` of /etc/resolv.conf, port 53.
pub fn system_resolver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                match w.next() {
                    Some("nameserver") => w.next().map(str::to_string),
                    _ => None,
                }
            })
        })
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map_or("127.0.0.1:53".into(), |ip| {
            SocketAddr::new(ip, 53).to_string()
        })
}

pub fn record_code(record: &str) -> Option<u16> {
    Some(match record.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        _ => return None,
    })
}

/// A DNS query for `name` (a plain dotted name) and record type `qtype`.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Judges an answer to query `id`: Ok when NOERROR with records.
pub fn dns_verdict(id: u16, answer: &[u8]) -> Result<(), String> {
    if answer.len() < 12 || answer[..2] != id.to_be_bytes() || answer[2] & 0x80 == 0 {
        return Err("dns: malformed answer".into());
    }
    let rcode = answer[3] & 0x0f;
    let count = u16::from_be_bytes([answer[6], answer[7]]);
    match rcode {
        0 if count > 0 => Ok(()),
        0 => Err("dns: no records".into()),
        2 => Err("dns SERVFAIL".into()),
        3 => Err("dns NXDOMAIN".into()),
        5 => Err("dns REFUSED".into()),
        r => Err(format!("dns rcode {r}")),
    }
}

async fn dns(name: &str, server: &str, record: &str) -> Result<(), String> {
    let qtype = record_code(record).ok_or_else(|| format!("unknown record type {record}"))?;
    let server: SocketAddr = server
        .parse()
        .map_err(|_| format!("DNS server {server:?} must be ip:port"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(server)
    } else {
        "[::]:0".parse().unwrap_or(server)
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| io_words(&e))?;
    sock.connect(server).await.map_err(|e| io_words(&e))?;
    let id: u16 = rand::random();
    sock.send(&dns_query(id, name, qtype)?)
        .await
        .map_err(|e| io_words(&e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| io_words(&e))?;
        // Stray datagrams (an earlier query's late answer) are skipped.
        if n >= 2 && buf[..2] == id.to_be_bytes() {
            return dns_verdict(id, &buf[..n]);
        }
    }
}

async fn command(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // A timed-out attempt is dropped: its process must not linger.
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(format!("exit status {c}")),
        None => Err("killed by a signal".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/checkout?x=1").unwrap(),
            ("127.0.0.1".into(), 8080, "/checkout?x=1".into())
        );
        assert_eq!(
            split_url("http://[::1]/").unwrap(),
            ("::1".into(), 80, "/".into())
        );
        assert!(split_url("https://x/").unwrap_err().contains("https"));
        assert!(split_url("x:1").is_err());
    }

    #[test]
    fn dns_wire() {
        let q = dns_query(0x1234, "shop.local.", 1).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x04shop\x05local\x00\x00\x01\x00\x01");
        let mut a = q.clone();
        a[2] |= 0x80;
        assert_eq!(dns_verdict(0x1234, &a).unwrap_err(), "dns: no records");
        a[7] = 1;
        assert!(dns_verdict(0x1234, &a).is_ok());
        a[3] = 0x82;
        assert_eq!(dns_verdict(0x1234, &a).unwrap_err(), "dns SERVFAIL");
        assert!(dns_query(1, "a..b", 1).is_err());
        assert_eq!(record_code("aaaa"), Some(28));
    }

    /// A resolver on loopback answering every query with `rcode` and
    /// `answers` records (only the header matters to the probe).
    async fn resolver(rcode: u8, answers: u8) -> String {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let mut a = buf[..n].to_vec();
                a[2] |= 0x80;
                a[3] = (a[3] & 0xf0) | rcode;
                a[7] = answers;
                let _ = sock.send_to(&a, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn dns_probes_read_the_answer() {
        let dns = |server: String| Check::Dns {
            name: "orders.shop.lab".into(),
            server,
            record: "A".into(),
        };
        assert!(dns(resolver(0, 1).await).run().await.is_ok());
        assert_eq!(
            dns(resolver(2, 0).await).run().await.unwrap_err(),
            "dns SERVFAIL"
        );
        assert_eq!(
            dns(resolver(3, 0).await).run().await.unwrap_err(),
            "dns NXDOMAIN"
        );
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_and_statuses_are_checked() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let probe = Probe {
            name: "p".into(),
            check: Check::Http {
                url,
                method: "GET".into(),
                expect_status: vec![],
                headers: vec![],
                body: None,
            },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            slis: vec![],
        };
        assert_eq!(probe.attempt().await.unwrap_err(), "timeout");

        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut c, _)) = server.accept().await {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(b"HTTP/1.1 503 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let check = |expect: Vec<u16>| Check::Http {
            url: format!("http://{addr}/x"),
            method: "POST".into(),
            expect_status: expect,
            headers: vec![("X-Test".into(), "1".into())],
            body: Some("{}".into()),
        };
        assert_eq!(check(vec![]).run().await.unwrap_err(), "status 503");
        assert!(check(vec![200, 503]).run().await.is_ok());
    }

    #[tokio::test]
    async fn failures_say_what_the_client_saw() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let tcp = Check::Tcp {
            address: addr.to_string(),
        };
        assert_eq!(tcp.run().await.unwrap_err(), "connection refused");
        let cmd = Check::Command {
            argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        assert_eq!(cmd.run().await.unwrap_err(), "exit status 3");
        let ok = Check::Command {
            argv: vec!["true".into()],
        };
        assert!(ok.run().await.is_ok());
    }
}
