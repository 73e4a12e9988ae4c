//! `vigil house`: writes a synthetic house as a facts directory, for benchmarks and
//! experiments: `vigil run rules/homelab.dl -F DIR -D -` evaluates the policy on it.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct HouseArgs {
    /// Nodes besides the edge nodes: the logic node, and hypervisors and gaming rigs.
    #[arg(long)]
    nodes: usize,
    /// Workloads: VMs, containers, Ray jobs and model servers.
    #[arg(long)]
    workloads: usize,
    /// Edge nodes (harvesters).
    #[arg(long, default_value_t = 0)]
    edges: usize,
    /// The seed: the same arguments always give the same house.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The directory to write the facts to, created if needed. Its files of relations that a
    /// synthetic house does not feed (approvals, artifacts, ...) are left as they are.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

pub fn house(args: HouseArgs) -> Result<ExitCode> {
    if args.nodes == 0 {
        bail!("--nodes counts the logic node, so a house has at least 1");
    }
    let house = vigil_homelab::generate(args.seed, args.nodes, args.workloads, args.edges);
    house
        .write_facts(&args.output)
        .with_context(|| format!("cannot write the house to {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
