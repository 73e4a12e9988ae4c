//! The checked program: typed, normalised, stratified.
//!
//! This is the contract between the front end ([`crate::check`]) and the two evaluators (the
//! differential dataflow in [`crate::dataflow`] and the from-scratch oracle in
//! [`crate::reference`]). Everything an evaluator needs is explicit here, so that neither has to
//! know Soufflé's syntax:
//!
//! - every relation has primitive column types;
//! - every rule has one head, and its body is a conjunction (disjunctions and multiple heads are
//!   expanded into several rules; `eqrel` relations get their closure rules);
//! - body atoms hold only distinct variables and wildcards: constants, expressions and repeated
//!   variables in atoms become [`Literal::Filter`] or [`Literal::Assign`] literals;
//! - the body literals are *ordered*: every variable a literal reads is bound by an earlier
//!   literal (or, inside an aggregate, by the enclosing body). An evaluator can run them left to
//!   right;
//! - strata are listed in evaluation order; negated and aggregated relations always belong to an
//!   earlier stratum than the rule that reads them.
//!
//! # Semantics of expressions and literals
//!
//! Both evaluators implement exactly this; it follows Soufflé wherever Soufflé defines it.
//!
//! - `number` arithmetic is on `i64` and wraps on overflow; `unsigned` on `u64`, wrapping;
//!   `float` is IEEE `f64`. `/` and `%` on integers truncate toward zero; an integer division or
//!   remainder by zero fails the binding (the rule derives nothing for it). `^` on integers is
//!   exponentiation by squaring, wrapping; a negative exponent gives `1` for a base of `1`, `±1`
//!   for a base of `-1`, and `0` otherwise (the truncation of the real result). On floats, `^` is
//!   `powf` and `%` is the IEEE remainder of Rust's `%`.
//! - `band bor bxor bnot` act on the 64 bits; `bshl bshr bshru` shift by the right operand
//!   modulo 64; `bshr` is arithmetic on `number` and logical on `unsigned`; `bshru` is always
//!   logical. `land lor lxor` treat non-zero as true and give `1` or `0` in the operands' type;
//!   `lnot x` gives `1` if `x` is zero, else `0`. Unary `-` wraps (on `unsigned` it is the
//!   two's complement).
//! - Comparisons are on the operands' type; symbols compare by their bytes. `=` and `!=` on
//!   floats compare as numbers.
//! - `max(a, b, ...)` and `min(a, b, ...)` compare like the comparisons; `abs` wraps on
//!   `i64::MIN` and is the identity on `unsigned`.
//! - `cat(a, b, ...)` concatenates symbols. `strlen(s)` is the length in bytes, as a `number`.
//!   `substr(s, i, n)` takes `n` bytes from byte `i` (fewer if `s` ends first; all the rest if
//!   `n < 0`); if `i < 0` or `i > strlen(s)` the result is the empty symbol, as in Soufflé. Byte
//!   ranges that split a UTF-8 character are decoded lossily.
//! - `ord(s)` is the symbol's id as a `number`.
//! - `to_number`, `to_unsigned`, `to_float` convert from any type: integers by two's-complement
//!   cast, floats toward zero with saturation, symbols by parsing (decimal, `0x`, `0b`; a symbol
//!   that does not parse fails the binding). `to_string` prints numbers in decimal and floats
//!   with six decimals (`2.500000`, as C++'s `std::to_string`).
//! - `range(a, b)` binds each of `a, a+1, ..., b-1` when `a <= b`, and `a, a-1, ..., b+1` when
//!   `a > b`; `range(a, b, s)` steps by `s` (nothing when `s` is zero or points away from `b`).
//!   Floats step the same way.
//! - `contains(needle, haystack)` holds when `needle` is a substring of `haystack`;
//!   `match(pattern, text)` when the regular expression matches the whole text (an invalid
//!   pattern matches nothing).
//! - Aggregates range over the distinct bindings of `injected + locals` that satisfy the body,
//!   for each binding of the injected variables. `count` is a `number`; `sum` is in the target's
//!   type, wrapping; `mean` is a `float` (the sum as a float divided by the count); `min` and
//!   `max` are in the target's type. Over no bindings `count` and `sum` are `0` and `min`,
//!   `max` and `mean` bind nothing.
//! - Relations are sets: a tuple is there or not, however many derivations it has.

use crate::diag::{SourceMap, Span};
use crate::syntax::ast::{AggregateKind, BinaryOp, CompareOp, UnaryOp};
use crate::value::{Type, Value};
use std::collections::BTreeMap;

pub type RelationId = usize;
pub type VarId = usize;
pub type RuleId = usize;

#[derive(Clone, Debug)]
pub struct Program {
    pub relations: Vec<Relation>,
    pub rules: Vec<Rule>,
    /// In evaluation order.
    pub strata: Vec<Stratum>,
    /// The source files, for rendering locations in explanations and errors.
    pub sources: SourceMap,
}

