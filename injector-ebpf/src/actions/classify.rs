//! Shaping: steer the packet into the htb class that carries the rule's rate
//! limit or netem leaf. htb reads skb->priority when its major number is the
//! root qdisc's handle, so no tc filter chain is needed. On the ingress hook
//! there is no queue, so the packet goes through the interface's IFB, whose
//! root htb holds the classes.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_redirect, programs::TcContext};

#[inline(always)]
pub fn steer(ctx: &TcContext, classid: u32, redirect: u32, hook_ingress: bool) -> i32 {
    unsafe { (*ctx.skb.skb).priority = classid };
    if hook_ingress && redirect != 0 {
        return unsafe { bpf_redirect(redirect, 0) } as i32;
    }
    TC_ACT_UNSPEC
}
