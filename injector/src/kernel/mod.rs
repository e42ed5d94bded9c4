//! Everything injector adds to the kernel: BPF programs and maps (bpf.rs),
//! the rule table behind the LPM trie (table.rs), qdiscs and classes
//! (tc.rs), and the resolution of targets to interfaces and cgroups
//! (resolve.rs). `DataPlane` owns all of it; `KernelProxy` (native.rs) is
//! the engine's handle on one kernel-native proxy.

pub mod bpf;
pub mod cgroup;
pub mod cleanup;
pub mod counters;
pub mod docker;
pub mod features;
pub mod journal;
pub mod lock;
pub mod native;
pub mod netlink;
pub mod netns;
pub mod partition;
pub mod reaper;
pub mod resolve;
pub mod selector;
pub mod sockdiag;
pub mod table;
pub mod tc;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use injector_common::rule::{Counters, DIR_EGRESS, DnsNameKey, IfaceCfg, Rule, SCOPE_CGROUP};
use tokio::sync::Mutex;

pub use native::KernelProxy;

use self::{
    bpf::Bpf,
    netlink::Netlink,
    resolve::Attach,
    table::{MapOp, Prefix, Slot, Table},
    tc::Shaper,
};
use crate::{ApiError, faults::Shape};

/// Parent handle of clsact qdiscs (TC_H_CLSACT = TC_H_INGRESS).
const TC_H_CLSACT: u32 = 0xffff_fff1;
/// The ingress hook of a clsact qdisc, where filters hang.
pub const CLSACT_INGRESS: u32 = 0xffff_fff2;
/// Priority of our redirect-to-IFB filter: after our BPF filter.
pub const REDIRECT_PRIO: u16 = 0xfff0;

/// Kernels with tcx (>= 6.6) mark packets sent by bpf_redirect as
/// redirected, which an IFB requires; before that, BPF only sets the class
/// and a mirred filter does the redirect.
fn bpf_redirect_reaches_ifb() -> bool {
    !legacy_tc()
}

/// Kernels before 6.6 have no tcx: programs hang as netlink filters on a
/// clsact qdisc. `INJECTOR_LEGACY_TC=1` takes that path on any kernel, so
/// it can be tested where tcx exists.
pub fn legacy_tc() -> bool {
    features::kernel_version() < (6, 6)
        || std::env::var_os("INJECTOR_LEGACY_TC").is_some_and(|v| v == "1")
}

