//! slow_close: data passes untouched; the end of stream is held `delay` ms
//! before the close goes on.

use std::time::Instant;

use super::{Behaviour, Memory, Step, after_ms, at, pass};
use crate::faults::slow_close::SlowClose as Attrs;
use crate::proxy::queue::Input;

pub struct SlowClose {
    delay: i64,
    /// When the held close goes (None inside: never).
    closing: Option<Option<Instant>>,
}

impl SlowClose {
    pub fn new(a: &Attrs) -> SlowClose {
        SlowClose {
            delay: a.delay,
            closing: None,
        }
    }
}

impl Behaviour for SlowClose {
    fn step(&mut self, input: Input, now: Instant, _mem: &mut Memory) -> Step {
        match input {
            Input::Eof => {
                let due = *self
                    .closing
                    .get_or_insert_with(|| after_ms(now, self.delay));
                at(due, now, Step::Close)
            }
            other => pass(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proxy::toxics::chunk;

    #[test]
    fn data_passes_and_the_close_waits() {
        let mut mem = Memory::new();
        let mut s = SlowClose::new(&Attrs { delay: 300 });
        let t0 = Instant::now();
        assert_eq!(
            s.step(chunk(3, t0), t0, &mut mem),
            Step::Forward { n: 3, ts: t0 }
        );
        let due = t0 + Duration::from_millis(300);
        assert_eq!(s.step(Input::Eof, t0, &mut mem), Step::Wait(due));
        assert_eq!(s.step(Input::Eof, due, &mut mem), Step::Close);
    }
}
