//! What the golden tests of `vigil replay` share: a run's outcome, the expected status and
//! output of a case directory, a readable line diff, and rewriting the expectations.

use std::path::Path;
use std::process::Output;

/// What one run of the binary printed, and how it exited.
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

impl Outcome {
    pub fn of(output: Output) -> Outcome {
        Outcome {
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
            // Killed by a signal: no code, and never what a case expects.
            status: output.status.code().unwrap_or(-1),
        }
    }
}

/// The exit status a case directory expects: its `status` file, or 0.
pub fn expected_status(case: &Path) -> Result<i32, String> {
    match std::fs::read_to_string(case.join("status")) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|error| format!("status: `{}`: {error}", text.trim())),
        Err(_) => Ok(0),
    }
}

/// Compares an outcome with the case's `expected.txt` and `status`; returns what differs.
pub fn compare(case: &Path, outcome: &Outcome) -> Option<String> {
    let expected = match std::fs::read_to_string(case.join("expected.txt")) {
        Ok(text) => text,
        Err(error) => return Some(format!("expected.txt: {error}\n")),
    };
    let status = match expected_status(case) {
        Ok(status) => status,
        Err(problem) => return Some(format!("{problem}\n")),
    };
    if outcome.stdout == expected && outcome.status == status {
        return None;
    }
    let mut report = String::new();
    if outcome.status != status {
        report.push_str(&format!(
            "exit status {}, expected {status}\n",
            outcome.status
        ));
    }
    if outcome.stdout != expected {
        report.push_str("stdout (- expected, + actual):\n");
        report.push_str(&diff(&expected, &outcome.stdout));
    }
    if !outcome.stderr.is_empty() {
        report.push_str(&format!("stderr:\n{}", outcome.stderr));
    }
    Some(report)
}

/// Rewrites a case's expectations from an outcome (`UPDATE_EXPECT=1`, for reviewed changes).
pub fn update(case: &Path, outcome: &Outcome) {
    std::fs::write(case.join("expected.txt"), &outcome.stdout).expect("writable fixtures");
    let status = case.join("status");
    if outcome.status == 0 {
        if status.exists() {
            std::fs::remove_file(status).expect("writable fixtures");
        }
    } else {
        std::fs::write(status, format!("{}\n", outcome.status)).expect("writable fixtures");
    }
}

/// A line diff of `expected` and `actual`: common lines indented, missing lines with `-`,
/// unexpected ones with `+` (a longest common subsequence, plenty for these sizes).
pub fn diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    // common[i][j]: the length of the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut text = String::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            text.push_str(&format!("   {}\n", old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            text.push_str(&format!("-  {}\n", old[i]));
            i += 1;
        } else {
            text.push_str(&format!("+  {}\n", new[j]));
            j += 1;
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        text.push_str("(the outputs differ in their final newline)\n");
    }
    text
}
