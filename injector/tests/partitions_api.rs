//! Partitions over the API: three namespaces A, B, C on one bridge; A and
//! B are cut from each other both ways in one call while A<->C and B<->C
//! keep working; DELETE heals at once, ttl_ms heals by itself.
//!
//! The namespaces talk over IPv6 and IPv4 on a bridge the test makes (see
//! Bridge in common).

mod common;
mod conformance_support;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use common::*;
use conformance_support::Daemon;
use serde_json::json;

struct Three {
    d: Daemon,
    a: Pair,
    b: Pair,
    c: Pair,
    bridge: Bridge,
}

impl Three {
    async fn new() -> Three {
        Three::with_daemon(Daemon::with_kernel()).await
    }

    async fn with_daemon(d: Daemon) -> Three {
        require_root();
        let a = Pair::new().await;
        let b = Pair::new().await;
        let c = Pair::new().await;
        let bridge = Bridge::new(&[&a, &b, &c]);
        Three { d, a, b, c, bridge }
    }

    fn ns(&self, i: usize) -> &Ns {
        [&self.a.ns, &self.b.ns, &self.c.ns][i]
    }

    fn addr(&self, i: usize) -> Ipv6Addr {
        self.bridge.addrs[i]
    }

    /// Datagrams that went from namespace `from` to namespace `to`, of 20.
    fn reach(&self, from: usize, to: usize) -> u32 {
        self.reach_at(self.addr(from).into(), from, self.addr(to).into(), to)
    }

    fn reach_at(&self, src: IpAddr, from: usize, dst: IpAddr, to: usize) -> u32 {
        let sink = UdpSink::start(SocketAddr::new(dst, 0), Some(self.ns(to)));
        let src = SocketAddr::new(src, 0);
        // The first datagram may wait for neighbour discovery: send one
        // ahead and count the next 20.
        let _ = delivered(self.ns(from), src, &sink, 1);
        delivered(self.ns(from), src, &sink, 20)
    }

    /// The same six directions over IPv4.
    fn matrix4(&self) -> [u32; 6] {
        let v4 = |i: usize| IpAddr::from(self.bridge.addrs4[i]);
        [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]
            .map(|(from, to)| self.reach_at(v4(from), from, v4(to), to))
    }

