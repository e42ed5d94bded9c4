//! Rule lookup: one LPM lookup for (scope, direction, remote address), then a
//! bounded walk over the rules it names. The first rule that fires with a
//! terminal action decides; a classify rule is remembered and applied when
//! no terminal rule fires.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_loop},
    maps::lpm_trie::Key,
};
use injector_common::{
    decide::{below, correlated, flow_draw, flow_hash, flow_key, selects, view},
    packet::{Packet, TCP_RST, TCP_SYN},
    rule::{
        ACT_CLASSIFY, ACT_COUNT, ACT_DNS, ACT_REFUSE, ACT_RESET, FLAG_DRY_RUN, FLAG_PER_FLOW,
        LPM_FIXED_BITS, LpmData, RuleSet, SET_CAP,
    },
};

use crate::{
    actions::{count, dns, reset},
    maps::{CORR, RULE_LPM, RULES},
};

/// What the program must do with the packet.
pub struct Outcome {
    /// Terminal action (ACT_*), 0 = none.
    pub action: u8,
    pub rule: u32,
    pub dns_rcode: u8,
    /// ACT_DNS: where the DNS message starts and ends in the packet.
    pub dns_off: u16,
    pub dns_end: u16,
    /// Shaping: qdisc class (0 = none) and IFB for the ingress hook.
    pub classid: u32,
    pub redirect: u32,
}

impl Outcome {
    pub const PASS: Outcome = Outcome {
        action: 0,
        rule: 0,
        dns_rcode: 0,
        dns_off: 0,
        dns_end: 0,
        classid: 0,
        redirect: 0,
    };
}

/// How per-connection decisions draw their dice: from the flow hash (packet
/// hooks see every packet of a connection) or afresh (connect() is the one
/// event of a connection).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FlowDice {
    Hash,
    Fresh,
}

/// What the caller knows besides the packet: kept in one struct so the
/// out-of-line calls stay within BPF's five argument registers.
pub struct Lookup {
    pub scope: u64,
    pub dir: u32,
    pub len: u32,
    pub dice: FlowDice,
    pub now: u64,
    /// Hash of the packet's connection (filled by `evaluate`).
    pub flow: u32,
}

/// State of the rule walk, handed to the bpf_loop callback.
#[repr(C)]
struct Walk {
    l: *const Lookup,
    p: *const Packet,
    set: *const RuleSet,
    out: *mut Outcome,
}

/// Out of line: the rule walk needs its own stack frame; the 512-byte BPF
/// stack cannot hold it inlined together with the answering actions.
#[inline(never)]
pub fn evaluate(l: &mut Lookup, p: &Packet, out: &mut Outcome) {
    *out = Outcome::PASS;
    let v = view(p, l.dir);
    let key = Key::new(LPM_FIXED_BITS + 128, LpmData::new(l.scope, l.dir, v.remote));
    let Some(set) = RULE_LPM.get(&key) else {
        return;
    };
    l.flow = flow_hash(&flow_key(0, p), 0);
    let mut w = Walk { l, p, set, out };
    let n = if set.len as usize > SET_CAP {
        SET_CAP as u32
    } else {
        set.len
    };
    // bpf_loop: the rule body is verified once, not once per unrolled step.
    unsafe {
        bpf_loop(
            n,
            walk_rule as *mut c_void,
            &mut w as *mut Walk as *mut c_void,
            0,
        )
    };
}

extern "C" fn walk_rule(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let (l, p, set, out) = unsafe { (&*w.l, &*w.p, &*w.set, &mut *w.out) };
    let i = i as usize;
    if i >= SET_CAP {
        return 1;
    }
    if fires(l, p, set.ids[i], out) { 1 } else { 0 }
}

/// One rule: does it select the packet, is the dice with it, and what does
/// it do. Returns true when a terminal action was chosen.
#[inline(always)]
fn fires(l: &Lookup, p: &Packet, id: u32, out: &mut Outcome) -> bool {
    let Some(r) = RULES.get(id) else {
        return false;
    };
    let v = view(p, l.dir);
    if !selects(r, p, &v, l.now) {
        return false;
    }
    if r.flags & FLAG_PER_FLOW != 0 && r.toxicity != u32::MAX {
        let draw = match l.dice {
            FlowDice::Hash => flow_draw(l.flow, r.seed),
            FlowDice::Fresh => unsafe { bpf_get_prandom_u32() },
        };
        if !below(draw, r.toxicity) {
            return false;
        }
    }
    count::matched(id, l.len);
    match r.action {
        ACT_REFUSE if !p.is_syn() => return false,
        ACT_RESET => {
            if !p.is_tcp() || p.tcp_flags & (TCP_SYN | TCP_RST) != 0 {
                return false;
            }
            if !reset::due(id, r, p, l.now) {
                return false;
            }
        }
        ACT_DNS if !dns::matches(id, r, out) => return false,
        _ => {}
    }
    if r.probability != u32::MAX {
        let mut rnd = unsafe { bpf_get_prandom_u32() };
        if r.correlation != 0
            && let Some(last) = CORR.get_ptr_mut(id)
        {
            rnd = correlated(rnd, unsafe { *last }, r.correlation);
            unsafe { *last = rnd };
        }
        if !below(rnd, r.probability) {
            return false;
        }
    }
    if r.flags & FLAG_DRY_RUN != 0 {
        return false;
    }
    count::acted(id, l.len);
    if r.action == ACT_COUNT {
        return false;
    }
    if r.action == ACT_CLASSIFY {
        if out.classid == 0 {
            out.classid = r.classid;
            out.redirect = r.redirect_ifindex;
        }
        return false;
    }
    out.action = r.action;
    out.rule = id;
    out.dns_rcode = r.dns_rcode;
    if r.action == ACT_DNS {
        // A delayed query is steered like a shaping rule.
        out.classid = r.classid;
        out.redirect = r.redirect_ifindex;
    }
    true
}
