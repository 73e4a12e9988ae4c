//! The engine thread: the one place where the engine and the journal are touched.
//!
//! Requests reach it as commands over a channel and are served one at a time, so that a
//! transaction's logical time, its journal record and its change set always agree. A
//! transaction is checked, appended to the journal and synced, and only then committed and
//! acknowledged: a crash after the sync replays it, a crash before leaves no trace of it, and
//! a refused transaction is never journaled. Every change set is published to the [`Feed`],
//! from which watchers read in time order.

use super::journal::{self, Journal, Record, Store};
use super::metrics::Metrics;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use vigil_engine::dataflow::runtime::receive_within;
use vigil_engine::query;
use vigil_engine::trace::{Entry, Field};
use vigil_engine::{ChangeSet, Engine, EngineError, Value};

/// One row of a change set, as the API shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ChangeRow {
    pub relation: String,
    pub diff: isize,
    pub tuple: Vec<Field>,
}

/// A change set, as the API shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Changes {
    /// The logical time.
    pub time: u64,
    /// The event time, in seconds.
    pub now: i64,
    pub changes: Vec<ChangeRow>,
    /// Retractions of tuples that were not there (`rel(1, _)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

impl Changes {
    /// The rows of the relations that `shown` selects.
    pub fn of(changes: &ChangeSet, shown: &dyn Fn(&str) -> bool) -> Changes {
        let mut rows = Vec::new();
        // Only the relations shown are decoded.
        for relation in changes.relations().filter(|relation| shown(relation)) {
            for (tuple, diff) in changes.of(relation) {
                rows.push(ChangeRow {
                    relation: relation.to_string(),
                    diff,
                    tuple: tuple.into_iter().map(|v| Field(Some(v))).collect(),
                });
            }
        }
        Changes {
            time: changes.time,
            now: changes.now,
            changes: rows,
            absent: changes.absent.iter().map(ToString::to_string).collect(),
        }
    }

    /// Only the rows of `relation`.
    pub fn only(&self, relation: &str) -> Changes {
        Changes {
            time: self.time,
            now: self.now,
            changes: self
                .changes
                .iter()
                .filter(|row| row.relation == relation)
                .cloned()
                .collect(),
            absent: Vec::new(),
        }
    }
}

/// Why a request could not be served.
#[derive(Debug)]
pub enum Refusal {
    /// The request is wrong (a rejected transaction, an unknown relation, a bad query): 4xx.
    Invalid(String),
    /// The server failed (the journal cannot be written, the dataflow failed): 5xx.
    Failed(String),
}

