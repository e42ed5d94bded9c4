//! timeout: every chunk is dropped. With `timeout > 0` the link closes
//! once no chunk arrived for that long (ToxiProxy re-arms its timer on
//! each chunk); with 0 it holds the connection until the toxic goes.
//! Removing it closes the link: the chain (chain.rs) does that, as
//! ToxiProxy's Cleanup.

use std::time::Instant;

use super::{Behaviour, Memory, Step, after_ms, at};
use crate::faults::timeout::Timeout as Attrs;
use crate::proxy::queue::Input;

pub struct Timeout {
    timeout: i64,
    /// When the link closes unless a chunk comes first.
    idle_until: Option<Instant>,
}

impl Timeout {
    pub fn new(a: &Attrs, now: Instant) -> Timeout {
        let mut t = Timeout {
            timeout: a.timeout,
            idle_until: None,
        };
        t.rearm(now);
        t
    }

    fn rearm(&mut self, now: Instant) {
        self.idle_until = if self.timeout > 0 {
            after_ms(now, self.timeout)
        } else {
            None
        };
    }
}

impl Behaviour for Timeout {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        if self.idle_until.is_some_and(|t| now >= t) {
            return Step::Close;
        }
        match input {
            Input::Chunk(c) => Step::Drop { n: c.len },
            Input::Eof => Step::Close,
            Input::Empty => at(self.idle_until, now, Step::Close),
        }
    }

    fn done(&mut self, _step: Step, _head_len: usize, now: Instant, _mem: &mut Memory) {
        self.rearm(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::toxics::chunk;

    #[test]
    fn drops_data_and_closes_when_idle() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut t = Timeout::new(&Attrs { timeout: 300 }, t0);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(t.step(Input::Empty, t0, &mut mem), Step::Wait(ms(300)));
        let s = t.step(chunk(9, ms(200)), ms(200), &mut mem);
        assert_eq!(s, Step::Drop { n: 9 });
        t.done(s, 9, ms(200), &mut mem);
        // The chunk re-armed the timer.
        assert_eq!(t.step(Input::Empty, ms(300), &mut mem), Step::Wait(ms(500)));
        assert_eq!(t.step(Input::Empty, ms(500), &mut mem), Step::Close);
    }

    #[test]
    fn zero_holds_for_ever() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut t = Timeout::new(&Attrs { timeout: 0 }, t0);
        assert_eq!(t.step(Input::Empty, t0, &mut mem), Step::Idle);
        assert_eq!(t.step(chunk(1, t0), t0, &mut mem), Step::Drop { n: 1 });
        assert_eq!(t.step(Input::Eof, t0, &mut mem), Step::Close);
    }
}
