//! Values ToxiProxy accepts without checking: negative durations mean no
//! wait, as in Go (time.After of a negative duration fires at once).
//! The engine refuses the ones that crash ToxiProxy; here we only check
//! that nothing the proxy receives can hang or crash it.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_latency_and_jitter_mean_no_delay() {
    let server = echo().await;
    let toxics = [
        down("latency", json!({"latency": -100, "jitter": -5})),
        up(
            "slicer",
            json!({"average_size": 0, "size_variation": -3, "delay": -9}),
        ),
    ];
    let p = proxy(server.addr, &toxics).await;
    let mut c = client(&p).await;
    assert!(median_rtt(&mut c, 3).await < 30 * MS);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_slow_close_and_reset_timeouts_act_at_once() {
    let server = source(b"x".to_vec()).await;
    let p = proxy(server.addr, &[down("slow_close", json!({"delay": -300}))]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    let (data, end) = within(5, read_to_end(&mut c)).await;
    end.unwrap();
    assert_eq!(data, b"x");
    assert!(t.elapsed() < 100 * MS + LOAD_SLACK);
    p.stop().await;

    let server = echo().await;
    let p = proxy(server.addr, &[down("reset_peer", json!({"timeout": -1}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"go").await.unwrap();
    let (_, end) = within(5, read_to_end(&mut c)).await;
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_limit_closes_on_the_first_chunk() {
    let server = source(b"nothing passes".to_vec()).await;
    let p = proxy(server.addr, &[down("limit_data", json!({"bytes": -10}))]).await;
    let mut c = client(&p).await;
    let (data, end) = within(5, read_to_end(&mut c)).await;
    end.unwrap();
    assert!(data.is_empty());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_rate_stalls_and_stop_still_ends_everything() {
    // ToxiProxy panics on a negative rate; here it stalls like rate 0, and
    // a stalled connection does not keep stop() from finishing.
    let server = echo().await;
    let p = proxy(server.addr, &[down("bandwidth", json!({"rate": -1}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"held").await.unwrap();
    tokio::time::sleep(50 * MS).await;
    within(5, p.stop()).await;
    let (data, end) = within(5, read_to_end(&mut c)).await;
    assert!(data.is_empty());
    end.unwrap();
}
