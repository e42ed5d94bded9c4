//! /experiments on a real daemon: POST (TOML or JSON), GET one and all,
//! the written log over HTTP, DELETE (abort + rollback, traffic restored),
//! and errors in ToxiProxy's format.

mod conformance_support;
mod experiment_support;

use std::{
    thread,
    time::{Duration, Instant},
};

use conformance_support::{Daemon, Resp};
use experiment_support::{Plan, Shop, get_status, listen_proxy, toxics};
use serde_json::Value;

fn post_toml(d: &Daemon, body: &str) -> Resp {
    d.request(
        "POST",
        "/experiments",
        Some(body.as_bytes()),
        &[("Content-Type", "application/toml")],
    )
}

/// Polls GET /experiments/{id} until it has a verdict.
fn wait_done(d: &Daemon, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = d.get(&format!("/experiments/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        if ["held", "broke", "aborted", "refused"].contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after {limit:?}",
            j["state"]
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn short_plan<'a>(name: &'a str, via: &'a str, method: &'a str) -> Plan<'a> {
    Plan {
        name,
        via,
        proxy: "orders",
        holds: &["shop: success_rate >= 99%", "shop: p95 < 800ms"],
        abort: &["shop: error_rate > 30% over 500ms"],
        method,
        max_duration: "30s",
        verify: "200ms",
    }
}

const SHORT: &str = r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "slow"
type = "latency"
attributes = { latency = 40 }

[[method]]
action = "wait"
duration = "1s"
"#;

#[test]
fn post_runs_an_experiment_and_get_shows_its_state_series_and_log() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let r = post_toml(&d, &short_plan("api-holds", &via, SHORT).toml());
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id, "api-holds-1");
    assert_eq!(created["name"], "api-holds");

    let list = d.get("/experiments").json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str()),
        "{list}"
    );

    // While it runs, the toxic is there with a bounded ttl.
    let deadline = Instant::now() + Duration::from_secs(10);
    let toxic = loop {
        if let Some(t) = toxics(&d, "orders").into_iter().next() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the toxic never appeared: {}",
            d.get(&format!("/experiments/{id}")).text()
        );
        thread::sleep(Duration::from_millis(30));
    };
    assert!(toxic["ttl_ms"].as_u64().unwrap() <= 30_000, "{toxic}");

    let j = wait_done(&d, &id, Duration::from_secs(20));
    assert_eq!(j["state"], "held", "{:#}", j["result"]);
    assert!(j["series"]["bucket_ms"].as_f64().unwrap() > 0.0);
    let points = j["series"]["probes"][0]["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{points:?}");
    assert!(
        points
            .iter()
            .all(|p| p["success_rate"].as_f64() == Some(100.0))
    );
    assert!(toxics(&d, "orders").is_empty());

    let md = d.get(&format!("/experiments/{id}/log.md"));
    assert_eq!(md.status, 200);
    assert_eq!(
        md.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert!(md.text().contains("## Hypothesis") && md.text().contains("**HELD**"));
    let svg = d.get(&format!("/experiments/{id}/chart.svg"));
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text().starts_with("<svg"));
    let lj = d.get(&format!("/experiments/{id}/log.json")).json();
    assert_eq!(lj["result"]["verdict"], "held");
}

#[test]
fn delete_aborts_rolls_back_and_traffic_flows_again() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let long = r#"
[[method]]
action = "inject"
proxy = "orders"
toxic = "hang"
type = "timeout"
attributes = { timeout = 0 }
toxicity = 0.2

