//! Parser: tokens to the syntax tree.
use super::ast;
use crate::diag::{Diagnostic, SourceMap};
use std::path::Path;

pub fn parse_file(_sources: &mut SourceMap, _path: &Path) -> (ast::Program, Vec<Diagnostic>) {
    todo!()
}

pub fn parse_source(
    _sources: &mut SourceMap,
    _name: &str,
    _text: &str,
    _base_dir: Option<&Path>,
) -> (ast::Program, Vec<Diagnostic>) {
    todo!()
}
