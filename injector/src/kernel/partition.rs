//! Network partitions: group A cannot reach group B and B cannot reach A,
//! everyone else unaffected, in one call. A member of a group is a target
//! (`{"netns": ...}`, `{"container": ...}`, any kernel-native target) or an
//! address or CIDR string. The cut is the blackhole machinery: on every
//! target member, drop rules for both directions whose LPM prefixes are the
//! other group's addresses. Targets contribute their own addresses; a
//! cgroup has none of its own (it shares the host's), so it is cut on its
//! side only and the other group needs addresses from somewhere else.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use injector_common::rule::{ACT_DROP, DIR_EGRESS, DIR_INGRESS, Rule};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    DataPlane, Installed, RuleSpec, mono_now_ns, native::parse_prefixes, resolve, table::Prefix,
};
use crate::{ApiError, model::Target};

/// A partition as asked for: the groups as given, for listings.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    pub name: String,
    pub a: Vec<Value>,
    pub b: Vec<Value>,
    pub ttl_ms: Option<u64>,
}

impl PartitionSpec {
    /// `{"name": "split", "a": [...], "b": [...], "ttl_ms": 5000}`.
    pub fn from_json(v: &Value) -> Result<PartitionSpec, ApiError> {
        let bad = |m: &str| ApiError::bad_body(m);
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected {\"name\", \"a\": [...], \"b\": [...]}"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| bad("name must be a non-empty string without '/'"))?;
        let side = |k: &str| -> Result<Vec<Value>, ApiError> {
            match obj.get(k) {
                Some(Value::Array(v)) if !v.is_empty() => Ok(v.clone()),
                _ => Err(ApiError::bad_body(format!(
                    "{k} must be a non-empty array of targets and CIDRs"
                ))),
            }
        };
        let ttl_ms = match obj.get("ttl_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| bad("ttl_ms must be a non-negative integer"))?,
            )
            .filter(|ms| *ms > 0),
        };
        Ok(PartitionSpec {
            name: name.to_string(),
            a: side("a")?,
            b: side("b")?,
            ttl_ms,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"name": self.name, "a": self.a, "b": self.b});
        if let Some(ms) = self.ttl_ms {
            v["ttl_ms"] = json!(ms);
        }
        v
    }
}

/// One group, resolved: where to install rules, and its addresses.
struct Group {
    attach: Vec<resolve::Attach>,
    prefixes: Vec<Prefix>,
}

async fn group(members: &[Value], label: &str) -> Result<Group, ApiError> {
    let mut g = Group {
        attach: Vec::new(),
        prefixes: Vec::new(),
    };
    for m in members {
        match m {
            Value::String(cidr) => g
                .prefixes
                .extend(parse_prefixes(std::slice::from_ref(cidr))?),
            other => {
                let t = Target::from_json(other)
                    .map_err(|e| ApiError::bad_request(format!("group {label}: {e}")))?;
                let r = resolve::resolve(&t).await?;
                if let resolve::Attach::Iface { .. } = r.attach {
                    g.prefixes.extend(
                        r.local
                            .iter()
                            .map(|ip| Prefix::from_ip(*ip, if ip.is_ipv4() { 32 } else { 128 })),
                    );
                }
                g.attach.push(r.attach);
            }
        }
    }
    if g.prefixes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "group {label} has no addresses to cut (a cgroup shares the host's; add its CIDRs)"
        )));
    }
    Ok(g)
}

struct Cut {
    spec: PartitionSpec,
    /// Tells a partition from a later one of the same name (expiry timers).
    id: u64,
    rules: Vec<Installed>,
}

/// Every partition in force.
#[derive(Clone, Default)]
pub struct Partitions {
    cuts: Arc<Mutex<BTreeMap<String, Cut>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Partitions {
    pub async fn list(&self) -> Vec<PartitionSpec> {
        let cuts = self.cuts.lock().await;
        cuts.values().map(|c| c.spec.clone()).collect()
    }

    pub async fn get(&self, name: &str) -> Option<PartitionSpec> {
        self.cuts.lock().await.get(name).map(|c| c.spec.clone())
    }

    /// Cuts A from B both ways; all or nothing.
    pub async fn create(
        &self,
        dp: &Arc<DataPlane>,
        spec: PartitionSpec,
    ) -> Result<PartitionSpec, ApiError> {
        let mut cuts = self.cuts.lock().await;
        if cuts.contains_key(&spec.name) {
            return Err(ApiError::new(409, "partition already exists"));
        }
        let a = group(&spec.a, "a").await?;
        let b = group(&spec.b, "b").await?;
        if a.attach.is_empty() && b.attach.is_empty() {
            return Err(ApiError::bad_request(
                "a partition needs at least one target (netns, container, pid, interface or \
                 cgroup) to act on; CIDRs alone only say what to cut",
            ));
        }
        let mut rule = Rule::zeroed();
        rule.action = ACT_DROP;
        let expires = spec
            .ttl_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        if let Some(ms) = spec.ttl_ms {
            // The kernel ends the cut on time even if the daemon cannot.
            rule.expires_ns = mono_now_ns() + ms.saturating_mul(1_000_000);
        }
        let mut rules = Vec::new();
        for (from, to) in [(&a, &b), (&b, &a)] {
            let specs: Vec<RuleSpec> = [DIR_EGRESS, DIR_INGRESS]
                .into_iter()
                .map(|dir| RuleSpec {
                    dir,
                    prefixes: to.prefixes.clone(),
                    rule,
                    shape: None,
                    dns: Vec::new(),
                })
                .collect();
            for attach in &from.attach {
                match dp.install(attach, &specs).await {
                    Ok(done) => rules.extend(done),
                    Err(e) => {
                        dp.uninstall(rules).await;
                        return Err(e);
                    }
                }
            }
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            partition = spec.name,
            rules = rules.len(),
            "partition in force"
        );
        cuts.insert(
            spec.name.clone(),
            Cut {
                spec: spec.clone(),
                id,
                rules,
            },
        );
        if let Some(at) = expires {
            let (me, dp, name) = (self.clone(), dp.clone(), spec.name.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                me.heal_if(&dp, &name, Some(id)).await;
            });
        }
        Ok(spec)
    }

    /// Heals a partition; false when there is none of that name.
    pub async fn heal(&self, dp: &DataPlane, name: &str) -> bool {
        self.heal_if(dp, name, None).await
    }

    async fn heal_if(&self, dp: &DataPlane, name: &str, id: Option<u64>) -> bool {
        let mut cuts = self.cuts.lock().await;
        match cuts.get(name) {
            Some(c) if id.is_none_or(|id| c.id == id) => {}
            _ => return false,
        }
        let cut = cuts.remove(name).expect("present");
        dp.uninstall(cut.rules).await;
        tracing::info!(partition = name, "partition healed");
        true
    }

    /// Heals every partition (POST /reset, shutdown).
    pub async fn heal_all(&self, dp: &DataPlane) {
        let mut cuts = self.cuts.lock().await;
        for (_, cut) in std::mem::take(&mut *cuts) {
            dp.uninstall(cut.rules).await;
        }
    }
}
