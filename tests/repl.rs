//! End-to-end tests of `vigil repl`.
//!
//! Transcripts: each `fixtures/repl/<case>.script` is piped into `vigil repl --echo`, run in
//! `fixtures/repl/` with the arguments its first line gives (`// vigil repl graph.dl -F
//! graph`). Standard output and standard error go to one pipe, so that each answer and each
//! error sits under the line that caused it, and the whole of it, followed by a last line
//! `exit status: N`, must equal `<case>.expected` (`UPDATE_EXPECT=1` rewrites those files, for
//! a person to review).
//!
//! Then the REPL without `--echo` (only the answers on standard output, the errors on standard
//! error), a program that does not load, and a session at a terminal: completion, history
//! recall and the history file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repl")
}

/// Runs `vigil repl` in `fixtures/repl` with `script` on its standard input.
fn run(arguments: &[&str], script: &str, merged: bool) -> (String, String, i32) {
    let (mut output, writer) = std::io::pipe().expect("a pipe");
    let (mut errors, error_writer) = if merged {
        (None, writer.try_clone().expect("a second end of the pipe"))
    } else {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        (Some(reader), writer)
    };
    let mut child = {
        // The command holds the pipes' write ends until it is dropped, at the end of this
        // block; the reads below end when the REPL closes its own.
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .arg("repl")
            .args(arguments)
            .current_dir(cases())
            .env("VIGIL_HISTORY", "")
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(error_writer);
        command.spawn().expect("vigil runs")
    };
    let mut input = child.stdin.take().expect("a piped standard input");
    let script = script.to_string();
    let feeder = std::thread::spawn(move || input.write_all(script.as_bytes()));
    let errors = errors.take().map(|mut errors| {
        std::thread::spawn(move || {
            let mut stderr = String::new();
            errors.read_to_string(&mut stderr).map(|_| stderr)
        })
    });
    let mut stdout = String::new();
    output.read_to_string(&mut stdout).expect("UTF-8 output");
    let stderr = errors.map_or(String::new(), |reader| {
        reader
            .join()
            .expect("the reader does not panic")
            .expect("UTF-8 errors")
    });
    let status = child.wait().expect("vigil ends");
    // The REPL may stop reading before the end of the script (`.quit`, a program that does
    // not load), which closes the pipe under the feeder.
    match feeder.join().expect("the feeder does not panic") {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("the script is written"),
    }
    (stdout, stderr, status.code().expect("an exit status"))
}

fn transcript(case: &str) {
    let script_path = cases().join(format!("{case}.script"));
    let script = std::fs::read_to_string(&script_path).expect("the script exists");
    let arguments: Vec<&str> = script
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("// vigil repl"))
        .expect("the script starts with `// vigil repl ARGUMENTS`")
        .split_whitespace()
        .collect();
    let mut all = vec!["--echo"];
    all.extend(arguments);
    let (output, _, status) = run(&all, &script, true);
    let actual = format!("{output}exit status: {status}\n");
    let expected_path = cases().join(format!("{case}.expected"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, &actual).expect("the expected transcript is written");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "the transcript of `{case}` differs from {} from line {}:\n\
             --- expected\n{}\n--- actual\n{}",
            expected_path.display(),
            first + 1,
            expected
                .lines()
                .skip(first)
                .take(8)
                .collect::<Vec<_>>()
                .join("\n"),
            actual
                .lines()
                .skip(first)
                .take(8)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

#[test]
fn transcript_queries() {
    transcript("queries");
}

#[test]
fn transcript_changes() {
    transcript("changes");
}

#[test]
fn transcript_transactions() {
    transcript("transactions");
}

#[test]
fn transcript_time() {
    transcript("time");
}

#[test]
fn transcript_commands() {
    transcript("commands");
}

#[test]
fn transcript_why() {
    transcript("why");
}

#[test]
fn transcript_errors() {
    transcript("errors");
}

#[test]
fn without_a_terminal_only_the_answers_are_printed() {
    let script = "?- path(1, X).\n\n// a comment\n?- nope(X).\n?- edge(1, 2).\n";
    let (stdout, stderr, status) = run(&["graph.dl", "-F", "graph"], script, false);
    assert_eq!(stdout, "X = 2.\nX = 3.\n2 rows.\nedge(1, 2)\n1 row.\n");
    assert_eq!(
        stderr,
        "4:4: error: unknown relation `nope`\n  | ?- nope(X).\n  |    ^^^^\n"
    );
    assert_eq!(status, 1, "a command failed");

    let (stdout, stderr, status) = run(&["graph.dl"], "+edge(1, 2).\n.quit\n?- nope(X).\n", false);
    assert_eq!(stdout, "+1 edge(1, 2)\n+1 path(1, 2)\n");
    assert_eq!(stderr, "");
    assert_eq!(status, 0, "every command succeeded");
}

#[test]
fn a_program_that_does_not_load_ends_the_session_at_once() {
    let (stdout, stderr, status) = run(&["../errors/arity_mismatch.dl"], "?- a(X).\n", false);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("arity_mismatch.dl:6:15: error: relation `a` has 1 column")
            && stderr.ends_with("2 errors in ../errors/arity_mismatch.dl\n"),
        "{stderr}"
    );
    assert_eq!(status, 1);
}

/// A session at a terminal: Tab completes a relation name, the up arrow recalls the last
/// command, and the history file in the (temporary) home holds it.
#[test]
fn at_a_terminal_completion_and_history_work() {
    let home = std::env::temp_dir().join(format!("vigil-repl-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("a temporary home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command
        .args(["repl", "graph.dl", "-F", "graph"])
        .current_dir(cases())
        .env("HOME", &home)
        .env("TERM", "xterm")
        .env_remove("VIGIL_HISTORY")
        .env_remove("XDG_STATE_HOME");
    let mut session =
        rexpect::session::spawn_command(command, Some(30_000)).expect("a pseudo-terminal");
    session
        .exp_string("`.help` lists the commands.")
        .expect("the banner");
    session.exp_string("vigil> ").expect("the prompt");
    // `pa` completes to `path(`: the query only parses if it did.
    session.send("?- pa\t").expect("typed");
    session.flush().expect("sent");
    session.exp_string("path(").expect("the completion");
    session.send("1, X).\r").expect("typed");
    session.flush().expect("sent");
    session.exp_string("X = 3.").expect("the answer");
    session.exp_string("2 rows.").expect("the count");
    session.exp_string("vigil> ").expect("the prompt");
    // The up arrow recalls the query; Enter runs it again.
    session.send("\x1b[A").expect("typed");
    session.flush().expect("sent");
    session
        .exp_string("?- path(1, X).")
        .expect("the recalled line");
    session.send("\r").expect("typed");
    session.flush().expect("sent");
    session.exp_string("2 rows.").expect("the answer again");
    session.exp_string("vigil> ").expect("the prompt");
    session.send(".quit\r").expect("typed");
    session.flush().expect("sent");
    session.exp_eof().expect("the REPL ends");
    let history = std::fs::read_to_string(home.join(".vigil_history")).expect("a history file");
    std::fs::remove_dir_all(&home).expect("the temporary home is removed");
    assert!(
        history.lines().any(|line| line == "?- path(1, X)."),
        "the history holds the query: {history:?}"
    );
    assert!(history.lines().any(|line| line == ".quit"), "{history:?}");
}
