//! A house as the policy's input facts, whatever it came from: a generated [`House`], or a facts
//! directory such as the sample house in `fixtures/homelab/`.
//!
//! The benchmarks and the baselines start from the same tuples the engine is loaded with, so
//! that every implementation sees one house. A [`FactSet`] is those tuples by relation name,
//! stamps included, with the clock beside them.

use crate::house::House;
use std::collections::BTreeMap;
use std::path::Path;
use vigil_engine::{EngineError, Value, ir};

/// Input tuples by relation name, and the time they hold at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactSet {
    /// Every input relation with facts, and its tuples (stamp columns as stored).
    pub relations: BTreeMap<String, Vec<Vec<Value>>>,
    /// The clock: the time of the state, in seconds since the epoch.
    pub now: i64,
}

impl FactSet {
    /// The facts of a generated house: what [`House::write_facts`] writes.
    pub fn from_house(house: &House) -> FactSet {
        FactSet {
            relations: house
                .facts()
                .into_iter()
                .map(|(relation, tuples)| (relation.to_string(), tuples))
                .collect(),
            now: house.state.now,
        }
    }

    /// Reads the facts of every input relation of `program` from `dir`, as
    /// [`vigil_engine::Engine::load_facts`] would: a stream relation's file may be missing, and
    /// the clock's file holds the time (0 without one).
    pub fn from_dir(program: &ir::Program, dir: &Path) -> Result<FactSet, EngineError> {
        let mut facts = FactSet::default();
        for relation in &program.relations {
            if relation.input.is_none() {
                continue;
            }
            if relation.feed.clock {
                facts.now = vigil_engine::clock_facts(relation, dir)?.unwrap_or(0);
                continue;
            }
            let path = vigil_engine::io::facts_path(relation, dir);
            if relation.feed.stream && !path.exists() {
                continue;
            }
            let tuples = vigil_engine::io::read_facts(relation, dir)
                .map_err(|error| EngineError::Facts(format!("{}: {error}", path.display())))?;
            facts.relations.insert(relation.name.clone(), tuples);
        }
        Ok(facts)
    }

    /// The tuples of one relation (none if it has no facts).
    pub fn tuples(&self, relation: &str) -> &[Vec<Value>] {
        self.relations.get(relation).map_or(&[], Vec::as_slice)
    }

    /// The number of tuples, over every relation.
    pub fn len(&self) -> usize {
        self.relations.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The text of a symbol field (empty for anything else).
pub fn text(value: &Value) -> &str {
    match value {
        Value::Symbol(text) => text,
        _ => "",
    }
}

/// The integer of a number field (0 for anything else).
pub fn number(value: &Value) -> i64 {
    match value {
        Value::Number(n) => *n,
        Value::Unsigned(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        _ => 0,
    }
}
