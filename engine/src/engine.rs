//! The engine's public interface: a loaded program, its transactions and its relations.
//!
//! An [`Engine`] owns a running dataflow. Changes to input relations are grouped in a
//! [`Transaction`]; committing it applies all of them at one logical time and returns the
//! [`ChangeSet`]: for every relation, the tuples that appeared (+1) and disappeared (-1).
//! Relations are sets: inserting a present tuple or retracting an absent one changes nothing.
//! Every item of a transaction is validated (relation, writability, arity, types) before
//! anything is applied, so a transaction is applied whole or not at all.

use crate::dataflow::{self, Dataflow};
use crate::ir::{self, RelationId};
use crate::subscription::{self, Publisher, Subscription};
use crate::transaction::{Resolution, Transaction};
use crate::value::{self, Interner, Type, Value, Word};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// An error of the engine's interface.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown relation `{0}`")]
    UnknownRelation(String),
    #[error("relation `{0}` is derived by rules and cannot be written; only input relations can")]
    NotWritable(String),
    #[error("relation `{relation}` has {}, but {given} {} given", crate::diag::columns(*expected), if *given == 1 { "value is" } else { "values are" })]
    Arity {
        relation: String,
        expected: usize,
        given: usize,
    },
    #[error("column `{name}` of `{relation}` is a `{expected}`, but `{given}` is a `{given_type}`")]
    Type {
        relation: String,
        /// The column's position, from 0, and its name.
        column: usize,
        name: String,
        expected: Type,
        given: String,
        given_type: Type,
    },
    #[error("the transaction was not applied: {0}")]
    Rejected(String),
    #[error("{0}")]
    Symbol(String),
    #[error("`{0}` is the clock: it moves with the transactions' times, not by writes")]
    Clock(String),
    #[error("{0}")]
    Wildcard(String),
    #[error("{0}")]
    Facts(String),
    #[error("the dataflow failed: {0}")]
    Dataflow(String),
}

/// How to run a program.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads.
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { workers: 1 }
    }
}

/// A tuple of values.
pub type Tuple = Vec<Value>;

/// The changes of one relation in one transaction, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationChanges {
    pub relation: String,
    /// Sorted by tuple; +1 for a tuple that appeared, -1 for one that disappeared.
    pub rows: Vec<(Tuple, isize)>,
}

/// What one transaction changed: for every relation, the tuples that appeared (+1) and
/// disappeared (-1).
///
/// A change set keeps its tuples as words, as compact as the dataflow's rows, and decodes them
/// into values when asked: a load of millions of tuples costs no more than its words.
#[derive(Clone, Default)]
pub struct ChangeSet {
    /// The logical time of the transaction (0 for the program's own facts).
    pub time: u64,
    /// The transaction's event time, in seconds (what the clock relation holds).
    pub now: i64,
    /// By relation name.
    relations: Vec<Delta>,
    /// Retractions of tuples that were not there: they changed nothing.
    pub absent: Vec<Absent>,
    interner: Interner,
}

#[derive(Clone)]
struct Delta {
    name: String,
    types: Vec<Type>,
    /// The tuples' words, one after the other.
    words: Vec<Word>,
    diffs: Vec<isize>,
}

impl Delta {
    fn rows(&self, interner: &Interner) -> Vec<(Tuple, isize)> {
        let arity = self.types.len();
        let mut rows: Vec<(Tuple, isize)> = self
            .diffs
            .iter()
            .enumerate()
            .map(|(index, diff)| {
                let words = &self.words[index * arity..(index + 1) * arity];
                let tuple = words
                    .iter()
                    .zip(&self.types)
                    .map(|(w, t)| value::decode(*w, *t, interner))
                    .collect();
                (tuple, *diff)
            })
            .collect();
        rows.sort();
        rows
    }
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// The number of changed tuples, over all relations.
    pub fn len(&self) -> usize {
        self.relations.iter().map(|delta| delta.diffs.len()).sum()
    }

    /// The names of the relations with changes, sorted.
    pub fn relations(&self) -> impl Iterator<Item = &str> {
        self.relations.iter().map(|delta| delta.name.as_str())
    }

    /// The number of changed tuples of one relation.
    pub fn count(&self, relation: &str) -> usize {
        self.relations
            .iter()
            .find(|delta| delta.name == relation)
            .map_or(0, |delta| delta.diffs.len())
    }

    /// The changes of one relation, sorted by tuple.
    pub fn of(&self, relation: &str) -> Vec<(Tuple, isize)> {
        self.relations
            .iter()
            .find(|delta| delta.name == relation)
            .map_or_else(Vec::new, |delta| delta.rows(&self.interner))
    }

