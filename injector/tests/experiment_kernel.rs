//! An experiment whose method creates a kernel-native proxy on a target
//! (a namespace this test makes, standing in for a container): the fault
//! bites in the kernel, the abort condition fires, and the rollback
//! deletes the proxy so traffic flows again.

mod common;
mod conformance_support;
mod experiment_support;

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use conformance_support::Daemon;
use experiment_support::run;

#[test]
fn a_kernel_native_proxy_made_by_the_method_is_refused_traffic_then_deleted() {
    common::require_root();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pair = rt.block_on(common::Pair::new());
    let server = common::TcpServer::echo(SocketAddr::new(pair.ns_v4.into(), 0), Some(&pair.ns));
    let d = Daemon::with_kernel();
    let ns = pair.ns.name.clone();
    let addr = server.addr;
    let policy = format!(
        r#"[experiment]
name = "zone lost"

[steady_state]
baseline = "600ms"
interval = "50ms"
timeout = "500ms"

[[steady_state.probe]]
name = "orders"
type = "tcp"
address = "{addr}"
slis = ["success_rate >= 99%"]

[hypothesis]
text = "orders keeps accepting connections"

[blast_radius]
proxies = ["zone-b"]
targets = [{{ netns = "{ns}" }}]
max_duration = "30s"

[abort]
when = ["error_rate > 50% over 500ms"]

[[method]]
action = "inject"
proxy = "zone-b"
create = {{ target = {{ netns = "{ns}" }}, upstream = "{addr}" }}
toxic = "down"
type = "refuse"

[[method]]
action = "wait"
duration = "20s"
"#
    );
    let started = Instant::now();
    let ran = run(&d, &policy);
    let took = started.elapsed();
    let explain = ran.explain();
    assert_eq!(ran.code(), Some(2), "{explain}");
    // Right after: the proxy is gone and connections open again.
    assert_eq!(d.get("/proxies/zone-b").status, 404, "{explain}");
    TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .expect("traffic flows again after the rollback");
    assert!(
        took < Duration::from_secs(12),
        "the abort cut the 20 s wait: {took:?}"
    );

    let j = ran.json();
    assert_eq!(j["state"], "aborted", "{explain}");
    assert_eq!(j["faults"][0]["type"], "refuse");
    let during = j["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["phase"] == "during faults")
        .expect("probes during the fault");
    assert!(
        during["errors"]
            .as_object()
            .unwrap()
            .contains_key("connection refused"),
        "{during}"
    );
    let notes: Vec<&str> = j["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(notes.contains(&"created proxy \"zone-b\""), "{notes:#?}");
    assert!(
        notes.contains(&"rollback: deleted proxy \"zone-b\""),
        "{notes:#?}"
    );
}
