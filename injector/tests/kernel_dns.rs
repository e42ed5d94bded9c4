//! The DNS fault that needs the stock kernel: `delay` holds matching
//! queries in a netem class. Where netem is missing (the build kernel) the
//! toxic must be refused with an error naming netem; where it exists (the
//! VM of `cargo xtask vm-test`) matching queries arrive late and others do
//! not. No external program: the VM has none (dns_clients.rs tests the
//! other DNS faults with dnsmasq, dig and glibc).

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use injector::{
    kernel::{DataPlane, KernelProxy},
    lab::services::dnswire,
    model::{Stream, Target},
};
use serde_json::json;

/// A resolver answering every A query with 10.9.0.1, until dropped.
struct Resolver {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Resolver {
    fn start(bind: SocketAddr) -> Resolver {
        let s = UdpSocket::bind(bind).expect("bind resolver port 53");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((id, flags, q)) = dnswire::parse_query(&buf[..n]) {
                    let a = dnswire::answer(id, flags, &q, 0, &[Ipv4Addr::new(10, 9, 0, 1)]);
                    let _ = s.send_to(&a, from);
                }
            }
        });
        Resolver {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The fastest of `n` round trips of an A query for `name`.
fn fastest_query(to: SocketAddr, name: &'static str, n: usize) -> Duration {
    (0..n)
        .map(|i| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let t = Instant::now();
            s.send_to(&dnswire::query(i as u16, name), to).unwrap();
            let mut buf = [0u8; 1500];
            let len = s.recv(&mut buf).expect("an answer");
            let r = dnswire::parse_response(&buf[..len]).expect("a DNS response");
            assert_eq!(r.rcode, dnswire::RCODE_OK);
            t.elapsed()
        })
        .min()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_holds_matching_queries_or_names_the_missing_netem() {
    require_root();
    let dp = DataPlane::load().await.expect("load data plane");
    let pair = Pair::new().await;
    let to = SocketAddr::new(pair.host_v4.into(), 53);
    let _resolver = Resolver::start(to);
    let mut p = KernelProxy::start(&dp, "dns", "*:53", &Target::Netns(pair.ns.name.clone()))
        .await
        .unwrap();
    let t = toxic(
        "dns",
        Stream::Upstream,
        json!({"action": "delay", "delay": 300, "domains": ["slow.test"]}),
    );
    if netem_or_refusal(&mut p, t).await.is_none() {
        p.stop().await;
        return;
    }
    let slow = pair.ns.run(move || fastest_query(to, "slow.test", 5));
    let fast = pair.ns.run(move || fastest_query(to, "quick.test", 5));
    assert!(
        slow >= Duration::from_millis(295),
        "a delayed query took {slow:?}"
    );
    assert!(
        fast < Duration::from_millis(250),
        "an unmatched query was held: {fast:?}"
    );
    p.stop().await;
}
