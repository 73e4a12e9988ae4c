//! Parser: tokens to the syntax tree.
//!
//! A hand-written recursive-descent parser for the Soufflé grammar (`src/parser/parser.yy` in
//! Soufflé's sources), with precedence climbing for expressions. It builds [`Program`] and
//! resolves `.include`/`#include` as it goes: an included file is added to the [`SourceMap`],
//! lexed, parsed, and its items are spliced in where the include stood.
//!
//! # Where Soufflé's LALR grammar needs a second look
//!
//! Three places of the grammar are decided by what comes later, which a recursive-descent parser
//! settles by looking ahead over a balanced parenthesis:
//!
//! - In a rule body, `( ... )` is a parenthesised disjunction (a group) unless the matching `)`
//!   is followed by an operator, as in `(x + 1) < y`, where it starts an expression.
//! - In a rule body, `name( ... )` is an atom unless the matching `)` is followed by an operator,
//!   as in `strlen(s) > 3`, where it is a functor call; `contains(..)` and `match(..)` on their
//!   own are functor conditions ([`Literal::Test`]).
//! - In an expression, `min( ... )` and `max( ... )` are the binary functors unless the matching
//!   `)` is followed by `:`, as in `min (x) : { A(x) }`, where they are aggregates.
//!
//! Negation follows Soufflé: `!A(x)` negates an atom, `!x < y` is the constraint `x >= y`,
//! `!true` is `false`, and `!contains(a, b)` is the condition `lnot contains(a, b)`. Negating a
//! parenthesised body, which Soufflé rewrites with De Morgan's laws, is outside the subset.
//!
//! # Errors
//!
//! A syntax error is reported as `expected X, found Y` at the token found, and the parser then
//! skips to the end of the clause (the next `.`, or the next directive) or, for a directive,
//! which has no terminator, to the next line that can start an item. It never stops before the
//! end of the file. Constructs outside the subset (components, records, ADTs, user-defined
//! functors, query plans, ...) are parsed far enough to be skipped and kept as `Unsupported`
//! nodes, which checking reports by name.

use super::ast::{
    AggregateKind, Atom, Attribute, BinaryOp, Clause, CompareOp, Conjunction, Directive,
    DirectiveKind, Disjunction, Expr, Ident, Item, Literal, Parameter, Program, RelationDecl,
    TypeDecl, TypeDefinition, UnaryOp,
};
use super::lexer::{self, DirectiveKeyword, Token, TokenKind};
use crate::diag::{Diagnostic, SourceMap, Span};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

pub fn parse_file(sources: &mut SourceMap, path: &Path) -> (Program, Vec<Diagnostic>) {
    let mut context = Context::new(std::mem::take(sources));
    let shown = path.display().to_string();
    let mut items = Vec::new();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let file = context.sources.add(shown.clone(), text);
            let directory = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let canonical = std::fs::canonicalize(path).ok();
            context.parse_items(file, directory, canonical, shown, &mut items);
        }
        Err(error) => {
            let file = context.sources.add(shown.clone(), "");
            context.diagnostics.push(Diagnostic::error(
                Span::new(file, 0, 0),
                format!("cannot read `{shown}`: {}", io_message(&error)),
            ));
        }
    }
    *sources = context.sources;
    (Program { items }, context.diagnostics)
}

pub fn parse_source(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    base_dir: Option<&Path>,
) -> (Program, Vec<Diagnostic>) {
    let mut context = Context::new(std::mem::take(sources));
    let file = context.sources.add(name, text);
    let directory = base_dir.map(Path::to_path_buf).unwrap_or_default();
    let mut items = Vec::new();
    context.parse_items(file, directory, None, name.to_string(), &mut items);
    *sources = context.sources;
    (Program { items }, context.diagnostics)
}

/// An I/O error as a lowercase message, as diagnostics are written.
fn io_message(error: &std::io::Error) -> String {
    let message = error.to_string();
    let mut characters = message.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => message,
    }
}

/// The relation qualifiers Soufflé knows (`relation_tags` in its grammar).
const QUALIFIERS: [&str; 12] = [
    "input",
    "output",
    "printsize",
    "overridable",
    "inline",
    "no_inline",
    "magic",
    "no_magic",
    "brie",
    "btree",
    "btree_delete",
    "eqrel",
];

/// How deeply the parser may recurse into expressions and bodies (parentheses, calls,
/// aggregates, groups, negations, unary operators, exponents). Far beyond any real program; it
/// keeps hostile input from exhausting the stack (the worst case uses about 128 KiB).
const MAX_NESTING: usize = 100;

/// How deep the syntax tree of one clause may get, counting each binary operator of a chain
/// (`a + b + c` leans left, one level per operator) as well as each level of [`MAX_NESTING`]:
/// later stages walk and drop the tree recursively.
const MAX_TREE_DEPTH: usize = 1000;

/// A syntax error was reported; the caller recovers.
struct Failed;

type Parse<T> = Result<T, Failed>;

/// What is shared by the parsers of the main file and of every file it includes.
struct Context {
    sources: SourceMap,
    diagnostics: Vec<Diagnostic>,
    /// The files being parsed, outermost first, canonical path and path as shown: an include
    /// of one of them is a cycle.
    include_stack: Vec<(PathBuf, String)>,
    /// Files that said `.once`: later includes of them are skipped.
    once: HashSet<PathBuf>,
}

impl Context {
    fn new(sources: SourceMap) -> Context {
        Context {
            sources,
            diagnostics: Vec::new(),
            include_stack: Vec::new(),
            once: HashSet::new(),
        }
    }

    /// Lexes and parses file `file` of the source map, appending its items to `items`.
    /// `directory` is where its includes are resolved; `canonical` is its canonical path when it
    /// is a file on disk (for include cycles and `.once`).
    fn parse_items(
        &mut self,
        file: u32,
        directory: PathBuf,
        canonical: Option<PathBuf>,
        shown: String,
        items: &mut Vec<Item>,
    ) {
        let (tokens, lexical) = lexer::lex(file, &self.sources.file(file).text);
        if let Some(canonical) = &canonical {
            self.include_stack.push((canonical.clone(), shown));
        }
        let pushed = canonical.is_some();
        let mut parser = Parser {
            context: self,
            tokens,
            position: 0,
            directory,
            canonical,
            nesting: 0,
            tree_depth: 0,
            in_aggregate_body: false,
            lexical: lexical.into(),
        };
        parser.items(items);
        parser.flush_lexical(u32::MAX);
        if pushed {
            self.include_stack.pop();
        }
    }
}

/// An expression and the source it covers, parentheses included (the span stored in the
/// expression itself does not include the parentheses around it).
struct Parsed {
    expr: Expr,
    extent: Span,
}

struct Parser<'c> {
    context: &'c mut Context,
    /// Never empty: the lexer ends every file with `Eof`.
    tokens: Vec<Token>,
    position: usize,
    directory: PathBuf,
    canonical: Option<PathBuf>,
    /// Current recursion depth, bounded by [`MAX_NESTING`].
    nesting: usize,
    /// Current depth of the tree being built, bounded by [`MAX_TREE_DEPTH`].
    tree_depth: usize,
    /// Inside the braces of an aggregate, where `;` is reported.
    in_aggregate_body: bool,
    /// The lexer's diagnostics for this file not yet reported, in source order: they are
    /// interleaved with the parser's so that the list reads from the top of the file down.
    lexical: VecDeque<Diagnostic>,
}

/// The binary operator of a token, with its precedence level (0 binds loosest).
fn binary_operator(kind: &TokenKind) -> Option<(BinaryOp, usize)> {
    Some(match kind {
        TokenKind::Lor => (BinaryOp::LogicalOr, 0),
        TokenKind::Lxor => (BinaryOp::LogicalXor, 1),
        TokenKind::Land => (BinaryOp::LogicalAnd, 2),
        TokenKind::Bor => (BinaryOp::BitOr, 3),
        TokenKind::Bxor => (BinaryOp::BitXor, 4),
        TokenKind::Band => (BinaryOp::BitAnd, 5),
        TokenKind::Bshl => (BinaryOp::ShiftLeft, 6),
        TokenKind::Bshr => (BinaryOp::ShiftRight, 6),
        TokenKind::Bshru => (BinaryOp::ShiftRightUnsigned, 6),
        TokenKind::Plus => (BinaryOp::Add, 7),
        TokenKind::Minus => (BinaryOp::Sub, 7),
        TokenKind::Star => (BinaryOp::Mul, 8),
        TokenKind::Slash => (BinaryOp::Div, 8),
        TokenKind::Percent => (BinaryOp::Mod, 8),
        _ => return None,
    })
}

/// The number of binary precedence levels; unary operators and `^` bind tighter than all.
const BINARY_LEVELS: usize = 9;

fn compare_operator(kind: &TokenKind) -> Option<CompareOp> {
    Some(match kind {
        TokenKind::Equal => CompareOp::Eq,
        TokenKind::NotEqual => CompareOp::Ne,
        TokenKind::Less => CompareOp::Lt,
        TokenKind::LessEqual => CompareOp::Le,
        TokenKind::Greater => CompareOp::Gt,
        TokenKind::GreaterEqual => CompareOp::Ge,
        _ => return None,
    })
}

/// The constraint that holds exactly when `op` does not (Soufflé's `negatedConstraintOp`).
fn negated(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Eq => CompareOp::Ne,
        CompareOp::Ne => CompareOp::Eq,
        CompareOp::Lt => CompareOp::Ge,
        CompareOp::Le => CompareOp::Gt,
        CompareOp::Gt => CompareOp::Le,
        CompareOp::Ge => CompareOp::Lt,
    }
}

/// Whether a token after a closing parenthesis shows that the parenthesis belonged to an
/// expression (an operand of an operator or of a comparison).
fn continues_expression(kind: &TokenKind) -> bool {
    compare_operator(kind).is_some() || binary_operator(kind).is_some() || *kind == TokenKind::Caret
}

fn starts_expression(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Ident(_)
            | TokenKind::Underscore
            | TokenKind::Number(_)
            | TokenKind::String(_)
            | TokenKind::LeftParen
            | TokenKind::LeftBracket
            | TokenKind::Dollar
            | TokenKind::At
            | TokenKind::Minus
            | TokenKind::Bnot
            | TokenKind::Lnot
            | TokenKind::Count
            | TokenKind::Sum
            | TokenKind::Min
            | TokenKind::Max
            | TokenKind::Mean
    )
}

fn is_opener(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::LeftParen | TokenKind::LeftBracket | TokenKind::LeftBrace
    )
}

fn is_closer(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::RightParen | TokenKind::RightBracket | TokenKind::RightBrace
    )
}