impl Program {
    pub fn relation(&self, name: &str) -> Option<RelationId> {
        self.relations
            .iter()
            .position(|relation| relation.name == name)
    }

    /// The rules whose head is `relation`.
    pub fn rules_of(&self, relation: RelationId) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |rule| rule.head == relation)
    }
}

#[derive(Clone, Debug)]
pub struct Relation {
    pub name: String,
    pub columns: Vec<Column>,
    pub span: Span,
    /// Parameters of the `.input` directive, if the relation has one.
    pub input: Option<IoParameters>,
    /// One entry per `.output` directive.
    pub outputs: Vec<IoParameters>,
    pub printsize: bool,
    /// Declared `eqrel`: its closure rules are among [`Program::rules`].
    pub eqrel: bool,
    /// Some clause (a rule or a fact in the program) derives tuples of this relation.
    pub derived: bool,
    /// Tuples can be inserted and retracted at run time: the relation has an `.input` directive
    /// or no clause at all.
    pub writable: bool,
    /// How run-time writes treat the relation (`IO=stream`, `key`, `stamp`, `IO=clock`).
    pub feed: Feed,
}

/// How a writable relation is fed at run time, from its `.input` directive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    /// `IO=stream`: events insert and retract its tuples; initial facts are read from the facts
    /// directory only if the file is there.
    pub stream: bool,
    /// `key="a,b"`: the key columns, in column order. An insert replaces the tuple that holds
    /// the same key (an upsert); a retraction may leave the other columns `_`.
    pub key: Option<Vec<usize>>,
    /// `stamp="t"`: a `number` column the engine fills with the time at which the tuple's other
    /// non-key columns last changed.
    pub stamp: Option<usize>,
    /// `IO=clock`: the one tuple is the current time in seconds, advanced by transactions.
    pub clock: bool,
}

impl Feed {
    /// Whether `column` is a key column (every column is, without a key).
    pub fn is_key(&self, column: usize) -> bool {
        self.key.as_ref().is_none_or(|key| key.contains(&column))
    }
}

impl Relation {
    pub fn arity(&self) -> usize {
        self.columns.len()
    }

    pub fn types(&self) -> impl Iterator<Item = Type> + '_ {
        self.columns.iter().map(|column| column.ty)
    }
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    /// The declared type name (`symbol`, `NodeId`, ...).
    pub type_name: String,
}

/// `key=value` parameters of an I/O directive, with `IO` lower-cased.
#[derive(Clone, Debug, Default)]
pub struct IoParameters {
    pub parameters: BTreeMap<String, String>,
    pub span: Span,
}

