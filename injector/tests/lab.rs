//! The demo lab, end to end, on the real Docker engine: `lab up` builds the
//! shop, a checkout crosses web -> orders -> payments and db, faults on the
//! lab's proxies break it the way the walkthrough says and heal when
//! removed, the load generator counts what really happened, and `lab down`
//! leaves nothing behind but the cached image.
//!
//! Each test uses its own lab name (never the user's `lab`) and removes the
//! lab on every exit path (LabGuard). Traffic goes only to the lab's own
//! containers, on the lab's own bridge.

mod conformance_support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use conformance_support::Daemon;
use injector::lab::plan::Lab;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_injector");

/// Labs are built one at a time: six containers each on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn injector(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run the injector binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab of the test's own; `lab down` on drop, whatever happened.
struct LabGuard {
    lab: Lab,
}

impl LabGuard {
    /// `lab up --name <name>`, asserting it succeeded.
    fn up(name: &str) -> LabGuard {
        let g = LabGuard {
            lab: Lab::new(name, None).unwrap(),
        };
        // Left over from a run that was killed before its guards ran.
        injector(&["lab", "down", "--name", name]);
        let (ok, _, err) = injector(&["lab", "up", "--name", name, "--backend", "docker"]);
        assert!(ok, "lab up failed:\n{err}");
        assert!(err.contains("checkout works"), "{err}");
        g
    }

    fn name(&self) -> &str {
        &self.lab.name
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let (ok, _, err) = injector(&["lab", "down", "--name", &self.lab.name]);
        if !ok && !thread::panicking() {
            panic!("lab down failed: {err}");
        }
    }
}

/// A unique lab name per test (two letters) and per run, within the 8
/// characters a lab name may have.
fn lab_name(test: &str) -> String {
    assert_eq!(test.len(), 2);
    format!("t{test}{:05}", std::process::id() % 100_000)
}

/// One HTTP/1.0 GET: status, body, time taken.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: shop\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read the answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string(), started.elapsed())
}

fn checkout(lab: &Lab) -> (u16, Value, Duration) {
    let web = SocketAddr::from((lab.web_ip(), 80));
    let (status, body, took) = get(web, "/checkout", Duration::from_secs(20));
    let v = serde_json::from_str(&body).unwrap_or_else(|_| Value::String(body.clone()));
    (status, v, took)
}

fn error_of(v: &Value) -> String {
    v.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no error field in {v}"))
        .to_string()
}

fn containers_of(name: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.injector.lab={name}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn lab_up_builds_the_shop_and_a_checkout_crosses_every_service() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("up"));
    let lab = &g.lab;
    let mut names = containers_of(g.name());
    names.sort();
    let mut want: Vec<String> = ["db", "dns", "orders-a", "orders-b", "payments", "web"]
        .iter()
        .map(|i| lab.container(i))
        .collect();
    want.sort();
    assert_eq!(names, want);

    // Round robin: two checkouts in a row are served by both instances,
    // each charged by payments and numbered by db.
    let (s1, a, _) = checkout(lab);
    let (s2, b, _) = checkout(lab);
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    let mut instances = [
        a["instance"].as_str().unwrap(),
        b["instance"].as_str().unwrap(),
    ];
    instances.sort();
    assert_eq!(instances, ["orders-a", "orders-b"]);
    assert!(a["charge"].as_str().unwrap().starts_with("ch_"), "{a}");
    assert_eq!(
        b["order"].as_u64().unwrap(),
        a["order"].as_u64().unwrap() + 1,
        "db hands out order ids in sequence"
    );

    // The lab's DNS server answers the shop's names, over UDP.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resolver = injector::lab::services::resolver::Resolver::new(lab.dns_ip());
    let orders = rt.block_on(resolver.lookup("orders.shop.lab")).unwrap();
    assert_eq!(orders, [lab.ip(20), lab.ip(21)]);
    let missing = rt.block_on(resolver.lookup("nope.shop.lab")).unwrap_err();
    assert!(missing.contains("NXDOMAIN"), "{missing}");

    // A second `up` keeps what runs: same containers, same ids.
    let ids = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.injector.lab={}", g.name()),
    ]);
    let (ok, _, err) = injector(&["lab", "up", "--name", g.name()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("(cached)") && err.contains("already running"),
        "{err}"
    );
    let again = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.injector.lab={}", g.name()),
    ]);
    assert_eq!(ids, again);

    // status sees every service answering and a checkout going through.
    let (ok, out, err) = injector(&["--json", "lab", "status", "--name", g.name()]);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["backend"], "docker");
    let services = st["services"].as_array().unwrap();
    assert_eq!(services.len(), 6);
    for s in services {
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["probe"], "answers", "{s}");
    }
    assert_eq!(st["checkout"]["status"], 200, "{st}");
}

