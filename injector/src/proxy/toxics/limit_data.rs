//! limit_data: at most `bytes` pass on this link in total (the count
//! survives updates), the last chunk cut short; then the link closes.
//! As ToxiProxy, the close comes with the chunk that reaches the limit, so
//! a limit already used up closes on the next chunk.

use std::time::Instant;

use super::{Behaviour, Memory, Step};
use crate::faults::limit_data::LimitData as Attrs;
use crate::proxy::queue::Input;

pub struct LimitData {
    bytes: i64,
    closing: bool,
}

impl LimitData {
    pub fn new(a: &Attrs) -> LimitData {
        LimitData {
            bytes: a.bytes,
            closing: false,
        }
    }

    fn remaining(&self, mem: &Memory) -> i64 {
        self.bytes.saturating_sub(mem.transmitted).max(0)
    }
}

impl Behaviour for LimitData {
    fn step(&mut self, input: Input, _now: Instant, mem: &mut Memory) -> Step {
        if self.closing {
            return Step::Close;
        }
        match input {
            Input::Chunk(c) => match self.remaining(mem) {
                0 => Step::Drop { n: c.len },
                left => Step::Forward {
                    n: (left as u64).min(c.len as u64) as usize,
                    ts: c.ts,
                },
            },
            Input::Eof => Step::Close,
            Input::Empty => Step::Idle,
        }
    }

    fn done(&mut self, step: Step, head_len: usize, _now: Instant, mem: &mut Memory) {
        match step {
            Step::Forward { n, .. } => {
                mem.transmitted = mem.transmitted.saturating_add(n as i64);
                // A cut chunk still has its tail to drop before the close.
                self.closing = n == head_len && self.remaining(mem) == 0;
            }
            _ => self.closing = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::chunk;

    #[test]
    fn cuts_at_the_limit_then_closes() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut l = LimitData::new(&Attrs { bytes: 10 });
        let s = l.step(chunk(6, t0), t0, &mut mem);
        assert_eq!(s, Step::Forward { n: 6, ts: t0 });
        l.done(s, 6, t0, &mut mem);
        let s = l.step(chunk(6, t0), t0, &mut mem);
        assert_eq!(s, Step::Forward { n: 4, ts: t0 });
        l.done(s, 6, t0, &mut mem);
        let s = l.step(chunk(2, t0), t0, &mut mem);
        assert_eq!(s, Step::Drop { n: 2 });
        l.done(s, 2, t0, &mut mem);
        assert_eq!(l.step(Input::Empty, t0, &mut mem), Step::Close);
    }

    #[test]
    fn the_count_survives_a_restart() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut l = LimitData::new(&Attrs { bytes: 10 });
        let s = l.step(chunk(8, t0), t0, &mut mem);
        l.done(s, 8, t0, &mut mem);
        let mut again = LimitData::new(&Attrs { bytes: 10 });
        assert_eq!(
            again.step(chunk(8, t0), t0, &mut mem),
            Step::Forward { n: 2, ts: t0 }
        );
    }
}
