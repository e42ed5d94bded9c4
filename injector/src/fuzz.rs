//! The parsers an attacker or a typo can reach, as byte-in entry points:
//! `fuzz/` runs them under libFuzzer (`cargo xtask fuzz`), and the tests
//! below run them on random and mutated inputs in every `cargo test`.
//! Each must return (Ok or Err), never panic.

use injector_common::{
    dns::{NameHashes, parse_query, query_header},
    packet::{Packet, parse_eth, parse_ip},
};

use crate::{
    api::{populate::decode_list, proxies::decode_body, toxics::decode_create},
    experiment::policy::Policy,
    faults::Attributes,
    kernel::selector,
};

/// A POST body for /proxies, /populate or /proxies/{p}/toxics, decoded and
/// validated as the API does before anything is applied.
pub fn api_body(data: &[u8]) {
    if let Ok(p) = decode_body(data)
        && let Some(upstream) = p.upstream.as_deref()
    {
        let _ = selector::parse(upstream);
    }
    let _ = decode_list(data);
    if let Ok(spec) = decode_create(data)
        && let Some(mut attributes) = Attributes::new(&spec.kind)
        && let Some(map) = &spec.attributes
        && attributes.merge(map).is_ok()
        && attributes.validate().is_ok()
    {
        let _ = attributes.kernel();
    }
}

/// An experiment policy file, TOML or JSON.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse("fuzz", text);
    }
}

/// A frame as the eBPF programs parse it (the same code, built for the
/// host): Ethernet, IP at offset 0 (IFB and cgroup hooks), and a DNS query
/// at every offset a UDP payload could start.
pub fn packet(data: &[u8]) {
    let mut p = Packet::default();
    let _ = parse_eth(data, &mut p);
    let mut p = Packet::default();
    let _ = parse_ip(data, 0, &mut p);
    let mut names = NameHashes::new();
    for off in [0, 8, 28, 42, 62] {
        let _ = query_header(data, off);
        let _ = parse_query(data, off, &mut names);
    }
}

/// An upstream selector: `[proto://]addr-or-cidr[,...][:port[-port]]`.
pub fn upstream(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = selector::parse(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Valid inputs to mutate: the fuzzers' seeds (fuzz/seeds) as well.
    const BODIES: [&str; 4] = [
        r#"{"name":"web","listen":"127.0.0.1:0","upstream":"10.0.0.0/8,udp://[::1]:53-54","enabled":true}"#,
        r#"{"name":"t","type":"latency","stream":"upstream","toxicity":0.5,"attributes":{"latency":100,"jitter":10}}"#,
        r#"{"type":"dns","attributes":{"action":"nxdomain","domains":["*.example.com"],"qtypes":["A"]}}"#,
        r#"[{"name":"a","listen":"127.0.0.1:0","upstream":"x:1"}]"#,
    ];
    const POLICY: &str = include_str!("../../policies/black-friday.toml");

    fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut v = seed.to_vec();
        for &(at, b) in edits {
            if !v.is_empty() {
                let i = at % v.len();
                v[i] = b;
            }
        }
        v.truncate(cut % (v.len() + 1));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            api_body(&data);
            policy(&data);
            packet(&data);
            upstream(&data);
        }

        #[test]
        fn mutated_bodies_never_panic(
            seed in 0..BODIES.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let body = mutate(BODIES[seed].as_bytes(), &edits, cut);
            api_body(&body);
            upstream(&body);
        }

        #[test]
        fn mutated_policies_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        ) {
            let text = mutate(POLICY.as_bytes(), &edits, usize::MAX);
            policy(&text);
        }
    }

    #[test]
    fn the_seeds_are_valid_inputs() {
        // Mutating a seed that is already refused would test little.
        assert!(decode_body(BODIES[0].as_bytes()).is_ok());
        assert!(selector::parse("udp://10.0.0.0/8,192.168.0.0/16:53-54").is_ok());
        assert!(decode_create(BODIES[1].as_bytes()).is_ok());
        assert!(decode_create(BODIES[2].as_bytes()).is_ok());
        assert!(decode_list(BODIES[3].as_bytes()).is_ok());
        assert!(Policy::parse("black-friday.toml", POLICY).is_ok());
    }
}
