//! Every map the programs share with the daemon. Names are what the daemon
//! looks them up by; sizes bound what one host can hold.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use injector_common::rule::{
    Counters, DnsNameKey, FlowKey, FlowState, GlobalCfg, IfaceCfg, LpmData, MAX_RULES, Rule,
    RuleSet,
};

/// (scope, direction, remote prefix) -> the rules to evaluate, in order.
#[map]
pub static RULE_LPM: LpmTrie<LpmData, RuleSet> = LpmTrie::with_max_entries(1 << 18, 0);

/// Rule id -> compiled rule.
#[map]
pub static RULES: Array<Rule> = Array::with_max_entries(MAX_RULES, 0);

/// Interfaces the daemon manages; programs ignore every other one.
#[map]
pub static IFACES: HashMap<u32, IfaceCfg> = HashMap::with_max_entries(4096, 0);

/// Cgroup ids the daemon attached to (value unused).
#[map]
pub static CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Per-flow state of time- and byte-based resets.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(1 << 16, 0);

/// Rule id -> packet/byte counters (read by /metrics).
#[map]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_RULES, 0);

/// Rule id -> last random draw, for correlated loss.
#[map]
pub static CORR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_RULES, 0);

/// (rule, kind, name hash) -> present, for DNS domain lists.
#[map]
pub static DNS_NAMES: HashMap<DnsNameKey, u8> = HashMap::with_max_entries(1 << 16, 0);

#[map]
pub static GLOBAL: Array<GlobalCfg> = Array::with_max_entries(1, 0);

/// The DNS query of the packet being handled (too large for the stack).
#[map]
pub static DNS_QUERY: PerCpuArray<crate::actions::dns::Query> = PerCpuArray::with_max_entries(1, 0);

/// The packet being handled, parsed once per program run.
#[map]
pub static PACKET: PerCpuArray<injector_common::packet::Packet> =
    PerCpuArray::with_max_entries(1, 0);
