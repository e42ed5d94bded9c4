//! The toxic chains of a proxy and how a link follows their changes, with
//! ToxiProxy's rules (link.go AddToxic / UpdateToxic / RemoveToxic):
//! - a new toxic joins open links too;
//! - an updated toxic restarts (re-rolls its toxicity, keeps its state);
//! - the toxic before an added or removed one restarts as well;
//! - a removed toxic hands what it buffered on at once, except a timeout,
//!   which closes the link instead, and a toxic that already closed or a
//!   reset_peer counting down, which stay in place.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use super::queue::Queue;
use super::stage::Stage;
use crate::faults::Attributes;
use crate::model::{Stream, Toxic};

/// One toxic as a link needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToxicSpec {
    pub name: String,
    pub attributes: Attributes,
    pub toxicity: f32,
}

impl ToxicSpec {
    fn same_toxic(&self, other: &ToxicSpec) -> bool {
        self.name == other.name && self.attributes.type_name() == other.attributes.type_name()
    }

    fn differs(&self, other: &ToxicSpec) -> bool {
        self.attributes != other.attributes || self.toxicity.to_bits() != other.toxicity.to_bits()
    }
}

/// Both directions' chains, each in insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chains {
    pub upstream: Vec<ToxicSpec>,
    pub downstream: Vec<ToxicSpec>,
}

impl Chains {
    /// From the engine's list (types a proxy cannot run are left out).
    pub fn from_toxics(toxics: &[Toxic]) -> Chains {
        let mut chains = Chains::default();
        for t in toxics.iter().filter(|t| t.attributes.works_in_proxy()) {
            let spec = ToxicSpec {
                name: t.name.clone(),
                attributes: t.attributes.clone(),
                toxicity: t.toxicity,
            };
            match t.stream {
                Stream::Upstream => chains.upstream.push(spec),
                Stream::Downstream => chains.downstream.push(spec),
            }
        }
        chains
    }

    pub fn get(&self, stream: Stream) -> &[ToxicSpec] {
        match stream {
            Stream::Upstream => &self.upstream,
            Stream::Downstream => &self.downstream,
        }
    }
}

/// Brings a link's `stages` (feeding `out`) in line with `specs`.
/// `reader_done`: the link's source already ended.
pub fn reconcile(
    stages: &mut Vec<Stage>,
    out: &mut Queue,
    specs: &[ToxicSpec],
    reader_done: bool,
    now: Instant,
) -> io::Result<()> {
    let old: Vec<Stage> = std::mem::take(stages);
    let old_next = successors(&old);

    // Which old stage each spec keeps; the API only appends and removes,
    // so kept stages are in the same order. If not, start afresh.
    let mut keep: Vec<Option<usize>> = specs
        .iter()
        .map(|s| {
            old.iter()
                .position(|st| !st.zombie && st.spec.same_toxic(s))
        })
        .collect();
    if !keep.iter().flatten().is_sorted_by(|a, b| a < b) {
        keep.iter_mut().for_each(|k| *k = None);
    }
    let kept: Vec<bool> = (0..old.len()).map(|i| keep.contains(&Some(i))).collect();

    // Removed stages, last first, so each hands its data to a successor
    // that is already settled.
    let mut slots: Vec<Option<Stage>> = old.into_iter().map(Some).collect();
    for r in (0..slots.len()).rev().filter(|&r| !kept[r]) {
        let (head, tail) = slots.split_at_mut(r + 1);
        let st = head[r].as_mut().expect("not yet taken");
        let next = tail.iter_mut().flatten().next().map(|s| &mut s.queue);
        let next = next.unwrap_or(&mut *out);
        if st.closed || st.zombie || st.uninterruptible() {
            st.zombie = true;
        } else if st.is_timeout() {
            // ToxiProxy's TimeoutToxic.Cleanup closes the stub.
            st.closed = true;
            st.zombie = true;
            next.eof = true;
        } else {
            st.queue.append_to(next)?;
            head[r] = None;
        }
    }

    // Rebuild in order: old stages where they were, new ones where the
    // specs put them (after every older stage when appended).
    let mut restarted = vec![];
    let mut at = 0;
    for (k, spec) in specs.iter().enumerate() {
        match keep[k] {
            Some(i) => {
                stages.extend(slots[at..i].iter_mut().filter_map(Option::take));
                let mut st = slots[i].take().expect("kept once");
                if st.spec.differs(spec) {
                    st.restart(Some(spec.clone()), now);
                    restarted.push(st.id);
                }
                stages.push(st);
                at = i + 1;
            }
            None => {
                let bound = keep[k + 1..]
                    .iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(slots.len());
                stages.extend(slots[at..bound].iter_mut().filter_map(Option::take));
                at = bound;
                let st = Stage::new(spec.clone(), now);
                restarted.push(st.id);
                stages.push(st);
            }
        }
    }
    stages.extend(slots[at..].iter_mut().filter_map(Option::take));

    // A stage whose successor changed is interrupted and re-run.
    let new_next = successors(stages);
    for st in stages.iter_mut() {
        let moved = old_next.get(&st.id).is_some_and(|n| *n != new_next[&st.id]);
        if moved && !restarted.contains(&st.id) {
            st.restart(None, now);
        }
    }

    // Nothing more comes from a closed stage or an ended reader: whoever
    // follows it now gets the end of stream.
    let mut prev_done = reader_done;
    for st in stages.iter_mut() {
        if prev_done {
            st.queue.eof = true;
        }
        prev_done = st.closed;
    }
    if prev_done {
        out.eof = true;
    }
    Ok(())
}

