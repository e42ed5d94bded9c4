//! Where an experiment's faults go: the engine itself (an experiment the
//! daemon runs for `POST /experiments`) or a daemon's HTTP API (what
//! `injector run` does). Both speak the same ToxiProxy semantics, so one
//! runner drives either.

use std::{sync::Arc, time::Duration};

use hyper::Method;
use serde_json::{Map, Value, json};

use super::policy::NewProxy;
use crate::{
    api::toxics::apply_update,
    cli::{Client, seg},
    engine::{Engine, ProxySpec, ToxicSpec},
};

#[derive(Clone)]
pub enum Backend {
    Engine(Arc<Engine>),
    Http(Arc<Client>),
}

/// A toxic the runner adds.
pub struct NewToxic<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub stream: &'a str,
    pub toxicity: f32,
    pub attributes: &'a Map<String, Value>,
    pub ttl_ms: u64,
}

/// What removing something found.
#[derive(Debug, PartialEq, Eq)]
pub enum Gone {
    Removed,
    /// It was not there any more (expired, or removed by someone else).
    Absent,
}

/// Longer than the daemon's own 25 s handler limit: a daemon that does not
/// answer by then is not going to.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn call(c: &Client, method: Method, path: &str, body: Option<&Value>) -> Result<(), String> {
    match tokio::time::timeout(CALL_TIMEOUT, c.call(method, path, body)).await {
        Ok(r) => r.map(drop).map_err(|e| format!("{e:#}")),
        Err(_) => Err(format!(
            "the daemon did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

fn absent(message: &str) -> bool {
    message.contains("not found")
}

impl Backend {
    pub fn describe(&self) -> &'static str {
        match self {
            Backend::Engine(_) => "this daemon",
            Backend::Http(_) => "the daemon's API",
        }
    }

    pub async fn proxy_exists(&self, name: &str) -> Result<bool, String> {
        let r = match self {
            Backend::Engine(e) => e.get(name).await.map(drop).map_err(|e| e.message),
            Backend::Http(c) => {
                call(c, Method::GET, &format!("/proxies/{}", seg(name)), None).await
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(m) if absent(&m) => Ok(false),
            Err(m) => Err(m),
        }
    }

    pub async fn create_proxy(&self, name: &str, p: &NewProxy) -> Result<(), String> {
        match self {
            Backend::Engine(e) => e
                .create(ProxySpec {
                    name: name.to_string(),
                    listen: p.listen.clone(),
                    upstream: p.upstream.clone(),
                    enabled: true,
                    target: p.target.clone(),
                })
                .await
                .map(drop)
                .map_err(|e| e.message),
            Backend::Http(c) => {
                let mut body = json!({"name": name, "upstream": p.upstream, "enabled": true});
                if !p.listen.is_empty() {
                    body["listen"] = Value::String(p.listen.clone());
                }
                if let Some(t) = &p.target {
                    body["target"] = t.to_json();
                }
                call(c, Method::POST, "/proxies", Some(&body)).await
            }
        }
    }

    pub async fn delete_proxy(&self, name: &str) -> Result<Gone, String> {
        let r = match self {
            Backend::Engine(e) => e.delete(name).await.map_err(|e| e.message),
            Backend::Http(c) => {
                call(c, Method::DELETE, &format!("/proxies/{}", seg(name)), None).await
            }
        };
        gone(r)
    }

    pub async fn add_toxic(&self, proxy: &str, t: &NewToxic<'_>) -> Result<(), String> {
        match self {
            Backend::Engine(e) => e
                .add_toxic(
                    proxy,
                    ToxicSpec {
                        name: t.name.to_string(),
                        kind: t.kind.to_string(),
                        stream: t.stream.to_string(),
                        toxicity: t.toxicity,
                        attributes: Some(t.attributes.clone()),
                        ttl_ms: Some(t.ttl_ms),
                    },
                )
                .await
                .map(drop)
                .map_err(|e| e.message),
            Backend::Http(c) => {
                let body = json!({
                    "name": t.name,
                    "type": t.kind,
                    "stream": t.stream,
                    "toxicity": t.toxicity,
                    "attributes": t.attributes,
                    "ttl_ms": t.ttl_ms,
                });
                call(
                    c,
                    Method::POST,
                    &format!("/proxies/{}/toxics", seg(proxy)),
                    Some(&body),
                )
                .await
            }
        }
    }

    /// Changes attributes in place; the toxic keeps its expiry.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        attributes: &Map<String, Value>,
    ) -> Result<(), String> {
        let body = json!({ "attributes": attributes });
        match self {
            Backend::Engine(e) => {
                let parsed = Ok(body);
                e.update_toxic(proxy, name, |current| apply_update(&parsed, current))
                    .await
                    .map(drop)
                    .map_err(|e| e.message)
            }
            Backend::Http(c) => {
                call(
                    c,
                    Method::POST,
                    &format!("/proxies/{}/toxics/{}", seg(proxy), seg(name)),
                    Some(&body),
                )
                .await
            }
        }
    }

    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<Gone, String> {
        let r = match self {
            Backend::Engine(e) => e.remove_toxic(proxy, name).await.map_err(|e| e.message),
            Backend::Http(c) => {
                call(
                    c,
                    Method::DELETE,
                    &format!("/proxies/{}/toxics/{}", seg(proxy), seg(name)),
                    None,
                )
                .await
            }
        };
        gone(r)
    }
}

fn gone(r: Result<(), String>) -> Result<Gone, String> {
    match r {
        Ok(()) => Ok(Gone::Removed),
        Err(m) if absent(&m) => Ok(Gone::Absent),
        Err(m) => Err(m),
    }
}
