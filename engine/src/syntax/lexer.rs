//! Tokens of the Soufflé language.
//!
//! The lexer turns the text of one file into a vector of [`Token`]s, each with the byte span it
//! covers, and ends the vector with [`TokenKind::Eof`]. It follows Soufflé's scanner
//! (`src/parser/scanner.ll`) where that matters for meaning, and departs from it where a
//! departure only gives better errors:
//!
//! - Words are ASCII: a letter, `_` or `?`, then letters, digits, `_` and `?`. A lone `_` is the
//!   wildcard. Operator words (`band`, `lor`, ...), `true`/`false` and the aggregate words
//!   (`count`, `sum`, `min`, `max`, `mean`) are keywords; every other word, including the
//!   built-in functor names (`cat`, `strlen`, ...), stays an identifier and the parser decides.
//! - A `.` immediately followed by a word is a directive (`.decl`, `.comp`, ...) only when the
//!   word is one of Soufflé's directive names; otherwise it is a plain `.` (the end of a clause,
//!   or the separator of a qualified name) and the word is lexed on its own. So `A(1).B(2).` is
//!   two facts, as in Soufflé.
//! - Numbers are decimal, `0x..` hexadecimal or `0b..` binary integers, with an optional `u`
//!   suffix (Soufflé's unsigned literals; the type is decided by checking, so the suffix is
//!   dropped), and floats `digits.digits` with an optional exponent. A literal directly followed
//!   by letters (`12abc`) is one bad token rather than two confusing ones.
//! - String literals end on the line they start on (Soufflé lets them run across lines; ending
//!   them at the line makes a missing quote cost one error instead of the rest of the file).
//!   Escapes are Soufflé's: `\"`, `\'`, `\\`, `\a`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`.
//! - `#include` is a token; any other `#` line is the C preprocessor, which Vigil does not run:
//!   it is reported and skipped.
//!
//! The lexer never stops at a problem: it reports it as a [`Diagnostic`] and carries on, so that
//! the parser sees as much of the file as can be made sense of.

use super::ast::NumberLiteral;
use crate::diag::{Diagnostic, Span};

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub span: Span,
    /// Whether a line break separates this token from the previous one (or it is the first
    /// token). Error recovery inside directives, which have no terminator, uses it.
    pub line_break_before: bool,
}

/// The directives that Soufflé's scanner knows, written after a `.`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirectiveKeyword {
    Decl,
    Type,
    NumberType,
    SymbolType,
    Input,
    Output,
    PrintSize,
    LimitSize,
    Include,
    Pragma,
    Comp,
    Init,
    Functor,
    Plan,
    Override,
    Lattice,
    Once,
}

impl DirectiveKeyword {
    const ALL: [(&'static str, DirectiveKeyword); 17] = [
        ("decl", DirectiveKeyword::Decl),
        ("type", DirectiveKeyword::Type),
        ("number_type", DirectiveKeyword::NumberType),
        ("symbol_type", DirectiveKeyword::SymbolType),
        ("input", DirectiveKeyword::Input),
        ("output", DirectiveKeyword::Output),
        ("printsize", DirectiveKeyword::PrintSize),
        ("limitsize", DirectiveKeyword::LimitSize),
        ("include", DirectiveKeyword::Include),
        ("pragma", DirectiveKeyword::Pragma),
        ("comp", DirectiveKeyword::Comp),
        ("init", DirectiveKeyword::Init),
        ("functor", DirectiveKeyword::Functor),
        ("plan", DirectiveKeyword::Plan),
        ("override", DirectiveKeyword::Override),
        ("lattice", DirectiveKeyword::Lattice),
        ("once", DirectiveKeyword::Once),
    ];

    fn from_word(word: &str) -> Option<DirectiveKeyword> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|&(_, keyword)| keyword)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// A word that is not a keyword: a relation, variable, type, functor or qualifier name.
    Ident(String),
    /// `_` on its own.
    Underscore,
    Number(NumberLiteral),
    /// A string literal, unescaped.
    String(String),
    /// `.decl`, `.type`, ...
    Directive(DirectiveKeyword),
    /// `#include`
    HashInclude,
    /// `choice-domain`, one token as in Soufflé.
    ChoiceDomain,

