//! The payment provider: `POST /charge` approves every charge at once. Slow
//! or dead, it is what the "payment provider" experiments break.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use super::listen;
use crate::lab::plan::PAYMENTS_PORT;

struct Payments {
    instance: String,
    charges: AtomicU64,
}

pub async fn serve(instance: String) -> anyhow::Result<()> {
    let p = Arc::new(Payments {
        instance,
        charges: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/charge", axum::routing::post(charge))
        .route("/charges", get(count))
        .with_state(p);
    axum::serve(listen(PAYMENTS_PORT).await?, app).await?;
    Ok(())
}

async fn charge(State(p): State<Arc<Payments>>, body: String) -> Json<Value> {
    let n = p.charges.fetch_add(1, Ordering::Relaxed) + 1;
    let order = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("order").cloned())
        .unwrap_or(Value::Null);
    Json(
        json!({"charge": format!("ch_{n:06}"), "order": order, "status": "approved", "by": p.instance}),
    )
}

async fn count(State(p): State<Arc<Payments>>) -> Json<Value> {
    Json(json!({"charges": p.charges.load(Ordering::Relaxed)}))
}
