//! GET /version: ToxiProxy builds the body with `fmt.Sprintf`, hence the
//! space after the colon, the newline and the odd Content-Type. We claim
//! ToxiProxy 2.12.0 compatibility; our own version is in a header.

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

/// The ToxiProxy release whose API we keep.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

pub fn version() -> Response {
    let mut r = Response::new(Body::from(format!(
        "{{\"version\": \"{TOXIPROXY_VERSION}\"}}\n"
    )));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    h.insert(
        "x-injector-version",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    r
}