    /// Keeps only the relations `keep` selects.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.relations.retain(|delta| keep(&delta.name));
    }

    /// The net changes of this change set followed by `next`, as one, at `next`'s times.
    pub fn then(&self, next: &ChangeSet) -> ChangeSet {
        merge(self, next)
    }

    /// Every relation's changes, decoded.
    pub fn decoded(&self) -> Vec<RelationChanges> {
        self.relations
            .iter()
            .map(|delta| RelationChanges {
                relation: delta.name.clone(),
                rows: delta.rows(&self.interner),
            })
            .collect()
    }
}

impl PartialEq for ChangeSet {
    fn eq(&self, other: &ChangeSet) -> bool {
        self.time == other.time && self.decoded() == other.decoded()
    }
}

impl fmt::Debug for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeSet")
            .field("time", &self.time)
            .field("relations", &self.decoded())
            .finish()
    }
}

/// One `+1 rel(a, b)` line per change.
impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for relation in self.decoded() {
            for (tuple, diff) in &relation.rows {
                writeln!(f, "{:+} {}", diff, format_tuple(&relation.relation, tuple))?;
            }
        }
        Ok(())
    }
}

/// `rel(1, "a")`: a tuple as it would be written in a program.
pub fn format_tuple(relation: &str, tuple: &[Value]) -> String {
    let values: Vec<String> = tuple
        .iter()
        .map(|value| match value {
            Value::Symbol(text) => format!("{:?}", &**text),
            other => other.to_string(),
        })
        .collect();
    format!("{relation}({})", values.join(", "))
}

/// A retraction of a tuple that was not there (`None` for a `_` field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absent {
    pub relation: String,
    pub fields: Vec<Option<Value>>,
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_fields(&self.relation, &self.fields))
    }
}

/// `rel(1, _, "a")`: a tuple whose fields may be `_`.
pub fn format_fields(relation: &str, fields: &[Option<Value>]) -> String {
    let values: Vec<String> = fields
        .iter()
        .map(|field| match field {
            None => "_".to_string(),
            Some(Value::Symbol(text)) => format!("{:?}", &**text),
            Some(other) => other.to_string(),
        })
        .collect();
    format!("{relation}({})", values.join(", "))
}

/// Where an input tuple came from: the transaction that inserted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The logical time of the transaction.
    pub time: u64,
    /// Its event time, in seconds.
    pub now: i64,
    /// The event that brought it in, if the transaction named one (a facts file, a trace
    /// line, an adapter's reading).
    pub event: Option<Arc<str>>,
}

/// A loaded program and the state of its relations.
pub struct Engine {
    program: Arc<ir::Program>,
    interner: Interner,
    dataflow: Box<dyn Dataflow>,
    initial: ChangeSet,
    /// Transactions committed; what-ifs do not count.
    time: u64,
    /// The event time of the last transaction, in seconds.
    now: i64,
    clock: Option<RelationId>,
    /// For each keyed relation, the tuple that holds each key.
    keys: HashMap<RelationId, HashMap<Vec<Word>, Vec<Word>>>,
    /// Who brought each input tuple in.
    origins: HashMap<(RelationId, Vec<Word>), Origin>,
    subscribers: Vec<Publisher>,
}

impl Engine {
    /// Starts the program. Its facts are derived at time 0; see [`Engine::initial_changes`].
    pub fn new(program: ir::Program, options: Options) -> Result<Engine, EngineError> {
        let program = Arc::new(program);
        let interner = Interner::new();
        let (dataflow, changes) =
            dataflow::start(program.clone(), interner.clone(), options.workers)
                .map_err(EngineError::Dataflow)?;
        let initial = collect(&program, &interner, 0, |change| {
            for (relation, words, diff) in &changes {
                change(*relation, words, *diff);
            }
        });
        let clock = program
            .relations
            .iter()
            .position(|relation| relation.feed.clock);
        let mut engine = Engine {
            program,
            interner,
            dataflow,
            initial,
            time: 0,
            now: 0,
            clock,
            keys: HashMap::new(),
            origins: HashMap::new(),
            subscribers: Vec::new(),
        };
        if let Some(clock) = clock {
            // The clock starts at 0, with the program's own facts.
            let updates = vec![(clock, vec![0], 1)];
            let start = engine.run(updates.clone(), 0, 0)?;
            engine.initial = merge(&engine.initial, &start);
            let mut resolution = Resolution {
                updates,
                keys: Vec::new(),
                events: HashMap::from([((clock, vec![0]), Some(Arc::from("the clock")))]),
                absent: Vec::new(),
                now: 0,
            };
            engine.record(&mut resolution, 0);
        }
        Ok(engine)
    }

