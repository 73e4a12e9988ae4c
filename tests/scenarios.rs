//! Scenario tests: the homelab policy (`rules/homelab.dl`) replayed against timed traces of
//! what happens in the house, and its decisions compared with what the owner expects.
//!
//! A scenario is a folder under `fixtures/scenarios/` (every folder but `base`):
//!
//! - `trace.jsonl`: the trace (see the README for the format). Its first line is a `#`
//!   comment: one sentence saying what a homelab owner would expect.
//! - `views`: one line, the comma-separated views the scenario checks (`--views`).
//! - `expected.txt`: what `vigil replay` prints on standard output, worked out by hand from the
//!   rules, the facts and the trace.
//! - `status` (optional): the expected exit status, 0 without the file.
//! - `facts/` (optional): the inventory and configuration, instead of `fixtures/scenarios/base`.
//!
//! Each scenario runs, from the workspace root,
//! `vigil replay rules/homelab.dl -F fixtures/scenarios/base --views VIEWS fixtures/scenarios/NAME/trace.jsonl`.
//!
//! `SCENARIO=TEXT` runs only the scenarios whose name contains TEXT.
//! `UPDATE_EXPECT=1 cargo test --test scenarios` rewrites `expected.txt` and `status` from what
//! the binary prints. The expectations are written by hand, so a rewrite is only for a change
//! that someone has reviewed line by line.

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Outcome, compare, update};

mod support;

const BASE: &str = "base";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every scenario folder, sorted by name.
fn scenarios() -> Vec<PathBuf> {
    let dir = root().join("fixtures/scenarios");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a readable directory").path())
        .filter(|path| path.is_dir() && path.file_name().is_some_and(|name| name != BASE))
        .collect();
    scenarios.sort();
    scenarios
}

fn name(scenario: &Path) -> String {
    scenario
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// The scenario's first line, without its `#`, if it is a `#` comment.
fn sentence(scenario: &Path) -> Option<String> {
    let trace = std::fs::read_to_string(scenario.join("trace.jsonl")).ok()?;
    let first = trace.lines().next()?;
    first.strip_prefix('#').map(|text| text.trim().to_string())
}

/// What is wrong with the scenario's shape: its trace's opening sentence, its `views` file.
fn shape_problems(scenario: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match std::fs::read_to_string(scenario.join("trace.jsonl")) {
        Err(error) => problems.push(format!("trace.jsonl: {error}")),
        Ok(trace) => match trace.lines().next().and_then(|line| line.strip_prefix('#')) {
            None => problems.push(
                "trace.jsonl must open with a `#` line: one sentence saying what the owner expects"
                    .to_string(),
            ),
            Some(text) => {
                let text = text.trim();
                if text.is_empty() || !text.ends_with('.') {
                    problems.push(format!(
                        "the opening `#` line of trace.jsonl must be a sentence that ends with a \
                         full stop, not `{text}`"
                    ));
                }
            }
        },
    }
    match std::fs::read_to_string(scenario.join("views")) {
        Err(error) => problems.push(format!("views: {error}")),
        Ok(text) => {
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .collect();
            let well_formed = lines.len() == 1
                && lines[0].split(',').all(|view| {
                    !view.is_empty()
                        && view
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                });
            if !well_formed {
                problems.push(format!(
                    "views must be one line of comma-separated relation names, not `{}`",
                    text.trim_end()
                ));
            }
        }
    }
    if !scenario.join("expected.txt").exists() {
        problems.push("expected.txt is missing".to_string());
    }
    problems
}

/// A path relative to the workspace root, with `/` separators, as the command line gets it.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn replay(scenario: &Path) -> Outcome {
    let facts = if scenario.join("facts").is_dir() {
        scenario.join("facts")
    } else {
        root().join("fixtures/scenarios").join(BASE)
    };
    let views = std::fs::read_to_string(scenario.join("views")).unwrap_or_default();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .arg("replay")
        .arg("rules/homelab.dl")
        .arg("-F")
        .arg(relative(&facts))
        .arg("--views")
        .arg(views.trim())
        .arg(relative(&scenario.join("trace.jsonl")))
        .output()
        .unwrap_or_else(|error| panic!("cannot run vigil: {error}"));
    Outcome::of(output)
}

fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    *results[index]
                        .lock()
                        .expect("no panics while holding the lock") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("no panics while holding the lock")
                .expect("every item was worked on")
        })
        .collect()
}

#[test]
fn scenarios_decide_what_the_owner_expects() {
    let mut scenarios = scenarios();
    match std::env::var("SCENARIO") {
        Ok(filter) => {
            scenarios.retain(|scenario| name(scenario).contains(&filter));
            assert!(
                !scenarios.is_empty(),
                "no scenario name contains `{filter}`"
            );
        }
        Err(_) => assert!(
            scenarios.len() >= 16,
            "expected at least 16 scenarios under fixtures/scenarios, found {}",
            scenarios.len()
        ),
    }
    let updating = std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1");
    let outcomes = parallel(&scenarios, |scenario| {
        let problems = shape_problems(scenario);
        // A scenario without its trace or its views cannot run meaningfully.
        let runnable = scenario.join("trace.jsonl").is_file() && scenario.join("views").is_file();
        (problems, runnable.then(|| replay(scenario)))
    });
    let mut failures = Vec::new();
    for (scenario, (problems, outcome)) in scenarios.iter().zip(&outcomes) {
        let mut report = String::new();
        for problem in problems {
            if !(updating && problem == "expected.txt is missing") {
                report.push_str(&format!("{problem}\n"));
            }
        }
        if let Some(outcome) = outcome {
            if updating {
                update(scenario, outcome);
            } else if let Some(difference) = compare(scenario, outcome) {
                report.push_str(&difference);
            }
        }
        if !report.is_empty() {
            let expectation = sentence(scenario).unwrap_or_else(|| "(no sentence)".to_string());
            failures.push(format!(
                "{}\n  the owner expects: {expectation}\n{report}",
                name(scenario)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario(s) fail:\n\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}
