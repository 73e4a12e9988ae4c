//! A real NUT server for tests: Debian's `upsd` serving a `dummy-ups` driver (the package
//! `nut-server`), started on 127.0.0.1 on a free port in a temporary directory, with its
//! configuration and state there (`NUT_CONFPATH`, `NUT_STATEPATH`). A test plays a power
//! outage one step at a time ([`Upsd::play`]): it writes the step into the driver's data file
//! (`mode = dummy-once` re-reads it when its modification time changes).

use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use vigil_adapters::nut::Client;

/// The longest wait for something that will happen: never a verdict, only a guard.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const USERNAME: &str = "monitor";
/// With a space, so that quoting is exercised.
pub const PASSWORD: &str = "correct horse";

/// One step of the outage: what the driver reports.
pub struct Step {
    pub status: &'static str,
    pub charge: i64,
    pub runtime: i64,
}

pub const OUTAGE: [Step; 4] = [
    Step {
        status: "OL",
        charge: 100,
        runtime: 1800,
    },
    Step {
        status: "OB DISCHRG",
        charge: 92,
        runtime: 1500,
    },
    Step {
        status: "OB DISCHRG",
        charge: 61,
        runtime: 900,
    },
    Step {
        status: "OB DISCHRG LB",
        charge: 18,
        runtime: 240,
    },
];

/// Where Debian puts NUT's programs (`/sbin/upsd` is a wrapper that refuses to start unless
/// /etc/nut/nut.conf enables it); `VIGIL_NUT_DIR` overrides.
pub fn nut_program(name: &str) -> PathBuf {
    let mut directories: Vec<PathBuf> = std::env::var_os("VIGIL_NUT_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    directories.extend(
        ["/lib/nut", "/usr/lib/nut", "/usr/libexec/nut"]
            .iter()
            .map(PathBuf::from),
    );
    directories
        .iter()
        .map(|directory| directory.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "NUT's `{name}` is not in {directories:?}: install the Debian packages \
                 `nut-server` and `nut-client`, or set VIGIL_NUT_DIR"
            )
        })
}

pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// upsd and its driver, stopped and cleaned up on drop.
pub struct Upsd {
    directory: PathBuf,
    port: u16,
    driver: Child,
    server: Option<Child>,
    steps: u64,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Upsd {
    /// Starts the driver on `first`, then upsd, and waits until upsd serves the driver's data.
    pub async fn start(first: &Step) -> Upsd {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let directory = std::env::temp_dir().join(format!(
            "vigil-nut-{}-{}-{nanos}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(directory.join("state")).unwrap();
        write(
            &directory.join("ups.conf"),
            "[ups]\n\
             \tdriver = dummy-ups\n\
             \tport = ups.dev\n\
             \tmode = dummy-once\n\
             \tpollinterval = 1\n\
             \tdesc = \"Vigil's test UPS\"\n",
        );
        write(
            &directory.join("upsd.users"),
            &format!("[{USERNAME}]\n\tpassword = \"{PASSWORD}\"\n\tupsmon secondary\n"),
        );
        // The data file exists before the driver starts, which reads it at once.
        write_step(&directory, first, 1);
        let mut upsd = Upsd {
            driver: spawn(&directory, "dummy-ups", &["-a", "ups"], "driver.log"),
            server: None,
            directory,
            port: 0,
            steps: 1,
        };
        upsd.wait_for_the_driver().await;
        // A free port may be taken between its probe and upsd's bind: try again then.
        for _ in 0..5 {
            upsd.port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            write(
                &upsd.directory.join("upsd.conf"),
                &format!("LISTEN 127.0.0.1 {}\n", upsd.port),
            );
            upsd.stop_upsd();
            upsd.server = Some(spawn(&upsd.directory, "upsd", &[], "upsd.log"));
            if upsd.wait_for_upsd().await {
                upsd.wait_for_data(first).await;
                return upsd;
            }
        }
        panic!("upsd never listened:\n{}", upsd.logs());
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Plays the next step.
    pub fn play(&mut self, step: &Step) {
        self.steps += 1;
        write_step(&self.directory, step, self.steps);
    }

    pub async fn wait_for_the_driver(&mut self) {
        let socket = self.directory.join("state/dummy-ups-ups");
        let deadline = Instant::now() + PATIENCE;
        while !socket.exists() {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("dummy-ups exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "dummy-ups never started:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether upsd came to listen; false if it exited (its port was taken, say).
    pub async fn wait_for_upsd(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return true;
            }
            if let Some(server) = &mut self.server
                && let Ok(Some(_)) = server.try_wait()
            {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "upsd never listened:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until upsd has the driver's first data (before it, the status is `WAIT`).
    pub async fn wait_for_data(&self, first: &Step) {
        let deadline = Instant::now() + PATIENCE;
        let mut client = Client::connect(&self.address(), PATIENCE).await.unwrap();
        loop {
            if let Ok(status) = client.get_var("ups", "ups.status").await
                && status == first.status
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "upsd never served the driver's data:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops upsd (the driver goes on).
    pub fn stop_upsd(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    pub fn logs(&self) -> String {
        ["driver.log", "upsd.log"]
            .iter()
            .map(|name| {
                let text = fs::read_to_string(self.directory.join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect()
    }
}

impl Drop for Upsd {
    fn drop(&mut self) {
        self.stop_upsd();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// Writes `step` as the driver's data, with a modification time of its own (`sequence`
/// million seconds after the epoch), so that the driver, which compares whole seconds,
/// re-reads it. The file is replaced whole, so the driver never reads half of it.
pub fn write_step(directory: &Path, step: &Step, sequence: u64) {
    let data = format!(
        "ups.status: {}\nbattery.charge: {}\nbattery.runtime: {}\nups.load: 23\nups.realpower: 180\n",
        step.status, step.charge, step.runtime
    );
    let staged = directory.join("ups.dev.new");
    write(&staged, &data);
    File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * sequence))
        .unwrap();
    fs::rename(&staged, directory.join("ups.dev")).unwrap();
}

pub fn write(path: &Path, text: &str) {
    let mut file = File::create(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Runs a NUT program in the foreground, configured from `directory`, its output in `log`.
pub fn spawn(directory: &Path, program: &str, arguments: &[&str], log: &str) -> Child {
    let mut command = Command::new(nut_program(program));
    command.args(arguments).arg("-F");
    if running_as_root() {
        // Else NUT drops to its unprivileged user, who cannot read the temporary directory.
        command.args(["-u", "root"]);
    }
    let output = File::create(directory.join(log)).unwrap();
    command
        .env("NUT_CONFPATH", directory)
        .env("NUT_STATEPATH", directory.join("state"))
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {program}: {error}"))
}
