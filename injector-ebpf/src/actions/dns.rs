//! DNS faults. A matching query is dropped (the client times out) or turned
//! into the error answer (SERVFAIL, NXDOMAIN, REFUSED) in place and sent
//! back, so no resolver is involved and the client hears at once. Over TCP
//! the answer is a segment in the client's stream: the resolver never sees
//! the query.

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use injector_common::{
    dns::{answer_flags, parse_query, qtype_ok, NameHashes, MAX_BOUNDARIES},
    packet::{Bytes, Packet},
    rule::{DnsNameKey, Rule, DNS_HAS_DOMAINS, DNS_MATCH_EXACT, DNS_MATCH_SUFFIX},
};

use super::rewrite::{fold, has_eth, pseudo_sum, send_back, set_addrs, set_ip_len, sum_range, swap_eth, trim};
use crate::{
    maps::{DNS_NAMES, NAME_SCRATCH},
    rules::Outcome,
};

/// Where the DNS message of a matching query lies: (start, end of question).
#[inline(never)]
pub fn matches<B: Bytes + ?Sized>(b: &B, id: u32, r: &Rule, p: &Packet) -> Option<(u16, u16)> {
    let off = if p.is_tcp() {
        if p.payload_len < 14 {
            return None;
        }
        p.payload_off as usize + 2
    } else if p.is_udp() {
        if p.payload_len < 12 {
            return None;
        }
        p.payload_off as usize
    } else {
        return None;
    };
    let names = NAME_SCRATCH.get_ptr_mut(0)?;
    let names = unsafe { &mut *names };
    let q = parse_query(b, off, names)?;
    if !qtype_ok(&r.qtypes, q.qtype) {
        return None;
    }
    if r.dns_flags & DNS_HAS_DOMAINS != 0 && !listed(id, names) {
        return None;
    }
    Some((off as u16, q.question_end as u16))
}

#[inline(always)]
fn listed(id: u32, names: &NameHashes) -> bool {
    let exact = DnsNameKey {
        rule: id,
        kind: DNS_MATCH_EXACT,
        hash: names.total,
    };
    if unsafe { DNS_NAMES.get(&exact) }.is_some() {
        return true;
    }
    // `*.suffix` matches names strictly below the suffix: try the suffixes
    // made of the last 1, 2, ... labels.
    for j in 1..MAX_BOUNDARIES as u32 {
        if j >= names.labels {
            break;
        }
        if let Some(h) = names.suffix(names.labels - j) {
            let k = DnsNameKey {
                rule: id,
                kind: DNS_MATCH_SUFFIX,
                hash: h,
            };
            if unsafe { DNS_NAMES.get(&k) }.is_some() {
                return true;
            }
        }
    }
    false
}

/// Rewrites the query at `[off, end)` into an error answer and sends it back.
#[inline(never)]
pub fn answer(ctx: &TcContext, p: &Packet, o: &Outcome, hook_ingress: bool) -> i32 {
    if !has_eth(p) {
        return TC_ACT_SHOT as i32;
    }
    match build(ctx, p, o.dns_off as usize, o.dns_end as usize, o.dns_rcode) {
        Ok(()) => send_back(ctx, hook_ingress),
        Err(()) => TC_ACT_SHOT as i32,
    }
}

#[inline(always)]
fn build(ctx: &TcContext, p: &Packet, off: usize, end: usize, rcode: u8) -> Result<(), ()> {
    let l4 = p.l4_off as usize;
    let flags: [u8; 2] = ctx.load(off + 2).map_err(|_| ())?;
    let new = answer_flags(u16::from_be_bytes(flags), rcode).to_be_bytes();
    ctx.store(off + 2, &new, 0).map_err(|_| ())?;
    // No answer, authority or additional records: the question alone.
    ctx.store(off + 6, &[0u8; 6], 0).map_err(|_| ())?;
    trim(ctx, end as u32)?;
    set_ip_len(ctx, p, (end - p.l3_off as usize) as u32)?;
    swap_eth(ctx)?;
    set_addrs(ctx, p, &p.dst, &p.src)?;
    let l4_len = end - l4;
    if p.is_tcp() {
        let hlen = p.tcp_hlen as usize;
        let msg_len = ((end - off) as u16).to_be_bytes();
        ctx.store(off - 2, &msg_len, 0).map_err(|_| ())?;
        let mut hdr = [0u8; 16];
        hdr[0..2].copy_from_slice(&p.dport.to_be_bytes());
        hdr[2..4].copy_from_slice(&p.sport.to_be_bytes());
        hdr[4..8].copy_from_slice(&p.ack.to_be_bytes());
        let next = p.seq.wrapping_add(p.payload_len as u32);
        hdr[8..12].copy_from_slice(&next.to_be_bytes());
        hdr[12] = (hlen as u8 / 4) << 4;
        hdr[13] = 0x18; // PSH|ACK
        hdr[14..16].copy_from_slice(&[0xff, 0xff]);
        ctx.store(l4, &hdr, 0).map_err(|_| ())?;
        ctx.store(l4 + 16, &[0u8; 4], 0).map_err(|_| ())?;
        // The client's options (timestamps above all) would be wrong coming
        // from the other side: overwrite them with NOPs.
        for i in 0..10usize {
            let at = 20 + i * 4;
            if at >= hlen {
                break;
            }
            ctx.store(l4 + at, &[1u8; 4], 0).map_err(|_| ())?;
        }
        let s = pseudo_sum(p.v6, &p.dst, &p.src, 6, l4_len as u32) + sum_range(ctx, l4, l4_len).ok_or(())?;
        ctx.store(l4 + 16, &fold(s).to_be_bytes(), 0).map_err(|_| ())
    } else {
        let mut hdr = [0u8; 8];
        hdr[0..2].copy_from_slice(&p.dport.to_be_bytes());
        hdr[2..4].copy_from_slice(&p.sport.to_be_bytes());
        hdr[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        ctx.store(l4, &hdr, 0).map_err(|_| ())?;
        let s = pseudo_sum(p.v6, &p.dst, &p.src, 17, l4_len as u32) + sum_range(ctx, l4, l4_len).ok_or(())?;
        let mut c = fold(s);
        if c == 0 {
            // 0 means "no checksum" in UDP; a computed 0 is sent as ones.
            c = 0xffff;
        }
        ctx.store(l4 + 6, &c.to_be_bytes(), 0).map_err(|_| ())
    }
}
