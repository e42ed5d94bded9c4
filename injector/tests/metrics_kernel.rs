//! What the faults do, seen from outside: /metrics counts each kernel-native
//! toxic's packets per action from the BPF counters, /events reports the
//! toxics that fired with their rates, and the eBPF side's aya-log messages
//! reach the daemon's log.

mod common;
mod conformance_support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::*;
use conformance_support::{Daemon, Events};
use serde_json::json;

/// The value of the series `name{labels}` in a Prometheus text page.
fn series(page: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn metrics(d: &Daemon) -> String {
    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

fn kernel_proxy(d: &Daemon, name: &str, upstream: SocketAddr, pair: &Pair) {
    let proxy = json!({
        "name": name,
        "upstream": upstream.to_string(),
        "target": {"netns": pair.ns.name},
    });
    let r = d.post("/proxies", &proxy.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn loss_counts_its_drops_per_toxic_and_the_series_go_with_the_toxic() {
    require_root();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Daemon::with_kernel();
    let page = metrics(&d);
    assert_eq!(
        series(&page, "injector_up", ""),
        None,
        "no labels on health"
    );
    assert!(page.contains("\ninjector_up 1\n"), "{page}");
    assert!(page.contains("\ninjector_data_plane_loaded 1\n"), "{page}");
    assert!(page.contains("\ninjector_rules_installed 0\n"), "{page}");
    assert!(!page.contains("injector_toxic_packets_total"), "{page}");

    kernel_proxy(&d, "db", sink.addr, &pair);
    let toxic = json!({"name": "half", "type": "loss", "stream": "upstream",
                       "attributes": {"probability": 0.5}});
    let r = d.post("/proxies/db/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let page = metrics(&d);
    assert!(page.contains("\ninjector_rules_installed 1\n"), "{page}");
    assert!(page.contains("\ninjector_toxics 1\n"), "{page}");

    let n = 4000;
    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    pair.ns.run(move || send_udp(src, to, n));
    std::thread::sleep(Duration::from_millis(300));
    let got = sink.count();
    let page = metrics(&d);
    let pkts = |action: &str| {
        series(
            &page,
            "injector_toxic_packets_total",
            &format!("action=\"{action}\",proxy=\"db\",toxic=\"half\""),
        )
        .unwrap_or_else(|| panic!("no {action} series in\n{page}"))
    };
    let bytes = |action: &str| {
        series(
            &page,
            "injector_toxic_bytes_total",
            &format!("action=\"{action}\",proxy=\"db\",toxic=\"half\""),
        )
        .unwrap_or_else(|| panic!("no {action} bytes in\n{page}"))
    };
    assert_eq!(pkts("matched"), n as f64, "every datagram matched");
    assert_eq!(
        pkts("dropped"),
        (n - got) as f64,
        "drops counted = drops seen"
    );
    let (lo, hi) = binomial_999(n, 0.5);
    assert!(
        (lo..=hi).contains(&pkts("dropped")),
        "{} dropped of {n} at p=0.5; expected {lo:.0}..{hi:.0}",
        pkts("dropped")
    );
    // Same-sized datagrams: bytes per packet agree, and cover the headers.
    let per_packet = bytes("matched") / pkts("matched");
    assert!(per_packet >= 28.0 + 4.0, "{per_packet} bytes per datagram");
    assert_eq!(bytes("dropped"), pkts("dropped") * per_packet);

    assert_eq!(d.delete("/proxies/db/toxics/half").status, 204);
    let page = metrics(&d);
    assert!(!page.contains("toxic=\"half\""), "{page}");
    assert!(page.contains("\ninjector_rules_installed 0\n"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_and_the_ebpf_log_reaches_the_daemon_log() {
    require_root();
    let pair = Pair::new().await;
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Daemon::with_kernel_logging("debug");
    kernel_proxy(&d, "api", server.addr, &pair);
    let toxic = json!({"name": "no", "type": "refuse", "stream": "upstream"});
    let r = d.post("/proxies/api/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());

    let to = server.addr;
    let refused = pair.ns.run(move || {
        (0..5)
            .filter(|_| {
                matches!(connect(to, Duration::from_secs(5)),
                         Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
            })
            .count()
    });
    assert_eq!(refused, 5, "every connect() refused");
    let page = metrics(&d);
    assert_eq!(
        series(
            &page,
            "injector_toxic_packets_total",
            "action=\"refused\",proxy=\"api\",toxic=\"no\""
        ),
        Some(5.0),
        "{page}"
    );

    // aya-log records go through the log facade into tracing, at debug.
    let wanted = format!("refused a connection to port {}", server.addr.port());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.log_text().contains(&wanted) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("no {wanted:?} in the daemon log:\n{log}"));
    assert!(line.contains("DEBUG"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_toxic_that_drops_fires_events_with_its_rate() {
    require_root();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Daemon::with_kernel();
    let mut events = Events::open(d.port);
    kernel_proxy(&d, "db", sink.addr, &pair);
    let toxic = json!({"name": "hole", "type": "blackhole", "stream": "upstream"});
    let r = d.post("/proxies/db/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(events.next()["kind"], "added");
    assert_eq!(events.next()["toxic"], "hole");

    // About 1,000 datagrams a second for 4 s, well past one interval.
    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    let sender = pair.ns.spawn(move || {
        for _ in 0..40 {
            send_udp(src, to, 100);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // The first interval may have caught the start of the traffic: the
    // second is full.
    let first = events.next();
    assert_eq!(first["kind"], "fired", "{first}");
    let ev = events.next();
    sender.join().unwrap();
    assert_eq!(ev["kind"], "fired", "{ev}");
    assert_eq!(ev["proxy"], "db", "{ev}");
    assert_eq!(ev["toxic"], "hole", "{ev}");
    let pps = ev["packets_per_s"].as_f64().unwrap();
    // Sent at ~1,000/s minus sleeps and scheduling: a wide band.
    assert!((100.0..=2000.0).contains(&pps), "{pps} packets/s: {ev}");
    // Matched and dropped are two counters read apart: equal but for the
    // packets in flight at that instant.
    let mps = ev["matched_per_s"].as_f64().unwrap();
    assert!((mps - pps).abs() <= 5.0, "matched {mps}/s, dropped {pps}/s");
    let bps = ev["bytes_per_s"].as_f64().unwrap();
    assert!(bps >= pps * 32.0, "{bps} bytes/s for {pps} packets/s");
    assert_eq!(sink.count(), 0, "blackholed");
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_of_a_cgroup_target_are_counted_per_connection() {
    use std::io::{Read, Write};
    require_root();
    let cg = Cgroup::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || c.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let d = Daemon::with_kernel();
    let proxy = json!({"name": "svc", "upstream": addr.to_string(),
                       "target": {"cgroup": cg.rel}});
    let r = d.post("/proxies", &proxy.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    // One connection from inside the cgroup, open before the fault.
    let held = HeldConnection::open(&cg, addr);

    let toxic = json!({"name": "rst", "type": "reset", "stream": "downstream"});
    let r = d.post("/proxies/svc/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let resets = || {
        series(
            &metrics(&d),
            "injector_toxic_packets_total",
            "action=\"reset\",proxy=\"svc\",toxic=\"rst\"",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while resets().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let verdict = held.use_again();
    let _ = server.join();
    assert_eq!(
        verdict, "ConnectionAbortedError",
        "the connection was reset"
    );
    assert_eq!(resets(), Some(1.0), "one connection, one reset");
}

#[tokio::test(flavor = "multi_thread")]
async fn injector_watch_shows_a_toxic_firing_with_its_rate() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    require_root();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let d = Daemon::with_kernel();
    kernel_proxy(&d, "db", sink.addr, &pair);
    let toxic = json!({"name": "hole", "type": "blackhole", "stream": "upstream"});
    let r = d.post("/proxies/db/toxics", &toxic.to_string());
    assert_eq!(r.status, 200, "{}", r.text());

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut watch = Killed(
        Command::new(env!("CARGO_BIN_EXE_injector"))
            .args(["-h", &d.url(), "watch", "db"])
            .env_remove("TOXIPROXY_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run injector watch"),
    );
    let (tx, lines) = std::sync::mpsc::channel();
    let out = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let header = lines.recv_timeout(Duration::from_secs(10)).expect("header");
    assert!(header.starts_with("TIME"), "{header}");

    let (to, src) = (sink.addr, SocketAddr::new(pair.ns_v4.into(), 0));
    let sender = pair.ns.spawn(move || {
        for _ in 0..30 {
            send_udp(src, to, 100);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a fired line while the toxic drops");
    sender.join().unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[1..4], ["fired", "db", "hole"], "{line}");
    assert_eq!(cells[5], "pkt/s", "{line}");
    let pps: f64 = cells[4].parse().unwrap();
    assert!(pps > 0.0, "{line}");
}
