//! The `vigil` command line: thin glue over `vigil-engine`.

mod bench;
mod edge;
mod house;
mod repl;
mod replay;
mod run;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc rather than the C library's allocator: a transaction's timely steps allocate and
/// free many small buffers, and glibc's allocator hands the freed pages back to the kernel and
/// faults them in again at every commit (see ARCHITECTURE.md, Dependencies).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Vigil: a reactive Datalog rules engine.
#[derive(Parser)]
#[command(name = "vigil", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluates a Soufflé program once, like `souffle`: reads `.input` facts, writes `.output`s.
    Run(run::RunArgs),
    /// Applies a trace of timed transactions (JSON lines or MessagePack) and prints every change set.
    Replay(replay::ReplayArgs),
    /// The interactive query loop: queries, inserts and retractions, `why`, `whatif`.
    Repl(repl::ReplArgs),
    /// Writes a synthetic house (N nodes, M workloads, K edge nodes) as a facts directory.
    House(house::HouseArgs),
    /// The daemon: the engine, its journal, and the HTTP API.
    Serve(serve::ServeArgs),
    /// Measures rule latency, throughput, load and memory against baselines; writes a report.
    Bench(bench::BenchArgs),
    /// The edge nodes' client: hashes, reports and uploads harvested artifacts, resuming cut uploads.
    Edge(edge::EdgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Replay(args) => replay::replay(args),
        Command::Repl(args) => repl::repl(args),
        Command::Serve(args) => serve::serve(args),
        Command::House(args) => house::house(args),
        Command::Bench(args) => bench::bench(args),
        Command::Edge(args) => edge::edge(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
