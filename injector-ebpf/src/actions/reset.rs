//! Resetting established TCP connections. The packet that triggers the
//! reset becomes two RSTs: a clone turned around to its sender, and the
//! packet itself, stripped of payload, going on to its receiver. Sequence
//! numbers are the ones each end expects next, so both accept the RST and
//! report ECONNRESET.

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use aya_log_ebpf::debug;
use injector_common::{
    decide::flow_key,
    packet::{Packet, TCP_FIN},
    rule::{FlowState, Rule},
};

use super::rewrite::{
    has_eth, onward_flags, rst, send_back, set_addrs, swap_eth, to_bare_tcp, write_tcp,
};
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
        return TC_ACT_SHOT;
    }
    let fin = if p.tcp_flags & TCP_FIN != 0 { 1 } else { 0 };
    let consumed = p.seq.wrapping_add(p.payload_len as u32).wrapping_add(fin);
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let built = (|| {
        to_bare_tcp(ctx, p)?;
        // To the receiver, as a clone sent on the packet's way: the dropped
        // payload was never delivered, so it still expects p.seq. (The
        // clone passes this hook again; RSTs are never reset.)
        write_tcp(ctx, p, &p.src, &p.dst, rst(p.sport, p.dport, p.seq, p.ack))?;
        ctx.clone_redirect(ifindex, onward_flags(hook_ingress))
            .map_err(|_| ())?;
        // To the sender: it expects our side's next byte, p.ack.
        swap_eth(ctx)?;
        set_addrs(ctx, p, &p.dst, &p.src)?;
        write_tcp(
            ctx,
            p,
            &p.dst,
            &p.src,
            rst(p.dport, p.sport, p.ack, consumed),
        )
    })();
    match built {
        Ok(()) => {
            debug!(ctx, "reset {}:{} <-> {}", p.sport, p.dport, ifindex);
            send_back(ctx, hook_ingress)
        }
        Err(()) => TC_ACT_SHOT,
    }
}
