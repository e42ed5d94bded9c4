//! Looking at the lab from the host: a checkout, each service's port, the
//! DNS server's records (`status`, readiness after `up`), and `route`,
//! which changes a record through the DNS server's HTTP API.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    Backend,
    plan::{DNS_CONTROL_PORT, Lab, Role, ZONE},
    services::{
        http::{self, call},
        resolver::Resolver,
    },
};

/// One checkout as a shopper does it: status, body, time taken.
pub async fn checkout(lab: &Lab, timeout: Duration) -> anyhow::Result<(u16, String, Duration)> {
    let addr = SocketAddr::from((lab.web_ip(), Role::Web.port()));
    let started = Instant::now();
    let a = call(addr, "GET", "/checkout", String::new(), timeout, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((a.status, a.body, started.elapsed()))
}

/// Retries a checkout until one succeeds; returns how long that one took.
pub async fn wait_ready(lab: &Lab, within: Duration) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + within;
    loop {
        let last = match checkout(lab, Duration::from_secs(5)).await {
            Ok((200, _, took)) => return Ok(took),
            Ok((status, body, _)) => format!("{status}: {}", body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("still failing after {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether an instance answers on its port, in a few words.
async fn answers(role: Role, ip: std::net::Ipv4Addr) -> String {
    if role == Role::Dns {
        return match Resolver::new(ip).lookup(&format!("web.{ZONE}")).await {
            Ok(_) => "answers".into(),
            Err(e) => e,
        };
    }
    let addr = SocketAddr::from((ip, role.port()));
    let t = Duration::from_secs(1);
    match tokio::time::timeout(t, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => "answers".into(),
        Ok(Err(e)) => http::io_reason(&e),
        Err(_) => format!("no answer within {}", http::human(t)),
    }
}

/// The table `up` and `status` print.
pub fn layout(lab: &Lab, backend: &Backend) -> String {
    let mut out = format!(
        "lab {} ({}, {}): checkout at {}\n  {:<10} {:<13} {:<6} {:<28} {}\n",
        lab.name,
        backend.as_str(),
        lab.subnet(),
        lab.checkout_url(),
        "instance",
        "address",
        "port",
        "target",
        "role"
    );
    for s in lab.services() {
        out.push_str(&format!(
            "  {:<10} {:<13} {:<6} {:<28} {}\n",
            s.instance,
            s.ip.to_string(),
            s.role.port(),
            backend.target(lab, s.instance).to_json().to_string(),
            s.role.describe()
        ));
    }
    out.trim_end().to_string()
}

pub async fn status(name: &str, json: bool) -> anyhow::Result<()> {
    let Some((backend, lab)) = Backend::locate(name).await? else {
        if json {
            println!("{}", json!({"lab": name, "up": false}));
            return Ok(());
        }
        bail!("lab {name} is not up (injector lab up --name {name})");
    };
    let states = backend.states(&lab).await?;
    let mut rows = Vec::new();
    for s in lab.services() {
        let state = states
            .iter()
            .find(|(i, _)| i == s.instance)
            .map(|(_, st)| st.clone())
            .unwrap_or_else(|| "missing".into());
        rows.push((s.clone(), state, answers(s.role, s.ip).await));
    }
    let checkout = checkout(&lab, Duration::from_secs(15)).await;
    let records = dns_records(&lab).await.unwrap_or(Value::Null);
    if json {
        let (status, body, ms) = match &checkout {
            Ok((s, b, t)) => (
                Value::from(*s),
                Value::from(b.trim()),
                Value::from(t.as_millis() as u64),
            ),
            Err(e) => (Value::Null, Value::from(format!("{e:#}")), Value::Null),
        };
        println!(
            "{}",
            json!({
                "lab": lab.name,
                "up": true,
                "backend": backend.as_str(),
                "subnet": lab.subnet(),
                "services": rows.iter().map(|(s, state, probe)| json!({
                    "instance": s.instance, "address": s.ip.to_string(), "port": s.role.port(),
                    "state": state, "probe": probe,
                    "target": backend.target_json(&lab, s.instance),
                })).collect::<Vec<_>>(),
                "checkout": {"status": status, "body": body, "ms": ms},
                "dns": records,
            })
        );
        return Ok(());
    }
    println!("{}", layout(&lab, &backend));
    println!();
    for (s, state, probe) in &rows {
        println!("  {:<10} {:<10} {}", s.instance, state, probe);
    }
    match checkout {
        Ok((st, body, took)) => println!(
            "\ncheckout: {st} in {} ms: {}",
            took.as_millis(),
            body.trim()
        ),
        Err(e) => println!("\ncheckout: failed: {e:#}"),
    }
    let defaults: Vec<(String, Vec<String>)> = lab
        .records()
        .into_iter()
        .map(|(n, ips)| (n, ips.iter().map(|i| i.to_string()).collect()))
        .collect();
    if let Value::Object(map) = &records {
        for (name, ips) in map {
            let now: Vec<String> = ips
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if !defaults.iter().any(|(n, d)| n == name && *d == now) {
                println!(
                    "dns: {name} is routed to {} (injector lab route)",
                    now.join(",")
                );
            }
        }
    }
    Ok(())
}

fn control_addr(lab: &Lab) -> SocketAddr {
    SocketAddr::from((lab.dns_ip(), DNS_CONTROL_PORT))
}

async fn dns_records(lab: &Lab) -> anyhow::Result<Value> {
    let t = Duration::from_secs(2);
    let a = call(control_addr(lab), "GET", "/records", String::new(), t, t)
        .await
        .map_err(|e| anyhow::anyhow!("the lab's DNS server: {e}"))?;
    serde_json::from_str(&a.body).context("the lab's DNS server answered no JSON")
}

pub async fn route(
    name: &str,
    service: &str,
    via: Option<&str>,
    direct: bool,
) -> anyhow::Result<()> {
    let Some((_, lab)) = Backend::locate(name).await? else {
        bail!("lab {name} is not up (injector lab up --name {name})");
    };
    let record = super::services::dns::full_name(service);
    let t = Duration::from_secs(2);
    let a = match (via, direct) {
        (_, true) => {
            call(
                control_addr(&lab),
                "DELETE",
                &format!("/records/{record}"),
                String::new(),
                t,
                t,
            )
            .await
        }
        (Some(via), false) => {
            let via = if via == "gateway" {
                lab.gateway().to_string()
            } else {
                via.to_string()
            };
            call(
                control_addr(&lab),
                "PUT",
                &format!("/records/{record}"),
                via,
                t,
                t,
            )
            .await
        }
        (None, false) => bail!("give --via ADDRESS or --direct"),
    }
    .map_err(|e| anyhow::anyhow!("the lab's DNS server: {e}"))?;
    if a.status != 200 {
        bail!("the lab's DNS server refused: {}", a.body.trim());
    }
    let now: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    let ips = now
        .get(&record)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    println!("{record} -> {ips}");
    Ok(())
}
