//! `corrupt`: flip bits in a fraction of packets (netem leaf).

use super::{KernelAction, Shape, check_probability};

crate::attributes!(Corrupt = "CorruptToxic" { probability: f64 });

impl Corrupt {
    pub fn validate(&self) -> Result<(), String> {
        check_probability("probability", self.probability)
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Shape(Shape {
            corrupt: self.probability,
            ..Shape::default()
        })])
    }
}
