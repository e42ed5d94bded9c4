//! `injector doctor`: which kernel features exist here, and therefore which
//! faults work. Qdisc kinds are probed for real, in a throwaway network
//! namespace, so the answer does not depend on guessing from versions.

use std::{fs, path::Path};

use serde::Serialize;

use super::{cgroup, netlink::Netlink, tc::TC_H_ROOT};

#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub fault: &'static str,
    pub works: bool,
    pub needs: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub features: Vec<Feature>,
    pub faults: Vec<Fault>,
}

impl Report {
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.available)
    }
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let r = kernel_release();
    let mut it = r
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn at_least(major: u32, minor: u32) -> bool {
    kernel_version() >= (major, minor)
}

/// What one probe found: a feature and whether creating it worked.
type Probe = (&'static str, Result<(), String>);

/// Tries each qdisc kind as the root of `lo` in a fresh namespace, and an
/// IFB device; the namespace disappears with the probing thread.
fn probe_in_scratch_namespace() -> Vec<Probe> {
    let run = || -> Result<Vec<Probe>, String> {
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let nl = Netlink::current().map_err(|e| e.to_string())?;
            let lo = nl
                .link_by_name("lo")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no lo")?;
            let mut out = Vec::new();
            for kind in ["htb", "tbf", "netem", "fq", "prio"] {
                let opts = match kind {
                    "htb" => super::tc::htb_root_options(),
                    "netem" => super::tc::netem_options(&Default::default()),
                    "tbf" => tbf_options(),
                    _ => Vec::new(),
                };
                let r = nl
                    .qdisc_add(lo.index, TC_H_ROOT, 0x0001_0000, kind, opts, true)
                    .await
                    .map_err(|e| e.to_string());
                if r.is_ok() {
                    let _ = nl.qdisc_del(lo.index, TC_H_ROOT, 0x0001_0000).await;
                }
                out.push((kind, r));
            }
            let clsact = nl
                .qdisc_add(
                    lo.index,
                    0xffff_fff1,
                    0xffff_0000,
                    "clsact",
                    Vec::new(),
                    false,
                )
                .await
                .map_err(|e| e.to_string());
            out.push(("clsact", clsact));
            let ifb = nl
                .add_ifb("probe-ifb")
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            out.push(("ifb", ifb));
            Ok(out)
        })
    };
    match std::thread::spawn(run).join() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => vec![("netns", Err(e))],
        Err(_) => vec![("netns", Err("probe thread panicked".into()))],
    }
}

fn tbf_options() -> Vec<u8> {
    // struct tc_tbf_qopt: rate, peakrate (ratespecs), limit, buffer, mtu
    let mut q = Vec::new();
    let rate: u32 = 125_000;
    for spec in [rate, 0] {
        q.extend_from_slice(&[0, 1]);
        q.extend_from_slice(&0u16.to_ne_bytes());
        q.extend_from_slice(&(-1i16).to_ne_bytes());
        q.extend_from_slice(&0u16.to_ne_bytes());
        q.extend_from_slice(&spec.to_ne_bytes());
    }
    for v in [10_000u32, 1_000_000, 1514] {
        q.extend_from_slice(&v.to_ne_bytes());
    }
    let mut opts = Vec::new();
    super::netlink::push_nla(&mut opts, 1 /* TCA_TBF_PARMS */, &q);
    opts
}

pub fn collect() -> Report {
    let mut features = Vec::new();
    let root = unsafe { libc::geteuid() } == 0;
    features.push(Feature {
        name: "root",
        available: root,
        detail: if root {
            "running as root".into()
        } else {
            "BPF and tc need root".into()
        },
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    features.push(Feature {
        name: "btf",
        available: btf,
        detail: "/sys/kernel/btf/vmlinux".into(),
    });
    let bpf = super::bpf::Bpf::load();
    features.push(Feature {
        name: "bpf-programs",
        available: bpf.is_ok(),
        detail: match &bpf {
            Ok(_) => "tc, cgroup skb and connect programs pass the verifier".into(),
            Err(e) => e.to_string(),
        },
    });
    drop(bpf);
    features.push(Feature {
        name: "tcx",
        available: at_least(6, 6),
        detail: "tcx links (>= 6.6) detach when the daemon dies; older kernels use clsact".into(),
    });
    features.push(Feature {
        name: "connect-retval",
        available: at_least(5, 18),
        detail: "cgroup connect hooks with bpf_set_retval (>= 5.18): ECONNREFUSED instead of EPERM"
            .into(),
    });
    features.push(Feature {
        name: "socket-destroy",
        available: at_least(4, 5),
        detail: "inet_diag SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY) for resets in cgroups".into(),
    });
    let cg = cgroup::v2_mount();
    features.push(Feature {
        name: "cgroup-v2",
        available: cg.is_ok(),
        detail: match cg {
            Ok(p) => format!("mounted at {}", p.display()),
            Err(e) => e.to_string(),
        },
    });
    for (name, r) in probe_in_scratch_namespace() {
        features.push(Feature {
            name,
            available: r.is_ok(),
            detail: match r {
                Ok(()) => format!("{name} can be created"),
                Err(e) => e,
            },
        });
    }
    let docker = Path::new(super::docker::SOCKET).exists();
    features.push(Feature {
        name: "docker",
        available: docker,
        detail: super::docker::SOCKET.into(),
    });
    let mut r = Report {
        kernel: kernel_release(),
        features,
        faults: Vec::new(),
    };
    let tcbpf = r.has("bpf-programs") && (r.has("tcx") || r.has("clsact"));
    let netem = r.has("netem");
    let faults = vec![
        (
            "loss, blackhole, zones, partitions",
            tcbpf,
            "BPF tc programs",
        ),
        ("refuse", tcbpf, "BPF tc programs (cgroups: connect hooks)"),
        (
            "reset, reset_peer, limit_data, timeout",
            tcbpf,
            "BPF tc programs",
        ),
        (
            "dns (drop, servfail, nxdomain, refused)",
            tcbpf,
            "BPF tc programs",
        ),
        (
            "bandwidth",
            tcbpf && r.has("htb"),
            "htb (+ ifb for what a target sends)",
        ),
        (
            "latency, jitter, slow_close, dns delay",
            tcbpf && netem && r.has("htb"),
            "netem + htb",
        ),
        (
            "corrupt, duplicate, reorder",
            tcbpf && netem && r.has("htb"),
            "netem + htb",
        ),
        (
            "cgroup targets",
            r.has("bpf-programs") && r.has("cgroup-v2"),
            "cgroup v2",
        ),
        ("container targets", docker, "Docker Engine API"),
    ];
    r.faults = faults
        .into_iter()
        .map(|(fault, works, needs)| Fault {
            fault,
            works,
            needs,
        })
        .collect();
    r
}

pub fn render(r: &Report) -> String {
    let mut s = format!(
        "kernel {}\n\nFEATURE          AVAILABLE  DETAIL\n",
        r.kernel
    );
    for f in &r.features {
        s.push_str(&format!(
            "{:<16} {:<10} {}\n",
            f.name,
            if f.available { "yes" } else { "no" },
            f.detail
        ));
    }
    s.push_str("\nFAULT                                      WORKS  NEEDS\n");
    for f in &r.faults {
        s.push_str(&format!(
            "{:<42} {:<6} {}\n",
            f.fault,
            if f.works { "yes" } else { "no" },
            f.needs
        ));
    }
    s
}
