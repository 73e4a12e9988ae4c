//! End to end over HTTP: `vigil serve` with the policy on the sample house, driven as a source
//! and watched as an actuator would watch it.
//!
//! The daemon is this same executable (`vigil serve --config CONFIG`), started with a config
//! written to a temporary directory: `listen = "127.0.0.1:0"`, the policy and the sample
//! house's facts, `clock = "event"` (transactions carry their times), `simulate = false` (no
//! simulated day interferes), `snapshot_every = 0`, a fresh data directory. Its address is the
//! one it prints when it listens. Then:
//!
//! - a watcher opens `GET /v1/watch/act` (server-sent events) on a connection of its own, and
//!   notes when each change set of `act`, the view actuators execute, arrives;
//! - one-event transactions (the same events as in process, [`Events`]) are sent one at a
//!   time with `POST /v1/transactions` on a keep-alive connection. **Ingest** is the time from
//!   sending the request to receiving the whole response, which carries the change set of the
//!   views. When the change set changes `act`, **dispatch** is the time from sending the
//!   request to the watcher receiving that change (matched by its logical time): the moment an
//!   actuator would act on it. Nothing is actuated: the watcher is the dry run.
//! - `GET /v1/health` round trips give the floor of any request (HTTP and the engine thread,
//!   no commit).
//!
//! The client is a few dozen lines of HTTP/1.1 over `std::net`, as in `benches/serve.rs`, so
//! that no client library's overhead is measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value as Json, json};
use vigil_homelab::events::{Event, Events};
use vigil_homelab::facts::FactSet;

use super::progress::Progress;
use super::report::{Recorder, summary};
use super::workloads::{Paths, compile};

