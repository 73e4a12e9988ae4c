//! The NUT source against the real thing: Debian's `upsd` serving a `dummy-ups` driver (the
//! Debian package `nut-server`), started on 127.0.0.1 on a free port in a temporary directory,
//! with its configuration and state there (`NUT_CONFPATH`, `NUT_STATEPATH`).
//!
//! The test plays a power outage one step at a time: it writes the step into the driver's data
//! file (`mode = dummy-once` re-reads it when its modification time changes), then polls until
//! Vigil reads that step. So no step can be missed or raced, and timing decides nothing: the
//! deadlines only keep a broken run from hanging. Each step's reports are committed to an
//! engine running the homelab policy on the sample house, whose views must follow.

use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use vigil_adapters::nut::{Client, Config, Login, NutError, Poll, Poller, Token};
use vigil_engine::trace::Field;
use vigil_engine::{Engine, Options, Value};

/// The longest wait for something that will happen: never a verdict, only a guard.
const PATIENCE: Duration = Duration::from_secs(60);

const USERNAME: &str = "monitor";
/// With a space, so that quoting is exercised.
const PASSWORD: &str = "correct horse";

/// One step of the outage: what the driver reports.
struct Step {
    status: &'static str,
    charge: i64,
    runtime: i64,
}

const OUTAGE: [Step; 4] = [
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
fn nut_program(name: &str) -> PathBuf {
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

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// upsd and its driver, stopped and cleaned up on drop.
struct Upsd {
    directory: PathBuf,
    port: u16,
    driver: Child,
    server: Option<Child>,
    steps: u64,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Upsd {
    /// Starts the driver on `first`, then upsd, and waits until upsd serves the driver's data.
    async fn start(first: &Step) -> Upsd {
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

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Plays the next step.
    fn play(&mut self, step: &Step) {
        self.steps += 1;
        write_step(&self.directory, step, self.steps);
    }

    async fn wait_for_the_driver(&mut self) {
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
    async fn wait_for_upsd(&mut self) -> bool {
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
    async fn wait_for_data(&self, first: &Step) {
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
    fn stop_upsd(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    fn logs(&self) -> String {
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
fn write_step(directory: &Path, step: &Step, sequence: u64) {
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

fn write(path: &Path, text: &str) {
    let mut file = File::create(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Runs a NUT program in the foreground, configured from `directory`, its output in `log`.
fn spawn(directory: &Path, program: &str, arguments: &[&str], log: &str) -> Child {
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

fn poller(upsd: &Upsd, password: &str) -> Poller {
    let mut config = Config::new(&upsd.address(), "ups");
    config.login = Some(Login {
        username: USERNAME.into(),
        password: password.into(),
    });
    config.interval = Duration::from_millis(100);
    config.timeout = Duration::from_secs(10);
    config.stale_after = Duration::from_secs(2);
    config.retry_first = Duration::from_millis(100);
    config.retry_cap = Duration::from_millis(400);
    Poller::new(config)
}

/// Polls until `done` holds for a poll, and returns every poll up to it.
async fn poll_until(poller: &mut Poller, what: &str, done: impl Fn(&Poll) -> bool) -> Vec<Poll> {
    let deadline = Instant::now() + PATIENCE;
    let mut polls = Vec::new();
    loop {
        let poll = poller.poll().await;
        let wait = poll.wait;
        let finished = done(&poll);
        polls.push(poll);
        if finished {
            return polls;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; the last polls: {:#?}",
            &polls[polls.len().saturating_sub(3)..]
        );
        tokio::time::sleep(wait).await;
    }
}

fn reads(poll: &Poll, step: &Step) -> bool {
    poll.reading.as_ref().is_ok_and(|reading| {
        reading.status.as_ref().map(ToString::to_string).as_deref() == Some(step.status)
            && reading.battery() == Some((step.charge, step.runtime))
    })
}

/// A report's rows as text (`+ups_source(ups, battery, _)`), in order.
fn rows(polls: &[Poll]) -> Vec<String> {
    let field = |field: &Field| match &field.0 {
        Some(value) => value.to_string(),
        None => "_".to_string(),
    };
    let mut rows = Vec::new();
    for poll in polls {
        for (sign, relations) in [("+", &poll.report.insert), ("-", &poll.report.retract)] {
            for (relation, tuples) in relations {
                for tuple in tuples {
                    let columns: Vec<String> = tuple.iter().map(field).collect();
                    rows.push(format!("{sign}{relation}({})", columns.join(", ")));
                }
            }
        }
    }
    rows
}

fn homelab() -> Engine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let program = vigil_engine::compile_file(&root.join("rules/homelab.dl"))
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let mut engine = Engine::new(program, Options { workers: 1 }).unwrap();
    engine.load_facts(&root.join("fixtures/homelab")).unwrap();
    engine
}

/// Commits the polls' reports at `time`, as the daemon would.
fn commit(engine: &mut Engine, polls: &[Poll], time: i64) {
    for poll in polls.iter().filter(|poll| !poll.report.is_empty()) {
        let entry = poll.entry(Some(time));
        entry
            .transaction(engine)
            .commit()
            .unwrap_or_else(|error| panic!("{entry:?} was refused: {error}"));
    }
}

fn holds(engine: &Engine, view: &str) -> bool {
    engine
        .read(view, &[Some(Value::symbol("ups"))])
        .unwrap()
        .len()
        == 1
}

#[tokio::test]
async fn the_poller_follows_a_power_outage() {
    let mut upsd = Upsd::start(&OUTAGE[0]).await;
    let mut poller = poller(&upsd, PASSWORD);
    let mut engine = homelab();
    let start = engine.now() + 60;
    let expected: [&[&str]; 4] = [
        &["+ups_source(ups, line, _)", "+ups_battery(ups, 100, 1800)"],
        &[
            "+ups_source(ups, battery, _)",
            "+ups_battery(ups, 92, 1500)",
        ],
        &["+ups_battery(ups, 61, 900)"],
        &["+ups_battery(ups, 18, 240)"],
    ];
    for (index, step) in OUTAGE.iter().enumerate() {
        if index > 0 {
            upsd.play(step);
        }
        let polls = poll_until(&mut poller, step.status, |poll| reads(poll, step)).await;
        for poll in &polls {
            assert!(poll.malformed.is_empty(), "{:?}", poll.malformed);
        }
        // The driver sets one variable at a time, so a poll may catch a step half written:
        // the battery row may pass through a mix of the old and new values on its way, but
        // the source is reported once, and the last battery row is the step's.
        let rows = rows(&polls);
        let wanted = expected[index];
        let sources: Vec<&str> = rows
            .iter()
            .map(String::as_str)
            .filter(|row| row.contains("ups_source"))
            .collect();
        let wanted_sources: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|row| row.contains("ups_source"))
            .collect();
        assert_eq!(sources, wanted_sources, "step {index}: {rows:?}");
        let battery = rows.iter().rev().find(|row| row.contains("ups_battery"));
        assert_eq!(
            battery.map(String::as_str),
            wanted.last().copied(),
            "step {index}: {rows:?}"
        );
        assert!(
            rows.iter().all(|row| row.starts_with('+')),
            "step {index}: {rows:?}"
        );

        let status = polls
            .last()
            .unwrap()
            .reading
            .as_ref()
            .unwrap()
            .status
            .clone()
            .unwrap();
        assert_eq!(status.has(&Token::LowBattery), index == 3, "{status}");
        assert!(polls.iter().any(|poll| poll.news));

        // Nothing changes while the step holds, and nothing is reported.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let poll = poller.poll().await;
            assert!(reads(&poll, step), "{poll:?}");
            assert!(
                poll.report.is_empty() && !poll.news,
                "step {index}: {poll:?}"
            );
        }

        // The policy follows: on battery only past its hold-off (30 s), the emergency once
        // the charge is under 30 %.
        commit(&mut engine, &polls, start + 60 * index as i64);
        let views = (holds(&engine, "on_battery"), holds(&engine, "emergency"));
        let expected_views = [(false, false), (false, false), (true, false), (true, true)];
        assert_eq!(
            views, expected_views[index],
            "step {index}: (on_battery, emergency)"
        );
    }

    // upsd goes away: after the staleness limit the facts are retracted, not kept.
    upsd.stop_upsd();
    let polls = poll_until(&mut poller, "the facts retracted", |poll| {
        !poll.report.retract.is_empty()
    })
    .await;
    let last = polls.last().unwrap();
    assert!(
        matches!(last.reading, Err(NutError::Connect { .. })),
        "{last:?}"
    );
    assert_eq!(
        rows(std::slice::from_ref(last)),
        ["-ups_battery(ups, _, _)", "-ups_source(ups, _, _)"]
    );
    commit(&mut engine, std::slice::from_ref(last), start + 300);
    assert!(!holds(&engine, "emergency"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_clearly() {
    let upsd = Upsd::start(&OUTAGE[0]).await;
    let mut poller = poller(&upsd, "wrong password");
    let poll = poller.poll().await;
    let error = poll.reading.unwrap_err();
    assert!(
        matches!(&error, NutError::Login { code, username, .. } if code == "ACCESS-DENIED" && username == USERNAME),
        "{error:?}"
    );
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "upsd at {} refused to log `monitor` in to UPS `ups`: ACCESS-DENIED (hint: check the \
             username and password against upsd.users; the user needs `upsmon` rights)",
            upsd.address()
        )
    );
    assert!(!message.contains("wrong password"));
    assert!(poll.report.is_empty());

    // The right password on a UPS that upsd does not have names the ones it has.
    let mut config = Config::new(&upsd.address(), "nope");
    config.login = Some(Login {
        username: USERNAME.into(),
        password: PASSWORD.into(),
    });
    let error = Poller::new(config).poll().await.reading.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("upsd at {} has no UPS `nope` (it has: ups)", upsd.address())
    );
}
