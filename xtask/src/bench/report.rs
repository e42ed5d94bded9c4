//! The bench's results: a Markdown page (target/bench/results.md), an SVG
//! chart of throughput and latency relative to bare veth
//! (target/bench/chart.svg), and the table printed at the end.

use std::fmt::Write as _;

use super::control::ControlPlane;
use super::fidelity::Row;
use super::load::Latency;

pub struct Cell {
    pub name: String,
    pub gbps: f64,
    pub lat: Latency,
}

pub struct ScaleStep {
    pub rules: usize,
    pub install_s: f64,
    pub cell: Cell,
}

pub struct Usage {
    pub when: String,
    pub rss_mib: f64,
    pub cpu_pct: f64,
}

#[derive(Default)]
pub struct Results {
    pub kernel: String,
    pub secs: u32,
    pub repeat: u32,
    /// /proc/loadavg (1, 5, 15 min) at the start and at the end of the run.
    pub load: (String, String),
    pub cells: Vec<Cell>,
    pub scale: Vec<ScaleStep>,
    pub control: Vec<(usize, ControlPlane)>,
    pub usage: Vec<Usage>,
    pub fidelity: Vec<Row>,
}

pub struct Target {
    pub what: &'static str,
    pub measured: String,
    pub pass: bool,
}

fn mark(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}

