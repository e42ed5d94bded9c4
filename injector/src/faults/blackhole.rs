//! `blackhole`: every matching packet vanishes, silently (a zone that is
//! gone, a dead dependency). `zones` cuts named address sets.

use super::KernelAction;

crate::attributes!(Blackhole = "BlackholeToxic" { zones: Vec<String> });

impl Blackhole {
    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Drop {
            probability: 1.0,
            correlation: 0.0,
        }])
    }
}
