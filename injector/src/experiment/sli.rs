//! SLIs: what a policy says must hold (or, for abort conditions, what must
//! not happen), written the way people say it:
//! `checkout: success_rate >= 99% over 10s`, `p95 < 800ms`,
//! `checkout: error_rate > 50% over 5s`. Without `over`, an SLI covers the
//! whole phase it judges; with `over W`, every sliding window of W.

use std::{fmt, time::Duration};

use serde::Serialize;

use super::doc::{parse_duration, show_duration};

/// One probe result, times in milliseconds since the run started.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub probe: usize,
    pub start_ms: f64,
    pub end_ms: f64,
    pub latency_ms: f64,
    pub ok: bool,
    /// What the client saw when it failed: `status 502`, `timeout`,
    /// `connection refused`...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "q")]
pub enum Metric {
    SuccessRate,
    ErrorRate,
    /// Latency percentile, 0 < q <= 100 (nearest rank).
    Percentile(f64),
    Mean,
    Max,
    /// Number of failed probes.
    Failures,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sli {
    /// Index of the probe it reads.
    pub probe: usize,
    pub probe_name: String,
    pub metric: Metric,
    pub op: Op,
    /// Percent for rates, milliseconds for latencies, a count for failures.
    pub threshold: f64,
    #[serde(serialize_with = "ser_window", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

fn ser_window<S: serde::Serializer>(w: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match w {
        Some(d) => s.serialize_str(&show_duration(*d)),
        None => s.serialize_none(),
    }
}

impl Metric {
    fn parse(word: &str) -> Option<Metric> {
        Some(match word {
            "success_rate" | "availability" => Metric::SuccessRate,
            "error_rate" => Metric::ErrorRate,
            "mean" | "avg" => Metric::Mean,
            "max" => Metric::Max,
            "failures" | "errors" => Metric::Failures,
            w => {
                let q: f64 = w.strip_prefix('p')?.parse().ok()?;
                if !(q > 0.0 && q <= 100.0) {
                    return None;
                }
                Metric::Percentile(q)
            }
        })
    }

    pub fn is_rate(&self) -> bool {
        matches!(self, Metric::SuccessRate | Metric::ErrorRate)
    }

    pub fn is_latency(&self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Mean | Metric::Max)
    }

    pub fn name(&self) -> String {
        match self {
            Metric::SuccessRate => "success_rate".into(),
            Metric::ErrorRate => "error_rate".into(),
            Metric::Percentile(q) => format!("p{q}"),
            Metric::Mean => "mean".into(),
            Metric::Max => "max".into(),
            Metric::Failures => "failures".into(),
        }
    }

    /// The metric over some samples; None when there are none.
    pub fn measure<'a>(&self, samples: impl IntoIterator<Item = &'a Sample>) -> Option<f64> {
        let samples: Vec<&Sample> = samples.into_iter().collect();
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let failed = samples.iter().filter(|s| !s.ok).count() as f64;
        Some(match self {
            Metric::SuccessRate => 100.0 * (n - failed) / n,
            Metric::ErrorRate => 100.0 * failed / n,
            Metric::Failures => failed,
            Metric::Mean => samples.iter().map(|s| s.latency_ms).sum::<f64>() / n,
            Metric::Max => samples.iter().map(|s| s.latency_ms).fold(0.0, f64::max),
            Metric::Percentile(q) => {
                let mut l: Vec<f64> = samples.iter().map(|s| s.latency_ms).collect();
                percentile(&mut l, *q)
            }
        })
    }
}

/// Nearest-rank percentile of `values` (sorted in place).
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

