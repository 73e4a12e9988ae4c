//! The Ray actuator against a real Ray cluster (PyPI's `ray[default]`, which .ci/run
//! installs): a head and a worker, each in its own PID namespace inside a network namespace
//! that the test creates, reached from the test over a veth pair. The worker is started,
//! drained and stopped by the configured commands, and seen to join and leave through the
//! dashboard's state API. Then the failures: a command that fails, one that hangs, a
//! dashboard that is down or answers nonsense; and the parsing of real captured answers.

mod spawned;

use spawned::{Scratch, free_port};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vigil_adapters::ray::{
    self, Answer, Members, NodeState, Ray, RayConfig, RayError, RayNode, parse_nodes,
};
use vigil_adapters::source::symbol;

const ALIVE: &str = include_str!("fixtures/ray/nodes-alive.json");
const DEAD: &str = include_str!("fixtures/ray/nodes-dead.json");

/// The `ray` command of the Python that has Ray, or a failure that says how to install it.
fn ray_program() -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, sys, ray; print(os.path.join(os.path.dirname(sys.executable), 'ray'))",
        ])
        .output()
        .expect("run python3");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !Path::new(&path).is_file() {
        panic!(
            "Ray is not installed for python3 ({}): run .ci/run, which installs `ray[default]`",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    path
}

fn run(what: &str, argv: &[&str]) -> String {
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {argv:?}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {argv:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace with loopback up and a veth pair to the test's namespace: the test
/// side is `.1`, the namespace side holds `.2` (the head) and `.3` (the worker) of a /24.
struct Namespace {
    name: String,
    link: String,
    subnet: String,
}

impl Namespace {
    fn create() -> Namespace {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 100_000;
        let namespace = Namespace {
            name: format!("vigil-ray-{id}-{count}"),
            link: format!("vr{id}x{count}"),
            subnet: format!("10.231.{}", (id as usize * 7 + count) % 250 + 1),
        };
        let inside = format!("vr{id}y{count}");
        let subnet = &namespace.subnet;
        run("ip netns add", &["ip", "netns", "add", &namespace.name]);
        let ns = namespace.name.as_str();
        run("loopback", &["ip", "-n", ns, "link", "set", "lo", "up"]);
        run(
            "veth",
            &[
                "ip",
                "link",
                "add",
                &namespace.link,
                "type",
                "veth",
                "peer",
                "name",
                &inside,
                "netns",
                ns,
            ],
        );
        let here = format!("{subnet}.1/24");
        run(
            "address",
            &["ip", "addr", "add", &here, "dev", &namespace.link],
        );
        run("up", &["ip", "link", "set", &namespace.link, "up"]);
        for last in [2, 3] {
            let address = format!("{subnet}.{last}/24");
            run(
                "address",
                &["ip", "-n", ns, "addr", "add", &address, "dev", &inside],
            );
        }
        run("up", &["ip", "-n", ns, "link", "set", &inside, "up"]);
        namespace
    }

    fn address(&self, last: u8) -> String {
        format!("{}.{last}", self.subnet)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
    }
}

/// PID 1 of a host's PID namespace: it reaps the orphans that `ray start` leaves to it, so
/// that `ray stop` sees them end.
const INIT: &str = "import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
";

/// A machine of the cluster: its own PID namespace (so that `ray stop` there stops only its
/// processes, as on a machine of its own) inside the network namespace. Dropping it kills
/// its PID 1, and with it every process of the namespace, whatever the test left running.
struct Host {
    unshare: Child,
    init: u32,
}

impl Host {
    fn spawn(namespace: &Namespace) -> Host {
        let mut unshare = Command::new("ip")
            .args(["netns", "exec", &namespace.name])
            .args(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(["python3", "-c", INIT])
            .stdin(Stdio::null())
            .spawn()
            .expect("start a PID namespace with unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let init = loop {
            // `ip netns exec` execs unshare in place, so the child's pid is unshare's.
            let text = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next() {
                break pid.parse().expect("a pid");
            }
            if Instant::now() > deadline {
                let _ = unshare.kill();
                panic!("the PID namespace's init did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Host { unshare, init }
    }

    /// An argv run on this host.
    fn command(&self, argv: &[&str]) -> Vec<String> {
        let mut command: Vec<String> = ["nsenter", "-t", &self.init.to_string()]
            .into_iter()
            .chain(["-p", "-m", "-n", "--"])
            .map(String::from)
            .collect();
        command.extend(argv.iter().map(|argument| argument.to_string()));
        command
    }

    /// The processes of the host other than its init, as `pid name`.
    fn processes(&self) -> Vec<String> {
        let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let ours = namespace(&self.init.to_string()).expect("the init's PID namespace");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|byte| byte.is_ascii_digit()) || pid == self.init.to_string() {
                continue;
            }
            if namespace(&pid).as_ref() == Some(&ours) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                found.push(format!("{pid} {}", name.trim()));
            }
        }
        found
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGKILL to unshare; `--kill-child` passes it to the init, and the kernel ends every
        // process of a PID namespace whose init ends.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A Ray head and a host for a worker. Fields drop in order: the hosts (and every Ray
/// process) first, then the network namespace, then the scratch directory.
struct Cluster {
    head: Host,
    worker: Host,
    namespace: Namespace,
    program: String,
    scratch: Scratch,
}

impl Cluster {
    fn start() -> Cluster {
        let program = ray_program();
        let scratch = Scratch::new("ray");
        let namespace = Namespace::create();
        let head = Host::spawn(&namespace);
        let worker = Host::spawn(&namespace);
        let cluster = Cluster {
            head,
            worker,
            namespace,
            program,
            scratch,
        };
        let head_ip = cluster.namespace.address(2);
        let temp = cluster.scratch.path("head");
        let argv = cluster.head.command(&[
            "timeout",
            "300",
            &cluster.program,
            "start",
            "--head",
            &format!("--node-ip-address={head_ip}"),
            "--port=6379",
            "--num-cpus=1",
            "--num-gpus=0",
            "--object-store-memory=100000000",
            "--include-dashboard=true",
            &format!("--dashboard-host={head_ip}"),
            "--dashboard-port=8265",
            &format!("--temp-dir={}", temp.display()),
            "--disable-usage-stats",
        ]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        run("ray start --head", &argv);
        cluster
    }

    fn config(&self) -> RayConfig {
        let ray = self.program.as_str();
        let worker_temp = format!("--temp-dir={}", self.scratch.path("worker").display());
        let start = self.worker.command(&[
            "timeout",
            "300",
            ray,
            "start",
            "--address={head}",
            "--node-ip-address={address}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--object-store-memory=100000000",
            &worker_temp,
            "--labels=vigil-node={node}",
            "--dashboard-agent-listen-port=52366",
            "--disable-usage-stats",
        ]);
        // The drain is asked of the GCS from here, as the logic node would.
        let drain = [
            ray,
            "drain-node",
            "--address={head}",
            "--node-id={node_id}",
            "--reason=DRAIN_NODE_REASON_IDLE_TERMINATION",
            "--reason-message=vigil: {node} is needed back",
        ]
        .map(String::from)
        .to_vec();
        let stop = self.worker.command(&[ray, "stop", "--grace-period=20"]);
        let head = self.namespace.address(2);
        RayConfig {
            head: format!("{head}:6379"),
            dashboard: format!("http://{head}:8265"),
            dashboard_timeout_s: 10.0,
            poll_interval_s: 0.25,
            nodes: BTreeMap::from([(
                "gaming".to_string(),
                RayNode {
                    address: Some(self.namespace.address(3)),
                    start,
                    drain,
                    stop,
                    start_timeout_s: 300.0,
                    drain_timeout_s: 120.0,
                    stop_timeout_s: 120.0,
                    drain_wait_s: 60.0,
                },
            )]),
        }
    }

    /// The end of the Ray logs, for a failing test.
    fn logs(&self) -> String {
        let mut text = String::new();
        for side in ["head", "worker"] {
            let logs = self.scratch.path(side).join("session_latest/logs");
            for name in ["raylet.out", "gcs_server.out", "dashboard.log"] {
                if let Ok(log) = std::fs::read_to_string(logs.join(name)) {
                    let start = log.len().saturating_sub(1500);
                    let start = (start..log.len())
                        .find(|&index| log.is_char_boundary(index))
                        .unwrap_or(log.len());
                    text += &format!("--- {side} {name}\n{}\n", &log[start..]);
                }
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Looks at the cluster until `done` holds, within a generous limit (the limit only keeps a
/// broken test from hanging).
async fn until(ray: &Ray, what: &str, done: impl Fn(&Members) -> bool) -> Members {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = match ray.members().await {
            Ok(members) if done(&members) => return members,
            Ok(members) => format!("{:#?}", members.nodes),
            Err(error) => error.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within 120 s; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joins_drains_leaves_and_is_stopped_at_once() {
    let cluster = Cluster::start();
    let ray = Ray::new(cluster.config()).expect("a valid config");
    let head_ip = cluster.namespace.address(2);
    let worker_ip = cluster.namespace.address(3);

    // The head alone: nothing to report.
    let members = until(&ray, "the dashboard answers", |members| {
        members
            .nodes
            .iter()
            .any(|node| node.is_head && node.is_alive())
    })
    .await;
    let head = members.nodes.iter().find(|node| node.is_head).unwrap();
    assert_eq!(head.node_ip, head_ip);
    assert_eq!(head.resources["CPU"], 1.0);
    assert!(members.workers().is_empty());
    assert!(members.report(&BTreeSet::new()).is_empty());
    assert!(members.warning.is_none(), "{:?}", members.warning);

    // Start: the worker joins, labelled and at its address.
    let ran = ray.start("gaming").await.expect("the worker starts");
    assert!(ran.argv.contains(&format!("--address={head_ip}:6379")));
    assert!(ran.argv.contains(&"--labels=vigil-node=gaming".to_string()));
    let members = until(&ray, "the worker joins", |members| {
        members.alive("gaming").is_some()
    })
    .await;
    let worker = members.alive("gaming").unwrap().clone();
    assert_eq!(worker.node_ip, worker_ip);
    assert!(!worker.is_head);
    assert_eq!(worker.labels[ray::NODE_LABEL], "gaming");
    assert_eq!(worker.resources["CPU"], 1.0);
    let report = members.report(&BTreeSet::new());
    assert_eq!(report.insert[ray::RELATION], [vec![symbol("gaming")]]);
    assert!(report.retract.is_empty());
    let entry = report.entry("ray: members", Some(1_800_000_000));
    assert_eq!(entry.insert[ray::RELATION], [vec![symbol("gaming")]]);
    let reported = members.workers();
    assert!(!cluster.worker.processes().is_empty());

    // Drain: Ray drains the idle node by its id, it leaves, and it is stopped.
    let drained = ray.drain("gaming").await.expect("the worker drains");
    assert_eq!(drained.node_id.as_deref(), Some(worker.node_id.as_str()));
    assert!(drained.left, "the idle worker leaves by itself");
    assert!(
        drained
            .drain
            .as_ref()
            .unwrap()
            .argv
            .contains(&format!("--node-id={}", worker.node_id))
    );
    let members = until(&ray, "the drained worker is dead", |members| {
        members.alive("gaming").is_none()
    })
    .await;
    let gone = members
        .nodes
        .iter()
        .find(|node| node.node_id == worker.node_id)
        .expect("the dead node is still listed");
    assert_eq!(gone.state, NodeState::Dead);
    let message = gone.state_message.clone().unwrap_or_default();
    assert!(
        message.contains("vigil: gaming is needed back"),
        "{message}"
    );
    let report = members.report(&reported);
    assert_eq!(report.retract[ray::RELATION], [vec![symbol("gaming")]]);
    assert!(report.insert.is_empty());
    assert_eq!(
        cluster.worker.processes(),
        Vec::<String>::new(),
        "ray stop left processes on the worker's host"
    );

    // Start again, and stop at once (a game started): the new worker dies too.
    ray.start("gaming").await.expect("the worker starts again");
    let members = until(&ray, "the worker joins again", |members| {
        members.alive("gaming").is_some()
    })
    .await;
    let again = members.alive("gaming").unwrap().node_id.clone();
    assert_ne!(again, worker.node_id);
    assert_eq!(members.recognised["gaming"].len(), 2);
    ray.stop("gaming").await.expect("the worker stops");
    let members = until(&ray, "the stopped worker is dead", |members| {
        members.alive("gaming").is_none()
    })
    .await;
    assert!(
        members
            .nodes
            .iter()
            .any(|node| node.node_id == again && node.state == NodeState::Dead)
    );
    assert_eq!(cluster.worker.processes(), Vec::<String>::new());

    // Draining a node without a worker only stops it.
    let drained = ray.drain("gaming").await.expect("a drain of nothing");
    assert_eq!(drained.node_id, None);
    assert!(drained.drain.is_none());
    assert!(!drained.left);
}

/// A config whose commands are given, against a dashboard on loopback.
fn local(port: u16, start: &[&str], stop: &[&str]) -> Ray {
    let argv = |words: &[&str]| words.iter().map(|word| word.to_string()).collect();
    Ray::new(RayConfig {
        head: "127.0.0.1:6379".into(),
        dashboard: format!("http://127.0.0.1:{port}"),
        dashboard_timeout_s: 5.0,
        poll_interval_s: 0.1,
        nodes: BTreeMap::from([(
            "gaming".to_string(),
            RayNode {
                address: Some("10.0.0.20".into()),
                start: argv(start),
                drain: argv(&["true", "{node_id}"]),
                stop: argv(stop),
                start_timeout_s: 30.0,
                drain_timeout_s: 30.0,
                stop_timeout_s: 0.3,
                drain_wait_s: 1.0,
            },
        )]),
    })
    .expect("a valid config")
}

/// A dashboard on loopback that gives each connection the next of `answers` (status, body).
fn dashboard(answers: Vec<(u16, String)>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().expect("a connection");
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).expect("read the request");
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let text = String::from_utf8_lossy(&request);
            requests.push(text.lines().next().unwrap_or_default().to_string());
            let answer = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).expect("answer");
        }
        requests
    });
    (port, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_what_failed_and_why() {
    // A start command that fails: its exit status and its standard error.
    let ray = local(
        free_port(),
        &[
            "sh",
            "-c",
            "echo starting; echo 'ssh: connect to host gaming port 22: No route to host' >&2; exit 255",
        ],
        &["sleep", "30"],
    );
    let error = ray.start("gaming").await.unwrap_err();
    let RayError::Failed {
        ref status,
        ref output,
        ..
    } = error
    else {
        panic!("expected a failed command, got {error:?}");
    };
    assert_eq!(status, "exit status: 255");
    assert_eq!(
        output,
        "ssh: connect to host gaming port 22: No route to host"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("ray start gaming: `sh -c "),
        "{message}"
    );

    // A command that hangs is killed at its timeout.
    let error = ray.stop("gaming").await.unwrap_err();
    assert!(
        matches!(error, RayError::Timeout { .. }),
        "expected a timeout, got {error:?}"
    );
    assert!(error.to_string().contains("did not end within"), "{error}");

    // A program that is not there.
    let missing = local(free_port(), &["/nonexistent/ray", "start"], &["true"]);
    let error = missing.start("gaming").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("ray start gaming: cannot run `/nonexistent/ray`"),
        "{error}"
    );
    assert!(matches!(
        missing.start("laptop").await,
        Err(RayError::UnknownNode(node)) if node == "laptop"
    ));

    // A dashboard that is down: membership and a drain fail, and the drain stops nothing.
    let down = free_port();
    let ray = local(down, &["true"], &["sh", "-c", "echo stopped >&2; exit 1"]);
    let error = ray.members().await.unwrap_err();
    assert!(matches!(error, RayError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "ray dashboard http://127.0.0.1:{down}/api/v0/nodes?limit=10000: cannot connect"
        )),
        "{message}"
    );
    assert!(matches!(
        ray.drain("gaming").await,
        Err(RayError::Connect { .. })
    ));

    // A dashboard that answers nonsense, an error, a refusal, a cut answer.
    let (port, server) = dashboard(vec![
        (200, "<html>Ray Dashboard</html>".into()),
        (
            500,
            r#"{"result": false, "msg": "Failed to query the GCS: deadline exceeded", "data": {}}"#
                .into(),
        ),
        (
            200,
            r#"{"result": false, "msg": "invalid literal for int() with base 10: 'x'", "data": {"result": null}}"#
                .into(),
        ),
        (200, ALIVE[..ALIVE.len() / 2].into()),
        (200, DEAD.into()),
    ]);
    let ray = local(port, &["true"], &["true"]);
    let error = ray.members().await.unwrap_err();
    assert!(matches!(error, RayError::Malformed { .. }), "{error:?}");
    assert!(
        error.to_string().contains(
            "malformed answer: not the state API's JSON envelope: expected value at line 1 column 1"
        ),
        "{error}"
    );
    let error = ray.members().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "ray dashboard http://127.0.0.1:{port}/api/v0/nodes?limit=10000 answered 500: Failed to query the GCS: deadline exceeded"
        )
    );
    let error = ray.members().await.unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("refused the request: invalid literal for int() with base 10: 'x'"),
        "{error}"
    );
    let error = ray.members().await.unwrap_err();
    assert!(error.to_string().contains("EOF while parsing"), "{error}");
    // And a good answer after them all is read.
    let members = ray.members().await.expect("a good answer");
    assert_eq!(members.nodes.len(), 2);
    let requests = server.join().expect("the dashboard");
    assert_eq!(
        requests,
        vec!["GET /api/v0/nodes?limit=10000 HTTP/1.1"; 5],
        "every look is the state API's node list"
    );
}

#[test]
fn a_real_answer_is_read() {
    let (nodes, warning) = parse_nodes(ALIVE.as_bytes()).expect("the captured answer");
    assert_eq!(warning, None);
    assert_eq!(nodes.len(), 2);
    let worker = &nodes[0];
    assert_eq!(
        worker.node_id,
        "6ca1a7f6ec6897fae869018ae5442525adee1420454bc09d4e9f9a0a"
    );
    assert_eq!(worker.node_ip, "10.231.7.3");
    assert_eq!(worker.node_name, "10.231.7.3");
    assert!(!worker.is_head);
    assert_eq!(worker.state, NodeState::Alive);
    assert_eq!(worker.labels[ray::NODE_LABEL], "gaming");
    assert_eq!(worker.resources["CPU"], 1.0);
    assert_eq!(worker.resources["object_store_memory"], 100_000_000.0);
    let head = &nodes[1];
    assert!(head.is_head);
    assert_eq!(head.resources["node:__internal_head__"], 1.0);
    assert!(!head.labels.contains_key(ray::NODE_LABEL));

    let (nodes, _) = parse_nodes(DEAD.as_bytes()).expect("the captured answer");
    assert_eq!(nodes[0].state, NodeState::Dead);
    assert_eq!(
        nodes[0].state_message.as_deref(),
        Some("Terminated due to idle (no Ray activity): vigil: the game started")
    );
    assert_eq!(nodes[1].state_message, None);
}

#[test]
fn the_captured_answers_become_ray_worker_facts() {
    let ray = local(free_port(), &["true"], &["true"]);
    let (nodes, warning) = parse_nodes(ALIVE.as_bytes()).unwrap();
    let alive = ray.recognise(nodes, warning);
    assert_eq!(alive.workers(), BTreeSet::from(["gaming".to_string()]));
    let report = alive.report(&BTreeSet::new());
    assert_eq!(report.insert[ray::RELATION], [vec![symbol("gaming")]]);
    let (nodes, warning) = parse_nodes(DEAD.as_bytes()).unwrap();
    let dead = ray.recognise(nodes, warning);
    assert!(dead.alive("gaming").is_none());
    let report = dead.report(&alive.workers());
    assert_eq!(report.retract[ray::RELATION], [vec![symbol("gaming")]]);
    assert!(report.insert.is_empty());
}

#[test]
fn malformed_answers_are_named_not_panics() {
    let worker: serde_json::Value = serde_json::from_str(ALIVE).unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json = worker.clone();
        edit(&mut json["data"]["result"]["result"][0]);
        serde_json::to_vec(&json).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "EOF while parsing"),
        (b"[1, 2]".to_vec(), "not the state API's JSON envelope"),
        (
            br#"{"result": true, "msg": "", "data": {}}"#.to_vec(),
            "no `data.result`",
        ),
        (
            with(&|node| {
                node.as_object_mut().unwrap().remove("node_id");
            }),
            "missing field `node_id`",
        ),
        (
            with(&|node| node["node_id"] = "not-hex!".into()),
            "node 0: `node_id` \"not-hex!\" is not a hexadecimal id",
        ),
        (
            with(&|node| node["state"] = 3.into()),
            "invalid type: integer `3`, expected a string",
        ),
        (
            with(&|node| node["resources_total"]["CPU"] = "one".into()),
            "invalid type: string \"one\", expected f64",
        ),
        (with(&|node| node["state"] = "".into()), "an empty `state`"),
    ];
    for (body, reason) in cases {
        match parse_nodes(&body) {
            Err(Answer::Malformed(error)) => assert!(
                error.contains(reason),
                "{}: {error}",
                String::from_utf8_lossy(&body)
            ),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!(
        parse_nodes(br#"{"result": false, "msg": "no GCS", "data": {"result": null}}"#),
        Err(Answer::Refused("no GCS".into()))
    );
    // A state this version does not know is kept, and is not alive.
    let (nodes, _) = parse_nodes(&with(&|node| node["state"] = "DRAINING".into())).unwrap();
    assert_eq!(nodes[0].state, NodeState::Other("DRAINING".into()));
    assert!(!nodes[0].is_alive());
    // A cut list is a warning, and the nodes are kept.
    let mut cut = worker.clone();
    cut["data"]["result"]["total"] = 5.into();
    let (nodes, warning) = parse_nodes(&serde_json::to_vec(&cut).unwrap()).unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(warning.as_deref(), Some("the list was cut to 2 of 5 nodes"));
}
