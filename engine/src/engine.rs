//! The engine's public interface: a loaded program, its transactions and its relations.
//!
//! An [`Engine`] owns a running dataflow. Changes to input relations are grouped in a
//! [`Transaction`]; committing it applies all of them at one logical time and returns the
//! [`ChangeSet`]: for every relation, the tuples that appeared (+1) and disappeared (-1).
//! Relations are sets: inserting a present tuple or retracting an absent one changes nothing.
//! Every item of a transaction is validated (relation, writability, arity, types) before
//! anything is applied, so a transaction is applied whole or not at all.

use crate::dataflow::{self, Dataflow, WordUpdates};
use crate::ir::{self, RelationId};
use crate::value::{self, Interner, Type, Value, Word};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// An error of the engine's interface.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown relation `{0}`")]
    UnknownRelation(String),
    #[error("relation `{0}` is derived by rules and cannot be written; only input relations can")]
    NotWritable(String),
    #[error("relation `{relation}` has {}, but {given} values are given", crate::diag::columns(*expected))]
    Arity {
        relation: String,
        expected: usize,
        given: usize,
    },
    #[error("column {column} of `{relation}` is a `{expected}`, but `{given}` is a `{given_type}`")]
    Type {
        relation: String,
        column: usize,
        expected: Type,
        given: String,
        given_type: Type,
    },
    #[error("the transaction was not applied: {0}")]
    Rejected(String),
    #[error("{0}")]
    Symbol(String),
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
    /// By relation name.
    relations: Vec<Delta>,
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

/// A loaded program and the state of its relations.
pub struct Engine {
    program: Arc<ir::Program>,
    interner: Interner,
    dataflow: Box<dyn Dataflow>,
    initial: ChangeSet,
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
        Ok(Engine {
            program,
            interner,
            dataflow,
            initial,
        })
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

    /// The time of the last committed transaction.
    pub fn time(&self) -> u64 {
        self.dataflow.time()
    }

    pub fn transaction(&mut self) -> Transaction<'_> {
        Transaction {
            engine: self,
            items: BTreeMap::new(),
            error: None,
        }
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
    fn coerce(
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
            expected,
            given: match value {
                Value::Symbol(text) => format!("{:?}", &**text),
                other => other.to_string(),
            },
            given_type: value.ty(),
        })
    }

    fn encode_tuple(
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

    fn decode(&self, words: &[Word], types: &[Type]) -> Tuple {
        words
            .iter()
            .zip(types)
            .map(|(word, ty)| value::decode(*word, *ty, &self.interner))
            .collect()
    }
}

/// Collects changes, given one by one, into a change set.
fn collect(
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
            relations,
            interner: interner.clone(),
        }
    }
}

/// Changes to apply together. Nothing is applied until [`Transaction::commit`]; dropping the
/// transaction discards it.
pub struct Transaction<'e> {
    engine: &'e mut Engine,
    /// The last write to each tuple: true to insert, false to retract.
    items: BTreeMap<(RelationId, Vec<Word>), bool>,
    /// The first invalid item; the transaction cannot commit.
    error: Option<EngineError>,
}

impl Transaction<'_> {
    /// Inserts a tuple into an input relation.
    pub fn insert(&mut self, relation: &str, tuple: &[Value]) -> Result<(), EngineError> {
        self.write(relation, tuple, true)
    }

    /// Retracts a tuple from an input relation.
    pub fn retract(&mut self, relation: &str, tuple: &[Value]) -> Result<(), EngineError> {
        self.write(relation, tuple, false)
    }

    fn write(&mut self, relation: &str, tuple: &[Value], insert: bool) -> Result<(), EngineError> {
        let result = self.validate(relation, tuple);
        match result {
            Ok((id, words)) => {
                self.items.insert((id, words), insert);
                Ok(())
            }
            Err(error) => {
                self.error.get_or_insert_with(|| error.clone());
                Err(error)
            }
        }
    }

    fn validate(
        &self,
        relation: &str,
        tuple: &[Value],
    ) -> Result<(RelationId, Vec<Word>), EngineError> {
        let id = self.engine.relation(relation)?;
        if !self.engine.program.relations[id].writable {
            return Err(EngineError::NotWritable(relation.to_string()));
        }
        Ok((id, self.engine.encode_tuple(id, tuple)?))
    }

    /// The number of items written.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Applies every change at the next logical time, and returns what changed. Fails, and
    /// applies nothing, if any item was invalid.
    pub fn commit(self) -> Result<ChangeSet, EngineError> {
        if let Some(error) = self.error {
            return Err(EngineError::Rejected(error.to_string()));
        }
        let engine = self.engine;
        let updates: WordUpdates = self
            .items
            .into_iter()
            .filter_map(|((relation, words), insert)| {
                let present = engine.dataflow.input_contains(relation, &words);
                match (insert, present) {
                    (true, false) => Some((relation, words, 1)),
                    (false, true) => Some((relation, words, -1)),
                    _ => None,
                }
            })
            .collect();
        let mut failure = None;
        let time = engine.dataflow.time() + 1;
        let dataflow = &mut engine.dataflow;
        let changes = collect(&engine.program, &engine.interner, time, |change| {
            if let Err(error) = dataflow.apply(updates, change) {
                failure = Some(error);
            }
        });
        match failure {
            Some(error) => Err(EngineError::Dataflow(error)),
            None => Ok(changes),
        }
    }
}
