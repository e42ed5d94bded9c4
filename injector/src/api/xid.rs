//! Request ids in the shape ToxiProxy sends (rs/xid): 12 bytes (seconds,
//! machine, pid, counter) as 20 lowercase base32hex characters.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

static MACHINE: LazyLock<[u8; 3]> = LazyLock::new(rand::random);
static COUNTER: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(rand::random()));

pub fn next() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let pid = std::process::id() as u16;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id[4..7].copy_from_slice(&*MACHINE);
    id[7..9].copy_from_slice(&pid.to_be_bytes());
    id[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    encode(&id)
}

/// 96 bits plus 4 zero bits, 5 bits per character, most significant first.
fn encode(id: &[u8; 12]) -> String {
    let n = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[4..].copy_from_slice(id);
        b
    }) << 4;
    (0..20)
        .rev()
        .map(|i| ALPHABET[((n >> (i * 5)) & 0x1f) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_rs_xid() {
        // From rs/xid's test vectors.
        let id = [
            0x4d, 0x88, 0xe1, 0x5b, 0x60, 0xf4, 0x86, 0xe4, 0x28, 0x41, 0x2d, 0xc9,
        ];
        assert_eq!(encode(&id), "9m4e2mr0ui3e8a215n4g");
    }

    #[test]
    fn ids_are_fresh_and_well_formed() {
        let (a, b) = (next(), next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }
}
