//! DNS query parsing and domain matching, shared by the kernel and the daemon.
//!
//! A name matches a pattern by hash: the daemon hashes each pattern in wire
//! form (`\x07example\x03com\x00`, lower case); the kernel walks the query
//! name once and derives the hash of every suffix that starts at a label
//! boundary. The hash is polynomial modulo 2^64 with an odd base, so a
//! suffix's hash follows from running sums without a second pass.

use crate::packet::Bytes;

/// Odd base of the polynomial hash, and its inverse modulo 2^64.
pub const BASE: u64 = 0x0000_0100_0000_01b3;
pub const BASE_INV: u64 = inverse(BASE);

/// Label boundaries remembered (the innermost ones, where suffixes live).
pub const MAX_BOUNDARIES: usize = 16;
/// Longest name on the wire (RFC 1035).
pub const MAX_NAME: usize = 255;

pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

const fn inverse(a: u64) -> u64 {
    // Newton iteration: each step doubles the correct low bits.
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

#[inline(always)]
fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() { c + 32 } else { c }
}

/// Hashes of a query name: the whole name and its suffixes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NameHashes {
    /// Hash of the whole name (wire form, including the root label).
    pub total: u64,
    /// Number of label boundaries seen, the root label excluded.
    pub labels: u32,
    /// Offset just past the name (where QTYPE starts).
    pub end: u32,
    /// Running sum and inverse power at each boundary, in a ring of the
    /// last MAX_BOUNDARIES boundaries.
    pub sums: [u64; MAX_BOUNDARIES],
    pub invs: [u64; MAX_BOUNDARIES],
}

impl NameHashes {
    pub const fn new() -> Self {
        NameHashes {
            total: 0,
            labels: 0,
            end: 0,
            sums: [0; MAX_BOUNDARIES],
            invs: [0; MAX_BOUNDARIES],
        }
    }

    /// Hash of the suffix that starts at boundary `k` (0 = the whole name),
    /// if that boundary is still in the ring.
    #[inline(always)]
    pub fn suffix(&self, k: u32) -> Option<u64> {
        if k >= self.labels || self.labels - k > MAX_BOUNDARIES as u32 {
            return None;
        }
        let i = (k as usize) % MAX_BOUNDARIES;
        Some(
            self.total
                .wrapping_sub(self.sums[i])
                .wrapping_mul(self.invs[i]),
        )
    }
}

impl Default for NameHashes {
    fn default() -> Self {
        Self::new()
    }
}

/// One step of the name walk per byte, so the kernel can run it from a
/// bpf_loop callback (verified once) instead of an unrolled 255-step loop.
#[derive(Clone, Copy, Debug)]
pub struct Walker {
    sum: u64,
    pow: u64,
    inv: u64,
    next_len: u32,
    labels: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    More,
    End,
    Bad,
}

impl Walker {
    pub const fn new(off: usize) -> Walker {
        Walker {
            sum: 0,
            pow: 1,
            inv: 1,
            next_len: off as u32,
            labels: 0,
        }
    }

    /// Feeds byte `c` found at packet offset `pos`.
    #[inline(always)]
    pub fn step(&mut self, pos: usize, mut c: u8, out: &mut NameHashes) -> Step {
        if pos as u32 == self.next_len {
            if c > 63 {
                return Step::Bad;
            }
            if c == 0 {
                // The root label ends the name; it is part of every suffix.
                out.total = self.sum;
                out.labels = self.labels;
                out.end = (pos + 1) as u32;
                return Step::End;
            }
            let slot = (self.labels as usize) % MAX_BOUNDARIES;
            out.sums[slot] = self.sum;
            out.invs[slot] = self.inv;
            self.labels += 1;
            self.next_len = pos as u32 + 1 + c as u32;
        } else {
            c = lower(c);
        }
        self.sum = self.sum.wrapping_add((c as u64).wrapping_mul(self.pow));
        self.pow = self.pow.wrapping_mul(BASE);
        self.inv = self.inv.wrapping_mul(BASE_INV);
        Step::More
    }
}

