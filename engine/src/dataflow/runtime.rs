//! Running a planned program on timely workers.
//!
//! An interactive [`Runtime`] runs the program's dataflows on one worker or several. One worker
//! runs on the caller's thread: a transaction feeds its inputs and steps it in place, crossing
//! no thread. Several run on threads of their own, each with the same dataflows, and the caller
//! talks to them through channels: a transaction is sent to every worker (its updates only to
//! worker 0, which feeds them into the inputs; the others only advance their inputs, which every
//! worker must do for the frontier to move), and every worker steps until the transaction's time
//! is complete. The changes of every relation are exchanged to worker 0, which sends them back
//! consolidated. The runtime keeps the current contents of every relation, so that reads never
//! wait for the dataflow.
//!
//! Every logical time costs progress tracking in proportion to the operators it passes through.
//! So with one worker each stratum, or set of rules, is a dataflow of its own (see
//! [`build::partition`]): a transaction visits them in order, feeds each the changes of what it
//! reads, and advances only those that got any. A dataflow left behind stays at an earlier
//! time, which is sound: nothing it reads changed since. A dataflow whose rules read the clock
//! only through timers (see [`plan::Timer`]) is also left behind when only the clock moved and
//! no comparison of theirs turns: it keeps the earlier time, which gives the same result. With more workers the program is one
//! dataflow, since only worker 0 knows what changed.
//!
//! A batch run ([`run_batch`]) is the command-line evaluation: each worker, possibly in another
//! process, feeds its share of the input, the inputs are closed, and worker 0 collects the final
//! contents. Symbol ids are hashes, so processes agree on them; the strings themselves are
//! gathered at worker 0 before it decodes, since a symbol made by a functor in one process may
//! end up in a row that another process outputs.

use super::build::{self, Time};
use super::distinct::Settling;
use super::plan::{self, Plan};
use super::row::Row;
use crate::ir::{self, RelationId};
use crate::value::{Interner, Word};
use differential_dataflow::input::{Input, InputSession};
use rustc_hash::FxHashSet;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Exchange, Input as _, Inspect, Probe};

/// Updates of one transaction: relation, tuple, +1 or -1.
pub type Updates<R> = Vec<(RelationId, R, isize)>;

enum Command<R> {
    /// Apply these updates (only worker 0 gets any) and complete the next time.
    Apply(Updates<R>),
}

/// A running dataflow and the current contents of every relation.
pub struct Runtime<R: Row> {
    workers: Workers<R>,
    /// The last completed time.
    time: Time,
    contents: Vec<FxHashSet<R>>,
    inputs: Vec<FxHashSet<R>>,
}

/// Where the dataflows run.
enum Workers<R: Row> {
    /// One worker, stepped on the caller's thread: a transaction crosses no thread, and every
    /// allocation of the dataflow is the caller's.
    Inline(Box<Inline<R>>),
    /// Worker threads, driven through channels.
    Threads {
        senders: Vec<Sender<Command<R>>>,
        replies: Receiver<Updates<R>>,
        guards: Option<timely::communication::initialize::WorkerGuards<()>>,
    },
    /// A worker failed; the runtime cannot be used any more.
    Failed(Failure),
}

/// A timely worker on the caller's thread, and its dataflows.
struct Inline<R: Row> {
    // Dropped first: the dataflows' sessions and buffers before the worker that runs them.
    stepper: Stepper<R>,
    worker: timely::worker::Worker,
}

// SAFETY: a timely worker and its dataflows are `!Send` only because they share state through
// `Rc` and `RefCell`. Every such pointer made here (the worker's own, the dataflows' operators,
// arrangements and channels, and the sessions, buffers and frontiers of `Stepper`) is owned by
// this value and never handed out: `Runtime` returns owned rows only. So all of them move
// between threads together, and are used by one thread at a time. No cross-thread activator
// (which would remember the thread) is ever made: the dataflows are fed by input sessions,
// which activate through the worker's own, thread-agnostic activations.
unsafe impl<R: Row> Send for Inline<R> {}

/// A worker failure, as text; the runtime cannot be used after one.
pub type Failure = String;

impl<R: Row> Runtime<R> {
    /// Starts `program` on `workers` workers (one runs on the caller's thread, more on threads
    /// of their own), and completes time 0, at which the program's facts are derived. Returns
    /// the runtime and the changes of time 0.
    pub fn start(
        program: Arc<ir::Program>,
        plan: Arc<Plan>,
        interner: Interner,
        workers: usize,
    ) -> Result<(Runtime<R>, Updates<R>), Failure> {
        let relation_count = program.relations.len();
        let workers = if workers <= 1 {
            let alloc = timely::communication::Allocator::Thread(Default::default());
            let mut worker = timely::worker::Worker::new(
                timely::WorkerConfig::default(),
                alloc,
                Some(std::time::Instant::now()),
            );
            let stepper = Stepper::new(&mut worker, &program, &plan, &interner);
            Workers::Inline(Box::new(Inline { stepper, worker }))
        } else {
            threads(program, plan, interner, workers)?
        };
        let mut runtime = Runtime {
            workers,
            time: 0,
            contents: vec![FxHashSet::default(); relation_count],
            inputs: vec![FxHashSet::default(); relation_count],
        };
        let changes = runtime.complete(Vec::new())?;
        Ok((runtime, changes))
    }

