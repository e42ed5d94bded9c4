//! `packet_loss` (ToxiProxy PR #739): each chunk (proxy) or packet (kernel)
//! is dropped with `loss_rate`, more likely after a drop by `correlation`.

use super::KernelAction;

crate::attributes!(PacketLoss = "PacketLossToxic" { loss_rate: f64, correlation: f64 });

impl PacketLoss {
    pub fn clamped(&self) -> (f64, f64) {
        (clamp01(self.loss_rate), clamp01(self.correlation))
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        let (p, c) = self.clamped();
        Ok(vec![KernelAction::Drop {
            probability: p,
            correlation: c,
        }])
    }
}

/// ToxiProxy clamps both values into [0, 1].
pub fn clamp01(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}
