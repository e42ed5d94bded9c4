//! /proxies/{proxy}/toxics[/{toxic}]: defaults, validation order, 409/404
//! ordering, listing order, updates, deletes, our deliberate 400s, ttl
//! (../shared/toxiproxy-api.md §2, §3.3, §3.4, §8).

mod conformance_support;

use std::time::{Duration, Instant};

use conformance_support::Daemon;
use serde_json::{Value, json};

fn add(d: &Daemon, proxy: &str, body: Value) -> conformance_support::Resp {
    d.post(&format!("/proxies/{proxy}/toxics"), &body.to_string())
}

#[test]
fn create_answers_200_with_toxiproxys_defaults_and_key_order() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    add(&d, "p", json!({"type": "latency", "attributes": {"latency": 100, "jitter": 10}})).assert_json(
        200,
        r#"{"attributes":{"latency":100,"jitter":10},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}"#,
    );
    add(&d, "p", json!({"type": "noop", "stream": "UpStream"})).assert_json(
        200,
        r#"{"attributes":{},"name":"noop_UpStream","type":"noop","stream":"UpStream","toxicity":1}"#,
    );
    add(&d, "p", json!({"type": "slicer", "name": "s", "attributes": {"average_size": 10}})).assert_json(
        200,
        r#"{"attributes":{"average_size":10,"size_variation":0,"delay":0},"name":"s","type":"slicer","stream":"downstream","toxicity":1}"#,
    );
    // null keeps the defaults; unknown attributes are dropped.
    let r = add(
        &d,
        "p",
        json!({"type": "timeout", "name": null, "stream": null, "toxicity": null, "attributes": {"timeout": 5, "bogus": 1}}),
    );
    r.assert_json(200, r#"{"attributes":{"timeout":5},"name":"timeout_downstream","type":"timeout","stream":"downstream","toxicity":1}"#);
    d.get("/proxies/p/toxics/timeout_downstream")
        .assert_json(200, &r.text());
}

