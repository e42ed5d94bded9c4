//! Attribute decoding with Go's `encoding/json` rules, because ToxiProxy's
//! clients rely on them: keys match case-insensitively, `null` keeps the
//! current value, a wrong type is reported as Go reports it and does not
//! stop the other fields from being set (ToxiProxy's partial updates).

use serde_json::{Map, Number, Value};

/// A Rust type that can stand for a Go struct field type.
pub trait GoValue: Sized {
    const GO_TYPE: &'static str;
    /// `Ok(None)` for JSON null; `Err(kind)` names what the JSON value was.
    fn decode(v: &Value) -> Result<Option<Self>, String>;
    fn encode(&self) -> Value;
}

/// How Go names a JSON value in "cannot unmarshal X into ...".
pub fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

impl GoValue for i64 {
    const GO_TYPE: &'static str = "int64";
    fn decode(v: &Value) -> Result<Option<Self>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| json_kind(v)),
            _ => Err(json_kind(v)),
        }
    }
    fn encode(&self) -> Value {
        Value::from(*self)
    }
}

impl GoValue for f64 {
    const GO_TYPE: &'static str = "float64";
    fn decode(v: &Value) -> Result<Option<Self>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| json_kind(v)),
            _ => Err(json_kind(v)),
        }
    }
    fn encode(&self) -> Value {
        go_float(*self)
    }
}

impl GoValue for String {
    const GO_TYPE: &'static str = "string";
    fn decode(v: &Value) -> Result<Option<Self>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(json_kind(v)),
        }
    }
    fn encode(&self) -> Value {
        Value::String(self.clone())
    }
}

impl GoValue for Vec<String> {
    const GO_TYPE: &'static str = "[]string";
    fn decode(v: &Value) -> Result<Option<Self>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(json_kind(other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(json_kind(v)),
        }
    }
    fn encode(&self) -> Value {
        Value::Array(self.iter().cloned().map(Value::String).collect())
    }
}

/// Go prints floats without a fractional part as integers (`1`, not `1.0`).
pub fn go_float(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// The same for Go's float32 (ToxiProxy's `toxicity`): shortest float32
/// digits, integers without a point.
pub fn go_float32(f: f32) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e7 {
        Value::from(f as i64)
    } else {
        // Shortest float32 digits, then parsed back as a JSON number.
        let text = format!("{f}");
        serde_json::from_str::<Number>(&text)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Applies every key of `obj` that names a field; returns the first type
/// error in document order, as Go does, after setting the valid fields.
pub fn merge_fields(
    obj: &Map<String, Value>,
    go_struct: &str,
    mut set: impl FnMut(&str, &Value) -> Option<Result<(), (String, &'static str, &'static str)>>,
) -> Result<(), String> {
    let mut first = None;
    for (k, v) in obj {
        if let Some(Err((kind, field, go_type))) = set(k, v)
            && first.is_none()
        {
            first = Some(format!(
                "json: cannot unmarshal {kind} into Go struct field {go_struct}.attributes.{field} of type {go_type}"
            ));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Declares one toxic's attribute struct: fields in wire order, Go types,
/// Go-compatible merge and encode.
#[macro_export]
macro_rules! attributes {
    ($(#[$m:meta])* $name:ident = $go:literal { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl $name {
            /// The Go struct name ToxiProxy uses in decode errors.
            pub const GO_NAME: &'static str = $go;

            pub fn merge(&mut self, obj: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
                $crate::faults::attrs::merge_fields(obj, $go, |_k, _v| {
                    $(
                        if _k.eq_ignore_ascii_case(stringify!($field)) {
                            return Some(match <$ty as $crate::faults::attrs::GoValue>::decode(_v) {
                                Ok(Some(x)) => { self.$field = x; Ok(()) }
                                Ok(None) => Ok(()),
                                Err(kind) => Err((kind, stringify!($field), <$ty as $crate::faults::attrs::GoValue>::GO_TYPE)),
                            });
                        }
                    )*
                    None
                })
            }

            pub fn to_json(&self) -> serde_json::Value {
                #[allow(unused_mut)]
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($field).to_string(), $crate::faults::attrs::GoValue::encode(&self.$field));)*
                serde_json::Value::Object(m)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    crate::attributes!(Demo = "DemoToxic" { latency: i64, jitter: i64, rate: f64, names: Vec<String> });

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_match_case_insensitively_and_null_keeps() {
        let mut d = Demo {
            jitter: 5,
            ..Demo::default()
        };
        d.merge(&obj(json!({"LATENCY": 7, "Jitter": null, "unknown": 1})))
            .unwrap();
        assert_eq!((d.latency, d.jitter), (7, 5));
    }

    #[test]
    fn a_bad_field_is_reported_like_go_and_the_others_still_apply() {
        let mut d = Demo::default();
        let err = d
            .merge(&obj(json!({"jitter": 9, "latency": "bad"})))
            .unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal string into Go struct field DemoToxic.attributes.latency of type int64"
        );
        assert_eq!(d.jitter, 9);
        assert_eq!(Demo::GO_NAME, "DemoToxic");
        let err = d.merge(&obj(json!({"latency": 1.5}))).unwrap_err();
        assert!(err.contains("cannot unmarshal number 1.5 into"), "{err}");
    }

    #[test]
    fn encoding_keeps_field_order_and_go_number_forms() {
        let d = Demo {
            latency: 1,
            jitter: 2,
            rate: 3.0,
            names: vec!["a".into()],
        };
        assert_eq!(
            serde_json::to_string(&d.to_json()).unwrap(),
            r#"{"latency":1,"jitter":2,"rate":3,"names":["a"]}"#
        );
        assert_eq!(go_float(0.25).to_string(), "0.25");
        assert_eq!(go_float32(0.3).to_string(), "0.3");
        assert_eq!(go_float32(1.0).to_string(), "1");
        assert_eq!(go_float32(7.0).to_string(), "7");
    }
}
