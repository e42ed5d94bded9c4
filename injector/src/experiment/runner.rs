//! One experiment from start to verdict: check the proxies exist, measure
//! the steady state (refuse to inject if it does not hold), run the method
//! step by step while watching the abort conditions, then roll back,
//! whatever happened. Every toxic is added with a `ttl_ms` that ends within
//! the blast radius' max_duration, so a runner that dies (Ctrl-C twice, a
//! crash, a daemon restart) cannot leave a fault behind for longer.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use super::{
    backend::{Backend, Gone, NewToxic},
    policy::{Inject, Policy, Ramp, Step},
    probe::ms_since,
    record::{FaultWindow, Judgement, Record, State},
    sli::{Sample, Sli, first_violation},
};

/// Why the method stopped before its end.
enum Stop {
    /// An abort condition fired, a step failed, or someone asked.
    Abort(String),
    /// The blast radius' max_duration is used up.
    Budget,
}

/// How often the abort conditions are judged while waiting.
const TICK: Duration = Duration::from_millis(50);
/// A failed rollback action is tried once more after this.
const RETRY: Duration = Duration::from_millis(500);

struct Run {
    policy: Arc<Policy>,
    backend: Backend,
    record: Arc<Mutex<Record>>,
    origin: Instant,
    samples: mpsc::UnboundedReceiver<Sample>,
    cancel: watch::Receiver<Option<String>>,
    cancel_open: bool,
    /// Toxics the run added and that are still there, oldest first.
    active: Vec<(String, String)>,
    /// Proxies the run created, oldest first.
    created: Vec<String>,
    fault_start: Option<Instant>,
}

fn lock(r: &Mutex<Record>) -> MutexGuard<'_, Record> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Judges one SLI over samples already filtered to the phase it covers:
/// windowed SLIs on every window, the others once on the whole.
pub fn judge(sli: &Sli, samples: &[&Sample]) -> Judgement {
    let mine: Vec<&Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.probe == sli.probe)
        .collect();
    if mine.is_empty() {
        return Judgement {
            sli: sli.to_string(),
            holds: false,
            value: None,
            shown: "no data".into(),
            at_ms: None,
        };
    }
    match first_violation(sli, &mine) {
        Some((at, v)) => Judgement {
            sli: sli.to_string(),
            holds: false,
            value: Some(v),
            shown: sli.show_value(v),
            at_ms: Some(at),
        },
        None => {
            // The value shown for a held SLI is the whole phase's.
            let v = sli.measure(mine.iter().copied());
            Judgement {
                sli: sli.to_string(),
                holds: true,
                value: v,
                shown: v.map_or("no data".into(), |v| sli.show_value(v)),
                at_ms: None,
            }
        }
    }
}

/// The value of `sli` now: over its window ending now, or over every
/// sample since `since_ms`. None without data.
pub fn current(sli: &Sli, samples: &[Sample], since_ms: f64, now_ms: f64) -> Option<f64> {
    let from = match sli.window {
        Some(w) => (now_ms - w.as_secs_f64() * 1000.0).max(since_ms),
        None => since_ms,
    };
    sli.measure(
        samples
            .iter()
            .filter(|s| s.start_ms >= since_ms && s.end_ms > from && s.end_ms <= now_ms),
    )
}

/// The value that makes abort condition `sli` fire now, if it does. A
/// windowed condition (`over W`) waits until W has passed since the method
/// began: "error rate > 95% over 2s" means two seconds of errors, and one
/// unlucky first probe (100% of one sample) must not abort the run.
pub fn abort_value(sli: &Sli, samples: &[Sample], since_ms: f64, now_ms: f64) -> Option<f64> {
    if let Some(w) = sli.window
        && now_ms - since_ms < w.as_secs_f64() * 1000.0
    {
        return None;
    }
    current(sli, samples, since_ms, now_ms).filter(|v| sli.test(*v))
}

