//! latency in proxy mode: per direction, jitter bounds, stacking.

mod proxy_support;

use std::time::Duration;

use injector::model::Stream;
use proxy_support::*;
use serde_json::json;

const MS: Duration = Duration::from_millis(1);

/// Median of `n` echo round trips through a proxy with `toxics`.
async fn rtts_through(toxics: &[injector::model::Toxic], n: usize) -> (Duration, Vec<Duration>) {
    let server = echo().await;
    let p = proxy(server.addr, toxics).await;
    let mut c = client(&p).await;
    let mut all = vec![];
    for _ in 0..n {
        all.push(within(10, rtt(&mut c)).await);
    }
    p.stop().await;
    let mut sorted = all.clone();
    sorted.sort();
    (sorted[n / 2], all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_latency() {
    let (median, all) = rtts_through(&[down("latency", json!({"latency": 100}))], 5).await;
    assert_close("downstream 100 ms", median, 100 * MS, MS);
    assert!(all.iter().all(|d| *d >= 95 * MS), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_latency() {
    let (median, all) = rtts_through(&[up("latency", json!({"latency": 80}))], 5).await;
    assert_close("upstream 80 ms", median, 80 * MS, MS);
    assert!(all.iter().all(|d| *d >= 76 * MS), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_stays_within_its_bounds() {
    let (_, all) = rtts_through(&[down("latency", json!({"latency": 60, "jitter": 20}))], 25).await;
    // Never early; late only when the loaded machine woke us late.
    assert!(
        all.iter().all(|d| *d >= 39 * MS),
        "below 60 - 20 ms: {all:?}"
    );
    let within_bounds = all.iter().filter(|d| **d <= 81 * MS).count();
    assert!(within_bounds >= 22, "above 60 + 20 ms too often: {all:?}");
    let (lo, hi) = (all.iter().min().unwrap(), all.iter().max().unwrap());
    assert!(
        *hi - *lo >= 10 * MS,
        "jitter should spread the delays: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_latencies_stack() {
    let toxics = [
        toxic(
            "a",
            "latency",
            Stream::Downstream,
            1.0,
            json!({"latency": 50}),
        ),
        toxic(
            "b",
            "latency",
            Stream::Downstream,
            1.0,
            json!({"latency": 50}),
        ),
    ];
    let (median, _) = rtts_through(&toxics, 5).await;
    assert_close("50 + 50 ms", median, 100 * MS, MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_add_up() {
    let toxics = [
        up("latency", json!({"latency": 30})),
        down("latency", json!({"latency": 40})),
    ];
    let (median, _) = rtts_through(&toxics, 5).await;
    assert_close("30 up + 40 down", median, 70 * MS, MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_not_delayed_chunk_after_chunk() {
    // 50 chunks sent 10 ms apart through a 100 ms latency arrive over
    // ~600 ms, not 50 × 100 ms: each waits from its own read time.
    let server = echo().await;
    let p = proxy(server.addr, &[down("latency", json!({"latency": 100}))]).await;
    let mut c = client(&p).await;
    let start = std::time::Instant::now();
    let (mut r, mut w) = c.split();
    within(10, async {
        tokio::join!(
            async {
                for _ in 0..50 {
                    tokio::io::AsyncWriteExt::write_all(&mut w, b"0123456789")
                        .await
                        .unwrap();
                    tokio::time::sleep(10 * MS).await;
                }
            },
            async {
                let mut buf = vec![0u8; 500];
                tokio::io::AsyncReadExt::read_exact(&mut r, &mut buf)
                    .await
                    .unwrap();
            }
        )
    })
    .await;
    let took = start.elapsed();
    assert!(took < 1000 * MS && took >= 590 * MS, "{took:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_latency_buffer_holds_more_than_one_pipe() {
    // 8 MiB arrive within the 200 ms: hundreds of chunks wait in the
    // toxic, more page slots than one pipe may have without privileges.
    let server = echo().await;
    let p = proxy(server.addr, &[down("latency", json!({"latency": 200}))]).await;
    let mut c = client(&p).await;
    let data = pattern(8 << 20);
    let start = std::time::Instant::now();
    let (mut r, mut w) = c.split();
    let ((), got) = within(20, async {
        tokio::join!(
            async {
                tokio::io::AsyncWriteExt::write_all(&mut w, &data)
                    .await
                    .unwrap()
            },
            async {
                let mut got = vec![0u8; data.len()];
                tokio::io::AsyncReadExt::read_exact(&mut r, &mut got)
                    .await
                    .unwrap();
                got
            }
        )
    })
    .await;
    assert!(got == data, "intact and in order");
    assert!(start.elapsed() >= 200 * MS);
    p.stop().await;
}
