//! A schema-driven fuzz run against a live daemon (issue 7): requests built
//! from the API's own field names with wrong, odd and valid values. Every
//! answer must be one the contract allows, in ToxiProxy's error form, and
//! the daemon must stay up with a consistent state.

mod conformance_support;

use conformance_support::{Daemon, Resp};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Map, Value};

const NAMES: [&str; 4] = ["a", "b", "c d", "Ω"];
const TYPES: [&str; 12] = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "noop",
    "packet_loss",
    "loss",
    "Latency",
    "",
];
const KEYS: [&str; 20] = [
    "name",
    "listen",
    "upstream",
    "enabled",
    "Logger",
    "toxics",
    "target",
    "type",
    "stream",
    "toxicity",
    "attributes",
    "ttl_ms",
    "latency",
    "jitter",
    "rate",
    "average_size",
    "size_variation",
    "delay",
    "timeout",
    "bytes",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..100_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2.0f64..8.0).prop_map(Value::from),
        prop::sample::select(NAMES.to_vec()).prop_map(Value::from),
        prop::sample::select(TYPES.to_vec()).prop_map(Value::from),
        prop::sample::select(vec!["upstream", "DOWNSTREAM", "sideways", ""]).prop_map(Value::from),
        // Only addresses that bind nothing fixed and dial nothing outside.
        prop::sample::select(vec![
            "127.0.0.1:0",
            "nope",
            "",
            "127.0.0.1:99999",
            "[::1]:0"
        ])
        .prop_map(Value::from),
        (0u32..3).prop_map(|n| serde_json::json!({"netns": format!("injector-fuzz-none-{n}")})),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |kv| Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

/// A toxic-shaped object: a type and attributes, the rest at random.
fn toxic_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(TYPES.to_vec()),
        prop::collection::vec((prop::sample::select(KEYS[12..].to_vec()), value()), 0..4),
        prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..3),
    )
        .prop_map(|(kind, attrs, rest)| {
            let mut m: Map<String, Value> =
                rest.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            m.insert("type".into(), Value::from(kind));
            m.insert(
                "attributes".into(),
                Value::Object(attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            );
            serde_json::to_vec(&m).unwrap()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => toxic_body(),
        4 => prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..7).prop_map(|kv| {
            let m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::to_vec(&m).unwrap()
        }),
        1 => value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "a", "b", "c%20d", "%CE%A9", "zz"]);
    prop_oneof![
        2 => Just("/proxies".to_string()),
        1 => Just("/populate".to_string()),
        1 => Just("/reset".to_string()),
        2 => name.clone().prop_map(|p| format!("/proxies/{p}")),
        6 => name.clone().prop_map(|p| format!("/proxies/{p}/toxics")),
        4 => (
            name,
            prop::sample::select(vec!["latency_downstream", "a", "noop_upstream", "x"])
        )
            .prop_map(|(p, t)| format!("/proxies/{p}/toxics/{t}")),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "POST", "POST", "PATCH", "DELETE"])
}

/// The answers the contract allows for any request.
fn check(path: &str, r: &Resp) -> Result<(), String> {
    match r.status {
        200 | 201 | 204 => return Ok(()),
        405 if r.body.is_empty() => return Ok(()),
        _ => {}
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("{} not JSON ({e}): {}", r.status, r.text()))?;
    if v["status"] != r.status {
        return Err(format!("status {} but body {}", r.status, r.text()));
    }
    let msg = v["error"].as_str().ok_or("no error text")?;
    let allowed = match r.status {
        400 | 404 | 409 | 413 => true,
        // Raw Go-style address and bind errors, and kernel set-up errors.
        500 => {
            msg.starts_with("listen tcp")
                || msg.starts_with("address ")
                || msg.contains("missing port")
        }
        501 => true,
        _ => false,
    };
    if !allowed {
        return Err(format!("{path}: unexpected {} {}", r.status, r.text()));
    }
    let json_errors = path == "/populate";
    let ct = r.header("content-type");
    if json_errors && ct != Some("application/json")
        || !json_errors && ct != Some("text/plain; charset=utf-8")
    {
        return Err(format!("{path}: content type {ct:?} for {}", r.text()));
    }
    Ok(())
}

#[test]
fn random_requests_get_contract_answers_and_the_daemon_stays_consistent() {
    let mut d = Daemon::start();
    let seed = |d: &Daemon| {
        for name in ["a", "b"] {
            if d.get(&format!("/proxies/{name}")).status == 404 {
                d.disabled_proxy(name);
            }
        }
    };
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(method(), path(), body()), |(m, p, b)| {
            seed(&d);
            let r = d.request(m, &p, Some(&b), &[]);
            check(&p, &r).map_err(|e| {
                TestCaseError::fail(format!("{m} {p} {:?}: {e}", String::from_utf8_lossy(&b)))
            })
        })
        .unwrap();
    assert!(d.alive());
    let all = d.get("/proxies").json();
    for (name, p) in all.as_object().unwrap() {
        assert_eq!(p["name"], name.as_str());
        let toxics = p["toxics"].as_array().unwrap();
        let ups: Vec<bool> = toxics
            .iter()
            .map(|t| {
                t["stream"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case("upstream")
            })
            .collect();
        assert!(
            ups.windows(2).all(|w| w[0] >= w[1]),
            "{name}: upstream chain first"
        );
        let mut names: Vec<&str> = toxics.iter().map(|t| t["name"].as_str().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), toxics.len(), "{name}: toxic names are unique");
    }
}