impl Parser<'_> {
    // ----- Tokens -----

    fn token_at(&self, index: usize) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[index.min(last)]
    }

    fn current(&self) -> &Token {
        self.token_at(self.position)
    }

    fn kind(&self) -> &TokenKind {
        &self.current().kind
    }

    fn kind_at(&self, index: usize) -> &TokenKind {
        &self.token_at(index).kind
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.kind() == kind
    }

    fn at_eof(&self) -> bool {
        self.at(&TokenKind::Eof)
    }

    fn advance(&mut self) -> Token {
        let token = self.current().clone();
        if self.position < self.tokens.len() - 1 {
            self.position += 1;
        }
        token
    }

    fn eat(&mut self, kind: &TokenKind) -> Option<Span> {
        if self.at(kind) {
            Some(self.advance().span)
        } else {
            None
        }
    }

    fn expect(&mut self, kind: &TokenKind, expected: &str) -> Parse<Span> {
        match self.eat(kind) {
            Some(span) => Ok(span),
            None => Err(self.error_expected(expected)),
        }
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.flush_lexical(diagnostic.span.start);
        self.context.diagnostics.push(diagnostic);
    }

    /// Reports the lexer's diagnostics that start at or before byte `offset`.
    fn flush_lexical(&mut self, offset: u32) {
        while self
            .lexical
            .front()
            .is_some_and(|diagnostic| diagnostic.span.start <= offset)
        {
            if let Some(diagnostic) = self.lexical.pop_front() {
                self.context.diagnostics.push(diagnostic);
            }
        }
    }

    /// How a token is named in a message: its text in backticks, or "end of file".
    fn describe(&self, token: &Token) -> String {
        if token.kind == TokenKind::Eof {
            return "end of file".to_string();
        }
        let text = self.context.sources.text(token.span);
        if text.chars().count() > 40 {
            let start: String = text.chars().take(37).collect();
            format!("`{start}...`")
        } else {
            format!("`{text}`")
        }
    }

    fn expected_diagnostic(&self, expected: &str) -> Diagnostic {
        let token = self.current();
        Diagnostic::error(
            token.span,
            format!("expected {expected}, found {}", self.describe(token)),
        )
    }

    /// Reports `expected {expected}, found ...` at the current token.
    fn error_expected(&mut self, expected: &str) -> Failed {
        let diagnostic = self.expected_diagnostic(expected);
        self.report(diagnostic);
        Failed
    }

    fn expect_ident(&mut self, expected: &str) -> Parse<Ident> {
        if let TokenKind::Ident(name) = self.kind() {
            let name = name.clone();
            let span = self.advance().span;
            Ok(Ident { name, span })
        } else {
            Err(self.error_expected(expected))
        }
    }

    /// Whether the tokens at `index` (a `.`) and `index + 1` continue a qualified name
    /// `A.B`: the dot touches the word before and the word after.
    fn continues_qualified_name(&self, index: usize) -> bool {
        if index == 0 || index + 1 >= self.tokens.len() {
            return false;
        }
        let dot = &self.tokens[index];
        let next = &self.tokens[index + 1];
        dot.kind == TokenKind::Dot
            && self.tokens[index - 1].span.end == dot.span.start
            && matches!(next.kind, TokenKind::Ident(_))
            && dot.span.end == next.span.start
    }

    /// The index just after the qualified name that starts with the word at `index`.
    fn qualified_name_end(&self, index: usize) -> usize {
        let mut end = index + 1;
        while self.continues_qualified_name(end) {
            end += 2;
        }
        end
    }

    /// A name, possibly qualified (`A.B.C`, Soufflé's component-qualified names).
    fn qualified_name(&mut self, expected: &str) -> Parse<Ident> {
        let mut ident = self.expect_ident(expected)?;
        while self.continues_qualified_name(self.position) {
            self.advance();
            let part = self.expect_ident(expected)?;
            ident.name.push('.');
            ident.name.push_str(&part.name);
            ident.span = ident.span.to(part.span);
        }
        Ok(ident)
    }

    /// The index of the bracket that closes the one at `open`. With `within_clause`, gives up
    /// at the end of a clause (a `.`) or at a directive, where a balanced construct cannot
    /// continue; otherwise only at the end of the file (component bodies hold directives).
    fn matching_close(&self, open: usize, within_clause: bool) -> Option<usize> {
        let mut depth = 0usize;
        for index in open..self.tokens.len() {
            let kind = &self.tokens[index].kind;
            if is_opener(kind) {
                depth += 1;
            } else if is_closer(kind) {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(index);
                }
            } else {
                match kind {
                    TokenKind::Eof => return None,
                    TokenKind::Dot | TokenKind::Directive(_) | TokenKind::HashInclude
                        if within_clause =>
                    {
                        return None;
                    }
                    _ => {}
                }
            }
        }
        None
    }

    /// Whether the parenthesis at `open` is followed, after its matching `)`, by an operator.
    fn parenthesis_continues_expression(&self, open: usize) -> bool {
        self.matching_close(open, true)
            .is_some_and(|close| continues_expression(self.kind_at(close + 1)))
    }

    /// Skips the balanced construct that starts at the current bracket; returns the span of the
    /// closing bracket.
    fn skip_balanced(&mut self, within_clause: bool) -> Parse<Span> {
        let open = self.current().clone();
        match self.matching_close(self.position, within_clause) {
            Some(close) => {
                self.position = close + 1;
                Ok(self.tokens[close].span)
            }
            None => {
                let text = self.context.sources.text(open.span).to_string();
                self.report(Diagnostic::error(open.span, format!("unclosed `{text}`")));
                Err(Failed)
            }
        }
    }

    /// Counts one level of recursion; see [`MAX_NESTING`].
    fn enter(&mut self) -> Parse<()> {
        self.nesting += 1;
        self.deepen()
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
        self.tree_depth = self.tree_depth.saturating_sub(1);
    }

    /// Counts one binary operator of a chain, which deepens the tree without recursion; see
    /// [`MAX_TREE_DEPTH`].
    fn enter_operator(&mut self) -> Parse<()> {
        self.deepen()
    }

    fn leave_operator(&mut self) {
        self.tree_depth = self.tree_depth.saturating_sub(1);
    }

    fn deepen(&mut self) -> Parse<()> {
        self.tree_depth += 1;
        if self.nesting > MAX_NESTING || self.tree_depth > MAX_TREE_DEPTH {
            let span = self.current().span;
            self.report(
                Diagnostic::error(span, "expression nested too deeply")
                    .with_hint("split it into several constraints with intermediate variables"),
            );
            return Err(Failed);
        }
        Ok(())
    }

    // ----- Items and recovery -----

    fn items(&mut self, items: &mut Vec<Item>) {
        loop {
            self.nesting = 0;
            self.tree_depth = 0;
            self.in_aggregate_body = false;
            let start = self.position;
            match self.kind().clone() {
                TokenKind::Eof => break,
                TokenKind::Directive(keyword) => {
                    if self.directive(keyword, items).is_err() {
                        self.recover_directive(start);
                    }
                }
                TokenKind::HashInclude => {
                    if self.include(items).is_err() {
                        self.recover_directive(start);
                    }
                }
                TokenKind::Ident(_) => match self.clause() {
                    Ok(item) => items.push(item),
                    Err(Failed) => self.recover_clause(),
                },
                TokenKind::Dot if self.continues_qualified_name_after_dot() => {
                    let dot = self.advance().span;
                    let word = self.advance();
                    let name = self.context.sources.text(word.span).to_string();
                    self.report(Diagnostic::error(
                        dot.to(word.span),
                        format!("unknown directive `.{name}`"),
                    ));
                    self.recover_directive(start);
                }
                _ => {
                    let _ = self.error_expected("a declaration, a directive or a clause");
                    self.recover_clause();
                }
            }
            if self.position == start && !self.at_eof() {
                self.advance();
            }
        }
    }

    /// Whether the current `.` touches a word after it (`.foo`, an unknown directive).
    fn continues_qualified_name_after_dot(&self) -> bool {
        let dot = self.current();
        let next = self.token_at(self.position + 1);
        matches!(next.kind, TokenKind::Ident(_)) && dot.span.end == next.span.start
    }

    /// After an error in a clause: skips to the `.` that ends it (consumed), or to the next
    /// directive.
    fn recover_clause(&mut self) {
        loop {
            match self.kind() {
                TokenKind::Eof | TokenKind::Directive(_) | TokenKind::HashInclude => break,
                TokenKind::Dot => {
                    self.advance();
                    break;
                }
                _ => {
                    self.advance();
                }
            }
        }
    }

    /// After an error in a directive that started at token `start`: directives have no
    /// terminator, so skips to the next directive, or to a word at the start of a line outside
    /// any bracket the directive opened (the likely start of a clause).
    fn recover_directive(&mut self, start: usize) {
        let mut depth: isize = 0;
        for token in &self.tokens[start..self.position] {
            if is_opener(&token.kind) {
                depth += 1;
            } else if is_closer(&token.kind) {
                depth -= 1;
            }
        }
        loop {
            let token = self.current();
            match token.kind {
                TokenKind::Eof | TokenKind::Directive(_) | TokenKind::HashInclude => break,
                TokenKind::Ident(_) if depth <= 0 && token.line_break_before => break,
                _ => {}
            }
            if is_opener(&token.kind) {
                depth += 1;
            } else if is_closer(&token.kind) {
                depth -= 1;
            }
            self.advance();
        }
    }

    // ----- Directives -----

    fn directive(&mut self, keyword: DirectiveKeyword, items: &mut Vec<Item>) -> Parse<()> {
        match keyword {
            DirectiveKeyword::Decl => self.relation_declaration(items),
            DirectiveKeyword::Type => self.type_declaration(items),
            DirectiveKeyword::NumberType => self.legacy_type_declaration("number", items),
            DirectiveKeyword::SymbolType => self.legacy_type_declaration("symbol", items),
            DirectiveKeyword::Input => self.io_directive(DirectiveKind::Input, items),
            DirectiveKeyword::Output => self.io_directive(DirectiveKind::Output, items),
            DirectiveKeyword::PrintSize => self.io_directive(DirectiveKind::PrintSize, items),
            DirectiveKeyword::LimitSize => self.io_directive(DirectiveKind::LimitSize, items),
            DirectiveKeyword::Include => self.include(items),
            DirectiveKeyword::Pragma => self.pragma(items),
            DirectiveKeyword::Once => {
                self.advance();
                if let Some(canonical) = &self.canonical {
                    self.context.once.insert(canonical.clone());
                }
                Ok(())
            }
            DirectiveKeyword::Comp => self.component(items),
            DirectiveKeyword::Init => self.component_instantiation(items),
            DirectiveKeyword::Functor => self.functor_declaration(items),
            DirectiveKeyword::Plan => self.query_plan(items),
            DirectiveKeyword::Override => {
                let keyword = self.advance().span;
                let name = self.expect_ident("a relation name")?;
                items.push(Item::Unsupported {
                    what: "component overrides (.override)".to_string(),
                    span: keyword.to(name.span),
                });
                Ok(())
            }
            DirectiveKeyword::Lattice => self.lattice(items),
        }
    }

    /// `.decl A, B(x: number, y: symbol) qualifiers... [choice-domain ...]`
    fn relation_declaration(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let mut names = vec![self.expect_ident("a relation name")?];
        while self.eat(&TokenKind::Comma).is_some() {
            names.push(self.expect_ident("a relation name")?);
        }
        self.expect(&TokenKind::LeftParen, "`(`")?;
        let mut attributes = Vec::new();
        let mut lattice = None;
        if !self.at(&TokenKind::RightParen) {
            loop {
                let name = self.expect_ident("an attribute name")?;
                self.expect(&TokenKind::Colon, "`:`")?;
                let ty = self.qualified_name("a type name")?;
                if self.at(&TokenKind::Less)
                    && *self.kind_at(self.position + 1) == TokenKind::Greater
                {
                    self.advance();
                    let end = self.advance().span;
                    lattice = Some(ty.span.to(end));
                }
                attributes.push(Attribute { name, ty });
                if self.eat(&TokenKind::Comma).is_none() {
                    break;
                }
            }
        }
        let close = self.expect(
            &TokenKind::RightParen,
            if attributes.is_empty() {
                "an attribute name or `)`"
            } else {
                "`,` or `)`"
            },
        )?;
        let mut end = close;
        let mut qualifiers = Vec::new();
        let mut choice_domain = None;
        loop {
            match self.kind() {
                // A word followed by `(` (or `.word`) starts the next clause.
                TokenKind::Ident(_)
                    if *self.kind_at(self.position + 1) != TokenKind::LeftParen
                        && !self.continues_qualified_name(self.position + 1) =>
                {
                    let qualifier = self.expect_ident("a qualifier")?;
                    if !QUALIFIERS.contains(&qualifier.name.as_str()) {
                        self.report(
                            Diagnostic::error(
                                qualifier.span,
                                format!("unknown relation qualifier `{}`", qualifier.name),
                            )
                            .with_hint(format!("the qualifiers are {}", QUALIFIERS.join(", "))),
                        );
                    }
                    end = qualifier.span;
                    qualifiers.push(qualifier);
                }
                TokenKind::ChoiceDomain => {
                    let start = self.advance().span;
                    let last = self.choice_domain_keys()?;
                    choice_domain = Some(start.to(last));
                    end = last;
                }
                _ => break,
            }
        }
        items.push(Item::Relation(RelationDecl {
            names,
            attributes,
            qualifiers,
            span: keyword.to(end),
        }));
        if let Some(span) = lattice {
            items.push(Item::Unsupported {
                what: "lattice attributes (`T<>`)".to_string(),
                span,
            });
        }
        if let Some(span) = choice_domain {
            items.push(Item::Unsupported {
                what: "choice-domain".to_string(),
                span,
            });
        }
        Ok(())
    }

    /// The keys after `choice-domain`: `x`, `(x, y)`, separated by commas. Returns the span of
    /// the last token.
    fn choice_domain_keys(&mut self) -> Parse<Span> {
        loop {
            let end = if self.eat(&TokenKind::LeftParen).is_some() {
                self.expect_ident("an attribute name")?;
                while self.eat(&TokenKind::Comma).is_some() {
                    self.expect_ident("an attribute name")?;
                }
                self.expect(&TokenKind::RightParen, "`,` or `)`")?
            } else {
                self.expect_ident("an attribute name or `(`")?.span
            };
            if self.eat(&TokenKind::Comma).is_none() {
                return Ok(end);
            }
        }
    }

    /// `.type T <: base`, `.type T = A`, `.type T = A | B`; records and ADTs are skipped.
    fn type_declaration(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let name = self.expect_ident("a type name")?;
        if self.eat(&TokenKind::Subtype).is_some() {
            let base = self.qualified_name("a type name")?;
            let span = keyword.to(base.span);
            items.push(Item::Type(TypeDecl {
                name,
                definition: TypeDefinition::Subtype(base),
                span,
            }));
            return Ok(());
        }
        if self.eat(&TokenKind::Equal).is_none() {
            // `.type T` alone is Soufflé's deprecated form of `.type T <: symbol`.
            let current = self.current();
            let ends_here = current.line_break_before
                || matches!(
                    current.kind,
                    TokenKind::Directive(_) | TokenKind::HashInclude | TokenKind::Eof
                );
            if !ends_here {
                return Err(self.error_expected("`<:` or `=`"));
            }
            items.push(Item::Type(TypeDecl {
                span: keyword.to(name.span),
                name,
                definition: TypeDefinition::Subtype(Ident {
                    name: "symbol".to_string(),
                    span: keyword,
                }),
            }));
            return Ok(());
        }
        if self.at(&TokenKind::LeftBracket) {
            // Reported at the `[` that makes it a record.
            let bracket = self.current().span;
            let end = self.skip_balanced(true)?;
            items.push(Item::Unsupported {
                what: "record types".to_string(),
                span: bracket.to(end),
            });
            return Ok(());
        }
        let mut members = Vec::new();
        let mut algebraic = false;
        let mut end;
        loop {
            let member = self.qualified_name("a type name")?;
            end = member.span;
            if self.at(&TokenKind::LeftBrace) {
                algebraic = true;
                end = self.skip_balanced(true)?;
            }
            members.push(member);
            if self.eat(&TokenKind::Pipe).is_none() {
                break;
            }
        }
        let span = keyword.to(end);
        if algebraic {
            // Reported at the first branch.
            items.push(Item::Unsupported {
                what: "algebraic data types".to_string(),
                span: members[0].span.to(end),
            });
            return Ok(());
        }
        let definition = if members.len() == 1 {
            TypeDefinition::Alias(members.remove(0))
        } else {
            TypeDefinition::Union(members)
        };
        items.push(Item::Type(TypeDecl {
            name,
            definition,
            span,
        }));
        Ok(())
    }

    /// `.number_type T` and `.symbol_type T`: Soufflé's old spelling of `.type T <: base`.
    fn legacy_type_declaration(&mut self, base: &str, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let name = self.expect_ident("a type name")?;
        items.push(Item::Type(TypeDecl {
            span: keyword.to(name.span),
            name,
            definition: TypeDefinition::Subtype(Ident {
                name: base.to_string(),
                span: keyword,
            }),
        }));
        Ok(())
    }

    /// `.input A, B(key=value, ...)`, and the same for `.output`, `.printsize`, `.limitsize`.
    fn io_directive(&mut self, kind: DirectiveKind, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let mut relations = vec![self.qualified_name("a relation name")?];
        while self.eat(&TokenKind::Comma).is_some() {
            relations.push(self.qualified_name("a relation name")?);
        }
        let mut end = relations[relations.len() - 1].span;
        let mut parameters = Vec::new();
        if self.eat(&TokenKind::LeftParen).is_some() {
            if !self.at(&TokenKind::RightParen) {
                loop {
                    let key = self.expect_ident("a parameter name")?;
                    self.expect(&TokenKind::Equal, "`=`")?;
                    let token = self.current().clone();
                    let value = match &token.kind {
                        TokenKind::String(value) => value.clone(),
                        TokenKind::Ident(name) => name.clone(),
                        TokenKind::Number(_) => self.context.sources.text(token.span).to_string(),
                        TokenKind::True => "true".to_string(),
                        TokenKind::False => "false".to_string(),
                        _ => {
                            return Err(self.error_expected(
                                "a parameter value (a string, a number or a name)",
                            ));
                        }
                    };
                    self.advance();
                    parameters.push(Parameter {
                        key,
                        value,
                        value_span: token.span,
                    });
                    if self.eat(&TokenKind::Comma).is_none() {
                        break;
                    }
                }
            }
            end = self.expect(
                &TokenKind::RightParen,
                if parameters.is_empty() {
                    "a parameter name or `)`"
                } else {
                    "`,` or `)`"
                },
            )?;
        }
        items.push(Item::Directive(Directive {
            kind,
            relations,
            parameters,
            span: keyword.to(end),
        }));
        Ok(())
    }

    /// `.pragma "key" "value"` or `.pragma "key"`.
    fn pragma(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let TokenKind::String(_) = self.kind() else {
            return Err(self.error_expected("a string"));
        };
        let mut end = self.advance().span;
        if let TokenKind::String(_) = self.kind() {
            end = self.advance().span;
        }
        items.push(Item::Pragma(keyword.to(end)));
        Ok(())
    }

    /// `.include "file.dl"` or `#include "file.dl"`.
    fn include(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let TokenKind::String(path) = self.kind().clone() else {
            return Err(self.error_expected("a file name in double quotes"));
        };
        let path_span = self.advance().span;
        self.include_file(&path, keyword.to(path_span), items);
        Ok(())
    }

    /// Parses the file `path` names (relative to the including file's directory) and appends
    /// its items; problems are reported at `span`, the include directive.
    fn include_file(&mut self, path: &str, span: Span, items: &mut Vec<Item>) {
        let resolved = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            self.directory.join(path)
        };
        let shown = resolved.display().to_string();
        let canonical = match std::fs::canonicalize(&resolved) {
            Ok(canonical) => canonical,
            Err(error) => {
                self.report(
                    Diagnostic::error(span, format!("cannot find include file `{path}`"))
                        .with_hint(format!("looked for `{shown}`: {}", io_message(&error))),
                );
                return;
            }
        };
        if self.context.once.contains(&canonical) {
            return;
        }
        let stack = &self.context.include_stack;
        if let Some(index) = stack.iter().position(|(open, _)| *open == canonical) {
            let chain: Vec<String> = stack[index..]
                .iter()
                .map(|(_, shown)| format!("`{shown}`"))
                .chain(std::iter::once(format!("`{shown}`")))
                .collect();
            self.report(Diagnostic::error(
                span,
                format!("include cycle: {}", chain.join(" includes ")),
            ));
            return;
        }
        let text = match std::fs::read_to_string(&resolved) {
            Ok(text) => text,
            Err(error) => {
                self.report(Diagnostic::error(
                    span,
                    format!("cannot read include file `{shown}`: {}", io_message(&error)),
                ));
                return;
            }
        };
        // The included file's diagnostics come after those above the include.
        self.flush_lexical(span.start);
        let file = self.context.sources.add(shown.clone(), text);
        let directory = resolved.parent().map(Path::to_path_buf).unwrap_or_default();
        self.context
            .parse_items(file, directory, Some(canonical), shown, items);
    }

    /// `.comp Name<T> : Base { ... }`, skipped.
    fn component(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        self.expect_ident("a component name")?;
        loop {
            match self.kind() {
                TokenKind::LeftBrace => break,
                TokenKind::Eof
                | TokenKind::Dot
                | TokenKind::Directive(_)
                | TokenKind::HashInclude
                | TokenKind::LeftParen => return Err(self.error_expected("`{`")),
                _ => {
                    self.advance();
                }
            }
        }
        let end = self.skip_balanced(false)?;
        items.push(Item::Unsupported {
            what: "components (.comp)".to_string(),
            span: keyword.to(end),
        });
        Ok(())
    }

    /// `.init name = Component<T>`, skipped.
    fn component_instantiation(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        self.expect_ident("an instance name")?;
        self.expect(&TokenKind::Equal, "`=`")?;
        let mut end = self.qualified_name("a component name")?.span;
        if self.at(&TokenKind::Less) {
            let mut depth = 0usize;
            loop {
                match self.kind() {
                    TokenKind::Less => depth += 1,
                    TokenKind::Greater => depth -= 1,
                    TokenKind::Ident(_) | TokenKind::Comma | TokenKind::Dot => {}
                    _ => return Err(self.error_expected("a type parameter or `>`")),
                }
                end = self.advance().span;
                if depth == 0 {
                    break;
                }
            }
        }
        items.push(Item::Unsupported {
            what: "component instantiations (.init)".to_string(),
            span: keyword.to(end),
        });
        Ok(())
    }

    /// `.functor name(a: number, symbol): number [stateful]`, skipped.
    fn functor_declaration(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        self.expect_ident("a functor name")?;
        if !self.at(&TokenKind::LeftParen) {
            return Err(self.error_expected("`(`"));
        }
        self.skip_balanced(true)?;
        self.expect(&TokenKind::Colon, "`:`")?;
        let mut end = self.qualified_name("a type name")?.span;
        if matches!(self.kind(), TokenKind::Ident(word) if word == "stateful") {
            end = self.advance().span;
        }
        items.push(Item::Unsupported {
            what: "user-defined functors (.functor)".to_string(),
            span: keyword.to(end),
        });
        Ok(())
    }

    /// `.plan 0: (1, 2), 1: (2, 1)`, after a rule; skipped.
    fn query_plan(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        let mut end;
        loop {
            let TokenKind::Number(_) = self.kind() else {
                return Err(self.error_expected("a version number"));
            };
            self.advance();
            self.expect(&TokenKind::Colon, "`:`")?;
            if !self.at(&TokenKind::LeftParen) {
                return Err(self.error_expected("`(`"));
            }
            end = self.skip_balanced(true)?;
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        items.push(Item::Unsupported {
            what: "query plans (.plan)".to_string(),
            span: keyword.to(end),
        });
        Ok(())
    }

    /// `.lattice Name<> { Bottom -> ..., Lub -> ..., ... }`, skipped.
    fn lattice(&mut self, items: &mut Vec<Item>) -> Parse<()> {
        let keyword = self.advance().span;
        self.expect_ident("a lattice name")?;
        while !self.at(&TokenKind::LeftBrace) {
            match self.kind() {
                TokenKind::Less | TokenKind::Greater | TokenKind::Ident(_) => {
                    self.advance();
                }
                _ => return Err(self.error_expected("`{`")),
            }
        }
        let end = self.skip_balanced(true)?;
        items.push(Item::Unsupported {
            what: "lattices (.lattice)".to_string(),
            span: keyword.to(end),
        });
        Ok(())
    }

    // ----- Clauses -----

    /// A fact `A(1).`, or a rule `A(x), B(x) :- body.`; subsumptive rules
    /// `A(x) <= A(y) :- body.` are parsed and kept as unsupported.
    fn clause(&mut self) -> Parse<Item> {
        let first = self.atom()?;
        let start = first.span;
        if let Some(subsumes) = self.eat(&TokenKind::LessEqual) {
            self.atom()?;
            self.expect(&TokenKind::If, "`:-`")?;
            self.disjunction()?;
            let end = self.expect(&TokenKind::Dot, "`,`, `;` or `.`")?;
            let _ = start;
            // Reported at the `<=` that makes it subsumptive.
            return Ok(Item::Unsupported {
                what: "subsumption (`<=` rules)".to_string(),
                span: subsumes.to(end),
            });
        }
        let mut heads = vec![first];
        while self.eat(&TokenKind::Comma).is_some() {
            heads.push(self.atom()?);
        }
        match self.kind() {
            TokenKind::Dot => {
                if heads.len() > 1 {
                    let diagnostic = self
                        .expected_diagnostic("`:-`")
                        .with_hint("a fact has a single atom: write one fact per clause");
                    self.report(diagnostic);
                }
                let end = self.advance().span;
                Ok(Item::Clause(Clause {
                    heads,
                    body: None,
                    span: start.to(end),
                }))
            }
            TokenKind::If => {
                self.advance();
                let body = self.disjunction()?;
                let end = self.expect(&TokenKind::Dot, "`,`, `;` or `.`")?;
                Ok(Item::Clause(Clause {
                    heads,
                    body: Some(body),
                    span: start.to(end),
                }))
            }
            _ => Err(self.error_expected(if heads.len() == 1 {
                "`.`, `:-` or `,`"
            } else {
                "`:-` or `,`"
            })),
        }
    }

    /// `R(e1, ..., en)`, `R()`.
    fn atom(&mut self) -> Parse<Atom> {
        let relation = self.qualified_name("a relation name")?;
        self.expect(&TokenKind::LeftParen, "`(`")?;
        self.enter()?;
        let args = self.arguments()?;
        let end = self.expect(
            &TokenKind::RightParen,
            if args.is_empty() {
                "an expression or `)`"
            } else {
                "`,` or `)`"
            },
        )?;
        self.leave();
        Ok(Atom {
            span: relation.span.to(end),
            relation,
            args,
        })
    }

    /// Expressions separated by commas, up to (not including) a `)`.
    fn arguments(&mut self) -> Parse<Vec<Expr>> {
        let mut args = Vec::new();
        if self.at(&TokenKind::RightParen) {
            return Ok(args);
        }
        loop {
            args.push(self.expression()?);
            if self.eat(&TokenKind::Comma).is_none() {
                return Ok(args);
            }
        }
    }

    /// Conjunctions separated by `;`.
    fn disjunction(&mut self) -> Parse<Disjunction> {
        let mut alternatives = vec![self.conjunction()?];
        while self.at(&TokenKind::Semicolon) {
            let semicolon = self.advance().span;
            if self.in_aggregate_body {
                self.report(Diagnostic::error(
                    semicolon,
                    "disjunction inside an aggregate is not supported",
                ));
            }
            alternatives.push(self.conjunction()?);
        }
        Ok(alternatives)
    }

    /// Literals separated by `,`.
    fn conjunction(&mut self) -> Parse<Conjunction> {
        let mut literals = vec![self.literal()?];
        while self.eat(&TokenKind::Comma).is_some() {
            literals.push(self.literal()?);
        }
        Ok(literals)
    }

    fn literal(&mut self) -> Parse<Literal> {
        match self.kind() {
            TokenKind::Bang => self.negation(),
            TokenKind::LeftParen => {
                if self.parenthesis_continues_expression(self.position) {
                    self.comparison()
                } else {
                    self.group()
                }
            }
            TokenKind::True | TokenKind::False => {
                let token = self.advance();
                Ok(Literal::Bool(token.kind == TokenKind::True, token.span))
            }
            TokenKind::Ident(name) => {
                let is_condition = name == "contains" || name == "match";
                let name_end = self.qualified_name_end(self.position);
                if *self.kind_at(name_end) != TokenKind::LeftParen
                    || self.parenthesis_continues_expression(name_end)
                {
                    self.comparison()
                } else if is_condition && name_end == self.position + 1 {
                    Ok(Literal::Test(self.expression()?))
                } else {
                    Ok(Literal::Atom(self.atom()?))
                }
            }
            kind if starts_expression(kind) => self.comparison(),
            _ => Err(self.error_expected("an atom or a constraint")),
        }
    }

    /// `!literal`, with Soufflé's meaning for each kind of literal.
    fn negation(&mut self) -> Parse<Literal> {
        let bang = self.advance().span;
        self.enter()?;
        let inner = self.literal()?;
        self.leave();
        let span = bang.to(inner.span());
        Ok(match inner {
            Literal::Atom(atom) => Literal::Negated(atom, span),
            // `!!A(x)` is `A(x)`.
            Literal::Negated(atom, _) => Literal::Atom(atom),
            Literal::Comparison { op, lhs, rhs, .. } => Literal::Comparison {
                op: negated(op),
                lhs,
                rhs,
                span,
            },
            Literal::Bool(value, _) => Literal::Bool(!value, span),
            Literal::Test(condition) => Literal::Test(Expr::Unary {
                op: UnaryOp::LogicalNot,
                arg: Box::new(condition),
                span,
            }),
            Literal::Group(..) => Literal::Unsupported {
                what: "negation of a parenthesised body `!( ... )`".to_string(),
                span,
            },
            Literal::Unsupported { what, .. } => Literal::Unsupported { what, span },
        })
    }

    /// `( disjunction )`
    fn group(&mut self) -> Parse<Literal> {
        let open = self.advance().span;
        self.enter()?;
        let body = self.disjunction()?;
        let close = self.expect(&TokenKind::RightParen, "`,`, `;` or `)`")?;
        self.leave();
        Ok(Literal::Group(body, open.to(close)))
    }

    /// `e1 OP e2`
    fn comparison(&mut self) -> Parse<Literal> {
        let lhs = self.binary(0)?;
        let Some(op) = compare_operator(self.kind()) else {
            let mut diagnostic = self.expected_diagnostic("a comparison operator");
            if matches!(lhs.expr, Expr::Variable(_))
                && matches!(
                    self.kind(),
                    TokenKind::Comma
                        | TokenKind::Dot
                        | TokenKind::Semicolon
                        | TokenKind::RightParen
                        | TokenKind::RightBrace
                )
            {
                diagnostic = diagnostic
                    .with_hint("an atom without arguments is written with parentheses: `name()`");
            }
            self.report(diagnostic);
            return Err(Failed);
        };
        self.advance();
        let rhs = self.binary(0)?;
        Ok(Literal::Comparison {
            op,
            span: lhs.extent.to(rhs.extent),
            lhs: lhs.expr,
            rhs: rhs.expr,
        })
    }

    // ----- Expressions -----

    fn expression(&mut self) -> Parse<Expr> {
        Ok(self.binary(0)?.expr)
    }

    /// Left-associative binary operators of precedence `level` and tighter.
    fn binary(&mut self, level: usize) -> Parse<Parsed> {
        if level == BINARY_LEVELS {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        // Each operator deepens the (left-leaning) tree by one: count it as nesting, so that
        // a chain of thousands of operators cannot build a tree too deep to walk or drop.
        let mut operators = 0;
        while let Some((op, op_level)) = binary_operator(self.kind()) {
            if op_level != level {
                break;
            }
            self.advance();
            self.enter_operator()?;
            operators += 1;
            let rhs = self.binary(level + 1)?;
            let extent = lhs.extent.to(rhs.extent);
            lhs = Parsed {
                expr: Expr::Binary {
                    op,
                    lhs: Box::new(lhs.expr),
                    rhs: Box::new(rhs.expr),
                    span: extent,
                },
                extent,
            };
        }
        for _ in 0..operators {
            self.leave_operator();
        }
        Ok(lhs)
    }

    /// `-e`, `bnot e`, `lnot e`: tighter than every binary operator but `^`, so `-x ^ 2` is
    /// `-(x ^ 2)`.
    fn unary(&mut self) -> Parse<Parsed> {
        let op = match self.kind() {
            TokenKind::Minus => UnaryOp::Neg,
            TokenKind::Bnot => UnaryOp::BitNot,
            TokenKind::Lnot => UnaryOp::LogicalNot,
            _ => return self.power(),
        };
        let start = self.advance().span;
        self.enter()?;
        let operand = self.unary()?;
        self.leave();
        let extent = start.to(operand.extent);
        Ok(Parsed {
            expr: Expr::Unary {
                op,
                arg: Box::new(operand.expr),
                span: extent,
            },
            extent,
        })
    }

    /// `a ^ b`, right-associative; the exponent may itself be negated (`2 ^ -1`).
    fn power(&mut self) -> Parse<Parsed> {
        let base = self.primary()?;
        if self.eat(&TokenKind::Caret).is_none() {
            return Ok(base);
        }
        self.enter()?;
        let exponent = self.unary()?;
        self.leave();
        let extent = base.extent.to(exponent.extent);
        Ok(Parsed {
            expr: Expr::Binary {
                op: BinaryOp::Pow,
                lhs: Box::new(base.expr),
                rhs: Box::new(exponent.expr),
                span: extent,
            },
            extent,
        })
    }

    fn unsupported(what: impl Into<String>, span: Span) -> Parsed {
        Parsed {
            expr: Expr::Unsupported {
                what: what.into(),
                span,
            },
            extent: span,
        }
    }

    fn primary(&mut self) -> Parse<Parsed> {
        let token = self.current().clone();
        let followed_by_paren = *self.kind_at(self.position + 1) == TokenKind::LeftParen;
        match token.kind {
            TokenKind::Ident(name) => {
                if followed_by_paren {
                    match name.as_str() {
                        "as" => {
                            self.advance();
                            let end = self.skip_balanced(true)?;
                            Ok(Self::unsupported("type casts (`as`)", token.span.to(end)))
                        }
                        "autoinc" => {
                            self.advance();
                            let end = self.skip_balanced(true)?;
                            Ok(Self::unsupported(
                                "the counter `autoinc()`",
                                token.span.to(end),
                            ))
                        }
                        _ => self.call(Ident {
                            name,
                            span: token.span,
                        }),
                    }
                } else {
                    self.advance();
                    if name == "nil" {
                        Ok(Self::unsupported("records (`nil`)", token.span))
                    } else {
                        Ok(Parsed {
                            expr: Expr::Variable(Ident {
                                name,
                                span: token.span,
                            }),
                            extent: token.span,
                        })
                    }
                }
            }
            TokenKind::Underscore => {
                self.advance();
                Ok(Parsed {
                    expr: Expr::Wildcard(token.span),
                    extent: token.span,
                })
            }
            TokenKind::Number(literal) => {
                self.advance();
                Ok(Parsed {
                    expr: Expr::Number(literal, token.span),
                    extent: token.span,
                })
            }
            TokenKind::String(value) => {
                self.advance();
                Ok(Parsed {
                    expr: Expr::String(value, token.span),
                    extent: token.span,
                })
            }
            TokenKind::LeftParen => {
                self.advance();
                self.enter()?;
                let inner = self.binary(0)?;
                let close = self.expect(&TokenKind::RightParen, "`)`")?;
                self.leave();
                Ok(Parsed {
                    expr: inner.expr,
                    extent: token.span.to(close),
                })
            }
            TokenKind::LeftBracket => {
                let end = self.skip_balanced(true)?;
                Ok(Self::unsupported("records", token.span.to(end)))
            }
            TokenKind::Dollar => {
                self.advance();
                let adjacent = self.current().span.start == token.span.end;
                if adjacent && matches!(self.kind(), TokenKind::Ident(_)) {
                    let branch = self.qualified_name("a branch name")?;
                    let mut end = branch.span;
                    if self.at(&TokenKind::LeftParen) {
                        end = self.skip_balanced(true)?;
                    }
                    Ok(Self::unsupported(
                        format!("algebraic data types (`${}`)", branch.name),
                        token.span.to(end),
                    ))
                } else {
                    Ok(Self::unsupported("the counter `$`", token.span))
                }
            }
            TokenKind::At => self.user_defined(token.span),
            TokenKind::Count
            | TokenKind::Sum
            | TokenKind::Min
            | TokenKind::Max
            | TokenKind::Mean => self.aggregate(),
            _ => Err(self.error_expected("an expression")),
        }
    }

    /// `@f(args)` (a user-defined functor) or `@@f x, init : body` (a user-defined aggregate),
    /// both skipped.
    fn user_defined(&mut self, at: Span) -> Parse<Parsed> {
        self.advance();
        if self.eat(&TokenKind::At).is_some() {
            let name = self.expect_ident("an aggregate name")?;
            loop {
                match self.kind() {
                    TokenKind::Colon => break,
                    TokenKind::Eof
                    | TokenKind::Dot
                    | TokenKind::Directive(_)
                    | TokenKind::HashInclude => return Err(self.error_expected("`:`")),
                    kind if is_opener(kind) => {
                        self.skip_balanced(true)?;
                    }
                    _ => {
                        self.advance();
                    }
                }
            }
            self.advance();
            let end = if self.at(&TokenKind::LeftBrace) {
                self.skip_balanced(true)?
            } else {
                self.atom()?.span
            };
            return Ok(Self::unsupported(
                format!("user-defined aggregates (`@@{}`)", name.name),
                at.to(end),
            ));
        }
        let name = self.expect_ident("a functor name")?;
        if !self.at(&TokenKind::LeftParen) {
            return Err(self.error_expected("`(`"));
        }
        let end = self.skip_balanced(true)?;
        Ok(Self::unsupported(
            format!("user-defined functors (`@{}`)", name.name),
            at.to(end),
        ))
    }

    /// `name(args)`; the current token is the name.
    fn call(&mut self, name: Ident) -> Parse<Parsed> {
        self.advance();
        self.advance();
        self.enter()?;
        let args = self.arguments()?;
        let end = self.expect(
            &TokenKind::RightParen,
            if args.is_empty() {
                "an expression or `)`"
            } else {
                "`,` or `)`"
            },
        )?;
        self.leave();
        let span = name.span.to(end);
        Ok(Parsed {
            expr: Expr::Call { name, args, span },
            extent: span,
        })
    }

    /// `count : body`, `sum e : body`, `min e : body`, ..., where the body is `{ literals }` or
    /// a single atom; or the functors `min(a, b)` and `max(a, b)`.
    fn aggregate(&mut self) -> Parse<Parsed> {
        let keyword = self.current().clone();
        let kind = match keyword.kind {
            TokenKind::Count => AggregateKind::Count,
            TokenKind::Sum => AggregateKind::Sum,
            TokenKind::Min => AggregateKind::Min,
            TokenKind::Max => AggregateKind::Max,
            _ => AggregateKind::Mean,
        };
        let open = self.position + 1;
        if matches!(kind, AggregateKind::Min | AggregateKind::Max)
            && *self.kind_at(open) == TokenKind::LeftParen
            && self
                .matching_close(open, true)
                .is_none_or(|close| *self.kind_at(close + 1) != TokenKind::Colon)
        {
            return self.call(Ident {
                name: kind.name().to_string(),
                span: keyword.span,
            });
        }
        self.advance();
        self.enter()?;
        let target = if kind == AggregateKind::Count {
            None
        } else {
            Some(Box::new(self.expression()?))
        };
        self.expect(&TokenKind::Colon, "`:`")?;
        let (body, end) = match self.kind() {
            TokenKind::LeftBrace => {
                self.advance();
                let outer = std::mem::replace(&mut self.in_aggregate_body, true);
                let alternatives = self.disjunction()?;
                self.in_aggregate_body = outer;
                let close = self.expect(&TokenKind::RightBrace, "`,` or `}`")?;
                // A disjunction was reported; keep its first alternative.
                let body = alternatives.into_iter().next().unwrap_or_default();
                (body, close)
            }
            TokenKind::Ident(_) => {
                let atom = self.atom()?;
                let end = atom.span;
                (vec![Literal::Atom(atom)], end)
            }
            _ => return Err(self.error_expected("`{` or an atom")),
        };
        self.leave();
        let span = keyword.span.to(end);
        Ok(Parsed {
            expr: Expr::Aggregate {
                kind,
                target,
                body,
                span,
            },
            extent: span,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::ast::NumberLiteral;
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ----- Helpers: a compact, fully parenthesised text form of the tree -----

    fn show_expr(expr: &Expr) -> String {
        match expr {
            Expr::Variable(ident) => ident.name.clone(),
            Expr::Wildcard(_) => "_".to_string(),
            Expr::Number(NumberLiteral::Integer(value), _) => value.to_string(),
            Expr::Number(NumberLiteral::Float(value), _) => format!("{value:?}"),
            Expr::String(value, _) => format!("{value:?}"),
            Expr::Unary { op, arg, .. } => {
                let name = match op {
                    UnaryOp::Neg => "neg",
                    UnaryOp::BitNot => "bnot",
                    UnaryOp::LogicalNot => "lnot",
                };
                format!("({name} {})", show_expr(arg))
            }
            Expr::Binary { op, lhs, rhs, .. } => {
                format!("({} {} {})", op.symbol(), show_expr(lhs), show_expr(rhs))
            }
            Expr::Call { name, args, .. } => format!("{}({})", name.name, show_exprs(args)),
            Expr::Aggregate {
                kind, target, body, ..
            } => {
                let mut out = format!("({}", kind.name());
                if let Some(target) = target {
                    let _ = write!(out, " {}", show_expr(target));
                }
                let _ = write!(out, " : {{{}}})", show_conjunction(body));
                out
            }
            Expr::Unsupported { what, .. } => format!("<{what}>"),
        }
    }

    fn show_exprs(exprs: &[Expr]) -> String {
        exprs.iter().map(show_expr).collect::<Vec<_>>().join(", ")
    }

    fn show_atom(atom: &Atom) -> String {
        format!("{}({})", atom.relation.name, show_exprs(&atom.args))
    }

    fn show_literal(literal: &Literal) -> String {
        match literal {
            Literal::Atom(atom) => show_atom(atom),
            Literal::Negated(atom, _) => format!("!{}", show_atom(atom)),
            Literal::Comparison { op, lhs, rhs, .. } => {
                format!("{} {} {}", show_expr(lhs), op.symbol(), show_expr(rhs))
            }
            Literal::Bool(value, _) => value.to_string(),
            Literal::Test(expr) => format!("test {}", show_expr(expr)),
            Literal::Group(body, _) => format!("({})", show_disjunction(body)),
            Literal::Unsupported { what, .. } => format!("<{what}>"),
        }
    }

    fn show_conjunction(literals: &[Literal]) -> String {
        literals
            .iter()
            .map(show_literal)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show_disjunction(body: &Disjunction) -> String {
        body.iter()
            .map(|conjunction| show_conjunction(conjunction))
            .collect::<Vec<_>>()
            .join(" ; ")
    }

    fn show_item(item: &Item) -> String {
        match item {
            Item::Type(declaration) => {
                let definition = match &declaration.definition {
                    TypeDefinition::Subtype(base) => format!("<: {}", base.name),
                    TypeDefinition::Alias(other) => format!("= {}", other.name),
                    TypeDefinition::Union(members) => format!(
                        "= {}",
                        members
                            .iter()
                            .map(|member| member.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ),
                };
                format!(".type {} {definition}", declaration.name.name)
            }
            Item::Relation(declaration) => {
                let names: Vec<&str> = declaration
                    .names
                    .iter()
                    .map(|name| name.name.as_str())
                    .collect();
                let attributes: Vec<String> = declaration
                    .attributes
                    .iter()
                    .map(|attribute| format!("{}: {}", attribute.name.name, attribute.ty.name))
                    .collect();
                let mut out = format!(".decl {}({})", names.join(", "), attributes.join(", "));
                for qualifier in &declaration.qualifiers {
                    let _ = write!(out, " {}", qualifier.name);
                }
                out
            }
            Item::Directive(directive) => {
                let kind = match directive.kind {
                    DirectiveKind::Input => "input",
                    DirectiveKind::Output => "output",
                    DirectiveKind::PrintSize => "printsize",
                    DirectiveKind::LimitSize => "limitsize",
                };
                let relations: Vec<&str> = directive
                    .relations
                    .iter()
                    .map(|relation| relation.name.as_str())
                    .collect();
                let parameters: Vec<String> = directive
                    .parameters
                    .iter()
                    .map(|parameter| format!("{}={:?}", parameter.key.name, parameter.value))
                    .collect();
                format!(
                    ".{kind} {}({})",
                    relations.join(", "),
                    parameters.join(", ")
                )
            }
            Item::Clause(clause) => {
                let heads: Vec<String> = clause.heads.iter().map(show_atom).collect();
                match &clause.body {
                    None => format!("{}.", heads.join(", ")),
                    Some(body) => format!("{} :- {}.", heads.join(", "), show_disjunction(body)),
                }
            }
            Item::Pragma(_) => ".pragma".to_string(),
            Item::Unsupported { what, .. } => format!("<{what}>"),
        }
    }

    struct Parsed {
        program: Program,
        diagnostics: Vec<Diagnostic>,
        sources: SourceMap,
    }

    impl Parsed {
        fn items(&self) -> Vec<String> {
            self.program.items.iter().map(show_item).collect()
        }

        /// `file:line:col: message` of every diagnostic.
        fn errors(&self) -> Vec<String> {
            self.diagnostics
                .iter()
                .map(|d| format!("{}: {}", self.sources.location(d.span), d.message))
                .collect()
        }

        fn text(&self, span: Span) -> &str {
            self.sources.text(span)
        }
    }

    fn parse(text: &str) -> Parsed {
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_source(&mut sources, "test.dl", text, None);
        Parsed {
            program,
            diagnostics,
            sources,
        }
    }

    /// Parses a program that must have no diagnostics, and returns its items as text.
    fn items(text: &str) -> Vec<String> {
        let parsed = parse(text);
        assert!(
            parsed.diagnostics.is_empty(),
            "unexpected diagnostics: {:?}",
            parsed.errors()
        );
        parsed.items()
    }

    fn single_item(text: &str) -> String {
        let items = items(text);
        assert_eq!(items.len(), 1, "{items:?}");
        items.into_iter().next().unwrap_or_default()
    }

    /// The expression `text`, parsed as the right-hand side of a constraint.
    fn expr(text: &str) -> String {
        let parsed = parse(&format!("r(x) :- x = {text}."));
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        match &parsed.program.items[..] {
            [Item::Clause(clause)] => match &clause.body.as_ref().map(|body| &body[..]) {
                Some([conjunction]) => match &conjunction[..] {
                    [Literal::Comparison { rhs, .. }] => show_expr(rhs),
                    other => panic!("unexpected body {other:?}"),
                },
                other => panic!("unexpected body {other:?}"),
            },
            other => panic!("unexpected items {other:?}"),
        }
    }

    fn first_clause(parsed: &Parsed) -> &Clause {
        parsed
            .program
            .items
            .iter()
            .find_map(|item| match item {
                Item::Clause(clause) => Some(clause),
                _ => None,
            })
            .expect("a clause")
    }

    /// A fresh directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "vigil-parser-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, text).expect("write file");
    }

    // ----- Expressions -----

    #[test]
    fn arithmetic_precedence_and_associativity() {
        assert_eq!(expr("1 + 2 * 3 ^ 2 ^ 2"), "(+ 1 (* 2 (^ 3 (^ 2 2))))");
        assert_eq!(expr("1 - 2 - 3"), "(- (- 1 2) 3)");
        assert_eq!(expr("a / b * c % d"), "(% (* (/ a b) c) d)");
        assert_eq!(expr("(1 + 2) * 3"), "(* (+ 1 2) 3)");
        assert_eq!(expr("2 ^ 3 * 4"), "(* (^ 2 3) 4)");
    }

    #[test]
    fn unary_operators_bind_looser_than_power_only() {
        assert_eq!(expr("- x ^ 2"), "(neg (^ x 2))");
        assert_eq!(expr("-2"), "(neg 2)");
        assert_eq!(expr("- - x"), "(neg (neg x))");
        assert_eq!(expr("-x * y"), "(* (neg x) y)");
        assert_eq!(expr("bnot x + 1"), "(+ (bnot x) 1)");
        assert_eq!(expr("lnot a land b"), "(land (lnot a) b)");
        assert_eq!(expr("2 ^ -3 ^ 2"), "(^ 2 (neg (^ 3 2)))");
        assert_eq!(expr("x - -1"), "(- x (neg 1))");
    }

    #[test]
    fn bitwise_and_logical_precedence() {
        assert_eq!(expr("a band b bor c"), "(bor (band a b) c)");
        assert_eq!(expr("a bor b band c"), "(bor a (band b c))");
        assert_eq!(expr("a bxor b band c"), "(bxor a (band b c))");
        assert_eq!(expr("a bor b bxor c"), "(bor a (bxor b c))");
        assert_eq!(expr("a bshl 1 + 2"), "(bshl a (+ 1 2))");
        assert_eq!(expr("a band b bshr 1"), "(band a (bshr b 1))");
        assert_eq!(expr("a bshru 1 bshl 2"), "(bshl (bshru a 1) 2)");
        assert_eq!(expr("a lor b land c"), "(lor a (land b c))");
        assert_eq!(expr("a lxor b lor c"), "(lor (lxor a b) c)");
        assert_eq!(expr("a land b lxor c"), "(lxor (land a b) c)");
        assert_eq!(expr("a land b bor c"), "(land a (bor b c))");
    }

    #[test]
    fn operands_and_functor_calls() {
        assert_eq!(
            expr("cat(a, \"-\", to_string(n))"),
            "cat(a, \"-\", to_string(n))"
        );
        assert_eq!(expr("strlen(s) + 1"), "(+ strlen(s) 1)");
        assert_eq!(expr("max(a, b) - min(c, 3)"), "(- max(a, b) min(c, 3))");
        assert_eq!(expr("range(1, 5)"), "range(1, 5)");
        assert_eq!(expr("f()"), "f()");
        assert_eq!(expr("_"), "_");
    }

    #[test]
    fn expression_spans_cover_parentheses() {
        let parsed = parse("r(x) :- x = (a + b) * c.");
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else {
            panic!("no body")
        };
        let Literal::Comparison { rhs, span, .. } = &body[0][0] else {
            panic!("not a comparison")
        };
        assert_eq!(parsed.text(rhs.span()), "(a + b) * c");
        assert_eq!(parsed.text(*span), "x = (a + b) * c");
        let Expr::Binary { lhs, .. } = rhs else {
            panic!("not binary")
        };
        // The stored span of the inner sum does not include its parentheses.
        assert_eq!(parsed.text(lhs.span()), "a + b");
        assert_eq!(parsed.text(clause.span), "r(x) :- x = (a + b) * c.");
    }

    // ----- Literals -----

    #[test]
    fn numeric_literals_of_every_form() {
        let parsed = parse("n(0, 42, 0x1F, 0b101, 1.5, 2.0e3, 18446744073709551615, 7u).");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        let clause = first_clause(&parsed);
        let values: Vec<NumberLiteral> = clause.heads[0]
            .args
            .iter()
            .map(|arg| match arg {
                Expr::Number(literal, _) => literal.clone(),
                other => panic!("not a number: {other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            vec![
                NumberLiteral::Integer(0),
                NumberLiteral::Integer(42),
                NumberLiteral::Integer(31),
                NumberLiteral::Integer(5),
                NumberLiteral::Float(1.5),
                NumberLiteral::Float(2000.0),
                NumberLiteral::Integer(u64::MAX as u128),
                NumberLiteral::Integer(7),
            ]
        );
        let spans: Vec<&str> = clause.heads[0]
            .args
            .iter()
            .map(|arg| parsed.text(arg.span()))
            .collect();
        assert_eq!(spans[2], "0x1F");
        assert_eq!(spans[5], "2.0e3");
    }

    #[test]
    fn negative_literals_stay_unary() {
        let parsed = parse("n(-9223372036854775808).");
        let clause = first_clause(&parsed);
        match &clause.heads[0].args[0] {
            Expr::Unary {
                op: UnaryOp::Neg,
                arg,
                span,
            } => {
                assert!(matches!(
                    **arg,
                    Expr::Number(NumberLiteral::Integer(9223372036854775808), _)
                ));
                assert_eq!(parsed.text(*span), "-9223372036854775808");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn string_literals_are_unescaped() {
        assert_eq!(
            single_item(r#"s("plain", "a\"b", "c\\d", "tab\there", "", "line\nnext\r")."#),
            r#"s("plain", "a\"b", "c\\d", "tab\there", "", "line\nnext\r")."#
        );
        let parsed = parse(r#"s("a\"b")."#);
        let clause = first_clause(&parsed);
        assert!(matches!(&clause.heads[0].args[0], Expr::String(value, _) if value == "a\"b"));
        assert_eq!(parsed.text(clause.heads[0].args[0].span()), r#""a\"b""#);
    }

    #[test]
    fn comments_are_ignored_everywhere() {
        assert_eq!(
            items(
                "// header\n.decl a(x: number) // trailing\n/* block\n a(2). */\na(1 /* inline */).\n"
            ),
            vec![".decl a(x: number)", "a(1)."]
        );
    }

    // ----- Declarations -----

    #[test]
    fn relation_declarations_and_qualifiers() {
        assert_eq!(
            items(
                ".decl edge(x: number, y: symbol)\n\
                 .decl flag()\n\
                 .decl a, b(x: Node) btree output\n\
                 .decl e(x: number, y: number) eqrel\n\
                 .decl q(x: Comp.T) brie inline magic no_magic no_inline overridable printsize input btree_delete\n\
                 edge(1, \"a\")."
            ),
            vec![
                ".decl edge(x: number, y: symbol)",
                ".decl flag()",
                ".decl a, b(x: Node) btree output",
                ".decl e(x: number, y: number) eqrel",
                ".decl q(x: Comp.T) brie inline magic no_magic no_inline overridable printsize input btree_delete",
                "edge(1, \"a\").",
            ]
        );
        let parsed = parse(".decl a, b(x: number) eqrel\n");
        let Item::Relation(declaration) = &parsed.program.items[0] else {
            panic!("not a relation")
        };
        assert_eq!(parsed.text(declaration.span), ".decl a, b(x: number) eqrel");
        assert_eq!(parsed.text(declaration.names[1].span), "b");
        assert_eq!(parsed.text(declaration.attributes[0].ty.span), "number");
        assert_eq!(parsed.text(declaration.qualifiers[0].span), "eqrel");
    }

    #[test]
    fn qualifiers_stop_at_the_next_clause() {
        assert_eq!(
            items(".decl a(x: number) btree\nb(1).\n.decl c(x: number)\nd(x) :- c(x)."),
            vec![
                ".decl a(x: number) btree",
                "b(1).",
                ".decl c(x: number)",
                "d(x) :- c(x)."
            ]
        );
    }

    #[test]
    fn unknown_qualifier_is_reported_and_kept() {
        let parsed = parse(".decl a(x: number) fast\n");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:1:20: unknown relation qualifier `fast`"]
        );
        assert_eq!(parsed.items(), vec![".decl a(x: number) fast"]);
    }

    #[test]
    fn choice_domain_and_lattice_attributes_are_unsupported() {
        let parsed = parse(".decl r(x: number, y: number) choice-domain x, (x, y)\n");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![".decl r(x: number, y: number)", "<choice-domain>"]
        );
        let Item::Unsupported { span, .. } = &parsed.program.items[1] else {
            panic!()
        };
        assert_eq!(parsed.text(*span), "choice-domain x, (x, y)");
        assert_eq!(
            items(".decl r(x: T<>)"),
            vec![".decl r(x: T)", "<lattice attributes (`T<>`)>"]
        );
    }

    #[test]
    fn type_declarations() {
        assert_eq!(
            items(
                ".type Node <: symbol\n\
                 .type Id = number\n\
                 .type Any = Node | Id | Other.T\n\
                 .number_type N\n\
                 .symbol_type S\n\
                 .type Old\n\
                 .decl a(x: Old)"
            ),
            vec![
                ".type Node <: symbol",
                ".type Id = number",
                ".type Any = Node | Id | Other.T",
                ".type N <: number",
                ".type S <: symbol",
                ".type Old <: symbol",
                ".decl a(x: Old)",
            ]
        );
        let parsed = parse(".type Any = A | B\n");
        let Item::Type(declaration) = &parsed.program.items[0] else {
            panic!()
        };
        assert_eq!(parsed.text(declaration.span), ".type Any = A | B");
    }

    #[test]
    fn records_and_algebraic_types_are_skipped() {
        let parsed = parse(
            ".type Pair = [a: number, b: symbol]\n\
             .type Tree = Leaf {} | Node {l: Tree, r: Tree}\n\
             .decl t(x: number)\n",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![
                "<record types>",
                "<algebraic data types>",
                ".decl t(x: number)"
            ]
        );
        let Item::Unsupported { span, .. } = &parsed.program.items[1] else {
            panic!()
        };
        // Reported from its first branch, where it stops being a union.
        assert_eq!(parsed.text(*span), "Leaf {} | Node {l: Tree, r: Tree}");
    }

    // ----- Directives -----

    #[test]
    fn io_directives_with_parameters() {
        assert_eq!(
            items(
                ".input edge\n\
                 .input a, b\n\
                 .input r(IO=file, filename=\"r.facts\", delimiter=\",\")\n\
                 .output o(IO=stdout)\n\
                 .output p()\n\
                 .printsize p\n\
                 .limitsize p(n=10)\n\
                 .input s(IO=stream, key=\"host,metric\", headers=true, rfc4180=false)\n\
                 .output q.r"
            ),
            vec![
                ".input edge()",
                ".input a, b()",
                ".input r(IO=\"file\", filename=\"r.facts\", delimiter=\",\")",
                ".output o(IO=\"stdout\")",
                ".output p()",
                ".printsize p()",
                ".limitsize p(n=\"10\")",
                ".input s(IO=\"stream\", key=\"host,metric\", headers=\"true\", rfc4180=\"false\")",
                ".output q.r()",
            ]
        );
        let parsed = parse(".input r(delimiter=\"\\t\")\n");
        let Item::Directive(directive) = &parsed.program.items[0] else {
            panic!()
        };
        assert_eq!(directive.parameters[0].value, "\t");
        assert_eq!(parsed.text(directive.parameters[0].value_span), "\"\\t\"");
        assert_eq!(parsed.text(directive.span), ".input r(delimiter=\"\\t\")");
    }

    #[test]
    fn pragma_is_kept_with_its_span() {
        let parsed = parse(".pragma \"legacy\"\n.pragma \"magic-transform\" \"*\"\na(1).");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(parsed.items(), vec![".pragma", ".pragma", "a(1)."]);
        let Item::Pragma(span) = &parsed.program.items[1] else {
            panic!()
        };
        assert_eq!(parsed.text(*span), ".pragma \"magic-transform\" \"*\"");
    }

    #[test]
    fn unsupported_directives_are_skipped_whole() {
        let parsed = parse(
            ".comp Graph<T> : Base<T> {\n\
               .decl edge(x: T, y: T)\n\
               .comp Inner { .decl z(x: number) }\n\
               edge(1, 2).\n\
             }\n\
             .init g = Graph<number>\n\
             .functor hash(a: symbol, number): number stateful\n\
             .override edge\n\
             .lattice Interval<> { Bottom -> [0, 0], Lub -> @lub(_, _) }\n\
             .decl after(x: number)\n",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![
                "<components (.comp)>",
                "<component instantiations (.init)>",
                "<user-defined functors (.functor)>",
                "<component overrides (.override)>",
                "<lattices (.lattice)>",
                ".decl after(x: number)",
            ]
        );
        let Item::Unsupported { span, .. } = &parsed.program.items[1] else {
            panic!()
        };
        assert_eq!(parsed.text(*span), ".init g = Graph<number>");
        assert_eq!(parsed.sources.location(*span), "test.dl:6:1");
    }

    #[test]
    fn query_plan_after_a_rule() {
        let parsed = parse("p(x, y) :- e(x, z), p(z, y). .plan 0: (1, 2), 1: (2, 1)\nq(1).");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![
                "p(x, y) :- e(x, z), p(z, y).",
                "<query plans (.plan)>",
                "q(1)."
            ]
        );
    }

    #[test]
    fn unknown_directive_is_reported() {
        let parsed = parse(".decl a(x: number)\n.frobnicate a(1, 2)\na(1).");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:2:1: unknown directive `.frobnicate`"]
        );
        assert_eq!(parsed.items(), vec![".decl a(x: number)", "a(1)."]);
    }

    // ----- Includes -----

    #[test]
    fn includes_are_resolved_relative_to_the_including_file() {
        let dir = temp_dir("include");
        write(
            &dir.join("main.dl"),
            ".decl a(x: number)\n.include \"lib/types.dl\"\na(1).\n#include \"other.dl\"\n",
        );
        write(
            &dir.join("lib/types.dl"),
            ".decl b(x: number)\n.include \"more.dl\"\n",
        );
        write(&dir.join("lib/more.dl"), "b(2).\n");
        write(&dir.join("other.dl"), "c(x) :- a(x).\n");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_file(&mut sources, &dir.join("main.dl"));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let shown: Vec<String> = program.items.iter().map(show_item).collect();
        assert_eq!(
            shown,
            vec![
                ".decl a(x: number)",
                ".decl b(x: number)",
                "b(2).",
                "a(1).",
                "c(x) :- a(x).",
            ]
        );
        // Items of included files carry spans into those files.
        let Item::Clause(fact) = &program.items[2] else {
            panic!()
        };
        let location = sources.location(fact.span);
        assert!(
            location.ends_with("more.dl:1:1") && location.contains("lib"),
            "{location}"
        );
        assert_eq!(sources.files().len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn include_from_source_uses_the_base_directory() {
        let dir = temp_dir("base");
        write(&dir.join("x.dl"), ".decl x(n: number)\n");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_source(
            &mut sources,
            "<repl>",
            ".include \"x.dl\"\nx(1).",
            Some(&dir),
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let shown: Vec<String> = program.items.iter().map(show_item).collect();
        assert_eq!(shown, vec![".decl x(n: number)", "x(1)."]);
        assert_eq!(sources.files()[0].path, "<repl>");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_include_is_reported_at_the_include() {
        let parsed = parse("a(1).\n  .include \"does-not-exist-vigil.dl\"\nb(2).");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:2:3: cannot find include file `does-not-exist-vigil.dl`"]
        );
        let span = parsed.diagnostics[0].span;
        assert_eq!(parsed.text(span), ".include \"does-not-exist-vigil.dl\"");
        assert_eq!(parsed.items(), vec!["a(1).", "b(2)."]);
    }

    #[test]
    fn include_cycle_is_reported_at_the_include() {
        let dir = temp_dir("cycle");
        write(&dir.join("a.dl"), "a(1).\n.include \"b.dl\"\n");
        write(&dir.join("b.dl"), "b(1).\n\n.include \"a.dl\"\nb(2).\n");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_file(&mut sources, &dir.join("a.dl"));
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(
            diagnostics[0].message.starts_with("include cycle: `")
                && diagnostics[0].message.contains("a.dl` includes `")
                && diagnostics[0].message.ends_with("a.dl`"),
            "{}",
            diagnostics[0].message
        );
        let location = sources.location(diagnostics[0].span);
        assert!(location.ends_with("b.dl:3:1"), "{location}");
        let shown: Vec<String> = program.items.iter().map(show_item).collect();
        assert_eq!(shown, vec!["a(1).", "b(1).", "b(2)."]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn self_include_is_a_cycle() {
        let dir = temp_dir("self");
        write(&dir.join("s.dl"), "#include \"s.dl\"\ns(1).\n");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_file(&mut sources, &dir.join("s.dl"));
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(diagnostics[0].message.starts_with("include cycle"));
        assert_eq!(
            sources.location(diagnostics[0].span).rsplit('/').next(),
            Some("s.dl:1:1")
        );
        assert_eq!(program.items.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn once_files_are_included_once() {
        let dir = temp_dir("once");
        write(
            &dir.join("main.dl"),
            ".include \"t.dl\"\n.include \"t.dl\"\n.include \"u.dl\"\n.include \"u.dl\"\n",
        );
        write(&dir.join("t.dl"), ".once\n.decl t(x: number)\n");
        write(&dir.join("u.dl"), "u(1).\n");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_file(&mut sources, &dir.join("main.dl"));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let shown: Vec<String> = program.items.iter().map(show_item).collect();
        assert_eq!(shown, vec![".decl t(x: number)", "u(1).", "u(1)."]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_main_file_is_a_diagnostic() {
        let dir = temp_dir("missing");
        let mut sources = SourceMap::new();
        let (program, diagnostics) = parse_file(&mut sources, &dir.join("nope.dl"));
        assert!(program.items.is_empty());
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0].message.starts_with("cannot read `")
                && diagnostics[0].message.contains("no such file"),
            "{}",
            diagnostics[0].message
        );
        assert!(
            sources
                .render(&diagnostics[0])
                .contains("nope.dl:1:1: error")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_c_preprocessor_is_reported() {
        let parsed = parse("#define N 3\na(1).\n#ifdef N\nb(1).\n#endif\n");
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:1:1: the C preprocessor is not supported (`#define`)",
                "test.dl:3:1: the C preprocessor is not supported (`#ifdef`)",
                "test.dl:5:1: the C preprocessor is not supported (`#endif`)",
            ]
        );
        assert_eq!(parsed.items(), vec!["a(1).", "b(1)."]);
    }

    // ----- Clauses and bodies -----

    #[test]
    fn facts_rules_and_several_heads() {
        assert_eq!(
            items(
                "edge(1, 2).\n\
                 flag().\n\
                 path(x, y) :- edge(x, y).\n\
                 a(x), b(x) :- c(x), !d(x).\n\
                 next(i + 1) :- element(i, _), !element(i - 1, _).\n\
                 ok() :- true.\n\
                 never() :- false, flag()."
            ),
            vec![
                "edge(1, 2).",
                "flag().",
                "path(x, y) :- edge(x, y).",
                "a(x), b(x) :- c(x), !d(x).",
                "next((+ i 1)) :- element(i, _), !element((- i 1), _).",
                "ok() :- true.",
                "never() :- false, flag().",
            ]
        );
    }

    #[test]
    fn comparisons_of_every_kind() {
        assert_eq!(
            single_item("r(x) :- a(x, y), x = y, x != y, x < y, x <= y, x > y, x >= y + 1."),
            "r(x) :- a(x, y), x = y, x != y, x < y, x <= y, x > y, x >= (+ y 1)."
        );
    }

    #[test]
    fn disjunctions_and_groups() {
        assert_eq!(
            single_item("r(x) :- a(x), b(x) ; c(x)."),
            "r(x) :- a(x), b(x) ; c(x)."
        );
        let parsed = parse("r(x) :- a(x), (b(x) ; c(x), x > 1), d(x).");
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else { panic!() };
        assert_eq!(body.len(), 1);
        assert_eq!(body[0].len(), 3);
        let Literal::Group(group, span) = &body[0][1] else {
            panic!("not a group: {:?}", body[0][1])
        };
        assert_eq!(group.len(), 2);
        assert_eq!(parsed.text(*span), "(b(x) ; c(x), x > 1)");
        assert_eq!(
            show_conjunction(&body[0]),
            "a(x), (b(x) ; c(x), x > 1), d(x)"
        );
        // A parenthesis followed by an operator is an expression, not a group.
        assert_eq!(
            single_item("r(x) :- a(x), (x + 1) * 2 < 10, (x) = 3, ((a(x)))."),
            "r(x) :- a(x), (* (+ x 1) 2) < 10, x = 3, ((a(x)))."
        );
    }

    #[test]
    fn negation_follows_souffle() {
        let parsed = parse(
            "r(x) :- a(x), !b(x), !x < 3, !x = y, !true, !contains(\"a\", s), !!c(x), !(d(x), e(x)).",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![
                "r(x) :- a(x), !b(x), x >= 3, x != y, false, test (lnot contains(\"a\", s)), c(x), \
                 <negation of a parenthesised body `!( ... )`>."
            ]
        );
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else { panic!() };
        assert_eq!(parsed.text(body[0][1].span()), "!b(x)");
        assert_eq!(parsed.text(body[0][2].span()), "!x < 3");
        assert_eq!(parsed.text(body[0][5].span()), "!contains(\"a\", s)");
        assert_eq!(parsed.text(body[0][7].span()), "!(d(x), e(x))");
    }

    #[test]
    fn functor_conditions_and_functor_comparisons() {
        let parsed = parse(
            "r(s) :- n(s), contains(\"ab\", s), match(\"a.*\", s), strlen(s) > 3, cat(s, \"x\") = t, \
             max(1, 2) < 3.",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else { panic!() };
        assert!(
            matches!(&body[0][1], Literal::Test(Expr::Call { name, .. }) if name.name == "contains")
        );
        assert!(
            matches!(&body[0][2], Literal::Test(Expr::Call { name, .. }) if name.name == "match")
        );
        assert_eq!(
            show_conjunction(&body[0]),
            "n(s), test contains(\"ab\", s), test match(\"a.*\", s), strlen(s) > 3, \
             cat(s, \"x\") = t, max(1, 2) < 3"
        );
    }

    #[test]
    fn qualified_relation_names() {
        assert_eq!(
            single_item("g.path(x, y) :- g.edge(x, y)."),
            "g.path(x, y) :- g.edge(x, y)."
        );
    }

    // ----- Aggregates -----

    #[test]
    fn aggregates_in_both_forms() {
        let parsed = parse(
            "r(c, s, lo, hi, m) :- c = count : { a(x), b(x, _) }, s = sum y : b(_, y), \
             lo = min y : { b(_, y) }, hi = max y + 1 : b(_, y), m = mean y : { b(_, y), y > 0 }, \
             k = count : a(_).",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(
            parsed.items(),
            vec![
                "r(c, s, lo, hi, m) :- c = (count : {a(x), b(x, _)}), s = (sum y : {b(_, y)}), \
                 lo = (min y : {b(_, y)}), hi = (max (+ y 1) : {b(_, y)}), \
                 m = (mean y : {b(_, y), y > 0}), k = (count : {a(_)})."
            ]
        );
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else { panic!() };
        let Literal::Comparison { rhs, .. } = &body[0][0] else {
            panic!()
        };
        assert_eq!(parsed.text(rhs.span()), "count : { a(x), b(x, _) }");
        let Literal::Comparison { rhs, .. } = &body[0][1] else {
            panic!()
        };
        assert_eq!(parsed.text(rhs.span()), "sum y : b(_, y)");
    }

    #[test]
    fn min_and_max_are_functors_or_aggregates() {
        assert_eq!(expr("min(a, b)"), "min(a, b)");
        assert_eq!(expr("max(a, b, c)"), "max(a, b, c)");
        assert_eq!(expr("min (y) : { b(y) }"), "(min y : {b(y)})");
        assert_eq!(expr("max(y * 2) : b(y)"), "(max (* y 2) : {b(y)})");
        assert_eq!(expr("sum(y) : b(y)"), "(sum y : {b(y)})");
    }

    #[test]
    fn aggregates_as_operands_and_in_heads() {
        assert_eq!(
            single_item("best(id, max s : { score(id, s) }) :- score(id, _)."),
            "best(id, (max s : {score(id, s)})) :- score(id, _)."
        );
        assert_eq!(expr("count : { a(_) } + 1"), "(+ (count : {a(_)}) 1)");
        assert_eq!(
            expr("1 + sum y : { b(y), y < count : a(_) }"),
            "(+ 1 (sum y : {b(y), y < (count : {a(_)})}))"
        );
        assert_eq!(
            single_item("r(n) :- count : { a(_) } = n, n > 0."),
            "r(n) :- (count : {a(_)}) = n, n > 0."
        );
    }

    #[test]
    fn disjunction_inside_an_aggregate_is_reported() {
        let parsed =
            parse("r(n) :- n = count : { a(x) ; b(x) }.\ns(n) :- n = sum x : { (a(x) ; b(x)) }.");
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:1:28: disjunction inside an aggregate is not supported",
                "test.dl:2:29: disjunction inside an aggregate is not supported",
            ]
        );
        // The clauses are still there, and a disjunction outside aggregates is fine.
        assert_eq!(parsed.program.items.len(), 2);
        let parsed = parse("r(n) :- (n = count : { a(_) } ; n = 0).");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
    }

    // ----- Unsupported constructs -----

    #[test]
    fn unsupported_expressions_are_kept_by_name() {
        assert_eq!(expr("[a, [b, c]]"), "<records>");
        assert_eq!(expr("nil"), "<records (`nil`)>");
        assert_eq!(expr("$Branch(x, y)"), "<algebraic data types (`$Branch`)>");
        assert_eq!(expr("$Empty"), "<algebraic data types (`$Empty`)>");
        assert_eq!(expr("$"), "<the counter `$`>");
        assert_eq!(expr("autoinc()"), "<the counter `autoinc()`>");
        assert_eq!(expr("as(x, Id)"), "<type casts (`as`)>");
        assert_eq!(
            expr("@hash(x, \"y\") + 1"),
            "(+ <user-defined functors (`@hash`)> 1)"
        );
        assert_eq!(
            expr("@@combine x, 0 : { a(x) }"),
            "<user-defined aggregates (`@@combine`)>"
        );
        let parsed = parse("r(x) :- x = [a, b] .");
        let clause = first_clause(&parsed);
        let Some(body) = &clause.body else { panic!() };
        let Literal::Comparison { rhs, .. } = &body[0][0] else {
            panic!()
        };
        assert_eq!(parsed.text(rhs.span()), "[a, b]");
    }

    #[test]
    fn subsumption_is_unsupported() {
        let parsed = parse("r(x) <= r(y) :- x < y.\nq(1).");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
        assert_eq!(parsed.items(), vec!["<subsumption (`<=` rules)>", "q(1)."]);
    }

    // ----- Errors and recovery -----

    #[test]
    fn three_syntax_errors_give_three_diagnostics() {
        let parsed = parse(
            ".decl a(x: number)\n\
             a(1,).\n\
             b(x) :- a(x) c(x).\n\
             .decl c(x number)\n\
             d(x) :- a(x).\n",
        );
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:2:5: expected an expression, found `)`",
                "test.dl:3:14: expected `,`, `;` or `.`, found `c`",
                "test.dl:4:11: expected `:`, found `number`",
            ]
        );
        assert_eq!(parsed.items(), vec![".decl a(x: number)", "d(x) :- a(x)."]);
    }

    #[test]
    fn end_of_file_is_named() {
        let parsed = parse("a(x) :- b(x");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:1:12: expected `,` or `)`, found end of file"]
        );
        let parsed = parse(".decl");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:1:6: expected a relation name, found end of file"]
        );
    }

    #[test]
    fn missing_dot_before_a_directive_recovers_at_the_directive() {
        let parsed = parse("a(x) :- b(x)\n.decl c(x: number)\nc(1).");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:2:1: expected `,`, `;` or `.`, found `.decl`"]
        );
        assert_eq!(parsed.items(), vec![".decl c(x: number)", "c(1)."]);
    }

    #[test]
    fn directive_errors_recover_at_the_next_line() {
        let parsed = parse(
            ".decl a(x: number,\n        y symbol)\n\
             a(1, \"x\").\n\
             .input a(IO=)\n\
             .output a\n",
        );
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:2:11: expected `:`, found `symbol`",
                "test.dl:4:13: expected a parameter value (a string, a number or a name), found `)`",
            ]
        );
        assert_eq!(parsed.items(), vec!["a(1, \"x\").", ".output a()"]);
    }

    #[test]
    fn stray_tokens_and_several_facts_in_one_clause() {
        let parsed = parse(") a(1).\nb(1), c(1).\nd(1).");
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:1:1: expected a declaration, a directive or a clause, found `)`",
                "test.dl:2:11: expected `:-`, found `.`",
            ]
        );
        assert_eq!(parsed.items(), vec!["b(1), c(1).", "d(1)."]);
        assert!(parsed.diagnostics[1].hint.is_some());
    }

    #[test]
    fn nullary_atom_without_parentheses_gets_a_hint() {
        let parsed = parse("r() :- flag, a(1).");
        assert_eq!(
            parsed.errors(),
            vec!["test.dl:1:12: expected a comparison operator, found `,`"]
        );
        assert!(
            parsed.diagnostics[0]
                .hint
                .as_deref()
                .is_some_and(|hint| hint.contains("`name()`"))
        );
    }

    #[test]
    fn lexical_errors_do_not_stop_parsing() {
        let parsed = parse("a(1). § b(\"x\\q\").\nc(1 /* unterminated");
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:1:7: unexpected character `§`",
                "test.dl:1:13: unknown escape sequence `\\q`",
                "test.dl:2:5: unterminated block comment",
                "test.dl:2:20: expected `,` or `)`, found end of file",
            ]
        );
        assert_eq!(parsed.items(), vec!["a(1).", "b(\"xq\")."]);
    }

    #[test]
    fn lexical_and_syntax_errors_are_listed_in_source_order() {
        let parsed = parse("a(x) :- b(x) c(x).\nd(\"x\\q\").\ne(1,).\nf(1) ~ g.");
        assert_eq!(
            parsed.errors(),
            vec![
                "test.dl:1:14: expected `,`, `;` or `.`, found `c`",
                "test.dl:2:5: unknown escape sequence `\\q`",
                "test.dl:3:5: expected an expression, found `)`",
                "test.dl:4:6: unexpected character `~`",
                "test.dl:4:8: expected `.`, `:-` or `,`, found `g`",
            ]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let depth = 10_000;
        let text = format!(
            "r(x) :- x = {}1{}.\nq(1).",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let parsed = parse(&text);
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.errors());
        assert_eq!(
            parsed.diagnostics[0].message,
            "expression nested too deeply"
        );
        assert_eq!(parsed.items(), vec!["q(1)."]);
        let text = format!("r(x) :- x = 2{}.\nq(1).", " ^ 2".repeat(depth));
        let parsed = parse(&text);
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.errors());
        let text = format!("r(x) :- {}a(x).\nq(1).", "!".repeat(depth));
        let parsed = parse(&text);
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.errors());
        let text = format!("r(x) :- x = 1{}.\nq(1).", " + 1".repeat(100_000));
        let parsed = parse(&text);
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.errors());
        // Moderate nesting is fine, and long chains of operators too.
        assert_eq!(expr(&format!("{}1{}", "(".repeat(50), ")".repeat(50))), "1");
        let parsed = parse(&format!("r(x) :- x = 1{} + (2 * (3)).", " + 1".repeat(500)));
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.errors());
    }

    /// Fragments of Soufflé, valid and not, for the robustness property below.
    #[rustfmt::skip]
    const FRAGMENTS: [&str; 48] = [
        "a", "b(", "x", "_", "1", "0x1F", "2.5", "\"s\"", "\"unterminated", "(", ")", "{", "}",
        "[", "]", ",", ".", ":", ";", ":-", "<=", "=", "!=", "<", "+", "-", "*", "^", "!",
        "band", "lnot", "count", "sum", "min", "max", ".decl", ".type", ".input", ".output",
        ".comp", ".plan", ".include", "#include", "#define", "/*", "$", "@", "\n",
    ];

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
            let parsed = parse(&text);
            let _ = parsed.sources.render_all(&parsed.diagnostics);
        }

        #[test]
        fn never_panics_on_token_soup(
            fragments in proptest::collection::vec(proptest::sample::select(&FRAGMENTS[..]), 0..80)
        ) {
            let parsed = parse(&fragments.join(" "));
            let _ = parsed.sources.render_all(&parsed.diagnostics);
            for diagnostic in &parsed.diagnostics {
                proptest::prop_assert!(diagnostic.span.start <= diagnostic.span.end);
                proptest::prop_assert!(!diagnostic.message.ends_with('.'));
            }
        }
    }

    #[test]
    fn sources_are_kept_in_the_caller_map() {
        let mut sources = SourceMap::new();
        sources.add("earlier.dl", "x(1).");
        let (program, diagnostics) = parse_source(&mut sources, "second.dl", "y(2).", None);
        assert!(diagnostics.is_empty());
        let Item::Clause(clause) = &program.items[0] else {
            panic!()
        };
        assert_eq!(clause.span.file, 1);
        assert_eq!(sources.location(clause.span), "second.dl:1:1");
    }
}