/// One rule to install: where it looks (direction, remote prefixes), what
/// it does (the compiled rule), and what else it needs from the kernel.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub dir: u32,
    pub prefixes: Vec<Prefix>,
    pub rule: Rule,
    /// A qdisc class to steer into (rate and/or netem).
    pub shape: Option<Shape>,
    /// DNS name patterns: (DNS_MATCH_EXACT | DNS_MATCH_SUFFIX, hash).
    pub dns: Vec<(u32, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AttachKey {
    Iface(u32),
    Cgroup(u64),
}

/// A rule in the kernel, and what to undo to remove it.
#[derive(Debug)]
pub struct Installed {
    pub id: u32,
    /// What the rule does to the packets it acts on, for /metrics.
    pub action: counters::Action,
    attach: AttachKey,
    /// (device, class id) of its qdisc class.
    class: Option<(u32, u32)>,
    dns: Vec<DnsNameKey>,
}

struct Inner {
    bpf: Bpf,
    table: Table,
    shaper: Shaper,
    /// interface -> its IFB (shaping what arrives on it).
    ifbs: HashMap<u32, u32>,
    journal: journal::Journal,
    /// Interfaces whose clsact qdisc we added (kernels without tcx).
    clsact_ours: HashMap<u32, String>,
}

/// A named set of CIDRs (an availability zone, a rack, a region).
struct Zone {
    cidrs: Vec<String>,
    prefixes: Vec<Prefix>,
}

impl Zone {
    /// An empty zone is refused: a rule without prefixes matches every
    /// address, so a toxic on it would cut everything, not nothing.
    fn parse(name: &str, cidrs: &[String]) -> Result<Zone, ApiError> {
        if name.is_empty() || name.contains('/') {
            return Err(ApiError::bad_request(format!("invalid zone name {name:?}")));
        }
        if cidrs.is_empty() {
            return Err(ApiError::bad_request(format!(
                "zone {name:?} needs at least one CIDR"
            )));
        }
        Ok(Zone {
            cidrs: cidrs.iter().map(|c| c.trim().to_string()).collect(),
            prefixes: native::parse_prefixes(cidrs)?,
        })
    }
}

/// The loaded data plane: one per daemon.
pub struct DataPlane {
    inner: Mutex<Inner>,
    nl: Netlink,
    /// Named address sets (availability zones) toxics can cut.
    zones: std::sync::RwLock<BTreeMap<String, Zone>>,
    /// Held while this data plane lives (see lock.rs).
    _presence: lock::Presence,
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns().
pub fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl DataPlane {
    /// Removes what an earlier daemon left behind, loads the BPF object and
    /// prepares the maps. Fails with a message naming the missing privilege
    /// or kernel feature.
    pub async fn load() -> Result<Arc<DataPlane>, ApiError> {
        let nl = Netlink::current().map_err(|e| ApiError::internal(format!("netlink: {e}")))?;
        let mut presence = lock::Presence::announce()
            .map_err(|e| ApiError::internal(format!("{}/dataplane.lock: {e}", lock::RUN_DIR)))?;
        if !presence.alone {
            tracing::info!(
                "another injector data plane runs on this host: only the journals of dead \
                 daemons are replayed, nothing is swept by name"
            );
        }
        let report = cleanup::leftovers(&nl, presence.alone).await;
        if !report.is_empty() {
            tracing::warn!("removed leftovers of an earlier run: {}", report.join(", "));
        }
        presence
            .share()
            .map_err(|e| ApiError::internal(format!("{}/dataplane.lock: {e}", lock::RUN_DIR)))?;
        let bpf = Bpf::load().map_err(|e| {
            ApiError::unsupported(format!(
                "kernel data plane unavailable: {} (injector needs root, BPF, BTF and tc \
                 support; run `injector doctor`)",
                bpf::shorten(&e.to_string())
            ))
        })?;
        Ok(Arc::new(DataPlane {
            inner: Mutex::new(Inner {
                bpf,
                table: Table::default(),
                shaper: Shaper::default(),
                ifbs: HashMap::new(),
                journal: journal::Journal::open(),
                clsact_ours: HashMap::new(),
            }),
            nl,
            zones: Default::default(),
            _presence: presence,
        }))
    }

    /// Replaces the zone definitions (name -> CIDRs), all or nothing.
    pub fn set_zones(&self, zones: &BTreeMap<String, Vec<String>>) -> Result<(), ApiError> {
        let mut parsed = BTreeMap::new();
        for (name, cidrs) in zones {
            parsed.insert(name.clone(), Zone::parse(name, cidrs)?);
        }
        *self.zones.write().expect("zones lock") = parsed;
        Ok(())
    }

    /// Every zone: name -> its CIDRs as given.
    pub fn zones(&self) -> BTreeMap<String, Vec<String>> {
        let zones = self.zones.read().expect("zones lock");
        zones
            .iter()
            .map(|(n, z)| (n.clone(), z.cidrs.clone()))
            .collect()
    }

    /// Defines or replaces one zone; true when it is new.
    pub fn put_zone(&self, name: &str, cidrs: &[String]) -> Result<bool, ApiError> {
        let zone = Zone::parse(name, cidrs)?;
        let mut zones = self.zones.write().expect("zones lock");
        Ok(zones.insert(name.to_string(), zone).is_none())
    }

    /// Forgets a zone; false when there was none.
    pub fn remove_zone(&self, name: &str) -> bool {
        self.zones
            .write()
            .expect("zones lock")
            .remove(name)
            .is_some()
    }

    pub fn zone_prefixes(&self, names: &[String]) -> Result<Vec<Prefix>, ApiError> {
        let zones = self.zones.read().expect("zones lock");
        let mut out = Vec::new();
        for n in names {
            let z = zones
                .get(n)
                .ok_or_else(|| ApiError::bad_request(format!("unknown zone {n:?}")))?;
            out.extend(z.prefixes.iter().copied());
        }
        Ok(out)
    }

    pub async fn set_guard_port(&self, port: u16) -> Result<(), ApiError> {
        self.inner
            .lock()
            .await
            .bpf
            .set_guard_port(port)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Installs `specs` for the target, all or nothing.
    pub async fn install(
        &self,
        attach: &Attach,
        specs: &[RuleSpec],
    ) -> Result<Vec<Installed>, ApiError> {
        let mut inner = self.inner.lock().await;
        let mut done = Vec::new();
        for spec in specs {
            match self.install_one(&mut inner, attach, spec).await {
                Ok(i) => done.push(i),
                Err(e) => {
                    for i in done.into_iter().rev() {
                        self.uninstall_one(&mut inner, i).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    pub async fn uninstall(&self, items: Vec<Installed>) {
        let mut inner = self.inner.lock().await;
        for i in items.into_iter().rev() {
            self.uninstall_one(&mut inner, i).await;
        }
    }

    async fn install_one(
        &self,
        inner: &mut Inner,
        attach: &Attach,
        spec: &RuleSpec,
    ) -> Result<Installed, ApiError> {
        let (key, scope) = match attach {
            Attach::Iface { index, name, flip } => {
                let cfg = IfaceCfg {
                    flip: *flip as u32,
                    ifb_ifindex: inner.ifbs.get(index).copied().unwrap_or(0),
                };
                if !inner.bpf.is_attached(*index) {
                    self.ensure_clsact(inner, *index, name).await?;
                }
                if let Err(e) = inner.bpf.attach_iface(*index, name, cfg) {
                    self.drop_clsact(inner, *index).await;
                    return Err(ApiError::internal(e));
                }
                (AttachKey::Iface(*index), *index as u64)
            }
            Attach::Cgroup { id, path } => {
                if spec.shape.is_some() {
                    return Err(ApiError::bad_request(
                        "latency, bandwidth and other shaping toxics need an interface, netns, pid \
                         or container target; a cgroup target can drop, refuse and reset",
                    ));
                }
                let dir = std::fs::File::open(path)
                    .map_err(|e| ApiError::internal(format!("cgroup {}: {e}", path.display())))?;
                inner
                    .bpf
                    .attach_cgroup(*id, &dir)
                    .map_err(ApiError::internal)?;
                (AttachKey::Cgroup(*id), *id | SCOPE_CGROUP)
            }
        };
        let mut rule = spec.rule;
        let mut class = None;
        if let (Some(shape), Attach::Iface { index, flip, .. }) = (&spec.shape, attach) {
            // On the host end of a namespace's veth, what the namespace
            // sends arrives on tc ingress, which has no queue: shape it on
            // the interface's IFB instead.
            let on_ingress = (spec.dir == DIR_EGRESS) == *flip;
            let device = if on_ingress {
                match self.ifb_for(inner, *index).await {
                    Ok(d) => d,
                    Err(e) => {
                        self.release(inner, key).await;
                        return Err(e);
                    }
                }
            } else {
                *index
            };
            match inner.shaper.add(&self.nl, device, shape).await {
                Ok(classid) => {
                    rule.classid = classid;
                    rule.redirect_ifindex = if on_ingress && bpf_redirect_reaches_ifb() {
                        device
                    } else {
                        0
                    };
                    class = Some((device, classid));
                }
                Err(e) => {
                    self.drop_ifb_if_unused(inner, *index).await;
                    self.release(inner, key).await;
                    return Err(e);
                }
            }
        }
        let slot = Slot {
            scope,
            dir: spec.dir,
        };
        let (id, ops) = match inner.table.add(slot, &spec.prefixes, rule) {
            Ok(x) => x,
            Err(e) => {
                if let Some((dev, classid)) = class {
                    inner.shaper.remove(&self.nl, dev, classid).await;
                    if let AttachKey::Iface(i) = key {
                        self.drop_ifb_if_unused(inner, i).await;
                    }
                }
                self.release(inner, key).await;
                return Err(ApiError::new(409, e));
            }
        };
        let mut dns = Vec::new();
        for (kind, hash) in &spec.dns {
            let k = DnsNameKey {
                rule: id,
                kind: *kind,
                hash: *hash,
            };
            let _ = inner.bpf.dns_names.insert(k, 1, 0);
            dns.push(k);
        }
        let zero = aya::maps::PerCpuValues::try_from(vec![
            Counters::default();
            aya::util::nr_cpus().map_err(
                |(_, e)| ApiError::internal(e.to_string())
            )?
        ])
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let _ = inner.bpf.counters.set(id, zero, 0);
        apply(&mut inner.bpf, ops).map_err(ApiError::internal)?;
        Ok(Installed {
            id,
            action: counters::Action::of(&spec.rule),
            attach: key,
            class,
            dns,
        })
    }

    async fn uninstall_one(&self, inner: &mut Inner, i: Installed) {
        let ops = inner.table.remove(i.id);
        if let Err(e) = apply(&mut inner.bpf, ops) {
            tracing::warn!("removing rule {}: {e}", i.id);
        }
        for k in &i.dns {
            let _ = inner.bpf.dns_names.remove(k);
        }
        if let Some((dev, classid)) = i.class {
            inner.shaper.remove(&self.nl, dev, classid).await;
            if let AttachKey::Iface(index) = i.attach {
                self.drop_ifb_if_unused(inner, index).await;
            }
        }
        self.release(inner, i.attach).await;
    }

    async fn release(&self, inner: &mut Inner, key: AttachKey) {
        match key {
            AttachKey::Iface(i) => {
                if inner.bpf.release_iface(i) {
                    self.drop_clsact(inner, i).await;
                }
            }
            AttachKey::Cgroup(c) => inner.bpf.release_cgroup(c),
        }
    }

    /// Kernels without tcx attach tc programs as netlink filters, which need
    /// a clsact qdisc; one we add is journalled and removed with our last
    /// program, one that was there already is left alone.
    async fn ensure_clsact(
        &self,
        inner: &mut Inner,
        index: u32,
        name: &str,
    ) -> Result<(), ApiError> {
        if !legacy_tc() {
            return Ok(());
        }
        let entry = journal::Object::Clsact {
            ifname: name.to_string(),
        };
        inner.journal.adding(&entry);
        match self
            .nl
            .qdisc_add(index, TC_H_CLSACT, 0xffff_0000, "clsact", Vec::new(), false)
            .await
        {
            Ok(()) => {
                inner.clsact_ours.insert(index, name.to_string());
                Ok(())
            }
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                inner.journal.removed(&entry);
                Ok(())
            }
            Err(e) => {
                inner.journal.removed(&entry);
                Err(ApiError::unsupported(format!(
                    "tc programs need a clsact qdisc on this kernel (no tcx before 6.6): {e}"
                )))
            }
        }
    }

    async fn drop_clsact(&self, inner: &mut Inner, index: u32) {
        if let Some(name) = inner.clsact_ours.remove(&index)
            && self
                .nl
                .qdisc_del(index, TC_H_CLSACT, 0xffff_0000)
                .await
                .is_ok()
        {
            inner
                .journal
                .removed(&journal::Object::Clsact { ifname: name });
        }
    }

    async fn ifb_for(&self, inner: &mut Inner, index: u32) -> Result<u32, ApiError> {
        if let Some(i) = inner.ifbs.get(&index) {
            return Ok(*i);
        }
        let name = format!("{}{index}", cleanup::IFB_PREFIX);
        let entry = journal::Object::Ifb { name: name.clone() };
        inner.journal.adding(&entry);
        let ifb = self.nl.add_ifb(&name).await.map_err(|e| {
            inner.journal.removed(&entry);
            if e.errno() == Some(95) || e.errno() == Some(2) {
                ApiError::unsupported(format!(
                    "shaping what a target sends needs an ifb device, and this kernel has no ifb \
                     support (CONFIG_IFB): {e}"
                ))
            } else {
                ApiError::internal(e.to_string())
            }
        })?;
        if !bpf_redirect_reaches_ifb() {
            let ifname = self.nl.name_of(index).await.unwrap_or_default();
            let entry = journal::Object::RedirectFilter { ifname };
            inner.journal.adding(&entry);
            if let Err(e) = self
                .nl
                .filter_add_redirect(index, CLSACT_INGRESS, REDIRECT_PRIO, ifb)
                .await
            {
                inner.journal.removed(&entry);
                let _ = self.nl.del_link(ifb).await;
                inner.journal.removed(&journal::Object::Ifb { name });
                let msg = format!(
                    "shaping what a target sends needs, on kernels without tcx, a matchall filter with \
                     a mirred redirect to an ifb (cls_matchall and act_mirred: \
                     CONFIG_NET_CLS_MATCHALL, CONFIG_NET_ACT_MIRRED): {e}"
                );
                return Err(
                    if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::EOPNOTSUPP) {
                        ApiError::unsupported(msg)
                    } else {
                        ApiError::internal(msg)
                    },
                );
            }
        }
        inner.ifbs.insert(index, ifb);
        if let Some(mut cfg) = inner.bpf.iface_cfg(index) {
            cfg.ifb_ifindex = ifb;
            let _ = inner.bpf.set_iface_cfg(index, cfg);
        }
        Ok(ifb)
    }

    async fn drop_ifb_if_unused(&self, inner: &mut Inner, index: u32) {
        let Some(ifb) = inner.ifbs.get(&index).copied() else {
            return;
        };
        if inner.shaper.has_classes(ifb) {
            return;
        }
        inner.ifbs.remove(&index);
        if !bpf_redirect_reaches_ifb() {
            let ifname = self.nl.name_of(index).await.unwrap_or_default();
            if self
                .nl
                .filter_del(index, CLSACT_INGRESS, REDIRECT_PRIO)
                .await
                .is_ok()
            {
                inner
                    .journal
                    .removed(&journal::Object::RedirectFilter { ifname });
            }
        }
        if let Some(mut cfg) = inner.bpf.iface_cfg(index) {
            cfg.ifb_ifindex = 0;
            let _ = inner.bpf.set_iface_cfg(index, cfg);
        }
        match self.nl.del_link(ifb).await {
            Ok(()) => inner.journal.removed(&journal::Object::Ifb {
                name: format!("{}{index}", cleanup::IFB_PREFIX),
            }),
            Err(e) => tracing::warn!("removing ifb {ifb}: {e}"),
        }
    }

    /// Packet and byte counters of rules, summed over CPUs.
    pub async fn counters(&self, ids: &[u32]) -> Counters {
        let mut total = Counters::default();
        for c in self.rule_counters(ids).await {
            counters::add(&mut total, &c);
        }
        total
    }

    /// Each rule's counters, summed over CPUs, in the order of `ids`; one
    /// lock for all of them.
    pub async fn rule_counters(&self, ids: &[u32]) -> Vec<Counters> {
        let inner = self.inner.lock().await;
        ids.iter()
            .map(|id| {
                let mut total = Counters::default();
                if let Ok(per_cpu) = inner.bpf.counters.get(id, 0) {
                    for c in per_cpu.iter() {
                        counters::add(&mut total, c);
                    }
                }
                total
            })
            .collect()
    }

    /// Number of rules installed.
    pub async fn rule_count(&self) -> usize {
        self.inner.lock().await.table.len()
    }

    /// Removes qdiscs, classes and IFBs; BPF links go with the process.
    pub async fn shutdown(&self) {
        let mut inner = self.inner.lock().await;
        inner.shaper.clear(&self.nl).await;
        let ifbs: Vec<(u32, u32)> = inner.ifbs.drain().collect();
        for (iface, ifb) in ifbs {
            if self.nl.del_link(ifb).await.is_ok() {
                inner.journal.removed(&journal::Object::Ifb {
                    name: format!("{}{iface}", cleanup::IFB_PREFIX),
                });
            }
        }
        inner.bpf.detach_all();
        let ours: Vec<u32> = inner.clsact_ours.keys().copied().collect();
        for index in ours {
            self.drop_clsact(&mut inner, index).await;
        }
    }
}

fn apply(bpf: &mut Bpf, ops: Vec<MapOp>) -> Result<(), String> {
    for op in ops {
        match op {
            MapOp::SetRule(id, rule) => bpf
                .rules
                .set(id, rule, 0)
                .map_err(|e| format!("RULES[{id}]: {e}"))?,
            MapOp::SetEntry(slot, p, set) => {
                let (len, data) = table::lpm_key(slot, p);
                bpf.lpm
                    .insert(&Bpf::lpm_key(len, data), set, 0)
                    .map_err(|e| format!("RULE_LPM insert: {e}"))?
            }
            MapOp::DelEntry(slot, p) => {
                let (len, data) = table::lpm_key(slot, p);
                let _ = bpf.lpm.remove(&Bpf::lpm_key(len, data));
            }
        }
    }
    Ok(())
}
