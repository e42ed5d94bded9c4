//! Kernel-native proxies at the API level (issue 3): the `target` field,
//! and refusals that must leave nothing behind. Their faults on traffic are
//! the data plane's tests.

mod conformance_support;

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
