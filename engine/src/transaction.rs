//! Transactions: what a batch of writes means, and applying it whole or not at all.
//!
//! A [`Transaction`] collects writes in order. Each is checked when it is written (relation,
//! writability, arity, types, where `_` may stand); the first invalid one poisons the
//! transaction, and committing it then fails with an error that names the item, applying
//! nothing. A valid transaction is *resolved* against the current inputs, write by write:
//!
//! - an insert into a plain relation adds the tuple if it is absent;
//! - an insert into a keyed relation (`key="..."`) replaces the tuple that holds the same key,
//!   if it differs; with a `stamp` column, the stamp is the transaction's time when a non-key
//!   column changed and stays as it was when the reading is identical;
//! - a retraction removes the tuple (for a keyed relation, the tuple that holds the key and
//!   agrees with every column that is not `_`); retracting a tuple that is not there changes
//!   nothing and is reported in [`ChangeSet::absent`];
//! - the transaction's time (`at`) moves the clock relation (`IO=clock`) forward; time never
//!   goes backwards.
//!
//! The net effect, one +1 or -1 per input tuple that really changes, is applied to the dataflow
//! at one logical time. A what-if applies it, records the change set, and applies its inverse.

use crate::engine::{Absent, ChangeSet, Engine, EngineError, Origin, collect};
use crate::ir::RelationId;
use crate::value::{self, Value, Word};
use std::collections::HashMap;
use std::sync::Arc;

/// What a write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Retract,
}

/// One checked write: its fields as words, `None` for `_`.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub op: Op,
    pub relation: RelationId,
    pub fields: Vec<Option<Word>>,
    /// The tuple is restored as it was (facts files): a stamp column keeps its value.
    pub restore: bool,
    /// The event that brought the tuple in, when it is not the transaction's.
    pub event: Option<Arc<str>>,
}

/// Changes to apply together. Nothing is applied until [`Transaction::commit`]; dropping the
/// transaction discards it.
pub struct Transaction<'e> {
    engine: &'e mut Engine,
    items: Vec<Item>,
    /// The event time, in seconds; the engine's current time if not given.
    time: Option<i64>,
    event: Option<Arc<str>>,
    /// The first invalid item; the transaction cannot commit.
    error: Option<EngineError>,
}

/// The net input updates of a resolved transaction, and what the engine records of them.
pub(crate) struct Resolution {
    pub updates: Vec<(RelationId, Vec<Word>, isize)>,
    /// New holders of keys (`None`: the key is free).
    pub keys: Vec<(RelationId, Vec<Word>, Option<Vec<Word>>)>,
    /// Who brought each inserted tuple in, by tuple.
    pub events: HashMap<(RelationId, Vec<Word>), Option<Arc<str>>>,
    pub absent: Vec<Absent>,
    pub now: i64,
}