/// Runs `policy` to its end and returns the final state. `cancel` carries
/// a reason when someone asks to stop (Ctrl-C, DELETE /experiments/{id}).
pub async fn run(
    policy: Arc<Policy>,
    backend: Backend,
    record: Arc<Mutex<Record>>,
    cancel: watch::Receiver<Option<String>>,
) -> State {
    let origin = lock(&record).origin;
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut run = Run {
        policy: policy.clone(),
        backend,
        record,
        origin,
        samples: rx,
        cancel,
        cancel_open: true,
        active: Vec::new(),
        created: Vec::new(),
        fault_start: None,
    };

    if let Err(reason) = run.preflight().await {
        return run.finish(State::Refused, reason);
    }

    let probes: Vec<_> = policy
        .steady_state
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| Arc::new(p.clone()).spawn(i, origin, tx.clone(), stop_rx.clone()))
        .collect();
    drop(tx);

    let outcome = run.experiment().await;
    // Rolled back on every path; from here on nothing can be injected.
    let rollback_ok = run.rollback().await;
    run.verify().await;

    let _ = stop_tx.send(true);
    let drain = run.policy.max_timeout() + Duration::from_secs(1);
    let joined = async {
        for p in probes {
            let _ = p.await;
        }
    };
    tokio::select! {
        _ = joined => {}
        _ = tokio::time::sleep(drain) => {}
    }
    while let Ok(s) = run.samples.try_recv() {
        lock(&run.record).samples.push(s);
    }

    let (state, reason) = match outcome {
        Outcome::Refused(r) => (State::Refused, r),
        Outcome::Aborted(r) => {
            // Judged anyway, for the log: what the faults did before the stop.
            if run.fault_start.is_some() {
                run.verdict();
            }
            (State::Aborted, r)
        }
        Outcome::Completed => run.verdict(),
    };
    let reason = if rollback_ok {
        reason
    } else {
        format!("{reason}; the rollback was incomplete (the faults left expire by their ttl_ms)")
    };
    run.finish(state, reason)
}

enum Outcome {
    Refused(String),
    Aborted(String),
    Completed,
}

impl Run {
    fn now_ms(&self) -> f64 {
        ms_since(self.origin, Instant::now())
    }

    fn set_state(&self, s: State) {
        let mut r = lock(&self.record);
        let now = r.now_ms();
        r.state = s;
        match s {
            State::Baseline => r.phases.baseline_ms = Some(now),
            State::Running => r.phases.method_ms = Some(now),
            State::RollingBack => r.phases.rollback_ms = Some(now),
            State::Verifying => r.phases.rolled_back_ms = Some(now),
            _ => {}
        }
    }

    fn note(&self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(target: "experiment", "{text}");
        lock(&self.record).note(text);
    }

    fn finish(&self, state: State, reason: String) -> State {
        let mut r = lock(&self.record);
        let now = r.now_ms();
        if r.phases.rollback_ms.is_some() && r.phases.rolled_back_ms.is_none() {
            r.phases.rolled_back_ms = Some(now);
        }
        r.phases.end_ms = Some(now);
        r.step = None;
        r.state = state;
        r.note(format!("result: {} ({reason})", state.word()));
        r.reason = Some(reason);
        state
    }

