//! Each case in a child process (`vigil bench --one CASE`), held to its budgets.
//!
//! A child process per case keeps peak memory per case, and lets the parent give up on a case
//! without losing the run: a load that takes longer than the time budget, or a process that
//! grows past the memory budget (a quadratic rule on a large house does both), is killed and
//! reported as not measured, with the reason. Once loaded, a child holds each measuring phase
//! to the time budget itself; the parent only steps in if it still has not finished long after.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::measure::{Case, PARTIAL_PREFIX, PHASE_PREFIX, RESULT_PREFIX, Settings, status_mb};
use super::report::{CaseResult, Outcome};

/// Runs `case` in a child and returns what became of it.
pub fn run(case: Case, settings: &Settings, memory_budget_mb: f64) -> CaseResult {
    let started = Instant::now();
    let outcome = match spawn_and_watch(case, settings, memory_budget_mb) {
        Ok(outcome) => outcome,
        Err(error) => Outcome::not_measured(format!("the case could not run: {error:#}")),
    };
    CaseResult {
        case,
        outcome,
        wall_s: started.elapsed().as_secs_f64(),
    }
}

fn spawn_and_watch(
    case: Case,
    settings: &Settings,
    memory_budget_mb: f64,
) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("bench")
        .args(["--one", &case.key()])
        .args(["--scale", settings.scale.name()])
        .args(["--events", &settings.events.to_string()])
        .args(["--seed", &settings.seed.to_string()])
        .args(["--budget-s", &settings.budget.as_secs_f64().to_string()])
        .arg("--root")
        .arg(&settings.paths.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let budget = settings.budget;
    // After the load: the one-event phase, the batched phase (half a budget) and the
    // checkpoints, with room to spare.
    let measuring = budget * 3 + Duration::from_secs(120);
    let started = Instant::now();
    let mut loaded: Option<Instant> = None;
    let mut result: Option<Json> = None;
    let mut partial: Option<Json> = None;
    // The one-event transaction the child said it started, when events are slow.
    let mut in_flight: Option<(u64, Instant)> = None;
    let mut most_mb: f64 = 0.0;
    let status_path = format!("/proc/{pid}/status");
    let killed: Option<String> = loop {
        match received.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(phase) = line.strip_prefix(PHASE_PREFIX) {
                    let phase = phase.trim();
                    if phase == "loaded" {
                        loaded = Some(Instant::now());
                    } else if phase == "event done" {
                        in_flight = None;
                    } else if let Some(event) = phase.strip_prefix("event ") {
                        in_flight = event.parse().ok().map(|event: u64| (event, Instant::now()));
                    }
                } else if let Some(json) = line.strip_prefix(PARTIAL_PREFIX) {
                    partial = serde_json::from_str(json).ok().or(partial);
                } else if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
                    result = serde_json::from_str(json).ok();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let rss = status_mb(&status_path, "VmRSS");
        if rss.is_finite() {
            most_mb = most_mb.max(rss);
        }
        let during = if loaded.is_some() {
            "the measurements"
        } else {
            "the load"
        };
        if rss > memory_budget_mb {
            break Some(format!(
                "it needed more than the memory budget of {memory_budget_mb:.0} MB during {during} ({rss:.0} MB after {:.0} s; --memory-budget-mb)",
                started.elapsed().as_secs_f64()
            ));
        }
        match loaded {
            None if started.elapsed() > budget => {
                break Some(format!(
                    "the load did not finish within the time budget of {:.0} s (--budget-s); the process had reached {most_mb:.0} MB",
                    budget.as_secs_f64()
                ));
            }
            Some(at) if at.elapsed() > measuring => {
                break Some(format!(
                    "the measurements did not finish within {:.0} s of the load",
                    measuring.as_secs_f64()
                ));
            }
            _ => {}
        }
    };
    if killed.is_some() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    if let Case::House(size, _) = case {
        // A killed child leaves its house's facts behind.
        let scratch = std::env::temp_dir().join(format!("vigil-bench-{pid}-{}", size.key()));
        let _ = std::fs::remove_dir_all(scratch);
    }
    if let Some(mut reason) = killed {
        eprintln!();
        if let (Some((event, since)), Some(Json::Object(figures))) = (in_flight, &mut partial) {
            let running = since.elapsed().as_secs_f64();
            reason.push_str(&format!(
                "; one-event transaction {event} had been running for {running:.1} s"
            ));
            figures.insert(
                "in_flight".into(),
                serde_json::json!({"event": event, "running_s": running}),
            );
        }
        return Ok(Outcome::NotMeasured { reason, partial });
    }
    match result {
        Some(json) if status.success() => Ok(Outcome::Measured(json)),
        _ => Ok(Outcome::NotMeasured {
            reason: format!("the case's process failed ({status}); its errors are above"),
            partial,
        }),
    }
}
