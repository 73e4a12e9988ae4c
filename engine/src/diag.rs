//! Source files, spans and diagnostics.
//!
//! Every stage of the front end (lexing, parsing, checking) reports problems as [`Diagnostic`]s
//! that carry a [`Span`] into a file of the [`SourceMap`]. Stages never stop at the first
//! problem: they collect all of them, and the caller renders them in the conventional
//! `file:line:col: error: message` form, followed by the offending source line and a caret.

use std::fmt::Write as _;

/// A byte range in one file of a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Index of the file in the [`SourceMap`].
    pub file: u32,
    /// Byte offset of the first character.
    pub start: u32,
    /// Byte offset one past the last character.
    pub end: u32,
}

impl Span {
    pub fn new(file: u32, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span that covers both `self` and `other` (which must be in the same file).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// One source file: its path as the user named it, and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Byte offsets at which lines start.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(offset, _)| offset + 1));
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// The text of a 1-based line, without its line terminator.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |&next| next);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// All files that make up a program: the main file and everything it includes.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file and returns its index, used in [`Span::file`].
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> u32 {
        self.files.push(SourceFile::new(path, text));
        (self.files.len() - 1) as u32
    }

    pub fn file(&self, index: u32) -> &SourceFile {
        &self.files[index as usize]
    }

    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The source text a span covers.
    pub fn text(&self, span: Span) -> &str {
        let file = self.file(span.file);
        file.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    /// `path:line:col` of the start of a span.
    pub fn location(&self, span: Span) -> String {
        if self.files.is_empty() {
            return "<unknown>".to_string();
        }
        let file = self.file(span.file);
        let (line, column) = file.line_col(span.start as usize);
        format!("{}:{}:{}", file.path, line, column)
    }

    /// Renders a diagnostic as `file:line:col: error: message`, the source line and a caret
    /// under the span, and the hint if there is one.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{}: {}: {}",
            self.location(diagnostic.span),
            diagnostic.severity,
            diagnostic.message
        );
        // A file that could not be read has no line to show.
        if !self.files.is_empty() && !self.file(diagnostic.span.file).text.is_empty() {
            let file = self.file(diagnostic.span.file);
            let (line, column) = file.line_col(diagnostic.span.start as usize);
            let text = file.line_text(line);
            let (end_line, end_column) = file.line_col(diagnostic.span.end as usize);
            let width = if end_line == line && end_column > column {
                end_column - column
            } else {
                1
            };
            let gutter = line.to_string();
            let _ = write!(out, "\n{} | {}", gutter, text.replace('\t', " "));
            let _ = write!(
                out,
                "\n{} | {}{}",
                " ".repeat(gutter.len()),
                " ".repeat(column - 1),
                "^".repeat(width.max(1))
            );
        }
        if let Some(hint) = &diagnostic.hint {
            let _ = write!(out, "\nhint: {hint}");
        }
        out
    }

    /// Renders several diagnostics, separated by blank lines.
    pub fn render_all(&self, diagnostics: &[Diagnostic]) -> String {
        diagnostics
            .iter()
            .map(|d| self.render(d))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem found in a program, with the place it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    /// Lowercase, no final period.
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `1 column`, `3 columns`.
pub fn columns(count: usize) -> String {
    if count == 1 {
        "1 column".to_string()
    } else {
        format!("{count} columns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_line_and_caret() {
        let mut map = SourceMap::new();
        let file = map.add("prog.dl", ".decl a(x: number)\npath(x) :- edge(x, y).\n");
        let start = ".decl a(x: number)\n".len() + 11;
        let diagnostic =
            Diagnostic::error(Span::new(file, start, start + 4), "unknown relation `edge`")
                .with_hint("declare it with .decl");
        assert_eq!(
            map.render(&diagnostic),
            "prog.dl:2:12: error: unknown relation `edge`\n\
             2 | path(x) :- edge(x, y).\n  |            ^^^^\n\
             hint: declare it with .decl"
        );
    }
}
