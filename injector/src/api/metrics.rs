//! /metrics in Prometheus text format: ToxiProxy's byte counters (as its
//! client_golang registry prints them, byte for byte) and injector's own
//! gauges, daemon health, and what each kernel-native toxic did (packets
//! and bytes per action, from the BPF per-rule counters). ToxiProxy serves
//! it only with `-proxy-metrics`/`-runtime-metrics`; we always do.

use std::fmt::Write;

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

use crate::{
    activity::{self, ToxicCounts},
    engine::{ByteCount, Engine},
    model::Stream,
};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn gauge_f(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value:.3}"
    );
}

/// Per-toxic kernel counters: a "matched" series per toxic, and one per
/// action its rules take. Absent when no kernel-native toxic is in force.
fn toxic_counters(out: &mut String, name: &str, help: &str, toxics: &[ToxicCounts], bytes: bool) {
    if toxics.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for t in toxics {
        let series = std::iter::once((
            "matched",
            if bytes {
                t.matched_bytes
            } else {
                t.matched_pkts
            },
        ))
        .chain(
            t.acted
                .iter()
                .map(|(a, p, b)| (a.label(), if bytes { *b } else { *p })),
        );
        for (action, v) in series {
            let _ = writeln!(
                out,
                "{name}{{action=\"{action}\",proxy=\"{}\",toxic=\"{}\"}} {v}",
                label(&t.proxy),
                label(&t.toxic),
            );
        }
    }
}

/// Prometheus label value escaping.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which client_golang uses:
/// plain digits below 1e6, else the shortest mantissa with `e+XX`.
pub fn go_float(v: u64) -> String {
    if v < 1_000_000 {
        return v.to_string();
    }
    let sci = format!("{:e}", v as f64);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e+{exp:02}")
}

/// One ToxiProxy counter family; absent when no series has bytes, as a
/// CounterVec without children prints nothing.
fn counter(out: &mut String, name: &str, counts: &[ByteCount], value: fn(&ByteCount) -> u64) {
    if counts.is_empty() {
        return;
    }
    // client_golang writes HELP even when it is empty.
    let _ = writeln!(out, "# HELP {name} \n# TYPE {name} counter");
    for c in counts {
        let direction = match c.direction {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        };
        let _ = writeln!(
            out,
            "{name}{{direction=\"{direction}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}} {}",
            label(&c.listener),
            label(&c.proxy),
            label(&c.upstream),
            go_float(value(c)),
        );
    }
}

pub async fn metrics(engine: &Engine) -> Response {
    let (proxies, toxics) = engine.counts().await;
    let mut counts = engine.byte_counters().await;
    // Series in label order: direction, listener, proxy, upstream.
    counts.sort_by(|a, b| {
        let key = |c: &ByteCount| {
            (
                c.direction == Stream::Upstream,
                c.listener.clone(),
                c.proxy.clone(),
                c.upstream.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let toxic_counts = activity::snapshot(engine).await;
    let rules = match engine.data_plane() {
        Some(dp) => dp.rule_count().await,
        None => 0,
    };
    let mut out = String::new();
    gauge(&mut out, "injector_up", "The daemon answers.", 1);
    gauge_f(
        &mut out,
        "injector_uptime_seconds",
        "Seconds since the daemon started.",
        engine.uptime().as_secs_f64(),
    );
    gauge(
        &mut out,
        "injector_data_plane_loaded",
        "1 when the kernel data plane is loaded (kernel-native proxies work).",
        engine.data_plane().is_some() as usize,
    );
    gauge(
        &mut out,
        "injector_rules_installed",
        "Compiled BPF rules installed in the kernel.",
        rules,
    );
    gauge(&mut out, "injector_proxies", "Proxies configured.", proxies);
    gauge(
        &mut out,
        "injector_toxics",
        "Toxics in force, over all proxies.",
        toxics,
    );
    counter(
        &mut out,
        "toxiproxy_proxy_received_bytes_total",
        &counts,
        |c| c.received,
    );
    counter(&mut out, "toxiproxy_proxy_sent_bytes_total", &counts, |c| {
        c.sent
    });
    toxic_counters(
        &mut out,
        "injector_toxic_packets_total",
        "Packets of kernel-native toxics: matched, and acted on per action.",
        &toxic_counts,
        false,
    );
    toxic_counters(
        &mut out,
        "injector_toxic_bytes_total",
        "Bytes of kernel-native toxics: matched, and acted on per action.",
        &toxic_counts,
        true,
    );
    let mut r = Response::new(Body::from(out));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_print_as_go_formats_float64() {
        assert_eq!(go_float(0), "0");
        assert_eq!(go_float(999_999), "999999");
        assert_eq!(go_float(1_000_000), "1e+06");
        assert_eq!(go_float(1_234_567), "1.234567e+06");
        assert_eq!(go_float(20_000_000_000), "2e+10");
        assert_eq!(go_float(123_456_789_012_345_678), "1.2345678901234568e+17");
    }

    #[test]
    fn toxic_series_carry_proxy_toxic_and_action() {
        let mut out = String::new();
        let t = ToxicCounts {
            proxy: "db".into(),
            toxic: "cut".into(),
            matched_pkts: 10,
            matched_bytes: 1000,
            acted: vec![(crate::kernel::counters::Action::Dropped, 4, 400)],
        };
        toxic_counters(&mut out, "injector_toxic_packets_total", "h", &[t], false);
        assert_eq!(
            out,
            "# HELP injector_toxic_packets_total h\n# TYPE injector_toxic_packets_total counter\n\
             injector_toxic_packets_total{action=\"matched\",proxy=\"db\",toxic=\"cut\"} 10\n\
             injector_toxic_packets_total{action=\"dropped\",proxy=\"db\",toxic=\"cut\"} 4\n"
        );
        let mut none = String::new();
        toxic_counters(&mut none, "x", "h", &[], true);
        assert!(none.is_empty());
    }

    #[test]
    fn series_look_like_client_golangs() {
        let mut out = String::new();
        let c = ByteCount {
            proxy: "shopify_http".into(),
            listener: "127.0.0.1:20000".into(),
            upstream: "localhost:\"20002\"".into(),
            direction: Stream::Downstream,
            received: 10,
            sent: 7,
        };
        counter(&mut out, "toxiproxy_proxy_sent_bytes_total", &[c], |c| {
            c.sent
        });
        assert_eq!(
            out,
            "# HELP toxiproxy_proxy_sent_bytes_total \n# TYPE toxiproxy_proxy_sent_bytes_total counter\n\
             toxiproxy_proxy_sent_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:20000\",proxy=\"shopify_http\",upstream=\"localhost:\\\"20002\\\"\"} 7\n"
        );
    }
}
