//! `vigil repl`: the interactive query loop.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ReplArgs {
    /// The program to load.
    program: Option<PathBuf>,
    /// Directory of the input facts (`R.facts`).
    #[arg(short = 'F', long = "fact-dir")]
    facts: Option<PathBuf>,
}

pub fn repl(args: ReplArgs) -> Result<ExitCode> {
    let _ = (args.program, args.facts);
    anyhow::bail!("the REPL is not built yet")
}
