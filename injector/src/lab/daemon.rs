//! `injector serve --lab`: the README's first command. Brings the lab up,
//! puts a kernel-native proxy on each dependency of the shop (plus two
//! listen proxies for kernels without netem), and prints what to try.

use anyhow::Context as _;

use super::{
    Backend, BackendChoice,
    plan::{Lab, ORDERS_PORT, PAYMENTS_PORT},
};
use crate::{
    engine::{Engine, ProxySpec},
    model::Target,
};

/// One proxy of the lab and what it stands for.
pub struct LabProxy {
    pub spec: ProxySpec,
    pub about: String,
}

fn native(name: &str, upstream: String, target: Target, about: String) -> LabProxy {
    LabProxy {
        spec: ProxySpec {
            name: name.into(),
            listen: String::new(),
            upstream,
            enabled: true,
            target: Some(target),
        },
        about,
    }
}

/// The proxies `serve --lab` creates. Client-side targets where a
/// dependency has one client (web), server-side where it has two (both
/// orders instances call payments and db).
pub fn proxies(lab: &Lab, backend: &Backend) -> Vec<LabProxy> {
    let ip = |i: &str| lab.service(i).map(|s| s.ip).expect("a lab instance");
    let t = |i: &str| backend.target(lab, i);
    vec![
        native(
            "orders",
            format!("{}/31:{ORDERS_PORT}", ip("orders-a")),
            t("web"),
            "web -> both orders instances".into(),
        ),
        native(
            "orders-b",
            format!("{}:{ORDERS_PORT}", ip("orders-b")),
            t("web"),
            "web -> orders-b only (one of two instances)".into(),
        ),
        native(
            "payments",
            format!("{}:{PAYMENTS_PORT}", ip("payments")),
            t("payments"),
            "everything payments serves (both orders instances call it)".into(),
        ),
        native(
            "db",
            format!("{}:{}", ip("db"), super::plan::DB_PORT),
            t("db"),
            "everything db serves".into(),
        ),
        native(
            "dns",
            format!("{}:53", ip("dns")),
            t("web"),
            "web's DNS lookups".into(),
        ),
        LabProxy {
            spec: ProxySpec {
                name: "orders-listen".into(),
                listen: format!("{}:{ORDERS_PORT}", lab.gateway()),
                upstream: format!("{}:{ORDERS_PORT}", ip("orders-a")),
                enabled: true,
                target: None,
            },
            about: "listen proxy to orders-a (after `injector lab route orders --via gateway`)"
                .into(),
        },
        LabProxy {
            spec: ProxySpec {
                name: "payments-listen".into(),
                listen: format!("{}:{PAYMENTS_PORT}", lab.gateway()),
                upstream: format!("{}:{PAYMENTS_PORT}", ip("payments")),
                enabled: true,
                target: None,
            },
            about: "listen proxy to payments (after `injector lab route payments --via gateway`)"
                .into(),
        },
    ]
}

/// The lab a daemon brought up, and what to do with it on exit.
pub struct Started {
    pub lab: Lab,
    pub down_on_exit: bool,
}

/// Brings lab `name` up and creates its proxies (those that exist already,
/// e.g. from --config, are left as they are). Prints the walkthrough's
/// first lines on stdout.
pub async fn start(
    engine: &Engine,
    api: &str,
    name: &str,
    down_on_exit: bool,
) -> anyhow::Result<Started> {
    // A lab already up keeps its subnet; a new one gets its default.
    let lab = match Backend::locate(name).await? {
        Some((_, lab)) => lab,
        None => Lab::new(name, None)?,
    };
    let up = super::up(&lab, BackendChoice::Auto, true)
        .await
        .with_context(|| format!("cannot bring the demo lab {name} up"))?;
    let mut made = Vec::new();
    for p in proxies(&lab, &up.backend) {
        let pname = p.spec.name.clone();
        match engine.create(p.spec).await {
            Ok(_) => made.push((pname, p.about)),
            Err(e) if e.status == 409 => made.push((pname, format!("{} (already there)", p.about))),
            Err(e) => tracing::warn!("lab proxy {pname} not created: {}", e.message),
        }
    }
    println!("{}", banner(&lab, &up.backend, api, &made, down_on_exit));
    Ok(Started { lab, down_on_exit })
}