impl Op {
    pub fn test(&self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
        }
    }

    fn text(&self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A parse failure: the character where it went wrong, and why.
#[derive(Debug, PartialEq)]
pub struct SliError {
    pub offset: usize,
    pub message: String,
}

fn err(offset: usize, message: impl Into<String>) -> SliError {
    SliError {
        offset,
        message: message.into(),
    }
}

/// Splits into words with their character offsets; operators stand alone
/// even when written without spaces (`p95<800ms`).
fn words(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if matches!(c, '<' | '>' | '=' | '!') {
            let start = i;
            while i < chars.len() && matches!(chars[i], '<' | '>' | '=' | '!') {
                i += 1;
            }
            out.push((start, chars[start..i].iter().collect()));
            continue;
        }
        let start = i;
        while i < chars.len()
            && !chars[i].is_whitespace()
            && !matches!(chars[i], '<' | '>' | '=' | '!')
        {
            i += 1;
        }
        out.push((start, chars[start..i].iter().collect()));
    }
    out
}

impl Sli {
    /// Parses `[probe:] metric op value[unit] [over duration]`. `probes`
    /// are the declared probe names; `implied` is used when no probe is
    /// named (the probe an SLI is declared under, or the only probe).
    pub fn parse(text: &str, probes: &[String], implied: Option<usize>) -> Result<Sli, SliError> {
        let mut rest = words(text);
        if rest.is_empty() {
            return Err(err(
                0,
                "empty SLI; write e.g. \"success_rate >= 99% over 10s\"",
            ));
        }
        // A leading `name:` (or `name :`) picks the probe.
        let probe = {
            let (off, first) = rest[0].clone();
            if let Some(name) = first.strip_suffix(':') {
                rest.remove(0);
                Some((off, name.to_string()))
            } else if let Some((name, metric)) = first.split_once(':') {
                let name = name.to_string();
                let metric_off = off + name.chars().count() + 1;
                rest[0] = (metric_off, metric.to_string());
                Some((off, name))
            } else if rest.get(1).is_some_and(|(_, w)| w == ":") {
                rest.drain(..2);
                Some((off, first))
            } else {
                None
            }
        };
        let probe = match probe {
            Some((off, name)) => probes.iter().position(|p| *p == name).ok_or_else(|| {
                err(
                    off,
                    format!(
                        "no probe named {name:?} (declared: {})",
                        if probes.is_empty() {
                            "none".to_string()
                        } else {
                            probes.join(", ")
                        }
                    ),
                )
            })?,
            None => implied.ok_or_else(|| {
                err(
                    0,
                    format!(
                        "name the probe this SLI reads, e.g. \"{}: {}\"",
                        probes.first().map_or("checkout", String::as_str),
                        text.trim()
                    ),
                )
            })?,
        };
        let mut it = rest.into_iter();
        let end = text.chars().count();
        let (moff, mword) = it
            .next()
            .ok_or_else(|| err(end, "expected a metric after the probe name"))?;
        let metric = Metric::parse(&mword).ok_or_else(|| {
            err(
                moff,
                format!(
                    "unknown metric {mword:?} (success_rate, error_rate, p50, p90, p95, p99, mean, max, failures)"
                ),
            )
        })?;
        let (ooff, oword) = it
            .next()
            .ok_or_else(|| err(end, "expected a comparison (<, <=, >, >=)"))?;
        let op = match oword.as_str() {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => {
                return Err(err(
                    ooff,
                    format!("expected a comparison (<, <=, >, >=), found {oword:?}"),
                ));
            }
        };
        let (voff, vword) = it
            .next()
            .ok_or_else(|| err(end, "expected a threshold value"))?;
        let num_len = vword
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(vword.len());
        let mut unit = vword[num_len..].to_string();
        let value: f64 = vword[..num_len]
            .parse()
            .map_err(|_| err(voff, format!("expected a number, found {vword:?}")))?;
        let mut next = it.next();
        // A unit written apart: `99 %`, `800 ms`.
        if unit.is_empty()
            && let Some((_, w)) = &next
            && matches!(w.as_str(), "%" | "ms" | "s")
        {
            unit = w.clone();
            next = it.next();
        }
        let uoff = voff + num_len;
        let threshold = if metric.is_rate() {
            match unit.as_str() {
                "%" | "" => value,
                u => return Err(err(uoff, format!("a rate is in %, not {u:?}"))),
            }
        } else if metric.is_latency() {
            match unit.as_str() {
                "ms" => value,
                "s" => value * 1000.0,
                "" => return Err(err(uoff, "a latency needs a unit: ms or s")),
                u => return Err(err(uoff, format!("a latency is in ms or s, not {u:?}"))),
            }
        } else if unit.is_empty() {
            value
        } else {
            return Err(err(
                uoff,
                format!("failures is a count, it takes no unit ({unit:?})"),
            ));
        };
        if metric.is_rate() && !(0.0..=100.0).contains(&threshold) {
            return Err(err(voff, "a rate must be between 0% and 100%"));
        }
        if threshold < 0.0 {
            return Err(err(voff, "a threshold cannot be negative"));
        }
        let window = match next {
            None => None,
            Some((woff, w)) if w == "over" => {
                let (doff, dword) = it
                    .next()
                    .ok_or_else(|| err(end, "expected a window after `over`, e.g. 10s"))?;
                let d = parse_duration(&dword).map_err(|e| err(doff, e))?;
                if d.is_zero() {
                    return Err(err(doff, "the window must be longer than 0"));
                }
                if let Some((xoff, x)) = it.next() {
                    return Err(err(xoff, format!("unexpected {x:?} after the window")));
                }
                let _ = woff;
                Some(d)
            }
            Some((xoff, x)) => {
                return Err(err(
                    xoff,
                    format!("unexpected {x:?}; only `over <duration>` may follow the threshold"),
                ));
            }
        };
        Ok(Sli {
            probe,
            probe_name: probes.get(probe).cloned().unwrap_or_default(),
            metric,
            op,
            threshold,
            window,
        })
    }

