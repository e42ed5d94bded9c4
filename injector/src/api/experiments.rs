//! /experiments: run a policy inside the daemon. `POST` takes the policy
//! as TOML or JSON text and starts it (201 with its id); `GET` lists runs
//! or shows one (state, verdicts, SLI series); `DELETE` aborts a run and
//! answers once its rollback is done; `/experiments/{id}/log.md`,
//! `log.json` and `chart.svg` are the written log. Errors use ToxiProxy's
//! `{"error":..,"status":..}`.
//!
//! Command probes are refused here: the daemon runs as root, and a policy
//! sent over HTTP must not make it execute programs. `injector run` runs
//! them as the user who typed it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};
use serde_json::Value;

use super::error::{WireError, json_response};
use crate::{
    ApiError,
    engine::Engine,
    experiment::{Backend, Handle, Policy, report, slug},
};

/// Finished runs kept for GET beyond this many are forgotten, oldest first.
const KEEP_FINISHED: usize = 50;
/// DELETE waits this long for the rollback (under the 25 s handler limit).
const ROLLBACK_WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Experiments {
    next: AtomicU64,
    runs: Mutex<Vec<(String, Arc<Handle>)>>,
}

fn not_found() -> ApiError {
    ApiError::new(404, "experiment not found")
}

impl Experiments {
    fn runs(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<Handle>)>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, id: &str) -> Result<Arc<Handle>, ApiError> {
        self.runs()
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, h)| h.clone())
            .ok_or_else(not_found)
    }
}

pub async fn create(
    engine: &Arc<Engine>,
    runs: &Experiments,
    body: &[u8],
) -> Result<Response, WireError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the policy must be UTF-8 text (TOML or JSON)"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("empty body: send a policy as TOML or JSON").into());
    }
    let policy = Policy::parse("policy", text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if policy.uses_commands() {
        return Err(ApiError::bad_request(
            "command probes are not run by the daemon (it runs as root); run this policy with `injector run`",
        )
        .into());
    }
    let mut list = runs.runs();
    for (id, h) in list.iter() {
        if h.finished().is_some() {
            continue;
        }
        let other = h.policy();
        if let Some(p) = policy
            .blast_radius
            .proxies
            .iter()
            .find(|p| other.blast_radius.proxies.contains(p))
        {
            return Err(ApiError::new(
                409,
                format!("experiment {id} is already running on proxy {p}"),
            )
            .into());
        }
    }
    let n = runs.next.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("{}-{n}", slug(&policy.name));
    let handle = Arc::new(Handle::start(
        &id,
        Arc::new(policy),
        Backend::Engine(engine.clone()),
    ));
    let body = report::summary(&handle.snapshot());
    list.push((id, handle));
    while list.iter().filter(|(_, h)| h.finished().is_some()).count() > KEEP_FINISHED {
        if let Some(i) = list.iter().position(|(_, h)| h.finished().is_some()) {
            list.remove(i);
        }
    }
    Ok(json_response(201, &body))
}

pub fn index(runs: &Experiments) -> Response {
    let all: Vec<Value> = runs
        .runs()
        .iter()
        .map(|(_, h)| report::summary(&h.snapshot()))
        .collect();
    json_response(200, &Value::Array(all))
}

pub fn show(runs: &Experiments, id: &str) -> Result<Response, WireError> {
    let h = runs.find(id)?;
    Ok(json_response(200, &report::json(&h.snapshot())))
}

/// Aborts (if still running) and answers with the final record once the
/// rollback is done.
pub async fn delete(runs: &Experiments, id: &str) -> Result<Response, WireError> {
    let h = runs.find(id)?;
    h.stop(&format!("aborted by DELETE /experiments/{id}"));
    if tokio::time::timeout(ROLLBACK_WAIT, h.wait()).await.is_err() {
        return Err(ApiError::new(
            503,
            "the rollback is still running; GET the experiment to follow it",
        )
        .into());
    }
    Ok(json_response(200, &report::json(&h.snapshot())))
}

/// `log.md`, `log.json` or `chart.svg`.
pub fn file(runs: &Experiments, id: &str, name: &str) -> Result<Response, WireError> {
    let h = runs.find(id)?;
    let r = h.snapshot();
    let (text, kind) = match name {
        "log.md" => (
            report::markdown(&r, Some("chart.svg")),
            "text/markdown; charset=utf-8",
        ),
        "log.json" => (
            serde_json::to_string_pretty(&report::json(&r)).unwrap_or_default(),
            "application/json",
        ),
        _ => (crate::experiment::chart::svg(&r), "image/svg+xml"),
    };
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(resp)
}
