//! Every toxic type, one file each: its attributes (wire order and Go
//! decoding), its validation, and what it becomes in the kernel. The proxy
//! path (proxy/) reads the same attribute structs.

pub mod attrs;
pub mod bandwidth;
pub mod blackhole;
pub mod corrupt;
pub mod dns;
pub mod duplicate;
pub mod latency;
pub mod limit_data;
pub mod loss;
pub mod noop;
pub mod packet_loss;
pub mod refuse;
pub mod reorder;
pub mod reset;
pub mod reset_peer;
pub mod slicer;
pub mod slow_close;
pub mod timeout;

use serde_json::{Map, Value};

/// A qdisc-level effect: a rate (htb class) and/or a netem leaf.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    pub rate_bytes_per_s: u64,
    pub delay_us: u64,
    pub jitter_us: u64,
    pub correlation: f64,
    pub corrupt: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub gap: u32,
    /// Only FIN segments (slow_close).
    pub fin_only: bool,
}

impl Shape {
    /// Anything beyond a plain rate needs netem.
    pub fn needs_netem(&self) -> bool {
        self.delay_us > 0
            || self.jitter_us > 0
            || self.corrupt > 0.0
            || self.duplicate > 0.0
            || self.reorder > 0.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsPlan {
    /// None = drop (or delay, when `delay` is set).
    pub rcode: Option<u8>,
    pub patterns: Vec<dns::Pattern>,
    pub qtypes: Vec<u16>,
    pub resolvers: Vec<String>,
    pub probability: f64,
    pub delay: Option<Shape>,
}

/// What a toxic asks of the kernel data plane.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelAction {
    Drop {
        probability: f64,
        correlation: f64,
    },
    Reset {
        after_ms: u64,
        after_bytes: u64,
    },
    Refuse,
    Shape(Shape),
    Dns(DnsPlan),
    /// Match and count, change nothing.
    Count,
}

pub fn check_probability(name: &str, p: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("{name} must be between 0 and 1, got {p}"));
    }
    Ok(())
}

macro_rules! registry {
    ($($variant:ident($ty:ty) = $name:literal, proxy: $proxy:expr;)*) => {
        /// A toxic's type and attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Attributes {
            $($variant($ty),)*
        }

        impl Attributes {
            /// The zero-valued attributes of a type (ToxiProxy has no
            /// non-zero defaults); None for an unknown type. Case-sensitive.
            pub fn new(type_name: &str) -> Option<Self> {
                match type_name {
                    $($name => Some(Attributes::$variant(<$ty>::default())),)*
                    _ => None,
                }
            }

            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Attributes::$variant(_) => $name,)*
                }
            }

            pub fn go_name(&self) -> &'static str {
                match self {
                    $(Attributes::$variant(_) => <$ty>::GO_NAME,)*
                }
            }

            pub fn merge(&mut self, obj: &Map<String, Value>) -> Result<(), String> {
                match self {
                    $(Attributes::$variant(a) => a.merge(obj),)*
                }
            }

            pub fn to_json(&self) -> Value {
                match self {
                    $(Attributes::$variant(a) => a.to_json(),)*
                }
            }

            /// Does a listen/upstream proxy implement this type?
            pub fn works_in_proxy(&self) -> bool {
                match self {
                    $(Attributes::$variant(_) => $proxy,)*
                }
            }

            /// What the kernel must do for it, or why it cannot.
            pub fn kernel(&self) -> Result<Vec<KernelAction>, String> {
                match self {
                    $(Attributes::$variant(a) => a.kernel(),)*
                }
            }

            pub fn all_types() -> &'static [&'static str] {
                &[$($name,)*]
            }
        }
    };
}

