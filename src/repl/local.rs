//! The REPL on an engine in this process: `vigil repl prog.dl -F facts`.

use super::backend::{ActionLine, Backend, Clock, Delta, Rows, Write};
use super::schema::Schema;
use super::{Failure, plural};
use anyhow::Result;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use vigil_engine::query::{self, Atom, Change};
use vigil_engine::{Engine, Options, Tuple};

pub struct Local {
    engine: Engine,
    schema: Schema,
    /// The program file, for the banner.
    program: Option<PathBuf>,
    /// The `-F` directory, read again when `.load` starts a new engine.
    facts: Option<PathBuf>,
    /// The number of facts read from `facts` at the start.
    read: Option<usize>,
}

impl Local {
    /// Compiles the program (an empty one without a file) and reads the facts; `None` after
    /// printing the diagnostics of a program that does not compile.
    pub fn start(program: Option<PathBuf>, facts: Option<PathBuf>) -> Result<Option<Local>> {
        let compiled = match &program {
            Some(path) => match vigil_engine::compile_file(path) {
                Ok(compiled) => compiled,
                Err(diagnostics) => {
                    eprintln!("{diagnostics}");
                    eprintln!("{} in {}", errors(&diagnostics), path.display());
                    return Ok(None);
                }
            },
            None => vigil_engine::compile_source("<empty>", "")?,
        };
        let mut engine = Engine::new(compiled, Options::default())?;
        let read = match &facts {
            Some(dir) => Some(read_facts(&mut engine, dir)?),
            None => None,
        };
        Ok(Some(Local {
            schema: Schema::of(engine.program()),
            engine,
            program,
            facts,
            read,
        }))
    }
}

impl Backend for Local {
    fn banner(&mut self) -> String {
        let name = self
            .program
            .as_ref()
            .map_or("no program".to_string(), |path| path.display().to_string());
        format!(
            "{name}, {}{}",
            plural(self.schema.relations.len(), "relation"),
            self.read.map_or(String::new(), |count| format!(
                ", {}",
                plural(count, "fact")
            ))
        )
    }

    fn schema(&mut self) -> Result<&Schema, Failure> {
        Ok(&self.schema)
    }

    fn known_schema(&self) -> Option<&Schema> {
        Some(&self.schema)
    }

    fn query(&mut self, _line: &str, atom: &Atom) -> Result<Rows, Failure> {
        let answer = query::run(&self.engine, atom)?;
        let rows = if answer.variables.is_empty() {
            answer.tuples.clone()
        } else {
            answer.bindings()
        };
        Ok(Rows {
            variables: answer.variables,
            rows,
        })
    }

    fn dump(&mut self, relation: &str) -> Result<Vec<Tuple>, Failure> {
        self.engine
            .read(relation, &[])
            .map_err(|error| Failure::whole(error.to_string()))
    }

    fn check(&mut self, _pending: &[Change], changes: &[Change]) -> Result<(), Failure> {
        let mut transaction = self.engine.transaction();
        for change in changes {
            query::write(&mut transaction, change)?;
        }
        Ok(())
    }

    fn apply(&mut self, write: Write<'_>) -> Result<Delta, Failure> {
        let mut transaction = self.engine.transaction();
        if let Some(at) = write.at {
            transaction.at(at);
        }
        transaction.event(write.event);
        for change in write.changes {
            query::write(&mut transaction, change)?;
        }
        let changes = if write.what_if {
            transaction.what_if()
        } else {
            transaction.commit()
        };
        changes
            .map(|changes| Delta::of(&changes))
            .map_err(|error| Failure::whole(error.to_string()))
    }

    fn explain(
        &mut self,
        _line: &str,
        atom: &Atom,
        negated: bool,
        json: bool,
    ) -> Result<String, Failure> {
        let locate = |error| Failure::from(atom.locate(error));
        let text = |answer: &dyn Display| answer.to_string().trim_end().to_string();
        Ok(if negated {
            let pattern = query::pattern(&self.engine, atom)?;
            let answer = self
                .engine
                .why_not(&atom.relation, &pattern)
                .map_err(locate)?;
            if json {
                answer.to_json().to_string()
            } else {
                text(&answer)
            }
        } else {
            let tuple = query::tuple(&self.engine, atom, "`why`")?;
            let answer = self.engine.why(&atom.relation, &tuple).map_err(locate)?;
            if json {
                answer.to_json().to_string()
            } else {
                text(&answer)
            }
        })
    }

    fn sizes(&mut self) -> Result<Vec<(String, usize)>, Failure> {
        Ok(self
            .schema
            .relations
            .iter()
            .map(|relation| {
                let size = self.engine.len(&relation.name).unwrap_or_default();
                (relation.name.clone(), size)
            })
            .collect())
    }

    fn clock(&mut self) -> Result<Clock, Failure> {
        Ok(Clock {
            time: self.engine.time(),
            now: self.engine.now(),
        })
    }

    fn actions(&mut self, _limit: usize) -> Result<Vec<ActionLine>, Failure> {
        Err(Failure::whole(
            "`.actions` shows what a daemon's actuators did, and this session has no daemon: connect to one with `vigil repl --connect http://HOST:PORT`",
        ))
    }

    fn unsupported(&self, _command: &str) -> Option<String> {
        None
    }

    /// A new engine for the program, with the facts of `-F`; the old one stays if anything
    /// fails.
    fn load(&mut self, path: &str, span: Range<usize>) -> Result<String, Failure> {
        let program =
            vigil_engine::compile_file(Path::new(path)).map_err(|diagnostics| Failure {
                span: Some(span.clone()),
                message: format!(
                    "{} in {path}: the program is unchanged",
                    errors(&diagnostics)
                ),
                detail: Some(diagnostics.to_string()),
            })?;
        let fail = |error: anyhow::Error| {
            Failure::at(span.clone(), format!("{error:#}; the program is unchanged"))
        };
        let mut engine = Engine::new(program, Options::default()).map_err(|e| fail(e.into()))?;
        let read = match &self.facts {
            Some(dir) => Some((read_facts(&mut engine, dir).map_err(fail)?, dir)),
            None => None,
        };
        let loaded = format!(
            "loaded {path}: {}{}.",
            plural(engine.program().relations.len(), "relation"),
            read.map_or(String::new(), |(count, dir)| format!(
                ", {} from {}",
                plural(count, "fact"),
                dir.display()
            ))
        );
        self.schema = Schema::of(engine.program());
        self.engine = engine;
        Ok(loaded)
    }

    fn read_facts(&mut self, dir: &str, span: Range<usize>) -> Result<usize, Failure> {
        read_facts(&mut self.engine, Path::new(dir))
            .map_err(|error| Failure::at(span, format!("{error:#}")))
    }
}

/// Reads every `.input` relation's facts from `dir` in one transaction; returns the number of
/// input tuples it added.
fn read_facts(engine: &mut Engine, dir: &Path) -> Result<usize> {
    let changes = engine.load_facts(dir)?;
    let program = engine.program();
    Ok(changes
        .relations()
        .filter(|name| {
            program
                .relation(name)
                .is_some_and(|id| program.relations[id].input.is_some())
        })
        .map(|name| {
            changes
                .of(name)
                .iter()
                .filter(|(_, diff)| *diff > 0)
                .count()
        })
        .sum())
}

fn errors(diagnostics: &vigil_engine::Diagnostics) -> String {
    plural(
        diagnostics.list.iter().filter(|d| d.is_error()).count(),
        "error",
    )
}