    /// Completes the next time with `updates`, and takes in the changes it made.
    fn complete(&mut self, updates: Updates<R>) -> Result<Updates<R>, Failure> {
        let changes = match &mut self.workers {
            Workers::Inline(inline) => {
                let Inline { stepper, worker } = &mut **inline;
                let step = std::panic::AssertUnwindSafe(|| stepper.complete(worker, updates));
                match std::panic::catch_unwind(step) {
                    Ok(changes) => changes,
                    Err(panic) => {
                        let failure = format!("the dataflow worker failed: {}", panic_text(&panic));
                        self.workers = Workers::Failed(failure.clone());
                        return Err(failure);
                    }
                }
            }
            Workers::Threads {
                senders, replies, ..
            } => {
                let mut updates = Some(updates);
                let sent = senders.iter().all(|sender| {
                    let batch = updates.take().unwrap_or_default();
                    sender.send(Command::Apply(batch)).is_ok()
                });
                match sent.then(|| receive_soon(replies)).flatten() {
                    Some(changes) => changes,
                    None => return Err(self.failure()),
                }
            }
            Workers::Failed(failure) => return Err(failure.clone()),
        };
        for (relation, row, diff) in &changes {
            let table = &mut self.contents[*relation];
            if *diff > 0 {
                table.insert(row.clone());
            } else {
                table.remove(row);
            }
        }
        Ok(changes)
    }

    /// What a worker thread that stopped said, if it panicked; the runtime is failed after.
    fn failure(&mut self) -> Failure {
        let mut failure = "the dataflow workers stopped".to_string();
        if let Workers::Threads {
            senders, guards, ..
        } = &mut self.workers
        {
            senders.clear();
            if let Some(guards) = guards.take() {
                for result in guards.join() {
                    if let Err(message) = result {
                        failure = format!("a dataflow worker failed: {message}");
                        break;
                    }
                }
            }
        }
        self.workers = Workers::Failed(failure.clone());
        failure
    }

    /// Applies net input updates (each must change its input: an insert of an absent tuple or a
    /// retraction of a present one) at the next time, and returns the changes of every relation.
    pub fn apply(&mut self, updates: Updates<R>) -> Result<Updates<R>, Failure> {
        for (relation, row, diff) in &updates {
            let input = &mut self.inputs[*relation];
            if *diff > 0 {
                input.insert(row.clone());
            } else {
                input.remove(row);
            }
        }
        let changes = self.complete(updates)?;
        self.time += 1;
        Ok(changes)
    }

    pub fn time(&self) -> Time {
        self.time
    }

    /// How many dataflows the last time stepped (with one worker).
    #[cfg(test)]
    fn stepped(&self) -> usize {
        match &self.workers {
            Workers::Inline(inline) => inline.stepper.stepped,
            _ => 0,
        }
    }

    /// How many changes of their sources dormant dataflows hold (with one worker).
    #[cfg(test)]
    fn deferred(&self) -> usize {
        match &self.workers {
            Workers::Inline(inline) => inline
                .stepper
                .parts
                .iter()
                .flat_map(|part| part.deferred.values())
                .map(|deferred| deferred.rows.len())
                .sum(),
            _ => 0,
        }
    }

    pub fn contents(&self, relation: RelationId) -> &FxHashSet<R> {
        &self.contents[relation]
    }

    pub fn inputs(&self, relation: RelationId) -> &FxHashSet<R> {
        &self.inputs[relation]
    }
}

impl<R: Row> Drop for Runtime<R> {
    fn drop(&mut self) {
        // Closing the channels ends the worker threads' loops; then wait for them.
        if let Workers::Threads {
            senders, guards, ..
        } = &mut self.workers
        {
            senders.clear();
            if let Some(guards) = guards.take() {
                drop(guards.join());
            }
        }
    }
}

/// The message of a panic's payload.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic".to_string()
    }
}

/// Starts `workers` worker threads running the whole program as one dataflow. Each waits for
/// the next transaction, completes it, and worker 0 sends back the changes.
fn threads<R: Row>(
    program: Arc<ir::Program>,
    plan: Arc<Plan>,
    interner: Interner,
    workers: usize,
) -> Result<Workers<R>, Failure> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..workers {
        let (sender, receiver) = channel();
        senders.push(sender);
        receivers.push(Some(receiver));
    }
    let receivers = Mutex::new(receivers);
    let (reply_sender, replies) = channel();
    let reply_sender = Mutex::new(Some(reply_sender));
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let receiver = receivers.lock().map(|mut r| r[index].take()).ok().flatten();
        let reply = if index == 0 {
            reply_sender.lock().ok().and_then(|mut s| s.take())
        } else {
            None
        };
        let Some(receiver) = receiver else { return };
        let mut stepper = Stepper::new(worker, &program, &plan, &interner);
        while let Some(Command::Apply(updates)) = receive_soon(&receiver) {
            let changes = stepper.complete(worker, updates);
            if let Some(reply) = &reply {
                let _ = reply.send(changes);
            }
        }
    })?;
    Ok(Workers::Threads {
        senders,
        replies,
        guards: Some(guards),
    })
}

/// The dataflows of one worker, and how a transaction goes through them.
///
/// With one worker, each stratum (or set of rules) is a dataflow of its own, advanced only
/// when what it reads changed; with more, every worker must advance every input at every time,
/// and the whole program is one dataflow.
struct Stepper<R: Row> {
    parts: Vec<Part<R>>,
    partition: build::Partition,
    /// Which sources some group reads: their changes are kept for it.
    read: Vec<bool>,
    relation_count: usize,
    /// Whether a part whose inputs did not change may be left behind.
    prune: bool,
    /// The time being completed.
    time: Time,
    /// The clock relation, where some part reads it only through timers, and its one tuple.
    clock: Option<(RelationId, Option<R>)>,
    /// How many parts the last time stepped.
    stepped: usize,
    /// The number of rows of every relation, as of the last completed time.
    sizes: Vec<isize>,
}

