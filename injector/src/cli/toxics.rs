//! toxic add|update|remove, with toxiproxy-cli's flags.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, seg};
use crate::faults::attrs::go_float;

#[derive(Subcommand, Debug)]
pub enum ToxicCommand {
    /// Add a toxic to a proxy.
    #[command(visible_alias = "a")]
    Add(AddArgs),
    /// Change a toxic's attributes or toxicity.
    #[command(visible_alias = "u")]
    Update(UpdateArgs),
    /// Remove a toxic.
    #[command(visible_aliases = ["r", "delete", "d"])]
    Remove {
        #[arg(short = 'n', long = "toxicName")]
        name: String,
        proxy: String,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(short = 't', long = "type")]
    pub kind: String,
    /// Defaults to <type>_<stream>.
    #[arg(short = 'n', long = "toxicName")]
    pub name: Option<String>,
    #[arg(short = 'u', long)]
    pub upstream: bool,
    #[arg(short = 'd', long)]
    pub downstream: bool,
    /// Share of connections affected, 0 to 1 (default 1).
    #[arg(long = "toxicity", visible_alias = "tox")]
    pub toxicity: Option<String>,
    /// key=value, repeatable; numbers are sent as numbers.
    #[arg(short = 'a', long = "attribute")]
    pub attributes: Vec<String>,
    /// Remove the toxic by itself after this many milliseconds.
    #[arg(long = "ttl-ms")]
    pub ttl_ms: Option<u64>,
    pub proxy: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[arg(short = 'n', long = "toxicName")]
    pub name: String,
    /// Left unchanged when not given.
    #[arg(long = "toxicity", visible_alias = "tox")]
    pub toxicity: Option<String>,
    #[arg(short = 'a', long = "attribute")]
    pub attributes: Vec<String>,
    pub proxy: String,
}

/// toxiproxy-cli's parseAttributes: `k=v`; v through ParseFloat, a number
/// if it parses, else a string; entries without `=` are skipped.
pub fn parse_attributes(raw: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for kv in raw {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let value = match v.parse::<f64>() {
            Ok(f) if f.is_finite() => go_float(f),
            _ => Value::String(v.to_string()),
        };
        m.insert(k.to_string(), value);
    }
    m
}

/// toxiproxy-cli's parseToxicity: a float in [0, 1].
pub fn parse_toxicity(s: &str) -> anyhow::Result<f64> {
    match s.parse::<f64>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => anyhow::bail!("toxicity should be a float between 0 and 1."),
    }
}

pub async fn run(c: &Client, cmd: &ToxicCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ToxicCommand::Add(a) => add(c, a, json).await,
        ToxicCommand::Update(u) => update(c, u, json).await,
        ToxicCommand::Remove { name, proxy } => remove(c, proxy, name, json).await,
    }
}

async fn check_proxy(c: &Client, proxy: &str) -> anyhow::Result<()> {
    c.call(Method::GET, &format!("/proxies/{}", seg(proxy)), None)
        .await
        .with_context(|| format!("Failed to retrieve proxy {proxy}"))?;
    Ok(())
}

async fn add(c: &Client, a: &AddArgs, json: bool) -> anyhow::Result<()> {
    if a.upstream && a.downstream {
        anyhow::bail!("Only one should be specified: upstream or downstream.");
    }
    let stream = if a.upstream { "upstream" } else { "downstream" };
    let toxicity = a
        .toxicity
        .as_deref()
        .map(parse_toxicity)
        .transpose()?
        .unwrap_or(1.0);
    check_proxy(c, &a.proxy).await?;
    let mut body = json!({
        "name": a.name.clone().unwrap_or_default(),
        "type": a.kind,
        "stream": stream,
        "toxicity": toxicity,
        "attributes": parse_attributes(&a.attributes),
    });
    if let Some(ttl) = a.ttl_ms {
        body["ttl_ms"] = Value::from(ttl);
    }
    let t = c
        .call(
            Method::POST,
            &format!("/proxies/{}/toxics", seg(&a.proxy)),
            Some(&body),
        )
        .await
        .context("Failed to add toxic")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
    } else {
        let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        println!(
            "Added {} {} toxic '{}' on proxy '{}'",
            s("stream"),
            s("type"),
            s("name"),
            a.proxy
        );
    }
    Ok(())
}

async fn update(c: &Client, u: &UpdateArgs, json: bool) -> anyhow::Result<()> {
    let mut body = json!({ "attributes": parse_attributes(&u.attributes) });
    if let Some(t) = &u.toxicity {
        body["toxicity"] = json!(parse_toxicity(t)?);
    }
    check_proxy(c, &u.proxy).await?;
    let t = c
        .call(
            Method::PATCH,
            &format!("/proxies/{}/toxics/{}", seg(&u.proxy), seg(&u.name)),
            Some(&body),
        )
        .await
        .context("Failed to update toxic")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
    } else {
        println!("Updated toxic '{}' on proxy '{}'", u.name, u.proxy);
    }
    Ok(())
}

async fn remove(c: &Client, proxy: &str, name: &str, json: bool) -> anyhow::Result<()> {
    check_proxy(c, proxy).await?;
    c.call(
        Method::DELETE,
        &format!("/proxies/{}/toxics/{}", seg(proxy), seg(name)),
        None,
    )
    .await
    .context("Failed to remove toxic")?;
    if json {
        println!("{}", json!({"removed": name, "proxy": proxy}));
    } else {
        println!("Removed toxic '{name}' on proxy '{proxy}'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_like_toxiproxy_cli() {
        let m = parse_attributes(&[
            "latency=100".into(),
            "rate=0.5".into(),
            "action=servfail".into(),
            "bad".into(),
            "e=1e3".into(),
        ]);
        assert_eq!(
            Value::Object(m).to_string(),
            r#"{"latency":100,"rate":0.5,"action":"servfail","e":1000}"#
        );
    }

    #[test]
    fn toxicity_must_be_a_share() {
        assert_eq!(parse_toxicity("0.5").unwrap(), 0.5);
        assert!(parse_toxicity("1.5").is_err());
        assert!(parse_toxicity("x").is_err());
    }
}
