//! Control plane: how long after the API call a fault acts on the wire. A
//! steady, timestamped UDP stream flows from A to B; a blackhole toxic is
//! added on its flow; the send time of the last datagram that still
//! arrived, minus the time the call was made, is the delay. The toxic is
//! removed and the stream flows again before the next round.

use anyhow::{Result, bail};
use std::time::{Duration, Instant};

use super::api::Api;
use super::load::{self, Latency, Receiver, Stream};
use super::net::{B_ADDR, Net};

pub const PORT: u16 = 7100;

pub struct ControlPlane {
    /// API call to effect on the wire, in ms.
    pub effect: Latency,
    /// API call round trip, in ms.
    pub call: Latency,
}

fn wait_flowing(rx: &Receiver) -> Result<()> {
    let before = rx.count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.count() < before + 20 {
        if Instant::now() > deadline {
            bail!("the UDP stream does not reach B");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

pub fn measure(api: &mut Api, net: &Net, rounds: usize) -> Result<ControlPlane> {
    let body = serde_json::json!({
        "name": "control",
        "upstream": format!("{B_ADDR}:{PORT}"),
        "target": {"netns": net.a},
    });
    api.ok("POST", "/proxies", Some(&body.to_string()))?;
    let result = (|| {
        let rx = Receiver::start(net, PORT)?;
        let base = Instant::now();
        let _stream = Stream::start(net, PORT, base)?;
        let (mut effect, mut call) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            wait_flowing(&rx)?;
            let t0 = base.elapsed();
            api.ok(
                "POST",
                "/proxies/control/toxics",
                Some(r#"{"name":"cut","type":"blackhole","stream":"upstream"}"#),
            )?;
            call.push((base.elapsed() - t0).as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(30));
            let last =
                Duration::from_nanos(rx.last_sent_ns.load(std::sync::atomic::Ordering::SeqCst));
            effect.push(last.saturating_sub(t0).as_secs_f64() * 1e3);
            api.ok("DELETE", "/proxies/control/toxics/cut", None)?;
        }
        Ok(ControlPlane {
            effect: load::percentiles(effect),
            call: load::percentiles(call),
        })
    })();
    api.ok("DELETE", "/proxies/control", None)?;
    result
}
