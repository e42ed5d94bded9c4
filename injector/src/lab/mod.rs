//! `injector lab`: a small shop to break. `up` builds it (Docker
//! containers, or plain namespaces and cgroups where Docker is absent),
//! `down` removes it, `status` shows it, `load` drives checkouts and shows
//! what the shopper sees, `route` sends a service's clients through a
//! listen proxy. `serve --lab` (daemon.rs) adds a proxy per dependency.
//!
//! ```text
//!   lab load ──▶ web ──▶ orders-a ─┬─▶ payments
//!                    └─▶ orders-b ─┴─▶ db        (every name from dns)
//! ```

mod backend;
mod containers;
pub mod daemon;
pub mod docker;
pub mod image;
pub mod load;
mod namespaces;
pub mod plan;
pub mod probe;
pub mod services;

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

pub use backend::Backend;
use plan::{DEFAULT_NAME, Lab};

#[derive(Args, Debug, Clone)]
pub struct LabRef {
    /// The lab's name: containers are `<name>-web`... (default: lab).
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Docker when its engine answers, namespaces otherwise.
    Auto,
    Docker,
    /// Plain network namespaces and cgroups, no Docker.
    Netns,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the shop (idempotent) and check that a checkout goes through.
    Up {
        #[command(flatten)]
        lab: LabRef,
        /// The lab's /24 (default: 10.77.0.0/24 for `lab`, one picked from the
        /// name for others).
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },
    /// Remove the shop: every container, network, namespace, cgroup and
    /// process it made (the cached image stays unless --images).
    Down {
        #[command(flatten)]
        lab: LabRef,
        /// Also remove the lab's cached images.
        #[arg(long)]
        images: bool,
    },
    /// Show the shop's services, their addresses, and whether each answers.
    Status {
        #[command(flatten)]
        lab: LabRef,
    },
    /// Drive checkouts at a steady rate; show success rate and latency
    /// percentiles live, each second.
    Load(load::LoadArgs),
    /// Point a service's DNS name elsewhere (e.g. at a listen proxy on the
    /// host), or back at the service.
    Route {
        /// orders, payments, db, ... (a name of the shop.lab zone).
        service: String,
        /// The address clients should reach instead (e.g. the lab gateway,
        /// where a listen proxy listens).
        #[arg(long, conflicts_with = "direct", required_unless_present = "direct")]
        via: Option<String>,
        /// Back to the service's own address.
        #[arg(long)]
        direct: bool,
        #[command(flatten)]
        lab: LabRef,
    },
    /// Run one of the shop's services (what each container runs).
    #[command(hide = true)]
    Service(services::ServiceArgs),
}

pub async fn run(cmd: LabCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Up {
            lab,
            subnet,
            backend,
        } => {
            let lab = Lab::new(&lab.name, subnet.as_deref())?;
            let up = up(&lab, backend, true).await?;
            if json {
                println!("{}", up.to_json(&lab));
            }
            Ok(())
        }
        LabCommand::Down { lab, images } => {
            plan::check_name(&lab.name)?;
            let removed = down(&lab.name, images).await?;
            if json {
                println!("{}", json!({"lab": lab.name, "removed": removed}));
            } else if removed.is_empty() {
                println!("lab {}: nothing to remove", lab.name);
            } else {
                println!("lab {}: removed {}", lab.name, removed.join(", "));
            }
            Ok(())
        }
        LabCommand::Status { lab } => probe::status(&lab.name, json).await,
        LabCommand::Load(args) => load::run(args, json).await,
        LabCommand::Route {
            service,
            via,
            direct,
            lab,
        } => probe::route(&lab.name, &service, via.as_deref(), direct).await,
        LabCommand::Service(args) => services::run(args).await,
    }
}

/// A lab that is up: where it runs and what `up` did.
pub struct Up {
    pub backend: Backend,
    pub notes: Vec<String>,
}

impl Up {
    fn to_json(&self, lab: &Lab) -> serde_json::Value {
        json!({
            "lab": lab.name,
            "backend": self.backend.as_str(),
            "subnet": lab.subnet(),
            "checkout": lab.checkout_url(),
            "services": lab.services().iter().map(|s| json!({
                "instance": s.instance,
                "role": s.role.as_str(),
                "address": s.ip.to_string(),
                "port": s.role.port(),
                "target": self.backend.target_json(lab, s.instance),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

/// Brings the lab up and waits until a checkout goes through.
pub async fn up(lab: &Lab, choice: BackendChoice, verbose: bool) -> anyhow::Result<Up> {
    let say = |s: String| {
        if verbose {
            eprintln!("{s}");
        }
    };
    // `auto` keeps a lab where it already runs.
    let choice = match (choice, Backend::locate(&lab.name).await?) {
        (BackendChoice::Auto, Some((Backend::Docker(_), _))) => BackendChoice::Docker,
        (BackendChoice::Auto, Some((Backend::Netns, _))) => BackendChoice::Netns,
        (c, _) => c,
    };
    let (backend, mut notes) = Backend::choose(choice).await?;
    for n in &notes {
        say(n.clone());
    }
    if let Some(other) = backend.other_subnet(lab).await? {
        say(format!(
            "lab {}: was on {other}, moving it to {}",
            lab.name,
            lab.subnet()
        ));
    }
    let report = backend.up(lab).await?;
    notes.extend(report);
    for n in notes.iter().skip(notes.len().saturating_sub(3)) {
        say(n.clone());
    }
    let waited = probe::wait_ready(lab, Duration::from_secs(60)).await;
    match waited {
        Ok(took) => say(format!(
            "lab {}: checkout works ({} ms) at {}",
            lab.name,
            took.as_millis(),
            lab.checkout_url()
        )),
        Err(e) => bail!(
            "lab {}: the shop is up but a checkout does not go through: {e:#}\n\
             (logs: {}){}",
            lab.name,
            backend.logs_hint(lab),
            forward_hint(lab, &backend)
        ),
    }
    if verbose {
        eprintln!("{}", probe::layout(lab, &backend));
    }
    Ok(Up { backend, notes })
}

/// Bridged traffic meets the host's iptables FORWARD chain when
/// br_netfilter is on; Docker's FORWARD policy DROP then cuts the lab's
/// own bridge. Said when a namespace lab does not work.
fn forward_hint(lab: &Lab, backend: &Backend) -> String {
    let bridged = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    if !matches!(backend, Backend::Netns) || !bridged {
        return String::new();
    }
    format!(
        "\ntraffic across bridge {0} passes the host's iptables FORWARD chain \
         (net.bridge.bridge-nf-call-iptables=1); if a firewall drops forwarded traffic \
         (Docker sets the FORWARD policy to DROP), allow the lab's bridge: \
         iptables -I FORWARD -i {0} -o {0} -j ACCEPT (or use --backend docker)",
        lab.bridge()
    )
}

/// Removes the lab wherever it is; returns what was removed.
pub async fn down(name: &str, images: bool) -> anyhow::Result<Vec<String>> {
    backend::down_everywhere(name, images).await
}
