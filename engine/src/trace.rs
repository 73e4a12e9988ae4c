//! Traces: timed transactions, as JSON lines or MessagePack.
//!
//! A trace is how events reach Vigil outside a live run: `vigil replay`, the scenario tests,
//! the simulator and the daemon's journal all use this one shape. Each entry is a transaction:
//!
//! ```json
//! {"time": 60, "event": "ups poll", "retract": {"edge": [[1, 2]]}, "insert": {"reading": [["pve", 230, null]]}}
//! ```
//!
//! - `time`: the event time in seconds (an integer). The clock relation moves to it and stamps
//!   take it; omitted, the time stays as it was; earlier than the current time, the transaction
//!   is rejected.
//! - `event`: a label for the event, shown by explanations of the tuples it brought in.
//! - `restore`, then `retract`, then `insert`: tuples by relation, each list applied in order.
//!   `restore` inserts tuples exactly as given, stamps included (saved facts brought back). Values are JSON
//!   integers (for `number`, `unsigned` and `float` columns), floats (for `float` columns),
//!   strings (for symbols), and `null` for `_` (a stamp column of an insert; a non-key column of
//!   a retraction from a keyed relation).
//! - `whatif: true`: the change set is computed and nothing is applied.
//!
//! Every field is optional; an entry with only a `time` advances the clock. In JSON lines,
//! blank lines and lines that start with `#` are skipped. A MessagePack trace is a sequence of
//! maps of the same shape, one after the other; it is recognised by its first byte.

use crate::engine::{Engine, EngineError};
use crate::transaction::{Op, Transaction};
use crate::value::Value;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// One transaction of a trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Tuples inserted exactly as given, stamps included: saved facts brought back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restore: BTreeMap<String, Vec<Vec<Field>>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retract: BTreeMap<String, Vec<Vec<Field>>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub insert: BTreeMap<String, Vec<Vec<Field>>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whatif: bool,
}

/// A value, or `_` (`null`).
#[derive(Clone, Debug, PartialEq)]
pub struct Field(pub Option<Value>);

impl Entry {
    /// Opens a transaction on `engine` with this entry's time, event and writes. Writes that
    /// are invalid poison the transaction: committing it fails and names the first.
    pub fn transaction<'e>(&self, engine: &'e mut Engine) -> Transaction<'e> {
        let mut transaction = engine.transaction();
        if let Some(time) = self.time {
            transaction.at(time);
        }
        if let Some(event) = &self.event {
            transaction.event(event.as_str());
        }
        let event: std::sync::Arc<str> = std::sync::Arc::from(self.event.as_deref().unwrap_or(""));
        for (relation, tuples) in &self.restore {
            for tuple in tuples {
                let fields: Vec<Option<Value>> =
                    tuple.iter().map(|field| field.0.clone()).collect();
                let _ = transaction.restore(relation, &fields, event.clone());
            }
        }
        for (op, writes) in [(Op::Retract, &self.retract), (Op::Insert, &self.insert)] {
            for (relation, tuples) in writes {
                for tuple in tuples {
                    let fields: Vec<Option<Value>> =
                        tuple.iter().map(|field| field.0.clone()).collect();
                    // The transaction keeps the first error; the rest are the same story.
                    let _ = transaction.write(op, relation, &fields);
                }
            }
        }
        transaction
    }

    /// Applies the entry: commits it, or computes its what-if.
    pub fn apply(&self, engine: &mut Engine) -> Result<crate::ChangeSet, EngineError> {
        let transaction = self.transaction(engine);
        if self.whatif {
            transaction.what_if()
        } else {
            transaction.commit()
        }
    }
}

/// Where an entry is in its trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A line of a JSON-lines trace, from 1.
    Line(usize),
    /// An entry of a MessagePack trace, from 1, and the byte it starts at.
    Entry { index: usize, offset: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Entry { index, offset } => write!(f, "entry {index} (byte {offset})"),
        }
    }
}

/// Reads a trace: every entry with its location, or what is wrong with it. A malformed JSON
/// line is reported and the next line is read; in MessagePack, where nothing marks where the
/// next entry starts, a malformed entry ends the trace.
pub fn read(bytes: &[u8]) -> Vec<(Location, Result<Entry, String>)> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(0x80..=0x8f | 0xde | 0xdf) => read_msgpack(bytes),
        _ => read_json_lines(bytes),
    }
}

