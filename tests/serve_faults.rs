//! `vigil serve` under faults, through the binary: SIGKILL at random moments while random
//! transactions stream in (every acknowledged transaction survives, and the views equal a
//! from-scratch evaluation), a damaged journal or snapshot on disk (a torn last frame, a
//! flipped byte before the tail, a truncated or missing snapshot), and a stdout that goes
//! nowhere.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, read_response, start_fails};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Recursion (the transitive closure) and negation over it.
const PROGRAM: &str = r#"
.decl edge(a: number, b: number)
.input edge(IO=stream)
.decl node(n: number)
.input node(IO=stream)
.decl path(a: number, b: number)
.output path
path(a, b) :- edge(a, b).
path(a, c) :- path(a, b), edge(b, c).
.decl acyclic(n: number)
.output acyclic
acyclic(n) :- node(n), !path(n, n).
.decl unreached(n: number)
.output unreached
unreached(n) :- node(n), !path(0, n).
"#;

/// SplitMix64, seeded, so that a failing seed can be replayed.
use vigil_homelab::Rng;

/// One transaction of the stream: its event time and its writes.
#[derive(Clone, Debug, Default)]
struct Tx {
    time: i64,
    retract_edges: Vec<(i64, i64)>,
    retract_nodes: Vec<i64>,
    insert_edges: Vec<(i64, i64)>,
    insert_nodes: Vec<i64>,
}

impl Tx {
    fn json(&self, index: u64) -> String {
        let pairs = |edges: &[(i64, i64)]| -> Vec<[i64; 2]> {
            edges.iter().map(|&(a, b)| [a, b]).collect()
        };
        let singles = |nodes: &[i64]| -> Vec<[i64; 1]> { nodes.iter().map(|&n| [n]).collect() };
        let mut entry = serde_json::json!({"time": self.time, "event": format!("tx {index}")});
        let mut put = |op: &str, relation: &str, rows: serde_json::Value| {
            if rows.as_array().is_some_and(|rows| !rows.is_empty()) {
                if entry.get(op).is_none() {
                    entry[op] = serde_json::json!({});
                }
                entry[op][relation] = rows;
            }
        };
        put(
            "retract",
            "edge",
            serde_json::json!(pairs(&self.retract_edges)),
        );
        put(
            "retract",
            "node",
            serde_json::json!(singles(&self.retract_nodes)),
        );
        put(
            "insert",
            "edge",
            serde_json::json!(pairs(&self.insert_edges)),
        );
        put(
            "insert",
            "node",
            serde_json::json!(singles(&self.insert_nodes)),
        );
        entry.to_string()
    }
}

/// The acknowledged inputs, and the logical and event time they reached.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    edges: BTreeSet<(i64, i64)>,
    nodes: BTreeSet<i64>,
    /// Logical time: the number of committed transactions.
    time: u64,
    now: i64,
}

/// The views, evaluated from scratch.
#[derive(Debug, PartialEq, Eq)]
struct Views {
    path: BTreeSet<Vec<i64>>,
    acyclic: BTreeSet<Vec<i64>>,
    unreached: BTreeSet<Vec<i64>>,
}

impl Model {
    /// Retractions, then insertions, as the daemon applies an entry.
    fn apply(&mut self, tx: &Tx) {
        for edge in &tx.retract_edges {
            self.edges.remove(edge);
        }
        for node in &tx.retract_nodes {
            self.nodes.remove(node);
        }
        self.edges.extend(tx.insert_edges.iter().copied());
        self.nodes.extend(tx.insert_nodes.iter().copied());
        self.time += 1;
        self.now = tx.time;
    }

