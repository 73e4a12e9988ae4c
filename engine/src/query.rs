//! Queries and changes as a person types them: `path(1, X)`, `+edge(1, 2).`,
//! `-reading("n1", _, _).`
//!
//! The text is a small part of Soufflé's syntax: atoms whose arguments are constants (numbers
//! in decimal, `0x..` or `0b..`, with an optional sign or `u` suffix, floats, and strings with
//! Soufflé's escapes), named variables and `_`. There are no expressions: an argument is
//! looked up, never computed. `//` starts a comment that runs to the end of the line.
//!
//! Every parse error points at the byte where the text stops making sense, and every error of
//! the engine (an unknown relation, a wrong arity, a value of the wrong type) at the name or
//! the argument it is about, so that whoever typed the text sees where it went wrong:
//! [`QueryError::render`] gives ``1:8: expected a value or a variable, found `)` ``.
//!
//! The program's lexer is not used: a query is one atom, and its errors should speak of values
//! and variables rather than of clauses. This module knows nothing of the REPL, so that every
//! front end parses and answers queries alike.

use crate::engine::{Engine, EngineError, Tuple};
use crate::transaction::{Op, Transaction};
use crate::value::Value;
use std::fmt;
use std::ops::Range;

/// An argument of an atom.
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    Constant(Value),
    /// A named variable: any identifier other than `_`. The same name twice means equal
    /// values.
    Variable(String),
    /// `_`: any value.
    Wildcard,
}

/// An argument and where it is in the text.
#[derive(Clone, Debug, PartialEq)]
pub struct Argument {
    pub term: Term,
    pub span: Range<usize>,
}

/// `rel(a, b, ...)`, with the byte ranges of its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Atom {
    pub relation: String,
    pub name_span: Range<usize>,
    pub arguments: Vec<Argument>,
    /// From the first byte of the name to the closing parenthesis.
    pub span: Range<usize>,
}

impl Atom {
    /// The named variables, each once, in the order they first appear.
    pub fn variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for argument in &self.arguments {
            if let Term::Variable(name) = &argument.term
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// Places an engine error on the part of the atom it is about: a type error on its
    /// argument, anything else on the relation name.
    pub fn locate(&self, error: EngineError) -> QueryError {
        let span = match &error {
            EngineError::Type { column, .. } => self
                .arguments
                .get(*column)
                .map_or(self.name_span.clone(), |argument| argument.span.clone()),
            _ => self.name_span.clone(),
        };
        QueryError {
            span,
            kind: ErrorKind::Engine(error),
        }
    }
}

/// An insertion (`+atom`) or a retraction (`-atom`).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub op: Op,
    pub atom: Atom,
}

/// What went wrong with a query or a change, and where in its text.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryError {
    /// The bytes of the text the error is about (empty at the end of the text).
    pub span: Range<usize>,
    pub kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    /// The text is not a well-formed query or change.
    Syntax(String),
    /// The engine refused it: an unknown relation, a wrong arity, a mistyped value, a write
    /// to a derived relation, ...
    Engine(EngineError),
}

impl QueryError {
    fn syntax(span: Range<usize>, message: impl Into<String>) -> QueryError {
        QueryError {
            span,
            kind: ErrorKind::Syntax(message.into()),
        }
    }

    /// The 1-based line and column (in characters) where the error starts in `text`, the
    /// text that was parsed.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// `line:col: message`, placed in `text`, the text that was parsed.
    pub fn render(&self, text: &str) -> String {
        let (line, column) = self.line_col(text);
        format!("{line}:{column}: {self}")
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Syntax(message) => f.write_str(message),
            ErrorKind::Engine(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// Parses a whole text as one atom, optionally ended by `.` or `?`: `path(1, X)?`.
pub fn parse_atom(text: &str) -> Result<Atom, QueryError> {
    let mut parser = Parser::new(text);
    let atom = parser.atom()?;
    if !parser.eat(".") {
        parser.eat("?");
    }
    parser.expect_end()?;
    Ok(atom)
}

/// Parses a whole text as changes: `+edge(1, 2). -edge(2, 3).`
pub fn parse_changes(text: &str) -> Result<Vec<Change>, QueryError> {
    let mut parser = Parser::new(text);
    let changes = parser.changes()?;
    parser.expect_end()?;
    Ok(changes)
}

/// A cursor over a text that holds queries and changes, for front ends whose commands embed
/// them (`?- path(1, X).`, `whatif +edge(3, 4).`). Byte offsets, in spans and errors, are into
/// the whole text.
pub struct Parser<'t> {
    text: &'t str,
    position: usize,
}

fn is_word_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_' || character == '?'
}

/// Soufflé's identifiers: `?` may appear in them.
fn is_word_continue(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == '?'
}

impl<'t> Parser<'t> {
    pub fn new(text: &'t str) -> Parser<'t> {
        Parser { text, position: 0 }
    }

    /// The byte offset of the next token.
    pub fn position(&mut self) -> usize {
        self.skip_space();
        self.position
    }

    /// The text from the next token on.
    pub fn rest(&mut self) -> &'t str {
        self.skip_space();
        &self.text[self.position..]
    }

