//! What the end-to-end tests of `vigil serve` share: a scratch directory with a program and a
//! config, a `Daemon` that starts the binary on 127.0.0.1:0 and stops (or kills) it, and raw
//! HTTP/1.1 requests over a `TcpStream`.
//!
//! Included by `#[path = "support/daemon.rs"] mod daemon;` from `tests/serve*.rs`; every test
//! crate uses a part of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The program most daemon tests serve: recursion (`path`), and a keyed, stamped stream whose
/// view depends on the clock (`hot`).
pub const PROGRAM: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl edge(a: number, b: number)
.input edge(IO=stream)
.decl path(a: number, b: number)
.output path
path(a, b) :- edge(a, b).
path(a, c) :- path(a, b), edge(b, c).
.decl reading(node: symbol, watts: number, since: number)
.input reading(IO=stream, key="node", stamp="since")
.decl hot(n: symbol)
.output hot
hot(n) :- reading(n, w, since), w > 80, now(t), t - since >= 60.
"#;

/// A fresh directory under the system's temporary directory, unique to this test process and
/// `name`. Dropping it removes it, unless the test is failing: then it is left for a look, and
/// its path is printed.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("vigil-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the failing test's directory is left: {}", self.0.display());
        } else {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }
}

/// A scratch directory for a daemon, holding `program` as `prog.dl`.
pub fn scratch(name: &str, program: &str) -> Scratch {
    let dir = Scratch::new(&format!("serve-{name}"));
    std::fs::write(dir.join("prog.dl"), program).unwrap();
    dir
}

/// Writes `vigil.toml` in `dir`: `prog.dl`, data in `data/`, event clock, 4096-byte requests,
/// no automatic snapshots, then `extra` (which may override none of these keys).
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    config_with(
        dir,
        "listen = \"127.0.0.1:0\"\nprogram = \"prog.dl\"\ndata_dir = \"data\"\nclock = \"event\"\nmax_request_bytes = 4096\nsnapshot_every = 0\n",
        extra,
    )
}

/// Writes `vigil.toml` in `dir` from `base` and `extra`.
pub fn config_with(dir: &Path, base: &str, extra: &str) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(&path, format!("{base}{extra}")).unwrap();
    path
}

/// A running `vigil serve`. Dropping it kills the process.
pub struct Daemon {
    pub child: Child,
    pub address: String,
    /// What it prints on stdout, after the `listening on` line.
    pub output: BufReader<Box<dyn Read + Send>>,
}

impl Drop for Daemon {
    /// A test that fails midway still leaves no daemon behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start that did not reach listening ended.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of a header (the first one of that name), without surrounding spaces.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// The body as JSON, or `Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

impl Daemon {
    /// Starts `vigil serve --config CONFIG EXTRA...` and waits until it listens; panics with
    /// its standard error if it stops before.
    pub fn start(config: &Path, extra: &[&str]) -> Daemon {
        match Daemon::try_start(config, extra) {
            Ok(daemon) => daemon,
            Err(failed) => panic!(
                "the daemon stopped ({}): {}{}",
                failed.status, failed.stdout, failed.stderr
            ),
        }
    }

    /// Starts the daemon; if it exits before it listens, returns how it exited and what it
    /// printed.
    pub fn try_start(config: &Path, extra: &[&str]) -> Result<Daemon, Failed> {
        let mut arguments = vec![std::ffi::OsStr::new("--config"), config.as_os_str()];
        arguments.extend(extra.iter().map(std::ffi::OsStr::new));
        Daemon::launch(&arguments)
    }

    /// Starts `vigil serve ARGUMENTS...`; as [`Daemon::try_start`].
    pub fn launch(arguments: &[&std::ffi::OsStr]) -> Result<Daemon, Failed> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command.arg("serve").args(arguments);
        Daemon::spawn(command)
    }