    /// Every proxy the method touches without creating it must exist.
    async fn preflight(&mut self) -> Result<(), String> {
        self.note(format!(
            "experiment {:?} starts against {}",
            self.policy.name,
            self.backend.describe()
        ));
        for p in self.policy.existing_proxies() {
            match self.backend.proxy_exists(&p).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!("proxy {p:?} does not exist; nothing was injected"));
                }
                Err(e) => return Err(format!("cannot check proxy {p:?}: {e}")),
            }
        }
        for p in self.policy.created_proxies() {
            match self.backend.proxy_exists(&p).await {
                Ok(false) => {}
                Ok(true) => {
                    return Err(format!(
                        "proxy {p:?} already exists and the method would create it; nothing was injected"
                    ));
                }
                Err(e) => return Err(format!("cannot check proxy {p:?}: {e}")),
            }
        }
        Ok(())
    }

    fn take_samples(&mut self) {
        let mut fresh = Vec::new();
        while let Ok(s) = self.samples.try_recv() {
            fresh.push(s);
        }
        if !fresh.is_empty() {
            lock(&self.record).samples.extend(fresh);
        }
    }

    /// The abort condition that holds now, if any.
    fn abort_fired(&self) -> Option<Judgement> {
        let r = lock(&self.record);
        let since = r.phases.method_ms?;
        let now = r.now_ms();
        for sli in &self.policy.abort.when {
            if let Some(v) = abort_value(sli, &r.samples, since, now) {
                return Some(Judgement {
                    sli: sli.to_string(),
                    holds: true,
                    value: Some(v),
                    shown: sli.show_value(v),
                    at_ms: Some(now),
                });
            }
        }
        None
    }

    /// Collects samples until `until`; judges the abort conditions when
    /// `guard` is set and stops early on one, on a cancel, or when the
    /// fault budget runs out.
    async fn watch_until(&mut self, until: Instant, guard: bool) -> Result<(), Stop> {
        loop {
            self.take_samples();
            if self.cancel_open
                && let Some(reason) = self.cancel.borrow().clone()
            {
                return Err(Stop::Abort(reason));
            }
            if guard {
                if let Some(j) = self.abort_fired() {
                    let reason =
                        format!("abort condition `{}` fired (measured {})", j.sli, j.shown);
                    lock(&self.record).abort = Some(j);
                    return Err(Stop::Abort(reason));
                }
                if let Some(start) = self.fault_start
                    && Instant::now() >= start + self.policy.blast_radius.max_duration
                {
                    return Err(Stop::Budget);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let mut next = (now + TICK).min(until);
            if guard && let Some(start) = self.fault_start {
                next = next.min(start + self.policy.blast_radius.max_duration);
            }
            tokio::select! {
                s = self.samples.recv() => {
                    if let Some(s) = s {
                        lock(&self.record).samples.push(s);
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {}
                changed = self.cancel.changed(), if self.cancel_open => {
                    if changed.is_err() {
                        self.cancel_open = false;
                    }
                }
            }
        }
    }

    async fn experiment(&mut self) -> Outcome {
        self.set_state(State::Baseline);
        let baseline = self.policy.steady_state.baseline;
        self.note(format!(
            "baseline: measuring the steady state for {}",
            super::doc::show_duration(baseline)
        ));
        let start = Instant::now();
        if let Err(Stop::Abort(reason)) = self.watch_until(start + baseline, false).await {
            return Outcome::Aborted(format!(
                "{reason} during the baseline; nothing was injected"
            ));
        }
        let judged = {
            let r = lock(&self.record);
            let since = r.phases.baseline_ms.unwrap_or(0.0);
            let mut samples: Vec<&Sample> =
                r.samples.iter().filter(|s| s.start_ms >= since).collect();
            samples.sort_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
            self.policy
                .steady_slis()
                .iter()
                .map(|sli| judge(sli, &samples))
                .collect::<Vec<_>>()
        };
        let broken: Vec<String> = judged
            .iter()
            .filter(|j| !j.holds)
            .map(|j| format!("`{}` measured {}", j.sli, j.shown))
            .collect();
        lock(&self.record).steady = judged;
        if !broken.is_empty() {
            return Outcome::Refused(format!(
                "the steady state does not hold before injecting: {}; nothing was injected",
                broken.join(", ")
            ));
        }
        self.note("baseline: the steady state holds");

        self.set_state(State::Running);
        let steps = self.policy.method.clone();
        for (i, step) in steps.iter().enumerate() {
            lock(&self.record).step = Some(i);
            self.note(format!("step {}: {}", i + 1, step.describe()));
            let r = match step {
                Step::Inject(inj) => self.inject(inj).await,
                Step::Wait { duration } => {
                    let until = Instant::now() + *duration;
                    self.watch_until(until, true).await
                }
                Step::Ramp(ramp) => self.ramp(ramp).await,
                Step::Remove { proxy, toxic } => self.remove(proxy, toxic).await,
            };
            match r {
                Ok(()) => {}
                Err(Stop::Abort(reason)) => return Outcome::Aborted(reason),
                Err(Stop::Budget) => {
                    self.note(format!(
                        "the blast radius' max_duration ({}) is used up: the method stops here",
                        super::doc::show_duration(self.policy.blast_radius.max_duration)
                    ));
                    return Outcome::Completed;
                }
            }
        }
        Outcome::Completed
    }

    /// What is left of the fault budget, as a toxic's ttl.
    fn ttl_ms(&mut self) -> u64 {
        let start = *self.fault_start.get_or_insert_with(Instant::now);
        let left = (start + self.policy.blast_radius.max_duration)
            .saturating_duration_since(Instant::now());
        (left.as_millis() as u64).max(1)
    }

    fn open_window(&self, proxy: &str, toxic: &str, kind: &str) {
        let mut r = lock(&self.record);
        let now = r.now_ms();
        r.faults.push(FaultWindow {
            proxy: proxy.into(),
            toxic: toxic.into(),
            kind: kind.into(),
            from_ms: now,
            to_ms: None,
        });
    }

    fn close_window(&self, proxy: &str, toxic: &str) {
        let mut r = lock(&self.record);
        let now = r.now_ms();
        for f in r.faults.iter_mut() {
            if f.proxy == proxy && f.toxic == toxic && f.to_ms.is_none() {
                f.to_ms = Some(now);
            }
        }
    }

    async fn add(
        &mut self,
        proxy: &str,
        toxic: &str,
        kind: &str,
        stream: &str,
        toxicity: f32,
        attributes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Stop> {
        let ttl_ms = self.ttl_ms();
        let spec = NewToxic {
            name: toxic,
            kind,
            stream,
            toxicity,
            attributes,
            ttl_ms,
        };
        self.backend
            .add_toxic(proxy, &spec)
            .await
            .map_err(|e| Stop::Abort(format!("injecting {toxic:?} on {proxy:?} failed: {e}")))?;
        self.active.push((proxy.into(), toxic.into()));
        self.open_window(proxy, toxic, kind);
        self.note(format!(
            "injected {kind} {toxic:?} on {proxy:?} (ttl_ms {ttl_ms})"
        ));
        Ok(())
    }

    async fn inject(&mut self, inj: &Inject) -> Result<(), Stop> {
        self.watch_until(Instant::now(), true).await?;
        if let Some(create) = &inj.create {
            self.backend
                .create_proxy(&inj.proxy, create)
                .await
                .map_err(|e| Stop::Abort(format!("creating proxy {:?} failed: {e}", inj.proxy)))?;
            self.created.push(inj.proxy.clone());
            self.note(format!("created proxy {:?}", inj.proxy));
        }
        self.add(
            &inj.proxy,
            &inj.toxic,
            &inj.kind,
            &inj.stream,
            inj.toxicity,
            &inj.attributes,
        )
        .await
    }

    async fn ramp(&mut self, ramp: &Ramp) -> Result<(), Stop> {
        let start = Instant::now();
        let n = ramp.steps.max(2) as usize;
        for k in 0..n {
            self.watch_until(start + ramp.over.mul_f64(k as f64 / n as f64), true)
                .await?;
            let attributes = ramp.attributes_at(k);
            let there = self
                .active
                .iter()
                .any(|(p, t)| *p == ramp.proxy && *t == ramp.toxic);
            if there {
                self.backend
                    .update_toxic(&ramp.proxy, &ramp.toxic, &attributes)
                    .await
                    .map_err(|e| {
                        Stop::Abort(format!(
                            "ramping {:?} on {:?} failed: {e}",
                            ramp.toxic, ramp.proxy
                        ))
                    })?;
            } else {
                self.add(
                    &ramp.proxy,
                    &ramp.toxic,
                    &ramp.kind,
                    &ramp.stream,
                    ramp.toxicity,
                    &attributes,
                )
                .await?;
            }
            self.note(format!(
                "ramp {:?}: {} = {}",
                ramp.toxic,
                ramp.attribute,
                attributes.get(&ramp.attribute).cloned().unwrap_or_default()
            ));
        }
        self.watch_until(start + ramp.over, true).await
    }

    async fn remove(&mut self, proxy: &str, toxic: &str) -> Result<(), Stop> {
        self.watch_until(Instant::now(), true).await?;
        match self.backend.remove_toxic(proxy, toxic).await {
            Ok(gone) => {
                self.active.retain(|(p, t)| !(p == proxy && t == toxic));
                self.close_window(proxy, toxic);
                self.note(match gone {
                    Gone::Removed => format!("removed {toxic:?} from {proxy:?}"),
                    Gone::Absent => format!("{toxic:?} on {proxy:?} was already gone (expired)"),
                });
                Ok(())
            }
            Err(e) => Err(Stop::Abort(format!(
                "removing {toxic:?} from {proxy:?} failed: {e}"
            ))),
        }
    }

    /// Undoes everything the run did, newest first, then the policy's own
    /// removals. Returns false when something could not be undone.
    async fn rollback(&mut self) -> bool {
        self.set_state(State::RollingBack);
        lock(&self.record).step = None;
        let mut ok = true;
        let mut undo: Vec<(String, String)> = std::mem::take(&mut self.active);
        undo.reverse();
        for r in &self.policy.rollback.remove {
            if !undo.iter().any(|(p, t)| *p == r.proxy && *t == r.toxic) {
                undo.push((r.proxy.clone(), r.toxic.clone()));
            }
        }
        let created: Vec<String> = self.created.iter().rev().cloned().collect();
        for (proxy, toxic) in undo {
            let mut r = self.backend.remove_toxic(&proxy, &toxic).await;
            if r.is_err() {
                // One more try: a daemon busy for a moment is no reason to
                // leave a fault until its ttl.
                tokio::time::sleep(RETRY).await;
                r = self.backend.remove_toxic(&proxy, &toxic).await;
            }
            self.close_window(&proxy, &toxic);
            match r {
                Ok(Gone::Removed) => {
                    self.note(format!("rollback: removed {toxic:?} from {proxy:?}"))
                }
                Ok(Gone::Absent) => {
                    self.note(format!("rollback: {toxic:?} on {proxy:?} was already gone"))
                }
                Err(e) => {
                    ok = false;
                    let text = format!("rollback: removing {toxic:?} from {proxy:?} failed: {e}");
                    lock(&self.record).rollback_errors.push(text.clone());
                    self.note(text);
                }
            }
        }
        for proxy in created {
            let mut r = self.backend.delete_proxy(&proxy).await;
            if r.is_err() {
                tokio::time::sleep(RETRY).await;
                r = self.backend.delete_proxy(&proxy).await;
            }
            match r {
                Ok(_) => self.note(format!("rollback: deleted proxy {proxy:?}")),
                Err(e) => {
                    ok = false;
                    let text = format!("rollback: deleting proxy {proxy:?} failed: {e}");
                    lock(&self.record).rollback_errors.push(text.clone());
                    self.note(text);
                }
            }
        }
        self.created.clear();
        ok
    }

    /// Probes on for `rollback.verify` and judges the steady state again.
    async fn verify(&mut self) {
        self.set_state(State::Verifying);
        let verify = self.policy.rollback.verify;
        if verify.is_zero() || self.fault_start.is_none() {
            return;
        }
        self.note(format!(
            "verify: probing the steady state for {} after the rollback",
            super::doc::show_duration(verify)
        ));
        let _ = self.watch_until(Instant::now() + verify, false).await;
        // Attempts still in flight would be judged half way: let them land.
        let settle = Instant::now() + self.policy.max_timeout().min(Duration::from_secs(5));
        let since = lock(&self.record).phases.rolled_back_ms.unwrap_or(0.0);
        let end = self.now_ms();
        let _ = self.watch_until(settle, false).await;
        let r = lock(&self.record);
        let mut samples: Vec<&Sample> = r
            .samples
            .iter()
            .filter(|s| s.start_ms >= since && s.start_ms <= end)
            .collect();
        samples.sort_by(|a, b| a.end_ms.total_cmp(&b.end_ms));
        let judged: Vec<Judgement> = self
            .policy
            .steady_slis()
            .iter()
            .map(|sli| judge(sli, &samples))
            .collect();
        drop(r);
        let back = judged.iter().all(|j| j.holds);
        lock(&self.record).recovery = judged;
        self.note(if back {
            "verify: the steady state is back".to_string()
        } else {
            "verify: the steady state is NOT back".to_string()
        });
    }

    fn verdict(&self) -> (State, String) {
        let judged: Vec<Judgement> = {
            let r = lock(&self.record);
            let samples = r.fault_samples();
            self.policy
                .hypothesis
                .holds
                .iter()
                .map(|sli| judge(sli, &samples))
                .collect()
        };
        let broken: Vec<String> = judged
            .iter()
            .filter(|j| !j.holds)
            .map(|j| match j.at_ms {
                Some(at) => format!(
                    "`{}` broke at +{:.1}s (measured {})",
                    j.sli,
                    at / 1000.0,
                    j.shown
                ),
                None => format!("`{}`: {}", j.sli, j.shown),
            })
            .collect();
        lock(&self.record).hypothesis = judged;
        if broken.is_empty() {
            (
                State::Held,
                "every hypothesis SLI held while the faults were in force".into(),
            )
        } else {
            (
                State::Broke,
                format!("the hypothesis broke: {}", broken.join(", ")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(end_ms: f64, ok: bool) -> Sample {
        Sample {
            probe: 0,
            start_ms: end_ms - 1.0,
            end_ms,
            latency_ms: 1.0,
            ok,
            error: None,
        }
    }

    fn sli(text: &str) -> Sli {
        Sli::parse(text, &["shop".to_string()], None).expect("a valid SLI")
    }

    #[test]
    fn a_windowed_abort_waits_for_a_full_window() {
        let error_rate = sli("shop: error_rate > 95% over 2s");
        let one_failure = [sample(1_010.0, false)];
        // 10 ms after the method began, one failed probe is 100% errors,
        // but the two-second window is not full yet.
        assert_eq!(
            abort_value(&error_rate, &one_failure, 1_000.0, 1_010.0),
            None
        );
        let all_failing: Vec<Sample> = (1..=40)
            .map(|i| sample(1_000.0 + 50.0 * i as f64, false))
            .collect();
        assert_eq!(
            abort_value(&error_rate, &all_failing, 1_000.0, 3_000.0),
            Some(100.0)
        );
        let mostly_fine: Vec<Sample> = (1..=40)
            .map(|i| sample(1_000.0 + 50.0 * i as f64, i % 5 != 0))
            .collect();
        assert_eq!(
            abort_value(&error_rate, &mostly_fine, 1_000.0, 3_000.0),
            None
        );
    }

    #[test]
    fn an_unwindowed_abort_fires_at_once() {
        let failures = sli("shop: failures > 0");
        assert_eq!(
            abort_value(&failures, &[sample(1_010.0, false)], 1_000.0, 1_010.0),
            Some(1.0)
        );
        assert_eq!(
            abort_value(&failures, &[sample(1_010.0, true)], 1_000.0, 1_010.0),
            None
        );
    }
}
