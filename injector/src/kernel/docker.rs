//! Just enough of the Docker Engine API (over /var/run/docker.sock) to turn
//! a container name or id into its process, namespace and addresses.

use std::net::IpAddr;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

pub const SOCKET: &str = "/var/run/docker.sock";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub pid: u32,
    pub addresses: Vec<IpAddr>,
}

/// One HTTP/1.0 request (no keep-alive, no chunking) and its JSON body.
async fn get(path: &str) -> Result<(u16, Value), String> {
    let mut s = UnixStream::connect(SOCKET)
        .await
        .map_err(|e| format!("the Docker Engine API at {SOCKET} is not reachable: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Docker API request: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("Docker API response: {e}"))?;
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Result<(u16, Value), String> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("Docker API: malformed response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("Docker API: no status line")?;
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((status, json))
}

/// Only the characters Docker allows in names and ids reach the URL.
fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 128
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub async fn inspect(reference: &str) -> Result<Container, String> {
    let reference = reference.trim_start_matches('/');
    if !valid_ref(reference) {
        return Err(format!("{reference:?} is not a valid container name or id"));
    }
    let (status, v) = get(&format!("/containers/{reference}/json")).await?;
    match status {
        200 => {}
        404 => return Err(format!("no such container: {reference}")),
        s => {
            return Err(format!(
                "Docker API answered {s} for container {reference}: {}",
                v.get("message").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    container_of(&v).ok_or_else(|| format!("container {reference} is not running"))
}

fn container_of(v: &Value) -> Option<Container> {
    let state = v.get("State")?;
    if !state.get("Running")?.as_bool()? {
        return None;
    }
    let pid = state.get("Pid")?.as_u64().filter(|p| *p > 0)? as u32;
    let mut addresses = Vec::new();
    if let Some(nets) = v
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
    {
        for n in nets.values() {
            for key in ["IPAddress", "GlobalIPv6Address"] {
                if let Some(ip) = n
                    .get(key)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                {
                    addresses.push(ip);
                }
            }
        }
    }
    Some(Container {
        id: v.get("Id")?.as_str()?.to_string(),
        name: v
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string(),
        pid,
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pid_and_addresses_of_a_running_container() {
        let v = json!({
            "Id": "abc", "Name": "/web",
            "State": {"Running": true, "Pid": 42},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2", "GlobalIPv6Address": ""}}}
        });
        let c = container_of(&v).unwrap();
        assert_eq!((c.pid, c.name.as_str()), (42, "web"));
        assert_eq!(c.addresses, vec!["172.17.0.2".parse::<IpAddr>().unwrap()]);
        let stopped = json!({"Id": "abc", "State": {"Running": false, "Pid": 0}});
        assert!(container_of(&stopped).is_none());
    }

    #[test]
    fn parses_status_and_body() {
        let (s, v) =
            parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n{\"message\":\"x\"}").unwrap();
        assert_eq!(s, 404);
        assert_eq!(v["message"], "x");
    }

    #[test]
    fn refuses_references_that_would_change_the_url() {
        assert!(!valid_ref("../images"));
        assert!(!valid_ref("a b"));
        assert!(valid_ref("web-1.x_y"));
    }
}
