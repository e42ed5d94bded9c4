//! qdiscs and classes for shaping rules (rate limits and netem leaves).
//!
//! Per device, injector owns one root htb (handle ROOT_MAJOR:) with no
//! default class: unclassified packets take htb's direct queue and are
//! never shaped. Each shaping rule gets a class ROOT_MAJOR:N, optionally
//! with a netem leaf; the BPF program writes the class id to skb->priority,
//! which htb honours before any filter. No tc filter chain exists, so the
//! cost of a packet does not grow with the number of rules.

use std::collections::{BTreeMap, HashMap};

use super::{
    journal::{Journal, Object},
    netlink::{Netlink, NlError, push_nla},
};
use crate::{ApiError, faults::Shape};

/// Major number of every qdisc injector creates; cleanup recognises ours by it.
pub const ROOT_MAJOR: u16 = 0x7ef0;
pub const TC_H_ROOT: u32 = 0xffff_ffff;
/// Root qdisc kinds the kernel installs by itself: safe to replace and to
/// restore by deleting ours.
const DEFAULT_ROOTS: &[&str] = &["noqueue", "pfifo_fast", "fq_codel", "mq", "pfifo"];
/// Largest class minor; leaf qdisc majors are LEAF_BASE + minor.
const MAX_MINOR: u16 = 0x0fff;
const LEAF_BASE: u16 = 0x7000;
/// Rate of classes that only carry a netem leaf: effectively unlimited.
const UNLIMITED_BYTES_PER_S: u64 = 5_000_000_000;
const ENOENT: i32 = 2;
const EOPNOTSUPP: i32 = 95;

pub fn root_handle() -> u32 {
    (ROOT_MAJOR as u32) << 16
}

pub fn classid(minor: u16) -> u32 {
    root_handle() | minor as u32
}

fn ne32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

/// TCA_OPTIONS of our root htb: TCA_HTB_INIT with default class 0 (direct).
pub fn htb_root_options() -> Vec<u8> {
    let mut glob = Vec::new();
    for v in [
        3u32, /* version */
        10,   /* rate2quantum */
        0,    /* defcls */
        0, 0,
    ] {
        glob.extend_from_slice(&ne32(v));
    }
    let mut opts = Vec::new();
    push_nla(&mut opts, 2 /* TCA_HTB_INIT */, &glob);
    push_nla(&mut opts, 5 /* TCA_HTB_DIRECT_QLEN */, &ne32(1000));
    opts
}

fn ratespec(rate: u64) -> Vec<u8> {
    let mut r = vec![
        0, /* cell_log */
        1, /* linklayer ethernet: no rate table needed */
    ];
    r.extend_from_slice(&0u16.to_ne_bytes()); // overhead
    r.extend_from_slice(&(-1i16).to_ne_bytes()); // cell_align
    r.extend_from_slice(&0u16.to_ne_bytes()); // mpu
    r.extend_from_slice(&ne32(rate.min(u32::MAX as u64) as u32));
    r
}

/// Burst: 50 ms at the rate, at least two full frames.
pub fn burst_bytes(rate: u64) -> u64 {
    (rate / 20).max(3028)
}

/// htb expresses bursts as the time to send them, in 64 ns ticks.
fn burst_ticks(rate: u64) -> u32 {
    let ns = burst_bytes(rate) as u128 * 1_000_000_000 / rate.max(1) as u128;
    (ns / 64).min(u32::MAX as u128) as u32
}

/// TCA_OPTIONS of a class with rate = ceil = `rate` bytes/s.
pub fn htb_class_options(rate: u64) -> Vec<u8> {
    let mut parms = Vec::new();
    parms.extend(ratespec(rate));
    parms.extend(ratespec(rate));
    let ticks = burst_ticks(rate);
    for v in [
        ticks, ticks, 0, /* quantum: kernel picks */
        0, /* level */
        0, /* prio */
    ] {
        parms.extend_from_slice(&ne32(v));
    }
    let mut opts = Vec::new();
    push_nla(&mut opts, 1 /* TCA_HTB_PARMS */, &parms);
    if rate > u32::MAX as u64 {
        push_nla(&mut opts, 6 /* TCA_HTB_RATE64 */, &rate.to_ne_bytes());
        push_nla(&mut opts, 7 /* TCA_HTB_CEIL64 */, &rate.to_ne_bytes());
    }
    opts
}

fn percent(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * u32::MAX as f64).round() as u32
}

