//! The lab's DNS server, authoritative for `shop.lab`, on UDP and TCP port
//! 53 (so `dig @<dns> orders.shop.lab` and `dig +tcp` work). Answers carry
//! TTL 0. A small HTTP API on port 8053 changes a record at run time, which
//! is how `injector lab route` sends a service's clients through a listen
//! proxy: `PUT /records/payments.shop.lab` with `10.77.0.1` as the body.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, RwLock},
};

use anyhow::{Context as _, bail};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

use super::dnswire::{
    self, CLASS_IN, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_OK, RCODE_REFUSED, TYPE_A,
};
use crate::lab::plan::{DNS_CONTROL_PORT, DNS_PORT, ZONE};

pub type Records = BTreeMap<String, Vec<Ipv4Addr>>;

struct Zone {
    defaults: Records,
    current: RwLock<Records>,
}

/// `name=ip[,ip...]` pairs; short names get the zone appended.
pub fn parse_records(list: &[String]) -> anyhow::Result<Records> {
    let mut out = Records::new();
    for item in list {
        let (name, ips) = item
            .split_once('=')
            .with_context(|| format!("record {item:?}: write name=ip[,ip...]"))?;
        out.insert(full_name(name), parse_ips(ips)?);
    }
    Ok(out)
}

fn parse_ips(s: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let ips = s
        .split(',')
        .map(|ip| ip.trim().parse::<Ipv4Addr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{s:?} is not a list of IPv4 addresses"))?;
    if ips.is_empty() {
        bail!("a record needs at least one address");
    }
    Ok(ips)
}

pub fn full_name(name: &str) -> String {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if n == ZONE || n.ends_with(&format!(".{ZONE}")) {
        n
    } else {
        format!("{n}.{ZONE}")
    }
}

impl Zone {
    /// The rcode and addresses for one question.
    fn resolve(&self, q: &dnswire::Question) -> (u8, Vec<Ipv4Addr>) {
        let in_zone = q.name == ZONE || q.name.ends_with(&format!(".{ZONE}"));
        if !in_zone {
            return (RCODE_REFUSED, Vec::new());
        }
        if q.qclass != CLASS_IN {
            return (RCODE_NOTIMP, Vec::new());
        }
        let records = self.current.read().expect("records lock");
        match records.get(&q.name) {
            Some(ips) if q.qtype == TYPE_A => (RCODE_OK, ips.clone()),
            // The name exists, not with this type (AAAA...): NODATA.
            Some(_) => (RCODE_OK, Vec::new()),
            None if q.name == ZONE => (RCODE_OK, Vec::new()),
            None => (RCODE_NXDOMAIN, Vec::new()),
        }
    }

    fn reply(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let (id, flags, q) = dnswire::parse_query(packet)?;
        let (rcode, ips) = self.resolve(&q);
        Some(dnswire::answer(id, flags, &q, rcode, &ips))
    }
}

pub async fn serve(records: Records) -> anyhow::Result<()> {
    let zone = Arc::new(Zone {
        current: RwLock::new(records.clone()),
        defaults: records,
    });
    let udp = UdpSocket::bind(("0.0.0.0", DNS_PORT))
        .await
        .context("cannot listen on UDP port 53")?;
    let tcp = TcpListener::bind(("0.0.0.0", DNS_PORT))
        .await
        .context("cannot listen on TCP port 53")?;
    let control = Router::new()
        .route("/records", get(list))
        .route("/records/{name}", get(show).put(set).delete(reset))
        .with_state(zone.clone());
    let control_listener = super::listen(DNS_CONTROL_PORT).await?;
    tokio::try_join!(serve_udp(udp, zone.clone()), serve_tcp(tcp, zone), async {
        axum::serve(control_listener, control).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

async fn serve_udp(sock: UdpSocket, zone: Arc<Zone>) -> anyhow::Result<()> {
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        if let Some(answer) = zone.reply(&buf[..n]) {
            let _ = sock.send_to(&answer, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) -> anyhow::Result<()> {
    loop {
        let (sock, _) = listener.accept().await?;
        let zone = zone.clone();
        tokio::spawn(async move {
            let _ = tcp_session(sock, zone).await;
        });
    }
}

async fn tcp_session(mut sock: TcpStream, zone: Arc<Zone>) -> std::io::Result<()> {
    loop {
        let len = match sock.read_u16().await {
            Ok(l) => l as usize,
            Err(_) => return Ok(()),
        };
        let mut buf = vec![0u8; len];
        sock.read_exact(&mut buf).await?;
        let Some(answer) = zone.reply(&buf) else {
            return Ok(());
        };
        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        sock.write_all(&framed).await?;
    }
}

fn as_json(records: &Records) -> Value {
    let map: serde_json::Map<String, Value> = records
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::from(v.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()),
            )
        })
        .collect();
    Value::Object(map)
}

async fn list(State(zone): State<Arc<Zone>>) -> Json<Value> {
    Json(as_json(&zone.current.read().expect("records lock")))
}

async fn show(State(zone): State<Arc<Zone>>, Path(name): Path<String>) -> Response {
    let name = full_name(&name);
    match zone.current.read().expect("records lock").get(&name) {
        Some(ips) => Json(json!({ name: ips.iter().map(|i| i.to_string()).collect::<Vec<_>>() }))
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no record {name}\n")).into_response(),
    }
}

async fn set(State(zone): State<Arc<Zone>>, Path(name): Path<String>, body: String) -> Response {
    let name = full_name(&name);
    match parse_ips(&body) {
        Ok(ips) => {
            eprintln!("dns: {name} now answers {}", body.trim());
            zone.current
                .write()
                .expect("records lock")
                .insert(name, ips);
            list(State(zone)).await.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    }
}

async fn reset(State(zone): State<Arc<Zone>>, Path(name): Path<String>) -> Response {
    let name = full_name(&name);
    let Some(ips) = zone.defaults.get(&name).cloned() else {
        return (StatusCode::NOT_FOUND, format!("no record {name}\n")).into_response();
    };
    eprintln!("dns: {name} back to its own address");
    zone.current
        .write()
        .expect("records lock")
        .insert(name, ips);
    list(State(zone)).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let r = parse_records(&[
            "orders=10.0.0.20,10.0.0.21".into(),
            "db.shop.lab=10.0.0.40".into(),
        ])
        .unwrap();
        Zone {
            current: RwLock::new(r.clone()),
            defaults: r,
        }
    }

    fn ask(z: &Zone, name: &str) -> dnswire::Response {
        dnswire::parse_response(&z.reply(&dnswire::query(1, name)).unwrap()).unwrap()
    }

    #[test]
    fn answers_names_of_the_zone_only() {
        let z = zone();
        let r = ask(&z, "ORDERS.shop.lab");
        assert_eq!(r.rcode, RCODE_OK);
        assert_eq!(r.addrs.len(), 2);
        assert_eq!(ask(&z, "nope.shop.lab").rcode, RCODE_NXDOMAIN);
        assert_eq!(ask(&z, "example.com").rcode, RCODE_REFUSED);
        assert!(z.reply(b"\x00\x01garbage").is_none());
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(parse_records(&["orders".into()]).is_err());
        assert!(parse_records(&["orders=10.0.0".into()]).is_err());
        assert_eq!(full_name("Payments."), "payments.shop.lab");
    }
}
