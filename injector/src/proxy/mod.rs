//! Listen/upstream proxies as ToxiProxy users know them. Bytes move between
//! the accepted and the upstream socket with splice(2) through pipes and
//! never enter userland buffers; toxics act on the timing and size of
//! those splices.

use crate::{ApiError, model::Toxic};

pub struct ListenProxy {}

impl ListenProxy {
    /// Binds `listen` with ToxiProxy's address rules and starts accepting.
    pub async fn start(
        _name: &str,
        _listen: &str,
        _upstream: &str,
        _toxics: &[Toxic],
    ) -> Result<ListenProxy, ApiError> {
        Err(ApiError::internal("proxy mode: not built yet"))
    }

    /// The concrete address listened on, as ToxiProxy rewrites it.
    pub fn listen_addr(&self) -> String {
        String::new()
    }

    /// Replaces the toxic chains; open connections pick the change up.
    pub fn set_toxics(&self, _toxics: &[Toxic]) {}

    /// Closes the listener and every connection.
    pub async fn stop(self) {}
}
