//! Refusing connections. On an interface the SYN is turned into the RST|ACK
//! a closed port would send, so the connecting side gets ECONNREFUSED at
//! once. In a cgroup the connect() hook fails the call itself.

use aya_ebpf::{bindings::TC_ACT_SHOT, helpers::bpf_set_retval, programs::TcContext};
use aya_log_ebpf::debug;
use injector_common::packet::Packet;

use super::rewrite::{has_eth, rst, send_back, set_addrs, swap_eth, to_bare_tcp, write_tcp};

const ECONNREFUSED: i32 = 111;

#[inline(never)]
pub fn bounce_syn(ctx: &TcContext, p: &Packet, hook_ingress: bool) -> i32 {
    if !has_eth(p) {
        return TC_ACT_SHOT;
    }
    let built = (|| {
        to_bare_tcp(ctx, p)?;
        swap_eth(ctx)?;
        set_addrs(ctx, p, &p.dst, &p.src)?;
        write_tcp(
            ctx,
            p,
            &p.dst,
            &p.src,
            rst(p.dport, p.sport, 0, p.seq.wrapping_add(1)),
        )
    })();
    match built {
        Ok(()) => {
            debug!(ctx, "refused a connection to port {}", p.dport);
            send_back(ctx, hook_ingress)
        }
        // A SYN that cannot be answered is still not let through.
        Err(()) => TC_ACT_SHOT,
    }
}

/// connect(): fail with ECONNREFUSED; returning 0 rejects the call and the
/// retval replaces the default EPERM.
#[inline(always)]
pub fn at_connect() -> i32 {
    unsafe { bpf_set_retval(-ECONNREFUSED) };
    0
}
