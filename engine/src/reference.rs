//! The reference evaluator: the oracle that the incremental engine is tested against.
//!
//! It evaluates a checked [`ir::Program`] from scratch, in memory, bottom-up, on tagged
//! [`Value`]s, and shares no evaluation code with the differential dataflow: expressions,
//! comparisons, functors, ranges and aggregates are implemented again here, as directly as the
//! semantics in [`crate::ir`] reads. Two independent implementations that agree on many random
//! programs and inputs are much more likely to be right than either one alone; so this one
//! favours being obviously correct over being fast.
//!
//! # How it works
//!
//! Every relation starts with its input tuples. Strata are then evaluated in order; each stratum
//! is taken to its fixpoint before the next one starts, so that a negated or aggregated
//! relation is complete when it is read.
//!
//! Inside a stratum the evaluation is *semi-naive*. A first round runs every rule of the stratum
//! once over the full relations. Its new tuples are the first *delta*. Each later round runs,
//! for every rule and for every positive body atom over a relation of the stratum, the rule with
//! that one atom reading only the delta of the previous round (the other atoms read the full
//! relations, delta included). A derivation that uses only older tuples was already found in an
//! earlier round, so nothing is missed; the stratum is done when a round derives nothing new.
//! Mutual recursion needs nothing special: the delta covers every relation of the stratum.
//!
//! A rule body is run left to right by backtracking over a binding (one optional value per
//! variable of the rule): the checker ordered the literals so that each one reads only
//! variables bound before it. Positive atoms are looked up through hash indexes on the columns
//! whose variables are already bound. The columns bound at each atom follow from the order of
//! the literals alone, so the indexes a stratum needs are built before it runs and then kept up
//! to date as tuples are added; the deltas, which are new every round, get their own.
//!
//! # Caveats
//!
//! - A program that breaks the [`crate::ir`] invariants (a variable read before it is bound, a
//!   value whose type is not the one declared, an operator applied to a type it is not defined
//!   on) is a bug of the checker, not of the user: the evaluator panics with a message that
//!   names it rather than guess an answer.
//! - Floating-point sums and means depend on the order of the additions. Here they add the
//!   distinct bindings in the order of their values; another evaluator may add in another order
//!   and differ in the last bits.
//! - An aggregate binding whose target expression fails (a division by zero, say) is left out
//!   of the aggregate, as if the body did not hold for it.

use crate::ir::{
    self, Aggregate, Atom, Condition, Expr, Function, Literal, RelationId, Rule, VarId,
};
use crate::syntax::ast::{AggregateKind, BinaryOp, CompareOp, UnaryOp};
use crate::value::{Interner, Type, Value};
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A relation's contents: a set of tuples.
pub type Tuples = BTreeSet<Vec<Value>>;

/// Evaluates `program` from scratch. `inputs[r]` holds the tuples inserted into relation `r`
/// (only writable relations have any; a missing entry is empty). Returns the contents of every
/// relation, indexed by [`RelationId`].
pub fn evaluate(program: &ir::Program, inputs: &HashMap<RelationId, Tuples>) -> Vec<Tuples> {
    let mut relations: Vec<Store> = program.relations.iter().map(|_| Store::default()).collect();
    for (&relation, tuples) in inputs {
        let Some(declared) = program.relations.get(relation) else {
            panic!("reference evaluator: input for relation {relation}, which does not exist");
        };
        for tuple in tuples {
            assert_eq!(
                tuple.len(),
                declared.arity(),
                "reference evaluator: input tuple {tuple:?} does not fit `{}`",
                declared.name
            );
            relations[relation].insert(tuple.clone());
        }
    }
    for rule in &program.rules {
        if !program
            .strata
            .iter()
            .any(|stratum| stratum.relations.contains(&rule.head))
        {
            panic!(
                "reference evaluator: rule `{}` derives `{}`, which is in no stratum",
                rule.text, program.relations[rule.head].name
            );
        }
    }
    let regexes = RegexCache::default();
    for stratum in &program.strata {
        evaluate_stratum(program, stratum, &mut relations, &regexes);
    }
    relations.into_iter().map(|store| store.tuples).collect()
}

/// Takes one stratum to its fixpoint, semi-naively (see the module documentation).
fn evaluate_stratum(
    program: &ir::Program,
    stratum: &ir::Stratum,
    full: &mut [Store],
    regexes: &RegexCache,
) {
    let members: HashSet<RelationId> = stratum.relations.iter().copied().collect();
    let rules: Vec<&Rule> = program
        .rules
        .iter()
        .filter(|rule| members.contains(&rule.head))
        .collect();

    let mut lookups = Vec::new();
    for rule in &rules {
        let mut bound = vec![false; rule.variables.len()];
        plan_lookups(&rule.body, &mut bound, &mut lookups);
    }
    for (relation, columns) in &lookups {
        full[*relation].ensure_index(columns);
    }

    // The first round: every rule over the full relations.
    let no_delta = HashMap::new();
    let mut derived = Vec::new();
    {
        let round = Round {
            full,
            delta: &no_delta,
            regexes,
        };
        for rule in &rules {
            round.fire(rule, None, &mut derived);
        }
    }
    let mut delta = absorb(program, full, derived);

    // Later rounds: each rule once per recursive atom, that atom reading the delta.
    while !delta.is_empty() {
        for (relation, columns) in &lookups {
            if let Some(store) = delta.get_mut(relation) {
                store.ensure_index(columns);
            }
        }
        let mut derived = Vec::new();
        {
            let round = Round {
                full,
                delta: &delta,
                regexes,
            };
            for rule in &rules {
                for (position, literal) in rule.body.iter().enumerate() {
                    if let Literal::Positive(atom) = literal
                        && delta.contains_key(&atom.relation)
                    {
                        round.fire(rule, Some(position), &mut derived);
                    }
                }
            }
        }
        delta = absorb(program, full, derived);
    }
}

/// Adds derived tuples to their relations and returns those that were new, by relation.
fn absorb(
    program: &ir::Program,
    full: &mut [Store],
    derived: Vec<(RelationId, Vec<Value>)>,
) -> HashMap<RelationId, Store> {
    let mut delta: HashMap<RelationId, Store> = HashMap::new();
    for (relation, tuple) in derived {
        check_tuple_types(program, relation, &tuple);
        if full[relation].insert(tuple.clone()) {
            delta.entry(relation).or_default().insert(tuple);
        }
    }
    delta
}

fn check_tuple_types(program: &ir::Program, relation: RelationId, tuple: &[Value]) {
    let declared = &program.relations[relation];
    let fits = tuple.len() == declared.arity()
        && tuple
            .iter()
            .zip(declared.types())
            .all(|(value, ty)| value.ty() == ty);
    if !fits {
        ill_typed(format!(
            "a rule derives {tuple:?} for `{}`, whose columns are {:?}",
            declared.name,
            declared.types().collect::<Vec<_>>()
        ));
    }
}

/// Records, for every atom of `body`, the columns that are bound when it is reached: the key of
/// the index its lookups use. `bound` says which variables are bound at the start of `body`.
fn plan_lookups(body: &[Literal], bound: &mut [bool], lookups: &mut Vec<(RelationId, Vec<usize>)>) {
    for literal in body {
        match literal {
            Literal::Positive(atom) => {
                let columns = atom
                    .args
                    .iter()
                    .enumerate()
                    .filter(|(_, arg)| arg.is_some_and(|var| bound[var]))
                    .map(|(column, _)| column)
                    .collect();
                lookups.push((atom.relation, columns));
                for var in atom.variables() {
                    bound[var] = true;
                }
            }
            Literal::Negative(atom) => {
                let columns = atom
                    .args
                    .iter()
                    .enumerate()
                    .filter(|(_, arg)| arg.is_some())
                    .map(|(column, _)| column)
                    .collect();
                lookups.push((atom.relation, columns));
            }
            Literal::Filter(_) => {}
            Literal::Assign { var, .. } | Literal::Range { var, .. } => bound[*var] = true,
            Literal::Aggregate(aggregate) => {
                let mut inside = bound.to_vec();
                plan_lookups(&aggregate.body, &mut inside, lookups);
                bound[aggregate.result] = true;
            }
        }
    }
}

/// The tuples of one relation (or of one delta), with hash indexes on sets of columns.
#[derive(Default)]
struct Store {
    tuples: Tuples,
    /// For each set of key columns some atom looks up, the tuples by their values in those
    /// columns. Kept up to date by [`Store::insert`].
    indexes: HashMap<Vec<usize>, Index>,
}

/// The tuples of a relation by their values in some key columns.
type Index = HashMap<Vec<Value>, Vec<Vec<Value>>>;

impl Store {
    /// Adds a tuple; returns whether it was new.
    fn insert(&mut self, tuple: Vec<Value>) -> bool {
        if self.tuples.contains(&tuple) {
            return false;
        }
        for (columns, index) in &mut self.indexes {
            index
                .entry(project(&tuple, columns))
                .or_default()
                .push(tuple.clone());
        }
        self.tuples.insert(tuple);
        true
    }

    fn ensure_index(&mut self, columns: &[usize]) {
        if columns.is_empty() || self.indexes.contains_key(columns) {
            return;
        }
        let mut index = Index::new();
        for tuple in &self.tuples {
            index
                .entry(project(tuple, columns))
                .or_default()
                .push(tuple.clone());
        }
        self.indexes.insert(columns.to_vec(), index);
    }

    /// The tuples whose values in `columns` are `key`.
    fn matching<'s>(
        &'s self,
        columns: &[usize],
        key: &[Value],
    ) -> Box<dyn Iterator<Item = &'s Vec<Value>> + 's> {
        if columns.is_empty() {
            return Box::new(self.tuples.iter());
        }
        match self.indexes.get(columns) {
            Some(index) => Box::new(index.get(key).into_iter().flatten()),
            // Every lookup is planned, so this is only a safety net: a scan gives the same
            // answer, slowly.
            None => {
                let columns = columns.to_vec();
                let key = key.to_vec();
                Box::new(self.tuples.iter().filter(move |tuple| {
                    columns
                        .iter()
                        .zip(&key)
                        .all(|(column, value)| &tuple[*column] == value)
                }))
            }
        }
    }
}

fn project(tuple: &[Value], columns: &[usize]) -> Vec<Value> {
    columns
        .iter()
        .map(|column| tuple[*column].clone())
        .collect()
}

/// Compiled `match` patterns, by pattern text; `None` for an invalid pattern.
#[derive(Default)]
struct RegexCache {
    compiled: RefCell<HashMap<String, Option<regex::Regex>>>,
}

impl RegexCache {
    /// Whether the whole of `text` matches `pattern`.
    fn full_match(&self, pattern: &str, text: &str) -> bool {
        let mut compiled = self.compiled.borrow_mut();
        let regex = compiled.entry(pattern.to_string()).or_insert_with(|| {
            // The pattern must be valid on its own: wrapped in a group, an unbalanced pattern
            // such as `a)|(b` would become valid with another meaning.
            regex::Regex::new(pattern).ok()?;
            regex::Regex::new(&format!(r"\A(?:{pattern})\z")).ok()
        });
        regex.as_ref().is_some_and(|regex| regex.is_match(text))
    }
}

/// One variable binding of a rule: `Some` for the variables bound so far.
type Binding = Vec<Option<Value>>;

/// What the rules of one round read: the full relations and the previous round's delta.
struct Round<'a> {
    full: &'a [Store],
    delta: &'a HashMap<RelationId, Store>,
    regexes: &'a RegexCache,
}

