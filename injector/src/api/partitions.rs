//! /partitions: cut group A from group B both ways in one call.
//!
//! POST /partitions `{"name": "split", "a": [{"netns": "n1"}, "10.0.9.0/24"],
//! "b": [{"container": "db"}], "ttl_ms": 30000}` puts it in force (201);
//! GET /partitions lists them as a map, GET /partitions/{name} shows one,
//! DELETE /partitions/{name} heals it (204). Members are targets (as a
//! kernel-native proxy takes them) or address/CIDR strings.

use axum::response::Response;
use serde_json::{Map, Value};

use super::error::{WireError, json_response, no_content};
use crate::{ApiError, engine::Engine, kernel::partition::PartitionSpec};

fn not_found() -> ApiError {
    ApiError::new(404, "partition not found")
}

pub async fn index(engine: &Engine) -> Result<Response, WireError> {
    let all: Map<String, Value> = engine
        .partitions
        .list()
        .await
        .into_iter()
        .map(|p| (p.name.clone(), p.to_json()))
        .collect();
    Ok(json_response(200, &Value::Object(all)))
}

pub async fn show(engine: &Engine, name: &str) -> Result<Response, WireError> {
    let p = engine.partitions.get(name).await.ok_or_else(not_found)?;
    Ok(json_response(200, &p.to_json()))
}

pub async fn create(engine: &Engine, body: &[u8]) -> Result<Response, WireError> {
    let v: Value = serde_json::from_slice(body).map_err(ApiError::bad_body)?;
    let mut spec = PartitionSpec::from_json(&v)?;
    // A partition is a fault like any other: --max-fault-duration caps it.
    spec.ttl_ms = engine.effective_ttl(spec.ttl_ms);
    let dp = engine.kernel()?;
    let spec = engine.partitions.create(dp, spec).await?;
    Ok(json_response(201, &spec.to_json()))
}

pub async fn delete(engine: &Engine, name: &str) -> Result<Response, WireError> {
    let dp = engine.kernel()?;
    if !engine.partitions.heal(dp, name).await {
        return Err(not_found().into());
    }
    Ok(no_content())
}
