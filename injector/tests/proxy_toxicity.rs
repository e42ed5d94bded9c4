//! toxicity in proxy mode: one roll per connection and direction (not per
//! chunk); 0 never, 1 always, 0.5 about half the connections.

mod proxy_support;

use std::time::Duration;

use injector::model::Stream;
use proxy_support::*;
use serde_json::json;

/// How many of `n` connections see a 200 ms downstream latency toxic of
/// `toxicity`; each connection is probed twice and must be consistent.
async fn slowed(toxicity: f32, n: usize) -> usize {
    let server = echo().await;
    let t = toxic(
        "lat",
        "latency",
        Stream::Downstream,
        toxicity,
        json!({"latency": 200}),
    );
    let p = proxy(server.addr, &[t]).await;
    let probes = (0..n).map(|_| async {
        let mut c = client(&p).await;
        let a = rtt(&mut c).await;
        let b = rtt(&mut c).await;
        let slow = |d: Duration| d >= Duration::from_millis(190);
        assert_eq!(
            slow(a),
            slow(b),
            "rolled once per connection: {a:?} then {b:?}"
        );
        slow(a)
    });
    let results = within(30, futures::future::join_all(probes)).await;
    p.stop().await;
    results.into_iter().filter(|s| *s).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_zero_never_applies() {
    assert_eq!(slowed(0.0, 20).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_one_always_applies() {
    assert_eq!(slowed(1.0, 20).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_half_applies_to_about_half() {
    // Binomial(60, 0.5): 30 ± 15 is beyond 3.8 sigma.
    let n = slowed(0.5, 60).await;
    assert!((15..=45).contains(&n), "{n} of 60 slowed");
}
