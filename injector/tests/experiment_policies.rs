//! Policy files: every shipped policy validates and says what its seed
//! scenario says; mistakes are reported at their line and column (TOML) or
//! path (JSON), all of them in one pass.

use std::path::PathBuf;

use injector::experiment::{Policy, policy::Step};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn load(name: &str) -> Policy {
    let path = policies_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Policy::from_toml(name, &text).unwrap_or_else(|e| panic!("{e}"))
}

const SCENARIOS: [&str; 9] = [
    "peak-load.toml",
    "black-friday.toml",
    "timeout-vs-slow-backend.toml",
    "slow-payment-provider.toml",
    "dead-catalog.toml",
    "database-outage.toml",
    "lost-zone.toml",
    "dns-outage.toml",
    "payment-outage.toml",
];

#[test]
fn every_shipped_policy_validates() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(policies_dir()).expect("policies/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let p = load(&name);
        assert!(
            p.method_duration() <= p.blast_radius.max_duration,
            "{name}: the method fits the blast radius"
        );
        assert!(!p.abort.when.is_empty(), "{name} has an abort condition");
        assert!(!p.hypothesis.holds.is_empty(), "{name} has a hypothesis");
        seen.push(name);
    }
    for s in SCENARIOS {
        assert!(seen.iter().any(|n| n == s), "policies/{s} is shipped");
    }
}

/// The first inject or ramp of a policy: (proxy, type, attributes).
fn first_fault(p: &Policy) -> (String, String, serde_json::Value) {
    for s in &p.method {
        match s {
            Step::Inject(i) => {
                return (
                    i.proxy.clone(),
                    i.kind.clone(),
                    serde_json::Value::Object(i.attributes.clone()),
                );
            }
            Step::Ramp(r) => {
                return (
                    r.proxy.clone(),
                    r.kind.clone(),
                    serde_json::Value::Object(r.attributes_at(r.steps as usize - 1)),
                );
            }
            _ => {}
        }
    }
    panic!("{} injects nothing", p.name)
}

#[test]
fn shipped_policies_reproduce_the_seed_faults() {
    use serde_json::json;
    let (proxy, kind, attrs) = first_fault(&load("peak-load.toml"));
    assert_eq!((proxy.as_str(), kind.as_str()), ("orders", "latency"));
    assert_eq!(attrs, json!({"latency": 1500}));
    let (_, kind, attrs) = first_fault(&load("black-friday.toml"));
    assert_eq!(kind, "latency");
    assert_eq!(attrs, json!({"jitter": 500, "latency": 3000}));
    let (proxy, _, attrs) = first_fault(&load("slow-payment-provider.toml"));
    assert_eq!(proxy, "payments");
    assert_eq!(attrs, json!({"latency": 8000, "jitter": 2000}));
    // Orders' client timeout on payments is 5 s (the lab's, as the seed's);
    // the backend is made slower than that.
    let t = load("timeout-vs-slow-backend.toml");
    assert!(first_fault(&t).2["latency"].as_i64().unwrap() > 5000);
    assert_eq!(first_fault(&load("dead-catalog.toml")).1, "refuse");
    assert_eq!(
        first_fault(&load("database-outage.toml")),
        ("db".into(), "blackhole".into(), json!({}))
    );
    assert_eq!(first_fault(&load("lost-zone.toml")).0, "orders-b");
    let dns = load("dns-outage.toml");
    assert_eq!(
        first_fault(&dns),
        ("dns".into(), "dns".into(), json!({"action": "servfail"}))
    );
    // The seed's `docker pause payment-mock`, as a proxy the method makes.
    let pay = load("payment-outage.toml");
    assert_eq!(pay.created_proxies(), ["payments-outage"]);
    assert_eq!(first_fault(&pay).1, "refuse");
}

const GOOD: &str = r#"[experiment]
name = "t"

[steady_state]
baseline = "1s"

[[steady_state.probe]]
name = "api"
type = "tcp"
address = "127.0.0.1:9"
slis = ["success_rate >= 99%"]

[hypothesis]
text = "x"

[blast_radius]
proxies = ["orders"]
toxicity = 0.5
max_duration = "10s"

[abort]
when = ["error_rate > 50% over 1s"]

[[method]]
action = "inject"
proxy = "orders"
toxic = "slow"
type = "latency"
attributes = { latency = 100 }

[[method]]
action = "wait"
duration = "5s"
"#;

/// Replaces `from` (which must occur once) and returns the problems.
fn problems(from: &str, to: &str) -> Vec<String> {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?} occurs once");
    let text = GOOD.replacen(from, to, 1);
    Policy::from_toml("p.toml", &text)
        .expect_err("the policy must be refused")
        .problems
}

