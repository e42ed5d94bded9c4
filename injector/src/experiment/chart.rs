//! The run as a picture: success rate (top) and latency p95 / p50 (bottom)
//! over time, one colour per probe, the fault windows shaded and the
//! phase changes (first injection, rollback, abort) marked. Plain SVG
//! written by hand, so any browser or Markdown viewer shows it.

use std::fmt::Write as _;

use super::{
    record::Record,
    report::{Point, series},
};

const W: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP_Y: f64 = 50.0;
const PANEL_H: f64 = 170.0;
const GAP: f64 = 50.0;
const H: f64 = TOP_Y + 2.0 * PANEL_H + GAP + 70.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let unit = raw / mag;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn polyline(out: &mut String, pts: &[(f64, f64)], colour: &str, dash: bool) {
    if pts.is_empty() {
        return;
    }
    let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6"{} points="{}"/>"#,
        if dash {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        },
        d.join(" ")
    );
    if pts.len() == 1 {
        let (x, y) = pts[0];
        let _ = writeln!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#
        );
    }
}

pub fn svg(r: &Record) -> String {
    let (_, probes) = series(r);
    let end_ms = r.phases.end_ms.unwrap_or_else(|| r.now_ms()).max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_w * (t / end_ms).clamp(0.0, 1.0);
    let top = (TOP_Y, TOP_Y + PANEL_H);
    let bottom = (TOP_Y + PANEL_H + GAP, TOP_Y + 2.0 * PANEL_H + GAP);
    let lat_max = probes
        .iter()
        .flat_map(|(_, p)| p.iter().map(|pt| pt.p95))
        .fold(0.0, f64::max)
        .max(1.0);
    let lat_step = nice_step(lat_max, 4.0);
    let lat_top = (lat_max / lat_step).ceil() * lat_step;
    let y_rate = |v: f64| top.1 - (top.1 - top.0) * v / 100.0;
    let y_lat = |v: f64| bottom.1 - (bottom.1 - bottom.0) * (v / lat_top).min(1.0);

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{} ({})</text>"#,
        esc(&r.policy.name),
        r.state.word()
    );

    // Fault windows first, under everything else.
    for f in &r.faults {
        let x0 = x(f.from_ms);
        let x1 = x(f.to_ms.unwrap_or(end_ms)).max(x0 + 1.0);
        for (y0, y1) in [top, bottom] {
            let _ = writeln!(
                o,
                r##"<rect x="{x0:.1}" y="{y0}" width="{:.1}" height="{}" fill="#d62728" fill-opacity="0.12"><title>{} on {}</title></rect>"##,
                x1 - x0,
                y1 - y0,
                esc(&f.toxic),
                esc(&f.proxy)
            );
        }
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{}" fill="#d62728" font-size="10">{} ({})</text>"##,
            x0 + 2.0,
            top.0 - 4.0,
            esc(&f.toxic),
            esc(&f.kind)
        );
    }

    // Axes, grids and labels.
    for (panel, label) in [
        (top, "success rate (%)"),
        (bottom, "latency (ms): p95 solid, p50 dashed"),
    ] {
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{}" width="{plot_w}" height="{}" fill="none" stroke="#444"/>"##,
            panel.0,
            panel.1 - panel.0
        );
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="{}" font-size="11" fill="#333">{label}</text>"##,
            panel.1 + 14.0
        );
    }
    for v in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let y = y_rate(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let mut v = 0.0;
    while v <= lat_top + 1e-9 {
        let y = y_lat(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
        v += lat_step;
    }
    let t_step = nice_step(end_ms / 1000.0, 8.0);
    let mut t = 0.0;
    while t * 1000.0 <= end_ms + 1e-6 {
        let xx = x(t * 1000.0);
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="#888"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}s</text>"##,
            bottom.1,
            bottom.1 + 4.0,
            bottom.1 + 30.0,
            (t * 100.0).round() / 100.0
        );
        t += t_step;
    }

    // Phase marks across both panels.
    let mut marks: Vec<(f64, &str, &str)> = Vec::new();
    if let Some(m) = r.phases.method_ms {
        marks.push((m, "method", "#555"));
    }
    if let Some(rb) = r.phases.rollback_ms {
        marks.push((rb, "rollback", "#2ca02c"));
    }
    if let Some(a) = r.abort.as_ref().and_then(|a| a.at_ms) {
        marks.push((a, "abort", "#d62728"));
    }
    for (t, label, colour) in marks {
        let xx = x(t);
        let _ = writeln!(
            o,
            r#"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="{colour}" stroke-dasharray="5 4"/><text x="{:.1}" y="{}" fill="{colour}" font-size="10">{label}</text>"#,
            top.0,
            bottom.1,
            xx + 2.0,
            bottom.0 - 6.0
        );
    }

    // The series.
    for (i, (name, points)) in probes.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts = |f: &dyn Fn(&Point) -> (f64, f64)| points.iter().map(f).collect::<Vec<_>>();
        polyline(
            &mut o,
            &pts(&|p| (x(p.t_ms), y_rate(p.success_rate))),
            colour,
            false,
        );
        polyline(&mut o, &pts(&|p| (x(p.t_ms), y_lat(p.p95))), colour, false);
        polyline(&mut o, &pts(&|p| (x(p.t_ms), y_lat(p.p50))), colour, true);
        let lx = LEFT + 160.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            H - 22.0,
            lx + 16.0,
            H - 12.0,
            esc(name)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(3000.0, 4.0), 1000.0);
        assert!((nice_step(0.9, 8.0) - 0.2).abs() < 1e-12);
        assert_eq!(esc("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
