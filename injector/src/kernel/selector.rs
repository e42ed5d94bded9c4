//! The `upstream` of a kernel-native proxy selects traffic. Besides
//! ToxiProxy's `host:port`, it takes `ip:port`, `cidr`, `cidr:port`,
//! `*:port`, several CIDRs (`10.0.0.0/8,fd00::/8`), port ranges
//! (`*:8000-8100`) and a protocol prefix (`udp://*:53`, `icmp://10.0.0.0/8`).
//! Names are resolved once, when the proxy is created.

use std::net::IpAddr;

use injector_common::rule::{PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

use super::table::Prefix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Remote (or, for a target that is the upstream, local) addresses;
    /// empty = any address.
    pub prefixes: Vec<Prefix>,
    /// The upstream's port range; None = any port.
    pub ports: Option<(u16, u16)>,
    /// PROTO_* bits.
    pub protos: u8,
    /// The addresses the selector named, to compare with the target's own.
    pub addrs: Vec<IpAddr>,
}

impl Selector {
    /// The single port, when the range is one port.
    pub fn port(&self) -> Option<u16> {
        match self.ports {
            Some((lo, hi)) if lo == hi => Some(lo),
            _ => None,
        }
    }
}

/// What the address part says before any name is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addrs {
    Any,
    Cidrs(Vec<(IpAddr, u8)>),
    Host(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub protos: u8,
    pub addrs: Addrs,
    pub ports: Option<(u16, u16)>,
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {s:?} in upstream"))
}

fn ports(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err(format!("port range {s:?} runs backwards"));
            }
            Ok((lo, hi))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
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

fn cidrs(s: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    s.split(',').map(|c| cidr(c.trim())).collect()
}

fn protocol(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(PROTO_TCP),
        "udp" => Ok(PROTO_UDP),
        "icmp" => Ok(PROTO_ICMP),
        "any" | "ip" => Ok(PROTO_ANY),
        other => Err(format!(
            "unknown protocol {other:?} in upstream (tcp, udp, icmp, any)"
        )),
    }
}

pub fn parse(upstream: &str) -> Result<Parsed, String> {
    let mut s = upstream.trim();
    let mut protos = PROTO_ANY;
    if let Some((p, rest)) = s.split_once("://") {
        protos = protocol(p)?;
        s = rest;
    }
    if s.is_empty() {
        return Err("upstream is empty".into());
    }
    let parsed = |addrs, ports| {
        Ok(Parsed {
            protos,
            addrs,
            ports,
        })
    };
    if s == "*" {
        return parsed(Addrs::Any, None);
    }
    if let Some(p) = s.strip_prefix("*:") {
        return parsed(Addrs::Any, Some(ports(p)?));
    }
    // [v6 CIDRs]:ports
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in upstream {upstream:?}"))?;
        let p = match after.strip_prefix(':') {
            Some(p) => Some(ports(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("invalid upstream {upstream:?}")),
        };
        return parsed(Addrs::Cidrs(cidrs(inner)?), p);
    }
    // Bare IPv6 (several colons, no brackets): addresses only.
    if s.split(',').any(|c| c.matches(':').count() > 1) {
        return parsed(Addrs::Cidrs(cidrs(s)?), None);
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(ports(p)?)),
        None => (s, None),
    };
    let looks_numeric = host
        .split(',')
        .all(|c| c.contains('/') || c.trim().parse::<IpAddr>().is_ok());
    if looks_numeric {
        return parsed(Addrs::Cidrs(cidrs(host)?), p);
    }
    if p.is_none() {
        return Err(format!("upstream {upstream:?}: a host name needs a port"));
    }
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(format!("invalid host name {host:?} in upstream"));
    }
    parsed(Addrs::Host(host.to_string()), p)
}

fn host_prefix(a: &IpAddr) -> Prefix {
    Prefix::from_ip(*a, if a.is_ipv4() { 32 } else { 128 })
}