#[test]
fn the_reference_policy_is_valid_and_defaults_are_explicit() {
    let p = Policy::from_toml("p.toml", GOOD).unwrap();
    let Step::Inject(i) = &p.method[0] else {
        panic!()
    };
    // A step without a toxicity hits the blast radius' share.
    assert_eq!(i.toxicity, 0.5);
    assert_eq!(i.stream, "downstream");
    // No `holds`: the hypothesis is the steady state going on.
    assert_eq!(
        p.hypothesis.holds[0].to_string(),
        "api: success_rate >= 99%"
    );
}

#[test]
fn mistakes_are_reported_at_their_line_and_column() {
    assert_eq!(
        problems("toxicity = 0.5\n", "toxicity = 0.5\ncolour = \"red\"\n"),
        [
            "p.toml:19:1: unknown key `colour` in [blast_radius] (expected one of: proxies, targets, streams, toxicity, max_duration)"
        ]
    );
    assert_eq!(
        problems("proxy = \"orders\"\ntoxic", "proxy = \"payments\"\ntoxic"),
        ["p.toml:26:9: proxy \"payments\" is outside the blast radius (proxies = [\"orders\"])"]
    );
    assert_eq!(
        problems("toxic = \"slow\"\n", "toxic = \"slow\"\ntoxicity = 0.9\n"),
        ["p.toml:28:12: toxicity 0.9 is beyond the blast radius (toxicity <= 0.5)"]
    );
    assert_eq!(
        problems("duration = \"5s\"", "duration = \"11s\""),
        [
            "p.toml:33:12: the method runs 11s by the end of this step, beyond the blast radius' max_duration of 10s"
        ]
    );
    assert_eq!(
        problems(
            "\"error_rate > 50% over 1s\"",
            "\"error_rate > 50% ovr 1s\""
        ),
        [
            "p.toml:22:27: unexpected \"ovr\"; only `over <duration>` may follow the threshold (in \"error_rate > 50% ovr 1s\")"
        ]
    );
    assert_eq!(
        problems(
            "type = \"latency\"",
            "type = \"latency\"\nstream = \"sideways\""
        ),
        ["p.toml:29:10: stream \"sideways\" is neither upstream nor downstream"]
    );
    assert_eq!(
        problems("action = \"wait\"", "action = \"sleep\""),
        ["p.toml:32:10: unknown action \"sleep\" (inject, wait, ramp or remove)"]
    );
    assert_eq!(
        problems("[hypothesis]\ntext = \"x\"\n", ""),
        ["p.toml:1:1: missing `hypothesis` in the policy"]
    );
    assert_eq!(
        problems("address = \"127.0.0.1:9\"", "address = \"localhost\""),
        ["p.toml:10:11: `address` must be host:port, not \"localhost\""]
    );
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let text = GOOD
        .replace("baseline = \"1s\"", "baseline = \"soon\"")
        .replace("latency = 100", "latency = -1, jiter = 2");
    let e = Policy::from_toml("p.toml", &text).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.problems[0].starts_with("p.toml:5:12: `baseline`"), "{e}");
    assert!(
        e.problems[1].starts_with("p.toml:29:30: latency has no attribute `jiter`"),
        "{e}"
    );
}

#[test]
fn the_order_rule_refuses_abort_after_the_method() {
    let abort = "[abort]\nwhen = [\"error_rate > 50% over 1s\"]\n";
    let text = GOOD.replace(abort, "") + "\n" + abort;
    let e = Policy::from_toml("p.toml", &text).unwrap_err();
    assert_eq!(
        e.problems,
        [
            "p.toml:33:2: [abort] must be declared before [[method]]: hypothesis, blast radius and abort come first"
        ]
    );
}

#[test]
fn json_problems_name_their_path() {
    let body = serde_json::json!({
        "experiment": {"name": "j"},
        "steady_state": {"probe": [{"name": "a", "type": "tcp", "address": "127.0.0.1:9", "slis": ["p99 < 1s"]}]},
        "hypothesis": {"text": "x"},
        "blast_radius": {"proxies": ["o"], "max_duration": "1m"},
        "abort": {"when": ["error_rate > 5%"]},
        "method": [{"action": "wait", "duration": 5}]
    });
    let e = Policy::from_json("body", &body.to_string()).unwrap_err();
    assert_eq!(
        e.problems,
        ["body: method[0].duration: `duration` must be a string, not an integer"]
    );
}

#[test]
fn the_cli_checks_every_shipped_policy_without_a_daemon() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_injector"))
        .arg("run")
        .arg("--check")
        .args(&files)
        // Nothing listens there: --check must not need a daemon.
        .arg("--host")
        .arg("http://127.0.0.1:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok: ")).count(),
        files.len(),
        "{stdout}"
    );

    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), GOOD.replace("\"5s\"", "\"5 parsecs\"")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["run", "--check"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:33:12: `duration`: unknown unit",
            bad.path().display()
        )),
        "{err}"
    );
}
