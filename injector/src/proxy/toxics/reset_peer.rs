//! reset_peer: the first chunk (or the end of stream) starts a countdown
//! of `timeout` ms, then the link closes; that chunk is dropped. The close
//! is a reset when the connection's sockets linger 0 (see link.rs for who
//! gets that). Once counting, nothing stops it: ToxiProxy's stub does not
//! listen for interrupts then.

use std::time::Instant;

use super::{Behaviour, Memory, Step, after_ms, at};
use crate::faults::reset_peer::ResetPeer as Attrs;
use crate::proxy::queue::Input;

pub struct ResetPeer {
    timeout: i64,
    /// When the reset goes, once triggered (None inside: never).
    fires: Option<Option<Instant>>,
}

impl ResetPeer {
    pub fn new(a: &Attrs) -> ResetPeer {
        ResetPeer {
            timeout: a.timeout,
            fires: None,
        }
    }
}

impl Behaviour for ResetPeer {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        match (self.fires, input) {
            (Some(due), _) => at(due, now, Step::Close),
            (None, Input::Chunk(c)) => Step::Drop { n: c.len },
            (None, Input::Eof) => {
                let due = after_ms(now, self.timeout);
                self.fires = Some(due);
                at(due, now, Step::Close)
            }
            (None, Input::Empty) => Step::Idle,
        }
    }

    fn done(&mut self, _step: Step, _head_len: usize, now: Instant, _mem: &mut Memory) {
        self.fires = Some(after_ms(now, self.timeout));
    }

    fn uninterruptible(&self) -> bool {
        self.fires.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::toxics::chunk;

    #[test]
    fn first_chunk_starts_the_countdown() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut r = ResetPeer::new(&Attrs { timeout: 300 });
        assert_eq!(r.step(Input::Empty, t0, &mut mem), Step::Idle);
        assert!(!r.uninterruptible());
        let s = r.step(chunk(4, t0), t0, &mut mem);
        assert_eq!(s, Step::Drop { n: 4 });
        r.done(s, 4, t0, &mut mem);
        assert!(r.uninterruptible());
        let due = t0 + Duration::from_millis(300);
        assert_eq!(r.step(chunk(4, t0), t0, &mut mem), Step::Wait(due));
        assert_eq!(r.step(Input::Empty, due, &mut mem), Step::Close);
    }

    #[test]
    fn end_of_stream_also_triggers() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut r = ResetPeer::new(&Attrs { timeout: 0 });
        assert_eq!(r.step(Input::Eof, t0, &mut mem), Step::Close);
    }
}