impl<R: Row> Stepper<R> {
    fn new(
        worker: &mut timely::worker::Worker,
        program: &ir::Program,
        plan: &Plan,
        interner: &Interner,
    ) -> Stepper<R> {
        let prune = worker.peers() == 1;
        let partition = build::partition(program, plan, prune);
        let mut parts: Vec<Part<R>> = partition
            .groups
            .iter()
            .map(|group| {
                let mut part = construct(worker, program, plan, interner, group, &|_| true);
                if prune {
                    part.guards = group.guards(program, plan);
                }
                // A part that reads the clock only through timers is fed the clock lazily:
                // only with one worker (where parts are stepped apart), and only the clock
                // that transactions write (no rule derives it).
                if let Some(clock) = group.clock
                    && prune
                    && partition.passthrough.contains(&clock)
                {
                    part.lazy = Some(Lazy {
                        clock,
                        fed: None,
                        timers: group
                            .timers
                            .iter()
                            .map(|&timer| Bounds {
                                source: build::timer_source(program, plan, timer),
                                sign: plan.timers[timer].sign,
                                op: plan.timers[timer].op,
                                rows: HashMap::new(),
                            })
                            .collect(),
                    });
                }
                part
            })
            .collect();
        let clock = parts
            .iter()
            .find_map(|part| part.lazy.as_ref())
            .map(|lazy| (lazy.clock, None));
        if worker.index() == 0 {
            for part in &mut parts {
                if let Some(unit) = &mut part.unit {
                    unit.insert(R::default());
                }
            }
        }
        let mut read = vec![false; partition.sources];
        for group in &partition.groups {
            for &source in &group.reads {
                read[source] = true;
            }
        }
        Stepper {
            parts,
            partition,
            read,
            relation_count: program.relations.len(),
            prune,
            time: 0,
            clock,
            stepped: 0,
            sizes: vec![0; program.relations.len()],
        }
    }

    /// Feeds `updates` in at the next time, steps until that time is complete, and returns
    /// the changes of every relation (at worker 0; other workers return none).
    fn complete(&mut self, worker: &mut timely::worker::Worker, updates: Updates<R>) -> Updates<R> {
        self.time += 1;
        let time = self.time;
        let (read, relation_count) = (&self.read, self.relation_count);
        // Changes of this time by relation: written, and then derived part by part.
        let mut written: Vec<Vec<(R, isize)>> = vec![Vec::new(); relation_count];
        if let Some((clock, current)) = &mut self.clock {
            // Net updates: a retraction of the tuple there, an insertion of one that is not.
            for (relation, row, diff) in &updates {
                if relation == clock && *diff < 0 && current.as_ref() == Some(row) {
                    *current = None;
                }
            }
            for (relation, row, diff) in &updates {
                if relation == clock && *diff > 0 {
                    *current = Some(row.clone());
                }
            }
        }
        for (relation, row, diff) in updates {
            written[relation].push((row, diff));
        }
        let mut changes: Vec<Vec<(R, isize)>> = vec![Vec::new(); self.partition.sources];
        let mut passed = Vec::new();
        for &relation in &self.partition.passthrough {
            let mut rows = std::mem::take(&mut written[relation]);
            rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            passed.extend(
                rows.iter()
                    .map(|(row, diff)| (relation, row.clone(), *diff)),
            );
            if read[relation] {
                changes[relation] = rows;
            }
        }
        // The changes of every relation, for the reply; derived ones are moved, not copied,
        // unless a later group reads them.
        let mut all: Updates<R> = Vec::new();
        self.stepped = 0;
        for part in &mut self.parts {
            if self.prune && time > 1 && part.dormant(&written, &changes, &self.sizes) {
                part.defer(&changes);
                continue;
            }
            let fed = match (part.lazy.take(), &self.clock) {
                (Some(mut lazy), Some((_, current))) => {
                    // The clock is fed only with other changes, or when it may change what
                    // the part computes; until then the part holds an earlier tuple of it.
                    let others =
                        part.changed(&written, &changes, lazy.clock) || !part.deferred.is_empty();
                    let moved = lazy.fed != *current;
                    if !others && time > 1 && (!moved || lazy.steady(current.as_ref())) {
                        part.lazy = Some(lazy);
                        continue;
                    }
                    let mut clock = Vec::new();
                    if moved {
                        clock.extend(lazy.fed.take().map(|row| (row, -1)));
                        clock.extend(current.clone().map(|row| (row, 1)));
                        lazy.fed = current.clone();
                    }
                    let fed = part.feed(&written, &changes, Some((lazy.clock, &clock)));
                    part.lazy = Some(lazy);
                    fed
                }
                (lazy, _) => {
                    part.lazy = lazy;
                    part.feed(&written, &changes, None)
                }
            };
            if self.prune && !fed && time > 1 {
                continue;
            }
            self.stepped += 1;
            part.advance(time);
            worker.step_while(|| before(&part.frontier, time));
            let mut derived = std::mem::take(&mut *part.buffer.borrow_mut());
            consolidate(&mut derived);
            if let Some(lazy) = &mut part.lazy {
                lazy.take_bounds(&derived);
            }
            for (source, row, diff) in &derived {
                if read[*source] {
                    changes[*source].push((row.clone(), *diff));
                }
            }
            derived.retain(|(source, _, _)| *source < relation_count);
            if all.is_empty() {
                all = derived;
            } else {
                all.append(&mut derived);
            }
        }
        all.append(&mut passed);
        for (relation, _, diff) in &all {
            self.sizes[*relation] += diff;
        }
        all
    }
}