impl From<EngineError> for Refusal {
    fn from(error: EngineError) -> Refusal {
        match error {
            EngineError::Dataflow(message) => Refusal::Failed(message),
            other => Refusal::Invalid(other.to_string()),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// How long the engine thread spins for the next command before it blocks: about the time an
/// answer takes to reach a client and its next request to come back (a collector that sends
/// as it reads, a watcher's follow-up query). Taken at once on a core that is still running,
/// such a request saves the wake-up of a halted one and commits on warm caches (on two
/// virtual cores, some 150 µs at the median); an idle daemon spins this long once per request.
const SPIN: Duration = Duration::from_micros(500);

/// Called with every committed change set, on the engine thread.
pub type Observer = Box<dyn FnMut(&ChangeSet, &Engine) + Send>;

/// Rows that answer a query: the variables' names and one binding per row (or whole tuples
/// when the query has no variables).
#[derive(Debug, Serialize)]
pub struct Answer {
    pub variables: Vec<String>,
    pub rows: Vec<Vec<Field>>,
}

/// The engine's vital signs, for health and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub time: u64,
    pub now: i64,
    pub views: Vec<(String, usize)>,
    pub journal_bytes: u64,
    pub journal_records: u64,
}

enum Command {
    /// With `true`, the change set of every relation rather than of the views.
    Transact(Entry, bool, Reply<Changes>),
    WhatIf(Entry, bool, Reply<Changes>),
    /// The number of rows of every relation, in the program's order.
    Sizes(Reply<Vec<(String, usize)>>),
    Query(String, Reply<Answer>),
    Why(String, bool, Reply<serde_json::Value>),
    Status(Reply<Status>),
    Compact(Reply<Status>),
    /// Leaves the journal's file with its frames alone (at shutdown).
    Close(Reply<()>),
    /// Moves the clock to the wall clock, if it is behind.
    Tick,
}

/// The change sets recently published, for watchers that join late or reconnect.
pub struct Feed {
    recent: Mutex<VecDeque<Arc<Changes>>>,
    capacity: usize,
    latest: watch::Sender<u64>,
}

impl Feed {
    fn new(capacity: usize, time: u64) -> Feed {
        Feed {
            recent: Mutex::new(VecDeque::new()),
            capacity,
            latest: watch::Sender::new(time),
        }
    }

    fn publish(&self, changes: Changes) {
        let time = changes.time;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.push_back(Arc::new(changes));
            while recent.len() > self.capacity {
                recent.pop_front();
            }
        }
        self.latest.send_replace(time);
    }

    /// The change sets after logical time `after`, or `None` if some of them are no longer
    /// kept (the watcher must read the view again and watch from its time).
    pub fn since(&self, after: u64) -> Option<Vec<Arc<Changes>>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let latest = *self.latest.borrow();
        if after >= latest {
            return Some(Vec::new());
        }
        let oldest = recent.front().map_or(latest + 1, |c| c.time);
        if after + 1 < oldest {
            return None;
        }
        Some(recent.iter().filter(|c| c.time > after).cloned().collect())
    }

