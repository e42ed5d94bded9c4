//! The single owner of desired state (proxies and their toxics).