/// Walks the wire-form name at `off`; fills `out`. Compression pointers are
/// not followed (queries never use them in the question).
#[inline(always)]
pub fn hash_name<B: Bytes + ?Sized>(b: &B, off: usize, out: &mut NameHashes) -> Option<()> {
    let mut w = Walker::new(off);
    for i in 0..MAX_NAME {
        match w.step(off + i, b.byte(off + i)?, out) {
            Step::More => {}
            Step::End => return Some(()),
            Step::Bad => return None,
        }
    }
    None
}

/// The daemon's side: the hash of a dotted name (`Example.COM.` or
/// `example.com`) in wire form, or None when it is not a valid name.
pub fn hash_dotted(name: &str) -> Option<u64> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut sum: u64 = 0;
    let mut pow: u64 = 1;
    let mut len = 0usize;
    let mut push = |c: u8, sum: &mut u64| {
        *sum = sum.wrapping_add((c as u64).wrapping_mul(pow));
        pow = pow.wrapping_mul(BASE);
    };
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            len += 1 + label.len();
            push(label.len() as u8, &mut sum);
            for c in label.bytes() {
                push(lower(c), &mut sum);
            }
        }
    }
    push(0, &mut sum);
    if len + 1 > MAX_NAME {
        return None;
    }
    Some(sum)
}

/// Fixed part of a DNS query this code answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub qtype: u16,
    /// Offset just past the question (QNAME, QTYPE, QCLASS).
    pub question_end: u32,
}

/// Parses the header and question of a DNS message at `off`, hashing QNAME.
/// Only standard queries with one question are considered.
#[inline(always)]
pub fn parse_query<B: Bytes + ?Sized>(b: &B, off: usize, names: &mut NameHashes) -> Option<Query> {
    let (id, flags) = query_header(b, off)?;
    hash_name(b, off + 12, names)?;
    let end = names.end as usize;
    let qtype = b.be16(end)?;
    b.be16(end + 2)?;
    Some(Query {
        id,
        flags,
        qtype,
        question_end: (end + 4) as u32,
    })
}

/// ID and flags of a standard query with one question at `off`.
#[inline(always)]
pub fn query_header<B: Bytes + ?Sized>(b: &B, off: usize) -> Option<(u16, u16)> {
    let id = b.be16(off)?;
    let flags = b.be16(off + 2)?;
    // QR = 0 (query) and OPCODE = 0 (standard query)
    if flags & 0xf800 != 0 || b.be16(off + 4)? != 1 {
        return None;
    }
    Some((id, flags))
}

/// Header flags of the error answer to a query with `flags`: QR and RA set,
/// AA/TC/AD cleared, RD and CD kept, RCODE replaced.
#[inline(always)]
pub fn answer_flags(flags: u16, rcode: u8) -> u16 {
    ((flags | 0x8000 | 0x0080) & !(0x0400 | 0x0200 | 0x0020 | 0x000f)) | (rcode as u16 & 0x0f)
}

/// Does a rule's qtype list accept `qtype`? All zero = any.
#[inline(always)]
pub fn qtype_ok(list: &[u16; 4], qtype: u16) -> bool {
    if list[0] == 0 {
        return true;
    }
    list[0] == qtype || list[1] == qtype || list[2] == qtype || list[3] == qtype
}