impl<'e> Transaction<'e> {
    pub(crate) fn new(engine: &'e mut Engine) -> Transaction<'e> {
        Transaction {
            engine,
            items: Vec::new(),
            time: None,
            event: None,
            error: None,
        }
    }

    /// Sets the transaction's event time in seconds: the clock relation moves to it, and
    /// stamps take it. It must not be earlier than the engine's current time.
    pub fn at(&mut self, time: i64) -> &mut Self {
        self.time = Some(time);
        self
    }

    /// Names the event that brings this transaction's tuples in, for explanations.
    pub fn event(&mut self, label: impl Into<Arc<str>>) -> &mut Self {
        self.event = Some(label.into());
        self
    }

    /// Inserts a tuple into an input relation (an upsert if the relation has a key).
    pub fn insert(&mut self, relation: &str, tuple: &[Value]) -> Result<(), EngineError> {
        let fields: Vec<Option<Value>> = tuple.iter().cloned().map(Some).collect();
        self.write(Op::Insert, relation, &fields)
    }

    /// Retracts a tuple from an input relation.
    pub fn retract(&mut self, relation: &str, tuple: &[Value]) -> Result<(), EngineError> {
        let fields: Vec<Option<Value>> = tuple.iter().cloned().map(Some).collect();
        self.write(Op::Retract, relation, &fields)
    }

    /// Writes a tuple whose fields may be `_` (`None`): the stamp column of an insert, and the
    /// non-key columns of a retraction from a keyed relation.
    pub fn write(
        &mut self,
        op: Op,
        relation: &str,
        fields: &[Option<Value>],
    ) -> Result<(), EngineError> {
        let result =
            self.engine
                .check_write(op, relation, fields, false)
                .map(|(relation, fields)| Item {
                    op,
                    relation,
                    fields,
                    restore: false,
                    event: None,
                });
        self.push(result, op, relation, fields)
    }

    /// Inserts a tuple exactly as given, stamp included: facts read back from a file.
    pub(crate) fn restore(
        &mut self,
        relation: &str,
        fields: &[Option<Value>],
        event: Arc<str>,
    ) -> Result<(), EngineError> {
        let result = self
            .engine
            .check_write(Op::Insert, relation, fields, true)
            .map(|(relation, fields)| Item {
                op: Op::Insert,
                relation,
                fields,
                restore: true,
                event: Some(event),
            });
        self.push(result, Op::Insert, relation, fields)
    }

    fn push(
        &mut self,
        result: Result<Item, EngineError>,
        op: Op,
        relation: &str,
        fields: &[Option<Value>],
    ) -> Result<(), EngineError> {
        match result {
            Ok(item) => {
                self.items.push(item);
                Ok(())
            }
            Err(error) => {
                if self.error.is_none() {
                    let sign = if op == Op::Insert { '+' } else { '-' };
                    self.error = Some(EngineError::Rejected(format!(
                        "item {} (`{sign}{}`): {error}",
                        self.items.len() + 1,
                        crate::engine::format_fields(relation, fields),
                    )));
                }
                Err(error)
            }
        }
    }

    /// The number of items written.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the transaction would commit: no invalid item, and a time that does not go
    /// backwards. Returns its event time. A commit after a successful check fails only if the
    /// dataflow itself fails, so a caller can make the transaction durable in between.
    pub fn check(&self) -> Result<i64, EngineError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let now = self.time.unwrap_or(self.engine.now());
        if now < self.engine.now() {
            return Err(EngineError::Rejected(format!(
                "its time {now} is before the current time {}; time never goes backwards",
                self.engine.now()
            )));
        }
        Ok(now)
    }

    fn resolve(&self) -> Result<Resolution, EngineError> {
        let now = self.check()?;
        Ok(self.engine.resolve(&self.items, now, self.event.clone()))
    }

    /// Applies every change at the next logical time, and returns what changed. Fails, and
    /// applies nothing, if any item was invalid or the time goes backwards.
    pub fn commit(self) -> Result<ChangeSet, EngineError> {
        let resolution = self.resolve()?;
        self.engine.commit(resolution)
    }

    /// Returns the change set that committing would give, and leaves the engine exactly as
    /// it was: relations, keys, stamps, clock and logical time. Subscribers see nothing.
    pub fn what_if(self) -> Result<ChangeSet, EngineError> {
        let resolution = self.resolve()?;
        self.engine.what_if(resolution)
    }
}

