//! `cargo xtask bench`: injector against bare veth and a userland proxy, on
//! this machine, in one run. Two namespaces made for the run (client A,
//! server B) joined by a bridge of the run's own; every path is measured
//! with the same traffic and reported as ratios to bare veth. Results go to
//! target/bench/results.md and target/bench/chart.svg and are printed.
//! Targets are shown as pass/fail, never asserted: timing belongs here,
//! not in tests.

mod api;
mod control;
mod copyproxy;
mod daemon;
mod datapath;
mod fidelity;
mod load;
mod net;
mod report;
mod scale;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::time::Duration;

use crate::{cmd, setup};
use daemon::{Daemon, cpu_during, rss_mib};
use load::{ECHO_PORT, IPERF_PORT};
use net::{B_ADDR, HOST_ADDR, Net, Side};
use report::{Cell, Results, ScaleStep, Usage};

#[derive(Args, Debug)]
pub struct BenchOptions {
    /// Seconds of one iperf3 run.
    #[arg(long, default_value_t = 2)]
    pub secs: u32,
    /// Rounds: the data-path cells are visited once per round, the scale
    /// cells measured this many times; a cell's throughput is its best run
    /// (on a shared machine, interference only ever lowers one).
    #[arg(long, default_value_t = 5)]
    pub repeat: u32,
    /// Ping-pong round trips per latency cell (over all its rounds).
    #[arg(long, default_value_t = 2000)]
    pub rounds: usize,
    /// Rule counts of the scale step (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000,65536")]
    pub rules: Vec<usize>,
    /// Fault on/off rounds of the control-plane step.
    #[arg(long, default_value_t = 40)]
    pub control_rounds: usize,
}

/// Throughput and latency of one path: `tput` and `echo` are where A's
/// iperf3 and ping-pong connect. Measured as the data-path rounds are: best
/// throughput, best of the rounds' latency percentiles.
fn measure(
    net: &Net,
    opts: &BenchOptions,
    name: &str,
    addr: &str,
    tput: u16,
    echo: u16,
) -> Result<Cell> {
    eprintln!("bench: {name}");
    let mut gbps: f64 = 0.0;
    let mut segments = Vec::new();
    let per_round = (opts.rounds / opts.repeat.max(1) as usize).max(100);
    for _ in 0..opts.repeat.max(1) {
        gbps = gbps.max(load::throughput(net, addr, tput, opts.secs)?);
        segments.push(load::latency(net, addr, echo, per_round)?);
    }
    let lat = load::best(&segments);
    Ok(Cell {
        name: name.to_string(),
        gbps,
        lat,
    })
}

/// The port a ToxiProxy-API proxy listens on, from its JSON.
fn listen_port(body: &str) -> Result<u16> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    v.get("listen")
        .and_then(|l| l.as_str())
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no listen port in {body}"))
}