/// Numeric value of a query type name.
pub fn qtype_code(name: &str) -> Option<u16> {
    let upper = |s: &str| -> [u8; 8] {
        let mut out = [0u8; 8];
        for (i, c) in s.bytes().take(8).enumerate() {
            out[i] = c.to_ascii_uppercase();
        }
        out
    };
    let u = upper(name);
    let table: &[(&[u8], u16)] = &[
        (b"A", 1),
        (b"NS", 2),
        (b"CNAME", 5),
        (b"SOA", 6),
        (b"PTR", 12),
        (b"MX", 15),
        (b"TXT", 16),
        (b"AAAA", 28),
        (b"SRV", 33),
        (b"NAPTR", 35),
        (b"DS", 43),
        (b"DNSKEY", 48),
        (b"SVCB", 64),
        (b"HTTPS", 65),
        (b"CAA", 257),
        (b"ANY", 255),
    ];
    if name.len() > 8 {
        return None;
    }
    for (n, code) in table {
        if &u[..n.len()] == *n && u[n.len()..].iter().all(|c| *c == 0) {
            return Some(*code);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut v = std::vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        v.extend_from_slice(&wire(name));
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    #[test]
    fn inverse_is_an_inverse() {
        assert_eq!(BASE.wrapping_mul(BASE_INV), 1);
    }

    #[test]
    fn whole_name_and_suffixes_hash_like_the_daemon() {
        let msg = query("WWW.Shop.Example.com", 1);
        let mut h = NameHashes::new();
        let q = parse_query(&msg[..], 0, &mut h).unwrap();
        assert_eq!(q.qtype, 1);
        assert_eq!(q.id, 0x1234);
        assert_eq!(h.labels, 4);
        assert_eq!(h.total, hash_dotted("www.shop.example.com").unwrap());
        assert_eq!(h.suffix(0), hash_dotted("www.shop.example.com"));
        assert_eq!(h.suffix(1), hash_dotted("shop.example.com"));
        assert_eq!(h.suffix(2), hash_dotted("example.com."));
        assert_eq!(h.suffix(3), hash_dotted("com"));
        assert_eq!(h.suffix(4), None);
        assert_ne!(h.suffix(2), hash_dotted("example.org"));
        assert_eq!(q.question_end as usize, msg.len());
    }

    #[test]
    fn deep_names_keep_their_innermost_suffixes() {
        let name = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.example.com";
        let msg = query(name, 28);
        let mut h = NameHashes::new();
        parse_query(&msg[..], 0, &mut h).unwrap();
        assert_eq!(h.total, hash_dotted(name).unwrap());
        assert_eq!(h.suffix(h.labels - 2), hash_dotted("example.com"));
        assert_eq!(h.suffix(0), None, "outer boundaries fall out of the ring");
    }

    #[test]
    fn responses_and_compression_are_not_queries() {
        let mut msg = query("a.example", 1);
        msg[2] |= 0x80;
        assert!(parse_query(&msg[..], 0, &mut NameHashes::new()).is_none());
        let mut msg = query("a.example", 1);
        msg[12] = 0xc0;
        assert!(parse_query(&msg[..], 0, &mut NameHashes::new()).is_none());
        let msg = query("a.example", 1);
        assert!(parse_query(&msg[..msg.len() - 3], 0, &mut NameHashes::new()).is_none());
    }

    #[test]
    fn answer_flags_make_an_error_response() {
        // RD set in a query; answer keeps RD, sets QR+RA and the rcode.
        assert_eq!(answer_flags(0x0100, RCODE_NXDOMAIN), 0x8183);
        assert_eq!(answer_flags(0x0110, RCODE_SERVFAIL), 0x8192);
        assert_eq!(answer_flags(0x0520, RCODE_REFUSED) & 0x0400, 0);
    }

    #[test]
    fn qtypes() {
        assert_eq!(qtype_code("aaaa"), Some(28));
        assert_eq!(qtype_code("A"), Some(1));
        assert_eq!(qtype_code("AA"), None);
        assert_eq!(qtype_code("HTTPSXXXX"), None);
        assert!(qtype_ok(&[0; 4], 5));
        assert!(qtype_ok(&[1, 28, 0, 0], 28));
        assert!(!qtype_ok(&[1, 28, 0, 0], 5));
    }

    #[test]
    fn invalid_names_are_rejected_by_the_daemon_side() {
        assert!(hash_dotted("a..b").is_none());
        assert!(hash_dotted(&"x".repeat(64)).is_none());
        assert!(hash_dotted(".").is_some());
    }

    proptest::proptest! {
        #[test]
        fn hashing_random_bytes_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut h = NameHashes::new();
            let _ = parse_query(&data[..], 0, &mut h);
        }
    }
}