    /// Whether only white space and a comment are left.
    pub fn at_end(&mut self) -> bool {
        self.skip_space();
        self.position == self.text.len()
    }

    fn skip_space(&mut self) {
        let rest = &self.text[self.position..];
        let trimmed = rest.trim_start();
        self.position += rest.len() - trimmed.len();
        if trimmed.starts_with("//") {
            match trimmed.find('\n') {
                Some(newline) => {
                    self.position += newline;
                    self.skip_space();
                }
                None => self.position = self.text.len(),
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    /// Consumes `token` if it comes next.
    pub fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.text[self.position..].starts_with(token) {
            self.position += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes the word `word` if it comes next as a whole word, not followed by `(`: a
    /// command word, never the name of an atom.
    pub fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = &self.text[self.position..];
        let followed_by = rest
            .get(word.len()..)
            .and_then(|after| after.chars().next());
        if rest.starts_with(word)
            && followed_by.is_none_or(|next| !is_word_continue(next) && next != '(')
        {
            self.position += word.len();
            true
        } else {
            false
        }
    }

    /// The identifier that comes next, if one does.
    fn word(&mut self) -> Option<(&'t str, Range<usize>)> {
        self.skip_space();
        let start = self.position;
        if !self.peek().is_some_and(is_word_start) {
            return None;
        }
        let length = self.text[start..]
            .find(|c: char| !is_word_continue(c))
            .unwrap_or(self.text.len() - start);
        self.position += length;
        Some((&self.text[start..self.position], start..self.position))
    }

    /// The error for an unexpected token: "expected ..., found `x`".
    pub fn unexpected(&mut self, expected: &str) -> QueryError {
        self.skip_space();
        let start = self.position;
        let rest = &self.text[start..];
        let found = match rest.chars().next() {
            None => {
                return QueryError::syntax(
                    start..start,
                    format!("expected {expected}, found the end of the line"),
                );
            }
            Some('"') => rest[1..].find('"').map_or(rest, |end| &rest[..end + 2]),
            Some(first) if first.is_ascii_digit() => {
                let end = rest
                    .find(|c: char| !is_word_continue(c) && c != '.')
                    .unwrap_or(rest.len());
                rest[..end].trim_end_matches('.')
            }
            Some(first) if is_word_continue(first) => {
                let end = rest
                    .find(|c: char| !is_word_continue(c))
                    .unwrap_or(rest.len());
                &rest[..end]
            }
            Some(first) => &rest[..first.len_utf8()],
        };
        QueryError::syntax(
            start..start + found.len(),
            format!("expected {expected}, found `{found}`"),
        )
    }

    /// Fails unless only white space and a comment are left.
    pub fn expect_end(&mut self) -> Result<(), QueryError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.unexpected("the end of the line"))
        }
    }

    /// `rel(term, ...)`.
    pub fn atom(&mut self) -> Result<Atom, QueryError> {
        let Some((name, name_span)) = self.word() else {
            return Err(self.unexpected("a relation name"));
        };
        if name == "_" {
            return Err(QueryError::syntax(
                name_span,
                "expected a relation name, found `_`",
            ));
        }
        if !self.eat("(") {
            return Err(self.unexpected(&format!("`(` after `{name}`")));
        }
        let mut arguments = Vec::new();
        if !self.eat(")") {
            loop {
                arguments.push(self.argument()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.unexpected("`,` or `)`"));
                }
            }
        }
        Ok(Atom {
            relation: name.to_string(),
            span: name_span.start..self.position,
            name_span,
            arguments,
        })
    }

