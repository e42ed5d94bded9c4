//! What `injector run` shows while it runs. On a terminal: the timeline
//! scrolls above a live block (state, step, a progress bar, each SLI's
//! current value) redrawn in place. Elsewhere (a pipe, CI logs): plain
//! lines only, the timeline plus a status line every few seconds.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use super::{
    doc::show_duration,
    record::{Record, State},
    runner::current,
    sli::Sli,
};

pub struct Progress {
    tty: bool,
    /// Live lines are cut to this many characters, so none wraps and the
    /// redraw stays in place.
    width: usize,
    drawn: usize,
    logged: usize,
    last_status: Option<Instant>,
}

/// Plain status lines come this often.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn bar(done: f64, width: usize) -> String {
    let full = ((done.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(full), "-".repeat(width - full))
}

/// Each SLI the run judges now, with its current value and a mark.
fn sli_line(r: &Record, sli: &Sli, role: &str, since: f64, now: f64) -> String {
    // Abort conditions fire when true; the others must stay true.
    let value = current(sli, &r.samples, since, now);
    let (shown, mark) = match value {
        None => ("no data".to_string(), " "),
        Some(v) => {
            let t = sli.test(v);
            let bad = if role == "abort" { t } else { !t };
            (sli.show_value(v), if bad { "!" } else { "ok" })
        }
    };
    format!("  {role:<10} {:<48} {shown:>10} {mark}", sli.to_string())
}

impl Progress {
    pub fn new(tty: bool) -> Progress {
        Progress {
            tty,
            width: terminal_width().unwrap_or(100),
            drawn: 0,
            logged: 0,
            last_status: None,
        }
    }

    fn block(&self, r: &Record) -> Vec<String> {
        let p = &r.policy;
        let now = r.now_ms();
        let planned = p.steady_state.baseline + p.method_duration() + p.rollback.verify;
        let done = now / planned.as_millis().max(1) as f64;
        let step = match r.step {
            Some(i) => format!(
                "step {}/{}: {}",
                i + 1,
                p.method.len(),
                p.method[i].describe()
            ),
            None => String::new(),
        };
        let mut lines = vec![format!(
            "{} {:>6.1}s / {}  {:<12} {}",
            bar(done, 24),
            now / 1000.0,
            show_duration(planned),
            r.state.word(),
            step
        )];
        let (role, since, slis): (&str, f64, Vec<&Sli>) = match r.state {
            State::Running | State::RollingBack => (
                "hypothesis",
                r.phases.method_ms.unwrap_or(0.0),
                p.hypothesis.holds.iter().collect(),
            ),
            State::Verifying => (
                "recovery",
                r.phases.rolled_back_ms.unwrap_or(0.0),
                p.steady_state.probes.iter().flat_map(|x| &x.slis).collect(),
            ),
            _ => (
                "steady",
                r.phases.baseline_ms.unwrap_or(0.0),
                p.steady_state.probes.iter().flat_map(|x| &x.slis).collect(),
            ),
        };
        for s in slis {
            lines.push(sli_line(r, s, role, since, now));
        }
        if r.state == State::Running {
            for s in &p.abort.when {
                lines.push(sli_line(r, s, "abort", since, now));
            }
        }
        lines
    }

    /// Draws what changed since the last call.
    pub fn update(&mut self, r: &Record, out: &mut impl Write) {
        let fresh: Vec<String> = r.log[self.logged.min(r.log.len())..]
            .iter()
            .map(|l| format!("+{:>6.1}s  {}", l.at_ms / 1000.0, l.text))
            .collect();
        self.logged = r.log.len();
        if self.tty {
            if self.drawn > 0 {
                // Back to the top of the live block, and clear it.
                let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            }
            for l in &fresh {
                let _ = writeln!(out, "{l}");
            }
            let block = if r.state.finished() {
                Vec::new()
            } else {
                self.block(r)
            };
            for l in &block {
                let cut: String = l.chars().take(self.width.saturating_sub(1)).collect();
                let _ = writeln!(out, "{cut}");
            }
            self.drawn = block.len();
        } else {
            for l in &fresh {
                let _ = writeln!(out, "{l}");
            }
            let due = self.last_status.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
            if due && !r.state.finished() {
                self.last_status = Some(Instant::now());
                for l in self.block(r) {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
        let _ = out.flush();
    }
}

fn terminal_width() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass; nothing else is touched.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars() {
        assert_eq!(bar(0.5, 4), "[##--]");
        assert_eq!(bar(2.0, 3), "[###]");
        assert_eq!(bar(-1.0, 2), "[--]");
    }
}