    // Operator words.
    Band,
    Bor,
    Bxor,
    Bnot,
    Bshl,
    Bshr,
    Bshru,
    Land,
    Lor,
    Lxor,
    Lnot,
    True,
    False,
    // Aggregate words (`min` and `max` are also functors).
    Count,
    Sum,
    Min,
    Max,
    Mean,

    // Punctuation.
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Dot,
    Colon,
    Semicolon,
    /// `:-`
    If,
    /// `<:`
    Subtype,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    Bang,
    Pipe,
    Dollar,
    At,

    Eof,
}

fn keyword(word: &str) -> Option<TokenKind> {
    Some(match word {
        "band" => TokenKind::Band,
        "bor" => TokenKind::Bor,
        "bxor" => TokenKind::Bxor,
        "bnot" => TokenKind::Bnot,
        "bshl" => TokenKind::Bshl,
        "bshr" => TokenKind::Bshr,
        "bshru" => TokenKind::Bshru,
        "land" => TokenKind::Land,
        "lor" => TokenKind::Lor,
        "lxor" => TokenKind::Lxor,
        "lnot" => TokenKind::Lnot,
        "true" => TokenKind::True,
        "false" => TokenKind::False,
        "count" => TokenKind::Count,
        "sum" => TokenKind::Sum,
        "min" => TokenKind::Min,
        "max" => TokenKind::Max,
        "mean" => TokenKind::Mean,
        _ => return None,
    })
}

fn is_word_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b'?'
}

fn is_word_continue(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'?'
}

/// Splits the text of file `file` into tokens. Always ends with an [`TokenKind::Eof`] token;
/// every problem found is returned as a diagnostic.
pub(crate) fn lex(file: u32, text: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer {
        file,
        text,
        bytes: text.as_bytes(),
        position: 0,
        tokens: Vec::new(),
        diagnostics: Vec::new(),
        line_break: true,
    };
    lexer.run();
    (lexer.tokens, lexer.diagnostics)
}

struct Lexer<'a> {
    file: u32,
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    tokens: Vec<Token>,
    diagnostics: Vec<Diagnostic>,
    /// Whether a line break was seen since the last token.
    line_break: bool,
}

