//! `slicer`: cuts data into pieces of about `average_size` ± `size_variation`
//! bytes, `delay` µs apart. Only a proxy owns the byte stream to cut.

use super::KernelAction;

crate::attributes!(Slicer = "SlicerToxic" { average_size: i64, size_variation: i64, delay: i64 });

impl Slicer {
    /// ToxiProxy overflows its stack at size 0 and can slice out of bounds
    /// when the variation exceeds the size; we refuse both.
    pub fn validate(&self) -> Result<(), String> {
        if self.average_size <= 0 {
            return Err(format!(
                "slicer average_size must be > 0, got {}",
                self.average_size
            ));
        }
        if self.size_variation < 0 || self.size_variation >= self.average_size {
            return Err(format!(
                "slicer size_variation must be >= 0 and < average_size ({}), got {}",
                self.average_size, self.size_variation
            ));
        }
        if self.delay < 0 {
            return Err(format!("slicer delay must be >= 0 µs, got {}", self.delay));
        }
        Ok(())
    }

    pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
        Err(
            "slicer rewrites the byte stream, which only a listen proxy can do; \
             create the proxy with listen/upstream instead of a target"
                .into(),
        )
    }
}
