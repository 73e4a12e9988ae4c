//! The report: latency histograms and their summaries, the JSON report with every figure and
//! its unit, the targets checked against the figures, and the tables printed on stdout.
//!
//! Units are in the keys: `_s` seconds, `_ms` milliseconds, `_mb` megabytes (2^20 bytes),
//! `_per_s` per second; counts have none. Latency percentiles come from an HDR histogram
//! (three significant digits): p50, p99, p99.9, the maximum and the mean.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value as Json, json};

use super::measure::{Case, HOUSE_IMPLEMENTATIONS, HouseImplementation};
use super::workloads::{CLASSICS, Size, thousands};

// ---------------------------------------------------------------------------------------------
// Latencies

/// Latencies of one kind of operation.
pub struct Recorder {
    histogram: Histogram<u32>,
    total: Duration,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            // Nanoseconds, from 100 ns to 1,000 s, three significant digits.
            histogram: Histogram::new_with_bounds(100, 1_000_000_000_000, 3)
                .expect("valid histogram bounds"),
            total: Duration::ZERO,
        }
    }

    pub fn record(&mut self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .max(100);
        self.histogram.saturating_record(nanos);
        self.total += elapsed;
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return f64::NAN;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1e6
    }

    /// The sum of every recorded latency.
    pub fn total_seconds(&self) -> f64 {
        self.total.as_secs_f64()
    }
}

/// A histogram as the report shows it.
pub fn summary(recorder: &Recorder) -> Json {
    let histogram = &recorder.histogram;
    if histogram.is_empty() {
        return json!({"n": 0});
    }
    json!({
        "n": histogram.len(),
        "p50_ms": recorder.quantile_ms(0.5),
        "p99_ms": recorder.quantile_ms(0.99),
        "p99_9_ms": recorder.quantile_ms(0.999),
        "max_ms": histogram.max() as f64 / 1e6,
        "mean_ms": histogram.mean() / 1e6,
    })
}

// ---------------------------------------------------------------------------------------------
// The JSON report

/// What became of one case.
pub enum Outcome {
    Measured(Json),
    /// Stopped, or failed, with why; and the figures it had reported until then (the load,
    /// the events timed so far), if any.
    NotMeasured {
        reason: String,
        partial: Option<Json>,
    },
}

impl Outcome {
    pub fn not_measured(reason: impl Into<String>) -> Outcome {
        Outcome::NotMeasured {
            reason: reason.into(),
            partial: None,
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Outcome::Measured(Json::Object(figures)) => {
                let mut object = serde_json::Map::new();
                object.insert("status".into(), json!("measured"));
                object.extend(figures.clone());
                Json::Object(object)
            }
            Outcome::Measured(other) => json!({"status": "measured", "figures": other}),
            Outcome::NotMeasured {
                reason,
                partial: None,
            } => json!({"status": "not measured", "reason": reason}),
            Outcome::NotMeasured {
                reason,
                partial: Some(partial),
            } => json!({"status": "not measured", "reason": reason, "partial": partial}),
        }
    }
}

pub struct CaseResult {
    pub case: Case,
    pub outcome: Outcome,
    pub wall_s: f64,
}

/// The run's settings, for the report.
pub struct Run {
    pub scale: &'static str,
    pub seed: u64,
    pub events: usize,
    pub sizes: Vec<Size>,
    pub budget_s: f64,
    pub memory_budget_mb: f64,
    pub date: String,
    pub load_average_start: String,
}

/// Looks up a number by path in a JSON value.
pub fn figure(json: &Json, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(json, |value, key| value.get(key))
        .and_then(Json::as_f64)
}

fn measured(json: &Json) -> bool {
    json["status"] == "measured"
}

