//! The shop's programs. Each container (or namespace) of the lab runs this
//! same binary as `injector lab service <role>`: real servers on real
//! sockets, talking over the lab network and finding each other through
//! the lab's DNS server, so every fault injector puts on their traffic is
//! met the way a production service meets it.

mod db;
pub mod dns;
pub mod dnswire;
pub mod http;
mod orders;
mod payments;
pub mod resolver;
mod web;

use std::net::Ipv4Addr;

use anyhow::bail;
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use clap::Args;
use serde_json::json;

use super::plan::Role;

#[derive(Args, Debug)]
pub struct ServiceArgs {
    /// web, orders, payments, db or dns.
    pub role: String,
    /// The instance's name (orders-a, orders-b...), shown in answers and logs.
    #[arg(long)]
    pub instance: Option<String>,
    /// The lab's DNS server (every role but dns).
    #[arg(long)]
    pub dns: Option<Ipv4Addr>,
    /// dns only: `name=ip[,ip...]`, repeated.
    #[arg(long = "record")]
    pub records: Vec<String>,
}

pub async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let role = match args.role.as_str() {
        "web" => Role::Web,
        "orders" => Role::Orders,
        "payments" => Role::Payments,
        "db" => Role::Db,
        "dns" => Role::Dns,
        other => bail!("unknown lab service {other:?}: web, orders, payments, db or dns"),
    };
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| role.as_str().to_string());
    let resolver = || match args.dns {
        Some(ip) => Ok(resolver::Resolver::new(ip)),
        None => bail!("lab service {}: --dns is required", role.as_str()),
    };
    eprintln!("{instance}: {} on port {}", role.describe(), role.port());
    let work = async {
        match role {
            Role::Web => web::serve(instance.clone(), resolver()?).await,
            Role::Orders => orders::serve(instance.clone(), resolver()?).await,
            Role::Payments => payments::serve(instance.clone()).await,
            Role::Db => db::serve().await,
            Role::Dns => dns::serve(dns::parse_records(&args.records)?).await,
        }
    };
    // PID 1 of a container gets no default SIGTERM action: exit on it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = work => r,
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// `{"error": "...", "service": "..."}` with a status, logged as well.
pub fn failure(instance: &str, status: StatusCode, error: String) -> Response {
    eprintln!("{instance}: {} {error}", status.as_u16());
    (
        status,
        Json(json!({"error": format!("{instance}: {error}"), "service": instance})),
    )
        .into_response()
}

async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on port {port}: {e}"))
}
