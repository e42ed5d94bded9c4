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
    #[arg(long, default_value_t = 1)]
    pub secs: u32,
    /// iperf3 runs per throughput cell; the best counts (on a shared
    /// machine, interference only ever lowers a run).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Ping-pong round trips per latency cell.
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
/// iperf3 and ping-pong connect.
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
    for _ in 0..opts.repeat.max(1) {
        gbps = gbps.max(load::throughput(net, addr, tput, opts.secs)?);
    }
    let lat = load::latency(net, addr, echo, opts.rounds)?;
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

fn kernel_proxy(api: &mut api::Api, net: &Net, name: &str, upstream: &str) -> Result<()> {
    let body = serde_json::json!({"name": name, "upstream": upstream, "target": {"netns": net.a}});
    api.ok("POST", "/proxies", Some(&body.to_string()))?;
    api.ok(
        "POST",
        &format!("/proxies/{name}/toxics"),
        Some(r#"{"name":"cut","type":"blackhole","stream":"upstream"}"#),
    )?;
    Ok(())
}

pub fn bench(opts: &BenchOptions) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench needs root: it makes namespaces and loads BPF programs");
    }
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "injector"]))?;
    let bin = cmd::target_dir().join("release/injector");
    let out_dir = cmd::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;

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
        ..Results::default()
    };

    r.cells.push(measure(
        &net,
        opts,
        "bare veth",
        B_ADDR,
        IPERF_PORT,
        ECHO_PORT,
    )?);
    let (_, cpu) = cpu_during(pid, || std::thread::sleep(Duration::from_secs(2)));
    r.usage.push(Usage {
        when: "idle, no proxies".into(),
        rss_mib: rss_mib(pid),
        cpu_pct: cpu,
    });

    // Programs attached to A's interface; the only rule is for an address
    // nothing uses.
    kernel_proxy(&mut d.api, &net, "idle", "10.214.255.254:9")?;
    r.cells.push(measure(
        &net,
        opts,
        "injector attached, no matching rule",
        B_ADDR,
        IPERF_PORT,
        ECHO_PORT,
    )?);
    // A fault on B itself, another port: the lookup finds B's rules and
    // walks them.
    kernel_proxy(&mut d.api, &net, "neighbour", &format!("{B_ADDR}:9"))?;
    let (cell, cpu) = cpu_during(pid, || {
        measure(
            &net,
            opts,
            "injector, fault on a neighbouring flow",
            B_ADDR,
            IPERF_PORT,
            ECHO_PORT,
        )
    });
    r.cells.push(cell?);
    r.usage.push(Usage {
        when: "kernel-native faults, under iperf3 + ping-pong".into(),
        rss_mib: rss_mib(pid),
        cpu_pct: cpu,
    });
    for p in ["idle", "neighbour"] {
        d.api.ok("DELETE", &format!("/proxies/{p}"), None)?;
    }

    let (tput, echo) = listen_proxies(&mut d.api)?;
    let (cell, cpu) = cpu_during(pid, || {
        measure(
            &net,
            opts,
            "injector proxy mode (listen/upstream)",
            HOST_ADDR,
            tput,
            echo,
        )
    });
    r.cells.push(cell?);
    r.usage.push(Usage {
        when: "proxy mode, under iperf3 + ping-pong".into(),
        rss_mib: rss_mib(pid),
        cpu_pct: cpu,
    });
    for p in ["bench-iperf", "bench-echo"] {
        d.api.ok("DELETE", &format!("/proxies/{p}"), None)?;
    }

    match std::env::var("TOXIPROXY_BIN") {
        Ok(tp) if !tp.is_empty() => {
            let mut t = Daemon::toxiproxy(&tp, net.file(Side::M))?;
            let version = t.api.ok("GET", "/version", None)?.body;
            let (tput, echo) = listen_proxies(&mut t.api)?;
            let name = format!("userland: ToxiProxy {}", version.trim());
            r.cells
                .push(measure(&net, opts, &name, HOST_ADDR, tput, echo)?);
        }
        _ => {
            let up = |p: u16| format!("{B_ADDR}:{p}");
            let t = copyproxy::CopyProxy::start(net.file(Side::M), HOST_ADDR, &up(IPERF_PORT))?;
            let e = copyproxy::CopyProxy::start(net.file(Side::M), HOST_ADDR, &up(ECHO_PORT))?;
            r.cells.push(measure(
                &net,
                opts,
                "userland copy proxy (32 KiB buffers; no TOXIPROXY_BIN)",
                HOST_ADDR,
                t.port,
                e.port,
            )?);
        }
    }

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