/// How long to wait for any one answer before the run is declared failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs the HTTP benchmark: `warm_up` untimed transactions, then `events` timed ones.
pub fn measure(paths: &Paths, seed: u64, warm_up: usize, events: usize) -> Result<Json> {
    let mut progress = Progress::new("http");
    let dir = std::env::temp_dir().join(format!("vigil-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(paths, seed, warm_up, events, &dir, &mut progress);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(
    paths: &Paths,
    seed: u64,
    warm_up: usize,
    events: usize,
    dir: &Path,
    progress: &mut Progress,
) -> Result<Json> {
    let program = compile(&paths.policy)?;
    let facts = FactSet::from_dir(&program, &paths.sample)?;
    let stream: Vec<Event> = Events::new(&facts, seed).take(warm_up + events).collect();
    let daemon = Daemon::start(paths, dir)?;
    progress.line(&format!("daemon listening on {}", daemon.address));
    let outcome = drive(&daemon, &stream, warm_up, progress);
    daemon.stop();
    outcome
}

fn drive(
    daemon: &Daemon,
    stream: &[Event],
    warm_up: usize,
    progress: &mut Progress,
) -> Result<Json> {
    let arrivals = watch(&daemon.address, "act")?;
    let mut client = Client::connect(&daemon.address)?;

    let mut health = Recorder::new();
    for _ in 0..(stream.len() - warm_up).clamp(10, 500) {
        let sent = Instant::now();
        let response = client.request("GET", "/v1/health", b"")?;
        health.record(sent.elapsed());
        if response.status != 200 {
            bail!("GET /v1/health answered {}", response.status);
        }
    }

    let (mut ingest, mut dispatch) = (Recorder::new(), Recorder::new());
    let mut act_events = 0;
    let mut last_time = 0;
    let timed = stream.len() - warm_up;
    let started = Instant::now();
    let mut engine_before = None;
    for (index, event) in stream.iter().enumerate() {
        if index == warm_up {
            engine_before = engine_thread(&mut client);
        }
        let body = serde_json::to_vec(&event.entry())?;
        let sent = Instant::now();
        let response = client.request("POST", "/v1/transactions", &body)?;
        let answered = sent.elapsed();
        if response.status != 200 {
            bail!(
                "POST /v1/transactions answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        let changes: Json = serde_json::from_slice(&response.body)
            .context("the change set of POST /v1/transactions is not JSON")?;
        let time = changes["time"]
            .as_u64()
            .ok_or_else(|| anyhow!("the change set has no logical time: {changes}"))?;
        if time <= last_time {
            bail!("logical times must increase: {time} after {last_time}");
        }
        last_time = time;
        let acts = changes["changes"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|row| row["relation"] == "act"));
        // The watcher's arrival of this transaction's `act` change, if it has one.
        let arrived = if acts {
            Some(arrival(&arrivals, time)?)
        } else {
            None
        };
        if index < warm_up {
            continue;
        }
        if index == warm_up {
            progress.line(&format!("{warm_up} warm-up transactions sent"));
        }
        ingest.record(answered);
        if let Some(arrived) = arrived {
            dispatch.record(arrived.saturating_duration_since(sent));
            act_events += 1;
        }
        progress.count("one-event transactions", index + 1 - warm_up, timed);
    }
    progress.close();
    let seconds = started.elapsed().as_secs_f64();
    // The daemon's own account of the time its engine thread spent per transaction (check,
    // journal append and sync, commit, change set): the rest of ingest is HTTP and JSON.
    let engine_mean_ms = match (engine_before, engine_thread(&mut client)) {
        (Some((count_before, sum_before)), Some((count, sum))) if count > count_before => {
            Some((sum - sum_before) / (count - count_before) * 1e3)
        }
        _ => None,
    };
    progress.line(&format!(
        "{timed} transactions: ingest p99 {:.3} ms; {act_events} changed `act`, dispatch p99 {:.3} ms",
        ingest.quantile_ms(0.99),
        dispatch.quantile_ms(0.99),
    ));
    Ok(json!({
        "house": "sample",
        "events": timed,
        "warm_up": warm_up,
        "act_events": act_events,
        "transactions_per_s": (timed + warm_up) as f64 / seconds,
        "engine_thread_mean_ms": engine_mean_ms,
        "health": summary(&health),
        "ingest": summary(&ingest),
        "dispatch": summary(&dispatch),
    }))
}

/// The daemon's engine-thread accounting from `/metrics`: transactions, and seconds in all.
fn engine_thread(client: &mut Client) -> Option<(f64, f64)> {
    let response = client.request("GET", "/metrics", b"").ok()?;
    let text = String::from_utf8_lossy(&response.body);
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        value("vigil_transaction_seconds_count ")?,
        value("vigil_transaction_seconds_sum ")?,
    ))
}

/// Waits for the watcher's report of the change at logical time `time`, skipping older ones.
fn arrival(arrivals: &mpsc::Receiver<(u64, Instant)>, time: u64) -> Result<Instant> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match arrivals.recv_timeout(left) {
            Ok((id, at)) if id == time => return Ok(at),
            Ok((id, _)) if id < time => continue,
            Ok((id, _)) => bail!("the watch stream skipped the change at time {time} (got {id})"),
            Err(_) => bail!("no `act` change arrived on the watch stream for time {time}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

struct Daemon {
    child: Child,
    address: String,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(paths: &Paths, dir: &Path) -> Result<Daemon> {
        let absolute = |path: &Path| -> Result<PathBuf> {
            std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))
        };
        let config = dir.join("vigil.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nprogram = {}\nfacts = {}\ndata_dir = \"data\"\nclock = \"event\"\nsimulate = false\nsnapshot_every = 0\n",
                toml_string(&absolute(&paths.policy)?),
                toml_string(&absolute(&paths.sample)?),
            ),
        )?;
        let exe = std::env::current_exe().context("cannot find the vigil executable")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `vigil serve`")?;
        // Both pipes are drained for as long as the daemon runs: it prints every decision, and
        // a full pipe would block it.
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut errors = BufReader::new(child.stderr.take().context("the daemon's stderr")?);
        std::thread::spawn(move || {
            let mut line = String::new();
            while errors.read_line(&mut line).is_ok_and(|read| read > 0) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                }
                line.clear();
            }
        });
        let mut output = BufReader::new(child.stdout.take().context("the daemon's stdout")?);
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut found = Some(found);
            while output.read_line(&mut line).is_ok_and(|read| read > 0) {
                if let Some(address) = line
                    .trim()
                    .strip_prefix("vigil serve: listening on http://")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(address.to_string());
                }
                line.clear();
            }
        });
        let mut daemon = Daemon {
            child,
            address: String::new(),
            stderr,
        };
        match listening.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => daemon.address = address,
            Err(_) => {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                let errors = daemon.stderr.lock().map(|e| e.clone()).unwrap_or_default();
                bail!("`vigil serve` did not start listening:\n{errors}");
            }
        }
        Ok(daemon)
    }

    /// SIGTERM, and a clean exit within 10 s; killed otherwise.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: `vigil serve` did not stop within 10 s of SIGTERM; killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

