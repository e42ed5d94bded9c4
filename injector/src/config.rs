//! `serve --config f.json`: ToxiProxy's -config format (the /populate
//! array), plus injector's `target` and per-proxy `toxics` arrays:
//!
//! ```json
//! [{"name": "db", "listen": "127.0.0.1:5433", "upstream": "127.0.0.1:5432",
//!   "toxics": [{"type": "latency", "attributes": {"latency": 100}}]},
//!  {"name": "web", "upstream": "*:80", "target": {"container": "web"}}]
//! ```
//!
//! An object instead of the array adds named zones (sets of CIDRs that
//! `blackhole` and `loss` toxics cut with `"zones": [...]`), defined before
//! any toxic refers to them:
//!
//! ```json
//! {"zones": {"az-a": ["10.0.1.0/24"], "az-b": ["10.0.2.0/24", "fd00:2::/64"]},
//!  "proxies": [{"name": "orders", "upstream": "*", "target": {"container": "orders"},
//!               "toxics": [{"type": "blackhole", "attributes": {"zones": ["az-b"]}}]}]}
//! ```
//!
//! ToxiProxy logs a bad config and serves anyway; we refuse to start, so a
//! chaos run never goes ahead with half of its faults.

use std::{collections::BTreeMap, path::Path};

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
    let raw = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(mut top)) => {
            if let Some(zones) = top.remove("zones") {
                let zones: BTreeMap<String, Vec<String>> = serde_json::from_value(zones)
                    .map_err(|e| anyhow!("zones must map names to lists of CIDRs: {e}"))
                    .with_context(ctx)?;
                engine
                    .kernel()
                    .and_then(|dp| dp.set_zones(&zones))
                    .map_err(|e| anyhow!("zones: {}", e.message))
                    .with_context(ctx)?;
            }
            let proxies = top.remove("proxies").unwrap_or(Value::Null);
            if let Some(key) = top.keys().next() {
                bail!("{}: unknown key {key:?} (expected zones, proxies)", ctx());
            }
            serde_json::to_vec(&proxies)?
        }
        _ => raw,
    };
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
