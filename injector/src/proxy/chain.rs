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