registry! {
    Noop(noop::Noop) = "noop", proxy: true;
    Latency(latency::Latency) = "latency", proxy: true;
    Bandwidth(bandwidth::Bandwidth) = "bandwidth", proxy: true;
    SlowClose(slow_close::SlowClose) = "slow_close", proxy: true;
    Timeout(timeout::Timeout) = "timeout", proxy: true;
    ResetPeer(reset_peer::ResetPeer) = "reset_peer", proxy: true;
    Slicer(slicer::Slicer) = "slicer", proxy: true;
    LimitData(limit_data::LimitData) = "limit_data", proxy: true;
    PacketLoss(packet_loss::PacketLoss) = "packet_loss", proxy: true;
    Loss(loss::Loss) = "loss", proxy: false;
    Blackhole(blackhole::Blackhole) = "blackhole", proxy: false;
    Refuse(refuse::Refuse) = "refuse", proxy: false;
    Reset(reset::Reset) = "reset", proxy: false;
    Corrupt(corrupt::Corrupt) = "corrupt", proxy: false;
    Duplicate(duplicate::Duplicate) = "duplicate", proxy: false;
    Reorder(reorder::Reorder) = "reorder", proxy: false;
    Dns(dns::Dns) = "dns", proxy: false;
}

impl Attributes {
    /// Our deliberate differences from ToxiProxy: values that crash or hang
    /// the real server, and out-of-range kernel parameters, get a 400.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Attributes::Bandwidth(a) => a.validate(),
            Attributes::Slicer(a) => a.validate(),
            Attributes::Loss(a) => a.validate(),
            Attributes::Reset(a) => a.validate(),
            Attributes::Corrupt(a) => a.validate(),
            Attributes::Duplicate(a) => a.validate(),
            Attributes::Reorder(a) => a.validate(),
            Attributes::Dns(a) => a.validate(),
            _ => Ok(()),
        }
    }

    /// Named address sets (zones) the toxic is limited to.
    pub fn zones(&self) -> &[String] {
        match self {
            Attributes::Loss(a) => &a.zones,
            Attributes::Blackhole(a) => &a.zones,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_has_zero_defaults_and_round_trips() {
        for t in Attributes::all_types() {
            let a = Attributes::new(t).unwrap();
            assert_eq!(a.type_name(), *t);
            let mut b = Attributes::new(t).unwrap();
            b.merge(a.to_json().as_object().unwrap()).unwrap();
            assert_eq!(a, b);
        }
        assert!(
            Attributes::new("Latency").is_none(),
            "types are case-sensitive"
        );
    }

    #[test]
    fn wire_forms_match_toxiproxy() {
        let mut a = Attributes::new("latency").unwrap();
        a.merge(json!({"latency": 100, "jitter": 10}).as_object().unwrap())
            .unwrap();
        assert_eq!(a.to_json().to_string(), r#"{"latency":100,"jitter":10}"#);
        assert_eq!(Attributes::new("noop").unwrap().to_json().to_string(), "{}");
        assert_eq!(
            Attributes::new("slicer").unwrap().to_json().to_string(),
            r#"{"average_size":0,"size_variation":0,"delay":0}"#
        );
    }

    #[test]
    fn crashing_values_are_refused() {
        let mut bw = Attributes::new("bandwidth").unwrap();
        bw.merge(json!({"rate": -1}).as_object().unwrap()).unwrap();
        assert!(bw.validate().unwrap_err().contains("rate"));
        let sl = Attributes::new("slicer").unwrap();
        assert!(sl.validate().unwrap_err().contains("average_size"));
        let mut dns = Attributes::new("dns").unwrap();
        dns.merge(json!({"action": "explode"}).as_object().unwrap())
            .unwrap();
        assert!(dns.validate().is_err());
    }

    #[test]
    fn kernel_plans() {
        let mut bw = Attributes::new("bandwidth").unwrap();
        assert!(
            matches!(bw.kernel().unwrap()[0], KernelAction::Drop { probability, .. } if probability == 1.0)
        );
        bw.merge(json!({"rate": 100}).as_object().unwrap()).unwrap();
        assert!(
            matches!(&bw.kernel().unwrap()[0], KernelAction::Shape(s) if s.rate_bytes_per_s == 100_000 && !s.needs_netem())
        );
        assert!(Attributes::new("slicer").unwrap().kernel().is_err());
        let lat = Attributes::new("latency").unwrap();
        assert!(matches!(&lat.kernel().unwrap()[0], KernelAction::Shape(_)));
    }
}
