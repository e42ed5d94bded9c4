//! packet_loss in proxy mode: whole chunks vanish at the configured rate,
//! the stream is corrupted (gaps), never reordered.

mod proxy_support;

use std::time::Duration;

use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const RECORDS: u32 = 400;

/// Sends RECORDS 4-byte records one chunk each through an upstream
/// packet_loss toxic; returns the record numbers the server got.
async fn survivors(attrs: serde_json::Value) -> Vec<u32> {
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let server = serve(move |mut s| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut got = vec![];
            let _ = s.read_to_end(&mut got).await;
            if let Some(tx) = tx {
                let _ = tx.send(got);
            }
        }
    })
    .await;
    let p = proxy(server.addr, &[up("packet_loss", attrs)]).await;
    let mut c = client(&p).await;
    for i in 0..RECORDS {
        c.write_all(&i.to_be_bytes()).await.unwrap();
        // Spaced so that each record is a chunk of its own.
        tokio::time::sleep(Duration::from_micros(700)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(c);
    let got = within(10, rx).await.unwrap();
    p.stop().await;
    assert_eq!(got.len() % 4, 0, "whole chunks are dropped, never parts");
    got.chunks(4)
        .map(|r| u32::from_be_bytes(r.try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_chunks_at_the_loss_rate() {
    let kept = survivors(json!({"loss_rate": 0.5})).await;
    // Binomial(400, 0.5): 200 ± 40 is beyond 4 sigma. Chunks that merged
    // under load widen the spread a little; the mean stays.
    assert!(
        (140..=260).contains(&kept.len()),
        "kept {} of {RECORDS}",
        kept.len()
    );
    assert!(kept.is_sorted_by(|a, b| a < b), "gaps, no reordering");
    assert!(kept.iter().all(|r| *r < RECORDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_one_drops_everything_after_the_first_loss() {
    let kept = survivors(json!({"loss_rate": 0.1, "correlation": 1.0})).await;
    let expected: Vec<u32> = (0..kept.len() as u32).collect();
    assert_eq!(kept, expected, "a prefix survives");
    assert!(kept.len() < RECORDS as usize, "0.9^400: something is lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_loss_keeps_everything() {
    let kept = survivors(json!({"loss_rate": 0.0})).await;
    assert_eq!(kept, (0..RECORDS).collect::<Vec<_>>());
}