    /// `+atom. -atom. ...`: at least one change; the `.` after the last one may be left out.
    pub fn changes(&mut self) -> Result<Vec<Change>, QueryError> {
        let mut changes = Vec::new();
        loop {
            let op = if self.eat("+") {
                Op::Insert
            } else if self.eat("-") {
                Op::Retract
            } else {
                return Err(self.unexpected("`+` or `-` and an atom"));
            };
            let atom = self.atom()?;
            changes.push(Change { op, atom });
            let ended = self.eat(".");
            if self.at_end() {
                return Ok(changes);
            }
            if !ended {
                return Err(self.unexpected("`.` after the change"));
            }
        }
    }

    fn argument(&mut self) -> Result<Argument, QueryError> {
        self.skip_space();
        let start = self.position;
        let term = match self.peek() {
            Some(c) if is_word_start(c) => {
                let (word, _) = self.word().expect("a word starts here");
                if word == "_" {
                    Term::Wildcard
                } else {
                    Term::Variable(word.to_string())
                }
            }
            Some('"') => Term::Constant(Value::symbol(&self.string()?)),
            Some('-') if self.text[start + 1..].starts_with(|c: char| c.is_ascii_digit()) => {
                self.position += 1;
                Term::Constant(self.number(start, true)?)
            }
            Some(c) if c.is_ascii_digit() => Term::Constant(self.number(start, false)?),
            _ => return Err(self.unexpected("a value or a variable")),
        };
        Ok(Argument {
            term,
            span: start..self.position,
        })
    }

    /// A number literal whose digits start at the current position; `start` is where its sign
    /// is, if it has one.
    fn number(&mut self, start: usize, negative: bool) -> Result<Value, QueryError> {
        let digits_start = self.position;
        let rest = &self.text[digits_start..];
        let radix = if rest.starts_with("0x") {
            16
        } else if rest.starts_with("0b") {
            2
        } else {
            10
        };
        let skip = if radix == 10 { 0 } else { 2 };
        let digit_count = rest[skip..]
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(rest.len() - skip);
        let digits = &rest[skip..skip + digit_count];
        self.position += skip + digit_count;
        let after = &self.text[self.position..];
        let is_float = radix == 10
            && after.starts_with('.')
            && after[1..].starts_with(|c: char| c.is_ascii_digit());
        let value = if is_float {
            self.fraction_and_exponent();
            let text = &self.text[digits_start..self.position];
            let magnitude: f64 = text.parse().map_err(|_| self.invalid_number(start))?;
            Some(Value::Float(if negative { -magnitude } else { magnitude }))
        } else if digits.is_empty() {
            None
        } else {
            let unsigned = self.text[self.position..].starts_with('u');
            if unsigned {
                self.position += 1;
            }
            let too_large = || {
                QueryError::syntax(
                    start..self.position,
                    format!(
                        "the number `{}` is too large",
                        &self.text[start..self.position]
                    ),
                )
            };
            let magnitude = u128::from_str_radix(digits, radix)
                .ok()
                .and_then(|magnitude| i128::try_from(magnitude).ok())
                .ok_or_else(too_large)?;
            let value = if negative { -magnitude } else { magnitude };
            if unsigned && negative {
                return Err(QueryError::syntax(
                    start..self.position,
                    "an unsigned number cannot be negative",
                ));
            }
            let value = if unsigned {
                u64::try_from(value).ok().map(Value::Unsigned)
            } else {
                i64::try_from(value)
                    .map(Value::Number)
                    .ok()
                    .or_else(|| u64::try_from(value).ok().map(Value::Unsigned))
            };
            Some(value.ok_or_else(too_large)?)
        };
        if self.peek().is_some_and(is_word_continue) {
            let length = self.text[self.position..]
                .find(|c: char| !is_word_continue(c))
                .unwrap_or(self.text.len() - self.position);
            self.position += length;
            return Err(self.invalid_number(start));
        }
        value.ok_or_else(|| self.invalid_number(start))
    }

