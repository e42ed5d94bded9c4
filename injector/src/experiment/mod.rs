//! Experiments (issue 6; ../shared/seed-recipes.md §3): a policy file
//! states the steady state, the hypothesis, the blast radius and the abort
//! conditions before the method; the runner measures, injects, watches,
//! always rolls back, and writes down what held and what broke.
//!
//! Follow one run: `policy` parses and validates the file (`doc` keeps
//! every value's line and column) -> `runner` starts the `probe`s, judges
//! `sli`s, drives the faults through a `backend` (the engine in the daemon,
//! or the daemon's HTTP API from `injector run`) and fills a `record` ->
//! `report` and `chart` turn the record into the written log.
//!
//! Rollback runs on success, on abort, on Ctrl-C and on DELETE. For what
//! no runner can catch (the runner killed, the daemon restarted), every
//! toxic is added with a `ttl_ms` that ends within the blast radius'
//! max_duration: the daemon (or, for kernel-native proxies, the kernel
//! itself) removes it by then. A daemon that restarts starts with no
//! faults at all; one that stops cleanly removes them all.

pub mod backend;
pub mod chart;
pub mod doc;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod record;
pub mod report;
pub mod runner;
pub mod sli;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

pub use backend::Backend;
pub use doc::PolicyError;
pub use policy::Policy;
pub use record::{Record, State};

/// A run under way: its record, a way to stop it, and its end.
pub struct Handle {
    pub record: Arc<Mutex<Record>>,
    cancel: watch::Sender<Option<String>>,
    done: watch::Receiver<Option<State>>,
}

impl Handle {
    /// Starts `policy` in its own task.
    pub fn start(id: &str, policy: Arc<Policy>, backend: Backend) -> Handle {
        let record = Arc::new(Mutex::new(Record::new(id, policy.clone())));
        let (cancel, cancel_rx) = watch::channel(None);
        let (done_tx, done) = watch::channel(None);
        let r = record.clone();
        tokio::spawn(async move {
            let state = runner::run(policy, backend, r, cancel_rx).await;
            let _ = done_tx.send(Some(state));
        });
        Handle {
            record,
            cancel,
            done,
        }
    }

    /// Asks the run to stop (it rolls back first). The first reason wins.
    pub fn stop(&self, reason: &str) {
        self.cancel.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason.to_string());
                true
            } else {
                false
            }
        });
    }

    pub fn finished(&self) -> Option<State> {
        *self.done.borrow()
    }

    /// Waits for the verdict.
    pub async fn wait(&self) -> State {
        let mut done = self.done.clone();
        loop {
            if let Some(s) = *done.borrow_and_update() {
                return s;
            }
            if done.changed().await.is_err() {
                // The runner task is gone without a verdict (a panic).
                return State::Aborted;
            }
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .policy
            .clone()
    }

    pub fn snapshot(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Writes `<id>.md`, `<id>.json` and `<id>.svg` into `dir`.
pub fn write_log(r: &Record, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let svg_name = format!("{}.svg", r.id);
    let files = [
        (
            dir.join(format!("{}.md", r.id)),
            report::markdown(r, Some(&svg_name)),
        ),
        (
            dir.join(format!("{}.json", r.id)),
            serde_json::to_string_pretty(&report::json(r)).unwrap_or_default() + "\n",
        ),
        (dir.join(&svg_name), chart::svg(r)),
    ];
    let mut out = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text)?;
        out.push(path);
    }
    Ok(out)
}

/// A name safe in a path or URL: letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "experiment".into() } else { s }
}