#[test]
fn payments_faults_break_checkout_as_described_and_removing_them_heals() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("py"));
    let lab = &g.lab;
    let d = Daemon::with_kernel_and(&["--lab", "--lab-name", g.name()]);
    let proxies = d.get("/proxies").json();
    for p in ["orders", "orders-b", "payments", "db", "dns"] {
        assert!(
            proxies[p]["target"].is_object(),
            "kernel-native proxy {p}: {proxies}"
        );
    }
    assert_eq!(
        proxies["payments"]["target"]["container"],
        lab.container("payments")
    );
    assert_eq!(checkout(lab).0, 200);

    // Dead payment provider: refused at once, every checkout fails with 502.
    let r = d.post(
        "/proxies/payments/toxics",
        r#"{"name":"payments-down","type":"refuse"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..4 {
        let (status, v, took) = checkout(lab);
        assert_eq!(status, 502, "{v}");
        let e = error_of(&v);
        assert!(
            e.contains("payments: cannot connect") && e.contains("connection refused"),
            "{e}"
        );
        assert!(
            took < Duration::from_secs(1),
            "refused at once, took {took:?}"
        );
    }
    assert_eq!(
        d.delete("/proxies/payments/toxics/payments-down").status,
        204
    );
    for _ in 0..4 {
        let (status, v, _) = checkout(lab);
        assert_eq!(status, 200, "healed: {v}");
    }

    // Database blackhole: orders gives up after its 1 s connect timeout.
    let r = d.post(
        "/proxies/db/toxics",
        r#"{"name":"db-blackhole","type":"blackhole"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, v, took) = checkout(lab);
    assert_eq!(status, 503, "{v}");
    assert!(error_of(&v).contains("db: cannot connect"), "{v}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "the connect timeout is 1 s, took {took:?}"
    );
    assert_eq!(d.delete("/proxies/db/toxics/db-blackhole").status, 204);
    assert_eq!(checkout(lab).0, 200);

    // DNS outage for web only: SERVFAIL synthesised in the kernel.
    let r = d.post(
        "/proxies/dns/toxics",
        r#"{"name":"dns-outage","type":"dns","attributes":{"action":"servfail"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, v, _) = checkout(lab);
    assert_eq!(status, 502, "{v}");
    assert!(
        error_of(&v).contains("cannot resolve orders.shop.lab: SERVFAIL"),
        "{v}"
    );
    assert_eq!(d.delete("/proxies/dns/toxics/dns-outage").status, 204);
    assert_eq!(checkout(lab).0, 200);

    // One of two orders instances lost: web fails over, every checkout
    // still succeeds, all served by orders-a.
    let r = d.post(
        "/proxies/orders-b/toxics",
        r#"{"name":"orders-b-lost","type":"blackhole"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..6 {
        let (status, v, _) = checkout(lab);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["instance"], "orders-a", "{v}");
    }
    assert_eq!(
        d.delete("/proxies/orders-b/toxics/orders-b-lost").status,
        204
    );
}

