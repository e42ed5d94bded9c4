//! `injector run` against a real daemon and a real service on loopback:
//! a hypothesis that holds (exit 0), one that breaks (1), an abort
//! condition that fires and a rollback that restores traffic (2), a steady
//! state that does not hold (2, nothing injected), a policy with a mistake
//! (2, its line and column, nothing injected), Ctrl-C, ramps, proxies
//! created by the method, and the ttl every toxic carries.

mod conformance_support;
mod experiment_support;

use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use conformance_support::{Daemon, Events};
use experiment_support::{
    Plan, Shop, get_status, injector, listen_proxy, run, toxics, write_policy,
};
use serde_json::Value;

fn stats<'a>(j: &'a Value, phase: &str) -> &'a Value {
    j["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} stats in {:#}", j["stats"]))
}

#[test]
fn a_hypothesis_that_holds_exits_0_and_writes_the_log() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let policy = Plan {
        name: "holds",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%", "shop: p95 < 800ms over 1s"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "slow"
type = "latency"
attributes = { latency = 60 }

[[method]]
action = "wait"
duration = "1500ms"

[[method]]
action = "remove"
proxy = "orders"
toxic = "slow"
"#,
        max_duration: "10s",
        verify: "300ms",
    }
    .toml();
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert!(r.stderr().contains("HELD"), "{}", r.explain());
    assert!(
        r.stdout()
            .contains("injected latency \"slow\" on \"orders\""),
        "{}",
        r.explain()
    );

    let j = r.json();
    assert_eq!(j["state"], "held");
    assert_eq!(j["result"]["verdict"], "held");
    // The log follows the plan's order.
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    let at = |k: &str| {
        keys.iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in {keys:?}"))
    };
    assert!(at("hypothesis") < at("blast_radius"));
    assert!(at("blast_radius") < at("abort"));
    assert!(at("abort") < at("method"));
    assert!(at("method") < at("result"));
    // The fault was real: the probes saw it, and only while it was there.
    let during = stats(&j, "during faults");
    let before = stats(&j, "baseline");
    assert!(during["p50_ms"].as_f64().unwrap() >= 60.0, "{during}");
    assert!(before["p50_ms"].as_f64().unwrap() < 60.0, "{before}");
    let window = &j["faults"][0];
    let (from, to) = (
        window["from_ms"].as_f64().unwrap(),
        window["to_ms"].as_f64().unwrap(),
    );
    assert!(to - from >= 1400.0, "{window}");
    assert_eq!(
        j["result"]["recovery"][0]["holds"], true,
        "{:#}",
        j["result"]
    );
    assert!(j["series"]["probes"][0]["points"].as_array().unwrap().len() > 3);

    let md = r.log("md");
    let pos = |s: &str| md.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{md}"));
    assert!(pos("## Hypothesis") < pos("## Blast radius"));
    assert!(pos("## Blast radius") < pos("## Abort"));
    assert!(pos("## Abort") < pos("## Method"));
    assert!(pos("## Method") < pos("## Result"));
    assert!(md.contains("**HELD**"), "{md}");
    assert!(md.contains("### Detection window"), "{md}");
    let svg = r.log("svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("fill-opacity=\"0.12\""),
        "the fault window is shaded"
    );
    assert!(toxics(&d, "orders").is_empty(), "nothing left behind");
}

#[test]
fn a_hypothesis_that_breaks_exits_1() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let policy = Plan {
        name: "breaks",
        via: &via,
        proxy: "orders",
        holds: &["shop: p95 < 150ms over 1s"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "slower"
type = "latency"
attributes = { latency = 300 }

[[method]]
action = "wait"
duration = "1500ms"
"#,
        max_duration: "10s",
        verify: "0s",
    }
    .toml();
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    let j = r.json();
    assert_eq!(j["state"], "broke");
    let judged = &j["result"]["hypothesis"][0];
    assert_eq!(judged["holds"], false, "{judged}");
    assert!(judged["value"].as_f64().unwrap() >= 300.0, "{judged}");
    let first = judged["at_ms"].as_f64().unwrap();
    let fault_from = j["faults"][0]["from_ms"].as_f64().unwrap();
    assert!(first >= fault_from, "broke after the fault began: {judged}");
    assert!(j["reason"].as_str().unwrap().contains("p95 < 150ms"));
    assert!(r.log("md").contains("**BROKE**"));
    // No remove step: the rollback took it away.
    assert!(toxics(&d, "orders").is_empty());
    assert!(
        r.stdout().contains("rollback: removed \"slower\""),
        "{}",
        r.explain()
    );
}