    /// A -> B, B -> A, A -> C, C -> A, B -> C, C -> B.
    fn matrix(&self) -> [u32; 6] {
        [
            self.reach(0, 1),
            self.reach(1, 0),
            self.reach(0, 2),
            self.reach(2, 0),
            self.reach(1, 2),
            self.reach(2, 1),
        ]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_cuts_a_from_b_both_ways_and_heals() {
    let t = Three::new().await;
    assert_eq!(t.matrix(), [20; 6], "all connected before");
    assert_eq!(t.matrix4(), [20; 6], "all connected before, IPv4");
    let body = json!({
        "name": "split",
        "a": [{"netns": t.a.ns.name}],
        "b": [{"netns": t.b.ns.name}],
    });
    let r = t.d.post("/partitions", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), body);
    assert_eq!(t.matrix(), [0, 0, 20, 20, 20, 20]);
    assert_eq!(t.matrix4(), [0, 0, 20, 20, 20, 20]);
    // TCP too: a connect from A to B hangs, from A to C works.
    let server_b = TcpServer::echo(SocketAddr::new(t.addr(1).into(), 0), Some(&t.b.ns));
    let server_c = TcpServer::echo(SocketAddr::new(t.addr(2).into(), 0), Some(&t.c.ns));
    let (to_b, to_c) = (server_b.addr, server_c.addr);
    let (cut, fine) = t.a.ns.run(move || {
        (
            connect(to_b, Duration::from_millis(700))
                .map(drop)
                .map_err(|e| e.kind()),
            connect(to_c, Duration::from_secs(3)).map(drop).is_ok(),
        )
    });
    assert_eq!(cut, Err(std::io::ErrorKind::TimedOut));
    assert!(fine);
    assert_eq!(t.d.get("/partitions").json(), json!({"split": body}));
    assert_eq!(t.d.get("/partitions/split").json(), body);
    t.d.post("/partitions", &body.to_string())
        .assert_error(409, "partition already exists");

    assert_eq!(t.d.delete("/partitions/split").status, 204);
    assert_eq!(t.matrix(), [20; 6], "healed at once");
    assert_eq!(t.matrix4(), [20; 6], "healed at once, IPv4");
    t.a.ns
        .run(move || connect(to_b, Duration::from_secs(3)).map(drop))
        .expect("A connects to B again");
    t.d.delete("/partitions/split")
        .assert_error(404, "partition not found");
    assert_eq!(t.d.get("/partitions").text(), "{}");

    // POST /reset removes every fault, partitions included.
    assert_eq!(t.d.post("/partitions", &body.to_string()).status, 201);
    assert_eq!(t.reach(1, 0), 0);
    assert_eq!(t.d.post("/reset", "").status, 204);
    assert_eq!(t.reach(1, 0), 20);
    assert_eq!(t.d.get("/partitions").text(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_heals_a_partition_and_cidrs_name_a_side() {
    let t = Three::new().await;
    // B given as an address: the rules live on A only, still both ways.
    let body = json!({
        "name": "brief",
        "a": [{"netns": t.a.ns.name}],
        "b": [t.addr(1).to_string()],
        "ttl_ms": 1500,
    });
    let r = t.d.post("/partitions", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(t.reach(0, 1), 0);
    assert_eq!(t.reach(1, 0), 0);
    assert_eq!(t.reach(1, 2), 20);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(t.reach(0, 1), 20, "the ttl healed it");
    assert_eq!(t.reach(1, 0), 20);
    assert_eq!(t.d.get("/partitions").text(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_partitions_are_refused_in_toxiproxy_form() {
    let t = Three::new().await;
    let post = |v: serde_json::Value| t.d.post("/partitions", &v.to_string());
    post(json!({"name": "x", "a": [], "b": ["10.0.0.1"]})).assert_error(
        400,
        "bad request body: a must be a non-empty array of targets and CIDRs",
    );
    post(json!({"name": "x", "a": ["10.0.0.1"], "b": ["10.0.0.2"]})).assert_error(
        400,
        "a partition needs at least one target (netns, container, pid, interface or cgroup) \
         to act on; CIDRs alone only say what to cut",
    );
    post(json!({"name": "x", "a": [{"netns": t.a.ns.name}], "b": ["10.0.0.300"]}))
        .assert_error(400, "invalid address \"10.0.0.300\"");
    assert_eq!(
        post(json!({"name": "x", "a": [{"netns": "injt-no-such-ns"}], "b": ["10.0.0.2"]})).status,
        404
    );
    assert_eq!(t.d.post("/partitions", "{").status, 400);
    assert_eq!(t.d.get("/partitions").text(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_fault_duration_caps_a_partition() {
    let t = Three::with_daemon(Daemon::with_kernel_and(&["--max-fault-duration", "800ms"])).await;
    let body =
        json!({"name": "capped", "a": [{"netns": t.a.ns.name}], "b": [{"netns": t.b.ns.name}]});
    let r = t.d.post("/partitions", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["ttl_ms"], 800);
    assert_eq!(t.reach(0, 1), 0);
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(t.reach(0, 1), 20, "healed by the cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_adds_lists_and_heals_a_partition() {
    let t = Three::new().await;
    let (a, b) = (
        format!("netns:{}", t.a.ns.name),
        format!("netns:{}", t.b.ns.name),
    );
    let o = t.d.cli(&[
        "partition",
        "add",
        "split",
        "-a",
        &a,
        "-b",
        &b,
        "--ttl",
        "60s",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("partition split: {a} <-/-> {b}\n")
    );
    assert_eq!(t.matrix(), [0, 0, 20, 20, 20, 20]);
    assert_eq!(t.d.get("/partitions/split").json()["ttl_ms"], 60_000);
    let o = t.d.cli(&["partitions", "ls"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("split") && table.contains(&a), "{table}");
    let o = t.d.cli(&["partition", "heal", "split"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(t.matrix(), [20; 6]);
    let o = t.d.cli(&["partition", "heal", "split"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("partition not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
