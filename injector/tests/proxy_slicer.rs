//! slicer in proxy mode: data intact, delivered in many small pieces.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::json;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_arrive_separately_and_intact() {
    let data = pattern(600);
    let server = source(data.clone()).await;
    let slicer = json!({"average_size": 10, "size_variation": 5, "delay": 2000});
    let p = proxy(server.addr, &[down("slicer", slicer)]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    let mut got = vec![];
    let mut reads = vec![];
    let mut buf = [0u8; 4096];
    within(10, async {
        loop {
            match c.read(&mut buf).await.unwrap() {
                0 => break,
                n => {
                    reads.push(n);
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    })
    .await;
    assert!(got == data, "data intact");
    // At least 600 / 15 pieces, 2 ms apart; reads may merge a few under load.
    assert!(reads.len() >= 20, "only {} reads: {reads:?}", reads.len());
    let small = reads.iter().filter(|n| **n <= 15).count();
    assert!(
        small * 10 >= reads.len() * 8,
        "most reads are one piece: {reads:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t.elapsed()
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsecond_delays_are_not_rounded_to_milliseconds() {
    // 1000 pieces 100 µs apart: ~100 ms. A millisecond timer would need
    // a second; half of that leaves room for a loaded machine.
    let data = pattern(10_000);
    let server = source(data.clone()).await;
    let slicer = json!({"average_size": 10, "size_variation": 0, "delay": 100});
    let p = proxy(server.addr, &[down("slicer", slicer)]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    let (got, end) = within(10, read_to_end(&mut c)).await;
    end.unwrap();
    assert!(got == data);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(500),
        "{took:?}"
    );
    p.stop().await;
}