/// Resolves the parsed form; host names through the system resolver, then
/// (for container names the host cannot resolve) through Docker.
pub async fn resolve(upstream: &str) -> Result<Selector, String> {
    let p = parse(upstream)?;
    let (prefixes, addrs) = match p.addrs {
        Addrs::Any => (Vec::new(), Vec::new()),
        Addrs::Cidrs(list) => (
            list.iter().map(|(a, b)| Prefix::from_ip(*a, *b)).collect(),
            list.iter().map(|(a, _)| *a).collect(),
        ),
        Addrs::Host(name) => {
            let port = p.ports.map(|(lo, _)| lo).unwrap_or(0);
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
            (addrs.iter().map(host_prefix).collect(), addrs)
        }
    };
    Ok(Selector {
        prefixes,
        ports: p.ports,
        protos: p.protos,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr_list(items: &[(&str, u8)]) -> Addrs {
        Addrs::Cidrs(
            items
                .iter()
                .map(|(a, b)| (a.parse().unwrap(), *b))
                .collect(),
        )
    }

    #[test]
    fn every_documented_form_parses() {
        let p = |s| parse(s).unwrap();
        assert_eq!(
            p("*:53"),
            Parsed {
                protos: PROTO_ANY,
                addrs: Addrs::Any,
                ports: Some((53, 53))
            }
        );
        assert_eq!(p("10.0.0.0/8").addrs, cidr_list(&[("10.0.0.0", 8)]));
        assert_eq!(p("10.1.2.3:5432").ports, Some((5432, 5432)));
        assert_eq!(p("10.1.2.3:5432").addrs, cidr_list(&[("10.1.2.3", 32)]));
        assert_eq!(p("10.1.0.0/16:80").addrs, cidr_list(&[("10.1.0.0", 16)]));
        assert_eq!(p("[fd00::1]:443").addrs, cidr_list(&[("fd00::1", 128)]));
        assert_eq!(p("fd00::/64").addrs, cidr_list(&[("fd00::", 64)]));
        assert_eq!(p("go-service:8080").addrs, Addrs::Host("go-service".into()));
    }

    #[test]
    fn protocols_lists_and_ranges() {
        let p = parse("udp://*:53").unwrap();
        assert_eq!((p.protos, p.ports), (PROTO_UDP, Some((53, 53))));
        let p = parse("tcp://10.0.0.0/8,192.168.0.0/16:8000-8100").unwrap();
        assert_eq!(p.protos, PROTO_TCP);
        assert_eq!(p.addrs, cidr_list(&[("10.0.0.0", 8), ("192.168.0.0", 16)]));
        assert_eq!(p.ports, Some((8000, 8100)));
        let p = parse("[fd00::/8,fd01::1]:1-1024").unwrap();
        assert_eq!(p.addrs, cidr_list(&[("fd00::", 8), ("fd01::1", 128)]));
        assert_eq!(parse("icmp://10.0.0.1").unwrap().protos, PROTO_ICMP);
    }

    #[test]
    fn bad_forms_are_refused_with_reasons() {
        assert!(parse("").is_err());
        assert!(parse("web").unwrap_err().contains("needs a port"));
        assert!(parse("10.0.0.0/33").is_err());
        assert!(parse("10.0.0.1:0").is_err());
        assert!(parse("10.0.0.1:99999").is_err());
        assert!(parse("*:90-80").unwrap_err().contains("backwards"));
        assert!(parse("sctp://*:1").unwrap_err().contains("protocol"));
        assert!(parse("a b:80").is_err());
        assert!(parse("[fd00::1:80").is_err());
    }

    #[tokio::test]
    async fn loopback_names_resolve_now() {
        let s = resolve("localhost:80").await.unwrap();
        assert!(s.addrs.iter().all(|a| a.is_loopback()));
        assert_eq!(s.port(), Some(80));
        let s = resolve("127.0.0.1/8").await.unwrap();
        assert_eq!(
            s.prefixes,
            vec![Prefix::from_ip("127.0.0.0".parse().unwrap(), 8)]
        );
        assert_eq!(s.port(), None);
    }
}