impl Round<'_> {
    /// Runs `rule`, the atom at `delta_position` (if any) reading the delta, and pushes the
    /// head tuples it derives.
    fn fire(
        &self,
        rule: &Rule,
        delta_position: Option<usize>,
        derived: &mut Vec<(RelationId, Vec<Value>)>,
    ) {
        let evaluation = RuleEvaluation { round: self, rule };
        let mut binding: Binding = vec![None; rule.variables.len()];
        evaluation.solve(
            &rule.body,
            0,
            delta_position,
            &mut binding,
            &mut |binding| {
                let head: Option<Vec<Value>> = rule
                    .head_args
                    .iter()
                    .map(|arg| evaluation.eval(arg, binding))
                    .collect();
                if let Some(tuple) = head {
                    derived.push((rule.head, tuple));
                }
            },
        );
    }
}

/// The evaluation of one rule's body in one round.
struct RuleEvaluation<'a> {
    round: &'a Round<'a>,
    rule: &'a Rule,
}

impl RuleEvaluation<'_> {
    /// Runs `body[position..]` from `binding` and calls `emit` with every complete binding.
    /// `binding` is restored before returning. `delta_position` is the position in `body` of
    /// the atom that reads the delta, if any.
    fn solve(
        &self,
        body: &[Literal],
        position: usize,
        delta_position: Option<usize>,
        binding: &mut Binding,
        emit: &mut dyn FnMut(&Binding),
    ) {
        let Some(literal) = body.get(position) else {
            emit(binding);
            return;
        };
        let mut next =
            |binding: &mut Binding| self.solve(body, position + 1, delta_position, binding, emit);
        match literal {
            // R(x, y, _): join on the bound variables, bind the others.
            Literal::Positive(atom) => {
                let store = if delta_position == Some(position) {
                    match self.round.delta.get(&atom.relation) {
                        Some(store) => store,
                        None => return,
                    }
                } else {
                    &self.round.full[atom.relation]
                };
                let (columns, key) = self.bound_columns(atom, binding, false);
                for tuple in store.matching(&columns, &key) {
                    let mut newly_bound = Vec::new();
                    let mut fits = true;
                    for (column, arg) in atom.args.iter().enumerate() {
                        let Some(var) = *arg else { continue };
                        match &binding[var] {
                            Some(value) => fits &= *value == tuple[column],
                            None => {
                                binding[var] = Some(tuple[column].clone());
                                newly_bound.push(var);
                            }
                        }
                    }
                    if fits {
                        next(binding);
                    }
                    for var in newly_bound {
                        binding[var] = None;
                    }
                }
            }
            // !R(x, _): no tuple agrees with the bound variables.
            Literal::Negative(atom) => {
                let (columns, key) = self.bound_columns(atom, binding, true);
                let store = &self.round.full[atom.relation];
                if store.matching(&columns, &key).next().is_none() {
                    next(binding);
                }
            }
            Literal::Filter(condition) => {
                if self.holds(condition, binding) {
                    next(binding);
                }
            }
            // x = expr
            Literal::Assign { var, expr, .. } => {
                if let Some(value) = self.eval(expr, binding) {
                    with_binding(*var, value, binding, next);
                }
            }
            // x = range(from, to[, step])
            Literal::Range {
                var,
                ty,
                from,
                to,
                step,
                ..
            } => {
                let Some(from) = self.eval(from, binding) else {
                    return;
                };
                let Some(to) = self.eval(to, binding) else {
                    return;
                };
                let step = match step {
                    Some(step) => match self.eval(step, binding) {
                        Some(step) => Some(step),
                        None => return,
                    },
                    None => None,
                };
                for value in range_values(*ty, from, to, step) {
                    with_binding(*var, value, binding, &mut next);
                }
            }
            // r = kind target : { body }
            Literal::Aggregate(aggregate) => {
                if let Some(result) = self.aggregate(aggregate, binding) {
                    with_binding(aggregate.result, result, binding, next);
                }
            }
        }
    }

    /// The columns of `atom` whose variable is bound, and their values. With `all`, every
    /// variable of the atom must be bound (a negated atom).
    fn bound_columns(&self, atom: &Atom, binding: &Binding, all: bool) -> (Vec<usize>, Vec<Value>) {
        let mut columns = Vec::new();
        let mut key = Vec::new();
        for (column, arg) in atom.args.iter().enumerate() {
            let Some(var) = *arg else { continue };
            match &binding[var] {
                Some(value) => {
                    columns.push(column);
                    key.push(value.clone());
                }
                None if all => {
                    self.bound(var, binding);
                }
                None => {}
            }
        }
        (columns, key)
    }

    /// The value of `aggregate` for the current binding of its injected variables, or `None`
    /// when it has none (`min`, `max` and `mean` over nothing).
    fn aggregate(&self, aggregate: &Aggregate, binding: &mut Binding) -> Option<Value> {
        // The distinct bindings of `injected + locals`, each with its target value.
        let mut matches: BTreeMap<Binding, Option<Value>> = BTreeMap::new();
        self.solve(&aggregate.body, 0, None, binding, &mut |inner| {
            let identity: Binding = aggregate
                .injected
                .iter()
                .chain(&aggregate.locals)
                .map(|var| inner[*var].clone())
                .collect();
            let target = match &aggregate.target {
                Some(target) => match self.eval(target, inner) {
                    Some(value) => Some(value),
                    None => return,
                },
                None => None,
            };
            matches.insert(identity, target);
        });
        let count = matches.len();
        let targets: Vec<Value> = matches.into_values().flatten().collect();
        if aggregate.kind != AggregateKind::Count && targets.len() != count {
            ill_typed(format!(
                "`{}` aggregate without a target in rule `{}`",
                aggregate.kind.name(),
                self.rule.text
            ));
        }
        let result = aggregate_value(aggregate.kind, aggregate.ty, count, targets)?;
        expect_type(&result, aggregate.ty, aggregate.kind.name());
        Some(result)
    }

    fn holds(&self, condition: &Condition, binding: &Binding) -> bool {
        match condition {
            Condition::Compare { op, lhs, rhs, .. } => {
                match (self.eval(lhs, binding), self.eval(rhs, binding)) {
                    (Some(lhs), Some(rhs)) => compare(*op, &lhs, &rhs),
                    _ => false,
                }
            }
            Condition::Contains {
                needle, haystack, ..
            } => match (self.eval(needle, binding), self.eval(haystack, binding)) {
                (Some(needle), Some(haystack)) => {
                    symbol_text(&haystack, "contains").contains(symbol_text(&needle, "contains"))
                }
                _ => false,
            },
            Condition::Match { pattern, text, .. } => {
                match (self.eval(pattern, binding), self.eval(text, binding)) {
                    (Some(pattern), Some(text)) => self
                        .round
                        .regexes
                        .full_match(symbol_text(&pattern, "match"), symbol_text(&text, "match")),
                    _ => false,
                }
            }
            Condition::Bool(value, _) => *value,
            Condition::Not(condition) => !self.holds(condition, binding),
        }
    }

    /// The value of `expr`, or `None` if its evaluation fails (a division by zero, a symbol
    /// that `to_number` cannot parse, ...).
    fn eval(&self, expr: &Expr, binding: &Binding) -> Option<Value> {
        let (value, ty, what) = match expr {
            Expr::Var(var, ty) => {
                let value = self.bound(*var, binding);
                expect_type(value, *ty, &self.rule.variables[*var].name);
                return Some(value.clone());
            }
            Expr::Const(value) => return Some(value.clone()),
            Expr::Unary { op, ty, arg } => {
                let arg = self.eval(arg, binding)?;
                (unary(*op, *ty, arg), *ty, unary_name(*op))
            }
            Expr::Binary {
                op, ty, lhs, rhs, ..
            } => {
                let lhs = self.eval(lhs, binding)?;
                let rhs = self.eval(rhs, binding)?;
                (binary(*op, *ty, lhs, rhs)?, *ty, op.symbol())
            }
            Expr::Call { function, ty, args } => {
                let args: Vec<Value> = args
                    .iter()
                    .map(|arg| self.eval(arg, binding))
                    .collect::<Option<_>>()?;
                (call(*function, &args)?, *ty, function.name())
            }
        };
        expect_type(&value, ty, what);
        Some(value)
    }

    fn bound<'b>(&self, var: VarId, binding: &'b Binding) -> &'b Value {
        match &binding[var] {
            Some(value) => value,
            None => panic!(
                "reference evaluator: variable `{}` is read before it is bound in rule `{}`",
                self.rule.variables[var].name, self.rule.text
            ),
        }
    }
}

/// Binds `var` to `value` for the duration of `then`; if `var` is already bound, `then` runs
/// only when the values agree.
fn with_binding(var: VarId, value: Value, binding: &mut Binding, then: impl FnOnce(&mut Binding)) {
    match &binding[var] {
        Some(existing) => {
            if *existing == value {
                then(binding);
            }
        }
        None => {
            binding[var] = Some(value);
            then(binding);
            binding[var] = None;
        }
    }
}

#[track_caller]
fn ill_typed(what: impl std::fmt::Display) -> ! {
    panic!("reference evaluator: ill-typed program: {what}")
}

fn expect_type(value: &Value, ty: Type, what: &str) {
    if value.ty() != ty {
        ill_typed(format!(
            "`{what}` gives {value:?}, but its type is declared as {ty}"
        ));
    }
}

fn symbol_text<'v>(value: &'v Value, what: &str) -> &'v str {
    match value {
        Value::Symbol(text) => text,
        other => ill_typed(format!("`{what}` expects a symbol, not {other:?}")),
    }
}

fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "-",
        UnaryOp::BitNot => "bnot",
        UnaryOp::LogicalNot => "lnot",
    }
}

// ---------------------------------------------------------------------------------------------
// Operators. Each works on the values' own tags; a combination that the semantics does not
// define is a checker bug and panics.

/// Whether a numeric value is zero (both zeros of a float).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Number(x) => *x == 0,
        Value::Unsigned(x) => *x == 0,
        Value::Float(x) => *x == 0.0,
        Value::Symbol(_) => ill_typed(format!("a logical operator on the symbol {value:?}")),
    }
}

/// `1` or `0` in type `ty`: the result of a logical operator.
fn truth(ty: Type, holds: bool) -> Value {
    match ty {
        Type::Number => Value::Number(holds as i64),
        Type::Unsigned => Value::Unsigned(holds as u64),
        Type::Float => Value::Float(if holds { 1.0 } else { 0.0 }),
        Type::Symbol => ill_typed("a logical operator of type symbol"),
    }
}

fn unary(op: UnaryOp, ty: Type, value: Value) -> Value {
    match (op, value) {
        (UnaryOp::Neg, Value::Number(x)) => Value::Number(x.wrapping_neg()),
        (UnaryOp::Neg, Value::Unsigned(x)) => Value::Unsigned(x.wrapping_neg()),
        (UnaryOp::Neg, Value::Float(x)) => Value::Float(-x),
        (UnaryOp::BitNot, Value::Number(x)) => Value::Number(!x),
        (UnaryOp::BitNot, Value::Unsigned(x)) => Value::Unsigned(!x),
        (UnaryOp::LogicalNot, value) => truth(ty, is_zero(&value)),
        (op, value) => ill_typed(format!("`{}` on {value:?}", unary_name(op))),
    }
}

fn is_logical(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::LogicalAnd | BinaryOp::LogicalOr | BinaryOp::LogicalXor
    )
}

fn is_shift(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::ShiftLeft | BinaryOp::ShiftRight | BinaryOp::ShiftRightUnsigned
    )
}

