//! /proxies/{proxy}/toxics[/{toxic}]: the `ToxicWrapper` request body,
//! decoded in ToxiProxy's two passes (wrapper fields first, attributes once
//! the type is known), and the update body `{attributes, toxicity}`.

use axum::response::Response;
use serde_json::{Map, Value};

use super::{
    error::{WireError, json_response, no_content},
    json::{GoStruct, decode_first, key_matches, kind, top_object},
};
use crate::{
    ApiError,
    engine::{Engine, ToxicSpec},
    faults::Attributes,
    model::Toxic,
};

/// The wrapper fields of one toxic object (`attributes` kept raw until the
/// engine knows the type). `ttl_ms` is injector's extension.
pub fn decode_wrapper(obj: &Map<String, Value>) -> Result<ToxicSpec, String> {
    let mut s = GoStruct::new("ToxicWrapper");
    let mut spec = ToxicSpec::new("");
    for (k, v) in obj {
        if key_matches(k, "name") {
            s.string("name", v, &mut spec.name);
        } else if key_matches(k, "type") {
            s.string("type", v, &mut spec.kind);
        } else if key_matches(k, "stream") {
            s.string("stream", v, &mut spec.stream);
        } else if key_matches(k, "toxicity") {
            s.float32("toxicity", v, &mut spec.toxicity);
        } else if key_matches(k, "ttl_ms") {
            s.uint64("ttl_ms", v, &mut spec.ttl_ms);
        } else if key_matches(k, "attributes") {
            match v {
                Value::Null => {}
                Value::Object(m) => spec.attributes = Some(m.clone()),
                other => s.type_error(kind(other), "attributes", "toxics.NoopToxic"),
            }
        }
    }
    s.finish()?;
    Ok(spec)
}

pub(crate) fn decode_create(body: &[u8]) -> Result<ToxicSpec, ApiError> {
    let v = decode_first(body).map_err(ApiError::bad_body)?;
    match top_object(&v, "toxics.ToxicWrapper").map_err(ApiError::bad_body)? {
        None => Ok(ToxicSpec::new("")),
        Some(obj) => decode_wrapper(obj).map_err(ApiError::bad_body),
    }
}

/// Applies an update body to a copy of the toxic. Go decodes into a struct
/// `{Attributes interface{}; Toxicity float32}`, so errors name `.toxicity`
/// and `<Type>.attributes.<field>`; the first one in document order wins.
pub fn apply_update(
    body: &Result<Value, String>,
    current: &Toxic,
) -> Result<(Attributes, f32), ApiError> {
    let v = body.as_ref().map_err(ApiError::bad_body)?;
    let mut attributes = current.attributes.clone();
    let mut toxicity = current.toxicity;
    let Some(obj) = top_object(v, "struct { Attributes interface {} \"json:\\\"attributes\\\"\"; Toxicity float32 \"json:\\\"toxicity\\\"\" }")
        .map_err(ApiError::bad_body)?
    else {
        return Ok((attributes, toxicity));
    };
    let mut s = GoStruct::new("");
    for (k, v) in obj {
        if key_matches(k, "toxicity") {
            s.float32("toxicity", v, &mut toxicity);
        } else if key_matches(k, "attributes") {
            match v {
                Value::Null => {}
                Value::Object(m) => {
                    if let Err(e) = attributes.merge(m) {
                        s.error(e);
                    }
                }
                other => s.type_error(
                    kind(other),
                    "attributes",
                    &format!("toxics.{}", attributes.go_name()),
                ),
            }
        }
    }
    s.finish().map_err(ApiError::bad_body)?;
    Ok((attributes, toxicity))
}

fn toxic_array(toxics: &[Toxic]) -> Value {
    Value::Array(toxics.iter().map(Toxic::to_json).collect())
}

pub async fn index(engine: &Engine, proxy: &str) -> Result<Response, WireError> {
    Ok(json_response(
        200,
        &toxic_array(&engine.toxics(proxy).await?),
    ))
}

/// 200 (not 201), as ToxiProxy answers.
pub async fn create(engine: &Engine, proxy: &str, body: &[u8]) -> Result<Response, WireError> {
    // The proxy is looked up before the body is read.
    engine.toxics(proxy).await?;
    let spec = decode_create(body)?;
    let toxic = engine.add_toxic(proxy, spec).await?;
    Ok(json_response(200, &toxic.to_json()))
}