    fn views(&self) -> Views {
        // Transitive closure by iterating to a fixpoint.
        let mut path: BTreeSet<(i64, i64)> = self.edges.clone();
        loop {
            let mut more = Vec::new();
            for &(a, b) in &path {
                for &(_, c) in self.edges.range((b, i64::MIN)..=(b, i64::MAX)) {
                    if !path.contains(&(a, c)) {
                        more.push((a, c));
                    }
                }
            }
            if more.is_empty() {
                break;
            }
            path.extend(more);
        }
        Views {
            acyclic: self
                .nodes
                .iter()
                .filter(|&&n| !path.contains(&(n, n)))
                .map(|&n| vec![n])
                .collect(),
            unreached: self
                .nodes
                .iter()
                .filter(|&&n| !path.contains(&(0, n)))
                .map(|&n| vec![n])
                .collect(),
            path: path.into_iter().map(|(a, b)| vec![a, b]).collect(),
        }
    }

    /// A random transaction: one to four writes on nodes 0..8, retractions mostly of tuples
    /// that are there; now and then one that only moves the clock. Its time never goes back.
    fn random(&self, rng: &mut Rng) -> Tx {
        let mut tx = Tx {
            time: self.now + rng.below(3) as i64,
            ..Tx::default()
        };
        if rng.chance(5) {
            return tx;
        }
        for _ in 0..1 + rng.below(4) {
            let retract = rng.chance(35);
            let value = |rng: &mut Rng| rng.below(8) as i64;
            if rng.chance(70) {
                let edge = match (retract && !self.edges.is_empty() && rng.chance(80), retract) {
                    (true, _) => *self
                        .edges
                        .iter()
                        .nth(rng.below(self.edges.len() as u64) as usize)
                        .unwrap(),
                    _ => (value(rng), value(rng)),
                };
                if retract {
                    tx.retract_edges.push(edge);
                } else {
                    tx.insert_edges.push(edge);
                }
            } else {
                let node = if retract && !self.nodes.is_empty() && rng.chance(80) {
                    *self
                        .nodes
                        .iter()
                        .nth(rng.below(self.nodes.len() as u64) as usize)
                        .unwrap()
                } else {
                    value(rng)
                };
                if retract {
                    tx.retract_nodes.push(node);
                } else {
                    tx.insert_nodes.push(node);
                }
            }
        }
        tx
    }
}

/// The rows of a relation as sets of number tuples.
fn relation(daemon: &Daemon, atom: &str) -> BTreeSet<Vec<i64>> {
    let (status, answer) = daemon.json(
        "POST",
        "/v1/query",
        &serde_json::json!({ "query": atom }).to_string(),
    );
    assert_eq!(status, 200, "{atom}: {answer}");
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        })
        .collect()
}

/// The daemon's logical and event time.
fn health(daemon: &Daemon) -> (u64, i64) {
    let (status, health) = daemon.json("GET", "/v1/health", "");
    assert_eq!(status, 200, "{health}");
    (
        health["time"].as_u64().unwrap(),
        health["now"].as_i64().unwrap(),
    )
}

/// Checks that the daemon holds exactly `model`: its times, its inputs and its views.
fn assert_holds(daemon: &Daemon, model: &Model, context: &str) {
    assert_eq!(
        health(daemon),
        (model.time, model.now),
        "{context}: logical and event time"
    );
    let edges: BTreeSet<Vec<i64>> = model.edges.iter().map(|&(a, b)| vec![a, b]).collect();
    let nodes: BTreeSet<Vec<i64>> = model.nodes.iter().map(|&n| vec![n]).collect();
    assert_eq!(relation(daemon, "edge(A, B)"), edges, "{context}: edge");
    assert_eq!(relation(daemon, "node(N)"), nodes, "{context}: node");
    let views = Views {
        path: relation(daemon, "path(A, B)"),
        acyclic: relation(daemon, "acyclic(N)"),
        unreached: relation(daemon, "unreached(N)"),
    };
    assert_eq!(views, model.views(), "{context}: the views");
}

/// The change set a transaction should answer: the views' differences, as sorted strings.
fn expected_changes(before: &Views, after: &Views) -> BTreeSet<String> {
    let mut changes = BTreeSet::new();
    for (name, old, new) in [
        ("path", &before.path, &after.path),
        ("acyclic", &before.acyclic, &after.acyclic),
        ("unreached", &before.unreached, &after.unreached),
    ] {
        for tuple in new.difference(old) {
            changes.insert(format!("+1 {name}{tuple:?}"));
        }
        for tuple in old.difference(new) {
            changes.insert(format!("-1 {name}{tuple:?}"));
        }
    }
    changes
}

