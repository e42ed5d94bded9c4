//! `noop`: passes everything; in the kernel it only counts matching packets.

use super::KernelAction;

crate::attributes!(Noop = "NoopToxic" {});

impl Noop {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Count])
    }
}
