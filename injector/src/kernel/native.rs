//! A kernel-native proxy: a resolved target, the traffic its `upstream`
//! selects, and the rules its toxics compiled to. No byte of the traffic
//! passes through the daemon.
//!
//! Streams: "upstream" is what goes to the upstream, "downstream" what
//! comes back. When the upstream is the target itself (its own address,
//! e.g. `{"container":"orders"}` with upstream `orders:8080`), upstream
//! traffic is what the target receives on the upstream port; otherwise it
//! is what the target sends to the upstream's addresses and port.

use std::{sync::Arc, time::Instant};

use injector_common::{
    decide::scale,
    rule::{
        ACT_CLASSIFY, ACT_COUNT, ACT_DNS, ACT_DROP, ACT_REFUSE, ACT_RESET, DIR_EGRESS, DIR_INGRESS,
        DNS_HAS_DOMAINS, DNS_MATCH_EXACT, DNS_MATCH_SUFFIX, DNS_RCODE_DELAY, DNS_RCODE_DROP,
        FLAG_FIN_ONLY, FLAG_PER_FLOW, PROTO_TCP, PROTO_UDP, Rule,
    },
};

use super::{
    DataPlane, Installed, RuleSpec,
    counters::Action,
    mono_now_ns,
    reaper::{self, ReapSpec, Reaper},
    resolve::{self, Attach, Resolved},
    selector::{self, Selector},
    table::Prefix,
};
use crate::{
    ApiError,
    faults::{KernelAction, dns::Pattern},
    model::{Stream, Target, Toxic},
};

pub struct KernelProxy {
    dp: Arc<DataPlane>,
    name: String,
    target: Resolved,
    selector: Selector,
    /// The upstream is the target itself.
    inside: bool,
    upstream: String,
    toxics: Vec<(Toxic, Applied)>,
    /// Refuse + reset rules while the proxy is disabled.
    disabled: Option<Applied>,
}

/// A toxic's kernel rules, for its counters.
pub struct ToxicRules {
    pub toxic: String,
    /// (rule id, what its "acted" counters mean).
    pub rules: Vec<(u32, Action)>,
    /// Connections its socket reapers destroyed (cgroup targets).
    pub socket_resets: u64,
}

/// What one toxic put in place.
#[derive(Default)]
pub struct Applied {
    rules: Vec<Installed>,
    /// Socket reapers (resets on cgroup targets); stop when dropped.
    reapers: Vec<Reaper>,
}

/// A toxic compiled: rules for the BPF programs, and resets that cgroup
/// targets need done from userland.
#[derive(Default)]
struct Plan {
    rules: Vec<RuleSpec>,
    reapers: Vec<ReapSpec>,
}

impl KernelProxy {
    /// Resolves the target and the upstream selector (names are resolved
    /// now); installs nothing until toxics arrive.
    pub async fn start(
        dp: &Arc<DataPlane>,
        name: &str,
        upstream: &str,
        target: &Target,
    ) -> Result<KernelProxy, ApiError> {
        let selector = selector::resolve(upstream)
            .await
            .map_err(ApiError::bad_request)?;
        let target = resolve::resolve(target).await?;
        let inside = matches!(target.attach, Attach::Iface { .. })
            && selector.addrs.iter().any(|a| target.local.contains(a));
        tracing::info!(
            "proxy {name}: {} selects {upstream} ({})",
            target.description,
            if inside {
                "served by the target"
            } else {
                "reached from the target"
            }
        );
        Ok(KernelProxy {
            dp: dp.clone(),
            name: name.to_string(),
            target,
            selector,
            inside,
            upstream: upstream.to_string(),
            toxics: Vec::new(),
            disabled: None,
        })
    }

    pub fn description(&self) -> &str {
        &self.target.description
    }

