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

/// The changes of one relation in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationChanges {
    pub relation: String,
    /// Sorted by tuple; +1 for a tuple that appeared, -1 for one that disappeared.
    pub rows: Vec<(Tuple, isize)>,
}

/// What one transaction changed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChangeSet {
    /// The logical time of the transaction (0 for the program's own facts).
    pub time: u64,
    /// Relations with changes, by name.
    pub relations: Vec<RelationChanges>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// The changes of one relation.
    pub fn of(&self, relation: &str) -> &[(Tuple, isize)] {
        self.relations
            .iter()
            .find(|r| r.relation == relation)
            .map_or(&[], |r| &r.rows)
    }

    /// The number of changed tuples, over all relations.
    pub fn len(&self) -> usize {
        self.relations.iter().map(|r| r.rows.len()).sum()
    }
}

/// One `+1 rel(a, b)` line per change.
impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for relation in &self.relations {
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
        let mut engine = Engine {
            program,
            interner,
            dataflow,
            initial: ChangeSet::default(),
        };
        engine.initial = engine.decode_changes(0, changes);
        Ok(engine)
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

    fn decode_changes(&self, time: u64, changes: WordUpdates) -> ChangeSet {
        let mut by_relation: BTreeMap<RelationId, Vec<(Tuple, isize)>> = BTreeMap::new();
        for (relation, words, diff) in changes {
            let types: Vec<Type> = self.program.relations[relation].types().collect();
            by_relation
                .entry(relation)
                .or_default()
                .push((self.decode(&words, &types), diff));
        }
        let mut relations: Vec<RelationChanges> = by_relation
            .into_iter()
            .map(|(relation, mut rows)| {
                rows.sort();
                RelationChanges {
                    relation: self.program.relations[relation].name.clone(),
                    rows,
                }
            })
            .collect();
        relations.sort_by(|a, b| a.relation.cmp(&b.relation));
        ChangeSet { time, relations }
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
        let changes = engine
            .dataflow
            .apply(updates)
            .map_err(EngineError::Dataflow)?;
        let time = engine.dataflow.time();
        Ok(engine.decode_changes(time, changes))
    }
}
