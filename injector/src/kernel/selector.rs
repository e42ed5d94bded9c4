//! The `upstream` of a kernel-native proxy selects traffic: `host:port`,
//! `ip:port`, `cidr`, `cidr:port` or `*:port`. Names are resolved once, when
//! the proxy is created.

use std::net::IpAddr;

use super::table::Prefix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Remote (or, for a target that is the upstream, local) addresses;
    /// empty = any address.
    pub prefixes: Vec<Prefix>,
    /// The upstream's port; None = any port.
    pub port: Option<u16>,
    /// The addresses the selector named, to compare with the target's own.
    pub addrs: Vec<IpAddr>,
}

/// What the text says before any name is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Any {
        port: Option<u16>,
    },
    Cidr {
        addr: IpAddr,
        bits: u8,
        port: Option<u16>,
    },
    Host {
        name: String,
        port: u16,
    },
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {s:?} in upstream"))
}

fn cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("invalid address {ip:?} in upstream"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("invalid prefix length {b:?} in upstream"))?,
        None => max,
    };
    Ok((ip, bits))
}

pub fn parse(upstream: &str) -> Result<Parsed, String> {
    let s = upstream.trim();
    if s.is_empty() {
        return Err("upstream is empty".into());
    }
    if s == "*" {
        return Ok(Parsed::Any { port: None });
    }
    if let Some(p) = s.strip_prefix("*:") {
        return Ok(Parsed::Any {
            port: Some(port(p)?),
        });
    }
    // [v6 or v6/len]:port
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in upstream {upstream:?}"))?;
        let (addr, bits) = cidr(inner)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("invalid upstream {upstream:?}")),
        };
        return Ok(Parsed::Cidr { addr, bits, port });
    }
    // A bare IPv6 address or CIDR (several colons, no brackets).
    if s.matches(':').count() > 1 {
        let (addr, bits) = cidr(s)?;
        return Ok(Parsed::Cidr {
            addr,
            bits,
            port: None,
        });
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    if host.contains('/') || host.parse::<IpAddr>().is_ok() {
        let (addr, bits) = cidr(host)?;
        return Ok(Parsed::Cidr {
            addr,
            bits,
            port: p,
        });
    }
    let port = p.ok_or_else(|| format!("upstream {upstream:?}: a host name needs a port"))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(format!("invalid host name {host:?} in upstream"));
    }
    Ok(Parsed::Host {
        name: host.to_string(),
        port,
    })
}

impl Selector {
    pub fn from_addrs(addrs: Vec<IpAddr>, port: Option<u16>) -> Selector {
        Selector {
            prefixes: addrs
                .iter()
                .map(|a| Prefix::from_ip(*a, if a.is_ipv4() { 32 } else { 128 }))
                .collect(),
            port,
            addrs,
        }
    }

    pub fn any(port: Option<u16>) -> Selector {
        Selector {
            prefixes: Vec::new(),
            port,
            addrs: Vec::new(),
        }
    }
}

/// Resolves the parsed form; host names through the system resolver, then
/// (for container names the host cannot resolve) through Docker.
pub async fn resolve(upstream: &str) -> Result<Selector, String> {
    match parse(upstream)? {
        Parsed::Any { port } => Ok(Selector::any(port)),
        Parsed::Cidr { addr, bits, port } => Ok(Selector {
            prefixes: vec![Prefix::from_ip(addr, bits)],
            port,
            addrs: vec![addr],
        }),
        Parsed::Host { name, port } => {
            let mut addrs: Vec<IpAddr> = match tokio::net::lookup_host((name.as_str(), port)).await
            {
                Ok(it) => it.map(|sa| sa.ip()).collect(),
                Err(_) => Vec::new(),
            };
            if addrs.is_empty() {
                addrs = super::docker::inspect(&name)
                    .await
                    .map(|c| c.addresses)
                    .unwrap_or_default();
            }
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                return Err(format!(
                    "upstream host {name:?} does not resolve (neither by DNS nor as a Docker container)"
                ));
            }
            Ok(Selector::from_addrs(addrs, Some(port)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses() {
        assert_eq!(parse("*:53").unwrap(), Parsed::Any { port: Some(53) });
        assert_eq!(
            parse("10.0.0.0/8").unwrap(),
            Parsed::Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                bits: 8,
                port: None
            }
        );
        assert_eq!(
            parse("10.1.2.3:5432").unwrap(),
            Parsed::Cidr {
                addr: "10.1.2.3".parse().unwrap(),
                bits: 32,
                port: Some(5432)
            }
        );
        assert_eq!(
            parse("10.1.0.0/16:80").unwrap(),
            Parsed::Cidr {
                addr: "10.1.0.0".parse().unwrap(),
                bits: 16,
                port: Some(80)
            }
        );
        assert_eq!(
            parse("[fd00::1]:443").unwrap(),
            Parsed::Cidr {
                addr: "fd00::1".parse().unwrap(),
                bits: 128,
                port: Some(443)
            }
        );
        assert_eq!(
            parse("fd00::/64").unwrap(),
            Parsed::Cidr {
                addr: "fd00::".parse().unwrap(),
                bits: 64,
                port: None
            }
        );
        assert_eq!(
            parse("go-service:8080").unwrap(),
            Parsed::Host {
                name: "go-service".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn bad_forms_are_refused_with_reasons() {
        assert!(parse("").is_err());
        assert!(parse("web").unwrap_err().contains("needs a port"));
        assert!(parse("10.0.0.0/33").is_err());
        assert!(parse("10.0.0.1:0").is_err());
        assert!(parse("10.0.0.1:99999").is_err());
        assert!(parse("a b:80").is_err());
        assert!(parse("[fd00::1:80").is_err());
    }

    #[tokio::test]
    async fn loopback_names_resolve_now() {
        let s = resolve("localhost:80").await.unwrap();
        assert!(s.addrs.iter().all(|a| a.is_loopback()));
        assert_eq!(s.port, Some(80));
        let s = resolve("127.0.0.1/8").await.unwrap();
        assert_eq!(
            s.prefixes,
            vec![Prefix::from_ip("127.0.0.0".parse().unwrap(), 8)]
        );
    }
}
