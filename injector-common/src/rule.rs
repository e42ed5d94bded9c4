//! Map layouts shared with the eBPF side.
//!
//! A fault is compiled by the daemon into one [`Rule`] (stored in an array
//! indexed by rule id) and one or more LPM-trie entries that point at it.
//! The trie is keyed by (scope, direction, remote address prefix) so a packet
//! costs one trie lookup plus a bounded scan of at most [`SET_CAP`] rules,
//! whatever the number of rules installed elsewhere.

/// Scopes of cgroup programs carry this bit; interface scopes are ifindexes.
pub const SCOPE_CGROUP: u64 = 1 << 63;

/// Direction as the target sees it.
pub const DIR_EGRESS: u32 = 1;
pub const DIR_INGRESS: u32 = 2;

/// Protocol bits of [`Rule::protos`].
pub const PROTO_TCP: u8 = 1 << 0;
pub const PROTO_UDP: u8 = 1 << 1;
pub const PROTO_ICMP: u8 = 1 << 2;
pub const PROTO_ANY: u8 = PROTO_TCP | PROTO_UDP | PROTO_ICMP;

/// Drop with the rule's probability (loss, blackhole, zones, partitions).
pub const ACT_DROP: u8 = 1;
/// Reset an established TCP flow, both ends, at once or after time/bytes.
pub const ACT_RESET: u8 = 2;
/// Answer a SYN with RST (ECONNREFUSED); refuse at connect() in cgroups.
pub const ACT_REFUSE: u8 = 3;
/// Steer into a qdisc class (htb rate limit or a netem leaf).
pub const ACT_CLASSIFY: u8 = 4;
/// DNS fault: drop, or answer in place with an error rcode.
pub const ACT_DNS: u8 = 5;

/// Match and count only (noop toxics); never ends the evaluation.
pub const ACT_COUNT: u8 = 6;

/// How many rules one LPM entry may point at.
pub const SET_CAP: usize = 15;

/// Rule slots: the rule array's size and the largest id plus one.
pub const MAX_RULES: u32 = 1 << 17;

/// DNS rules carry a domain list when this bit is set in `dns_flags`.
pub const DNS_HAS_DOMAINS: u8 = 1 << 0;
/// DNS rules match only the listed resolver addresses (through the LPM key)
/// when set; informational for the daemon.
pub const DNS_ANY_RESOLVER: u8 = 1 << 1;

/// A DNS rule's "rcode" that means "drop the query".
pub const DNS_RCODE_DROP: u8 = 0xff;
/// A DNS rule's "rcode" that means "delay the query" (steer it into the
/// rule's netem class).
pub const DNS_RCODE_DELAY: u8 = 0xfe;

/// Bit in `Rule::flags`: the rule only counts, it never acts (dry run).
pub const FLAG_DRY_RUN: u8 = 1 << 0;
/// Bit in `Rule::flags`: decide once per connection (ToxiProxy toxicity).
pub const FLAG_PER_FLOW: u8 = 1 << 1;
/// Bit in `Rule::flags`: only TCP segments carrying FIN (slow_close).
pub const FLAG_FIN_ONLY: u8 = 1 << 2;

/// Data part of the LPM key; the prefix length covers `scope` and `dir`
/// fully (96 bits) plus the remote address prefix. IPv4 addresses are
/// stored IPv4-mapped (`::ffff:a.b.c.d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LpmData {
    pub scope: [u8; 8],
    pub dir: [u8; 4],
    pub addr: [u8; 16],
}

/// Bits of the LPM data that are always matched in full.
pub const LPM_FIXED_BITS: u32 = 96;

impl LpmData {
    pub fn new(scope: u64, dir: u32, addr: [u8; 16]) -> Self {
        LpmData {
            scope: scope.to_be_bytes(),
            dir: dir.to_be_bytes(),
            addr,
        }
    }
}

/// The rule ids an LPM entry points at, in evaluation order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub len: u32,
    pub ids: [u32; SET_CAP],
}

impl RuleSet {
    pub const EMPTY: RuleSet = RuleSet {
        len: 0,
        ids: [0; SET_CAP],
    };
}

