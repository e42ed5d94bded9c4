//! The cgroup programs: packet drops for the sockets of a cgroup (any
//! namespace), and connect() refusal.

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_ktime_get_ns, bpf_skb_ancestor_cgroup_id},
    programs::{SkBuffContext, SockAddrContext},
};
use injector_common::{
    decide::view,
    packet::{IPPROTO_TCP, Packet, TCP_SYN, parse_ip, v4_mapped},
    rule::{ACT_DNS, ACT_DROP, ACT_REFUSE, DIR_EGRESS, DIR_INGRESS, DNS_RCODE_DROP, SCOPE_CGROUP},
};

use crate::{
    actions::{dns, drop, refuse},
    maps::{CGROUPS, GLOBAL, PACKET},
    rules::{FlowDice, Lookup, Outcome, evaluate},
    skb::Skb,
};

const PASS: i32 = 1;
/// Nesting levels walked to find the targeted ancestor.
const MAX_LEVELS: i32 = 24;
const SOCK_STREAM: u32 = 1;

/// The deepest cgroup with rules that contains the socket, as a scope.
#[inline(always)]
fn scope(ancestor: impl Fn(i32) -> u64) -> Option<u64> {
    let mut found = 0u64;
    for level in 0..MAX_LEVELS {
        let id = ancestor(level);
        if id == 0 {
            break;
        }
        if unsafe { CGROUPS.get(id) }.is_some() {
            found = id;
        }
    }
    if found == 0 {
        None
    } else {
        Some(found | SCOPE_CGROUP)
    }
}

#[inline(always)]
fn guarded(port_a: u16, port_b: u16) -> bool {
    match GLOBAL.get(0) {
        Some(g) if g.guard_port != 0 => port_a == g.guard_port || port_b == g.guard_port,
        _ => false,
    }
}

#[inline(always)]
pub fn skb(ctx: SkBuffContext, egress: bool) -> i32 {
    let Some(scope) = scope(|l| unsafe { bpf_skb_ancestor_cgroup_id(ctx.skb.skb, l) }) else {
        return PASS;
    };
    let b = Skb(&ctx.skb);
    let Some(p) = PACKET.get_ptr_mut(0) else {
        return PASS;
    };
    let p = unsafe { &mut *p };
    if !parse_ip(&b, 0, p) {
        return PASS;
    }
    let dir = if egress { DIR_EGRESS } else { DIR_INGRESS };
    let v = view(p, dir);
    if guarded(v.local_port, v.remote_port) {
        return PASS;
    }
    dns::prepare(&ctx.skb, p);
    let mut o = Outcome::PASS;
    let mut l = Lookup {
        scope,
        dir,
        len: ctx.len(),
        dice: FlowDice::Hash,
        now: unsafe { bpf_ktime_get_ns() },
        flow: 0,
    };
    evaluate(&mut l, p, &mut o);
    let drops = o.action == ACT_DROP || (o.action == ACT_DNS && o.dns_rcode == DNS_RCODE_DROP);
    match (drops, egress) {
        (true, true) => drop::CGROUP_EGRESS,
        (true, false) => drop::CGROUP_INGRESS,
        _ => PASS,
    }
}

#[inline(always)]
pub fn connect(ctx: SockAddrContext, v6: bool) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_STREAM {
        return PASS;
    }
    let Some(scope) = scope(|l| unsafe { bpf_get_current_ancestor_cgroup_id(l) }) else {
        return PASS;
    };
    let dport = u16::from_be(sa.user_port as u16);
    if guarded(dport, 0) {
        return PASS;
    }
    let dst = if v6 {
        let w = sa.user_ip6;
        let mut a = [0u8; 16];
        a[0..4].copy_from_slice(&w[0].to_ne_bytes());
        a[4..8].copy_from_slice(&w[1].to_ne_bytes());
        a[8..12].copy_from_slice(&w[2].to_ne_bytes());
        a[12..16].copy_from_slice(&w[3].to_ne_bytes());
        a
    } else {
        v4_mapped(u32::from_be(sa.user_ip4))
    };
    let Some(p) = PACKET.get_ptr_mut(0) else {
        return PASS;
    };
    let p = unsafe { &mut *p };
    *p = Packet::default();
    p.v6 = v6;
    p.proto = IPPROTO_TCP;
    p.dst = dst;
    p.dport = dport;
    p.tcp_flags = TCP_SYN;
    dns::forget();
    let mut o = Outcome::PASS;
    let mut l = Lookup {
        scope,
        dir: DIR_EGRESS,
        len: 0,
        dice: FlowDice::Fresh,
        now: unsafe { bpf_ktime_get_ns() },
        flow: 0,
    };
    evaluate(&mut l, p, &mut o);
    if o.action == ACT_REFUSE {
        return refuse::at_connect();
    }
    PASS
}
