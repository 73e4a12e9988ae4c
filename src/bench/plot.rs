//! The plot of the report: one-event latency against house size, Vigil against the baselines,
//! both axes logarithmic, as a hand-written SVG (a few lines, polylines and texts; nothing to
//! install and nothing that changes between versions of a plotting crate).
//!
//! Lines: Vigil with the whole policy (p50 and p99), Vigil with the load-shedding view alone,
//! the hand-written typed dataflow of the view and crepe recomputing it (p50 each). The
//! targets are red marks at their sizes. An implementation that was not measured at a size
//! leaves a gap, and the plot says so under the axis.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::report::figure;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 90.0;

struct Series {
    label: &'static str,
    implementation: &'static str,
    percentile: &'static str,
    color: &'static str,
    dashed: bool,
}

const SERIES: [Series; 5] = [
    Series {
        label: "Vigil, policy, p50",
        implementation: "vigil",
        percentile: "p50_ms",
        color: "#1f5fbf",
        dashed: false,
    },
    Series {
        label: "Vigil, policy, p99",
        implementation: "vigil",
        percentile: "p99_ms",
        color: "#1f5fbf",
        dashed: true,
    },
    Series {
        label: "Vigil, view alone, p50",
        implementation: "vigil-view",
        percentile: "p50_ms",
        color: "#2a9d8f",
        dashed: false,
    },
    Series {
        label: "typed DD, view, p50",
        implementation: "typed-dd",
        percentile: "p50_ms",
        color: "#e9a23b",
        dashed: false,
    },
    Series {
        label: "crepe recompute, view, p50",
        implementation: "crepe",
        percentile: "p50_ms",
        color: "#8e44ad",
        dashed: false,
    },
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A power of ten as a latency: `1 µs`, `10 ms`, `1 s`.
fn decade_label(exponent: i32) -> String {
    let units = [(-3, "µs"), (0, "ms"), (3, "s")];
    for (base, unit) in units.iter().rev() {
        if exponent >= *base {
            return format!("{} {unit}", 10_i64.pow((exponent - base) as u32));
        }
    }
    format!("{} ns", 10_i64.pow((exponent + 6).max(0) as u32))
}

/// The house's size on the x axis: its nodes (the sample house's own count).
fn house_nodes(house: &Json) -> Option<f64> {
    house["size"]
        .as_str()
        .and_then(|size| size.parse::<f64>().ok())
        .or_else(|| house["house"]["nodes"].as_f64())
}

/// The SVG of the report's houses.
pub fn svg(report: &Json) -> String {
    let houses: Vec<&Json> = report["houses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|house| house_nodes(house).is_some())
        .collect();
    // (series, x, latency in ms)
    let mut points: Vec<(usize, f64, f64)> = Vec::new();
    // The same, from the events timed before a case was stopped: drawn hollow, unconnected.
    let mut stopped: Vec<(usize, f64, f64)> = Vec::new();
    let mut missing: Vec<(f64, String)> = Vec::new();
    for house in &houses {
        let Some(x) = house_nodes(house) else {
            continue;
        };
        let mut absent = Vec::new();
        for (index, series) in SERIES.iter().enumerate() {
            let figures = &house["implementations"][series.implementation];
            let partial = figure(
                &figures["partial"],
                &["one_event_so_far", "latency", series.percentile],
            )
            .filter(|ms| *ms > 0.0);
            match figure(figures, &["one_event", "latency", series.percentile]) {
                Some(ms) if ms > 0.0 && figures["status"] == "measured" => {
                    points.push((index, x, ms));
                }
                _ => {
                    if !figures.is_null() && series.percentile == "p50_ms" {
                        absent.push(series.implementation);
                    }
                    if let Some(ms) = partial {
                        stopped.push((index, x, ms));
                    }
                }
            }
        }
        if !absent.is_empty() {
            missing.push((x, format!("not measured: {}", absent.join(", "))));
        }
    }
    let xs: Vec<f64> = houses.iter().filter_map(|h| house_nodes(h)).collect();
    let (x_low, x_high) = xs.iter().fold((f64::MAX, f64::MIN), |(low, high), x| {
        (low.min(*x), high.max(*x))
    });
    let (x_low, x_high) = if xs.is_empty() {
        (1.0, 10_000.0)
    } else {
        ((x_low / 2.0).log10(), (x_high * 2.0).log10())
    };
    let mut ys: Vec<f64> = points.iter().chain(&stopped).map(|(_, _, y)| *y).collect();
    ys.extend([1.0, 10.0]);
    let y_low = ys.iter().copied().fold(f64::MAX, f64::min).log10().floor() as i32;
    let y_high = ys.iter().copied().fold(f64::MIN, f64::max).log10().ceil() as i32;
    let y_high = y_high.max(y_low + 1);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - x_low) / (x_high - x_low) * plot_width;
    let py = |ms: f64| {
        TOP + plot_height
            - (ms.log10() - f64::from(y_low)) / f64::from(y_high - y_low) * plot_height
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let title = format!(
        "One-event transaction to change set, by house size ({} run, {})",
        report["run"]["scale"].as_str().unwrap_or(""),
        report["date"]
            .as_str()
            .unwrap_or("")
            .get(..10)
            .unwrap_or("")
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    // The grid and the y axis: one line per decade.
    for exponent in y_low..=y_high {
        let y = py(10_f64.powi(exponent));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##,
            LEFT + plot_width
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            escape(&decade_label(exponent))
        );
    }
    // The x axis: one tick per house.
    for house in &houses {
        let Some(x) = house_nodes(house) else {
            continue;
        };
        let label = match house["size"].as_str() {
            Some("sample") => format!("sample ({x:.0})"),
            _ => super::workloads::thousands(x as u64),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#eeeeee"/>"##,
            px(x),
            TOP + plot_height
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(x),
            TOP + plot_height + 18.0,
            escape(&label)
        );
    }
    for (row, (x, text)) in missing.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#888888">{}</text>"##,
            px(*x),
            TOP + plot_height + 34.0 + 12.0 * (row % 2) as f64,
            escape(text)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width:.1}" height="{plot_height:.1}" fill="none" stroke="#444444"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">house size (nodes; ten times as many workloads)</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (log scale)</text>"#,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0
    );
    // The targets: p99 under 1 ms on the sample house, under 10 ms at 10,000 nodes.
    for house in &houses {
        let Some(x) = house_nodes(house) else {
            continue;
        };
        let limit = match house["size"].as_str() {
            Some("sample") => 1.0,
            Some("10000") => 10.0,
            _ => continue,
        };
        let (x, y) = (px(x), py(limit));
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d62728" stroke-width="2"/>"##,
            x - 14.0,
            x + 14.0
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#d62728">p99 target</text>"##,
            x + 16.0,
            y + 3.0
        );
    }
    // The series.
    for (index, series) in SERIES.iter().enumerate() {
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .filter(|(s, _, _)| *s == index)
            .map(|(_, x, y)| (px(*x), py(*y)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        if line.len() > 1 {
            let coordinates: Vec<String> =
                line.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                coordinates.join(" "),
                series.color,
                if series.dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                }
            );
        }
        for (x, y) in &line {
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#,
                series.color
            );
        }
    }
    for (index, x, ms) in &stopped {
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="white" stroke="{}" stroke-width="2"/>"#,
            px(*x),
            py(*ms),
            SERIES[*index].color
        );
    }
    // The legend.
    let legend_x = LEFT + plot_width + 20.0;
    for (index, series) in SERIES.iter().enumerate() {
        let y = TOP + 10.0 + 22.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{}/>"#,
            legend_x + 26.0,
            series.color,
            if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 32.0,
            y + 4.0,
            escape(series.label)
        );
    }
    let machine = &report["machine"];
    let notes = [
        "view: the load-shedding view".to_string(),
        "(shed_order, shed) alone".to_string(),
        "hollow: events timed before the".to_string(),
        "case was stopped (budget)".to_string(),
        String::new(),
        format!(
            "{} CPUs, {}",
            machine["cpus"],
            machine["cpu_model"].as_str().unwrap_or("")
        ),
        format!(
            "load average {}",
            machine["load_average_at_start"].as_str().unwrap_or("")
        ),
    ];
    for (row, note) in notes.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{legend_x:.1}" y="{:.1}" font-size="10" fill="#666666">{}</text>"##,
            TOP + 20.0 + 22.0 * SERIES.len() as f64 + 13.0 * row as f64,
            escape(&note.chars().take(40).collect::<String>())
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decades_read_as_latencies() {
        assert_eq!(decade_label(-3), "1 µs");
        assert_eq!(decade_label(-1), "100 µs");
        assert_eq!(decade_label(0), "1 ms");
        assert_eq!(decade_label(2), "100 ms");
        assert_eq!(decade_label(4), "10 s");
    }

    #[test]
    fn a_plot_has_a_line_per_measured_series_and_notes_the_gaps() {
        let latency = |p50: f64| json!({"status": "measured", "one_event": {"latency": {"p50_ms": p50, "p99_ms": p50 * 3.0}}});
        let report = json!({
            "run": {"scale": "quick"},
            "houses": [
                {"size": "sample", "house": {"nodes": 6}, "implementations": {"vigil": latency(0.2), "crepe": latency(0.01)}},
                {"size": "100", "implementations": {"vigil": latency(2.0), "crepe": {"status": "not measured", "reason": "budget"}}},
            ],
        });
        let svg = svg(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("not measured: crepe"));
    }
}
