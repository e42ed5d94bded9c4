//! Bounded IPv4/IPv6/TCP/UDP header parsing.
//!
//! The same code runs in the kernel (over `bpf_skb_load_bytes`, which also
//! reads non-linear skb data) and on the host in tests (over a byte slice):
//! both implement [`Bytes`]. No header length is assumed: IHL and IPv6
//! extension headers are walked with fixed bounds the verifier accepts.

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Reads packet bytes at an offset; `None` when out of bounds.
pub trait Bytes {
    fn byte(&self, off: usize) -> Option<u8>;
    fn be16(&self, off: usize) -> Option<u16>;
    fn be32(&self, off: usize) -> Option<u32>;
    /// 16 bytes, for IPv6 addresses.
    fn b16(&self, off: usize) -> Option<[u8; 16]>;
}

impl Bytes for [u8] {
    #[inline(always)]
    fn byte(&self, off: usize) -> Option<u8> {
        self.get(off).copied()
    }
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        let s = self.get(off..off + 2)?;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }
    #[inline(always)]
    fn be32(&self, off: usize) -> Option<u32> {
        let s = self.get(off..off + 4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    #[inline(always)]
    fn b16(&self, off: usize) -> Option<[u8; 16]> {
        let s = self.get(off..off + 16)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(s);
        Some(out)
    }
}

/// An IPv4 address as stored in maps (IPv4-mapped IPv6).
#[inline(always)]
pub fn v4_mapped(a: u32) -> [u8; 16] {
    let b = a.to_be_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// What the programs need to know of one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub v6: bool,
    /// IPPROTO_* of the transport header (after IPv6 extension headers).
    pub proto: u8,
    /// True when this is a non-first fragment: no transport header.
    pub fragment: bool,
    pub l3_off: u16,
    pub l4_off: u16,
    /// Bytes from the L3 header start to the end of the IP datagram.
    pub l3_len: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// TCP header length in bytes (data offset * 4).
    pub tcp_hlen: u8,
    pub seq: u32,
    pub ack: u32,
    /// Offset and length of the transport payload.
    pub payload_off: u16,
    pub payload_len: u16,
}

impl Packet {
    #[inline(always)]
    pub fn is_tcp(&self) -> bool {
        self.proto == IPPROTO_TCP && !self.fragment
    }
    #[inline(always)]
    pub fn is_udp(&self) -> bool {
        self.proto == IPPROTO_UDP && !self.fragment
    }
    #[inline(always)]
    pub fn is_icmp(&self) -> bool {
        self.proto == IPPROTO_ICMP || self.proto == IPPROTO_ICMPV6
    }
    /// A connection attempt: SYN without ACK.
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.is_tcp() && self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
    }
}

/// Parses an Ethernet frame (tc programs on veths and physical devices)
/// into `p`. The parsers fill a caller-provided packet rather than return
/// one: in the kernel it lives in a per-CPU map, not on the small BPF stack.
#[inline(always)]
pub fn parse_eth<B: Bytes + ?Sized>(b: &B, p: &mut Packet) -> bool {
    match b.be16(12) {
        Some(ETH_P_IP) => parse_ipv4(b, ETH_HLEN, p),
        Some(ETH_P_IPV6) => parse_ipv6(b, ETH_HLEN, p),
        _ => false,
    }
}

/// Parses an IP packet starting at `off` (cgroup programs: no L2 header).
#[inline(always)]
pub fn parse_ip<B: Bytes + ?Sized>(b: &B, off: usize, p: &mut Packet) -> bool {
    match b.byte(off).map(|v| v >> 4) {
        Some(4) => parse_ipv4(b, off, p),
        Some(6) => parse_ipv6(b, off, p),
        _ => false,
    }
}

#[inline(always)]
fn reset(p: &mut Packet) {
    p.sport = 0;
    p.dport = 0;
    p.tcp_flags = 0;
    p.tcp_hlen = 0;
    p.seq = 0;
    p.ack = 0;
    p.payload_off = 0;
    p.payload_len = 0;
}

