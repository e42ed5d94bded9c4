//! Targets become kernel objects: the interface the tc programs attach to
//! (the host end of a namespace's veth) or the cgroup the cgroup programs
//! attach to, plus the addresses that belong to the target itself.

use std::{fs::File, net::IpAddr, path::PathBuf};

use super::{cgroup, docker, netlink::Netlink, netns};
use crate::{ApiError, model::Target};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    /// tc programs on a host interface; `flip` when it is the host end of
    /// a namespace's veth (its ingress is what the namespace sends).
    Iface {
        index: u32,
        name: String,
        flip: bool,
    },
    Cgroup {
        id: u64,
        path: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct Resolved {
    pub attach: Attach,
    /// Addresses of the target itself: an upstream among them means the
    /// target is the server and "upstream" traffic is what it receives.
    pub local: Vec<IpAddr>,
    pub description: String,
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(404, msg)
}

pub async fn resolve(target: &Target) -> Result<Resolved, ApiError> {
    let r = resolve_inner(target.inner()).await?;
    if !target.is_forced() {
        guard(&r).await?;
    }
    Ok(r)
}

/// Guard rails: the targets that would cut the host itself (or the daemon's
/// API) off the network need `"force": true`.
async fn guard(r: &Resolved) -> Result<(), ApiError> {
    let refuse = |what: String| {
        Err(ApiError::new(
            403,
            format!(
                "{what}; add \"force\": true to the target (CLI: --force) if that is really meant"
            ),
        ))
    };
    match &r.attach {
        Attach::Iface {
            name,
            flip: false,
            index,
        } => {
            if name == "lo" {
                return refuse("the loopback interface carries the daemon's own API".into());
            }
            let nl = host_netlink().await?;
            let defaults = nl
                .default_route_ifindexes()
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if defaults.contains(index) {
                return refuse(format!("{name} carries the host's default route"));
            }
            Ok(())
        }
        Attach::Cgroup { path, .. } => {
            if cgroup::v2_mount().is_ok_and(|m| m == *path) {
                return refuse("the root cgroup holds every process of the host".into());
            }
            Ok(())
        }
        Attach::Iface { .. } => Ok(()),
    }
}

async fn resolve_inner(target: &Target) -> Result<Resolved, ApiError> {
    match target {
        Target::Forced(t) => Box::pin(resolve_inner(t)).await,
        Target::Interface(name) => interface(name).await,
        Target::Netns(spec) => {
            let path = netns::path_of(spec);
            let file = File::open(&path)
                .map_err(|e| not_found(format!("network namespace {}: {e}", path.display())))?;
            namespace(&file, &format!("netns {spec}")).await
        }
        Target::Pid(pid) => process(*pid).await,
        Target::Container(name) => {
            let c = docker::inspect(name).await.map_err(|e| {
                if e.starts_with("no such") || e.contains("not running") {
                    not_found(e)
                } else {
                    ApiError::new(503, e)
                }
            })?;
            let file = File::open(format!("/proc/{}/ns/net", c.pid))
                .map_err(|e| not_found(format!("container {name}: its namespace: {e}")))?;
            let mut r = namespace(&file, &format!("container {}", c.name)).await?;
            for a in c.addresses {
                if !r.local.contains(&a) {
                    r.local.push(a);
                }
            }
            Ok(r)
        }
        Target::Cgroup(path) => {
            let cg = cgroup::resolve(path).map_err(|e| not_found(e.to_string()))?;
            Ok(Resolved {
                local: host_addresses().await?,
                description: format!("cgroup {}", cg.path.display()),
                attach: Attach::Cgroup {
                    id: cg.id,
                    path: cg.path,
                },
            })
        }
    }
}

async fn host_netlink() -> Result<Netlink, ApiError> {
    Netlink::current().map_err(|e| ApiError::internal(format!("netlink: {e}")))
}

async fn host_addresses() -> Result<Vec<IpAddr>, ApiError> {
    let nl = host_netlink().await?;
    let addrs = nl
        .addresses()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(addrs.into_iter().map(|(_, a)| a).collect())
}

async fn interface(name: &str) -> Result<Resolved, ApiError> {
    let nl = host_netlink().await?;
    let link = nl
        .link_by_name(name)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| not_found(format!("no interface named {name:?} in the host namespace")))?;
    let local = nl
        .addresses()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .into_iter()
        .filter(|(i, _)| *i == link.index)
        .map(|(_, a)| a)
        .collect();
    Ok(Resolved {
        attach: Attach::Iface {
            index: link.index,
            name: link.name,
            flip: false,
        },
        local,
        description: format!("interface {name}"),
    })
}

async fn process(pid: u32) -> Result<Resolved, ApiError> {
    let path = format!("/proc/{pid}/ns/net");
    let file = File::open(&path).map_err(|e| not_found(format!("process {pid}: {e}")))?;
    let host = netns::host().map_err(|e| ApiError::internal(e.to_string()))?;
    let same = netns::identity(&file).ok() == netns::identity(&host).ok();
    if same {
        // A process of the host namespace has no veth of its own: its
        // cgroup is what singles it out.
        let cg = cgroup::of_pid(pid).map_err(|e| not_found(format!("process {pid}: {e}")))?;
        return Ok(Resolved {
            local: host_addresses().await?,
            description: format!("process {pid} (cgroup {})", cg.path.display()),
            attach: Attach::Cgroup {
                id: cg.id,
                path: cg.path,
            },
        });
    }
    namespace(&file, &format!("process {pid}")).await
}

/// Finds the veth joining namespace `ns` to the host and returns its host
/// end, seen from the namespace (flip).
async fn namespace(ns: &File, what: &str) -> Result<Resolved, ApiError> {
    let host = netns::host().map_err(|e| ApiError::internal(e.to_string()))?;
    if netns::identity(ns).ok() == netns::identity(&host).ok() {
        return Err(ApiError::bad_request(format!(
            "{what} is the host's own network namespace: target an interface or a cgroup instead"
        )));
    }
    let inner = Netlink::in_namespace(ns)
        .map_err(|e| ApiError::internal(format!("{what}: entering its namespace: {e}")))?;
    let inner_links = inner
        .links()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let local: Vec<IpAddr> = inner
        .addresses()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| !a.is_loopback())
        .collect();
    let nl = host_netlink().await?;
    let host_links = nl
        .links()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut found = Vec::new();
    for l in inner_links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth") && l.peer_netnsid.is_some())
    {
        let Some(peer) = l.peer_index else { continue };
        // The host end must point back at this end and itself live across
        // a namespace boundary; an index alone could belong to anything.
        if let Some(h) = host_links.iter().find(|h| {
            h.index == peer
                && h.kind.as_deref() == Some("veth")
                && h.peer_index == Some(l.index)
                && h.peer_netnsid.is_some()
        }) {
            found.push(h.clone());
        }
    }
    match found.len() {
        0 => Err(ApiError::new(
            404,
            format!("{what} has no veth whose other end is in the host namespace"),
        )),
        1 => {
            let h = found.remove(0);
            Ok(Resolved {
                attach: Attach::Iface {
                    index: h.index,
                    name: h.name.clone(),
                    flip: true,
                },
                local,
                description: format!("{what} (host veth {})", h.name),
            })
        }
        _ => Err(ApiError::new(
            409,
            format!(
                "{what} has several veths to the host ({}); target one of them as an interface",
                found
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
