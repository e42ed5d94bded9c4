//! `serve --config f.json`: ToxiProxy's -config format (the /populate
//! array), plus injector's `target` and per-proxy `toxics` arrays:
//!
//! ```json
//! [{"name": "db", "listen": "127.0.0.1:5433", "upstream": "127.0.0.1:5432",
//!   "toxics": [{"type": "latency", "attributes": {"latency": 100}}]},
//!  {"name": "web", "upstream": "*:80", "target": {"container": "web"}}]
//! ```
//!
//! ToxiProxy logs a bad config and serves anyway; we refuse to start, so a
//! chaos run never goes ahead with half of its faults.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::{
    api::{populate::decode_list, toxics::decode_wrapper},
    engine::{Engine, ProxySpec},
};

/// Creates the file's proxies and toxics; returns how many proxies.
pub async fn apply(engine: &Engine, path: &Path) -> anyhow::Result<usize> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ctx = || format!("config {}", path.display());
    let list = decode_list(&raw)
        .map_err(|e| anyhow!(e.message))
        .with_context(ctx)?;
    let toxics: Vec<(String, Option<Value>)> = list
        .iter()
        .map(|f| (f.name.clone().unwrap_or_default(), f.toxics.clone()))
        .collect();
    let (done, error) = engine
        .populate(list.into_iter().map(ProxySpec::from).collect())
        .await;
    if let Some(e) = error {
        return Err(anyhow!(e.message)).with_context(ctx);
    }
    for (proxy, list) in toxics {
        let Some(list) = list else { continue };
        let Value::Array(items) = list else {
            bail!("{}: proxy {proxy}: toxics must be an array", ctx());
        };
        for (i, item) in items.iter().enumerate() {
            let at = || format!("{}: proxy {proxy}, toxic {}", ctx(), i + 1);
            let obj = item
                .as_object()
                .ok_or_else(|| anyhow!("a toxic must be an object"))
                .with_context(at)?;
            let spec = decode_wrapper(obj)
                .map_err(|e| anyhow!("bad request body: {e}"))
                .with_context(at)?;
            engine
                .add_toxic(&proxy, spec)
                .await
                .map_err(|e| anyhow!(e.message))
                .with_context(at)?;
        }
    }
    Ok(done.len())
}
