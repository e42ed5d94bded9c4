//! `listen` as Go's net.Listen("tcp", listen) takes it, errors included,
//! because ToxiProxy returns them raw (500) and stores
//! `listener.Addr().String()` as the proxy's listen address:
//! "127.0.0.1:0" -> "127.0.0.1:<port>", "localhost:N" -> "127.0.0.1:N",
//! "" / ":N" / "0.0.0.0:N" / "[::]:N" -> "[::]:N" (one dual-stack socket).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::{TcpListener, TcpSocket};

use super::sys;
use crate::ApiError;

/// Go's listen backlog is somaxconn; this is its usual value.
const BACKLOG: u32 = 4096;

/// Binds `listen`; returns the listener and its address as Go prints it.
pub async fn listen(listen: &str) -> Result<(TcpListener, String), ApiError> {
    let fail = |e: String| ApiError::internal(format!("listen tcp: {e}"));
    let (host, port) = if listen.is_empty() {
        (String::new(), 0)
    } else {
        let (host, port) = split_host_port(listen).map_err(fail)?;
        (host, lookup_port(&port).map_err(fail)?)
    };
    // Go's TCPAddr.String() of what it is about to bind, for bind errors.
    let (ip, shown) = if host.is_empty() {
        (None, format!(":{port}"))
    } else {
        let ip = resolve(&host, port).await.map_err(fail)?;
        (Some(ip), SocketAddr::new(ip, port).to_string())
    };
    let bind_err = |call: &str, e: io::Error| {
        ApiError::internal(format!(
            "listen tcp {shown}: {call}: {}",
            sys::go_errno_text(&e)
        ))
    };

    let specific = ip.filter(|ip| !ip.is_unspecified());
    let wildcard = specific.is_none();
    let addr = SocketAddr::new(specific.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), port);
    let (socket, addr) = match socket_for(addr, wildcard) {
        Ok(s) => (s, addr),
        // No IPv6 on this host: Go falls back to IPv4 for the wildcard.
        Err(e) if wildcard && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            (
                socket_for(v4, false).map_err(|e| bind_err("socket", e))?,
                v4,
            )
        }
        Err(e) => return Err(bind_err("socket", e)),
    };
    socket.bind(addr).map_err(|e| bind_err("bind", e))?;
    let listener = socket.listen(BACKLOG).map_err(|e| bind_err("listen", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| bind_err("getsockname", e))?;
    Ok((listener, local.to_string()))
}

fn socket_for(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Go sets SO_REUSEADDR on every listener: a stopped proxy can rebind
    // its port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if dual_stack {
        sys::dual_stack(socket.as_raw_fd())?;
    }
    Ok(socket)
}

/// Go's net.SplitHostPort, with its error texts ("address X: why").
pub fn split_host_port(hostport: &str) -> Result<(String, String), String> {
    let err = |why: &str| format!("address {hostport}: {why}");
    let Some(i) = hostport.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, j, k);
    if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(err("missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return Err(err("missing port in address"));
        } else if end + 1 != i {
            return Err(if hostport.as_bytes()[end + 1] == b':' {
                err("too many colons in address")
            } else {
                err("missing port in address")
            });
        }
        host = &hostport[1..end];
        (j, k) = (1, end + 1);
    } else {
        host = &hostport[..i];
        if host.contains(':') {
            return Err(err("too many colons in address"));
        }
        (j, k) = (0, 0);
    }
    if hostport[j..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hostport[k..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok((host.to_string(), hostport[i + 1..].to_string()))
}

/// Go's LookupPort("tcp", port): decimal (signs and overflow as Go reads
/// them), or a service name from /etc/services.
pub fn lookup_port(port: &str) -> Result<u16, String> {
    let invalid = || format!("address {port}: invalid port");
    if port.is_empty() {
        return Ok(0);
    }
    let (neg, digits) = match port.as_bytes()[0] {
        b'+' => (false, &port[1..]),
        b'-' => (true, &port[1..]),
        _ => (false, port),
    };
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        let n = digits.bytes().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add((d - b'0') as u64)
        });
        return match n {
            Some(n) if !neg && n <= 65535 => Ok(n as u16),
            Some(0) => Ok(0),
            _ => Err(invalid()),
        };
    }
    service_port(port).ok_or_else(|| format!("lookup tcp/{port}: unknown port"))
}

fn service_port(name: &str) -> Option<u16> {
    let services = std::fs::read_to_string("/etc/services").ok()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let (port, proto) = words.next()?.split_once('/')?;
        let named = first == name || words.any(|alias| alias == name);
        (named && proto == "tcp").then(|| port.parse().ok())?
    })
}

/// An IP literal as is; a name through the system resolver, preferring
/// IPv4 as Go's Listen does ("localhost" -> 127.0.0.1).
async fn resolve(host: &str, port: u16) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let no_host = || format!("lookup {host}: no such host");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| no_host())?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .ok_or_else(no_host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_host_port_matches_go() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("127.0.0.1:80"), ("127.0.0.1".into(), "80".into()));
        assert_eq!(ok("[::1]:0"), ("::1".into(), "0".into()));
        assert_eq!(ok(":8080"), ("".into(), "8080".into()));
        assert_eq!(ok("localhost:"), ("localhost".into(), "".into()));
        let err = |s: &str| split_host_port(s).unwrap_err();
        assert_eq!(err("nope"), "address nope: missing port in address");
        assert_eq!(err("::1"), "address ::1: too many colons in address");
        assert_eq!(err("[::1]"), "address [::1]: missing port in address");
        assert_eq!(err("[::1:80"), "address [::1:80: missing ']' in address");
        assert_eq!(
            err("[::1]x:80"),
            "address [::1]x:80: missing port in address"
        );
        assert_eq!(err("a]:80"), "address a]:80: unexpected ']' in address");
    }

    #[test]
    fn ports_parse_like_go() {
        assert_eq!(lookup_port("0"), Ok(0));
        assert_eq!(lookup_port(""), Ok(0));
        assert_eq!(lookup_port("+80"), Ok(80));
        assert_eq!(lookup_port("65535"), Ok(65535));
        assert_eq!(
            lookup_port("99999"),
            Err("address 99999: invalid port".into())
        );
        assert_eq!(lookup_port("-1"), Err("address -1: invalid port".into()));
        assert_eq!(
            lookup_port("99999999999999999999999"),
            Err("address 99999999999999999999999: invalid port".into())
        );
        assert_eq!(
            lookup_port("no-such-service"),
            Err("lookup tcp/no-such-service: unknown port".into())
        );
    }
}