impl Started {
    /// On the daemon's exit: take the lab down, or say it stays.
    pub async fn finish(self) {
        if self.down_on_exit {
            match super::down(&self.lab.name, false).await {
                Ok(_) => eprintln!("lab {}: removed (--lab-down-on-exit)", self.lab.name),
                Err(e) => eprintln!("lab {}: cannot remove it: {e:#}", self.lab.name),
            }
        } else {
            eprintln!(
                "lab {0}: still running (remove it with `injector lab down --name {0}`)",
                self.lab.name
            );
        }
    }
}

/// The text printed once the lab and its proxies are ready.
pub fn banner(
    lab: &Lab,
    backend: &Backend,
    api: &str,
    made: &[(String, String)],
    down_on_exit: bool,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "\n== demo lab {} is up ({}): checkout at {} ==\n\nproxies (injector list):\n",
        lab.name,
        backend.as_str(),
        lab.checkout_url()
    ));
    for (name, about) in made {
        s.push_str(&format!("  {name:<16} {about}\n"));
    }
    let name_flag = if lab.name == super::plan::DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {}", lab.name)
    };
    s.push_str(&format!(
        "\nin another terminal, watch checkouts: injector lab load{name_flag}\nthen break things:\n\n"
    ));
    let post = |proxy: &str, body: &str| {
        format!("curl -X POST {api}/proxies/{proxy}/toxics -d '{body}'\n")
    };
    let del =
        |proxy: &str, toxic: &str| format!("curl -X DELETE {api}/proxies/{proxy}/toxics/{toxic}\n");
    let steps: [(&str, &str, &str, &str); 5] = [
        (
            "payment provider dead: checkouts fail at once (502, connection refused)",
            "payments",
            "payments-down",
            r#"{"name":"payments-down","type":"refuse"}"#,
        ),
        (
            "database blackhole: checkouts fail after orders' 1 s connect timeout",
            "db",
            "db-blackhole",
            r#"{"name":"db-blackhole","type":"blackhole"}"#,
        ),
        (
            "one of two orders instances lost: web fails over to orders-a, p99 shows it",
            "orders-b",
            "orders-b-lost",
            r#"{"name":"orders-b-lost","type":"blackhole"}"#,
        ),
        (
            "DNS outage for web: orders.shop.lab answers SERVFAIL",
            "dns",
            "dns-outage",
            r#"{"name":"dns-outage","type":"dns","attributes":{"action":"servfail"}}"#,
        ),
        (
            "peak-load latency (needs netem in the kernel; without it the API says so)",
            "orders",
            "peak-load-latency",
            r#"{"name":"peak-load-latency","type":"latency","attributes":{"latency":1500}}"#,
        ),
    ];
    for (what, proxy, toxic, body) in steps {
        s.push_str(&format!(
            "# {what}\n{}{}\n",
            post(proxy, body),
            del(proxy, toxic)
        ));
    }
    s.push_str(&format!(
        "# latency on a kernel without netem: through the listen proxy on the lab gateway\n\
         injector lab route payments --via gateway{name_flag}\n{}\
         injector lab route payments --direct{name_flag}\n\n\
         The README's \"Demo lab\" section walks through every seed experiment.\n",
        post(
            "payments-listen",
            r#"{"name":"payment-latency","type":"latency","attributes":{"latency":8000,"jitter":2000}}"#
        )
    ));
    s.push_str(&if down_on_exit {
        "On exit the daemon removes the lab (--lab-down-on-exit).\n".to_string()
    } else {
        format!(
            "On exit the lab keeps running (`injector lab down{name_flag}` removes it; \
             --lab-down-on-exit does it on exit).\n"
        )
    });
    s
}
