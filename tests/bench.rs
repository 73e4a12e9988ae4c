//! `vigil bench` end to end: a quick run on the sample house and a house of 100 nodes, with
//! the classic programs and the HTTP run, checked for the report's structure, never for its
//! timings (the machine is shared and noisy, and timing never decides a test):
//!
//! - every case was measured, and every figure with a unit (`_s`, `_ms`, `_mb`, `_per_s`) is
//!   there and positive;
//! - the baselines computed the engine's load-shedding view at every checkpoint, and crepe
//!   the same outputs as Vigil on the classic programs;
//! - every target is stated, with its verdict, and by how much it was missed if it was;
//! - the plot is an SVG whose tags all close.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

/// Every number under a key with a unit must be finite and positive; returns how many there
/// were.
fn check_figures(json: &Json, path: &str, problems: &mut Vec<String>) -> usize {
    let mut count = 0;
    match json {
        Json::Object(map) => {
            for (key, value) in map {
                let here = format!("{path}.{key}");
                let with_unit = ["_s", "_ms", "_mb", "_per_s"]
                    .iter()
                    .any(|unit| key.ends_with(unit));
                if with_unit && !value.is_object() && !value.is_array() && !value.is_string() {
                    count += 1;
                    match value.as_f64() {
                        Some(number) if number.is_finite() && number > 0.0 => {}
                        _ => problems.push(format!("{here} is {value}, not a positive number")),
                    }
                }
                count += check_figures(value, &here, problems);
            }
        }
        Json::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                count += check_figures(item, &format!("{path}[{index}]"), problems);
            }
        }
        _ => {}
    }
    count
}

/// A latency summary: every percentile there, positive, and in order.
fn check_latency(summary: &Json, what: &str) {
    let n = summary["n"].as_u64().unwrap_or(0);
    assert!(n > 0, "{what}: nothing was timed: {summary}");
    let values: Vec<f64> = ["p50_ms", "p99_ms", "p99_9_ms", "max_ms"]
        .iter()
        .map(|key| {
            summary[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: no {key} in {summary}"))
        })
        .collect();
    assert!(values[0] > 0.0, "{what}: {summary}");
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "{what}: percentiles out of order: {summary}"
    );
    assert!(summary["mean_ms"].as_f64().is_some_and(|mean| mean > 0.0));
}

/// Every element opened is closed, in order (`<a/>` closes itself).
fn check_svg(svg: &str) {
    assert!(
        svg.starts_with("<svg"),
        "the plot starts with <svg: {svg:.80}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    let mut open: Vec<String> = Vec::new();
    let mut rest = svg;
    let mut elements = 0;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .map(|end| start + end)
            .expect("every tag ends");
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let expected = open.pop().unwrap_or_default();
            assert_eq!(name.trim(), expected, "a closing tag that does not match");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            open.push(name);
        }
        elements += 1;
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    assert!(elements > 20, "the plot has {elements} tags");
    assert_eq!(svg.matches("<svg").count(), 1);
}

