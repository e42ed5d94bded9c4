//! Rules installed on the client namespace's interface that the measured
//! traffic never matches: proxies whose upstreams are unused addresses,
//! each with up to 15 blackhole toxics (the most one address can hold:
//! SET_CAP), added through the API until the wanted count is reached.

use anyhow::{Result, bail};
use std::time::Instant;

use super::api::Api;

/// Rules one upstream address can carry.
const PER_PROXY: usize = 15;

pub struct Scale {
    ns: String,
    /// Toxics in the proxy being filled (0 = none started yet).
    in_last: usize,
    proxies: usize,
    pub rules: usize,
}

impl Scale {
    pub fn new(ns: &str) -> Scale {
        Scale {
            ns: ns.to_string(),
            in_last: PER_PROXY,
            proxies: 0,
            rules: 0,
        }
    }

    /// Adds rules until `target` are installed; returns the seconds taken.
    pub fn grow(&mut self, api: &mut Api, target: usize) -> Result<f64> {
        let t = Instant::now();
        while self.rules < target {
            if self.in_last == PER_PROXY {
                let i = self.proxies;
                // 10.214.0.0/16: addresses nothing on this host uses.
                let upstream = format!("10.214.{}.{}:9", i / 256, i % 256);
                let body = serde_json::json!({
                    "name": format!("scale-{i}"),
                    "upstream": upstream,
                    "target": {"netns": self.ns},
                });
                api.ok("POST", "/proxies", Some(&body.to_string()))?;
                self.proxies += 1;
                self.in_last = 0;
            }
            let body = format!(
                r#"{{"name":"s{}","type":"blackhole","stream":"upstream"}}"#,
                self.in_last
            );
            api.ok(
                "POST",
                &format!("/proxies/scale-{}/toxics", self.proxies - 1),
                Some(&body),
            )?;
            self.in_last += 1;
            self.rules += 1;
        }
        Ok(t.elapsed().as_secs_f64())
    }
}

/// `injector_rules_installed` from /metrics.
pub fn installed(api: &mut Api) -> Result<usize> {
    let page = api.ok("GET", "/metrics", None)?.body;
    for l in page.lines() {
        if let Some(v) = l.strip_prefix("injector_rules_installed ") {
            return Ok(v.trim().parse()?);
        }
    }
    bail!("/metrics has no injector_rules_installed")
}
