//! Zones over the API and the config file: named CIDR sets that
//! `blackhole` and `loss` toxics cut, both ways, whatever the proxy's
//! upstream says. The target is a namespace; the zones are the host ends
//! of two other veths (az-a, az-b), which the target reaches through its
//! default route to the host.

mod common;
mod conformance_support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::*;
use conformance_support::Daemon;
use serde_json::json;

struct Lab {
    d: Daemon,
    target: Pair,
    a: Pair,
    b: Pair,
}

impl Lab {
    async fn new(d: Daemon) -> Lab {
        require_root();
        let target = Pair::new().await;
        let a = Pair::new().await;
        let b = Pair::new().await;
        target.route_via_host();
        Lab { d, target, a, b }
    }

    fn put_zone(&self, name: &str, p: &Pair) -> u16 {
        let body = json!({"cidrs": [format!("{}/32", p.host_v4), p.host_v6.to_string()]});
        let r = self.d.request(
            "PUT",
            &format!("/zones/{name}"),
            Some(body.to_string().as_bytes()),
            &[],
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
        r.status
    }

    fn proxy(&self) {
        let proxy = json!({"name": "t", "upstream": "*", "target": {"netns": self.target.ns.name}});
        let r = self.d.post("/proxies", &proxy.to_string());
        assert_eq!(r.status, 201, "{}", r.text());
    }

    fn src(&self) -> SocketAddr {
        SocketAddr::new(self.target.ns_v4.into(), 0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_api_lists_validates_and_guards_zones_in_use() {
    let lab = Lab::new(Daemon::with_kernel()).await;
    assert_eq!(lab.d.get("/zones").text(), "{}");
    assert_eq!(lab.put_zone("az-a", &lab.a), 201);
    assert_eq!(lab.put_zone("az-a", &lab.a), 200, "a second PUT replaces");
    let r = lab.d.post("/zones/az-b", r#"{"cidrs":["10.0.2.0/24"]}"#);
    assert_eq!(r.status, 201, "POST works like PUT: {}", r.text());
    let all = lab.d.get("/zones").json();
    assert_eq!(
        all["az-a"]["cidrs"],
        json!([format!("{}/32", lab.a.host_v4), lab.a.host_v6.to_string()])
    );
    assert_eq!(
        all["az-b"],
        json!({"name": "az-b", "cidrs": ["10.0.2.0/24"]})
    );
    assert_eq!(
        lab.d.get("/zones/az-b").json(),
        json!({"name": "az-b", "cidrs": ["10.0.2.0/24"]})
    );
    lab.d
        .post("/zones/bad", r#"{"cidrs":["10.0.0.0/33"]}"#)
        .assert_error(400, "invalid prefix length in \"10.0.0.0/33\"");
    lab.d
        .post("/zones/bad", r#"{"cidrs":["not-an-ip"]}"#)
        .assert_error(400, "invalid address \"not-an-ip\"");
    lab.d
        .post("/zones/bad", r#"{"cidrs":[]}"#)
        .assert_error(400, "zone \"bad\" needs at least one CIDR");
    assert_eq!(lab.d.post("/zones/bad", r#"{"cidr":"x"}"#).status, 400);
    assert_eq!(lab.d.get("/zones/bad").status, 404);
    lab.d.get("/zones/nope").assert_error(404, "zone not found");
    lab.d
        .delete("/zones/nope")
        .assert_error(404, "zone not found");

    lab.proxy();
    // An unknown zone in a toxic is a 400, not a cut of everything.
    let r = lab.d.post(
        "/proxies/t/toxics",
        r#"{"name":"x","type":"blackhole","attributes":{"zones":["az-z"]}}"#,
    );
    r.assert_error(400, "unknown zone \"az-z\"");
    let r = lab.d.post(
        "/proxies/t/toxics",
        r#"{"name":"cut","type":"blackhole","attributes":{"zones":["az-a"]}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    lab.d
        .delete("/zones/az-a")
        .assert_error(409, "zone \"az-a\" is used by toxic t/cut; remove it first");
    assert_eq!(
        lab.d
            .request(
                "PUT",
                "/zones/az-a",
                Some(br#"{"cidrs":["10.9.9.9"]}"#),
                &[]
            )
            .status,
        409
    );
    assert_eq!(lab.d.delete("/proxies/t/toxics/cut").status, 204);
    assert_eq!(lab.d.delete("/zones/az-a").status, 204);
    assert_eq!(lab.d.get("/zones/az-a").status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_blackhole_cuts_exactly_the_zone_both_ways_until_removed() {
    let lab = Lab::new(Daemon::with_kernel()).await;
    lab.put_zone("az-a", &lab.a);
    lab.put_zone("az-b", &lab.b);
    lab.proxy();
    // Sinks on the zones' addresses (the target sends to them), and one in
    // the target (the zones send to it).
    let in_a = UdpSink::start(SocketAddr::new(lab.a.host_v4.into(), 0), None);
    let in_a6 = UdpSink::start(SocketAddr::new(lab.a.host_v6.into(), 0), None);
    let in_b = UdpSink::start(SocketAddr::new(lab.b.host_v4.into(), 0), None);
    let tcp_a = TcpServer::echo(SocketAddr::new(lab.a.host_v4.into(), 0), None);
    let tcp_b = TcpServer::echo(SocketAddr::new(lab.b.host_v4.into(), 0), None);
    let in_target = UdpSink::start(
        SocketAddr::new(lab.target.ns_v4.into(), 0),
        Some(&lab.target.ns),
    );
    let (from_a, from_b) = (
        SocketAddr::new(lab.a.host_v4.into(), 0),
        SocketAddr::new(lab.b.host_v4.into(), 0),
    );
    let src6 = SocketAddr::new(lab.target.ns_v6.into(), 0);
    let host = |src: SocketAddr, sink: &UdpSink| {
        send_udp(src, sink.addr, 20);
        std::thread::sleep(Duration::from_millis(150));
    };

    let r = lab.d.post(
        "/proxies/t/toxics",
        r#"{"name":"az-a-down","type":"blackhole","attributes":{"zones":["az-a"]}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        delivered(&lab.target.ns, lab.src(), &in_a, 20),
        0,
        "to zone a"
    );
    assert_eq!(
        delivered(&lab.target.ns, src6, &in_a6, 20),
        0,
        "to zone a, IPv6"
    );
    assert_eq!(
        delivered(&lab.target.ns, lab.src(), &in_b, 20),
        20,
        "to zone b"
    );
    let before = in_target.count();
    host(from_a, &in_target);
    assert_eq!(in_target.count(), before, "from zone a");
    host(from_b, &in_target);
    assert_eq!(in_target.count(), before + 20, "from zone b");
    let (ta, tb) = (tcp_a.addr, tcp_b.addr);
    let (cut, fine) = lab.target.ns.run(move || {
        let t = Instant::now();
        let cut = connect(ta, Duration::from_millis(700))
            .map(drop)
            .map_err(|e| e.kind());
        let mut s = connect(tb, Duration::from_secs(3)).expect("zone b connects");
        (cut.map(|_| t.elapsed()), echo_round(&mut s, 100).is_ok())
    });
    assert_eq!(
        cut,
        Err(std::io::ErrorKind::TimedOut),
        "connect to zone a hangs"
    );
    assert!(fine);

    // Removal restores traffic at once: the very next datagrams arrive.
    assert_eq!(lab.d.delete("/proxies/t/toxics/az-a-down").status, 204);
    assert_eq!(delivered(&lab.target.ns, lab.src(), &in_a, 20), 20);
    assert_eq!(delivered(&lab.target.ns, src6, &in_a6, 20), 20);
    let before = in_target.count();
    host(from_a, &in_target);
    assert_eq!(in_target.count(), before + 20);
    lab.target
        .ns
        .run(move || connect(ta, Duration::from_secs(3)).map(drop))
        .expect("zone a reachable again");
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_loss_drops_a_binomial_share_of_the_zone_only() {
    let lab = Lab::new(Daemon::with_kernel()).await;
    lab.put_zone("az-b", &lab.b);
    lab.proxy();
    let in_a = UdpSink::start(SocketAddr::new(lab.a.host_v4.into(), 0), None);
    let in_b = UdpSink::start(SocketAddr::new(lab.b.host_v4.into(), 0), None);
    let r = lab.d.post(
        "/proxies/t/toxics",
        r#"{"name":"flaky-b","type":"loss","attributes":{"probability":0.3,"zones":["az-b"]}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let n = 4000;
    let got = delivered(&lab.target.ns, lab.src(), &in_b, n);
    let (lo, hi) = binomial_999(n, 0.7);
    assert!(
        (lo..=hi).contains(&(got as f64)),
        "zone b got {got} of {n} at 30 % loss; expected {lo:.0}..{hi:.0}"
    );
    assert_eq!(
        delivered(&lab.target.ns, lab.src(), &in_a, n),
        n,
        "zone a untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zones_come_from_the_config_file() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let config = json!({
        "zones": {"az-a": ["10.0.1.0/24", "fd00:1::/64"], "az-b": ["10.0.2.7"]},
        "proxies": []
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let d = Daemon::with_kernel_and(&["--config", path.to_str().unwrap()]);
    assert_eq!(
        d.get("/zones").json(),
        json!({
            "az-a": {"name": "az-a", "cidrs": ["10.0.1.0/24", "fd00:1::/64"]},
            "az-b": {"name": "az-b", "cidrs": ["10.0.2.7"]}
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sets_lists_and_removes_zones() {
    let lab = Lab::new(Daemon::with_kernel()).await;
    let o = lab
        .d
        .cli(&["zone", "set", "az-b", "10.0.2.0/24", "fd00:2::/64"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "zone az-b: 10.0.2.0/24, fd00:2::/64\n"
    );
    assert_eq!(
        lab.d.get("/zones/az-b").json(),
        json!({"name": "az-b", "cidrs": ["10.0.2.0/24", "fd00:2::/64"]})
    );
    let o = lab.d.cli(&["zones", "list"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("az-b") && table.contains("fd00:2::/64"),
        "{table}"
    );
    let o = lab.d.cli(&["--json", "zone", "ls"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["az-b"]["cidrs"][0], "10.0.2.0/24");

    // The API's refusals come through as the CLI's error.
    let o = lab.d.cli(&["zone", "set", "bad", "10.0.0.0/99"]);
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).is_empty());
    let o = lab.d.cli(&["zone", "rm", "az-b"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lab.d.get("/zones").text(), "{}");
    let o = lab.d.cli(&["zone", "rm", "az-b"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("zone not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
