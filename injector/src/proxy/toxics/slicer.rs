//! slicer: each chunk goes out in pieces of about `average_size ±
//! size_variation` bytes, `delay` µs apart (also after the last piece),
//! cut the way ToxiProxy cuts them: halve around a random point until a
//! piece is within the variation of the average.

use std::time::{Duration, Instant};

use rand::Rng;

use super::{Behaviour, Memory, Step};
use crate::faults::slicer::Slicer as Attrs;
use crate::proxy::queue::Input;

pub struct Slicer {
    average: usize,
    variation: usize,
    delay: Duration,
    /// Sizes of the head chunk's pieces and how many went.
    held: Option<(Vec<usize>, usize)>,
    /// The pause after a piece.
    pause_until: Option<Instant>,
}

impl Slicer {
    pub fn new(a: &Attrs) -> Slicer {
        // The API refuses the values ToxiProxy crashes on; clamp anyway so
        // nothing here can loop or panic.
        let average = a.average_size.clamp(1, u32::MAX as i64) as usize;
        let variation = a.size_variation.clamp(0, average as i64 - 1) as usize;
        Slicer {
            average,
            variation,
            delay: Duration::from_micros(a.delay.max(0) as u64),
            held: None,
            pause_until: None,
        }
    }

    /// Piece sizes for a chunk of `len` bytes, in order.
    fn cut(&self, len: usize) -> Vec<usize> {
        let mut rng = rand::rng();
        let mut pieces = vec![];
        let mut todo = vec![(0usize, len)];
        while let Some((start, end)) = todo.pop() {
            if (end - start) as i128 - self.average as i128 <= self.variation as i128 {
                pieces.push(end - start);
                continue;
            }
            let v = self.variation as i128;
            let jitter = if v > 0 {
                rng.random_range(0..2 * v) - v
            } else {
                0
            };
            let mid = (start as i128 + (end - start) as i128 / 2 + jitter)
                .clamp(start as i128 + 1, end as i128 - 1) as usize;
            // Left half first: the stack pops it next.
            todo.push((mid, end));
            todo.push((start, mid));
        }
        pieces
    }
}

impl Behaviour for Slicer {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        if let Some(t) = self.pause_until {
            if now < t {
                return Step::Wait(t);
            }
            self.pause_until = None;
            if self.held.as_ref().is_some_and(|(p, sent)| *sent == p.len()) {
                self.held = None;
            }
        }
        let c = match input {
            Input::Chunk(c) => c,
            Input::Eof => return Step::Close,
            Input::Empty => return Step::Idle,
        };
        if self.held.is_none() {
            self.held = Some((self.cut(c.len), 0));
        }
        let (pieces, sent) = self.held.as_ref().expect("set above");
        Step::Forward {
            n: pieces[*sent],
            ts: c.ts,
        }
    }

    fn done(&mut self, _step: Step, _head_len: usize, now: Instant, _mem: &mut Memory) {
        if let Some((_, sent)) = &mut self.held {
            *sent += 1;
        }
        self.pause_until = Some(now.checked_add(self.delay).unwrap_or(now));
    }

    fn in_hand(&self) -> bool {
        self.held.as_ref().is_some_and(|(p, sent)| *sent < p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slicer(average_size: i64, size_variation: i64) -> Slicer {
        Slicer::new(&Attrs {
            average_size,
            size_variation,
            delay: 10,
        })
    }

    #[test]
    fn pieces_cover_the_chunk_within_bounds() {
        let s = slicer(10, 5);
        for len in [1, 10, 15, 16, 100, 32768] {
            let pieces = s.cut(len);
            assert_eq!(pieces.iter().sum::<usize>(), len);
            // Halving only bounds a piece from above: 16 can split 3 + 13.
            let worst = pieces.iter().copied().max().unwrap_or(0);
            assert!(
                worst <= 15 && !pieces.contains(&0),
                "{len}: largest {worst}"
            );
            if len > 15 {
                assert!(pieces.len() >= len / 15, "{len}: {} pieces", pieces.len());
            }
        }
    }

    #[test]
    fn zero_variation_and_bad_values_do_not_panic() {
        assert_eq!(slicer(10, 0).cut(40), vec![10, 10, 10, 10]);
        assert_eq!(slicer(0, 7).cut(3).iter().sum::<usize>(), 3);
        assert_eq!(slicer(4, 9).cut(100).iter().sum::<usize>(), 100);
    }
}
