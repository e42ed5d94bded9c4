//! The ToxiProxy-compatible HTTP API (../shared/toxiproxy-api.md), on axum.
//!
//! Routing is done here by hand rather than by axum's router, because the
//! quirks clients can see are gorilla/mux's: the path is matched after
//! percent-decoding (so `%2F` in a name never matches), unclean paths are
//! redirected, a wrong method is a bare 405 (HEAD included), an unknown
//! path is Go's text 404, and only matched routes get the request id and
//! the browser block. Handlers run in their own task: a client that hangs
//! up or times out never cancels a change half way.

pub mod error;
pub mod events;
pub mod experiments;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod partitions;
pub mod populate;
pub mod proxies;
pub mod reset;
pub mod tls;
pub mod toxics;
pub mod version;
mod xid;
pub mod zones;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{ApiError, engine::Engine};
use error::{WireError, plain_error};

/// Request bodies above this get a 413 (ToxiProxy has no limit).
pub const BODY_LIMIT: usize = 1 << 20;
/// ToxiProxy's `http.TimeoutHandler`.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(25);

/// What every handler shares.
pub struct Api {
    pub engine: Arc<Engine>,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub experiments: experiments::Experiments,
}

/// The whole API as an axum router, open to any local client.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with_token(engine, None)
}

/// The API behind a bearer token (issue 7: required off loopback).
pub fn router_with_token(engine: Arc<Engine>, token: Option<String>) -> Router {
    Router::new().fallback(dispatch).with_state(Arc::new(Api {
        engine,
        token,
        experiments: Default::default(),
    }))
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(api: &Api, req: &Request) -> bool {
    let Some(token) = &api.token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|got| same_secret(got, token.as_bytes()))
}

/// A matched route with its path variables (percent-decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Reset,
    Proxies,
    Populate,
    Proxy(String),
    Toxics(String),
    Toxic(String, String),
    Version,
    Metrics,
    Events,
    OpenApi,
    Experiments,
    Experiment(String),
    /// `log.md`, `log.json` or `chart.svg` of one experiment.
    ExperimentFile(String, String),
    Zones,
    Zone(String),
    Partitions,
    Partition(String),
}

impl Route {
    /// gorilla/mux matching: exact segments, `{var}` = one non-empty segment.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let var = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Some(match parts.as_slice() {
            ["reset"] => Route::Reset,
            ["proxies"] => Route::Proxies,
            ["populate"] => Route::Populate,
            ["version"] => Route::Version,
            ["metrics"] => Route::Metrics,
            ["events"] => Route::Events,
            ["openapi.json"] => Route::OpenApi,
            ["proxies", p] => Route::Proxy(var(p)?),
            ["proxies", p, "toxics"] => Route::Toxics(var(p)?),
            ["proxies", p, "toxics", t] => Route::Toxic(var(p)?, var(t)?),
            ["zones"] => Route::Zones,
            ["zones", z] => Route::Zone(var(z)?),
            ["partitions"] => Route::Partitions,
            ["partitions", n] => Route::Partition(var(n)?),
            ["experiments"] => Route::Experiments,
            ["experiments", id] => Route::Experiment(var(id)?),
            ["experiments", id, f @ ("log.md" | "log.json" | "chart.svg")] => {
                Route::ExperimentFile(var(id)?, f.to_string())
            }
            _ => return None,
        })
    }

    pub fn allows(&self, m: &Method) -> bool {
        match self {
            Route::Reset | Route::Populate => m == Method::POST,
            Route::Proxies | Route::Toxics(_) => m == Method::GET || m == Method::POST,
            Route::Proxy(_) | Route::Toxic(..) => {
                m == Method::GET || m == Method::POST || m == Method::PATCH || m == Method::DELETE
            }
            Route::Version | Route::Events | Route::OpenApi | Route::ExperimentFile(..) => {
                m == Method::GET
            }
            Route::Experiments => m == Method::GET || m == Method::POST,
            Route::Experiment(_) => m == Method::GET || m == Method::DELETE,
            Route::Zones => m == Method::GET,
            Route::Zone(_) => {
                m == Method::GET || m == Method::PUT || m == Method::POST || m == Method::DELETE
            }
            Route::Partitions => m == Method::GET || m == Method::POST,
            Route::Partition(_) => m == Method::GET || m == Method::DELETE,
            // ToxiProxy registers /metrics without a method restriction.
            Route::Metrics => true,
        }
    }

    fn has_body(&self, m: &Method) -> bool {
        (m == Method::POST || m == Method::PATCH || m == Method::PUT)
            && !matches!(self, Route::Reset | Route::Metrics)
    }
}

