//! The written log of a run, in Markdown and in JSON, in the order the
//! experiment was planned: hypothesis, blast radius, abort, method, then
//! the result with its SLI tables, the detection window (first and last
//! failed probe), what clients saw, and the timeline. The JSON is also what
//! `GET /experiments/{id}` answers.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Map, Value, json};

use super::{
    doc::show_duration,
    policy::{Policy, Step},
    record::{Judgement, Record, State},
    sli::{Sample, percentile},
};

/// One probe's figures over one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub probe: String,
    pub phase: &'static str,
    pub count: usize,
    pub failed: usize,
    pub success_rate: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// What clients saw when a probe failed, and how often.
    pub errors: BTreeMap<String, usize>,
}

/// First and last failed probe of one probe kind, timed when the client saw
/// the failure (the probe's end): a probe sent just before a fault landed
/// can fail because of it, and detection is about when failures show.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub probe: String,
    pub failed: usize,
    pub first_ms: f64,
    pub last_ms: f64,
}

/// One bucket of the chart's series.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub t_ms: f64,
    pub count: usize,
    pub success_rate: f64,
    pub p50: f64,
    pub p95: f64,
}

fn phase_of(r: &Record, s: &Sample) -> &'static str {
    let t = s.start_ms;
    if r.in_fault(t) {
        return "during faults";
    }
    match (r.phases.method_ms, r.phases.rolled_back_ms) {
        (_, Some(rb)) if t >= rb => "after rollback",
        (Some(m), _) if t >= m => "method, no fault",
        _ => "baseline",
    }
}

const PHASES: [&str; 4] = [
    "baseline",
    "during faults",
    "method, no fault",
    "after rollback",
];

pub fn stats(r: &Record) -> Vec<Stats> {
    let names = r.policy.probe_names();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for phase in PHASES {
            let v: Vec<&Sample> = r
                .samples
                .iter()
                .filter(|s| s.probe == i && phase_of(r, s) == phase)
                .collect();
            if v.is_empty() {
                continue;
            }
            let mut lat: Vec<f64> = v.iter().map(|s| s.latency_ms).collect();
            let failed = v.iter().filter(|s| !s.ok).count();
            let mut errors = BTreeMap::new();
            for s in v.iter().filter(|s| !s.ok) {
                *errors
                    .entry(s.error.clone().unwrap_or_else(|| "failed".into()))
                    .or_insert(0) += 1;
            }
            out.push(Stats {
                probe: name.clone(),
                phase,
                count: v.len(),
                failed,
                success_rate: 100.0 * (v.len() - failed) as f64 / v.len() as f64,
                p50: percentile(&mut lat, 50.0),
                p95: percentile(&mut lat, 95.0),
                p99: percentile(&mut lat, 99.0),
                max: lat.iter().copied().fold(0.0, f64::max),
                errors,
            });
        }
    }
    out
}

pub fn detection(r: &Record) -> Vec<Detection> {
    let names = r.policy.probe_names();
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let failed: Vec<&Sample> = r.samples.iter().filter(|s| s.probe == i && !s.ok).collect();
            let first = failed.iter().map(|s| s.end_ms).reduce(f64::min)?;
            let last = failed.iter().map(|s| s.end_ms).fold(first, f64::max);
            Some(Detection {
                probe: name.clone(),
                failed: failed.len(),
                first_ms: first,
                last_ms: last,
            })
        })
        .collect()
}

/// A bucket width that gives at most ~150 points over the run, each
/// holding a few probes (at least 4 intervals of the fastest probe).
pub fn bucket_ms(total_ms: f64, interval_ms: f64) -> f64 {
    const WIDTHS: [f64; 10] = [
        100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 30_000.0, 60_000.0, 300_000.0,
    ];
    WIDTHS
        .iter()
        .copied()
        .find(|w| total_ms / w <= 150.0 && *w >= 4.0 * interval_ms)
        .unwrap_or(600_000.0)
}