#[inline(always)]
pub fn parse_ipv4<B: Bytes + ?Sized>(b: &B, off: usize, p: &mut Packet) -> bool {
    let Some(vihl) = b.byte(off) else {
        return false;
    };
    if vihl >> 4 != 4 {
        return false;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if !(20..=60).contains(&ihl) {
        return false;
    }
    let (Some(total), Some(frag), Some(proto), Some(src), Some(dst)) = (
        b.be16(off + 2),
        b.be16(off + 6),
        b.byte(off + 9),
        b.be32(off + 12),
        b.be32(off + 16),
    ) else {
        return false;
    };
    let total = total as usize;
    if total < ihl {
        return false;
    }
    reset(p);
    p.v6 = false;
    p.proto = proto;
    p.fragment = frag & 0x1fff != 0;
    p.l3_off = off as u16;
    p.l4_off = (off + ihl) as u16;
    p.l3_len = total as u16;
    p.src = v4_mapped(src);
    p.dst = v4_mapped(dst);
    parse_l4(b, p, off + total);
    true
}

/// IPv6 extension headers walked before giving up on finding the transport.
const MAX_EXT_HEADERS: usize = 6;

#[inline(always)]
pub fn parse_ipv6<B: Bytes + ?Sized>(b: &B, off: usize, p: &mut Packet) -> bool {
    match b.byte(off) {
        Some(v) if v >> 4 == 6 => {}
        _ => return false,
    }
    let (Some(payload), Some(mut next)) = (b.be16(off + 4), b.byte(off + 6)) else {
        return false;
    };
    let payload = payload as usize;
    let mut l4 = off + 40;
    let mut fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            // hop-by-hop, routing, destination options: (len + 1) * 8 bytes
            0 | 43 | 60 => {
                let (Some(n), Some(len)) = (b.byte(l4), b.byte(l4 + 1)) else {
                    return false;
                };
                next = n;
                l4 += (len as usize + 1) * 8;
            }
            // fragment header: 8 bytes; later fragments carry no L4 header
            44 => {
                let (Some(n), Some(fo)) = (b.byte(l4), b.be16(l4 + 2)) else {
                    return false;
                };
                fragment = fo & 0xfff8 != 0;
                next = n;
                l4 += 8;
            }
            _ => break,
        }
    }
    let (Some(src), Some(dst)) = (b.b16(off + 8), b.b16(off + 24)) else {
        return false;
    };
    reset(p);
    p.v6 = true;
    p.proto = next;
    p.fragment = fragment;
    p.l3_off = off as u16;
    p.l4_off = l4 as u16;
    p.l3_len = (40 + payload) as u16;
    p.src = src;
    p.dst = dst;
    parse_l4(b, p, off + 40 + payload);
    true
}

#[inline(always)]
fn parse_l4<B: Bytes + ?Sized>(b: &B, p: &mut Packet, end: usize) {
    if p.fragment {
        return;
    }
    let l4 = p.l4_off as usize;
    match p.proto {
        IPPROTO_TCP => {
            let (Some(sport), Some(dport), Some(seq), Some(ack), Some(doff), Some(flags)) = (
                b.be16(l4),
                b.be16(l4 + 2),
                b.be32(l4 + 4),
                b.be32(l4 + 8),
                b.byte(l4 + 12),
                b.byte(l4 + 13),
            ) else {
                p.proto = 0;
                return;
            };
            let hlen = ((doff >> 4) as usize) * 4;
            if hlen < 20 || l4 + hlen > end {
                p.proto = 0;
                return;
            }
            p.sport = sport;
            p.dport = dport;
            p.seq = seq;
            p.ack = ack;
            p.tcp_flags = flags;
            p.tcp_hlen = hlen as u8;
            p.payload_off = (l4 + hlen) as u16;
            p.payload_len = (end - l4 - hlen) as u16;
        }
        IPPROTO_UDP => {
            let (Some(sport), Some(dport)) = (b.be16(l4), b.be16(l4 + 2)) else {
                p.proto = 0;
                return;
            };
            if l4 + 8 > end {
                p.proto = 0;
                return;
            }
            p.sport = sport;
            p.dport = dport;
            p.payload_off = (l4 + 8) as u16;
            p.payload_len = (end - l4 - 8) as u16;
        }
        _ => {}
    }
}

#[cfg(test)]
pub mod testpkt {
    //! Packet builders for tests (here and in the daemon's unit tests).
    extern crate std;
    use std::vec::Vec;

