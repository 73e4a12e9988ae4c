//! Snapshots: an engine's inputs, with where each came from, and its times.
//!
//! Everything else an engine holds is derived from these: the dataflow recomputes every
//! relation from the inputs, the key tables are rebuilt from the keyed tuples, and stamps are
//! columns of the tuples themselves. Restoring a snapshot into a fresh engine of the same
//! program therefore gives exactly the same relations, logical time, clock and explanations.
//! The daemon writes snapshots so that a restart replays only the journal written since.

use crate::engine::{Engine, EngineError, Origin};
use crate::trace::Field;
use crate::value::{self, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An engine's state, in the shape of its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The logical time of the last committed transaction.
    pub time: u64,
    /// The event time, in seconds.
    pub now: i64,
    /// Every input relation that holds tuples (the clock excepted: `now` restores it).
    pub relations: Vec<SnapshotRelation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRelation {
    pub name: String,
    pub tuples: Vec<SnapshotTuple>,
}

/// A tuple and the transaction that brought it in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotTuple {
    pub values: Vec<Field>,
    pub time: u64,
    pub now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl Engine {
    /// The engine's inputs and times.
    pub fn snapshot(&self) -> Snapshot {
        let program = self.program_arc();
        let mut relations = Vec::new();
        for (id, relation) in program.relations.iter().enumerate() {
            if !relation.writable || relation.feed.clock {
                continue;
            }
            let types: Vec<_> = relation.types().collect();
            let mut tuples = Vec::new();
            self.scan_inputs(id, &mut |words| {
                let origin = self.origin(id, words).cloned().unwrap_or(Origin {
                    time: 0,
                    now: 0,
                    event: None,
                });
                tuples.push(SnapshotTuple {
                    values: words
                        .iter()
                        .zip(&types)
                        .map(|(word, ty)| Field(Some(value::decode(*word, *ty, self.interner()))))
                        .collect(),
                    time: origin.time,
                    now: origin.now,
                    event: origin.event.map(|event| event.to_string()),
                });
            });
            if tuples.is_empty() {
                continue;
            }
            tuples.sort_by(|a, b| {
                let key = |t: &SnapshotTuple| -> Vec<Value> {
                    t.values.iter().filter_map(|f| f.0.clone()).collect()
                };
                key(a).cmp(&key(b))
            });
            relations.push(SnapshotRelation {
                name: relation.name.clone(),
                tuples,
            });
        }
        Snapshot {
            time: self.time(),
            now: self.now(),
            relations,
        }
    }

    /// Restores a snapshot into an engine that has committed nothing yet. Fails, and changes
    /// nothing, if the engine has, or if the snapshot does not fit the program (an unknown
    /// relation, a tuple of the wrong shape, a time that goes backwards).
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EngineError> {
        if self.time() != 0 {
            return Err(EngineError::Rejected(format!(
                "a snapshot is restored into a fresh engine, but this one is at time {}",
                self.time()
            )));
        }
        let mut origins = Vec::new();
        let mut transaction = self.transaction();
        transaction.at(snapshot.now);
        for relation in &snapshot.relations {
            for tuple in &relation.tuples {
                let fields: Vec<Option<Value>> =
                    tuple.values.iter().map(|field| field.0.clone()).collect();
                let event = tuple.event.as_deref().map(Arc::from);
                transaction.restore(
                    &relation.name,
                    &fields,
                    event.clone().unwrap_or_else(|| Arc::from("")),
                )?;
                let values: Vec<Value> = fields.into_iter().flatten().collect();
                origins.push((
                    relation.name.clone(),
                    values,
                    Origin {
                        time: tuple.time,
                        now: tuple.now,
                        event,
                    },
                ));
            }
        }
        transaction.commit()?;
        for (relation, values, origin) in origins {
            let id = self.relation(&relation)?;
            let words = self.encode_tuple(id, &values)?;
            self.origins_mut().insert((id, words), origin);
        }
        self.set_time(snapshot.time);
        Ok(())
    }
}
