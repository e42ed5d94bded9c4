//! The orders API: `POST /orders` takes an order id from the database,
//! charges the payment provider (with the 5 s client timeout the seed
//! experiments talk about), then stores the order. Each failure names the
//! dependency that caused it, so a user sees which fault bit.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    db, failure,
    http::{CallError, call},
    listen,
    resolver::Resolver,
};
use crate::lab::plan::{DB_PORT, ORDERS_PORT, PAYMENTS_PORT, ZONE};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The client timeout on the payment provider.
pub const PAYMENTS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DB_TIMEOUT: Duration = Duration::from_secs(2);

struct Orders {
    instance: String,
    resolver: Resolver,
}

pub async fn serve(instance: String, resolver: Resolver) -> anyhow::Result<()> {
    let orders = Arc::new(Orders { instance, resolver });
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/orders", post(place))
        .with_state(orders);
    axum::serve(listen(ORDERS_PORT).await?, app).await?;
    Ok(())
}

/// 504 for a timeout, 502 for anything else a dependency did.
fn status_of(e: &CallError) -> StatusCode {
    match e {
        CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl Orders {
    async fn addr(&self, role: &str, port: u16) -> Result<SocketAddr, String> {
        let ips = self.resolver.lookup(&format!("{role}.{ZONE}")).await?;
        Ok(SocketAddr::from((ips[0], port)))
    }

    async fn db(&self, args: &[&str]) -> Result<String, Response> {
        let fail = |status, e: String| failure(&self.instance, status, format!("db: {e}"));
        let addr = self
            .addr("db", DB_PORT)
            .await
            .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e))?;
        db::command(addr, args, CONNECT_TIMEOUT, DB_TIMEOUT)
            .await
            .map_err(|e| {
                let status = match e {
                    CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                fail(status, e.to_string())
            })
    }
}

async fn place(State(o): State<Arc<Orders>>, body: String) -> Response {
    let amount = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("amount_cents").and_then(Value::as_u64))
        .unwrap_or(0);
    let id = match o.db(&["INCR", "shop:orders"]).await {
        Ok(line) => line.trim_start_matches(':').to_string(),
        Err(r) => return r,
    };
    let pay = match o.addr("payments", PAYMENTS_PORT).await {
        Ok(a) => a,
        Err(e) => {
            return failure(
                &o.instance,
                StatusCode::BAD_GATEWAY,
                format!("payments: {e}"),
            );
        }
    };
    let charge_req = json!({"order": id, "amount_cents": amount}).to_string();
    let charge = match call(
        pay,
        "POST",
        "/charge",
        charge_req,
        CONNECT_TIMEOUT,
        PAYMENTS_TIMEOUT,
    )
    .await
    {
        Ok(a) if a.status == 200 => serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v.get("charge").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default(),
        Ok(a) => {
            return failure(
                &o.instance,
                StatusCode::BAD_GATEWAY,
                format!("payments: answered {}", a.status),
            );
        }
        Err(e) => return failure(&o.instance, status_of(&e), format!("payments: {e}")),
    };
    let record = json!({"order": id, "amount_cents": amount, "charge": charge}).to_string();
    if let Err(r) = o.db(&["SET", &format!("order:{id}"), &record]).await {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(json!({"order": id.parse::<u64>().unwrap_or(0), "instance": o.instance, "charge": charge})),
    )
        .into_response()
}
