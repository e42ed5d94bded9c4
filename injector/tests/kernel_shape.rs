//! Shaping faults: bandwidth (htb classes), and the netem family (latency,
//! jitter, corrupt, duplicate, reorder). Each netem test checks the kernel
//! first: where netem is missing (this project's build kernel) the fault
//! must be refused with an error naming it; where it exists (the stock
//! kernel of `cargo xtask vm-test`) the effect is measured.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
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
    (
        DataPlane::load().await.expect("load data plane"),
        Pair::new().await,
    )
}

/// Bytes a sink received between `from` and `to` after the first byte.
struct Meter {
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// A TCP server that discards what it reads, counting bytes.
fn sink(bind: SocketAddr, ns: Option<&Ns>) -> (SocketAddr, Meter) {
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let body = {
        let (bytes, stop) = (bytes.clone(), stop.clone());
        move || {
            let l = TcpListener::bind(bind).unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (mut c, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::SeqCst) {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(_) => {}
                }
            }
        }
    };
    match ns {
        Some(ns) => drop(ns.spawn(body)),
        None => drop(std::thread::spawn(body)),
    }
    (rx.recv().unwrap(), Meter { bytes, stop })
}

/// Writes as fast as possible for `secs` seconds.
fn blast(to: SocketAddr, secs: f64, ns: Option<&Ns>) -> std::thread::JoinHandle<()> {
    let body = move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let chunk = vec![1u8; 1 << 15];
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < secs {
            let _ = s.write(&chunk);
        }
    };
    match ns {
        Some(ns) => ns.spawn(body),
        None => std::thread::spawn(body),
    }
}

