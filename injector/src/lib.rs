//! injector: network faults in the kernel, behind ToxiProxy's REST API.
//!
//! Follow one request: `api/` decodes it (ToxiProxy's wire rules), `engine`
//! owns the desired state and hands each proxy's toxics to its runtime:
//! `proxy/` for listen/upstream proxies (splice, no userland copies) or
//! `kernel/` for kernel-native proxies (a target plus BPF rules and qdisc
//! classes). `faults/` has one file per toxic type.

pub mod activity;
pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod faults;
pub mod fuzz;
pub mod kernel;
pub mod lab;
pub mod model;
pub mod proxy;

pub use error::ApiError;