[[method]]
action = "wait"
duration = "25s"
"#;
    let mut plan = short_plan("api-delete", &via, long);
    plan.holds = &["shop: success_rate >= 10%"];
    plan.abort = &["shop: error_rate > 95% over 2s"];
    let r = post_toml(&d, &plan.toml());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while toxics(&d, "orders").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the toxic never appeared: {}",
            d.get(&format!("/experiments/{id}")).text()
        );
        thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(toxics(&d, "orders")[0]["toxicity"], 0.2);

    let r = d.delete(&format!("/experiments/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["state"], "aborted");
    assert_eq!(j["reason"], format!("aborted by DELETE /experiments/{id}"));
    assert!(
        toxics(&d, "orders").is_empty(),
        "rolled back before the answer"
    );
    assert_eq!(get_status(&via), Some(200));
    // Deleting again changes nothing and still answers.
    assert_eq!(d.delete(&format!("/experiments/{id}")).status, 200);
}

#[test]
fn json_policies_work_too() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);
    let body = serde_json::json!({
        "experiment": {"name": "as json"},
        "steady_state": {
            "baseline": "500ms",
            "interval": "50ms",
            "probe": [{"name": "shop", "type": "tcp", "address": via, "slis": ["success_rate >= 99%"]}]
        },
        "hypothesis": {"text": "connections still open"},
        "blast_radius": {"proxies": ["orders"], "max_duration": "5s"},
        "abort": {"when": ["error_rate > 50% over 1s"]},
        "method": [
            {"action": "inject", "proxy": "orders", "toxic": "l", "type": "latency", "attributes": {"latency": 5}},
            {"action": "wait", "duration": "500ms"}
        ]
    });
    let r = d.post("/experiments", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(id, "as-json-1");
    let j = wait_done(&d, &id, Duration::from_secs(20));
    assert_eq!(j["state"], "held", "{:#}", j["result"]);
}

#[test]
fn errors_use_toxiproxys_format() {
    let shop = Shop::start();
    let d = Daemon::start();
    let via = listen_proxy(&d, "orders", shop.addr);

    // A mistake: its line and column, and nothing runs.
    let bad = short_plan("api-bad", &via, SHORT)
        .toml()
        .replace("latency = 40", "latency = \"forty\"");
    let line = bad.lines().position(|l| l.contains("\"forty\"")).unwrap() + 1;
    let r = post_toml(&d, &bad);
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("policy:{line}:")), "{msg}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(d.get("/experiments").json().as_array().unwrap().is_empty());

    let order = short_plan("api-order", &via, SHORT).toml();
    let abort_at = order.find("[abort]").unwrap();
    let abort_end = order[abort_at..].find("\n\n").unwrap() + abort_at;
    let moved = format!(
        "{}{}\n{}\n",
        &order[..abort_at],
        &order[abort_end..],
        &order[abort_at..abort_end]
    );
    let r = post_toml(&d, &moved);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("[abort] must be declared before [[method]]"),
        "{}",
        r.text()
    );

    let cmd = short_plan("api-cmd", &via, SHORT)
        .toml()
        .replace(
            "type = \"http\"\nurl = ",
            "type = \"command\"\ncommand = \"true\"\n#",
        )
        .replace("expect_status = 200\n", "");
    let r = post_toml(&d, &cmd);
    r.assert_error(
        400,
        "command probes are not run by the daemon (it runs as root); run this policy with `injector run`",
    );

    d.get("/experiments/nope")
        .assert_error(404, "experiment not found");
    d.delete("/experiments/nope")
        .assert_error(404, "experiment not found");
    assert_eq!(d.request("PUT", "/experiments", None, &[]).status, 405);
    assert_eq!(d.get("/experiments/x/other.txt").status, 404);
    post_toml(&d, "").assert_error(400, "empty body: send a policy as TOML or JSON");

    // One experiment per proxy at a time.
    let long = SHORT.replace("duration = \"1s\"", "duration = \"20s\"");
    let first = post_toml(&d, &short_plan("api-first", &via, &long).toml());
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    post_toml(&d, &short_plan("api-second", &via, SHORT).toml()).assert_error(
        409,
        &format!("experiment {id} is already running on proxy orders"),
    );
    assert_eq!(d.delete(&format!("/experiments/{id}")).status, 200);
    assert!(toxics(&d, "orders").is_empty());
}