    /// Follows the latest logical time.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

/// A handle on the engine thread.
#[derive(Clone)]
pub struct Core {
    commands: mpsc::Sender<Command>,
    pub feed: Arc<Feed>,
    pub metrics: Arc<Metrics>,
}

/// How the engine thread starts.
pub struct Start {
    /// Transactions that give no time happen at the wall clock (never before the engine's
    /// current time).
    pub wall_clock: bool,
    pub engine: Engine,
    pub store: Store,
    /// Drop the damaged frame at this offset of the journal and everything after it.
    pub truncate_journal_at: Option<u64>,
    /// Write a snapshot and compact the journal after this many records.
    pub snapshot_every: u64,
    /// Change sets kept for watchers that reconnect.
    pub feed_capacity: usize,
    /// Called with every committed change set, on the engine thread (the decision log).
    pub observer: Option<Observer>,
}

impl Core {
    /// Restores the engine from the snapshot and the journal, then serves commands on a
    /// thread of its own. Returns once the state is restored (or restoring failed).
    pub fn start(start: Start) -> Result<Core> {
        let Start {
            wall_clock,
            mut engine,
            store,
            truncate_journal_at,
            snapshot_every,
            feed_capacity,
            mut observer,
        } = start;
        std::fs::create_dir_all(&store.dir).with_context(|| {
            format!("{}: cannot create the data directory", store.dir.display())
        })?;
        let snapshot = journal::read_snapshot(&store.snapshot_path())?;
        let base = snapshot.as_ref().map_or(0, |s| s.time);
        if let Some(snapshot) = &snapshot {
            engine
                .restore(snapshot)
                .map_err(|error| anyhow::anyhow!("{}: {error}", store.snapshot_path().display()))?;
        }
        let (journal, records, recovery) =
            Journal::open(&store.journal_path(), truncate_journal_at)?;
        match recovery.truncated {
            Some((offset, bytes)) if recovery.asked => say_err!(
                "warning: {}: dropped {bytes} bytes from byte {offset} on, as --truncate-journal-at asked; the transactions they held are lost",
                store.journal_path().display()
            ),
            Some((offset, bytes)) => say_err!(
                "warning: {}: dropped a torn last frame of {bytes} bytes at byte {offset} (a crash while it was written; that transaction was never acknowledged)",
                store.journal_path().display()
            ),
            None => {}
        }
        if recovery.base > base {
            anyhow::bail!(
                "{}: the journal starts after logical time {}, but {}; the transactions up to it are not there. Bring the snapshot back, or start from an empty data directory",
                store.journal_path().display(),
                recovery.base,
                if snapshot.is_some() {
                    format!(
                        "the snapshot {} covers only up to {base}",
                        store.snapshot_path().display()
                    )
                } else {
                    format!(
                        "the snapshot {} is missing",
                        store.snapshot_path().display()
                    )
                }
            );
        }
        for record in records.iter().filter(|record| record.time > base) {
            let changes = record.entry.apply(&mut engine).map_err(|error| {
                anyhow::anyhow!(
                    "{}: the record of logical time {} no longer applies: {error}",
                    store.journal_path().display(),
                    record.time
                )
            })?;
            if changes.time != record.time {
                anyhow::bail!(
                    "{}: the record of logical time {} replays at time {}; the journal does not belong to this program and snapshot",
                    store.journal_path().display(),
                    record.time,
                    changes.time
                );
            }
        }
        let metrics = Arc::new(Metrics::default());
        let feed = Arc::new(Feed::new(feed_capacity, engine.time()));
        let (commands, receiver) = mpsc::channel();
        let core = Core {
            commands,
            feed: feed.clone(),
            metrics: metrics.clone(),
        };
        let mut state = State {
            engine,
            journal,
            store,
            snapshot_every,
            feed,
            metrics,
            kept: records.into_iter().filter(|r| r.time > base).collect(),
            wall_clock,
        };
        state.update_gauges();
        std::thread::Builder::new()
            .name("vigil-engine".into())
            .spawn(move || {
                // A panic here (the dataflow's own failures are errors, not panics) would
                // leave a daemon that listens and refuses every request: it stops instead, so
                // that its supervisor starts it again, and the journal replays.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    while let Some(command) = receive_within(&receiver, SPIN) {
                        state.serve(command, &mut observer);
                    }
                }));
                if served.is_err() {
                    say_err!(
                        "error: the engine thread failed (above); vigil serve stops, and a restart replays the journal"
                    );
                    std::process::exit(70);
                }
            })
            .context("cannot start the engine thread")?;
        Ok(core)
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| Refusal::Failed("the engine thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| Refusal::Failed("the engine thread has stopped".into()))?
    }

    pub async fn transact(&self, entry: Entry) -> Result<Changes, Refusal> {
        self.transact_showing(entry, false).await
    }

    /// Like [`Core::transact`]; with `all`, answers the change set of every relation, not
    /// only of the views (watchers still see the views).
    pub async fn transact_showing(&self, entry: Entry, all: bool) -> Result<Changes, Refusal> {
        self.ask(|reply| Command::Transact(entry, all, reply)).await
    }

    /// The change set of a transaction, applying nothing: of the views, or with `all` of
    /// every relation.
    pub async fn what_if_showing(&self, entry: Entry, all: bool) -> Result<Changes, Refusal> {
        self.ask(|reply| Command::WhatIf(entry, all, reply)).await
    }

    /// The number of rows of every relation, in the program's order.
    pub async fn sizes(&self) -> Result<Vec<(String, usize)>, Refusal> {
        self.ask(Command::Sizes).await
    }

    pub async fn query(&self, text: String) -> Result<Answer, Refusal> {
        self.ask(|reply| Command::Query(text, reply)).await
    }

    /// `why` (or `why not`, with `not`) of an atom, as JSON with a `text` rendering.
    pub async fn why(&self, text: String, not: bool) -> Result<serde_json::Value, Refusal> {
        self.ask(|reply| Command::Why(text, not, reply)).await
    }

    pub async fn status(&self) -> Result<Status, Refusal> {
        self.ask(Command::Status).await
    }

    pub async fn compact(&self) -> Result<Status, Refusal> {
        self.ask(Command::Compact).await
    }

    /// Closes the journal: the zeros ahead of its frames are cut off. A later transaction
    /// opens it again.
    pub async fn close(&self) -> Result<(), Refusal> {
        self.ask(Command::Close).await
    }

    /// Moves the clock to the wall clock if it is behind; does not wait.
    pub fn tick(&self) {
        let _ = self.commands.send(Command::Tick);
    }
}

