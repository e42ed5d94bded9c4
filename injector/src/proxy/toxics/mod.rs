//! What each toxic does to a link's chunks, one file per type, written
//! after ToxiProxy's `Pipe` functions (toxics/*.go) as step machines: the
//! link asks a toxic what to do with the head of its input, carries it
//! out when the next stage has room, and tells the toxic it was done.
//! Toxics decide timing and sizes only; the bytes stay in pipes.

mod bandwidth;
mod latency;
mod limit_data;
mod packet_loss;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::queue::Input;
use crate::faults::Attributes;

/// What a toxic wants done next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Pass the first `n` bytes of the head chunk on, stamped `ts`.
    Forward { n: usize, ts: Instant },
    /// Throw the first `n` bytes of the head chunk away.
    Drop { n: usize },
    /// Close the output: end of stream downstream; nothing more is taken.
    Close,
    /// Nothing to do before then.
    Wait(Instant),
    /// Nothing to do until the input changes.
    Idle,
}

/// State that lives as long as the toxic is on the link, across updates
/// and re-rolls (ToxiProxy's `StatefulToxic` state on the stub).
pub struct Memory {
    /// limit_data: bytes passed so far.
    pub transmitted: i64,
    /// packet_loss: the previous chunk was dropped.
    pub was_dropped: bool,
    /// packet_loss: this link's own generator.
    pub rng: StdRng,
}

impl Memory {
    pub fn new() -> Memory {
        Memory {
            transmitted: 0,
            was_dropped: false,
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }
}

/// One toxic running on one link. A new value is built each time
/// ToxiProxy would (re)start the toxic's `Pipe`, so fields are that
/// function's locals; lasting state is in `Memory`.
pub trait Behaviour: Send {
    fn step(&mut self, input: Input, now: Instant, mem: &mut Memory) -> Step;

    /// `step`'s Forward or Drop was carried out at `now`; `head_len` was
    /// the head chunk's size before.
    fn done(&mut self, _step: Step, _head_len: usize, _now: Instant, _mem: &mut Memory) {}

    /// Holds part of the head chunk mid-way: an interrupt flushes it on,
    /// as ToxiProxy's toxics do ("don't drop any data on the floor").
    fn in_hand(&self) -> bool {
        false
    }

    /// Ignores interrupts (a reset_peer that already started its countdown:
    /// ToxiProxy's stub is not listening for them then).
    fn uninterruptible(&self) -> bool {
        false
    }
}

/// A toxic that lost its toxicity roll, and ToxiProxy's hidden chain head.
pub struct Noop;

impl Behaviour for Noop {
    fn step(&mut self, input: Input, _now: Instant, _mem: &mut Memory) -> Step {
        pass(input)
    }
}

/// Forward every chunk as it is, close on end of input.
fn pass(input: Input) -> Step {
    match input {
        Input::Chunk(c) => Step::Forward { n: c.len, ts: c.ts },
        Input::Eof => Step::Close,
        Input::Empty => Step::Idle,
    }
}

/// Starts a run of the toxic `attributes` describe, at `now`.
pub fn build(attributes: &Attributes, now: Instant) -> Box<dyn Behaviour> {
    match attributes {
        Attributes::Latency(a) => Box::new(latency::Latency::new(a)),
        Attributes::Bandwidth(a) => Box::new(bandwidth::Bandwidth::new(a)),
        Attributes::SlowClose(a) => Box::new(slow_close::SlowClose::new(a)),
        Attributes::Timeout(a) => Box::new(timeout::Timeout::new(a, now)),
        Attributes::ResetPeer(a) => Box::new(reset_peer::ResetPeer::new(a)),
        Attributes::Slicer(a) => Box::new(slicer::Slicer::new(a)),
        Attributes::LimitData(a) => Box::new(limit_data::LimitData::new(a)),
        Attributes::PacketLoss(a) => Box::new(packet_loss::PacketLoss::new(a)),
        // Noop, and kernel-only types the engine never sends here.
        _ => Box::new(Noop),
    }
}

/// How many chunks wait in front of the toxic, the one it works on
/// included: ToxiProxy gives latency a 1024-chunk channel, the others an
/// unbuffered one.
pub fn capacity(attributes: &Attributes) -> usize {
    match attributes {
        Attributes::Latency(_) => 1024 + 1,
        _ => 1,
    }
}

/// `now + ms`, now for ms <= 0, None when it would overflow (never).
fn after_ms(now: Instant, ms: i64) -> Option<Instant> {
    now.checked_add(Duration::from_millis(ms.max(0) as u64))
}

/// `now + ns` (now when ns <= 0), None when it would overflow (never).
fn later(now: Instant, ns: i128) -> Option<Instant> {
    now.checked_add(Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64))
}

/// `t` moved by a signed number of nanoseconds (t itself on overflow).
fn shift(t: Instant, ns: i128) -> Instant {
    let d = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    if ns >= 0 {
        t.checked_add(d).unwrap_or(t)
    } else {
        t.checked_sub(d).unwrap_or(t)
    }
}

/// `a - b` in signed nanoseconds.
fn signed_ns(a: Instant, b: Instant) -> i128 {
    if a >= b {
        a.duration_since(b).as_nanos() as i128
    } else {
        -(b.duration_since(a).as_nanos() as i128)
    }
}

/// Waits for `deadline` (never when None), then does `then`.
fn at(deadline: Option<Instant>, now: Instant, then: Step) -> Step {
    match deadline {
        Some(d) if now >= d => then,
        Some(d) => Step::Wait(d),
        None => Step::Idle,
    }
}

/// Test helper: a chunk of `len` bytes read at `ts`.
#[cfg(test)]
fn chunk(len: usize, ts: Instant) -> Input {
    Input::Chunk(super::queue::Chunk { len, ts })
}
