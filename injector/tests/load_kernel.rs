//! 1,000 API clients at once against kernel-native proxies while traffic
//! flows through the faulted namespace (issue 7; ToxiProxy #159 and #412
//! deadlocked under far less): every call answers, the final state is
//! exactly what the successful calls left, and the kernel agrees with it.

mod common;
mod conformance_support;

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use common::*;
use conformance_support::Daemon;
use serde_json::{Value, json};

const CLIENTS: usize = 1000;

/// What one client leaves behind: its proxy, and its toxic if it kept it.
struct Left {
    proxy: Option<String>,
    toxic: Option<String>,
}

/// One client's session: a proxy of its own on the shared target (an
/// address no traffic goes to), a toxic added, read back and maybe
/// removed, the proxy maybe deleted. Any unexpected answer fails the test.
fn client(d: &Daemon, netns: &str, i: usize) -> Left {
    let proxy = format!("c{i}");
    let upstream = format!("198.18.{}.{}:80", i / 250, 1 + i % 250);
    let r = d.post(
        "/proxies",
        &json!({"name": proxy, "upstream": upstream, "target": {"netns": netns}}).to_string(),
    );
    assert_eq!(r.status, 201, "create {proxy}: {}", r.text());
    let kind = ["blackhole", "loss", "reset_peer", "refuse"][i % 4];
    let attributes = match kind {
        "loss" => json!({"probability": 0.5}),
        _ => json!({}),
    };
    let r = d.post(
        &format!("/proxies/{proxy}/toxics"),
        &json!({"name": "t", "type": kind, "stream": "upstream", "attributes": attributes})
            .to_string(),
    );
    assert_eq!(r.status, 200, "toxic on {proxy}: {}", r.text());
    let r = d.get(&format!("/proxies/{proxy}/toxics/t"));
    assert_eq!(r.status, 200, "read back on {proxy}: {}", r.text());
    assert_eq!(r.json()["type"], kind);
    let toxic = if i.is_multiple_of(3) {
        Some(format!("{proxy}/t"))
    } else {
        let r = d.delete(&format!("/proxies/{proxy}/toxics/t"));
        assert_eq!(r.status, 204, "remove on {proxy}: {}", r.text());
        None
    };
    if i.is_multiple_of(5) {
        assert_eq!(d.delete(&format!("/proxies/{proxy}")).status, 204);
        return Left {
            proxy: None,
            toxic: None,
        };
    }
    Left {
        proxy: Some(proxy),
        toxic,
    }
}

/// Datagrams from the namespace to `to` that arrive at `sink`.
fn delivered(pair: &Pair, sink: &UdpSink, n: u32) -> u32 {
    let before = sink.count();
    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    pair.ns.run(move || send_udp(src, to, n));
    thread::sleep(Duration::from_millis(200));
    sink.count() - before
}

#[test]
fn a_thousand_clients_under_traffic_leave_the_api_and_the_kernel_consistent() {
    require_root();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pair = rt.block_on(Pair::new());
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Arc::new(Daemon::with_kernel());
    let hot = json!({"name": "hot", "upstream": sink.addr.to_string(), "target": {"netns": pair.ns.name}});
    assert_eq!(d.post("/proxies", &hot.to_string()).status, 201);

    // Traffic through the target the whole time, half of it lost while the
    // hot proxy's toggler has its toxic in.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent, to) = (stop.clone(), sent.clone(), sink.addr);
        let src = SocketAddr::new(pair.ns_v4.into(), 0);
        pair.ns.spawn(move || {
            let s = UdpSocket::bind(src).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = s.send_to(b"flow", to);
                sent.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let toggler = {
        let (d, stop) = (d.clone(), stop.clone());
        thread::spawn(move || {
            let mut rounds = 0;
            let body = json!({"name": "flap", "type": "loss", "stream": "upstream", "attributes": {"probability": 0.5}});
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(d.post("/proxies/hot/toxics", &body.to_string()).status, 200);
                assert_eq!(d.delete("/proxies/hot/toxics/flap").status, 204);
                rounds += 1;
            }
            rounds
        })
    };

    let netns = pair.ns.name.clone();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (d, netns) = (d.clone(), netns.clone());
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || client(&d, &netns, i))
                .unwrap()
        })
        .collect();
    let left: Vec<Left> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let toggles = toggler.join().unwrap();
    traffic.join().unwrap();
    assert!(toggles > 0, "the hot proxy's toxic never flapped");
    assert!(sink.count() > 0, "no traffic flowed during the run");
    assert_eq!(d.get("/version").status, 200, "the daemon died under load");

    // The API holds exactly what the successful calls left.
    let mut want_proxies: Vec<String> = left.iter().filter_map(|l| l.proxy.clone()).collect();
    want_proxies.push("hot".into());
    want_proxies.sort();
    let listed = d.get("/proxies").json();
    let mut got_proxies: Vec<String> = listed.as_object().unwrap().keys().cloned().collect();
    got_proxies.sort();
    assert_eq!(got_proxies, want_proxies);
    let mut want_toxics: Vec<String> = left.iter().filter_map(|l| l.toxic.clone()).collect();
    want_toxics.sort();
    let mut got_toxics: Vec<String> = listed
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, v)| {
            v["toxics"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t: &Value| format!("{p}/{}", t["name"].as_str().unwrap()))
        })
        .collect();
    got_toxics.sort();
    assert_eq!(got_toxics, want_toxics);

    // The kernel agrees: the hot flow is untouched now that its toxic is
    // gone (no stale rule from the churn), and cut when one is added.
    assert_eq!(
        delivered(&pair, &sink, 200),
        200,
        "a stale rule still drops the hot flow"
    );
    let hole = json!({"name": "hole", "type": "blackhole", "stream": "upstream"});
    assert_eq!(d.post("/proxies/hot/toxics", &hole.to_string()).status, 200);
    assert_eq!(
        delivered(&pair, &sink, 200),
        0,
        "the hot blackhole does not hold"
    );
    assert_eq!(d.delete("/proxies/hot/toxics/hole").status, 204);
    assert_eq!(delivered(&pair, &sink, 200), 200);

    // And the reset removes every fault at once.
    assert_eq!(d.post("/reset", "").status, 204);
    assert!(
        d.get("/proxies")
            .json()
            .as_object()
            .unwrap()
            .values()
            .all(|p| p["toxics"].as_array().unwrap().is_empty())
    );
}
