//! Many clients at once (ToxiProxy issues #159, #412: API deadlocks when
//! toxics change under traffic): every call answers, and the final state
//! is exactly what the successful calls left.

mod conformance_support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use conformance_support::{Daemon, Echo};
use serde_json::json;

#[test]
fn concurrent_clients_under_traffic_leave_a_consistent_state() {
    let d = Arc::new(Daemon::start());
    let echo = Echo::start();
    let r = d.post(
        "/proxies",
        &json!({"name": "busy", "listen": "127.0.0.1:0", "upstream": echo.addr.to_string()})
            .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let listen = r.json()["listen"].as_str().unwrap().to_string();

    // Traffic keeps flowing through the proxy the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (listen, stop) = (listen.clone(), stop.clone());
            thread::spawn(move || {
                let mut rounds = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(&listen) else {
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut buf = [0u8; 4];
                    if s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() {
                        rounds += 1;
                    }
                }
                rounds
            })
        })
        .collect();

    let workers: Vec<_> = (0..32)
        .map(|w| {
            let d = d.clone();
            thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..12 {
                    let name = format!("w{w}-{i}");
                    let stream = if i % 2 == 0 { "upstream" } else { "downstream" };
                    let r = d.post(
                        "/proxies/busy/toxics",
                        &json!({"name": name, "type": "latency", "stream": stream, "attributes": {"latency": 1}}).to_string(),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    let r = d.patch(&format!("/proxies/busy/toxics/{name}"), r#"{"attributes":{"jitter":1}}"#);
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(d.get("/proxies/busy/toxics").status, 200);
                    if i % 3 == 0 {
                        kept.push(name);
                    } else {
                        assert_eq!(d.delete(&format!("/proxies/busy/toxics/{name}")).status, 204);
                    }
                }
                kept
            })
        })
        .collect();
    let mut expected: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    let rounds: u32 = traffic.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(rounds > 0, "traffic must have flowed");

    let mut listed: Vec<String> = d
        .get("/proxies/busy/toxics")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    // Upstream chain first, then downstream.
    let streams: Vec<bool> = d
        .get("/proxies/busy/toxics")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stream"] == "upstream")
        .collect();
    assert!(
        streams.windows(2).all(|w| w[0] >= w[1]),
        "upstream toxics come first"
    );
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(d.get("/proxies/busy/toxics/w0-0").json()["attributes"]["jitter"] == 1);
}
