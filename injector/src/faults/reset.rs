//! `reset`: established connections are reset (both ends see ECONNRESET):
//! at once, after `after_ms`, or after `after_bytes` passed.

use super::KernelAction;

crate::attributes!(Reset = "ResetConnToxic" { after_ms: i64, after_bytes: i64 });

impl Reset {
    pub fn validate(&self) -> Result<(), String> {
        if self.after_ms < 0 || self.after_bytes < 0 {
            return Err("reset after_ms and after_bytes must be >= 0".into());
        }
        Ok(())
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Reset {
            after_ms: self.after_ms as u64,
            after_bytes: self.after_bytes as u64,
        }])
    }
}
