//! What the BPF per-rule counters mean. The programs count, for each rule,
//! the packets it matched and those it acted on; what "acted" means depends
//! on the rule's action, which only the daemon knows, so the label is
//! derived here from the compiled rule.

use injector_common::rule::{
    ACT_CLASSIFY, ACT_COUNT, ACT_DNS, ACT_DROP, ACT_REFUSE, ACT_RESET, Counters, DNS_RCODE_DELAY,
    DNS_RCODE_DROP, Rule,
};

/// The action label of a rule's "acted" counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Dropped,
    Reset,
    Refused,
    /// Steered into a qdisc class: delayed, rate limited (or both).
    Delayed,
    DnsAnswered,
    /// Noop toxics: matching is all they do.
    Counted,
}

impl Action {
    pub fn of(r: &Rule) -> Action {
        match r.action {
            ACT_DROP => Action::Dropped,
            ACT_RESET => Action::Reset,
            ACT_REFUSE => Action::Refused,
            ACT_CLASSIFY => Action::Delayed,
            ACT_DNS if r.dns_rcode == DNS_RCODE_DROP => Action::Dropped,
            ACT_DNS if r.dns_rcode == DNS_RCODE_DELAY => Action::Delayed,
            ACT_DNS => Action::DnsAnswered,
            ACT_COUNT => Action::Counted,
            _ => Action::Counted,
        }
    }

    /// The `action` label in /metrics; "matched" is the other one.
    pub fn label(self) -> &'static str {
        match self {
            Action::Dropped => "dropped",
            Action::Reset => "reset",
            Action::Refused => "refused",
            Action::Delayed => "delayed",
            Action::DnsAnswered => "dns_answered",
            Action::Counted => "counted",
        }
    }
}

pub fn add(total: &mut Counters, c: &Counters) {
    total.matched_pkts += c.matched_pkts;
    total.matched_bytes += c.matched_bytes;
    total.acted_pkts += c.acted_pkts;
    total.acted_bytes += c.acted_bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rules_are_labelled_by_what_they_do_to_the_query() {
        let mut r = Rule::zeroed();
        r.action = ACT_DNS;
        r.dns_rcode = DNS_RCODE_DROP;
        assert_eq!(Action::of(&r), Action::Dropped);
        r.dns_rcode = DNS_RCODE_DELAY;
        assert_eq!(Action::of(&r), Action::Delayed);
        r.dns_rcode = 3;
        assert_eq!(Action::of(&r).label(), "dns_answered");
        r.action = ACT_REFUSE;
        assert_eq!(Action::of(&r).label(), "refused");
    }
}