/// Listen proxies in front of B's iperf3 and echo: (iperf port, echo port).
fn listen_proxies(api: &mut api::Api) -> Result<(u16, u16)> {
    let mut port = |name: &str, up: u16| -> Result<u16> {
        let body = serde_json::json!({
            "name": name,
            "listen": format!("{HOST_ADDR}:0"),
            "upstream": format!("{B_ADDR}:{up}"),
        });
        listen_port(&api.ok("POST", "/proxies", Some(&body.to_string()))?.body)
    };
    Ok((
        port("bench-iperf", IPERF_PORT)?,
        port("bench-echo", ECHO_PORT)?,
    ))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn bench(opts: &BenchOptions) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench needs root: it makes namespaces and loads BPF programs");
    }
    if opts.rules.windows(2).any(|w| w[0] >= w[1]) || opts.rules.first() == Some(&0) {
        bail!("--rules must be rising counts above zero (rules are only added)");
    }
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "injector"]))?;
    let bin = cmd::target_dir().join("release/injector");
    let out_dir = cmd::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;

    Net::sweep_stale();
    let net = Net::new()?;
    let _servers = load::Servers::start(&net)?;
    let mut d = Daemon::injector(&bin, net.file(Side::M))?;
    let pid = d.pid();
    let mut r = Results {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_string(),
        secs: opts.secs,
        repeat: opts.repeat.max(1),
        load: (loadavg(), String::new()),
        ..Results::default()
    };

    let (_, cpu) = cpu_during(pid, || std::thread::sleep(Duration::from_secs(2)));
    r.usage.push(Usage {
        when: "idle, no proxies".into(),
        rss_mib: rss_mib(pid),
        cpu_pct: cpu,
    });

    // The proxies stay up (idle) through all the data-path rounds.
    let proxy = listen_proxies(&mut d.api)?;
    let up = |p: u16| format!("{B_ADDR}:{p}");
    let mut _toxiproxy = None;
    let mut _copies = Vec::new();
    let userland = match std::env::var("TOXIPROXY_BIN") {
        Ok(tp) if !tp.is_empty() => {
            let mut t = Daemon::toxiproxy(&tp, net.file(Side::M))?;
            // ToxiProxy 2.x answers {"version": "..."}; older ones plain text.
            let body = t.api.ok("GET", "/version", None)?.body;
            let version = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("version")?.as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            let (tput, echo) = listen_proxies(&mut t.api)?;
            _toxiproxy = Some(t);
            datapath::Endpoint {
                name: format!("userland: ToxiProxy {version}"),
                addr: HOST_ADDR.into(),
                tput,
                echo,
            }
        }
        _ => {
            let t = copyproxy::CopyProxy::start(net.file(Side::M), HOST_ADDR, &up(IPERF_PORT))?;
            let e = copyproxy::CopyProxy::start(net.file(Side::M), HOST_ADDR, &up(ECHO_PORT))?;
            let ep = datapath::Endpoint {
                name: "userland copy proxy (32 KiB buffers; no TOXIPROXY_BIN)".into(),
                addr: HOST_ADDR.into(),
                tput: t.port,
                echo: e.port,
            };
            _copies = vec![t, e];
            ep
        }
    };
    let (cells, usage) = datapath::measure(&net, opts, &mut d, proxy, &userland)?;
    r.cells = cells;
    r.usage.extend(usage);
    for p in ["bench-iperf", "bench-echo"] {
        d.api.ok("DELETE", &format!("/proxies/{p}"), None)?;
    }
    drop(_copies);
    drop(_toxiproxy);

    // Bare veth again, right before the sweep: the same moment's reference
    // for the scale steps (not part of the flatness target).
    let cell = measure(&net, opts, "0 rules", B_ADDR, IPERF_PORT, ECHO_PORT)?;
    r.scale.push(ScaleStep {
        rules: 0,
        install_s: 0.0,
        cell,
    });
    let mut sc = scale::Scale::new(&net.a);
    for &n in &opts.rules {
        eprintln!("bench: installing {n} rules");
        let install_s = sc.grow(&mut d.api, n)?;
        let installed = scale::installed(&mut d.api)?;
        if installed != n {
            bail!("{n} rules wanted, the daemon reports {installed}");
        }
        let cell = measure(
            &net,
            opts,
            &format!("{n} rules"),
            B_ADDR,
            IPERF_PORT,
            ECHO_PORT,
        )?;
        r.scale.push(ScaleStep {
            rules: n,
            install_s,
            cell,
        });
        if n == 1 || n == 10_000 {
            eprintln!("bench: control plane with {n} rules");
            r.control
                .push((n, control::measure(&mut d.api, &net, opts.control_rounds)?));
        }
    }
    let (_, cpu) = cpu_during(pid, || std::thread::sleep(Duration::from_secs(2)));
    r.usage.push(Usage {
        when: format!("idle, {} rules installed", sc.rules),
        rss_mib: rss_mib(pid),
        cpu_pct: cpu,
    });
    drop(d);

    // Fidelity on a daemon of its own, without the scale rules.
    eprintln!("bench: fault fidelity");
    let mut d = Daemon::injector(&bin, net.file(Side::M))?;
    r.fidelity.extend(fidelity::loss(&mut d.api, &net, 20_000)?);
    r.fidelity
        .extend(fidelity::bandwidth(&mut d.api, &net, opts.secs)?);
    let base = r.cells[0].lat.p50;
    r.fidelity
        .extend(fidelity::latency(&mut d.api, &net, base)?);
    drop(d);

    r.load.1 = loadavg();
    let md = r.markdown();
    std::fs::write(out_dir.join("results.md"), &md)?;
    std::fs::write(out_dir.join("chart.svg"), r.svg())?;
    println!("{md}");
    println!(
        "bench: wrote {} and {}",
        out_dir.join("results.md").display(),
        out_dir.join("chart.svg").display()
    );
    Ok(())
}
