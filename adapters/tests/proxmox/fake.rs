//! A fakepve process for one test: started on 127.0.0.1 with a port the system picks, driven
//! over its standard input (see `harness.py`), killed when the test drops it.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The line `.ci/run` and a developer need.
pub const INSTALL: &str = "pip install 'fakepve[crypto]'";

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The raw path, with its query string.
    pub path: String,
    pub content_type: String,
    pub body: String,
    /// `token:USER@REALM!TOKENID`, `ticket` or `none`.
    pub auth: String,
}

pub struct Fake {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    directory: PathBuf,
    pub port: u16,
    /// The fake's certificate (PEM), which is also its CA.
    pub certificate: Vec<u8>,
    /// The API schema fakepve ships, decompressed.
    pub schema: PathBuf,
    /// `USER@REALM!TOKENID=SECRET`.
    pub token: String,
}

impl Fake {
    pub fn start() -> Fake {
        let directory = std::env::temp_dir().join(format!(
            "vigil-fakepve-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        // From the adapters' tests, or from the workspace's.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let harness = [
            root.join("tests/proxmox/harness.py"),
            root.join("adapters/tests/proxmox/harness.py"),
        ]
        .into_iter()
        .find(|path| path.exists())
        .expect("adapters/tests/proxmox/harness.py");
        let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
        let stderr = std::fs::File::create(directory.join("stderr")).expect("a log file");
        let mut child = Command::new(&python)
            .arg(&harness)
            .arg(&directory)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {python}: {error} (fakepve needs Python 3.10 or later and `{INSTALL}`)"));
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        if read.map_or(true, |count| count == 0) {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(directory.join("stderr")).unwrap_or_default();
            panic!("fakepve did not start (is it installed? `{INSTALL}`):\n{log}");
        }
        let ready: Value = serde_json::from_str(&line).expect("the harness's first line");
        let certificate =
            std::fs::read(ready["cert"].as_str().expect("cert")).expect("the fake's certificate");
        Fake {
            child,
            stdin,
            stdout,
            port: u16::try_from(ready["port"].as_u64().expect("port")).expect("a port"),
            certificate,
            schema: PathBuf::from(ready["schema"].as_str().expect("schema")),
            token: ready["token"].as_str().expect("token").to_string(),
            directory,
        }
    }

    /// Runs a command of the harness; its result.
    pub fn command(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("the harness reads");
        self.stdin.flush().expect("the harness reads");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the harness answers");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the harness answered {line:?} to {command}"));
        if let Some(error) = answer.get("error") {
            panic!("the harness failed {command}: {error}");
        }
        answer["ok"].clone()
    }

    pub fn add_vm(&mut self, vmid: u32, name: &str, node: &str, status: &str) {
        self.command(
            json!({"op": "add_vm", "vmid": vmid, "name": name, "node": node, "status": status}),
        );
    }

    pub fn add_ct(&mut self, vmid: u32, name: &str, node: &str, status: &str) {
        self.command(
            json!({"op": "add_ct", "vmid": vmid, "name": name, "node": node, "status": status}),
        );
    }

    pub fn add_node(&mut self, name: &str, online: bool) {
        self.command(json!({"op": "add_node", "name": name, "online": online}));
    }

    /// A guest as the fake holds it: `node`, `status`, `lock`, and a VM's `qmpstatus`.
    pub fn guest(&mut self, vmid: u32) -> Value {
        self.command(json!({"op": "guest", "vmid": vmid}))
    }

    pub fn requests(&mut self) -> Vec<Recorded> {
        let requests = self.command(json!({"op": "requests"}));
        requests
            .as_array()
            .expect("a list")
            .iter()
            .map(|request| Recorded {
                method: request["method"].as_str().unwrap_or_default().into(),
                path: request["path"].as_str().unwrap_or_default().into(),
                content_type: request["content_type"].as_str().unwrap_or_default().into(),
                body: request["body"].as_str().unwrap_or_default().into(),
                auth: request["auth"].as_str().unwrap_or_default().into(),
            })
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // The harness stops at the end of its input; a hanging request may hold it, so it is
        // killed (it is this test's own child, by its handle).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