/// Per probe: success rate and latency per bucket of send time.
pub fn series(r: &Record) -> (f64, Vec<(String, Vec<Point>)>) {
    let end = r.phases.end_ms.unwrap_or_else(|| r.now_ms());
    let fastest = r
        .policy
        .steady_state
        .probes
        .iter()
        .map(|p| p.interval.as_secs_f64() * 1000.0)
        .fold(f64::INFINITY, f64::min);
    let width = bucket_ms(end, if fastest.is_finite() { fastest } else { 0.0 });
    let names = r.policy.probe_names();
    let all = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut buckets: BTreeMap<u64, Vec<&Sample>> = BTreeMap::new();
            for s in r.samples.iter().filter(|s| s.probe == i) {
                buckets
                    .entry((s.start_ms / width) as u64)
                    .or_default()
                    .push(s);
            }
            let points = buckets
                .into_iter()
                .map(|(b, v)| {
                    let mut lat: Vec<f64> = v.iter().map(|s| s.latency_ms).collect();
                    let ok = v.iter().filter(|s| s.ok).count();
                    Point {
                        t_ms: b as f64 * width + width / 2.0,
                        count: v.len(),
                        success_rate: 100.0 * ok as f64 / v.len() as f64,
                        p50: percentile(&mut lat, 50.0),
                        p95: percentile(&mut lat, 95.0),
                    }
                })
                .collect();
            (name.clone(), points)
        })
        .collect();
    (width, all)
}

fn secs(ms: f64) -> String {
    format!("+{:.1}s", ms / 1000.0)
}

fn round(v: f64, decimals: i32) -> Value {
    let f = 10f64.powi(decimals);
    json!((v * f).round() / f)
}

fn step_json(s: &Step) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("text".into(), Value::String(s.describe()));
    }
    v
}

/// The short form `GET /experiments` lists.
pub fn summary(r: &Record) -> Value {
    json!({
        "id": r.id,
        "name": r.policy.name,
        "state": r.state,
        "reason": r.reason,
        "started_unix_ms": r.started_unix_ms(),
        "elapsed_ms": round(r.phases.end_ms.unwrap_or_else(|| r.now_ms()), 1),
    })
}

