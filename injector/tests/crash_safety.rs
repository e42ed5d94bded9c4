//! Crash safety (issue 7): a daemon killed with SIGKILL while holding 100
//! faults across ten targets leaves only what the kernel keeps by itself
//! (qdiscs, IFBs); its BPF programs go with it, and the next start removes
//! the rest before its API answers.

mod common;
mod conformance_support;

use std::time::Duration;

use common::*;
use conformance_support::Daemon;
use injector::kernel::{netlink::Netlink, tc::ROOT_MAJOR};
use serde_json::json;

/// Names of BPF programs attached to an interface's tcx hooks (Debian 12's
/// bpftool predates tcx, so the kernel is asked directly).
fn tc_programs(ifname: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let mut names = Vec::new();
    for ty in [TcAttachType::Ingress, TcAttachType::Egress] {
        if let Ok((_, progs)) = SchedClassifier::query_tcx(ifname, ty) {
            for p in progs {
                names.push(p.name_as_str().unwrap_or("").to_string());
            }
        }
    }
    names
}

async fn ours_in_kernel(nl: &Netlink, pairs: &[Pair]) -> Vec<String> {
    let mut found = Vec::new();
    for p in pairs {
        for q in nl.qdiscs(p.host_index).await.unwrap() {
            if q.handle >> 16 == ROOT_MAJOR as u32 {
                found.push(format!("htb on {}", p.host_if));
            }
        }
        for prog in tc_programs(&p.host_if) {
            if prog.starts_with("tc_") {
                found.push(format!("{prog} on {}", p.host_if));
            }
        }
    }
    for l in nl.links().await.unwrap() {
        if l.name.starts_with("inj-ifb")
            && pairs
                .iter()
                .any(|p| l.name == format!("inj-ifb{}", p.host_index))
        {
            found.push(l.name);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_100_faults_then_restart_leaves_nothing() {
    require_root();
    // A bystander daemon lives through it all: its faults are its own, and
    // the dead daemon's leftovers still go (each daemon has its journal).
    let bystander_pair = Pair::new().await;
    let bystander = Daemon::with_kernel();
    let proxy = json!({"name": "b", "upstream": format!("{}/32", bystander_pair.host_v4), "target": {"netns": bystander_pair.ns.name}});
    assert_eq!(bystander.post("/proxies", &proxy.to_string()).status, 201);
    let slow = json!({"name": "slow", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 100}});
    assert_eq!(
        bystander
            .post("/proxies/b/toxics", &slow.to_string())
            .status,
        200
    );

    let mut pairs = Vec::new();
    for _ in 0..10 {
        pairs.push(Pair::new().await);
    }
    let mut d = Daemon::with_kernel();
    for (i, p) in pairs.iter().enumerate() {
        let proxy = json!({"name": format!("p{i}"), "upstream": format!("{}/32", p.host_v4), "target": {"netns": p.ns.name}});
        let r = d.post("/proxies", &proxy.to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        let toxics = [
            json!({"name": "a", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 100}}),
            json!({"name": "b", "type": "bandwidth", "stream": "downstream", "attributes": {"rate": 100}}),
            json!({"name": "c", "type": "loss", "attributes": {"probability": 0.1}}),
            json!({"name": "d", "type": "loss", "stream": "upstream", "attributes": {"probability": 0.1}}),
            json!({"name": "e", "type": "reset", "attributes": {"after_ms": 60000}}),
            json!({"name": "f", "type": "refuse"}),
            json!({"name": "g", "type": "noop"}),
            json!({"name": "h", "type": "noop", "stream": "upstream"}),
            json!({"name": "i", "type": "reset_peer", "attributes": {"timeout": 60000}}),
            json!({"name": "j", "type": "limit_data", "attributes": {"bytes": 1000000}}),
        ];
        for t in toxics {
            let r = d.post(&format!("/proxies/p{i}/toxics"), &t.to_string());
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let nl = Netlink::current().unwrap();
    let before = ours_in_kernel(&nl, &pairs).await;
    assert!(
        before.len() >= 30,
        "the faults are in the kernel: {before:?}"
    );

    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) }, 0);
    assert!(!d.alive_after(Duration::from_secs(5)), "the daemon died");
    // Links die with the process: no program stays attached.
    let after_kill = ours_in_kernel(&nl, &pairs).await;
    assert!(
        after_kill.iter().all(|o| !o.contains("tc_")),
        "programs outlived the daemon: {after_kill:?}"
    );
    assert!(
        !after_kill.is_empty(),
        "qdiscs and IFBs outlive a killed daemon (the kernel keeps them)"
    );

    // The next daemon removes them before its API answers.
    let d2 = Daemon::with_kernel();
    let left = ours_in_kernel(&nl, &pairs).await;
    assert!(left.is_empty(), "left after restart: {left:?}");
    let kept = ours_in_kernel(&nl, std::slice::from_ref(&bystander_pair)).await;
    assert!(
        // Upstream shaping lives on the IFB behind the host veth.
        kept.iter().any(|o| o.starts_with("inj-ifb"))
            && kept.iter().any(|o| o.starts_with("tc_ingress")),
        "the bystander lost its fault: {kept:?}"
    );
    assert_eq!(bystander.get("/proxies/b/toxics/slow").status, 200);
    drop(d2);
    drop(d);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_removes_every_kernel_object_before_exit() {
    require_root();
    let pairs = vec![Pair::new().await, Pair::new().await];
    let mut d = Daemon::with_kernel();
    for (i, p) in pairs.iter().enumerate() {
        let proxy = json!({"name": format!("p{i}"), "upstream": format!("{}/32", p.host_v4), "target": {"netns": p.ns.name}});
        assert_eq!(d.post("/proxies", &proxy.to_string()).status, 201);
        for t in [
            json!({"name": "a", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 100}}),
            json!({"name": "b", "type": "bandwidth", "attributes": {"rate": 100}}),
            json!({"name": "c", "type": "blackhole"}),
        ] {
            let r = d.post(&format!("/proxies/p{i}/toxics"), &t.to_string());
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let nl = Netlink::current().unwrap();
    assert!(!ours_in_kernel(&nl, &pairs).await.is_empty());
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) }, 0);
    assert!(
        !d.alive_after(Duration::from_secs(10)),
        "the daemon exits on SIGTERM"
    );
    let left = ours_in_kernel(&nl, &pairs).await;
    assert!(left.is_empty(), "left after SIGTERM: {left:?}");
}
