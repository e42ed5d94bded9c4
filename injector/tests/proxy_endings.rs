//! The toxics that end connections: slow_close, timeout, reset_peer,
//! limit_data. Each is checked for the close (EOF or reset) and its
//! timing as ToxiProxy produces them.

mod proxy_support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use injector::model::Stream;
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const MS: Duration = Duration::from_millis(1);

/// Waits for the end of the stream; how long it took and how it ended.
async fn time_to_end(c: &mut TcpStream) -> (Duration, Vec<u8>, std::io::Result<()>) {
    let t = Instant::now();
    let (data, end) = within(10, read_to_end(c)).await;
    (t.elapsed(), data, end)
}

/// A server that sends `greeting` and keeps the connection open.
async fn lingering(greeting: &'static [u8]) -> Server {
    serve(move |mut s| async move {
        let _ = s.write_all(greeting).await;
        let mut sink = vec![];
        let _ = s.read_to_end(&mut sink).await;
    })
    .await
}

/// A server that reports every byte it receives, and when it saw EOF.
async fn recorder() -> (Server, mpsc::UnboundedReceiver<Option<Vec<u8>>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = serve(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        let _ = tx.send(Some(buf[..n].to_vec()));
                    }
                }
            }
        }
    })
    .await;
    (server, rx)
}