/// Go's url path unescaping: `%XX` must be two hex digits.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// gorilla/mux's cleanPath: Go's `path.Clean`, keeping a trailing slash.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// Escapes a path for a Location header.
fn escape_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bare(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

async fn dispatch(State(api): State<Arc<Api>>, req: Request) -> Response {
    if !authorized(&api, &req) {
        let mut r = WireError(ApiError::new(401, "missing or wrong bearer token")).into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let Some(path) = percent_decode(req.uri().path()) else {
        let mut r = plain_error(400, "400 Bad Request");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let clean = clean_path(&path);
    if clean != path {
        let mut location = escape_path(&clean);
        if let Some(q) = req.uri().query() {
            location = format!("{location}?{q}");
        }
        let mut r = bare(StatusCode::MOVED_PERMANENTLY);
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let Some(route) = Route::parse(&path) else {
        return plain_error(404, "404 page not found");
    };
    let method = req.method().clone();
    if !route.allows(&method) {
        return bare(StatusCode::METHOD_NOT_ALLOWED);
    }
    let request_id = xid::next();
    let browser = req
        .headers()
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"));
    let mut response = if browser {
        plain_error(403, "User agent not allowed")
    } else {
        run(api, route, method, req.into_body()).await
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-toxiproxy-request-id", v);
    }
    response
}

/// Runs a handler in its own task, under ToxiProxy's 25 s timeout.
async fn run(api: Arc<Api>, route: Route, method: Method, body: Body) -> Response {
    let task = tokio::spawn(async move {
        let bytes = if route.has_body(&method) {
            match read_body(body).await {
                Ok(b) => b,
                Err(e) => return e.into_response(),
            }
        } else {
            Bytes::new()
        };
        handle(&api, route, &method, &bytes)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    });
    match tokio::time::timeout(HANDLER_TIMEOUT, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => {
            tracing::error!(error = %join, "API handler failed");
            WireError(ApiError::internal("internal error")).into_response()
        }
        Err(_) => {
            // Go's TimeoutHandler answer; the change itself runs to its end.
            let mut r = Response::new(Body::from(
                "<html><head><title>Timeout</title></head><body><h1>Timeout</h1></body></html>",
            ));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    }
}

async fn read_body(body: Body) -> Result<Bytes, WireError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            WireError(ApiError::new(
                413,
                format!("request body too large (limit {BODY_LIMIT} bytes)"),
            ))
        } else {
            WireError(ApiError::bad_body(e))
        }
    })
}

async fn handle(
    api: &Api,
    route: Route,
    method: &Method,
    body: &[u8],
) -> Result<Response, WireError> {
    let e = &api.engine;
    match route {
        Route::Version => Ok(version::version()),
        Route::Reset => reset::reset(e).await,
        Route::Populate => Ok(populate::populate(e, body).await),
        Route::Metrics => Ok(metrics::metrics(e).await),
        Route::Events => Ok(events::events(e)),
        Route::OpenApi => Ok(error::json_response(200, &openapi::document())),
        Route::Proxies if method == Method::GET => proxies::index(e).await,
        Route::Proxies => proxies::create(e, body).await,
        Route::Proxy(p) => match *method {
            Method::GET => proxies::show(e, &p).await,
            Method::DELETE => proxies::delete(e, &p).await,
            _ => proxies::update(e, &p, body).await,
        },
        Route::Toxics(p) if method == Method::GET => toxics::index(e, &p).await,
        Route::Toxics(p) => toxics::create(e, &p, body).await,
        Route::Experiments if method == Method::GET => Ok(experiments::index(&api.experiments)),
        Route::Experiments => experiments::create(e, &api.experiments, body).await,
        Route::Experiment(id) if method == Method::GET => experiments::show(&api.experiments, &id),
        Route::Experiment(id) => experiments::delete(&api.experiments, &id).await,
        Route::ExperimentFile(id, f) => experiments::file(&api.experiments, &id, &f),
        Route::Zones => zones::index(e).await,
        Route::Zone(z) => match *method {
            Method::GET => zones::show(e, &z).await,
            Method::DELETE => zones::delete(e, &z).await,
            _ => zones::put(e, &z, body).await,
        },
        Route::Partitions if method == Method::GET => partitions::index(e).await,
        Route::Partitions => partitions::create(e, body).await,
        Route::Partition(n) if method == Method::GET => partitions::show(e, &n).await,
        Route::Partition(n) => partitions::delete(e, &n).await,
        Route::Toxic(p, t) => match *method {
            Method::GET => toxics::show(e, &p, &t).await,
            Method::DELETE => toxics::delete(e, &p, &t).await,
            _ => toxics::update(e, &p, &t, body).await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_like_gorilla() {
        assert_eq!(Route::parse("/proxies"), Some(Route::Proxies));
        assert_eq!(Route::parse("/proxies/"), None);
        assert_eq!(
            Route::parse("/proxies/a b"),
            Some(Route::Proxy("a b".into()))
        );
        assert_eq!(Route::parse("/proxies/a/b"), None);
        assert_eq!(Route::parse("/proxies//toxics"), None);
        assert_eq!(
            Route::parse("/proxies/p/toxics/t"),
            Some(Route::Toxic("p".into(), "t".into()))
        );
        assert!(!Route::Version.allows(&Method::HEAD));
        assert!(Route::Metrics.allows(&Method::DELETE));
    }

    #[test]
    fn paths_are_decoded_and_cleaned_like_go() {
        assert_eq!(percent_decode("/proxies/a%2Fb").unwrap(), "/proxies/a/b");
        assert_eq!(percent_decode("/proxies/a%20b").unwrap(), "/proxies/a b");
        assert!(percent_decode("/proxies/%zz").is_none());
        assert!(percent_decode("/proxies/%2").is_none());
        assert_eq!(clean_path("/proxies/"), "/proxies/");
        assert_eq!(clean_path("//proxies"), "/proxies");
        assert_eq!(clean_path("/a/../version"), "/version");
        assert_eq!(clean_path("/./proxies/x/"), "/proxies/x/");
        assert_eq!(clean_path("/.."), "/");
    }
}
