//! Kernel-native proxies at the API level (issue 3): the `target` field,
//! and refusals that must leave nothing behind. Their faults on traffic are
//! the data plane's tests.

mod common;
mod conformance_support;

use std::{
    io::ErrorKind,
    net::SocketAddr,
    time::{Duration, Instant},
};

use conformance_support::Daemon;
use serde_json::json;

#[test]
fn targets_are_decoded_strictly() {
    let d = Daemon::start();
    let cases = [
        (
            json!({"vm": "x"}),
            "bad request body: unknown target kind \"vm\"",
        ),
        (
            json!({}),
            "bad request body: target takes exactly one of interface, netns, cgroup, pid, container",
        ),
        (
            json!({"netns": "a", "cgroup": "b"}),
            "bad request body: target takes exactly one of interface, netns, cgroup, pid, container",
        ),
        (
            json!("web"),
            "bad request body: target must be an object with one of interface, netns, cgroup, pid, container",
        ),
        (
            json!({"pid": -1}),
            "bad request body: target pid must be a positive integer",
        ),
        (
            json!({"container": ""}),
            "bad request body: target container must be a non-empty string",
        ),
    ];
    for (target, want) in cases {
        let body = json!({"name": "k", "upstream": "*:80", "target": target});
        d.post("/proxies", &body.to_string())
            .assert_error(400, want);
    }
    d.get("/proxies").assert_json(200, "{}");
}

#[test]
fn a_target_that_cannot_be_set_up_is_refused_and_leaves_nothing() {
    let d = Daemon::start();
    let body = json!({"name": "k", "upstream": "*:80", "target": {"netns": "injector-test-no-such-netns"}});
    let r = d.post("/proxies", &body.to_string());
    assert!(r.status >= 400, "{} {}", r.status, r.text());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(!msg.is_empty());
    r.assert_error(r.status, &msg);
    d.get("/proxies").assert_json(200, "{}");

    // In /populate: the proxies before it stay, the error is JSON.
    let list = json!([
        {"name": "first", "upstream": "x", "enabled": false},
        {"name": "k", "upstream": "*:80", "target": {"netns": "injector-test-no-such-netns"}},
        {"name": "never", "upstream": "x", "enabled": false},
    ]);
    let r = d.post("/populate", &list.to_string());
    assert_eq!(r.status, r.json()["status"].as_u64().unwrap() as u16);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["proxies"][0]["name"], "first");
    assert_eq!(r.json()["proxies"].as_array().unwrap().len(), 1);
    let all = d.get("/proxies").json();
    assert_eq!(
        all.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["first"]
    );
}

#[test]
fn a_listen_proxy_cannot_become_kernel_native() {
    let d = Daemon::start();
    d.disabled_proxy("p");
    d.patch("/proxies/p", r#"{"target":{"netns":"x"}}"#).assert_error(
        400,
        "a listen proxy cannot become kernel-native; delete it and create it again with a target",
    );
    assert!(d.get("/proxies/p").json().get("target").is_none());
}

/// The ToxiProxy API driving a kernel-native proxy on a namespace this test
/// makes (a container, as far as the kernel can tell).
#[test]
fn kernel_native_proxies_through_the_toxiproxy_api() {
    common::require_root();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pair = rt.block_on(common::Pair::new());
    let d = Daemon::with_kernel();
    let server = common::TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let up = server.addr.to_string();
    let ns = pair.ns.name.clone();
    let to = server.addr;
    let connect = || {
        pair.ns.run(move || {
            common::connect(to, Duration::from_secs(3))
                .map(drop)
                .map_err(|e| e.kind())
        })
    };
    let refused = Err(ErrorKind::ConnectionRefused);

    // `listen` is ignored and shown empty; `target` comes after `toxics`.
    let body =
        json!({"name": "k", "listen": "127.0.0.1:0", "upstream": up, "target": {"netns": ns}});
    d.post("/proxies", &body.to_string()).assert_json(
        201,
        &format!(
            r#"{{"name":"k","listen":"","upstream":"{up}","enabled":true,"Logger":{{}},"toxics":[],"target":{{"netns":"{ns}"}}}}"#
        ),
    );
    assert_eq!(connect(), Ok(()));

    d.post("/proxies/k/toxics", r#"{"name":"r","type":"refuse"}"#)
        .assert_json(
            200,
            r#"{"attributes":{},"name":"r","type":"refuse","stream":"downstream","toxicity":1}"#,
        );
    assert_eq!(connect(), refused);
    // Kernel fault types are welcome here; stream rewriting is not.
    assert_eq!(
        d.post(
            "/proxies/k/toxics",
            r#"{"type":"loss","attributes":{"probability":0}}"#
        )
        .status,
        200
    );
    let r = d.post(
        "/proxies/k/toxics",
        r#"{"type":"slicer","attributes":{"average_size":8}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("slicer"),
        "{}",
        r.text()
    );
    // Latency needs netem: where the kernel lacks it, the error names it
    // and nothing changes.
    let before = d.get("/proxies/k/toxics").text();
    let r = d.post(
        "/proxies/k/toxics",
        r#"{"type":"latency","attributes":{"latency":5}}"#,
    );
    if r.status != 200 {
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains("netem"), "{}", r.text());
        r.assert_error(r.status, &msg);
        assert_eq!(d.get("/proxies/k/toxics").text(), before);
    } else {
        assert_eq!(d.delete("/proxies/k/toxics/latency_downstream").status, 204);
    }

    assert_eq!(d.delete("/proxies/k/toxics/r").status, 204);
    assert_eq!(connect(), Ok(()));

    // Disabled: new connections refused, as a disabled ToxiProxy proxy.
    let r = d.patch("/proxies/k", r#"{"enabled":false}"#);
    assert_eq!((r.status, r.json()["enabled"].clone()), (200, json!(false)));
    assert_eq!(connect(), refused);
    assert_eq!(d.patch("/proxies/k", r#"{"enabled":true}"#).status, 200);
    assert_eq!(connect(), Ok(()));

    // A toxic with a ttl goes by itself, from the API and from the kernel.
    assert_eq!(
        d.post(
            "/proxies/k/toxics",
            r#"{"name":"brief","type":"refuse","ttl_ms":700}"#
        )
        .status,
        200
    );
    assert_eq!(connect(), refused);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get("/proxies/k/toxics/brief").status == 200 {
        assert!(Instant::now() < deadline, "the toxic never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(connect(), Ok(()));

    // /reset strips kernel toxics too.
    assert_eq!(
        d.post("/proxies/k/toxics", r#"{"name":"r2","type":"refuse"}"#)
            .status,
        200
    );
    assert_eq!(connect(), refused);
    assert_eq!(d.post("/reset", "").status, 204);
    assert_eq!(d.get("/proxies/k/toxics").text(), "[]");
    assert_eq!(connect(), Ok(()));

    // Deleting the proxy removes its rules.
    assert_eq!(
        d.post("/proxies/k/toxics", r#"{"name":"r3","type":"refuse"}"#)
            .status,
        200
    );
    assert_eq!(d.delete("/proxies/k").status, 204);
    assert_eq!(connect(), Ok(()));
}
