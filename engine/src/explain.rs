//! Explanations: why a row holds (`why`), and why no row matches a pattern (`why not`).
//!
//! # Why
//!
//! [`why`] returns a [`Derivation`]: a tree of rows, stored flat as a list of [`Node`]s whose
//! premises refer to other nodes by index, so that a row used several times is explained once
//! and a derivation thousands of levels deep costs no stack. Each node says how its row holds:
//!
//! - an *input* fact, with the transaction that inserted it (logical time, event time, event);
//! - a *fact* of the program, with its location;
//! - a *rule*, with its location and clause, the value of every variable, and its premises in
//!   body order: the rows its positive atoms matched (each explained by its own node), the
//!   negated atoms that matched nothing (shown with their bound values), the conditions,
//!   assignments and ranges that held (with their variables' values), and the aggregates with
//!   their group (every binding for `count`, `sum` and `mean`; the bindings that give the
//!   result for `min` and `max`). Rows of a group are listed, not explained further.
//!
//! A row that is both a fact of the program and an inserted input is shown as the fact; an
//! inserted input that rules also derive is shown as the input.
//!
//! `why` of a row that is not in the relation is not an error: it returns
//! [`Explanation::Absent`] with the `why not` answer for that row, which prints as
//! `path(4, 1) does not hold` followed by what each rule lacks. Errors are for questions that
//! cannot be asked: an unknown relation, a wrong number of values, a value of the wrong type.
//!
//! Derivations are well founded: no row is among its own ancestors. Rows of a lower stratum
//! are explained on their own (stratification orders them). Within the goal's stratum, rows are
//! searched breadth first, backwards from the goal: each searched row's rule instances are
//! enumerated, and an instance whose premises of the stratum are all proved proves its row,
//! which in turn wakes the instances waiting for that row. A row is thus proved only from rows
//! proved before it, which rules out cycles, and the breadth-first order finds short
//! derivations; where each rule has at most one premise in the stratum (linear recursion), the
//! shortest.
//!
//! # Why not
//!
//! [`why_not`] first looks for rows that match the pattern. If there are none, it says, for an
//! input relation, that no such fact was inserted (and for a keyed relation which row holds the
//! key now), and for each rule of the relation where it stops: a head that cannot give a row of
//! the pattern, or the body literal that fails. The body is evaluated left to right from the
//! head's bindings, and the candidates that get furthest (at most [`CANDIDATES`] per rule) are
//! reported with the failing literal as written, why it fails (`` `edge(x, y)` does not match: no
//! row has 3 in column 1 ``, `` `x < 10` is false for x = 12 ``, `` `!blocked(h)` does not hold:
//! blocked("pve") is there ``), and the named variables bound at that point. Head expressions
//! are checked as soon as their variables are bound, and `v + c`, `v - c` and `c - v` on integers
//! are solved for `v` from the pattern, so that `why not even(6)` with `even(n + 1) :- odd(n)`
//! looks for `odd(5)`. The search stops after [`STEPS`] steps per rule and says so.
//!
//! # Text format
//!
//! A derivation prints as an indented tree, two spaces per level, with the premises of a rule
//! under its `by rule` line, in body order:
//!
//! ```text
//! path(1, 3)
//!   by rule path(x, z) :- path(x, y), edge(y, z).   at prog.dl:4:1
//!   path(1, 2)
//!     by rule path(x, y) :- edge(x, y).   at prog.dl:3:1
//!     edge(1, 2)   input, time 1 at 60 (trace line 1)
//!   edge(2, 3)   input, time 2 at 120
//!   no row matches `!blocked(2)`
//!   `x != z` holds for x = 1, z = 3
//!   `n = count : { member(x, _) }` is 2, over 2 bindings:
//!     member(1, "a")
//!     member(1, "b")
//! ```
//!
//! Values are written as in a program (symbols quoted). A fact of the program prints as
//! `edge(1, 2)   fact at prog.dl:7:1`. A derived row used more than once is printed in full the
//! first time, marked `[n]` (`path(1, 2)   [1]`), and as `path(1, 2)   see [1]` afterwards;
//! input and fact rows are short and printed in full every time. A branch deeper than
//! [`MAX_DEPTH`] levels is cut the same way, `see [n]`, and continues in a block of its own
//! after the tree, separated by a blank line and headed by the row marked `[n]`.
//!
//! A why-not answer prints the pattern and `does not hold`, then one entry per rule:
//!
//! ```text
//! path(3, _) does not hold
//!   rule path(x, y) :- edge(x, y).   at prog.dl:3:1
//!     `edge(x, y)` does not match: no row has 3 in column 1   with x = 3
//! ```
//!
//! A fact of the program that does not fit the pattern is listed as `fact ...` with the reason
//! (`the head gives 1 in column 1, not 3`), and a relation that takes inserts gets a line
//! `` `edge` is an input relation: no such fact was inserted ``, followed for a keyed relation by
//! the row that holds the key. When rows match, the answer is `path(1, _) holds: 2 rows match`
//! and the first few of them.
//!
//! # JSON
//!
//! [`Explanation::to_json`] and [`WhyNot::to_json`] give the same content for programs; the
//! field names are those of the types here, enums are tagged with `kind`, and values are JSON
//! numbers and strings.
//!
//! # Indexes
//!
//! Lookups by bound columns go through hash indexes, one per (relation, bound columns), built
//! from the relation's contents the first time they are needed; a lookup of a whole row asks
//! the engine directly. The indexes are kept for the engines questioned most recently (a few),
//! each until its next transaction, so asking many questions between two transactions costs one
//! scan of each relation involved.

use crate::dataflow::build::range_values;
use crate::dataflow::eval::{Compiled, CompiledCondition, Evaluator, compile, compile_condition};
use crate::diag::Span;
use crate::engine::{Engine, EngineError, format_fields, format_tuple};
use crate::ir::{self, RelationId, RuleId, VarId};
use crate::syntax::ast::{AggregateKind, CompareOp};
use crate::value::{self, Type, Value, Word};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Candidates reported per rule by `why not`.
pub const CANDIDATES: usize = 3;
/// Bindings a `why not` search tries per rule before it gives up.
pub const STEPS: usize = 10_000;
/// Levels of a derivation printed inline before a branch continues in a block of its own.
pub const MAX_DEPTH: usize = 24;
/// Rows shown when a `why not` pattern matches.
const SHOWN_ROWS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The answers

/// The answer to `why R(...)`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Explanation {
    /// The row holds: how it was derived.
    Holds(Derivation),
    /// The row is not in the relation: why not.
    Absent(WhyNot),
}

/// A derivation: a tree of rows, stored flat. Node 0 is the explained row; a premise refers to
/// the node that explains its row, so a row used twice is explained once.
#[derive(Clone, Debug, Serialize)]
pub struct Derivation {
    pub nodes: Vec<Node>,
}

/// One row and how it holds.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub relation: String,
    pub tuple: Vec<Value>,
    pub how: How,
}

/// How a row holds.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum How {
    /// An input fact, with the transaction that inserted it if the engine recorded one.
    Input { origin: Option<InputOrigin> },
    /// A fact written in the program.
    Fact {
        rule: RuleId,
        location: String,
        clause: String,
    },
    /// A rule whose body matched.
    Rule {
        /// Index in [`ir::Program::rules`].
        rule: RuleId,
        location: String,
        clause: String,
        /// Every variable of the rule bound by the match (those local to an aggregate are not).
        bindings: Vec<VariableValue>,
        premises: Vec<Premise>,
    },
    /// The row is in the relation, but no rule instance reproduces it. The engine and this
    /// module disagree on the program's semantics; the reason says where.
    Unexplained { reason: String },
}

/// Where an input fact came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputOrigin {
    /// The logical time of the transaction that inserted it.
    pub time: u64,
    /// The transaction's event time, in seconds.
    pub now: i64,
    /// The event that brought it in (a facts file, a trace line, an adapter's reading).
    pub event: Option<String>,
}

/// One body literal of a rule, as it held.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Premise {
    /// A positive atom matched this row, explained by `Derivation::nodes[node]`.
    Row { literal: String, node: usize },
    /// A negated atom matched no row; `atom` shows it with the bound values.
    Negation { literal: String, atom: String },
    /// A condition, assignment or `range` that held, with the values of its variables.
    Condition {
        literal: String,
        values: Vec<VariableValue>,
    },
    /// An aggregate and its group.
    Aggregate(AggregatePremise),
}

/// A variable of a rule and its value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariableValue {
    /// Index in [`ir::Rule::variables`].
    pub var: VarId,
    pub name: String,
    pub value: Value,
}

/// An aggregate's result and the group it was computed over.
#[derive(Clone, Debug, Serialize)]
pub struct AggregatePremise {
    pub literal: String,
    /// `count`, `sum`, `min`, `max` or `mean`.
    pub aggregate: String,
    pub result: Value,
    /// The number of bindings in the group.
    pub size: usize,
    /// Every binding of the group for `count`, `sum` and `mean`; the bindings that give the
    /// result for `min` and `max`.
    pub members: Vec<GroupMember>,
}

/// One binding of an aggregate's body: the rows its atoms matched, and the aggregated value.
#[derive(Clone, Debug, Serialize)]
pub struct GroupMember {
    pub rows: Vec<Row>,
    pub value: Option<Value>,
}

/// A row of a relation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub relation: String,
    pub tuple: Vec<Value>,
}

/// The answer to `why not R(...)`.
#[derive(Clone, Debug, Serialize)]
pub struct WhyNot {
    pub relation: String,
    /// The pattern asked about; `None` is `_`.
    pub pattern: Vec<Option<Value>>,
    pub verdict: Verdict,
}

/// Whether the pattern matches, and if not, what each way of deriving it lacks.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Rows match the pattern: how many, and the first few in value order.
    Holds { count: usize, rows: Vec<Vec<Value>> },
    /// No row matches.
    Missing {
        /// For a relation that takes inserts: no such fact was inserted.
        input: Option<InputAnswer>,
        /// For a derived relation: one answer per rule or fact of the program.
        rules: Vec<RuleAnswer>,
    },
}

/// Why a relation that takes inserts lacks the row.
#[derive(Clone, Debug, Serialize)]
pub struct InputAnswer {
    /// For a keyed relation whose pattern gives the whole key: the row that holds the key now.
    pub key_holder: Option<Vec<Value>>,
}

/// Why one rule (or fact) of the program gives no matching row.
#[derive(Clone, Debug, Serialize)]
pub struct RuleAnswer {
    pub rule: RuleId,
    /// A fact of the program, rather than a rule.
    pub fact: bool,
    pub location: String,
    pub clause: String,
    pub outcome: Outcome,
}

