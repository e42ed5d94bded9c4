//! Chain changes reach open connections, as in ToxiProxy: added toxics
//! apply, updates take effect, removal flushes what the toxic held.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_added_to_an_open_connection_applies_to_it() {
    let server = echo().await;
    let p = proxy(server.addr, &[]).await;
    let mut c = client(&p).await;
    assert!(median_rtt(&mut c, 3).await < 30 * MS);
    p.set_toxics(&[down("latency", json!({"latency": 100}))]);
    tokio::time::sleep(10 * MS).await;
    assert_close("after adding", median_rtt(&mut c, 5).await, 100 * MS, MS);
    // And stacking with a second one appended later.
    p.set_toxics(&[
        down("latency", json!({"latency": 100})),
        up("latency", json!({"latency": 50})),
    ]);
    tokio::time::sleep(10 * MS).await;
    assert_close("after appending", median_rtt(&mut c, 5).await, 150 * MS, MS);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_takes_effect_on_open_connections() {
    let server = echo().await;
    let p = proxy(server.addr, &[down("latency", json!({"latency": 100}))]).await;
    let mut c = client(&p).await;
    assert_close("before", median_rtt(&mut c, 3).await, 100 * MS, MS);
    p.set_toxics(&[down("latency", json!({"latency": 20}))]);
    tokio::time::sleep(10 * MS).await;
    assert_close("after the update", median_rtt(&mut c, 5).await, 20 * MS, MS);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_flushes_what_the_toxic_held() {
    let server = echo().await;
    let p = proxy(server.addr, &[down("latency", json!({"latency": 5000}))]).await;
    let mut c = client(&p).await;
    // Several chunks held in the latency buffer.
    for i in 0..5u8 {
        c.write_all(&[b'a' + i; 3]).await.unwrap();
        tokio::time::sleep(5 * MS).await;
    }
    tokio::time::sleep(100 * MS).await;
    let t = Instant::now();
    p.set_toxics(&[]);
    let mut got = [0u8; 15];
    within(2, c.read_exact(&mut got)).await.unwrap();
    assert!(
        t.elapsed() < 100 * MS + LOAD_SLACK,
        "flushed at once: {:?}",
        t.elapsed()
    );
    assert_eq!(&got, b"aaabbbcccdddeee", "in order, nothing lost");
    // The connection carries on without the toxic.
    assert!(median_rtt(&mut c, 3).await < 30 * MS);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_first_of_two_keeps_the_second() {
    let server = echo().await;
    let toxics = [
        down("latency", json!({"latency": 3000})),
        down("slow_close", json!({"delay": 10})),
    ];
    let p = proxy(server.addr, &toxics).await;
    let mut c = client(&p).await;
    c.write_all(b"held").await.unwrap();
    tokio::time::sleep(50 * MS).await;
    p.set_toxics(&toxics[1..]);
    let mut got = [0u8; 4];
    within(2, c.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"held");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_changes_nothing() {
    let server = echo().await;
    let p = proxy(
        server.addr,
        &[down("noop", json!({})), up("noop", json!({}))],
    )
    .await;
    let mut c = client(&p).await;
    let data = pattern(1 << 20);
    let (mut r, mut w) = c.split();
    let ((), got) = within(10, async {
        tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        })
    })
    .await;
    assert!(got == data);
    assert!(median_rtt(&mut c, 3).await < 30 * MS);
    p.stop().await;
}
