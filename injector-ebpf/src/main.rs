//! injector's eBPF programs. Entry points only: parsing and decisions live
//! in injector-common, lookups in rules.rs, each fault in actions/.
#![no_std]
#![no_main]
// Map keys are passed by reference on purpose: by value they are copied into
// the generic helper's frame, and the 512-byte BPF stack has no room for it.
#![allow(clippy::needless_borrows_for_generic_args)]

mod actions;
mod cgroup;
mod maps;
mod rules;
mod skb;
mod tc;

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock_addr, classifier},
    programs::{SkBuffContext, SockAddrContext, TcContext},
};

#[classifier]
pub fn tc_ingress(ctx: TcContext) -> i32 {
    tc::run(ctx, true)
}

#[classifier]
pub fn tc_egress(ctx: TcContext) -> i32 {
    tc::run(ctx, false)
}

#[cgroup_skb(ingress)]
pub fn cg_ingress(ctx: SkBuffContext) -> i32 {
    cgroup::skb(ctx, false)
}

#[cgroup_skb(egress)]
pub fn cg_egress(ctx: SkBuffContext) -> i32 {
    cgroup::skb(ctx, true)
}

#[cgroup_sock_addr(connect4)]
pub fn cg_connect4(ctx: SockAddrContext) -> i32 {
    cgroup::connect(ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn cg_connect6(ctx: SockAddrContext) -> i32 {
    cgroup::connect(ctx, true)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
