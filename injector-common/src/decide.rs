//! The decisions a program takes for one packet once a rule matched its
//! scope and address: ports and protocol, expiry, per-connection toxicity,
//! per-packet probability with correlation.

use crate::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Packet, TCP_FIN};
use crate::rule::{DIR_EGRESS, FLAG_FIN_ONLY, FlowKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Rule};

/// Addresses and ports of a packet from the target's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
}

#[inline(always)]
pub fn view(p: &Packet, dir: u32) -> View {
    if dir == DIR_EGRESS {
        View {
            remote: p.dst,
            local_port: p.sport,
            remote_port: p.dport,
        }
    } else {
        View {
            remote: p.src,
            local_port: p.dport,
            remote_port: p.sport,
        }
    }
}

#[inline(always)]
pub fn proto_bit(proto: u8) -> u8 {
    match proto {
        IPPROTO_TCP => PROTO_TCP,
        IPPROTO_UDP => PROTO_UDP,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => PROTO_ICMP,
        _ => 0,
    }
}

/// Port range check; `0..0` means any port.
#[inline(always)]
pub fn port_in(port: u16, lo: u16, hi: u16) -> bool {
    (lo == 0 && hi == 0) || (lo <= port && port <= hi)
}

/// Does the rule's filter select this packet (protocol, ports, expiry)?
#[inline(always)]
pub fn selects(r: &Rule, p: &Packet, v: &View, now_ns: u64) -> bool {
    if r.expires_ns != 0 && now_ns >= r.expires_ns {
        return false;
    }
    let bit = proto_bit(p.proto);
    if r.protos & bit == 0 {
        return false;
    }
    if r.flags & FLAG_FIN_ONLY != 0 && !(p.is_tcp() && p.tcp_flags & TCP_FIN != 0) {
        return false;
    }
    let has_ports = p.is_tcp() || p.is_udp();
    let port_filter = r.rport_lo | r.rport_hi | r.lport_lo | r.lport_hi != 0;
    if port_filter && !has_ports {
        return false;
    }
    port_in(v.remote_port, r.rport_lo, r.rport_hi) && port_in(v.local_port, r.lport_lo, r.lport_hi)
}

/// Final avalanche (murmur3 fmix32) so thresholds compare uniform values.
#[inline(always)]
pub fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The per-flow key: endpoints ordered so both directions agree.
#[inline(always)]
pub fn flow_key(rule: u32, p: &Packet) -> FlowKey {
    // Compared as integers: a byte-slice comparison would compile to a
    // memcmp loop, which the BPF verifier walks byte by byte.
    let (s, d) = (u128::from_be_bytes(p.src), u128::from_be_bytes(p.dst));
    let a_first = s < d || (s == d && p.sport <= p.dport);
    let (a, pa, b, pb) = if a_first {
        (p.src, p.sport, p.dst, p.dport)
    } else {
        (p.dst, p.dport, p.src, p.sport)
    };
    FlowKey {
        rule,
        proto: p.proto as u32,
        a,
        b,
        pa,
        pb,
    }
}