    /// Consumes `.digits` and an optional exponent.
    fn fraction_and_exponent(&mut self) {
        self.position += 1;
        self.skip_digits();
        let rest = &self.text[self.position..];
        let exponent = rest.strip_prefix(['e', 'E']).map(|after| {
            let sign = usize::from(after.starts_with(['+', '-']));
            (
                1 + sign,
                after[sign..].starts_with(|c: char| c.is_ascii_digit()),
            )
        });
        if let Some((offset, true)) = exponent {
            self.position += offset;
            self.skip_digits();
        }
    }

    fn skip_digits(&mut self) {
        let rest = &self.text[self.position..];
        self.position += rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
    }

    fn invalid_number(&self, start: usize) -> QueryError {
        QueryError::syntax(
            start..self.position,
            format!("invalid number `{}`", &self.text[start..self.position]),
        )
    }

    /// A string literal at the current position, unescaped (Soufflé's escapes).
    fn string(&mut self) -> Result<String, QueryError> {
        let start = self.position;
        self.position += 1;
        let mut value = String::new();
        loop {
            let Some(character) = self.peek() else {
                return Err(QueryError::syntax(
                    start..self.position,
                    "this string has no closing `\"`",
                ));
            };
            self.position += character.len_utf8();
            match character {
                '"' => return Ok(value),
                '\n' => {
                    return Err(QueryError::syntax(
                        start..self.position - 1,
                        "this string has no closing `\"`",
                    ));
                }
                '\\' => {
                    let escape_start = self.position - 1;
                    let escaped = self.peek();
                    let unescaped = match escaped {
                        Some('"') => '"',
                        Some('\'') => '\'',
                        Some('\\') => '\\',
                        Some('a') => '\x07',
                        Some('b') => '\x08',
                        Some('f') => '\x0c',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('v') => '\x0b',
                        _ => {
                            let end = self.position + escaped.map_or(0, char::len_utf8);
                            return Err(QueryError::syntax(
                                escape_start..end,
                                format!(
                                    "unknown escape sequence `{}`",
                                    &self.text[escape_start..end]
                                ),
                            ));
                        }
                    };
                    self.position += 1;
                    value.push(unescaped);
                }
                other => value.push(other),
            }
        }
    }
}

/// The answer to a query: the matching tuples, and the variables they bind.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub relation: String,
    /// The named variables, each once, in the order they first appear.
    pub variables: Vec<String>,
    /// The column of each variable's first appearance.
    columns: Vec<usize>,
    /// The matching tuples, sorted.
    pub tuples: Vec<Tuple>,
}

impl Answer {
    /// The distinct values of [`Answer::variables`] over the matching tuples, sorted. Tuples
    /// that differ only where the query has `_` give one binding.
    pub fn bindings(&self) -> Vec<Vec<Value>> {
        let mut bindings: Vec<Vec<Value>> = self
            .tuples
            .iter()
            .map(|tuple| {
                self.columns
                    .iter()
                    .map(|&column| tuple[column].clone())
                    .collect()
            })
            .collect();
        bindings.sort();
        bindings.dedup();
        bindings
    }
}

/// The tuples of the atom's relation that match it: constants must be equal (after conversion
/// to the column's type: `1` matches a `float` column's `1.0`), `_` matches anything, and a
/// variable that appears twice matches equal values.
pub fn run(engine: &Engine, atom: &Atom) -> Result<Answer, QueryError> {
    let pattern = pattern(engine, atom)?;
    let mut tuples = engine
        .read(&atom.relation, &pattern)
        .map_err(|error| atom.locate(error))?;
    let mut variables: Vec<String> = Vec::new();
    let mut columns: Vec<usize> = Vec::new();
    let mut equal: Vec<(usize, usize)> = Vec::new();
    for (column, argument) in atom.arguments.iter().enumerate() {
        if let Term::Variable(name) = &argument.term {
            match variables.iter().position(|seen| seen == name) {
                Some(index) => equal.push((columns[index], column)),
                None => {
                    variables.push(name.clone());
                    columns.push(column);
                }
            }
        }
    }
    tuples.retain(|tuple| equal.iter().all(|&(a, b)| tuple[a] == tuple[b]));
    Ok(Answer {
        relation: atom.relation.clone(),
        variables,
        columns,
        tuples,
    })
}

