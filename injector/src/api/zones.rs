//! /zones: named sets of CIDRs (availability zones, racks) that `blackhole`
//! and `loss` toxics cut with `"zones": ["az-b"]`.
//!
//! GET /zones lists them as a map, like GET /proxies; PUT or POST
//! /zones/{name} with `{"cidrs": [...]}` defines or replaces one (201 new,
//! 200 replaced); DELETE removes it (204). A zone a toxic in force uses
//! cannot be changed or removed (409): the toxic's rules hold its
//! addresses, and the kernel would silently disagree with the listing.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::{WireError, json_response, no_content};
use crate::{ApiError, engine::Engine};

fn zone_json(name: &str, cidrs: &[String]) -> Value {
    json!({"name": name, "cidrs": cidrs})
}

fn not_found() -> ApiError {
    ApiError::new(404, "zone not found")
}

pub async fn index(engine: &Engine) -> Result<Response, WireError> {
    let all: Map<String, Value> = engine
        .kernel()?
        .zones()
        .iter()
        .map(|(n, c)| (n.clone(), zone_json(n, c)))
        .collect();
    Ok(json_response(200, &Value::Object(all)))
}

pub async fn show(engine: &Engine, name: &str) -> Result<Response, WireError> {
    let zones = engine.kernel()?.zones();
    let cidrs = zones.get(name).ok_or_else(not_found)?;
    Ok(json_response(200, &zone_json(name, cidrs)))
}

/// `{"cidrs": ["10.0.1.0/24", "fd00:1::/64", "10.0.9.7"]}`.
fn decode(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(ApiError::bad_body)?;
    let cidrs = v
        .get("cidrs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_body("expected {\"cidrs\": [\"10.0.1.0/24\", ...]}"))?;
    cidrs
        .iter()
        .map(|c| {
            c.as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_body("cidrs must be strings"))
        })
        .collect()
}

pub async fn put(engine: &Engine, name: &str, body: &[u8]) -> Result<Response, WireError> {
    let cidrs = decode(body)?;
    let created = engine
        .change_zone(name, |dp| dp.put_zone(name, &cidrs))
        .await?;
    let zones = engine.kernel()?.zones();
    let stored = zones.get(name).ok_or_else(not_found)?;
    Ok(json_response(
        if created { 201 } else { 200 },
        &zone_json(name, stored),
    ))
}

pub async fn delete(engine: &Engine, name: &str) -> Result<Response, WireError> {
    // 404 before 409: a zone that does not exist is used by nobody.
    if !engine.kernel()?.zones().contains_key(name) {
        return Err(not_found().into());
    }
    let removed = engine
        .change_zone(name, |dp| Ok(dp.remove_zone(name)))
        .await?;
    if !removed {
        return Err(not_found().into());
    }
    Ok(no_content())
}
