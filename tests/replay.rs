//! Golden replay tests: each case under `fixtures/replay/` is replayed by the `vigil` binary,
//! and what it prints on standard output and its exit status are compared exactly with the
//! case's `expected.txt` and `status` (0 when there is no `status` file).
//!
//! A case is a folder with `prog.dl` (opening with a comment that says what the case shows),
//! `trace.jsonl`, optionally `facts/` (passed as `-F facts`) and `args` (more flags, such as
//! `--all`). The binary runs inside the case's folder, so the paths it prints are the same on
//! every machine.
//!
//! `UPDATE_EXPECT=1 cargo test --test replay` rewrites `expected.txt` and `status` from what
//! the binary prints; the expected files are written by hand from the semantics, so a rewrite
//! is only for a change that someone has reviewed line by line.
//!
//! The cases whose traces are all accepted are also replayed from MessagePack: the same
//! entries, encoded as a stream of maps, must print exactly what the JSON lines print.

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Outcome, compare, diff, update};

mod support;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/replay");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("{}: {error}", root.display()))
        .map(|entry| entry.expect("a readable directory").path())
        .filter(|path| path.join("prog.dl").exists())
        .collect();
    cases.sort();
    cases
}

fn name(case: &Path) -> String {
    case.file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Runs `vigil replay` on a case, with `trace` (a path relative to the case) as the trace.
fn replay(case: &Path, trace: &Path) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command
        .current_dir(case)
        .arg("replay")
        .arg("prog.dl")
        .arg(trace);
    if case.join("facts").is_dir() {
        command.args(["-F", "facts"]);
    }
    if let Ok(args) = std::fs::read_to_string(case.join("args")) {
        command.args(args.split_whitespace());
    }
    Outcome::of(
        command
            .output()
            .unwrap_or_else(|error| panic!("cannot run vigil: {error}")),
    )
}

fn check(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{} case(s) differ:\n\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn replay_cases_print_their_expected_change_sets() {
    let cases = cases();
    assert!(
        cases.len() >= 10,
        "expected at least 10 replay cases, found {}",
        cases.len()
    );
    let updating = std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1");
    let mut failures = Vec::new();
    for case in &cases {
        let program = std::fs::read_to_string(case.join("prog.dl")).expect("a readable program");
        assert!(
            program.starts_with("//"),
            "{}: prog.dl must open with a comment that says what the case shows",
            name(case)
        );
        let outcome = replay(case, Path::new("trace.jsonl"));
        if updating {
            update(case, &outcome);
        } else if let Some(failure) = compare(case, &outcome) {
            failures.push(format!("{} (JSON lines):\n{failure}", name(case)));
        }
    }
    check(failures);
}

/// The entries of a JSON-lines trace, encoded as a MessagePack trace.
fn to_msgpack(trace: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in trace.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("`{line}` is not JSON: {error}"));
        bytes.extend(rmp_serde::to_vec_named(&entry).expect("JSON values encode"));
    }
    bytes
}

#[test]
fn msgpack_traces_print_the_same_change_sets() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("replay-msgpack");
    std::fs::create_dir_all(&scratch).expect("a writable scratch directory");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for case in cases() {
        let json = replay(&case, Path::new("trace.jsonl"));
        // Rejected lines are located by line in JSON and by entry in MessagePack: only the
        // traces whose every entry is accepted print the same thing in both.
        if json.status != 0 {
            continue;
        }
        let trace = std::fs::read_to_string(case.join("trace.jsonl")).expect("a readable trace");
        let path = scratch.join(format!("{}.msgpack", name(&case)));
        std::fs::write(&path, to_msgpack(&trace)).expect("a writable scratch directory");
        let msgpack = replay(&case, &path);
        if msgpack.stdout != json.stdout || msgpack.status != 0 {
            failures.push(format!(
                "{}: exit status {} from MessagePack; stdout (- JSON lines, + MessagePack):\n{}{}",
                name(&case),
                msgpack.status,
                diff(&json.stdout, &msgpack.stdout),
                msgpack.stderr
            ));
        }
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "only {replayed} cases replayed from MessagePack"
    );
    check(failures);
}
