//! Traffic between the namespaces: iperf3 for throughput, a TCP ping-pong
//! for request latency, and a timestamped UDP stream (for loss and for when
//! a fault starts acting on the wire).

use anyhow::{Context as _, Result, bail};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::net::{B_ADDR, Net, Side};

pub const IPERF_PORT: u16 = 5201;
pub const ECHO_PORT: u16 = 7001;
/// Size of one ping-pong request and of its answer.
const MSG: usize = 64;

/// Latency percentiles of a series of round trips, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

pub fn percentiles(mut v: Vec<f64>) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// The best, percentile by percentile, of several measurements: other
/// work on the machine only ever adds latency, as it only ever takes
/// throughput.
pub fn best(segments: &[Latency]) -> Latency {
    let pick = |f: fn(&Latency) -> f64| {
        segments
            .iter()
            .map(f)
            .min_by(|a, b| a.total_cmp(b))
            .unwrap_or(0.0)
    };
    Latency {
        p50: pick(|l| l.p50),
        p99: pick(|l| l.p99),
    }
}

/// The servers in namespace B: iperf3, and the ping-pong echo.
pub struct Servers {
    iperf: Child,
    stop: Arc<AtomicBool>,
    echo: Option<JoinHandle<()>>,
}

impl Servers {
    pub fn start(net: &Net) -> Result<Servers> {
        let iperf = net
            .exec(Side::B, "iperf3")
            .args(["-s", "-p", &IPERF_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3 (install it: apt-get install iperf3)")?;
        // From here on, a failure stops what was started (Drop).
        let mut servers = Servers {
            iperf,
            stop: Arc::new(AtomicBool::new(false)),
            echo: None,
        };
        let flag = servers.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        servers.echo = Some(net.spawn(Side::B, move || {
            let l = match TcpListener::bind((B_ADDR, ECHO_PORT)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            l.set_nonblocking(true).expect("nonblocking listener");
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_nodelay(true);
                        std::thread::spawn(move || {
                            let mut buf = [0u8; MSG];
                            while s.read_exact(&mut buf).is_ok() {
                                if s.write_all(&buf).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?);
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("echo server: {e}"),
            Err(_) => bail!("echo server did not start"),
        }
        // iperf3 needs a moment to listen.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let up = net
                .spawn(Side::A, || {
                    TcpStream::connect_timeout(
                        &format!("{B_ADDR}:{IPERF_PORT}").parse().unwrap(),
                        Duration::from_millis(200),
                    )
                    .is_ok()
                })?
                .join()
                .unwrap_or(false);
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!("iperf3 does not listen in the server namespace");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.iperf.kill();
        let _ = self.iperf.wait();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.echo.take() {
            let _ = h.join();
        }
    }
}

/// TCP throughput from A to `addr:port` (B's iperf3, or a proxy in front
/// of it), in Gbit/s.
pub fn throughput(net: &Net, addr: &str, port: u16, secs: u32) -> Result<f64> {
    let out = net
        .exec(Side::A, "iperf3")
        .args(["-c", addr, "-p", &port.to_string(), "-t", &secs.to_string()])
        .args(["-J", "--connect-timeout", "3000"])
        .stdin(Stdio::null())
        .output()
        .context("run iperf3")?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3 to {addr}:{port}: {e}");
    }
    json.pointer("/end/sum_received/bits_per_second")
        .and_then(|v| v.as_f64())
        .map(|b| b / 1e9)
        .context("iperf3 JSON without end.sum_received")
}

/// Round trips of 64-byte requests from A to `addr:port`, one connection.
pub fn latency(net: &Net, addr: &str, port: u16, rounds: usize) -> Result<Latency> {
    Ok(percentiles(round_trips(net, addr, port, rounds)?))
}

/// The round trips themselves, in µs, after 200 warm-up rounds.
fn round_trips(net: &Net, addr: &str, port: u16, rounds: usize) -> Result<Vec<f64>> {
    let to = format!("{addr}:{port}");
    net.spawn(Side::A, move || -> Result<Vec<f64>> {
        let mut s = TcpStream::connect(&to).with_context(|| format!("connect {to}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [7u8; MSG];
        let mut samples = Vec::with_capacity(rounds);
        for i in 0..rounds + 200 {
            let t = Instant::now();
            s.write_all(&buf)?;
            s.read_exact(&mut buf)?;
            // The first rounds warm caches and the proxies' buffers.
            if i >= 200 {
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(samples)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("latency thread panicked"))?
}

/// A UDP receiver in B counting datagrams and remembering the latest send
/// time it saw (written by `Stream` in the first 8 bytes, in ns since
/// `base`).
pub struct Receiver {
    pub count: Arc<AtomicU64>,
    pub last_sent_ns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(net: &Net, port: u16) -> Result<Receiver> {
        let count = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, l, st) = (count.clone(), last.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = net.spawn(Side::B, move || {
            let s = UdpSocket::bind((B_ADDR, port)).expect("bind the UDP receiver");
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let _ = tx.send(());
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = s.recv(&mut buf) {
                    c.fetch_add(1, Ordering::SeqCst);
                    if n >= 8 {
                        let sent = u64::from_be_bytes(buf[..8].try_into().unwrap());
                        l.fetch_max(sent, Ordering::SeqCst);
                    }
                }
            }
        })?;
        rx.recv_timeout(Duration::from_secs(5))
            .context("UDP receiver did not start")?;
        Ok(Receiver {
            count,
            last_sent_ns: last,
            stop,
            handle: Some(handle),
        })
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A steady stream of timestamped datagrams from A to B, about one every
/// 50 µs, until dropped.
pub struct Stream {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Stream {
    pub fn start(net: &Net, port: u16, base: Instant) -> Result<Stream> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = net.spawn(Side::A, move || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind the UDP sender");
            let mut buf = [0u8; 64];
            while !st.load(Ordering::SeqCst) {
                let ns = base.elapsed().as_nanos() as u64;
                buf[..8].copy_from_slice(&ns.to_be_bytes());
                let _ = s.send_to(&buf, (B_ADDR, port));
                std::thread::sleep(Duration::from_micros(50));
            }
        })?;
        Ok(Stream {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `n` datagrams from A to B's `port`, paced so no socket buffer
/// overflows (a loss measured is the fault's).
pub fn send_udp(net: &Net, port: u16, n: u32) -> Result<()> {
    net.spawn(Side::A, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind the UDP sender");
        for i in 0..n {
            let _ = s.send_to(&i.to_be_bytes(), (B_ADDR, port));
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("UDP sender panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            percentiles(v),
            Latency {
                p50: 51.0,
                p99: 99.0
            }
        );
        assert_eq!(percentiles(vec![]), Latency::default());
        let l = |p50, p99| Latency { p50, p99 };
        assert_eq!(
            best(&[l(1.0, 90.0), l(50.0, 9.0), l(2.0, 10.0)]),
            l(1.0, 9.0)
        );
    }
}
