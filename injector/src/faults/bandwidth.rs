//! `bandwidth`: a rate limit in KB/s (1 KB = 1000 bytes, as ToxiProxy).
//! In the kernel an htb class shapes the matching flows only.

use super::{KernelAction, Shape};

crate::attributes!(Bandwidth = "BandwidthToxic" { rate: i64 });

impl Bandwidth {
    /// ToxiProxy panics on a negative rate; we refuse it.
    pub fn validate(&self) -> Result<(), String> {
        if self.rate < 0 {
            return Err(format!(
                "bandwidth rate must be >= 0 KB/s, got {}",
                self.rate
            ));
        }
        Ok(())
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        if self.rate == 0 {
            // ToxiProxy stalls the stream for good at rate 0: nothing passes.
            return Ok(vec![KernelAction::Drop {
                probability: 1.0,
                correlation: 0.0,
            }]);
        }
        Ok(vec![KernelAction::Shape(Shape {
            rate_bytes_per_s: self.rate as u64 * 1000,
            ..Shape::default()
        })])
    }
}