    /// Inserts the facts of every `.input` relation from `dir` (`R.facts`, or the directive's
    /// `filename`) in one transaction. A stream relation's file may be missing; a file
    /// relation's may not. Tuples are restored as written, stamps included. A facts file of the
    /// clock relation, if there is one, holds the time the state was taken at: the clock moves
    /// to it.
    pub fn load_facts(&mut self, dir: &Path) -> Result<ChangeSet, EngineError> {
        let program = self.program.clone();
        let start = match self.clock {
            Some(clock) => clock_facts(&program.relations[clock], dir)?,
            None => None,
        };
        let mut transaction = self.transaction();
        if let Some(time) = start {
            transaction.at(time);
        }
        for relation in &program.relations {
            if relation.input.is_none() || relation.feed.clock {
                continue;
            }
            let path = crate::io::facts_path(relation, dir);
            if relation.feed.stream && !path.exists() {
                continue;
            }
            let tuples = crate::io::read_facts(relation, dir).map_err(facts_error)?;
            let event: Arc<str> = Arc::from(path.display().to_string());
            for tuple in tuples {
                let fields: Vec<Option<Value>> = tuple.into_iter().map(Some).collect();
                transaction.restore(&relation.name, &fields, event.clone())?;
            }
        }
        transaction.commit()
    }

    pub fn program(&self) -> &ir::Program {
        &self.program
    }

    pub fn interner(&self) -> &Interner {
        &self.interner
    }

    /// The changes of time 0: what the program's facts and rules derive from no input.
    pub fn initial_changes(&self) -> &ChangeSet {
        &self.initial
    }

