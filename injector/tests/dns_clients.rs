//! The `dns` toxic against real programs: dnsmasq as the resolver, `dig`
//! and glibc's getaddrinfo (`getent`) as clients, each client in a
//! namespace the test makes, faults set over the daemon's API.
//!
//! Not a `kernel_*` file on purpose: the stock-kernel VM has no dnsmasq,
//! dig or glibc userland. The one DNS fault that needs the stock kernel
//! (delay, through netem) is tested in kernel_dns.rs without them.
//!
//! The resolver listens on the host ends of the clients' veths (addresses
//! of interfaces the test made), port 53. Its query log shows which
//! queries reached it: an answer synthesised in the kernel never does.

mod common;
mod conformance_support;

use std::{
    fs,
    io::Write,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use conformance_support::Daemon;
use injector::lab::services::dnswire;
use serde_json::json;

/// dnsmasq in the foreground, in its own process group (it forks a child
/// per TCP connection), killed with its children on drop.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

const RECORDS: &[&str] = &[
    "api.shop.test,10.9.0.1,fd09::1",
    "shop.test,10.9.0.2",
    "exact.other.test,10.9.0.3,fd09::3",
    "www.other.test,10.9.0.4",
];

impl Dnsmasq {
    fn start(listen: &[IpAddr]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("queries.log");
        let mut c = Command::new("dnsmasq");
        c.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--cache-size=0",
            "--log-queries",
            "--user=root",
            "--group=root",
        ])
        .arg(format!("--log-facility={}", log.display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()));
        for a in listen {
            c.arg(format!("--listen-address={a}"));
        }
        for r in RECORDS {
            c.arg(format!("--host-record={r}"));
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = c.spawn().expect("dnsmasq (dnsmasq-base) is installed");
        let d = Dnsmasq {
            child,
            log,
            _dir: dir,
        };
        // Ready when every address answers.
        for a in listen {
            let to = SocketAddr::new(*a, 53);
            let deadline = Instant::now() + Duration::from_secs(10);
            while udp_query(to, "shop.test", Duration::from_millis(200)).is_none() {
                assert!(Instant::now() < deadline, "dnsmasq never answered on {to}");
            }
        }
        d
    }

    /// The queries dnsmasq received so far, as `query[A] name from addr`.
    fn queries(&self) -> String {
        // dnsmasq writes its log asynchronously: give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Did a query of `qtype` for `name` from `from` reach dnsmasq?
    fn saw(&self, qtype: &str, name: &str, from: IpAddr) -> bool {
        let needle = format!("query[{qtype}] {name} from {from}");
        self.queries().lines().any(|l| {
            l.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase())
        })
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One A query over UDP from where the caller runs; the response's rcode.
fn udp_query(to: SocketAddr, name: &str, timeout: Duration) -> Option<u8> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let id = rand::random::<u16>();
    s.send_to(&dnswire::query(id, name), to).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let n = s.recv(&mut buf).ok()?;
        if let Some(r) = dnswire::parse_response(&buf[..n])
            && r.id == id
        {
            return Some(r.rcode);
        }
    }
}

/// What `dig` reported: the status of the header, the answers, or a
/// timeout (exit code 9).
#[derive(Debug)]
struct Dig {
    status: Option<String>,
    answers: Vec<String>,
    timed_out: bool,
    took: Duration,
    output: String,
}

/// `dig` run inside the namespace `ns`.
fn dig(ns: &Ns, server: IpAddr, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "dig"])
        .arg(format!("@{server}"))
        .args(["+time=2", "+tries=1", "+noall", "+comments", "+answer"])
        .args(extra)
        .args([name, qtype])
        .output()
        .expect("dig (dnsutils) is installed");
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .map(str::to_string);
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tIN\t"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    Dig {
        status,
        answers,
        timed_out: out.status.code() == Some(9),
        took,
        output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// /etc/netns/<ns>/: the files `ip netns exec` mounts over /etc for the
/// commands it runs; removed on drop.
struct NetnsEtc(PathBuf);