/// Where a rule stops matching.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The head cannot give a row of the pattern, whatever the body binds.
    Head { reason: String },
    /// The body fails: the candidates that came furthest, each stopped by one literal.
    Body {
        candidates: Vec<Candidate>,
        /// The search stopped after [`STEPS`] steps, before trying every binding.
        truncated: bool,
    },
}

/// A partial binding of a rule's body and the literal that stops it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// How many body literals (as written) held before the failing one.
    pub held: usize,
    /// The failing literal as written; the rule's head when the body binds it to a row
    /// outside the pattern.
    pub literal: String,
    /// The rest of a sentence whose subject is the literal: `is false for x = 12`,
    /// `does not match: no row has 3 in column 1`, `does not hold: blocked("pve") is there`.
    pub reason: String,
    /// The named variables bound at that point.
    pub values: Vec<VariableValue>,
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Explains why `relation` holds `tuple`: a [`Derivation`], or, if the row is not there, the
/// [`WhyNot`] answer for it. Fails on an unknown relation, a wrong arity or a value of the
/// wrong type.
pub fn why(engine: &Engine, relation: &str, tuple: &[Value]) -> Result<Explanation, EngineError> {
    let id = engine.relation(relation)?;
    let words = engine.encode_tuple(id, tuple)?;
    let shared = cache_of(engine);
    let mut cache = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut context = Context::new(engine, &mut cache);
    if !engine.contains_words(id, &words) {
        let pattern = words.into_iter().map(Some).collect();
        return Ok(Explanation::Absent(context.why_not(id, pattern)));
    }
    Ok(Explanation::Holds(
        Builder::new(&mut context).explain(id, words),
    ))
}

/// Explains why no row of `relation` matches `pattern` (`None` matches any value), or lists
/// the rows that do. Fails on an unknown relation, a wrong arity or a value of the wrong type.
pub fn why_not(
    engine: &Engine,
    relation: &str,
    pattern: &[Option<Value>],
) -> Result<WhyNot, EngineError> {
    let id = engine.relation(relation)?;
    let info = &engine.program().relations[id];
    if pattern.len() != info.arity() {
        return Err(EngineError::Arity {
            relation: relation.to_string(),
            expected: info.arity(),
            given: pattern.len(),
        });
    }
    let mut words = Vec::with_capacity(pattern.len());
    for (column, field) in pattern.iter().enumerate() {
        words.push(match field {
            None => None,
            Some(value) => {
                let value = engine.coerce(id, column, value)?;
                Some(value::encode(&value, engine.interner()).map_err(EngineError::Symbol)?)
            }
        });
    }
    let shared = cache_of(engine);
    let mut cache = shared.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(Context::new(engine, &mut cache).why_not(id, words))
}

impl Engine {
    /// Why `relation` holds `tuple`; see [`why`].
    pub fn why(&self, relation: &str, tuple: &[Value]) -> Result<Explanation, EngineError> {
        why(self, relation, tuple)
    }

    /// Why no row of `relation` matches `pattern`; see [`why_not`].
    pub fn why_not(
        &self,
        relation: &str,
        pattern: &[Option<Value>],
    ) -> Result<WhyNot, EngineError> {
        why_not(self, relation, pattern)
    }
}

impl Explanation {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an explanation has no map with non-string keys")
    }
}

impl WhyNot {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an answer has no map with non-string keys")
    }
}

// ---------------------------------------------------------------------------------------------
// Indexes, kept per engine until its next transaction

/// The contents of one relation, as words, row after row.
struct Table {
    arity: usize,
    len: usize,
    words: Vec<Word>,
}

impl Table {
    fn row(&self, index: usize) -> &[Word] {
        &self.words[index * self.arity..(index + 1) * self.arity]
    }
}

/// The rows of a table by the values of some of their columns.
struct Index {
    buckets: FxHashMap<Vec<Word>, Vec<u32>>,
}

#[derive(Default)]
struct Cache {
    tables: FxHashMap<RelationId, Arc<Table>>,
    indexes: FxHashMap<(RelationId, Vec<usize>), Arc<Index>>,
}

/// The caches of the engines asked most recently. An engine is recognised by its program
/// (a `Weak` pointer keeps the allocation, so the address is not reused while the entry lives)
/// and its own address, and a cache is valid for one logical time: a transaction changes the
/// contents, and a what-if restores them before it returns.
struct Slot {
    program: Weak<ir::Program>,
    engine: usize,
    time: u64,
    cache: Arc<Mutex<Cache>>,
}

const CACHED_ENGINES: usize = 4;

static CACHES: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

fn cache_of(engine: &Engine) -> Arc<Mutex<Cache>> {
    let program = engine.program_arc();
    let address = engine as *const Engine as usize;
    let mut slots = CACHES.lock().unwrap_or_else(PoisonError::into_inner);
    slots.retain(|slot| slot.program.strong_count() > 0);
    let found = slots.iter().position(|slot| {
        slot.engine == address && std::ptr::eq(slot.program.as_ptr(), Arc::as_ptr(&program))
    });
    let mut slot = match found {
        Some(index) => slots.remove(index),
        None => {
            if slots.len() >= CACHED_ENGINES {
                slots.remove(0);
            }
            Slot {
                program: Arc::downgrade(&program),
                engine: address,
                time: engine.time(),
                cache: Arc::default(),
            }
        }
    };
    if slot.time != engine.time() {
        slot.time = engine.time();
        slot.cache = Arc::default();
    }
    let cache = slot.cache.clone();
    slots.push(slot);
    cache
}

