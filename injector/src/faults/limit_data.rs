//! `limit_data`: at most `bytes` pass per connection and direction, then it
//! is closed (proxy) or reset (kernel).

use super::KernelAction;

crate::attributes!(LimitData = "LimitDataToxic" { bytes: i64 });

impl LimitData {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Reset {
            after_ms: 0,
            after_bytes: self.bytes.max(1) as u64,
        }])
    }
}
