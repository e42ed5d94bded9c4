//! Everything one run observed, as it happens: its state, the probe
//! results, when each fault was in force, what was done and why it ended.
//! The runner writes it; the progress line, the API and the log read it.

use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::{policy::Policy, sli::Sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Checking that the proxies exist.
    Starting,
    /// Measuring the steady state; nothing injected yet.
    Baseline,
    /// The method is running.
    Running,
    RollingBack,
    /// Rolled back; probing to see the steady state return.
    Verifying,
    /// The hypothesis held.
    Held,
    /// The hypothesis broke.
    Broke,
    /// Stopped early: an abort condition, a failed step, or a user.
    Aborted,
    /// Nothing was injected: invalid target or no steady state.
    Refused,
}

impl State {
    pub fn finished(&self) -> bool {
        matches!(
            self,
            State::Held | State::Broke | State::Aborted | State::Refused
        )
    }

    /// `injector run`'s exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            State::Held => 0,
            State::Broke => 1,
            _ => 2,
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Baseline => "baseline",
            State::Running => "running",
            State::RollingBack => "rolling back",
            State::Verifying => "verifying",
            State::Held => "held",
            State::Broke => "broke",
            State::Aborted => "aborted",
            State::Refused => "refused",
        }
    }
}

/// When one toxic was in force (to_ms None = still is).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultWindow {
    pub proxy: String,
    pub toxic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub from_ms: f64,
    pub to_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    pub at_ms: f64,
    pub text: String,
}

/// An SLI judged over some samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    pub sli: String,
    pub holds: bool,
    /// The value that decided (the violating one, or the whole phase's).
    pub value: Option<f64>,
    /// The value with its unit, or "no data".
    pub shown: String,
    /// When it first failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<f64>,
}

/// Phase boundaries, in ms since the start.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Phases {
    pub baseline_ms: Option<f64>,
    pub method_ms: Option<f64>,
    pub rollback_ms: Option<f64>,
    pub rolled_back_ms: Option<f64>,
    pub end_ms: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub policy: Arc<Policy>,
    pub origin: Instant,
    pub started: SystemTime,
    pub state: State,
    /// Why it ended as it did.
    pub reason: Option<String>,
    /// The method step under way (index into policy.method).
    pub step: Option<usize>,
    pub phases: Phases,
    pub samples: Vec<Sample>,
    pub faults: Vec<FaultWindow>,
    pub log: Vec<LogLine>,
    /// The steady state at the end of the baseline.
    pub steady: Vec<Judgement>,
    /// The hypothesis over the probes sent while faults were in force.
    pub hypothesis: Vec<Judgement>,
    /// The abort condition that fired.
    pub abort: Option<Judgement>,
    /// The steady state after the rollback (when `verify` is set).
    pub recovery: Vec<Judgement>,
    /// Rollback actions that failed (their toxics still expire by ttl).
    pub rollback_errors: Vec<String>,
}

impl Record {
    pub fn new(id: &str, policy: Arc<Policy>) -> Record {
        Record {
            id: id.to_string(),
            policy,
            origin: Instant::now(),
            started: SystemTime::now(),
            state: State::Starting,
            reason: None,
            step: None,
            phases: Phases::default(),
            samples: Vec::new(),
            faults: Vec::new(),
            log: Vec::new(),
            steady: Vec::new(),
            hypothesis: Vec::new(),
            abort: None,
            recovery: Vec::new(),
            rollback_errors: Vec::new(),
        }
    }

    pub fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }

    pub fn started_unix_ms(&self) -> u64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let at_ms = self.now_ms();
        self.log.push(LogLine {
            at_ms,
            text: text.into(),
        });
    }

    /// Was a fault in force at `t`?
    pub fn in_fault(&self, t: f64) -> bool {
        self.faults
            .iter()
            .any(|f| f.from_ms <= t && f.to_ms.is_none_or(|end| t < end))
    }

    /// Samples sent while a fault was in force, by completion time.
    pub fn fault_samples(&self) -> Vec<&Sample> {
        let mut v: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| self.in_fault(s.start_ms))
            .collect();
        v.sort_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
        v
    }

    /// The first and last fault window edges.
    pub fn fault_span(&self) -> Option<(f64, f64)> {
        let from = self.faults.iter().map(|f| f.from_ms).reduce(f64::min)?;
        let now = self.now_ms();
        let to = self
            .faults
            .iter()
            .map(|f| f.to_ms.unwrap_or(now))
            .fold(from, f64::max);
        Some((from, to))
    }
}
