//! `reset_peer`: the connection is reset (RST, ECONNRESET) `timeout` ms
//! after data first flows.

use super::KernelAction;

crate::attributes!(ResetPeer = "ResetToxic" { timeout: i64 });

impl ResetPeer {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Reset {
            after_ms: self.timeout.max(0) as u64,
            after_bytes: 0,
        }])
    }
}
