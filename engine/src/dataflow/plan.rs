//! Planning: each checked rule as a pipeline of dataflow steps over row positions.
//!
//! A rule body is evaluated left to right (the checker ordered it). The planner follows that
//! order and tracks the *layout* of the intermediate rows: which variable sits at which
//! position. Each literal becomes a step:
//!
//! - the first positive atom is a scan of its relation; later positive atoms are joins, keyed
//!   on the variables already bound, against an arrangement of the relation by those columns
//!   (arrangements are shared by every rule that needs the same relation and columns);
//! - a negated atom is an antijoin against the distinct projection of its relation;
//! - filters, assignments and ranges are maps over rows;
//! - an aggregate is a sub-pipeline that ends in a `reduce` per binding of its injected
//!   variables, joined back. A body of one atom and row-level literals (the usual `sum x :
//!   { r(k, x) }`) scans its relation on its own and is reduced for every binding it has; any
//!   other body starts from the distinct bindings of the enclosing rows, so that it is
//!   evaluated only for them.
//!
//! After each step, variables that nothing later reads are projected away, so that rows stay
//! narrow. That projection can make two intermediate rows equal; the multiplicities that
//! follow are harmless because every relation is made distinct at the end (aggregates count
//! distinct bindings and keep all their variables until then).
//!
//! The plan has a text form (`Plan::describe`), one line per step.

use super::eval::{self, Compiled, CompiledCondition};
use crate::ir::{self, RelationId, RuleId, VarId};
use crate::syntax::ast::{AggregateKind, BinaryOp, CompareOp, UnaryOp};
use crate::value::{Interner, Type, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The plan of a whole program.
#[derive(Clone, Debug)]
pub struct Plan {
    pub rules: Vec<RulePlan>,
    /// The clock comparisons of the rules that read the clock only through them (see
    /// [`Timer`]).
    pub timers: Vec<Timer>,
    /// The widest row any step makes, in words.
    pub width: usize,
}

#[derive(Clone, Debug)]
pub struct RulePlan {
    pub rule: RuleId,
    pub head: RelationId,
    pub pipeline: Pipeline,
    /// The head tuple, computed from the pipeline's final rows.
    pub head_args: Vec<Compiled>,
    /// The clock relation, if the rule reads it only as one top-level atom whose time is
    /// compared, each comparison a [`Timer`] of [`Plan::timers`]: then the rule's result
    /// changes with the clock only when some comparison changes its truth.
    pub clock: Option<RelationId>,
}

/// A comparison of the time `t` of the clock with what the rest of a rule binds, of the form
/// `sign * t + offset  op  bound` (in wrapping arithmetic, as the rule computes it): its truth
/// for each binding changes only where `sign * t + offset` passes `bound`, or wraps.
///
/// `bounds` is a pipeline of the rule's other literals (the clock's atom and its comparisons
/// left out), whose head is `(offset, bound)` for each binding: from those rows the runtime
/// tells whether the clock's move from one time to another can change the rule's result at
/// all, and feeds the new time to the rule's dataflow only if it can.
#[derive(Clone, Debug)]
pub struct Timer {
    /// The rule (an index into [`Plan::rules`]).
    pub rule: usize,
    pub bounds: RulePlan,
    pub sign: i64,
    pub op: CompareOp,
}

/// Whether the comparison of a timer of `sign` and `op` holds alike, for a binding with
/// `offset` and `bound`, at every time from `from` to `to` (in either order).
pub fn steady(sign: i64, op: CompareOp, offset: i64, bound: i64, from: i64, to: i64) -> bool {
    let side = |t: i64| i128::from(sign) * i128::from(t) + i128::from(offset);
    let (a, b) = (side(from), side(to));
    let (low, high) = (a.min(b), a.max(b));
    // The values the side takes, as the rule computes it (wrapping): one run, two where it
    // wraps past the largest number, or all of them. (A cast from 128 bits wraps.)
    let turn = |x: i128| (x - i128::from(i64::MIN)).div_euclid(1 << 64);
    let runs: &[(i64, i64)] = if high - low >= (1 << 64) - 1 {
        &[(i64::MIN, i64::MAX)]
    } else if turn(low) == turn(high) {
        &[(low as i64, high as i64)]
    } else {
        &[(low as i64, i64::MAX), (i64::MIN, high as i64)]
    };
    match op {
        // Not monotone: steady where the side takes one value, or never `bound`.
        CompareOp::Eq | CompareOp::Ne => {
            runs == [(low as i64, low as i64)]
                || runs
                    .iter()
                    .all(|&(first, last)| bound < first || bound > last)
        }
        // Monotone along each run: steady where the ends of every run agree.
        _ => {
            let holds = |v: i64| match op {
                CompareOp::Lt => v < bound,
                CompareOp::Le => v <= bound,
                CompareOp::Gt => v > bound,
                _ => v >= bound,
            };
            let first = holds(runs[0].0);
            runs.iter()
                .all(|&(start, end)| holds(start) == first && holds(end) == first)
        }
    }
}

/// A start and a sequence of steps.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub start: Start,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub enum Start {
    /// One empty row.
    Unit,
    /// The tuples of a relation, projected to `columns` (`identity`: all of them, in order).
    Scan {
        relation: RelationId,
        columns: Vec<usize>,
        identity: bool,
    },
    /// The rows of the enclosing pipeline, projected to these positions and made distinct (the
    /// start of an aggregate's body).
    Outer,
}

