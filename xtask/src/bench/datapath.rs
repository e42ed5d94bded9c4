//! The data-path comparison: bare veth, injector attached with no matching
//! rule, injector with a fault on a neighbouring flow, injector's proxy
//! mode and a userland proxy. The paths are measured in rounds, each round
//! visiting every path once, so whatever else the machine does at some
//! moment falls on all of them alike; a path's throughput is its best
//! round, its latency percentiles the best of its rounds' (other work on
//! the machine only ever lowers throughput and adds latency).

use anyhow::Result;
use std::time::{Duration, Instant};

use super::BenchOptions;
use super::daemon::{Daemon, cpu_time, rss_mib};
use super::load::{self, ECHO_PORT, IPERF_PORT, Latency};
use super::net::{B_ADDR, HOST_ADDR, Net};
use super::report::{Cell, Usage};

/// Where A's traffic goes for one path.
pub struct Endpoint {
    pub name: String,
    pub addr: String,
    pub tput: u16,
    pub echo: u16,
}

#[derive(Default)]
struct Acc {
    gbps: f64,
    /// Latency percentiles of each round.
    segments: Vec<Latency>,
    cpu: Duration,
    wall: Duration,
}

fn run(net: &Net, opts: &BenchOptions, e: &Endpoint, acc: &mut Acc, pid: u32) -> Result<()> {
    let (c0, t0) = (cpu_time(pid), Instant::now());
    acc.gbps = acc
        .gbps
        .max(load::throughput(net, &e.addr, e.tput, opts.secs)?);
    let per_round = opts.rounds / opts.repeat.max(1) as usize;
    acc.segments
        .push(load::latency(net, &e.addr, e.echo, per_round.max(100))?);
    acc.cpu += cpu_time(pid).saturating_sub(c0);
    acc.wall += t0.elapsed();
    Ok(())
}

fn kernel_proxy(d: &mut Daemon, net: &Net, name: &str, upstream: &str) -> Result<()> {
    let body = serde_json::json!({"name": name, "upstream": upstream, "target": {"netns": net.a}});
    d.api.ok("POST", "/proxies", Some(&body.to_string()))?;
    d.api.ok(
        "POST",
        &format!("/proxies/{name}/toxics"),
        Some(r#"{"name":"cut","type":"blackhole","stream":"upstream"}"#),
    )?;
    Ok(())
}

/// `proxy` is injector's listen proxies (iperf, echo) and `userland` the
/// baseline's endpoint; both already listen in M.
pub fn measure(
    net: &Net,
    opts: &BenchOptions,
    d: &mut Daemon,
    proxy: (u16, u16),
    userland: &Endpoint,
) -> Result<(Vec<Cell>, Vec<Usage>)> {
    let direct = |name: &str| Endpoint {
        name: name.into(),
        addr: B_ADDR.into(),
        tput: IPERF_PORT,
        echo: ECHO_PORT,
    };
    let paths = [
        direct("bare veth"),
        direct("injector attached, no matching rule"),
        direct("injector, fault on a neighbouring flow"),
        Endpoint {
            name: "injector proxy mode (listen/upstream)".into(),
            addr: HOST_ADDR.into(),
            tput: proxy.0,
            echo: proxy.1,
        },
    ];
    let mut acc: Vec<Acc> = (0..=paths.len()).map(|_| Acc::default()).collect();
    let pid = d.pid();
    for round in 0..opts.repeat.max(1) {
        eprintln!("bench: data path, round {}", round + 1);
        run(net, opts, &paths[0], &mut acc[0], pid)?;
        // Programs attached to A's interface; the only rule is for an
        // address nothing uses.
        kernel_proxy(d, net, "idle", "10.214.255.254:9")?;
        run(net, opts, &paths[1], &mut acc[1], pid)?;
        // A fault on B itself, another port: the lookup finds B's rules
        // and walks them.
        kernel_proxy(d, net, "neighbour", &format!("{B_ADDR}:9"))?;
        run(net, opts, &paths[2], &mut acc[2], pid)?;
        for p in ["idle", "neighbour"] {
            d.api.ok("DELETE", &format!("/proxies/{p}"), None)?;
        }
        run(net, opts, &paths[3], &mut acc[3], pid)?;
        run(net, opts, userland, &mut acc[4], pid)?;
    }
    let names = paths.iter().chain([userland]).map(|e| e.name.clone());
    let mut usage = Vec::new();
    let mut cells = Vec::new();
    for (i, (name, a)) in names.zip(acc).enumerate() {
        let cpu_pct = a.cpu.as_secs_f64() / a.wall.as_secs_f64().max(1e-3) * 100.0;
        if i == 2 {
            usage.push(Usage {
                when: "kernel-native faults, under iperf3 + ping-pong".into(),
                rss_mib: rss_mib(pid),
                cpu_pct,
            });
        }
        if i == 3 {
            usage.push(Usage {
                when: "proxy mode, under iperf3 + ping-pong".into(),
                rss_mib: rss_mib(pid),
                cpu_pct,
            });
        }
        cells.push(Cell {
            name,
            gbps: a.gbps,
            lat: load::best(&a.segments),
        });
    }
    Ok((cells, usage))
}
