//! GET /events: every change of the faults in force, as server-sent events.

mod conformance_support;

use conformance_support::{Daemon, Events};
use serde_json::{Value, json};

fn summary(e: &Value) -> (String, String, Value) {
    assert!(e["at_ms"].as_u64().unwrap() > 1_600_000_000_000, "{e}");
    (
        e["kind"].as_str().unwrap().to_string(),
        e["proxy"].as_str().unwrap().to_string(),
        e["toxic"].clone(),
    )
}

#[test]
fn fault_changes_are_streamed_in_order() {
    let d = Daemon::start();
    let mut events = Events::open(d.port);
    d.disabled_proxy("p");
    assert_eq!(
        d.post("/proxies/p/toxics", r#"{"type":"latency","name":"l"}"#)
            .status,
        200
    );
    assert_eq!(
        d.patch("/proxies/p/toxics/l", r#"{"toxicity":0.5}"#).status,
        200
    );
    assert_eq!(
        d.post(
            "/proxies/p/toxics",
            r#"{"type":"noop","name":"brief","ttl_ms":1500}"#
        )
        .status,
        200
    );
    // Refused changes are not events.
    assert_eq!(
        d.post("/proxies/p/toxics", r#"{"type":"nope"}"#).status,
        400
    );
    assert_eq!(d.delete("/proxies/p/toxics/l").status, 204);
    let want = [
        ("added", "p", Value::Null),
        ("added", "p", json!("l")),
        ("updated", "p", json!("l")),
        ("added", "p", json!("brief")),
        ("removed", "p", json!("l")),
        ("expired", "p", json!("brief")),
    ];
    for (kind, proxy, toxic) in want {
        assert_eq!(
            summary(&events.next()),
            (kind.to_string(), proxy.to_string(), toxic)
        );
    }
    assert_eq!(d.delete("/proxies/p").status, 204);
    assert_eq!(
        summary(&events.next()),
        ("removed".into(), "p".into(), Value::Null)
    );
}
