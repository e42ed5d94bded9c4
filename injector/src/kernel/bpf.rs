//! The BPF object: loading, the maps the daemon writes, and attachments.
//!
//! Attachments are links owned by this process (tcx on >= 6.6, bpf_link for
//! cgroups), so if the daemon dies the kernel detaches them: a crash cannot
//! leave a program behind. Each interface and cgroup is attached once, with
//! a count of the rules that need it, and detached when none do.

use std::{collections::HashMap, fs::File};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SchedClassifier,
        TcAttachType,
        cgroup_skb::CgroupSkbLinkId,
        cgroup_sock_addr::CgroupSockAddrLinkId,
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};
use injector_common::rule::{Counters, DnsNameKey, GlobalCfg, IfaceCfg, LpmData, Rule, RuleSet};

/// The eBPF object built by build.rs from injector-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/injector"));

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program {0}: {1}")]
    Program(&'static str, aya::programs::ProgramError),
    #[error("BPF map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("BPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("BPF program {0} missing from the object")]
    MissingProgram(&'static str),
}

struct IfaceAttach {
    ingress: SchedClassifierLinkId,
    egress: SchedClassifierLinkId,
    users: usize,
}

#[derive(Default)]
struct CgroupLinks {
    ingress: Option<CgroupSkbLinkId>,
    egress: Option<CgroupSkbLinkId>,
    connect4: Option<CgroupSockAddrLinkId>,
    connect6: Option<CgroupSockAddrLinkId>,
}

struct CgroupAttach {
    links: CgroupLinks,
    users: usize,
}

pub struct Bpf {
    ebpf: Ebpf,
    _idle_logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub lpm: LpmTrie<MapData, LpmData, RuleSet>,
    pub rules: Array<MapData, Rule>,
    ifaces: BpfHashMap<MapData, u32, IfaceCfg>,
    cgroups: BpfHashMap<MapData, u64, u32>,
    pub counters: PerCpuArray<MapData, Counters>,
    pub dns_names: BpfHashMap<MapData, DnsNameKey, u8>,
    global: Array<MapData, GlobalCfg>,
    iface_links: HashMap<u32, IfaceAttach>,
    cgroup_links: HashMap<u64, CgroupAttach>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, BpfError> {
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    T::try_from(map).map_err(|e| BpfError::Map(name, e))
}

impl Bpf {
    pub fn load() -> Result<Bpf, BpfError> {
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        // The logger owns the log ring buffer map: it must outlive the
        // programs, or their load fails ("fd is not pointing to valid
        // bpf_map"). Without a runtime to drain it, it is kept undrained.
        let idle_logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => spawn_logger(logger),
            Err(e) => {
                tracing::debug!("eBPF logs unavailable: {e}");
                None
            }
        };
        for name in ["tc_ingress", "tc_egress"] {
            let p: &mut SchedClassifier = program(&mut ebpf, name)?;
            p.load().map_err(|e| verifier_failure(name, e))?;
        }
        for name in ["cg_ingress", "cg_egress"] {
            let p: &mut CgroupSkb = program(&mut ebpf, name)?;
            p.load().map_err(|e| verifier_failure(name, e))?;
        }
        for name in ["cg_connect4", "cg_connect6"] {
            let p: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            p.load().map_err(|e| verifier_failure(name, e))?;
        }
        Ok(Bpf {
            lpm: take(&mut ebpf, "RULE_LPM")?,
            rules: take(&mut ebpf, "RULES")?,
            ifaces: take(&mut ebpf, "IFACES")?,
            cgroups: take(&mut ebpf, "CGROUPS")?,
            counters: take(&mut ebpf, "COUNTERS")?,
            dns_names: take(&mut ebpf, "DNS_NAMES")?,
            global: take(&mut ebpf, "GLOBAL")?,
            ebpf,
            _idle_logger: idle_logger,
            iface_links: HashMap::new(),
            cgroup_links: HashMap::new(),
        })
    }

    /// Never touch the daemon's own API port from cgroup programs.
    pub fn set_guard_port(&mut self, port: u16) -> Result<(), BpfError> {
        let cfg = GlobalCfg {
            guard_port: port,
            _pad: [0; 6],
        };
        self.global
            .set(0, cfg, 0)
            .map_err(|e| BpfError::Map("GLOBAL", e))
    }

    /// Attaches the tc programs to interface `name` (host namespace) or adds
    /// a user to an existing attachment. `cfg.flip` must agree with the
    /// existing attachment's.
    pub fn attach_iface(&mut self, index: u32, name: &str, cfg: IfaceCfg) -> Result<(), String> {
        if let Some(a) = self.iface_links.get_mut(&index) {
            let current = self.ifaces.get(&index, 0).ok();
            if current.is_some_and(|c| c.flip != cfg.flip) {
                return Err(format!(
                    "interface {name} is already targeted from the other side \
                     (as an interface and as a namespace's veth at once)"
                ));
            }
            a.users += 1;
            return Ok(());
        }
        self.ifaces
            .insert(index, cfg, 0)
            .map_err(|e| format!("IFACES map: {e}"))?;
        let attach =
            |ebpf: &mut Ebpf, prog: &'static str, ty| -> Result<SchedClassifierLinkId, String> {
                let p: &mut SchedClassifier = program(ebpf, prog).map_err(|e| e.to_string())?;
                let attached = if super::legacy_tc() {
                    p.attach_with_options(name, ty, TcAttachOptions::Netlink(NlOptions::default()))
                } else {
                    p.attach(name, ty)
                };
                attached.map_err(|e| format!("attach {prog} to {name}: {}", chain(&e)))
            };
        let ingress = match attach(&mut self.ebpf, "tc_ingress", TcAttachType::Ingress) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.ifaces.remove(&index);
                return Err(e);
            }
        };
        let egress = match attach(&mut self.ebpf, "tc_egress", TcAttachType::Egress) {
            Ok(l) => l,
            Err(e) => {
                if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, "tc_ingress") {
                    let _ = p.detach(ingress);
                }
                let _ = self.ifaces.remove(&index);
                return Err(e);
            }
        };
        self.iface_links.insert(
            index,
            IfaceAttach {
                ingress,
                egress,
                users: 1,
            },
        );
        Ok(())
    }

    pub fn set_iface_cfg(&mut self, index: u32, cfg: IfaceCfg) -> Result<(), String> {
        self.ifaces
            .insert(index, cfg, 0)
            .map_err(|e| format!("IFACES map: {e}"))
    }

    pub fn iface_cfg(&self, index: u32) -> Option<IfaceCfg> {
        self.ifaces.get(&index, 0).ok()
    }

    /// Drops one user; returns true when the programs were detached.
    pub fn release_iface(&mut self, index: u32) -> bool {
        let Some(a) = self.iface_links.get_mut(&index) else {
            return false;
        };
        a.users -= 1;
        if a.users > 0 {
            return false;
        }
        let a = self.iface_links.remove(&index).expect("present");
        if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, "tc_ingress") {
            let _ = p.detach(a.ingress);
        }
        if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, "tc_egress") {
            let _ = p.detach(a.egress);
        }
        let _ = self.ifaces.remove(&index);
        true
    }

    pub fn is_attached(&self, index: u32) -> bool {
        self.iface_links.contains_key(&index)
    }

    pub fn attach_cgroup(&mut self, id: u64, dir: &File) -> Result<(), String> {
        if let Some(a) = self.cgroup_links.get_mut(&id) {
            a.users += 1;
            return Ok(());
        }
        self.cgroups
            .insert(id, 1, 0)
            .map_err(|e| format!("CGROUPS map: {e}"))?;
        // On kernels with bpf_link (>= 5.7) cgroup links always coexist with
        // other programs and the kernel refuses any flag: `Single` sends none.
        let mode = CgroupAttachMode::Single;
        let mut done = CgroupLinks::default();
        let result = (|| -> Result<(), String> {
            let skb =
                |ebpf: &mut Ebpf, name: &'static str, ty| -> Result<CgroupSkbLinkId, String> {
                    let p: &mut CgroupSkb = program(ebpf, name).map_err(|e| e.to_string())?;
                    p.attach(dir, ty, mode)
                        .map_err(|e| format!("attach {name} to cgroup {id}: {e}"))
                };
            let sock =
                |ebpf: &mut Ebpf, name: &'static str| -> Result<CgroupSockAddrLinkId, String> {
                    let p: &mut CgroupSockAddr = program(ebpf, name).map_err(|e| e.to_string())?;
                    p.attach(dir, mode)
                        .map_err(|e| format!("attach {name} to cgroup {id}: {e}"))
                };
            done.ingress = Some(skb(
                &mut self.ebpf,
                "cg_ingress",
                CgroupSkbAttachType::Ingress,
            )?);
            done.egress = Some(skb(
                &mut self.ebpf,
                "cg_egress",
                CgroupSkbAttachType::Egress,
            )?);
            done.connect4 = Some(sock(&mut self.ebpf, "cg_connect4")?);
            done.connect6 = Some(sock(&mut self.ebpf, "cg_connect6")?);
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.cgroup_links.insert(
                    id,
                    CgroupAttach {
                        links: done,
                        users: 1,
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.detach_cgroup_links(done);
                let _ = self.cgroups.remove(&id);
                Err(e)
            }
        }
    }

    fn detach_cgroup_links(&mut self, l: CgroupLinks) {
        if let (Some(id), Ok(p)) = (
            l.ingress,
            program::<CgroupSkb>(&mut self.ebpf, "cg_ingress"),
        ) {
            let _ = p.detach(id);
        }
        if let (Some(id), Ok(p)) = (l.egress, program::<CgroupSkb>(&mut self.ebpf, "cg_egress")) {
            let _ = p.detach(id);
        }
        if let (Some(id), Ok(p)) = (
            l.connect4,
            program::<CgroupSockAddr>(&mut self.ebpf, "cg_connect4"),
        ) {
            let _ = p.detach(id);
        }
        if let (Some(id), Ok(p)) = (
            l.connect6,
            program::<CgroupSockAddr>(&mut self.ebpf, "cg_connect6"),
        ) {
            let _ = p.detach(id);
        }
    }

    pub fn release_cgroup(&mut self, id: u64) {
        let Some(a) = self.cgroup_links.get_mut(&id) else {
            return;
        };
        a.users -= 1;
        if a.users > 0 {
            return;
        }
        let a = self.cgroup_links.remove(&id).expect("present");
        self.detach_cgroup_links(a.links);
        let _ = self.cgroups.remove(&id);
    }

    /// Detaches every program, whatever its users (shutdown).
    pub fn detach_all(&mut self) {
        for (index, a) in std::mem::take(&mut self.iface_links) {
            if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, "tc_ingress") {
                let _ = p.detach(a.ingress);
            }
            if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, "tc_egress") {
                let _ = p.detach(a.egress);
            }
            let _ = self.ifaces.remove(&index);
        }
        for (id, a) in std::mem::take(&mut self.cgroup_links) {
            self.detach_cgroup_links(a.links);
            let _ = self.cgroups.remove(&id);
        }
    }

    pub fn lpm_key(prefix_len: u32, data: LpmData) -> Key<LpmData> {
        Key::new(prefix_len, data)
    }
}