    /// Makes the kernel hold exactly these toxics. All or nothing: on error
    /// the previous set stays installed.
    pub async fn set_toxics(&mut self, toxics: &[Toxic]) -> Result<(), ApiError> {
        let mut old = std::mem::take(&mut self.toxics);
        let mut next: Vec<(Toxic, Applied)> = Vec::new();
        let mut fresh: Vec<usize> = Vec::new();
        for t in toxics {
            if let Some(pos) = old.iter().position(|(o, _)| o == t) {
                next.push(old.remove(pos));
                continue;
            }
            let result = match self.compile(t) {
                Ok(plan) => self.apply(plan).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(installed) => {
                    fresh.push(next.len());
                    next.push((t.clone(), installed));
                }
                Err(e) => {
                    // Undo this call's additions; give back what was kept.
                    let mut kept = Vec::new();
                    for (i, entry) in next.into_iter().enumerate() {
                        if fresh.contains(&i) {
                            self.dp.uninstall(entry.1.rules).await;
                        } else {
                            kept.push(entry);
                        }
                    }
                    kept.extend(old);
                    self.toxics = kept;
                    return Err(e);
                }
            }
        }
        for (_, applied) in old {
            self.dp.uninstall(applied.rules).await;
        }
        self.toxics = next;
        Ok(())
    }

    async fn apply(&self, plan: Plan) -> Result<Applied, ApiError> {
        let rules = self.dp.install(&self.target.attach, &plan.rules).await?;
        let reapers = plan.reapers.into_iter().map(reaper::spawn).collect();
        Ok(Applied { rules, reapers })
    }

    /// Disabled = new connections refused, open ones reset: what ToxiProxy
    /// users see when a proxy is disabled.
    pub async fn set_enabled(&mut self, enabled: bool) -> Result<(), ApiError> {
        match (enabled, self.disabled.take()) {
            (true, Some(applied)) => {
                self.dp.uninstall(applied.rules).await;
                Ok(())
            }
            (false, None) => {
                let up = self.dir(Stream::Upstream);
                let refuse = self.base_rule(ACT_REFUSE, PROTO_TCP);
                let mut plan = Plan {
                    rules: vec![self.spec(up, refuse, true)],
                    ..Plan::default()
                };
                let reset = self.base_rule(ACT_RESET, PROTO_TCP);
                self.push_reset(&mut plan, &[DIR_EGRESS, DIR_INGRESS], reset, None);
                self.disabled = Some(self.apply(plan).await?);
                Ok(())
            }
            (_, current) => {
                self.disabled = current;
                Ok(())
            }
        }
    }

    /// Removes everything this proxy installed.
    pub async fn stop(mut self) {
        for (_, applied) in std::mem::take(&mut self.toxics) {
            self.dp.uninstall(applied.rules).await;
        }
        if let Some(d) = self.disabled.take() {
            self.dp.uninstall(d.rules).await;
        }
        tracing::info!("proxy {}: all kernel rules removed", self.name);
    }

    /// Rule ids installed for a toxic, for counters.
    pub fn rule_ids(&self, toxic: &str) -> Vec<u32> {
        self.toxics
            .iter()
            .filter(|(t, _)| t.name == toxic)
            .flat_map(|(_, a)| a.rules.iter().map(|r| r.id))
            .collect()
    }

    /// Every toxic in force with its rules and what each does (the
    /// proxy's disabled-state rules are not a toxic and are left out).
    pub fn toxic_rules(&self) -> Vec<ToxicRules> {
        self.toxics
            .iter()
            .map(|(t, a)| ToxicRules {
                toxic: t.name.clone(),
                rules: a.rules.iter().map(|r| (r.id, r.action)).collect(),
                socket_resets: a.reapers.iter().map(Reaper::resets).sum(),
            })
            .collect()
    }

    pub fn data_plane(&self) -> &Arc<DataPlane> {
        &self.dp
    }

    /// The target direction of a stream.
    fn dir(&self, s: Stream) -> u32 {
        match (s, self.inside) {
            (Stream::Upstream, false) | (Stream::Downstream, true) => DIR_EGRESS,
            (Stream::Downstream, false) | (Stream::Upstream, true) => DIR_INGRESS,
        }
    }

    fn base_rule(&self, action: u8, protos: u8) -> Rule {
        let mut r = Rule::zeroed();
        r.action = action;
        r.protos = protos;
        r
    }

