//! The web front end: `/checkout` asks an orders instance to place an
//! order. It load-balances like a typical reverse proxy: round robin over
//! the addresses `orders.shop.lab` resolves to, a failed connect marks the
//! instance down for a while and the next one is tried (nginx's
//! `proxy_next_upstream error timeout` with `max_fails=1`). A request that
//! reached an instance is never retried: an order is not idempotent.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use super::{
    failure,
    http::{CallError, call},
    listen,
    resolver::Resolver,
};
use crate::lab::plan::{ORDERS_PORT, WEB_PORT, ZONE};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const ORDERS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an instance that refused a connection is left alone.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

struct Web {
    instance: String,
    resolver: Resolver,
    lb: Mutex<Balancer>,
}

#[derive(Default)]
struct Balancer {
    next: usize,
    down_until: HashMap<Ipv4Addr, Instant>,
}

impl Balancer {
    /// The order to try instances in: round robin, instances marked down
    /// last (still tried: better a slow answer than none).
    fn order(&mut self, mut ips: Vec<Ipv4Addr>, now: Instant) -> Vec<Ipv4Addr> {
        ips.sort();
        if ips.is_empty() {
            return ips;
        }
        let start = self.next % ips.len();
        self.next = self.next.wrapping_add(1);
        ips.rotate_left(start);
        self.down_until.retain(|_, until| *until > now);
        let (up, down): (Vec<_>, Vec<_>) = ips
            .into_iter()
            .partition(|ip| !self.down_until.contains_key(ip));
        up.into_iter().chain(down).collect()
    }

    fn mark_down(&mut self, ip: Ipv4Addr, now: Instant) {
        self.down_until.insert(ip, now + DOWN_FOR);
    }
}

pub async fn serve(instance: String, resolver: Resolver) -> anyhow::Result<()> {
    let web = Arc::new(Web {
        instance,
        resolver,
        lb: Mutex::new(Balancer::default()),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/health", get(|| async { "ok\n" }))
        .route("/checkout", get(checkout).post(checkout))
        .with_state(web);
    axum::serve(listen(WEB_PORT).await?, app).await?;
    Ok(())
}

async fn index() -> &'static str {
    "injector demo shop: GET or POST /checkout places an order (web -> orders -> payments, db)\n"
}

async fn checkout(State(web): State<Arc<Web>>) -> Response {
    let name = format!("orders.{ZONE}");
    let ips = match web.resolver.lookup(&name).await {
        Ok(ips) => ips,
        Err(e) => return failure(&web.instance, StatusCode::BAD_GATEWAY, e),
    };
    let order = web
        .lb
        .lock()
        .expect("balancer lock")
        .order(ips, Instant::now());
    let mut refused = Vec::new();
    for ip in order {
        let addr = SocketAddr::from((ip, ORDERS_PORT));
        let body = r#"{"items":[{"sku":"tea","qty":2}],"amount_cents":4200}"#.to_string();
        match call(
            addr,
            "POST",
            "/orders",
            body,
            CONNECT_TIMEOUT,
            ORDERS_TIMEOUT,
        )
        .await
        {
            Ok(a) if (200..300).contains(&a.status) => {
                return (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    a.body,
                )
                    .into_response();
            }
            Ok(a) => {
                // The instance's own error, passed on as it is.
                let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
                eprintln!("{}: {} from orders at {addr}", web.instance, a.status);
                return (status, [("content-type", "application/json")], a.body).into_response();
            }
            Err(CallError::Connect(e)) => {
                web.lb
                    .lock()
                    .expect("balancer lock")
                    .mark_down(ip, Instant::now());
                eprintln!(
                    "{}: orders at {addr} marked down for {DOWN_FOR:?}: {e}",
                    web.instance
                );
                refused.push(e);
            }
            Err(e @ CallError::Timeout(_)) => {
                return failure(
                    &web.instance,
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("orders at {addr}: {e}"),
                );
            }
            Err(e) => {
                return failure(
                    &web.instance,
                    StatusCode::BAD_GATEWAY,
                    format!("orders at {addr}: {e}"),
                );
            }
        }
    }
    failure(
        &web.instance,
        StatusCode::BAD_GATEWAY,
        format!("no orders instance reachable: {}", refused.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_instances_marked_down() {
        let a = Ipv4Addr::new(10, 0, 0, 20);
        let b = Ipv4Addr::new(10, 0, 0, 21);
        let mut lb = Balancer::default();
        let now = Instant::now();
        assert_eq!(lb.order(vec![b, a], now), [a, b]);
        assert_eq!(lb.order(vec![a, b], now), [b, a]);
        lb.mark_down(b, now);
        assert_eq!(lb.order(vec![a, b], now), [a, b]);
        assert_eq!(lb.order(vec![a, b], now), [a, b], "b stays last while down");
        let later = now + DOWN_FOR + Duration::from_millis(1);
        assert_eq!(lb.order(vec![a, b], later), [a, b]);
        assert_eq!(lb.order(vec![a, b], later), [b, a], "b is back in turn");
        assert!(lb.order(vec![], later).is_empty());
    }
}