struct Response {
    status: u16,
    body: Vec<u8>,
}

/// One keep-alive connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    address: String,
    request: Vec<u8>,
}

impl Client {
    fn connect(address: &str) -> Result<Client> {
        let stream = TcpStream::connect(address)
            .with_context(|| format!("cannot connect to the daemon at {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Client {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
            address: address.to_string(),
            request: Vec::with_capacity(4096),
        })
    }

    /// Sends one request in one write (head and body together) and reads the response.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Response> {
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.address
        )?;
        if method == "POST" {
            write!(
                self.request,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.writer.write_all(&self.request)?;
        let (status, headers) = read_head(&mut self.reader)?;
        let body = if headers.chunked {
            let mut body = Vec::new();
            while let Some(chunk) = read_chunk(&mut self.reader)? {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            let mut body = vec![0; headers.length.unwrap_or(0)];
            self.reader.read_exact(&mut body)?;
            body
        };
        Ok(Response { status, body })
    }
}

struct Headers {
    length: Option<usize>,
    chunked: bool,
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> Result<()> {
    line.clear();
    if reader.read_line(line)? == 0 {
        bail!("the daemon closed the connection");
    }
    Ok(())
}

/// The status line and the headers that frame the body.
fn read_head(reader: &mut impl BufRead) -> Result<(u16, Headers)> {
    let mut line = String::new();
    read_line(reader, &mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP status line: {line:?}"))?;
    let mut headers = Headers {
        length: None,
        chunked: false,
    };
    loop {
        read_line(reader, &mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            return Ok((status, headers));
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            headers.length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            headers.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
}

/// One chunk of a chunked body; `None` after the last.
fn read_chunk(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>> {
    let mut line = String::new();
    read_line(reader, &mut line)?;
    let size = line.trim_end().split(';').next().unwrap_or("").trim();
    let size =
        usize::from_str_radix(size, 16).map_err(|_| anyhow!("not a chunk size: {line:?}"))?;
    if size == 0 {
        // Trailers, up to the empty line.
        loop {
            read_line(reader, &mut line)?;
            if line.trim_end().is_empty() {
                return Ok(None);
            }
        }
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk)?;
    chunk.truncate(size);
    Ok(Some(chunk))
}

/// Opens `GET /v1/watch/VIEW` and reports, for each change set that arrives, its logical time
/// (the event's `id`) and the moment its last byte was read. The stream runs until the daemon
/// stops.
fn watch(address: &str, view: &str) -> Result<mpsc::Receiver<(u64, Instant)>> {
    let stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET /v1/watch/{view} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    if status != 200 {
        bail!("GET /v1/watch/{view} answered {status}");
    }
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _writer = writer;
        let mut pending = String::new();
        loop {
            let bytes = if headers.chunked {
                match read_chunk(&mut reader) {
                    Ok(Some(chunk)) => chunk,
                    _ => return,
                }
            } else {
                let mut buffer = vec![0; 64 * 1024];
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => {
                        buffer.truncate(read);
                        buffer
                    }
                }
            };
            let at = Instant::now();
            pending.push_str(&String::from_utf8_lossy(&bytes));
            // Server-sent events end with a blank line.
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let id = event
                    .lines()
                    .find_map(|line| line.strip_prefix("id:"))
                    .and_then(|id| id.trim().parse::<u64>().ok());
                let changes = event.lines().any(|line| line.trim() == "event: changes");
                if let (Some(id), true) = (id, changes)
                    && sender.send((id, at)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(receiver)
}