    /// A rule spec for direction `dir`, filtered on the upstream's addresses
    /// and port (or, when the target is the upstream, its local port).
    fn spec(&self, dir: u32, mut rule: Rule, selected: bool) -> RuleSpec {
        let mut prefixes = Vec::new();
        if selected {
            if let Some((lo, hi)) = self.selector.ports {
                if self.inside {
                    (rule.lport_lo, rule.lport_hi) = (lo, hi);
                } else {
                    (rule.rport_lo, rule.rport_hi) = (lo, hi);
                }
            }
            if !self.inside {
                prefixes = self.selector.prefixes.clone();
            }
            rule.protos &= self.selector.protos;
        }
        RuleSpec {
            dir,
            prefixes,
            rule,
            shape: None,
            dns: Vec::new(),
        }
    }

    /// A reset: a BPF rule on interfaces; a socket reaper on cgroups, whose
    /// programs cannot send packets.
    fn push_reset(&self, plan: &mut Plan, dirs: &[u32], r: Rule, expires: Option<Instant>) {
        match &self.target.attach {
            // A socket is reset whichever way its bytes flow: one reaper
            // covers every direction.
            Attach::Cgroup { path, .. } => {
                plan.reapers.push(ReapSpec {
                    cgroup: path.clone(),
                    prefixes: self.selector.prefixes.clone(),
                    remote_ports: self.selector.ports,
                    after_ms: r.after_ns / 1_000_000,
                    after_bytes: r.after_bytes,
                    toxicity: if r.flags & FLAG_PER_FLOW != 0 {
                        r.toxicity as f64 / 4_294_967_296.0
                    } else {
                        1.0
                    },
                    seed: r.seed,
                    expires,
                });
            }
            Attach::Iface { .. } => {
                for d in dirs {
                    plan.rules.push(self.spec(*d, r, true));
                }
            }
        }
    }

