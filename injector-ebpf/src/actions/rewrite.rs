//! Turning a packet around in place: swap the endpoints, shrink it to the
//! headers an answer needs, rebuild lengths and checksums, send it back.
//! Checksums of rebuilt transport headers are computed from scratch: an
//! incremental update of a header we rewrote wholesale would be wrong.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, BPF_F_INGRESS},
    helpers::{bpf_loop, bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes},
    programs::TcContext,
};
use injector_common::packet::{ETH_HLEN, Packet};

/// A TCP header without options, as written by answers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub off_flags: [u8; 2],
    pub window: [u8; 2],
    pub csum: [u8; 2],
    pub urg: [u8; 2],
}

#[inline(always)]
pub fn trim(ctx: &TcContext, len: u32) -> Result<(), ()> {
    let r = unsafe { bpf_skb_change_tail(ctx.skb.skb, len, 0) };
    if r == 0 { Ok(()) } else { Err(()) }
}

#[inline(always)]
pub fn swap_eth(ctx: &TcContext) -> Result<(), ()> {
    let dst: [u8; 6] = ctx.load(0).map_err(|_| ())?;
    let src: [u8; 6] = ctx.load(6).map_err(|_| ())?;
    ctx.store(0, &src, 0).map_err(|_| ())?;
    ctx.store(6, &dst, 0).map_err(|_| ())
}

/// Writes the IP addresses. Turning a packet around swaps them, and the
/// IPv4 header checksum is a sum, so it stays valid.
#[inline(always)]
pub fn set_addrs(ctx: &TcContext, p: &Packet, src: &[u8; 16], dst: &[u8; 16]) -> Result<(), ()> {
    let l3 = p.l3_off as usize;
    if p.v6 {
        ctx.store(l3 + 8, src, 0).map_err(|_| ())?;
        ctx.store(l3 + 24, dst, 0).map_err(|_| ())
    } else {
        let s: [u8; 4] = [src[12], src[13], src[14], src[15]];
        let d: [u8; 4] = [dst[12], dst[13], dst[14], dst[15]];
        ctx.store(l3 + 12, &s, 0).map_err(|_| ())?;
        ctx.store(l3 + 16, &d, 0).map_err(|_| ())
    }
}

/// Writes the datagram length (`l3_len` bytes from the IP header start).
#[inline(always)]
pub fn set_ip_len(ctx: &TcContext, p: &Packet, l3_len: u32) -> Result<(), ()> {
    let l3 = p.l3_off as usize;
    if p.v6 {
        let plen = ((l3_len - 40) as u16).to_be_bytes();
        ctx.store(l3 + 4, &plen, 0).map_err(|_| ())
    } else {
        let old: [u8; 2] = ctx.load(l3 + 2).map_err(|_| ())?;
        let new = (l3_len as u16).to_be_bytes();
        ctx.store(l3 + 2, &new, 0).map_err(|_| ())?;
        ctx.l3_csum_replace(
            l3 + 10,
            u16::from_ne_bytes(old) as u64,
            u16::from_ne_bytes(new) as u64,
            2,
        )
        .map_err(|_| ())
    }
}

/// Pseudo-header sum for a transport segment going from `src` to `dst`.
#[inline(always)]
pub fn pseudo_sum(v6: bool, src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u64 {
    let mut s: u64 = proto as u64 + l4_len as u64;
    let start = if v6 { 0 } else { 12 };
    let mut i = start;
    while i < 16 {
        s += u16::from_be_bytes([src[i], src[i + 1]]) as u64;
        s += u16::from_be_bytes([dst[i], dst[i + 1]]) as u64;
        i += 2;
    }
    s
}

#[inline(always)]
pub fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Largest transport segment whose checksum the answers recompute.
const MAX_SUM_WORDS: u32 = 200;

#[repr(C)]
struct SumWalk {
    skb: *mut __sk_buff,
    off: u32,
    len: u32,
    sum: u64,
    ok: u32,
}

/// One 16-bit word per call (bpf_loop: verified once, not 200 times).
extern "C" fn sum_word(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut SumWalk) };
    let at = (i as u32 & 0x3ff) * 2;
    if at >= w.len {
        return 1;
    }
    let mut word = [0u8; 2];
    let n = if at + 1 == w.len { 1 } else { 2 };
    let r = unsafe {
        bpf_skb_load_bytes(
            w.skb as *const c_void,
            w.off + at,
            word.as_mut_ptr() as *mut c_void,
            n,
        )
    };
    if r != 0 {
        w.ok = 0;
        return 1;
    }
    w.sum += u16::from_be_bytes(word) as u64;
    0
}