/// Steady-state rate (bytes/s) of a transfer, skipping its first second
/// (slow start, the htb burst).
fn steady_rate(m: &Meter, secs: f64) -> f64 {
    std::thread::sleep(Duration::from_secs(1));
    let b0 = m.bytes.load(Ordering::SeqCst);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs - 1.5));
    let b1 = m.bytes.load(Ordering::SeqCst);
    (b1 - b0) as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn bandwidth_limits_what_the_target_sends_and_spares_the_neighbour() {
    let (dp, pair) = setup().await;
    let (limited_addr, limited) = sink(SocketAddr::new(pair.host_v4.into(), 0), None);
    let (free_addr, free) = sink(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = KernelProxy::start(
        &dp,
        "bw",
        &limited_addr.to_string(),
        &Target::Netns(pair.ns.name.clone()),
    )
    .await
    .unwrap();
    // 400 KB/s, ToxiProxy's unit (1 KB = 1000 bytes).
    p.set_toxics(&[toxic("bandwidth", Stream::Upstream, json!({"rate": 400}))])
        .await
        .unwrap();
    let a = blast(limited_addr, 4.0, Some(&pair.ns));
    let b = blast(free_addr, 4.0, Some(&pair.ns));
    let (rate, neighbour) = std::thread::scope(|s| {
        let n = s.spawn(|| steady_rate(&free, 4.0));
        (steady_rate(&limited, 4.0), n.join().unwrap())
    });
    let _ = (a.join(), b.join());
    limited.stop.store(true, Ordering::SeqCst);
    free.stop.store(true, Ordering::SeqCst);
    assert!(
        (360_000.0..=440_000.0).contains(&rate),
        "limited flow ran at {rate:.0} B/s for a 400 KB/s limit"
    );
    assert!(
        neighbour > 10.0 * 400_000.0,
        "the neighbour flow ran at only {neighbour:.0} B/s"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bandwidth_limits_what_the_target_receives() {
    let (dp, pair) = setup().await;
    let (addr, meter) = sink(SocketAddr::new(pair.ns_v4.into(), 0), Some(&pair.ns));
    let mut p = KernelProxy::start(
        &dp,
        "bw",
        &addr.to_string(),
        &Target::Netns(pair.ns.name.clone()),
    )
    .await
    .unwrap();
    // The target is the upstream here: "upstream" = what it receives.
    p.set_toxics(&[toxic("bandwidth", Stream::Upstream, json!({"rate": 300}))])
        .await
        .unwrap();
    let h = blast(addr, 4.0, None);
    let rate = steady_rate(&meter, 4.0);
    let _ = h.join();
    meter.stop.store(true, Ordering::SeqCst);
    assert!(
        (270_000.0..=330_000.0).contains(&rate),
        "ran at {rate:.0} B/s for a 300 KB/s limit"
    );
    p.stop().await;
}

/// The fastest round trip: scheduling noise (an emulated VM, a loaded
/// host) only ever adds time, so the minimum is the cleanest estimate.
fn fastest(v: Vec<Duration>) -> Duration {
    v.into_iter().min().expect("samples")
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_delays_only_the_selected_flow() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let other = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = KernelProxy::start(
        &dp,
        "lat",
        &server.addr.to_string(),
        &Target::Netns(pair.ns.name.clone()),
    )
    .await
    .unwrap();
    let (to, to_other) = (server.addr, other.addr);
    let rtts = |to: SocketAddr| {
        move || {
            let mut s = connect(to, Duration::from_secs(5)).unwrap();
            (0..10)
                .map(|_| echo_round(&mut s, 10).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let base = fastest(pair.ns.run(rtts(to)));
    let t = toxic("latency", Stream::Downstream, json!({"latency": 200}));
    if netem_or_refusal(&mut p, t).await.is_none() {
        p.stop().await;
        return;
    }
    let slow = fastest(pair.ns.run(rtts(to)));
    let neighbour = fastest(pair.ns.run(rtts(to_other)));
    let added = slow.saturating_sub(base).as_secs_f64() * 1000.0;
    assert!(
        (190.0 - 1.0..=210.0 + 1.0).contains(&added),
        "added {added:.1} ms for a 200 ms latency"
    );
    assert!(
        neighbour < Duration::from_millis(20),
        "neighbour RTT {neighbour:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jitter_spreads_the_delay() {
    let (dp, pair) = setup().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = KernelProxy::start(
        &dp,
        "jit",
        &server.addr.to_string(),
        &Target::Netns(pair.ns.name.clone()),
    )
    .await
    .unwrap();
    let t = toxic(
        "latency",
        Stream::Downstream,
        json!({"latency": 100, "jitter": 40}),
    );
    if netem_or_refusal(&mut p, t).await.is_none() {
        p.stop().await;
        return;
    }
    let to = server.addr;
    let rtts = pair.ns.run(move || {
        let mut s = connect(to, Duration::from_secs(5)).unwrap();
        (0..30)
            .map(|_| echo_round(&mut s, 10).unwrap().as_secs_f64() * 1000.0)
            .collect::<Vec<f64>>()
    });
    let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
    let max = rtts.iter().cloned().fold(0.0, f64::max);
    assert!(
        min >= 60.0 - 1.0,
        "an RTT below latency - jitter: {min:.1} ms"
    );
    assert!(
        max <= 140.0 + 15.0,
        "an RTT above latency + jitter: {max:.1} ms"
    );
    assert!(max - min >= 20.0, "no spread: {min:.1}..{max:.1} ms");
    p.stop().await;
}

/// Bytes of each numbered datagram: large enough that a bit netem flips
/// almost always lands where a checksum or our own check sees it (a flip
/// in the source MAC, 6 of ~560 bytes, goes unnoticed by anyone).
const DATAGRAM: usize = 512;

/// The payload of datagram `i`: its number, then a pattern derived from it.
fn datagram(i: u32) -> Vec<u8> {
    let mut d = i.to_be_bytes().to_vec();
    d.extend((0..DATAGRAM - 4).map(|k| (k as u32).wrapping_mul(31).wrapping_add(i) as u8));
    d
}

/// Sends numbered datagrams from the namespace to a host socket and returns
/// the numbers of those that arrived intact, in arrival order.
fn numbered(pair: &Pair, n: u32) -> Vec<u32> {
    let rx = UdpSocket::bind(SocketAddr::new(pair.host_v4.into(), 0)).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let to = rx.local_addr().unwrap();
    // Read while the namespace sends: 2,000 datagrams left queued would
    // overflow the default receive buffer and pass for loss.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(k) = rx.recv(&mut buf) {
            if k == DATAGRAM {
                let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if buf[..k] == datagram(i)[..] {
                    got.push(i);
                }
            }
        }
        got
    });
    let src = SocketAddr::new(pair.ns_v4.into(), 0);
    pair.ns.run(move || {
        let s = UdpSocket::bind(src).unwrap();
        for i in 0..n {
            s.send_to(&datagram(i), to).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_duplicate_reorder_through_netem() {
    let (dp, pair) = setup().await;
    let target = Target::Netns(pair.ns.name.clone());
    let upstream = format!("{}/32", pair.host_v4);
    let n = 2000;

    let mut p = KernelProxy::start(&dp, "c", &upstream, &target)
        .await
        .unwrap();
    if netem_or_refusal(
        &mut p,
        toxic("corrupt", Stream::Upstream, json!({"probability": 0.3})),
    )
    .await
    .is_some()
    {
        // A flipped bit fails a checksum (the receiver drops the datagram)
        // or our own check; only a flip in the source MAC goes unseen.
        let got = numbered(&pair, n).len() as u32;
        let unseen = 6.0 / (DATAGRAM + 42) as f64;
        let (lo, _) = binomial_999(n, 0.7);
        let (_, hi) = binomial_999(n, 0.7 + 0.3 * unseen);
        assert!(
            (lo..=hi).contains(&(got as f64)),
            "{got} of {n} survived 30 % corruption"
        );
    }
    p.stop().await;

    let mut p = KernelProxy::start(&dp, "d", &upstream, &target)
        .await
        .unwrap();
    if netem_or_refusal(
        &mut p,
        toxic("duplicate", Stream::Upstream, json!({"probability": 0.5})),
    )
    .await
    .is_some()
    {
        let got = numbered(&pair, n).len() as u32;
        let extra = got - n;
        let (lo, hi) = binomial_999(n, 0.5);
        assert!(
            (lo..=hi).contains(&(extra as f64)),
            "{extra} duplicates of {n} at 50 %"
        );
    }
    p.stop().await;

    let mut p = KernelProxy::start(&dp, "r", &upstream, &target)
        .await
        .unwrap();
    if netem_or_refusal(
        &mut p,
        toxic(
            "reorder",
            Stream::Upstream,
            json!({"probability": 0.5, "delay": 20}),
        ),
    )
    .await
    .is_some()
    {
        let got = numbered(&pair, 500);
        assert_eq!(got.len(), 500, "reordering loses nothing");
        let inversions = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(inversions >= 20, "only {inversions} packets out of order");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_shaping_toxic_removes_its_qdiscs() {
    let (dp, pair) = setup().await;
    let nl = injector::kernel::netlink::Netlink::current().unwrap();
    let before = nl.qdiscs(pair.host_index).await.unwrap();
    let mut p = KernelProxy::start(
        &dp,
        "q",
        &format!("{}:80", pair.host_v4),
        &Target::Netns(pair.ns.name.clone()),
    )
    .await
    .unwrap();
    p.set_toxics(&[
        toxic("bandwidth", Stream::Upstream, json!({"rate": 100})),
        toxic("bandwidth", Stream::Downstream, json!({"rate": 100})),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let during = nl.qdiscs(pair.host_index).await.unwrap();
    assert!(
        during.iter().any(|q| q.kind == "htb"),
        "root htb on the veth: {during:?}"
    );
    let ifbs = nl.links().await.unwrap();
    assert!(
        ifbs.iter().any(|l| l.name.starts_with("inj-ifb")),
        "an ifb for what the target sends"
    );
    p.stop().await;
    let after = nl.qdiscs(pair.host_index).await.unwrap();
    assert_eq!(after, before, "qdiscs restored");
    let links = nl.links().await.unwrap();
    assert!(
        !links
            .iter()
            .any(|l| l.name == format!("inj-ifb{}", pair.host_index)),
        "ifb removed"
    );
}
