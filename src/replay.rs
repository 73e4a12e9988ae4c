//! `vigil replay`: applies a trace of timed transactions and prints every change set.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use vigil_engine::{ChangeSet, Engine, Options, trace};

#[derive(Args)]
pub struct ReplayArgs {
    /// The program.
    program: PathBuf,
    /// The trace: JSON lines, or MessagePack (see the README for the format).
    trace: PathBuf,
    /// Directory of initial facts (`R.facts`), loaded before the trace.
    #[arg(short = 'F', long = "fact-dir")]
    facts: Option<PathBuf>,
    /// Print the changes of every relation, not only the `.output` relations.
    #[arg(long, conflicts_with = "views")]
    all: bool,
    /// Print the changes of these relations only (comma-separated).
    #[arg(long, value_delimiter = ',')]
    views: Vec<String>,
    /// Worker threads.
    #[arg(short = 'j', long = "jobs", default_value_t = 1)]
    jobs: usize,
}

pub fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let Some(program) = crate::run::compile(&args.program) else {
        return Ok(ExitCode::FAILURE);
    };
    let bytes = std::fs::read(&args.trace)
        .with_context(|| format!("{}: cannot read the trace", args.trace.display()))?;
    for view in &args.views {
        if program.relation(view).is_none() {
            bail!(
                "--views: `{view}` is not a relation of {}",
                args.program.display()
            );
        }
    }
    let shown: Vec<String> = if !args.views.is_empty() {
        args.views.clone()
    } else if args.all || program.relations.iter().all(|r| r.outputs.is_empty()) {
        program.relations.iter().map(|r| r.name.clone()).collect()
    } else {
        program
            .relations
            .iter()
            .filter(|r| !r.outputs.is_empty())
            .map(|r| r.name.clone())
            .collect()
    };
    let mut engine = Engine::new(program, Options { workers: args.jobs })?;
    let mut initial = engine.initial_changes().clone();
    if let Some(dir) = &args.facts {
        initial = initial.then(&engine.load_facts(dir)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let print = |out: &mut dyn std::io::Write, mut changes: ChangeSet| -> std::io::Result<()> {
        changes.retain(|relation| shown.iter().any(|name| name == relation));
        if changes.is_empty() {
            writeln!(out, "(no changes)")?;
        } else {
            write!(out, "{changes}")?;
        }
        for absent in &changes.absent {
            writeln!(out, "not there: -{absent}")?;
        }
        Ok(())
    };
    writeln!(out, "initial")?;
    print(&mut out, initial)?;
    let entries = trace::read(&bytes);
    let mut rejected = 0;
    for (location, entry) in &entries {
        let result = entry
            .as_ref()
            .map_err(|message| message.clone())
            .and_then(|entry| {
                entry
                    .apply(&mut engine)
                    .map(|changes| (entry, changes))
                    .map_err(|error| error.to_string())
            });
        match result {
            Ok((entry, changes)) => {
                let label = entry
                    .event
                    .as_deref()
                    .map(|event| format!(": {event}"))
                    .unwrap_or_default();
                if entry.whatif {
                    writeln!(out, "what-if at {}{label}", changes.now)?;
                } else {
                    writeln!(
                        out,
                        "transaction {} at {}{label}",
                        changes.time, changes.now
                    )?;
                }
                print(&mut out, changes)?;
            }
            Err(message) => {
                rejected += 1;
                writeln!(out, "{location}: {message}")?;
            }
        }
    }
    out.flush()?;
    if rejected > 0 {
        eprintln!(
            "{}: {rejected} of {} transactions rejected; nothing of them was applied",
            args.trace.display(),
            entries.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
