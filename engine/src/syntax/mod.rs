//! Lexing and parsing of Soufflé programs.

pub mod ast;
mod lexer;
mod parser;

use crate::diag::{Diagnostic, SourceMap};
use std::path::Path;

/// Reads and parses the program at `path`, and every file it includes (`.include "f.dl"` and
/// `#include "f.dl"`, relative to the including file). All files are added to `sources`.
/// Returns the items parsed (even when there are errors) and every problem found.
pub fn parse_file(sources: &mut SourceMap, path: &Path) -> (ast::Program, Vec<Diagnostic>) {
    parser::parse_file(sources, path)
}

/// Parses program text that does not come from a file (`name` is used in locations). Includes
/// are resolved relative to `base_dir`, or the current directory.
pub fn parse_source(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    base_dir: Option<&Path>,
) -> (ast::Program, Vec<Diagnostic>) {
    parser::parse_source(sources, name, text, base_dir)
}