/// Everything a recorder got until EOF.
async fn recorded(rx: &mut mpsc::UnboundedReceiver<Option<Vec<u8>>>) -> Vec<u8> {
    let mut all = vec![];
    while let Some(Some(b)) = within(5, rx.recv()).await {
        all.extend(b);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_holds_the_close_not_the_data() {
    let server = source(b"hello".to_vec()).await;
    let p = proxy(server.addr, &[down("slow_close", json!({"delay": 300}))]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    let mut hello = [0u8; 5];
    within(5, c.read_exact(&mut hello)).await.unwrap();
    assert!(
        t.elapsed() < 100 * MS + LOAD_SLACK,
        "data is not delayed: {:?}",
        t.elapsed()
    );
    let (_, rest, end) = time_to_end(&mut c).await;
    end.unwrap();
    assert!(rest.is_empty());
    assert_close("EOF after the delay", t.elapsed(), 300 * MS, LOAD_SLACK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_and_closes_when_idle() {
    let server = lingering(b"you never see this").await;
    let p = proxy(server.addr, &[down("timeout", json!({"timeout": 300}))]).await;
    let mut c = client(&p).await;
    let (took, data, end) = time_to_end(&mut c).await;
    end.unwrap();
    assert!(data.is_empty(), "timeout drops all data");
    // The greeting arrives at once and re-arms the 300 ms timer.
    assert_close("close after the timeout", took, 300 * MS, LOAD_SLACK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_timer_is_reset_by_traffic() {
    let (server, mut rx) = recorder().await;
    let p = proxy(server.addr, &[up("timeout", json!({"timeout": 300}))]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    for _ in 0..8 {
        c.write_all(b"tick").await.unwrap();
        tokio::time::sleep(100 * MS).await;
    }
    let last = t.elapsed() - 100 * MS;
    // Still open after 800 ms of traffic every 100 ms...
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(50 * MS, c.read(&mut b)).await.is_err(),
        "closed too early"
    );
    // ...and closed ~300 ms after the last tick.
    let (_, _, end) = time_to_end(&mut c).await;
    end.unwrap();
    assert_close(
        "idle close",
        t.elapsed(),
        last + 300 * MS,
        30 * MS + LOAD_SLACK,
    );
    assert!(
        recorded(&mut rx).await.is_empty(),
        "nothing reached the server"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_zero_holds_until_removed_and_removal_closes() {
    let server = echo().await;
    let p = proxy(server.addr, &[down("timeout", json!({"timeout": 0}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    assert!(
        tokio::time::timeout(500 * MS, c.read(&mut b))
            .await
            .is_err(),
        "held open, silent"
    );
    let t = Instant::now();
    p.set_toxics(&[]);
    let (_, data, end) = time_to_end(&mut c).await;
    end.unwrap();
    assert!(data.is_empty());
    assert!(
        t.elapsed() < 100 * MS + LOAD_SLACK,
        "removal closes at once: {:?}",
        t.elapsed()
    );
    p.stop().await;
}

async fn expect_reset(c: &mut TcpStream) -> Duration {
    let (took, _, end) = time_to_end(c).await;
    let err = end.expect_err("a reset, not an EOF");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_on_first_data() {
    let server = echo().await;
    let p = proxy(server.addr, &[down("reset_peer", json!({"timeout": 0}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"ping").await.unwrap();
    let took = expect_reset(&mut c).await;
    assert!(took < 100 * MS + LOAD_SLACK, "{took:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_upstream_waits_its_timeout() {
    let server = lingering(b"").await;
    let p = proxy(server.addr, &[up("reset_peer", json!({"timeout": 300}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"go").await.unwrap();
    let took = expect_reset(&mut c).await;
    assert_close("reset after 300 ms", took, 300 * MS, LOAD_SLACK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_without_data_never_resets() {
    let server = lingering(b"").await;
    let p = proxy(server.addr, &[up("reset_peer", json!({"timeout": 0}))]).await;
    let mut c = client(&p).await;
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(500 * MS, c.read(&mut b))
            .await
            .is_err()
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_added_to_an_open_connection_closes_with_fin() {
    let server = echo().await;
    let p = proxy(server.addr, &[]).await;
    let mut c = client(&p).await;
    rtt(&mut c).await;
    p.set_toxics(&[down("reset_peer", json!({"timeout": 0}))]);
    tokio::time::sleep(20 * MS).await;
    c.write_all(b"ping").await.unwrap();
    let (_, data, end) = time_to_end(&mut c).await;
    assert!(data.is_empty());
    end.expect("SO_LINGER is only set at connection start: a FIN");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_that_lost_its_roll_does_not_turn_closes_into_resets() {
    // Shopify/toxiproxy#603: ToxiProxy resets here; we close normally.
    let server = source(b"bye".to_vec()).await;
    let toxic = toxic(
        "r",
        "reset_peer",
        Stream::Upstream,
        0.0,
        json!({"timeout": 0}),
    );
    let p = proxy(server.addr, &[toxic]).await;
    let mut c = client(&p).await;
    let (_, data, end) = time_to_end(&mut c).await;
    assert_eq!(data, b"bye");
    end.expect("an EOF");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_resets_connections_that_had_a_reset_peer() {
    let server = lingering(b"").await;
    let p = proxy(
        server.addr,
        &[up("reset_peer", json!({"timeout": 100_000}))],
    )
    .await;
    let mut c = client(&p).await;
    tokio::time::sleep(20 * MS).await;
    p.stop().await;
    expect_reset(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_passes_exactly_the_limit_then_closes() {
    let server = source(b"0123456789abcdefghij".repeat(100)).await;
    let p = proxy(server.addr, &[down("limit_data", json!({"bytes": 10}))]).await;
    let mut c = client(&p).await;
    let (_, data, end) = time_to_end(&mut c).await;
    end.unwrap();
    assert_eq!(data, b"0123456789");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_count_survives_an_update() {
    let (server, mut rx) = recorder().await;
    let p = proxy(server.addr, &[up("limit_data", json!({"bytes": 10}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"abcdef").await.unwrap();
    assert_eq!(within(5, rx.recv()).await, Some(Some(b"abcdef".to_vec())));
    // Raise the limit: 6 were already counted, 6 more may pass.
    p.set_toxics(&[up("limit_data", json!({"bytes": 12}))]);
    tokio::time::sleep(20 * MS).await;
    c.write_all(b"ghijklmnop").await.unwrap();
    assert_eq!(recorded(&mut rx).await, b"ghijkl");
    let (_, _, end) = time_to_end(&mut c).await;
    end.unwrap();
    p.stop().await;
}