    /// The logical time of the last committed transaction (0 before the first).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The event time of the last committed transaction, in seconds: what the clock relation
    /// holds (0 before the first transaction that gives a time).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Opens a transaction. Nothing is applied until it commits.
    pub fn transaction(&mut self) -> Transaction<'_> {
        Transaction::new(self)
    }

    /// Where an input tuple came from, if it is in its relation.
    pub fn origin(&self, relation: RelationId, tuple: &[Word]) -> Option<&Origin> {
        self.origins.get(&(relation, tuple.to_vec()))
    }

    /// Follows the changes of one relation: the first batch is its current contents (as +1
    /// rows, from time 0 to now), then one batch per transaction that changes it, in time
    /// order. See [`Subscription`] for what happens when the consumer falls behind.
    pub fn subscribe(
        &mut self,
        relation: &str,
        capacity: usize,
    ) -> Result<Subscription, EngineError> {
        let snapshot: Vec<(Tuple, isize)> = self
            .read(relation, &[])?
            .into_iter()
            .map(|tuple| (tuple, 1))
            .collect();
        let (subscription, publisher) =
            subscription::channel(relation, capacity, self.time, snapshot);
        self.subscribers.push(publisher);
        Ok(subscription)
    }

    pub(crate) fn commit(&mut self, mut resolution: Resolution) -> Result<ChangeSet, EngineError> {
        let time = self.time + 1;
        let updates = std::mem::take(&mut resolution.updates);
        let mut changes = self.run(updates.clone(), time, resolution.now)?;
        resolution.updates = updates;
        self.record(&mut resolution, time);
        self.time = time;
        self.now = resolution.now;
        changes.absent = resolution.absent;
        self.subscribers
            .retain(|publisher| publisher.publish(&changes));
        Ok(changes)
    }

    pub(crate) fn what_if(&mut self, resolution: Resolution) -> Result<ChangeSet, EngineError> {
        let inverse = resolution
            .updates
            .iter()
            .map(|(relation, tuple, diff)| (*relation, tuple.clone(), -diff))
            .collect();
        let mut changes = self.run(resolution.updates, self.time + 1, resolution.now)?;
        self.run(inverse, self.time, self.now)?;
        changes.absent = resolution.absent;
        Ok(changes)
    }

    pub(crate) fn clock(&self) -> Option<RelationId> {
        self.clock
    }

    pub(crate) fn program_arc(&self) -> Arc<ir::Program> {
        self.program.clone()
    }

    pub(crate) fn dataflow_mut(&mut self) -> &mut dyn Dataflow {
        &mut *self.dataflow
    }

    pub(crate) fn input_contains(&self, relation: RelationId, tuple: &[Word]) -> bool {
        self.dataflow.input_contains(relation, tuple)
    }

    pub(crate) fn key_holder(&self, relation: RelationId, key: &[Word]) -> Option<Vec<Word>> {
        self.keys.get(&relation)?.get(key).cloned()
    }

    pub(crate) fn set_key_holder(
        &mut self,
        relation: RelationId,
        key: Vec<Word>,
        holder: Option<Vec<Word>>,
    ) {
        let table = self.keys.entry(relation).or_default();
        match holder {
            Some(tuple) => table.insert(key, tuple),
            None => table.remove(&key),
        };
    }

    pub(crate) fn origins_mut(&mut self) -> &mut HashMap<(RelationId, Vec<Word>), Origin> {
        &mut self.origins
    }

    /// Calls `visit` on each tuple of `relation`, as words, that matches `pattern` (`None`
    /// matches anything).
    pub(crate) fn scan_words(
        &self,
        relation: RelationId,
        pattern: &[Option<Word>],
        visit: &mut dyn FnMut(&[Word]),
    ) {
        self.dataflow.scan(relation, pattern, visit)
    }

    pub(crate) fn scan_inputs(&self, relation: RelationId, visit: &mut dyn FnMut(&[Word])) {
        self.dataflow.scan_inputs(relation, visit)
    }

    /// Sets the logical time (restoring a snapshot).
    pub(crate) fn set_time(&mut self, time: u64) {
        self.time = time;
    }

    pub(crate) fn contains_words(&self, relation: RelationId, tuple: &[Word]) -> bool {
        self.dataflow.contains(relation, tuple)
    }

    /// The id of a relation.
    pub fn relation(&self, name: &str) -> Result<RelationId, EngineError> {
        self.program
            .relation(name)
            .ok_or_else(|| EngineError::UnknownRelation(name.to_string()))
    }

    /// The tuples of `relation` that match `pattern` (one entry per column, `None` for any
    /// value; an empty pattern matches everything), sorted.
    pub fn read(
        &self,
        relation: &str,
        pattern: &[Option<Value>],
    ) -> Result<Vec<Tuple>, EngineError> {
        let id = self.relation(relation)?;
        let info = &self.program.relations[id];
        if !pattern.is_empty() && pattern.len() != info.arity() {
            return Err(EngineError::Arity {
                relation: relation.to_string(),
                expected: info.arity(),
                given: pattern.len(),
            });
        }
        let mut words = Vec::with_capacity(pattern.len());
        for (column, value) in pattern.iter().enumerate() {
            words.push(match value {
                None => None,
                Some(value) => {
                    let value = self.coerce(id, column, value)?;
                    // A symbol never interned cannot be in any tuple.
                    if let Value::Symbol(text) = &value
                        && self.interner.resolve(Interner::id_of(text)).as_ref() != &**text
                    {
                        return Ok(Vec::new());
                    }
                    Some(value::encode(&value, &self.interner).map_err(EngineError::Symbol)?)
                }
            });
        }
        let types: Vec<Type> = info.types().collect();
        let mut tuples = Vec::new();
        self.dataflow.scan(id, &words, &mut |tuple| {
            tuples.push(self.decode(tuple, &types))
        });
        tuples.sort();
        Ok(tuples)
    }

    /// Whether `relation` holds `tuple`.
    pub fn contains(&self, relation: &str, tuple: &[Value]) -> Result<bool, EngineError> {
        let id = self.relation(relation)?;
        let words = self.encode_tuple(id, tuple)?;
        Ok(self.dataflow.contains(id, &words))
    }

    /// The number of tuples of a relation.
    pub fn len(&self, relation: &str) -> Result<usize, EngineError> {
        Ok(self.dataflow.len(self.relation(relation)?))
    }

    /// Converts a value to the column's type where that loses nothing (an integer literal into
    /// an unsigned or float column), or fails with a type error.
    pub(crate) fn coerce(
        &self,
        relation: RelationId,
        column: usize,
        value: &Value,
    ) -> Result<Value, EngineError> {
        let info = &self.program.relations[relation];
        let expected = info.columns[column].ty;
        let converted = match (value, expected) {
            (value, expected) if value.ty() == expected => Some(value.clone()),
            (Value::Number(n), Type::Unsigned) => u64::try_from(*n).ok().map(Value::Unsigned),
            (Value::Number(n), Type::Float) => Some(Value::Float(*n as f64)),
            (Value::Unsigned(n), Type::Number) => i64::try_from(*n).ok().map(Value::Number),
            (Value::Unsigned(n), Type::Float) => Some(Value::Float(*n as f64)),
            _ => None,
        };
        converted.ok_or_else(|| EngineError::Type {
            relation: info.name.clone(),
            column,
            name: info.columns[column].name.clone(),
            expected,
            given: match value {
                Value::Symbol(text) => format!("{:?}", &**text),
                other => other.to_string(),
            },
            given_type: value.ty(),
        })
    }

    pub(crate) fn encode_tuple(
        &self,
        relation: RelationId,
        tuple: &[Value],
    ) -> Result<Vec<Word>, EngineError> {
        let info = &self.program.relations[relation];
        if tuple.len() != info.arity() {
            return Err(EngineError::Arity {
                relation: info.name.clone(),
                expected: info.arity(),
                given: tuple.len(),
            });
        }
        tuple
            .iter()
            .enumerate()
            .map(|(column, value)| {
                let value = self.coerce(relation, column, value)?;
                value::encode(&value, &self.interner).map_err(EngineError::Symbol)
            })
            .collect()
    }

    pub(crate) fn decode(&self, words: &[Word], types: &[Type]) -> Tuple {
        words
            .iter()
            .zip(types)
            .map(|(word, ty)| value::decode(*word, *ty, &self.interner))
            .collect()
    }
}