    /// The SLI's value over `samples` of its own probe (others are skipped).
    pub fn measure<'a>(&self, samples: impl IntoIterator<Item = &'a Sample>) -> Option<f64> {
        self.metric
            .measure(samples.into_iter().filter(|s| s.probe == self.probe))
    }

    pub fn test(&self, value: f64) -> bool {
        self.op.test(value, self.threshold)
    }

    /// Formats a value of this SLI's metric with its unit.
    pub fn show_value(&self, v: f64) -> String {
        show_metric(&self.metric, v)
    }
}

pub fn show_metric(m: &Metric, v: f64) -> String {
    if m.is_rate() {
        format!("{}%", trim_float(v, 2))
    } else if m.is_latency() {
        format!("{}ms", trim_float(v, 1))
    } else {
        trim_float(v, 0)
    }
}

fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl fmt::Display for Sli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {} {}",
            self.probe_name,
            self.metric.name(),
            self.op.text(),
            show_metric(&self.metric, self.threshold)
        )?;
        if let Some(w) = self.window {
            write!(f, " over {}", show_duration(w))?;
        }
        Ok(())
    }
}

/// The first window of `w` (ending at a sample's completion) in which
/// `sli` does not hold, scanning `samples` sorted by end time: the window's
/// end and the value there. Without a window, the whole set is judged once.
pub fn first_violation(sli: &Sli, samples: &[&Sample]) -> Option<(f64, f64)> {
    let mine: Vec<&Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.probe == sli.probe)
        .collect();
    match sli.window {
        None => {
            let v = sli.metric.measure(mine.iter().copied())?;
            let end = mine.iter().map(|s| s.end_ms).fold(0.0, f64::max);
            (!sli.test(v)).then_some((end, v))
        }
        Some(w) => {
            let w = w.as_secs_f64() * 1000.0;
            let mut lo = 0;
            for hi in 0..mine.len() {
                let end = mine[hi].end_ms;
                while mine[lo].end_ms <= end - w {
                    lo += 1;
                }
                let v = sli.metric.measure(mine[lo..=hi].iter().copied())?;
                if !sli.test(v) {
                    return Some((end, v));
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes() -> Vec<String> {
        vec!["checkout".into(), "search".into()]
    }

    fn s(probe: usize, end: f64, latency: f64, ok: bool) -> Sample {
        Sample {
            probe,
            start_ms: end - latency,
            end_ms: end,
            latency_ms: latency,
            ok,
            error: None,
        }
    }

    #[test]
    fn parses_the_usual_forms() {
        let a = Sli::parse("checkout: success_rate >= 99% over 10s", &probes(), None).unwrap();
        assert_eq!(
            (a.probe, a.metric, a.op, a.threshold, a.window),
            (
                0,
                Metric::SuccessRate,
                Op::Ge,
                99.0,
                Some(Duration::from_secs(10))
            )
        );
        let b = Sli::parse("p95<0.8s", &probes(), Some(1)).unwrap();
        assert_eq!(
            (b.probe, b.metric, b.threshold),
            (1, Metric::Percentile(95.0), 800.0)
        );
        let c = Sli::parse("search : error_rate > 50 %", &probes(), None).unwrap();
        assert_eq!(
            (c.probe, c.metric, c.threshold),
            (1, Metric::ErrorRate, 50.0)
        );
        assert_eq!(c.to_string(), "search: error_rate > 50%");
        assert_eq!(a.to_string(), "checkout: success_rate >= 99% over 10s");
    }

    #[test]
    fn errors_point_at_the_word() {
        let e = Sli::parse("checkout: p95 < 800 over 10s", &probes(), None).unwrap_err();
        assert_eq!(e.offset, 19, "{e:?}");
        assert!(e.message.contains("unit"), "{e:?}");
        let e = Sli::parse("cart: p95 < 800ms", &probes(), None).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("cart"));
        let e = Sli::parse("checkout: p95 =< 800ms", &probes(), None).unwrap_err();
        assert_eq!(e.offset, 14);
        let e = Sli::parse("success_rate >= 99%", &probes(), None).unwrap_err();
        assert!(e.message.contains("name the probe"));
        let e = Sli::parse("checkout: latency < 1s", &probes(), None).unwrap_err();
        assert_eq!(e.offset, 10);
        let e = Sli::parse("checkout: success_rate >= 120%", &probes(), None).unwrap_err();
        assert!(e.message.contains("between"));
        let e = Sli::parse("checkout: max < 1s for 3s", &probes(), None).unwrap_err();
        assert_eq!(e.offset, 19);
    }

    #[test]
    fn metrics_over_samples() {
        let v = [
            s(0, 1.0, 10.0, true),
            s(0, 2.0, 20.0, true),
            s(0, 3.0, 30.0, false),
            s(0, 4.0, 40.0, true),
            s(1, 5.0, 900.0, false),
        ];
        let sli = Sli::parse("checkout: success_rate >= 80%", &probes(), None).unwrap();
        assert_eq!(sli.measure(&v), Some(75.0));
        let p50 = Sli::parse("checkout: p50 < 1s", &probes(), None).unwrap();
        assert_eq!(p50.measure(&v), Some(20.0));
        let max = Sli::parse("checkout: max < 1s", &probes(), None).unwrap();
        assert_eq!(max.measure(&v), Some(40.0));
        let none: [Sample; 0] = [];
        assert_eq!(sli.measure(&none), None);
        assert_eq!(percentile(&mut [5.0, 1.0, 3.0, 2.0, 4.0], 95.0), 5.0);
        assert_eq!(percentile(&mut [5.0, 1.0, 3.0, 2.0, 4.0], 40.0), 2.0);
    }

    #[test]
    fn windows_slide_over_completion_times() {
        let v: Vec<Sample> = (0..20)
            .map(|i| s(0, 100.0 * i as f64, 5.0, !(10..13).contains(&i)))
            .collect();
        let refs: Vec<&Sample> = v.iter().collect();
        let w = Sli::parse("checkout: success_rate >= 50% over 500ms", &probes(), None).unwrap();
        // Window (700, 1200]: 5 samples, 3 failed at 1000, 1100, 1200.
        assert_eq!(first_violation(&w, &refs), Some((1200.0, 40.0)));
        let whole = Sli::parse("checkout: success_rate >= 50%", &probes(), None).unwrap();
        assert_eq!(first_violation(&whole, &refs), None);
        let strict = Sli::parse("checkout: failures < 1", &probes(), None).unwrap();
        assert_eq!(first_violation(&strict, &refs), Some((1900.0, 3.0)));
    }
}