    pub fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut v = std::vec![0u8; 12];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(l3);
        v
    }

    pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8], options: usize) -> Vec<u8> {
        let ihl = 20 + options;
        let mut v = std::vec![0u8; ihl];
        v[0] = 0x40 | (ihl / 4) as u8;
        let total = (ihl + l4.len()) as u16;
        v[2..4].copy_from_slice(&total.to_be_bytes());
        v[8] = 64;
        v[9] = proto;
        v[12..16].copy_from_slice(&src);
        v[16..20].copy_from_slice(&dst);
        v.extend_from_slice(l4);
        v
    }

    pub fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut v = std::vec![0u8; 40];
        v[0] = 0x60;
        let plen = (ext.len() + l4.len()) as u16;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        v[6] = next;
        v[7] = 64;
        v[8..24].copy_from_slice(&src);
        v[24..40].copy_from_slice(&dst);
        v.extend_from_slice(ext);
        v.extend_from_slice(l4);
        v
    }

    pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = std::vec![0u8; 20];
        v[0..2].copy_from_slice(&sport.to_be_bytes());
        v[2..4].copy_from_slice(&dport.to_be_bytes());
        v[4..8].copy_from_slice(&seq.to_be_bytes());
        v[8..12].copy_from_slice(&ack.to_be_bytes());
        v[12] = 5 << 4;
        v[13] = flags;
        v.extend_from_slice(payload);
        v
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = std::vec![0u8; 8];
        v[0..2].copy_from_slice(&sport.to_be_bytes());
        v[2..4].copy_from_slice(&dport.to_be_bytes());
        v[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testpkt::*;
    use super::*;
    use proptest::prelude::*;

    fn parsed_eth(b: &[u8]) -> Option<Packet> {
        let mut p = Packet::default();
        parse_eth(b, &mut p).then_some(p)
    }

    #[test]
    fn ipv4_tcp_with_options_is_not_assumed_20_bytes() {
        let seg = tcp(1234, 80, 7, 9, TCP_SYN, b"");
        let pkt = eth(
            ETH_P_IP,
            &ipv4(IPPROTO_TCP, [10, 0, 0, 1], [10, 0, 0, 2], &seg, 8),
        );
        let p = parsed_eth(&pkt[..]).unwrap();
        assert_eq!(p.l4_off as usize, ETH_HLEN + 28);
        assert_eq!((p.sport, p.dport, p.seq, p.ack), (1234, 80, 7, 9));
        assert!(p.is_syn());
        assert_eq!(p.src, v4_mapped(0x0a000001));
        assert_eq!(p.payload_len, 0);
    }

    #[test]
    fn udp_payload_length_comes_from_the_ip_header_not_the_buffer() {
        let dgram = udp(5000, 53, b"hello");
        let mut pkt = eth(
            ETH_P_IP,
            &ipv4(IPPROTO_UDP, [1, 1, 1, 1], [2, 2, 2, 2], &dgram, 0),
        );
        // Ethernet padding after the datagram must not count as payload.
        pkt.extend_from_slice(&[0; 10]);
        let p = parsed_eth(&pkt[..]).unwrap();
        assert!(p.is_udp());
        assert_eq!(p.payload_len, 5);
        assert_eq!(p.payload_off as usize, ETH_HLEN + 28);
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        // hop-by-hop (8 bytes) then UDP
        let mut ext = std::vec![0u8; 8];
        ext[0] = IPPROTO_UDP;
        let dgram = udp(1, 2, b"x");
        let pkt = eth(ETH_P_IPV6, &ipv6(0, [1; 16], [2; 16], &ext, &dgram));
        let p = parsed_eth(&pkt[..]).unwrap();
        assert!(p.v6);
        assert_eq!(p.proto, IPPROTO_UDP);
        assert_eq!(p.l4_off as usize, ETH_HLEN + 48);
        assert_eq!((p.sport, p.dport, p.payload_len), (1, 2, 1));
    }

    #[test]
    fn later_ipv4_fragments_have_no_ports() {
        let dgram = udp(1, 2, b"abc");
        let mut l3 = ipv4(IPPROTO_UDP, [1, 1, 1, 1], [2, 2, 2, 2], &dgram, 0);
        l3[6] = 0x00;
        l3[7] = 0x10; // fragment offset 16 * 8
        let p = parsed_eth(&eth(ETH_P_IP, &l3)[..]).unwrap();
        assert!(p.fragment);
        assert!(!p.is_udp());
        assert_eq!(p.sport, 0);
    }

    #[test]
    fn bad_ihl_and_truncation_are_rejected() {
        let mut l3 = ipv4(IPPROTO_TCP, [1, 1, 1, 1], [2, 2, 2, 2], &[], 0);
        l3[0] = 0x44; // IHL 16 bytes
        assert!(!parse_ip(&l3[..], 0, &mut Packet::default()));
        let seg = tcp(1, 2, 0, 0, TCP_ACK, b"");
        let l3 = ipv4(IPPROTO_TCP, [1, 1, 1, 1], [2, 2, 2, 2], &seg, 0);
        assert!(!parse_ip(&l3[..10], 0, &mut Packet::default()));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_stays_in_bounds(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(p) = parsed_eth(&data[..]) {
                prop_assert!((p.l4_off as usize) <= data.len() + 60 * 8);
                if p.is_tcp() || p.is_udp() {
                    prop_assert!(p.payload_off as usize <= data.len().max(p.payload_off as usize));
                }
            }
            let _ = parse_ip(&data[..], 0, &mut Packet::default());
        }
    }
}