/// One compiled fault.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// CLOCK_MONOTONIC deadline in ns (bpf_ktime_get_ns); 0 = no expiry.
    /// Checked in the kernel, so a stopped or killed daemon cannot prolong it.
    pub expires_ns: u64,
    /// ACT_RESET: reset a flow once it is this old (ns since its first packet).
    pub after_ns: u64,
    /// ACT_RESET: reset a flow once this many payload bytes went through.
    pub after_bytes: u64,
    /// Per packet: act when a random u32 is below this; u32::MAX = always.
    pub probability: u32,
    /// Per connection: act on flows whose hash is below this; u32::MAX = all.
    pub toxicity: u32,
    /// netem-style correlation of successive random draws (scaled like probability).
    pub correlation: u32,
    /// Mixed into the flow hash so two rules with the same toxicity pick
    /// different connections.
    pub seed: u32,
    /// ACT_CLASSIFY: the qdisc class id written to skb->priority.
    pub classid: u32,
    /// ACT_CLASSIFY on the ingress hook: the IFB device to redirect to.
    pub redirect_ifindex: u32,
    pub rport_lo: u16,
    pub rport_hi: u16,
    pub lport_lo: u16,
    pub lport_hi: u16,
    pub action: u8,
    pub protos: u8,
    /// ACT_DNS: rcode to answer with, or DNS_RCODE_DROP.
    pub dns_rcode: u8,
    pub dns_flags: u8,
    /// ACT_DNS: query types to match; all zero = every type.
    pub qtypes: [u16; 4],
    pub flags: u8,
    pub _pad: [u8; 3],
}

impl Rule {
    pub const fn zeroed() -> Self {
        Rule {
            expires_ns: 0,
            after_ns: 0,
            after_bytes: 0,
            probability: u32::MAX,
            toxicity: u32::MAX,
            correlation: 0,
            seed: 0,
            classid: 0,
            redirect_ifindex: 0,
            rport_lo: 0,
            rport_hi: 0,
            lport_lo: 0,
            lport_hi: 0,
            action: 0,
            protos: PROTO_ANY,
            dns_rcode: 0,
            dns_flags: 0,
            qtypes: [0; 4],
            flags: 0,
            _pad: [0; 3],
        }
    }
}

/// Per-interface settings, keyed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceCfg {
    /// 1 when the interface is the host end of a namespace's veth: its tc
    /// ingress then carries what the namespace sends (target egress).
    pub flip: u32,
    /// The IFB device packets are redirected to for shaping on ingress.
    pub ifb_ifindex: u32,
}

/// Key of per-flow state used by time- and byte-based resets. Addresses and
/// ports are ordered so both directions of a connection share one entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub rule: u32,
    pub proto: u32,
    pub a: [u8; 16],
    pub b: [u8; 16],
    pub pa: u16,
    pub pb: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState {
    pub first_ns: u64,
    pub bytes: u64,
}

/// Per-rule counters, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub matched_pkts: u64,
    pub matched_bytes: u64,
    pub acted_pkts: u64,
    pub acted_bytes: u64,
}

/// Key of the DNS name table: a rule's exact names and `*.suffix` patterns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsNameKey {
    pub rule: u32,
    /// DNS_MATCH_EXACT or DNS_MATCH_SUFFIX.
    pub kind: u32,
    pub hash: u64,
}

pub const DNS_MATCH_EXACT: u32 = 1;
pub const DNS_MATCH_SUFFIX: u32 = 2;

/// Daemon-wide settings read by every program (array of one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCfg {
    /// The daemon's API port: cgroup programs never touch it, so a rule on
    /// the daemon's own cgroup cannot cut its control channel.
    pub guard_port: u16,
    pub _pad: [u8; 6],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for LpmData {}
    unsafe impl aya::Pod for RuleSet {}
    unsafe impl aya::Pod for Rule {}
    unsafe impl aya::Pod for IfaceCfg {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for DnsNameKey {}
    unsafe impl aya::Pod for GlobalCfg {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        // The kernel compares keys bytewise: implicit padding would make
        // equal keys differ.
        assert_eq!(size_of::<LpmData>(), 28);
        assert_eq!(size_of::<FlowKey>(), 4 + 4 + 16 + 16 + 2 + 2);
        assert_eq!(size_of::<DnsNameKey>(), 16);
        assert_eq!(size_of::<RuleSet>(), 4 * (1 + SET_CAP));
        assert_eq!(size_of::<Rule>(), 72);
    }

    #[test]
    fn lpm_data_is_big_endian_so_prefixes_match_bit_order() {
        let d = LpmData::new(0x0102, DIR_INGRESS, [0; 16]);
        assert_eq!(d.scope, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(d.dir, [0, 0, 0, 2]);
    }
}