#[test]
fn a_quick_run_reports_every_figure_and_the_baselines_agree_with_the_engine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vigil-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&output);
    let run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root)
        .args(["bench", "--quick", "--sizes", "sample,100", "-o"])
        .arg(&output)
        .output()
        .expect("vigil bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "vigil bench failed ({}):\n{stderr}\n{stdout}",
        run.status
    );
    // The tables on stdout, the progress on stderr.
    for heading in [
        "### One-event transactions, by house",
        "### Classic programs",
        "### End to end over HTTP",
        "### Targets",
    ] {
        assert!(stdout.contains(heading), "no `{heading}` in:\n{stdout}");
    }
    assert!(stderr.contains("[bench] 1/"), "progress:\n{stderr}");
    assert!(
        stderr.contains("one-event transactions"),
        "progress:\n{stderr}"
    );

    let text = std::fs::read_to_string(output.join("report.json")).expect("report.json");
    let report: Json = serde_json::from_str(&text).expect("the report is JSON");
    for key in ["tool", "version", "date", "machine", "run", "units"] {
        assert!(!report[key].is_null(), "the report has no `{key}`");
    }
    assert!(report["machine"]["cpus"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(report["run"]["scale"], "quick");

    // Houses: four implementations each, all measured, all agreeing.
    let houses = report["houses"].as_array().expect("houses");
    assert_eq!(houses.len(), 2);
    for house in houses {
        let size = house["size"].as_str().expect("a size");
        assert!(house["house"]["nodes"].as_u64().is_some_and(|n| n > 0));
        let implementations = house["implementations"]
            .as_object()
            .expect("implementations");
        assert_eq!(implementations.len(), 4, "{size}");
        for (name, figures) in implementations {
            let what = format!("{size}/{name}");
            assert_eq!(figures["status"], "measured", "{what}: {figures}");
            assert!(figures["load_s"].as_f64().is_some(), "{what}: no load time");
            assert!(
                figures["memory"]["peak_rss_mb"].as_f64().is_some(),
                "{what}"
            );
            check_latency(&figures["one_event"]["latency"], &what);
            assert!(
                figures["one_event"]["by_kind"]
                    .as_object()
                    .is_some_and(|kinds| kinds.len() >= 4),
                "{what}: latency by kind of event"
            );
            if name.starts_with("vigil") {
                check_latency(&figures["batched"]["latency"], &format!("{what} batched"));
                assert!(figures["batched"]["events_per_s"].as_f64().is_some());
                assert!(
                    figures["largest_relations"]["total_rows"]
                        .as_u64()
                        .is_some()
                );
            }
            assert!(
                figures["checkpoints"]
                    .as_array()
                    .is_some_and(|c| c.len() >= 3),
                "{what}: checkpoints"
            );
        }
        let agreement = &house["agreement"];
        assert_eq!(agreement["agree"], true, "{size}: {agreement}");
        assert!(
            agreement["checkpoints_compared"]
                .as_u64()
                .is_some_and(|n| n >= 9),
            "{size}: {agreement}"
        );
    }

    // The classic programs: Vigil and crepe, the same outputs.
    let classic = report["classic"].as_array().expect("classic programs");
    assert_eq!(classic.len(), 3);
    for program in classic {
        let name = program["program"].as_str().expect("a name");
        for implementation in ["vigil", "crepe"] {
            let figures = &program["implementations"][implementation];
            let what = format!("{name}/{implementation}");
            assert_eq!(figures["status"], "measured", "{what}: {figures}");
            assert!(figures["output_tuples"].as_u64().is_some_and(|n| n > 0));
            check_latency(&figures["insert"], &what);
            check_latency(&figures["retract"], &what);
        }
        assert_eq!(program["agreement"]["agree"], true, "{name}");
    }

    // Over HTTP: ingest, dispatch and the floor.
    let http = &report["http"];
    assert_eq!(http["status"], "measured", "{http}");
    for what in ["health", "ingest", "dispatch"] {
        check_latency(&http[what], what);
    }
    assert!(http["act_events"].as_u64().is_some_and(|n| n > 0));

    // The targets, each with its verdict.
    let targets = report["targets"].as_array().expect("targets");
    assert!(targets.len() >= 5);
    for target in targets {
        assert!(target["target"].is_string() && target["goal"].is_string());
        match target["status"].as_str() {
            Some("met") => {}
            Some("missed") => assert!(
                target["missed_by"]
                    .as_str()
                    .is_some_and(|by| !by.is_empty()),
                "a missed target says by how much: {target}"
            ),
            Some("not measured") => assert!(target["reason"].is_string(), "{target}"),
            other => panic!("a target's status is {other:?}: {target}"),
        }
    }
    // A run of the sample house and 100 nodes checks the sample's targets, and says why it
    // cannot check those of 1,000 and 10,000 nodes.
    let sample = targets
        .iter()
        .find(|t| {
            t["target"]
                .as_str()
                .unwrap_or("")
                .ends_with("the sample house")
        })
        .expect("the sample house's target");
    assert_ne!(sample["status"], "not measured");

    // Every figure with a unit is positive.
    let mut problems = Vec::new();
    let figures = check_figures(&report, "report", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(figures > 200, "only {figures} figures with units");

    check_svg(&std::fs::read_to_string(output.join("plot.svg")).expect("plot.svg"));
    let _ = std::fs::remove_dir_all(&output);
}