/// The atom as a pattern for [`Engine::read`] and explanations: its constants converted to the
/// columns' types, `None` for each variable and `_`.
pub fn pattern(engine: &Engine, atom: &Atom) -> Result<Vec<Option<Value>>, QueryError> {
    let id = engine
        .relation(&atom.relation)
        .map_err(|error| atom.locate(error))?;
    let arity = engine.program().relations[id].arity();
    if atom.arguments.len() != arity {
        return Err(atom.locate(EngineError::Arity {
            relation: atom.relation.clone(),
            expected: arity,
            given: atom.arguments.len(),
        }));
    }
    atom.arguments
        .iter()
        .enumerate()
        .map(|(column, argument)| match &argument.term {
            Term::Constant(value) => engine
                .coerce(id, column, value)
                .map(Some)
                .map_err(|error| atom.locate(error)),
            Term::Variable(_) | Term::Wildcard => Ok(None),
        })
        .collect()
}

/// The atom as one tuple, every argument a constant converted to its column's type: what
/// `why` explains. `what` names the command in the error for a variable or `_`.
pub fn tuple(engine: &Engine, atom: &Atom, what: &str) -> Result<Tuple, QueryError> {
    let pattern = pattern(engine, atom)?;
    pattern
        .into_iter()
        .zip(&atom.arguments)
        .map(|(value, argument)| {
            value.ok_or_else(|| {
                QueryError::syntax(
                    argument.span.clone(),
                    format!("{what} takes a tuple: every argument must be a value"),
                )
            })
        })
        .collect()
}

