//! Resetting established TCP connections. The packet that triggers the
//! reset becomes two RSTs: a clone turned around to its sender, and the
//! packet itself, stripped of payload, going on to its receiver. Sequence
//! numbers are the ones each end expects next, so both accept the RST and
//! report ECONNRESET.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use injector_common::{
    decide::flow_key,
    packet::{Packet, TCP_FIN},
    rule::{FlowState, Rule},
};

use super::rewrite::{back_flags, has_eth, rst, swap_eth, set_addrs, to_bare_tcp, write_tcp};
use crate::maps::FLOWS;

/// Is the reset due for this flow? Immediate resets are always due; delayed
/// ones count the flow's age and bytes from the first packet the rule saw.
#[inline(never)]
pub fn due(id: u32, r: &Rule, p: &Packet, now: u64) -> bool {
    if r.after_ns == 0 && r.after_bytes == 0 {
        return true;
    }
    let key = flow_key(id, p);
    let payload = p.payload_len as u64;
    match FLOWS.get_ptr_mut(&key) {
        Some(st) => {
            let st = unsafe { &mut *st };
            let old = r.after_ns != 0 && now.saturating_sub(st.first_ns) >= r.after_ns;
            let full = r.after_bytes != 0 && st.bytes + payload > r.after_bytes;
            st.bytes += payload;
            old || full
        }
        None => {
            let full = r.after_bytes != 0 && payload > r.after_bytes;
            let st = FlowState {
                first_ns: now,
                bytes: payload,
            };
            let _ = FLOWS.insert(&key, &st, 0);
            full
        }
    }
}

#[inline(never)]
pub fn both(ctx: &TcContext, p: &Packet, hook_ingress: bool) -> i32 {
    if !has_eth(p) {
        return TC_ACT_SHOT as i32;
    }
    let fin = if p.tcp_flags & TCP_FIN != 0 { 1 } else { 0 };
    let consumed = p.seq.wrapping_add(p.payload_len as u32).wrapping_add(fin);
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let built = (|| {
        to_bare_tcp(ctx, p)?;
        // To the sender: it expects our side's next byte, p.ack.
        swap_eth(ctx)?;
        set_addrs(ctx, p, &p.dst, &p.src)?;
        write_tcp(ctx, p, &p.dst, &p.src, rst(p.dport, p.sport, p.ack, consumed))?;
        ctx.clone_redirect(ifindex, back_flags(hook_ingress)).map_err(|_| ())?;
        // To the receiver: the dropped payload was never delivered, so it
        // still expects p.seq.
        swap_eth(ctx)?;
        set_addrs(ctx, p, &p.src, &p.dst)?;
        write_tcp(ctx, p, &p.src, &p.dst, rst(p.sport, p.dport, p.seq, p.ack))
    })();
    match built {
        Ok(()) => TC_ACT_OK,
        Err(()) => TC_ACT_SHOT as i32,
    }
}