    /// Runs `command`, which starts `vigil serve` (directly, or through a wrapper that
    /// `exec`s it); as [`Daemon::try_start`].
    #[expect(
        clippy::zombie_processes,
        reason = "the returned Daemon owns the child, and its Drop waits for it"
    )]
    pub fn spawn(mut command: Command) -> Result<Daemon, Failed> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let mut output = BufReader::new(stdout);
        let mut line = String::new();
        let mut printed = String::new();
        loop {
            line.clear();
            if output.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return Err(Failed {
                    status,
                    stdout: printed,
                    stderr,
                });
            }
            printed.push_str(&line);
            if let Some(address) = line
                .trim()
                .strip_prefix("vigil serve: listening on http://")
            {
                let address = address.to_string();
                return Ok(Daemon {
                    child,
                    address,
                    output,
                });
            }
        }
    }

    /// Sends one request (`Connection: close`); returns the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let response = self.send(method, path, headers, body);
        (response.status, response.body)
    }

    /// Sends one request; panics if the connection fails.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Sends one request with a `Content-Length` and the whole body; an I/O error (the daemon
    /// died, say) is returned.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    /// Writes `bytes` as they are on a new connection and reads the response until the daemon
    /// closes it.
    pub fn raw(&self, bytes: &[u8]) -> std::io::Result<Response> {
        let mut stream = self.connect()?;
        stream.write_all(bytes)?;
        read_response(&mut stream)
    }

    /// A connection to the daemon, with a 30 s read timeout.
    pub fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(stream)
    }

    /// A request with a JSON body and no headers; the status and the body as JSON (`Null` if
    /// it is not JSON).
    pub fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self.send(method, path, &[], body.as_bytes());
        (response.status, response.json())
    }

    /// The rows of a query (`POST /v1/query`), each as JSON text.
    pub fn query(&self, query: &str) -> Vec<String> {
        let body = serde_json::json!({ "query": query }).to_string();
        let (status, answer) = self.json("POST", "/v1/query", &body);
        assert_eq!(status, 200, "{query}: {answer}");
        answer["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: no rows in {answer}"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Stops the daemon with SIGTERM and returns what it printed after starting.
    pub fn stop(mut self) -> String {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the daemon exits cleanly on SIGTERM: {status}"
        );
        let mut rest = String::new();
        self.output.read_to_string(&mut rest).unwrap();
        rest
    }

    /// Stops the daemon with SIGTERM and returns its standard output and error after starting.
    pub fn stop_with_stderr(mut self) -> (String, String) {
        let mut stderr = self.child.stderr.take().unwrap();
        let stdout = self.stop();
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        (stdout, text)
    }

    /// Closes the reading end of the daemon's stdout, as a pipe whose reader exits does
    /// (`vigil serve | head`): what it prints after goes nowhere.
    pub fn close_stdout(&mut self) {
        self.output = BufReader::new(Box::new(std::io::empty()));
    }

    /// Kills the daemon with SIGKILL (no chance to finish anything) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Reads a whole response from `stream` (until the peer closes it).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "no complete response head in {} bytes: {:?}",
                response.len(),
                String::from_utf8_lossy(&response)
            ),
        ));
    };
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP status line: {head}"),
            )
        })?;
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    Ok(Response { status, head, body })
}

/// The body of a chunked response.
pub fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = body.get(end + 2 + size + 2..).unwrap_or_default();
    }
}

/// The rows of a change set as `+1 path[1,2]`, in the order given.
pub fn rows(changes: &serde_json::Value) -> Vec<String> {
    changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let diff = row["diff"].as_i64().unwrap();
            format!(
                "{diff:+} {}{}",
                row["relation"].as_str().unwrap(),
                row["tuple"]
            )
        })
        .collect()
}

/// Runs `vigil serve --config CONFIG EXTRA...` expecting it to stop before listening; returns
/// how it ended.
pub fn start_fails(config: &Path, extra: &[&str]) -> Failed {
    match Daemon::try_start(config, extra) {
        Ok(daemon) => {
            let address = daemon.address.clone();
            daemon.kill();
            panic!("the daemon started on {address}, but it should have refused to");
        }
        Err(failed) => failed,
    }
}
