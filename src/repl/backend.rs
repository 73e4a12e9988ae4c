//! What a REPL session runs its commands on: an engine in this process ([`super::local`]) or a
//! running daemon over HTTP ([`super::remote`]). The session parses every command and prints
//! every answer; a backend only answers, so both print alike.

use super::Failure;
use super::schema::Schema;
use std::ops::Range;
use vigil_engine::query::{Atom, Change};
use vigil_engine::{ChangeSet, Tuple};

/// The rows that answer a query.
pub struct Rows {
    /// The named variables, each once, in the order they first appear; empty when the rows
    /// are whole tuples.
    pub variables: Vec<String>,
    /// One distinct binding of the variables per row, sorted; or the matching tuples.
    pub rows: Vec<Tuple>,
}

/// A change set: the rows of each relation (by name, sorted) that appeared (+1) and
/// disappeared (-1), and the retractions of rows that were not there.
pub struct Delta {
    pub relations: Vec<(String, Vec<(Tuple, isize)>)>,
    pub absent: Vec<String>,
}

impl Delta {
    pub fn of(changes: &ChangeSet) -> Delta {
        Delta {
            relations: changes
                .decoded()
                .into_iter()
                .map(|relation| (relation.relation, relation.rows))
                .collect(),
            absent: changes.absent.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A transaction, to commit or to compute the change set of.
pub struct Write<'a> {
    pub changes: &'a [Change],
    /// The event time; without one, the current event time.
    pub at: Option<i64>,
    /// What explanations show for the tuples it brings in (`repl line 4`).
    pub event: String,
    /// Computes the change set and applies nothing.
    pub what_if: bool,
}

/// One line of a daemon's action journal, as `.actions` prints it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ActionLine {
    pub seq: u64,
    /// Seconds since the epoch.
    pub time: i64,
    pub kind: String,
    pub target: String,
    /// What was (or, dry, would be) sent.
    #[serde(default)]
    pub command: String,
    pub attempt: u32,
    /// `started`, `succeeded`, `failed`, `gave-up` or `dry-run`.
    pub outcome: String,
    #[serde(default)]
    pub reason: String,
}

/// The logical time (transactions committed) and the event time, in seconds.
pub struct Clock {
    pub time: u64,
    pub now: i64,
}

/// Answers the commands of a session. Errors are placed on the part of the line they are
/// about where that is known (the atom of a query, the change of a transaction), and are
/// about the whole command otherwise.
pub trait Backend {
    /// What the session runs on, for the banner: the program and its size, or the daemon.
    fn banner(&mut self) -> String;
    /// The program's relations and clauses.
    fn schema(&mut self) -> Result<&Schema, Failure>;
    /// The program's relations and clauses if they are at hand, without asking a daemon (for
    /// completion, after every line).
    fn known_schema(&self) -> Option<&Schema>;
    /// The rows that match `atom`, parsed from `line`.
    fn query(&mut self, line: &str, atom: &Atom) -> Result<Rows, Failure>;
    /// Every row of a relation, sorted.
    fn dump(&mut self, relation: &str) -> Result<Vec<Tuple>, Failure>;
    /// Checks `changes`, which follow `pending` in an open transaction; applies nothing.
    fn check(&mut self, pending: &[Change], changes: &[Change]) -> Result<(), Failure>;
    /// Commits a transaction, or computes its change set.
    fn apply(&mut self, write: Write<'_>) -> Result<Delta, Failure>;
    /// `why` (or `why not`) of `atom`, parsed from `line`: the text to print, or its JSON.
    fn explain(
        &mut self,
        line: &str,
        atom: &Atom,
        negated: bool,
        json: bool,
    ) -> Result<String, Failure>;
    /// The number of rows of every relation, in the program's order.
    fn sizes(&mut self) -> Result<Vec<(String, usize)>, Failure>;
    fn clock(&mut self) -> Result<Clock, Failure>;
    /// The last `limit` lines of the action journal, oldest first: what the daemon's
    /// actuators did.
    fn actions(&mut self, limit: usize) -> Result<Vec<ActionLine>, Failure>;
    /// Why a dot command cannot work on this backend, if it cannot.
    fn unsupported(&self, command: &str) -> Option<String>;
    /// `.load`: replaces the program; says what was loaded.
    fn load(&mut self, path: &str, span: Range<usize>) -> Result<String, Failure>;
    /// `.facts`: reads the input facts from a directory; the number of facts added.
    fn read_facts(&mut self, dir: &str, span: Range<usize>) -> Result<usize, Failure>;
}