#[derive(Clone, Debug)]
pub enum Step {
    /// Rows whose words at `row_key` equal a tuple's `columns`; the output is the row's `keep`
    /// positions followed by the tuple's `take` columns.
    Join {
        relation: RelationId,
        row_key: Vec<usize>,
        columns: Vec<usize>,
        keep: Vec<usize>,
        take: Vec<usize>,
    },
    /// Rows with no tuple whose `columns` equal the row's `row_key`.
    Antijoin {
        relation: RelationId,
        row_key: Vec<usize>,
        columns: Vec<usize>,
        /// Whether `columns` are all the relation's columns, in order: then the relation is
        /// its own projection, distinct already.
        whole: bool,
    },
    Filter(CompiledCondition),
    /// Writes the value of the expression at position `at`, the end of the row (rows where it
    /// fails are dropped).
    Assign {
        at: usize,
        expr: Compiled,
    },
    /// Writes each value of the range at position `at`, the end of the row.
    Range {
        at: usize,
        ty: Type,
        from: Compiled,
        to: Compiled,
        step: Option<Compiled>,
    },
    /// Keeps these positions, in this order.
    Project(Vec<usize>),
    /// Appends the aggregate's value for the row's `keys` (rows without one are dropped).
    Aggregate(Box<AggregatePlan>),
}

#[derive(Clone, Debug)]
pub struct AggregatePlan {
    pub kind: AggregateKind,
    /// The result type.
    pub ty: Type,
    /// The target's type (the result type except for `mean`).
    pub target_ty: Type,
    /// Positions of the injected variables in the enclosing rows.
    pub keys: Vec<usize>,
    /// Where the result is written: the end of the enclosing row.
    pub at: usize,
    /// The body: starting from rows of the injected variables (in `keys` order), or with
    /// `standalone` from its own atom.
    pub body: Pipeline,
    /// Whether the body binds the injected variables itself (see [`standalone`]): then it
    /// is evaluated for every binding it has, and no distinct bindings of the enclosing rows
    /// are made for it.
    pub standalone: bool,
    /// Positions of the injected variables in the body's final rows.
    pub body_keys: Vec<usize>,
    /// Positions of the local variables in the body's final rows.
    pub body_locals: Vec<usize>,
    /// The target over the body's final rows.
    pub target: Option<Compiled>,
}