impl NetnsEtc {
    fn resolv_conf(ns: &Ns, server: IpAddr, options: &str) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        fs::create_dir_all(&dir).unwrap();
        let mut f = fs::File::create(dir.join("resolv.conf")).unwrap();
        writeln!(
            f,
            "nameserver {server}\noptions timeout:1 attempts:1 {options}"
        )
        .unwrap();
        // Only DNS: no /etc/hosts or other sources in the way.
        fs::write(dir.join("nsswitch.conf"), "hosts: dns\n").unwrap();
        NetnsEtc(dir)
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_dir(self.0.parent().unwrap());
    }
}

/// glibc's getaddrinfo (AF_INET) in the namespace: the addresses, or None
/// when resolution failed.
fn getent(ns: &Ns, name: &str) -> (Option<Vec<String>>, Duration) {
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "getent", "ahostsv4", name])
        .output()
        .expect("getent");
    let took = t.elapsed();
    if !out.status.success() {
        return (None, took);
    }
    let mut addrs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    addrs.dedup();
    (Some(addrs), took)
}

/// A daemon, two client namespaces (the target and a bystander) and the
/// resolver listening on both host ends (IPv4 and IPv6).
struct Lab {
    d: Daemon,
    target: Pair,
    other: Pair,
    dns: Dnsmasq,
}

