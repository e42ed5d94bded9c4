//! `injector doctor` reports real probes, and its fault table follows from
//! them: a fault is listed as working exactly when what it needs exists.

use std::process::Command;

use serde_json::Value;

fn report() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["doctor", "--json"])
        .output()
        .expect("run injector doctor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
}

fn has(r: &Value, name: &str) -> bool {
    r["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("feature {name} is reported"))["available"]
        .as_bool()
        .unwrap()
}

fn works(r: &Value, fault: &str) -> bool {
    r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fault"].as_str().unwrap().starts_with(fault))
        .unwrap_or_else(|| panic!("fault {fault} is listed"))["works"]
        .as_bool()
        .unwrap()
}

#[test]
fn the_fault_table_follows_the_probed_features() {
    let r = report();
    for f in [
        "root",
        "btf",
        "bpf-programs",
        "tcx",
        "cgroup-v2",
        "htb",
        "tbf",
        "netem",
        "fq",
        "clsact",
        "ifb",
    ] {
        has(&r, f);
    }
    assert!(has(&r, "root"), "the test suite runs as root");
    assert!(
        has(&r, "bpf-programs"),
        "our programs must load on the test kernel"
    );
    let tc = has(&r, "tcx") || has(&r, "clsact");
    assert_eq!(works(&r, "loss"), tc);
    assert_eq!(
        works(&r, "bandwidth"),
        tc && has(&r, "htb") && has(&r, "ifb") && (has(&r, "tcx") || has(&r, "matchall-mirred"))
    );
    assert_eq!(
        works(&r, "latency"),
        tc && has(&r, "netem") && has(&r, "htb")
    );
    assert_eq!(
        works(&r, "corrupt"),
        tc && has(&r, "netem") && has(&r, "htb")
    );
    assert_eq!(works(&r, "cgroup targets"), has(&r, "cgroup-v2"));
    assert!(
        r["kernel"]
            .as_str()
            .unwrap()
            .chars()
            .next()
            .unwrap()
            .is_ascii_digit()
    );
}

#[test]
fn cleanup_on_a_clean_host_removes_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["cleanup", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["removed"], serde_json::json!([]), "{v}");
    assert!(v["daemon_running"].is_boolean(), "{v}");
}
