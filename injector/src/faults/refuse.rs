//! `refuse`: new connections fail at once with ECONNREFUSED.

use super::KernelAction;

crate::attributes!(Refuse = "RefuseToxic" {});

impl Refuse {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Refuse])
    }
}
