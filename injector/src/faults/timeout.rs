//! `timeout`: no data passes; with timeout > 0 the connection is closed
//! after that many ms. In the kernel: drop, then reset both ends.

use super::KernelAction;

crate::attributes!(Timeout = "TimeoutToxic" { timeout: i64 });

impl Timeout {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        let mut plan = Vec::new();
        if self.timeout > 0 {
            // Retransmissions of the dropped data carry the reset in time.
            plan.push(KernelAction::Reset {
                after_ms: self.timeout as u64,
                after_bytes: 0,
            });
        }
        plan.push(KernelAction::Drop {
            probability: 1.0,
            correlation: 0.0,
        });
        Ok(plan)
    }
}
