//! The desired state as clients describe it: proxies, their targets and
//! toxics. Wire forms follow ToxiProxy's byte for byte (see
//! ../shared/toxiproxy-api.md); api/ decodes into these, backends read them.

use std::time::Instant;

use serde_json::{Map, Value};

use crate::faults::{Attributes, attrs::go_float32};

/// Which way the bytes flow, relative to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client -> upstream.
    Upstream,
    /// Upstream -> client (ToxiProxy's default).
    Downstream,
}

impl Stream {
    /// Case-insensitive, as ToxiProxy's ParseDirection.
    pub fn parse(s: &str) -> Option<Stream> {
        if s.eq_ignore_ascii_case("upstream") {
            Some(Stream::Upstream)
        } else if s.eq_ignore_ascii_case("downstream") {
            Some(Stream::Downstream)
        } else {
            None
        }
    }
}

/// One toxic as stored and listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub stream: Stream,
    /// The stream exactly as the client spelled it (ToxiProxy echoes it).
    pub stream_raw: String,
    pub toxicity: f32,
    pub attributes: Attributes,
    /// Lifetime asked for at creation (`ttl_ms`); enforced in the kernel
    /// for kernel-native proxies and by the engine for the others.
    pub ttl_ms: Option<u64>,
    pub expires_at: Option<Instant>,
}

impl Toxic {
    pub fn kind(&self) -> &'static str {
        self.attributes.type_name()
    }

    /// Probability that a given connection is affected, clamped to [0, 1]
    /// (ToxiProxy accepts any value: >= 1 means always, <= 0 never).
    pub fn toxicity_share(&self) -> f64 {
        if self.toxicity.is_nan() {
            0.0
        } else {
            (self.toxicity as f64).clamp(0.0, 1.0)
        }
    }

    /// `{"attributes":..,"name":..,"type":..,"stream":..,"toxicity":..}`,
    /// plus `ttl_ms` when set (an injector extension).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("attributes".into(), self.attributes.to_json());
        m.insert("name".into(), Value::String(self.name.clone()));
        m.insert("type".into(), Value::String(self.kind().into()));
        m.insert("stream".into(), Value::String(self.stream_raw.clone()));
        m.insert("toxicity".into(), go_float32(self.toxicity));
        if let Some(ttl) = self.ttl_ms {
            m.insert("ttl_ms".into(), Value::from(ttl));
        }
        Value::Object(m)
    }
}