/// The rows of a relation that match a pattern.
enum Rows {
    /// Every column was given: the row, if it is there.
    Exact(Option<Vec<Word>>),
    /// No column was given: every row.
    All(Arc<Table>),
    /// Some columns were given: the rows of that bucket.
    Bucket(Arc<Table>, Arc<Index>, Vec<Word>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Exact(row) => usize::from(row.is_some()),
            Rows::All(table) => table.len,
            Rows::Bucket(_, index, key) => index.buckets.get(key).map_or(0, Vec::len),
        }
    }

    fn get(&self, position: usize) -> &[Word] {
        match self {
            Rows::Exact(row) => row.as_deref().expect("the row is there"),
            Rows::All(table) => table.row(position),
            Rows::Bucket(table, index, key) => table.row(index.buckets[key][position] as usize),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rules compiled for evaluation over a binding array
//
// A binding array holds one word per variable of the rule (position = VarId), followed by one
// word per wildcard column of a positive atom, so that the rows a binding matched can be
// rebuilt from it.

enum HeadArg {
    Var(VarId),
    Const(Word),
    Expr {
        expr: Compiled,
        reads: Vec<VarId>,
        /// For `v + c`, `c + v`, `v - c` and `c - v` on integers: the variable, and how to
        /// get its value from the column's.
        inverse: Option<(VarId, Inverse)>,
    },
}

/// How to undo an integer `+` or `-` with a constant (wrapping, like the operators).
#[derive(Clone, Copy)]
enum Inverse {
    /// `v + c` or `c + v`: `v = column - c`.
    Subtract(Word),
    /// `v - c`: `v = column + c`.
    Add(Word),
    /// `c - v`: `v = c - column`.
    SubtractFrom(Word),
}

impl Inverse {
    fn of(expr: &ir::Expr, interner: &crate::value::Interner) -> Option<(VarId, Inverse)> {
        use crate::syntax::ast::BinaryOp::{Add, Sub};
        let ir::Expr::Binary {
            op, ty, lhs, rhs, ..
        } = expr
        else {
            return None;
        };
        if !matches!(ty, Type::Number | Type::Unsigned) {
            return None;
        }
        let constant = |expr: &ir::Expr| match expr {
            ir::Expr::Const(value) => value::encode(value, interner).ok(),
            _ => None,
        };
        match (op, &**lhs, &**rhs) {
            (Add, ir::Expr::Var(var, _), other) | (Add, other, ir::Expr::Var(var, _)) => {
                Some((*var, Inverse::Subtract(constant(other)?)))
            }
            (Sub, ir::Expr::Var(var, _), other) => Some((*var, Inverse::Add(constant(other)?))),
            (Sub, other, ir::Expr::Var(var, _)) => {
                Some((*var, Inverse::SubtractFrom(constant(other)?)))
            }
            _ => None,
        }
    }

    fn apply(self, column: Word) -> Word {
        match self {
            Inverse::Subtract(constant) => column.wrapping_sub(constant),
            Inverse::Add(constant) => column.wrapping_add(constant),
            Inverse::SubtractFrom(constant) => constant.wrapping_sub(column),
        }
    }
}

struct RuleCode {
    id: RuleId,
    head: Vec<HeadArg>,
    body: Vec<Lit>,
    slots: usize,
    /// Which slots the head and the top-level literals bind.
    bound: Vec<bool>,
    /// The order `why` evaluates the body in, with every head variable bound.
    order: Vec<usize>,
    /// The literals as written, for `why not`, in body order.
    units: Vec<Unit>,
}

enum Lit {
    Positive {
        relation: RelationId,
        /// The slot of each column.
        columns: Vec<usize>,
        span: Span,
    },
    Negative {
        relation: RelationId,
        columns: Vec<Option<VarId>>,
        span: Span,
    },
    Filter {
        condition: CompiledCondition,
        /// `column = expr` (not on floats), which a lookup can use as a key.
        equation: Option<(VarId, Compiled, Vec<VarId>)>,
        reads: Vec<VarId>,
        span: Span,
        negated: bool,
        hidden: bool,
    },
    Assign {
        var: VarId,
        expr: Compiled,
        reads: Vec<VarId>,
        span: Span,
        hidden: bool,
    },
    Range {
        var: VarId,
        ty: Type,
        from: Compiled,
        to: Compiled,
        step: Option<Compiled>,
        reads: Vec<VarId>,
        /// The literal as written (`x = range(0, 3)`) and the variable it names, when the range
        /// is bound to a variable by a hidden equation.
        shown: (Span, VarId),
    },
    Aggregate(Box<AggregateCode>),
}

struct AggregateCode {
    result: VarId,
    kind: AggregateKind,
    ty: Type,
    target: Option<(Compiled, Type)>,
    injected: Vec<VarId>,
    locals: Vec<VarId>,
    body: Vec<Lit>,
    order: Vec<usize>,
    shown: (Span, VarId),
}

/// A body literal as written: the literal, and the literals the normalisation made of its
/// parts (the constants and expressions of an atom, the equation that names an aggregate).
struct Unit {
    main: usize,
    /// Evaluated before `main` (the values of a negated atom's expressions).
    before: Vec<usize>,
    /// Evaluated after `main` (an atom's constants, an aggregate's name).
    after: Vec<usize>,
}

impl Lit {
    /// The variables the literal reads, which must be bound before it.
    fn reads(&self) -> Vec<VarId> {
        match self {
            Lit::Positive { .. } => Vec::new(),
            Lit::Negative { columns, .. } => columns.iter().flatten().copied().collect(),
            Lit::Filter { reads, .. } | Lit::Assign { reads, .. } | Lit::Range { reads, .. } => {
                reads.clone()
            }
            Lit::Aggregate(aggregate) => aggregate.injected.clone(),
        }
    }

    /// Whether the literal can be evaluated with the `bound` slots. An equation `v = e` can
    /// be as soon as `e` can: it binds `v` (which makes an atom's constant a lookup key).
    fn ready(&self, bound: &[bool]) -> bool {
        if let Lit::Filter {
            equation: Some((_, _, reads)),
            ..
        } = self
            && reads.iter().all(|&var| bound[var])
        {
            return true;
        }
        self.reads().iter().all(|&var| bound[var])
    }

    /// The slots the literal binds.
    fn binds(&self) -> Vec<usize> {
        match self {
            Lit::Positive { columns, .. } => columns.clone(),
            Lit::Negative { .. } | Lit::Filter { .. } => Vec::new(),
            Lit::Assign { var, .. } | Lit::Range { var, .. } => vec![*var],
            Lit::Aggregate(aggregate) => vec![aggregate.result],
        }
    }

    /// The literal as written: an aggregate or range with the equation that names it.
    fn span(&self) -> Span {
        match self {
            Lit::Positive { span, .. }
            | Lit::Negative { span, .. }
            | Lit::Filter { span, .. }
            | Lit::Assign { span, .. } => *span,
            Lit::Range { shown, .. } => shown.0,
            Lit::Aggregate(aggregate) => aggregate.shown.0,
        }
    }

    fn hidden(&self) -> bool {
        matches!(
            self,
            Lit::Filter { hidden: true, .. } | Lit::Assign { hidden: true, .. }
        )
    }
}

fn variables_of(expr: &ir::Expr) -> Vec<VarId> {
    let mut vars = Vec::new();
    expr.visit_variables(&mut |var| vars.push(var));
    vars
}

fn within(inner: Span, outer: Span) -> bool {
    inner.file == outer.file && inner.start >= outer.start && inner.end <= outer.end
}

/// Whether a variable was introduced by the normalisation rather than written.
fn generated(name: &str) -> bool {
    name.starts_with('_') || name.ends_with('\'')
}

/// Source text on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value as written in a program.
fn literal(value: &Value) -> String {
    match value {
        Value::Symbol(text) => format!("{:?}", &**text),
        other => other.to_string(),
    }
}

struct Compiler<'p> {
    interner: &'p crate::value::Interner,
    slots: usize,
}

impl Compiler<'_> {
    fn expr(&self, expr: &ir::Expr) -> Compiled {
        compile(expr, &|var| var, self.interner).expect("a constant of a checked program encodes")
    }

    fn body(&mut self, body: &[ir::Literal]) -> Vec<Lit> {
        let atoms: Vec<Span> = body
            .iter()
            .filter_map(|literal| match literal {
                ir::Literal::Positive(atom) | ir::Literal::Negative(atom) => Some(atom.span),
                _ => None,
            })
            .collect();
        let in_atom = |span: Span| atoms.iter().any(|atom| within(span, *atom));
        // `x = result`: the equation that names an aggregate's or a range's result.
        let results: Vec<(VarId, Span)> = body
            .iter()
            .filter_map(|literal| match literal {
                ir::Literal::Aggregate(aggregate) => Some((aggregate.result, aggregate.span)),
                ir::Literal::Range { var, span, .. } => Some((*var, *span)),
                _ => None,
            })
            .collect();
        let naming = |literal: &ir::Literal| -> Option<(VarId, VarId, Span)> {
            let (a, b, span) = match literal {
                ir::Literal::Assign {
                    var,
                    expr: ir::Expr::Var(other, _),
                    span,
                } => (*var, *other, *span),
                ir::Literal::Filter(ir::Condition::Compare {
                    op: CompareOp::Eq,
                    lhs: ir::Expr::Var(a, _),
                    rhs: ir::Expr::Var(b, _),
                    span,
                    ..
                }) => (*a, *b, *span),
                _ => return None,
            };
            results.iter().find_map(|&(result, inner)| {
                let named = if b == result {
                    a
                } else if a == result {
                    b
                } else {
                    return None;
                };
                within(inner, span).then_some((result, named, span))
            })
        };
        let names: Vec<(VarId, VarId, Span)> = body.iter().filter_map(naming).collect();
        let shown = |result: VarId, span: Span| {
            names
                .iter()
                .find(|(r, ..)| *r == result)
                .map_or((span, result), |&(_, named, outer)| (outer, named))
        };
        body.iter()
            .map(|literal| match literal {
                ir::Literal::Positive(atom) => Lit::Positive {
                    relation: atom.relation,
                    columns: atom
                        .args
                        .iter()
                        .map(|arg| {
                            arg.unwrap_or_else(|| {
                                self.slots += 1;
                                self.slots - 1
                            })
                        })
                        .collect(),
                    span: atom.span,
                },
                ir::Literal::Negative(atom) => Lit::Negative {
                    relation: atom.relation,
                    columns: atom.args.clone(),
                    span: atom.span,
                },
                ir::Literal::Filter(condition) => {
                    let mut reads = Vec::new();
                    condition.visit_variables(&mut |var| reads.push(var));
                    let equation = match condition {
                        ir::Condition::Compare {
                            op: CompareOp::Eq,
                            ty,
                            lhs,
                            rhs,
                            ..
                        } if *ty != Type::Float => match (lhs, rhs) {
                            (ir::Expr::Var(var, _), other) | (other, ir::Expr::Var(var, _)) => {
                                Some((*var, self.expr(other), variables_of(other)))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    Lit::Filter {
                        condition: compile_condition(condition, &|var| var, self.interner)
                            .expect("a constant of a checked program encodes"),
                        equation,
                        reads,
                        span: condition.span(),
                        negated: matches!(condition, ir::Condition::Not(_)),
                        hidden: in_atom(condition.span()) || naming(literal).is_some(),
                    }
                }
                ir::Literal::Assign { var, expr, span } => Lit::Assign {
                    var: *var,
                    expr: self.expr(expr),
                    reads: variables_of(expr),
                    span: *span,
                    hidden: in_atom(*span) || naming(literal).is_some(),
                },
                ir::Literal::Range {
                    var,
                    ty,
                    from,
                    to,
                    step,
                    span,
                } => {
                    let mut reads = variables_of(from);
                    reads.extend(variables_of(to));
                    if let Some(step) = step {
                        reads.extend(variables_of(step));
                    }
                    Lit::Range {
                        var: *var,
                        ty: *ty,
                        from: self.expr(from),
                        to: self.expr(to),
                        step: step.as_ref().map(|step| self.expr(step)),
                        reads,
                        shown: shown(*var, *span),
                    }
                }
                ir::Literal::Aggregate(aggregate) => Lit::Aggregate(Box::new(AggregateCode {
                    result: aggregate.result,
                    kind: aggregate.kind,
                    ty: aggregate.ty,
                    target: aggregate
                        .target
                        .as_ref()
                        .map(|target| (self.expr(target), target.ty())),
                    injected: aggregate.injected.clone(),
                    locals: aggregate.locals.clone(),
                    body: self.body(&aggregate.body),
                    order: Vec::new(),
                    shown: shown(aggregate.result, aggregate.span),
                })),
            })
            .collect()
    }

    /// Chooses an evaluation order given the bound slots (which it updates): a literal that
    /// only reads bound variables as soon as it can (they filter), then the atom expected to
    /// match the fewest rows. Plans the bodies of aggregates too.
    fn plan(
        body: &mut [Lit],
        bound: &mut [bool],
        size: &mut dyn FnMut(RelationId) -> usize,
    ) -> Vec<usize> {
        let mut order = Vec::with_capacity(body.len());
        let mut done = vec![false; body.len()];
        while order.len() < body.len() {
            let ready = (0..body.len()).find(|&index| {
                !done[index]
                    && !matches!(body[index], Lit::Positive { .. })
                    && body[index].ready(bound)
            });
            let next = ready.unwrap_or_else(|| {
                let mut best: Option<(f64, usize)> = None;
                for (index, literal) in body.iter().enumerate() {
                    if let (
                        false,
                        Lit::Positive {
                            relation, columns, ..
                        },
                    ) = (done[index], literal)
                    {
                        let free = columns.iter().filter(|&&slot| !bound[slot]).count();
                        let rows = size(*relation).max(1) as f64;
                        let cost = rows.powf(free as f64 / columns.len().max(1) as f64);
                        if best.is_none_or(|(least, _)| cost < least) {
                            best = Some((cost, index));
                        }
                    }
                }
                // The body's own order is always valid; it is the fallback.
                best.map_or_else(
                    || {
                        (0..body.len())
                            .find(|&index| !done[index])
                            .expect("a literal is left")
                    },
                    |(_, index)| index,
                )
            });
            if let Lit::Aggregate(aggregate) = &mut body[next] {
                let mut inner = bound.to_vec();
                aggregate.order = Compiler::plan(&mut aggregate.body, &mut inner, size);
            }
            for slot in body[next].binds() {
                bound[slot] = true;
            }
            if let Lit::Filter {
                equation: Some((var, ..)),
                ..
            } = &body[next]
            {
                bound[*var] = true;
            }
            done[next] = true;
            order.push(next);
        }
        order
    }

    fn units(body: &[Lit]) -> Vec<Unit> {
        let mut attached = vec![false; body.len()];
        let mut units = Vec::new();
        for (index, literal) in body.iter().enumerate() {
            if matches!(literal, Lit::Filter { .. } | Lit::Assign { .. }) {
                continue;
            }
            let outer = literal.span();
            let mut parts = |range: std::ops::Range<usize>| -> Vec<usize> {
                range
                    .filter(|&other| {
                        let part = body[other].hidden()
                            && !attached[other]
                            && within(body[other].span(), outer);
                        attached[other] |= part;
                        part
                    })
                    .collect()
            };
            let (before, after) = match literal {
                Lit::Negative { .. } => (parts(0..index), Vec::new()),
                _ => (Vec::new(), parts(index + 1..body.len())),
            };
            attached[index] = true;
            units.push(Unit {
                main: index,
                before,
                after,
            });
        }
        for (index, taken) in attached.iter().enumerate() {
            if !taken {
                units.push(Unit {
                    main: index,
                    before: Vec::new(),
                    after: Vec::new(),
                });
            }
        }
        units.sort_by_key(|unit| unit.main);
        units
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation over a binding array

/// A binding of a rule's slots, with a trail to undo bindings when backtracking.
struct State {
    words: Vec<Word>,
    bound: Vec<bool>,
    trail: Vec<usize>,
}

impl State {
    fn new(slots: usize) -> State {
        State {
            words: vec![0; slots],
            bound: vec![false; slots],
            trail: Vec::new(),
        }
    }

    fn bind(&mut self, slot: usize, word: Word) {
        self.words[slot] = word;
        self.bound[slot] = true;
        self.trail.push(slot);
    }

    fn undo(&mut self, mark: usize) {
        for slot in self.trail.drain(mark..) {
            self.bound[slot] = false;
        }
    }

    fn pattern(&self, columns: impl Iterator<Item = Option<usize>>) -> Vec<Option<Word>> {
        columns
            .map(|slot| {
                slot.filter(|&slot| self.bound[slot])
                    .map(|slot| self.words[slot])
            })
            .collect()
    }
}

/// An aggregate's group: its distinct bindings, with the aggregated value of each.
struct Group {
    /// Sorted by value, then by the local variables.
    members: Vec<(Vec<Word>, Option<Word>)>,
    result: Option<Word>,
}

/// What one question needs: the engine, its compiled rules and the indexes.
struct Context<'a> {
    engine: &'a Engine,
    program: &'a ir::Program,
    evaluator: Evaluator,
    cache: &'a mut Cache,
    /// Relations whose cached table was checked against the engine in this question.
    checked: FxHashSet<RelationId>,
    rules: FxHashMap<RuleId, Rc<RuleCode>>,
    rules_of: Vec<Vec<RuleId>>,
    stratum: Vec<usize>,
}

impl<'a> Context<'a> {
    fn new(engine: &'a Engine, cache: &'a mut Cache) -> Context<'a> {
        let program = engine.program();
        let mut rules_of = vec![Vec::new(); program.relations.len()];
        for (id, rule) in program.rules.iter().enumerate() {
            rules_of[rule.head].push(id);
        }
        let mut stratum = vec![0; program.relations.len()];
        for (index, layer) in program.strata.iter().enumerate() {
            for &relation in &layer.relations {
                stratum[relation] = index;
            }
        }
        Context {
            engine,
            program,
            evaluator: Evaluator::new(engine.interner().clone()),
            cache,
            checked: FxHashSet::default(),
            rules: FxHashMap::default(),
            rules_of,
            stratum,
        }
    }

    // --- contents and indexes ---

    fn table(&mut self, relation: RelationId) -> Arc<Table> {
        if self.checked.insert(relation) {
            // A cache is valid for one logical time; the length is a cheap second check.
            let len = self.len(relation);
            if self
                .cache
                .tables
                .get(&relation)
                .is_some_and(|table| table.len != len)
            {
                self.cache.tables.remove(&relation);
                self.cache.indexes.retain(|(r, _), _| *r != relation);
            }
        }
        let engine = self.engine;
        let arity = self.program.relations[relation].arity();
        self.cache
            .tables
            .entry(relation)
            .or_insert_with(|| {
                let mut table = Table {
                    arity,
                    len: 0,
                    words: Vec::new(),
                };
                engine.scan_words(relation, &vec![None; arity], &mut |row| {
                    table.words.extend_from_slice(row);
                    table.len += 1;
                });
                // Sorted, so that answers do not depend on the order of the engine's sets.
                let mut order: Vec<usize> = (0..table.len).collect();
                order.sort_unstable_by(|&a, &b| table.row(a).cmp(table.row(b)));
                let words = order
                    .iter()
                    .flat_map(|&row| table.row(row))
                    .copied()
                    .collect();
                Arc::new(Table { words, ..table })
            })
            .clone()
    }

    fn len(&self, relation: RelationId) -> usize {
        self.engine
            .len(&self.program.relations[relation].name)
            .unwrap_or(0)
    }

    fn rows(&mut self, relation: RelationId, pattern: &[Option<Word>]) -> Rows {
        if pattern.iter().all(Option::is_some) {
            let row: Vec<Word> = pattern.iter().flatten().copied().collect();
            let there = self.engine.contains_words(relation, &row);
            return Rows::Exact(there.then_some(row));
        }
        let table = self.table(relation);
        let columns: Vec<usize> = (0..pattern.len())
            .filter(|&column| pattern[column].is_some())
            .collect();
        if columns.is_empty() {
            return Rows::All(table);
        }
        let index = self
            .cache
            .indexes
            .entry((relation, columns.clone()))
            .or_insert_with(|| {
                let mut buckets: FxHashMap<Vec<Word>, Vec<u32>> = FxHashMap::default();
                for row in 0..table.len {
                    let words = table.row(row);
                    let key = columns.iter().map(|&column| words[column]).collect();
                    buckets.entry(key).or_default().push(row as u32);
                }
                Arc::new(Index { buckets })
            })
            .clone();
        Rows::Bucket(table, index, pattern.iter().flatten().copied().collect())
    }

    // --- rules ---

    fn rule(&mut self, id: RuleId) -> Rc<RuleCode> {
        if let Some(code) = self.rules.get(&id) {
            return code.clone();
        }
        let rule = &self.program.rules[id];
        let mut compiler = Compiler {
            interner: self.engine.interner(),
            slots: rule.variables.len(),
        };
        let head: Vec<HeadArg> = rule
            .head_args
            .iter()
            .map(|arg| match arg {
                ir::Expr::Var(var, _) => HeadArg::Var(*var),
                ir::Expr::Const(value) => HeadArg::Const(
                    value::encode(value, compiler.interner)
                        .expect("a constant of a checked program encodes"),
                ),
                other => HeadArg::Expr {
                    expr: compiler.expr(other),
                    reads: variables_of(other),
                    inverse: Inverse::of(other, compiler.interner),
                },
            })
            .collect();
        let mut body = compiler.body(&rule.body);
        let slots = compiler.slots;
        let mut bound = vec![false; slots];
        for arg in &head {
            if let HeadArg::Var(var) = arg {
                bound[*var] = true;
            }
        }
        let mut sizes: FxHashMap<RelationId, usize> = FxHashMap::default();
        let order = Compiler::plan(&mut body, &mut bound, &mut |relation| {
            *sizes.entry(relation).or_insert_with(|| self.len(relation))
        });
        let units = Compiler::units(&body);
        let code = Rc::new(RuleCode {
            id,
            head,
            body,
            slots,
            bound,
            order,
            units,
        });
        self.rules.insert(id, code.clone());
        code
    }

    /// Calls `visit` with each binding of `rule` that derives `tuple`.
    fn instances(
        &mut self,
        rule: &RuleCode,
        tuple: &[Word],
        visit: &mut dyn FnMut(&mut Context<'a>, &State) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut state = State::new(rule.slots);
        let given: Vec<Option<Word>> = tuple.iter().copied().map(Some).collect();
        if self.bind_head(rule, &given, &mut state).is_err() {
            return ControlFlow::Continue(());
        }
        self.solve(
            &rule.body,
            &rule.order,
            &mut state,
            &mut |context, state| {
                if context.head_mismatch(rule, &given, state).is_none() {
                    visit(context, state)
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
    }

    /// Binds the head's variables to the columns the pattern gives (`None`: any value), or
    /// says why the head cannot give them.
    fn bind_head(
        &self,
        rule: &RuleCode,
        given: &[Option<Word>],
        state: &mut State,
    ) -> Result<(), String> {
        let head = &self.program.relations[self.program.rules[rule.id].head];
        let show = |word, column: usize| {
            let ty = head.columns[column].ty;
            literal(&value::decode(word, ty, self.engine.interner()))
        };
        for (column, (arg, given)) in rule.head.iter().zip(given).enumerate() {
            let Some(word) = *given else {
                continue;
            };
            let (var, word) = match arg {
                HeadArg::Var(var) => (*var, word),
                HeadArg::Expr {
                    inverse: Some((var, inverse)),
                    ..
                } => (*var, inverse.apply(word)),
                HeadArg::Const(constant) if *constant != word => {
                    return Err(format!(
                        "the head gives {} in column {}, not {}",
                        show(*constant, column),
                        column + 1,
                        show(word, column)
                    ));
                }
                HeadArg::Const(_) | HeadArg::Expr { .. } => continue,
            };
            if !state.bound[var] {
                state.bind(var, word);
            } else if state.words[var] != word {
                let name = &self.program.rules[rule.id].variables[var].name;
                return Err(format!(
                    "the head needs two values for `{name}`: {} and {}",
                    self.show(rule.id, var, state.words[var]),
                    self.show(rule.id, var, word)
                ));
            }
        }
        Ok(())
    }

    /// Why the head's expressions whose variables are bound do not give the columns the
    /// pattern gives; `None` when they do.
    fn head_mismatch(
        &self,
        rule: &RuleCode,
        given: &[Option<Word>],
        state: &State,
    ) -> Option<String> {
        let head = &self.program.relations[self.program.rules[rule.id].head];
        rule.head
            .iter()
            .zip(given)
            .enumerate()
            .find_map(|(column, (arg, given))| {
                let (HeadArg::Expr { expr, reads, .. }, Some(word)) = (arg, given) else {
                    return None;
                };
                if !reads.iter().all(|&var| state.bound[var]) {
                    return None;
                }
                let show = |word| {
                    let ty = head.columns[column].ty;
                    literal(&value::decode(word, ty, self.engine.interner()))
                };
                match self.evaluator.eval(expr, &state.words) {
                    Some(value) if value == *word => None,
                    Some(value) => Some(format!(
                        "gives {} in column {}, not {}",
                        show(value),
                        column + 1,
                        show(*word)
                    )),
                    None => Some(format!("has no value in column {}", column + 1)),
                }
            })
    }

    /// Enumerates the bindings of `body`, evaluated in `order`, that extend `state`.
    fn solve(
        &mut self,
        body: &[Lit],
        order: &[usize],
        state: &mut State,
        visit: &mut dyn FnMut(&mut Context<'a>, &mut State) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let Some((&first, rest)) = order.split_first() else {
            return visit(self, state);
        };
        let mark = state.trail.len();
        match &body[first] {
            Lit::Positive {
                relation, columns, ..
            } => {
                let pattern = state.pattern(columns.iter().map(|&slot| Some(slot)));
                let rows = self.rows(*relation, &pattern);
                for position in 0..rows.len() {
                    let row = rows.get(position);
                    for (&slot, &word) in columns.iter().zip(row) {
                        if !state.bound[slot] {
                            state.bind(slot, word);
                        }
                    }
                    let flow = self.solve(body, rest, state, visit);
                    state.undo(mark);
                    flow?;
                }
                ControlFlow::Continue(())
            }
            Lit::Negative {
                relation, columns, ..
            } => {
                let pattern = state.pattern(columns.iter().copied());
                if self.rows(*relation, &pattern).len() == 0 {
                    self.solve(body, rest, state, visit)
                } else {
                    ControlFlow::Continue(())
                }
            }
            Lit::Filter {
                equation: Some((var, expr, _)),
                ..
            } if !state.bound[*var] => match self.evaluator.eval(expr, &state.words) {
                Some(word) => self.extend(*var, word, body, rest, state, visit),
                None => ControlFlow::Continue(()),
            },
            Lit::Filter { condition, .. } => {
                if self.evaluator.holds(condition, &state.words) {
                    self.solve(body, rest, state, visit)
                } else {
                    ControlFlow::Continue(())
                }
            }
            Lit::Assign { var, expr, .. } => match self.evaluator.eval(expr, &state.words) {
                Some(word) => self.extend(*var, word, body, rest, state, visit),
                None => ControlFlow::Continue(()),
            },
            Lit::Range { var, .. } => {
                for word in self.range(&body[first], state) {
                    self.extend(*var, word, body, rest, state, visit)?;
                }
                ControlFlow::Continue(())
            }
            Lit::Aggregate(aggregate) => {
                let result = self.group(aggregate, state, false).result;
                match result {
                    Some(word) if state.bound[aggregate.result] => {
                        let given = state.words[aggregate.result];
                        if same_result(aggregate, given, word) {
                            self.solve(body, rest, state, visit)
                        } else {
                            ControlFlow::Continue(())
                        }
                    }
                    Some(word) => self.extend(aggregate.result, word, body, rest, state, visit),
                    None => ControlFlow::Continue(()),
                }
            }
        }
    }

    /// Binds `slot` to `word` (or checks it, if it is bound) and goes on with `rest`.
    fn extend(
        &mut self,
        slot: usize,
        word: Word,
        body: &[Lit],
        rest: &[usize],
        state: &mut State,
        visit: &mut dyn FnMut(&mut Context<'a>, &mut State) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if state.bound[slot] {
            if state.words[slot] == word {
                return self.solve(body, rest, state, visit);
            }
            return ControlFlow::Continue(());
        }
        let mark = state.trail.len();
        state.bind(slot, word);
        let flow = self.solve(body, rest, state, visit);
        state.undo(mark);
        flow
    }

    /// The values of a `range` literal, as the dataflow computes them.
    fn range(&self, literal: &Lit, state: &State) -> Vec<Word> {
        let Lit::Range {
            ty, from, to, step, ..
        } = literal
        else {
            unreachable!("called on a range literal");
        };
        let (Some(from), Some(to)) = (
            self.evaluator.eval(from, &state.words),
            self.evaluator.eval(to, &state.words),
        ) else {
            return Vec::new();
        };
        let step = match step {
            Some(step) => match self.evaluator.eval(step, &state.words) {
                Some(step) => step,
                None => return Vec::new(),
            },
            None => {
                let down =
                    self.evaluator.compare(*ty, from, to) == Some(std::cmp::Ordering::Greater);
                match (*ty, down) {
                    (Type::Float, false) => 1.0f64.to_bits(),
                    (Type::Float, true) => (-1.0f64).to_bits(),
                    (_, false) => 1,
                    (_, true) => (-1i64) as Word,
                }
            }
        };
        range_values(*ty, from, to, step)
    }

    /// Computes an aggregate for the injected variables bound in `state`. With `members`, the
    /// group keeps every binding's slots (to show its rows); without, only what the result
    /// needs.
    fn group(&mut self, aggregate: &AggregateCode, state: &mut State, members: bool) -> Group {
        let mut seen: FxHashSet<Vec<Word>> = FxHashSet::default();
        let mut found: Vec<(Vec<Word>, Option<Word>, Vec<Word>)> = Vec::new();
        let _ = self.solve(
            &aggregate.body,
            &aggregate.order,
            state,
            &mut |context, state| {
                let locals: Vec<Word> = aggregate.locals.iter().map(|&v| state.words[v]).collect();
                if !seen.insert(locals.clone()) {
                    return ControlFlow::Continue(());
                }
                let value = match &aggregate.target {
                    Some((target, _)) => match context.evaluator.eval(target, &state.words) {
                        Some(word) => Some(word),
                        // A target without a value drops the binding, as in the dataflow.
                        None => return ControlFlow::Continue(()),
                    },
                    None => None,
                };
                let slots = if members {
                    state.words.clone()
                } else {
                    Vec::new()
                };
                found.push((locals, value, slots));
                ControlFlow::Continue(())
            },
        );
        // The dataflow reduces a group's values in this order; floating-point sums depend on it.
        found.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let values = found.iter().map(|(_, value, _)| value.unwrap_or(0));
        let target_ty = aggregate
            .target
            .as_ref()
            .map_or(Type::Number, |(_, ty)| *ty);
        let result = match aggregate.kind {
            AggregateKind::Count => Some(found.len() as Word),
            AggregateKind::Sum => Some(match aggregate.ty {
                Type::Float => values.map(f64::from_bits).sum::<f64>().to_bits(),
                _ => values.fold(0, Word::wrapping_add),
            }),
            AggregateKind::Mean => {
                let sum: f64 = values.map(|word| as_float(target_ty, word)).sum();
                (!found.is_empty()).then(|| (sum / found.len() as f64).to_bits())
            }
            AggregateKind::Min | AggregateKind::Max => values.reduce(|best, word| {
                let wanted = if aggregate.kind == AggregateKind::Min {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                };
                if self.evaluator.compare(aggregate.ty, word, best) == Some(wanted) {
                    word
                } else {
                    best
                }
            }),
        };
        Group {
            members: found
                .into_iter()
                .map(|(_, value, slots)| (slots, value))
                .collect(),
            result,
        }
    }
}

fn as_float(ty: Type, word: Word) -> f64 {
    match ty {
        Type::Number => word as i64 as f64,
        Type::Unsigned => word as f64,
        _ => f64::from_bits(word),
    }
}

/// Whether an aggregate's computed result is the one a row holds. Floating-point sums and
/// means may differ in the last bits if the additions ran in another order.
fn same_result(aggregate: &AggregateCode, given: Word, computed: Word) -> bool {
    if given == computed {
        return true;
    }
    let float = aggregate.ty == Type::Float
        && matches!(aggregate.kind, AggregateKind::Sum | AggregateKind::Mean);
    let (a, b) = (f64::from_bits(given), f64::from_bits(computed));
    float && (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

// ---------------------------------------------------------------------------------------------
// Why: proving rows and building the derivation

/// How a row of the current search is proved.
enum Proof {
    /// By a node of the derivation completed earlier.
    Known,
    /// An input fact or a fact of the program.
    Leaf(How),
    /// By the instance of that index.
    Instance(usize),
}

struct Goal {
    relation: RelationId,
    words: Vec<Word>,
    proof: Option<Proof>,
    queued: bool,
    /// Instances that wait for this row to be proved.
    waiters: Vec<usize>,
}

struct Instance {
    head: usize,
    rule: Rc<RuleCode>,
    words: Vec<Word>,
    /// Premises of the head's stratum not proved yet.
    missing: usize,
}

/// The rows of one stratum searched for one goal.
#[derive(Default)]
struct Search {
    ids: FxHashMap<(RelationId, Vec<Word>), usize>,
    goals: Vec<Goal>,
    instances: Vec<Instance>,
    queue: VecDeque<usize>,
}

impl Search {
    fn proved(&self, goal: usize) -> bool {
        self.goals[goal].proof.is_some()
    }

    /// Marks `goal` proved and wakes the instances that waited for it, transitively.
    fn prove(&mut self, goal: usize, proof: Proof) {
        self.goals[goal].proof = Some(proof);
        let mut proved = vec![goal];
        while let Some(goal) = proved.pop() {
            for instance in std::mem::take(&mut self.goals[goal].waiters) {
                let waiting = &mut self.instances[instance];
                waiting.missing -= 1;
                let (head, missing) = (waiting.head, waiting.missing);
                if missing == 0 && !self.proved(head) {
                    self.goals[head].proof = Some(Proof::Instance(instance));
                    proved.push(head);
                }
            }
        }
    }
}

/// A node under construction: `how` is set once it is explained.
struct Draft {
    relation: RelationId,
    words: Vec<Word>,
    how: Option<How>,
}

/// The nodes of a derivation under construction, one per row.
#[derive(Default)]
struct Drafts {
    nodes: Vec<Draft>,
    node_of: FxHashMap<(RelationId, Vec<Word>), usize>,
}

impl Drafts {
    fn node(&mut self, relation: RelationId, words: Vec<Word>) -> usize {
        let next = self.nodes.len();
        let nodes = &mut self.nodes;
        *self
            .node_of
            .entry((relation, words))
            .or_insert_with_key(|(relation, words)| {
                nodes.push(Draft {
                    relation: *relation,
                    words: words.clone(),
                    how: None,
                });
                next
            })
    }

    /// The search's id of a row, proved already if a completed node explains it.
    fn goal(&self, search: &mut Search, relation: RelationId, words: Vec<Word>) -> usize {
        let key = (relation, words);
        if let Some(&id) = search.ids.get(&key) {
            return id;
        }
        let known = self
            .node_of
            .get(&key)
            .is_some_and(|&node| self.nodes[node].how.is_some());
        let id = search.goals.len();
        search.goals.push(Goal {
            relation,
            words: key.1.clone(),
            proof: known.then_some(Proof::Known),
            queued: false,
            waiters: Vec::new(),
        });
        search.ids.insert(key, id);
        id
    }
}

struct Builder<'c, 'a> {
    context: &'c mut Context<'a>,
    drafts: Drafts,
    /// Nodes of rows of other strata, to explain.
    pending: Vec<usize>,
}

impl<'c, 'a> Builder<'c, 'a> {
    fn new(context: &'c mut Context<'a>) -> Builder<'c, 'a> {
        Builder {
            context,
            drafts: Drafts::default(),
            pending: Vec::new(),
        }
    }

    fn explain(mut self, relation: RelationId, words: Vec<Word>) -> Derivation {
        let root = self.drafts.node(relation, words);
        self.pending.push(root);
        while let Some(node) = self.pending.pop() {
            if self.drafts.nodes[node].how.is_none() {
                self.prove(node);
            }
        }
        let context = &*self.context;
        let nodes = self
            .drafts
            .nodes
            .into_iter()
            .map(|draft| Node {
                relation: context.program.relations[draft.relation].name.clone(),
                tuple: context.decode_row(draft.relation, &draft.words),
                how: draft.how.expect("every node is explained"),
            })
            .collect();
        Derivation { nodes }
    }

    /// Proves the row of `node`, with every row of its stratum that the proof needs, and
    /// explains them.
    fn prove(&mut self, node: usize) {
        let draft = &self.drafts.nodes[node];
        let (relation, words) = (draft.relation, draft.words.clone());
        let stratum = self.context.stratum[relation];
        let mut search = Search::default();
        let goal = self.drafts.goal(&mut search, relation, words);
        search.queue.push_back(goal);
        while let Some(next) = search.queue.pop_front() {
            if search.proved(goal) {
                break;
            }
            if !search.proved(next) {
                self.expand(&mut search, next, stratum);
            }
        }
        if !search.proved(goal) {
            let reason = "no rule instance reproduces this row".to_string();
            self.drafts.nodes[node].how = Some(How::Unexplained { reason });
            return;
        }
        self.record(&mut search, goal);
    }

    /// Tries every way of deriving a row: a fact, an input, then each rule's instances. An
    /// instance whose premises of the same stratum are proved proves the row; otherwise it
    /// waits for them, and they are searched in turn.
    fn expand(&mut self, search: &mut Search, goal: usize, stratum: usize) {
        let (relation, words) = (
            search.goals[goal].relation,
            search.goals[goal].words.clone(),
        );
        if let Some(how) = self.context.leaf(relation, &words) {
            search.prove(goal, Proof::Leaf(how));
            return;
        }
        for rule in self.context.rules_of[relation].clone() {
            let code = self.context.rule(rule);
            if code.body.is_empty() {
                continue;
            }
            let mut proved_by = None;
            let drafts = &self.drafts;
            let _ = self
                .context
                .instances(&code, &words, &mut |context, state| {
                    let instance = search.instances.len();
                    let mut missing = 0;
                    for literal in &code.body {
                        let Lit::Positive {
                            relation, columns, ..
                        } = literal
                        else {
                            continue;
                        };
                        if context.stratum[*relation] != stratum {
                            continue;
                        }
                        let row: Vec<Word> =
                            columns.iter().map(|&slot| state.words[slot]).collect();
                        let premise = drafts.goal(search, *relation, row);
                        if !search.proved(premise) {
                            missing += 1;
                            search.goals[premise].waiters.push(instance);
                            if !search.goals[premise].queued {
                                search.goals[premise].queued = true;
                                search.queue.push_back(premise);
                            }
                        }
                    }
                    search.instances.push(Instance {
                        head: goal,
                        rule: code.clone(),
                        words: state.words.clone(),
                        missing,
                    });
                    if missing == 0 {
                        proved_by = Some(instance);
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            if let Some(instance) = proved_by {
                search.prove(goal, Proof::Instance(instance));
                return;
            }
        }
    }

    /// Turns a proof into nodes: the proved rows of the stratum become nodes explained here;
    /// the rows of other strata become pending nodes.
    fn record(&mut self, search: &mut Search, goal: usize) {
        let mut stack = vec![goal];
        while let Some(next) = stack.pop() {
            let entry = &mut search.goals[next];
            let node = self.drafts.node(entry.relation, entry.words.clone());
            if self.drafts.nodes[node].how.is_some() {
                continue;
            }
            let how = match entry.proof.take() {
                Some(Proof::Leaf(how)) => how,
                Some(Proof::Instance(instance)) => {
                    let instance = &search.instances[instance];
                    let (drafts, pending) = (&mut self.drafts, &mut self.pending);
                    self.context.rule_how(
                        &instance.rule,
                        &instance.words,
                        &mut |relation, words| {
                            let child = drafts.node(relation, words);
                            if drafts.nodes[child].how.is_none() {
                                // Only the rows of the goal's stratum are searched.
                                let key = (relation, drafts.nodes[child].words.clone());
                                match search.ids.get(&key) {
                                    Some(&id) => stack.push(id),
                                    None => pending.push(child),
                                }
                            }
                            child
                        },
                    )
                }
                Some(Proof::Known) | None => {
                    unreachable!("a proved row without a node is proved by a leaf or an instance")
                }
            };
            self.drafts.nodes[node].how = Some(how);
        }
    }
}

impl<'a> Context<'a> {
    // --- presenting rows, values and literals ---

    fn decode_row(&self, relation: RelationId, words: &[Word]) -> Vec<Value> {
        let types: Vec<Type> = self.program.relations[relation].types().collect();
        self.engine.decode(words, &types)
    }

    fn row(&self, relation: RelationId, words: &[Word]) -> Row {
        Row {
            relation: self.program.relations[relation].name.clone(),
            tuple: self.decode_row(relation, words),
        }
    }

    fn variable(&self, rule: RuleId, var: VarId, word: Word) -> VariableValue {
        let variable = &self.program.rules[rule].variables[var];
        VariableValue {
            var,
            name: variable.name.clone(),
            value: value::decode(word, variable.ty, self.engine.interner()),
        }
    }

    /// The values of `vars` (each once), as bound in `state`.
    fn values(&self, rule: RuleId, vars: &[VarId], state: &State) -> Vec<VariableValue> {
        let mut seen = FxHashSet::default();
        vars.iter()
            .filter(|&&var| state.bound[var] && seen.insert(var))
            .map(|&var| self.variable(rule, var, state.words[var]))
            .collect()
    }

    fn text(&self, span: Span) -> String {
        one_line(self.program.sources.text(span))
    }

    /// A literal as written; a negated one with its `!`. An atom that the program does not
    /// write (the closure rules of an `eqrel`) is written from its variables.
    fn literal_text(&self, rule: RuleId, literal: &Lit) -> String {
        let text = self.text(literal.span());
        let atom = match literal {
            Lit::Positive {
                relation, columns, ..
            } => Some((*relation, columns.iter().map(|&slot| Some(slot)).collect())),
            Lit::Negative {
                relation, columns, ..
            } => Some((*relation, columns.clone())),
            _ => None,
        };
        let text = match atom {
            Some((relation, columns)) if !text.contains('(') => {
                let variables = &self.program.rules[rule].variables;
                let names: Vec<&str> = columns
                    .iter()
                    .map(|slot: &Option<usize>| {
                        slot.and_then(|slot| variables.get(slot))
                            .map_or("_", |variable| variable.name.as_str())
                    })
                    .collect();
                let name = &self.program.relations[relation].name;
                format!("{name}({})", names.join(", "))
            }
            _ => text,
        };
        let negated = matches!(
            literal,
            Lit::Negative { .. } | Lit::Filter { negated: true, .. }
        );
        if negated && !text.starts_with('!') {
            format!("!{text}")
        } else {
            text
        }
    }

    /// A negated atom with its bound values: `!blocked("pve", _)`.
    fn negated_atom(
        &self,
        relation: RelationId,
        columns: &[Option<VarId>],
        state: &State,
    ) -> String {
        let fields: Vec<Option<Value>> = state
            .pattern(columns.iter().copied())
            .into_iter()
            .zip(self.program.relations[relation].types())
            .map(|(word, ty)| word.map(|word| value::decode(word, ty, self.engine.interner())))
            .collect();
        format!(
            "!{}",
            format_fields(&self.program.relations[relation].name, &fields)
        )
    }

    fn location(&self, rule: RuleId) -> (String, String) {
        let rule = &self.program.rules[rule];
        (
            self.program.sources.location(rule.span),
            one_line(&rule.text),
        )
    }

    // --- why ---

    /// How a row holds without a rule: a fact of the program, or an inserted input.
    fn leaf(&mut self, relation: RelationId, words: &[Word]) -> Option<How> {
        for rule in self.rules_of[relation].clone() {
            let code = self.rule(rule);
            if code.body.is_empty()
                && self
                    .instances(&code, words, &mut |_, _| ControlFlow::Break(()))
                    .is_break()
            {
                let (location, clause) = self.location(rule);
                return Some(How::Fact {
                    rule,
                    location,
                    clause,
                });
            }
        }
        if !self.program.relations[relation].writable {
            return None;
        }
        if let Some(origin) = self.engine.origin(relation, words) {
            return Some(How::Input {
                origin: Some(InputOrigin {
                    time: origin.time,
                    now: origin.now,
                    event: origin.event.as_deref().map(str::to_string),
                }),
            });
        }
        self.engine
            .input_contains(relation, words)
            .then_some(How::Input { origin: None })
    }

    /// The explanation of a rule instance; `node` gives the node of each row it matched.
    fn rule_how(
        &mut self,
        rule: &RuleCode,
        words: &[Word],
        node: &mut dyn FnMut(RelationId, Vec<Word>) -> usize,
    ) -> How {
        let mut state = State {
            words: words.to_vec(),
            bound: rule.bound.clone(),
            trail: Vec::new(),
        };
        let id = rule.id;
        let mut premises = Vec::new();
        for literal in &rule.body {
            if literal.hidden() {
                continue;
            }
            let text = self.literal_text(id, literal);
            premises.push(match literal {
                Lit::Positive {
                    relation, columns, ..
                } => Premise::Row {
                    literal: text,
                    node: node(*relation, columns.iter().map(|&slot| words[slot]).collect()),
                },
                Lit::Negative {
                    relation, columns, ..
                } => Premise::Negation {
                    literal: text,
                    atom: self.negated_atom(*relation, columns, &state),
                },
                Lit::Filter { reads, .. } => Premise::Condition {
                    literal: text,
                    values: self.values(id, reads, &state),
                },
                Lit::Assign { var, reads, .. } => {
                    let mut vars = reads.clone();
                    vars.push(*var);
                    Premise::Condition {
                        literal: text,
                        values: self.values(id, &vars, &state),
                    }
                }
                Lit::Range { reads, shown, .. } => {
                    let mut vars = vec![shown.1];
                    vars.extend(reads);
                    Premise::Condition {
                        literal: text,
                        values: self.values(id, &vars, &state),
                    }
                }
                Lit::Aggregate(aggregate) => {
                    Premise::Aggregate(self.aggregate_premise(aggregate, text, &mut state))
                }
            });
        }
        let (location, clause) = self.location(id);
        let variables = self.program.rules[id].variables.len();
        let all: Vec<VarId> = (0..variables).collect();
        How::Rule {
            rule: id,
            location,
            clause,
            bindings: self.values(id, &all, &state),
            premises,
        }
    }

    fn aggregate_premise(
        &mut self,
        aggregate: &AggregateCode,
        literal: String,
        state: &mut State,
    ) -> AggregatePremise {
        let result = state.words[aggregate.result];
        let group = self.group(aggregate, state, true);
        let witnesses_only = matches!(aggregate.kind, AggregateKind::Min | AggregateKind::Max);
        let target_ty = aggregate.target.as_ref().map(|(_, ty)| *ty);
        let mut members = group
            .members
            .iter()
            .filter(|(_, value)| !witnesses_only || *value == Some(result))
            .map(|(slots, value)| GroupMember {
                rows: aggregate
                    .body
                    .iter()
                    .filter_map(|literal| match literal {
                        Lit::Positive {
                            relation, columns, ..
                        } => {
                            let row: Vec<Word> = columns.iter().map(|&slot| slots[slot]).collect();
                            Some(self.row(*relation, &row))
                        }
                        _ => None,
                    })
                    .collect(),
                value: value
                    .zip(target_ty)
                    .map(|(word, ty)| value::decode(word, ty, self.engine.interner())),
            })
            .collect::<Vec<GroupMember>>();
        // Shown in row order; the group was reduced in the dataflow's order.
        members.sort_by(|a, b| {
            let key = |member: &GroupMember| {
                member
                    .rows
                    .iter()
                    .map(|row| (row.relation.clone(), row.tuple.clone()))
                    .collect::<Vec<_>>()
            };
            key(a).cmp(&key(b))
        });
        AggregatePremise {
            literal,
            aggregate: aggregate.kind.name().to_string(),
            result: value::decode(result, aggregate.ty, self.engine.interner()),
            size: group.members.len(),
            members,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Why not: the literal that stops each rule

/// The furthest a `why not` search got in one rule.
#[derive(Default)]
struct Probe {
    held: usize,
    candidates: Vec<Candidate>,
    steps: usize,
    truncated: bool,
}

impl Probe {
    fn fail(&mut self, candidate: Candidate) {
        if candidate.held > self.held || self.candidates.is_empty() {
            self.held = candidate.held;
            self.candidates.clear();
        }
        if candidate.held == self.held
            && self.candidates.len() < CANDIDATES
            && !self.candidates.contains(&candidate)
        {
            self.candidates.push(candidate);
        }
    }
}

impl<'a> Context<'a> {
    fn why_not(&mut self, relation: RelationId, pattern: Vec<Option<Word>>) -> WhyNot {
        let info = &self.program.relations[relation];
        let types: Vec<Type> = info.types().collect();
        let interner = self.engine.interner();
        let fields = pattern
            .iter()
            .zip(&types)
            .map(|(word, ty)| word.map(|word| value::decode(word, *ty, interner)))
            .collect();
        let rows = self.rows(relation, &pattern);
        if rows.len() > 0 {
            let mut shown: Vec<Vec<Value>> = Vec::new();
            for position in 0..rows.len() {
                let tuple = self.decode_row(relation, rows.get(position));
                let at = shown.partition_point(|other| *other < tuple);
                if at < SHOWN_ROWS {
                    shown.insert(at, tuple);
                    shown.truncate(SHOWN_ROWS);
                }
            }
            return WhyNot {
                relation: info.name.clone(),
                pattern: fields,
                verdict: Verdict::Holds {
                    count: rows.len(),
                    rows: shown,
                },
            };
        }
        let input = info.writable.then(|| {
            let key: Option<Vec<Word>> = info
                .feed
                .key
                .as_ref()
                .and_then(|key| key.iter().map(|&column| pattern[column]).collect());
            InputAnswer {
                key_holder: key
                    .and_then(|key| self.engine.key_holder(relation, &key))
                    .map(|holder| self.decode_row(relation, &holder)),
            }
        });
        let rules = self.rules_of[relation]
            .clone()
            .into_iter()
            .map(|rule| self.rule_answer(rule, &pattern))
            .collect();
        WhyNot {
            relation: info.name.clone(),
            pattern: fields,
            verdict: Verdict::Missing { input, rules },
        }
    }

    fn rule_answer(&mut self, rule: RuleId, pattern: &[Option<Word>]) -> RuleAnswer {
        let code = self.rule(rule);
        let (location, clause) = self.location(rule);
        let outcome = self.rule_outcome(&code, pattern);
        RuleAnswer {
            rule,
            fact: code.body.is_empty(),
            location,
            clause,
            outcome,
        }
    }

    fn rule_outcome(&mut self, code: &RuleCode, pattern: &[Option<Word>]) -> Outcome {
        let mut state = State::new(code.slots);
        if let Err(reason) = self.bind_head(code, pattern, &mut state) {
            return Outcome::Head { reason };
        }
        let mut probe = Probe::default();
        self.probe(code, 0, &mut state, pattern, &mut probe);
        Outcome::Body {
            candidates: probe.candidates,
            truncated: probe.truncated,
        }
    }

    /// The head of a rule as written: its clause up to `:-`.
    fn head_text(&self, rule: RuleId) -> String {
        let text = one_line(&self.program.rules[rule].text);
        match text.split_once(":-") {
            Some((head, _)) => head.trim().to_string(),
            None => text.trim_end_matches('.').trim().to_string(),
        }
    }

    /// The named variables bound in `state`.
    fn named(&self, rule: RuleId, state: &State) -> Vec<VariableValue> {
        let variables = &self.program.rules[rule].variables;
        (0..variables.len())
            .filter(|&var| state.bound[var] && !generated(&variables[var].name))
            .map(|var| self.variable(rule, var, state.words[var]))
            .collect()
    }

    /// `x = 1, y = 2`
    fn listing(&self, rule: RuleId, vars: &[VarId], state: &State) -> String {
        self.values(rule, vars, state)
            .iter()
            .map(|value| format!("{} = {}", value.name, literal(&value.value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show(&self, rule: RuleId, var: VarId, word: Word) -> String {
        literal(&self.variable(rule, var, word).value)
    }

    /// Evaluates one single-valued literal (a condition or an assignment): binds or checks,
    /// or says why it fails.
    fn single(&mut self, rule: RuleId, literal: &Lit, state: &mut State) -> Result<(), String> {
        match literal {
            Lit::Filter {
                condition, reads, ..
            } => {
                if self.evaluator.holds(condition, &state.words) {
                    Ok(())
                } else if reads.is_empty() {
                    Err("is false".to_string())
                } else {
                    Err(format!("is false for {}", self.listing(rule, reads, state)))
                }
            }
            Lit::Assign {
                var, expr, reads, ..
            } => match self.evaluator.eval(expr, &state.words) {
                None => Err(format!(
                    "has no value for {}",
                    self.listing(rule, reads, state)
                )),
                Some(word) if state.bound[*var] && state.words[*var] != word => {
                    let mut vars = reads.clone();
                    vars.push(*var);
                    Err(format!("is false for {}", self.listing(rule, &vars, state)))
                }
                Some(_) if state.bound[*var] => Ok(()),
                Some(word) => {
                    state.bind(*var, word);
                    Ok(())
                }
            },
            _ => unreachable!("only conditions and assignments are parts of a literal"),
        }
    }

    /// Evaluates `parts` in order; the first failure ends it.
    fn parts(
        &mut self,
        rule: &RuleCode,
        parts: &[usize],
        skip: &[usize],
        state: &mut State,
    ) -> Result<(), String> {
        for &part in parts {
            if !skip.contains(&part) {
                self.single(rule.id, &rule.body[part], state)?;
            }
        }
        Ok(())
    }

    /// Evaluates the literals as written from `unit` on, left to right, and records where
    /// each binding stops.
    fn probe(
        &mut self,
        code: &RuleCode,
        unit: usize,
        state: &mut State,
        given: &[Option<Word>],
        probe: &mut Probe,
    ) {
        if probe.steps >= STEPS {
            probe.truncated = true;
            return;
        }
        probe.steps += 1;
        let mark = state.trail.len();
        let fail =
            |context: &Context<'a>, state: &State, literal: String, reason: String| Candidate {
                held: unit,
                literal,
                reason,
                values: context.named(code.id, state),
            };
        // The head's expressions are checked as soon as their variables are bound.
        if let Some(reason) = self.head_mismatch(code, given, state) {
            return probe.fail(Candidate {
                held: unit,
                literal: self.head_text(code.id),
                reason,
                values: self.named(code.id, state),
            });
        }
        let Some(current) = code.units.get(unit) else {
            return self.derives(code, state, probe);
        };
        let literal = &code.body[current.main];
        let text = self.literal_text(code.id, literal);
        if let Err(reason) = self.parts(code, &current.before, &[], state) {
            state.undo(mark);
            return probe.fail(fail(self, state, text, reason));
        }
        match literal {
            Lit::Positive {
                relation, columns, ..
            } => {
                // Constants of the atom go into the lookup key.
                let mut folded = Vec::new();
                for &part in &current.after {
                    if let Lit::Filter {
                        equation: Some((var, expr, reads)),
                        ..
                    } = &code.body[part]
                        && columns.contains(var)
                        && !state.bound[*var]
                        && reads.iter().all(|&read| state.bound[read])
                        && let Some(word) = self.evaluator.eval(expr, &state.words)
                    {
                        state.bind(*var, word);
                        folded.push(part);
                    }
                }
                let pattern = state.pattern(columns.iter().map(|&slot| Some(slot)));
                let rows = self.rows(*relation, &pattern);
                let mut passed = 0;
                for position in 0..rows.len() {
                    let row_mark = state.trail.len();
                    for (&slot, &word) in columns.iter().zip(rows.get(position)) {
                        if !state.bound[slot] {
                            state.bind(slot, word);
                        }
                    }
                    if self.parts(code, &current.after, &folded, state).is_ok() {
                        passed += 1;
                        self.probe(code, unit + 1, state, given, probe);
                    }
                    state.undo(row_mark);
                    if probe.truncated {
                        break;
                    }
                }
                state.undo(mark);
                if passed == 0 {
                    let reason = self.no_row(*relation, &pattern, rows.len());
                    probe.fail(fail(self, state, text, reason));
                }
            }
            Lit::Negative {
                relation, columns, ..
            } => {
                let pattern = state.pattern(columns.iter().copied());
                let rows = self.rows(*relation, &pattern);
                if rows.len() == 0 {
                    self.probe(code, unit + 1, state, given, probe);
                    state.undo(mark);
                } else {
                    let there = format_tuple(
                        &self.program.relations[*relation].name,
                        &self.decode_row(*relation, rows.get(0)),
                    );
                    let reason = if rows.len() == 1 {
                        format!("does not hold: {there} is there")
                    } else {
                        format!(
                            "does not hold: {} rows match it, such as {there}",
                            rows.len()
                        )
                    };
                    state.undo(mark);
                    probe.fail(fail(self, state, text, reason));
                }
            }
            Lit::Filter { .. } | Lit::Assign { .. } => {
                match self.single(code.id, literal, state) {
                    Ok(()) => match self.parts(code, &current.after, &[], state) {
                        Ok(()) => self.probe(code, unit + 1, state, given, probe),
                        Err(reason) => {
                            state.undo(mark);
                            probe.fail(fail(self, state, text, reason));
                        }
                    },
                    Err(reason) => {
                        state.undo(mark);
                        probe.fail(fail(self, state, text, reason));
                    }
                }
                state.undo(mark);
            }
            Lit::Range { var, shown, .. } => {
                let values = self.range(literal, state);
                let named = shown.1;
                let wanted = state.bound[named].then(|| state.words[named]);
                let reason = if values.is_empty() {
                    Some("gives no value".to_string())
                } else if let Some(word) = wanted.filter(|word| !values.contains(word)) {
                    let name = &self.program.rules[code.id].variables[named].name;
                    Some(format!(
                        "does not give {name} = {}",
                        self.show(code.id, named, word)
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return probe.fail(fail(self, state, text, reason));
                }
                for word in values {
                    let value_mark = state.trail.len();
                    if !state.bound[*var] {
                        state.bind(*var, word);
                    }
                    if state.words[*var] == word
                        && self.parts(code, &current.after, &[], state).is_ok()
                    {
                        self.probe(code, unit + 1, state, given, probe);
                    }
                    state.undo(value_mark);
                    if probe.truncated {
                        break;
                    }
                }
            }
            Lit::Aggregate(aggregate) => {
                let result = self.group(aggregate, state, false).result;
                let named = aggregate.shown.1;
                let Some(word) = result else {
                    let reason = "has no value: its group is empty".to_string();
                    return probe.fail(fail(self, state, text, reason));
                };
                for slot in [aggregate.result, named] {
                    if state.bound[slot] && !same_result(aggregate, state.words[slot], word) {
                        let reason = format!(
                            "is {}, not {}",
                            self.show(code.id, aggregate.result, word),
                            self.show(code.id, aggregate.result, state.words[slot])
                        );
                        return probe.fail(fail(self, state, text, reason));
                    }
                }
                if !state.bound[aggregate.result] {
                    state.bind(aggregate.result, word);
                }
                match self.parts(code, &current.after, &[], state) {
                    Ok(()) => self.probe(code, unit + 1, state, given, probe),
                    Err(reason) => {
                        state.undo(mark);
                        probe.fail(fail(self, state, text, reason));
                    }
                }
                state.undo(mark);
            }
        }
    }

    /// Why no row of `relation` matches `pattern`, where `rows` rows matched it before the
    /// atom's own conditions.
    fn no_row(&self, relation: RelationId, pattern: &[Option<Word>], rows: usize) -> String {
        let info = &self.program.relations[relation];
        let fields: Vec<Option<Value>> = pattern
            .iter()
            .zip(info.types())
            .map(|(word, ty)| word.map(|word| value::decode(word, ty, self.engine.interner())))
            .collect();
        let given: Vec<(usize, &Value)> = fields
            .iter()
            .enumerate()
            .filter_map(|(column, value)| value.as_ref().map(|value| (column, value)))
            .collect();
        let pattern = format_fields(&info.name, &fields);
        if rows > 0 {
            return format!("does not match: no row of {pattern} fits it");
        }
        match given.as_slice() {
            [] => format!("does not match: `{}` is empty", info.name),
            [(column, value)] => format!(
                "does not match: no row has {} in column {}",
                literal(value),
                column + 1
            ),
            _ if given.len() == fields.len() => format!("does not match: {pattern} is not there"),
            _ => format!("does not match: no row matches {pattern}"),
        }
    }

    /// A binding that satisfies the body and gives a row of the pattern: the engine should
    /// hold that row, and says it does not.
    fn derives(&mut self, code: &RuleCode, state: &State, probe: &mut Probe) {
        let head = self.program.rules[code.id].head;
        let words: Vec<Word> = code
            .head
            .iter()
            .map(|arg| match arg {
                HeadArg::Var(var) => state.words[*var],
                HeadArg::Const(word) => *word,
                HeadArg::Expr { expr, .. } => self.evaluator.eval(expr, &state.words).unwrap_or(0),
            })
            .collect();
        let row = format_tuple(
            &self.program.relations[head].name,
            &self.decode_row(head, &words),
        );
        probe.fail(Candidate {
            held: code.units.len(),
            literal: self.head_text(code.id),
            reason: format!("derives {row}, which the engine does not hold"),
            values: self.named(code.id, state),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Text

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Explanation::Holds(derivation) => derivation.fmt(f),
            Explanation::Absent(why_not) => why_not.fmt(f),
        }
    }
}

impl Node {
    /// `path(1, 2)`
    pub fn row(&self) -> String {
        format_tuple(&self.relation, &self.tuple)
    }
}

/// What the printer does next.
enum Print<'d> {
    Node(usize, usize),
    Line(String, usize),
    Premise(&'d Premise, usize),
}

impl fmt::Display for Derivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut uses = vec![0usize; self.nodes.len()];
        for node in &self.nodes {
            if let How::Rule { premises, .. } = &node.how {
                for premise in premises {
                    if let Premise::Row { node, .. } = premise {
                        uses[*node] += 1;
                    }
                }
            }
        }
        // A rule node gets a label when it is printed in full while used elsewhere too, or
        // cut at the maximum depth; `printed` says it needs no printing again.
        let mut labels: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut printed = vec![false; self.nodes.len()];
        let mut next_label = 1;
        let mut blocks = VecDeque::from([0]);
        let mut first = true;
        while let Some(block) = blocks.pop_front() {
            if !first {
                writeln!(f)?;
            }
            first = false;
            let mut stack = vec![Print::Node(block, 0)];
            while let Some(item) = stack.pop() {
                let (depth, line) = match item {
                    Print::Line(line, depth) => (depth, line),
                    Print::Premise(premise, depth) => {
                        premise_lines(premise, depth, &mut stack);
                        continue;
                    }
                    Print::Node(id, depth) => {
                        let node = &self.nodes[id];
                        let row = node.row();
                        let How::Rule {
                            location,
                            clause,
                            premises,
                            ..
                        } = &node.how
                        else {
                            let line = format!("{row}   {}", leaf_text(&node.how));
                            writeln!(f, "{:indent$}{line}", "", indent = 2 * depth)?;
                            continue;
                        };
                        let is_root = id == block && depth == 0;
                        if printed[id] && !is_root {
                            let label = labels[id].expect("a node printed twice has a label");
                            (depth, format!("{row}   see [{label}]"))
                        } else if depth > MAX_DEPTH {
                            let label = *labels[id].get_or_insert_with(|| {
                                next_label += 1;
                                next_label - 1
                            });
                            printed[id] = true;
                            blocks.push_back(id);
                            (depth, format!("{row}   see [{label}]"))
                        } else {
                            printed[id] = true;
                            if labels[id].is_none() && uses[id] > 1 {
                                labels[id] = Some(next_label);
                                next_label += 1;
                            }
                            for premise in premises.iter().rev() {
                                stack.push(match premise {
                                    Premise::Row { node, .. } => Print::Node(*node, depth + 1),
                                    other => Print::Premise(other, depth + 1),
                                });
                            }
                            stack.push(Print::Line(
                                format!("by rule {clause}   at {location}"),
                                depth + 1,
                            ));
                            match labels[id] {
                                Some(label) => (depth, format!("{row}   [{label}]")),
                                None => (depth, row),
                            }
                        }
                    }
                };
                writeln!(f, "{:indent$}{line}", "", indent = 2 * depth)?;
            }
        }
        Ok(())
    }
}

/// What follows a row that holds without a rule.
fn leaf_text(how: &How) -> String {
    match how {
        How::Input { origin: None } => "input".to_string(),
        How::Input {
            origin: Some(origin),
        } => {
            let mut text = format!("input, time {} at {}", origin.time, origin.now);
            if let Some(event) = &origin.event {
                let _ = write!(text, " ({event})");
            }
            text
        }
        How::Fact { location, .. } => format!("fact at {location}"),
        How::Unexplained { reason } => format!("unexplained: {reason}"),
        How::Rule { .. } => unreachable!("a rule node is not a leaf"),
    }
}

/// Pushes the lines of a premise other than a row (in reverse, for the stack).
fn premise_lines<'d>(premise: &'d Premise, depth: usize, stack: &mut Vec<Print<'d>>) {
    let line = match premise {
        Premise::Row { .. } => unreachable!("rows are printed as nodes"),
        Premise::Negation { atom, .. } => format!("no row matches `{atom}`"),
        Premise::Condition { literal, values } if values.is_empty() => format!("`{literal}` holds"),
        Premise::Condition { literal, values } => {
            format!("`{literal}` holds for {}", variable_list(values))
        }
        Premise::Aggregate(aggregate) => {
            for member in aggregate.members.iter().rev() {
                let rows: Vec<String> = member
                    .rows
                    .iter()
                    .map(|row| format_tuple(&row.relation, &row.tuple))
                    .collect();
                let mut line = rows.join(", ");
                if let Some(value) = &member.value
                    && aggregate.aggregate != "count"
                {
                    let _ = write!(line, "   value {}", literal(value));
                }
                stack.push(Print::Line(line, depth + 1));
            }
            let result = literal(&aggregate.result);
            let size = match aggregate.size {
                0 => "no bindings".to_string(),
                1 => "1 binding".to_string(),
                n => format!("{n} bindings"),
            };
            let how = match aggregate.aggregate.as_str() {
                "min" => format!("the least of {size}, given by"),
                "max" => format!("the greatest of {size}, given by"),
                "sum" => format!("the sum over {size}"),
                "mean" => format!("the mean over {size}"),
                _ => format!("over {size}"),
            };
            let colon = if aggregate.members.is_empty() {
                ""
            } else {
                ":"
            };
            format!("`{}` is {result}, {how}{colon}", aggregate.literal)
        }
    };
    stack.push(Print::Line(line, depth));
}

fn variable_list(values: &[VariableValue]) -> String {
    values
        .iter()
        .map(|value| format!("{} = {}", value.name, literal(&value.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for WhyNot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern = format_fields(&self.relation, &self.pattern);
        match &self.verdict {
            Verdict::Holds { count, rows } => {
                let matches = if *count == 1 {
                    "1 row matches".to_string()
                } else {
                    format!("{count} rows match")
                };
                writeln!(f, "{pattern} holds: {matches}")?;
                for row in rows {
                    writeln!(f, "  {}", format_tuple(&self.relation, row))?;
                }
                if *count > rows.len() {
                    writeln!(f, "  and {} more", count - rows.len())?;
                }
            }
            Verdict::Missing { input, rules } => {
                writeln!(f, "{pattern} does not hold")?;
                if let Some(input) = input {
                    write!(
                        f,
                        "  `{}` is an input relation: no such fact was inserted",
                        self.relation
                    )?;
                    if let Some(holder) = &input.key_holder {
                        write!(
                            f,
                            "; its key is held by {}",
                            format_tuple(&self.relation, holder)
                        )?;
                    }
                    writeln!(f)?;
                }
                for answer in rules {
                    let kind = if answer.fact { "fact" } else { "rule" };
                    writeln!(f, "  {kind} {}   at {}", answer.clause, answer.location)?;
                    match &answer.outcome {
                        Outcome::Head { reason } => writeln!(f, "    {reason}")?,
                        Outcome::Body {
                            candidates,
                            truncated,
                        } => {
                            for candidate in candidates {
                                write!(f, "    `{}` {}", candidate.literal, candidate.reason)?;
                                if !candidate.values.is_empty() {
                                    write!(f, "   with {}", variable_list(&candidate.values))?;
                                }
                                writeln!(f)?;
                            }
                            if *truncated {
                                writeln!(f, "    (the search stopped after {STEPS} steps)")?;
                            }
                        }
                    }
                }
                if input.is_none() && rules.is_empty() {
                    writeln!(f, "  no rule derives `{}`", self.relation)?;
                }
            }
        }
        Ok(())
    }
}
