//! POST /populate: an array of proxies, added, kept or replaced in order.
//! Unlike every other route its errors are JSON (`application/json`, no
//! newline) and carry the proxies done so far: `{"error","status","proxies"}`.

use axum::response::Response;
use serde_json::Value;

use super::{
    error::{error_object, json_response},
    json::{GoStruct, decode_first, kind},
    proxies::{ProxyFields, proxy_json},
};
use crate::{
    ApiError,
    engine::{Engine, ProxySpec, ProxyView},
};

/// How Go names the element type of ToxiProxy's populate input.
const ELEMENT_TYPE: &str = "struct { toxiproxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }";

/// The array body of /populate (and of a --config file): each element's
/// fields, Go's first type error in document order otherwise.
pub fn decode_list(body: &[u8]) -> Result<Vec<ProxyFields>, ApiError> {
    let v = decode_first(body).map_err(ApiError::bad_body)?;
    let items = match &v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(ApiError::bad_body(format!(
                "json: cannot unmarshal {} into Go value of type []{ELEMENT_TYPE}",
                kind(other)
            )));
        }
    };
    let mut s = GoStruct::new("");
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Null => out.push(ProxyFields::default()),
            Value::Object(obj) => match ProxyFields::decode(obj, "") {
                Ok(f) => out.push(f),
                Err(e) => {
                    s.error(e);
                    out.push(ProxyFields::default());
                }
            },
            other => {
                s.error(format!(
                    "json: cannot unmarshal {} into Go value of type {ELEMENT_TYPE}",
                    kind(other)
                ));
                out.push(ProxyFields::default());
            }
        }
    }
    s.finish().map_err(ApiError::bad_body)?;
    Ok(out)
}

fn body(proxies: &[ProxyView], error: Option<&ApiError>) -> Value {
    let mut m = error.map(error_object).unwrap_or_default();
    // Go marshals an empty result slice as null.
    let list = if proxies.is_empty() {
        Value::Null
    } else {
        Value::Array(proxies.iter().map(proxy_json).collect())
    };
    m.insert("proxies".into(), list);
    Value::Object(m)
}

/// `toxics` in the elements are ignored here, as ToxiProxy ignores them
/// (only a --config file applies them).
pub async fn populate(engine: &Engine, raw: &[u8]) -> Response {
    let specs = match decode_list(raw) {
        Ok(list) => list.into_iter().map(ProxySpec::from).collect(),
        Err(e) => return json_response(e.status, &body(&[], Some(&e))),
    };
    let (done, error) = engine.populate(specs).await;
    match error {
        None => json_response(201, &body(&done, None)),
        Some(e) => json_response(e.status, &body(&done, Some(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_errors_name_gos_types() {
        assert_eq!(
            decode_list(b"{}").unwrap_err().message,
            "bad request body: json: cannot unmarshal object into Go value of type []struct { toxiproxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }"
        );
        assert_eq!(
            decode_list(br#"[{"name":"a"},{"enabled":"x"},{"name":1}]"#)
                .unwrap_err()
                .message,
            "bad request body: json: cannot unmarshal string into Go struct field .enabled of type bool"
        );
        assert_eq!(
            decode_list(b"[1]").unwrap_err().message,
            "bad request body: json: cannot unmarshal number into Go value of type struct { toxiproxy.Proxy; Enabled *bool \"json:\\\"enabled\\\"\" }"
        );
        assert!(decode_list(b"null").unwrap().is_empty());
        let l = decode_list(br#"[null,{"name":"a","enabled":null}]"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(ProxySpec::from(l[1].clone()).enabled);
    }

    #[test]
    fn bodies_put_the_error_first_and_null_for_nothing() {
        let e = ApiError::missing_field("name at proxy 2");
        assert_eq!(
            body(&[], Some(&e)).to_string(),
            r#"{"error":"missing required field: name at proxy 2","status":400,"proxies":null}"#
        );
        assert_eq!(body(&[], None).to_string(), r#"{"proxies":null}"#);
    }
}