/// Sum of the 16-bit words of `[off, off + len)` in the packet (an odd
/// last byte is padded with zero, as the checksum algorithm says).
#[inline(never)]
pub fn sum_range(ctx: &TcContext, off: usize, len: usize) -> Option<u64> {
    let mut w = SumWalk {
        skb: ctx.skb.skb,
        off: off as u32,
        len: len as u32,
        sum: 0,
        ok: 1,
    };
    unsafe {
        bpf_loop(
            MAX_SUM_WORDS,
            sum_word as *mut c_void,
            &mut w as *mut SumWalk as *mut c_void,
            0,
        )
    };
    if w.ok == 1 && len as u32 <= MAX_SUM_WORDS * 2 {
        Some(w.sum)
    } else {
        None
    }
}

/// Writes an option-less TCP header at the packet's L4 offset, its checksum
/// computed for an empty payload between `src` and `dst`.
#[inline(always)]
pub fn write_tcp(
    ctx: &TcContext,
    p: &Packet,
    src: &[u8; 16],
    dst: &[u8; 16],
    mut h: TcpHdr,
) -> Result<(), ()> {
    h.csum = [0, 0];
    let words: [u16; 10] = [
        u16::from_be_bytes(h.sport),
        u16::from_be_bytes(h.dport),
        u16::from_be_bytes([h.seq[0], h.seq[1]]),
        u16::from_be_bytes([h.seq[2], h.seq[3]]),
        u16::from_be_bytes([h.ack[0], h.ack[1]]),
        u16::from_be_bytes([h.ack[2], h.ack[3]]),
        u16::from_be_bytes(h.off_flags),
        u16::from_be_bytes(h.window),
        0,
        u16::from_be_bytes(h.urg),
    ];
    let mut s = pseudo_sum(p.v6, src, dst, 6, 20);
    for w in words {
        s += w as u64;
    }
    h.csum = fold(s).to_be_bytes();
    ctx.store(p.l4_off as usize, &h, 0).map_err(|_| ())
}

/// Builds an RST|ACK header.
#[inline(always)]
pub fn rst(sport: u16, dport: u16, seq: u32, ack: u32) -> TcpHdr {
    TcpHdr {
        sport: sport.to_be_bytes(),
        dport: dport.to_be_bytes(),
        seq: seq.to_be_bytes(),
        ack: ack.to_be_bytes(),
        // data offset 5, flags RST|ACK
        off_flags: [5 << 4, 0x14],
        window: [0, 0],
        csum: [0, 0],
        urg: [0, 0],
    }
}

/// Shrinks the packet to its IP header plus an option-less TCP header.
#[inline(always)]
pub fn to_bare_tcp(ctx: &TcContext, p: &Packet) -> Result<(), ()> {
    let end = p.l4_off as u32 + 20;
    trim(ctx, end)?;
    set_ip_len(ctx, p, end - p.l3_off as u32)
}

/// Where a packet turned around must go: out of the device it came in on,
/// or back into the stack it was leaving.
#[inline(always)]
pub fn back_flags(hook_ingress: bool) -> u64 {
    if hook_ingress {
        0
    } else {
        BPF_F_INGRESS as u64
    }
}

/// Where a packet continuing its way must be sent when re-injected: back
/// into the stack it was entering, or out of the device it was leaving.
#[inline(always)]
pub fn onward_flags(hook_ingress: bool) -> u64 {
    if hook_ingress {
        BPF_F_INGRESS as u64
    } else {
        0
    }
}

#[inline(always)]
pub fn send_back(ctx: &TcContext, hook_ingress: bool) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { bpf_redirect(ifindex, back_flags(hook_ingress)) as i32 }
}

/// Only Ethernet frames are rewritten (the L2 header is swapped too).
#[inline(always)]
pub fn has_eth(p: &Packet) -> bool {
    p.l3_off as usize == ETH_HLEN
}