/// The report, targets included.
pub fn build(run: &Run, cases: &[CaseResult], http: &Outcome, wall_s: f64) -> Json {
    let mut houses = Vec::new();
    for size in &run.sizes {
        let mut implementations = serde_json::Map::new();
        let mut shape = Json::Null;
        for implementation in HOUSE_IMPLEMENTATIONS {
            let Some(result) = cases
                .iter()
                .find(|r| r.case == Case::House(*size, implementation))
            else {
                continue;
            };
            let mut json = result.outcome.to_json();
            json["wall_s"] = json!(result.wall_s);
            json["describes"] = json!(implementation.describe());
            if shape.is_null() && measured(&json) {
                shape = json["house"].clone();
            }
            implementations.insert(implementation.key().to_string(), json);
        }
        let agreement = house_agreement(&implementations);
        let mut house = json!({
            "size": size.key(),
            "label": size.to_string(),
            "implementations": implementations,
            "agreement": agreement,
        });
        if let Some((nodes, workloads, edges)) = size.shape() {
            house["generated"] =
                json!({"nodes": nodes, "workloads": workloads, "edge_nodes": edges});
        }
        house["house"] = shape;
        houses.push(house);
    }
    let mut classic = Vec::new();
    for program in CLASSICS {
        let mut implementations = serde_json::Map::new();
        for vigil in [true, false] {
            if let Some(result) = cases
                .iter()
                .find(|r| r.case == Case::Classic(program, vigil))
            {
                let mut json = result.outcome.to_json();
                json["wall_s"] = json!(result.wall_s);
                implementations.insert(if vigil { "vigil" } else { "crepe" }.into(), json);
            }
        }
        if implementations.is_empty() {
            continue;
        }
        let agreement = classic_agreement(&implementations);
        classic.push(json!({
            "program": program.key(),
            "file": format!("fixtures/bench/{}.dl", program.key()),
            "implementations": implementations,
            "agreement": agreement,
        }));
    }
    let mut report = json!({
        "tool": "vigil bench",
        "version": env!("CARGO_PKG_VERSION"),
        "date": run.date,
        "machine": machine(&run.load_average_start),
        "run": {
            "scale": run.scale,
            "seed": run.seed,
            "events": run.events,
            "sizes": run.sizes.iter().map(|s| s.key()).collect::<Vec<_>>(),
            "budget_s": run.budget_s,
            "memory_budget_mb": run.memory_budget_mb,
            "wall_s": wall_s,
            "event_mix_percent": vigil_homelab::events::MIX
                .iter()
                .map(|(kind, percent)| (kind.name().to_string(), json!(percent)))
                .collect::<serde_json::Map<_, _>>(),
        },
        "units": {
            "_s": "seconds",
            "_ms": "milliseconds",
            "_mb": "megabytes (2^20 bytes)",
            "_per_s": "per second",
            "n, rows, tuples, events": "counts",
        },
        "houses": houses,
        "classic": classic,
        "http": http.to_json(),
    });
    report["targets"] = targets(&report);
    report
}

/// The view's digests at every checkpoint that several implementations reached: they must be
/// equal, or the timings compare different computations.
fn house_agreement(implementations: &serde_json::Map<String, Json>) -> Json {
    // Digests by the number of events applied, and who computed them.
    let mut by_point: BTreeMap<u64, Vec<(&str, &str)>> = BTreeMap::new();
    let mut measured_count = 0;
    for implementation in HOUSE_IMPLEMENTATIONS {
        let Some(figures) = implementations.get(implementation.key()) else {
            continue;
        };
        if !measured(figures) {
            continue;
        }
        measured_count += 1;
        for checkpoint in figures["checkpoints"].as_array().into_iter().flatten() {
            if let (Some(after), Some(digest)) = (
                checkpoint["after_events"].as_u64(),
                checkpoint["digest"].as_str(),
            ) {
                by_point
                    .entry(after)
                    .or_default()
                    .push((implementation.key(), digest));
            }
        }
    }
    let mut compared = 0;
    let mut disagreements = Vec::new();
    for (after, digests) in &by_point {
        let Some((first, expected)) = digests.first() else {
            continue;
        };
        for (name, digest) in &digests[1..] {
            compared += 1;
            if digest != expected {
                disagreements.push(json!({
                    "after_events": after,
                    "implementations": [first, name],
                }));
            }
        }
    }
    json!({
        "view": "shed_order, shed",
        "implementations": measured_count,
        "checkpoints_compared": compared,
        "agree": if measured_count < 2 { Json::Null } else { json!(disagreements.is_empty()) },
        "disagreements": disagreements,
    })
}