/// Each stage's successor id (0 = the link's output).
fn successors(stages: &[Stage]) -> HashMap<u64, u64> {
    stages
        .iter()
        .enumerate()
        .map(|(i, st)| (st.id, stages.get(i + 1).map_or(0, |n| n.id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use serde_json::json;

    use super::*;
    use crate::proxy::toxics::Step;

    fn spec(name: &str, kind: &str, attrs: serde_json::Value) -> ToxicSpec {
        let mut attributes = Attributes::new(kind).unwrap();
        attributes.merge(attrs.as_object().unwrap()).unwrap();
        ToxicSpec {
            name: name.into(),
            attributes,
            toxicity: 1.0,
        }
    }

    /// Queues `bytes` as one chunk.
    fn feed(queue: &mut Queue, bytes: &[u8]) {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(bytes).unwrap();
        assert_eq!(
            queue.read_from(r.as_raw_fd(), 1 << 16).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn a_removed_toxic_hands_its_chunks_on_in_order() {
        let now = Instant::now();
        let specs = [
            spec("a", "latency", json!({"latency": 1000})),
            spec("b", "latency", json!({"latency": 1000})),
        ];
        let mut stages: Vec<Stage> = specs.iter().map(|s| Stage::new(s.clone(), now)).collect();
        let mut out = Queue::default();
        feed(&mut stages[1].queue, b"old");
        feed(&mut stages[0].queue, b"newer");
        stages[0].queue.eof = true;
        reconcile(&mut stages, &mut out, &specs[1..], false, now).unwrap();
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].spec.name, "b");
        assert_eq!(stages[0].queue.len(), 2, "b got a's chunk after its own");
        assert_eq!(stages[0].queue.head_len(), 3);
        assert!(stages[0].queue.eof, "and a's end of stream");
    }

    #[test]
    fn removing_a_timeout_closes_the_link_and_stays_in_place() {
        let now = Instant::now();
        let specs = [
            spec("lat", "latency", json!({"latency": 10})),
            spec("t", "timeout", json!({"timeout": 0})),
        ];
        let mut stages: Vec<Stage> = specs.iter().map(|s| Stage::new(s.clone(), now)).collect();
        let mut out = Queue::default();
        reconcile(&mut stages, &mut out, &specs[..1], false, now).unwrap();
        assert_eq!(
            stages.len(),
            2,
            "the closed timeout stays, as ToxiProxy's stub"
        );
        assert!(stages[1].zombie && stages[1].closed);
        assert!(out.eof, "the destination gets its end of stream");
        // A toxic appended later goes after it and still sees the end.
        let more = [specs[0].clone(), spec("n", "noop", json!({}))];
        reconcile(&mut stages, &mut out, &more, false, now).unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[2].spec.name, "n");
        assert_eq!(stages[2].step(now), Step::Close);
    }

    #[test]
    fn appending_restarts_the_last_toxic_which_flushes_what_it_holds() {
        let now = Instant::now();
        let first = [spec("lat", "latency", json!({"latency": 100_000}))];
        let mut stages: Vec<Stage> = first.iter().map(|s| Stage::new(s.clone(), now)).collect();
        let mut out = Queue::default();
        feed(&mut stages[0].queue, b"held");
        assert!(
            matches!(stages[0].step(now), Step::Wait(_)),
            "taken and held"
        );
        let both = [first[0].clone(), spec("n", "noop", json!({}))];
        reconcile(&mut stages, &mut out, &both, false, now).unwrap();
        assert!(
            matches!(stages[0].step(now), Step::Forward { n: 4, .. }),
            "interrupted: the held chunk goes on at once"
        );
    }

    #[test]
    fn an_update_keeps_the_stage_and_its_data() {
        let now = Instant::now();
        let old = [spec("lim", "limit_data", json!({"bytes": 5}))];
        let mut stages: Vec<Stage> = old.iter().map(|s| Stage::new(s.clone(), now)).collect();
        let id = stages[0].id;
        let mut out = Queue::default();
        feed(&mut stages[0].queue, b"abc");
        let new = [spec("lim", "limit_data", json!({"bytes": 50}))];
        reconcile(&mut stages, &mut out, &new, false, now).unwrap();
        assert_eq!(stages[0].id, id);
        assert_eq!(stages[0].spec, new[0]);
        assert_eq!(stages[0].queue.head_len(), 3);
    }

    #[test]
    fn reordered_chains_start_afresh_without_losing_data() {
        let now = Instant::now();
        let specs = [spec("a", "noop", json!({})), spec("b", "noop", json!({}))];
        let mut stages: Vec<Stage> = specs.iter().map(|s| Stage::new(s.clone(), now)).collect();
        let mut out = Queue::default();
        feed(&mut stages[0].queue, b"x");
        feed(&mut stages[1].queue, b"yy");
        let swapped = [specs[1].clone(), specs[0].clone()];
        reconcile(&mut stages, &mut out, &swapped, false, now).unwrap();
        assert_eq!(out.len(), 2, "everything flushed to the output");
        assert_eq!(out.head_len(), 2, "older data first");
        assert_eq!(stages.len(), 2);
        assert!(stages.iter().all(|s| s.queue.is_empty()));
    }
}
