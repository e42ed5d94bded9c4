//! `duplicate`: send a fraction of packets twice (netem leaf).

use super::{KernelAction, Shape, check_probability};

crate::attributes!(Duplicate = "DuplicateToxic" { probability: f64 });

impl Duplicate {
    pub fn validate(&self) -> Result<(), String> {
        check_probability("probability", self.probability)
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Ok(vec![KernelAction::Shape(Shape {
            duplicate: self.probability,
            ..Shape::default()
        })])
    }
}
