//! POST /populate and POST /reset: validation first, add/keep/replace in
//! order, partial results with JSON error bodies; reset re-enables and
//! strips (../shared/toxiproxy-api.md §2).

mod conformance_support;

use std::net::TcpStream;

use conformance_support::{Daemon, Echo, echo_through};
use serde_json::json;

#[test]
fn empty_inputs_answer_201_with_null() {
    let d = Daemon::start();
    for body in ["null", "[]", " [] trailing"] {
        d.post("/populate", body)
            .assert_json(201, r#"{"proxies":null}"#);
    }
}

#[test]
fn everything_is_validated_before_anything_is_created() {
    let d = Daemon::start();
    let r = d.post(
        "/populate",
        r#"[{"name":"a","upstream":"x","enabled":false},{"upstream":"y"}]"#,
    );
    r.assert_json(
        400,
        r#"{"error":"missing required field: name at proxy 2","status":400,"proxies":null}"#,
    );
    d.post("/populate", r#"[{"name":"a","upstream":""}]"#).assert_json(
        400,
        r#"{"error":"missing required field: upstream at proxy 1","status":400,"proxies":null}"#,
    );
    d.post("/populate", "").assert_json(
        400,
        r#"{"error":"bad request body: EOF","status":400,"proxies":null}"#,
    );
    let r = d.post("/populate", r#"{"name":"a"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json()["error"],
        "bad request body: json: cannot unmarshal object into Go value of type []struct { toxiproxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }"
    );
    d.post("/populate", r#"[{"name":"a","upstream":"b","enabled":"no"}]"#).assert_json(
        400,
        r#"{"error":"bad request body: json: cannot unmarshal string into Go struct field .enabled of type bool","status":400,"proxies":null}"#,
    );
    d.get("/proxies").assert_json(200, "{}");
}

#[test]
fn proxies_are_added_in_input_order() {
    let d = Daemon::start();
    let r = d.post(
        "/populate",
        r#"[{"name":"b","listen":"127.0.0.1:0","upstream":"x","enabled":false},
            {"name":"a","listen":"127.0.0.1:0","upstream":"y","enabled":false,"toxics":[{"type":"latency"}]}]"#,
    );
    r.assert_json(
        201,
        r#"{"proxies":[{"name":"b","listen":"127.0.0.1:0","upstream":"x","enabled":false,"Logger":{},"toxics":[]},{"name":"a","listen":"127.0.0.1:0","upstream":"y","enabled":false,"Logger":{},"toxics":[]}]}"#,
    );
    // `toxics` in populate input are ignored, as ToxiProxy ignores them.
    assert_eq!(d.get("/proxies/a/toxics").text(), "[]");
}

#[test]
fn same_addresses_keep_the_proxy_with_its_toxics_and_state() {
    let d = Daemon::start();
    d.disabled_proxy("k");
    assert_eq!(
        d.post("/proxies/k/toxics", r#"{"type":"latency"}"#).status,
        200
    );
    // enabled (default true) is ignored for a kept proxy.
    let r = d.post(
        "/populate",
        r#"[{"name":"k","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}]"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let p = &r.json()["proxies"][0];
    assert_eq!(p["enabled"], false);
    assert_eq!(p["toxics"][0]["name"], "latency_downstream");
    // Another upstream replaces it: the toxics are gone.
    let r = d.post(
        "/populate",
        r#"[{"name":"k","listen":"127.0.0.1:0","upstream":"elsewhere:1","enabled":false}]"#,
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["proxies"][0]["upstream"], "elsewhere:1");
    assert_eq!(d.get("/proxies/k/toxics").text(), "[]");
}

#[test]
fn the_first_failure_stops_and_reports_what_was_done() {
    let d = Daemon::start();
    let r = d.post(
        "/populate",
        r#"[{"name":"ok1","upstream":"x","enabled":false},
            {"name":"bad","listen":"nope","upstream":"x"},
            {"name":"never","upstream":"x","enabled":false}]"#,
    );
    r.assert_json(
        500,
        r#"{"error":"listen tcp: address nope: missing port in address","status":500,"proxies":[{"name":"ok1","listen":"","upstream":"x","enabled":false,"Logger":{},"toxics":[]}]}"#,
    );
    let all = d.get("/proxies").json();
    assert!(all.get("ok1").is_some());
    assert!(all.get("bad").is_none() && all.get("never").is_none());
}

#[test]
fn populate_starts_enabled_proxies() {
    let d = Daemon::start();
    let echo = Echo::start();
    let body =
        json!([{"name": "live", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()}]);
    let r = d.post("/populate", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["proxies"][0]["listen"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(listen, "127.0.0.1:0");
    assert_eq!(echo_through(&listen, b"hi").unwrap(), b"hi");
}

#[test]
fn reset_strips_toxics_and_keeps_proxies() {
    let d = Daemon::start();
    let echo = Echo::start();
    let r = d.post(
        "/proxies",
        &json!({"name": "a", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()})
            .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();
    assert_eq!(
        d.post(
            "/proxies/a/toxics",
            r#"{"type":"latency","attributes":{"latency":1}}"#
        )
        .status,
        200
    );
    assert_eq!(
        d.post(
            "/proxies/a/toxics",
            r#"{"type":"noop","stream":"upstream"}"#
        )
        .status,
        200
    );
    assert_eq!(d.patch("/proxies/a", r#"{"enabled":false}"#).status, 200);
    assert!(TcpStream::connect(&listen).is_err());
    // The body is ignored.
    let r = d.post("/reset", "not json at all");
    assert_eq!((r.status, r.body.len()), (204, 0));
    let p = d.get("/proxies/a").json();
    assert_eq!(p["enabled"], true);
    assert_eq!(p["listen"], listen.as_str());
    assert_eq!(p["toxics"], json!([]));
    assert_eq!(echo_through(&listen, b"back").unwrap(), b"back");
}

#[test]
fn reset_of_disabled_proxies_and_its_failure() {
    let d = Daemon::start();
    let r = d.post(
        "/proxies",
        r#"{"name":"z","listen":"nope","upstream":"x","enabled":false}"#,
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        d.post("/proxies/z/toxics", r#"{"type":"noop"}"#).status,
        200
    );
    d.post("/reset", "")
        .assert_error(500, "listen tcp: address nope: missing port in address");
    // The walk stopped before this proxy's toxics were removed.
    assert_eq!(
        d.get("/proxies/z/toxics").json().as_array().unwrap().len(),
        1
    );
}