/// The least logical time at which a captured relation may still change (`None`: none will).
type Frontier = Rc<Cell<Option<Time>>>;

/// Whether a captured relation may still change at a time before `time`.
fn before(frontier: &Frontier, time: Time) -> bool {
    frontier.get().is_some_and(|least| least < time)
}

/// A source read keyed by some columns: (source, columns, session).
type KeyedInput<R> = (usize, Vec<usize>, InputSession<Time, (R, R), isize>);
/// A source read projected on some columns: (source, columns, all of them, session).
type ProjectedInput<R> = (usize, Vec<usize>, bool, InputSession<Time, (R, ()), isize>);

/// The dataflow of one group in a worker: its input sessions, and what it captured.
struct Part<R: Row> {
    /// One session per writable relation of the group.
    written: HashMap<RelationId, InputSession<Time, R, isize>>,
    /// One session per source the group reads from other parts as rows (see
    /// [`build::Group`] and [`build::Shapes`]).
    reads: HashMap<RelationId, InputSession<Time, R, isize>>,
    /// Sources read keyed by some columns.
    keyed: Vec<KeyedInput<R>>,
    /// Sources read projected on some columns.
    keys: Vec<ProjectedInput<R>>,
    /// The unit row, for a group whose rules start from nothing (see [`build::uses_unit`]).
    unit: Option<InputSession<Time, R, isize>>,
    /// The changes of the group's captured outputs, gathered at worker 0.
    buffer: Rc<RefCell<Updates<R>>>,
    /// How far the captured relations have come.
    frontier: Frontier,
    /// How the part is fed the clock, if it reads it only through timers.
    lazy: Option<Lazy<R>>,
    /// For each of its pipelines, relations of which one empty makes it derive nothing (see
    /// [`build::Group::guards`]); `None` if the part is stepped whenever its inputs change.
    guards: Option<Vec<Vec<RelationId>>>,
    /// The changes of its sources at the times it was left dormant, fed at its next step.
    deferred: HashMap<usize, Deferred<R>>,
    /// The sources it reads (as rows, keyed or projected), each once.
    sources: Vec<usize>,
}

/// Changes of a source that a dormant part has yet to be fed.
#[derive(Default)]
struct Deferred<R> {
    rows: Vec<(R, isize)>,
    /// The length at which they are consolidated next.
    limit: usize,
}

/// A part that reads the clock only through timers (see [`build::Group::clock`]).
struct Lazy<R: Row> {
    clock: RelationId,
    /// The clock's tuple as the part last saw it.
    fed: Option<R>,
    timers: Vec<Bounds<R>>,
}

/// The bounds of a timer, as its part last computed them: `(offset, bound)` rows, counted.
struct Bounds<R: Row> {
    source: usize,
    sign: i64,
    op: crate::syntax::ast::CompareOp,
    rows: HashMap<R, isize>,
}

impl<R: Row> Lazy<R> {
    /// Whether the part computes the same with the clock at `current` as with the tuple it
    /// last saw: both there, and no comparison of any timer changing its truth between.
    fn steady(&self, current: Option<&R>) -> bool {
        let (Some(fed), Some(current)) = (&self.fed, current) else {
            return false;
        };
        let time = |row: &R| row.get(0) as i64;
        let (from, to) = (time(fed), time(current));
        self.timers.iter().all(|bounds| {
            bounds.rows.keys().all(|row| {
                let (offset, bound) = (row.get(0) as i64, row.get(1) as i64);
                plan::steady(bounds.sign, bounds.op, offset, bound, from, to)
            })
        })
    }

    /// Takes in the changes of the bounds among a step's changes.
    fn take_bounds(&mut self, derived: &Updates<R>) {
        for (source, row, diff) in derived {
            let Some(bounds) = self.timers.iter_mut().find(|b| b.source == *source) else {
                continue;
            };
            let count = bounds.rows.entry(row.clone()).or_insert(0);
            *count += diff;
            if *count == 0 {
                bounds.rows.remove(row);
            }
        }
    }
}

impl<R: Row> Part<R> {
    /// Whether the part can derive nothing at this time, nor at the one before: it has no
    /// writes, and each of its pipelines joins a relation that is empty and stays so. Then
    /// what it derived is still right, and the changes of its sources can wait.
    fn dormant(
        &self,
        written: &[Vec<(R, isize)>],
        changes: &[Vec<(R, isize)>],
        sizes: &[isize],
    ) -> bool {
        let Some(guards) = &self.guards else {
            return false;
        };
        self.written
            .keys()
            .all(|&relation| written[relation].is_empty())
            && guards.iter().all(|atoms| {
                atoms
                    .iter()
                    .any(|&relation| sizes[relation] == 0 && changes[relation].is_empty())
            })
    }

    /// Keeps this time's changes of the part's sources for its next step (the clock's aside,
    /// if the part is fed it lazily: it is fed the clock's latest tuple then).
    fn defer(&mut self, changes: &[Vec<(R, isize)>]) {
        let lazy = self.lazy.as_ref().map(|lazy| lazy.clock);
        for &source in &self.sources {
            if Some(source) == lazy || changes[source].is_empty() {
                continue;
            }
            let deferred = self.deferred.entry(source).or_default();
            deferred.rows.extend_from_slice(&changes[source]);
            // Changes that cancel out go: what is kept is about the difference between the
            // source as the part last saw it and as it is, at most twice that and some.
            if deferred.rows.len() >= deferred.limit {
                differential_dataflow::consolidation::consolidate(&mut deferred.rows);
                deferred.limit = 2 * deferred.rows.len() + 64;
            }
        }
    }

