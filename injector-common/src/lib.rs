//! What the daemon and the eBPF programs must agree on, byte for byte: map
//! layouts, action codes and the pure functions that decide whether a packet
//! is hit. Everything here is tested on the host without root; the eBPF crate
//! only wires these functions to kernel helpers.
#![cfg_attr(not(test), no_std)]

pub mod decide;
pub mod dns;
pub mod packet;
pub mod rule;
