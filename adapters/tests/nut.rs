//! The NUT source against the real thing: Debian's `upsd` serving a `dummy-ups` driver (the
//! Debian package `nut-server`), started on 127.0.0.1 on a free port in a temporary directory,
//! with its configuration and state there (`NUT_CONFPATH`, `NUT_STATEPATH`).
//!
//! The test plays a power outage one step at a time: it writes the step into the driver's data
//! file (`mode = dummy-once` re-reads it when its modification time changes), then polls until
//! Vigil reads that step. So no step can be missed or raced, and timing decides nothing: the
//! deadlines only keep a broken run from hanging. Each step's reports are committed to an
//! engine running the homelab policy on the sample house, whose views must follow.

use std::path::Path;
use std::time::{Duration, Instant};
use vigil_adapters::nut::{Config, Login, NutError, Poll, Poller, Token};
use vigil_engine::trace::Field;
use vigil_engine::{Engine, Options, Value};

#[path = "support/upsd.rs"]
mod upsd;

use upsd::{OUTAGE, PASSWORD, PATIENCE, Step, USERNAME, Upsd};

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