#[test]
fn a_slow_payment_provider_meets_orders_5_s_timeout_through_the_listen_proxy() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("sl"));
    let lab = &g.lab;
    let d = Daemon::with_kernel_and(&["--lab", "--lab-name", g.name()]);
    let (ok, out, err) = injector(&[
        "lab",
        "route",
        "payments",
        "--via",
        "gateway",
        "--name",
        g.name(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("payments.shop.lab -> {}", lab.gateway())),
        "{out}"
    );
    // Through the proxy, no toxic yet: still works.
    assert_eq!(checkout(lab).0, 200);
    let r = d.post(
        "/proxies/payments-listen/toxics",
        r#"{"name":"payment-latency","type":"latency","attributes":{"latency":8000,"jitter":2000}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, v, took) = checkout(lab);
    assert_eq!(status, 504, "{v}");
    assert!(
        error_of(&v).contains("payments: no answer within 5 s"),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(7),
        "orders gives up after 5 s, took {took:?}"
    );
    let (ok, out, err) = injector(&["lab", "route", "payments", "--direct", "--name", g.name()]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("payments.shop.lab -> {}", lab.ip(30))),
        "{out}"
    );
    let (status, v, took) = checkout(lab);
    assert_eq!(status, 200, "{v}");
    assert!(took < Duration::from_secs(2), "direct again, took {took:?}");
}

#[test]
fn latency_on_a_kernel_native_proxy_works_or_names_the_missing_qdisc() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("lt"));
    let d = Daemon::with_kernel_and(&["--lab", "--lab-name", g.name()]);
    let r = d.post(
        "/proxies/orders/toxics",
        r#"{"name":"peak-load-latency","type":"latency","attributes":{"latency":1500}}"#,
    );
    if doctor_has("netem") {
        assert_eq!(r.status, 200, "{}", r.text());
        let (status, _, took) = checkout(&g.lab);
        assert_eq!(status, 200);
        assert!(took >= Duration::from_millis(1500), "took {took:?}");
    } else {
        r.assert_error(
            501,
            "this kernel has no netem qdisc (sch_netem, CONFIG_NET_SCH_NETEM): the fault cannot be applied here; `injector doctor` lists what this kernel supports",
        );
        assert_eq!(checkout(&g.lab).0, 200, "nothing was left behind");
    }
}

/// Whether `injector doctor --json` reports a kernel feature as present.
fn doctor_has(feature: &str) -> bool {
    let (_, out, _) = injector(&["--json", "doctor"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let found = v["features"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"].as_str() == Some(feature))
        .map(|f| f["available"].as_bool() == Some(true));
    found.unwrap_or_else(|| panic!("doctor does not report {feature}: {out}"))
}

#[test]
fn the_load_generator_counts_real_failures_while_payments_is_blackholed() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("ld"));
    let d = Daemon::with_kernel_and(&["--lab", "--lab-name", g.name()]);
    let load = |secs: &str| -> Value {
        let (ok, out, err) = injector(&[
            "--json",
            "lab",
            "load",
            "--name",
            g.name(),
            "--rate",
            "10",
            "--duration",
            secs,
        ]);
        assert!(ok, "{err}");
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect();
        assert!(lines.len() >= 2, "a line per second and a summary: {out}");
        for l in &lines[..lines.len() - 1] {
            assert!(
                l["t"].as_u64().is_some() && l["sent"].as_u64().is_some(),
                "{l}"
            );
        }
        lines.last().unwrap()["summary"].clone()
    };
    let base = load("2s");
    assert!(base["sent"].as_u64().unwrap() >= 15, "{base}");
    assert_eq!(base["failed"], 0, "{base}");
    assert_eq!(base["ok"], base["done"], "{base}");
    assert_eq!(base["success_rate"], 1.0, "{base}");
    assert!(base["p99_ms"].as_f64().unwrap() < 1000.0, "{base}");

    let r = d.post(
        "/proxies/payments/toxics",
        r#"{"name":"payments-blackhole","type":"blackhole"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let broken = load("2s");
    assert_eq!(broken["ok"], 0, "{broken}");
    assert_eq!(
        broken["failed"], broken["sent"],
        "every checkout waited for: {broken}"
    );
    assert_eq!(broken["success_rate"], 0.0, "{broken}");
    assert!(
        broken["p50_ms"].as_f64().unwrap() >= 950.0,
        "each failure took orders' 1 s connect timeout: {broken}"
    );
    let errors = broken["errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .all(|e| e.starts_with("502 ") && e.contains("payments: cannot connect")),
        "{broken}"
    );
    assert_eq!(
        errors.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        broken["failed"].as_u64().unwrap()
    );

    assert_eq!(
        d.delete("/proxies/payments/toxics/payments-blackhole")
            .status,
        204
    );
    let healed = load("2s");
    assert_eq!(healed["failed"], 0, "{healed}");
}

#[test]
fn lab_down_leaves_no_container_network_or_bridge_only_the_cached_image() {
    let _s = serial();
    let name = lab_name("dn");
    let g = LabGuard::up(&name);
    let bridge = g.lab.bridge();
    assert!(
        std::path::Path::new(&format!("/sys/class/net/{bridge}")).exists(),
        "the lab's bridge {bridge}"
    );
    // A crash halfway: one container already gone.
    docker(&["rm", "-f", &g.lab.container("orders-b")]);
    let (ok, out, err) = injector(&["lab", "down", "--name", &name]);
    assert!(ok, "{err}");
    assert!(out.contains(&g.lab.container("web")), "{out}");
    assert!(out.contains(&format!("network injector-{name}")), "{out}");
    assert!(containers_of(&name).is_empty());
    let nets = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.injector.lab={name}"),
    ]);
    assert!(nets.trim().is_empty(), "networks left: {nets}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{bridge}")).exists());
    // The image stays cached; no other image of the lab's is kept.
    let images = docker(&[
        "images",
        "--filter",
        "label=io.injector.lab.image",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let images: Vec<&str> = images.lines().collect();
    assert!(
        images.iter().all(|i| i.starts_with("injector-lab:")) && !images.is_empty(),
        "{images:?}"
    );
    // No container of a lab image outside a lab (what a build would leave).
    let owners = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=io.injector.lab.image",
        "--format",
        "{{.Names}} [{{.Label \"io.injector.lab\"}}]",
    ]);
    assert!(
        owners.lines().all(|l| !l.ends_with("[]")),
        "containers of lab images that belong to no lab: {owners}"
    );
    // Down again: idempotent.
    let (ok, out, _) = injector(&["lab", "down", "--name", &name]);
    assert!(ok);
    assert!(out.contains("nothing to remove"), "{out}");
    drop(g);
}

