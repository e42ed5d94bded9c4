//! /metrics in Prometheus text format. ToxiProxy serves it only with
//! `-proxy-metrics`/`-runtime-metrics`; we always do.

use std::fmt::Write;

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

use crate::engine::Engine;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub async fn metrics(engine: &Engine) -> Response {
    let (proxies, toxics) = engine.counts().await;
    let mut out = String::new();
    gauge(&mut out, "injector_proxies", "Proxies configured.", proxies);
    gauge(
        &mut out,
        "injector_toxics",
        "Toxics in force, over all proxies.",
        toxics,
    );
    let mut r = Response::new(Body::from(out));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}
