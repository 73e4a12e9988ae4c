//! `vigil run`: Soufflé's command line, evaluated on differential dataflow.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vigil_engine::ir::Program;
use vigil_engine::value::{self, Interner, Word};
use vigil_engine::{dataflow, io};

#[derive(Args)]
pub struct RunArgs {
    /// The program.
    program: PathBuf,
    /// Directory of the input facts (`R.facts`).
    #[arg(short = 'F', long = "fact-dir", default_value = ".")]
    facts: PathBuf,
    /// Directory for the outputs (`R.csv`); `-` prints them to standard output.
    #[arg(short = 'D', long = "output-dir", default_value = ".")]
    output: String,
    /// Worker threads.
    #[arg(short = 'j', long = "jobs", default_value_t = 1)]
    jobs: usize,
    /// Timely's flags for several processes, after `--`: `-n PROCESSES -p INDEX -h HOSTFILE`.
    #[arg(last = true)]
    timely: Vec<String>,
}

/// Compiles the program at `path`, or prints every problem with it to standard error.
pub fn compile(path: &Path) -> Option<Program> {
    match vigil_engine::compile_file(path) {
        Ok(program) => Some(program),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            let count = diagnostics.list.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "{count} error{} in {}",
                if count == 1 { "" } else { "s" },
                path.display()
            );
            None
        }
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let Some(program) = compile(&args.program) else {
        return Ok(ExitCode::FAILURE);
    };
    if args.jobs == 0 {
        bail!("-j takes a number of worker threads, at least 1");
    }
    let interner = Interner::new();

    // Every process reads every input (so that it knows every symbol); each worker feeds its
    // share.
    let mut facts: Vec<(usize, Vec<Word>)> = Vec::new();
    for (id, relation) in program.relations.iter().enumerate() {
        if relation.input.is_none() {
            continue;
        }
        // A stream's initial facts are optional; the clock starts at the time in its facts
        // file, or 0.
        if relation.feed.clock {
            let time = vigil_engine::clock_facts(relation, &args.facts)?.unwrap_or(0);
            facts.push((id, vec![time as Word]));
            continue;
        }
        if relation.feed.stream && !io::facts_path(relation, &args.facts).exists() {
            continue;
        }
        let tuples = io::read_facts(relation, &args.facts)?;
        for tuple in tuples {
            let words = tuple
                .iter()
                .map(|v| value::encode(v, &interner))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            facts.push((id, words));
        }
    }
    let facts = Arc::new(facts);
    let load = {
        let facts = facts.clone();
        Arc::new(
            move |index: usize, peers: usize, feed: &mut dyn FnMut(usize, &[Word])| {
                for (position, (relation, words)) in facts.iter().enumerate() {
                    if position % peers == index {
                        feed(*relation, words);
                    }
                }
                Ok(())
            },
        )
    };
    let config = if args.timely.is_empty() {
        if args.jobs == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(args.jobs)
        }
    } else {
        let mut timely_args = vec!["vigil".to_string(), "-w".to_string(), args.jobs.to_string()];
        timely_args.extend(args.timely.iter().cloned());
        timely::Config::from_args(timely_args.into_iter())
            .map_err(anyhow::Error::msg)
            .context("in the timely flags after `--`")?
    };
    let wanted: Vec<usize> = program
        .relations
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.outputs.is_empty() || r.printsize)
        .map(|(id, _)| id)
        .collect();
    let program = Arc::new(program);
    let result = dataflow::run_batch(
        program.clone(),
        interner.clone(),
        config,
        wanted.clone(),
        load,
    )
    .map_err(anyhow::Error::msg)?;
    let Some(relations) = result else {
        // Another process writes the outputs.
        return Ok(ExitCode::SUCCESS);
    };
    let mut contents: std::collections::HashMap<usize, Vec<Vec<Word>>> =
        relations.into_iter().collect();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for id in wanted {
        let relation = &program.relations[id];
        let types: Vec<_> = relation.types().collect();
        let tuples: Vec<Vec<value::Value>> = contents
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .map(|words| {
                words
                    .iter()
                    .zip(&types)
                    .map(|(w, t)| value::decode(*w, *t, &interner))
                    .collect()
            })
            .collect();
        let printed = io::write_outputs(relation, &tuples, &args.output)?;
        stdout.write_all(printed.as_bytes())?;
        if relation.printsize {
            writeln!(stdout, "{}\t{}", relation.name, tuples.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
