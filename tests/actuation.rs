//! The daemon acting on the house: bindings from views to actuators, the reconciliation loop,
//! and the action journal. Every peer is real and on loopback: a UDP socket the test binds
//! receives the Wake-on-LAN packets, fakepve (a Proxmox VE API fake) receives the Proxmox
//! calls, a TCP listener that never answers plays a hung peer, and commands are real
//! programs. Retries and backoffs are kept short in the configs.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "../adapters/tests/proxmox/fake.rs"]
#[allow(dead_code)]
mod fake;

use daemon::Daemon;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const START: i64 = 1_796_004_000;
/// How long a test waits for something that should happen; it only guards a broken run.
const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with a copy of the sample house's facts in `facts/`, whose
/// `requested` workloads are `requested` and whose `running` ones leave out `stopped`.
fn house(name: &str, requested: &[&str], stopped: &[&str]) -> daemon::Scratch {
    let dir = daemon::Scratch::new(&format!("actuation-{name}"));
    let facts = dir.join("facts");
    std::fs::create_dir_all(&facts).unwrap();
    for entry in std::fs::read_dir(root().join("fixtures/homelab")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), facts.join(entry.file_name())).unwrap();
    }
    let lines: String = requested.iter().map(|w| format!("{w}\n")).collect();
    std::fs::write(facts.join("requested.facts"), lines).unwrap();
    let running = std::fs::read_to_string(facts.join("running.facts")).unwrap();
    let kept: String = running
        .lines()
        .filter(|line| !stopped.iter().any(|w| line.split('\t').next() == Some(*w)))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(facts.join("running.facts"), kept).unwrap();
    dir
}

/// Writes `vigil.toml` for the bundled policy on the house in `dir`, then `extra`.
fn bundled_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nprogram = {:?}\nfacts = \"facts\"\ndata_dir = \"data\"\nclock = \"event\"\n{extra}",
            root().join("rules/homelab.dl"),
        ),
    )
    .unwrap();
    path
}

/// A small program whose `act` view is what the test asks for (`want`).
const WANTS: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl want(id: symbol, kind: symbol, target: symbol)
.input want(IO=stream)
.decl act(id: symbol, kind: symbol, target: symbol)
.output act
act(i, k, t) :- want(i, k, t).
.decl action_status(action: symbol, state: symbol, reason: symbol, at: number)
.input action_status(IO=stream, key="action")
"#;

fn transact(daemon: &Daemon, body: &str) {
    let (status, answer) = daemon.json("POST", "/v1/transactions", body);
    assert_eq!(status, 200, "{answer}");
}

/// The action journal, through the API.
fn journal(daemon: &Daemon) -> Vec<serde_json::Value> {
    let (status, answer) = daemon.json("GET", "/v1/actions", "");
    assert_eq!(status, 200, "{answer}");
    answer["actions"].as_array().unwrap().clone()
}