impl Lexer<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.position + offset).copied()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        let span = self.span(start, self.position);
        self.tokens.push(Token {
            kind,
            span,
            line_break_before: self.line_break,
        });
        self.line_break = false;
    }

    fn error(&mut self, start: usize, end: usize, message: impl Into<String>) {
        let span = self.span(start, end);
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    fn run(&mut self) {
        loop {
            self.skip_trivia();
            let Some(byte) = self.peek(0) else { break };
            let start = self.position;
            if is_word_start(byte) {
                self.word();
            } else if byte.is_ascii_digit() {
                self.number();
            } else if byte == b'"' {
                self.string();
            } else if byte == b'.' {
                self.dot();
            } else if byte == b'#' {
                self.hash();
            } else if let Some((kind, length)) = self.punctuation() {
                self.position += length;
                self.push(kind, start);
            } else {
                self.unknown();
            }
        }
        let end = self.text.len();
        self.tokens.push(Token {
            kind: TokenKind::Eof,
            span: self.span(end, end),
            line_break_before: true,
        });
    }

    /// Skips white space and comments, noting line breaks.
    fn skip_trivia(&mut self) {
        while let Some(byte) = self.peek(0) {
            match byte {
                b'\n' => {
                    self.line_break = true;
                    self.position += 1;
                }
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c => self.position += 1,
                b'/' if self.peek(1) == Some(b'/') => {
                    while let Some(byte) = self.peek(0) {
                        if byte == b'\n' {
                            break;
                        }
                        self.position += 1;
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    let start = self.position;
                    match self.text[start + 2..].find("*/") {
                        Some(length) => {
                            let end = start + 2 + length + 2;
                            if self.text[start..end].contains('\n') {
                                self.line_break = true;
                            }
                            self.position = end;
                        }
                        None => {
                            self.error(start, start + 2, "unterminated block comment");
                            self.position = self.text.len();
                        }
                    }
                }
                _ => break,
            }
        }
    }

    fn read_word(&mut self) -> &str {
        let start = self.position;
        while self.peek(0).is_some_and(is_word_continue) {
            self.position += 1;
        }
        &self.text[start..self.position]
    }

    fn word(&mut self) {
        let start = self.position;
        let word = self.read_word().to_string();
        if word == "_" {
            self.push(TokenKind::Underscore, start);
        } else if word == "choice"
            && self.text[self.position..].starts_with("-domain")
            && !self
                .bytes
                .get(self.position + "-domain".len())
                .copied()
                .is_some_and(is_word_continue)
        {
            self.position += "-domain".len();
            self.push(TokenKind::ChoiceDomain, start);
        } else if let Some(kind) = keyword(&word) {
            self.push(kind, start);
        } else {
            self.push(TokenKind::Ident(word), start);
        }
    }

    fn dot(&mut self) {
        let start = self.position;
        if self.peek(1).is_some_and(is_word_start) {
            let word_start = start + 1;
            let mut end = word_start;
            while self.bytes.get(end).copied().is_some_and(is_word_continue) {
                end += 1;
            }
            if let Some(keyword) = DirectiveKeyword::from_word(&self.text[word_start..end]) {
                self.position = end;
                self.push(TokenKind::Directive(keyword), start);
                return;
            }
        }
        self.position += 1;
        self.push(TokenKind::Dot, start);
    }

    /// `#include`, or a C preprocessor line, which is reported and skipped.
    fn hash(&mut self) {
        let start = self.position;
        self.position += 1;
        while self
            .peek(0)
            .is_some_and(|byte| byte == b' ' || byte == b'\t')
        {
            self.position += 1;
        }
        let word = self.read_word().to_string();
        if word == "include" {
            self.push(TokenKind::HashInclude, start);
            return;
        }
        let shown = if word.is_empty() {
            "#".to_string()
        } else {
            format!("#{word}")
        };
        let end = self.position;
        let span = self.span(start, end);
        self.diagnostics.push(
            Diagnostic::error(
                span,
                format!("the C preprocessor is not supported (`{shown}`)"),
            )
            .with_hint("only `#include \"file.dl\"` is accepted; use `.include` for new code"),
        );
        while self.peek(0).is_some_and(|byte| byte != b'\n') {
            self.position += 1;
        }
    }

    /// Punctuation at the current position, longest first, with its length in bytes.
    fn punctuation(&self) -> Option<(TokenKind, usize)> {
        let two = (self.peek(0)?, self.peek(1).unwrap_or(0));
        let kind = match two {
            (b':', b'-') => return Some((TokenKind::If, 2)),
            (b'<', b':') => return Some((TokenKind::Subtype, 2)),
            (b'<', b'=') => return Some((TokenKind::LessEqual, 2)),
            (b'>', b'=') => return Some((TokenKind::GreaterEqual, 2)),
            (b'!', b'=') => return Some((TokenKind::NotEqual, 2)),
            (b'(', _) => TokenKind::LeftParen,
            (b')', _) => TokenKind::RightParen,
            (b'{', _) => TokenKind::LeftBrace,
            (b'}', _) => TokenKind::RightBrace,
            (b'[', _) => TokenKind::LeftBracket,
            (b']', _) => TokenKind::RightBracket,
            (b',', _) => TokenKind::Comma,
            (b':', _) => TokenKind::Colon,
            (b';', _) => TokenKind::Semicolon,
            (b'=', _) => TokenKind::Equal,
            (b'<', _) => TokenKind::Less,
            (b'>', _) => TokenKind::Greater,
            (b'+', _) => TokenKind::Plus,
            (b'-', _) => TokenKind::Minus,
            (b'*', _) => TokenKind::Star,
            (b'/', _) => TokenKind::Slash,
            (b'%', _) => TokenKind::Percent,
            (b'^', _) => TokenKind::Caret,
            (b'!', _) => TokenKind::Bang,
            (b'|', _) => TokenKind::Pipe,
            (b'$', _) => TokenKind::Dollar,
            (b'@', _) => TokenKind::At,
            _ => return None,
        };
        Some((kind, 1))
    }

    /// A run of characters that start no token, reported once.
    fn unknown(&mut self) {
        let start = self.position;
        while let Some(character) = self.text[self.position..].chars().next() {
            let byte = self.bytes[self.position];
            let starts_token = is_word_start(byte)
                || byte.is_ascii_digit()
                || byte.is_ascii_whitespace()
                || matches!(byte, b'"' | b'.' | b'#')
                || self.punctuation().is_some();
            if starts_token && self.position > start {
                break;
            }
            self.position += character.len_utf8();
        }
        let text = &self.text[start..self.position];
        let noun = if text.chars().count() == 1 {
            "character"
        } else {
            "characters"
        };
        let message = format!("unexpected {noun} `{text}`");
        self.error(start, self.position, message);
    }

    fn number(&mut self) {
        let start = self.position;
        let radix = match (self.peek(0), self.peek(1)) {
            (Some(b'0'), Some(b'x')) => 16,
            (Some(b'0'), Some(b'b')) => 2,
            _ => 10,
        };
        let mut valid = true;
        let literal = if radix != 10 {
            self.position += 2;
            let digits_start = self.position;
            while self
                .peek(0)
                .is_some_and(|byte| (byte as char).is_digit(radix))
            {
                self.position += 1;
            }
            let digits = &self.text[digits_start..self.position];
            if digits.is_empty() {
                valid = false;
            }
            self.integer(start, digits, radix)
        } else {
            while self.peek(0).is_some_and(|byte| byte.is_ascii_digit()) {
                self.position += 1;
            }
            let is_float = self.peek(0) == Some(b'.')
                && self.peek(1).is_some_and(|byte| byte.is_ascii_digit());
            if is_float {
                self.float(start)
            } else {
                let digits = &self.text[start..self.position];
                self.integer(start, digits, 10)
            }
        };
        if matches!(literal, NumberLiteral::Integer(_)) && self.peek(0) == Some(b'u') {
            // Soufflé's unsigned suffix: the type is decided by checking.
            self.position += 1;
        }
        if self.peek(0).is_some_and(is_word_continue) {
            valid = false;
            while self.peek(0).is_some_and(is_word_continue) {
                self.position += 1;
            }
        }
        if !valid {
            let text = self.text[start..self.position].to_string();
            self.error(
                start,
                self.position,
                format!("invalid number literal `{text}`"),
            );
        }
        self.push(TokenKind::Number(literal), start);
    }

    /// The value of integer digits; too large a value is reported, and lexed as 0.
    fn integer(&mut self, start: usize, digits: &str, radix: u32) -> NumberLiteral {
        let mut value: u128 = 0;
        for digit in digits.chars() {
            let Some(digit) = digit.to_digit(radix) else {
                continue;
            };
            match value
                .checked_mul(radix as u128)
                .and_then(|value| value.checked_add(digit as u128))
            {
                Some(next) => value = next,
                None => {
                    let text = self.text[start..self.position].to_string();
                    self.error(
                        start,
                        self.position,
                        format!("number literal `{text}` is too large"),
                    );
                    return NumberLiteral::Integer(0);
                }
            }
        }
        NumberLiteral::Integer(value)
    }

    /// `digits.digits` with an optional exponent; the integer part is already read.
    fn float(&mut self, start: usize) -> NumberLiteral {
        self.position += 1;
        while self.peek(0).is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|byte| byte.is_ascii_digit()) {
            // Soufflé reads `a.b.c.d` as an IPv4 address packed into a 32-bit number; Vigil does
            // not, and says so rather than reading something else.
            while self.peek(0) == Some(b'.')
                && self.peek(1).is_some_and(|byte| byte.is_ascii_digit())
            {
                self.position += 1;
                while self.peek(0).is_some_and(|byte| byte.is_ascii_digit()) {
                    self.position += 1;
                }
            }
            let text = self.text[start..self.position].to_string();
            let span = self.span(start, self.position);
            self.diagnostics.push(
                Diagnostic::error(
                    span,
                    format!("IP address literals are not supported (`{text}`)"),
                )
                .with_hint("write the address as a string, or as the number it stands for"),
            );
            return NumberLiteral::Integer(0);
        }
        let exponent_digits_at = match (self.peek(0), self.peek(1)) {
            (Some(b'e' | b'E'), Some(b'+' | b'-')) => Some(2),
            (Some(b'e' | b'E'), _) => Some(1),
            _ => None,
        };
        if let Some(offset) = exponent_digits_at
            && self.peek(offset).is_some_and(|byte| byte.is_ascii_digit())
        {
            self.position += offset;
            while self.peek(0).is_some_and(|byte| byte.is_ascii_digit()) {
                self.position += 1;
            }
        }
        let text = &self.text[start..self.position];
        match text.parse::<f64>() {
            Ok(value) => NumberLiteral::Float(value),
            Err(_) => {
                let text = text.to_string();
                self.error(
                    start,
                    self.position,
                    format!("invalid number literal `{text}`"),
                );
                NumberLiteral::Float(0.0)
            }
        }
    }

    fn string(&mut self) {
        let start = self.position;
        self.position += 1;
        let mut value = String::new();
        loop {
            let Some(character) = self.text[self.position..].chars().next() else {
                self.unterminated_string(start);
                break;
            };
            match character {
                '\n' => {
                    self.unterminated_string(start);
                    break;
                }
                '"' => {
                    self.position += 1;
                    break;
                }
                '\\' => {
                    let escape_start = self.position;
                    self.position += 1;
                    let Some(escaped) = self.text[self.position..].chars().next() else {
                        self.unterminated_string(start);
                        break;
                    };
                    if escaped == '\n' {
                        self.unterminated_string(start);
                        break;
                    }
                    self.position += escaped.len_utf8();
                    match escaped {
                        '"' => value.push('"'),
                        '\'' => value.push('\''),
                        '\\' => value.push('\\'),
                        'a' => value.push('\u{07}'),
                        'b' => value.push('\u{08}'),
                        'f' => value.push('\u{0c}'),
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'v' => value.push('\u{0b}'),
                        other => {
                            self.error(
                                escape_start,
                                self.position,
                                format!("unknown escape sequence `\\{other}`"),
                            );
                            value.push(other);
                        }
                    }
                }
                other => {
                    self.position += other.len_utf8();
                    value.push(other);
                }
            }
        }
        self.push(TokenKind::String(value), start);
    }

    fn unterminated_string(&mut self, start: usize) {
        let span = self.span(start, self.position);
        self.diagnostics.push(
            Diagnostic::error(span, "unterminated string literal")
                .with_hint("a string literal ends with `\"` on the line where it starts"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        let (tokens, diagnostics) = lex(0, text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        tokens.into_iter().map(|token| token.kind).collect()
    }

    fn ident(name: &str) -> TokenKind {
        TokenKind::Ident(name.to_string())
    }

    fn integer(value: u128) -> TokenKind {
        TokenKind::Number(NumberLiteral::Integer(value))
    }

    fn messages(text: &str) -> Vec<(String, usize, usize)> {
        let (_, diagnostics) = lex(0, text);
        diagnostics
            .into_iter()
            .map(|d| (d.message, d.span.start as usize, d.span.end as usize))
            .collect()
    }

    #[test]
    fn words_keywords_and_wildcard() {
        use TokenKind::*;
        assert_eq!(
            kinds("path _ _x ?y x1_? band bshru lnot true false count sum min max mean cat"),
            vec![
                ident("path"),
                Underscore,
                ident("_x"),
                ident("?y"),
                ident("x1_?"),
                Band,
                Bshru,
                Lnot,
                True,
                False,
                Count,
                Sum,
                Min,
                Max,
                Mean,
                ident("cat"),
                Eof
            ]
        );
        assert_eq!(
            kinds("bor bxor bnot bshl bshr land lor lxor"),
            vec![Bor, Bxor, Bnot, Bshl, Bshr, Land, Lor, Lxor, Eof]
        );
    }

    #[test]
    fn choice_domain_is_one_token_only_when_written_together() {
        use TokenKind::*;
        assert_eq!(
            kinds("choice-domain x"),
            vec![ChoiceDomain, ident("x"), Eof]
        );
        assert_eq!(
            kinds("choice - domain"),
            vec![ident("choice"), Minus, ident("domain"), Eof]
        );
        assert_eq!(
            kinds("choice-domains"),
            vec![ident("choice"), Minus, ident("domains"), Eof]
        );
    }

    #[test]
    fn punctuation_longest_match_first() {
        use TokenKind::*;
        assert_eq!(
            kinds("( ) { } [ ] , . : ; = != < <= > >= + - * / % ^ ! :- <: | $ @"),
            vec![
                LeftParen,
                RightParen,
                LeftBrace,
                RightBrace,
                LeftBracket,
                RightBracket,
                Comma,
                Dot,
                Colon,
                Semicolon,
                Equal,
                NotEqual,
                Less,
                LessEqual,
                Greater,
                GreaterEqual,
                Plus,
                Minus,
                Star,
                Slash,
                Percent,
                Caret,
                Bang,
                If,
                Subtype,
                Pipe,
                Dollar,
                At,
                Eof
            ]
        );
        assert_eq!(kinds("a:-b"), vec![ident("a"), If, ident("b"), Eof]);
        assert_eq!(kinds("x<=y"), vec![ident("x"), LessEqual, ident("y"), Eof]);
        assert_eq!(kinds("!A"), vec![Bang, ident("A"), Eof]);
    }

    #[test]
    fn numbers_in_every_base_and_floats() {
        use TokenKind::*;
        assert_eq!(
            kinds("0 42 0x1F 0xff 0b101 7u 0x10u 18446744073709551615"),
            vec![
                integer(0),
                integer(42),
                integer(31),
                integer(255),
                integer(5),
                integer(7),
                integer(16),
                integer(u64::MAX as u128),
                Eof
            ]
        );
        assert_eq!(
            kinds("1.5 2.0e3 2.5E-2 1.0e+1"),
            vec![
                Number(NumberLiteral::Float(1.5)),
                Number(NumberLiteral::Float(2000.0)),
                Number(NumberLiteral::Float(0.025)),
                Number(NumberLiteral::Float(10.0)),
                Eof
            ]
        );
        // The minus sign is an operator, never part of the literal.
        assert_eq!(kinds("-3"), vec![Minus, integer(3), Eof]);
        // `.5` is not a float in Soufflé.
        assert_eq!(kinds(".5"), vec![Dot, integer(5), Eof]);
        // A number that ends a fact is followed by the clause's dot.
        assert_eq!(
            kinds("A(1).\nB(2)."),
            vec![
                ident("A"),
                LeftParen,
                integer(1),
                RightParen,
                Dot,
                ident("B"),
                LeftParen,
                integer(2),
                RightParen,
                Dot,
                Eof
            ]
        );
        // A wide literal survives (it may become -9223372036854775808 or a u64).
        assert_eq!(
            kinds("9223372036854775808"),
            vec![integer(9223372036854775808), Eof]
        );
    }

    #[test]
    fn bad_numbers_are_reported_and_lexing_continues() {
        assert_eq!(
            messages("12abc 0x 0b2 x"),
            vec![
                ("invalid number literal `12abc`".to_string(), 0, 5),
                ("invalid number literal `0x`".to_string(), 6, 8),
                ("invalid number literal `0b2`".to_string(), 9, 12),
            ]
        );
        let (tokens, _) = lex(0, "12abc 0x 0b2 x");
        assert_eq!(tokens.len(), 5);
        assert_eq!(tokens[3].kind, ident("x"));
        let too_large = "1".repeat(40);
        assert_eq!(
            messages(&too_large)[0].0,
            format!("number literal `{too_large}` is too large")
        );
        assert_eq!(
            messages("x = 192.168.0.1.")[0].0,
            "IP address literals are not supported (`192.168.0.1`)"
        );
        // The dot after the address still ends the clause.
        let (tokens, _) = lex(0, "192.168.0.1.");
        assert_eq!(tokens[1].kind, TokenKind::Dot);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            kinds(r#""plain" "a\"b" "back\\slash" "n\nt\tr\r" "q\'" """#),
            vec![
                TokenKind::String("plain".into()),
                TokenKind::String("a\"b".into()),
                TokenKind::String("back\\slash".into()),
                TokenKind::String("n\nt\tr\r".into()),
                TokenKind::String("q'".into()),
                TokenKind::String("".into()),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("\"héllo ☃\""),
            vec![TokenKind::String("héllo ☃".into()), TokenKind::Eof]
        );
        let (tokens, _) = lex(0, r#"x "a\"b" y"#);
        assert_eq!(tokens[1].span, Span::new(0, 2, 8));
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            messages(r#""a\qb""#),
            vec![("unknown escape sequence `\\q`".to_string(), 2, 4)]
        );
        assert_eq!(
            messages("\"abc\nnext"),
            vec![("unterminated string literal".to_string(), 0, 4)]
        );
        // The next line is lexed normally.
        let (tokens, _) = lex(0, "\"abc\nnext");
        assert_eq!(tokens[1].kind, ident("next"));
        assert!(tokens[1].line_break_before);
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            kinds("a // line comment ( \nb /* block\n comment * / */ c /**/d"),
            vec![
                ident("a"),
                ident("b"),
                ident("c"),
                ident("d"),
                TokenKind::Eof
            ]
        );
        let (tokens, _) = lex(0, "a /* x\n */ b /* */ c");
        assert!(tokens[1].line_break_before);
        assert!(!tokens[2].line_break_before);
    }

    #[test]
    fn unterminated_block_comment_is_reported_at_its_start() {
        assert_eq!(
            messages("a.\n  /* never closed\n b."),
            vec![("unterminated block comment".to_string(), 5, 7)]
        );
    }

    #[test]
    fn directives_are_known_words_after_a_dot() {
        use DirectiveKeyword as D;
        use TokenKind::*;
        assert_eq!(
            kinds(".decl .type .input .output .printsize .limitsize .include .pragma"),
            vec![
                Directive(D::Decl),
                Directive(D::Type),
                Directive(D::Input),
                Directive(D::Output),
                Directive(D::PrintSize),
                Directive(D::LimitSize),
                Directive(D::Include),
                Directive(D::Pragma),
                Eof
            ]
        );
        assert_eq!(
            kinds(".comp .init .functor .plan .override .number_type .symbol_type .lattice .once"),
            vec![
                Directive(D::Comp),
                Directive(D::Init),
                Directive(D::Functor),
                Directive(D::Plan),
                Directive(D::Override),
                Directive(D::NumberType),
                Directive(D::SymbolType),
                Directive(D::Lattice),
                Directive(D::Once),
                Eof
            ]
        );
        // Not a directive: a dot, then a word.
        assert_eq!(
            kinds("A(1).B(2)."),
            vec![
                ident("A"),
                LeftParen,
                integer(1),
                RightParen,
                Dot,
                ident("B"),
                LeftParen,
                integer(2),
                RightParen,
                Dot,
                Eof
            ]
        );
        assert_eq!(kinds(".declx"), vec![Dot, ident("declx"), Eof]);
        let (tokens, _) = lex(0, "  .decl");
        assert_eq!(tokens[0].span, Span::new(0, 2, 7));
    }

    #[test]
    fn hash_include_and_the_preprocessor() {
        assert_eq!(
            kinds("#include \"a.dl\""),
            vec![
                TokenKind::HashInclude,
                TokenKind::String("a.dl".into()),
                TokenKind::Eof
            ]
        );
        let (tokens, diagnostics) = lex(0, "#define X 1\nA(1).\n#ifdef X\n");
        assert_eq!(
            diagnostics
                .iter()
                .map(|d| d.message.as_str())
                .collect::<Vec<_>>(),
            vec![
                "the C preprocessor is not supported (`#define`)",
                "the C preprocessor is not supported (`#ifdef`)"
            ]
        );
        // The rest of a preprocessor line is skipped, the next lines are not.
        assert_eq!(tokens[0].kind, ident("A"));
        assert_eq!(tokens.len(), 6);
    }

    #[test]
    fn unknown_characters_are_reported_once_per_run_and_lexing_continues() {
        assert_eq!(
            messages("a § b ~~ c ` d"),
            vec![
                ("unexpected character `§`".to_string(), 2, 4),
                ("unexpected characters `~~`".to_string(), 7, 9),
                ("unexpected character ```".to_string(), 12, 13),
            ]
        );
        let (tokens, _) = lex(0, "a § b ~~ c ` d");
        assert_eq!(
            tokens.into_iter().map(|t| t.kind).collect::<Vec<_>>(),
            vec![
                ident("a"),
                ident("b"),
                ident("c"),
                ident("d"),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn spans_and_line_breaks() {
        let (tokens, _) = lex(3, "ab :- cd\n  ef");
        let spans: Vec<(u32, u32, u32, bool)> = tokens
            .iter()
            .map(|t| (t.span.file, t.span.start, t.span.end, t.line_break_before))
            .collect();
        assert_eq!(
            spans,
            vec![
                (3, 0, 2, true),
                (3, 3, 5, false),
                (3, 6, 8, false),
                (3, 11, 13, true),
                (3, 13, 13, true)
            ]
        );
    }
}
