//! latency: each chunk waits `latency ± jitter` ms counted from when it was
//! read, so a stream is not delayed again chunk after chunk. Like
//! ToxiProxy, the chunk's timestamp moves by the sleep, so a second latency
//! toxic adds its own delay on top (two 100 ms toxics make 200 ms).

use std::time::Instant;

use rand::Rng;

use super::{Behaviour, Memory, Step, at, later, shift, signed_ns};
use crate::faults::latency::Latency as Attrs;
use crate::proxy::queue::Input;

pub struct Latency {
    latency: i64,
    jitter: i64,
    /// The head chunk taken: when it may go (None: never) and its new stamp.
    held: Option<(Option<Instant>, Instant)>,
}

impl Latency {
    pub fn new(a: &Attrs) -> Latency {
        Latency {
            latency: a.latency,
            jitter: a.jitter,
            held: None,
        }
    }

    /// `latency + U[-jitter, jitter)` in ms, as ToxiProxy draws it.
    fn delay_ms(&self) -> i128 {
        let mut delay = self.latency as i128;
        if self.jitter > 0 {
            let j = self.jitter as i128;
            delay += rand::rng().random_range(0..2 * j) - j;
        }
        delay
    }
}

impl Behaviour for Latency {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        let c = match input {
            Input::Chunk(c) => c,
            Input::Eof => return Step::Close,
            Input::Empty => return Step::Idle,
        };
        if self.held.is_none() {
            let sleep = self.delay_ms() * 1_000_000 - signed_ns(now, c.ts);
            self.held = Some((later(now, sleep), shift(c.ts, sleep)));
        }
        let (deadline, ts) = self.held.expect("set above");
        at(deadline, now, Step::Forward { n: c.len, ts })
    }

    fn done(&mut self, _step: Step, _head_len: usize, _now: Instant, _mem: &mut Memory) {
        self.held = None;
    }

    fn in_hand(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::toxics::chunk;

    fn attrs(latency: i64, jitter: i64) -> Attrs {
        Attrs { latency, jitter }
    }

    #[test]
    fn delay_counts_from_the_read_time() {
        let mut mem = Memory::new();
        let t0 = Instant::now();
        let mut l = Latency::new(&attrs(100, 0));
        // Taken 30 ms after it was read: 70 ms left.
        let now = t0 + Duration::from_millis(30);
        assert_eq!(
            l.step(chunk(5, t0), now, &mut mem),
            Step::Wait(t0 + Duration::from_millis(100))
        );
        let later = t0 + Duration::from_millis(100);
        let Step::Forward { n, ts } = l.step(chunk(5, t0), later, &mut mem) else {
            panic!("due at 100 ms")
        };
        assert_eq!(n, 5);
        // The stamp moved by the 70 ms slept, as ToxiProxy's Timestamp.Add(sleep).
        assert_eq!(ts, t0 + Duration::from_millis(70));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let l = Latency::new(&attrs(100, 10));
        for _ in 0..1000 {
            let d = l.delay_ms();
            assert!((90..110).contains(&d), "{d}");
        }
    }

    #[test]
    fn end_of_stream_closes_and_huge_delays_never_fire() {
        let mut mem = Memory::new();
        let now = Instant::now();
        let mut l = Latency::new(&attrs(i64::MAX, 0));
        assert_eq!(l.step(Input::Eof, now, &mut mem), Step::Close);
        assert!(matches!(
            l.step(chunk(1, now), now, &mut mem),
            Step::Wait(_)
        ));
        assert!(l.in_hand());
    }
}