/// Plans every rule of a program.
pub fn plan(program: &ir::Program, interner: &Interner) -> Result<Plan, String> {
    let mut width = program
        .relations
        .iter()
        .map(ir::Relation::arity)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut rules = Vec::new();
    let mut timers = Vec::new();
    for (index, rule) in program.rules.iter().enumerate() {
        let mut planner = Planner { interner, width: 0 };
        let head_vars = variables_of_exprs(&rule.head_args);
        let (pipeline, layout) = planner.pipeline(&rule.body, Vec::new(), false, &head_vars)?;
        let position = |var: VarId| layout.iter().position(|&v| v == var).unwrap_or(usize::MAX);
        let head_args = rule
            .head_args
            .iter()
            .map(|arg| eval::compile(arg, &position, interner))
            .collect::<Result<Vec<_>, _>>()?;
        width = width.max(planner.width);
        let mut clock = None;
        if let Some(found) = clock_comparisons(program, rule) {
            for comparison in found.comparisons {
                let mut planner = Planner { interner, width: 0 };
                let live =
                    variables_of_exprs(&[comparison.offset.clone(), comparison.bound.clone()]);
                let (pipeline, layout) = planner.pipeline(&found.rest, Vec::new(), false, &live)?;
                let position =
                    |var: VarId| layout.iter().position(|&v| v == var).unwrap_or(usize::MAX);
                let head_args = [&comparison.offset, &comparison.bound]
                    .into_iter()
                    .map(|arg| eval::compile(arg, &position, interner))
                    .collect::<Result<Vec<_>, _>>()?;
                width = width.max(planner.width).max(2);
                timers.push(Timer {
                    rule: rules.len(),
                    bounds: RulePlan {
                        rule: index,
                        head: rule.head,
                        pipeline,
                        head_args,
                        clock: None,
                    },
                    sign: comparison.sign,
                    op: comparison.op,
                });
            }
            clock = Some(found.clock);
        }
        rules.push(RulePlan {
            rule: index,
            head: rule.head,
            pipeline,
            head_args,
            clock,
        });
    }
    Ok(Plan {
        rules,
        timers,
        width,
    })
}

/// A rule's reading of the clock, when it is only through comparisons (see [`Timer`]).
struct ClockReading {
    clock: RelationId,
    comparisons: Vec<Comparison>,
    /// The rule's body without the clock's atom and the comparisons.
    rest: Vec<ir::Literal>,
}

/// `sign * t + offset  op  bound`, with `offset` the side of `t` at `t = 0`.
struct Comparison {
    sign: i64,
    offset: ir::Expr,
    op: CompareOp,
    bound: ir::Expr,
}

/// How `rule` reads the clock, if it reads it as one top-level atom `clock(t)` and reads `t`
/// only in comparisons of `number`s where `t` appears once, under `+`, `-` and negation.
fn clock_comparisons(program: &ir::Program, rule: &ir::Rule) -> Option<ClockReading> {
    let clock = program.relations.iter().position(|r| r.feed.clock)?;
    let mentions =
        |body: &[ir::Literal]| body.iter().any(|literal| mentions_relation(literal, clock));
    let atoms: Vec<usize> = (0..rule.body.len())
        .filter(|&i| matches!(&rule.body[i], ir::Literal::Positive(atom) if atom.relation == clock))
        .collect();
    let [at] = atoms[..] else { return None };
    let ir::Literal::Positive(atom) = &rule.body[at] else {
        return None;
    };
    let time = atom.args.first().copied().flatten();
    let mut comparisons = Vec::new();
    let mut rest = Vec::new();
    for (index, literal) in rule.body.iter().enumerate() {
        if index == at {
            continue;
        }
        let Some(time) = time else {
            rest.push(literal.clone());
            continue;
        };
        let mut read = BTreeSet::new();
        reads(literal, &mut read);
        if !read.contains(&time) {
            rest.push(literal.clone());
            continue;
        }
        let ir::Literal::Filter(ir::Condition::Compare {
            op,
            ty: Type::Number,
            lhs,
            rhs,
            ..
        }) = literal
        else {
            return None;
        };
        let (left, right) = (linear(lhs, time)?, linear(rhs, time)?);
        let (sign, side, op, bound) = match (left, right) {
            (0, 0) => return None,
            (sign, 0) => (sign, lhs, *op, rhs),
            (0, sign) => (sign, rhs, mirror(*op), lhs),
            _ => return None,
        };
        comparisons.push(Comparison {
            sign,
            offset: at_zero(side, time),
            op,
            bound: bound.clone(),
        });
    }
    let in_head = time.is_some_and(|time| variables_of_exprs(&rule.head_args).contains(&time));
    if in_head || mentions(&rest) {
        return None;
    }
    Some(ClockReading {
        clock,
        comparisons,
        rest,
    })
}

