//! cgroup targets: only the sockets of the targeted cgroup (and below) are
//! touched, in any namespace; a sibling cgroup keeps working. The clients
//! are python3 processes started inside the test's own cgroups; traffic
//! goes to loopback only.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use common::*;
use injector::{
    kernel::{DataPlane, KernelProxy},
    model::{Stream, Target},
};
use serde_json::json;

async fn dp() -> Arc<DataPlane> {
    require_root();
    DataPlane::load().await.expect("load data plane")
}

/// Runs a python3 snippet inside cgroup `cg`; returns its stdout.
fn python(cg: &Cgroup, code: &str) -> String {
    let out = cg
        .command("python3")
        .args(["-c", code])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn connect_code(port: u16) -> String {
    format!(
        "import socket\ns=socket.socket()\ns.settimeout(2)\ntry:\n s.connect(('127.0.0.1',{port}))\n print('ok')\n\
         except ConnectionRefusedError:\n print('refused')\nexcept socket.timeout:\n print('timeout')"
    )
}

fn udp_code(port: u16, n: u32) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nok=0\nfor i in range({n}):\n \
         try:\n  s.sendto(b'x',('127.0.0.1',{port})); ok+=1\n except OSError as e:\n  print('error',e.errno); break\nprint(ok)"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn refuse_and_blackhole_touch_only_the_targeted_cgroup() {
    let dp = dp().await;
    let (hit, spared) = (Cgroup::new(), Cgroup::new());
    let server = TcpServer::echo("127.0.0.1:0".parse().unwrap(), None);
    let sink = UdpSink::start("127.0.0.1:0".parse().unwrap(), None);
    let target = Target::Cgroup(hit.rel.clone());

    let mut refuse = KernelProxy::start(&dp, "r", &server.addr.to_string(), &target)
        .await
        .unwrap();
    refuse
        .set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    assert_eq!(python(&hit, &connect_code(server.addr.port())), "refused");
    assert_eq!(python(&spared, &connect_code(server.addr.port())), "ok");

    let mut hole = KernelProxy::start(&dp, "b", &sink.addr.to_string(), &target)
        .await
        .unwrap();
    hole.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    // Silent: every sendto succeeds (no EPERM), nothing arrives.
    assert_eq!(python(&hit, &udp_code(sink.addr.port(), 20)), "20");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0);
    assert_eq!(python(&spared, &udp_code(sink.addr.port(), 20)), "20");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 20);

    refuse.stop().await;
    hole.stop().await;
    assert_eq!(python(&hit, &connect_code(server.addr.port())), "ok");
    assert_eq!(python(&hit, &udp_code(sink.addr.port(), 5)), "5");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        sink.count(),
        25,
        "traffic flows again once the toxics are gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cgroup_rules_reach_child_cgroups() {
    let dp = dp().await;
    let parent = Cgroup::new();
    let child_path = parent.path.join("child");
    std::fs::create_dir(&child_path).unwrap();
    let server = TcpServer::echo("127.0.0.1:0".parse().unwrap(), None);
    let mut p = KernelProxy::start(
        &dp,
        "r",
        &server.addr.to_string(),
        &Target::Cgroup(parent.rel.clone()),
    )
    .await
    .unwrap();
    p.set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let child = Cgroup {
        path: child_path,
        rel: format!("{}/child", parent.rel),
    };
    assert_eq!(python(&child, &connect_code(server.addr.port())), "refused");
    p.stop().await;
    drop(child);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_destroys_the_cgroups_connections_and_the_peer_sees_a_reset() {
    let dp = dp().await;
    let cg = Cgroup::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    let _ = c.write_all(&buf[..n]);
                }
                Err(e) => return Some(e.kind()),
            }
        }
    });
    let held = HeldConnection::open(&cg, addr);
    let mut p = KernelProxy::start(&dp, "x", &addr.to_string(), &Target::Cgroup(cg.rel.clone()))
        .await
        .unwrap();
    p.set_toxics(&[toxic("reset", Stream::Downstream, json!({}))])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The destroyed socket reports ECONNABORTED; its peer gets the RST.
    assert_eq!(held.use_again(), "ConnectionAbortedError");
    assert_eq!(server.join().unwrap(), Some(ErrorKind::ConnectionReset));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_rails_refuse_the_root_cgroup_and_loopback_without_force() {
    let dp = dp().await;
    let e = KernelProxy::start(&dp, "g", "*:80", &Target::Cgroup("/".into()))
        .await
        .err()
        .expect("the root cgroup is refused");
    assert_eq!(e.status, 403);
    assert!(
        e.message.contains("root cgroup") && e.message.contains("force"),
        "{}",
        e.message
    );
    let e = KernelProxy::start(&dp, "g", "*:80", &Target::Interface("lo".into()))
        .await
        .err()
        .expect("loopback is refused");
    assert!(e.message.contains("loopback"), "{}", e.message);
    // The interface of the host's default route: resolved, never touched.
    let nl = injector::kernel::netlink::Netlink::current().unwrap();
    let defaults = nl.default_route_ifindexes().await.unwrap();
    let links = nl.links().await.unwrap();
    let uplink = links
        .iter()
        .find(|l| defaults.contains(&l.index))
        .expect("the test host has a default route");
    let e = KernelProxy::start(&dp, "g", "*:80", &Target::Interface(uplink.name.clone()))
        .await
        .err()
        .expect("the default-route interface is refused");
    assert!(e.message.contains("default route"), "{}", e.message);
    // With force the target resolves (nothing is installed until a toxic).
    let forced = Target::Forced(Box::new(Target::Cgroup("/".into())));
    let p = KernelProxy::start(&dp, "g", "*:80", &forced)
        .await
        .expect("forced");
    p.stop().await;
}
