//! Dropping: loss, blackholes, zones and partitions all end here.

use aya_ebpf::bindings::TC_ACT_SHOT;

/// tc: the packet vanishes; senders see nothing (true silent loss).
pub const TC: i32 = TC_ACT_SHOT;

/// cgroup_skb egress: 0 would make UDP sendto() fail with EPERM, which no
/// real network does. 2 ("drop, congestion") becomes NET_XMIT_DROP, which
/// UDP hides from the application and TCP treats as a lost segment.
pub const CGROUP_EGRESS: i32 = 2;

/// cgroup_skb ingress: 0 drops silently.
pub const CGROUP_INGRESS: i32 = 0;
