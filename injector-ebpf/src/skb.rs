//! Packet byte access for the shared parsers, through bpf_skb_load_bytes so
//! headers in non-linear (GRO/GSO) skbs are read correctly.

use aya_ebpf::programs::sk_buff::SkBuff;
use injector_common::packet::Bytes;

pub struct Skb<'a>(pub &'a SkBuff);

impl Bytes for Skb<'_> {
    #[inline(always)]
    fn byte(&self, off: usize) -> Option<u8> {
        self.0.load::<u8>(off).ok()
    }
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.0.load::<[u8; 2]>(off).ok().map(u16::from_be_bytes)
    }
    #[inline(always)]
    fn be32(&self, off: usize) -> Option<u32> {
        self.0.load::<[u8; 4]>(off).ok().map(u32::from_be_bytes)
    }
    #[inline(always)]
    fn b16(&self, off: usize) -> Option<[u8; 16]> {
        self.0.load::<[u8; 16]>(off).ok()
    }
}
