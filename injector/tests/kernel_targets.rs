//! Target kinds besides netns (interface, pid) and the filters an upstream
//! selector carries: protocol, several CIDRs, port ranges. Only Rust code
//! and syscalls: runs on the stock kernel in `cargo xtask vm-test` too.

mod common;

use std::{io::ErrorKind, net::SocketAddr, os::fd::AsRawFd, time::Duration};

use common::*;
use injector::{
    kernel::{DataPlane, KernelProxy},
    model::{Stream, Target},
};
use serde_json::json;

/// A process parked in the pair's namespace (forked, so no binary is
/// needed); killed on drop.
struct Parked(i32);

impl Parked {
    fn in_ns(ns: &Ns) -> Parked {
        let fd = ns.file.as_raw_fd();
        // Only async-signal-safe calls in the child.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            unsafe {
                libc::setns(fd, libc::CLONE_NEWNET);
                loop {
                    libc::pause();
                }
            }
        }
        // Give the child time to join the namespace.
        std::thread::sleep(Duration::from_millis(100));
        Parked(pid)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pid_target_acts_on_its_namespace() {
    require_root();
    let dp = DataPlane::load().await.unwrap();
    let pair = Pair::new().await;
    let parked = Parked::in_ns(&pair.ns);
    let server = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = KernelProxy::start(
        &dp,
        "pid",
        &server.addr.to_string(),
        &Target::Pid(parked.0 as u32),
    )
    .await
    .expect("resolve the process's namespace");
    assert!(
        p.description().contains(&pair.host_if),
        "{}",
        p.description()
    );
    p.set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let to = server.addr;
    let r = pair.ns.run(move || {
        connect(to, Duration::from_secs(2))
            .map(drop)
            .map_err(|e| e.kind())
    });
    assert_eq!(r, Err(ErrorKind::ConnectionRefused));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interface_target_sees_traffic_as_the_interface_does() {
    require_root();
    let dp = DataPlane::load().await.unwrap();
    let pair = Pair::new().await;
    let sink = UdpSink::start(SocketAddr::new(pair.ns_v4.into(), 0), Some(&pair.ns));
    // From the host end's own point of view, what goes into the namespace
    // leaves the interface: upstream = its egress towards the sink.
    let mut p = KernelProxy::start(
        &dp,
        "if",
        &sink.addr.to_string(),
        &Target::Interface(pair.host_if.clone()),
    )
    .await
    .unwrap();
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    send_udp(SocketAddr::new(pair.host_v4.into(), 0), sink.addr, 20);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 0);
    p.stop().await;
    send_udp(SocketAddr::new(pair.host_v4.into(), 0), sink.addr, 20);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.count(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_port_range_and_cidr_list_filters() {
    require_root();
    let dp = DataPlane::load().await.unwrap();
    let pair = Pair::new().await;
    let target = Target::Netns(pair.ns.name.clone());
    let src = SocketAddr::new(pair.ns_v4.into(), 0);

    // udp:// drops UDP only; TCP to the same address still connects.
    let udp = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let tcp = TcpServer::echo(SocketAddr::new(pair.host_v4.into(), 0), None);
    let mut p = KernelProxy::start(&dp, "proto", &format!("udp://{}/32", pair.host_v4), &target)
        .await
        .unwrap();
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let (u, t) = (udp.addr, tcp.addr);
    let connected = pair.ns.run(move || {
        send_udp(src, u, 10);
        connect(t, Duration::from_secs(2)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(udp.count(), 0, "UDP dropped");
    assert!(connected, "TCP untouched by a udp:// selector");
    // A TCP-only fault on a UDP selector is refused, not silently inert.
    let e = p
        .set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .expect_err("refuse needs TCP");
    assert_eq!(e.status, 400);
    p.stop().await;

    // A port range: the ports inside it are cut, the one after it is not.
    let sinks: Vec<UdpSink> = (0..3)
        .map(|_| UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None))
        .collect();
    let mut ports: Vec<u16> = sinks.iter().map(|s| s.addr.port()).collect();
    ports.sort();
    let range = format!("{}:{}-{}", pair.host_v4, ports[0], ports[1]);
    let mut p = KernelProxy::start(&dp, "range", &range, &target)
        .await
        .unwrap();
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.addr).collect();
    pair.ns.run(move || {
        for a in addrs {
            send_udp(src, a, 10);
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    for s in &sinks {
        let inside = (ports[0]..=ports[1]).contains(&s.addr.port());
        assert_eq!(
            s.count(),
            if inside { 0 } else { 10 },
            "port {}",
            s.addr.port()
        );
    }
    p.stop().await;

    // Several CIDRs in one selector, IPv4 and IPv6 together.
    let v4 = UdpSink::start(SocketAddr::new(pair.host_v4.into(), 0), None);
    let v6 = UdpSink::start(SocketAddr::new(pair.host_v6.into(), 0), None);
    let list = format!("{}/32,{}/128", pair.host_v4, pair.host_v6);
    let mut p = KernelProxy::start(&dp, "list", &list, &target)
        .await
        .unwrap();
    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let (a4, a6) = (v4.addr, v6.addr);
    let src6 = SocketAddr::new(pair.ns_v6.into(), 0);
    pair.ns.run(move || {
        send_udp(src, a4, 10);
        send_udp(src6, a6, 10);
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((v4.count(), v6.count()), (0, 0));
    p.stop().await;
}
