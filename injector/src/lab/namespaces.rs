//! The lab without Docker: what Docker would make, made directly. A
//! bridge `inj-<lab>` holding the lab's gateway address, a named network
//! namespace per service (`/var/run/netns/<lab>-<instance>`, so `ip netns`
//! and `{"netns": "<lab>-web"}` targets see it) joined to the bridge by a
//! veth, and a cgroup per service (`<cgroup2>/injector-lab-<lab>/<instance>`)
//! whose process runs this binary as the service. Everything is found again
//! by name, so `down` works after a crash; the cgroup is what identifies a
//! service's processes (a recorded pid could have been reused).

use std::{
    fs::{self, File, OpenOptions},
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use futures::TryStreamExt as _;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde_json::json;

use super::plan::{Lab, Service};
use crate::kernel::{cgroup, netns};

/// Where each lab keeps its subnet and its services' logs.
pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/injector/lab/{name}"))
}

fn state_file(name: &str) -> PathBuf {
    state_dir(name).join("lab.json")
}

fn cgroup_root(name: &str) -> io::Result<PathBuf> {
    Ok(cgroup::v2_mount()?.join(format!("injector-lab-{name}")))
}

fn netns_path(lab: &str, instance: &str) -> PathBuf {
    netns::path_of(&format!("{lab}-{instance}"))
}

/// Host end of an instance's veth: `i<lab><short>`, 15 bytes at most.
fn host_veth(lab: &str, instance: &str) -> String {
    let short = match instance {
        "orders-a" => "oa",
        "orders-b" => "ob",
        "payments" => "pay",
        other => other,
    };
    format!("i{lab}{short}")
}

const INSTANCES: [&str; 6] = ["dns", "db", "payments", "orders-a", "orders-b", "web"];

pub fn subnet(name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(state_file(name)).ok()?).ok()?;
    v.get("subnet")?.as_str().map(str::to_string)
}

