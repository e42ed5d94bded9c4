//! The journal of kernel objects that outlive the daemon's process: root
//! qdiscs, IFB devices and, on kernels without tcx, clsact qdiscs. Each is
//! written down before it is created and struck off after it is removed,
//! so a daemon killed with SIGKILL leaves a list of exactly what to remove
//! (BPF links and maps die with the process by themselves).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::PathBuf,
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

pub fn path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("journal.jsonl")
}

/// An open journal; appends are flushed before the object is created.
pub struct Journal {
    file: Option<File>,
}

impl Journal {
    pub fn open() -> Journal {
        let file = fs::create_dir_all(RUN_DIR)
            .and_then(|_| OpenOptions::new().create(true).append(true).open(path()));
        match file {
            Ok(f) => Journal { file: Some(f) },
            Err(e) => {
                tracing::warn!(
                    "journal {}: {e}; crash cleanup falls back to names",
                    path().display()
                );
                Journal { file: None }
            }
        }
    }

    fn write(&mut self, op: Op, object: &Object) {
        let Some(f) = self.file.as_mut() else { return };
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

/// Objects added and not removed, in the order they were added.
pub fn outstanding() -> io::Result<Vec<Object>> {
    let f = match File::open(path()) {
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

/// Starts a fresh journal once its leftovers are gone.
pub fn reset() {
    let _ = fs::remove_file(path());
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
