//! `injector lab load`: checkouts at a steady rate (open loop: a slow
//! shop does not slow the shoppers down), each on a fresh connection with
//! its own timeout. Every second it shows what shoppers saw: success rate,
//! latency percentiles, errors by kind, redrawn in place on a terminal,
//! one line per second otherwise, JSON lines with --json.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{IsTerminal as _, Write as _},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Backend, LabRef, services::http::call};
use crate::cli::serve::parse_duration;

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub lab: LabRef,
    /// Checkouts started per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Stop after this long (e.g. 30s, 2m); then wait for the checkouts in
    /// flight. Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Each checkout's own timeout (the shopper gives up).
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub timeout: Duration,
    /// Drive this http:// URL instead of the lab's checkout.
    #[arg(long)]
    pub url: Option<String>,
}

/// How one checkout ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub latency: Duration,
    pub ok: bool,
    /// "200", or the failure as a shopper would report it.
    pub label: String,
}

/// Percentile by nearest rank, over sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Outcomes of a span of time, summed.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub sent: u64,
    pub latencies: Vec<Duration>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Window {
    pub fn add(&mut self, o: &Outcome) {
        self.latencies.push(o.latency);
        if o.ok {
            self.ok += 1;
        } else {
            *self.errors.entry(o.label.clone()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Window) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.latencies.extend_from_slice(&other.latencies);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn done(&self) -> u64 {
        self.latencies.len() as u64
    }

    pub fn failed(&self) -> u64 {
        self.done() - self.ok
    }

    pub fn success(&self) -> Option<f64> {
        (self.done() > 0).then(|| self.ok as f64 / self.done() as f64)
    }

    /// p50, p95, p99.
    pub fn percentiles(&self) -> [Option<Duration>; 3] {
        let mut v = self.latencies.clone();
        v.sort();
        [50.0, 95.0, 99.0].map(|p| percentile(&v, p))
    }

    fn to_json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0);
        let [p50, p95, p99] = self.percentiles();
        json!({
            "sent": self.sent,
            "done": self.done(),
            "ok": self.ok,
            "failed": self.failed(),
            "success_rate": self.success(),
            "p50_ms": ms(p50),
            "p95_ms": ms(p95),
            "p99_ms": ms(p99),
            "errors": self.errors,
        })
    }
}

fn fmt_ms(d: Option<Duration>) -> String {
    match d {
        None => "—".into(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{} ms", d.as_millis()),
    }
}

fn fmt_pct(s: Option<f64>) -> String {
    s.map(|s| format!("{:.1}%", s * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// The failure a shopper saw, from web's JSON error or the transport.
fn label(status: u16, body: &str) -> String {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(80).collect());
    format!("{status} {detail}")
}

async fn one(addr: SocketAddr, path: String, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let r = call(addr, "GET", &path, String::new(), timeout, timeout).await;
    let latency = started.elapsed();
    match r {
        Ok(a) if (200..300).contains(&a.status) => Outcome {
            latency,
            ok: true,
            label: a.status.to_string(),
        },
        Ok(a) => Outcome {
            latency,
            ok: false,
            label: label(a.status, &a.body),
        },
        Err(e) => Outcome {
            latency,
            ok: false,
            label: e.to_string(),
        },
    }
}

/// `http://host:port/path` → address and path.
fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .with_context(|| format!("{url}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{url}: {host} has no address"))?;
    Ok((addr, path))
}

/// What is drawn each second.
struct Screen {
    tty: bool,
    json: bool,
    drawn: usize,
    header: String,
}

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn sparkline(values: &[Option<f64>], max: f64) -> String {
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(v) => {
                let i = ((v / max).clamp(0.0, 1.0) * 7.0).round() as usize;
                SPARK[i]
            }
        })
        .collect()
}

impl Screen {
    fn row(name: &str, w: &Window) -> String {
        let [p50, p95, p99] = w.percentiles();
        format!(
            "{name:<10} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>9}",
            w.sent,
            w.done(),
            w.ok,
            fmt_pct(w.success()),
            fmt_ms(p50),
            fmt_ms(p95),
            fmt_ms(p99)
        )
    }

