//! bandwidth in proxy mode: KB/s of 1000 bytes, both directions; rate 0
//! stalls until the toxic goes.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_20000_bytes_at_10_kbps_take_2_seconds() {
    let data = pattern(20_000);
    let server = source(data.clone()).await;
    let p = proxy(server.addr, &[down("bandwidth", json!({"rate": 10}))]).await;
    let mut c = client(&p).await;
    let t = Instant::now();
    let (got, end) = within(10, read_to_end(&mut c)).await;
    let took = t.elapsed();
    end.unwrap();
    assert!(got == data, "data intact");
    let (lo, hi) = (Duration::from_millis(1800), Duration::from_millis(2200));
    assert!(took >= lo && took <= hi, "took {took:?}, want 2 s ± 10 %");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rate_limits_what_the_server_gets() {
    let server = echo().await;
    let p = proxy(server.addr, &[up("bandwidth", json!({"rate": 50}))]).await;
    let mut c = client(&p).await;
    let data = pattern(50_000);
    let t = Instant::now();
    let (mut r, mut w) = c.split();
    let ((), got) = within(10, async {
        tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        })
    })
    .await;
    let took = t.elapsed();
    assert!(got == data);
    let (lo, hi) = (Duration::from_millis(900), Duration::from_millis(1100));
    assert!(took >= lo && took <= hi, "took {took:?}, want 1 s ± 10 %");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_zero_stalls_and_removal_releases() {
    let server = echo().await;
    let p = proxy(server.addr, &[down("bandwidth", json!({"rate": 0}))]).await;
    let mut c = client(&p).await;
    c.write_all(b"stuck").await.unwrap();
    let mut b = [0u8; 5];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), c.read_exact(&mut b))
            .await
            .is_err(),
        "rate 0 lets nothing through"
    );
    p.set_toxics(&[]);
    within(2, c.read_exact(&mut b)).await.unwrap();
    assert_eq!(&b, b"stuck");
    p.stop().await;
}
