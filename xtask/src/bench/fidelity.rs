//! Fault fidelity: what was asked against what the wire shows. Loss from
//! counted datagrams, bandwidth from iperf3, latency and jitter from the
//! ping-pong (they need netem; a kernel without it gets the daemon's error
//! in the table instead of numbers).

use anyhow::Result;

use super::api::Api;
use super::load::{self, ECHO_PORT, IPERF_PORT, Receiver};
use super::net::{B_ADDR, Net};

pub struct Row {
    pub fault: String,
    pub requested: String,
    pub measured: String,
    /// Within the tolerance shown in `measured`, or None when not measured.
    pub pass: Option<bool>,
}

const LOSS_PORT: u16 = 7200;

fn proxy(api: &mut Api, net: &Net, name: &str, port: u16) -> Result<()> {
    let body = serde_json::json!({
        "name": name,
        "upstream": format!("{B_ADDR}:{port}"),
        "target": {"netns": net.a},
    });
    api.ok("POST", "/proxies", Some(&body.to_string()))?;
    Ok(())
}

pub fn loss(api: &mut Api, net: &Net, n: u32) -> Result<Vec<Row>> {
    proxy(api, net, "fid-loss", LOSS_PORT)?;
    let rx = Receiver::start(net, LOSS_PORT)?;
    let mut rows = Vec::new();
    for p in [0.1, 0.5] {
        let toxic = format!(
            r#"{{"name":"l","type":"loss","stream":"upstream","attributes":{{"probability":{p}}}}}"#
        );
        api.ok("POST", "/proxies/fid-loss/toxics", Some(&toxic))?;
        let before = rx.count();
        load::send_udp(net, LOSS_PORT, n)?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let got = rx.count() - before;
        api.ok("DELETE", "/proxies/fid-loss/toxics/l", None)?;
        let measured = 1.0 - got as f64 / n as f64;
        // 99.9 % binomial band around the requested rate.
        let band = 3.29 * (p * (1.0 - p) / n as f64).sqrt();
        rows.push(Row {
            fault: "loss".into(),
            requested: format!("{:.1} %", p * 100.0),
            measured: format!(
                "{:.2} % of {n} datagrams (±{:.2} % expected)",
                measured * 100.0,
                band * 100.0
            ),
            pass: Some((measured - p).abs() <= band),
        });
    }
    drop(rx);
    api.ok("DELETE", "/proxies/fid-loss", None)?;
    Ok(rows)
}

pub fn bandwidth(api: &mut Api, net: &Net, secs: u32) -> Result<Vec<Row>> {
    proxy(api, net, "fid-bw", IPERF_PORT)?;
    let mut rows = Vec::new();
    for kb_s in [1_250u64, 12_500] {
        let toxic = format!(
            r#"{{"name":"bw","type":"bandwidth","stream":"upstream","attributes":{{"rate":{kb_s}}}}}"#
        );
        api.ok("POST", "/proxies/fid-bw/toxics", Some(&toxic))?;
        let got = load::throughput(net, B_ADDR, IPERF_PORT, secs);
        api.ok("DELETE", "/proxies/fid-bw/toxics/bw", None)?;
        let mbit = got? * 1e3;
        let want = kb_s as f64 * 8.0 / 1e3;
        // TCP's goodput under a rate limit sits a little under it (headers,
        // slow start); 10 % either way is what the table calls faithful.
        rows.push(Row {
            fault: "bandwidth".into(),
            requested: format!("{want:.0} Mbit/s ({kb_s} KB/s)"),
            measured: format!(
                "{mbit:.1} Mbit/s ({:.0} % of requested, ±10 %)",
                mbit / want * 100.0
            ),
            pass: Some((mbit / want - 1.0).abs() <= 0.10),
        });
    }
    api.ok("DELETE", "/proxies/fid-bw", None)?;
    Ok(rows)
}

pub fn latency(api: &mut Api, net: &Net, base_p50_us: f64) -> Result<Vec<Row>> {
    proxy(api, net, "fid-lat", ECHO_PORT)?;
    let mut rows = Vec::new();
    for (lat, jitter) in [(20u32, 0u32), (20, 5)] {
        let toxic = format!(
            r#"{{"name":"lat","type":"latency","stream":"upstream","attributes":{{"latency":{lat},"jitter":{jitter}}}}}"#
        );
        let requested = format!("{lat} ms ± {jitter} ms");
        let fault = if jitter == 0 { "latency" } else { "jitter" };
        let added = api.call("POST", "/proxies/fid-lat/toxics", Some(&toxic))?;
        if !(200..300).contains(&added.status) {
            let error = serde_json::from_str::<serde_json::Value>(&added.body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or(added.body);
            let measured = if error.contains("netem") {
                format!("netem missing: {error}")
            } else {
                format!("refused: {error}")
            };
            rows.push(Row {
                fault: fault.into(),
                requested,
                measured,
                pass: None,
            });
            continue;
        }
        let got = load::latency(net, B_ADDR, ECHO_PORT, 100);
        api.ok("DELETE", "/proxies/fid-lat/toxics/lat", None)?;
        let got = got?;
        let added_ms = (got.p50 - base_p50_us) / 1e3;
        let spread_ms = (got.p99 - got.p50) / 1e3;
        rows.push(Row {
            fault: fault.into(),
            requested,
            measured: format!("+{added_ms:.2} ms at p50, p99 - p50 = {spread_ms:.2} ms"),
            pass: Some(
                (added_ms - lat as f64).abs() <= 1.0 + lat as f64 * 0.1
                    && spread_ms <= jitter as f64 * 3.0 + 1.0,
            ),
        });
    }
    api.ok("DELETE", "/proxies/fid-lat", None)?;
    Ok(rows)
}
