//! Soufflé's file formats: facts in, outputs out.
//!
//! An `.input R` relation reads `R.facts` (or the directive's `filename`) from the facts
//! directory: one tuple per line, columns separated by a tab (or the directive's `delimiter`),
//! symbols unquoted. An `.output R` relation writes `R.csv` (or `filename`) to the output
//! directory in the same form, or prints to standard output with `IO=stdout` (or when the
//! output directory is `-`) between Soufflé's banner lines. A nullary relation that holds
//! prints `()`. Every problem with a file names the file and the line.

use crate::ir;
use crate::value::{Type, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A problem reading or writing a relation's file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: cannot read the facts of `{relation}`")]
    Read {
        relation: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: cannot write the output of `{relation}`")]
    Write {
        relation: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn delimiter(parameters: Option<&ir::IoParameters>) -> String {
    parameters
        .and_then(|p| p.get("delimiter"))
        .unwrap_or("\t")
        .to_string()
}

/// The file an `.input` relation reads.
pub fn facts_path(relation: &ir::Relation, facts_dir: &Path) -> PathBuf {
    let parameters = relation.input.as_ref();
    let name = parameters
        .and_then(|p| p.get("filename"))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.facts", relation.name));
    let path = Path::new(&name);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        facts_dir.join(path)
    }
}

/// Reads the facts of an `.input` relation from the facts directory.
pub fn read_facts(relation: &ir::Relation, facts_dir: &Path) -> Result<Vec<Vec<Value>>, IoError> {
    let path = facts_path(relation, facts_dir);
    let text = std::fs::read_to_string(&path).map_err(|source| IoError::Read {
        relation: relation.name.clone(),
        path: path.clone(),
        source,
    })?;
    parse_facts(relation, &text, &delimiter(relation.input.as_ref())).map_err(|(line, message)| {
        IoError::Parse {
            path,
            line,
            message,
        }
    })
}

/// Parses facts text; an error is the 1-based line and what is wrong with it.
pub fn parse_facts(
    relation: &ir::Relation,
    text: &str,
    delimiter: &str,
) -> Result<Vec<Vec<Value>>, (usize, String)> {
    let types: Vec<Type> = relation.types().collect();
    let mut tuples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if types.is_empty() {
            // A nullary relation holds if its file has a line.
            tuples.push(Vec::new());
            continue;
        }
        if line.is_empty() && types.len() > 1 {
            continue;
        }
        let fields: Vec<&str> = line.split(delimiter).collect();
        if fields.len() != types.len() {
            return Err((
                line_number,
                format!(
                    "`{}` has {} columns, but this line has {} fields separated by {:?}",
                    relation.name,
                    types.len(),
                    fields.len(),
                    delimiter
                ),
            ));
        }
        let mut tuple = Vec::with_capacity(types.len());
        for (column, (field, ty)) in fields.iter().zip(&types).enumerate() {
            let value = Value::parse(field, *ty).map_err(|message| {
                (
                    line_number,
                    format!(
                        "column {} (`{}`): {message}",
                        column + 1,
                        relation.columns[column].name
                    ),
                )
            })?;
            tuple.push(value);
        }
        tuples.push(tuple);
    }
    Ok(tuples)
}

/// Formats tuples as Soufflé writes them: delimited fields, one tuple per line, in value
/// order (numbers numerically).
pub fn format_tuples(tuples: &[Vec<Value>], delimiter: &str) -> String {
    let mut sorted: Vec<&Vec<Value>> = tuples.iter().collect();
    sorted.sort();
    let lines: Vec<String> = sorted
        .into_iter()
        .map(|tuple| {
            if tuple.is_empty() {
                "()".to_string()
            } else {
                tuple
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(delimiter)
            }
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Where a relation's output goes.
pub enum OutputTarget {
    File(PathBuf),
    Stdout,
}

/// The targets of a relation's `.output` directives, given the output directory (`-` for
/// standard output).
pub fn output_targets(relation: &ir::Relation, output_dir: &str) -> Vec<(OutputTarget, String)> {
    relation
        .outputs
        .iter()
        .map(|parameters| {
            let delimiter = delimiter(Some(parameters));
            if output_dir == "-" || parameters.get("IO") == Some("stdout") {
                return (OutputTarget::Stdout, delimiter);
            }
            let name = parameters
                .get("filename")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}.csv", relation.name));
            let path = Path::new(&name);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                Path::new(output_dir).join(path)
            };
            (OutputTarget::File(path), delimiter)
        })
        .collect()
}

/// Soufflé's standard-output form of a relation.
pub fn format_stdout(relation: &str, tuples: &[Vec<Value>], delimiter: &str) -> String {
    format!(
        "---------------\n{relation}\n===============\n{}===============\n",
        format_tuples(tuples, delimiter)
    )
}

/// Writes every `.output` of a relation; returns what goes to standard output.
pub fn write_outputs(
    relation: &ir::Relation,
    tuples: &[Vec<Value>],
    output_dir: &str,
) -> Result<String, IoError> {
    let mut stdout = String::new();
    for (target, delimiter) in output_targets(relation, output_dir) {
        match target {
            OutputTarget::Stdout => {
                stdout.push_str(&format_stdout(&relation.name, tuples, &delimiter))
            }
            OutputTarget::File(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| IoError::Write {
                        relation: relation.name.clone(),
                        path: path.clone(),
                        source,
                    })?;
                }
                std::fs::write(&path, format_tuples(tuples, &delimiter)).map_err(|source| {
                    IoError::Write {
                        relation: relation.name.clone(),
                        path,
                        source,
                    }
                })?;
            }
        }
    }
    Ok(stdout)
}
