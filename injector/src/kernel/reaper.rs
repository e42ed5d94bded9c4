//! Resets for cgroup targets. cgroup programs can only drop packets, so a
//! task polls the host's TCP sockets and destroys those that belong to the
//! cgroup (or below) and match the proxy's upstream, when their reset is
//! due: at once, after `after_ms`, or after `after_bytes`.

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

use super::{sockdiag, table::Prefix};

/// How often sockets are examined: the upper bound of a reset's delay.
pub const PERIOD: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct ReapSpec {
    pub cgroup: PathBuf,
    pub prefixes: Vec<Prefix>,
    pub remote_ports: Option<(u16, u16)>,
    pub after_ms: u64,
    pub after_bytes: u64,
    /// Share of connections affected (ToxiProxy toxicity), decided per
    /// connection from its cookie.
    pub toxicity: f64,
    pub seed: u32,
    pub expires: Option<Instant>,
}

/// Aborts the task when dropped, so a removed toxic stops resetting.
pub struct Reaper(JoinHandle<()>, Arc<AtomicU64>);

impl Reaper {
    /// Connections destroyed so far (what BPF counters cannot see: these
    /// resets happen in userland).
    pub fn resets(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ids of the cgroup at `root` and every cgroup below it.
fn subtree_ids(root: &Path) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(m) = fs::metadata(&dir) {
            ids.insert(m.ino());
        }
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    ids
}

fn selected(spec: &ReapSpec, s: &sockdiag::TcpSock) -> bool {
    if let Some((lo, hi)) = spec.remote_ports
        && !(lo..=hi).contains(&s.remote.1)
    {
        return false;
    }
    if spec.prefixes.is_empty() {
        return true;
    }
    // A host prefix (from_ip caps the length at the family's maximum).
    let remote = Prefix::from_ip(s.remote.0, 128);
    spec.prefixes.iter().any(|p| p.covers(&remote))
}

fn affected(spec: &ReapSpec, cookie: u64) -> bool {
    if spec.toxicity >= 1.0 {
        return true;
    }
    let h = injector_common::decide::fmix((cookie ^ (cookie >> 32)) as u32 ^ spec.seed);
    (h as f64) < spec.toxicity * 4_294_967_296.0
}

pub fn spawn(spec: ReapSpec) -> Reaper {
    let resets = Arc::new(AtomicU64::new(0));
    let count = resets.clone();
    let task = tokio::spawn(async move {
        let mut first_seen: HashMap<u64, Instant> = HashMap::new();
        loop {
            if spec.expires.is_some_and(|e| Instant::now() >= e) {
                return;
            }
            let spec2 = spec.clone();
            let seen = std::mem::take(&mut first_seen);
            let count = count.clone();
            let result = tokio::task::spawn_blocking(move || pass(&spec2, seen, &count)).await;
            match result {
                Ok(Ok(seen)) => first_seen = seen,
                Ok(Err(e)) => tracing::warn!("listing sockets for resets: {e}"),
                Err(_) => return,
            }
            tokio::time::sleep(PERIOD).await;
        }
    });
    Reaper(task, resets)
}

/// One look at the sockets; returns the first-seen times still relevant.
fn pass(
    spec: &ReapSpec,
    mut seen: HashMap<u64, Instant>,
    resets: &AtomicU64,
) -> std::io::Result<HashMap<u64, Instant>> {
    let ids = subtree_ids(&spec.cgroup);
    let now = Instant::now();
    let mut alive = HashMap::new();
    for s in sockdiag::established()? {
        if !ids.contains(&s.cgroup) || !selected(spec, &s) || !affected(spec, s.cookie) {
            continue;
        }
        let first = *seen.entry(s.cookie).or_insert(now);
        let aged =
            spec.after_ms > 0 && now.duration_since(first) >= Duration::from_millis(spec.after_ms);
        let full = spec.after_bytes > 0 && s.bytes_acked + s.bytes_received >= spec.after_bytes;
        let due = (spec.after_ms == 0 && spec.after_bytes == 0) || aged || full;
        if due {
            match sockdiag::destroy(&s) {
                Ok(()) => {
                    resets.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("destroying {:?} -> {:?}: {e}", s.local, s.remote),
            }
        } else {
            alive.insert(s.cookie, first);
        }
    }
    seen.clear();
    Ok(alive)
}