    fn compile(&self, t: &Toxic) -> Result<Plan, ApiError> {
        let plan = t.attributes.kernel().map_err(ApiError::bad_request)?;
        let mut common = Rule::zeroed();
        let share = t.toxicity_share();
        if share < 1.0 {
            common.flags |= FLAG_PER_FLOW;
            common.toxicity = scale(share);
            common.seed = rand::random();
        }
        if let Some(at) = t.expires_at {
            let left = at.saturating_duration_since(Instant::now()).as_nanos() as u64;
            common.expires_ns = mono_now_ns() + left.max(1);
        }
        let zones = t.attributes.zones();
        let zone_prefixes = if zones.is_empty() {
            None
        } else {
            Some(self.dp.zone_prefixes(zones)?)
        };
        let stream_dir = self.dir(t.stream);
        let mut out = Plan::default();
        for action in plan {
            let mut r = common;
            let mut shape = None;
            let mut dns = Vec::new();
            // The direction(s) and whether the upstream filter applies.
            let mut dirs = vec![stream_dir];
            match action {
                KernelAction::Drop {
                    probability,
                    correlation,
                } => {
                    r.action = ACT_DROP;
                    r.probability = scale(probability);
                    r.correlation = scale(correlation);
                }
                KernelAction::Reset {
                    after_ms,
                    after_bytes,
                } => {
                    r.action = ACT_RESET;
                    r.protos = PROTO_TCP;
                    r.after_ns = after_ms.saturating_mul(1_000_000);
                    r.after_bytes = after_bytes;
                    if matches!(self.target.attach, Attach::Cgroup { .. }) {
                        self.push_reset(&mut out, &[stream_dir], r, t.expires_at);
                        continue;
                    }
                }
                KernelAction::Refuse => {
                    r.action = ACT_REFUSE;
                    r.protos = PROTO_TCP;
                    // A connection is refused where its SYN goes: upstream.
                    dirs = vec![self.dir(Stream::Upstream)];
                }
                KernelAction::Shape(s) => {
                    r.action = ACT_CLASSIFY;
                    if s.fin_only {
                        r.flags |= FLAG_FIN_ONLY;
                        r.protos = PROTO_TCP;
                    }
                    if s.rate_bytes_per_s == 0 && !s.needs_netem() {
                        r.action = ACT_COUNT;
                    } else {
                        shape = Some(s);
                    }
                }
                KernelAction::Count => r.action = ACT_COUNT,
                KernelAction::Dns(plan) => {
                    if plan.rcode.is_some() && matches!(self.target.attach, Attach::Cgroup { .. }) {
                        // cgroup programs can drop a packet but not send one:
                        // the answer would silently never happen.
                        return Err(ApiError::bad_request(
                            "dns answers (servfail, nxdomain, refused) are sent from an interface; \
                             a cgroup target can only drop queries: target the container, netns \
                             or pid instead",
                        ));
                    }
                    r.action = ACT_DNS;
                    r.protos = PROTO_UDP | PROTO_TCP;
                    r.probability = scale(plan.probability);
                    r.dns_rcode = plan.rcode.unwrap_or(DNS_RCODE_DROP);
                    if let Some(delay) = plan.delay {
                        r.dns_rcode = DNS_RCODE_DELAY;
                        shape = Some(delay);
                    }
                    for (i, q) in plan.qtypes.iter().enumerate() {
                        r.qtypes[i] = *q;
                    }
                    if !plan.patterns.is_empty() {
                        r.dns_flags |= DNS_HAS_DOMAINS;
                    }
                    dns = plan
                        .patterns
                        .iter()
                        .map(|p| match p {
                            Pattern::Exact(h) => (DNS_MATCH_EXACT, *h),
                            Pattern::Below(h) => (DNS_MATCH_SUFFIX, *h),
                        })
                        .collect();
                    // Queries travel to the resolver, whatever the stream.
                    dirs = vec![self.dir(Stream::Upstream)];
                    if !plan.resolvers.is_empty() {
                        let resolvers = parse_prefixes(&plan.resolvers)?;
                        for d in &dirs {
                            let mut rr = r;
                            dns_port(&mut rr, self.inside);
                            out.rules.push(RuleSpec {
                                dir: *d,
                                prefixes: resolvers.clone(),
                                rule: rr,
                                shape: shape.clone(),
                                dns: dns.clone(),
                            });
                        }
                        continue;
                    }
                    if self.selector.ports.is_none() {
                        dns_port(&mut r, self.inside);
                    }
                }
            }
            if let Some(z) = &zone_prefixes {
                // A zone is cut both ways, whatever the upstream says.
                for d in [DIR_EGRESS, DIR_INGRESS] {
                    out.rules.push(RuleSpec {
                        dir: d,
                        prefixes: z.clone(),
                        rule: r,
                        shape: shape.clone(),
                        dns: dns.clone(),
                    });
                }
                continue;
            }
            for d in dirs {
                let mut spec = self.spec(d, r, true);
                spec.shape = shape.clone();
                spec.dns = dns.clone();
                out.rules.push(spec);
            }
        }
        if out.rules.iter().any(|s| s.rule.protos == 0) {
            return Err(ApiError::bad_request(format!(
                "toxic type {} acts on protocols the upstream {:?} does not select",
                t.kind(),
                self.upstream
            )));
        }
        Ok(out)
    }
}

/// DNS goes to port 53 of the resolver (or arrives on it, when the target
/// is the resolver).
fn dns_port(r: &mut Rule, inside: bool) {
    if inside {
        r.lport_lo = 53;
        r.lport_hi = 53;
    } else {
        r.rport_lo = 53;
        r.rport_hi = 53;
    }
}

/// Parses CIDRs or plain addresses.
pub fn parse_prefixes(list: &[String]) -> Result<Vec<Prefix>, ApiError> {
    list.iter()
        .map(|s| {
            let (ip, bits) = match s.split_once('/') {
                Some((ip, b)) => (ip, Some(b)),
                None => (s.as_str(), None),
            };
            let ip: std::net::IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid address {s:?}")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    ApiError::bad_request(format!("invalid prefix length in {s:?}"))
                })?,
                None => max,
            };
            Ok(Prefix::from_ip(ip, bits))
        })
        .collect()
}
