//! The rule table: rule ids, and the LPM entries that point at them.
//!
//! The kernel's LPM trie returns only the longest matching prefix, so each
//! installed entry must list every rule whose prefix covers it (a rule for
//! 10.0.0.0/8 also appears in the entry for 10.1.0.0/16). This table keeps
//! the rules per prefix and rewrites exactly the entries a change touches.

use std::collections::{BTreeMap, HashMap, HashSet};

use injector_common::rule::{
    LPM_FIXED_BITS, LpmData, MAX_RULES, PROTO_ANY, Rule, RuleSet, SET_CAP,
};

/// A remote address prefix in the IPv4-mapped IPv6 space (0..=128 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: u128,
    pub bits: u8,
}

impl Prefix {
    pub const ANY: Prefix = Prefix { addr: 0, bits: 0 };

    pub fn new(addr: u128, bits: u8) -> Prefix {
        Prefix {
            addr: addr & mask(bits),
            bits,
        }
    }

    pub fn from_ip(ip: std::net::IpAddr, bits: u8) -> Prefix {
        match ip {
            std::net::IpAddr::V4(v4) => {
                Prefix::new(u128::from(v4.to_ipv6_mapped()), 96 + bits.min(32))
            }
            std::net::IpAddr::V6(v6) => Prefix::new(u128::from(v6), bits.min(128)),
        }
    }

    pub fn covers(&self, other: &Prefix) -> bool {
        self.bits <= other.bits && other.addr & mask(self.bits) == self.addr
    }

    fn last(&self) -> u128 {
        self.addr | !mask(self.bits)
    }
}

fn mask(bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits as u32)
    }
}

/// Where a rule applies: a scope (ifindex, or cgroup id | SCOPE_CGROUP) and
/// the target's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub scope: u64,
    pub dir: u32,
}

/// What the table asks the kernel maps to do; applied by the caller, which
/// owns the map handles. Keeping the table pure makes it testable without
/// root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    SetRule(u32, Rule),
    SetEntry(Slot, Prefix, RuleSet),
    DelEntry(Slot, Prefix),
}

struct Record {
    slot: Slot,
    prefixes: Vec<Prefix>,
    order: u64,
}

#[derive(Default)]
pub struct Table {
    direct: HashMap<Slot, BTreeMap<Prefix, Vec<(u64, u32)>>>,
    records: HashMap<u32, Record>,
    next_id: u32,
    next_order: u64,
}

impl Table {
    /// Number of rules installed.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a rule for `prefixes` (empty = any address) in `slot`. Returns
    /// its id and the map operations, in an order that never exposes an
    /// entry pointing at an unwritten rule.
    pub fn add(
        &mut self,
        slot: Slot,
        prefixes: &[Prefix],
        rule: Rule,
    ) -> Result<(u32, Vec<MapOp>), String> {
        let id = self.alloc()?;
        let prefixes: Vec<Prefix> = if prefixes.is_empty() {
            vec![Prefix::ANY]
        } else {
            let mut p = prefixes.to_vec();
            p.sort();
            p.dedup();
            p
        };
        let order = self.next_order;
        self.next_order += 1;
        let map = self.direct.entry(slot).or_default();
        for p in &prefixes {
            map.entry(*p).or_default().push((order, id));
        }
        self.records.insert(
            id,
            Record {
                slot,
                prefixes: prefixes.clone(),
                order,
            },
        );
        let mut ops = vec![MapOp::SetRule(id, rule)];
        match self.recompute(slot, &prefixes) {
            Ok(more) => {
                ops.extend(more);
                Ok((id, ops))
            }
            Err(e) => {
                // Undo: the table must stay as before a refused add.
                let _ = self.remove(id);
                Err(e)
            }
        }
    }

    /// Removes rule `id`: entries first, then the rule is disarmed.
    pub fn remove(&mut self, id: u32) -> Vec<MapOp> {
        let Some(rec) = self.records.remove(&id) else {
            return Vec::new();
        };
        if let Some(map) = self.direct.get_mut(&rec.slot) {
            for p in &rec.prefixes {
                if let Some(v) = map.get_mut(p) {
                    v.retain(|(o, i)| !(*i == id && *o == rec.order));
                    if v.is_empty() {
                        map.remove(p);
                    }
                }
            }
        }
        let mut ops = self.recompute(rec.slot, &rec.prefixes).unwrap_or_default();
        let mut dead = Rule::zeroed();
        dead.protos = 0;
        ops.push(MapOp::SetRule(id, dead));
        if self.direct.get(&rec.slot).is_some_and(|m| m.is_empty()) {
            self.direct.remove(&rec.slot);
        }
        ops
    }

    fn alloc(&mut self) -> Result<u32, String> {
        // Round robin (never 0) so a freed id is reused as late as possible:
        // per-flow state in the kernel's LRU map is keyed by rule id.
        for _ in 0..MAX_RULES {
            self.next_id = (self.next_id % (MAX_RULES - 1)) + 1;
            if !self.records.contains_key(&self.next_id) {
                return Ok(self.next_id);
            }
        }
        Err(format!("all {} rule slots are in use", MAX_RULES - 1))
    }

