//! `injector run policies/x.toml [--host URL] [--out DIR]`: runs an
//! experiment from this machine (probes leave from here) against a
//! daemon's API, shows it live, writes the log, and exits 0 if the
//! hypothesis held, 1 if it broke, 2 if it was aborted or refused (an
//! invalid policy, a missing proxy, a steady state that does not hold).
//!
//! Ctrl-C (or SIGTERM) aborts and rolls back; a second Ctrl-C leaves at
//! once, and the faults still in place expire by their `ttl_ms`.

use std::{
    io::IsTerminal,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::Client;
use crate::experiment::{
    Backend, Handle, Policy, State, doc::show_duration, progress::Progress, report, slug, write_log,
};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The policy file (TOML; JSON when it starts with `{`); several with
    /// --check.
    #[arg(required = true, num_args = 1..)]
    pub policy: Vec<PathBuf>,
    /// The daemon to run against (default: -h/--host, TOXIPROXY_URL, or
    /// http://localhost:8474).
    #[arg(long)]
    pub host: Option<String>,
    /// Where the log goes: <name>-<time>.md, .json and .svg.
    #[arg(long, default_value = "experiment-logs")]
    pub out: PathBuf,
    /// Only validate the policy; inject nothing.
    #[arg(long)]
    pub check: bool,
}

const REFUSED: u8 = 2;

fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 20261127T093000Z, from the RFC 3339 form without separators.
    report::rfc3339(secs * 1000).replace(['-', ':'], "")
}

fn load(path: &std::path::Path) -> Option<Policy> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("injector run: cannot read {shown}: {e}");
            return None;
        }
    };
    match Policy::parse(&shown, &text) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("{e}");
            eprintln!("injector run: {shown} is not a valid policy; nothing was injected");
            None
        }
    }
}

/// `--check`: validates every file, injects nothing.
fn check(paths: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in paths {
        let Some(policy) = load(path) else {
            ok = false;
            continue;
        };
        println!(
            "{}: ok: {} probe(s), {} step(s), method {}, blast radius {} for at most {}",
            path.display(),
            policy.steady_state.probes.len(),
            policy.method.len(),
            show_duration(policy.method_duration()),
            policy.blast_radius.proxies.join(", "),
            show_duration(policy.blast_radius.max_duration)
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REFUSED)
    }
}

pub async fn run(
    args: &RunArgs,
    default_host: &str,
    token: Option<String>,
    json: bool,
) -> ExitCode {
    if args.check {
        return check(&args.policy);
    }
    let [path] = args.policy.as_slice() else {
        eprintln!("injector run: give one policy file (several only with --check)");
        return ExitCode::from(REFUSED);
    };
    let Some(policy) = load(path) else {
        return ExitCode::from(REFUSED);
    };
    let host = args.host.as_deref().unwrap_or(default_host);
    let client = match Client::new(host, token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("injector run: {e:#}");
            return ExitCode::from(REFUSED);
        }
    };
    let id = format!("{}-{}", slug(&policy.name), stamp());
    let handle = Handle::start(&id, Arc::new(policy), Backend::Http(Arc::new(client)));

    let tty = std::io::stdout().is_terminal() && !json;
    let mut progress = Progress::new(tty);
    let mut interrupts = 0;
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(if tty { 250 } else { 500 }));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(_) = async { sigint.as_mut()?.recv().await } => interrupts += 1,
            Some(_) = async { sigterm.as_mut()?.recv().await } => interrupts += 1,
        }
        if interrupts == 1 {
            handle.stop("interrupted (Ctrl-C or SIGTERM)");
            eprintln!("injector run: interrupted: rolling back (press Ctrl-C again to quit now)");
            interrupts += 1;
        } else if interrupts > 2 {
            eprintln!(
                "injector run: quitting without finishing the rollback; the faults left expire by their ttl_ms"
            );
            return ExitCode::from(REFUSED);
        }
        if !json {
            progress.update(&handle.snapshot(), &mut std::io::stdout());
        }
        if handle.finished().is_some() {
            break;
        }
    }
    let state = handle.wait().await;
    let record = handle.snapshot();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&record)).unwrap_or_default()
        );
    } else {
        progress.update(&record, &mut std::io::stdout());
    }
    match write_log(&record, &args.out) {
        Ok(files) => {
            for f in files {
                eprintln!("log: {}", f.display());
            }
        }
        Err(e) => eprintln!(
            "injector run: cannot write the log to {}: {e}",
            args.out.display()
        ),
    }
    let word = match state {
        State::Held => "HELD",
        State::Broke => "BROKE",
        State::Aborted => "ABORTED",
        _ => "REFUSED",
    };
    eprintln!(
        "{word}: {}",
        record.reason.as_deref().unwrap_or("no reason recorded")
    );
    ExitCode::from(state.exit_code())
}