impl IoParameters {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.parameters.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct Stratum {
    pub relations: Vec<RelationId>,
    /// Some rule of the stratum reads a relation of the same stratum.
    pub recursive: bool,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub head: RelationId,
    /// One expression per head column, over variables bound by the body.
    pub head_args: Vec<Expr>,
    /// Ordered: see the module documentation. Empty for a fact.
    pub body: Vec<Literal>,
    /// Every variable of the rule, including those local to aggregates and those the
    /// normalisation introduced; indexed by [`VarId`].
    pub variables: Vec<Variable>,
    /// The clause this rule came from.
    pub span: Span,
    /// The clause's source text, for explanations.
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Variable {
    /// The name in the source, or a generated name such as `_arg2` for introduced variables.
    pub name: String,
    pub ty: Type,
}

/// A body atom: each column is a distinct variable or a wildcard.
#[derive(Clone, Debug)]
pub struct Atom {
    pub relation: RelationId,
    pub args: Vec<Option<VarId>>,
    pub span: Span,
}

impl Atom {
    /// The variables of the atom, in column order, without wildcards.
    pub fn variables(&self) -> impl Iterator<Item = VarId> + '_ {
        self.args.iter().flatten().copied()
    }
}

#[derive(Clone, Debug)]
pub enum Literal {
    /// Binds the atom's variables that are not bound yet; joins on those that are.
    Positive(Atom),
    /// Holds when no tuple matches; its variables are all bound by earlier literals (wildcards
    /// excepted).
    Negative(Atom),
    /// A condition over bound variables.
    Filter(Condition),
    /// Binds `var` to the value of `expr`, which reads only bound variables. A rule whose
    /// expression fails (division by zero, an invalid `substr`, ...) derives nothing for that
    /// binding.
    Assign { var: VarId, expr: Expr, span: Span },
    /// Binds `var` to each value of `range(from, to[, step])`, as Soufflé defines it.
    Range {
        var: VarId,
        ty: Type,
        from: Expr,
        to: Expr,
        step: Option<Expr>,
        span: Span,
    },
    /// Binds `aggregate.result`.
    Aggregate(Aggregate),
}

#[derive(Clone, Debug)]
pub enum Condition {
    Compare {
        op: CompareOp,
        ty: Type,
        lhs: Expr,
        rhs: Expr,
        span: Span,
    },
    /// `contains(needle, haystack)`
    Contains {
        needle: Expr,
        haystack: Expr,
        span: Span,
    },
    /// `match(pattern, text)`: the whole text matches the regular expression.
    Match {
        pattern: Expr,
        text: Expr,
        span: Span,
    },
    /// `true` or `false`
    Bool(bool, Span),
    /// `!contains(...)`, `!match(...)`: the condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// Calls `f` on every variable the condition reads.
    pub fn visit_variables(&self, f: &mut impl FnMut(VarId)) {
        match self {
            Condition::Compare { lhs, rhs, .. } => {
                lhs.visit_variables(f);
                rhs.visit_variables(f);
            }
            Condition::Contains {
                needle: a,
                haystack: b,
                ..
            }
            | Condition::Match {
                pattern: a,
                text: b,
                ..
            } => {
                a.visit_variables(f);
                b.visit_variables(f);
            }
            Condition::Bool(..) => {}
            Condition::Not(condition) => condition.visit_variables(f),
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Condition::Compare { span, .. }
            | Condition::Contains { span, .. }
            | Condition::Match { span, .. }
            | Condition::Bool(_, span) => *span,
            Condition::Not(condition) => condition.span(),
        }
    }
}

/// `result = kind target : { body }`.
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub result: VarId,
    pub kind: AggregateKind,
    /// The type of `result`.
    pub ty: Type,
    /// The aggregated expression over the body's variables (`None` for `count`).
    pub target: Option<Expr>,
    /// Variables of the enclosing rule that the body reads; they are bound before the
    /// aggregate and group it. Sorted.
    pub injected: Vec<VarId>,
    /// Variables bound inside the body (local to it), sorted. Together with `injected` they
    /// identify one matching body tuple: the aggregate ranges over distinct bindings of
    /// `injected + locals`, so `sum y : { A(x, y) }` adds `y` once per tuple of `A`.
    pub locals: Vec<VarId>,
    /// Ordered like a rule body; may read `injected` variables as already bound.
    pub body: Vec<Literal>,
    pub span: Span,
}

/// A typed expression. `ty` fields are the result types; operator semantics depend on them
/// (`+` on unsigned wraps differently from `+` on number, `/` on float is not integral).
#[derive(Clone, Debug)]
pub enum Expr {
    Var(VarId, Type),
    Const(Value),
    Unary {
        op: UnaryOp,
        ty: Type,
        arg: Box<Expr>,
    },
    /// For `Logical*` operators and comparisons-as-numbers the operands may have a type other
    /// than `ty`; `operand` is the operands' type.
    Binary {
        op: BinaryOp,
        ty: Type,
        operand: Type,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Call {
        function: Function,
        ty: Type,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn ty(&self) -> Type {
        match self {
            Expr::Var(_, ty) => *ty,
            Expr::Const(value) => value.ty(),
            Expr::Unary { ty, .. } | Expr::Binary { ty, .. } | Expr::Call { ty, .. } => *ty,
        }
    }

    /// Calls `f` on every variable the expression reads.
    pub fn visit_variables(&self, f: &mut impl FnMut(VarId)) {
        match self {
            Expr::Var(var, _) => f(*var),
            Expr::Const(_) => {}
            Expr::Unary { arg, .. } => arg.visit_variables(f),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.visit_variables(f);
                rhs.visit_variables(f);
            }
            Expr::Call { args, .. } => args.iter().for_each(|arg| arg.visit_variables(f)),
        }
    }
}

/// Soufflé's intrinsic functors (other than `range`, `contains` and `match`, which are literals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    /// `max(a, b, ...)`, on the operands' type.
    Max,
    /// `min(a, b, ...)`
    Min,
    Abs,
    /// `cat(a, b, ...)`: symbol concatenation.
    Cat,
    /// `strlen(s)`: length in bytes, as a number.
    Strlen,
    /// `substr(s, index, length)`: byte offsets; out of range gives the empty symbol.
    Substr,
    /// `ord(s)`: the symbol's id, as a number.
    Ord,
    /// Conversions; the argument's type is `args[0].ty()`.
    ToNumber,
    ToUnsigned,
    ToFloat,
    ToString,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Max => "max",
            Function::Min => "min",
            Function::Abs => "abs",
            Function::Cat => "cat",
            Function::Strlen => "strlen",
            Function::Substr => "substr",
            Function::Ord => "ord",
            Function::ToNumber => "to_number",
            Function::ToUnsigned => "to_unsigned",
            Function::ToFloat => "to_float",
            Function::ToString => "to_string",
        }
    }
}