    /// Feeds the group this time's writes of its relations and changes of what it reads (with
    /// `instead`, other changes of one source); returns whether there were any.
    fn feed(
        &mut self,
        written: &[Vec<(R, isize)>],
        changes: &[Vec<(R, isize)>],
        instead: Option<(usize, &[(R, isize)])>,
    ) -> bool {
        // What the part was not fed while it was dormant comes first, at the same time.
        let deferred = std::mem::take(&mut self.deferred);
        let of = |source: usize| {
            let current = match instead {
                Some((replaced, rows)) if replaced == source => rows,
                _ => &changes[source][..],
            };
            let earlier = deferred.get(&source).map_or(&[][..], |d| &d.rows[..]);
            earlier.iter().chain(current)
        };
        let mut fed = false;
        for (relation, session) in self.written.iter_mut() {
            for (row, diff) in &written[*relation] {
                session.update(row.clone(), *diff);
                fed = true;
            }
        }
        for (source, session) in self.reads.iter_mut() {
            for (row, diff) in of(*source) {
                session.update(row.clone(), *diff);
                fed = true;
            }
        }
        for (source, columns, session) in &mut self.keyed {
            for (row, diff) in of(*source) {
                session.update((row.project(columns), row.clone()), *diff);
                fed = true;
            }
        }
        for (source, columns, whole, session) in &mut self.keys {
            for (row, diff) in of(*source) {
                session.update((build::project(row.clone(), columns, *whole), ()), *diff);
                fed = true;
            }
        }
        fed
    }

    /// Whether this time changed anything the group reads other than `except`.
    fn changed(
        &self,
        written: &[Vec<(R, isize)>],
        changes: &[Vec<(R, isize)>],
        except: usize,
    ) -> bool {
        self.written
            .keys()
            .any(|relation| !written[*relation].is_empty())
            || self
                .sources
                .iter()
                .any(|&source| source != except && !changes[source].is_empty())
    }

    /// Moves every input of the group to `time`, so that earlier times can complete.
    fn advance(&mut self, time: Time) {
        for session in self.written.values_mut().chain(self.reads.values_mut()) {
            session.advance_to(time);
            session.flush();
        }
        for (_, _, session) in &mut self.keyed {
            session.advance_to(time);
            session.flush();
        }
        for (_, _, _, session) in &mut self.keys {
            session.advance_to(time);
            session.flush();
        }
        if let Some(unit) = &mut self.unit {
            unit.advance_to(time);
            unit.flush();
        }
    }
}

/// Builds the dataflow of `group` in a worker, with an input session per writable relation of
/// the group, per source it reads from other parts, and one for the unit row. The changes of
/// every output of the group that `captured` selects are gathered at worker 0.
fn construct<R: Row>(
    worker: &mut timely::worker::Worker,
    program: &ir::Program,
    plan: &Plan,
    interner: &Interner,
    group: &build::Group,
    captured: &dyn Fn(RelationId) -> bool,
) -> Part<R> {
    let buffer: Rc<RefCell<Updates<R>>> = Rc::new(RefCell::new(Vec::new()));
    let frontier: Frontier = Rc::new(Cell::new(Some(0)));
    worker.dataflow::<Time, _, _>(|scope| {
        let (unit_session, unit) = if build::uses_unit(program, plan, group) {
            let (session, unit) = scope.new_collection::<R, isize>();
            (Some(session), Some(unit))
        } else {
            (None, None)
        };
        let mut written = HashMap::new();
        let mut feeds = build::Feeds {
            written: HashMap::new(),
            reads: HashMap::new(),
            keyed: HashMap::new(),
            keys: HashMap::new(),
            unit,
        };
        for &relation in &group.written {
            let (session, collection) = scope.new_collection::<R, isize>();
            written.insert(relation, session);
            feeds.written.insert(relation, collection);
        }
        let shapes = build::shapes(program, plan, group);
        let mut reads = HashMap::new();
        for &source in &shapes.rows {
            let (session, collection) = scope.new_collection::<R, isize>();
            reads.insert(source, session);
            feeds.reads.insert(source, collection);
        }
        let mut keyed = Vec::new();
        for (source, columns) in shapes.keyed {
            let (session, collection) = scope.new_collection::<(R, R), isize>();
            feeds.keyed.insert((source, columns.clone()), collection);
            keyed.push((source, columns, session));
        }
        let mut keys = Vec::new();
        for (source, columns, whole) in shapes.keys {
            let (session, collection) = scope.new_collection::<(R, ()), isize>();
            feeds.keys.insert((source, columns.clone()), collection);
            keys.push((source, columns, whole, session));
        }
        let mut sources: Vec<usize> = (reads.keys().copied())
            .chain(keyed.iter().map(|(source, _, _)| *source))
            .chain(keys.iter().map(|(source, _, _, _)| *source))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let outputs = build::build(scope, program, plan, interner, group, feeds);
        // One operator reads every captured relation, and its input frontiers say how far
        // the whole dataflow has come: one operator instead of an inspection and a probe per
        // relation, each of which would cost progress tracking at every logical time. It makes
        // a set of what the group leaves counted (see [`build::Output::count`]).
        let peers = scope.peers();
        let mut builder = OperatorBuilder::new("Capture".to_owned(), scope);
        let mut inputs = Vec::new();
        for output in outputs {
            if !captured(output.source) {
                continue;
            }
            // Every change goes to worker 0 (with one worker it is there already), which
            // therefore sees every update of a counted relation.
            let stream = output.collection.inner;
            let stream = if peers > 1 {
                stream.exchange(|_| 0)
            } else {
                stream
            };
            let settling = output.count.then(Settling::default);
            inputs.push((output.source, builder.new_input(stream, Pipeline), settling));
        }
        if inputs.is_empty() {
            frontier.set(None);
        }
        let (gathered, reached) = (buffer.clone(), frontier.clone());
        builder.build(move |_capabilities| {
            move |frontiers| {
                let mut buffer = gathered.borrow_mut();
                for ((source, input, settling), frontier) in inputs.iter_mut().zip(frontiers) {
                    match settling {
                        None => input.for_each(|_, data| {
                            for (row, _, diff) in data.iter() {
                                buffer.push((*source, row.clone(), *diff));
                            }
                        }),
                        Some(settling) => {
                            input.for_each(|_, data| {
                                for (row, time, diff) in data.drain(..) {
                                    settling.stash(row, time, diff);
                                }
                            });
                            let least = frontier.frontier().first().copied();
                            settling.settle(least, |_, changes| {
                                buffer.extend(
                                    changes.into_iter().map(|(row, diff)| (*source, row, diff)),
                                );
                            });
                        }
                    }
                }
                let least = frontiers
                    .iter()
                    .filter_map(|frontier| frontier.frontier().first().copied())
                    .min();
                reached.set(least);
            }
        });
        Part {
            lazy: None,
            guards: None,
            deferred: HashMap::new(),
            sources,
            written,
            reads,
            keyed,
            keys,
            unit: unit_session,
            buffer,
            frontier,
        }
    })
}

