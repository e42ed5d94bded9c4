//! bandwidth: `rate` KB/s (1 KB = 1000 bytes). As ToxiProxy: each chunk
//! adds `len * 1 ms / rate` to a sleep debt; a chunk bigger than 100 ms
//! worth of data goes out in `rate * 100`-byte pieces every 100 ms, the
//! rest once the remaining debt has passed; timer overshoot is paid back.
//! `rate <= 0` holds the first chunk for ever (ToxiProxy stalls too).

use std::time::{Duration, Instant};

use super::{Behaviour, Memory, Step, at, later, signed_ns};
use crate::faults::bandwidth::Bandwidth as Attrs;
use crate::proxy::queue::Input;

const SLICE: Duration = Duration::from_millis(100);

pub struct Bandwidth {
    rate: i64,
    /// Sleep debt in ns (ToxiProxy's `sleep`, local to one Pipe run).
    debt: i128,
    held: Option<Held>,
}

enum Held {
    /// Bytes beyond 100 ms worth: the next slice goes at `at`.
    Slice {
        at: Option<Instant>,
    },
    /// The rest goes once the debt has passed since `start`.
    Rest {
        start: Instant,
        at: Option<Instant>,
        fired: Option<Instant>,
    },
    Stalled,
}

impl Bandwidth {
    pub fn new(a: &Attrs) -> Bandwidth {
        Bandwidth {
            rate: a.rate,
            debt: 0,
            held: None,
        }
    }

    fn slice_bytes(&self) -> i128 {
        self.rate as i128 * 100
    }

    fn phase(&self, len: usize, now: Instant) -> Held {
        if self.rate <= 0 {
            Held::Stalled
        } else if len as i128 > self.slice_bytes() {
            Held::Slice {
                at: now.checked_add(SLICE),
            }
        } else {
            Held::Rest {
                start: now,
                at: later(now, self.debt),
                fired: None,
            }
        }
    }
}

impl Behaviour for Bandwidth {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        let c = match input {
            Input::Chunk(c) => c,
            Input::Eof => return Step::Close,
            Input::Empty => return Step::Idle,
        };
        if self.held.is_none() {
            if self.rate > 0 {
                self.debt += c.len as i128 * 1_000_000 / self.rate as i128;
            }
            self.held = Some(self.phase(c.len, now));
        }
        let slice = self.slice_bytes();
        match self.held.as_mut().expect("set above") {
            Held::Stalled => Step::Idle,
            Held::Slice { at: due } => at(
                *due,
                now,
                Step::Forward {
                    n: slice as usize,
                    ts: c.ts,
                },
            ),
            Held::Rest { at: due, fired, .. } => {
                let step = at(*due, now, Step::Forward { n: c.len, ts: c.ts });
                if matches!(step, Step::Forward { .. }) && fired.is_none() {
                    *fired = Some(now);
                }
                step
            }
        }
    }

    fn done(&mut self, step: Step, head_len: usize, now: Instant, _mem: &mut Memory) {
        let Step::Forward { n, .. } = step else {
            return;
        };
        match self.held.take() {
            Some(Held::Slice { .. }) => {
                self.debt -= SLICE.as_nanos() as i128;
                self.held = Some(self.phase(head_len - n, now));
            }
            Some(Held::Rest { start, fired, .. }) => {
                self.debt -= signed_ns(fired.unwrap_or(now), start);
            }
            other => self.held = other,
        }
    }

    fn in_hand(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::chunk;

    /// Runs one chunk through with a perfect clock; returns when each
    /// piece left and its size.
    fn run(rate: i64, len: usize) -> Vec<(Duration, usize)> {
        let mut mem = Memory::new();
        let mut b = Bandwidth::new(&Attrs { rate });
        let t0 = Instant::now();
        let mut now = t0;
        let mut left = len;
        let mut out = vec![];
        while left > 0 {
            match b.step(chunk(left, t0), now, &mut mem) {
                Step::Wait(t) => now = t,
                s @ Step::Forward { n, .. } => {
                    out.push((now - t0, n));
                    b.done(s, left, now, &mut mem);
                    left -= n;
                }
                s => panic!("{s:?}"),
            }
        }
        out
    }

    #[test]
    fn small_chunks_wait_their_size() {
        // 1000 bytes at 10 KB/s: 100 ms.
        assert_eq!(run(10, 1000), vec![(Duration::from_millis(100), 1000)]);
    }

    #[test]
    fn big_chunks_go_in_100ms_slices() {
        // 2500 bytes at 10 KB/s: 1000 at 100 ms, 1000 at 200 ms, 500 at 250 ms.
        assert_eq!(
            run(10, 2500),
            vec![
                (Duration::from_millis(100), 1000),
                (Duration::from_millis(200), 1000),
                (Duration::from_millis(250), 500)
            ]
        );
    }

    #[test]
    fn rate_zero_stalls() {
        let mut mem = Memory::new();
        let mut b = Bandwidth::new(&Attrs { rate: 0 });
        let now = Instant::now();
        assert_eq!(b.step(chunk(10, now), now, &mut mem), Step::Idle);
        assert!(b.in_hand());
    }
}