pub async fn show(engine: &Engine, proxy: &str, name: &str) -> Result<Response, WireError> {
    Ok(json_response(
        200,
        &engine.toxic(proxy, name).await?.to_json(),
    ))
}

/// Only attributes (merged field by field) and toxicity change; name, type
/// and stream in the body are ignored. A failed update changes nothing.
pub async fn update(
    engine: &Engine,
    proxy: &str,
    name: &str,
    body: &[u8],
) -> Result<Response, WireError> {
    let parsed = decode_first(body);
    let toxic = engine
        .update_toxic(proxy, name, |current| apply_update(&parsed, current))
        .await?;
    Ok(json_response(200, &toxic.to_json()))
}

pub async fn delete(engine: &Engine, proxy: &str, name: &str) -> Result<Response, WireError> {
    engine.remove_toxic(proxy, name).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stream;
    use serde_json::json;

    fn latency(latency: i64, jitter: i64) -> Toxic {
        let mut attributes = Attributes::new("latency").unwrap();
        attributes
            .merge(
                json!({"latency": latency, "jitter": jitter})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        Toxic {
            name: "l".into(),
            stream: Stream::Downstream,
            stream_raw: "downstream".into(),
            toxicity: 0.5,
            attributes,
            ttl_ms: None,
            expires_at: None,
        }
    }

    #[test]
    fn create_bodies_get_toxiproxys_defaults() {
        let spec = decode_create(br#"{"type":"latency"}"#).unwrap();
        assert_eq!(
            (spec.stream.as_str(), spec.toxicity, spec.name.as_str()),
            ("downstream", 1.0, "")
        );
        let spec =
            decode_create(br#"{"TYPE":"latency","Stream":"UpStream","toxicity":7,"ttl_ms":50}"#)
                .unwrap();
        assert_eq!(
            (spec.stream.as_str(), spec.toxicity, spec.ttl_ms),
            ("UpStream", 7.0, Some(50))
        );
        let spec = decode_create(br#"{"stream":null,"toxicity":null}"#).unwrap();
        assert_eq!((spec.stream.as_str(), spec.toxicity), ("downstream", 1.0));
        assert_eq!(decode_create(br#"{"stream":""}"#).unwrap().stream, "");
    }

    #[test]
    fn create_errors_read_like_go() {
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"attributes":[1,2]}"#,
                "json: cannot unmarshal array into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic",
            ),
            (
                br#"{"toxicity":"x"}"#,
                "json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32",
            ),
            (
                br#"{"name":1,"type":2}"#,
                "json: cannot unmarshal number into Go struct field ToxicWrapper.name of type string",
            ),
            (
                b"[]",
                "json: cannot unmarshal array into Go value of type toxics.ToxicWrapper",
            ),
            (
                br#"{"ttl_ms":-1}"#,
                "json: cannot unmarshal number -1 into Go struct field ToxicWrapper.ttl_ms of type uint64",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode_create(body).unwrap_err().message,
                format!("bad request body: {want}")
            );
        }
    }

    #[test]
    fn updates_merge_and_fail_whole() {
        let cur = latency(100, 10);
        let (a, t) = apply_update(
            &decode_first(br#"{"attributes":{"jitter":9},"name":"x"}"#),
            &cur,
        )
        .unwrap();
        assert_eq!(a.to_json(), json!({"latency": 100, "jitter": 9}));
        assert_eq!(t, 0.5);
        let (_, t) = apply_update(&decode_first(b"{\"toxicity\":0.25}"), &cur).unwrap();
        assert_eq!(t, 0.25);
        let e = apply_update(
            &decode_first(br#"{"attributes":{"jitter":9,"latency":"bad"}}"#),
            &cur,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "bad request body: json: cannot unmarshal string into Go struct field LatencyToxic.attributes.latency of type int64"
        );
        let e = apply_update(&decode_first(br#"{"attributes":[1]}"#), &cur).unwrap_err();
        assert_eq!(
            e.message,
            "bad request body: json: cannot unmarshal array into Go struct field .attributes of type toxics.LatencyToxic"
        );
        let e = apply_update(
            &decode_first(br#"{"toxicity":"x","attributes":{"latency":"y"}}"#),
            &cur,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("Go struct field .toxicity of type float32"),
            "{}",
            e.message
        );
        assert_eq!(
            apply_update(&decode_first(b""), &cur).unwrap_err().message,
            "bad request body: EOF"
        );
    }
}