#[test]
fn an_abort_condition_stops_the_run_and_the_rollback_restores_traffic() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let policy = Plan {
        name: "aborts",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 30% over 500ms"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "cut"
type = "reset_peer"
attributes = { timeout = 0 }

[[method]]
action = "wait"
duration = "20s"

[[method]]
action = "remove"
proxy = "orders"
toxic = "cut"
"#,
        max_duration: "30s",
        verify: "0s",
    }
    .toml();
    let started = Instant::now();
    let r = run(&d, &policy);
    let took = started.elapsed();
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    // Right after the run: traffic flows again and nothing is left.
    assert_eq!(
        get_status(&via),
        Some(200),
        "traffic restored by the rollback"
    );
    assert!(toxics(&d, "orders").is_empty());
    // The 20 s wait was cut short by the abort.
    assert!(
        took < Duration::from_secs(12),
        "took {took:?}\n{}",
        r.explain()
    );
    let j = r.json();
    assert_eq!(j["state"], "aborted");
    let fired = &j["abort"]["fired"];
    assert_eq!(fired["sli"], "shop: error_rate > 30% over 500ms", "{fired}");
    assert!(fired["value"].as_f64().unwrap() > 30.0);
    // What clients saw is written down, with the detection window.
    let during = stats(&j, "during faults");
    let errors = during["errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .any(|k| k.contains("reset") || k.contains("closed")),
        "{errors:?}"
    );
    let det = &j["result"]["detection"][0];
    assert!(det["failed"].as_u64().unwrap() >= 1, "{det}");
    assert!(
        det["first_failure_ms"].as_f64().unwrap() >= j["faults"][0]["from_ms"].as_f64().unwrap()
    );
    assert!(r.log("md").contains("Fired at"), "{}", r.log("md"));
    // The hypothesis is still judged for the log, though the run was cut.
    assert_eq!(
        j["result"]["hypothesis"][0]["holds"], false,
        "{:#}",
        j["result"]
    );
    assert!(r.stderr().contains("ABORTED"));
}

#[test]
fn a_steady_state_that_does_not_hold_refuses_to_inject() {
    let shop = Shop::start();
    shop.set_status(503);
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let mut events = Events::open(d.port);
    let policy = Plan {
        name: "refused",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "never"
type = "latency"
attributes = { latency = 10 }
"#,
        max_duration: "10s",
        verify: "0s",
    }
    .toml();
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    assert!(
        r.stderr()
            .contains("the steady state does not hold before injecting"),
        "{}",
        r.explain()
    );
    assert!(r.stderr().contains("status 503") || r.log("json").contains("status 503"));
    let j = r.json();
    assert_eq!(j["state"], "refused");
    assert!(j["faults"].as_array().unwrap().is_empty());
    // The daemon saw no toxic at all: the next event is the marker's.
    d.disabled_proxy("marker");
    let e = events.next();
    assert_eq!(
        (e["proxy"].as_str(), e["toxic"].as_str()),
        (Some("marker"), None),
        "{e}"
    );
}

#[test]
fn a_policy_with_a_mistake_is_refused_with_its_line_and_column() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let policy = Plan {
        name: "typo",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "slow"
type = "latency"
attributes = { latncy = 100 }
"#,
        max_duration: "10s",
        verify: "0s",
    }
    .toml();
    let line = policy.lines().position(|l| l.contains("latncy")).unwrap() + 1;
    let col = policy
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("latncy")
        .unwrap()
        + 1;
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    let want = format!(
        "policy.toml:{line}:{col}: latency has no attribute `latncy` (it has: latency, jitter)"
    );
    assert!(r.stderr().contains(&want), "want {want:?}\n{}", r.explain());
    assert!(r.stderr().contains("nothing was injected"));
    // Not a single probe or fault: validation comes first.
    assert_eq!(shop.served.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(toxics(&d, "orders").is_empty());
    assert!(!r.logs().exists(), "no log for a policy that never ran");
}