/// The classic programs' output sizes after the load and after every update, over what both
/// implementations replayed.
fn classic_agreement(implementations: &serde_json::Map<String, Json>) -> Json {
    let (Some(vigil), Some(crepe)) = (implementations.get("vigil"), implementations.get("crepe"))
    else {
        return json!({"compared": 0, "agree": Json::Null});
    };
    if !measured(vigil) || !measured(crepe) {
        return json!({"compared": 0, "agree": Json::Null});
    }
    let sizes = |json: &Json| -> Vec<u64> {
        json["sizes_after_updates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_u64)
            .collect()
    };
    let (ours, theirs) = (sizes(vigil), sizes(crepe));
    let common = ours.len().min(theirs.len());
    let agree =
        vigil["output_tuples"] == crepe["output_tuples"] && ours[..common] == theirs[..common];
    json!({"compared": common + 1, "agree": agree})
}

/// What the report says about the machine: it is part of every figure.
fn machine(load_average_start: &str) -> Json {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": kernel.trim(),
        "cpu_model": model,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_total_mb": super::measure::status_mb("/proc/meminfo", "MemTotal"),
        "load_average_at_start": load_average_start,
        "load_average_at_end": load_average(),
    })
}

/// The 1, 5 and 15 minute load averages: how busy the (shared) machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Today's date and time in UTC, `2026-11-26T01:02:03Z`, from the system clock.
pub fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Targets

fn find_house<'a>(report: &'a Json, size: &str) -> Option<&'a Json> {
    report["houses"]
        .as_array()?
        .iter()
        .find(|house| house["size"] == size)
}

/// An implementation's figures for a house: all of them, or those it reported before it was
/// stopped (with a note saying so); or why there are none.
fn house_figures<'a>(
    report: &'a Json,
    size: &str,
    implementation: HouseImplementation,
) -> Result<(&'a Json, Option<String>), String> {
    let Some(house) = find_house(report, size) else {
        return Err(format!(
            "the run did not include the house `{size}` (--sizes)"
        ));
    };
    let figures = &house["implementations"][implementation.key()];
    if figures.is_null() {
        return Err(format!("{} was not run", implementation.key()));
    }
    if measured(figures) {
        return Ok((figures, None));
    }
    let reason = figures["reason"].as_str().unwrap_or("unknown");
    if figures["partial"].is_object() {
        return Ok((
            &figures["partial"],
            Some(format!("{} was stopped: {reason}", implementation.key())),
        ));
    }
    Err(format!(
        "{} was not measured: {reason}",
        implementation.key()
    ))
}

/// A one-event percentile of an implementation on a house: of every event, or of the events
/// timed before the case was stopped (with a note saying how many).
fn one_event(
    report: &Json,
    size: &str,
    implementation: HouseImplementation,
    percentile: &str,
) -> Result<(f64, Option<String>), String> {
    let (figures, stopped) = house_figures(report, size, implementation)?;
    match stopped {
        None => figure(figures, &["one_event", "latency", percentile])
            .map(|value| (value, None))
            .ok_or_else(|| "no one-event transaction was timed".to_string()),
        Some(why) => {
            let latency = &figures["one_event_so_far"]["latency"];
            match (figure(latency, &[percentile]), latency["n"].as_u64()) {
                (Some(value), Some(n)) if n > 0 => Ok((
                    value,
                    Some(format!("from the {n} events timed before {why}")),
                )),
                _ => Err(format!("no one-event transaction was timed: {why}")),
            }
        }
    }
}

/// A latency that must stay under `limit_ms`.
fn latency_target(
    name: String,
    measured: Result<(f64, Option<String>), String>,
    limit_ms: f64,
) -> Json {
    let goal = format!("p99 < {}", milliseconds(limit_ms));
    match measured {
        Err(reason) => json!({
            "target": name, "goal": goal, "limit_ms": limit_ms,
            "status": "not measured", "reason": reason,
        }),
        // A case stopped partway proves nothing either way: its figure is only context.
        Ok((value, Some(note))) => json!({
            "target": name, "goal": goal, "limit_ms": limit_ms,
            "status": "not measured",
            "reason": format!("p99 {} {note}", milliseconds(value)),
        }),
        Ok((value, _)) if value < limit_ms => json!({
            "target": name, "goal": goal, "limit_ms": limit_ms, "measured_ms": value,
            "status": "met",
            "margin": format!("{} under the limit", milliseconds(limit_ms - value)),
        }),
        Ok((value, _)) => json!({
            "target": name, "goal": goal, "limit_ms": limit_ms, "measured_ms": value,
            "status": "missed",
            "missed_by_ms": value - limit_ms,
            "missed_by": format!(
                "{} over the limit ({:.1}x the limit)",
                milliseconds(value - limit_ms),
                value / limit_ms
            ),
        }),
    }
}

