//! The part of the Docker Engine API the lab drives (over
//! /var/run/docker.sock, or the unix socket DOCKER_HOST names): networks,
//! containers, and images imported from a tar stream, all found again by
//! their labels.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use crate::kernel::docker::SOCKET;

/// Every object a lab creates carries this label, with the lab's name.
pub const LABEL: &str = "io.injector.lab";
/// Images carry this one; they are shared by all labs.
pub const IMAGE_LABEL: &str = "io.injector.lab.image";

pub struct Docker {
    socket: String,
}

/// DOCKER_HOST when it names a unix socket, as the docker CLI reads it.
fn socket_path() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| SOCKET.to_string())
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Docker's `{"message": ...}`, or the raw body.
    pub fn message(&self) -> String {
        match self.json().get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// `?filters=...`: a label filter, URL-encoded JSON.
fn filter_query(label: &str) -> String {
    url_encode(&json!({ "label": [label] }).to_string())
}

impl Docker {
    /// Succeeds when the engine answers /_ping.
    pub async fn connect() -> anyhow::Result<Docker> {
        let d = Docker {
            socket: socket_path(),
        };
        let r = d
            .call(Method::GET, "/_ping", None, Duration::from_secs(5))
            .await
            .with_context(|| format!("the Docker engine at {} does not answer", d.socket))?;
        if !r.status.is_success() {
            bail!("the Docker engine answered /_ping with {}", r.status);
        }
        Ok(d)
    }

    /// One request on a fresh connection; `body` is JSON unless it is a tar.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let work = async {
            let stream = UnixStream::connect(&self.socket).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(conn);
            let (bytes, kind) = body.unwrap_or((Bytes::new(), "application/json"));
            let req = Request::builder()
                .method(method)
                .uri(format!("http://docker/v1.41{path}"))
                .header("host", "docker")
                .header("content-type", kind)
                .body(Full::new(bytes))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            driver.abort();
            anyhow::Ok(Reply { status, body })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| anyhow!("Docker API {path}: no answer within {timeout:?}"))?
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Reply> {
        let body = body.map(|v| (Bytes::from(v.to_string()), "application/json"));
        self.call(method, path, body, Duration::from_secs(60)).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        self.json(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.json(Method::DELETE, path, None).await
    }

    /// Containers (running or not) carrying `label` (`key` or `key=value`).
    pub async fn containers(&self, label: &str) -> anyhow::Result<Vec<Value>> {
        let r = self
            .get(&format!(
                "/containers/json?all=true&filters={}",
                filter_query(label)
            ))
            .await?;
        list(r, "containers")
    }

    pub async fn networks(&self, label: &str) -> anyhow::Result<Vec<Value>> {
        let r = self
            .get(&format!("/networks?filters={}", filter_query(label)))
            .await?;
        list(r, "networks")
    }

    pub async fn images(&self, label: &str) -> anyhow::Result<Vec<Value>> {
        let r = self
            .get(&format!("/images/json?filters={}", filter_query(label)))
            .await?;
        list(r, "images")
    }

    /// Removes a container whatever its state; a missing one is fine.
    pub async fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        let r = self
            .delete(&format!("/containers/{id}?force=true&v=true"))
            .await?;
        match r.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => bail!("cannot remove container {id}: {}", r.message()),
        }
    }

    pub async fn remove_network(&self, id: &str) -> anyhow::Result<()> {
        let r = self.delete(&format!("/networks/{id}")).await?;
        match r.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => bail!("cannot remove network {id}: {}", r.message()),
        }
    }

    /// `docker import`: a root filesystem as a tar stream becomes an image.
    pub async fn import(
        &self,
        tar: Vec<u8>,
        repo: &str,
        tag: &str,
        labels: &str,
    ) -> anyhow::Result<()> {
        let changes = url_encode(&format!("LABEL {labels}"));
        let path = format!("/images/create?fromSrc=-&repo={repo}&tag={tag}&changes={changes}");
        let r = self
            .call(
                Method::POST,
                &path,
                Some((Bytes::from(tar), "application/x-tar")),
                Duration::from_secs(300),
            )
            .await?;
        // The engine streams progress; a failure is a JSON line with "error".
        let text = String::from_utf8_lossy(&r.body);
        if !r.status.is_success() || text.contains("\"error\"") {
            bail!("docker import of {repo}:{tag} failed: {}", text.trim());
        }
        Ok(())
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn list(r: Reply, what: &str) -> anyhow::Result<Vec<Value>> {
    if !r.status.is_success() {
        bail!("listing Docker {what}: {}", r.message());
    }
    match r.json() {
        Value::Array(v) => Ok(v),
        _ => bail!("listing Docker {what}: not a JSON array"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_url_encoded_json() {
        assert_eq!(
            filter_query("io.injector.lab=x"),
            "%7B%22label%22%3A%5B%22io.injector.lab%3Dx%22%5D%7D"
        );
    }
}
