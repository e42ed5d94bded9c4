//! HTTP between the shop's services: one request per connection (so every
//! request meets the network as it is now), a connect timeout and an
//! overall timeout, and failures named the way a user reads them.

use std::{fmt, io, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::timeout};

#[derive(Debug)]
pub enum CallError {
    /// No connection: refused, unreachable, or no SYN-ACK in time.
    Connect(String),
    /// Connected, but no full answer in time.
    Timeout(Duration),
    /// Connected, then the connection broke (reset, closed early).
    Broken(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "cannot connect: {e}"),
            CallError::Timeout(d) => write!(f, "no answer within {}", human(*d)),
            CallError::Broken(e) => write!(f, "connection broken: {e}"),
        }
    }
}

pub fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// "connection refused" rather than "Connection refused (os error 111)".
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// A TCP connection to `addr` within `connect_timeout`, or the failure as
/// a shop service reports it (shared by HTTP calls and db commands).
pub async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<TcpStream, CallError> {
    match timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(CallError::Connect(format!(
            "{addr}: no answer to connect within {}",
            human(connect_timeout)
        ))),
        Ok(Err(e)) => Err(CallError::Connect(format!("{addr}: {}", io_reason(&e)))),
        Ok(Ok(s)) => Ok(s),
    }
}

fn hyper_reason(e: &hyper::Error) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io_reason(io);
        }
        src = s.source();
    }
    if e.is_incomplete_message() {
        "connection closed before the answer".into()
    } else {
        e.to_string()
    }
}

pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: String,
    connect_timeout: Duration,
    total: Duration,
) -> Result<Answer, CallError> {
    let started = tokio::time::Instant::now();
    let stream = connect(addr, connect_timeout).await?;
    let _ = stream.set_nodelay(true);
    let rest = total.saturating_sub(started.elapsed());
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Broken(hyper_reason(&e)))?;
        let driver = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("connection", "close")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Broken(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CallError::Broken(hyper_reason(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Broken(hyper_reason(&e)))?
            .to_bytes();
        driver.abort();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    timeout(rest, exchange)
        .await
        .map_err(|_| CallError::Timeout(total))?
}
