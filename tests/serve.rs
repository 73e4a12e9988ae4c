//! `vigil serve` end to end, over real HTTP on 127.0.0.1: transactions and their change sets,
//! queries and explanations, what-if, errors, tokens and scopes, the watch stream resumed
//! across a reconnect, metrics, and the journal across restarts (a torn tail, damage before
//! it, compaction).

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, PROGRAM, rows};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn directory(name: &str) -> daemon::Scratch {
    daemon::scratch(name, PROGRAM)
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    daemon::config(dir, extra)
}

#[test]
fn transactions_queries_explanations_and_errors() {
    let dir = directory("api");
    let daemon = Daemon::start(&config(&dir, ""), &[]);
    let (status, changes) = daemon.json(
        "POST",
        "/v1/transactions",
        r#"{"time": 100, "event": "links", "insert": {"edge": [[1, 2], [2, 3]]}}"#,
    );
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["time"], 1);
    assert_eq!(changes["now"], 100);
    // Only the views: the input `edge` and the clock are not in the change set.
    assert_eq!(
        rows(&changes),
        ["+1 path[1,2]", "+1 path[1,3]", "+1 path[2,3]"]
    );

    let (status, answer) = daemon.json("POST", "/v1/query", r#"{"query": "path(1, X)"}"#);
    assert_eq!(status, 200);
    assert_eq!(answer["variables"], serde_json::json!(["X"]));
    assert_eq!(answer["rows"], serde_json::json!([[2], [3]]));

    let (status, why) = daemon.json("POST", "/v1/why", r#"{"atom": "path(1, 3)"}"#);
    assert_eq!(status, 200, "{why}");
    let text = why["text"].as_str().unwrap();
    assert!(
        text.contains("edge(1, 2)") && text.contains("links"),
        "{text}"
    );

    // A what-if answers and changes nothing.
    let (status, hypothetical) =
        daemon.json("POST", "/v1/whatif", r#"{"retract": {"edge": [[1, 2]]}}"#);
    assert_eq!(status, 200);
    assert_eq!(rows(&hypothetical), ["-1 path[1,2]", "-1 path[1,3]"]);
    let (_, answer) = daemon.json("POST", "/v1/query", r#"{"query": "path(1, X)"}"#);
    assert_eq!(answer["rows"], serde_json::json!([[2], [3]]));

    // Refused requests name what is wrong and apply nothing.
    let (status, error) = daemon.json(
        "POST",
        "/v1/transactions",
        r#"{"insert": {"edge": [[3, 4]], "path": [[9, 9]]}}"#,
    );
    assert_eq!(status, 422);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("`path` is derived"),
        "{error}"
    );
    let (status, error) = daemon.json("POST", "/v1/transactions", r#"{"insrt": {}}"#);
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `insrt`"),
        "{error}"
    );
    let (status, error) = daemon.json("POST", "/v1/transactions", r#"{"time": 50}"#);
    assert_eq!(status, 422);
    assert!(
        error["error"].as_str().unwrap().contains("backwards"),
        "{error}"
    );
    let big = format!(r#"{{"event": "{}"}}"#, "x".repeat(5000));
    let (status, error) = daemon.json("POST", "/v1/transactions", &big);
    assert_eq!(status, 413, "{error}");
    let (status, _) = daemon.json("POST", "/v1/query", r#"{"query": "path(1, "}"#);
    assert_eq!(status, 422);
    let (status, _) = daemon.json("GET", "/v1/nothing", "");
    assert_eq!(status, 404);
    let (_, answer) = daemon.json("POST", "/v1/query", r#"{"query": "path(3, X)"}"#);
    assert_eq!(answer["rows"], serde_json::json!([]));

    // MessagePack in, MessagePack out, same schema.
    let entry = serde_json::json!({"insert": {"edge": [[3, 4]]}});
    let (status, body) = daemon.request(
        "POST",
        "/v1/transactions",
        &[("Content-Type", "application/msgpack")],
        &rmp_serde::to_vec_named(&entry).unwrap(),
    );
    assert_eq!(status, 200);
    let changes: serde_json::Value = rmp_serde::from_slice(&body).unwrap();
    assert_eq!(changes["time"], 2);

    let (status, metrics) = daemon.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("vigil_transactions_total{outcome=\"committed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_transactions_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_view_rows{view=\"path\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_transaction_seconds_count 4"),
        "{metrics}"
    );
    let stopped = daemon.stop();
    assert!(stopped.contains("vigil serve: stopped"), "{stopped}");
}

#[test]
fn tokens_and_scopes() {
    let dir = directory("tokens");
    let tokens = "[[token]]\nname = \"sensor\"\nsecret = \"ingest-secret-0123456789\"\nscopes = [\"ingest\"]\n[[token]]\nname = \"grafana\"\nsecret = \"read-secret-0123456789\"\nscopes = [\"read\"]\n";
    let daemon = Daemon::start(&config(&dir, tokens), &[]);
    let body = br#"{"time": 5, "insert": {"edge": [[1, 2]]}}"#;
    let (status, _) = daemon.request("POST", "/v1/transactions", &[], body);
    assert_eq!(status, 401);
    let read = ("Authorization", "Bearer read-secret-0123456789");
    let ingest = ("Authorization", "Bearer ingest-secret-0123456789");
    let (status, _) = daemon.request("POST", "/v1/transactions", &[read], body);
    assert_eq!(status, 403);
    let (status, _) = daemon.request(
        "POST",
        "/v1/transactions",
        &[("Authorization", "Bearer wrong")],
        body,
    );
    assert_eq!(status, 401);
    let (status, _) = daemon.request("POST", "/v1/transactions", &[ingest], body);
    assert_eq!(status, 200);
    let (status, _) = daemon.request(
        "POST",
        "/v1/query",
        &[ingest],
        br#"{"query": "path(X, Y)"}"#,
    );
    assert_eq!(status, 403);
    let (status, body) =
        daemon.request("POST", "/v1/query", &[read], br#"{"query": "path(X, Y)"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = daemon.request("POST", "/v1/admin/compact", &[read], b"");
    assert_eq!(status, 403);
    // Health needs no token.
    let (status, _) = daemon.request("GET", "/v1/health", &[], b"");
    assert_eq!(status, 200);
    daemon.stop();

    // Without tokens, the daemon refuses to listen beyond loopback.
    let path = dir.join("open.toml");
    std::fs::write(&path, "listen = \"0.0.0.0:0\"\nprogram = \"prog.dl\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

/// Reads server-sent events until `count` `changes` events arrived; returns their ids and data.
fn events(
    daemon: &Daemon,
    path: &str,
    last_event_id: Option<&str>,
    count: usize,
) -> Vec<(u64, serde_json::Value)> {
    let mut stream = TcpStream::connect(&daemon.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", daemon.address);
    if let Some(id) = last_event_id {
        head.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut found = Vec::new();
    let mut id = 0;
    let mut line = String::new();
    while found.len() < count {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(value) = line.trim().strip_prefix("id: ") {
            id = value.parse().unwrap();
        } else if let Some(data) = line.trim().strip_prefix("data: ") {
            found.push((id, serde_json::from_str(data).unwrap()));
        }
    }
    found
}

#[test]
fn the_watch_stream_resumes_after_a_reconnect() {
    let dir = directory("watch");
    let daemon = Daemon::start(&config(&dir, ""), &[]);
    for (time, edge) in [(10, "[1, 2]"), (20, "[5, 6]"), (30, "[2, 3]")] {
        let (status, _) = daemon.json(
            "POST",
            "/v1/transactions",
            &format!(r#"{{"time": {time}, "insert": {{"edge": [{edge}]}}}}"#),
        );
        assert_eq!(status, 200);
    }
    // From time 1 on: the change sets of times 2 and 3.
    let seen = events(&daemon, "/v1/watch/path?from=1", None, 2);
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(rows(&seen[1].1), ["+1 path[1,3]", "+1 path[2,3]"]);
    // A reconnect with the last id it saw misses nothing that came after.
    let (status, _) = daemon.json(
        "POST",
        "/v1/transactions",
        r#"{"time": 40, "retract": {"edge": [[1, 2]]}}"#,
    );
    assert_eq!(status, 200);
    let seen = events(&daemon, "/v1/watch/path", Some("3"), 1);
    assert_eq!(seen[0].0, 4);
    assert_eq!(rows(&seen[0].1), ["-1 path[1,2]", "-1 path[1,3]"]);
    let (status, _) = daemon.json("GET", "/v1/watch/nothing", "");
    assert_eq!(status, 404);
    daemon.stop();
}

#[test]
fn the_journal_brings_back_the_same_state() {
    let dir = directory("journal");
    let config = config(&dir, "");
    let daemon = Daemon::start(&config, &[]);
    let writes = [
        r#"{"time": 10, "event": "poll", "insert": {"reading": [["pve", 90, null]], "edge": [[1, 2]]}}"#,
        r#"{"time": 50, "insert": {"reading": [["pve", 90, null]]}}"#,
        r#"{"time": 80, "insert": {"edge": [[2, 3]]}}"#,
    ];
    for write in writes {
        let (status, body) = daemon.json("POST", "/v1/transactions", write);
        assert_eq!(status, 200, "{body}");
    }
    let query = |daemon: &Daemon, q: &str| {
        daemon
            .json("POST", "/v1/query", &format!(r#"{{"query": "{q}"}}"#))
            .1["rows"]
            .clone()
    };
    let before = (
        query(&daemon, "path(X, Y)"),
        query(&daemon, "hot(N)"),
        daemon.json("GET", "/v1/health", "").1,
    );
    assert_eq!(before.1, serde_json::json!([["pve"]]));
    daemon.stop();

    // A restart replays the journal to the same relations, logical time and clock.
    let daemon = Daemon::start(&config, &[]);
    assert_eq!(
        (
            query(&daemon, "path(X, Y)"),
            query(&daemon, "hot(N)"),
            daemon.json("GET", "/v1/health", "").1
        ),
        before
    );
    // The stamp came back too: an identical reading does not move it.
    let (_, changes) = daemon.json(
        "POST",
        "/v1/transactions",
        r#"{"time": 90, "insert": {"reading": [["pve", 90, null]]}}"#,
    );
    assert_eq!(rows(&changes), Vec::<String>::new());
    daemon.stop();

    // A torn last frame (a crash mid-write) is dropped with a warning.
    let journal = dir.join("data/journal.vj");
    let intact = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, [&intact[..], &[7, 0, 0, 0, 1, 2, 3]].concat()).unwrap();
    let mut daemon = Daemon::start(&config, &[]);
    assert_eq!(daemon.json("GET", "/v1/health", "").1["time"], 4);
    let mut stderr = daemon.child.stderr.take().unwrap();
    daemon.stop();
    let mut warning = String::new();
    stderr.read_to_string(&mut warning).unwrap();
    assert!(warning.contains("torn last frame"), "{warning}");
    assert_eq!(std::fs::read(&journal).unwrap(), intact);

    // Damage before the tail stops start-up and names the offset; nothing is changed. The
    // first frame follows the 16-byte header.
    let mut damaged = intact.clone();
    damaged[16 + 36 + 3] ^= 0x20;
    std::fs::write(&journal, &damaged).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the frame at byte 16 is damaged"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&journal).unwrap(), damaged);
    // Unless the operator asks to truncate there.
    let daemon = Daemon::start(&config, &["--truncate-journal-at", "16"]);
    assert_eq!(daemon.json("GET", "/v1/health", "").1["time"], 0);
    daemon.stop();
}

#[test]
fn compaction_keeps_the_state_and_shortens_the_journal() {
    let dir = directory("compact");
    let config = config(&dir, "");
    let daemon = Daemon::start(&config, &[]);
    for time in 1..=20 {
        let write = format!(
            r#"{{"time": {time}, "insert": {{"edge": [[{time}, {}]]}}}}"#,
            time + 1
        );
        assert_eq!(daemon.json("POST", "/v1/transactions", &write).0, 200);
    }
    let (status, status_body) = daemon.json("POST", "/v1/admin/compact", "");
    assert_eq!(status, 200, "{status_body}");
    assert_eq!(status_body["journal_records"], 0);
    assert_eq!(
        daemon
            .json(
                "POST",
                "/v1/transactions",
                r#"{"time": 30, "insert": {"edge": [[21, 22]]}}"#
            )
            .0,
        200
    );
    let paths = daemon
        .json("POST", "/v1/query", r#"{"query": "path(1, X)"}"#)
        .1["rows"]
        .clone();
    daemon.stop();
    let daemon = Daemon::start(&config, &[]);
    assert_eq!(daemon.json("GET", "/v1/health", "").1["time"], 21);
    assert_eq!(
        daemon
            .json("POST", "/v1/query", r#"{"query": "path(1, X)"}"#)
            .1["rows"],
        paths
    );
    assert_eq!(paths.as_array().unwrap().len(), 21);
    daemon.stop();
}