/// A speed-up that must reach `goal` (recomputing from scratch / Vigil's one-event p50).
/// `partial` says the figures come from a case stopped partway: then they are only context.
fn ratio_target(name: String, ratio: Result<(f64, String, bool), String>, goal: f64) -> Json {
    let goal_text = format!("≥ {goal:.0}x");
    match ratio {
        Err(reason) => json!({
            "target": name, "goal": goal_text, "goal_ratio": goal,
            "status": "not measured", "reason": reason,
        }),
        Ok((value, how, true)) => json!({
            "target": name, "goal": goal_text, "goal_ratio": goal,
            "status": "not measured",
            "reason": format!("{value:.1}x on partial figures: {how}"),
        }),
        Ok((value, how, _)) if value >= goal => json!({
            "target": name, "goal": goal_text, "goal_ratio": goal, "measured_ratio": value,
            "status": "met", "how": how,
        }),
        Ok((value, how, _)) => json!({
            "target": name, "goal": goal_text, "goal_ratio": goal, "measured_ratio": value,
            "status": "missed", "how": how,
            "missed_by": format!(
                "{value:.2}x instead of {goal:.0}x: Vigil would have to be {:.1}x faster",
                goal / value
            ),
        }),
    }
}

/// Every target of the benchmark, checked against the report's figures.
fn targets(report: &Json) -> Json {
    let mut targets = vec![
        latency_target(
            "one-event transaction to change set, the whole policy, the sample house".into(),
            one_event(report, "sample", HouseImplementation::Vigil, "p99_ms"),
            1.0,
        ),
        latency_target(
            "one-event transaction to change set, the whole policy, 10,000 nodes".into(),
            one_event(report, "10000", HouseImplementation::Vigil, "p99_ms"),
            10.0,
        ),
    ];
    // At least 10x faster than recomputing, at 1,000 nodes and above: the sizes of the run
    // that qualify, or 1,000 (not measured) if there are none.
    let mut large: Vec<String> = report["houses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|house| {
            let size = house["size"].as_str()?;
            size.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1_000)
                .map(|_| size.to_string())
        })
        .collect();
    if large.is_empty() {
        large.push("1000".to_string());
    }
    let noted = |how: String, notes: [&Option<String>; 2]| -> String {
        let notes: Vec<&str> = notes.iter().filter_map(|n| n.as_deref()).collect();
        if notes.is_empty() {
            how
        } else {
            format!("{how} ({})", notes.join("; "))
        }
    };
    for size in &large {
        let label = size
            .parse::<u64>()
            .map(|n| format!("{} nodes", thousands(n)))
            .unwrap_or_else(|_| size.clone());
        let p50 = |implementation| one_event(report, size, implementation, "p50_ms");
        let view = p50(HouseImplementation::Crepe).and_then(|(crepe, crepe_note)| {
            let (vigil, vigil_note) = p50(HouseImplementation::VigilView)?;
            let how = format!(
                "crepe recomputing the view, p50 {} / Vigil with the view alone, one-event p50 {}",
                milliseconds(crepe),
                milliseconds(vigil)
            );
            let partial = crepe_note.is_some() || vigil_note.is_some();
            Ok((
                crepe / vigil,
                noted(how, [&crepe_note, &vigil_note]),
                partial,
            ))
        });
        targets.push(ratio_target(
            format!("faster than recomputing the load-shedding view from scratch, {label}"),
            view,
            10.0,
        ));
        let policy =
            house_figures(report, size, HouseImplementation::Vigil).and_then(|(figures, _)| {
                let load = figure(figures, &["load_s"]).ok_or("the load was not measured")? * 1e3;
                let (vigil, note) = p50(HouseImplementation::Vigil)?;
                let how = format!(
                    "evaluating the whole policy from scratch (Vigil's load) {} / one-event p50 {}",
                    milliseconds(load),
                    milliseconds(vigil)
                );
                let partial = note.is_some();
                Ok((load / vigil, noted(how, [&note, &None]), partial))
            });
        targets.push(ratio_target(
            format!("faster than recomputing the whole policy from scratch, {label}"),
            policy,
            10.0,
        ));
    }
    let http = &report["http"];
    let http_p99 = if measured(http) {
        figure(http, &["ingest", "p99_ms"])
            .map(|value| (value, None))
            .ok_or_else(|| "no transaction was timed".to_string())
    } else {
        Err(format!(
            "the HTTP run: {}",
            http["reason"].as_str().unwrap_or("skipped")
        ))
    };
    targets.push(latency_target(
        "over HTTP, ingest to change set, the sample house".into(),
        http_p99,
        2.0,
    ));
    Json::Array(targets)
}