/// The pids in an instance's cgroup (empty if none or no cgroup).
fn pids(name: &str, instance: &str) -> Vec<u32> {
    let Ok(root) = cgroup_root(name) else {
        return Vec::new();
    };
    fs::read_to_string(root.join(instance).join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

pub fn states(name: &str) -> Vec<(String, String)> {
    INSTANCES
        .iter()
        .map(|i| {
            let state = if pids(name, i).is_empty() {
                "stopped"
            } else {
                "running"
            };
            (i.to_string(), state.to_string())
        })
        .collect()
}

/// An rtnetlink handle in the caller's namespace or in `ns`.
fn handle_in(ns: Option<&File>) -> io::Result<Handle> {
    let (conn, handle, _) = match ns {
        Some(f) => netns::with_thread_in(f, rtnetlink::new_connection)??,
        None => rtnetlink::new_connection()?,
    };
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(h: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(anyhow!("looking up link {name}: {e}")),
    }
}

async fn has_address(h: &Handle, index: u32, ip: Ipv4Addr) -> anyhow::Result<bool> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(a) = addrs.try_next().await.context("listing addresses")? {
        let a: AddressMessage = a;
        if a.attributes
            .iter()
            .any(|at| matches!(at, AddressAttribute::Address(IpAddr::V4(x)) if *x == ip))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `ip netns add`, without `ip`: a file under /var/run/netns with a new
/// namespace bind-mounted on it (made on a thread of its own, which
/// unshare(2) moves and which then ends).
fn create_netns(path: &Path) -> anyhow::Result<File> {
    fs::create_dir_all(netns::NETNS_RUN_DIR)?;
    File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let made = std::thread::spawn(move || -> io::Result<()> {
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            let src = c"/proc/thread-self/ns/net";
            if libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("the namespace thread panicked"))?;
    if let Err(e) = made {
        let _ = fs::remove_file(path);
        return Err(anyhow!(
            "cannot make network namespace {}: {e}",
            path.display()
        ));
    }
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Unmounts and removes a named namespace; it dies with its last user.
fn delete_netns(path: &Path) -> io::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    fs::remove_file(path)?;
    Ok(true)
}

/// Kills every process of a cgroup and removes it.
fn remove_cgroup(dir: &Path) -> anyhow::Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    let procs = dir.join("cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<i32> = fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        if fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for p in &pids {
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "processes {pids:?} of {} do not die",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::remove_dir(dir).with_context(|| format!("cannot remove cgroup {}", dir.display()))?;
    Ok(true)
}

pub async fn down(name: &str) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    if let Ok(root) = cgroup_root(name) {
        for i in INSTANCES {
            if remove_cgroup(&root.join(i))? {
                removed.push(format!("{name}-{i} (process)"));
            }
        }
        if root.exists() {
            fs::remove_dir(&root)
                .with_context(|| format!("cannot remove cgroup {}", root.display()))?;
        }
    }
    for i in INSTANCES {
        if delete_netns(&netns_path(name, i))? {
            removed.push(format!("netns {name}-{i}"));
        }
    }
    let h = handle_in(None)?;
    let mut links: Vec<String> = INSTANCES.iter().map(|i| host_veth(name, i)).collect();
    links.push(Lab::new(name, None)?.bridge());
    for l in links {
        // A veth goes with its namespace, but maybe not yet: delete it.
        if let Some(index) = link_index(&h, &l).await? {
            match h.link().del(index).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(anyhow!("cannot delete link {l}: {e}")),
            }
            if l.starts_with("inj-") {
                removed.push(format!("bridge {l}"));
            }
        }
    }
    let dir = state_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    Ok(removed)
}

pub async fn up(lab: &Lab) -> anyhow::Result<Vec<String>> {
    if subnet(&lab.name).is_some_and(|s| s != lab.subnet()) {
        down(&lab.name).await?;
    }
    fs::create_dir_all(state_dir(&lab.name))?;
    fs::write(
        state_file(&lab.name),
        json!({"backend": "netns", "subnet": lab.subnet()}).to_string(),
    )?;
    let host = handle_in(None)?;
    let bridge = lab.bridge();
    let br = match link_index(&host, &bridge).await? {
        Some(i) => i,
        None => {
            host.link()
                .add(LinkBridge::new(&bridge).build())
                .execute()
                .await
                .map_err(|e| anyhow!("cannot create bridge {bridge}: {e}"))?;
            link_index(&host, &bridge)
                .await?
                .context("the bridge vanished")?
        }
    };
    if !has_address(&host, br, lab.gateway()).await? {
        host.address()
            .add(br, IpAddr::V4(lab.gateway()), 24)
            .execute()
            .await
            .map_err(|e| anyhow!("cannot give {bridge} {}/24: {e}", lab.gateway()))?;
    }
    host.link()
        .set(LinkUnspec::new_with_index(br).up().build())
        .execute()
        .await
        .map_err(|e| anyhow!("cannot bring {bridge} up: {e}"))?;
    let root = cgroup_root(&lab.name)?;
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let (mut started, mut kept) = (Vec::new(), Vec::new());
    for s in lab.services() {
        let name = lab.container(s.instance);
        if !pids(&lab.name, s.instance).is_empty() && netns_path(&lab.name, s.instance).exists() {
            kept.push(name);
            continue;
        }
        remove_cgroup(&root.join(s.instance))?;
        wire(lab, &s, &host, br).await?;
        spawn(lab, &s, &root)?;
        started.push(name);
    }
    let mut notes = vec![format!(
        "namespaces and cgroups on bridge {bridge} (logs in {})",
        state_dir(&lab.name).display()
    )];
    if !started.is_empty() {
        notes.push(format!("started {}", started.join(", ")));
    }
    if !kept.is_empty() {
        notes.push(format!("already running: {}", kept.join(", ")));
    }
    Ok(notes)
}

/// The instance's namespace and veth, addressed and routed via the gateway.
async fn wire(lab: &Lab, s: &Service, host: &Handle, bridge: u32) -> anyhow::Result<()> {
    let path = netns_path(&lab.name, s.instance);
    let veth = host_veth(&lab.name, s.instance);
    if link_index(host, &veth).await?.is_some() && path.exists() {
        return Ok(());
    }
    if let Some(i) = link_index(host, &veth).await? {
        let _ = host.link().del(i).execute().await;
    }
    delete_netns(&path)?;
    let ns = create_netns(&path)?;
    let peer = format!("t{}", &veth[1..]);
    host.link()
        .add(LinkVeth::new(&veth, &peer).build())
        .execute()
        .await
        .map_err(|e| anyhow!("cannot create veth {veth}: {e}"))?;
    host.link()
        .set(
            LinkUnspec::new_with_name(&peer)
                .setns_by_fd(ns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| anyhow!("cannot move {peer} into {}: {e}", path.display()))?;
    let hi = link_index(host, &veth)
        .await?
        .context("the veth vanished")?;
    host.link()
        .set(
            LinkUnspec::new_with_index(hi)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| anyhow!("cannot put {veth} on the bridge: {e}"))?;
    let inner = handle_in(Some(&ns))?;
    let lo = link_index(&inner, "lo").await?.context("no lo")?;
    let pi = link_index(&inner, &peer)
        .await?
        .context("the moved veth is not in the namespace")?;
    let what = |step: &str| format!("{} in {}: {step}", s.instance, path.display());
    inner
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(|e| anyhow!("{}: {e}", what("lo up")))?;
    inner
        .link()
        .set(LinkUnspec::new_with_index(pi).name("eth0").up().build())
        .execute()
        .await
        .map_err(|e| anyhow!("{}: {e}", what("eth0 up")))?;
    inner
        .address()
        .add(pi, IpAddr::V4(s.ip), 24)
        .execute()
        .await
        .map_err(|e| anyhow!("{}: {e}", what("address")))?;
    inner
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(lab.gateway())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| anyhow!("{}: {e}", what("default route")))?;
    Ok(())
}

/// Starts the service in its namespace and cgroup, detached (own session,
/// output to its log file), and reaps it should it ever exit while this
/// process lives.
fn spawn(lab: &Lab, s: &Service, root: &Path) -> anyhow::Result<()> {
    let cg = root.join(s.instance);
    fs::create_dir_all(&cg).with_context(|| format!("cannot create cgroup {}", cg.display()))?;
    let ns = File::open(netns_path(&lab.name, s.instance))?;
    let procs = OpenOptions::new()
        .write(true)
        .open(cg.join("cgroup.procs"))?;
    let log_path = state_dir(&lab.name).join(format!("{}.log", s.instance));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(s.args(lab))
        .env("INJECTOR_LAB", &lab.name)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let (ns_fd, procs_fd) = (ns.as_raw_fd(), procs.as_raw_fd());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", lab.container(s.instance)))?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_differ() {
        let mut names: Vec<String> = INSTANCES.iter().map(|i| host_veth("t1234567", i)).collect();
        assert!(names.iter().all(|n| n.len() <= 15), "{names:?}");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), INSTANCES.len());
        let lab = Lab::new("lab", None).unwrap();
        let planned: Vec<&str> = lab.services().iter().map(|s| s.instance).collect();
        let mut a = planned.clone();
        a.sort();
        let mut b = INSTANCES.to_vec();
        b.sort();
        assert_eq!(a, b, "every planned instance is known here");
    }
}
