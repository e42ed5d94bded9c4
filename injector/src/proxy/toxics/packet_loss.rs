//! packet_loss (ToxiProxy PR #739): each chunk is dropped with `loss_rate`,
//! or `loss_rate + correlation` right after a drop, from a generator of the
//! link's own. Unlike the PR, the end of stream still closes the link (the
//! PR's toxic returns without closing, which leaves the connection hanging).

use std::time::Instant;

use rand::Rng;

use super::{Behaviour, Memory, Step, pass};
use crate::faults::packet_loss::PacketLoss as Attrs;
use crate::proxy::queue::Input;

pub struct PacketLoss {
    loss_rate: f64,
    correlation: f64,
    /// The head chunk's fate, drawn once.
    drop_head: Option<bool>,
}

impl PacketLoss {
    pub fn new(a: &Attrs) -> PacketLoss {
        let (loss_rate, correlation) = a.clamped();
        PacketLoss {
            loss_rate,
            correlation,
            drop_head: None,
        }
    }
}

impl Behaviour for PacketLoss {
    fn step(&mut self, input: Input, _now: Instant, mem: &mut Memory) -> Step {
        let Input::Chunk(c) = input else {
            return pass(input);
        };
        let drop = *self.drop_head.get_or_insert_with(|| {
            let p = if mem.was_dropped {
                (self.loss_rate + self.correlation).min(1.0)
            } else {
                self.loss_rate
            };
            mem.rng.random::<f64>() < p
        });
        if drop {
            Step::Drop { n: c.len }
        } else {
            Step::Forward { n: c.len, ts: c.ts }
        }
    }

    fn done(&mut self, step: Step, _head_len: usize, _now: Instant, mem: &mut Memory) {
        mem.was_dropped = matches!(step, Step::Drop { .. });
        self.drop_head = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::chunk;

    fn drops(loss_rate: f64, correlation: f64, n: usize) -> Vec<bool> {
        let mut mem = Memory::new();
        let mut p = PacketLoss::new(&Attrs {
            loss_rate,
            correlation,
        });
        let t0 = Instant::now();
        (0..n)
            .map(|_| {
                let s = p.step(chunk(1, t0), t0, &mut mem);
                p.done(s, 1, t0, &mut mem);
                matches!(s, Step::Drop { .. })
            })
            .collect()
    }

    #[test]
    fn extremes_and_correlation() {
        assert!(drops(0.0, 0.0, 100).iter().all(|d| !d));
        assert!(drops(1.0, 0.0, 100).iter().all(|d| *d));
        assert!(drops(7.0, -3.0, 100).iter().all(|d| *d), "clamped to 1");
        // With correlation 1, the first drop drops everything after it.
        let d = drops(0.1, 1.0, 200);
        let first = d.iter().position(|x| *x).expect("some drop in 200 at 10 %");
        assert!(d[first..].iter().all(|x| *x));
    }
}
