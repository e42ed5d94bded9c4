//! The shop's layout, the same on every backend: which services run, at
//! which address and port, what they call, and the names the lab's DNS
//! server answers. Everything follows from the lab's name and its /24.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail};

/// The DNS zone of every lab; the services find each other below it.
pub const ZONE: &str = "shop.lab";
pub const DEFAULT_NAME: &str = "lab";

pub const WEB_PORT: u16 = 80;
pub const ORDERS_PORT: u16 = 8080;
pub const PAYMENTS_PORT: u16 = 8090;
pub const DB_PORT: u16 = 6379;
pub const DNS_PORT: u16 = 53;
/// Where the DNS server takes record changes (`injector lab route`).
pub const DNS_CONTROL_PORT: u16 = 8053;

/// One service of the shop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Web,
    Orders,
    Payments,
    Db,
    Dns,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::Orders => "orders",
            Role::Payments => "payments",
            Role::Db => "db",
            Role::Dns => "dns",
        }
    }

    pub fn port(self) -> u16 {
        match self {
            Role::Web => WEB_PORT,
            Role::Orders => ORDERS_PORT,
            Role::Payments => PAYMENTS_PORT,
            Role::Db => DB_PORT,
            Role::Dns => DNS_PORT,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::Web => "web front end: /checkout, round robin over the orders instances",
            Role::Orders => "orders API: order id from db, charge via payments, store in db",
            Role::Payments => "payment provider: /charge",
            Role::Db => "database: a Redis-protocol key-value store",
            Role::Dns => "DNS server for shop.lab (UDP and TCP 53)",
        }
    }
}

/// One process of the shop: a role, an instance name, an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub role: Role,
    /// `web`, `orders-a`, `orders-b`, `payments`, `db`, `dns`.
    pub instance: &'static str,
    pub ip: Ipv4Addr,
}

impl Service {
    /// The command line that runs this service (after the binary).
    pub fn args(&self, lab: &Lab) -> Vec<String> {
        let mut a = vec![
            "lab".to_string(),
            "service".to_string(),
            self.role.as_str().to_string(),
            "--instance".to_string(),
            self.instance.to_string(),
        ];
        if self.role == Role::Dns {
            for (name, ips) in lab.records() {
                a.push("--record".into());
                let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
                a.push(format!("{name}={}", ips.join(",")));
            }
        } else {
            a.push("--dns".into());
            a.push(lab.dns_ip().to_string());
        }
        a
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    pub name: String,
    /// The first three octets of the lab's /24.
    pub net: [u8; 3],
}

/// `lab`, or up to 8 lower-case letters and digits starting with a letter:
/// the name prefixes containers and interfaces (15 bytes at most).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        bail!("lab name {name:?}: use 1 to 8 lower-case letters or digits, starting with a letter");
    }
    Ok(())
}

/// `a.b.c.0/24`.
pub fn parse_subnet(s: &str) -> anyhow::Result<[u8; 3]> {
    let bad = || anyhow!("lab subnet {s:?}: give a /24 such as 10.77.0.0/24");
    let (ip, bits) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let o = ip.octets();
    if bits != "24" || o[3] != 0 {
        return Err(bad());
    }
    Ok([o[0], o[1], o[2]])
}

impl Lab {
    /// The default lab gets 10.77.0.0/24; other names a /24 of 10.77/16
    /// picked from the name, so two labs seldom collide (give --subnet
    /// when they do).
    pub fn new(name: &str, subnet: Option<&str>) -> anyhow::Result<Lab> {
        check_name(name)?;
        let net = match subnet {
            Some(s) => parse_subnet(s)?,
            None if name == DEFAULT_NAME => [10, 77, 0],
            None => {
                // FNV-1a: stable across builds, unlike std's hasher.
                let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
                [10, 77, 1 + (h % 250) as u8]
            }
        };
        Ok(Lab {
            name: name.to_string(),
            net,
        })
    }

    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    pub fn subnet(&self) -> String {
        format!("{}/24", self.ip(0))
    }

    /// The host's address on the lab network.
    pub fn gateway(&self) -> Ipv4Addr {
        self.ip(1)
    }

