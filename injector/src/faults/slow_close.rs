//! `slow_close`: data passes; the close (FIN) is held back `delay` ms.
//! In the kernel only FIN segments go through a netem delay class.

use super::{KernelAction, Shape};

crate::attributes!(SlowClose = "SlowCloseToxic" { delay: i64 });

impl SlowClose {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Shape(Shape {
            delay_us: self.delay.max(0) as u64 * 1000,
            fin_only: true,
            ..Shape::default()
        })])
    }
}
