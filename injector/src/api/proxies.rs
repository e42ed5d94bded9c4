//! /proxies and /proxies/{proxy}: the proxy object on the wire and the
//! `Proxy` request body, decoded as ToxiProxy's Go struct is.

use axum::response::Response;
use serde_json::{Map, Value};

use super::{
    error::{WireError, json_response, no_content},
    json::{GoStruct, decode_first, key_matches, kind, top_object},
};
use crate::{
    ApiError,
    engine::{Engine, ProxyPatch, ProxySpec, ProxyView},
    model::Target,
};

/// `{"name","listen","upstream","enabled","Logger":{},"toxics":[..]}`, plus
/// `"target"` after the toxics for kernel-native proxies. ToxiProxy prints
/// the empty `Logger` by accident; clients see it, so we keep it.
pub fn proxy_json(p: &ProxyView) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(p.name.clone()));
    m.insert("listen".into(), Value::String(p.listen.clone()));
    m.insert("upstream".into(), Value::String(p.upstream.clone()));
    m.insert("enabled".into(), Value::Bool(p.enabled));
    m.insert("Logger".into(), Value::Object(Map::new()));
    m.insert(
        "toxics".into(),
        Value::Array(p.toxics.iter().map(|t| t.to_json()).collect()),
    );
    if let Some(t) = &p.target {
        m.insert("target".into(), t.to_json());
    }
    Value::Object(m)
}

/// The fields of ToxiProxy's `Proxy` struct, plus our `target` and (for
/// config files) `toxics`; `None` = absent or null.
#[derive(Clone, Debug, Default)]
pub struct ProxyFields {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
    pub target: Option<Target>,
    pub toxics: Option<Value>,
}

impl ProxyFields {
    /// Decodes one object's fields; `go_struct` names the struct in type
    /// errors (`Proxy`, or "" inside /populate's anonymous struct).
    pub fn decode(obj: &Map<String, Value>, go_struct: &str) -> Result<ProxyFields, String> {
        let mut s = GoStruct::new(go_struct);
        let mut f = ProxyFields::default();
        for (k, v) in obj {
            let mut text = String::new();
            if key_matches(k, "name") {
                s.string("name", v, &mut text);
                set(&mut f.name, v, text);
            } else if key_matches(k, "listen") {
                s.string("listen", v, &mut text);
                set(&mut f.listen, v, text);
            } else if key_matches(k, "upstream") {
                s.string("upstream", v, &mut text);
                set(&mut f.upstream, v, text);
            } else if key_matches(k, "enabled") {
                s.opt_bool("enabled", v, &mut f.enabled);
            } else if key_matches(k, "Logger") {
                // *zerolog.Logger has no exported fields: any object fits.
                if !matches!(v, Value::Null | Value::Object(_)) {
                    s.type_error(kind(v), "Logger", "zerolog.Logger");
                }
            } else if key_matches(k, "target") {
                if !v.is_null() {
                    match Target::from_json(v) {
                        Ok(t) => f.target = Some(t),
                        Err(e) => s.error(e),
                    }
                }
            } else if key_matches(k, "toxics") && !v.is_null() {
                f.toxics = Some(v.clone());
            }
        }
        s.finish()?;
        Ok(f)
    }
}

fn set(slot: &mut Option<String>, v: &Value, text: String) {
    if v.is_string() {
        *slot = Some(text);
    }
}

pub(crate) fn decode_body(body: &[u8]) -> Result<ProxyFields, ApiError> {
    let v = decode_first(body).map_err(ApiError::bad_body)?;
    match top_object(&v, "toxiproxy.Proxy").map_err(ApiError::bad_body)? {
        None => Ok(ProxyFields::default()),
        Some(obj) => ProxyFields::decode(obj, "Proxy").map_err(ApiError::bad_body),
    }
}

impl From<ProxyFields> for ProxySpec {
    fn from(f: ProxyFields) -> ProxySpec {
        ProxySpec {
            name: f.name.unwrap_or_default(),
            listen: f.listen.unwrap_or_default(),
            upstream: f.upstream.unwrap_or_default(),
            enabled: f.enabled.unwrap_or(true),
            target: f.target,
        }
    }
}

pub async fn index(engine: &Engine) -> Result<Response, WireError> {
    let all: Map<String, Value> = engine
        .list()
        .await
        .iter()
        .map(|p| (p.name.clone(), proxy_json(p)))
        .collect();
    Ok(json_response(200, &Value::Object(all)))
}

pub async fn create(engine: &Engine, body: &[u8]) -> Result<Response, WireError> {
    let spec = ProxySpec::from(decode_body(body)?);
    let view = engine.create(spec).await?;
    Ok(json_response(201, &proxy_json(&view)))
}

pub async fn show(engine: &Engine, name: &str) -> Result<Response, WireError> {
    Ok(json_response(200, &proxy_json(&engine.get(name).await?)))
}

/// `name` in the body is ignored: a proxy cannot be renamed.
pub async fn update(engine: &Engine, name: &str, body: &[u8]) -> Result<Response, WireError> {
    // ToxiProxy looks the proxy up before it reads the body.
    engine.get(name).await?;
    let f = decode_body(body)?;
    let patch = ProxyPatch {
        listen: f.listen,
        upstream: f.upstream,
        enabled: f.enabled,
        target: f.target,
    };
    Ok(json_response(
        200,
        &proxy_json(&engine.update(name, patch).await?),
    ))
}

pub async fn delete(engine: &Engine, name: &str) -> Result<Response, WireError> {
    engine.delete(name).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxy_wire_form_is_toxiproxys() {
        let p = ProxyView {
            name: "p1".into(),
            listen: "127.0.0.1:33911".into(),
            upstream: "127.0.0.1:9".into(),
            enabled: true,
            target: None,
            toxics: vec![],
        };
        assert_eq!(
            proxy_json(&p).to_string(),
            r#"{"name":"p1","listen":"127.0.0.1:33911","upstream":"127.0.0.1:9","enabled":true,"Logger":{},"toxics":[]}"#
        );
        let k = ProxyView {
            target: Some(Target::Container("web".into())),
            listen: String::new(),
            ..p
        };
        assert!(
            proxy_json(&k)
                .to_string()
                .ends_with(r#""toxics":[],"target":{"container":"web"}}"#)
        );
    }

    #[test]
    fn bodies_decode_like_go() {
        let f = decode_body(br#"{"NAME":"a","Upstream":"b","enabled":null,"toxics":null} junk"#)
            .unwrap();
        assert_eq!(
            (f.name.as_deref(), f.upstream.as_deref(), f.enabled),
            (Some("a"), Some("b"), None)
        );
        assert_eq!(
            decode_body(br#"{"enabled":"yes"}"#).unwrap_err().message,
            "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool"
        );
        assert_eq!(
            decode_body(br#"{"Logger":5}"#).unwrap_err().message,
            "bad request body: json: cannot unmarshal number into Go struct field Proxy.Logger of type zerolog.Logger"
        );
        assert_eq!(
            decode_body(b"[]").unwrap_err().message,
            "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy"
        );
        assert_eq!(
            decode_body(b"").unwrap_err().message,
            "bad request body: EOF"
        );
        let f = decode_body(&serde_json::to_vec(&json!({"target": {"pid": 7}})).unwrap()).unwrap();
        assert_eq!(f.target, Some(Target::Pid(7)));
        assert!(
            decode_body(br#"{"target":{"vm":1}}"#)
                .unwrap_err()
                .message
                .starts_with("bad request body: ")
        );
    }
}