    fn draw(&mut self, t: u64, history: &VecDeque<Window>, total: &Window, in_flight: u64) {
        let last = history.back().cloned().unwrap_or_default();
        if self.json {
            let mut v = last.to_json();
            v["t"] = json!(t);
            v["in_flight"] = json!(in_flight);
            println!("{v}");
            return;
        }
        if !self.tty {
            let [p50, p95, p99] = last.percentiles();
            let mut line = format!(
                "{t:>4} s  sent {}  done {}  ok {}  success {}  p50 {}  p95 {}  p99 {}  in flight {in_flight}",
                last.sent,
                last.done(),
                last.ok,
                fmt_pct(last.success()),
                fmt_ms(p50),
                fmt_ms(p95),
                fmt_ms(p99)
            );
            if let Some((e, n)) = last.errors.iter().max_by_key(|(_, n)| **n) {
                line.push_str(&format!("  [{n}× {e}]"));
            }
            println!("{line}");
            return;
        }
        let mut ten = Window::default();
        for w in history.iter().rev().take(10) {
            ten.merge(w);
        }
        let mut lines = vec![
            self.header.clone(),
            format!(
                "{:<10} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>9}",
                "", "sent", "done", "ok", "success", "p50", "p95", "p99"
            ),
            Self::row("last 1 s", &last),
            Self::row("last 10 s", &ten),
            format!(
                "{}   in flight {in_flight}",
                Self::row(&format!("all {t} s"), total)
            ),
        ];
        let success: Vec<Option<f64>> = history.iter().map(|w| w.success()).collect();
        let p95: Vec<Option<f64>> = history
            .iter()
            .map(|w| w.percentiles()[1].map(|d| d.as_secs_f64() * 1e3))
            .collect();
        let top = p95.iter().flatten().fold(1.0f64, |a, b| a.max(*b));
        lines.push(format!(
            "success  {}  (last {} s)",
            sparkline(&success, 1.0),
            history.len()
        ));
        lines.push(format!(
            "p95      {}  (top {:.0} ms)",
            sparkline(&p95, top),
            top
        ));
        let mut errs: Vec<(&String, &u64)> = ten.errors.iter().collect();
        errs.sort_by(|a, b| b.1.cmp(a.1));
        lines.push(format!(
            "errors (last 10 s): {}",
            if errs.is_empty() { "none" } else { "" }
        ));
        for (e, n) in errs.iter().take(3) {
            lines.push(format!("  {n:>5}× {e}"));
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for l in &lines {
            out.push_str("\x1b[2K");
            out.push_str(l);
            out.push('\n');
        }
        // Clear what a longer previous frame left below.
        for _ in lines.len()..self.drawn {
            out.push_str("\x1b[2K\n");
        }
        let n = lines.len().max(self.drawn);
        if n > lines.len() {
            out.push_str(&format!("\x1b[{}A", n - lines.len()));
        }
        self.drawn = lines.len();
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

pub fn summary_text(total: &Window, in_flight: u64) -> String {
    let [p50, p95, p99] = total.percentiles();
    let mut s = format!(
        "checkout: {} sent, {} done, {} ok ({}), {} failed, {} unfinished; latency p50 {}, p95 {}, p99 {}",
        total.sent,
        total.done(),
        total.ok,
        fmt_pct(total.success()),
        total.failed(),
        in_flight,
        fmt_ms(p50),
        fmt_ms(p95),
        fmt_ms(p99)
    );
    let mut errs: Vec<(&String, &u64)> = total.errors.iter().collect();
    errs.sort_by(|a, b| b.1.cmp(a.1));
    for (e, n) in errs.iter().take(5) {
        s.push_str(&format!("\n  {n:>6}× {e}"));
    }
    s
}

pub async fn run(args: LoadArgs, json: bool) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate <= 10_000.0) {
        bail!("--rate must be more than 0 and at most 10000 per second");
    }
    let (addr, path, what) = match &args.url {
        Some(u) => {
            let (a, p) = parse_url(u)?;
            (a, p, u.clone())
        }
        None => {
            let Some((_, lab)) = Backend::locate(&args.lab.name).await? else {
                bail!(
                    "lab {0} is not up: start it with `injector lab up --name {0}` \
                     (or give --url)",
                    args.lab.name
                );
            };
            let url = lab.checkout_url();
            let (a, p) = parse_url(&url)?;
            (a, p, url)
        }
    };
    let mut screen = Screen {
        tty: std::io::stdout().is_terminal(),
        json,
        drawn: 0,
        header: format!(
            "lab load: GET {what} · {} per s · timeout {} s · {}",
            args.rate,
            args.timeout.as_secs_f64(),
            match args.duration {
                Some(d) => format!("for {} s", d.as_secs_f64()),
                None => "Ctrl-C to stop".into(),
            }
        ),
    };
    if !json && !screen.tty {
        println!("{}", screen.header);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut send = tokio::time::interval_at(started, interval);
    send.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let stop_at = args.duration.map(|d| started + d);
    let mut sending = true;
    let mut in_flight: u64 = 0;
    let mut current = Window::default();
    let mut history: VecDeque<Window> = VecDeque::new();
    let mut total = Window::default();
    let mut seconds = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = send.tick(), if sending => {
                if stop_at.is_some_and(|s| tokio::time::Instant::now() >= s) {
                    sending = false;
                    continue;
                }
                current.sent += 1;
                in_flight += 1;
                let tx = tx.clone();
                let path = path.clone();
                let timeout = args.timeout;
                tokio::spawn(async move {
                    let _ = tx.send(one(addr, path, timeout).await);
                });
            }
            Some(o) = rx.recv() => {
                in_flight -= 1;
                current.add(&o);
            }
            _ = tick.tick() => {
                seconds += 1;
                let w = std::mem::take(&mut current);
                total.merge(&w);
                history.push_back(w);
                if history.len() > 60 {
                    history.pop_front();
                }
                screen.draw(seconds, &history, &total, in_flight);
                if !sending && in_flight == 0 {
                    break;
                }
            }
            _ = &mut ctrl_c => {
                total.merge(&current);
                break;
            }
        }
    }
    if json {
        let mut v = total.to_json();
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        v["in_flight"] = json!(in_flight);
        v["url"] = json!(what);
        println!("{}", json!({ "summary": v }));
    } else {
        println!("{}", summary_text(&total, in_flight));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), Some(ms(50)));
        assert_eq!(percentile(&v, 95.0), Some(ms(95)));
        assert_eq!(percentile(&v, 99.0), Some(ms(99)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn windows_count_failures_by_kind() {
        let mut w = Window {
            sent: 3,
            ..Window::default()
        };
        for (ok, label) in [(true, "200"), (false, "502 x"), (false, "502 x")] {
            w.add(&Outcome {
                latency: ms(10),
                ok,
                label: label.into(),
            });
        }
        assert_eq!((w.done(), w.ok, w.failed()), (3, 1, 2));
        assert!((w.success().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(w.errors["502 x"], 2);
        let mut all = Window::default();
        all.merge(&w);
        all.merge(&w);
        assert_eq!((all.sent, all.done(), all.errors["502 x"]), (6, 6, 4));
        assert_eq!(Window::default().success(), None);
        let j = w.to_json();
        assert_eq!(j["failed"], 2);
        assert_eq!(j["p50_ms"], 10.0);
    }

    #[test]
    fn failures_are_labelled_from_the_error_body() {
        assert_eq!(
            label(
                502,
                r#"{"error":"web: no orders instance reachable","service":"web"}"#
            ),
            "502 web: no orders instance reachable"
        );
        assert_eq!(label(500, "oops\n"), "500 oops");
    }

    #[test]
    fn urls_and_sparklines() {
        let (a, p) = parse_url("http://127.0.0.1:8080/checkout").unwrap();
        assert_eq!((a.port(), p.as_str()), (8080, "/checkout"));
        assert_eq!(parse_url("http://127.0.0.1").unwrap().0.port(), 80);
        assert!(parse_url("https://x").is_err());
        assert_eq!(sparkline(&[Some(0.0), None, Some(1.0)], 1.0), "▁ █");
    }
}
