//! A real Docker container, targeted by name: the daemon resolves it
//! through the Docker Engine API to its namespace and host veth. The image
//! is imported from Debian's static busybox (no registry needed).

mod common;

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use common::*;
use injector::{
    kernel::{DataPlane, KernelProxy},
    model::{Stream, Target},
};
use serde_json::json;

fn wait_listening(to: SocketAddr) {
    for _ in 0..100 {
        if connect(to, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("container service at {to} never came up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_targeted_by_name_refuses_while_its_neighbour_serves() {
    require_root();
    let dp = DataPlane::load().await.unwrap();
    let orders = Container::run(&["nc", "-ll", "-p", "8080", "-e", "cat"]);
    let payments = Container::run(&["nc", "-ll", "-p", "8080", "-e", "cat"]);
    let (a, b) = (
        SocketAddr::new(orders.ip.into(), 8080),
        SocketAddr::new(payments.ip.into(), 8080),
    );
    wait_listening(a);
    wait_listening(b);
    // The seed recipe's shape: the upstream is the container's own service.
    let mut p = KernelProxy::start(
        &dp,
        "orders",
        &format!("{}:8080", orders.name),
        &Target::Container(orders.name.clone()),
    )
    .await
    .expect("resolve the container by name");
    p.set_toxics(&[toxic("refuse", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let r = connect(a, Duration::from_secs(2));
    assert_eq!(
        r.map(drop).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );
    let mut s = connect(b, Duration::from_secs(2)).expect("the other container still serves");
    echo_round(&mut s, 100).unwrap();

    p.set_toxics(&[toxic("blackhole", Stream::Upstream, json!({}))])
        .await
        .unwrap();
    let r = connect(a, Duration::from_millis(700));
    assert_eq!(r.map(drop).map_err(|e| e.kind()), Err(ErrorKind::TimedOut));

    p.stop().await;
    let mut s = connect(a, Duration::from_secs(2)).expect("restored");
    echo_round(&mut s, 100).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_stopped_containers_are_clear_errors() {
    require_root();
    let dp = DataPlane::load().await.unwrap();
    let e = KernelProxy::start(
        &dp,
        "x",
        "*:80",
        &Target::Container("injt-no-such-container".into()),
    )
    .await
    .err()
    .expect("must fail");
    assert_eq!(e.status, 404);
    assert!(e.message.contains("no such container"), "{}", e.message);
}
