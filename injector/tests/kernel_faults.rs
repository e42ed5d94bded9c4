//! Drop, refuse and reset faults on real sockets, applied in the kernel to
//! a namespace joined to the host by a veth (what a container is). Runs as
//! root; every namespace, veth and rule is removed on every exit path.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use injector::{
    kernel::{DataPlane, KernelProxy},
    model::{Stream, Target},
};
use serde_json::json;

async fn setup() -> (Arc<DataPlane>, Pair) {
    require_root();
    let dp = DataPlane::load().await.expect("load data plane");
    let pair = Pair::new().await;
    (dp, pair)
}

async fn proxy(dp: &Arc<DataPlane>, pair: &Pair, upstream: &str) -> KernelProxy {
    KernelProxy::start(dp, "p", upstream, &Target::Netns(pair.ns.name.clone()))
        .await
        .expect("start kernel proxy")
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_loss_hits_the_requested_share_and_spares_the_neighbour() {
    let (dp, pair) = setup().await;
    let faulted = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let neighbour = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &faulted.addr.to_string()).await;
    p.set_toxics(&[toxic("loss", Stream::Upstream, json!({"probability": 0.3}))])
        .await
        .unwrap();
    let n = 6000;
    let (a, b) = (faulted.addr, neighbour.addr);
    let src = SocketAddr::new(pair.ns_v4.into(), 0);
    pair.ns.run(move || {
        send_udp(src, a, n);
        send_udp(src, b, n);
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = faulted.count();
    let (lo, hi) = binomial_999(n, 0.7);
    assert!(
        (lo..=hi).contains(&(got as f64)),
        "received {got} of {n} with 30 % loss; expected {lo:.0}..{hi:.0}"
    );
    assert_eq!(neighbour.count(), n, "the neighbour flow lost packets");
    let c = dp.counters(&p.rule_ids("loss_Upstream")).await;
    assert_eq!(
        c.matched_pkts, n as u64,
        "every faulted datagram was matched"
    );
    assert_eq!(c.acted_pkts, (n - got) as u64, "drops counted = drops seen");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_loss_is_per_packet_and_the_stream_survives() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &server.addr.to_string()).await;
    p.set_toxics(&[toxic(
        "loss",
        Stream::Downstream,
        json!({"probability": 0.2}),
    )])
    .await
    .unwrap();
    let to = server.addr;
    let rounds = pair.ns.run(move || {
        // Long timeouts: at 20 % loss a segment is lost 6 times in a row
        // once in 15,625, and its 7th try comes 12.6 s later (RTO backoff);
        // 60 s needs 9 losses in a row, rare enough over ~600 segments.
        let mut s = connect(to, Duration::from_secs(60)).expect("connect under 20 % loss");
        let mut ok = 0;
        for _ in 0..300 {
            echo_round(&mut s, 100).expect("echo under loss");
            ok += 1;
        }
        ok
    });
    assert_eq!(rounds, 300);
    let c = dp.counters(&p.rule_ids("loss_Downstream")).await;
    assert!(c.matched_pkts >= 300, "matched {}", c.matched_pkts);
    let (lo, hi) = binomial_999(c.matched_pkts as u32, 0.2);
    assert!(
        (lo..=hi).contains(&(c.acted_pkts as f64)),
        "dropped {} of {} packets at p=0.2; expected {lo:.0}..{hi:.0}",
        c.acted_pkts,
        c.matched_pkts
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blackhole_is_silent_for_tcp_and_udp_and_ends_on_removal() {
    let (dp, pair) = setup().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &pair.host_v4.to_string()).await;
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let (to_udp, to_tcp) = (sink.addr, server.addr);
    let src = SocketAddr::new(pair.ns_v4.into(), 0);
    let (udp_send_ok, tcp) = pair.ns.run(move || {
        let s = std::net::UdpSocket::bind(src).unwrap();
        // A silent drop: sendto succeeds (no EPERM as with cgroup drops).
        let sent = s.send_to(b"x", to_udp).is_ok();
        let t = Instant::now();
        let r = connect(to_tcp, Duration::from_millis(800));
        (sent, (r.map(drop).map_err(|e| e.kind()), t.elapsed()))
    });
    assert!(udp_send_ok);
    assert_eq!(
        tcp.0,
        Err(ErrorKind::TimedOut),
        "connect must hang, not fail fast"
    );
    assert!(tcp.1 >= Duration::from_millis(700));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0);
    p.set_toxics(&[]).await.unwrap();
    pair.ns.run(move || {
        send_udp(src, to_udp, 10);
        connect(to_tcp, Duration::from_secs(2)).expect("traffic flows again");
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 10);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuse_fails_connects_at_once_from_and_to_the_target() {
    let (dp, pair) = setup().await;
    let host_server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let ns_server = TcpServer::echo(SocketAddr::new(pair.ns_v4.into(), 0), Some(&pair.ns));
    // The target as client: its connects to the upstream are refused.
    let mut out = proxy(&dp, &pair, &host_server.addr.to_string()).await;
    out.set_toxics(&[toxic("refuse", Stream::Downstream, json!({}))])
        .await
        .unwrap();
    let to = host_server.addr;
    let (kind, took) = pair.ns.run(move || {
        let t = Instant::now();
        let r = connect(to, Duration::from_secs(3));
        (r.map(drop).map_err(|e| e.kind()), t.elapsed())
    });
    assert_eq!(kind, Err(ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_millis(500), "refusal took {took:?}");
    // The target as server: clients connecting to it are refused.
    let mut inn = proxy(&dp, &pair, &ns_server.addr.to_string()).await;
    inn.set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let r = connect(ns_server.addr, Duration::from_secs(3));
    assert_eq!(
        r.map(drop).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );
    // Other ports of the same target are untouched.
    let other = TcpServer::echo(SocketAddr::new(pair.ns_v4.into(), 0), Some(&pair.ns));
    let mut s = connect(other.addr, Duration::from_secs(3)).expect("neighbour port connects");
    echo_round(&mut s, 10).unwrap();
    out.stop().await;
    inn.stop().await;
}

/// Accepts one connection and reports the error its next read gets.
fn server_reporting_errors(
    bind: SocketAddr,
) -> (SocketAddr, std::thread::JoinHandle<Option<ErrorKind>>) {
    let l = TcpListener::bind(bind).unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    if let Err(e) = c.write_all(&buf[..n]) {
                        return Some(e.kind());
                    }
                }
                Err(e) => return Some(e.kind()),
            }
        }
    });
    (addr, h)
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_is_seen_by_both_ends() {
    let (dp, pair) = setup().await;
    let (addr, server) = server_reporting_errors(SocketAddr::new(pair.host_v4.into(), 0));
    let mut p = proxy(&dp, &pair, &addr.to_string()).await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let client = pair.ns.spawn(move || {
        let mut s = connect(addr, Duration::from_secs(5)).unwrap();
        echo_round(&mut s, 10).expect("before the fault");
        done_tx.send(()).unwrap();
        rx.recv().unwrap();
        // The first packet after the fault carries the reset.
        let _ = s.write_all(b"hello");
        let mut buf = [0u8; 16];
        s.read(&mut buf).map(|_| ()).map_err(|e| e.kind())
    });
    done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    p.set_toxics(&[toxic("reset", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    tx.send(()).unwrap();
    assert_eq!(
        client.join().unwrap(),
        Err(ErrorKind::ConnectionReset),
        "client"
    );
    assert_eq!(
        server.join().unwrap(),
        Some(ErrorKind::ConnectionReset),
        "server"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_after_bytes_lets_that_many_through() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &server.addr.to_string()).await;
    p.set_toxics(&[toxic(
        "reset",
        Stream::Upstream,
        json!({"after_bytes": 1000}),
    )])
    .await
    .unwrap();
    let to = server.addr;
    let rounds = pair.ns.run(move || {
        let mut s = connect(to, Duration::from_secs(5)).unwrap();
        let mut rounds = 0;
        loop {
            match echo_round(&mut s, 100) {
                Ok(_) => rounds += 1,
                Err(e) => return (rounds, e.kind()),
            }
            if rounds > 50 {
                return (rounds, ErrorKind::Other);
            }
        }
    });
    assert_eq!(rounds, (10, ErrorKind::ConnectionReset));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_after_ms_waits_for_the_flow_to_age() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &server.addr.to_string()).await;
    p.set_toxics(&[toxic("reset", Stream::Upstream, json!({"after_ms": 400}))])
        .await
        .unwrap();
    let to = server.addr;
    let (lived, kind) = pair.ns.run(move || {
        let mut s = connect(to, Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        loop {
            if let Err(e) = echo_round(&mut s, 10) {
                return (t.elapsed(), e.kind());
            }
            std::thread::sleep(Duration::from_millis(20));
            if t.elapsed() > Duration::from_secs(5) {
                return (t.elapsed(), ErrorKind::Other);
            }
        }
    });
    assert_eq!(kind, ErrorKind::ConnectionReset);
    assert!(
        lived >= Duration::from_millis(380) && lived < Duration::from_millis(1000),
        "reset after {lived:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_is_enforced_in_the_kernel() {
    let (dp, pair) = setup().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &sink.addr.to_string()).await;
    let mut t = toxic("blackhole", Stream::Upstream, json!({}));
    // Long enough to be alive when the first datagrams go out on a loaded
    // machine, short enough to keep the test quick.
    t.ttl_ms = Some(1500);
    t.expires_at = Some(Instant::now() + Duration::from_millis(1500));
    p.set_toxics(&[t]).await.unwrap();
    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0, "blackholed while alive");
    // Nothing in userland removes the rule: the kernel checks the deadline.
    std::thread::sleep(Duration::from_millis(1500));
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 20, "traffic flows after the deadline");
    assert_eq!(dp.rule_count().await, 1, "the rule is still installed");
    p.stop().await;
    assert_eq!(dp.rule_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_traffic_is_matched_too() {
    let (dp, pair) = setup().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v6.into(), 0), None);
    let mut p = proxy(&dp, &pair, &sink.addr.to_string()).await;
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v6.into(), 0));
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0);
    p.set_toxics(&[]).await.unwrap();
    pair.ns.run(move || send_udp(src, to, 20));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 20);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn toxicity_picks_whole_connections() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = proxy(&dp, &pair, &server.addr.to_string()).await;
    let mut t = toxic("refuse", Stream::Upstream, json!({}));
    t.toxicity = 0.5;
    p.set_toxics(&[t]).await.unwrap();
    let to = server.addr;
    let n = 400;
    let refused = pair.ns.run(move || {
        (0..n)
            .filter(|_| {
                matches!(connect(to, Duration::from_secs(2)), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
            })
            .count()
    });
    let (lo, hi) = binomial_999(n, 0.5);
    assert!(
        (lo..=hi).contains(&(refused as f64)),
        "{refused} of {n} connections refused at toxicity 0.5"
    );
    p.stop().await;
}