/// TCA_OPTIONS of a netem qdisc: struct tc_netem_qopt, then attributes.
pub fn netem_options(s: &Shape) -> Vec<u8> {
    let delay_ns = s.delay_us as i64 * 1000;
    let jitter_ns = s.jitter_us as i64 * 1000;
    // netem never reorders with gap 0; tc's own default is 1 (any packet
    // may jump the queue), and so is ours.
    let gap = if s.reorder > 0.0 { s.gap.max(1) } else { s.gap };
    let mut opts = Vec::new();
    for v in [
        (delay_ns / 64).min(u32::MAX as i64) as u32, // latency, legacy ticks
        100_000,                                     // limit (packets)
        0,                                           // loss
        gap,                                         // gap
        percent(s.duplicate),                        // duplicate
        (jitter_ns / 64).min(u32::MAX as i64) as u32, // jitter, legacy ticks
    ] {
        opts.extend_from_slice(&ne32(v));
    }
    let corr = percent(s.correlation);
    let mut c = Vec::new();
    for v in [corr, 0, 0] {
        c.extend_from_slice(&ne32(v));
    }
    push_nla(&mut opts, 1 /* TCA_NETEM_CORR */, &c);
    if s.reorder > 0.0 {
        let mut r = Vec::new();
        r.extend_from_slice(&ne32(percent(s.reorder)));
        r.extend_from_slice(&ne32(0));
        push_nla(&mut opts, 3 /* TCA_NETEM_REORDER */, &r);
    }
    if s.corrupt > 0.0 {
        let mut r = Vec::new();
        r.extend_from_slice(&ne32(percent(s.corrupt)));
        r.extend_from_slice(&ne32(0));
        push_nla(&mut opts, 4 /* TCA_NETEM_CORRUPT */, &r);
    }
    push_nla(
        &mut opts,
        10, /* TCA_NETEM_LATENCY64 */
        &delay_ns.to_ne_bytes(),
    );
    push_nla(
        &mut opts,
        11, /* TCA_NETEM_JITTER64 */
        &jitter_ns.to_ne_bytes(),
    );
    opts
}

/// Maps a netlink failure to what the user must hear: a missing qdisc is
/// named as such.
fn qdisc_error(kind: &str, config: &str, e: NlError) -> ApiError {
    match e.errno() {
        Some(ENOENT) | Some(EOPNOTSUPP) => ApiError::unsupported(format!(
            "this kernel has no {kind} qdisc (sch_{kind}, {config}): the fault cannot be applied \
             here; `injector doctor` lists what this kernel supports"
        )),
        _ => ApiError::internal(e.to_string()),
    }
}

struct Device {
    classes: BTreeMap<u16, bool /* has netem leaf */>,
    /// The journal entry of our root qdisc on this device.
    root: Object,
}

/// The shaping classes injector holds, per device.
pub struct Shaper {
    devices: HashMap<u32, Device>,
    journal: Journal,
}

impl Default for Shaper {
    fn default() -> Self {
        Shaper {
            devices: HashMap::new(),
            journal: Journal::open(),
        }
    }
}

impl Shaper {
    /// Creates a class for `shape` on device `index`; returns its class id.
    pub async fn add(&mut self, nl: &Netlink, index: u32, shape: &Shape) -> Result<u32, ApiError> {
        if !self.devices.contains_key(&index) {
            let root = self.install_root(nl, index).await?;
            self.devices.insert(
                index,
                Device {
                    classes: BTreeMap::new(),
                    root,
                },
            );
        }
        let dev = self.devices.get_mut(&index).expect("inserted above");
        let minor = (1..=MAX_MINOR)
            .find(|m| !dev.classes.contains_key(m))
            .ok_or_else(|| {
                ApiError::new(
                    409,
                    format!("more than {MAX_MINOR} shaping rules on one interface"),
                )
            })?;
        let rate = if shape.rate_bytes_per_s > 0 {
            shape.rate_bytes_per_s
        } else {
            UNLIMITED_BYTES_PER_S
        };
        let id = classid(minor);
        nl.class_add(index, root_handle(), id, "htb", htb_class_options(rate))
            .await
            .map_err(|e| qdisc_error("htb", "CONFIG_NET_SCH_HTB", e))?;
        let netem = shape.needs_netem();
        if netem {
            let leaf = ((LEAF_BASE + minor) as u32) << 16;
            if let Err(e) = nl
                .qdisc_add(index, id, leaf, "netem", netem_options(shape), false)
                .await
            {
                let _ = nl.class_del(index, id).await;
                self.release_root_if_empty(nl, index).await;
                return Err(qdisc_error("netem", "CONFIG_NET_SCH_NETEM", e));
            }
        }
        self.devices
            .get_mut(&index)
            .expect("present")
            .classes
            .insert(minor, netem);
        Ok(id)
    }

