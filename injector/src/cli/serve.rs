//! `injector serve`: loads the data plane (or says why not, and keeps
//! going: listen proxies need no kernel support), applies --config, then
//! serves the API until SIGINT/SIGTERM, and removes every fault on exit.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::net::TcpListener;

use crate::{
    ApiError, api, config,
    engine::{Engine, EngineOptions},
    kernel::DataPlane,
};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to serve the API on (ToxiProxy: -host).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to serve the API on (ToxiProxy: -port).
    #[arg(long, default_value_t = 8474)]
    pub port: u16,
    /// Proxies (and their toxics) to create at start (ToxiProxy: -config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Longest time any toxic may stay in force (e.g. 500ms, 30s, 10m, 1h);
    /// toxics without a ttl get this one.
    #[arg(long, value_parser = parse_duration)]
    pub max_fault_duration: Option<Duration>,
    /// File holding the bearer token clients must send.
    #[arg(long, env = "INJECTOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The token itself (prefer --token-file: the environment leaks less
    /// than argv, a file less than both).
    #[arg(long, env = "INJECTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve a non-loopback address without a token.
    #[arg(long)]
    pub insecure: bool,
    /// Serve the API over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "INJECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "INJECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Listen proxies only: do not load the kernel data plane (no root or
    /// BPF needed; kernel-native proxies are refused).
    #[arg(long)]
    pub proxy_only: bool,
    /// Accepted for ToxiProxy compatibility: /metrics is always served.
    #[arg(long, hide = true)]
    pub proxy_metrics: bool,
    /// Accepted for ToxiProxy compatibility: /metrics is always served.
    #[arg(long, hide = true)]
    pub runtime_metrics: bool,
    /// Accepted for ToxiProxy compatibility (where it has no effect either).
    #[arg(long, hide = true)]
    pub seed: Option<i64>,
    /// Bring the demo lab up (`injector lab up`) and put a proxy on each of
    /// its dependencies; the lab keeps running after the daemon exits.
    #[arg(long)]
    pub lab: bool,
    /// The lab `--lab` brings up.
    #[arg(long, default_value = crate::lab::plan::DEFAULT_NAME, requires = "lab")]
    pub lab_name: String,
    /// Remove the lab when the daemon exits.
    #[arg(long, requires = "lab")]
    pub lab_down_on_exit: bool,
}

/// `250ms`, `30s`, `10m`, `2h`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m or h")),
    };
    if ms == 0 {
        return Err("the duration must be more than 0".into());
    }
    Ok(Duration::from_millis(ms))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token clients must present, if any; refuses to expose the API
/// beyond loopback without one unless --insecure.
fn token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match (&args.token_file, &args.token) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        (None, t) => t.clone(),
    };
    if token.as_deref() == Some("") {
        bail!("the API token is empty");
    }
    if token.is_none() && !args.insecure && !is_loopback(&args.host) {
        bail!(
            "serving the API on {} exposes it beyond this host: give a token \
             (--token-file or INJECTOR_TOKEN), or --insecure to do without",
            args.host
        );
    }
    Ok(token)
}

fn init_logging() {
    // ToxiProxy reads LOG_LEVEL; RUST_LOG wins when both are set.
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let token = token(&args)?;
    // Read before anything touches the kernel: a bad file fails the start cleanly.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(api::tls::acceptor(cert, key)?),
        _ => None,
    };
    let dataplane = if args.proxy_only {
        Err(ApiError::unsupported(
            "kernel-native proxies are off: the daemon runs with --proxy-only",
        ))
    } else {
        DataPlane::load().await
    };
    if let (Err(e), false) = (&dataplane, args.proxy_only) {
        tracing::warn!(
            "kernel data plane unavailable ({}); listen proxies work, kernel-native proxies will be refused",
            e.message
        );
    }
    let engine = Engine::new(
        dataplane,
        EngineOptions {
            max_fault_duration: args.max_fault_duration,
        },
    );
    if let Some(path) = &args.config {
        let n = config::apply(&engine, path).await?;
        tracing::info!(proxies = n, config = %path.display(), "populated proxies from the config file");
    }
    let host = args.host.trim_start_matches('[').trim_end_matches(']');
    let listener = TcpListener::bind((host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    // The data plane must never fault the daemon's own API traffic.
    engine.guard_api_port(address.port()).await;
    let lab = if args.lab {
        let api = format!(
            "http://{}:{}",
            if is_loopback(host) { "localhost" } else { host },
            args.port
        );
        match crate::lab::daemon::start(&engine, &api, &args.lab_name, args.lab_down_on_exit).await
        {
            Ok(l) => Some(l),
            Err(e) => {
                engine.shutdown().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    tracing::info!(%address, tls = tls.is_some(), "API listening");
    let app = api::router_with_token(engine.clone(), token);
    let served = match tls {
        Some(acceptor) => api::tls::serve(listener, acceptor, app, shutdown_signal()).await,
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    engine.shutdown().await;
    if let Some(lab) = lab {
        lab.finish().await;
    }
    served.context("the API server failed")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: removing every fault");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
