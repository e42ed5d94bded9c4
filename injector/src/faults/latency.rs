//! `latency`: delay plus uniform jitter. Proxy mode delays each chunk;
//! in the kernel a netem leaf delays the matching packets only.

use super::{KernelAction, Shape};

crate::attributes!(Latency = "LatencyToxic" { latency: i64, jitter: i64 });

impl Latency {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Shape(Shape {
            delay_us: self.latency.max(0) as u64 * 1000,
            jitter_us: self.jitter.max(0) as u64 * 1000,
            ..Shape::default()
        })])
    }
}