    /// Rewrites the entries of every installed prefix covered by one of
    /// `changed` in `slot`.
    fn recompute(&self, slot: Slot, changed: &[Prefix]) -> Result<Vec<MapOp>, String> {
        let empty = BTreeMap::new();
        let map = self.direct.get(&slot).unwrap_or(&empty);
        let mut affected: HashSet<Prefix> = changed.iter().copied().collect();
        for c in changed {
            let lo = Prefix {
                addr: c.addr,
                bits: 0,
            };
            let hi = Prefix {
                addr: c.last(),
                bits: 128,
            };
            affected.extend(map.range(lo..=hi).map(|(p, _)| *p).filter(|p| c.covers(p)));
        }
        let mut affected: Vec<Prefix> = affected.into_iter().collect();
        affected.sort();
        let mut ops = Vec::new();
        for p in affected {
            if !map.contains_key(&p) {
                ops.push(MapOp::DelEntry(slot, p));
                continue;
            }
            let mut rules: Vec<(u64, u32)> = Vec::new();
            for bits in 0..=p.bits {
                if let Some(v) = map.get(&Prefix::new(p.addr, bits)) {
                    rules.extend(v);
                }
            }
            rules.sort();
            if rules.len() > SET_CAP {
                return Err(format!(
                    "more than {SET_CAP} rules would apply to the same addresses of one target \
                     and direction; remove some toxics first"
                ));
            }
            let mut set = RuleSet::EMPTY;
            set.len = rules.len() as u32;
            for (i, (_, id)) in rules.iter().enumerate() {
                set.ids[i] = *id;
            }
            ops.push(MapOp::SetEntry(slot, p, set));
        }
        Ok(ops)
    }
}

/// The kernel key of an entry.
pub fn lpm_key(slot: Slot, p: Prefix) -> (u32, LpmData) {
    (
        LPM_FIXED_BITS + p.bits as u32,
        LpmData::new(slot.scope, slot.dir, p.addr.to_be_bytes()),
    )
}

/// A rule that matches every protocol (the zeroed template), for tests.
pub fn any_rule() -> Rule {
    let mut r = Rule::zeroed();
    r.protos = PROTO_ANY;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn p(s: &str, bits: u8) -> Prefix {
        Prefix::from_ip(s.parse::<IpAddr>().unwrap(), bits)
    }

    const S: Slot = Slot { scope: 3, dir: 1 };

    fn entries(ops: &[MapOp]) -> Vec<(Prefix, Vec<u32>)> {
        ops.iter()
            .filter_map(|o| match o {
                MapOp::SetEntry(_, p, s) => Some((*p, s.ids[..s.len as usize].to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ipv4_prefixes_live_in_the_mapped_space() {
        let a = p("10.1.2.3", 8);
        assert_eq!(a.bits, 104);
        assert!(a.covers(&p("10.200.0.1", 32)));
        assert!(!a.covers(&p("11.0.0.1", 32)));
        assert!(Prefix::ANY.covers(&p("::1", 128)));
    }

    #[test]
    fn a_covering_rule_is_copied_into_more_specific_entries() {
        let mut t = Table::default();
        let (a, ops) = t.add(S, &[p("10.1.0.0", 16)], any_rule()).unwrap();
        assert_eq!(ops[0], MapOp::SetRule(a, any_rule()));
        let (b, ops) = t.add(S, &[p("10.0.0.0", 8)], any_rule()).unwrap();
        let mut e = entries(&ops);
        e.sort();
        assert_eq!(
            e,
            vec![(p("10.0.0.0", 8), vec![b]), (p("10.1.0.0", 16), vec![a, b])]
        );
        // Removing the /8 rewrites the /16 without it and drops the /8 entry.
        let ops = t.remove(b);
        assert!(ops.contains(&MapOp::DelEntry(S, p("10.0.0.0", 8))));
        assert_eq!(entries(&ops), vec![(p("10.1.0.0", 16), vec![a])]);
        assert!(matches!(ops.last(), Some(MapOp::SetRule(id, r)) if *id == b && r.protos == 0));
    }

    #[test]
    fn any_address_rules_reach_every_entry_of_their_slot_only() {
        let mut t = Table::default();
        let (a, _) = t.add(S, &[p("192.168.1.1", 32)], any_rule()).unwrap();
        let other = Slot { scope: 4, dir: 1 };
        let (_, _) = t.add(other, &[p("192.168.1.1", 32)], any_rule()).unwrap();
        let (b, ops) = t.add(S, &[], any_rule()).unwrap();
        let mut e = entries(&ops);
        e.sort();
        assert_eq!(
            e,
            vec![(Prefix::ANY, vec![b]), (p("192.168.1.1", 32), vec![a, b])]
        );
    }

    #[test]
    fn too_many_overlapping_rules_are_refused_and_leave_no_trace() {
        let mut t = Table::default();
        for _ in 0..SET_CAP {
            t.add(S, &[], any_rule()).unwrap();
        }
        let before = t.len();
        assert!(t.add(S, &[p("10.0.0.1", 32)], any_rule()).is_err());
        assert_eq!(t.len(), before);
    }

    #[test]
    fn ids_are_not_reused_at_once() {
        let mut t = Table::default();
        let (a, _) = t.add(S, &[], any_rule()).unwrap();
        t.remove(a);
        let (b, _) = t.add(S, &[], any_rule()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn many_disjoint_rules_touch_one_entry_each() {
        let mut t = Table::default();
        for i in 0..2000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let (_, ops) = t
                .add(S, &[Prefix::from_ip(ip.into(), 32)], any_rule())
                .unwrap();
            assert_eq!(ops.len(), 2);
        }
    }
}