// ---------------------------------------------------------------------------------------------
// Tables

/// `0.42 ms`, `12.3 ms`, `4.1 s`: a latency as a person reads it.
pub fn milliseconds(value: f64) -> String {
    if !value.is_finite() {
        "—".to_string()
    } else if value >= 1_000.0 {
        format!("{:.2} s", value / 1e3)
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else if value >= 0.1 {
        format!("{value:.2} ms")
    } else {
        format!("{:.0} µs", value * 1e3)
    }
}

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.decimals$}"),
        _ => "—".to_string(),
    }
}

fn latency_cells(summary: &Json) -> String {
    let cell = |key: &str| {
        summary
            .get(key)
            .and_then(Json::as_f64)
            .map_or("—".to_string(), milliseconds)
    };
    format!(
        "{} | {} | {} | {} | {}",
        summary.get("n").and_then(Json::as_u64).unwrap_or(0),
        cell("p50_ms"),
        cell("p99_ms"),
        cell("p99_9_ms"),
        cell("max_ms")
    )
}

/// The report as Markdown tables.
pub fn tables(report: &Json) -> String {
    let mut out = String::new();
    let run = &report["run"];
    let machine = &report["machine"];
    out.push_str(&format!(
        "## vigil bench ({} run, seed {}, {})\n\nMachine: {} × {}, {:.0} MB, {}; load average {} at the start, {} at the end.\n\n",
        run["scale"].as_str().unwrap_or(""),
        run["seed"],
        report["date"].as_str().unwrap_or(""),
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["memory_total_mb"].as_f64().unwrap_or(0.0),
        machine["kernel"].as_str().unwrap_or(""),
        machine["load_average_at_start"].as_str().unwrap_or(""),
        machine["load_average_at_end"].as_str().unwrap_or(""),
    ));

    out.push_str("### One-event transactions, by house\n\n");
    out.push_str("| house | implementation | load | peak memory (MB) | n | p50 | p99 | p99.9 | max | batched (events/s) |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut notes = Vec::new();
    for house in report["houses"].as_array().into_iter().flatten() {
        let label = house["label"].as_str().unwrap_or("");
        let shape = &house["house"];
        let label = if shape.is_object() {
            format!(
                "{label} ({} nodes, {} workloads)",
                shape["nodes"], shape["workloads"]
            )
        } else {
            label.to_string()
        };
        for implementation in HOUSE_IMPLEMENTATIONS {
            let figures = &house["implementations"][implementation.key()];
            if figures.is_null() {
                continue;
            }
            if !measured(figures) {
                // What it reported before it was stopped, if anything.
                let partial = &figures["partial"];
                let load = figure(partial, &["load_s"]).map_or("not measured".into(), |s| {
                    format!("{}, then stopped", milliseconds(s * 1e3))
                });
                let latency = &partial["one_event_so_far"]["latency"];
                let cells = if latency["n"].as_u64().unwrap_or(0) > 0 {
                    latency_cells(latency).replacen(" |", " (before the stop) |", 1)
                } else {
                    "— | — | — | — | —".to_string()
                };
                out.push_str(&format!(
                    "| {label} | {} | {load} | {} | {cells} | — |\n",
                    implementation.key(),
                    number(figure(partial, &["memory", "load_peak_rss_mb"]), 0),
                ));
                notes.push(format!(
                    "{label}, {}: not measured: {}",
                    implementation.key(),
                    figures["reason"].as_str().unwrap_or("")
                ));
                continue;
            }
            let stopped = figures["one_event"]["stopped_at_budget"] == true;
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {}{} | {} |\n",
                implementation.key(),
                figure(figures, &["load_s"]).map_or("—".into(), |s| milliseconds(s * 1e3)),
                number(figure(figures, &["memory", "peak_rss_mb"]), 0),
                latency_cells(&figures["one_event"]["latency"]),
                if stopped { " (budget)" } else { "" },
                number(figure(figures, &["batched", "events_per_s"]), 0),
            ));
        }
        let agreement = &house["agreement"];
        if agreement["agree"] == false {
            notes.push(format!(
                "{label}: the implementations DISAGREE on the load-shedding view: {}",
                agreement["disagreements"]
            ));
        }
    }
    out.push_str(
        "\nLoad: every fact in one transaction (Vigil), or the baseline's first evaluation. \
         n: one-event transactions timed, from opening the transaction to the change set \
         returned (the baselines: one event applied and the view recomputed or caught up). \
         vigil runs the whole policy; vigil-view, typed-dd and crepe the load-shedding view \
         alone (`fixtures/bench/shed_view.dl`, homelab/src/baseline/).\n",
    );
    for note in &notes {
        out.push_str(&format!("\n- {note}"));
    }
    if !notes.is_empty() {
        out.push('\n');
    }

    out.push_str(
        "\n### Where the time goes: the largest relations after the load (Vigil, whole policy)\n\n",
    );
    let mut listed = 0;
    for house in report["houses"].as_array().into_iter().flatten() {
        let mut figures = &house["implementations"]["vigil"];
        if !measured(figures) {
            figures = &figures["partial"];
        }
        let Some(largest) = figures["largest_relations"]["largest"].as_array() else {
            continue;
        };
        let list: Vec<String> = largest
            .iter()
            .take(5)
            .map(|r| {
                format!(
                    "{} {}",
                    r["relation"].as_str().unwrap_or(""),
                    thousands(r["rows"].as_u64().unwrap_or(0))
                )
            })
            .collect();
        out.push_str(&format!(
            "- {}: {} rows in all; {}\n",
            house["label"].as_str().unwrap_or(""),
            thousands(
                figures["largest_relations"]["total_rows"]
                    .as_u64()
                    .unwrap_or(0)
            ),
            list.join(", ")
        ));
        let by_kind = if figures["one_event"].is_object() {
            &figures["one_event"]["by_kind"]
        } else {
            &figures["one_event_so_far"]["by_kind"]
        };
        let kinds: Vec<String> = by_kind
            .as_object()
            .into_iter()
            .flatten()
            .map(|(kind, latency)| {
                format!(
                    "{kind} {} / {}",
                    figure(latency, &["p50_ms"]).map_or("—".into(), milliseconds),
                    figure(latency, &["p99_ms"]).map_or("—".into(), milliseconds)
                )
            })
            .collect();
        if !kinds.is_empty() {
            out.push_str(&format!(
                "  one-event p50 / p99 by kind of event: {}\n",
                kinds.join(", ")
            ));
        }
        listed += 1;
    }
    if listed == 0 {
        out.push_str("No house was loaded by Vigil with the whole policy.\n");
    }

    out.push_str("\n### Classic programs\n\n");
    if report["classic"].as_array().is_none_or(Vec::is_empty) {
        out.push_str("Not run (--no-classic).\n");
    }
    out.push_str("| program | input | implementation | load | output tuples | peak memory (MB) | insert p50 | insert p99 | retract p50 | retract p99 |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for program in report["classic"].as_array().into_iter().flatten() {
        for (name, figures) in program["implementations"].as_object().into_iter().flatten() {
            let key = program["program"].as_str().unwrap_or("");
            if !measured(figures) {
                out.push_str(&format!(
                    "| {key} | | {name} | not measured: {} | | | | | | |\n",
                    figures["reason"].as_str().unwrap_or("")
                ));
                continue;
            }
            let latency = |which: &str, key: &str| {
                figure(figures, &[which, key]).map_or("—".into(), milliseconds)
            };
            out.push_str(&format!(
                "| {key} | {} | {name} | {} | {} | {} | {} | {} | {} | {} |\n",
                figures["description"].as_str().unwrap_or(""),
                figure(figures, &["load_s"]).map_or("—".into(), |s| milliseconds(s * 1e3)),
                figures["output_tuples"],
                number(figure(figures, &["memory", "peak_rss_mb"]), 0),
                latency("insert", "p50_ms"),
                latency("insert", "p99_ms"),
                latency("retract", "p50_ms"),
                latency("retract", "p99_ms"),
            ));
        }
        if program["agreement"]["agree"] == false {
            out.push_str(&format!(
                "\n**{}: Vigil and crepe disagree on the output sizes.**\n",
                program["program"].as_str().unwrap_or("")
            ));
        }
    }

    let http = &report["http"];
    out.push_str("\n### End to end over HTTP (`vigil serve`, the sample house)\n\n");
    if measured(http) {
        out.push_str("| what | n | p50 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|\n");
        for (key, what) in [
            ("health", "`GET /v1/health` round trip (no commit)"),
            (
                "ingest",
                "ingest: `POST /v1/transactions` to its change set",
            ),
            (
                "dispatch",
                "dispatch: ingest to the `act` change on `GET /v1/watch/act`",
            ),
        ] {
            out.push_str(&format!("| {what} | {} |\n", latency_cells(&http[key])));
        }
        out.push_str(&format!(
            "\n{} one-event transactions, {} of which changed `act`; {:.0} transactions/s sequentially.\n",
            http["events"], http["act_events"], http["transactions_per_s"].as_f64().unwrap_or(0.0)
        ));
        if let (Some(engine), Some(mean)) = (
            http["engine_thread_mean_ms"].as_f64(),
            figure(http, &["ingest", "mean_ms"]),
        ) {
            out.push_str(&format!(
                "Of a mean ingest of {}, the daemon's engine thread (check, journal append and sync, commit, change set) took {} (its `/metrics`); HTTP, JSON and the hand-offs the other {}.\n",
                milliseconds(mean),
                milliseconds(engine),
                milliseconds((mean - engine).max(0.0)),
            ));
        }
    } else {
        out.push_str(&format!(
            "Not measured: {}\n",
            http["reason"].as_str().unwrap_or("")
        ));
    }

    out.push_str("\n### Targets\n\n| target | goal | measured | verdict |\n|---|---|---:|---|\n");
    for target in report["targets"].as_array().into_iter().flatten() {
        let measured = if let Some(ms) = target["measured_ms"].as_f64() {
            format!("p99 {}", milliseconds(ms))
        } else if let Some(ratio) = target["measured_ratio"].as_f64() {
            format!("{ratio:.1}x")
        } else {
            "—".to_string()
        };
        let verdict = match target["status"].as_str().unwrap_or("") {
            "met" => "met".to_string(),
            "missed" => format!(
                "**missed** by {}",
                target["missed_by"].as_str().unwrap_or("")
            ),
            _ => format!("not measured: {}", target["reason"].as_str().unwrap_or("")),
        };
        out.push_str(&format!(
            "| {} | {} | {measured} | {verdict} |\n",
            target["target"].as_str().unwrap_or(""),
            target["goal"].as_str().unwrap_or(""),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'));
    }

    #[test]
    fn a_missed_target_says_by_how_much() {
        let missed = latency_target("x".into(), Ok((2.5, None)), 1.0);
        assert_eq!(missed["status"], "missed");
        assert!(
            missed["missed_by"]
                .as_str()
                .unwrap()
                .contains("1.50 ms over")
        );
        let met = ratio_target("y".into(), Ok((12.0, String::new(), false)), 10.0);
        assert_eq!(met["status"], "met");
        let partial = ratio_target("p".into(), Ok((12.0, String::new(), true)), 10.0);
        assert_eq!(partial["status"], "not measured");
        let short = ratio_target("z".into(), Ok((2.0, String::new(), false)), 10.0);
        assert!(short["missed_by"].as_str().unwrap().contains("5.0x faster"));
    }
}