/// Keeps the whole verifier log where INJECTOR_VERIFIER_LOG points (the
/// error message itself is shortened).
fn verifier_failure(name: &'static str, e: aya::programs::ProgramError) -> BpfError {
    if let Ok(path) = std::env::var("INJECTOR_VERIFIER_LOG") {
        let _ = std::fs::write(path, format!("{name}: {e}"));
    }
    BpfError::Program(name, e)
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram(name))?;
    p.try_into().map_err(|e| BpfError::Program(name, e))
}

/// aya-log records arrive through a ring buffer that must be drained; they
/// go to the `log` facade, which main routes into tracing at debug level.
fn spawn_logger(
    logger: aya_log::EbpfLogger<&'static dyn log::Log>,
) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
    use tokio::io::{Interest, unix::AsyncFd};
    if tokio::runtime::Handle::try_current().is_err() {
        return Some(logger);
    }
    // Safety: the logger owns its ring buffer fd and lives in the AsyncFd
    // until the task ends, so the fd stays open while registered.
    let Ok(mut fd) = (unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) })
    else {
        return None;
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    None
}

/// An error with its causes, which aya keeps apart ("bpf_link_create
/// failed" alone does not say why).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Verifier logs run to megabytes; an error message keeps the head (what
/// failed) and the tail (where the verifier stopped).
pub fn shorten(msg: &str) -> String {
    const HEAD: usize = 300;
    const TAIL: usize = 1200;
    if msg.len() <= HEAD + TAIL + 20 {
        return msg.to_string();
    }
    let head_end = msg
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= HEAD)
        .last()
        .unwrap_or(0);
    let tail_start = msg
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= msg.len() - TAIL)
        .unwrap_or(msg.len());
    format!("{} [...] {}", &msg[..head_end], &msg[tail_start..])
}
