//! list, inspect, create, toggle, delete: the HTTP calls toxiproxy-cli makes.

use anyhow::Context as _;
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use super::{
    client::{Client, seg},
    table,
};
use crate::model::Target;

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Address to listen on (listen proxies).
    #[arg(short = 'l', long)]
    pub listen: Option<String>,
    /// Address to forward to; for kernel-native proxies, the traffic selector.
    #[arg(short = 'u', long)]
    pub upstream: Option<String>,
    /// Make a kernel-native proxy acting on kind:value (container:web,
    /// netns:blue, cgroup:/sys/fs/cgroup/x, pid:42, interface:veth0).
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a target the guard rails refuse (the default-route interface,
    /// loopback, the root cgroup).
    #[arg(long, requires = "target")]
    pub force: bool,
    pub proxy: String,
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text<'a>(p: &'a Value, key: &str) -> &'a str {
    p.get(key).and_then(Value::as_str).unwrap_or("")
}

fn enabled_text(p: &Value) -> &'static str {
    if p.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
        "enabled"
    } else {
        "disabled"
    }
}

/// `container:web` for a kernel-native proxy's target.
fn target_text(p: &Value) -> Option<String> {
    let obj = p.get("target")?.as_object()?;
    let (k, v) = obj.iter().next()?;
    Some(match v {
        Value::String(s) => format!("{k}:{s}"),
        other => format!("{k}:{other}"),
    })
}

fn toxics_of(p: &Value) -> &[Value] {
    p.get("toxics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub async fn list(c: &Client, json: bool) -> anyhow::Result<()> {
    let all = c
        .call(Method::GET, "/proxies", None)
        .await
        .context("Failed to retrieve proxies")?;
    if json {
        print_json(&all);
        return Ok(());
    }
    let proxies: Vec<&Value> = all
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    if proxies.is_empty() {
        println!("no proxies");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            vec![
                text(p, "name").into(),
                target_text(p).unwrap_or_else(|| text(p, "listen").into()),
                text(p, "upstream").into(),
                enabled_text(p).into(),
                toxics_of(p).len().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["NAME", "LISTEN / TARGET", "UPSTREAM", "ENABLED", "TOXICS"],
            &rows
        )
    );
    Ok(())
}

/// One toxic as toxiproxy-cli prints it: `name type=.. stream=..
/// toxicity=0.50 attributes=[ k=v ... ]`, attributes sorted by key.
pub fn toxic_line(t: &Value) -> String {
    let mut attrs: Vec<(String, String)> = t
        .get("attributes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
        .unwrap_or_default();
    attrs.sort();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut line = format!(
        "{}\ttype={}\tstream={}\ttoxicity={:.2}\tattributes=[\t{}\t]",
        text(t, "name"),
        text(t, "type"),
        text(t, "stream"),
        t.get("toxicity").and_then(Value::as_f64).unwrap_or(0.0),
        attrs.join("\t"),
    );
    if let Some(ttl) = t.get("ttl_ms").and_then(Value::as_u64) {
        line.push_str(&format!("\tttl_ms={ttl}"));
    }
    line
}

pub async fn inspect(c: &Client, proxy: &str, json: bool) -> anyhow::Result<()> {
    let p = c
        .call(Method::GET, &format!("/proxies/{}", seg(proxy)), None)
        .await
        .with_context(|| format!("Failed to retrieve proxy {proxy}"))?;
    if json {
        print_json(&p);
        return Ok(());
    }
    match target_text(&p) {
        Some(t) => println!(
            "Name: {}\tTarget: {t}\tUpstream: {}\t{}",
            text(&p, "name"),
            text(&p, "upstream"),
            enabled_text(&p)
        ),
        None => println!(
            "Name: {}\tListen: {}\tUpstream: {}\t{}",
            text(&p, "name"),
            text(&p, "listen"),
            text(&p, "upstream"),
            enabled_text(&p)
        ),
    }
    let toxics = toxics_of(&p);
    if toxics.is_empty() {
        println!("Proxy has no toxics enabled.");
    }
    for t in toxics {
        println!("{}", toxic_line(t));
    }
    Ok(())
}

pub async fn create(c: &Client, args: &CreateArgs, json: bool) -> anyhow::Result<()> {
    let upstream = args
        .upstream
        .as_deref()
        .context("Required argument 'upstream' was empty.")?;
    let mut body = json!({
        "name": args.proxy,
        "listen": args.listen.clone().unwrap_or_default(),
        "upstream": upstream,
        "enabled": true,
        "toxics": null,
    });
    match &args.target {
        Some(t) => {
            let mut target = Target::from_cli(t).map_err(anyhow::Error::msg)?;
            if args.force {
                target = Target::Forced(Box::new(target));
            }
            body["target"] = target.to_json();
        }
        None if args.listen.is_none() => anyhow::bail!("Required argument 'listen' was empty."),
        None => {}
    }
    let p = c
        .call(Method::POST, "/proxies", Some(&body))
        .await
        .context("Failed to create proxy")?;
    if json {
        print_json(&p);
    } else {
        println!("Created new proxy {}", args.proxy);
    }
    Ok(())
}

/// GET, then POST the whole object with `enabled` flipped (as toxiproxy-cli).
pub async fn toggle(c: &Client, proxy: &str, json: bool) -> anyhow::Result<()> {
    let path = format!("/proxies/{}", seg(proxy));
    let mut p = c
        .call(Method::GET, &path, None)
        .await
        .with_context(|| format!("Failed to retrieve proxy {proxy}"))?;
    let enabled = p.get("enabled").and_then(Value::as_bool).unwrap_or(false);
    p["enabled"] = Value::Bool(!enabled);
    let p = c
        .call(Method::POST, &path, Some(&p))
        .await
        .with_context(|| format!("Failed to toggle proxy {proxy}"))?;
    if json {
        print_json(&p);
    } else {
        println!("Proxy {proxy} is now {}", enabled_text(&p));
    }
    Ok(())
}

pub async fn delete(c: &Client, proxy: &str, json: bool) -> anyhow::Result<()> {
    let path = format!("/proxies/{}", seg(proxy));
    c.call(Method::GET, &path, None)
        .await
        .with_context(|| format!("Failed to retrieve proxy {proxy}"))?;
    c.call(Method::DELETE, &path, None)
        .await
        .context("Failed to delete proxy")?;
    if json {
        print_json(&json!({"deleted": proxy}));
    } else {
        println!("Deleted proxy {proxy}");
    }
    Ok(())
}
