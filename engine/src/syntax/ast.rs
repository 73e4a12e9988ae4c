//! The syntax tree of a Soufflé program, as written.
//!
//! The tree keeps every construct the parser accepts, with spans, and resolves nothing: names are
//! plain identifiers and expressions are untyped. `.include` and `#include` are resolved by the
//! parser, whose items from included files carry spans into those files. Checking
//! ([`crate::check`]) turns this tree into the typed, normalised [`crate::ir::Program`].

use crate::diag::Span;

/// A whole program: the items of the main file and of every file it includes, in order.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Type(TypeDecl),
    Relation(RelationDecl),
    Directive(Directive),
    Clause(Clause),
    /// `.pragma "key" "value"`: accepted and ignored.
    Pragma(Span),
    /// A construct outside the supported subset (`.comp`, `.functor`, `.plan`, records, ...),
    /// kept so that checking can report it by name.
    Unsupported {
        what: String,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `.type Name <: symbol`, `.type Name = number`, `.type Name = A | B`.
#[derive(Clone, Debug)]
pub struct TypeDecl {
    pub name: Ident,
    pub definition: TypeDefinition,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum TypeDefinition {
    /// `.type Name <: Base`
    Subtype(Ident),
    /// `.type Name = Other`
    Alias(Ident),
    /// `.type Name = A | B | ...` (two or more members)
    Union(Vec<Ident>),
}

/// `.decl A, B(x: number, y: symbol) qualifiers...`
#[derive(Clone, Debug)]
pub struct RelationDecl {
    pub names: Vec<Ident>,
    pub attributes: Vec<Attribute>,
    /// `btree`, `brie`, `eqrel`, `inline`, `magic`, ... as written.
    pub qualifiers: Vec<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: Ident,
    pub ty: Ident,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectiveKind {
    Input,
    Output,
    PrintSize,
    /// `.limitsize`: outside the subset, reported by checking.
    LimitSize,
}

/// `.input A, B(key="value", ...)`
#[derive(Clone, Debug)]
pub struct Directive {
    pub kind: DirectiveKind,
    pub relations: Vec<Ident>,
    pub parameters: Vec<Parameter>,
    pub span: Span,
}

/// `key=value` in a directive; the value is a string literal (unescaped), a number or an
/// identifier, kept as text.
#[derive(Clone, Debug)]
pub struct Parameter {
    pub key: Ident,
    pub value: String,
    pub value_span: Span,
}

/// A fact (`A(1).`, no body) or a rule (`A(x), B(x) :- body.`).
#[derive(Clone, Debug)]
pub struct Clause {
    pub heads: Vec<Atom>,
    /// The body in disjunctive form: alternatives separated by `;`. `None` for a fact.
    pub body: Option<Disjunction>,
    pub span: Span,
}

/// Alternatives separated by `;`; each alternative is a conjunction of literals.
pub type Disjunction = Vec<Conjunction>;
/// Literals separated by `,`.
pub type Conjunction = Vec<Literal>;

#[derive(Clone, Debug)]
pub enum Literal {
    Atom(Atom),
    /// `!A(x)`; the span covers the `!` and the atom.
    Negated(Atom, Span),
    /// `a < b`, `x = y + 1`, ...
    Comparison {
        op: CompareOp,
        lhs: Expr,
        rhs: Expr,
        span: Span,
    },
    /// `true` or `false`.
    Bool(bool, Span),
    /// A functor used as a condition: `contains("a", s)`, `match("a.*", s)`.
    Test(Expr),
    /// `( A ; B )`: a parenthesised disjunction inside a conjunction.
    Group(Disjunction, Span),
    /// `!( ... )` and other negated non-atoms are outside the subset.
    Unsupported {
        what: String,
        span: Span,
    },
}

#[derive(Clone, Debug)]
pub struct Atom {
    pub relation: Ident,
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `bnot x`
    BitNot,
    /// `lnot x`
    LogicalNot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    /// `^`: exponentiation.
    Pow,
    BitAnd,
    BitOr,
    BitXor,
    /// `bshl`
    ShiftLeft,
    /// `bshr`: arithmetic shift right.
    ShiftRight,
    /// `bshru`: logical shift right.
    ShiftRightUnsigned,
    LogicalAnd,
    LogicalOr,
    LogicalXor,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::BitAnd => "band",
            BinaryOp::BitOr => "bor",
            BinaryOp::BitXor => "bxor",
            BinaryOp::ShiftLeft => "bshl",
            BinaryOp::ShiftRight => "bshr",
            BinaryOp::ShiftRightUnsigned => "bshru",
            BinaryOp::LogicalAnd => "land",
            BinaryOp::LogicalOr => "lor",
            BinaryOp::LogicalXor => "lxor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    Count,
    Sum,
    Min,
    Max,
    Mean,
}

impl AggregateKind {
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::Sum => "sum",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
            AggregateKind::Mean => "mean",
        }
    }
}

/// A numeric literal as written; its type is decided by checking.
#[derive(Clone, Debug, PartialEq)]
pub enum NumberLiteral {
    /// Decimal, `0x..` or `0b..`, without a sign. Kept wide so that `-9223372036854775808` and
    /// unsigned values up to `u64::MAX` survive until their type is known.
    Integer(u128),
    Float(f64),
}

#[derive(Clone, Debug)]
pub enum Expr {
    /// A named variable.
    Variable(Ident),
    /// `_`
    Wildcard(Span),
    Number(NumberLiteral, Span),
    /// A string literal, unescaped.
    String(String, Span),
    Unary {
        op: UnaryOp,
        arg: Box<Expr>,
        span: Span,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        span: Span,
    },
    /// A functor call: `cat(a, b)`, `max(a, b)`, `range(1, 5)`, `to_string(x)`, ...
    Call {
        name: Ident,
        args: Vec<Expr>,
        span: Span,
    },
    /// `count : { body }`, `sum e : { body }`, `min e : A(x)`, ...
    Aggregate {
        kind: AggregateKind,
        target: Option<Box<Expr>>,
        body: Conjunction,
        span: Span,
    },
    /// A construct outside the subset used as an expression (records `[a, b]`, ADT branches
    /// `$B(x)`, `as(x, T)`, the counter `$`, `nil`, user-defined functors `@f(x)`, ...).
    Unsupported {
        what: String,
        span: Span,
    },
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Variable(ident) => ident.span,
            Expr::Wildcard(span)
            | Expr::Number(_, span)
            | Expr::String(_, span)
            | Expr::Unary { span, .. }
            | Expr::Binary { span, .. }
            | Expr::Call { span, .. }
            | Expr::Aggregate { span, .. }
            | Expr::Unsupported { span, .. } => *span,
        }
    }
}

impl Literal {
    pub fn span(&self) -> Span {
        match self {
            Literal::Atom(atom) => atom.span,
            Literal::Negated(_, span)
            | Literal::Comparison { span, .. }
            | Literal::Bool(_, span)
            | Literal::Group(_, span)
            | Literal::Unsupported { span, .. } => *span,
            Literal::Test(expr) => expr.span(),
        }
    }
}