/// A committed transaction: the change set to answer, and the engine's own.
struct Committed {
    answer: Changes,
    changes: ChangeSet,
}

struct State {
    engine: Engine,
    journal: Journal,
    store: Store,
    snapshot_every: u64,
    feed: Arc<Feed>,
    metrics: Arc<Metrics>,
    /// The journal's records since the snapshot, for rewriting it at compaction.
    kept: Vec<Record>,
    wall_clock: bool,
}

impl State {
    fn serve(&mut self, command: Command, observer: &mut Option<Observer>) {
        match command {
            Command::Transact(entry, all, reply) => {
                let started = Instant::now();
                let result = self.transact(entry, all);
                self.metrics.transaction(started.elapsed(), result.is_ok());
                match result {
                    Ok(committed) => {
                        // Acknowledged first: what follows is not part of the transaction.
                        let _ = reply.send(Ok(committed.answer));
                        self.after(&committed.changes, observer);
                    }
                    Err(refusal) => {
                        let _ = reply.send(Err(refusal));
                    }
                }
            }
            Command::WhatIf(entry, all, reply) => {
                let result = entry
                    .transaction(&mut self.engine)
                    .what_if()
                    .map(|changes| Changes::of(&changes, &|r| all || self.is_view(r)))
                    .map_err(Refusal::from);
                let _ = reply.send(result);
            }
            Command::Sizes(reply) => {
                let program = self.engine.program();
                let sizes = program
                    .relations
                    .iter()
                    .map(|r| (r.name.clone(), self.engine.len(&r.name).unwrap_or(0)))
                    .collect();
                let _ = reply.send(Ok(sizes));
            }
            Command::Query(text, reply) => {
                let _ = reply.send(self.query(&text));
            }
            Command::Why(text, not, reply) => {
                let _ = reply.send(self.why(&text, not));
            }
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Tick => {
                let wall = super::wall_clock();
                if wall > self.engine.now() {
                    let entry = Entry {
                        time: Some(wall),
                        ..Entry::default()
                    };
                    let started = Instant::now();
                    let result = self.transact(entry, false);
                    self.metrics.transaction(started.elapsed(), result.is_ok());
                    if let Ok(committed) = result {
                        self.after(&committed.changes, observer);
                    }
                }
            }
            Command::Close(reply) => {
                let result = self
                    .journal
                    .close()
                    .map_err(|error| Refusal::Failed(format!("{error:#}")));
                let _ = reply.send(result);
            }
            Command::Compact(reply) => {
                let result = self
                    .compact()
                    .map(|()| self.status())
                    .map_err(|error| Refusal::Failed(format!("{error:#}")));
                let _ = reply.send(result);
            }
        }
    }

    /// Commits a transaction, durably, and publishes its change set to the watchers; answers
    /// the change set of the views, or with `all` of every relation. The observer and
    /// compaction come after, in [`State::after`], once the transaction is acknowledged.
    fn transact(&mut self, mut entry: Entry, all: bool) -> Result<Committed, Refusal> {
        let time = self.engine.time() + 1;
        if entry.time.is_none() && self.wall_clock {
            entry.time = Some(super::wall_clock().max(self.engine.now()));
        }
        let now = entry.transaction(&mut self.engine).check()?;
        entry.time = Some(now);
        entry.whatif = false;
        let record = Record { time, entry };
        // The frame is written now and synced while the engine commits.
        let syncing = self
            .journal
            .begin_append(&record)
            .map_err(|error| Refusal::Failed(format!("{error:#}")))?;
        let changes = match record.entry.apply(&mut self.engine) {
            Ok(changes) => changes,
            Err(error) => {
                // The record is valid and written: only the dataflow itself can fail here,
                // and a restart replays the record.
                say_err!("error: the engine failed after journaling logical time {time}: {error}");
                std::process::exit(70);
            }
        };
        if let Err(error) = syncing.wait() {
            // Committed but not durable: it cannot be taken back, nor acknowledged. A restart
            // replays what the disk holds.
            say_err!("error: logical time {time} was committed but not made durable: {error:#}");
            std::process::exit(74);
        }
        self.kept.push(record);
        let api = Changes::of(&changes, &|r| self.is_view(r));
        self.feed.publish(api.clone());
        self.update_gauges();
        let answer = if all {
            Changes::of(&changes, &|_| true)
        } else {
            api
        };
        Ok(Committed { answer, changes })
    }

