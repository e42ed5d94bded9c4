//! What the faults in force are doing: the BPF per-rule counters of every
//! kernel-native toxic, summed per (proxy, toxic, action) for /metrics, and
//! turned into `fired` events with per-second rates for /events.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::{Duration, Instant, SystemTime},
};

use injector_common::rule::Counters;

use crate::{
    engine::{Engine, Event, EventKind},
    kernel::counters::{self, Action},
};

/// How often fired events are computed.
pub const FIRED_INTERVAL: Duration = Duration::from_secs(1);

/// One toxic's counters: matched over all its rules, acted per action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToxicCounts {
    pub proxy: String,
    pub toxic: String,
    pub matched_pkts: u64,
    pub matched_bytes: u64,
    /// (action, packets, bytes), one entry per action its rules take.
    pub acted: Vec<(Action, u64, u64)>,
}

impl ToxicCounts {
    fn acted_total(&self) -> (u64, u64) {
        self.acted
            .iter()
            .fold((0, 0), |(p, b), (_, ap, ab)| (p + ap, b + ab))
    }
}

/// Counters of every kernel-native toxic, in (proxy, toxic) order. Empty
/// when the data plane is not loaded.
pub async fn snapshot(engine: &Engine) -> Vec<ToxicCounts> {
    let Some(dp) = engine.data_plane() else {
        return Vec::new();
    };
    let toxics = engine.kernel_toxics().await;
    let ids: Vec<u32> = toxics
        .iter()
        .flat_map(|(_, t)| t.rules.iter().map(|(id, _)| *id))
        .collect();
    let mut values = dp.rule_counters(&ids).await.into_iter();
    let mut out = Vec::with_capacity(toxics.len());
    for (proxy, t) in toxics {
        let mut matched = Counters::default();
        let mut acted: BTreeMap<Action, (u64, u64)> = BTreeMap::new();
        for (_, action) in t.rules {
            let c = values.next().unwrap_or_default();
            counters::add(&mut matched, &c);
            let slot = acted.entry(action).or_default();
            slot.0 += c.acted_pkts;
            slot.1 += c.acted_bytes;
        }
        if t.socket_resets > 0 {
            // Cgroup targets reset connections from userland: one per
            // connection, no bytes.
            acted.entry(Action::Reset).or_default().0 += t.socket_resets;
        }
        out.push(ToxicCounts {
            proxy,
            toxic: t.toxic,
            matched_pkts: matched.matched_pkts,
            matched_bytes: matched.matched_bytes,
            acted: acted.into_iter().map(|(a, (p, b))| (a, p, b)).collect(),
        });
    }
    out.sort_by(|a, b| (&a.proxy, &a.toxic).cmp(&(&b.proxy, &b.toxic)));
    out
}

/// A fired event for a toxic whose counters moved between two snapshots
/// `secs` apart; None when nothing moved (or the toxic is new).
pub fn fired(
    before: Option<&ToxicCounts>,
    now: &ToxicCounts,
    secs: f64,
    at_ms: u64,
) -> Option<Event> {
    let before = before?;
    let (p0, b0) = before.acted_total();
    let (p1, b1) = now.acted_total();
    // Counters only grow while a rule lives; a toxic replaced under the same
    // name starts again from zero, which is no activity.
    let dp = p1.checked_sub(p0)?;
    let db = b1.checked_sub(b0)?;
    let dm = now.matched_pkts.checked_sub(before.matched_pkts)?;
    if dp == 0 && dm == 0 {
        return None;
    }
    let secs = secs.max(1e-3);
    Some(Event {
        kind: EventKind::Fired,
        proxy: now.proxy.clone(),
        toxic: Some(now.toxic.clone()),
        at_ms,
        packets_per_s: Some(dp as f64 / secs),
        bytes_per_s: Some(db as f64 / secs),
        matched_per_s: Some(dm as f64 / secs),
    })
}

/// Starts the fired-event ticker when a tokio runtime runs; it ends with
/// the engine. The counters are read only while someone listens.
pub fn spawn(engine: &Arc<Engine>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let weak = Arc::downgrade(engine);
    tokio::spawn(tick(weak));
}

/// A snapshot keyed by (proxy, toxic).
type Snapshot = BTreeMap<(String, String), ToxicCounts>;

async fn tick(weak: Weak<Engine>) {
    let mut interval = tokio::time::interval(FIRED_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Instant, Snapshot)> = None;
    loop {
        interval.tick().await;
        let Some(engine) = weak.upgrade() else {
            return;
        };
        if engine.listeners() == 0 {
            last = None;
            continue;
        }
        let now = Instant::now();
        let snap: Snapshot = snapshot(&engine)
            .await
            .into_iter()
            .map(|c| ((c.proxy.clone(), c.toxic.clone()), c))
            .collect();
        if let Some((at, before)) = &last {
            let secs = now.duration_since(*at).as_secs_f64();
            let at_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            for (key, c) in &snap {
                if let Some(ev) = fired(before.get(key), c, secs, at_ms) {
                    engine.send(ev);
                }
            }
        }
        last = Some((now, snap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(matched: u64, dropped: u64) -> ToxicCounts {
        ToxicCounts {
            proxy: "p".into(),
            toxic: "t".into(),
            matched_pkts: matched,
            matched_bytes: matched * 100,
            acted: vec![(Action::Dropped, dropped, dropped * 100)],
        }
    }

    #[test]
    fn a_toxic_fires_with_its_rates_when_its_counters_move() {
        let ev = fired(Some(&counts(10, 5)), &counts(30, 15), 2.0, 7).expect("fired");
        assert_eq!(ev.kind, EventKind::Fired);
        assert_eq!(ev.toxic.as_deref(), Some("t"));
        assert_eq!(ev.packets_per_s, Some(5.0));
        assert_eq!(ev.bytes_per_s, Some(500.0));
        assert_eq!(ev.matched_per_s, Some(10.0));
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["kind"], "fired");
        assert_eq!(json["packets_per_s"], 5.0);
    }

    #[test]
    fn idle_new_and_restarted_toxics_do_not_fire() {
        assert!(fired(Some(&counts(10, 5)), &counts(10, 5), 1.0, 0).is_none());
        assert!(fired(None, &counts(10, 5), 1.0, 0).is_none());
        assert!(fired(Some(&counts(10, 5)), &counts(2, 1), 1.0, 0).is_none());
    }

    #[test]
    fn other_events_carry_no_rates() {
        let ev = Event {
            kind: EventKind::Added,
            proxy: "p".into(),
            toxic: None,
            at_ms: 1,
            packets_per_s: None,
            bytes_per_s: None,
            matched_per_s: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"kind":"added","proxy":"p","toxic":null,"at_ms":1}"#
        );
    }
}