/// `lhs op rhs`; `None` when the operation fails (integer division or remainder by zero).
fn binary(op: BinaryOp, ty: Type, lhs: Value, rhs: Value) -> Option<Value> {
    if is_logical(op) {
        let (lhs, rhs) = (!is_zero(&lhs), !is_zero(&rhs));
        let holds = match op {
            BinaryOp::LogicalAnd => lhs && rhs,
            BinaryOp::LogicalOr => lhs || rhs,
            _ => lhs != rhs,
        };
        return Some(truth(ty, holds));
    }
    if is_shift(op) {
        return Some(shift(op, lhs, &rhs));
    }
    match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => number_binary(op, a, b).map(Value::Number),
        (Value::Unsigned(a), Value::Unsigned(b)) => unsigned_binary(op, a, b).map(Value::Unsigned),
        (Value::Float(a), Value::Float(b)) => Some(Value::Float(float_binary(op, a, b))),
        (lhs, rhs) => ill_typed(format!("`{}` on {lhs:?} and {rhs:?}", op.symbol())),
    }
}

fn number_binary(op: BinaryOp, a: i64, b: i64) -> Option<i64> {
    Some(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        // Both truncate toward zero; `i64::MIN / -1` wraps to `i64::MIN`.
        BinaryOp::Div => {
            if b == 0 {
                return None;
            }
            a.wrapping_div(b)
        }
        BinaryOp::Mod => {
            if b == 0 {
                return None;
            }
            a.wrapping_rem(b)
        }
        BinaryOp::Pow => number_power(a, b),
        BinaryOp::BitAnd => a & b,
        BinaryOp::BitOr => a | b,
        BinaryOp::BitXor => a ^ b,
        _ => ill_typed(format!("`{}` on numbers", op.symbol())),
    })
}

fn unsigned_binary(op: BinaryOp, a: u64, b: u64) -> Option<u64> {
    Some(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => a.checked_div(b)?,
        BinaryOp::Mod => a.checked_rem(b)?,
        BinaryOp::Pow => unsigned_power(a, b),
        BinaryOp::BitAnd => a & b,
        BinaryOp::BitOr => a | b,
        BinaryOp::BitXor => a ^ b,
        _ => ill_typed(format!("`{}` on unsigned numbers", op.symbol())),
    })
}

fn float_binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Mod => a % b,
        BinaryOp::Pow => a.powf(b),
        _ => ill_typed(format!(
            "`{}` on floats (bitwise operators are defined on integers only)",
            op.symbol()
        )),
    }
}

/// `base ^ exponent` on `number`: by squaring, wrapping. A negative exponent gives the
/// truncation of the real result: `1` for a base of `1`, `±1` for `-1`, `0` otherwise.
fn number_power(base: i64, exponent: i64) -> i64 {
    if exponent < 0 {
        return match base {
            1 => 1,
            -1 if exponent % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        };
    }
    let mut result: i64 = 1;
    let mut square = base;
    let mut remaining = exponent;
    while remaining > 0 {
        if remaining & 1 == 1 {
            result = result.wrapping_mul(square);
        }
        square = square.wrapping_mul(square);
        remaining >>= 1;
    }
    result
}

fn unsigned_power(base: u64, exponent: u64) -> u64 {
    let mut result: u64 = 1;
    let mut square = base;
    let mut remaining = exponent;
    while remaining > 0 {
        if remaining & 1 == 1 {
            result = result.wrapping_mul(square);
        }
        square = square.wrapping_mul(square);
        remaining >>= 1;
    }
    result
}

/// `bshl`, `bshr`, `bshru`: the amount is the right operand modulo 64 (its low six bits, in
/// either integer type).
fn shift(op: BinaryOp, value: Value, amount: &Value) -> Value {
    let amount = match amount {
        Value::Number(x) => x.rem_euclid(64) as u32,
        Value::Unsigned(x) => (x % 64) as u32,
        other => ill_typed(format!("a shift by {other:?}")),
    };
    match (op, value) {
        (BinaryOp::ShiftLeft, Value::Number(x)) => Value::Number(x.wrapping_shl(amount)),
        (BinaryOp::ShiftLeft, Value::Unsigned(x)) => Value::Unsigned(x.wrapping_shl(amount)),
        // Arithmetic on `number`, logical on `unsigned`.
        (BinaryOp::ShiftRight, Value::Number(x)) => Value::Number(x >> amount),
        (BinaryOp::ShiftRight, Value::Unsigned(x)) => Value::Unsigned(x >> amount),
        (BinaryOp::ShiftRightUnsigned, Value::Number(x)) => {
            Value::Number(((x as u64) >> amount) as i64)
        }
        (BinaryOp::ShiftRightUnsigned, Value::Unsigned(x)) => Value::Unsigned(x >> amount),
        (op, value) => ill_typed(format!("`{}` on {value:?}", op.symbol())),
    }
}