impl Results {
    fn cell(&self, prefix: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.name.starts_with(prefix))
    }

    /// Scale steps with rules installed (step 0 is bare veth, for reference).
    fn steps(&self) -> Vec<&ScaleStep> {
        self.scale.iter().filter(|s| s.rules > 0).collect()
    }

    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        if let (Some(bare), Some(idle)) = (self.cell("bare veth"), self.cell("injector attached")) {
            let r = idle.gbps / bare.gbps;
            t.push(Target {
                what: "injector idle >= 98 % of bare veth throughput",
                measured: format!("{:.1} %", r * 100.0),
                pass: r >= 0.98,
            });
        }
        if let (Some(proxy), Some(user)) = (self.cell("injector proxy mode"), self.cell("userland"))
        {
            let r = proxy.gbps / user.gbps;
            t.push(Target {
                what: "proxy mode >= 2x a userland proxy's throughput",
                measured: format!("{r:.2}x"),
                pass: r >= 2.0,
            });
        }
        let steps = self.steps();
        if let Some(first) = steps.first() {
            let worst_tput = steps
                .iter()
                .map(|s| (s.cell.gbps / first.cell.gbps - 1.0).abs())
                .fold(0.0, f64::max);
            let worst_rtt = steps
                .iter()
                .map(|s| (s.cell.lat.p50 / first.cell.lat.p50 - 1.0).abs())
                .fold(0.0, f64::max);
            let last = steps.last().map(|s| s.rules).unwrap_or(0);
            t.push(Target {
                what: "throughput flat within 5 % from 1 rule to the most",
                measured: format!("worst {:.1} % (1 to {last} rules)", worst_tput * 100.0),
                pass: worst_tput <= 0.05,
            });
            t.push(Target {
                what: "RTT p50 flat within 5 % from 1 rule to the most",
                measured: format!("worst {:.1} % (1 to {last} rules)", worst_rtt * 100.0),
                pass: worst_rtt <= 0.05,
            });
        }
        if !self.control.is_empty() {
            let worst = self
                .control
                .iter()
                .map(|(_, c)| c.effect.p99)
                .fold(0.0, f64::max);
            t.push(Target {
                what: "fault applied within 5 ms p99",
                measured: format!("{worst:.2} ms (worst p99)"),
                pass: worst <= 5.0,
            });
        }
        t
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# injector benchmark\n\nKernel {}. Throughput: iperf3, one TCP stream from namespace A to B \
             through each path, best of {} runs of {} s. Latency: round trips of 64-byte requests on one TCP \
             connection (TCP_NODELAY), p50 and p99 each the best of the runs' (one run after each \
             throughput run). Ratios are against bare veth. Control-plane delays are measured \
             with a UDP stream of one datagram every 50-100 µs, so that is their resolution. Load average \
             (1/5/15 min) {} at the start, {} at the end: other work on the machine shows up as noise.\n",
            self.kernel, self.repeat, self.secs, self.load.0, self.load.1
        );
        let bare = self.cells.first();
        let _ = writeln!(
            o,
            "## Data path\n\n| path | throughput Gbit/s | vs bare | RTT p50 µs | RTT p99 µs | p50 vs bare | p99 vs bare |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for c in &self.cells {
            let (rt, r50, r99) = match bare {
                Some(b) => (
                    c.gbps / b.gbps,
                    c.lat.p50 / b.lat.p50,
                    c.lat.p99 / b.lat.p99,
                ),
                None => (1.0, 1.0, 1.0),
            };
            let _ = writeln!(
                o,
                "| {} | {:.2} | {:.3} | {:.1} | {:.1} | {:.3} | {:.3} |",
                c.name, c.gbps, rt, c.lat.p50, c.lat.p99, r50, r99
            );
        }
        if let Some(first) = self.steps().first() {
            let first = &first.cell;
            let _ = writeln!(
                o,
                "\n## Scale (rules installed on the client's interface, none matching)\n\n| rules | install s | throughput Gbit/s | vs 1 rule | RTT p50 µs | RTT p99 µs | p50 vs 1 rule |\n|---:|---:|---:|---:|---:|---:|---:|"
            );
            for s in &self.scale {
                let rules = match s.rules {
                    0 => "0 (bare veth)".to_string(),
                    n => n.to_string(),
                };
                let _ = writeln!(
                    o,
                    "| {} | {:.1} | {:.2} | {:.3} | {:.1} | {:.1} | {:.3} |",
                    rules,
                    s.install_s,
                    s.cell.gbps,
                    s.cell.gbps / first.gbps,
                    s.cell.lat.p50,
                    s.cell.lat.p99,
                    s.cell.lat.p50 / first.lat.p50
                );
            }
        }
        if !self.control.is_empty() {
            let _ = writeln!(
                o,
                "\n## Control plane (API call to fault on the wire)\n\n| rules present | effect p50 ms | effect p99 ms | API call p50 ms | API call p99 ms |\n|---:|---:|---:|---:|---:|"
            );
            for (rules, c) in &self.control {
                let _ = writeln!(
                    o,
                    "| {rules} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    c.effect.p50, c.effect.p99, c.call.p50, c.call.p99
                );
            }
        }
        if !self.usage.is_empty() {
            let _ = writeln!(
                o,
                "\n## Daemon resources\n\n| when | RSS MiB | CPU % of one core |\n|---|---:|---:|"
            );
            for u in &self.usage {
                let _ = writeln!(o, "| {} | {:.1} | {:.1} |", u.when, u.rss_mib, u.cpu_pct);
            }
        }
        if !self.fidelity.is_empty() {
            let _ = writeln!(
                o,
                "\n## Fault fidelity\n\n| fault | requested | measured | within tolerance |\n|---|---|---|---|"
            );
            for r in &self.fidelity {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    r.fault,
                    r.requested,
                    r.measured.replace('|', "/"),
                    r.pass.map(mark).unwrap_or("n/a")
                );
            }
        }
        let _ = writeln!(
            o,
            "\n## Targets\n\n| target | measured | result |\n|---|---|---|"
        );
        for t in self.targets() {
            let _ = writeln!(o, "| {} | {} | {} |", t.what, t.measured, mark(t.pass));
        }
        o
    }

    /// Horizontal bars: throughput and RTT p50 of each path and scale step,
    /// relative to bare veth (1.0 = as fast as bare veth).
    pub fn svg(&self) -> String {
        let Some(bare) = self.cells.first() else {
            return String::new();
        };
        let mut rows: Vec<(String, f64, f64)> = self
            .cells
            .iter()
            .map(|c| (c.name.clone(), c.gbps / bare.gbps, bare.lat.p50 / c.lat.p50))
            .collect();
        for s in self.steps() {
            rows.push((
                format!("{} rules installed", s.rules),
                s.cell.gbps / bare.gbps,
                bare.lat.p50 / s.cell.lat.p50,
            ));
        }
        let (label_w, bar_w, row_h) = (380.0, 420.0, 34.0);
        let max = rows.iter().flat_map(|r| [r.1, r.2]).fold(1.2f64, f64::max);
        let height = 70.0 + row_h * rows.len() as f64;
        let width = label_w + bar_w + 80.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">Relative to bare veth (1.0): throughput (blue), 1/RTT p50 (orange)</text>"#
        );
        let x1 = label_w + bar_w / max;
        let _ = writeln!(
            s,
            r##"<line x1="{x1:.1}" y1="30" x2="{x1:.1}" y2="{:.1}" stroke="#444" stroke-dasharray="4 3"/>"##,
            height - 20.0
        );
        for (i, (name, tput, rtt)) in rows.iter().enumerate() {
            let y = 40.0 + row_h * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                y + 16.0,
                name.replace('&', "&amp;").replace('<', "&lt;")
            );
            for (k, (v, color)) in [(tput, "#3b6fb6"), (rtt, "#e08a2c")].iter().enumerate() {
                let yy = y + 2.0 + 14.0 * k as f64;
                let w = (*v / max * bar_w).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<rect x="{label_w}" y="{yy:.1}" width="{w:.1}" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}">{:.2}</text>"#,
                    label_w + w + 4.0,
                    yy + 10.0,
                    v
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str, gbps: f64, p50: f64) -> Cell {
        Cell {
            name: name.into(),
            gbps,
            lat: Latency {
                p50,
                p99: p50 * 2.0,
            },
        }
    }

    #[test]
    fn targets_compare_the_right_cells() {
        let r = Results {
            cells: vec![
                cell("bare veth", 10.0, 10.0),
                cell("injector attached, no matching rule", 9.9, 10.0),
                cell("injector proxy mode (listen/upstream)", 4.0, 30.0),
                cell("userland copy proxy", 3.0, 30.0),
            ],
            scale: [0, 1, 65_536]
                .iter()
                .zip([12.0, 10.0, 9.0])
                .map(|(&rules, gbps)| ScaleStep {
                    rules,
                    install_s: 0.0,
                    cell: cell("x", gbps, 10.0),
                })
                .collect(),
            ..Results::default()
        };
        let t = r.targets();
        let verdicts: Vec<(&str, bool)> = t.iter().map(|t| (t.what, t.pass)).collect();
        assert_eq!(
            verdicts,
            [
                ("injector idle >= 98 % of bare veth throughput", true),
                ("proxy mode >= 2x a userland proxy's throughput", false),
                ("throughput flat within 5 % from 1 rule to the most", false),
                ("RTT p50 flat within 5 % from 1 rule to the most", true),
            ]
        );
        assert_eq!(t[1].measured, "1.33x");
        let md = r.markdown();
        assert!(
            md.contains("| injector attached, no matching rule | 9.90 | 0.990 |"),
            "{md}"
        );
        assert!(md.contains("| 65536 | 0.0 | 9.00 | 0.900 |"), "{md}");
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect").count(), 1 + 2 * (4 + 2));
    }
}