#[test]
fn serve_lab_down_on_exit_removes_the_lab_when_the_daemon_stops() {
    let _s = serial();
    let g = LabGuard::up(&lab_name("ex"));
    let d = Daemon::with_kernel_and(&["--lab", "--lab-name", g.name(), "--lab-down-on-exit"]);
    assert!(!containers_of(g.name()).is_empty());
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exited(d.pid()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(exited(d.pid()), "the daemon exits on SIGTERM");
    assert!(
        d.log_text().contains("removed (--lab-down-on-exit)"),
        "{}",
        d.log_text()
    );
    assert!(containers_of(g.name()).is_empty());
}

/// Gone or a zombie (its parent, the Daemon guard, reaps it on drop).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn bad_lab_names_and_subnets_are_refused_before_anything_is_made() {
    for args in [
        &["lab", "up", "--name", "Bad-Name"][..],
        &["lab", "up", "--name", "waytoolongname"],
        &["lab", "up", "--name", "ok", "--subnet", "10.0.0.0/16"],
        &["lab", "down", "--name", "../x"],
    ] {
        let (ok, _, err) = injector(args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.contains("lab name") || err.contains("lab subnet"),
            "{err}"
        );
    }
    assert!(containers_of("ok").is_empty());
}

/// A network namespace standing in for a host without Docker: the lab's
/// bridge, the daemon and the clients live in it, so nothing of the real
/// host's network (nor its firewall) is involved. Removed on drop.
struct HostNs {
    name: String,
}

impl HostNs {
    fn new(tag: &str) -> HostNs {
        let name = format!("injlab-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let h = HostNs { name };
        assert!(
            h.cmd("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        h
    }

    /// `program` run inside this namespace (nsenter only switches the
    /// network namespace: cgroups and /var/run/netns stay the host's).
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.name))
            .arg(program);
        c
    }

