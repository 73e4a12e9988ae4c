//! `vigil repl --connect URL`: the REPL on a running `vigil serve`, over real HTTP on
//! 127.0.0.1.
//!
//! The same script, piped into a local `vigil repl PROGRAM` and into `vigil repl --connect`
//! on a daemon running that program, must print the same (standard output and standard error
//! in one pipe, then the exit status); so must the reviewed transcripts of `fixtures/repl/`
//! that need no local files. Then what cannot work remotely, a daemon that cannot be reached,
//! URLs that are not http://, bearer tokens, and a session at a terminal (completion of the
//! daemon's relation names).

#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program with recursion, a clock, and a keyed, stamped stream.
const PROGRAM: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl edge(x: number, y: number)
.input edge(IO=stream)
.decl label(node: number, name: symbol, weight: float)
.input label(IO=stream)
.decl path(x: number, y: number)
.output path
.decl has_cycle()
.decl reading(node: symbol, watts: number, since: number)
.input reading(IO=stream, key="node", stamp="since")
.decl hot(node: symbol)
.output hot
.printsize hot

path(x, y) :- edge(x, y).
path(x, z) :- path(x, y), edge(y, z).
has_cycle() :- path(x, x).
hot(n) :- reading(n, w, since), w > 100, now(t), t - since >= 60.
"#;

/// Every command that works remotely, and the errors a person makes.
const SCRIPT: &str = r#"// a session, on a local engine or on a daemon
+edge(1, 2). +edge(2, 3).
+label(1, "one", 1.5). +label(2, "two, or \"2\"", 2).
?- path(1, X).
path(X, Y)?
?- label(N, Name, W).
?- path(3, _).
?- has_cycle().
begin
+edge(3, 1).
-edge(1, 2).
?- path(1, X).
whatif
.time
commit
?- has_cycle().
begin.
+edge(1, 2).
rollback
whatif +edge(1, 2). -edge(3, 1).
?- edge(X, Y).
+reading("n1", 150, _).
.tick 30
+reading("n1", 150, _).
.tick 30
?- hot(N).
begin
.tick 45
+reading("n2", 120, _).
whatif -reading("n1", _, _).
.time
commit
?- reading(N, W, S).
-reading("n3", _, _).
-edge(7, 8). -label(9, "x", 1). -edge(8, 9). +edge(4, 5).
.changes outputs
+edge(5, 6).
-reading("n1", _, _).
.changes all
why path(2, 1)
why not path(3, 3)
why --json path(2, 3)
why not --json hot("n9")
why has_cycle()
why path(4, 1)
.decls
.rules
.rules path
.rules edge
.dump path
.dump has_cycle
.size
.size hot
.time
// errors, each placed on its line, and the session goes on
?- nope(X).
?- path(1).
?- path("a", X).
?- path(1, 2
+path(1, 2).
+edge(1, "x").
+edge(X, 1).
+edge(1, 2). +label(1, 2, 3).
-reading(_, 150, _).
+now(500).
begin
+edge(9, "nine").
+edge(9, 10).
commit
why path(1, X)
why nope(1)
why not path(1)
.dump nope
.rules nope
.size nope
.tick -5
.tick soon
commit
.frobnicate
.help
.quit
?- path(X, Y).
"#;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repl")
}

fn directory(name: &str) -> daemon::Scratch {
    daemon::Scratch::new(&format!("repl-connect-{name}"))
}

/// A `vigil serve` on 127.0.0.1, killed when dropped, and its URL.
struct Served {
    url: String,
    _daemon: Daemon,
}

/// Serves `program` (and the initial `facts`) with its data in `dir`; `extra` is more of the
/// config.
fn serve(dir: &Path, program: &Path, facts: Option<&Path>, extra: &str) -> Served {
    let facts = facts.map_or(String::new(), |facts| format!("facts = {facts:?}\n"));
    let base = format!(
        "listen = \"127.0.0.1:0\"\nprogram = {program:?}\n{facts}data_dir = \"data\"\nclock = \"event\"\nsnapshot_every = 0\n"
    );
    let daemon = Daemon::start(&daemon::config_with(dir, &base, extra), &[]);
    Served {
        url: format!("http://{}", daemon.address),
        _daemon: daemon,
    }
}

