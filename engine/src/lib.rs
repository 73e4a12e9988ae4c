//! Vigil's engine: the rule language and its incremental evaluation.
//!
//! A program goes through these stages, each a module:
//!
//! 1. [`syntax`]: text to an abstract syntax tree, with spans, resolving `.include`;
//! 2. [`check`]: the tree to the typed, normalised, stratified [`ir::Program`], with every
//!    problem reported as a [`diag::Diagnostic`];
//! 3. [`dataflow`]: the program as a differential dataflow on timely, maintained incrementally
//!    as input tuples are inserted and retracted;
//! 4. [`reference`]: an independent from-scratch evaluator of the same program, the oracle of
//!    the tests.
//!
//! The engine never touches the network; sources and actuators live in `vigil-adapters`.

pub mod check;
pub mod dataflow;
pub mod diag;
mod engine;
pub mod explain;
pub mod io;
pub mod ir;
pub mod query;
pub mod reference;
pub mod snapshot;
pub mod subscription;
pub mod syntax;
pub mod trace;
mod transaction;
pub mod value;

use diag::{Diagnostic, SourceMap};
use std::fmt;
use std::path::Path;

/// The problems that stopped a program from loading, with the sources to render them.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    pub sources: SourceMap,
    pub list: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sources.render_all(&self.list))
    }
}

impl std::error::Error for Diagnostics {}

/// Parses and checks the program in the file at `path` (and the files it includes).
pub fn compile_file(path: &Path) -> Result<ir::Program, Diagnostics> {
    let mut sources = SourceMap::new();
    let (ast, mut diagnostics) = syntax::parse_file(&mut sources, path);
    finish(ast, sources, &mut diagnostics)
}

/// Parses and checks program text; `name` is used in locations.
pub fn compile_source(name: &str, text: &str) -> Result<ir::Program, Diagnostics> {
    let mut sources = SourceMap::new();
    let (ast, mut diagnostics) = syntax::parse_source(&mut sources, name, text, None);
    finish(ast, sources, &mut diagnostics)
}

fn finish(
    ast: syntax::ast::Program,
    sources: SourceMap,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<ir::Program, Diagnostics> {
    let (program, check_diagnostics) = check::check(&ast, sources.clone());
    diagnostics.extend(check_diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics {
            sources,
            list: std::mem::take(diagnostics),
        });
    }
    Ok(program)
}

pub use engine::{
    Absent, ChangeSet, Engine, EngineError, Options, Origin, RelationChanges, Tuple, clock_facts,
    format_fields, format_tuple,
};
pub use subscription::{Subscription, ViewChanges};
pub use transaction::{Op, Transaction};
pub use value::{Type, Value};
