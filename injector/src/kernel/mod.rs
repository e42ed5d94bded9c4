//! Everything injector adds to the kernel: BPF programs and maps (bpf.rs),
//! qdiscs and classes (tc.rs), and the resolution of targets to interfaces
//! and cgroups (resolve.rs). `KernelProxy` is the engine's handle on one
//! kernel-native proxy.

use std::sync::Arc;

use crate::{
    ApiError,
    model::{Target, Toxic},
};

/// The loaded data plane: one per daemon.
pub struct DataPlane {}

impl DataPlane {
    /// Loads and prepares the BPF object. Fails with a message naming the
    /// missing privilege or kernel feature.
    pub async fn load() -> Result<Arc<DataPlane>, ApiError> {
        Err(ApiError::unsupported("kernel data plane: not built yet"))
    }
}

/// One kernel-native proxy: a resolved target, the upstream selector, and
/// the rules its toxics compiled to.
pub struct KernelProxy {}

impl KernelProxy {
    /// Resolves the target and the upstream selector (names are resolved
    /// now); installs nothing until toxics arrive.
    pub async fn start(
        _dp: &Arc<DataPlane>,
        _name: &str,
        _upstream: &str,
        _target: &Target,
    ) -> Result<KernelProxy, ApiError> {
        Err(ApiError::unsupported("kernel data plane: not built yet"))
    }

    /// Makes the kernel hold exactly these toxics (upstream chain first,
    /// then downstream, as listed). All or nothing: on error the previous
    /// set stays installed.
    pub async fn set_toxics(&mut self, _toxics: &[Toxic]) -> Result<(), ApiError> {
        Err(ApiError::unsupported("kernel data plane: not built yet"))
    }

    /// Disabled = new connections refused, open ones reset (what ToxiProxy
    /// users see when a proxy is disabled).
    pub async fn set_enabled(&mut self, _enabled: bool) -> Result<(), ApiError> {
        Err(ApiError::unsupported("kernel data plane: not built yet"))
    }

    /// Removes everything this proxy installed.
    pub async fn stop(self) {}
}