#[test]
fn toxicity_is_echoed_not_range_checked() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    for (i, (sent, shown)) in [
        ("7", "7"),
        ("-1", "-1"),
        ("0.5", "0.5"),
        ("0", "0"),
        ("0.3", "0.3"),
        ("1.0", "1"),
    ]
    .iter()
    .enumerate()
    {
        let r = d.post(
            "/proxies/p/toxics",
            &format!(r#"{{"type":"noop","name":"n{i}","toxicity":{sent}}}"#),
        );
        assert_eq!(r.status, 200, "{sent}");
        assert!(
            r.text().ends_with(&format!(r#""toxicity":{shown}}}"#)),
            "{sent}: {}",
            r.text()
        );
    }
}

#[test]
fn validation_runs_in_toxiproxys_order() {
    let d = Daemon::start();
    add(&d, "missing", json!({"type": "nope"})).assert_error(404, "proxy not found");
    d.post("/proxies/missing/toxics", "garbage")
        .assert_error(404, "proxy not found");
    d.disabled_proxy("p");
    d.post("/proxies/p/toxics", "")
        .assert_error(400, "bad request body: EOF");
    add(&d, "p", json!({"type": "latency", "attributes": [1, 2]})).assert_error(
        400,
        "bad request body: json: cannot unmarshal array into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic",
    );
    add(&d, "p", json!({"type": "latency", "toxicity": "x"})).assert_error(
        400,
        "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32",
    );
    // Stream before type; "" is invalid while omitted means downstream.
    add(&d, "p", json!({"type": "nope", "stream": "sideways"})).assert_error(
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    add(&d, "p", json!({"type": "latency", "stream": ""})).assert_error(
        400,
        "stream was invalid, can be either upstream or downstream",
    );
    // Types are case-sensitive.
    add(&d, "p", json!({"type": "Latency"})).assert_error(400, "invalid toxic type");
    add(&d, "p", json!({})).assert_error(400, "invalid toxic type");
    assert_eq!(
        add(&d, "p", json!({"type": "latency", "name": "x"})).status,
        200
    );
    // Type before 409; 409 across both streams; 409 before attributes.
    add(&d, "p", json!({"type": "nope", "name": "x"})).assert_error(400, "invalid toxic type");
    add(
        &d,
        "p",
        json!({"type": "latency", "name": "x", "stream": "upstream"}),
    )
    .assert_error(409, "toxic already exists");
    add(
        &d,
        "p",
        json!({"type": "latency", "name": "x", "attributes": {"latency": "bad"}}),
    )
    .assert_error(409, "toxic already exists");
    add(&d, "p", json!({"type": "bandwidth", "attributes": {"rate": "fast"}})).assert_error(
        400,
        "bad request body: json: cannot unmarshal string into Go struct field BandwidthToxic.attributes.rate of type int64",
    );
    add(&d, "p", json!({"type": "latency", "attributes": {"latency": 1.5}})).assert_error(
        400,
        "bad request body: json: cannot unmarshal number 1.5 into Go struct field LatencyToxic.attributes.latency of type int64",
    );
    assert_eq!(
        d.get("/proxies/p/toxics").json().as_array().unwrap().len(),
        1
    );
}

#[test]
fn values_that_crash_toxiproxy_are_refused_with_400() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    add(
        &d,
        "p",
        json!({"type": "bandwidth", "attributes": {"rate": -1}}),
    )
    .assert_error(
        400,
        "bad request body: bandwidth rate must be >= 0 KB/s, got -1",
    );
    let r = add(
        &d,
        "p",
        json!({"type": "slicer", "attributes": {"average_size": 0}}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("average_size"),
        "{}",
        r.text()
    );
    let r = add(
        &d,
        "p",
        json!({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 20}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // rate 0 stalls in ToxiProxy but does not crash it: accepted.
    assert_eq!(
        add(
            &d,
            "p",
            json!({"type": "bandwidth", "attributes": {"rate": 0}})
        )
        .status,
        200
    );
    assert_eq!(
        d.get("/proxies/p/toxics").json().as_array().unwrap().len(),
        1
    );
}

#[test]
fn kernel_fault_types_need_a_kernel_native_proxy() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    for kind in [
        "loss",
        "blackhole",
        "refuse",
        "reset",
        "corrupt",
        "duplicate",
        "reorder",
        "dns",
    ] {
        add(&d, "p", json!({"type": kind})).assert_error(
            400,
            &format!("toxic type {kind} needs a kernel-native proxy (create it with a target)"),
        );
    }
    // packet_loss (ToxiProxy PR #739) works in proxy mode.
    assert_eq!(
        add(
            &d,
            "p",
            json!({"type": "packet_loss", "attributes": {"loss_rate": 0.5}})
        )
        .status,
        200
    );
}

#[test]
fn listing_is_upstream_chain_first_then_downstream() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    for (name, stream) in [
        ("d1", "downstream"),
        ("u1", "upstream"),
        ("d2", "DOWNSTREAM"),
        ("u2", "Upstream"),
    ] {
        assert_eq!(
            add(
                &d,
                "p",
                json!({"type": "noop", "name": name, "stream": stream})
            )
            .status,
            200
        );
    }
    let names: Vec<String> = d
        .get("/proxies/p/toxics")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["u1", "u2", "d1", "d2"]);
    let in_proxy: Vec<Value> = d.get("/proxies/p").json()["toxics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        in_proxy,
        [json!("u1"), json!("u2"), json!("d1"), json!("d2")]
    );
    d.get("/proxies/p/toxics")
        .assert_json(200, &d.get("/proxies/p/toxics").text());
}

#[test]
fn show_and_delete_report_the_proxy_before_the_toxic() {
    let d = Daemon::start();
    d.get("/proxies/x/toxics/t")
        .assert_error(404, "proxy not found");
    d.delete("/proxies/x/toxics/t")
        .assert_error(404, "proxy not found");
    d.patch("/proxies/x/toxics/t", "{}")
        .assert_error(404, "proxy not found");
    d.disabled_proxy("x");
    d.get("/proxies/x/toxics/t")
        .assert_error(404, "toxic not found");
    d.delete("/proxies/x/toxics/t")
        .assert_error(404, "toxic not found");
    // 404 before the body is read.
    d.patch("/proxies/x/toxics/t", "garbage")
        .assert_error(404, "toxic not found");
    assert_eq!(
        add(&d, "x", json!({"type": "noop", "name": "t"})).status,
        200
    );
    let r = d.delete("/proxies/x/toxics/t");
    assert_eq!((r.status, r.body.len()), (204, 0));
    d.delete("/proxies/x/toxics/t")
        .assert_error(404, "toxic not found");
    d.get("/proxies/x/toxics").assert_json(200, "[]");
}

#[test]
fn updates_merge_attributes_and_toxicity_only() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    assert_eq!(add(&d, "p", json!({"type": "latency", "name": "l", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 10}})).status, 200);
    // name, type and stream are ignored; PATCH and POST behave the same.
    d.patch("/proxies/p/toxics/l", r#"{"attributes":{"jitter":9},"name":"z","type":"timeout","stream":"upstream"}"#).assert_json(
        200,
        r#"{"attributes":{"latency":100,"jitter":9},"name":"l","type":"latency","stream":"downstream","toxicity":0.5}"#,
    );
    d.post("/proxies/p/toxics/l", r#"{"toxicity":0.25}"#).assert_json(
        200,
        r#"{"attributes":{"latency":100,"jitter":9},"name":"l","type":"latency","stream":"downstream","toxicity":0.25}"#,
    );
    let unchanged = r#"{"attributes":{"latency":100,"jitter":9},"name":"l","type":"latency","stream":"downstream","toxicity":0.25}"#;
    d.patch("/proxies/p/toxics/l", "{}")
        .assert_json(200, unchanged);
    d.patch(
        "/proxies/p/toxics/l",
        r#"{"toxicity":null,"attributes":null}"#,
    )
    .assert_json(200, unchanged);
    d.patch("/proxies/p/toxics/l", r#"{"Attributes":{"LATENCY":7}}"#);
    assert_eq!(
        d.get("/proxies/p/toxics/l").json()["attributes"]["latency"],
        7
    );
}

#[test]
fn a_failed_update_changes_nothing() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    assert_eq!(
        add(
            &d,
            "p",
            json!({"type": "latency", "name": "l", "attributes": {"latency": 100, "jitter": 10}})
        )
        .status,
        200
    );
    let before = d.get("/proxies/p/toxics/l").text();
    // ToxiProxy 2.12 would have set jitter to 9 here; we keep the toxic whole.
    d.patch("/proxies/p/toxics/l", r#"{"attributes":{"jitter":9,"latency":"bad"}}"#).assert_error(
        400,
        "bad request body: json: cannot unmarshal string into Go struct field LatencyToxic.attributes.latency of type int64",
    );
    d.patch("/proxies/p/toxics/l", r#"{"toxicity":"x"}"#).assert_error(
        400,
        "bad request body: json: cannot unmarshal string into Go struct field .toxicity of type float32",
    );
    d.patch("/proxies/p/toxics/l", r#"{"attributes":[1]}"#).assert_error(
        400,
        "bad request body: json: cannot unmarshal array into Go struct field .attributes of type toxics.LatencyToxic",
    );
    d.patch("/proxies/p/toxics/l", r#"{"attributes":{"jitter":1"#)
        .assert_error(400, "bad request body: unexpected EOF");
    assert_eq!(
        add(
            &d,
            "p",
            json!({"type": "bandwidth", "name": "b", "attributes": {"rate": 5}})
        )
        .status,
        200
    );
    d.patch("/proxies/p/toxics/b", r#"{"attributes":{"rate":-5}}"#)
        .assert_error(
            400,
            "bad request body: bandwidth rate must be >= 0 KB/s, got -5",
        );
    assert_eq!(d.get("/proxies/p/toxics/l").text(), before);
    assert_eq!(d.get("/proxies/p/toxics/b").json()["attributes"]["rate"], 5);
}

#[test]
fn toxics_with_a_ttl_expire_by_themselves() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    let r = add(
        &d,
        "p",
        json!({"type": "latency", "name": "short", "ttl_ms": 300}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ttl_ms"], 300);
    assert_eq!(
        add(&d, "p", json!({"type": "noop", "name": "stays"})).status,
        200
    );
    assert_eq!(d.get("/proxies/p/toxics/short").status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get("/proxies/p/toxics/short").status == 200 {
        assert!(Instant::now() < deadline, "the toxic never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.get("/proxies/p/toxics/short")
        .assert_error(404, "toxic not found");
    assert_eq!(d.get("/proxies/p/toxics/stays").status, 200);
    // The name is free again; a new toxic of that name is not touched by
    // the old timer.
    assert_eq!(
        add(&d, "p", json!({"type": "noop", "name": "short"})).status,
        200
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.get("/proxies/p/toxics/short").status, 200);
    add(&d, "p", json!({"type": "noop", "ttl_ms": "soon"})).assert_error(
        400,
        "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.ttl_ms of type uint64",
    );
}

#[test]
fn max_fault_duration_caps_every_toxic() {
    let d = Daemon::start_with(&["--max-fault-duration", "400ms"]);
    d.disabled_proxy("p");
    let r = add(&d, "p", json!({"type": "noop", "name": "forever"}));
    assert_eq!(r.json()["ttl_ms"], 400);
    let r = add(
        &d,
        "p",
        json!({"type": "noop", "name": "long", "ttl_ms": 60000}),
    );
    assert_eq!(r.json()["ttl_ms"], 400);
    let r = add(
        &d,
        "p",
        json!({"type": "noop", "name": "short", "ttl_ms": 100}),
    );
    assert_eq!(r.json()["ttl_ms"], 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d
        .get("/proxies/p/toxics")
        .json()
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "capped toxics never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
}
