//! The journal of kernel objects that outlive the daemon's process: root
//! qdiscs, IFB devices and, on kernels without tcx, clsact qdiscs. Each is
//! written down before it is created and struck off after it is removed,
//! so a daemon killed with SIGKILL leaves a list of exactly what to remove
//! (BPF links and maps die with the process by themselves).
//!
//! Every data plane writes its own journal file and holds a lock on it for
//! its lifetime: a journal whose lock can be taken belongs to a dead daemon,
//! so its objects can be removed even while other daemons live on the host.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::lock::RUN_DIR;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    /// A root qdisc injector installed (handle major tc::ROOT_MAJOR).
    RootQdisc {
        ifindex: u32,
        ifname: String,
        handle: u32,
    },
    /// An IFB device injector created.
    Ifb { name: String },
    /// A clsact qdisc injector added for netlink tc attachments.
    Clsact { ifname: String },
    /// The matchall filter redirecting an interface's ingress to its IFB
    /// (kernels before tcx).
    RedirectFilter { ifname: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    op: Op,
    #[serde(flatten)]
    object: Object,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Add,
    Del,
}

/// What every journal file is called: `journal-<pid>-<nanos>.jsonl` (the
/// single `journal.jsonl` of earlier versions matches too).
fn is_journal(name: &str) -> bool {
    name.starts_with("journal") && name.ends_with(".jsonl")
}

fn try_lock(f: &File) -> io::Result<bool> {
    super::lock::flock(f, libc::LOCK_EX)
}

/// This data plane's journal; appends are flushed before the object is
/// created. The file is locked while it is open and removed on drop once
/// everything it lists is gone.
pub struct Journal {
    file: Option<(File, PathBuf)>,
}

impl Journal {
    pub fn open() -> Journal {
        Journal::open_in(Path::new(RUN_DIR))
    }

    fn open_in(dir: &Path) -> Journal {
        match Journal::create(dir) {
            Ok(f) => Journal { file: Some(f) },
            Err(e) => {
                tracing::warn!(
                    "journal in {}: {e}; crash cleanup falls back to names",
                    dir.display()
                );
                Journal { file: None }
            }
        }
    }

    fn create(dir: &Path) -> io::Result<(File, PathBuf)> {
        fs::create_dir_all(dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("journal-{}-{stamp}.jsonl", std::process::id());
        // Locked under a name no cleaner looks at, then renamed: a cleaner
        // never sees this journal unlocked and takes it for a dead one's.
        let tmp = dir.join(format!("{name}.new"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        if !try_lock(&f)? {
            return Err(io::Error::other(
                "a fresh journal is locked by someone else",
            ));
        }
        let path = dir.join(name);
        fs::rename(&tmp, &path)?;
        Ok((f, path))
    }

    fn write(&mut self, op: Op, object: &Object) {
        let Some((f, _)) = self.file.as_mut() else {
            return;
        };
        let line = serde_json::to_string(&Entry {
            op,
            object: object.clone(),
        })
        .expect("journal entries serialize");
        if let Err(e) = writeln!(f, "{line}").and_then(|_| f.sync_data()) {
            tracing::warn!("journal write: {e}");
        }
    }

    pub fn adding(&mut self, object: &Object) {
        self.write(Op::Add, object);
    }

    pub fn removed(&mut self, object: &Object) {
        self.write(Op::Del, object);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.file
            && outstanding_in(path).is_ok_and(|o| o.is_empty())
        {
            let _ = fs::remove_file(path);
        }
    }
}

/// The journal of a data plane that died, locked by us until dropped.
pub struct Orphan {
    _lock: File,
    pub path: PathBuf,
}

impl Orphan {
    /// Objects it added and did not remove, in the order they were added.
    pub fn outstanding(&self) -> Vec<Object> {
        outstanding_in(&self.path).unwrap_or_default()
    }

    /// Its objects are gone: forget it.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The journals whose owners are dead (their lock can be taken).
pub fn orphans() -> Vec<Orphan> {
    orphans_in(Path::new(RUN_DIR))
}

fn orphans_in(dir: &Path) -> Vec<Orphan> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_name().to_str().is_some_and(is_journal) {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        if try_lock(&f).unwrap_or(false) {
            found.push(Orphan { _lock: f, path });
        }
    }
    found
}

fn outstanding_in(path: &Path) -> io::Result<Vec<Object>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(replay(BufReader::new(f).lines().map_while(Result::ok)))
}

fn replay(lines: impl Iterator<Item = String>) -> Vec<Object> {
    let mut live: Vec<Object> = Vec::new();
    for line in lines {
        // A torn last line (crash mid-write) is skipped, not fatal.
        let Ok(e) = serde_json::from_str::<Entry>(&line) else {
            continue;
        };
        match e.op {
            Op::Add => live.push(e.object),
            Op::Del => {
                if let Some(i) = live.iter().rposition(|o| *o == e.object) {
                    live.remove(i);
                }
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_what_was_added_and_not_removed() {
        let q = Object::RootQdisc {
            ifindex: 3,
            ifname: "veth0".into(),
            handle: 0x7ef0_0000,
        };
        let i = Object::Ifb {
            name: "inj-ifb3".into(),
        };
        let lines = [
            serde_json::to_string(&Entry {
                op: Op::Add,
                object: q.clone(),
            })
            .unwrap(),
            serde_json::to_string(&Entry {
                op: Op::Add,
                object: i.clone(),
            })
            .unwrap(),
            serde_json::to_string(&Entry {
                op: Op::Del,
                object: q.clone(),
            })
            .unwrap(),
            "{\"op\":\"add\",\"kind\":\"ifb\",\"na".to_string(),
        ];
        assert_eq!(replay(lines.into_iter()), vec![i]);
    }

    #[test]
    fn only_a_dead_owners_journal_is_an_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let ifb = Object::Ifb {
            name: "inj-ifb9".into(),
        };
        let mut live = Journal::open_in(dir.path());
        live.adding(&ifb);
        let mut dead = Journal::open_in(dir.path());
        dead.adding(&ifb);
        assert!(orphans_in(dir.path()).is_empty(), "both owners live");

        // A crash: the file closes (its lock goes) without the drop's cleanup.
        let (file, dead_path) = dead.file.take().unwrap();
        drop(file);
        let orphans = orphans_in(dir.path());
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].path, dead_path);
        assert_eq!(orphans[0].outstanding(), vec![ifb.clone()]);
        // While one cleaner holds it, nobody else takes it for an orphan.
        assert!(orphans_in(dir.path()).is_empty());
        orphans.into_iter().for_each(Orphan::discard);
        assert!(!dead_path.exists());

        // A clean exit leaves no file; one with objects left keeps it.
        live.removed(&ifb);
        let live_path = live.file.as_ref().unwrap().1.clone();
        drop(live);
        assert!(!live_path.exists());
        let mut kept = Journal::open_in(dir.path());
        kept.adding(&ifb);
        let kept_path = kept.file.as_ref().unwrap().1.clone();
        drop(kept);
        assert!(kept_path.exists());
        assert_eq!(orphans_in(dir.path()).len(), 1);
    }

    #[test]
    fn entries_are_readable_json_lines() {
        let e = Entry {
            op: Op::Add,
            object: Object::Clsact {
                ifname: "eth1".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"op":"add","kind":"clsact","ifname":"eth1"}"#
        );
    }
}