    pub fn services(&self) -> Vec<Service> {
        let s = |role, instance, host| Service {
            role,
            instance,
            ip: self.ip(host),
        };
        // DNS first: the others look names up as soon as they serve.
        vec![
            s(Role::Dns, "dns", 53),
            s(Role::Db, "db", 40),
            s(Role::Payments, "payments", 30),
            s(Role::Orders, "orders-a", 20),
            s(Role::Orders, "orders-b", 21),
            s(Role::Web, "web", 10),
        ]
    }

    pub fn service(&self, instance: &str) -> Option<Service> {
        self.services().into_iter().find(|s| s.instance == instance)
    }

    fn ip_of(&self, instance: &str) -> Ipv4Addr {
        self.service(instance)
            .map(|s| s.ip)
            .expect("every instance named here is in services()")
    }

    pub fn web_ip(&self) -> Ipv4Addr {
        self.ip_of("web")
    }

    pub fn dns_ip(&self) -> Ipv4Addr {
        self.ip_of("dns")
    }

    /// `http://<web>/checkout`: what a shopper (and `lab load`) calls.
    pub fn checkout_url(&self) -> String {
        format!("http://{}:{WEB_PORT}/checkout", self.web_ip())
    }

    /// Docker container (or namespace) of an instance.
    pub fn container(&self, instance: &str) -> String {
        format!("{}-{instance}", self.name)
    }

    /// The Docker network.
    pub fn network(&self) -> String {
        format!("injector-{}", self.name)
    }

    /// The host bridge (Docker's, or the namespace backend's).
    pub fn bridge(&self) -> String {
        format!("inj-{}", self.name)
    }

    /// The names the DNS server answers: one per instance, and one per
    /// role (both orders instances behind `orders`).
    pub fn records(&self) -> Vec<(String, Vec<Ipv4Addr>)> {
        let mut out: Vec<(String, Vec<Ipv4Addr>)> = Vec::new();
        for s in self.services() {
            let role = format!("{}.{ZONE}", s.role.as_str());
            match out.iter_mut().find(|(n, _)| *n == role) {
                Some((_, ips)) => ips.push(s.ip),
                None => out.push((role, vec![s.ip])),
            }
            if s.instance != s.role.as_str() {
                out.push((format!("{}.{ZONE}", s.instance), vec![s.ip]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_enough_for_interfaces() {
        assert!(check_name("lab").is_ok());
        assert!(check_name("t1234567").is_ok());
        for bad in ["", "Lab", "1lab", "lab-x", "toolongname", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let lab = Lab::new("t1234567", None).unwrap();
        assert!(lab.bridge().len() <= 15);
        assert!(lab.container("orders-b").len() < 64);
    }

    #[test]
    fn subnets_come_from_the_name_or_the_flag() {
        assert_eq!(Lab::new("lab", None).unwrap().subnet(), "10.77.0.0/24");
        let a = Lab::new("alpha", None).unwrap();
        assert_eq!(a, Lab::new("alpha", None).unwrap());
        assert!(a.net[2] >= 1 && a.net[2] <= 250);
        assert_eq!(
            Lab::new("x", Some("192.168.50.0/24")).unwrap().gateway(),
            Ipv4Addr::new(192, 168, 50, 1)
        );
        for bad in ["10.0.0.0/16", "10.0.0.5/24", "10.0.0.0", "x/24"] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_serves_roles_and_instances() {
        let lab = Lab::new("lab", None).unwrap();
        let r = lab.records();
        let get = |n: &str| r.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("orders.shop.lab").unwrap(),
            vec![lab.ip(20), lab.ip(21)]
        );
        assert_eq!(get("orders-b.shop.lab").unwrap(), vec![lab.ip(21)]);
        assert_eq!(get("payments.shop.lab").unwrap(), vec![lab.ip(30)]);
        assert!(get("payments-a.shop.lab").is_none());
        let dns_args = lab.service("dns").unwrap().args(&lab);
        assert!(dns_args.contains(&"orders.shop.lab=10.77.0.20,10.77.0.21".to_string()));
        let web_args = lab.service("web").unwrap().args(&lab);
        assert!(web_args.ends_with(&["--dns".to_string(), "10.77.0.53".to_string()]));
    }
}