/// `lhs op rhs` on the operands' type. Symbols compare by their bytes; floats as IEEE numbers
/// (so `0.0 = -0.0`, and NaN is neither equal, less nor greater than anything).
fn compare(op: CompareOp, lhs: &Value, rhs: &Value) -> bool {
    let ordering = match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => Some(a.cmp(b)),
        (Value::Unsigned(a), Value::Unsigned(b)) => Some(a.cmp(b)),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
        (Value::Symbol(a), Value::Symbol(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => ill_typed(format!("`{}` between {lhs:?} and {rhs:?}", op.symbol())),
    };
    match ordering {
        None => op == CompareOp::Ne,
        Some(ordering) => match op {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::Ne => ordering != Ordering::Equal,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::Le => ordering != Ordering::Greater,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::Ge => ordering != Ordering::Less,
        },
    }
}

/// The larger of two values, like C++'s `std::max`: the first unless it is less than the
/// second.
fn larger(first: Value, second: Value) -> Value {
    if compare(CompareOp::Lt, &first, &second) {
        second
    } else {
        first
    }
}

/// The smaller of two values, like C++'s `std::min`: the first unless the second is less.
fn smaller(first: Value, second: Value) -> Value {
    if compare(CompareOp::Lt, &second, &first) {
        second
    } else {
        first
    }
}

fn wrapping_add(lhs: Value, rhs: Value) -> Value {
    match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a.wrapping_add(b)),
        (Value::Unsigned(a), Value::Unsigned(b)) => Value::Unsigned(a.wrapping_add(b)),
        (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
        (lhs, rhs) => ill_typed(format!("`sum` over {lhs:?} and {rhs:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Functors.

/// `function(args...)`; `None` when it fails (a symbol that does not parse as a number).
fn call(function: Function, args: &[Value]) -> Option<Value> {
    let name = function.name();
    let single = || match args {
        [arg] => arg,
        _ => ill_typed(format!("`{name}` with {} arguments", args.len())),
    };
    Some(match function {
        Function::Max | Function::Min => {
            let mut values = args.iter().cloned();
            let Some(first) = values.next() else {
                ill_typed(format!("`{name}` without arguments"));
            };
            values.fold(first, |acc, value| {
                if function == Function::Max {
                    larger(acc, value)
                } else {
                    smaller(acc, value)
                }
            })
        }
        Function::Abs => match single() {
            Value::Number(x) => Value::Number(x.wrapping_abs()),
            Value::Unsigned(x) => Value::Unsigned(*x),
            Value::Float(x) => Value::Float(x.abs()),
            other => ill_typed(format!("`abs` on {other:?}")),
        },
        Function::Cat => {
            let text: String = args.iter().map(|arg| symbol_text(arg, name)).collect();
            Value::symbol(&text)
        }
        Function::Strlen => Value::Number(symbol_text(single(), name).len() as i64),
        Function::Substr => {
            let [text, start, length] = args else {
                ill_typed(format!("`substr` with {} arguments", args.len()));
            };
            substring(
                symbol_text(text, name),
                integer_argument(start, name),
                integer_argument(length, name),
            )
        }
        Function::Ord => Value::Number(Interner::id_of(symbol_text(single(), name)) as i64),
        Function::ToNumber => Value::Number(match single() {
            Value::Number(x) => *x,
            Value::Unsigned(x) => *x as i64,
            // Toward zero, saturating; NaN gives 0.
            Value::Float(x) => *x as i64,
            Value::Symbol(text) => i64::try_from(parse_integer(text)?).ok()?,
        }),
        Function::ToUnsigned => Value::Unsigned(match single() {
            Value::Number(x) => *x as u64,
            Value::Unsigned(x) => *x,
            Value::Float(x) => *x as u64,
            Value::Symbol(text) => u64::try_from(parse_integer(text)?).ok()?,
        }),
        Function::ToFloat => Value::Float(match single() {
            Value::Number(x) => *x as f64,
            Value::Unsigned(x) => *x as f64,
            Value::Float(x) => *x,
            Value::Symbol(text) => match parse_integer(text) {
                Some(integer) => integer as f64,
                None => text.parse::<f64>().ok()?,
            },
        }),
        Function::ToString => match single() {
            Value::Number(x) => Value::symbol(&x.to_string()),
            Value::Unsigned(x) => Value::symbol(&x.to_string()),
            Value::Float(x) => Value::symbol(&c_fixed(*x)),
            Value::Symbol(text) => Value::Symbol(text.clone()),
        },
    })
}

fn integer_argument(value: &Value, what: &str) -> i128 {
    match value {
        Value::Number(x) => *x as i128,
        Value::Unsigned(x) => *x as i128,
        other => ill_typed(format!("`{what}` expects an integer, not {other:?}")),
    }
}

/// `substr(text, start, length)` as Soufflé (C++'s `std::string::substr`) computes it: `length`
/// bytes from byte `start`, fewer if the text ends first, all the rest if `length < 0`; the
/// empty symbol if `start < 0` or `start > strlen(text)`.
fn substring(text: &str, start: i128, length: i128) -> Value {
    let bytes = text.as_bytes();
    let size = bytes.len() as i128;
    if start < 0 || start > size {
        return Value::symbol("");
    }
    let end = if length < 0 {
        size
    } else {
        (start + length).min(size)
    };
    Value::symbol(&String::from_utf8_lossy(
        &bytes[start as usize..end as usize],
    ))
}

/// Parses an integer written in decimal, `0x` hexadecimal or `0b` binary, with an optional
/// sign and nothing else around it.
fn parse_integer(text: &str) -> Option<i128> {
    let (negative, unsigned) = if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else {
        (false, text.strip_prefix('+').unwrap_or(text))
    };
    let (radix, digits) = if let Some(digits) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (16, digits)
    } else if let Some(digits) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (2, digits)
    } else {
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::try_from(u128::from_str_radix(digits, radix).ok()?).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A float as C's `%f` prints it (what C++'s `std::to_string` gives): six decimals.
fn c_fixed(value: f64) -> String {
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    format!("{value:.6}")
}

/// The values `range(from, to[, step])` binds, in order (see [`crate::ir`]).
fn range_values(
    ty: Type,
    from: Value,
    to: Value,
    step: Option<Value>,
) -> Box<dyn Iterator<Item = Value>> {
    for value in [Some(&from), Some(&to), step.as_ref()]
        .into_iter()
        .flatten()
    {
        expect_type(value, ty, "range");
    }
    match (from, to, step) {
        (Value::Number(from), Value::Number(to), step) => {
            let step = match step {
                Some(Value::Number(step)) => step as i128,
                _ if from <= to => 1,
                _ => -1,
            };
            Box::new(integer_range(from as i128, to as i128, step).map(|x| Value::Number(x as i64)))
        }
        (Value::Unsigned(from), Value::Unsigned(to), step) => {
            let step = match step {
                Some(Value::Unsigned(step)) => step as i128,
                _ if from <= to => 1,
                _ => -1,
            };
            Box::new(
                integer_range(from as i128, to as i128, step).map(|x| Value::Unsigned(x as u64)),
            )
        }
        (Value::Float(from), Value::Float(to), step) => {
            let step = match step {
                Some(Value::Float(step)) => step,
                _ if from <= to => 1.0,
                _ => -1.0,
            };
            Box::new(float_range(from, to, step).map(Value::Float))
        }
        (from, to, _) => ill_typed(format!("`range` from {from:?} to {to:?}")),
    }
}

/// `from, from + step, ...` while short of `to`; nothing when `step` is zero or points away
/// from `to`. Computed in `i128`, so no step overflows.
fn integer_range(from: i128, to: i128, step: i128) -> impl Iterator<Item = i128> {
    std::iter::successors(Some(from), move |x| Some(x + step)).take_while(move |x| {
        if step > 0 {
            *x < to
        } else if step < 0 {
            *x > to
        } else {
            false
        }
    })
}

/// Like [`integer_range`], adding `step` each time. A step too small to move the value any
/// more (a float's precision runs out) ends the range instead of looping forever.
fn float_range(from: f64, to: f64, step: f64) -> impl Iterator<Item = f64> {
    std::iter::successors(Some(from), move |x| {
        let next = x + step;
        (next != *x).then_some(next)
    })
    .take_while(move |x| {
        if step > 0.0 {
            *x < to
        } else if step < 0.0 {
            *x > to
        } else {
            false
        }
    })
}

/// Folds the target values of an aggregate's distinct bindings (`count` of them; `targets`
/// holds one value per binding, in binding order, except for `count`). `ty` is the result
/// type. `None` for `min`, `max` and `mean` over nothing.
fn aggregate_value(
    kind: AggregateKind,
    ty: Type,
    count: usize,
    targets: Vec<Value>,
) -> Option<Value> {
    let zero = || match ty {
        Type::Number => Value::Number(0),
        Type::Unsigned => Value::Unsigned(0),
        Type::Float => Value::Float(0.0),
        Type::Symbol => ill_typed("`sum` of symbols"),
    };
    match kind {
        AggregateKind::Count => Some(Value::Number(count as i64)),
        AggregateKind::Sum => Some(
            targets
                .into_iter()
                .reduce(wrapping_add)
                .unwrap_or_else(zero),
        ),
        AggregateKind::Min => targets.into_iter().reduce(smaller),
        AggregateKind::Max => targets.into_iter().reduce(larger),
        // The sum (in the target's type, as `sum` computes it) as a float, over the count.
        AggregateKind::Mean => {
            let sum = targets.into_iter().reduce(wrapping_add)?;
            let sum = match sum {
                Value::Number(x) => x as f64,
                Value::Unsigned(x) => x as f64,
                Value::Float(x) => x,
                other => ill_typed(format!("`mean` of {other:?}")),
            };
            Some(Value::Float(sum / count as f64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceMap, Span};
    use crate::ir::{Column, Program, Relation, Stratum, Variable};

    // -----------------------------------------------------------------------------------------
    // Building programs by hand.

    fn relation(name: &str, types: &[Type]) -> Relation {
        Relation {
            name: name.to_string(),
            columns: types
                .iter()
                .enumerate()
                .map(|(index, ty)| Column {
                    name: format!("c{index}"),
                    ty: *ty,
                    type_name: ty.name().to_string(),
                })
                .collect(),
            span: Span::default(),
            input: None,
            outputs: vec![],
            printsize: false,
            eqrel: false,
            derived: false,
            writable: true,
            feed: Default::default(),
        }
    }

    /// Assembles a program; `strata` lists the relations of each stratum and whether it is
    /// recursive, in evaluation order.
    fn program(
        mut relations: Vec<Relation>,
        rules: Vec<Rule>,
        strata: Vec<(Vec<RelationId>, bool)>,
    ) -> Program {
        for rule in &rules {
            relations[rule.head].derived = true;
            relations[rule.head].writable = false;
        }
        Program {
            relations,
            rules,
            strata: strata
                .into_iter()
                .map(|(relations, recursive)| Stratum {
                    relations,
                    recursive,
                })
                .collect(),
            sources: SourceMap::new(),
        }
    }

    /// The variables of a rule under construction.
    #[derive(Default)]
    struct Vars {
        variables: Vec<Variable>,
    }

    impl Vars {
        fn declare(&mut self, name: &str, ty: Type) -> VarId {
            self.variables.push(Variable {
                name: name.to_string(),
                ty,
            });
            self.variables.len() - 1
        }

        fn rule(self, head: RelationId, head_args: Vec<Expr>, body: Vec<Literal>) -> Rule {
            Rule {
                head,
                head_args,
                body,
                variables: self.variables,
                span: Span::default(),
                text: "<test rule>".to_string(),
            }
        }
    }

    fn fact(head: RelationId, values: &[Value]) -> Rule {
        Vars::default().rule(
            head,
            values.iter().cloned().map(Expr::Const).collect(),
            vec![],
        )
    }

    fn atom(relation: RelationId, args: &[Option<VarId>]) -> Atom {
        Atom {
            relation,
            args: args.to_vec(),
            span: Span::default(),
        }
    }

    fn pos(relation: RelationId, args: &[Option<VarId>]) -> Literal {
        Literal::Positive(atom(relation, args))
    }

    fn neg(relation: RelationId, args: &[Option<VarId>]) -> Literal {
        Literal::Negative(atom(relation, args))
    }

    fn var(var: VarId, ty: Type) -> Expr {
        Expr::Var(var, ty)
    }

    fn num(value: i64) -> Expr {
        Expr::Const(Value::Number(value))
    }

    fn uns(value: u64) -> Expr {
        Expr::Const(Value::Unsigned(value))
    }

    fn flt(value: f64) -> Expr {
        Expr::Const(Value::Float(value))
    }

    fn sym(text: &str) -> Expr {
        Expr::Const(Value::symbol(text))
    }

    /// `lhs op rhs`, typed like its left operand.
    fn op2(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        let ty = lhs.ty();
        Expr::Binary {
            op,
            ty,
            operand: ty,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    fn op1(op: UnaryOp, arg: Expr) -> Expr {
        Expr::Unary {
            op,
            ty: arg.ty(),
            arg: Box::new(arg),
        }
    }

    fn func(function: Function, ty: Type, args: Vec<Expr>) -> Expr {
        Expr::Call { function, ty, args }
    }

    fn cmp(op: CompareOp, lhs: Expr, rhs: Expr) -> Condition {
        Condition::Compare {
            op,
            ty: lhs.ty(),
            lhs,
            rhs,
            span: Span::default(),
        }
    }

    fn assign(var: VarId, expr: Expr) -> Literal {
        Literal::Assign {
            var,
            expr,
            span: Span::default(),
        }
    }

    fn range(var: VarId, ty: Type, from: Expr, to: Expr, step: Option<Expr>) -> Literal {
        Literal::Range {
            var,
            ty,
            from,
            to,
            step,
            span: Span::default(),
        }
    }

    fn aggregate(
        result: VarId,
        kind: AggregateKind,
        ty: Type,
        target: Option<Expr>,
        injected: &[VarId],
        locals: &[VarId],
        body: Vec<Literal>,
    ) -> Literal {
        Literal::Aggregate(Aggregate {
            result,
            kind,
            ty,
            target,
            injected: injected.to_vec(),
            locals: locals.to_vec(),
            body,
            span: Span::default(),
        })
    }

    fn n(value: i64) -> Value {
        Value::Number(value)
    }

    fn u(value: u64) -> Value {
        Value::Unsigned(value)
    }

    fn f(value: f64) -> Value {
        Value::Float(value)
    }

    fn s(text: &str) -> Value {
        Value::symbol(text)
    }

    fn tuples<const N: usize>(rows: impl IntoIterator<Item = [Value; N]>) -> Tuples {
        rows.into_iter().map(|row| row.to_vec()).collect()
    }

    fn numbers<const N: usize>(rows: &[[i64; N]]) -> Tuples {
        rows.iter()
            .map(|row| row.iter().map(|x| Value::Number(*x)).collect())
            .collect()
    }

    fn inputs(entries: Vec<(RelationId, Tuples)>) -> HashMap<RelationId, Tuples> {
        entries.into_iter().collect()
    }

    /// The values `out(x) :- x = expr.` derives: `None` when the expression fails.
    fn value_of(expr: Expr) -> Option<Value> {
        let ty = expr.ty();
        let mut vars = Vars::default();
        let x = vars.declare("x", ty);
        let rule = vars.rule(0, vec![var(x, ty)], vec![assign(x, expr)]);
        let program = program(
            vec![relation("out", &[ty])],
            vec![rule],
            vec![(vec![0], false)],
        );
        let out = evaluate(&program, &HashMap::new()).remove(0);
        assert!(out.len() <= 1, "{out:?}");
        out.into_iter().next().map(|mut row| row.remove(0))
    }

    /// Whether `flag() :- condition.` derives `flag()`.
    fn holds(condition: Condition) -> bool {
        let rule = Vars::default().rule(0, vec![], vec![Literal::Filter(condition)]);
        let program = program(
            vec![relation("flag", &[])],
            vec![rule],
            vec![(vec![0], false)],
        );
        !evaluate(&program, &HashMap::new())[0].is_empty()
    }

    /// The values of `out(x) :- x = range(from, to[, step]).`, in order.
    fn range_of(ty: Type, from: Expr, to: Expr, step: Option<Expr>) -> Vec<Value> {
        let mut vars = Vars::default();
        let x = vars.declare("x", ty);
        let rule = vars.rule(0, vec![var(x, ty)], vec![range(x, ty, from, to, step)]);
        let program = program(
            vec![relation("out", &[ty])],
            vec![rule],
            vec![(vec![0], false)],
        );
        evaluate(&program, &HashMap::new())
            .remove(0)
            .into_iter()
            .map(|mut row| row.remove(0))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Rules.

    #[test]
    fn joins_on_shared_variables() {
        // out(a, name) :- edge(a, b), label(b, name).
        let (edge, label, out) = (0, 1, 2);
        let mut vars = Vars::default();
        let a = vars.declare("a", Type::Number);
        let b = vars.declare("b", Type::Number);
        let name = vars.declare("name", Type::Symbol);
        let rule = vars.rule(
            out,
            vec![var(a, Type::Number), var(name, Type::Symbol)],
            vec![
                pos(edge, &[Some(a), Some(b)]),
                pos(label, &[Some(b), Some(name)]),
            ],
        );
        let program = program(
            vec![
                relation("edge", &[Type::Number, Type::Number]),
                relation("label", &[Type::Number, Type::Symbol]),
                relation("out", &[Type::Number, Type::Symbol]),
            ],
            vec![rule],
            vec![
                (vec![edge], false),
                (vec![label], false),
                (vec![out], false),
            ],
        );
        let result = evaluate(
            &program,
            &inputs(vec![
                (edge, numbers(&[[1, 2], [1, 3], [2, 3], [4, 5]])),
                (
                    label,
                    tuples([[n(2), s("two")], [n(3), s("three")], [n(3), s("drei")]]),
                ),
            ]),
        );
        assert_eq!(
            result[out],
            tuples([
                [n(1), s("two")],
                [n(1), s("three")],
                [n(1), s("drei")],
                [n(2), s("three")],
                [n(2), s("drei")],
            ])
        );
        // The inputs are returned unchanged.
        assert_eq!(result[edge], numbers(&[[1, 2], [1, 3], [2, 3], [4, 5]]));
    }

    #[test]
    fn facts_and_inputs_of_one_relation_are_united() {
        // r(1). r(2). r(x) :- s(x).  with r also fed r(2), r(7).
        let (r, source) = (0, 1);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let copy = vars.rule(r, vec![var(x, Type::Number)], vec![pos(source, &[Some(x)])]);
        let program = program(
            vec![
                relation("r", &[Type::Number]),
                relation("s", &[Type::Number]),
            ],
            vec![fact(r, &[n(1)]), fact(r, &[n(2)]), copy],
            vec![(vec![source], false), (vec![r], false)],
        );
        let result = evaluate(
            &program,
            &inputs(vec![(r, numbers(&[[2], [7]])), (source, numbers(&[[3]]))]),
        );
        assert_eq!(result[r], numbers(&[[1], [2], [3], [7]]));
    }

    /// Transitive closure computed by brute force, to check the evaluator against.
    fn closure(edges: &[[i64; 2]]) -> Tuples {
        let mut reach: BTreeSet<(i64, i64)> = edges.iter().map(|[a, b]| (*a, *b)).collect();
        loop {
            let mut next = reach.clone();
            for (a, b) in &reach {
                for (c, d) in &reach {
                    if b == c {
                        next.insert((*a, *d));
                    }
                }
            }
            if next == reach {
                break;
            }
            reach = next;
        }
        reach.into_iter().map(|(a, b)| vec![n(a), n(b)]).collect()
    }

    /// `path(x, y) :- edge(x, y).` and either `path(x, z) :- path(x, y), edge(y, z).` (linear)
    /// or `path(x, z) :- path(x, y), path(y, z).` (non-linear: both atoms recursive).
    fn transitive_closure(linear: bool) -> Program {
        let (edge, path) = (0, 1);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let base = vars.rule(
            path,
            vec![var(x, Type::Number), var(y, Type::Number)],
            vec![pos(edge, &[Some(x), Some(y)])],
        );
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let z = vars.declare("z", Type::Number);
        let second = if linear { edge } else { path };
        let step = vars.rule(
            path,
            vec![var(x, Type::Number), var(z, Type::Number)],
            vec![
                pos(path, &[Some(x), Some(y)]),
                pos(second, &[Some(y), Some(z)]),
            ],
        );
        program(
            vec![
                relation("edge", &[Type::Number, Type::Number]),
                relation("path", &[Type::Number, Type::Number]),
            ],
            vec![base, step],
            vec![(vec![edge], false), (vec![path], true)],
        )
    }

    #[test]
    fn transitive_closure_of_a_small_graph() {
        let edges = [[1, 2], [2, 3], [3, 1], [3, 4], [5, 6]];
        let expected = numbers(&[
            [1, 1],
            [1, 2],
            [1, 3],
            [1, 4],
            [2, 1],
            [2, 2],
            [2, 3],
            [2, 4],
            [3, 1],
            [3, 2],
            [3, 3],
            [3, 4],
            [5, 6],
        ]);
        for linear in [true, false] {
            let result = evaluate(
                &transitive_closure(linear),
                &inputs(vec![(0, numbers(&edges))]),
            );
            assert_eq!(result[1], expected, "linear: {linear}");
        }
    }

    #[test]
    fn transitive_closure_of_a_pseudo_random_graph() {
        // A linear congruential generator: the same graph every run.
        let mut state: u64 = 12345;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64 % 40
        };
        let edges: Vec<[i64; 2]> = (0..60).map(|_| [next(), next()]).collect();
        let expected = closure(&edges);
        for linear in [true, false] {
            let result = evaluate(
                &transitive_closure(linear),
                &inputs(vec![(0, numbers(&edges))]),
            );
            assert_eq!(result[1], expected, "linear: {linear}");
        }
    }

    #[test]
    fn transitive_closure_of_a_long_chain() {
        // 150 rounds of recursion and 11,325 paths.
        let edges: Vec<[i64; 2]> = (0..150).map(|i| [i, i + 1]).collect();
        let expected: Tuples = (0..=150)
            .flat_map(|i| ((i + 1)..=150).map(move |j| vec![n(i), n(j)]))
            .collect();
        let result = evaluate(
            &transitive_closure(true),
            &inputs(vec![(0, numbers(&edges))]),
        );
        assert_eq!(result[1].len(), 11_325);
        assert_eq!(result[1], expected);
    }

    #[test]
    fn mutual_recursion_through_two_relations() {
        // even(0).  odd(y) :- even(x), succ(x, y).  even(y) :- odd(x), succ(x, y).
        let (succ, even, odd) = (0, 1, 2);
        let step = |from: RelationId, to: RelationId| {
            let mut vars = Vars::default();
            let x = vars.declare("x", Type::Number);
            let y = vars.declare("y", Type::Number);
            vars.rule(
                to,
                vec![var(y, Type::Number)],
                vec![pos(from, &[Some(x)]), pos(succ, &[Some(x), Some(y)])],
            )
        };
        let program = program(
            vec![
                relation("succ", &[Type::Number, Type::Number]),
                relation("even", &[Type::Number]),
                relation("odd", &[Type::Number]),
            ],
            vec![fact(even, &[n(0)]), step(even, odd), step(odd, even)],
            vec![(vec![succ], false), (vec![even, odd], true)],
        );
        let chain: Vec<[i64; 2]> = (0..9).map(|i| [i, i + 1]).collect();
        let result = evaluate(&program, &inputs(vec![(succ, numbers(&chain))]));
        assert_eq!(result[even], numbers(&[[0], [2], [4], [6], [8]]));
        assert_eq!(result[odd], numbers(&[[1], [3], [5], [7], [9]]));
    }

    #[test]
    fn negation_reads_a_complete_earlier_stratum() {
        // reach(x) :- start(x).  reach(y) :- reach(x), edge(x, y).
        // unreached(x) :- node(x), !reach(x).
        // sink(x) :- node(x), !edge(x, _).
        let (node, edge, start, reach, unreached, sink) = (0, 1, 2, 3, 4, 5);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let base = vars.rule(
            reach,
            vec![var(x, Type::Number)],
            vec![pos(start, &[Some(x)])],
        );
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let step = vars.rule(
            reach,
            vec![var(y, Type::Number)],
            vec![pos(reach, &[Some(x)]), pos(edge, &[Some(x), Some(y)])],
        );
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let not_reached = vars.rule(
            unreached,
            vec![var(x, Type::Number)],
            vec![pos(node, &[Some(x)]), neg(reach, &[Some(x)])],
        );
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let no_edge = vars.rule(
            sink,
            vec![var(x, Type::Number)],
            vec![pos(node, &[Some(x)]), neg(edge, &[Some(x), None])],
        );
        let program = program(
            vec![
                relation("node", &[Type::Number]),
                relation("edge", &[Type::Number, Type::Number]),
                relation("start", &[Type::Number]),
                relation("reach", &[Type::Number]),
                relation("unreached", &[Type::Number]),
                relation("sink", &[Type::Number]),
            ],
            vec![base, step, not_reached, no_edge],
            vec![
                (vec![node], false),
                (vec![edge], false),
                (vec![start], false),
                (vec![reach], true),
                (vec![unreached], false),
                (vec![sink], false),
            ],
        );
        let result = evaluate(
            &program,
            &inputs(vec![
                (node, numbers(&[[1], [2], [3], [4], [5]])),
                (edge, numbers(&[[1, 2], [2, 3], [4, 5], [3, 1]])),
                (start, numbers(&[[1]])),
            ]),
        );
        assert_eq!(result[reach], numbers(&[[1], [2], [3]]));
        assert_eq!(result[unreached], numbers(&[[4], [5]]));
        assert_eq!(result[sink], numbers(&[[5]]));
    }

    #[test]
    fn nullary_relations_and_negation_of_a_whole_relation() {
        // some() :- node(_).  none() :- !node(_).  lonely() :- !empty(_).
        let (node, empty, some, none, lonely) = (0, 1, 2, 3, 4);
        let program = program(
            vec![
                relation("node", &[Type::Number]),
                relation("empty", &[Type::Number]),
                relation("some", &[]),
                relation("none", &[]),
                relation("lonely", &[]),
            ],
            vec![
                Vars::default().rule(some, vec![], vec![pos(node, &[None])]),
                Vars::default().rule(none, vec![], vec![neg(node, &[None])]),
                Vars::default().rule(lonely, vec![], vec![neg(empty, &[None])]),
            ],
            vec![
                (vec![node], false),
                (vec![empty], false),
                (vec![some, none, lonely], false),
            ],
        );
        let result = evaluate(&program, &inputs(vec![(node, numbers(&[[1], [2]]))]));
        assert_eq!(result[some], tuples([[]]));
        assert_eq!(result[none], Tuples::new());
        assert_eq!(result[lonely], tuples([[]]));
    }

    #[test]
    fn a_failing_expression_drops_only_its_binding() {
        // quotient(x, y, x / y) :- pair(x, y).   ratio(x, q) :- pair(x, y), q = x % y.
        let (pair, quotient, ratio) = (0, 1, 2);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let in_head = vars.rule(
            quotient,
            vec![
                var(x, Type::Number),
                var(y, Type::Number),
                op2(BinaryOp::Div, var(x, Type::Number), var(y, Type::Number)),
            ],
            vec![pos(pair, &[Some(x), Some(y)])],
        );
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let q = vars.declare("q", Type::Number);
        let in_body = vars.rule(
            ratio,
            vec![var(x, Type::Number), var(q, Type::Number)],
            vec![
                pos(pair, &[Some(x), Some(y)]),
                assign(
                    q,
                    op2(BinaryOp::Mod, var(x, Type::Number), var(y, Type::Number)),
                ),
            ],
        );
        let program = program(
            vec![
                relation("pair", &[Type::Number, Type::Number]),
                relation("quotient", &[Type::Number, Type::Number, Type::Number]),
                relation("ratio", &[Type::Number, Type::Number]),
            ],
            vec![in_head, in_body],
            vec![(vec![pair], false), (vec![quotient, ratio], false)],
        );
        let result = evaluate(
            &program,
            &inputs(vec![(pair, numbers(&[[7, 2], [8, 0], [-7, 3]]))]),
        );
        assert_eq!(result[quotient], numbers(&[[-7, 3, -2], [7, 2, 3]]));
        assert_eq!(result[ratio], numbers(&[[-7, -1], [7, 1]]));
    }

    #[test]
    fn assign_to_a_bound_variable_checks_it() {
        // out(x) :- r(x, y), y = x * 2.   (`y` is already bound: the assignment filters)
        let (r, out) = (0, 1);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let y = vars.declare("y", Type::Number);
        let rule = vars.rule(
            out,
            vec![var(x, Type::Number)],
            vec![
                pos(r, &[Some(x), Some(y)]),
                assign(y, op2(BinaryOp::Mul, var(x, Type::Number), num(2))),
            ],
        );
        let program = program(
            vec![
                relation("r", &[Type::Number, Type::Number]),
                relation("out", &[Type::Number]),
            ],
            vec![rule],
            vec![(vec![r], false), (vec![out], false)],
        );
        let result = evaluate(
            &program,
            &inputs(vec![(r, numbers(&[[1, 2], [2, 5], [3, 6]]))]),
        );
        assert_eq!(result[out], numbers(&[[1], [3]]));
    }

    // -----------------------------------------------------------------------------------------
    // Aggregates.

    /// node(x), edge(x, y), value(y, v) with three nodes; node 3 has no outgoing edge.
    fn aggregate_inputs() -> HashMap<RelationId, Tuples> {
        inputs(vec![
            (0, numbers(&[[1], [2], [3]])),
            (1, numbers(&[[1, 2], [1, 3], [2, 3]])),
            (2, numbers(&[[1, 5], [2, 5], [3, 7]])),
        ])
    }

    /// `out(x, r) :- node(x), r = kind target : { edge(x, y), value(y, v) }.`
    fn grouped(kind: AggregateKind, ty: Type, target: impl Fn(VarId) -> Option<Expr>) -> Tuples {
        let (node, edge, value, out) = (0, 1, 2, 3);
        let mut vars = Vars::default();
        let x = vars.declare("x", Type::Number);
        let result = vars.declare("r", ty);
        let y = vars.declare("y", Type::Number);
        let v = vars.declare("v", Type::Number);
        let rule = vars.rule(
            out,
            vec![var(x, Type::Number), var(result, ty)],
            vec![
                pos(node, &[Some(x)]),
                aggregate(
                    result,
                    kind,
                    ty,
                    target(v),
                    &[x],
                    &[y, v],
                    vec![
                        pos(edge, &[Some(x), Some(y)]),
                        pos(value, &[Some(y), Some(v)]),
                    ],
                ),
            ],
        );
        let program = program(
            vec![
                relation("node", &[Type::Number]),
                relation("edge", &[Type::Number, Type::Number]),
                relation("value", &[Type::Number, Type::Number]),
                relation("out", &[Type::Number, ty]),
            ],
            vec![rule],
            vec![
                (vec![node], false),
                (vec![edge], false),
                (vec![value], false),
                (vec![out], false),
            ],
        );
        evaluate(&program, &aggregate_inputs()).remove(out)
    }

    #[test]
    fn aggregates_per_group_including_empty_groups() {
        let v = |v| Some(var(v, Type::Number));
        assert_eq!(
            grouped(AggregateKind::Count, Type::Number, |_| None),
            numbers(&[[1, 2], [2, 1], [3, 0]])
        );
        assert_eq!(
            grouped(AggregateKind::Sum, Type::Number, v),
            numbers(&[[1, 12], [2, 7], [3, 0]])
        );
        assert_eq!(
            grouped(AggregateKind::Min, Type::Number, v),
            numbers(&[[1, 5], [2, 7]])
        );
        assert_eq!(
            grouped(AggregateKind::Max, Type::Number, v),
            numbers(&[[1, 7], [2, 7]])
        );
        assert_eq!(
            grouped(AggregateKind::Mean, Type::Float, v),
            tuples([[n(1), f(6.0)], [n(2), f(7.0)]])
        );
        // The target is an expression over the body's variables.
        assert_eq!(
            grouped(AggregateKind::Sum, Type::Number, |v| Some(op2(
                BinaryOp::Mul,
                var(v, Type::Number),
                num(10)
            ))),
            numbers(&[[1, 120], [2, 70], [3, 0]])
        );
        // A target that fails for a binding leaves that binding out: 10 / (v - 5).
        assert_eq!(
            grouped(AggregateKind::Sum, Type::Number, |v| Some(op2(
                BinaryOp::Div,
                num(10),
                op2(BinaryOp::Sub, var(v, Type::Number), num(5))
            ))),
            numbers(&[[1, 5], [2, 5], [3, 0]])
        );
    }

    /// `out(r) :- r = kind target : { values(k, v) }` over the given `values` tuples, with
    /// `locals` chosen among `k` (0) and `v` (1).
    fn ungrouped(
        kind: AggregateKind,
        ty: Type,
        value_type: Type,
        locals: &[VarId],
        with_wildcard: bool,
        rows: Tuples,
    ) -> Tuples {
        let (values, out) = (0, 1);
        let mut vars = Vars::default();
        let k = vars.declare("k", Type::Number);
        let v = vars.declare("v", value_type);
        let result = vars.declare("r", ty);
        let target = (kind != AggregateKind::Count).then(|| var(v, value_type));
        let key = if with_wildcard { None } else { Some(k) };
        let rule = vars.rule(
            out,
            vec![var(result, ty)],
            vec![aggregate(
                result,
                kind,
                ty,
                target,
                &[],
                locals,
                vec![pos(values, &[key, Some(v)])],
            )],
        );
        let program = program(
            vec![
                relation("values", &[Type::Number, value_type]),
                relation("out", &[ty]),
            ],
            vec![rule],
            vec![(vec![values], false), (vec![out], false)],
        );
        evaluate(&program, &inputs(vec![(values, rows)])).remove(out)
    }

    #[test]
    fn aggregates_range_over_distinct_bindings() {
        let rows = numbers(&[[1, 5], [2, 5], [3, 7]]);
        // sum v : { values(k, v) } adds v once per tuple ...
        assert_eq!(
            ungrouped(
                AggregateKind::Sum,
                Type::Number,
                Type::Number,
                &[0, 1],
                false,
                rows.clone()
            ),
            numbers(&[[17]])
        );
        // ... but sum v : { values(_, v) } once per distinct v: a wildcard is not a variable,
        // so it does not tell bindings apart. (Soufflé scans the tuples of a single-atom
        // aggregate body, so for parity the checker must turn such wildcards into locals.)
        assert_eq!(
            ungrouped(
                AggregateKind::Sum,
                Type::Number,
                Type::Number,
                &[1],
                true,
                rows.clone()
            ),
            numbers(&[[12]])
        );
        assert_eq!(
            ungrouped(
                AggregateKind::Count,
                Type::Number,
                Type::Number,
                &[1],
                true,
                rows.clone()
            ),
            numbers(&[[2]])
        );
        assert_eq!(
            ungrouped(
                AggregateKind::Count,
                Type::Number,
                Type::Number,
                &[0, 1],
                false,
                rows.clone()
            ),
            numbers(&[[3]])
        );
        assert_eq!(
            ungrouped(
                AggregateKind::Mean,
                Type::Float,
                Type::Number,
                &[0, 1],
                false,
                rows
            ),
            tuples([[f(17.0 / 3.0)]])
        );
    }

    #[test]
    fn aggregates_over_nothing() {
        let none = Tuples::new;
        let run = |kind, ty| ungrouped(kind, ty, Type::Number, &[0, 1], false, none());
        assert_eq!(run(AggregateKind::Count, Type::Number), numbers(&[[0]]));
        assert_eq!(run(AggregateKind::Sum, Type::Number), numbers(&[[0]]));
        assert_eq!(run(AggregateKind::Min, Type::Number), none());
        assert_eq!(run(AggregateKind::Max, Type::Number), none());
        assert_eq!(run(AggregateKind::Mean, Type::Float), none());
        // A sum over nothing is zero in the target's type.
        assert_eq!(
            ungrouped(
                AggregateKind::Sum,
                Type::Float,
                Type::Float,
                &[0, 1],
                false,
                none()
            ),
            tuples([[f(0.0)]])
        );
        assert_eq!(
            ungrouped(
                AggregateKind::Sum,
                Type::Unsigned,
                Type::Unsigned,
                &[0, 1],
                false,
                none()
            ),
            tuples([[u(0)]])
        );
    }

    #[test]
    fn aggregates_in_every_type() {
        let unsigned = tuples([[n(1), u(u64::MAX)], [n(2), u(2)]]);
        let run = |kind, ty, value_type, rows: &Tuples| {
            ungrouped(kind, ty, value_type, &[0, 1], false, rows.clone())
        };
        // `sum` wraps in the target's type.
        assert_eq!(
            run(
                AggregateKind::Sum,
                Type::Unsigned,
                Type::Unsigned,
                &unsigned
            ),
            tuples([[u(1)]])
        );
        assert_eq!(
            run(
                AggregateKind::Max,
                Type::Unsigned,
                Type::Unsigned,
                &unsigned
            ),
            tuples([[u(u64::MAX)]])
        );
        let signed = numbers(&[[1, i64::MAX], [2, 1], [3, -4]]);
        assert_eq!(
            run(AggregateKind::Sum, Type::Number, Type::Number, &signed),
            numbers(&[[i64::MAX - 3]])
        );
        assert_eq!(
            run(AggregateKind::Min, Type::Number, Type::Number, &signed),
            numbers(&[[-4]])
        );
        // `mean` divides the sum, in the target's type, by the count.
        assert_eq!(
            run(AggregateKind::Mean, Type::Float, Type::Number, &signed),
            tuples([[f((i64::MAX - 3) as f64 / 3.0)]])
        );
        let floats = tuples([[n(1), f(0.5)], [n(2), f(-1.25)], [n(3), f(0.25)]]);
        assert_eq!(
            run(AggregateKind::Sum, Type::Float, Type::Float, &floats),
            tuples([[f(-0.5)]])
        );
        assert_eq!(
            run(AggregateKind::Min, Type::Float, Type::Float, &floats),
            tuples([[f(-1.25)]])
        );
        assert_eq!(
            run(AggregateKind::Max, Type::Float, Type::Float, &floats),
            tuples([[f(0.5)]])
        );
        assert_eq!(
            run(AggregateKind::Mean, Type::Float, Type::Float, &floats),
            tuples([[f(-0.5 / 3.0)]])
        );
        let symbols = tuples([[n(1), s("pear")], [n(2), s("apple")], [n(3), s("fig")]]);
        assert_eq!(
            run(AggregateKind::Min, Type::Symbol, Type::Symbol, &symbols),
            tuples([[s("apple")]])
        );
        assert_eq!(
            run(AggregateKind::Max, Type::Symbol, Type::Symbol, &symbols),
            tuples([[s("pear")]])
        );
    }

    // -----------------------------------------------------------------------------------------
    // Ranges.

    #[test]
    fn ranges_of_numbers() {
        let numbers = |values: &[i64]| values.iter().map(|x| n(*x)).collect::<Vec<_>>();
        let run =
            |from, to, step: Option<i64>| range_of(Type::Number, num(from), num(to), step.map(num));
        assert_eq!(run(0, 5, None), numbers(&[0, 1, 2, 3, 4]));
        assert_eq!(run(5, 0, None), numbers(&[1, 2, 3, 4, 5]));
        assert_eq!(run(3, 3, None), numbers(&[]));
        assert_eq!(run(0, 10, Some(3)), numbers(&[0, 3, 6, 9]));
        assert_eq!(run(10, 0, Some(-3)), numbers(&[1, 4, 7, 10]));
        assert_eq!(run(0, 10, Some(-1)), numbers(&[]));
        assert_eq!(run(10, 0, Some(1)), numbers(&[]));
        assert_eq!(run(0, 5, Some(0)), numbers(&[]));
        assert_eq!(run(-2, 1, None), numbers(&[-2, -1, 0]));
        // No overflow at the edges of the type.
        assert_eq!(
            run(i64::MAX - 2, i64::MAX, Some(5)),
            numbers(&[i64::MAX - 2])
        );
        assert_eq!(run(i64::MIN + 1, i64::MIN, None), numbers(&[i64::MIN + 1]));
    }

    #[test]
    fn ranges_of_unsigned_numbers_and_floats() {
        assert_eq!(
            range_of(Type::Unsigned, uns(5), uns(2), None),
            vec![u(3), u(4), u(5)]
        );
        assert_eq!(
            range_of(Type::Unsigned, uns(1), uns(8), Some(uns(3))),
            vec![u(1), u(4), u(7)]
        );
        assert_eq!(
            range_of(Type::Unsigned, uns(8), uns(1), Some(uns(3))),
            vec![]
        );
        assert_eq!(
            range_of(Type::Float, flt(0.0), flt(1.0), Some(flt(0.25))),
            vec![f(0.0), f(0.25), f(0.5), f(0.75)]
        );
        assert_eq!(
            range_of(Type::Float, flt(1.5), flt(-1.0), None),
            vec![f(-0.5), f(0.5), f(1.5)]
        );
        assert_eq!(
            range_of(Type::Float, flt(0.0), flt(1.0), Some(flt(0.0))),
            vec![]
        );
    }

    #[test]
    fn range_bounds_come_from_the_binding() {
        // out(a, x) :- bounds(a, b), x = range(a, b).
        let (bounds, out) = (0, 1);
        let mut vars = Vars::default();
        let a = vars.declare("a", Type::Number);
        let b = vars.declare("b", Type::Number);
        let x = vars.declare("x", Type::Number);
        let rule = vars.rule(
            out,
            vec![var(a, Type::Number), var(x, Type::Number)],
            vec![
                pos(bounds, &[Some(a), Some(b)]),
                range(
                    x,
                    Type::Number,
                    var(a, Type::Number),
                    var(b, Type::Number),
                    None,
                ),
            ],
        );
        let program = program(
            vec![
                relation("bounds", &[Type::Number, Type::Number]),
                relation("out", &[Type::Number, Type::Number]),
            ],
            vec![rule],
            vec![(vec![bounds], false), (vec![out], false)],
        );
        let result = evaluate(
            &program,
            &inputs(vec![(bounds, numbers(&[[1, 3], [10, 8], [5, 5]]))]),
        );
        assert_eq!(result[out], numbers(&[[1, 1], [1, 2], [10, 9], [10, 10]]));
    }

    // -----------------------------------------------------------------------------------------
    // Operators.

    #[test]
    fn arithmetic_on_numbers_wraps_and_fails_on_division_by_zero() {
        use BinaryOp::*;
        let run = |op, a: i64, b: i64| value_of(op2(op, num(a), num(b)));
        assert_eq!(run(Add, 7, 5), Some(n(12)));
        assert_eq!(run(Add, i64::MAX, 1), Some(n(i64::MIN)));
        assert_eq!(run(Sub, 3, 10), Some(n(-7)));
        assert_eq!(run(Sub, i64::MIN, 1), Some(n(i64::MAX)));
        assert_eq!(run(Mul, 6, -7), Some(n(-42)));
        assert_eq!(run(Mul, i64::MAX, 2), Some(n(-2)));
        assert_eq!(run(Div, 7, 2), Some(n(3)));
        assert_eq!(run(Div, -7, 2), Some(n(-3)));
        assert_eq!(run(Div, 7, 0), None);
        assert_eq!(run(Div, i64::MIN, -1), Some(n(i64::MIN)));
        assert_eq!(run(Mod, 7, 3), Some(n(1)));
        assert_eq!(run(Mod, -7, 3), Some(n(-1)));
        assert_eq!(run(Mod, 7, -3), Some(n(1)));
        assert_eq!(run(Mod, 7, 0), None);
        assert_eq!(run(Mod, i64::MIN, -1), Some(n(0)));
        assert_eq!(run(Pow, 2, 10), Some(n(1024)));
        assert_eq!(run(Pow, -3, 3), Some(n(-27)));
        assert_eq!(run(Pow, 0, 0), Some(n(1)));
        assert_eq!(run(Pow, 2, 63), Some(n(i64::MIN)));
        assert_eq!(run(Pow, 2, 64), Some(n(0)));
        assert_eq!(run(Pow, 3, 40), Some(n(3i64.wrapping_pow(40))));
        assert_eq!(run(Pow, 2, -1), Some(n(0)));
        assert_eq!(run(Pow, 0, -1), Some(n(0)));
        assert_eq!(run(Pow, 1, -5), Some(n(1)));
        assert_eq!(run(Pow, -1, -3), Some(n(-1)));
        assert_eq!(run(Pow, -1, -4), Some(n(1)));
        assert_eq!(run(Pow, -2, -2), Some(n(0)));
        // A failure anywhere in the expression fails it: 1 + 1 / 0.
        assert_eq!(value_of(op2(Add, num(1), op2(Div, num(1), num(0)))), None);
    }

    #[test]
    fn arithmetic_on_unsigned_numbers_wraps() {
        use BinaryOp::*;
        let run = |op, a: u64, b: u64| value_of(op2(op, uns(a), uns(b)));
        assert_eq!(run(Add, u64::MAX, 1), Some(u(0)));
        assert_eq!(run(Sub, 0, 1), Some(u(u64::MAX)));
        assert_eq!(run(Mul, 1 << 63, 2), Some(u(0)));
        assert_eq!(run(Div, 7, 2), Some(u(3)));
        assert_eq!(run(Div, 7, 0), None);
        assert_eq!(run(Mod, 7, 4), Some(u(3)));
        assert_eq!(run(Mod, 7, 0), None);
        assert_eq!(run(Pow, 2, 64), Some(u(0)));
        assert_eq!(run(Pow, 3, 4), Some(u(81)));
        assert_eq!(run(Pow, 2, 63), Some(u(1 << 63)));
    }

    #[test]
    fn arithmetic_on_floats() {
        use BinaryOp::*;
        let run = |op, a: f64, b: f64| value_of(op2(op, flt(a), flt(b)));
        assert_eq!(run(Add, 1.5, 2.25), Some(f(3.75)));
        assert_eq!(run(Sub, 1.5, 2.25), Some(f(-0.75)));
        assert_eq!(run(Mul, 1.5, -2.0), Some(f(-3.0)));
        assert_eq!(run(Div, 7.0, 2.0), Some(f(3.5)));
        // Float division by zero is IEEE, not a failure.
        assert_eq!(run(Div, 1.0, 0.0), Some(f(f64::INFINITY)));
        assert_eq!(run(Mod, 7.5, 2.0), Some(f(1.5)));
        assert_eq!(run(Mod, -7.5, 2.0), Some(f(-1.5)));
        assert_eq!(run(Pow, 2.0, 0.5), Some(f(2f64.sqrt())));
        assert_eq!(run(Pow, 2.0, -1.0), Some(f(0.5)));
    }

    #[test]
    fn unary_operators() {
        use UnaryOp::*;
        assert_eq!(value_of(op1(Neg, num(5))), Some(n(-5)));
        assert_eq!(value_of(op1(Neg, num(i64::MIN))), Some(n(i64::MIN)));
        assert_eq!(value_of(op1(Neg, uns(1))), Some(u(u64::MAX)));
        assert_eq!(value_of(op1(Neg, flt(2.5))), Some(f(-2.5)));
        assert_eq!(value_of(op1(BitNot, num(0))), Some(n(-1)));
        assert_eq!(value_of(op1(BitNot, num(5))), Some(n(-6)));
        assert_eq!(value_of(op1(BitNot, uns(0))), Some(u(u64::MAX)));
        assert_eq!(value_of(op1(LogicalNot, num(0))), Some(n(1)));
        assert_eq!(value_of(op1(LogicalNot, num(-3))), Some(n(0)));
        assert_eq!(value_of(op1(LogicalNot, uns(0))), Some(u(1)));
        assert_eq!(value_of(op1(LogicalNot, uns(9))), Some(u(0)));
    }

    #[test]
    fn bitwise_operators() {
        use BinaryOp::*;
        let run = |op, a: i64, b: i64| value_of(op2(op, num(a), num(b)));
        assert_eq!(run(BitAnd, 12, 10), Some(n(8)));
        assert_eq!(run(BitOr, 12, 10), Some(n(14)));
        assert_eq!(run(BitXor, 12, 10), Some(n(6)));
        assert_eq!(run(BitAnd, -1, 0x55), Some(n(0x55)));
        assert_eq!(run(ShiftLeft, 1, 3), Some(n(8)));
        assert_eq!(run(ShiftLeft, 1, 63), Some(n(i64::MIN)));
        // The amount is taken modulo 64.
        assert_eq!(run(ShiftLeft, 1, 64), Some(n(1)));
        assert_eq!(run(ShiftLeft, 1, 65), Some(n(2)));
        assert_eq!(run(ShiftLeft, 1, -1), Some(n(i64::MIN)));
        assert_eq!(run(ShiftLeft, 3, 63), Some(n(i64::MIN)));
        // `bshr` is arithmetic on numbers; `bshru` logical.
        assert_eq!(run(ShiftRight, -16, 2), Some(n(-4)));
        assert_eq!(run(ShiftRight, 16, 2), Some(n(4)));
        assert_eq!(run(ShiftRight, -16, 66), Some(n(-4)));
        assert_eq!(run(ShiftRightUnsigned, -16, 60), Some(n(15)));
        assert_eq!(run(ShiftRightUnsigned, -1, 1), Some(n(i64::MAX)));
        let run = |op, a: u64, b: u64| value_of(op2(op, uns(a), uns(b)));
        assert_eq!(run(BitAnd, 12, 10), Some(u(8)));
        assert_eq!(run(BitOr, 12, 10), Some(u(14)));
        assert_eq!(run(BitXor, u64::MAX, 1), Some(u(u64::MAX - 1)));
        assert_eq!(run(ShiftLeft, 1, 64 + 63), Some(u(1 << 63)));
        assert_eq!(run(ShiftRight, 1 << 63, 63), Some(u(1)));
        assert_eq!(run(ShiftRightUnsigned, 1 << 63, 62), Some(u(2)));
    }

    #[test]
    fn logical_operators() {
        use BinaryOp::*;
        let run = |op, a: i64, b: i64| value_of(op2(op, num(a), num(b)));
        assert_eq!(run(LogicalAnd, 3, 0), Some(n(0)));
        assert_eq!(run(LogicalAnd, 3, -2), Some(n(1)));
        assert_eq!(run(LogicalOr, 0, 0), Some(n(0)));
        assert_eq!(run(LogicalOr, 0, 5), Some(n(1)));
        assert_eq!(run(LogicalXor, 3, 4), Some(n(0)));
        assert_eq!(run(LogicalXor, 0, 4), Some(n(1)));
        assert_eq!(run(LogicalXor, 0, 0), Some(n(0)));
        assert_eq!(value_of(op2(LogicalAnd, uns(2), uns(7))), Some(u(1)));
        assert_eq!(value_of(op2(LogicalOr, uns(0), uns(0))), Some(u(0)));
    }

    // -----------------------------------------------------------------------------------------
    // Functors.

    #[test]
    fn string_functors() {
        let cat = |parts: &[&str]| {
            value_of(func(
                Function::Cat,
                Type::Symbol,
                parts.iter().map(|part| sym(part)).collect(),
            ))
        };
        assert_eq!(cat(&["ab", "", "cd"]), Some(s("abcd")));
        assert_eq!(cat(&["x"]), Some(s("x")));
        let strlen = |text| value_of(func(Function::Strlen, Type::Number, vec![sym(text)]));
        assert_eq!(strlen(""), Some(n(0)));
        assert_eq!(strlen("hello"), Some(n(5)));
        assert_eq!(strlen("héllo"), Some(n(6)));
        let ord = value_of(func(Function::Ord, Type::Number, vec![sym("x")]));
        assert_eq!(ord, Some(n(Interner::id_of("x") as i64)));
    }

    #[test]
    fn substr_edge_cases() {
        let substr = |text, start, length| {
            value_of(func(
                Function::Substr,
                Type::Symbol,
                vec![sym(text), num(start), num(length)],
            ))
        };
        assert_eq!(substr("Hello_", 2, 3), Some(s("llo")));
        assert_eq!(substr("World!", 3, 6), Some(s("ld!")));
        assert_eq!(substr("abc", 0, 3), Some(s("abc")));
        assert_eq!(substr("abc", 1, 10), Some(s("bc")));
        assert_eq!(substr("abc", 1, -1), Some(s("bc")));
        assert_eq!(substr("abc", 0, 0), Some(s("")));
        assert_eq!(substr("abc", 3, 1), Some(s("")));
        assert_eq!(substr("abc", 4, 1), Some(s("")));
        assert_eq!(substr("abc", -1, 2), Some(s("")));
        assert_eq!(substr("", 0, 5), Some(s("")));
        // Half a character decodes lossily.
        assert_eq!(substr("é!", 0, 1), Some(s("\u{FFFD}")));
        assert_eq!(substr("é!", 1, 2), Some(s("\u{FFFD}!")));
    }

    #[test]
    fn to_string_prints_like_cpp() {
        let to_string = |arg| value_of(func(Function::ToString, Type::Symbol, vec![arg]));
        assert_eq!(to_string(flt(2.5)), Some(s("2.500000")));
        assert_eq!(to_string(flt(-0.125)), Some(s("-0.125000")));
        assert_eq!(to_string(flt(1.0 / 3.0)), Some(s("0.333333")));
        assert_eq!(
            to_string(flt(1e20)),
            Some(s("100000000000000000000.000000"))
        );
        assert_eq!(to_string(flt(f64::INFINITY)), Some(s("inf")));
        assert_eq!(to_string(num(-42)), Some(s("-42")));
        assert_eq!(to_string(num(i64::MIN)), Some(s("-9223372036854775808")));
        assert_eq!(to_string(uns(u64::MAX)), Some(s("18446744073709551615")));
        assert_eq!(to_string(sym("as is")), Some(s("as is")));
    }

    #[test]
    fn conversions_between_types() {
        let to_number = |arg| value_of(func(Function::ToNumber, Type::Number, vec![arg]));
        assert_eq!(to_number(sym("123")), Some(n(123)));
        assert_eq!(to_number(sym("-42")), Some(n(-42)));
        assert_eq!(to_number(sym("+7")), Some(n(7)));
        assert_eq!(to_number(sym("0x1F")), Some(n(31)));
        assert_eq!(to_number(sym("0b101")), Some(n(5)));
        assert_eq!(to_number(sym("-0x10")), Some(n(-16)));
        assert_eq!(to_number(sym("-9223372036854775808")), Some(n(i64::MIN)));
        assert_eq!(to_number(sym("9223372036854775808")), None);
        assert_eq!(to_number(sym("12a")), None);
        assert_eq!(to_number(sym("")), None);
        assert_eq!(to_number(sym("-")), None);
        assert_eq!(to_number(sym("0x")), None);
        assert_eq!(to_number(sym(" 1")), None);
        assert_eq!(to_number(sym("1.5")), None);
        assert_eq!(to_number(sym("0x+5")), None);
        assert_eq!(to_number(flt(2.9)), Some(n(2)));
        assert_eq!(to_number(flt(-2.9)), Some(n(-2)));
        assert_eq!(to_number(flt(1e300)), Some(n(i64::MAX)));
        assert_eq!(to_number(flt(f64::NAN)), Some(n(0)));
        assert_eq!(to_number(uns(u64::MAX)), Some(n(-1)));

        let to_unsigned = |arg| value_of(func(Function::ToUnsigned, Type::Unsigned, vec![arg]));
        assert_eq!(to_unsigned(sym("18446744073709551615")), Some(u(u64::MAX)));
        assert_eq!(to_unsigned(sym("-1")), None);
        assert_eq!(to_unsigned(num(-1)), Some(u(u64::MAX)));
        assert_eq!(to_unsigned(flt(-2.5)), Some(u(0)));
        assert_eq!(to_unsigned(flt(7.9)), Some(u(7)));

        let to_float = |arg| value_of(func(Function::ToFloat, Type::Float, vec![arg]));
        assert_eq!(to_float(sym("2.5")), Some(f(2.5)));
        assert_eq!(to_float(sym("-1e3")), Some(f(-1000.0)));
        assert_eq!(to_float(sym("0x10")), Some(f(16.0)));
        assert_eq!(to_float(sym("abc")), None);
        assert_eq!(to_float(num(-3)), Some(f(-3.0)));
        assert_eq!(to_float(uns(7)), Some(f(7.0)));
    }

    #[test]
    fn min_max_and_abs() {
        let call = |function, ty, args| value_of(func(function, ty, args));
        assert_eq!(
            call(Function::Max, Type::Number, vec![num(3), num(9), num(-4)]),
            Some(n(9))
        );
        assert_eq!(
            call(Function::Min, Type::Number, vec![num(3), num(9), num(-4)]),
            Some(n(-4))
        );
        assert_eq!(
            call(Function::Max, Type::Unsigned, vec![uns(3), uns(u64::MAX)]),
            Some(u(u64::MAX))
        );
        assert_eq!(
            call(Function::Min, Type::Float, vec![flt(0.5), flt(-2.5)]),
            Some(f(-2.5))
        );
        assert_eq!(
            call(Function::Max, Type::Symbol, vec![sym("b"), sym("abc")]),
            Some(s("b"))
        );
        assert_eq!(
            call(Function::Min, Type::Symbol, vec![sym("b"), sym("abc")]),
            Some(s("abc"))
        );
        assert_eq!(call(Function::Abs, Type::Number, vec![num(-5)]), Some(n(5)));
        assert_eq!(
            call(Function::Abs, Type::Number, vec![num(i64::MIN)]),
            Some(n(i64::MIN))
        );
        assert_eq!(
            call(Function::Abs, Type::Unsigned, vec![uns(7)]),
            Some(u(7))
        );
        assert_eq!(
            call(Function::Abs, Type::Float, vec![flt(-2.5)]),
            Some(f(2.5))
        );
    }

    // -----------------------------------------------------------------------------------------
    // Conditions.

    #[test]
    fn contains_and_match() {
        let contains = |needle, haystack| {
            holds(Condition::Contains {
                needle: sym(needle),
                haystack: sym(haystack),
                span: Span::default(),
            })
        };
        assert!(contains("ell", "hello"));
        assert!(contains("", "hello"));
        assert!(contains("hello", "hello"));
        assert!(!contains("hello!", "hello"));
        assert!(!contains("xyz", "hello"));

        let matches = |pattern, text| {
            holds(Condition::Match {
                pattern: sym(pattern),
                text: sym(text),
                span: Span::default(),
            })
        };
        assert!(matches("a.*", "abc"));
        assert!(matches("[0-9]+", "2024"));
        // The whole text must match.
        assert!(!matches("a", "ab"));
        assert!(!matches("b", "ab"));
        assert!(!matches("[0-9]+", "v2024"));
        assert!(matches("a|ab", "ab"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        // An invalid pattern matches nothing, even text it would match if it were wrapped.
        assert!(!matches("[", "["));
        assert!(!matches("a)|(b", "a"));
    }

    #[test]
    fn comparisons_of_symbols_are_by_bytes() {
        use CompareOp::*;
        let run = |op, a, b| holds(cmp(op, sym(a), sym(b)));
        assert!(run(Lt, "apple", "banana"));
        assert!(run(Lt, "B", "a"));
        assert!(run(Lt, "ab", "abc"));
        assert!(run(Gt, "b", "abc"));
        assert!(run(Gt, "é", "z"));
        assert!(run(Le, "x", "x"));
        assert!(run(Ge, "x", "x"));
        assert!(run(Eq, "x", "x"));
        assert!(!run(Eq, "x", "X"));
        assert!(run(Ne, "x", "y"));
        assert!(!run(Lt, "b", "a"));
        assert!(!run(Gt, "", ""));
    }

    #[test]
    fn comparisons_of_numbers() {
        use CompareOp::*;
        assert!(holds(cmp(Lt, num(-1), num(0))));
        assert!(!holds(cmp(Lt, num(0), num(-1))));
        assert!(holds(cmp(Gt, uns(u64::MAX), uns(0))));
        assert!(holds(cmp(Le, num(3), num(3))));
        assert!(!holds(cmp(Ne, num(3), num(3))));
        assert!(holds(cmp(Lt, flt(-0.5), flt(0.25))));
        // Floats compare as numbers: the two zeros are equal, NaN is equal to nothing.
        assert!(holds(cmp(Eq, flt(0.0), flt(-0.0))));
        assert!(!holds(cmp(Ne, flt(0.0), flt(-0.0))));
        assert!(!holds(cmp(Eq, flt(f64::NAN), flt(f64::NAN))));
        assert!(holds(cmp(Ne, flt(f64::NAN), flt(f64::NAN))));
        assert!(!holds(cmp(Lt, flt(f64::NAN), flt(1.0))));
        assert!(!holds(cmp(Ge, flt(1.0), flt(f64::NAN))));
        assert!(holds(Condition::Bool(true, Span::default())));
        assert!(!holds(Condition::Bool(false, Span::default())));
    }

    // -----------------------------------------------------------------------------------------
    // Programs from source, through the parser and the checker.

    /// Compiles `text`, feeds `inputs` (by relation name) and returns the named relation.
    fn run_source(text: &str, inputs: &[(&str, Tuples)], output: &str) -> Tuples {
        let program = match crate::compile_source("test.dl", text) {
            Ok(program) => program,
            Err(diagnostics) => panic!("{diagnostics}"),
        };
        let inputs = inputs
            .iter()
            .map(|(name, tuples)| (relation_id(&program, name), tuples.clone()))
            .collect();
        evaluate(&program, &inputs).swap_remove(relation_id(&program, output))
    }

    fn relation_id(program: &Program, name: &str) -> RelationId {
        match program.relation(name) {
            Some(relation) => relation,
            None => panic!("no relation `{name}`"),
        }
    }

    #[test]
    fn compiled_transitive_closure() {
        let text = "
            .decl edge(x: number, y: number)
            .input edge
            .decl path(x: number, y: number)
            .output path
            path(x, y) :- edge(x, y).
            path(x, z) :- path(x, y), edge(y, z).
        ";
        let edges = [[1, 2], [2, 3], [3, 1], [3, 4], [5, 6]];
        assert_eq!(
            run_source(text, &[("edge", numbers(&edges))], "path"),
            closure(&edges)
        );
    }

    #[test]
    fn compiled_aggregates() {
        let text = r#"
            .decl node(x: number)
            node(1). node(2). node(3).
            .decl edge(x: number, y: number)
            edge(1, 2). edge(1, 3). edge(2, 3).
            .decl weight(x: number, w: number)
            weight(1, 5). weight(2, 5). weight(3, 7).
            .decl degree(x: number, d: number)
            degree(x, d) :- node(x), d = count : { edge(x, y) }.
            .decl heaviest(x: number, w: number)
            heaviest(x, w) :- node(x), w = max v : { edge(x, y), weight(y, v) }.
            .decl average(m: float)
            average(m) :- m = mean to_float(w) : { weight(x, w) }.
        "#;
        assert_eq!(
            run_source(text, &[], "degree"),
            numbers(&[[1, 2], [2, 1], [3, 0]])
        );
        assert_eq!(
            run_source(text, &[], "heaviest"),
            numbers(&[[1, 7], [2, 7]])
        );
        assert_eq!(run_source(text, &[], "average"), tuples([[f(17.0 / 3.0)]]));
    }

    #[test]
    fn compiled_negation_and_functors() {
        let text = r#"
            .decl name(id: number, text: symbol)
            .input name
            .decl banned(text: symbol)
            banned("mallory").
            .decl greeting(id: number, text: symbol)
            greeting(id, cat("hello, ", substr(t, 0, 3), "!")) :-
                name(id, t), !banned(t), strlen(t) > 3, contains("a", t) ; name(id, t), match("z.*", t).
        "#;
        let names = tuples([
            [n(1), s("alice")],
            [n(2), s("mallory")],
            [n(3), s("bob")],
            [n(4), s("zed")],
            [n(5), s("oscar")],
        ]);
        assert_eq!(
            run_source(text, &[("name", names)], "greeting"),
            tuples([
                [n(1), s("hello, ali!")],
                [n(4), s("hello, zed!")],
                [n(5), s("hello, osc!")],
            ])
        );
    }

    #[test]
    fn compiled_mutual_recursion_ranges_and_eqrel() {
        let text = "
            .decl limit(n: number)
            limit(10).
            .decl succ(x: number, y: number)
            succ(x, x + 1) :- limit(n), x = range(0, n).
            .decl even(x: number)
            .decl odd(x: number)
            even(0).
            odd(y) :- even(x), succ(x, y).
            even(y) :- odd(x), succ(x, y).
            .decl same(x: number, y: number) eqrel
            same(x, y) :- succ(x, y), x >= 7.
        ";
        assert_eq!(
            run_source(text, &[], "even"),
            numbers(&[[0], [2], [4], [6], [8], [10]])
        );
        assert_eq!(
            run_source(text, &[], "odd"),
            numbers(&[[1], [3], [5], [7], [9]])
        );
        let group = [7, 8, 9, 10];
        let expected: Vec<[i64; 2]> = group
            .iter()
            .flat_map(|x| group.iter().map(move |y| [*x, *y]))
            .collect();
        assert_eq!(run_source(text, &[], "same"), numbers(&expected));
    }
}