/// The whole run as JSON, in the plan's order, then the evidence.
pub fn json(r: &Record) -> Value {
    let p: &Policy = &r.policy;
    let mut m = Map::new();
    let Value::Object(head) = summary(r) else {
        unreachable!("summary is an object")
    };
    m.extend(head);
    m.insert("description".into(), json!(p.description));
    m.insert(
        "step".into(),
        match r.step {
            Some(i) => json!({"index": i, "text": p.method[i].describe()}),
            None => Value::Null,
        },
    );
    m.insert(
        "hypothesis".into(),
        json!({
            "text": p.hypothesis.text,
            "holds": p.hypothesis.holds.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "judged": r.hypothesis,
        }),
    );
    m.insert(
        "blast_radius".into(),
        serde_json::to_value(&p.blast_radius).unwrap_or(Value::Null),
    );
    m.insert(
        "abort".into(),
        json!({
            "when": p.abort.when.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "fired": r.abort,
        }),
    );
    m.insert(
        "method".into(),
        Value::Array(p.method.iter().map(step_json).collect()),
    );
    m.insert(
        "rollback".into(),
        serde_json::to_value(&p.rollback).unwrap_or(Value::Null),
    );
    let detection: Vec<Value> = detection(r)
        .iter()
        .map(|d| {
            json!({
                "probe": d.probe,
                "failed": d.failed,
                "first_failure_ms": round(d.first_ms, 1),
                "last_failure_ms": round(d.last_ms, 1),
                "duration_ms": round(d.last_ms - d.first_ms, 1),
            })
        })
        .collect();
    m.insert(
        "result".into(),
        json!({
            "verdict": r.state,
            "reason": r.reason,
            "steady_state": r.steady,
            "hypothesis": r.hypothesis,
            "abort": r.abort,
            "recovery": r.recovery,
            "detection": detection,
            "rollback_errors": r.rollback_errors,
        }),
    );
    m.insert(
        "steady_state".into(),
        serde_json::to_value(&p.steady_state).unwrap_or(Value::Null),
    );
    m.insert(
        "phases".into(),
        serde_json::to_value(&r.phases).unwrap_or(Value::Null),
    );
    m.insert(
        "faults".into(),
        serde_json::to_value(&r.faults).unwrap_or(Value::Null),
    );
    let stats: Vec<Value> = stats(r)
        .iter()
        .map(|s| {
            json!({
                "probe": s.probe,
                "phase": s.phase,
                "count": s.count,
                "failed": s.failed,
                "success_rate": round(s.success_rate, 2),
                "p50_ms": round(s.p50, 1),
                "p95_ms": round(s.p95, 1),
                "p99_ms": round(s.p99, 1),
                "max_ms": round(s.max, 1),
                "errors": s.errors,
            })
        })
        .collect();
    m.insert("stats".into(), Value::Array(stats));
    let (width, series) = series(r);
    m.insert(
        "series".into(),
        json!({
            "bucket_ms": width,
            "probes": series.iter().map(|(name, points)| json!({
                "probe": name,
                "points": points.iter().map(|pt| json!({
                    "t_ms": round(pt.t_ms, 1),
                    "count": pt.count,
                    "success_rate": round(pt.success_rate, 2),
                    "p50_ms": round(pt.p50, 1),
                    "p95_ms": round(pt.p95, 1),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    );
    m.insert(
        "log".into(),
        serde_json::to_value(&r.log).unwrap_or(Value::Null),
    );
    Value::Object(m)
}

fn judged_table(out: &mut String, title: &str, judged: &[Judgement]) {
    let _ = writeln!(out, "| {title} | measured | verdict | first failed at |");
    let _ = writeln!(out, "|---|---|---|---|");
    for j in judged {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            j.sli,
            j.shown,
            if j.holds { "held" } else { "**broke**" },
            j.at_ms.map_or("-".into(), secs)
        );
    }
}

pub fn rfc3339(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Markdown log. `chart` is the SVG file's name, when one was written.
pub fn markdown(r: &Record, chart: Option<&str>) -> String {
    let p = &r.policy;
    let mut o = String::new();
    let verdict = match r.state {
        State::Held => "HELD",
        State::Broke => "BROKE",
        State::Aborted => "ABORTED",
        State::Refused => "REFUSED",
        _ => "RUNNING",
    };
    let _ = writeln!(o, "# Experiment: {}\n", p.name);
    if !p.description.is_empty() {
        let _ = writeln!(o, "{}\n", p.description);
    }
    let _ = writeln!(
        o,
        "Run `{}`, started {}, lasted {:.1}s. **Result: {verdict}**{}\n",
        r.id,
        rfc3339(r.started_unix_ms()),
        r.phases.end_ms.unwrap_or_else(|| r.now_ms()) / 1000.0,
        r.reason
            .as_ref()
            .map_or(String::new(), |x| format!(": {x}"))
    );

    let _ = writeln!(o, "## Hypothesis\n\n{}\n", p.hypothesis.text);
    let _ = writeln!(o, "Must hold while the faults are in force:\n");
    for s in &p.hypothesis.holds {
        let _ = writeln!(o, "- `{s}`");
    }

    let b = &p.blast_radius;
    let _ = writeln!(o, "\n## Blast radius\n");
    let _ = writeln!(o, "- Proxies: {}", b.proxies.join(", "));
    if !b.targets.is_empty() {
        let t: Vec<String> = b
            .targets
            .iter()
            .map(|t| format!("`{}`", t.to_json()))
            .collect();
        let _ = writeln!(o, "- Targets: {}", t.join(", "));
    }
    let _ = writeln!(
        o,
        "- Streams: {}",
        if b.streams.is_empty() {
            "upstream and downstream".into()
        } else {
            b.streams.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "- Share of connections: at most {}%",
        (b.toxicity as f64 * 10_000.0).round() / 100.0
    );
    let _ = writeln!(
        o,
        "- Maximum duration: {} from the first injection (every toxic carries a `ttl_ms` that ends within it)",
        show_duration(b.max_duration)
    );

    let _ = writeln!(o, "\n## Abort\n");
    for s in &p.abort.when {
        let _ = writeln!(o, "- stop at once when `{s}`");
    }
    match &r.abort {
        Some(j) => {
            let _ = writeln!(
                o,
                "\nFired at {}: `{}` measured {}.",
                j.at_ms.map_or("-".into(), secs),
                j.sli,
                j.shown
            );
        }
        None if r.state.finished() => {
            let _ = writeln!(o, "\nNo abort condition fired.");
        }
        None => {}
    }

    let _ = writeln!(o, "\n## Method\n");
    let _ = writeln!(
        o,
        "0. baseline: measure the steady state for {}",
        show_duration(p.steady_state.baseline)
    );
    for (i, s) in p.method.iter().enumerate() {
        let _ = writeln!(o, "{}. {}", i + 1, s.describe());
    }
    let _ = writeln!(
        o,
        "{}. roll back: remove every toxic and proxy the method added{}{}",
        p.method.len() + 1,
        if p.rollback.remove.is_empty() {
            String::new()
        } else {
            format!(
                ", and {}",
                p.rollback
                    .remove
                    .iter()
                    .map(|t| format!("`{}` on {}", t.toxic, t.proxy))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        if p.rollback.verify.is_zero() {
            String::new()
        } else {
            format!(
                "; then verify the steady state for {}",
                show_duration(p.rollback.verify)
            )
        }
    );

    let _ = writeln!(
        o,
        "\n## Result\n\n**{verdict}**{}\n",
        r.reason
            .as_ref()
            .map_or(String::new(), |x| format!(": {x}"))
    );
    if !r.steady.is_empty() {
        let _ = writeln!(o, "### Steady state before injecting\n");
        judged_table(&mut o, "SLI", &r.steady);
        o.push('\n');
    }
    if !r.hypothesis.is_empty() {
        let _ = writeln!(o, "### Hypothesis while the faults were in force\n");
        judged_table(&mut o, "SLI", &r.hypothesis);
        o.push('\n');
    }
    if !r.recovery.is_empty() {
        let _ = writeln!(o, "### Steady state after the rollback\n");
        judged_table(&mut o, "SLI", &r.recovery);
        o.push('\n');
    }
    let st = stats(r);
    if !st.is_empty() {
        let _ = writeln!(o, "### SLIs by phase\n");
        let _ = writeln!(
            o,
            "| probe | phase | probes | success rate | p50 | p95 | p99 | max | what failed probes saw |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        for s in &st {
            let errors = if s.errors.is_empty() {
                "-".to_string()
            } else {
                s.errors
                    .iter()
                    .map(|(k, v)| format!("{k} x{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.2}% | {:.1}ms | {:.1}ms | {:.1}ms | {:.1}ms | {errors} |",
                s.probe, s.phase, s.count, s.success_rate, s.p50, s.p95, s.p99, s.max
            );
        }
        o.push('\n');
    }
    let _ = writeln!(o, "### Detection window\n");
    let det = detection(r);
    if det.is_empty() {
        let _ = writeln!(o, "No probe failed.\n");
    } else {
        let first_fault = r.faults.iter().map(|f| f.from_ms).reduce(f64::min);
        let _ = writeln!(
            o,
            "| probe | failed probes | first failure | last failure | window | first failure after the first injection |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        for d in &det {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1}s | {} |",
                d.probe,
                d.failed,
                secs(d.first_ms),
                secs(d.last_ms),
                (d.last_ms - d.first_ms) / 1000.0,
                first_fault.map_or("-".into(), |f| format!("{:.1}s", (d.first_ms - f) / 1000.0))
            );
        }
        o.push('\n');
    }
    if !r.faults.is_empty() {
        let _ = writeln!(o, "### Faults in force\n");
        let _ = writeln!(o, "| proxy | toxic | type | from | to |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for f in &r.faults {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                f.proxy,
                f.toxic,
                f.kind,
                secs(f.from_ms),
                f.to_ms.map_or("(in force)".into(), secs)
            );
        }
        o.push('\n');
    }
    if !r.rollback_errors.is_empty() {
        let _ = writeln!(o, "### Rollback problems\n");
        for e in &r.rollback_errors {
            let _ = writeln!(o, "- {e}");
        }
        o.push('\n');
    }
    if let Some(c) = chart {
        let _ = writeln!(
            o,
            "### Chart\n\n![success rate and latency over time, faults shaded]({c})\n"
        );
    }
    let _ = writeln!(o, "### Timeline\n");
    for l in &r.log {
        let _ = writeln!(o, "- {} {}", secs(l.at_ms), l.text);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599_000), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn detection_is_timed_when_clients_saw_the_failure() {
        let policy = crate::experiment::policy::Policy::parse(
            "black-friday.toml",
            include_str!("../../../policies/black-friday.toml"),
        )
        .unwrap();
        let mut r = Record::new("t", std::sync::Arc::new(policy));
        let sample = |start_ms: f64, end_ms: f64, ok: bool| Sample {
            probe: 0,
            start_ms,
            end_ms,
            latency_ms: end_ms - start_ms,
            ok,
            error: None,
        };
        // Sent at 990 ms, before a fault landed at 1000 ms; failed at 1200 ms.
        r.samples = vec![
            sample(900.0, 950.0, true),
            sample(990.0, 1200.0, false),
            sample(1500.0, 2500.0, false),
        ];
        let d = detection(&r);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].failed, d[0].first_ms, d[0].last_ms),
            (2, 1200.0, 2500.0)
        );
    }

    #[test]
    fn buckets_keep_charts_readable() {
        assert_eq!(bucket_ms(5_000.0, 10.0), 100.0);
        assert_eq!(bucket_ms(5_000.0, 100.0), 500.0);
        assert_eq!(bucket_ms(60_000.0, 50.0), 500.0);
        assert_eq!(bucket_ms(600_000.0, 250.0), 5000.0);
    }
}