/// Runs `vigil repl ARGUMENTS` in `dir` with `script` on its standard input: what it
/// printed, standard output and standard error in one pipe, then `exit status: N`.
fn repl(dir: &Path, arguments: &[&str], environment: &[(&str, &str)], script: &str) -> String {
    let (mut output, writer) = std::io::pipe().expect("a pipe");
    let mut child = {
        // The command holds the pipe's write ends until it is dropped, at the end of this
        // block; the read below ends when the REPL closes its own.
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .arg("repl")
            .args(arguments)
            .current_dir(dir)
            .env("VIGIL_HISTORY", "")
            .env_remove("VIGIL_TOKEN")
            .envs(environment.iter().copied())
            .stdin(Stdio::piped())
            .stdout(writer.try_clone().expect("a second end of the pipe"))
            .stderr(writer);
        command.spawn().expect("vigil repl runs")
    };
    let mut input = child.stdin.take().expect("a piped standard input");
    let script = script.to_string();
    let feeder = std::thread::spawn(move || input.write_all(script.as_bytes()));
    let mut printed = String::new();
    output.read_to_string(&mut printed).expect("UTF-8 output");
    let status = child.wait().expect("vigil repl ends");
    // `.quit` stops the reading before the end of the script.
    match feeder.join().expect("the feeder does not panic") {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("the script is written"),
    }
    format!(
        "{printed}exit status: {}\n",
        status.code().expect("an exit status")
    )
}

/// The first lines where two transcripts differ, for a failure message.
fn difference(expected: &str, actual: &str) -> String {
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or(expected.lines().count().min(actual.lines().count()));
    let from = |text: &str| {
        text.lines()
            .skip(first)
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "from line {}:\n--- expected\n{}\n--- actual\n{}",
        first + 1,
        from(expected),
        from(actual)
    )
}

#[test]
fn a_session_on_a_daemon_prints_what_a_local_session_prints() {
    let dir = directory("same");
    let program = dir.join("prog.dl");
    std::fs::write(&program, PROGRAM).expect("the program is written");
    let program_path = program.to_str().expect("a UTF-8 path");
    let local = repl(&dir, &["--echo", program_path], &[], SCRIPT);
    let daemon = serve(&dir, &program, None, "");
    let remote = repl(&dir, &["--echo", "--connect", &daemon.url], &[], SCRIPT);
    assert!(
        local.contains("exit status: 1")
            && local.contains("  by rule path(x, z) :- path(x, y), edge(y, z)."),
        "the script fails somewhere and explains: {local}"
    );
    assert!(
        remote == local,
        "the session on the daemon differs {}",
        difference(&local, &remote)
    );

    // The state is the daemon's: another session sees what this one committed.
    let later = repl(
        &dir,
        &["--connect", &daemon.url],
        &[],
        "?- edge(9, X).\n.time\n",
    );
    assert_eq!(
        later,
        "X = 10.\n1 row.\nlogical time: 13\nevent time: 105\nexit status: 0\n"
    );
}

/// The reviewed transcripts of `fixtures/repl/` that use no local file after the start: the
/// daemon loads the facts that `-F` gives the local session.
#[test]
fn the_fixture_transcripts_are_the_same_on_a_daemon() {
    for (case, program, facts) in [
        ("queries", "graph.dl", Some("graph")),
        ("transactions", "graph.dl", Some("graph")),
        ("time", "power.dl", None),
    ] {
        let dir = directory(case);
        let facts = facts.map(|facts| fixtures().join(facts));
        let daemon = serve(&dir, &fixtures().join(program), facts.as_deref(), "");
        let script_path = fixtures().join(format!("{case}.script"));
        let script = std::fs::read_to_string(&script_path).expect("the script");
        let remote = repl(
            &fixtures(),
            &["--echo", "--connect", &daemon.url],
            &[],
            &script,
        );
        let expected = std::fs::read_to_string(fixtures().join(format!("{case}.expected")))
            .expect("the expected transcript");
        assert!(
            remote == expected,
            "`{case}` on a daemon differs {}",
            difference(&expected, &remote)
        );
    }
}

#[test]
fn what_cannot_work_remotely_says_so_and_the_session_goes_on() {
    let dir = directory("remote-only");
    let daemon = serve(&dir, &fixtures().join("graph.dl"), None, "");
    let url = &daemon.url;
    let script = ".load graph.dl\n.facts graph\n+edge(9, 9). -edge(9, 9).\nbegin\n+edge(1, 2).\n-edge(1, 2).\ncommit\n?- edge(X, Y).\n";
    let printed = repl(&fixtures(), &["--connect", url], &[], script);
    let expected = format!(
        "1:1: error: `.load` needs a local engine: the daemon at {url} runs the program it was started with (restart `vigil serve` with another program, or run `vigil repl FILE`)
  | .load graph.dl
  | ^^^^^
2:1: error: `.facts` needs a local engine: it reads files on this machine (insert the facts with `+R(...).`, or give the daemon at {url} a `facts` directory in its config)
  | .facts graph
  | ^^^^^^
3:15: error: `-edge(9, 9)` follows `+edge(9, 9)` in this transaction and may undo it, which a daemon's transaction cannot say: it applies every retraction before the inserts. Over --connect, commit them separately
  | +edge(9, 9). -edge(9, 9).
  |               ^^^^^^^^^^
6:2: error: `-edge(1, 2)` follows `+edge(1, 2)` in this transaction and may undo it, which a daemon's transaction cannot say: it applies every retraction before the inserts. Over --connect, commit them separately
  | -edge(1, 2).
  |  ^^^^^^^^^^
+1 edge(1, 2)
+1 path(1, 2)
X = 1, Y = 2.
1 row.
exit status: 1
"
    );
    assert!(printed == expected, "{}", difference(&expected, &printed));
}

