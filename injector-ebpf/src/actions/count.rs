//! Per-rule counters (per CPU, summed by the daemon for /metrics).

use crate::maps::COUNTERS;

#[inline(always)]
pub fn matched(id: u32, len: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        unsafe {
            (*c).matched_pkts += 1;
            (*c).matched_bytes += len as u64;
        }
    }
}

#[inline(always)]
pub fn acted(id: u32, len: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        unsafe {
            (*c).acted_pkts += 1;
            (*c).acted_bytes += len as u64;
        }
    }
}