    pub async fn remove(&mut self, nl: &Netlink, index: u32, id: u32) {
        let minor = (id & 0xffff) as u16;
        let Some(dev) = self.devices.get_mut(&index) else {
            return;
        };
        if let Some(netem) = dev.classes.remove(&minor) {
            if netem {
                let _ = nl
                    .qdisc_del(index, id, ((LEAF_BASE + minor) as u32) << 16)
                    .await;
            }
            if let Err(e) = nl.class_del(index, id).await {
                tracing::warn!("removing class {id:#x} on link {index}: {e}");
            }
        }
        self.release_root_if_empty(nl, index).await;
    }

    async fn release_root_if_empty(&mut self, nl: &Netlink, index: u32) {
        if self
            .devices
            .get(&index)
            .is_some_and(|d| !d.classes.is_empty())
        {
            return;
        }
        let Some(dev) = self.devices.remove(&index) else {
            return;
        };
        match nl.qdisc_del(index, TC_H_ROOT, root_handle()).await {
            Ok(()) => self.journal.removed(&dev.root),
            Err(e) => tracing::warn!("removing root htb on link {index}: {e}"),
        }
    }

    /// Installs our root htb (journalled first); returns its journal entry.
    async fn install_root(&mut self, nl: &Netlink, index: u32) -> Result<Object, ApiError> {
        let current = nl
            .qdiscs(index)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let ifname = nl
            .name_of(index)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let entry = Object::RootQdisc {
            ifindex: index,
            ifname,
            handle: root_handle(),
        };
        if let Some(root) = current.iter().find(|q| q.parent == TC_H_ROOT) {
            if root.handle >> 16 == ROOT_MAJOR as u32 {
                return Ok(entry);
            }
            if !DEFAULT_ROOTS.contains(&root.kind.as_str()) {
                return Err(ApiError::new(
                    409,
                    format!(
                        "link {index} has a {} root qdisc injector did not create; \
                         shaping there would replace it",
                        root.kind
                    ),
                ));
            }
        }
        self.journal.adding(&entry);
        match nl
            .qdisc_add(
                index,
                TC_H_ROOT,
                root_handle(),
                "htb",
                htb_root_options(),
                true,
            )
            .await
        {
            Ok(()) => Ok(entry),
            Err(e) => {
                self.journal.removed(&entry);
                Err(qdisc_error("htb", "CONFIG_NET_SCH_HTB", e))
            }
        }
    }

    /// Removes every class and root qdisc (daemon shutdown).
    pub async fn clear(&mut self, nl: &Netlink) {
        for (index, dev) in std::mem::take(&mut self.devices) {
            if nl.qdisc_del(index, TC_H_ROOT, root_handle()).await.is_ok() {
                self.journal.removed(&dev.root);
            }
        }
    }

    pub fn has_classes(&self, index: u32) -> bool {
        self.devices.contains_key(&index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla_types(mut b: &[u8]) -> Vec<u16> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            out.push(u16::from_ne_bytes([b[2], b[3]]));
            let step = len.div_ceil(4) * 4;
            b = &b[step.min(b.len())..];
        }
        out
    }

    #[test]
    fn htb_class_carries_parms_and_64_bit_rates_when_needed() {
        let small = htb_class_options(1_000_000);
        assert_eq!(nla_types(&small), vec![1]);
        assert_eq!(small.len(), 4 + 44);
        let big = htb_class_options(10_000_000_000);
        assert_eq!(nla_types(&big), vec![1, 6, 7]);
    }

    #[test]
    fn burst_is_time_at_rate() {
        // 1 MB/s: 50 ms = 50 kB, as 64 ns ticks
        assert_eq!(burst_bytes(1_000_000), 50_000);
        assert_eq!(burst_ticks(1_000_000), (50_000_000u64 / 64) as u32);
        assert_eq!(burst_bytes(1_000), 3028);
    }

    #[test]
    fn netem_options_are_qopt_then_attributes() {
        let s = Shape {
            delay_us: 2_000_000,
            jitter_us: 500_000,
            corrupt: 0.5,
            ..Shape::default()
        };
        let o = netem_options(&s);
        let latency_ticks = u32::from_ne_bytes([o[0], o[1], o[2], o[3]]);
        assert_eq!(latency_ticks as u64, 2_000_000_000 / 64);
        assert_eq!(nla_types(&o[24..]), vec![1, 4, 10, 11]);
        assert_eq!(percent(1.0), u32::MAX);
        assert_eq!(percent(0.0), 0);
    }

    #[test]
    fn reordering_gets_a_gap_netem_acts_on() {
        let gap = |s: &Shape| {
            let o = netem_options(s);
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]])
        };
        let reorder = Shape {
            reorder: 0.5,
            delay_us: 20_000,
            ..Shape::default()
        };
        assert_eq!(gap(&reorder), 1, "gap 0 would never reorder");
        assert_eq!(gap(&Shape { gap: 5, ..reorder }), 5);
        assert_eq!(gap(&Shape::default()), 0);
    }
}
