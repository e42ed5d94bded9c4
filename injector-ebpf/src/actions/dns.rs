//! DNS faults. A matching query is dropped (the client times out) or turned
//! into the error answer (SERVFAIL, NXDOMAIN, REFUSED) in place and sent
//! back, so no resolver is involved and the client hears at once. Over TCP
//! the answer is a segment in the client's stream: the resolver never sees
//! the query.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_SHOT},
    helpers::{bpf_loop, bpf_skb_load_bytes},
    programs::{TcContext, sk_buff::SkBuff},
};
use aya_log_ebpf::debug;
use injector_common::{
    dns::{
        MAX_BOUNDARIES, MAX_NAME, NameHashes, Step, Walker, answer_flags, qtype_ok, query_header,
    },
    packet::{Bytes, Packet},
    rule::{DNS_HAS_DOMAINS, DNS_MATCH_EXACT, DNS_MATCH_SUFFIX, DnsNameKey, Rule},
};

use super::rewrite::{
    fold, has_eth, pseudo_sum, send_back, set_addrs, set_ip_len, sum_range, swap_eth, trim,
};
use crate::{
    maps::{DNS_NAMES, DNS_QUERY},
    rules::Outcome,
    skb::Skb,
};

/// The query of the packet being handled, parsed once before the rules
/// are walked: the name walk is the costliest code to verify, so it must
/// not be repeated at every rule.
#[repr(C)]
pub struct Query {
    pub valid: u32,
    pub off: u16,
    pub end: u16,
    pub qtype: u16,
    pub _pad: u16,
    pub names: NameHashes,
}

/// State handed to the bpf_loop callback that walks the query name.
#[repr(C)]
struct Walk {
    skb: *mut __sk_buff,
    q: *mut Query,
    walker: Walker,
    step: u32,
}

const WALK_MORE: u32 = 0;
const WALK_END: u32 = 1;
const WALK_BAD: u32 = 2;

/// One byte of the name per call: bpf_loop verifies this body once, where
/// a 255-step loop would be verified step by step and exhaust the verifier.
extern "C" fn walk_byte(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let q = unsafe { &mut *w.q };
    let pos = q.off as usize + 12 + (i as usize & 0xff);
    let mut c = 0u8;
    let r = unsafe {
        bpf_skb_load_bytes(
            w.skb as *const c_void,
            pos as u32,
            &mut c as *mut u8 as *mut c_void,
            1,
        )
    };
    if r != 0 {
        w.step = WALK_BAD;
        return 1;
    }
    match w.walker.step(pos, c, &mut q.names) {
        Step::More => 0,
        Step::End => {
            w.step = WALK_END;
            1
        }
        Step::Bad => {
            w.step = WALK_BAD;
            1
        }
    }
}

/// Parses a DNS query carried by `p` (UDP or TCP, port 53) into the per-CPU
/// scratch; marks it invalid otherwise.
#[inline(never)]
pub fn prepare(skb: &SkBuff, p: &Packet) {
    let Some(q) = DNS_QUERY.get_ptr_mut(0) else {
        return;
    };
    let qr = unsafe { &mut *q };
    qr.valid = 0;
    if p.sport != 53 && p.dport != 53 {
        return;
    }
    let off = if p.is_tcp() {
        if p.payload_len < 14 {
            return;
        }
        p.payload_off as usize + 2
    } else if p.is_udp() {
        if p.payload_len < 12 {
            return;
        }
        p.payload_off as usize
    } else {
        return;
    };
    let b = Skb(skb);
    if query_header(&b, off).is_none() {
        return;
    }
    qr.off = off as u16;
    let mut w = Walk {
        skb: skb.skb,
        q,
        walker: Walker::new(off + 12),
        step: WALK_MORE,
    };
    unsafe {
        bpf_loop(
            MAX_NAME as u32,
            walk_byte as *mut c_void,
            &mut w as *mut Walk as *mut c_void,
            0,
        )
    };
    if w.step != WALK_END {
        return;
    }
    let end = qr.names.end as usize;
    let (Some(qtype), Some(_class)) = (b.be16(end), b.be16(end + 2)) else {
        return;
    };
    qr.qtype = qtype;
    qr.end = (end + 4) as u16;
    qr.valid = 1;
}

/// No packet, no query (connect hooks).
#[inline(always)]
pub fn forget() {
    if let Some(q) = DNS_QUERY.get_ptr_mut(0) {
        unsafe { (*q).valid = 0 };
    }
}

/// Does the prepared query match the rule? On a match, records where the
/// DNS message starts and its question ends in `out`.
#[inline(never)]
pub fn matches(id: u32, r: &Rule, out: &mut Outcome) -> bool {
    let Some(q) = DNS_QUERY.get(0) else {
        return false;
    };
    if q.valid == 0 || !qtype_ok(&r.qtypes, q.qtype) {
        return false;
    }
    if r.dns_flags & DNS_HAS_DOMAINS != 0 && !listed(id, &q.names) {
        return false;
    }
    out.dns_off = q.off;
    out.dns_end = q.end;
    true
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
        return TC_ACT_SHOT;
    }
    match build(ctx, p, o.dns_off as usize, o.dns_end as usize, o.dns_rcode) {
        Ok(()) => {
            debug!(
                ctx,
                "rule {} answered a DNS query with rcode {}", o.rule, o.dns_rcode
            );
            send_back(ctx, hook_ingress)
        }
        Err(()) => TC_ACT_SHOT,
    }
}

#[inline(never)]
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
        let s = pseudo_sum(p.v6, &p.dst, &p.src, 6, l4_len as u32)
            + sum_range(ctx, l4, l4_len).ok_or(())?;
        ctx.store(l4 + 16, &fold(s).to_be_bytes(), 0)
            .map_err(|_| ())
    } else {
        let mut hdr = [0u8; 8];
        hdr[0..2].copy_from_slice(&p.dport.to_be_bytes());
        hdr[2..4].copy_from_slice(&p.sport.to_be_bytes());
        hdr[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        ctx.store(l4, &hdr, 0).map_err(|_| ())?;
        let s = pseudo_sum(p.v6, &p.dst, &p.src, 17, l4_len as u32)
            + sum_range(ctx, l4, l4_len).ok_or(())?;
        let mut c = fold(s);
        if c == 0 {
            // 0 means "no checksum" in UDP; a computed 0 is sent as ones.
            c = 0xffff;
        }
        ctx.store(l4 + 6, &c.to_be_bytes(), 0).map_err(|_| ())
    }
}