    /// What follows a committed transaction: the observer (the decision log), and a snapshot
    /// with compaction when the journal has grown enough.
    fn after(&mut self, changes: &ChangeSet, observer: &mut Option<Observer>) {
        if let Some(observer) = observer {
            observer(changes, &self.engine);
        }
        if self.snapshot_every > 0
            && self.kept.len() as u64 >= self.snapshot_every
            && let Err(error) = self.compact()
        {
            say_err!("warning: compaction failed, the journal keeps growing: {error:#}");
        }
    }

    fn query(&self, text: &str) -> Result<Answer, Refusal> {
        let atom = query::parse_atom(text).map_err(|e| Refusal::Invalid(e.render(text)))?;
        let answer =
            query::run(&self.engine, &atom).map_err(|e| Refusal::Invalid(e.render(text)))?;
        let rows = if answer.variables.is_empty() {
            answer.tuples.clone()
        } else {
            answer.bindings()
        };
        Ok(Answer {
            variables: answer.variables.clone(),
            rows: rows
                .into_iter()
                .map(|row| row.into_iter().map(|v: Value| Field(Some(v))).collect())
                .collect(),
        })
    }

    fn why(&self, text: &str, not: bool) -> Result<serde_json::Value, Refusal> {
        let invalid = |e: query::QueryError| Refusal::Invalid(e.render(text));
        let atom = query::parse_atom(text).map_err(invalid)?;
        let (json, rendered) = if not {
            let pattern = query::pattern(&self.engine, &atom).map_err(invalid)?;
            let answer = self.engine.why_not(&atom.relation, &pattern)?;
            (answer.to_json(), answer.to_string())
        } else {
            let tuple = query::tuple(&self.engine, &atom, "`why`").map_err(invalid)?;
            let answer = self.engine.why(&atom.relation, &tuple)?;
            (answer.to_json(), answer.to_string())
        };
        Ok(serde_json::json!({ "explanation": json, "text": rendered }))
    }

    /// Whether a relation's changes are shown: the program's views (`.output` relations), or
    /// every relation of a program that declares none.
    fn is_view(&self, relation: &str) -> bool {
        let program = self.engine.program();
        let any = program.relations.iter().any(|r| !r.outputs.is_empty());
        !any || program
            .relation(relation)
            .is_some_and(|id| !program.relations[id].outputs.is_empty())
    }

    fn status(&self) -> Status {
        let program = self.engine.program();
        let views = program
            .relations
            .iter()
            .filter(|r| !r.outputs.is_empty())
            .map(|r| (r.name.clone(), self.engine.len(&r.name).unwrap_or(0)))
            .collect();
        Status {
            time: self.engine.time(),
            now: self.engine.now(),
            views,
            journal_bytes: self.journal.len(),
            journal_records: self.journal.records(),
        }
    }

    fn update_gauges(&self) {
        self.metrics.set_status(self.status());
    }

    /// Writes a snapshot of the current state and drops the journal records it covers.
    fn compact(&mut self) -> Result<()> {
        journal::write_snapshot(&self.store.snapshot_path(), &self.engine.snapshot())?;
        self.kept.clear();
        self.journal.rewrite(self.engine.time(), &[])?;
        self.update_gauges();
        Ok(())
    }
}