fn answered_changes(changes: &serde_json::Value) -> BTreeSet<String> {
    changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let tuple: Vec<i64> = row["tuple"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            format!(
                "{:+} {}{tuple:?}",
                row["diff"].as_i64().unwrap(),
                row["relation"].as_str().unwrap()
            )
        })
        .collect()
}

/// What the stream of one round left behind.
struct Stream {
    /// The inputs and times of every acknowledged transaction.
    model: Model,
    /// The transaction that was sent (at least partly) when the daemon died: it may or may
    /// not have been applied.
    in_flight: Option<Tx>,
    acknowledged: usize,
}

/// Sends random transactions one after the other until the daemon dies (or `limit` of them
/// were acknowledged). Before reading the answer of transaction number `signal_at`, tells
/// `signal`.
fn stream(
    address: &str,
    mut model: Model,
    mut rng: Rng,
    limit: usize,
    signal: Option<(usize, mpsc::Sender<()>)>,
) -> Stream {
    let mut acknowledged = 0;
    while acknowledged < limit {
        let tx = model.random(&mut rng);
        let body = tx.json(model.time + 1);
        let Ok(mut connection) = TcpStream::connect(address) else {
            // Dead before the request: it was never sent.
            return Stream {
                model,
                in_flight: None,
                acknowledged,
            };
        };
        connection
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let request = format!(
            "POST /v1/transactions HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let written = connection.write_all(request.as_bytes());
        if let Some((at, signal)) = &signal
            && *at == acknowledged
        {
            let _ = signal.send(());
        }
        let response = written.and_then(|()| read_response(&mut connection));
        match response {
            Ok(response) if response.status == 200 => {
                // Acknowledged: journaled and synced, whatever happens next.
                let before = model.views();
                model.apply(&tx);
                acknowledged += 1;
                let changes = response.json();
                if !changes.is_null() {
                    assert_eq!(changes["time"], model.time, "{body}: {changes}");
                    assert_eq!(changes["now"], model.now, "{body}: {changes}");
                    assert_eq!(
                        answered_changes(&changes),
                        expected_changes(&before, &model.views()),
                        "{body}: the change set"
                    );
                }
            }
            Ok(response) => panic!(
                "a valid transaction was refused: {body}: {} {}",
                response.status,
                response.text()
            ),
            Err(_) => {
                return Stream {
                    model,
                    in_flight: Some(tx),
                    acknowledged,
                };
            }
        }
    }
    Stream {
        model,
        in_flight: None,
        acknowledged,
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_transaction() {
    let seed = std::env::var("VIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5);
    let rounds: usize = std::env::var("VIGIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    eprintln!("seed {seed} (VIGIL_CRASH_SEED), {rounds} rounds (VIGIL_CRASH_ROUNDS)");
    let dir = daemon::scratch("crash", PROGRAM);
    let config = daemon::config_with(
        &dir,
        "listen = \"127.0.0.1:0\"\nprogram = \"prog.dl\"\ndata_dir = \"data\"\nclock = \"event\"\n",
        "snapshot_every = 5\n",
    );
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut in_flight: Option<Tx> = None;
    let (mut applied, mut dropped, mut total) = (0, 0, 0);
    let started = Instant::now();
    for round in 0..=rounds {
        let daemon = Daemon::start(&config, &[]);
        // The transaction that was in flight at the kill is there only if the state says so.
        let (time, _) = health(&daemon);
        let context = format!("seed {seed}, after kill {round}");
        assert!(
            time >= model.time,
            "{context}: logical time {time}, but {} was acknowledged",
            model.time
        );
        if let Some(tx) = in_flight.take() {
            if time == model.time + 1 {
                model.apply(&tx);
                applied += 1;
            } else {
                dropped += 1;
            }
        }
        assert_holds(&daemon, &model, &context);
        if round == rounds {
            daemon.stop();
            break;
        }
        // Kill after a random delay while transactions stream in, or right after a random
        // transaction's request was written, before its answer is read.
        let address = daemon.address.clone();
        let stream_rng = Rng(rng.next_u64());
        let start_model = model.clone();
        let outcome = if rng.chance(50) {
            let delay = Duration::from_micros(rng.below(40_000));
            let streamer =
                std::thread::spawn(move || stream(&address, start_model, stream_rng, 400, None));
            std::thread::sleep(delay);
            daemon.kill();
            streamer.join().unwrap()
        } else {
            let at = rng.below(20) as usize;
            let wait = Duration::from_micros(rng.below(3_000));
            let (signal, signalled) = mpsc::channel();
            let streamer = std::thread::spawn(move || {
                stream(&address, start_model, stream_rng, 400, Some((at, signal)))
            });
            if signalled.recv_timeout(Duration::from_secs(60)).is_err() {
                // The stream stopped (its panic says why) or hung.
                daemon.kill();
                streamer.join().unwrap();
                panic!("{context}: the stream never reached transaction {at}");
            }
            std::thread::sleep(wait);
            daemon.kill();
            streamer.join().unwrap()
        };
        total += outcome.acknowledged;
        model = outcome.model;
        in_flight = outcome.in_flight;
    }
    assert!(
        dir.join("data/snapshot.vs").exists(),
        "snapshots were written"
    );
    eprintln!(
        "{rounds} kills, {total} acknowledged transactions (logical time {}), in flight at a kill: {applied} applied, {dropped} not; {:.1} s",
        model.time,
        started.elapsed().as_secs_f64()
    );
    assert!(
        total >= rounds,
        "the stream acknowledged too few transactions to mean anything: {total}"
    );
}

// Journal and snapshot damage.

/// Six transactions on the test program, each one of the model's `Tx`.
fn six() -> Vec<Tx> {
    (0..6)
        .map(|i| Tx {
            time: 10 * (i + 1),
            insert_edges: vec![(i, i + 1)],
            insert_nodes: vec![i],
            retract_edges: if i == 4 { vec![(1, 2)] } else { Vec::new() },
            ..Tx::default()
        })
        .collect()
}

/// A data directory that holds `txs`, written by a daemon stopped with SIGTERM; returns its
/// config and the model of each prefix of `txs` (`models[k]`: the first k transactions).
fn written(name: &str, txs: &[Tx], extra: &str) -> (daemon::Scratch, PathBuf, Vec<Model>) {
    let dir = daemon::scratch(name, PROGRAM);
    let config = daemon::config(&dir, extra);
    let daemon = Daemon::start(&config, &[]);
    let mut models = vec![Model::default()];
    for (index, tx) in txs.iter().enumerate() {
        let (status, body) = daemon.json("POST", "/v1/transactions", &tx.json(index as u64 + 1));
        assert_eq!(status, 200, "{body}");
        let mut model = models.last().unwrap().clone();
        model.apply(tx);
        models.push(model);
    }
    daemon.stop();
    (dir, config, models)
}

/// The offsets and lengths of the frames of a journal file.
fn frames(journal: &[u8]) -> Vec<(usize, usize)> {
    // The magic, then the logical time the journal starts after.
    assert_eq!(&journal[..8], b"VIGILJ\x00\x02");
    let mut frames = Vec::new();
    let mut offset = 16;
    while offset < journal.len() {
        let len = u32::from_le_bytes(journal[offset..offset + 4].try_into().unwrap()) as usize;
        frames.push((offset, 4 + 32 + len));
        offset += 4 + 32 + len;
    }
    assert_eq!(offset, journal.len(), "the journal is whole");
    frames
}

fn journal_of(dir: &Path) -> PathBuf {
    dir.join("data/journal.vj")
}

#[test]
fn a_torn_last_frame_is_dropped_with_a_warning() {
    let txs = six();
    let (dir, config, models) = written("torn", &txs, "");
    let journal = journal_of(&dir);
    let intact = std::fs::read(&journal).unwrap();
    let frames = frames(&intact);
    assert_eq!(frames.len(), 6);
    let (last, last_len) = frames[5];
    // A crash can cut the last frame anywhere: in its payload, its checksum, its length.
    for cut in [last + last_len - 3, last + 4 + 20, last + 2] {
        std::fs::write(&journal, &intact[..cut]).unwrap();
        let daemon = Daemon::start(&config, &[]);
        assert_holds(&daemon, &models[5], &format!("cut at {cut}"));
        // The truncation is durable, and the next transaction takes the dropped one's time.
        let (status, changes) = daemon.json("POST", "/v1/transactions", &txs[5].json(6));
        assert_eq!(status, 200, "{changes}");
        assert_eq!(changes["time"], 6);
        let (_, stderr) = daemon.stop_with_stderr();
        assert!(
            stderr.contains(&format!(
                "journal.vj: dropped a torn last frame of {} bytes at byte {last}",
                cut - last
            )),
            "cut at {cut}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&journal).unwrap(),
            intact,
            "the same transaction again gives the same frame"
        );
        let daemon = Daemon::start(&config, &[]);
        assert_holds(&daemon, &models[6], &format!("cut at {cut}, restarted"));
        let (_, stderr) = daemon.stop_with_stderr();
        assert!(!stderr.contains("warning"), "{stderr}");
    }
}

#[test]
fn a_frame_that_cannot_be_written_whole_is_cut_off_and_its_transaction_refused() {
    let txs = six();
    let (dir, config, models) = written("full", &txs[..3], "");
    let journal = journal_of(&dir);
    let intact = std::fs::read(&journal).unwrap();
    // The daemon again, allowed files of at most 20 bytes more than the journal holds (and
    // with SIGXFSZ ignored, as `sh` passes it on through `exec`): the next frame, longer than
    // that, is written in part and then the write fails, as on a full disk.
    let limit = intact.len() + 20;
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit} -- \"$0\" serve --config \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_vigil"))
        .arg(&config);
    let daemon = Daemon::spawn(command)
        .unwrap_or_else(|failed| panic!("the daemon stopped: {}{}", failed.stdout, failed.stderr));
    for attempt in 0..2 {
        let (status, body) = daemon.json("POST", "/v1/transactions", &txs[3].json(4));
        assert_eq!(status, 500, "attempt {attempt}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("journal.vj: cannot append to the journal"),
            "attempt {attempt}: {body}"
        );
        // Nothing of it stays: not in the file, not in the views, not in the logical time.
        let now = std::fs::read(&journal).unwrap();
        assert!(
            now == intact,
            "attempt {attempt}: the journal holds {} bytes, {} before",
            now.len(),
            intact.len()
        );
        assert_holds(&daemon, &models[3], &format!("attempt {attempt}"));
    }
    daemon.stop();
    // Restarted with room: no torn tail to drop, and the refused transaction goes through at
    // the time it was refused at.
    let daemon = Daemon::start(&config, &[]);
    assert_holds(&daemon, &models[3], "restarted");
    let (status, changes) = daemon.json("POST", "/v1/transactions", &txs[3].json(4));
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["time"], 4);
    let (_, stderr) = daemon.stop_with_stderr();
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn damage_before_the_tail_stops_start_up_until_the_operator_truncates() {
    let txs = six();
    let (dir, config, models) = written("flipped", &txs, "");
    let journal = journal_of(&dir);
    let intact = std::fs::read(&journal).unwrap();
    let frames = frames(&intact);
    // A flipped bit in the third frame's payload, then in its checksum.
    for (what, at) in [
        ("payload", frames[2].0 + 36 + frames[2].1 / 3),
        ("checksum", frames[2].0 + 4 + 7),
    ] {
        let offset = frames[2].0;
        let mut damaged = intact.clone();
        damaged[at] ^= 0x10;
        std::fs::write(&journal, &damaged).unwrap();
        let failed = start_fails(&config, &[]);
        assert!(!failed.status.success(), "{what}: {failed:?}");
        assert!(
            failed.stderr.contains(&format!(
                "journal.vj: the frame at byte {offset} is damaged (its checksum does not match)"
            )) && failed
                .stderr
                .contains(&format!("--truncate-journal-at {offset}")),
            "{what}: {}",
            failed.stderr
        );
        assert_eq!(
            std::fs::read(&journal).unwrap(),
            damaged,
            "{what}: a refused start changes nothing"
        );
        // Another offset than the damaged frame's does not drop anything.
        let failed = start_fails(
            &config,
            &["--truncate-journal-at", &(offset + 1).to_string()],
        );
        assert!(
            failed
                .stderr
                .contains(&format!("the frame at byte {offset} is damaged")),
            "{what}: {}",
            failed.stderr
        );
        assert_eq!(std::fs::read(&journal).unwrap(), damaged);
        // The operator's truncation keeps the two transactions before the damage.
        let daemon = Daemon::start(&config, &["--truncate-journal-at", &offset.to_string()]);
        assert_holds(&daemon, &models[2], what);
        let (status, changes) = daemon.json("POST", "/v1/transactions", &txs[2].json(3));
        assert_eq!(status, 200, "{changes}");
        assert_eq!(changes["time"], 3);
        daemon.stop();
        assert_eq!(std::fs::read(&journal).unwrap(), &intact[..frames[3].0]);
        let daemon = Daemon::start(&config, &[]);
        assert_holds(&daemon, &models[3], &format!("{what}, restarted"));
        daemon.stop();
        std::fs::write(&journal, &intact).unwrap();
    }
}

/// A flipped bit in the high byte of a frame's length (not in its payload) makes the frame
/// seem to run past the end of the file. A crash cannot do that to a frame with more after it:
/// start-up must not take it for a torn tail and drop the acknowledged transactions after it.
#[test]
fn a_damaged_frame_length_before_the_tail_is_not_taken_for_a_torn_tail() {
    let txs = six();
    let (dir, config, models) = written("length", &txs, "");
    let journal = journal_of(&dir);
    let intact = std::fs::read(&journal).unwrap();
    let frames = frames(&intact);
    let offset = frames[2].0;
    let mut damaged = intact.clone();
    damaged[offset + 3] ^= 0x01;
    std::fs::write(&journal, &damaged).unwrap();
    match Daemon::try_start(&config, &[]) {
        Err(failed) => {
            assert!(
                failed
                    .stderr
                    .contains(&format!("the frame at byte {offset} is damaged")),
                "{}",
                failed.stderr
            );
            assert_eq!(std::fs::read(&journal).unwrap(), damaged);
        }
        Ok(daemon) => {
            let (time, _) = health(&daemon);
            let (_, stderr) = daemon.stop_with_stderr();
            panic!(
                "the daemon started at logical time {time} instead of refusing; {} transactions were acknowledged; it said: {stderr}; the journal is now {} bytes of {}",
                models.len() - 1,
                std::fs::metadata(&journal).unwrap().len(),
                intact.len()
            );
        }
    }
}

#[test]
fn a_damaged_snapshot_stops_start_up_and_names_the_file() {
    let txs = six();
    let dir = daemon::scratch("snapshot", PROGRAM);
    let config = daemon::config(&dir, "");
    let daemon = Daemon::start(&config, &[]);
    let mut model = Model::default();
    for (index, tx) in txs.iter().enumerate() {
        let (status, body) = daemon.json("POST", "/v1/transactions", &tx.json(index as u64 + 1));
        assert_eq!(status, 200, "{body}");
        model.apply(tx);
        if index == 3 {
            let (status, body) = daemon.json("POST", "/v1/admin/compact", "");
            assert_eq!(status, 200, "{body}");
        }
    }
    daemon.stop();
    let snapshot = dir.join("data/snapshot.vs");
    let journal = journal_of(&dir);
    let intact = std::fs::read(&snapshot).unwrap();
    let journal_bytes = std::fs::read(&journal).unwrap();
    assert_eq!(
        frames(&journal_bytes).len(),
        2,
        "the journal after the snapshot"
    );
    for (cut, says) in [
        (intact.len() - 3, "the snapshot is damaged"),
        (intact.len() / 2, "the snapshot is damaged"),
        (8 + 20, "the snapshot is truncated"),
        // Shorter than the magic bytes: named, though as "not a Vigil snapshot".
        (5, "not a Vigil snapshot"),
    ] {
        std::fs::write(&snapshot, &intact[..cut]).unwrap();
        let failed = start_fails(&config, &[]);
        assert!(!failed.status.success());
        let line = failed
            .stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("cut at {cut}: {}", failed.stderr));
        assert!(
            line.contains(&snapshot.display().to_string()) && line.contains(says),
            "cut at {cut}: {line}"
        );
        assert_eq!(std::fs::read(&snapshot).unwrap(), &intact[..cut]);
        assert_eq!(std::fs::read(&journal).unwrap(), journal_bytes);
    }
    // Without the snapshot, the journal (logical times 5 and 6) lacks the first four:
    // start-up stops rather than serve a state without them.
    std::fs::remove_file(&snapshot).unwrap();
    let failed = start_fails(&config, &[]);
    assert!(
        failed
            .stderr
            .contains("journal.vj: the journal starts after logical time 4, but the snapshot"),
        "{}",
        failed.stderr
    );
    assert_eq!(std::fs::read(&journal).unwrap(), journal_bytes);
    // The intact snapshot brings everything back.
    std::fs::write(&snapshot, &intact).unwrap();
    let daemon = Daemon::start(&config, &[]);
    assert_holds(&daemon, &model, "the snapshot restored");
    daemon.stop();
}

/// A snapshot that is gone after a compaction: the journal alone no longer holds the state,
/// and start-up stops, even with no journal record after the snapshot.
#[test]
fn a_missing_snapshot_is_not_an_empty_state() {
    let txs = six();
    let dir = daemon::scratch("lost", PROGRAM);
    let config = daemon::config(&dir, "");
    let daemon = Daemon::start(&config, &[]);
    for (index, tx) in txs.iter().enumerate() {
        let (status, body) = daemon.json("POST", "/v1/transactions", &tx.json(index as u64 + 1));
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = daemon.json("POST", "/v1/admin/compact", "");
    assert_eq!(status, 200, "{body}");
    daemon.stop();
    std::fs::remove_file(dir.join("data/snapshot.vs")).unwrap();
    match Daemon::try_start(&config, &[]) {
        Err(failed) => assert!(failed.stderr.contains("snapshot"), "{}", failed.stderr),
        Ok(daemon) => {
            let (time, _) = health(&daemon);
            daemon.stop();
            panic!("the daemon started at logical time {time}; 6 transactions were acknowledged");
        }
    }
}

/// A daemon whose stdout goes nowhere (the reader of its pipe has exited, as `vigil serve |
/// head` leaves it) goes on: it commits and answers, and its decision log, which can no
/// longer be written, is dropped; it says so once on stderr, and stops cleanly.
#[test]
fn a_closed_stdout_does_not_stop_the_daemon() {
    const DECISIONS: &str = r#"
.decl request(id: symbol)
.input request(IO=stream)
.decl action(id: symbol, kind: symbol, target: symbol, reason: symbol)
.output action
action(id, "start", id, "someone asked for it") :- request(id).
"#;
    let dir = daemon::scratch("closed-stdout", DECISIONS);
    let mut daemon = Daemon::start(&daemon::config(&dir, ""), &[]);
    daemon.close_stdout();
    // Each commit makes a decision, which the log would print.
    for id in ["backup", "llm-chat", "sdxl-batch"] {
        let body = format!(r#"{{"insert": {{"request": [["{id}"]]}}}}"#);
        let (status, answer) = daemon.json("POST", "/v1/transactions", &body);
        assert_eq!(status, 200, "{id}: {answer}");
        assert_eq!(
            daemon::rows(&answer),
            [format!(
                r#"+1 action["{id}","start","{id}","someone asked for it"]"#
            )],
            "{id}: {answer}"
        );
    }
    assert_eq!(daemon.query("action(id, _, _, _)").len(), 3);
    // A clean exit on SIGTERM, and one warning.
    let (_, stderr) = daemon.stop_with_stderr();
    assert_eq!(
        stderr.matches("warning: cannot write to stdout").count(),
        1,
        "{stderr}"
    );
}