impl Lab {
    async fn new() -> Lab {
        require_root();
        let target = Pair::new().await;
        let other = Pair::new().await;
        let dns = Dnsmasq::start(&[
            target.host_v4.into(),
            target.host_v6.into(),
            other.host_v4.into(),
        ]);
        let d = Daemon::with_kernel();
        let proxy = json!({"name": "dns", "upstream": "*:53", "target": {"netns": target.ns.name}});
        let r = d.post("/proxies", &proxy.to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        Lab {
            d,
            target,
            other,
            dns,
        }
    }

    fn resolver(&self) -> IpAddr {
        self.target.host_v4.into()
    }

    fn add(&self, name: &str, attrs: serde_json::Value) {
        let t = json!({"name": name, "type": "dns", "attributes": attrs});
        let r = self.d.post("/proxies/dns/toxics", &t.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// Did the target's query reach the resolver?
    fn reached(&self, qtype: &str, name: &str) -> bool {
        self.dns.saw(qtype, name, self.target.ns_v4.into())
    }

    fn remove(&self, name: &str) {
        let r = self.d.delete(&format!("/proxies/dns/toxics/{name}"));
        assert_eq!(r.status, 204, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_answers_come_from_the_kernel_and_spare_other_names_and_namespaces() {
    let lab = Lab::new().await;
    let ns = &lab.target.ns;
    for (action, status) in [
        ("nxdomain", "NXDOMAIN"),
        ("servfail", "SERVFAIL"),
        ("refused", "REFUSED"),
    ] {
        lab.add(
            action,
            json!({"action": action, "domains": ["api.shop.test"]}),
        );
        let r = dig(ns, lab.resolver(), "api.shop.test", "A", &[]);
        assert_eq!(r.status.as_deref(), Some(status), "{action}: {}", r.output);
        // No timeout and no resolver involved: dig's 2 s timeout did not
        // run out, and dnsmasq never saw the query.
        assert!(!r.timed_out, "{}", r.output);
        assert!(
            !lab.reached("A", "api.shop.test"),
            "the resolver saw a query the kernel answered:\n{}",
            lab.dns.queries()
        );
        let other_name = dig(ns, lab.resolver(), "www.other.test", "A", &[]);
        assert_eq!(other_name.status.as_deref(), Some("NOERROR"));
        assert_eq!(other_name.answers, ["10.9.0.4"], "{}", other_name.output);
        // The bystander namespace resolves the faulted name meanwhile.
        let bystander = dig(
            &lab.other.ns,
            lab.other.host_v4.into(),
            "api.shop.test",
            "A",
            &[],
        );
        assert_eq!(bystander.answers, ["10.9.0.1"], "{}", bystander.output);
        // glibc's resolver gets the same answer as dig: a failure.
        let etc = NetnsEtc::resolv_conf(ns, lab.resolver(), "");
        let (addrs, _) = getent(ns, "api.shop.test");
        assert_eq!(addrs, None, "getaddrinfo under {action}");
        let (addrs, _) = getent(ns, "www.other.test");
        assert_eq!(addrs, Some(vec!["10.9.0.4".to_string()]));
        drop(etc);
        lab.remove(action);
    }
    assert!(lab.reached("A", "www.other.test"));
    let r = dig(ns, lab.resolver(), "api.shop.test", "A", &[]);
    assert_eq!(r.answers, ["10.9.0.1"], "removal restores: {}", r.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn suffix_patterns_ignore_case_and_qtypes_filter() {
    let lab = Lab::new().await;
    let ns = &lab.target.ns;
    lab.add(
        "nx",
        json!({"action": "nxdomain", "domains": ["*.SHOP.test", "Exact.Other.TEST."], "qtypes": ["A"]}),
    );
    let status = |name: &str, qtype: &str| {
        let r = dig(ns, lab.resolver(), name, qtype, &[]);
        (r.status.unwrap_or_else(|| r.output.clone()), r.answers)
    };
    assert_eq!(status("api.shop.test", "A").0, "NXDOMAIN");
    assert_eq!(
        status("API.Shop.TEST", "A").0,
        "NXDOMAIN",
        "case-insensitive"
    );
    // `*.suffix` covers names strictly below it, not the suffix itself.
    assert_eq!(
        status("shop.test", "A"),
        ("NOERROR".into(), vec!["10.9.0.2".into()])
    );
    assert_eq!(status("exact.other.test", "A").0, "NXDOMAIN");
    assert_eq!(
        status("www.other.test", "A"),
        ("NOERROR".into(), vec!["10.9.0.4".into()])
    );
    // Only A is faulted: AAAA goes to the resolver and is answered.
    assert_eq!(
        status("api.shop.test", "AAAA"),
        ("NOERROR".into(), vec!["fd09::1".into()])
    );
    assert_eq!(
        status("EXACT.other.test", "AAAA"),
        ("NOERROR".into(), vec!["fd09::3".into()])
    );
    assert!(lab.reached("AAAA", "api.shop.test"));
    assert!(!lab.reached("A", "api.shop.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_makes_clients_time_out_and_removal_restores_at_once() {
    let lab = Lab::new().await;
    let ns = &lab.target.ns;
    lab.add(
        "gone",
        json!({"action": "drop", "domains": ["*.shop.test"]}),
    );
    let r = dig(ns, lab.resolver(), "api.shop.test", "A", &[]);
    assert!(r.timed_out, "dig must time out: {}", r.output);
    assert!(r.took >= Duration::from_millis(1900), "{:?}", r.took);
    assert!(!lab.reached("A", "api.shop.test"));
    let r = dig(ns, lab.resolver(), "www.other.test", "A", &[]);
    assert_eq!(r.answers, ["10.9.0.4"], "{}", r.output);
    let _etc = NetnsEtc::resolv_conf(ns, lab.resolver(), "");
    let (addrs, took) = getent(ns, "api.shop.test");
    assert_eq!(addrs, None);
    // glibc waited for its 1 s timeout: the query vanished.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    lab.remove("gone");
    let (addrs, _) = getent(ns, "api.shop.test");
    assert_eq!(addrs, Some(vec!["10.9.0.1".to_string()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_queries_are_answered_in_the_stream_or_dropped() {
    let lab = Lab::new().await;
    let ns = &lab.target.ns;
    lab.add(
        "fail",
        json!({"action": "servfail", "domains": ["api.shop.test"]}),
    );
    let r = dig(ns, lab.resolver(), "api.shop.test", "A", &["+tcp"]);
    assert_eq!(r.status.as_deref(), Some("SERVFAIL"), "{}", r.output);
    assert!(!lab.reached("A", "api.shop.test"), "{}", lab.dns.queries());
    let r = dig(ns, lab.resolver(), "www.other.test", "A", &["+tcp"]);
    assert_eq!(r.answers, ["10.9.0.4"], "{}", r.output);
    // glibc over TCP (`options use-vc`): the fallback path resolvers take
    // after a truncated answer.
    {
        let _etc = NetnsEtc::resolv_conf(ns, lab.resolver(), "use-vc");
        assert_eq!(getent(ns, "api.shop.test").0, None);
        assert_eq!(
            getent(ns, "www.other.test").0,
            Some(vec!["10.9.0.4".to_string()])
        );
    }
    lab.remove("fail");
    lab.add(
        "gone",
        json!({"action": "drop", "domains": ["api.shop.test"]}),
    );
    let r = dig(ns, lab.resolver(), "api.shop.test", "A", &["+tcp"]);
    assert!(
        r.timed_out || r.status.is_none(),
        "a dropped TCP query gets no answer: {}",
        r.output
    );
    assert!(!lab.reached("A", "api.shop.test"));
    let r = dig(ns, lab.resolver(), "www.other.test", "A", &["+tcp"]);
    assert_eq!(r.answers, ["10.9.0.4"], "{}", r.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_resolvers_and_the_resolvers_restriction() {
    let lab = Lab::new().await;
    let ns = &lab.target.ns;
    let v6: IpAddr = lab.target.host_v6.into();
    lab.add(
        "v6only",
        json!({"action": "refused", "domains": ["api.shop.test"], "resolvers": [v6.to_string()]}),
    );
    let r = dig(ns, v6, "api.shop.test", "A", &[]);
    assert_eq!(r.status.as_deref(), Some("REFUSED"), "{}", r.output);
    let r = dig(ns, v6, "api.shop.test", "A", &["+tcp"]);
    assert_eq!(r.status.as_deref(), Some("REFUSED"), "{}", r.output);
    // The same query to the IPv4 address of the same resolver is not
    // listed: it goes through.
    let r = dig(ns, lab.resolver(), "api.shop.test", "A", &[]);
    assert_eq!(r.answers, ["10.9.0.1"], "{}", r.output);
    let r = dig(ns, v6, "www.other.test", "A", &[]);
    assert_eq!(r.answers, ["10.9.0.4"], "{}", r.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn probability_fails_a_binomial_share_of_queries() {
    let lab = Lab::new().await;
    lab.add(
        "half",
        json!({"action": "servfail", "domains": ["api.shop.test"], "probability": 0.5}),
    );
    let to = SocketAddr::new(lab.resolver(), 53);
    let n = 400u32;
    let (failed, answered) = lab.target.ns.run(move || {
        let (mut failed, mut answered) = (0u32, 0u32);
        for _ in 0..n {
            match udp_query(to, "api.shop.test", Duration::from_secs(2)) {
                Some(dnswire::RCODE_SERVFAIL) => failed += 1,
                Some(dnswire::RCODE_OK) => answered += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        (failed, answered)
    });
    assert_eq!(failed + answered, n);
    let (lo, hi) = binomial_999(n, 0.5);
    assert!(
        (lo..=hi).contains(&(failed as f64)),
        "{failed} of {n} failed at p=0.5; expected {lo:.0}..{hi:.0}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_target_drops_its_queries_only_and_cannot_answer() {
    require_root();
    let pair = Pair::new().await;
    let dns = Dnsmasq::start(&[pair.host_v4.into()]);
    let cg = Cgroup::new();
    let d = Daemon::with_kernel();
    let proxy = json!({"name": "dns", "upstream": "*:53", "target": {"cgroup": cg.rel}});
    let r = d.post("/proxies", &proxy.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let t = json!({"name": "x", "type": "dns", "attributes": {"action": "servfail"}});
    d.post("/proxies/dns/toxics", &t.to_string()).assert_error(
        400,
        "dns answers (servfail, nxdomain, refused) are sent from an interface; a cgroup target \
         can only drop queries: target the container, netns or pid instead",
    );
    let t = json!({"name": "gone", "type": "dns", "attributes": {"action": "drop", "domains": ["*.shop.test"]}});
    let r = d.post("/proxies/dns/toxics", &t.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let server = format!("@{}", pair.host_v4);
    let run = |cmd: &mut Command| {
        let out = cmd
            .args([
                &server,
                "+time=2",
                "+tries=1",
                "+short",
                "api.shop.test",
                "A",
            ])
            .output()
            .expect("dig");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    // In the cgroup: the query is dropped (dig exits 9: no answer).
    assert_eq!(run(&mut cg.command("dig")).0, Some(9));
    // Outside it, at the same time: answered.
    assert_eq!(
        run(&mut Command::new("dig")),
        (Some(0), "10.9.0.1".to_string())
    );
    drop(dns);
}
