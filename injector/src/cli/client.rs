//! A small HTTP/1 client for the daemon's API (what toxiproxy-cli's Go
//! client does): one connection per request, JSON in and out, API errors
//! turned into their message.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

pub struct Client {
    host: String,
    port: u16,
    token: Option<String>,
    /// Set for `https://` URLs.
    tls: Option<TlsConnector>,
}

/// A non-2xx answer: the API's `error` text when it sent one.
#[derive(Debug)]
pub struct ApiFailure {
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    /// `url` as toxiproxy-cli takes it: `http://host:port`, or `host:port`;
    /// `https://host:port` for a daemon serving TLS (`INJECTOR_CA_CERT`
    /// names the PEM file of its CA or self-signed certificate).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Client> {
        let (rest, https) = match url.split_once("://") {
            Some(("http", rest)) => (rest, false),
            Some(("https", rest)) => (rest, true),
            Some((scheme, _)) => {
                bail!("{scheme}:// is not supported; use http://host:port or https://host:port")
            }
            None => (url, false),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {url:?}"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("no host in {url:?}");
        }
        Ok(Client {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            token,
            tls: if https {
                Some(super::tls::connector()?)
            } else {
                None
            },
        })
    }

    /// Sends one request; returns the decoded JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(anyhow!(ApiFailure { message }));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the daemon's answer is not JSON")
    }

    /// Sends one request and returns the response as it starts: its body
    /// can be read as it arrives (GET /events).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot reach the daemon at {}:{}", self.host, self.port))?;
        match &self.tls {
            Some(tls) => {
                let name = super::tls::server_name(&self.host)?;
                let stream = tls.connect(name, stream).await.with_context(|| {
                    format!("TLS handshake with {}:{} failed", self.host, self.port)
                })?;
                self.exchange(stream, method, path, body).await
            }
            None => self.exchange(stream, method, path, body).await,
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(
                header::USER_AGENT,
                format!(
                    "injector-cli/{} ({}/{})",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ),
            );
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        Ok(sender
            .send_request(req.body(Full::new(Bytes::from(payload)))?)
            .await?)
    }
}

/// Path segment escaping for proxy and toxic names.
pub fn seg(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_toxiproxy_cli_takes_them() {
        let c = Client::new("http://localhost:8474", None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("localhost", 8474));
        let c = Client::new("127.0.0.1:9", None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 9));
        let c = Client::new("http://[::1]:5/", None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 5));
        assert!(Client::new("ftp://x:1", None).is_err());
        let c = Client::new("https://localhost", None).unwrap();
        assert_eq!((c.port, c.tls.is_some()), (443, true));
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
