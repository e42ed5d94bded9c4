//! `loss`: drop each matching packet with `probability`, with netem-style
//! `correlation` for bursts; `zones` limits it to named address sets.

use super::{KernelAction, check_probability};

crate::attributes!(Loss = "LossToxic" { probability: f64, correlation: f64, zones: Vec<String> });

impl Loss {
    pub fn validate(&self) -> Result<(), String> {
        check_probability("probability", self.probability)?;
        check_probability("correlation", self.correlation)
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Drop {
            probability: self.probability,
            correlation: self.correlation,
        }])
    }
}