#[test]
fn a_daemon_that_cannot_be_reached_is_an_error_naming_the_url() {
    // A port that nothing listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    drop(listener);
    let dir = directory("unreachable");
    let printed = repl(
        &dir,
        &["--connect", &url],
        &[],
        "?- path(1, X).\n.changes outputs\n.time\n",
    );
    let expected = format!(
        "1:1: error: cannot reach the daemon at {url}: Connection refused (os error 111)
  | ?- path(1, X).
  | ^^^^^^^^^^^^^^
change sets show the .output relations.
3:1: error: cannot reach the daemon at {url}: Connection refused (os error 111)
  | .time
  | ^^^^^
exit status: 1
"
    );
    assert!(printed == expected, "{}", difference(&expected, &printed));

    for (url, says) in [
        (
            "https://127.0.0.1:7070",
            "only http:// URLs are supported, not https://",
        ),
        ("127.0.0.1:7070", "is not an http:// URL"),
        ("http://", "is not a daemon's URL"),
    ] {
        let printed = repl(&dir, &["--connect", url], &[], "?- path(1, X).\n");
        assert!(
            printed.contains(says) && printed.ends_with("exit status: 1\n"),
            "{url}: {printed}"
        );
    }
}

#[test]
fn bearer_tokens_come_from_the_option_or_the_environment() {
    let dir = directory("tokens");
    let tokens = "[[token]]\nname = \"person\"\nsecret = \"read-and-ingest-0123456789\"\nscopes = [\"read\", \"ingest\"]\n[[token]]\nname = \"grafana\"\nsecret = \"read-only-0123456789\"\nscopes = [\"read\"]\n";
    let daemon = serve(&dir, &fixtures().join("graph.dl"), None, tokens);
    let url = daemon.url.as_str();
    let script = "+edge(1, 2).\n?- path(X, Y).\n";
    let without = repl(&dir, &["--connect", url], &[], "?- path(X, Y).\n");
    assert_eq!(
        without,
        "1:1: error: a bearer token is required: `Authorization: Bearer SECRET` (give it with --token, or in the VIGIL_TOKEN environment variable)\n  | ?- path(X, Y).\n  | ^^^^^^^^^^^^^^\nexit status: 1\n"
    );
    let with = repl(
        &dir,
        &["--connect", url, "--token", "read-and-ingest-0123456789"],
        &[],
        script,
    );
    assert_eq!(
        with,
        "+1 edge(1, 2)\n+1 path(1, 2)\nX = 1, Y = 2.\n1 row.\nexit status: 0\n"
    );
    let read_only = repl(
        &dir,
        &["--connect", url],
        &[("VIGIL_TOKEN", "read-only-0123456789")],
        "+edge(2, 3).\n?- path(X, Y).\n",
    );
    assert_eq!(
        read_only,
        "1:1: error: this token lacks the `ingest` scope\n  | +edge(2, 3).\n  | ^^^^^^^^^^^^\nX = 1, Y = 2.\n1 row.\nexit status: 1\n"
    );
}

/// At a terminal: the banner names the daemon, and Tab completes the daemon's relation names.
#[test]
fn at_a_terminal_completion_knows_the_daemons_relations() {
    let dir = directory("terminal");
    let daemon = serve(
        &dir,
        &fixtures().join("graph.dl"),
        Some(&fixtures().join("graph")),
        "",
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command
        .args(["repl", "--connect", &daemon.url])
        .current_dir(&*dir)
        .env("VIGIL_HISTORY", "")
        .env("TERM", "xterm");
    let mut session =
        rexpect::session::spawn_command(command, Some(30_000)).expect("a pseudo-terminal");
    session
        .exp_string(&format!(
            "{}, 5 relations. `.help` lists the commands.",
            daemon.url
        ))
        .expect("the banner");
    // Types `keys`, then waits for each of `shown` in turn.
    let mut exchange = |keys: &str, shown: &[&str]| {
        session.send(keys).expect("typed");
        session.flush().expect("sent");
        for text in shown {
            session
                .exp_string(text)
                .unwrap_or_else(|error| panic!("after {keys:?}, {text:?}: {error}"));
        }
    };
    // The relation names come from the daemon: `h` completes to `has_cycle(`, and the query
    // only parses if it did.
    exchange("", &["vigil> "]);
    exchange("?- h\t", &["has_cycle("]);
    exchange(").\r", &["no.", "vigil> "]);
    exchange("?- path(1, X).\r", &["X = 3.", "2 rows.", "vigil> "]);
    exchange(".quit\r", &[]);
    session.exp_eof().expect("the REPL ends");
}