#[test]
fn ctrl_c_rolls_back_and_toxics_carry_a_ttl_within_the_blast_radius() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let policy = Plan {
        name: "interrupted",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "slow"
type = "latency"
attributes = { latency = 20 }

[[method]]
action = "wait"
duration = "25s"
"#,
        max_duration: "30s",
        verify: "0s",
    }
    .toml();
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(dir.path(), &policy);
    let child = injector()
        .arg("run")
        .arg(&path)
        .arg("--host")
        .arg(d.url())
        .arg("--out")
        .arg(dir.path().join("logs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let toxic = loop {
        if let Some(t) = toxics(&d, "orders").into_iter().next() {
            break t;
        }
        assert!(Instant::now() < deadline, "the toxic never appeared");
        thread::sleep(Duration::from_millis(50));
    };
    let ttl = toxic["ttl_ms"].as_u64().expect("the toxic carries a ttl");
    assert!(
        ttl > 0 && ttl <= 30_000,
        "ttl {ttl} within max_duration 30s"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(toxics(&d, "orders").is_empty(), "rolled back on Ctrl-C");
    assert_eq!(get_status(&via), Some(200));
}

#[test]
fn ramps_step_through_their_values_and_created_proxies_are_deleted() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let method = format!(
        r#"
[[method]]
action = "inject"
proxy = "side"
create = {{ listen = "127.0.0.1:0", upstream = "{up}" }}
toxic = "quiet"
type = "noop"

[[method]]
action = "ramp"
proxy = "orders"
toxic = "ramped"
type = "latency"
attribute = "latency"
from = 0
to = 200
steps = 3
over = "1200ms"
"#,
        up = shop.addr
    );
    let policy = Plan {
        name: "ramp",
        via: &via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: &method,
        max_duration: "10s",
        verify: "0s",
    }
    .toml()
    .replace(r#"proxies = ["orders"]"#, r#"proxies = ["orders", "side"]"#);
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    let j = r.json();
    let notes: Vec<&str> = j["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    for v in [0, 100, 200] {
        let want = format!("ramp \"ramped\": latency = {v}");
        assert!(notes.iter().any(|n| *n == want), "{want:?} in {notes:#?}");
    }
    assert!(notes.contains(&"created proxy \"side\""), "{notes:#?}");
    assert!(
        notes.contains(&"rollback: deleted proxy \"side\""),
        "{notes:#?}"
    );
    assert_eq!(
        d.get("/proxies/side").status,
        404,
        "the created proxy is gone"
    );
    assert!(toxics(&d, "orders").is_empty());
    // The last third ran at 200 ms: the slowest probes show it.
    assert!(stats(&j, "during faults")["max_ms"].as_f64().unwrap() >= 200.0);
}

#[test]
fn a_missing_proxy_refuses_the_run_before_any_probe() {
    let shop = Shop::start();
    let d = Daemon::start();
    let policy = Plan {
        name: "missing",
        via: &shop.addr.to_string(),
        proxy: "nowhere",
        holds: &["shop: success_rate >= 99%"],
        abort: &["shop: error_rate > 50% over 1s"],
        method: r#"
[[method]]
action = "inject"
proxy = "nowhere"
toxic = "x"
type = "latency"
attributes = { latency = 10 }
"#,
        max_duration: "10s",
        verify: "0s",
    }
    .toml();
    let r = run(&d, &policy);
    assert_eq!(r.code(), Some(2), "{}", r.explain());
    assert!(
        r.stderr()
            .contains("proxy \"nowhere\" does not exist; nothing was injected"),
        "{}",
        r.explain()
    );
    assert_eq!(shop.served.load(std::sync::atomic::Ordering::Relaxed), 0);
}