/// What a kernel-native proxy acts on: exactly one kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A host interface by name, seen from the interface itself.
    Interface(String),
    /// A network namespace: a name under /var/run/netns or a path such as
    /// /proc/PID/ns/net; acted on at the host end of its veth.
    Netns(String),
    /// A cgroup v2 path (relative to the v2 mount, or absolute).
    Cgroup(String),
    /// A process: its network namespace.
    Pid(u32),
    /// A Docker container by name or id.
    Container(String),
    /// A target the guard rails would refuse (the default-route interface,
    /// loopback, the root cgroup), asked for with `"force": true`.
    Forced(Box<Target>),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Interface(_) => "interface",
            Target::Netns(_) => "netns",
            Target::Cgroup(_) => "cgroup",
            Target::Pid(_) => "pid",
            Target::Container(_) => "container",
            Target::Forced(t) => t.kind(),
        }
    }

    /// The target without the `force` wrapper.
    pub fn inner(&self) -> &Target {
        match self {
            Target::Forced(t) => t.inner(),
            t => t,
        }
    }

    pub fn is_forced(&self) -> bool {
        matches!(self, Target::Forced(_))
    }

    pub fn to_json(&self) -> Value {
        let v = match self.inner() {
            Target::Pid(p) => Value::from(*p),
            Target::Interface(s) | Target::Netns(s) | Target::Cgroup(s) | Target::Container(s) => {
                Value::String(s.clone())
            }
            Target::Forced(_) => unreachable!("inner() unwraps"),
        };
        let mut m = Map::new();
        m.insert(self.kind().into(), v);
        if self.is_forced() {
            m.insert("force".into(), Value::Bool(true));
        }
        Value::Object(m)
    }

    /// Parses `{"container":"web"}` and friends; exactly one key.
    pub fn from_json(v: &Value) -> Result<Target, String> {
        let obj = v.as_object().ok_or(
            "target must be an object with one of interface, netns, cgroup, pid, container",
        )?;
        let mut found = None;
        let mut force = false;
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            let key = k.to_ascii_lowercase();
            if key == "force" {
                force = v.as_bool().ok_or("target force must be true or false")?;
                continue;
            }
            let text = || {
                v.as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| format!("target {key} must be a non-empty string"))
            };
            let t = match key.as_str() {
                "interface" => Target::Interface(text()?),
                "netns" => Target::Netns(text()?),
                "cgroup" => Target::Cgroup(text()?),
                "container" => Target::Container(text()?),
                "pid" => Target::Pid(
                    v.as_u64()
                        .filter(|p| *p > 0 && *p <= u32::MAX as u64)
                        .ok_or("target pid must be a positive integer")? as u32,
                ),
                other => return Err(format!("unknown target kind {other:?}")),
            };
            if found.replace(t).is_some() {
                return Err(
                    "target takes exactly one of interface, netns, cgroup, pid, container".into(),
                );
            }
        }
        let t =
            found.ok_or("target takes exactly one of interface, netns, cgroup, pid, container")?;
        Ok(if force {
            Target::Forced(Box::new(t))
        } else {
            t
        })
    }

    /// Parses the CLI form `kind:value` (e.g. `container:web`, `pid:42`).
    pub fn from_cli(s: &str) -> Result<Target, String> {
        let (k, v) = s
            .split_once(':')
            .ok_or_else(|| format!("target {s:?} must look like kind:value, e.g. container:web"))?;
        let json = if k == "pid" {
            Value::from(v.parse::<u64>().map_err(|_| format!("bad pid {v:?}"))?)
        } else {
            Value::String(v.to_string())
        };
        let mut m = Map::new();
        m.insert(k.to_string(), json);
        Target::from_json(&Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toxic_wire_form_is_toxiproxys() {
        let mut attributes = Attributes::new("latency").unwrap();
        attributes
            .merge(json!({"latency": 100, "jitter": 10}).as_object().unwrap())
            .unwrap();
        let t = Toxic {
            name: "latency_downstream".into(),
            stream: Stream::Downstream,
            stream_raw: "downstream".into(),
            toxicity: 1.0,
            attributes,
            ttl_ms: None,
            expires_at: None,
        };
        assert_eq!(
            t.to_json().to_string(),
            r#"{"attributes":{"latency":100,"jitter":10},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}"#
        );
    }

    #[test]
    fn targets_parse_strictly() {
        assert_eq!(
            Target::from_json(&json!({"container": "web"})).unwrap(),
            Target::Container("web".into())
        );
        assert_eq!(
            Target::from_json(&json!({"PID": 7})).unwrap(),
            Target::Pid(7)
        );
        assert!(Target::from_json(&json!({"pid": -1})).is_err());
        assert!(Target::from_json(&json!({"netns": "a", "cgroup": "b"})).is_err());
        assert!(Target::from_json(&json!({})).is_err());
        assert!(Target::from_json(&json!({"vm": "x"})).is_err());
        assert_eq!(
            Target::from_cli("interface:veth0").unwrap(),
            Target::Interface("veth0".into())
        );
        assert!(Target::from_cli("nonsense").is_err());
        let forced = Target::from_json(&json!({"interface": "eth0", "force": true})).unwrap();
        assert_eq!(forced.inner(), &Target::Interface("eth0".into()));
        assert_eq!(
            forced.to_json(),
            json!({"interface": "eth0", "force": true})
        );
        assert_eq!(
            Target::from_json(&json!({"interface": "eth0", "force": false})).unwrap(),
            Target::Interface("eth0".into())
        );
        assert!(Target::from_json(&json!({"interface": "eth0", "force": "yes"})).is_err());
    }

    #[test]
    fn streams_parse_case_insensitively() {
        assert_eq!(Stream::parse("UpStream"), Some(Stream::Upstream));
        assert_eq!(Stream::parse(""), None);
    }
}