impl Engine {
    /// Checks one write and encodes its fields.
    pub(crate) fn check_write(
        &self,
        op: Op,
        relation: &str,
        fields: &[Option<Value>],
        restore: bool,
    ) -> Result<(RelationId, Vec<Option<Word>>), EngineError> {
        let id = self.relation(relation)?;
        let info = &self.program().relations[id];
        if !info.writable {
            return Err(EngineError::NotWritable(relation.to_string()));
        }
        if info.feed.clock {
            return Err(EngineError::Clock(relation.to_string()));
        }
        if fields.len() != info.arity() {
            return Err(EngineError::Arity {
                relation: relation.to_string(),
                expected: info.arity(),
                given: fields.len(),
            });
        }
        let feed = &info.feed;
        let mut words = Vec::with_capacity(fields.len());
        for (column, field) in fields.iter().enumerate() {
            let stamp = feed.stamp == Some(column);
            let name = &info.columns[column].name;
            match field {
                None if restore => {
                    return Err(EngineError::Wildcard(format!(
                        "column `{name}` of `{relation}` is `_`, but a restored tuple gives every value"
                    )));
                }
                Some(_) if stamp && op == Op::Insert && !restore => {
                    return Err(EngineError::Wildcard(format!(
                        "column `{name}` of `{relation}` is its stamp, which the engine fills: write `_` there"
                    )));
                }
                Some(value) => {
                    let value = self.coerce(id, column, value)?;
                    words.push(Some(
                        value::encode(&value, self.interner()).map_err(EngineError::Symbol)?,
                    ));
                }
                None if stamp => words.push(None),
                None if op == Op::Retract && feed.key.is_some() && !feed.is_key(column) => {
                    words.push(None)
                }
                None => {
                    let allowed = match (&feed.key, op) {
                        (Some(_), Op::Retract) => {
                            "a retraction may leave only the non-key columns `_`"
                        }
                        (Some(_), Op::Insert) => "an insert may leave only the stamp column `_`",
                        (None, _) => {
                            "`_` stands only for a stamp, or for the non-key columns of a retraction from a keyed relation"
                        }
                    };
                    return Err(EngineError::Wildcard(format!(
                        "column `{name}` of `{relation}` cannot be `_`: {allowed}"
                    )));
                }
            }
        }
        Ok((id, words))
    }

    /// Resolves checked writes, in order, against the current inputs.
    pub(crate) fn resolve(&self, items: &[Item], now: i64, event: Option<Arc<str>>) -> Resolution {
        let mut overlay: HashMap<(RelationId, Vec<Word>), bool> = HashMap::new();
        let mut holders: HashMap<(RelationId, Vec<Word>), Option<Vec<Word>>> = HashMap::new();
        let mut events: HashMap<(RelationId, Vec<Word>), Option<Arc<str>>> = HashMap::new();
        let mut absent = Vec::new();
        let present = |overlay: &HashMap<(RelationId, Vec<Word>), bool>,
                       relation: RelationId,
                       tuple: &Vec<Word>| {
            overlay
                .get(&(relation, tuple.clone()))
                .copied()
                .unwrap_or_else(|| self.input_contains(relation, tuple))
        };
        if let Some(clock) = self.clock()
            && now != self.now()
        {
            overlay.insert((clock, vec![self.now() as Word]), false);
            overlay.insert((clock, vec![now as Word]), true);
            events.insert((clock, vec![now as Word]), Some(Arc::from("the clock")));
        }
        for item in items {
            let info = &self.program().relations[item.relation];
            let feed = &info.feed;
            let item_event = item.event.clone().or_else(|| event.clone());
            match &feed.key {
                None => {
                    let tuple: Vec<Word> = item.fields.iter().map(|f| f.unwrap_or(0)).collect();
                    let there = present(&overlay, item.relation, &tuple);
                    match item.op {
                        Op::Insert => {
                            if !there {
                                events.insert((item.relation, tuple.clone()), item_event);
                            }
                            overlay.insert((item.relation, tuple), true);
                        }
                        Op::Retract if there => {
                            overlay.insert((item.relation, tuple), false);
                        }
                        Op::Retract => absent.push(self.absent(item)),
                    }
                }
                Some(key) => {
                    let key_words: Vec<Word> = key
                        .iter()
                        .map(|&column| item.fields[column].unwrap_or(0))
                        .collect();
                    let slot = (item.relation, key_words);
                    let holder = holders
                        .get(&slot)
                        .cloned()
                        .unwrap_or_else(|| self.key_holder(item.relation, &slot.1));
                    match item.op {
                        Op::Insert => {
                            let mut tuple: Vec<Word> =
                                item.fields.iter().map(|f| f.unwrap_or(0)).collect();
                            if let Some(stamp) = feed.stamp
                                && !item.restore
                            {
                                let same = holder.as_ref().is_some_and(|old| {
                                    (0..tuple.len()).all(|c| c == stamp || old[c] == tuple[c])
                                });
                                tuple[stamp] = match (&holder, same) {
                                    (Some(old), true) => old[stamp],
                                    _ => now as Word,
                                };
                            }
                            if holder.as_ref() == Some(&tuple) {
                                continue;
                            }
                            if let Some(old) = holder {
                                overlay.insert((item.relation, old), false);
                            }
                            events.insert((item.relation, tuple.clone()), item_event);
                            overlay.insert((item.relation, tuple.clone()), true);
                            holders.insert(slot, Some(tuple));
                        }
                        Op::Retract => {
                            let matches = holder.as_ref().is_some_and(|old| {
                                item.fields
                                    .iter()
                                    .zip(old)
                                    .all(|(field, word)| field.is_none_or(|f| f == *word))
                            });
                            match holder {
                                Some(old) if matches => {
                                    overlay.insert((item.relation, old), false);
                                    holders.insert(slot, None);
                                }
                                _ => absent.push(self.absent(item)),
                            }
                        }
                    }
                }
            }
        }
        let mut updates: Vec<(RelationId, Vec<Word>, isize)> = overlay
            .into_iter()
            .filter_map(|((relation, tuple), wanted)| {
                match (wanted, self.input_contains(relation, &tuple)) {
                    (true, false) => Some((relation, tuple, 1)),
                    (false, true) => Some((relation, tuple, -1)),
                    _ => None,
                }
            })
            .collect();
        updates.sort_unstable();
        events.retain(|tuple, _| {
            updates
                .binary_search_by(|u| (u.0, &u.1).cmp(&(tuple.0, &tuple.1)))
                .is_ok()
        });
        let keys = holders
            .into_iter()
            .map(|((relation, key), holder)| (relation, key, holder))
            .collect();
        Resolution {
            updates,
            keys,
            events,
            absent,
            now,
        }
    }