fn read_json_lines(bytes: &[u8]) -> Vec<(Location, Result<Entry, String>)> {
    let mut entries = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let location = Location::Line(index + 1);
        let Ok(line) = std::str::from_utf8(line) else {
            entries.push((location, Err("the line is not valid UTF-8".to_string())));
            continue;
        };
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let entry = serde_json::from_str::<Entry>(text).map_err(|error| {
            let message = error.to_string();
            // serde_json ends its messages with "at line 1 column N"; the line is ours.
            match message.rfind(" at line ") {
                Some(at) => format!("column {}: {}", error.column(), &message[..at]),
                None => message,
            }
        });
        entries.push((location, entry));
    }
    entries
}

fn read_msgpack(bytes: &[u8]) -> Vec<(Location, Result<Entry, String>)> {
    let mut entries = Vec::new();
    let mut cursor = std::io::Cursor::new(bytes);
    let mut index = 0;
    while (cursor.position() as usize) < bytes.len() {
        index += 1;
        let offset = cursor.position() as usize;
        let location = Location::Entry { index, offset };
        let mut deserializer = rmp_serde::Deserializer::new(&mut cursor);
        match Entry::deserialize(&mut deserializer) {
            Ok(entry) => entries.push((location, Ok(entry))),
            Err(error) => {
                entries.push((
                    location,
                    Err(format!("{error}; the rest of the trace cannot be read")),
                ));
                break;
            }
        }
    }
    entries
}

/// Encodes entries as a MessagePack trace.
pub fn to_msgpack(entries: &[Entry]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in entries {
        // Writing to a Vec cannot fail, and every field of an entry is serialisable.
        if let Ok(encoded) = rmp_serde::to_vec_named(entry) {
            bytes.extend(encoded);
        }
    }
    bytes
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => serializer.serialize_none(),
            Some(Value::Number(n)) => serializer.serialize_i64(*n),
            Some(Value::Unsigned(n)) => serializer.serialize_u64(*n),
            Some(Value::Float(x)) => serializer.serialize_f64(*x),
            Some(Value::Symbol(text)) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a string, or null for `_`")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(Field(Some(Value::Number(v))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(Field(Some(match i64::try_from(v) {
            Ok(n) => Value::Number(n),
            Err(_) => Value::Unsigned(v),
        })))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field, E> {
        Ok(Field(Some(Value::Float(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field(Some(Value::symbol(v))))
    }

    fn visit_none<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_skip_comments_and_name_bad_lines() {
        let text = b"# a comment\n\n{\"time\": 60, \"insert\": {\"edge\": [[1, 2]]}}\n{\"time\": }\n{\"tme\": 1}\n";
        let entries = read(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, Location::Line(3));
        let entry = entries[0].1.as_ref().unwrap();
        assert_eq!(entry.time, Some(60));
        assert_eq!(
            entry.insert["edge"],
            vec![vec![
                Field(Some(Value::Number(1))),
                Field(Some(Value::Number(2)))
            ]]
        );
        assert_eq!(entries[1].0, Location::Line(4));
        assert!(
            entries[1]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("column 10: ")
        );
        let unknown = entries[2].1.as_ref().unwrap_err();
        assert!(unknown.contains("unknown field `tme`"), "{unknown}");
    }

    #[test]
    fn msgpack_round_trips_every_kind_of_field() {
        let entry = Entry {
            time: Some(120),
            event: Some("poll".into()),
            insert: BTreeMap::from([(
                "reading".to_string(),
                vec![vec![
                    Field(Some(Value::symbol("pve"))),
                    Field(Some(Value::Float(2.5))),
                    Field(Some(Value::Unsigned(u64::MAX))),
                    Field(Some(Value::Number(-3))),
                    Field(None),
                ]],
            )]),
            ..Entry::default()
        };
        let bytes = to_msgpack(&[entry.clone(), Entry::default()]);
        let entries = read(&bytes);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].1.as_ref().unwrap(), &entry);
        assert_eq!(
            entries[1].0,
            Location::Entry {
                index: 2,
                offset: bytes.len() - 1
            }
        );
    }

    #[test]
    fn a_truncated_msgpack_entry_ends_the_trace_with_an_error() {
        let entry = Entry {
            time: Some(1),
            ..Entry::default()
        };
        let mut bytes = to_msgpack(&[entry.clone(), entry]);
        bytes.pop();
        let entries = read(&bytes);
        assert_eq!(entries.len(), 2);
        assert!(entries[0].1.is_ok());
        assert!(entries[1].1.is_err());
    }
}
