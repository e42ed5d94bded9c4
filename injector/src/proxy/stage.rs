//! One toxic on one link (ToxiProxy's ToxicStub): the chunks waiting for
//! it, whether it won its toxicity roll, and its running behaviour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::chain::ToxicSpec;
use super::queue::{Input, Queue};
use super::toxics::{self, Behaviour, Memory, Noop, Step};
use crate::faults::Attributes;

/// Where the step being carried out came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Toxic,
    Noop,
    Flush,
}

pub struct Stage {
    /// Identity within the process, to tell stages apart across updates.
    pub id: u64,
    pub spec: ToxicSpec,
    pub queue: Queue,
    /// Sent its end of stream on: takes nothing more.
    pub closed: bool,
    /// Removed from the chain but kept in place, as ToxiProxy keeps a stub
    /// it could not interrupt (closed, or a reset_peer counting down).
    pub zombie: bool,
    active: bool,
    /// Pass the head chunk on as it is, then run the toxic again.
    flush_head: bool,
    run: Box<dyn Behaviour>,
    mem: Memory,
    last: Source,
}

impl Stage {
    pub fn new(spec: ToxicSpec, now: Instant) -> Stage {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let mut stage = Stage {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            spec,
            queue: Queue::default(),
            closed: false,
            zombie: false,
            active: false,
            flush_head: false,
            run: Box::new(Noop),
            mem: Memory::new(),
            last: Source::Noop,
        };
        stage.start(now);
        stage
    }

    /// ToxicStub.Run: roll the toxicity, then start the toxic or a noop.
    fn start(&mut self, now: Instant) {
        self.active = rand::random::<f32>() < self.spec.toxicity;
        self.run = if self.active {
            toxics::build(&self.spec.attributes, now)
        } else {
            Box::new(Noop)
        };
    }

    /// Chunks it may hold, the one in hand included.
    pub fn capacity(&self) -> usize {
        toxics::capacity(&self.spec.attributes)
    }

    pub fn has_room(&self) -> bool {
        !self.closed && self.queue.len() < self.capacity()
    }

    /// Runs as a reset_peer: its connection's sockets must reset on close.
    pub fn resets(&self) -> bool {
        self.active && matches!(self.spec.attributes, Attributes::ResetPeer(_))
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self.spec.attributes, Attributes::Timeout(_))
    }

    pub fn uninterruptible(&self) -> bool {
        self.run.uninterruptible()
    }

    pub fn step(&mut self, now: Instant) -> Step {
        if self.closed {
            return Step::Idle;
        }
        let input = self.queue.input();
        if self.flush_head {
            if let Input::Chunk(c) = input {
                self.last = Source::Flush;
                return Step::Forward { n: c.len, ts: c.ts };
            }
            self.flush_head = false;
        }
        self.last = if self.active {
            Source::Toxic
        } else {
            Source::Noop
        };
        self.run.step(input, now, &mut self.mem)
    }

    /// The last `step` (a Forward or a Drop) was carried out.
    pub fn done(&mut self, step: Step, head_len: usize, now: Instant) {
        match self.last {
            Source::Flush => self.flush_head = false,
            _ => self.run.done(step, head_len, now, &mut self.mem),
        }
    }

    /// ToxiProxy's interrupt and re-run: the toxic was updated (`spec`),
    /// or the toxic after it changed. What it holds mid-way is passed on,
    /// the toxicity is rolled again and the toxic restarts; its lasting
    /// state stays.
    pub fn restart(&mut self, spec: Option<ToxicSpec>, now: Instant) {
        if self.closed || self.zombie {
            return;
        }
        if self.run.uninterruptible() {
            return;
        }
        if self.run.in_hand() {
            self.flush_head = true;
        }
        if let Some(spec) = spec {
            self.spec = spec;
        }
        self.start(now);
    }
}
