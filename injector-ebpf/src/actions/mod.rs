//! One file per kernel action; `rewrite` holds the packet surgery that the
//! answering actions (reset, refuse, dns) share.

pub mod classify;
pub mod count;
pub mod dns;
pub mod drop;
pub mod refuse;
pub mod reset;
pub mod rewrite;