/// Adds a change to a transaction. A change holds values and `_` (where the relation allows
/// it: a stamp column, the non-key columns of a retraction from a keyed relation), never
/// variables.
pub fn write(transaction: &mut Transaction<'_>, change: &Change) -> Result<(), QueryError> {
    let atom = &change.atom;
    let fields = atom
        .arguments
        .iter()
        .map(|argument| match &argument.term {
            Term::Constant(value) => Ok(Some(value.clone())),
            Term::Wildcard => Ok(None),
            Term::Variable(name) => Err(QueryError::syntax(
                argument.span.clone(),
                format!("a change holds values, not variables: write a value or `_` for `{name}`"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    transaction
        .write(change.op, &atom.relation, &fields)
        .map_err(|error| atom.locate(error))
}

/// A value as it is written in a query: symbols quoted and escaped.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Symbol(text) => format!("{:?}", &**text),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, compile_source};

    fn error(text: &str) -> String {
        let parsed = parse_atom(text).expect_err("the text is wrong");
        parsed.render(text)
    }

    fn terms(text: &str) -> Vec<Term> {
        parse_atom(text)
            .expect("the text is an atom")
            .arguments
            .into_iter()
            .map(|argument| argument.term)
            .collect()
    }

    #[test]
    fn every_kind_of_argument() {
        assert_eq!(
            terms(r#"rel(1, -2, 3.5, 0x10, 0b101, 7u, "a\"b\n", X, _, -0.25, 1.5e3)"#),
            vec![
                Term::Constant(Value::Number(1)),
                Term::Constant(Value::Number(-2)),
                Term::Constant(Value::Float(3.5)),
                Term::Constant(Value::Number(16)),
                Term::Constant(Value::Number(5)),
                Term::Constant(Value::Unsigned(7)),
                Term::Constant(Value::symbol("a\"b\n")),
                Term::Variable("X".to_string()),
                Term::Wildcard,
                Term::Constant(Value::Float(-0.25)),
                Term::Constant(Value::Float(1500.0)),
            ]
        );
        assert_eq!(
            terms("big(-9223372036854775808, 18446744073709551615)"),
            vec![
                Term::Constant(Value::Number(i64::MIN)),
                Term::Constant(Value::Unsigned(u64::MAX)),
            ]
        );
        assert_eq!(terms("flag()"), vec![]);
        assert_eq!(terms("  path(x, y)?  // a comment"), terms("path(x,y)."));
    }

    #[test]
    fn spans_are_byte_ranges_of_the_text() {
        let atom = parse_atom(r#"edge("é", Y)"#).unwrap();
        assert_eq!(atom.name_span, 0..4);
        assert_eq!(atom.arguments[0].span, 5..9);
        assert_eq!(atom.arguments[1].span, 11..12);
        assert_eq!(atom.span, 0..13);
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(
            error("rel(1, )"),
            "1:8: expected a value or a variable, found `)`"
        );
        assert_eq!(error("rel(1 2)"), "1:7: expected `,` or `)`, found `2`");
        assert_eq!(
            error("rel(1, 2"),
            "1:9: expected `,` or `)`, found the end of the line"
        );
        assert_eq!(error("(1)"), "1:1: expected a relation name, found `(`");
        assert_eq!(
            error("rel"),
            "1:4: expected `(` after `rel`, found the end of the line"
        );
        assert_eq!(error("rel(12ab)"), "1:5: invalid number `12ab`");
        assert_eq!(
            error("rel(99999999999999999999)"),
            "1:5: the number `99999999999999999999` is too large"
        );
        assert_eq!(
            error("rel(-1u)"),
            "1:5: an unsigned number cannot be negative"
        );
        assert_eq!(error(r#"rel("ab"#), "1:5: this string has no closing `\"`");
        assert_eq!(
            error(r#"rel("a\qb")"#),
            "1:7: unknown escape sequence `\\q`"
        );
        assert_eq!(
            error("rel(1) extra"),
            "1:8: expected the end of the line, found `extra`"
        );
        assert_eq!(
            error("rel(1)\n  (2)"),
            "2:3: expected the end of the line, found `(`"
        );
    }

    #[test]
    fn changes_are_signed_atoms_separated_by_dots() {
        let changes = parse_changes("+edge(1, 2). -edge(2, 3).").unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].op, Op::Insert);
        assert_eq!(changes[1].op, Op::Retract);
        assert_eq!(changes[1].atom.arguments[1].span, 22..23);
        assert_eq!(parse_changes("+flag()").unwrap().len(), 1);
        let text = "+edge(1, 2) -edge(2, 3)";
        assert_eq!(
            parse_changes(text).unwrap_err().render(text),
            "1:13: expected `.` after the change, found `-`"
        );
        let text = "+edge(1, 2). edge(3, 4).";
        assert_eq!(
            parse_changes(text).unwrap_err().render(text),
            "1:14: expected `+` or `-` and an atom, found `edge`"
        );
    }

    #[test]
    fn keywords_are_whole_words_that_do_not_start_an_atom() {
        let mut parser = Parser::new("why not(1)");
        assert!(parser.keyword("why"));
        assert!(!parser.keyword("not"));
        assert_eq!(parser.atom().unwrap().relation, "not");
        assert!(!Parser::new("whatif").keyword("what"));
    }

    fn engine() -> Engine {
        let program = compile_source(
            "test.dl",
            ".decl edge(x: number, y: number)\n.decl weight(x: number, w: float)\n\
             edge(1, 2). edge(2, 2). edge(2, 3). weight(1, 2.0).",
        )
        .unwrap();
        Engine::new(program, Options::default()).unwrap()
    }

    #[test]
    fn queries_match_constants_variables_and_wildcards() {
        let engine = engine();
        let answer = |text: &str| run(&engine, &parse_atom(text).unwrap()).unwrap();
        let edges = answer("edge(X, Y)");
        assert_eq!(edges.variables, vec!["X", "Y"]);
        assert_eq!(edges.tuples.len(), 3);
        assert_eq!(
            answer("edge(X, X)").bindings(),
            vec![vec![Value::Number(2)]]
        );
        assert_eq!(
            answer("edge(X, _)").bindings(),
            vec![vec![Value::Number(1)], vec![Value::Number(2)]]
        );
        assert_eq!(answer("edge(2, _)").tuples.len(), 2);
        // An integer constant matches a float column.
        assert_eq!(answer("weight(1, 2)").tuples.len(), 1);
    }

    #[test]
    fn engine_errors_point_at_what_they_are_about() {
        let engine = engine();
        let failure = |text: &str| {
            run(&engine, &parse_atom(text).unwrap())
                .unwrap_err()
                .render(text)
        };
        assert_eq!(failure("  nope(1)"), "1:3: unknown relation `nope`");
        assert!(failure("edge(1)").starts_with("1:1: relation `edge` has 2 columns"));
        assert!(failure(r#"edge(1, "a")"#).starts_with("1:9: column `y` of `edge`"));
        let text = "edge(1, X)";
        let error = tuple(&engine, &parse_atom(text).unwrap(), "`why`").unwrap_err();
        assert_eq!(
            error.render(text),
            "1:9: `why` takes a tuple: every argument must be a value"
        );
    }
}
