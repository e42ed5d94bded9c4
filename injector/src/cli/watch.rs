//! `injector watch`: follows GET /events and prints a line per event as it
//! arrives (time, kind, proxy, toxic, rates of fired events), or the raw
//! JSON of each event with `--json`. Runs until the daemon ends the stream.

use std::io::Write;

use anyhow::{Context as _, bail};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use super::Client;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only events of this proxy.
    pub proxy: Option<String>,
}

pub async fn watch(client: &Client, args: &WatchArgs, json: bool) -> anyhow::Result<()> {
    let resp = client.send(Method::GET, "/events", None).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        bail!("cannot follow events: {message}");
    }
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut out = std::io::stdout();
    if !json {
        let _ = writeln!(
            out,
            "{:<12}  {:<7}  {:<16}  {:<16}  RATE",
            "TIME", "KIND", "PROXY", "TOXIC"
        );
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the event stream")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(payload) = line.trim_end().strip_prefix("data:") else {
                // `event:` names repeat the JSON's kind; keep-alives are comments.
                continue;
            };
            let payload = payload.trim_start();
            let Ok(ev) = serde_json::from_str::<Value>(payload) else {
                continue;
            };
            if let Some(p) = &args.proxy
                && ev.get("proxy").and_then(Value::as_str) != Some(p.as_str())
            {
                continue;
            }
            let text = if json {
                format!("{payload}\n")
            } else {
                render(&ev)
            };
            // A closed stdout (a pipe into `head`) ends the watch quietly.
            if out.write_all(text.as_bytes()).is_err() || out.flush().is_err() {
                return Ok(());
            }
        }
    }
    let filter = args
        .proxy
        .as_deref()
        .map(|p| format!(" (watching proxy {p})"))
        .unwrap_or_default();
    bail!("the daemon ended the event stream{filter}")
}

/// One event as a table row: UTC time, kind, proxy, toxic, and for fired
/// events the packets and bytes acted on per second.
pub fn render(ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let at = ev.get("at_ms").and_then(Value::as_u64).unwrap_or(0);
    let rate = match (
        ev.get("packets_per_s").and_then(Value::as_f64),
        ev.get("bytes_per_s").and_then(Value::as_f64),
    ) {
        (Some(p), Some(b)) => format!("{p:.1} pkt/s {}", bytes_rate(b)),
        _ => String::new(),
    };
    format!(
        "{:<12}  {:<7}  {:<16}  {:<16}  {rate}",
        clock(at),
        s("kind"),
        s("proxy"),
        s("toxic"),
    )
    .trim_end()
    .to_string()
        + "\n"
}

/// HH:MM:SS.mmm (UTC) of a Unix time in ms.
fn clock(at_ms: u64) -> String {
    let ms = at_ms % 1000;
    let secs = at_ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn bytes_rate(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.1} MB/s", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB/s", b / 1e3)
    } else {
        format!("{b:.0} B/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fired_events_show_their_rates_and_others_none() {
        let fired = json!({"kind":"fired","proxy":"db","toxic":"cut","at_ms":3_723_004u64,
                           "packets_per_s":12.0,"bytes_per_s":2500.0,"matched_per_s":30.0});
        assert_eq!(
            render(&fired),
            "01:02:03.004  fired    db                cut               12.0 pkt/s 2.5 kB/s\n"
        );
        let added = json!({"kind":"added","proxy":"db","toxic":null,"at_ms":0});
        assert_eq!(
            render(&added),
            "00:00:00.000  added    db                -\n"
        );
    }
}