/// Collects changes, given one by one, into a change set.
pub(crate) fn collect(
    program: &ir::Program,
    interner: &Interner,
    time: u64,
    apply: impl FnOnce(&mut dyn FnMut(RelationId, &[Word], isize)),
) -> ChangeSet {
    {
        let mut deltas: BTreeMap<RelationId, Delta> = BTreeMap::new();
        apply(&mut |relation, words, diff| {
            let delta = deltas.entry(relation).or_insert_with(|| {
                let info = &program.relations[relation];
                Delta {
                    name: info.name.clone(),
                    types: info.types().collect(),
                    words: Vec::new(),
                    diffs: Vec::new(),
                }
            });
            delta.words.extend_from_slice(words);
            delta.diffs.push(diff);
        });
        let mut relations: Vec<Delta> = deltas.into_values().collect();
        relations.sort_by(|a, b| a.name.cmp(&b.name));
        ChangeSet {
            time,
            now: 0,
            relations,
            absent: Vec::new(),
            interner: interner.clone(),
        }
    }
}

/// A facts file's error, with its cause (`No such file or directory`).
fn facts_error(error: crate::io::IoError) -> EngineError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    EngineError::Facts(message)
}

/// The time in the clock relation's facts file, if it has one: a single tuple.
pub fn clock_facts(relation: &ir::Relation, dir: &Path) -> Result<Option<i64>, EngineError> {
    let path = crate::io::facts_path(relation, dir);
    if !path.exists() {
        return Ok(None);
    }
    let tuples = crate::io::read_facts(relation, dir).map_err(facts_error)?;
    match tuples.as_slice() {
        [tuple] => match tuple.as_slice() {
            [Value::Number(time)] => Ok(Some(*time)),
            _ => Err(EngineError::Facts(format!(
                "{}: the clock's facts must be one time in seconds",
                path.display()
            ))),
        },
        _ => Err(EngineError::Facts(format!(
            "{}: the clock's facts must be one line, the time in seconds; found {}",
            path.display(),
            tuples.len()
        ))),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for publisher in &self.subscribers {
            publisher.close();
        }
    }
}

/// The net changes of two consecutive change sets, as one (at the later one's times).
pub(crate) fn merge(first: &ChangeSet, second: &ChangeSet) -> ChangeSet {
    let mut net: BTreeMap<(String, Vec<Word>), (Vec<Type>, isize)> = BTreeMap::new();
    for delta in first.relations.iter().chain(&second.relations) {
        let arity = delta.types.len();
        for (index, diff) in delta.diffs.iter().enumerate() {
            let words = delta.words[index * arity..(index + 1) * arity].to_vec();
            net.entry((delta.name.clone(), words))
                .or_insert_with(|| (delta.types.clone(), 0))
                .1 += diff;
        }
    }
    let mut relations: Vec<Delta> = Vec::new();
    for ((name, words), (types, diff)) in net {
        if diff == 0 {
            continue;
        }
        if relations.last().is_none_or(|delta| delta.name != name) {
            relations.push(Delta {
                name,
                types,
                words: Vec::new(),
                diffs: Vec::new(),
            });
        }
        let delta = relations.last_mut().expect("pushed above");
        delta.words.extend(words);
        delta.diffs.push(diff);
    }
    ChangeSet {
        time: second.time,
        now: second.now,
        relations,
        absent: first.absent.iter().chain(&second.absent).cloned().collect(),
        interner: second.interner.clone(),
    }
}