/// Receives the next message, or `None` once the sender is gone. A transaction and its reply
/// follow each other closely, so it spins briefly before it blocks: a blocked thread takes tens
/// of microseconds to wake, which would double the latency of a small transaction.
fn receive_soon<T>(receiver: &Receiver<T>) -> Option<T> {
    receive_within(receiver, std::time::Duration::from_micros(100))
}

/// Receives the next message, or `None` once the sender is gone, spinning for up to `spin`
/// before it blocks. On a virtual machine a thread that blocks lets its core halt, and waking
/// it (and the core) takes tens to hundreds of microseconds; a message that comes within the
/// window is taken at once, on a core that is still warm.
pub fn receive_within<T>(receiver: &Receiver<T>, spin: std::time::Duration) -> Option<T> {
    let deadline = std::time::Instant::now() + spin;
    loop {
        match receiver.try_recv() {
            Ok(message) => return Some(message),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                std::hint::spin_loop();
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

/// Sums the diffs of equal updates and drops those that cancel.
pub fn consolidate<R: Row>(updates: &mut Updates<R>) {
    updates.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut write = 0;
    for read in 0..updates.len() {
        if write > 0
            && updates[write - 1].0 == updates[read].0
            && updates[write - 1].1 == updates[read].1
        {
            updates[write - 1].2 += updates[read].2;
        } else {
            updates.swap(write, read);
            write += 1;
        }
    }
    updates.truncate(write);
    updates.retain(|update| update.2 != 0);
}

/// Feeds a worker its share of the input: called with the worker's index, the number of
/// workers, and a function taking one tuple of a relation.
pub type Loader = Arc<
    dyn Fn(usize, usize, &mut dyn FnMut(RelationId, &[Word])) -> Result<(), String> + Send + Sync,
>;

/// The final contents of the wanted relations, at the process of worker 0 (`None` elsewhere).
pub type BatchOutput<R> = Option<Vec<(RelationId, Vec<R>)>>;

/// Evaluates `program` once over the tuples `load` gives each worker, on timely workers
/// configured by `config` (threads, and processes with their addresses). Returns, at the
/// process that hosts worker 0, the final contents of the relations `wanted`; other processes
/// return `None`.
pub fn run_batch<R: Row>(
    program: Arc<ir::Program>,
    plan: Arc<Plan>,
    interner: Interner,
    config: timely::Config,
    wanted: Vec<RelationId>,
    load: Loader,
) -> Result<BatchOutput<R>, Failure> {
    let guards = timely::execute(config, move |worker| -> Result<BatchOutput<R>, String> {
        let index = worker.index();
        let peers = worker.peers();
        let wanted_relation = |relation: RelationId| wanted.contains(&relation);
        let whole = build::partition(&program, &plan, false);
        let Part {
            written: mut sessions,
            mut unit,
            buffer,
            frontier,
            ..
        } = construct(
            worker,
            &program,
            &plan,
            &interner,
            &whole.groups[0],
            &wanted_relation,
        );
        // A second dataflow gathers every process's symbols at worker 0.
        let symbols_probe = ProbeHandle::new();
        let symbols_interner = interner.clone();
        let mut symbols = worker.dataflow::<Time, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<(u64, String)>>();
            stream
                .exchange(|_| 0)
                .inspect(move |(id, text)| symbols_interner.adopt(*id, text))
                .probe_with(&symbols_probe);
            input
        });

        let mut result = Ok(());
        {
            let mut feed = |relation: RelationId, words: &[Word]| {
                if let Some(session) = sessions.get_mut(&relation) {
                    session.insert(R::from_words(words));
                }
            };
            if let Err(error) = load(index, peers, &mut feed) {
                result = Err(error);
            }
        }
        if let (0, Some(unit)) = (index, &mut unit) {
            unit.insert(R::default());
        }
        drop(sessions);
        drop(unit);
        worker.step_while(|| frontier.get().is_some());
        if peers > 1 {
            for (id, text) in interner.entries() {
                symbols.send((id, text.to_string()));
            }
        }
        drop(symbols);
        worker.step_while(|| !symbols_probe.done());
        result?;
        if index != 0 {
            return Ok(None);
        }
        let mut changes = std::mem::take(&mut *buffer.borrow_mut());
        consolidate(&mut changes);
        let mut by_relation: HashMap<RelationId, Vec<R>> = HashMap::new();
        for (relation, row, diff) in changes {
            if diff > 0 {
                by_relation.entry(relation).or_default().push(row);
            }
        }
        Ok(Some(by_relation.into_iter().collect()))
    })?;
    let mut output = None;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(relations))) => output = Some(relations),
            Ok(Ok(None)) => {}
            Ok(Err(message)) | Err(message) => return Err(message),
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use crate::{Engine, Options, Value};

    /// What a root reaches over links, and the link targets it does not reach.
    const REACH: &str = "
        .decl link(a: number, b: number)
        .input link
        .decl reach(n: number)
        .output reach
        reach(0).
        reach(b) :- reach(a), link(a, b).
        .decl stranded(n: number)
        .output stranded
        stranded(b) :- link(_, b), !reach(b).
    ";

    fn link(engine: &mut Engine, a: i64, b: i64) {
        let mut transaction = engine.transaction();
        transaction
            .insert("link", &[Value::Number(a), Value::Number(b)])
            .unwrap();
        transaction.commit().unwrap();
    }

    fn sizes(engine: &Engine) -> (usize, usize) {
        (
            engine.len("reach").unwrap(),
            engine.len("stranded").unwrap(),
        )
    }

    /// One worker runs on the thread that commits; an engine built on one thread keeps working
    /// on others it is moved to, as the daemon's does.
    #[test]
    fn an_inline_worker_moves_between_threads_with_its_engine() {
        fn send<T: Send>(value: T) -> T {
            value
        }
        let program = crate::compile_source("reach.dl", REACH).unwrap();
        let mut engine = send(Engine::new(program, Options { workers: 1 }).unwrap());
        link(&mut engine, 0, 1);
        let mut engine = std::thread::spawn(move || {
            link(&mut engine, 1, 2);
            link(&mut engine, 5, 6);
            engine
        })
        .join()
        .unwrap();
        // 0, 1 and 2 are reached; 6 is not.
        assert_eq!(sizes(&engine), (3, 1));
        let mut engine = std::thread::spawn(move || {
            link(&mut engine, 2, 5);
            engine
        })
        .join()
        .unwrap();
        assert_eq!(sizes(&engine), (5, 0));
        link(&mut engine, 7, 8);
        assert_eq!(sizes(&engine), (5, 1));
    }

    /// Rules that compare the clock with what they read, in each form a timer takes, next to
    /// one that computes with the time itself.
    const TIMERS: &str = "
        .decl now(t: number)
        .input now(IO=clock)
        .decl since(k: number, x: number)
        .input since
        .decl held(k: number)
        held(k) :- since(k, x), now(t), t - x >= 10.
        .decl fresh(k: number)
        fresh(k) :- since(k, x), now(t), t < x + 3.
        .decl at(k: number)
        at(k) :- since(k, x), now(t), x - t = -5.
        .decl late()
        late() :- now(t), t >= 100.
        .decl clocked()
        clocked() :- now(_).
        .decl age(k: number, a: number)
        age(k, t - x) :- since(k, x), now(t).
    ";

    /// Starts `source` on a runtime of one worker; returns its program and plan as well.
    fn start<R: super::Row>(
        name: &str,
        source: &str,
    ) -> (
        std::sync::Arc<crate::ir::Program>,
        std::sync::Arc<super::Plan>,
        super::Runtime<R>,
    ) {
        use std::sync::Arc;
        let program = Arc::new(crate::compile_source(name, source).unwrap());
        let interner = crate::value::Interner::new();
        let plan = Arc::new(super::super::plan::plan(&program, &interner).unwrap());
        let (runtime, _) =
            super::Runtime::<R>::start(program.clone(), plan.clone(), interner, 1).unwrap();
        (program, plan, runtime)
    }

    /// A row of numbers.
    fn row<R: super::Row>(words: &[i64]) -> R {
        let words: Vec<crate::value::Word> = words.iter().map(|&w| w as _).collect();
        R::from_words(&words)
    }

    /// A part that reads the clock only through comparisons is stepped when the clock crosses
    /// one of them, or when something else it reads changes, and holds what the rules say at
    /// every time in between.
    #[test]
    fn the_clock_reaches_a_rule_only_when_a_comparison_turns() {
        use super::Updates;
        type R = [crate::value::Word; 4];
        let (program, plan, mut runtime) = start::<R>("timers.dl", TIMERS);
        assert_eq!(
            plan.timers.len(),
            4,
            "one comparison in each of held, fresh, at and late"
        );
        let id = |name: &str| program.relation(name).unwrap();
        let row = row::<R>;
        let mut since: Vec<(i64, i64)> = vec![(1, 0)];
        let mut updates: Updates<R> =
            vec![(id("now"), row(&[0]), 1), (id("since"), row(&[1, 0]), 1)];
        for t in 0..=120i64 {
            if t > 0 {
                updates.push((id("now"), row(&[t - 1]), -1));
                updates.push((id("now"), row(&[t]), 1));
            }
            if t == 20 {
                updates.push((id("since"), row(&[2, 50]), 1));
                since.push((2, 50));
            }
            runtime.apply(std::mem::take(&mut updates)).unwrap();
            let expect = |holds: &dyn Fn(i64, i64) -> bool| -> Vec<R> {
                let mut rows: Vec<R> = since
                    .iter()
                    .filter(|&&(_, x)| holds(t, x))
                    .map(|&(k, _)| row(&[k]))
                    .collect();
                rows.sort();
                rows
            };
            let contents = |name: &str| -> Vec<R> {
                let mut rows: Vec<R> = runtime.contents(id(name)).iter().cloned().collect();
                rows.sort();
                rows
            };
            assert_eq!(contents("held"), expect(&|t, x| t - x >= 10), "held at {t}");
            assert_eq!(contents("fresh"), expect(&|t, x| t < x + 3), "fresh at {t}");
            assert_eq!(contents("at"), expect(&|t, x| x - t == -5), "at at {t}");
            assert_eq!(contents("late").len(), usize::from(t >= 100), "late at {t}");
            assert_eq!(contents("clocked").len(), 1, "clocked at {t}");
            assert_eq!(contents("age").len(), since.len(), "age at {t}");
            if t == 20 {
                // A new row of `since`: every rule that reads it, with the clock as it is now.
                assert_eq!(runtime.stepped(), 4, "dataflows stepped at {t}");
            } else if t > 0 {
                // `age` computes with the time: it is stepped at every tick. The others only
                // where a comparison of theirs turns, for some row of `since`.
                let turns = [
                    since.iter().any(|&(_, x)| t == x + 10),
                    since.iter().any(|&(_, x)| t == x + 3),
                    since.iter().any(|&(_, x)| t == x + 5 || t == x + 6),
                    t == 100,
                ];
                let parts = turns.iter().filter(|&&turned| turned).count();
                assert_eq!(runtime.stepped(), 1 + parts, "dataflows stepped at {t}");
            }
        }
    }

    /// A rule that joins an empty relation derives nothing, whatever else it reads: its
    /// dataflow is not stepped while that relation stays empty, and is fed what it missed
    /// once it is not.
    #[test]
    fn a_rule_that_joins_an_empty_relation_waits_for_it() {
        use super::{Runtime, Updates};
        type R = [crate::value::Word; 2];
        let source = "
            .decl reading(x: number)
            .input reading
            .decl gate(k: number)
            .input gate
            .decl scaled(k: number, y: number)
            .output scaled
            scaled(k, x * 2) :- gate(k), reading(x).
            .decl doubled(y: number)
            .output doubled
            doubled(x * 2) :- reading(x).
        ";
        let (program, _, mut runtime) = start::<R>("gate.dl", source);
        let id = |name: &str| program.relation(name).unwrap();
        let row = row::<R>;
        let contents = |runtime: &Runtime<R>, name: &str| -> Vec<R> {
            let mut rows: Vec<R> = runtime.contents(id(name)).iter().cloned().collect();
            rows.sort();
            rows
        };
        let mut reading: Option<i64> = None;
        let mut gate: Option<i64> = None;
        for t in 1..=400i64 {
            let mut updates: Updates<R> = Vec::new();
            if let Some(x) = reading.take() {
                updates.push((id("reading"), row(&[x]), -1));
            }
            let x = (t * 37) % 101;
            updates.push((id("reading"), row(&[x]), 1));
            reading = Some(x);
            // The gate opens at 100 and 300, for 50 times each.
            let open = (100..150).contains(&t) || (300..350).contains(&t);
            let turned = open != gate.is_some();
            match (open, gate) {
                (true, None) => {
                    updates.push((id("gate"), row(&[7]), 1));
                    gate = Some(7);
                }
                (false, Some(k)) => {
                    updates.push((id("gate"), row(&[k]), -1));
                    gate = None;
                }
                _ => {}
            }
            runtime.apply(updates).unwrap();
            let scaled: Vec<R> = gate.iter().map(|&k| row(&[k, 2 * x])).collect();
            assert_eq!(contents(&runtime, "scaled"), scaled, "scaled at {t}");
            assert_eq!(
                contents(&runtime, "doubled"),
                vec![row(&[2 * x, 0])],
                "doubled at {t}"
            );
            // `doubled` is stepped at every time; `scaled` while the gate is open, and when it
            // closes (to retract its row).
            let stepped = if open || turned { 2 } else { 1 };
            assert_eq!(runtime.stepped(), stepped, "dataflows stepped at {t}");
            // What `scaled` waits for is consolidated as it grows: the reading it last saw,
            // retracted, and the latest one, plus what came since the last consolidation;
            // two more changes per time without it.
            assert!(
                runtime.deferred() <= 100,
                "{} changes deferred at {t}",
                runtime.deferred()
            );
        }
    }

    /// A message is received whether it comes within the spin or after it, and the end of the
    /// sender is `None`, once what it sent has been received.
    #[test]
    fn a_receiver_spins_then_blocks() {
        use std::time::Duration;
        let (sender, receiver) = std::sync::mpsc::channel();
        sender.send(1).unwrap();
        assert_eq!(
            super::receive_within(&receiver, Duration::from_millis(5)),
            Some(1)
        );
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            sender.send(2).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            sender.send(3).unwrap();
        });
        // After a spin far shorter than the wait, it blocks until the message comes.
        assert_eq!(
            super::receive_within(&receiver, Duration::from_micros(10)),
            Some(2)
        );
        // With no spin at all, too.
        assert_eq!(super::receive_within(&receiver, Duration::ZERO), Some(3));
        late.join().unwrap();
        assert_eq!(
            super::receive_within(&receiver, Duration::from_millis(5)),
            None
        );
    }
}
