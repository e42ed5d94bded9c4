//! The daemon and the kernel together: a kernel-native proxy created over
//! the API acts on a namespace's traffic, and its fault ends on time even
//! while the daemon is stopped (the deadline lives in the BPF rule).

mod common;
mod conformance_support;

use std::{net::SocketAddr, time::Duration};

use common::*;
use conformance_support::Daemon;
use serde_json::json;

fn signal(pid: u32, sig: i32) {
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "kill({pid}, {sig})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_expires_in_the_kernel_while_the_daemon_is_stopped() {
    require_root();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Daemon::with_kernel();
    let proxy = json!({
        "name": "cut",
        "upstream": sink.addr.to_string(),
        "target": {"netns": pair.ns.name},
    });
    let r = d.post("/proxies", &proxy.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let toxic = json!({"name": "hole", "type": "blackhole", "stream": "upstream", "ttl_ms": 1500});
    let r = d.post("/proxies/cut/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());

    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0, "blackholed while the toxic lives");

    // A stopped daemon can neither remove the rule nor prolong it.
    signal(d.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1700));
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    let got = sink.count();
    signal(d.pid(), libc::SIGCONT);
    assert_eq!(
        got, 20,
        "traffic flows after the deadline, daemon still stopped"
    );

    // Once it runs again, the daemon forgets the expired toxic.
    let mut listed = String::new();
    for _ in 0..50 {
        listed = d.get("/proxies/cut/toxics").text();
        if listed == "[]" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed, "[]");
}

/// A toxic named `name`: toxic names key the engine's rules.
fn named(kind: &str, name: &str, attrs: serde_json::Value) -> injector::model::Toxic {
    let mut t = toxic(kind, injector::model::Stream::Upstream, attrs);
    t.name = name.into();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_rules_install_and_still_match_exactly() {
    require_root();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let other = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let dp = injector::kernel::DataPlane::load().await.unwrap();
    let target = injector::model::Target::Netns(pair.ns.name.clone());
    let toxics = [
        named("loss", "a", json!({"probability": 1.0})),
        named("reset", "b", json!({})),
        named("noop", "c", json!({})),
        named("blackhole", "d", json!({})),
    ];
    // 2,500 upstreams of 4 rules each, on one interface: 10,000 rules.
    let mut proxies = Vec::new();
    for i in 0..2500u32 {
        let addr = std::net::Ipv4Addr::from(0x0a64_0000 + i);
        let mut p =
            injector::kernel::KernelProxy::start(&dp, "many", &format!("{addr}/32"), &target)
                .await
                .unwrap();
        p.set_toxics(&toxics).await.unwrap();
        proxies.push(p);
    }
    // ...and one more that selects only the sink's port.
    let mut cut = injector::kernel::KernelProxy::start(&dp, "cut", &sink.addr.to_string(), &target)
        .await
        .unwrap();
    cut.set_toxics(&[named("blackhole", "d", json!({}))])
        .await
        .unwrap();
    assert_eq!(dp.rule_count().await, 10_001);
    let src = SocketAddr::new(pair.ns_v4.into(), 0);
    let (a, b) = (sink.addr, other.addr);
    pair.ns.run(move || {
        send_udp(src, a, 50);
        send_udp(src, b, 50);
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        sink.count(),
        0,
        "the one rule for the sink still acts among 10,000"
    );
    assert_eq!(other.count(), 50, "no rule selects the other port");
    cut.stop().await;
    for p in proxies {
        p.stop().await;
    }
    assert_eq!(dp.rule_count().await, 0);
}
