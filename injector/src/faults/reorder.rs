//! `reorder`: a fraction of packets jumps the queue; the others wait
//! `delay` ms (netem needs a delay to reorder against). With `gap` N, only
//! every Nth packet may jump; 0 (the default) means any packet, as tc's
//! `reorder` without `gap`.

use super::{KernelAction, Shape, check_probability};

crate::attributes!(Reorder = "ReorderToxic" { probability: f64, gap: i64, delay: i64 });

impl Reorder {
    pub fn validate(&self) -> Result<(), String> {
        check_probability("probability", self.probability)?;
        if self.gap < 0 || self.delay < 0 {
            return Err("reorder gap and delay must be >= 0".into());
        }
        Ok(())
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Shape(Shape {
            reorder: self.probability,
            gap: self.gap as u32,
            delay_us: (if self.delay == 0 { 10 } else { self.delay }) as u64 * 1000,
            ..Shape::default()
        })])
    }
}