    fn injector(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let out = self
            .cmd(BIN)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// curl inside the namespace: status and body.
    fn curl(&self, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
        let mut c = self.cmd("curl");
        c.args([
            "-s",
            "-m",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            url,
        ]);
        if let Some(b) = body {
            c.args(["-d", b]);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `lab down` inside the stand-in host, whatever happened.
struct NsLabGuard<'a> {
    host: &'a HostNs,
    name: String,
}

impl Drop for NsLabGuard<'_> {
    fn drop(&mut self) {
        let (ok, _, err) = self
            .host
            .injector(&["lab", "down", "--name", &self.name], &[]);
        if !ok && !thread::panicking() {
            panic!("lab down failed: {err}");
        }
    }
}

/// The daemon inside the stand-in host; killed on drop.
struct NsDaemon(std::process::Child);

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn without_docker_the_lab_runs_on_namespaces_and_cgroups_and_down_removes_it_all() {
    let _s = serial();
    let host = HostNs::new("ns");
    let name = lab_name("ns");
    let g = NsLabGuard {
        host: &host,
        name: name.clone(),
    };
    let lab = Lab::new(&name, None).unwrap();
    // No Docker engine where DOCKER_HOST points: auto falls back, and says so.
    let (ok, out, err) = host.injector(
        &["--json", "lab", "up", "--name", &name],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert!(ok, "lab up: {err}");
    assert!(
        err.contains("Docker is not available")
            && err.contains("plain network namespaces and cgroups instead"),
        "{err}"
    );
    assert!(err.contains("checkout works"), "{err}");
    let up: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(up["backend"], "netns");
    assert_eq!(
        up["services"][5]["target"]["netns"],
        format!("{name}-web"),
        "{up}"
    );
    let cgroups = injector::kernel::cgroup::v2_mount()
        .unwrap()
        .join(format!("injector-lab-{name}"));
    let mut pids = Vec::new();
    for i in ["dns", "db", "payments", "orders-a", "orders-b", "web"] {
        assert!(
            std::path::Path::new(&format!("/var/run/netns/{name}-{i}")).exists(),
            "netns of {i}"
        );
        let procs = std::fs::read_to_string(cgroups.join(i).join("cgroup.procs")).unwrap();
        let p: Vec<u32> = procs.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(p.len(), 1, "one process in {i}'s cgroup");
        pids.extend(p);
    }

    // The same shop: a checkout crosses every service.
    let (code, body) = host.curl("GET", &lab.checkout_url(), None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"charge\":\"ch_"), "{body}");

    // A kernel-native proxy on a netns target breaks it and heals.
    let port = conformance_support::free_port();
    let daemon = NsDaemon(
        host.cmd(BIN)
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--lab",
                "--lab-name",
                &name,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.curl("GET", &format!("{api}/version"), None).0 != 200 {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        thread::sleep(Duration::from_millis(100));
    }
    let (code, proxies) = host.curl("GET", &format!("{api}/proxies"), None);
    assert_eq!(code, 200);
    let proxies: Value = serde_json::from_str(&proxies).unwrap();
    assert_eq!(
        proxies["payments"]["target"]["netns"],
        format!("{name}-payments")
    );
    let (code, body) = host.curl(
        "POST",
        &format!("{api}/proxies/payments/toxics"),
        Some(r#"{"name":"payments-down","type":"refuse"}"#),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = host.curl("GET", &lab.checkout_url(), None);
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("payments: cannot connect") && body.contains("connection refused"),
        "{body}"
    );
    let (code, _) = host.curl(
        "DELETE",
        &format!("{api}/proxies/payments/toxics/payments-down"),
        None,
    );
    assert_eq!(code, 204);
    assert_eq!(host.curl("GET", &lab.checkout_url(), None).0, 200);
    drop(daemon);

    // down: no process, cgroup, namespace, bridge or state left.
    drop(g);
    for p in pids {
        assert!(exited(p), "process {p} still runs");
    }
    assert!(!cgroups.exists(), "{} is left", cgroups.display());
    for i in ["dns", "db", "payments", "orders-a", "orders-b", "web"] {
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}-{i}")).exists());
    }
    let links = host.cmd("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&lab.bridge()), "{links}");
    assert_eq!(links.lines().count(), 1, "only lo is left: {links}");
    assert!(!std::path::Path::new(&format!("/run/injector/lab/{name}")).exists());
}
