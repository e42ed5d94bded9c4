//! How every answer leaves the daemon, in ToxiProxy's wire form: errors as
//! Go's `http.Error` writes them (text/plain, nosniff, the JSON object and a
//! newline), success bodies as compact JSON the way Go's encoder prints it.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};

use crate::ApiError;

pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
pub const APPLICATION_JSON: &str = "application/json";

/// Go's `json.Marshal` output: compact, with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (those characters can only occur inside strings).
pub fn go_json(v: &Value) -> String {
    let text = v.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `{"error":"...","status":N}` (the body of every API error).
pub fn error_object(e: &ApiError) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("error".into(), Value::String(e.message.clone()));
    m.insert("status".into(), Value::from(e.status));
    m
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Go's `http.Error(w, text, code)`.
pub fn plain_error(code: u16, text: &str) -> Response {
    let mut r = Response::new(Body::from(format!("{text}\n")));
    *r.status_mut() = status(code);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A success (or populate) body: compact JSON, no trailing newline.
pub fn json_response(code: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(go_json(v)));
    *r.status_mut() = status(code);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(APPLICATION_JSON),
    );
    r
}

/// 204 with nothing at all.
pub fn no_content() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// ApiError -> the wire, as ToxiProxy's `apiError` writes it.
pub struct WireError(pub ApiError);

impl From<ApiError> for WireError {
    fn from(e: ApiError) -> Self {
        WireError(e)
    }
}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        plain_error(
            self.0.status,
            &go_json(&Value::Object(error_object(&self.0))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_characters_are_escaped_as_go_does() {
        assert_eq!(
            go_json(&json!({"name": "a<b>&c\u{2028}"})),
            r#"{"name":"a\u003cb\u003e\u0026c\u2028"}"#
        );
        assert_eq!(go_json(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#);
    }

    #[tokio::test]
    async fn errors_are_text_plain_json_with_a_newline() {
        let r = WireError(ApiError::proxy_not_found()).into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT_PLAIN);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(
            &body[..],
            b"{\"error\":\"proxy not found\",\"status\":404}\n"
        );
    }
}