/// Whether `literal` reads `relation`, in an atom or inside an aggregate.
fn mentions_relation(literal: &ir::Literal, relation: RelationId) -> bool {
    match literal {
        ir::Literal::Positive(atom) | ir::Literal::Negative(atom) => atom.relation == relation,
        ir::Literal::Aggregate(aggregate) => aggregate
            .body
            .iter()
            .any(|literal| mentions_relation(literal, relation)),
        _ => false,
    }
}

/// The coefficient of `time` in `expr` (0, 1 or -1) when `expr` is `time` under `+`, `-` and
/// negation of `number`s, at most once; `None` when `time` appears otherwise.
fn linear(expr: &ir::Expr, time: VarId) -> Option<i64> {
    let mut reads_time = false;
    expr.visit_variables(&mut |var| reads_time |= var == time);
    if !reads_time {
        return Some(0);
    }
    match expr {
        ir::Expr::Var(_, Type::Number) => Some(1),
        ir::Expr::Unary {
            op: UnaryOp::Neg,
            ty: Type::Number,
            arg,
        } => Some(-linear(arg, time)?),
        ir::Expr::Binary {
            op: op @ (BinaryOp::Add | BinaryOp::Sub),
            ty: Type::Number,
            operand: Type::Number,
            lhs,
            rhs,
        } => {
            let (left, right) = (linear(lhs, time)?, linear(rhs, time)?);
            let right = if *op == BinaryOp::Sub { -right } else { right };
            match (left, right) {
                (0, sign) | (sign, 0) => Some(sign),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `expr` with `time` replaced by 0.
fn at_zero(expr: &ir::Expr, time: VarId) -> ir::Expr {
    match expr {
        ir::Expr::Var(var, _) if *var == time => ir::Expr::Const(Value::Number(0)),
        ir::Expr::Unary { op, ty, arg } => ir::Expr::Unary {
            op: *op,
            ty: *ty,
            arg: Box::new(at_zero(arg, time)),
        },
        ir::Expr::Binary {
            op,
            ty,
            operand,
            lhs,
            rhs,
        } => ir::Expr::Binary {
            op: *op,
            ty: *ty,
            operand: *operand,
            lhs: Box::new(at_zero(lhs, time)),
            rhs: Box::new(at_zero(rhs, time)),
        },
        other => other.clone(),
    }
}

/// The comparison with its sides swapped: `a op b` is `b (mirror op) a`.
fn mirror(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Le => CompareOp::Ge,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Ge => CompareOp::Le,
        other => other,
    }
}

struct Planner<'a> {
    interner: &'a Interner,
    width: usize,
}

impl Planner<'_> {
    /// Plans `body`, starting from rows with `layout` (empty: a unit row, unless the first
    /// literal is an atom; `outer`: the rows of an enclosing pipeline). `live_after` are the
    /// variables read after the body. Returns the pipeline and its final layout.
    fn pipeline(
        &mut self,
        body: &[ir::Literal],
        mut layout: Vec<VarId>,
        outer: bool,
        live_after: &BTreeSet<VarId>,
    ) -> Result<(Pipeline, Vec<VarId>), String> {
        // live[i]: variables read by literals after i, and after the body.
        let mut live = vec![live_after.clone(); body.len() + 1];
        for index in (0..body.len()).rev() {
            let mut set = live[index + 1].clone();
            reads(&body[index], &mut set);
            live[index] = set;
        }
        let mut steps = Vec::new();
        let mut rest = body;
        let mut offset = 0;
        let start = match (outer, body.first()) {
            (true, _) => Start::Outer,
            (false, Some(ir::Literal::Positive(atom))) => {
                let mut columns = Vec::new();
                for (column, arg) in atom.args.iter().enumerate() {
                    if let Some(var) = arg
                        && live[1].contains(var)
                    {
                        columns.push(column);
                        layout.push(*var);
                    }
                }
                rest = &body[1..];
                offset = 1;
                let identity = columns.len() == atom.args.len();
                Start::Scan {
                    relation: atom.relation,
                    columns,
                    identity,
                }
            }
            (false, _) => Start::Unit,
        };
        self.width = self.width.max(layout.len());
        for (index, literal) in rest.iter().enumerate() {
            let live_after = &live[offset + index + 1];
            self.step(literal, &mut layout, &mut steps, live_after)?;
            // Drop what nothing reads any more.
            if layout.iter().any(|var| !live_after.contains(var)) {
                let keep: Vec<usize> = (0..layout.len())
                    .filter(|&p| live_after.contains(&layout[p]))
                    .collect();
                match steps.last_mut() {
                    // A join can drop columns itself.
                    Some(Step::Join {
                        keep: join_keep,
                        take,
                        ..
                    }) if matches!(literal, ir::Literal::Positive(_)) => {
                        let kept_before = join_keep.len();
                        let positions: Vec<usize> = keep.clone();
                        let old_keep = join_keep.clone();
                        let old_take = take.clone();
                        *join_keep = positions
                            .iter()
                            .filter(|&&p| p < kept_before)
                            .map(|&p| old_keep[p])
                            .collect();
                        *take = positions
                            .iter()
                            .filter(|&&p| p >= kept_before)
                            .map(|&p| old_take[p - kept_before])
                            .collect();
                    }
                    _ => steps.push(Step::Project(keep.clone())),
                }
                layout = keep.iter().map(|&p| layout[p]).collect();
            }
            self.width = self.width.max(layout.len());
        }
        Ok((Pipeline { start, steps }, layout))
    }

    fn position(layout: &[VarId], var: VarId) -> usize {
        layout
            .iter()
            .position(|&v| v == var)
            .expect("the checker ordered the body: the variable is bound")
    }

    fn step(
        &mut self,
        literal: &ir::Literal,
        layout: &mut Vec<VarId>,
        steps: &mut Vec<Step>,
        live_after: &BTreeSet<VarId>,
    ) -> Result<(), String> {
        let interner = self.interner;
        match literal {
            ir::Literal::Positive(atom) => {
                let mut row_key = Vec::new();
                let mut columns = Vec::new();
                let mut take = Vec::new();
                let mut new_vars = Vec::new();
                for (column, arg) in atom.args.iter().enumerate() {
                    let Some(var) = arg else { continue };
                    match layout.iter().position(|v| v == var) {
                        Some(position) => {
                            row_key.push(position);
                            columns.push(column);
                        }
                        None => {
                            take.push(column);
                            new_vars.push(*var);
                        }
                    }
                }
                let keep: Vec<usize> = (0..layout.len()).collect();
                layout.extend(new_vars);
                // The join's output is only as wide as what survives the projection that
                // `pipeline` folds into it; the key is as wide as the shared variables.
                self.width = self.width.max(row_key.len());
                steps.push(Step::Join {
                    relation: atom.relation,
                    row_key,
                    columns,
                    keep,
                    take,
                });
            }
            ir::Literal::Negative(atom) => {
                let mut row_key = Vec::new();
                let mut columns = Vec::new();
                for (column, arg) in atom.args.iter().enumerate() {
                    if let Some(var) = arg {
                        row_key.push(Self::position(layout, *var));
                        columns.push(column);
                    }
                }
                let whole = columns.len() == atom.args.len();
                steps.push(Step::Antijoin {
                    relation: atom.relation,
                    row_key,
                    columns,
                    whole,
                });
            }
            ir::Literal::Filter(condition) => {
                let position = |var| Self::position(layout, var);
                steps.push(Step::Filter(eval::compile_condition(
                    condition, &position, interner,
                )?));
            }
            ir::Literal::Assign { var, expr, .. } => {
                let position = |v| Self::position(layout, v);
                steps.push(Step::Assign {
                    at: layout.len(),
                    expr: eval::compile(expr, &position, interner)?,
                });
                layout.push(*var);
            }
            ir::Literal::Range {
                var,
                ty,
                from,
                to,
                step,
                ..
            } => {
                let position = |v| Self::position(layout, v);
                let from = eval::compile(from, &position, interner)?;
                let to = eval::compile(to, &position, interner)?;
                let step = step
                    .as_ref()
                    .map(|s| eval::compile(s, &position, interner))
                    .transpose()?;
                steps.push(Step::Range {
                    at: layout.len(),
                    ty: *ty,
                    from,
                    to,
                    step,
                });
                layout.push(*var);
            }
            ir::Literal::Aggregate(aggregate) => {
                let keys: Vec<usize> = aggregate
                    .injected
                    .iter()
                    .map(|&var| Self::position(layout, var))
                    .collect();
                let mut body_live: BTreeSet<VarId> = aggregate.injected.iter().copied().collect();
                body_live.extend(aggregate.locals.iter().copied());
                if let Some(target) = &aggregate.target {
                    target.visit_variables(&mut |var| {
                        body_live.insert(var);
                    });
                }
                let standalone = standalone(aggregate);
                let (body, body_layout) = if standalone {
                    self.pipeline(&aggregate.body, Vec::new(), false, &body_live)?
                } else {
                    self.pipeline(
                        &aggregate.body,
                        aggregate.injected.clone(),
                        true,
                        &body_live,
                    )?
                };
                let body_position = |var: VarId| Self::position(&body_layout, var);
                let body_keys: Vec<usize> = aggregate
                    .injected
                    .iter()
                    .map(|&v| body_position(v))
                    .collect();
                let body_locals: Vec<usize> =
                    aggregate.locals.iter().map(|&v| body_position(v)).collect();
                let target = aggregate
                    .target
                    .as_ref()
                    .map(|t| eval::compile(t, &body_position, interner))
                    .transpose()?;
                // The reduce's values are a flag, the target and the locals.
                self.width = self.width.max(body_locals.len() + 2).max(body_layout.len());
                steps.push(Step::Aggregate(Box::new(AggregatePlan {
                    kind: aggregate.kind,
                    ty: aggregate.ty,
                    target_ty: aggregate.target.as_ref().map_or(aggregate.ty, ir::Expr::ty),
                    keys,
                    at: layout.len(),
                    body,
                    standalone,
                    body_keys,
                    body_locals,
                    target,
                })));
                layout.push(aggregate.result);
                let _ = live_after;
            }
        }
        if !matches!(literal, ir::Literal::Positive(_)) {
            self.width = self.width.max(layout.len());
        }
        Ok(())
    }
}

/// Whether an aggregate's body can be evaluated without the enclosing rows: one positive atom
/// first, then only literals over what it and they bind (negations, filters, assignments,
/// ranges), with every injected variable bound by them. Such a body costs no more on its own
/// than a scan of its relation, and spares the distinct bindings of the enclosing rows and
/// a join with them; a body with more atoms is a join that the enclosing rows may narrow a
/// great deal, so it starts from them.
fn standalone(aggregate: &ir::Aggregate) -> bool {
    let Some((ir::Literal::Positive(atom), rest)) = aggregate.body.split_first() else {
        return false;
    };
    let mut bound: BTreeSet<VarId> = atom.variables().collect();
    for literal in rest {
        let mut read = BTreeSet::new();
        reads(literal, &mut read);
        if matches!(
            literal,
            ir::Literal::Positive(_) | ir::Literal::Aggregate(_)
        ) || !read.is_subset(&bound)
        {
            return false;
        }
        if let ir::Literal::Assign { var, .. } | ir::Literal::Range { var, .. } = literal {
            bound.insert(*var);
        }
    }
    aggregate.injected.iter().all(|var| bound.contains(var))
}

/// Adds the variables a literal reads (for atoms: all of their variables, since a join reads
/// the bound ones and the others are only bound, not read, but must be live to be bound).
fn reads(literal: &ir::Literal, out: &mut BTreeSet<VarId>) {
    match literal {
        ir::Literal::Positive(atom) | ir::Literal::Negative(atom) => out.extend(atom.variables()),
        ir::Literal::Filter(condition) => condition.visit_variables(&mut |v| {
            out.insert(v);
        }),
        ir::Literal::Assign { expr, .. } => expr.visit_variables(&mut |v| {
            out.insert(v);
        }),
        ir::Literal::Range { from, to, step, .. } => {
            for expr in [Some(from), Some(to), step.as_ref()].into_iter().flatten() {
                expr.visit_variables(&mut |v| {
                    out.insert(v);
                });
            }
        }
        ir::Literal::Aggregate(aggregate) => out.extend(aggregate.injected.iter().copied()),
    }
}

fn variables_of_exprs(exprs: &[ir::Expr]) -> BTreeSet<VarId> {
    let mut set = BTreeSet::new();
    for expr in exprs {
        expr.visit_variables(&mut |v| {
            set.insert(v);
        });
    }
    set
}

impl Plan {
    /// The plan in text form: for each rule, its source and one line per step.
    pub fn describe(&self, program: &ir::Program) -> String {
        let mut out = String::new();
        for rule_plan in &self.rules {
            let rule = &program.rules[rule_plan.rule];
            let _ = writeln!(
                out,
                "{}",
                rule.text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            describe_pipeline(&rule_plan.pipeline, program, 1, &mut out);
            let _ = writeln!(
                out,
                "  -> {}({})",
                program.relations[rule_plan.head].name,
                rule_plan
                    .head_args
                    .iter()
                    .map(describe_expr)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

fn describe_pipeline(pipeline: &Pipeline, program: &ir::Program, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    let name = |relation: &RelationId| program.relations[*relation].name.as_str();
    let _ = match &pipeline.start {
        Start::Unit => writeln!(out, "{indent}unit"),
        Start::Outer => writeln!(out, "{indent}distinct injected bindings"),
        Start::Scan {
            relation, columns, ..
        } => writeln!(out, "{indent}scan {} columns {columns:?}", name(relation)),
    };
    for step in &pipeline.steps {
        let _ = match step {
            Step::Join {
                relation,
                row_key,
                columns,
                keep,
                take,
            } => writeln!(
                out,
                "{indent}join {} on row {row_key:?} = columns {columns:?}, keep {keep:?}, take {take:?}",
                name(relation)
            ),
            Step::Antijoin {
                relation,
                row_key,
                columns,
                ..
            } => {
                writeln!(
                    out,
                    "{indent}antijoin {} on row {row_key:?} = columns {columns:?}",
                    name(relation)
                )
            }
            Step::Filter(condition) => {
                writeln!(out, "{indent}filter {}", describe_condition(condition))
            }
            Step::Assign { expr, .. } => writeln!(out, "{indent}append {}", describe_expr(expr)),
            Step::Range { from, to, step, .. } => writeln!(
                out,
                "{indent}append range({}, {}{})",
                describe_expr(from),
                describe_expr(to),
                step.as_ref()
                    .map(|s| format!(", {}", describe_expr(s)))
                    .unwrap_or_default()
            ),
            Step::Project(keep) => writeln!(out, "{indent}project {keep:?}"),
            Step::Aggregate(aggregate) => {
                let _ = writeln!(
                    out,
                    "{indent}append {} grouped by row {:?} over{}",
                    aggregate.kind.name(),
                    aggregate.keys,
                    if aggregate.standalone {
                        " its own bindings"
                    } else {
                        ""
                    }
                );
                describe_pipeline(&aggregate.body, program, depth + 1, out);
                Ok(())
            }
        };
    }
}

fn describe_expr(expr: &Compiled) -> String {
    match expr {
        Compiled::Column(position) => format!("${position}"),
        Compiled::Const(word) => format!("{word:#x}"),
        Compiled::Unary { op, arg, .. } => format!("{op:?}({})", describe_expr(arg)),
        Compiled::Binary { op, lhs, rhs, .. } => {
            format!(
                "({} {} {})",
                describe_expr(lhs),
                op.symbol(),
                describe_expr(rhs)
            )
        }
        Compiled::Call { function, args, .. } => {
            format!(
                "{}({})",
                function.name(),
                args.iter()
                    .map(describe_expr)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

fn describe_condition(condition: &CompiledCondition) -> String {
    match condition {
        CompiledCondition::Compare { op, lhs, rhs, .. } => {
            format!(
                "{} {} {}",
                describe_expr(lhs),
                op.symbol(),
                describe_expr(rhs)
            )
        }
        CompiledCondition::Contains { needle, haystack } => {
            format!(
                "contains({}, {})",
                describe_expr(needle),
                describe_expr(haystack)
            )
        }
        CompiledCondition::Match { pattern, text } => {
            format!("match({}, {})", describe_expr(pattern), describe_expr(text))
        }
        CompiledCondition::Bool(value) => value.to_string(),
        CompiledCondition::Not(condition) => format!("!{}", describe_condition(condition)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `steady` against the comparison evaluated at every time between, as a rule computes it
    /// (wrapping), around zero and at both ends of the 64-bit range.
    #[test]
    fn a_timer_is_steady_exactly_when_no_time_between_changes_the_comparison() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            i64::MIN + 3,
            -7,
            -1,
            0,
            1,
            6,
            i64::MAX - 2,
            i64::MAX,
        ];
        let ops = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Lt,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ];
        let starts = [i64::MIN, i64::MIN + 2, -6, -1, 0, 3, i64::MAX - 5];
        let mut checked = 0;
        for sign in [1i64, -1] {
            for op in ops {
                for offset in edges {
                    for bound in edges
                        .iter()
                        .copied()
                        .chain([offset, offset.wrapping_neg(), 2, -2])
                    {
                        for from in starts {
                            for length in 0..6 {
                                let to = from.saturating_add(length);
                                let holds = |t: i64| {
                                    let side = sign.wrapping_mul(t).wrapping_add(offset);
                                    match op {
                                        CompareOp::Eq => side == bound,
                                        CompareOp::Ne => side != bound,
                                        CompareOp::Lt => side < bound,
                                        CompareOp::Le => side <= bound,
                                        CompareOp::Gt => side > bound,
                                        CompareOp::Ge => side >= bound,
                                    }
                                };
                                let alike = (from..=to).all(|t| holds(t) == holds(from));
                                assert_eq!(
                                    steady(sign, op, offset, bound, from, to),
                                    alike,
                                    "{sign} * t + {offset} {op:?} {bound}, t from {from} to {to}"
                                );
                                assert_eq!(steady(sign, op, offset, bound, to, from), alike);
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000);
    }

    /// Which aggregate bodies are evaluated on their own, and which from the enclosing rows.
    #[test]
    fn an_aggregate_of_one_atom_is_evaluated_on_its_own() {
        let text = ".decl r(k: number, x: number)\n.decl s(x: number, y: number)\n\
                    .decl v(k: number)\n.decl out(k: number, n: number)\n\
                    out(k, n) :- v(k), n = sum x : { r(k, x) }.\n\
                    out(k, n) :- v(k), n = count : { r(k, x), x > 2, y = x + k, !s(y, y) }.\n\
                    out(0, n) :- n = max x : { r(_, x) }.\n\
                    out(k, n) :- v(k), n = sum y : { r(k, x), s(x, y) }.\n\
                    out(k, n) :- v(k), n = min x : { s(x, _), x > k }.\n\
                    out(k, n) :- v(k), n = count : { r(k, x), v(x) }.\n";
        let program = crate::compile_source("aggregates.dl", text).expect("a valid program");
        let plan = plan(&program, &Interner::new()).expect("a plan");
        let standalone: Vec<bool> = plan
            .rules
            .iter()
            .flat_map(|rule| &rule.pipeline.steps)
            .filter_map(|step| match step {
                Step::Aggregate(aggregate) => Some(aggregate.standalone),
                _ => None,
            })
            .collect();
        // One atom, with or without row-level literals after it, and a global aggregate: on
        // their own. Two atoms (a join, also one that binds nothing new), or a body that reads
        // an injected variable the atom does not bind: from the enclosing rows.
        assert_eq!(standalone, [true, true, true, false, false, false]);
        let described = plan.describe(&program);
        assert_eq!(
            described.matches("over its own bindings").count(),
            3,
            "{described}"
        );
        assert_eq!(
            described.matches("distinct injected bindings").count(),
            3,
            "{described}"
        );
    }
}