/// A hash of the connection that is the same in both directions and for
/// every packet of it: toxicity picks connections, not packets. Works on
/// 64-bit words: a byte loop costs the BPF verifier and stack dearly.
#[inline(always)]
pub fn flow_hash(k: &FlowKey, seed: u32) -> u32 {
    let a = u128::from_be_bytes(k.a);
    let b = u128::from_be_bytes(k.b);
    let words = [
        (a >> 64) as u64,
        a as u64,
        (b >> 64) as u64,
        b as u64,
        ((k.pa as u64) << 32) | ((k.pb as u64) << 16) | (k.proto as u64 & 0xffff),
    ];
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed as u64;
    for w in words {
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    fmix((h ^ (h >> 32)) as u32)
}

/// The per-rule draw for a flow: the flow's hash, computed once per packet,
/// mixed with the rule's seed so rules pick independent sets of flows.
#[inline(always)]
pub fn flow_draw(flow: u32, seed: u32) -> u32 {
    fmix(flow ^ seed.wrapping_mul(0x9e37_79b9))
}

/// `threshold` is a probability scaled to u32; u32::MAX means always.
#[inline(always)]
pub fn below(value: u32, threshold: u32) -> bool {
    threshold == u32::MAX || value < threshold
}

/// netem's correlated random: mixes the new draw with the previous one so
/// that a hit tends to follow a hit (bursty loss).
#[inline(always)]
pub fn correlated(rnd: u32, last: u32, corr: u32) -> u32 {
    if corr == 0 {
        return rnd;
    }
    let rho = corr as u64 + 1;
    ((rnd as u64 * ((1u64 << 32) - rho) + last as u64 * rho) >> 32) as u32
}

/// Scales a probability in [0, 1] to the u32 threshold used in maps.
pub fn scale(p: f64) -> u32 {
    if p.is_nan() || p <= 0.0 {
        0
    } else if p >= 1.0 {
        u32::MAX
    } else {
        (p * 4_294_967_296.0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::v4_mapped;
    use proptest::prelude::*;

    fn pkt(src: u32, sport: u16, dst: u32, dport: u16) -> Packet {
        Packet {
            proto: IPPROTO_TCP,
            src: v4_mapped(src),
            dst: v4_mapped(dst),
            sport,
            dport,
            ..Packet::default()
        }
    }

    #[test]
    fn both_directions_of_a_flow_hash_alike() {
        let a = pkt(1, 1000, 2, 80);
        let b = pkt(2, 80, 1, 1000);
        assert_eq!(flow_key(3, &a), flow_key(3, &b));
        assert_eq!(
            flow_hash(&flow_key(3, &a), 9),
            flow_hash(&flow_key(3, &b), 9)
        );
        assert_ne!(
            flow_hash(&flow_key(3, &a), 9),
            flow_hash(&flow_key(3, &a), 10)
        );
    }

    #[test]
    fn toxicity_selects_about_the_requested_share_of_connections() {
        let t = scale(0.3);
        let hit = (0..20000u16)
            .filter(|port| {
                below(
                    flow_draw(flow_hash(&flow_key(0, &pkt(1, *port, 2, 80)), 0), 7),
                    t,
                )
            })
            .count();
        // 99.9 % binomial interval around 6000 of 20000
        assert!((5790..=6210).contains(&hit), "{hit}");
    }

    #[test]
    fn view_follows_the_target_direction() {
        let p = pkt(1, 1000, 2, 80);
        let out = view(&p, DIR_EGRESS);
        assert_eq!(
            (out.remote, out.local_port, out.remote_port),
            (v4_mapped(2), 1000, 80)
        );
        let inn = view(&p, crate::rule::DIR_INGRESS);
        assert_eq!(
            (inn.remote, inn.local_port, inn.remote_port),
            (v4_mapped(1), 80, 1000)
        );
    }

    #[test]
    fn filters_protocol_ports_and_expiry() {
        let mut r = Rule::zeroed();
        r.protos = PROTO_UDP;
        let p = pkt(1, 1000, 2, 80);
        let v = view(&p, DIR_EGRESS);
        assert!(!selects(&r, &p, &v, 0));
        r.protos = PROTO_TCP;
        r.rport_lo = 80;
        r.rport_hi = 80;
        assert!(selects(&r, &p, &v, 0));
        r.lport_lo = 2000;
        r.lport_hi = 3000;
        assert!(!selects(&r, &p, &v, 0));
        r.lport_lo = 0;
        r.lport_hi = 0;
        r.expires_ns = 100;
        assert!(selects(&r, &p, &v, 99));
        assert!(!selects(&r, &p, &v, 100));
    }

    #[test]
    fn fin_only_rules_skip_other_segments() {
        let mut r = Rule::zeroed();
        r.flags = FLAG_FIN_ONLY;
        let mut p = pkt(1, 1000, 2, 80);
        p.tcp_flags = crate::packet::TCP_ACK;
        let v = view(&p, DIR_EGRESS);
        assert!(!selects(&r, &p, &v, 0));
        p.tcp_flags |= TCP_FIN;
        assert!(selects(&r, &p, &v, 0));
    }

    #[test]
    fn icmp_never_matches_a_port_filter() {
        let mut r = Rule::zeroed();
        r.rport_lo = 1;
        r.rport_hi = 65535;
        let p = Packet {
            proto: IPPROTO_ICMP,
            ..Packet::default()
        };
        assert!(!selects(&r, &p, &view(&p, DIR_EGRESS), 0));
    }

    #[test]
    fn scale_edges() {
        assert_eq!(scale(0.0), 0);
        assert_eq!(scale(-1.0), 0);
        assert_eq!(scale(f64::NAN), 0);
        assert_eq!(scale(1.0), u32::MAX);
        assert!(below(u32::MAX - 1, u32::MAX));
        assert!(!below(0, 0));
        assert_eq!(scale(0.5), 1 << 31);
    }

    #[test]
    fn correlation_makes_runs_longer() {
        // Count runs of hits at p = 0.5 with and without correlation.
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let runs = |corr: u32, next: &mut dyn FnMut() -> u32| {
            let mut last = 0;
            let mut prev_hit = false;
            let mut switches = 0;
            for _ in 0..20000 {
                let r = correlated(next(), last, corr);
                last = r;
                let hit = below(r, scale(0.5));
                if hit != prev_hit {
                    switches += 1;
                }
                prev_hit = hit;
            }
            switches
        };
        let plain = runs(0, &mut next);
        let corr = runs(scale(0.9), &mut next);
        assert!(corr * 2 < plain, "plain {plain} correlated {corr}");
    }

    proptest! {
        #[test]
        fn port_ranges(port: u16, a: u16, b: u16) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let inside = port_in(port, lo, hi);
            if lo == 0 && hi == 0 {
                prop_assert!(inside);
            } else {
                prop_assert_eq!(inside, lo <= port && port <= hi);
            }
        }
    }
}