/// The outcomes the journal holds for an action, in order.
fn outcomes(daemon: &Daemon, id: &str) -> Vec<String> {
    journal(daemon)
        .iter()
        .filter(|line| line["id"] == id)
        .map(|line| line["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `check` holds; panics with `what` after the patience runs out.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the action's outcomes end with `last`; returns them all.
fn until_outcome(daemon: &Daemon, id: &str, last: &str) -> Vec<String> {
    until(&format!("{id} {last}"), || {
        outcomes(daemon, id).last().map(String::as_str) == Some(last)
    });
    outcomes(daemon, id)
}

/// Waits until the `action_status` fact of the action has the state `state` (the outcome
/// is fed back as a transaction of its own, after its journal line); returns its
/// `[state, reason]` row.
fn until_status(daemon: &Daemon, id: &str, state: &str) -> String {
    let query = format!("action_status({id:?}, S, R, _)");
    let prefix = format!("[{state:?},");
    let mut rows = Vec::new();
    until(&format!("action_status {id} {state}"), || {
        rows = daemon.query(&query);
        rows.len() == 1 && rows[0].starts_with(&prefix)
    });
    rows.remove(0)
}

const LIMITS: &str = "retry_s = 0.2\nretry_cap_s = 0.4\nattempts = 2\ndwell_s = 0\n";

const WAKE: &str = r#"
[[actuators.binding]]
view = "act"
kind = "wake"
actuator = "wol"
parameters = { mac = "node_mac({target}, ?)" }
done = 'power_state({target}, "up", _)'
"#;

#[test]
fn a_needed_node_is_woken_until_it_is_up_and_the_wake_is_journaled() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let dir = house("wake", &["photos", "backup", "llm-chat"], &[]);
    let config = bundled_config(
        &dir,
        &format!(
            "[actuators]\ndry_run = false\ntimeout_s = 30\n{LIMITS}[actuators.wol]\nbroadcast = \"127.0.0.1\"\nport = {port}\ninterval_s = 0.2\n{WAKE}"
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    assert!(daemon.query("act(I, \"wake\", X)").is_empty());

    // Heavy work is asked for: it is placed on the sleeping gaming rig, which must wake.
    transact(
        &daemon,
        &format!(
            r#"{{"time": {}, "insert": {{"requested": [["sdxl-batch"]]}}}}"#,
            START + 60
        ),
    );
    let mut packet = [0u8; 256];
    let (length, _) = socket.recv_from(&mut packet).expect("a magic packet");
    let mac = [0x74, 0x56, 0x3c, 0xa1, 0x20, 0x02];
    let mut expected = vec![0xff; 6];
    for _ in 0..16 {
        expected.extend_from_slice(&mac);
    }
    assert_eq!(&packet[..length], expected.as_slice());

    // Not up yet: the packets go on. Then the rig reports in, and the wake is done.
    socket.recv_from(&mut packet).expect("the wake is repeated");
    transact(
        &daemon,
        r#"{"insert": {"power_state": [["gaming", "up", null]]}}"#,
    );
    let seen = until_outcome(&daemon, "wake:gaming", "succeeded");
    assert_eq!(seen, ["started", "succeeded"]);
    let lines = journal(&daemon);
    let started = lines.iter().find(|l| l["id"] == "wake:gaming").unwrap();
    assert_eq!(started["actuator"], "wol");
    assert_eq!(started["parameters"]["mac"], "74:56:3c:a1:20:02");
    assert_eq!(
        started["command"],
        format!("Wake-on-LAN: magic packet for 74:56:3c:a1:20:02 to 127.0.0.1:{port}")
    );
    let why = started["why"].as_str().unwrap();
    assert!(
        why.starts_with("act(\"wake:gaming\", \"wake\", \"gaming\")"),
        "{why}"
    );
    assert!(why.contains("requested(\"sdxl-batch\")"), "{why}");
    // The outcome is a fact of the engine.
    until_status(&daemon, "wake:gaming", "succeeded");
    // The journal is on disk, one JSON line per record.
    let file = std::fs::read_to_string(dir.join("data/actions.jsonl")).unwrap();
    assert_eq!(file.lines().count(), lines.len());
    // `?since=` and `?limit=`.
    let (_, after) = daemon.json("GET", "/v1/actions?since=1", "");
    assert_eq!(after["actions"][0]["seq"], 2);
    let (_, last) = daemon.json("GET", "/v1/actions?limit=1", "");
    assert_eq!(last["actions"].as_array().unwrap().len(), 1);
    let (status, _) = daemon.json("GET", "/v1/actions?limit=many", "");
    assert_eq!(status, 400);

    // The REPL, connected, shows the journal.
    let mut repl = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["repl", "--connect", &format!("http://{}", daemon.address)])
        .env("VIGIL_HISTORY", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    repl.stdin
        .take()
        .unwrap()
        .write_all(b".actions 5\n")
        .unwrap();
    let output = repl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("succeeded wake gaming: Wake-on-LAN: magic packet for 74:56:3c:a1:20:02"),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    daemon.stop();
}

#[test]
fn the_local_repl_says_that_it_has_no_daemon() {
    let mut repl = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["repl"])
        .env("VIGIL_HISTORY", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    repl.stdin.take().unwrap().write_all(b".actions\n").unwrap();
    let output = repl.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("this session has no daemon"), "{errors}");
}

#[test]
fn dry_run_sends_nothing_and_journals_everything() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let dir = house("dry", &["photos", "backup", "llm-chat", "sdxl-batch"], &[]);
    let config = bundled_config(
        &dir,
        &format!(
            "[actuators]\n{LIMITS}[actuators.wol]\nbroadcast = \"127.0.0.1\"\nport = {port}\ninterval_s = 0.2\n{WAKE}"
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    assert_eq!(
        until_outcome(&daemon, "wake:gaming", "dry-run"),
        ["dry-run"]
    );
    let mut packet = [0u8; 256];
    assert!(socket.recv_from(&mut packet).is_err(), "a packet was sent");
    until_status(&daemon, "wake:gaming", "dry-run");
    let output = daemon.stop();
    assert!(
        output.contains(&format!(
            "dry-run  wake gaming: Wake-on-LAN: magic packet for 74:56:3c:a1:20:02 to 127.0.0.1:{port}"
        )),
        "{output}"
    );
}

/// `[proxmox]` on fakepve, and a binding of `start` to it.
fn proxmox_config(dir: &Path, pve: &fake::Fake, extra: &str) -> PathBuf {
    std::fs::write(dir.join("pve-root-ca.pem"), &pve.certificate).unwrap();
    bundled_config(
        dir,
        &format!(
            "[proxmox]\nhost = \"127.0.0.1\"\nport = {}\ntoken = {:?}\nca_file = \"pve-root-ca.pem\"\ninterval_s = 0.2\n[proxmox.nodes]\npve1 = \"pve\"\n\n[actuators]\ndry_run = false\ntimeout_s = 20\n{LIMITS}{extra}\n[[actuators.binding]]\nview = \"act\"\nkind = \"start\"\nactuator = \"proxmox\"\noperation = \"start\"\nparameters = {{ guest = \"{{target}}\" }}\ndone = \"running({{target}}, _)\"\n",
            pve.port, pve.token,
        ),
    )
}

#[test]
fn a_proxmox_start_reaches_proxmox_and_comes_back_as_a_fact() {
    let mut pve = fake::Fake::start();
    pve.add_vm(101, "backup", "pve1", "stopped");
    let dir = house("proxmox", &["photos", "backup", "llm-chat"], &["backup"]);
    let config = proxmox_config(&dir, &pve, "");
    let daemon = Daemon::start(&config, &[]);
    until("the backup VM runs", || {
        daemon.query("running(\"backup\", N)") == ["[\"pve\"]"]
    });
    assert_eq!(
        until_outcome(&daemon, "start:backup", "succeeded"),
        ["started", "succeeded"]
    );
    assert_eq!(pve.guest(101)["status"], "running");
    let starts: Vec<_> = pve
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert_eq!(starts, ["/api2/json/nodes/pve1/qemu/101/status/start"]);
    until_status(&daemon, "start:backup", "succeeded");
    daemon.stop();
}

#[test]
fn a_proxmox_refusal_is_journaled_with_its_message_and_given_up() {
    let mut pve = fake::Fake::start();
    pve.add_vm(101, "backup", "pve1", "stopped");
    pve.command(serde_json::json!({"op": "lock", "vmid": 101, "lock": "backup"}));
    let dir = house("refusal", &["photos", "backup", "llm-chat"], &["backup"]);
    let config = proxmox_config(&dir, &pve, "");
    let daemon = Daemon::start(&config, &[]);
    let seen = until_outcome(&daemon, "start:backup", "gave-up");
    assert_eq!(seen, ["started", "failed", "started", "gave-up"]);
    let lines = journal(&daemon);
    let failed = lines
        .iter()
        .find(|l| l["id"] == "start:backup" && l["outcome"] == "failed")
        .unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("locked"), "{reason}");
    let status = until_status(&daemon, "start:backup", "gave-up");
    assert!(
        status.starts_with("[\"gave-up\",\"2 attempts; the last:"),
        "{status}"
    );
    daemon.stop();
}

#[test]
fn a_peer_that_never_answers_times_out_is_retried_and_given_up() {
    // Accepts connections, and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = house("hang", &["photos", "backup", "llm-chat"], &["backup"]);
    let pin = vec!["AB"; 32].join(":");
    let config = bundled_config(
        &dir,
        &format!(
            "[proxmox]\nhost = \"127.0.0.1\"\nport = {port}\ntoken = \"vigil@pve!act=secret\"\nfingerprint = \"{pin}\"\ninterval_s = 30\n\n[actuators]\ndry_run = false\ntimeout_s = 1\n{LIMITS}\n[[actuators.binding]]\nview = \"act\"\nkind = \"start\"\nactuator = \"proxmox\"\noperation = \"start\"\nparameters = {{ guest = \"{{target}}\" }}\n"
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    let seen = until_outcome(&daemon, "start:backup", "gave-up");
    assert_eq!(seen, ["started", "failed", "started", "gave-up"]);
    let lines = journal(&daemon);
    let failed = lines
        .iter()
        .find(|l| l["id"] == "start:backup" && l["outcome"] == "failed")
        .unwrap();
    assert_eq!(failed["reason"], "no outcome within 1.0 s");
    // Given up: no third attempt, however long the row stays.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(outcomes(&daemon, "start:backup").len(), 4);
    daemon.stop();
}

/// A daemon on [`WANTS`] whose `run` actions append their id to `log`.
/// The scratch directory comes first, so that it outlives the daemon.
fn wants_daemon(name: &str, limits: &str) -> (daemon::Scratch, Daemon, PathBuf) {
    let dir = daemon::scratch(&format!("actuation-{name}"), WANTS);
    let log = dir.join("ran.log");
    let config = daemon::config(
        &dir,
        &format!(
            "[actuators]\ndry_run = false\ntimeout_s = 10\n{limits}\n[[actuators.binding]]\nview = \"act\"\nkind = \"run\"\nactuator = \"command\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$0\\\" >> {}\", \"{{id}}\"]\n",
            log.display()
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    (dir, daemon, log)
}

fn ran(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_dwell_holds_a_second_action_on_a_target() {
    let (_dir, daemon, log) = wants_daemon(
        "dwell",
        "retry_s = 0.2\nretry_cap_s = 0.4\nattempts = 2\ndwell_s = 3600\nper_target = 10\n",
    );
    transact(
        &daemon,
        r#"{"insert": {"want": [["a:x", "run", "x"], ["b:x", "run", "x"], ["c:y", "run", "y"]]}}"#,
    );
    until("two actions ran", || ran(&log).len() == 2);
    until("both succeeded", || {
        journal(&daemon)
            .iter()
            .filter(|l| l["outcome"] == "succeeded")
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut done = ran(&log);
    done.sort();
    assert!(done == ["a:x", "c:y"] || done == ["b:x", "c:y"], "{done:?}");
    assert!(outcomes(&daemon, "a:x").is_empty() || outcomes(&daemon, "b:x").is_empty());
    daemon.stop();
}

#[test]
fn the_rate_limit_holds_per_target() {
    let (_dir, daemon, log) = wants_daemon(
        "rate",
        "retry_s = 0.2\nretry_cap_s = 0.4\nattempts = 2\ndwell_s = 0\nper_target = 2\nwindow_s = 3600\n",
    );
    transact(
        &daemon,
        r#"{"insert": {"want": [["a:x", "run", "x"], ["b:x", "run", "x"], ["c:x", "run", "x"], ["d:y", "run", "y"]]}}"#,
    );
    until("three actions ran", || ran(&log).len() == 3);
    std::thread::sleep(Duration::from_millis(1500));
    let done = ran(&log);
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(
        done.iter().filter(|id| id.ends_with(":x")).count(),
        2,
        "{done:?}"
    );
    assert!(done.contains(&"d:y".to_string()));
    daemon.stop();
}

#[test]
fn an_action_that_needs_approval_waits_for_a_valid_link() {
    let dir = house("approval", &["photos", "backup"], &[]);
    let log = dir.join("stopped.log");
    let config = bundled_config(
        &dir,
        &format!(
            "[approvals]\nsecret = \"a secret of the approval links\"\nttl_s = 600\n\n[actuators]\ndry_run = false\ntimeout_s = 10\n{LIMITS}\n[[actuators.binding]]\nview = \"act\"\nkind = \"stop\"\nactuator = \"command\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$0\\\" >> {}\", \"{{target}}\"]\n",
            log.display()
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    // Nobody wants the chat model: stopping it needs a person.
    until("the stop waits for a person", || {
        let (_, pending) = daemon.json("GET", "/v1/approvals", "");
        pending
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["action"] == "stop:llm-chat"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ran(&log).is_empty(), "acted before the approval");
    assert!(outcomes(&daemon, "stop:llm-chat").is_empty());

    // A forged link changes nothing; the real one lets the action through.
    let (_, pending) = daemon.json("GET", "/v1/approvals", "");
    let request = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "stop:llm-chat")
        .unwrap()
        .clone();
    let link = request["approve"].as_str().unwrap();
    let path = &link[link.find("/v1/").unwrap()..];
    let (status, _) = daemon.json("POST", "/v1/approvals/decide?token=forged", "");
    assert!(status >= 400);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ran(&log).is_empty());
    let (status, answer) = daemon.json("POST", path, "");
    assert_eq!(status, 200, "{answer}");
    until("the model is stopped", || ran(&log) == ["llm-chat"]);
    assert_eq!(
        until_outcome(&daemon, "stop:llm-chat", "succeeded"),
        ["started", "succeeded"]
    );
    daemon.stop();
}

#[test]
fn bindings_that_name_what_the_program_lacks_are_refused_with_their_place() {
    let dir = daemon::scratch("actuation-refused", WANTS);
    for (binding, expected) in [
        (
            "view = \"nope\"\nkind = \"run\"\nactuator = \"command\"\ncommand = [\"true\"]\n",
            "vigil.toml:11:8: [[actuators.binding]] 1: unknown view `nope`",
        ),
        (
            "view = \"act\"\nkind = \"run\"\nactuator = \"command\"\ncommand = [\"echo\", \"{node}\"]\n",
            "vigil.toml:14:11: [[actuators.binding]] 1: unknown column `node` (there are: id, kind, target)",
        ),
        (
            "view = \"act\"\nkind = \"run\"\nactuator = \"ssh\"\n",
            "vigil.toml:13:12: [[actuators.binding]] 1: unknown actuator `ssh`: wol, proxmox, command or ray",
        ),
        (
            "view = \"act\"\nkind = \"run\"\nactuator = \"wol\"\nparameters = { mac = \"node_mac({target}, ?)\" }\n",
            "vigil.toml:14:22: [[actuators.binding]] 1: unknown relation `node_mac` in `node_mac({target}, ?)`",
        ),
    ] {
        let config = daemon::config(
            &dir,
            &format!("\n[actuators]\n\n[[actuators.binding]]\n{binding}"),
        );
        let failed = daemon::start_fails(&config, &[]);
        assert!(
            failed.stderr.contains(expected),
            "expected {expected:?} in:\n{}",
            failed.stderr
        );
    }
}

/// A program that borrows a node for Ray while `borrow` says so, as rules/borrow.dl does.
const BORROW: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl borrow(n: symbol)
.input borrow(IO=stream)
.decl ray_worker(n: symbol)
.input ray_worker(IO=stream)
.decl act(id: symbol, kind: symbol, target: symbol)
.output act
act(cat("ray_start:", n), "ray_start", n) :- borrow(n), !ray_worker(n).
act(cat("ray_stop:", n), "ray_stop", n) :- ray_worker(n), !borrow(n).
.decl action_status(action: symbol, state: symbol, reason: symbol, at: number)
.input action_status(IO=stream, key="action")
"#;

/// A loopback stand-in for the Ray dashboard's `GET /api/v0/nodes`: the captured answers of a
/// real Ray with the worker relabelled as `rig`, alive while `marker` exists (the start
/// script makes it, the stop script removes it), dead otherwise. Returns its port and the
/// paths it was asked for.
fn dashboard(marker: PathBuf) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let fixture = |name: &str| {
        std::fs::read_to_string(root().join("adapters/tests/fixtures/ray").join(name))
            .unwrap()
            .replace("\"vigil-node\": \"gaming\"", "\"vigil-node\": \"rig\"")
    };
    let (alive, dead) = (fixture("nodes-alive.json"), fixture("nodes-dead.json"));
    assert!(alive.contains("\"vigil-node\": \"rig\"") && dead.contains("\"vigil-node\": \"rig\""));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_string();
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let body = if marker.exists() { &alive } else { &dead };
            seen.lock().unwrap().push(path);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, asked)
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

#[test]
fn ray_start_and_stop_act_on_the_cluster_and_membership_says_when_they_are_done() {
    let dir = daemon::scratch("actuation-ray", BORROW);
    let (log, marker) = (dir.join("ray.log"), dir.join("worker.running"));
    let (port, asked) = dashboard(marker.clone());
    let (start, drain, stop) = (
        dir.join("start.sh"),
        dir.join("drain.sh"),
        dir.join("stop.sh"),
    );
    script(
        &start,
        &format!(
            "echo \"start $1 $2\" >> '{}'\ntouch '{}'",
            log.display(),
            marker.display()
        ),
    );
    script(&drain, &format!("echo \"drain $1\" >> '{}'", log.display()));
    script(
        &stop,
        &format!(
            "echo \"stop $1\" >> '{}'\nrm -f '{}'",
            log.display(),
            marker.display()
        ),
    );
    // The built-in bindings: `ray_start` and `ray_stop` on the `ray` actuator.
    let config = daemon::config(
        &dir,
        &format!(
            "[actuators]\ndry_run = false\ntimeout_s = 30\n{LIMITS}\n[ray]\nhead = \"127.0.0.1:6379\"\ndashboard = \"http://127.0.0.1:{port}\"\npoll_interval_s = 0.1\n[ray.node.rig]\nstart = [{:?}, \"--address={{head}}\", \"{{node}}\"]\ndrain = [{:?}, \"--node-id={{node_id}}\"]\nstop = [{:?}, \"{{node}}\"]\ndrain_wait_s = 0.5\n",
            start.display().to_string(),
            drain.display().to_string(),
            stop.display().to_string(),
        ),
    );
    let daemon = Daemon::start(&config, &[]);
    // The dashboard lists the worker as dead: it is not a worker.
    until("the dashboard is read", || {
        !asked.lock().unwrap().is_empty()
    });
    assert!(daemon.query("ray_worker(N)").is_empty());
    assert!(asked.lock().unwrap()[0].starts_with("/api/v0/nodes"));
    // The facts follow what Ray has, not what is typed in: a worker Ray does not list is
    // retracted at the next look.
    transact(&daemon, r#"{"insert": {"ray_worker": [["laptop"]]}}"#);
    until("the typed-in worker is retracted", || {
        daemon.query("ray_worker(N)").is_empty()
    });

    // The node may be borrowed: a worker is started, and is done once Ray lists it.
    transact(&daemon, r#"{"insert": {"borrow": [["rig"]]}}"#);
    assert_eq!(
        until_outcome(&daemon, "ray_start:rig", "succeeded"),
        ["started", "succeeded"]
    );
    assert_eq!(ran(&log), ["start --address=127.0.0.1:6379 rig"]);
    assert_eq!(daemon.query("ray_worker(N)"), ["[\"rig\"]"]);
    assert!(daemon.query("act(I, K, T)").is_empty());
    let lines = journal(&daemon);
    let started = lines.iter().find(|l| l["id"] == "ray_start:rig").unwrap();
    assert_eq!(started["actuator"], "ray");
    assert_eq!(started["parameters"]["node"], "rig");
    assert_eq!(started["command"], "Ray: start a worker on rig");

    // Wanted back: the worker is drained by its Ray node id, then stopped; done once Ray
    // lists it as dead.
    transact(&daemon, r#"{"retract": {"borrow": [["rig"]]}}"#);
    assert_eq!(
        until_outcome(&daemon, "ray_stop:rig", "succeeded"),
        ["started", "succeeded"]
    );
    assert_eq!(
        ran(&log),
        [
            "start --address=127.0.0.1:6379 rig",
            "drain --node-id=6ca1a7f6ec6897fae869018ae5442525adee1420454bc09d4e9f9a0a",
            "stop rig",
        ]
    );
    assert!(daemon.query("ray_worker(N)").is_empty());
    assert!(daemon.query("act(I, K, T)").is_empty());
    let lines = journal(&daemon);
    let stopped = lines.iter().find(|l| l["id"] == "ray_stop:rig").unwrap();
    assert_eq!(
        stopped["command"],
        "Ray: drain the worker on rig, then stop it"
    );
    daemon.stop();
}

#[test]
fn ray_actions_without_a_ray_cluster_fail_with_the_reason() {
    let dir = daemon::scratch("actuation-no-ray", BORROW);
    let config = daemon::config(&dir, &format!("[actuators]\ndry_run = false\n{LIMITS}"));
    let daemon = Daemon::start(&config, &[]);
    transact(&daemon, r#"{"insert": {"borrow": [["rig"]]}}"#);
    until_outcome(&daemon, "ray_start:rig", "gave-up");
    let lines = journal(&daemon);
    let failed = lines
        .iter()
        .find(|l| l["id"] == "ray_start:rig" && l["outcome"] == "failed")
        .unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("no `[ray]` cluster is configured"),
        "{reason}"
    );
    daemon.stop();
}
