//! The `injector` command line: `serve` runs the daemon; the other verbs
//! mirror toxiproxy-cli (same names, aliases and flags, `-h/--host` and
//! `TOXIPROXY_URL`) and talk HTTP to a running daemon.

mod cleanup;
mod client;
mod doctor;
mod partitions;
mod proxies;
mod run;
pub(crate) mod serve;
mod table;
mod tls;
mod toxics;
mod watch;
mod zones;

use std::{ffi::OsString, process::ExitCode};

use clap::{ArgAction, Parser, Subcommand};

pub use client::{Client, seg};

#[derive(Parser, Debug)]
#[command(
    name = "injector",
    version,
    about = "Network faults in the kernel, behind ToxiProxy's REST API",
    disable_help_flag = true
)]
pub struct Cli {
    /// The daemon to talk to (toxiproxy-cli's -h/--host).
    #[arg(
        short = 'h',
        long = "host",
        env = "TOXIPROXY_URL",
        default_value = "http://localhost:8474"
    )]
    pub host: String,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Bearer token for a daemon that requires one.
    #[arg(long, env = "INJECTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[arg(long, action = ArgAction::Help, help = "Print help")]
    help: Option<bool>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (API on 127.0.0.1:8474 by default).
    Serve(serve::ServeArgs),
    /// List all proxies.
    #[command(visible_aliases = ["l", "li", "ls"])]
    List,
    /// Show one proxy and its toxics.
    #[command(visible_aliases = ["i", "ins"])]
    Inspect { proxy: String },
    /// Create a proxy: -l/-u for a listen proxy, --target for a kernel-native one.
    #[command(visible_aliases = ["c", "new"])]
    Create(proxies::CreateArgs),
    /// Enable a disabled proxy, disable an enabled one.
    #[command(visible_alias = "tog")]
    Toggle { proxy: String },
    /// Delete a proxy.
    #[command(visible_alias = "d")]
    Delete { proxy: String },
    /// Add, update or remove a toxic.
    #[command(visible_alias = "t", subcommand)]
    Toxic(toxics::ToxicCommand),
    /// Report which kernel features this host has, and the faults they allow.
    Doctor,
    /// Remove whatever a crashed daemon left in the kernel.
    Cleanup,
    /// The demo shop to break: up, down, status, load, route.
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// Run an experiment policy file against the daemon; exit 0 if the
    /// hypothesis held, 1 if it broke, 2 if aborted or refused.
    Run(run::RunArgs),
    /// Follow fault activity live: changes, and what each toxic does per second.
    Watch(watch::WatchArgs),
    /// Named CIDR sets (availability zones) that blackhole and loss toxics cut.
    #[command(subcommand, visible_alias = "zones")]
    Zone(zones::ZoneCommand),
    /// Cut one group of targets from another, both ways, in one call.
    #[command(subcommand, visible_alias = "partitions")]
    Partition(partitions::PartitionCommand),
}

/// ToxiProxy's server takes Go-style single-dash long flags (`-host`,
/// `-port`, `-config`...); clap wants two dashes, so `serve`'s are rewritten.
pub fn rewrite_args(args: Vec<OsString>) -> Vec<OsString> {
    const SINGLE_DASH: [&str; 7] = [
        "host",
        "port",
        "config",
        "proxy-metrics",
        "runtime-metrics",
        "seed",
        "max-fault-duration",
    ];
    let serve_at = args.iter().position(|a| a == "serve");
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(at) = serve_at else { return a };
            let Some(s) = a.to_str().filter(|_| i > at) else {
                return a;
            };
            let Some(flag) = s.strip_prefix('-').filter(|f| !f.starts_with('-')) else {
                return a;
            };
            let name = flag.split('=').next().unwrap_or(flag);
            if SINGLE_DASH.contains(&name) {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(rewrite_args(std::env::args_os().collect()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("injector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = || Client::new(&cli.host, cli.token.clone());
    let json = cli.json;
    if let Command::Run(ref args) = cli.command {
        return Ok(run::run(args, &cli.host, cli.token.clone(), json).await);
    }
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::List => proxies::list(&client()?, json).await,
        Command::Inspect { ref proxy } => proxies::inspect(&client()?, proxy, json).await,
        Command::Create(ref args) => proxies::create(&client()?, args, json).await,
        Command::Toggle { ref proxy } => proxies::toggle(&client()?, proxy, json).await,
        Command::Delete { ref proxy } => proxies::delete(&client()?, proxy, json).await,
        Command::Toxic(ref cmd) => toxics::run(&client()?, cmd, json).await,
        Command::Doctor => doctor::doctor(json).await,
        Command::Cleanup => cleanup::cleanup(json).await,
        Command::Lab(cmd) => crate::lab::run(cmd, json).await,
        Command::Run(_) => unreachable!("handled above"),
        Command::Watch(ref args) => watch::watch(&client()?, args, json).await,
        Command::Zone(ref cmd) => zones::run(&client()?, cmd, json).await,
        Command::Partition(ref cmd) => partitions::run(&client()?, cmd, json).await,
    }
    .map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_dash_server_flags_are_rewritten() {
        assert_eq!(
            rewrite_args(os(&[
                "injector",
                "serve",
                "-host=0.0.0.0",
                "-port",
                "1",
                "-config",
                "f",
                "--json"
            ])),
            os(&[
                "injector",
                "serve",
                "--host=0.0.0.0",
                "--port",
                "1",
                "--config",
                "f",
                "--json"
            ])
        );
        // Only after `serve`: -h is the client's host flag.
        assert_eq!(
            rewrite_args(os(&["injector", "-h", "http://x:1", "list"])),
            os(&["injector", "-h", "http://x:1", "list"])
        );
    }

    #[test]
    fn toxiproxy_cli_spellings_parse() {
        let cli = Cli::try_parse_from([
            "injector",
            "-h",
            "http://h:1",
            "toxic",
            "add",
            "-t",
            "latency",
            "-n",
            "x",
            "-u",
            "--tox",
            "0.5",
            "-a",
            "latency=100",
            "-a",
            "jitter=5",
            "p",
        ])
        .unwrap();
        assert_eq!(cli.host, "http://h:1");
        match cli.command {
            Command::Toxic(toxics::ToxicCommand::Add(a)) => {
                assert_eq!(a.kind, "latency");
                assert_eq!(a.name.as_deref(), Some("x"));
                assert!(a.upstream && !a.downstream);
                assert_eq!(a.toxicity.as_deref(), Some("0.5"));
                assert_eq!(a.attributes, ["latency=100", "jitter=5"]);
                assert_eq!(a.proxy, "p");
            }
            other => panic!("parsed as {other:?}"),
        }
        for alias in ["l", "li", "ls", "list"] {
            assert!(matches!(
                Cli::try_parse_from(["injector", alias]).unwrap().command,
                Command::List
            ));
        }
        assert!(matches!(
            Cli::try_parse_from(["injector", "t", "r", "-n", "x", "p"])
                .unwrap()
                .command,
            Command::Toxic(toxics::ToxicCommand::Remove { .. })
        ));
        assert!(matches!(
            Cli::try_parse_from(["injector", "new", "-l", "a:1", "-u", "b:2", "p"])
                .unwrap()
                .command,
            Command::Create(_)
        ));
    }
}