    fn absent(&self, item: &Item) -> Absent {
        let info = &self.program().relations[item.relation];
        Absent {
            relation: info.name.clone(),
            fields: item
                .fields
                .iter()
                .zip(info.types())
                .map(|(field, ty)| field.map(|word| value::decode(word, ty, self.interner())))
                .collect(),
        }
    }

    /// Records a resolved transaction's inputs, once the dataflow has applied it.
    pub(crate) fn record(&mut self, resolution: &mut Resolution, time: u64) {
        for (relation, tuple, diff) in &resolution.updates {
            let slot = (*relation, tuple.clone());
            if *diff > 0 {
                let event = resolution.events.remove(&slot).flatten();
                self.origins_mut().insert(
                    slot,
                    Origin {
                        time,
                        now: resolution.now,
                        event,
                    },
                );
            } else {
                self.origins_mut().remove(&slot);
            }
        }
        for (relation, key, holder) in resolution.keys.drain(..) {
            self.set_key_holder(relation, key, holder);
        }
    }

    /// Collects the dataflow's changes for a resolution into a change set.
    pub(crate) fn run(
        &mut self,
        updates: Vec<(RelationId, Vec<Word>, isize)>,
        time: u64,
        now: i64,
    ) -> Result<ChangeSet, EngineError> {
        let mut failure = None;
        let program = self.program_arc();
        let interner = self.interner().clone();
        let dataflow = self.dataflow_mut();
        let mut changes = collect(&program, &interner, time, |change| {
            if let Err(error) = dataflow.apply(updates, change) {
                failure = Some(error);
            }
        });
        changes.now = now;
        match failure {
            Some(error) => Err(EngineError::Dataflow(error)),
            None => Ok(changes),
        }
    }
}
