//! `dns`: fail name resolution for the target. Matching queries (by name,
//! `*.suffix` pattern and query type) are dropped, delayed, or answered in
//! the kernel with SERVFAIL, NXDOMAIN or REFUSED; others pass untouched.

use super::{DnsPlan, KernelAction, Shape, check_probability};
use injector_common::dns::{self, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL};

crate::attributes!(Dns = "DnsToxic" {
    action: String,
    domains: Vec<String>,
    qtypes: Vec<String>,
    resolvers: Vec<String>,
    probability: f64,
    delay: i64,
    jitter: i64,
});

/// A domain pattern: an exact name or `*.suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(u64),
    Below(u64),
}

impl Dns {
    pub fn validate(&self) -> Result<(), String> {
        self.rcode()?;
        self.patterns()?;
        self.qtype_codes()?;
        check_probability("probability", self.probability)?;
        if self.delay < 0 || self.jitter < 0 {
            return Err("dns delay and jitter must be >= 0 ms".into());
        }
        if self.action.eq_ignore_ascii_case("delay") && self.delay == 0 {
            return Err("dns action delay needs a delay in ms".into());
        }
        Ok(())
    }

    /// None = drop; Some(rcode) = answer; delay is handled apart.
    fn rcode(&self) -> Result<Option<u8>, String> {
        match self.action.to_ascii_lowercase().as_str() {
            "drop" | "" => Ok(None),
            "delay" => Ok(None),
            "servfail" => Ok(Some(RCODE_SERVFAIL)),
            "nxdomain" => Ok(Some(RCODE_NXDOMAIN)),
            "refused" => Ok(Some(RCODE_REFUSED)),
            other => Err(format!(
                "dns action {other:?} is not one of drop, delay, servfail, nxdomain, refused"
            )),
        }
    }

    pub fn patterns(&self) -> Result<Vec<Pattern>, String> {
        self.domains
            .iter()
            .map(|d| {
                let (below, name) = match d.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, d.as_str()),
                };
                let h = dns::hash_dotted(name).ok_or_else(|| format!("invalid domain {d:?}"))?;
                Ok(if below {
                    Pattern::Below(h)
                } else {
                    Pattern::Exact(h)
                })
            })
            .collect()
    }

    pub fn qtype_codes(&self) -> Result<Vec<u16>, String> {
        if self.qtypes.len() > 4 {
            return Err("dns qtypes takes at most 4 types".into());
        }
        self.qtypes
            .iter()
            .map(|q| {
                q.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .or_else(|| dns::qtype_code(q))
                    .ok_or_else(|| format!("unknown query type {q:?}"))
            })
            .collect()
    }

    /// 0 (the Go zero value) means every matching query.
    pub fn effective_probability(&self) -> f64 {
        if self.probability == 0.0 {
            1.0
        } else {
            self.probability
        }
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        let plan = DnsPlan {
            rcode: self.rcode()?,
            patterns: self.patterns()?,
            qtypes: self.qtype_codes()?,
            resolvers: self.resolvers.clone(),
            probability: self.effective_probability(),
            delay: self.action.eq_ignore_ascii_case("delay").then(|| Shape {
                delay_us: self.delay as u64 * 1000,
                jitter_us: self.jitter as u64 * 1000,
                ..Shape::default()
            }),
        };
        Ok(vec![KernelAction::Dns(plan)])
    }
}
