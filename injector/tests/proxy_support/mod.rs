//! Fixtures for the proxy-mode tests: toxics built as the API builds them,
//! loopback servers the tests own, and timing helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use injector::faults::Attributes;
use injector::model::{Stream, Toxic};
use injector::proxy::ListenProxy;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A toxic as the engine hands it over: `attrs` is the JSON attributes.
pub fn toxic(name: &str, kind: &str, stream: Stream, toxicity: f32, attrs: Value) -> Toxic {
    let mut attributes = Attributes::new(kind).expect("known toxic type");
    attributes
        .merge(attrs.as_object().expect("attributes object"))
        .expect("valid attributes");
    Toxic {
        name: name.into(),
        stream,
        stream_raw: format!("{stream:?}").to_lowercase(),
        toxicity,
        attributes,
        ttl_ms: None,
        expires_at: None,
    }
}

pub fn down(kind: &str, attrs: Value) -> Toxic {
    toxic(
        &format!("{kind}_downstream"),
        kind,
        Stream::Downstream,
        1.0,
        attrs,
    )
}

pub fn up(kind: &str, attrs: Value) -> Toxic {
    toxic(
        &format!("{kind}_upstream"),
        kind,
        Stream::Upstream,
        1.0,
        attrs,
    )
}

/// A server task that aborts when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves each connection with `handle` on 127.0.0.1:<ephemeral>.
pub async fn serve<F, Fut>(handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(handle(s));
        }
    });
    Server { addr, task }
}

/// Echoes everything back; closes when the client does.
pub async fn echo() -> Server {
    serve(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Writes `data` to each client, then closes.
pub async fn source(data: Vec<u8>) -> Server {
    let data = std::sync::Arc::new(data);
    serve(move |mut s| {
        let data = data.clone();
        async move {
            let _ = s.write_all(&data).await;
            let _ = s.shutdown().await;
        }
    })
    .await
}

/// A proxy on 127.0.0.1:0 in front of `upstream`.
pub async fn proxy(upstream: SocketAddr, toxics: &[Toxic]) -> ListenProxy {
    ListenProxy::start("test", "127.0.0.1:0", &upstream.to_string(), toxics)
        .await
        .expect("proxy starts")
}

pub async fn client(p: &ListenProxy) -> TcpStream {
    let s = TcpStream::connect(p.listen_addr())
        .await
        .expect("proxy accepts");
    s.set_nodelay(true).unwrap();
    s
}

/// One byte there and back through an echo; the round-trip time.
pub async fn rtt(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    t.elapsed()
}

/// The median of `n` round trips: one late wake-up on a loaded machine
/// does not decide a timing check.
pub async fn median_rtt(s: &mut TcpStream, n: usize) -> Duration {
    let mut all = vec![];
    for _ in 0..n {
        all.push(within(10, rtt(s)).await);
    }
    all.sort();
    all[n / 2]
}

/// Scheduling delay a one-shot timing check tolerates on a loaded 2-core
/// machine (on top of ± 5 % + 1 ms); nothing may come early.
pub const LOAD_SLACK: Duration = Duration::from_millis(50);

/// Reads until EOF (or error); returns the bytes and how it ended.
pub async fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut buf = vec![];
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => return (buf, Ok(())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return (buf, Err(e)),
        }
    }
}

/// `expected` ± (5 % + 1 ms): the fidelity the issue asks for, plus what
/// the loopback round trip itself adds (`slack`).
pub fn assert_close(what: &str, got: Duration, expected: Duration, slack: Duration) {
    let margin = expected / 20 + Duration::from_millis(1);
    assert!(
        got + margin >= expected && got <= expected + margin + slack,
        "{what}: got {got:?}, expected {expected:?} ± {margin:?} (+{slack:?})"
    );
}

/// Pseudo-random bytes (reproducible), so that corruption shows.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Fails the test after `secs` instead of hanging.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}
