//! The tc programs (tcx links, or clsact where tcx is missing) on the
//! interfaces the daemon manages.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_ktime_get_ns, programs::TcContext};
use injector_common::{
    packet::parse_eth,
    rule::{
        ACT_DNS, ACT_DROP, ACT_REFUSE, ACT_RESET, DIR_EGRESS, DIR_INGRESS, DNS_RCODE_DELAY,
        DNS_RCODE_DROP,
    },
};

use crate::{
    actions::{classify, dns, drop, refuse, reset},
    maps::{IFACES, PACKET},
    rules::{FlowDice, Lookup, Outcome, evaluate},
    skb::Skb,
};

#[inline(always)]
pub fn run(ctx: TcContext, hook_ingress: bool) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(cfg) = (unsafe { IFACES.get(ifindex) }) else {
        return TC_ACT_UNSPEC;
    };
    let b = Skb(&ctx.skb);
    let Some(p) = PACKET.get_ptr_mut(0) else {
        return TC_ACT_UNSPEC;
    };
    let p = unsafe { &mut *p };
    if !parse_eth(&b, p) {
        return TC_ACT_UNSPEC;
    }
    // On the host end of a namespace's veth, what arrives is what the
    // namespace sent: the target's egress.
    let dir = if hook_ingress != (cfg.flip != 0) {
        DIR_INGRESS
    } else {
        DIR_EGRESS
    };
    dns::prepare(&ctx.skb, p);
    let mut o = Outcome::PASS;
    let mut l = Lookup {
        scope: ifindex as u64,
        dir,
        len: ctx.len(),
        dice: FlowDice::Hash,
        now: unsafe { bpf_ktime_get_ns() },
        flow: 0,
    };
    evaluate(&mut l, p, &mut o);
    match o.action {
        ACT_DROP => drop::TC,
        ACT_RESET => reset::both(&ctx, p, hook_ingress),
        ACT_REFUSE => refuse::bounce_syn(&ctx, p, hook_ingress),
        ACT_DNS if o.dns_rcode == DNS_RCODE_DROP => drop::TC,
        ACT_DNS if o.dns_rcode == DNS_RCODE_DELAY => {
            classify::steer(&ctx, o.classid, o.redirect, hook_ingress)
        }
        ACT_DNS => dns::answer(&ctx, p, &o, hook_ingress),
        _ if o.classid != 0 => classify::steer(&ctx, o.classid, o.redirect, hook_ingress),
        _ => TC_ACT_UNSPEC,
    }
}
