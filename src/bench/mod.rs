//! `vigil bench`: the rule-latency benchmark harness.
//!
//! It measures, in one run, for the bundled policy and for classic Datalog programs:
//!
//! 1. the latency from a one-event transaction to its change set (p50, p99, p99.9, max, from
//!    an HDR histogram), on the sample house and on synthetic houses of N nodes and 10 N
//!    workloads (`--sizes`);
//! 2. the throughput of batched events (100 per transaction);
//! 3. the initial load time and the peak memory (`VmHWM`) of every case, each in a process of
//!    its own ([`runner`]);
//! 4. end to end over HTTP ([`http`]): ingest, the change set, and the `act` change reaching a
//!    watcher, where an actuator would dispatch it (dry run);
//! 5. the baselines on the same houses and events: crepe recomputing the load-shedding view
//!    from scratch, and a hand-written typed differential dataflow of that view
//!    (`vigil_homelab::baseline`), with Vigil running the view alone beside them for a
//!    like-for-like comparison. Their rows are compared at checkpoints: every implementation
//!    must compute the same view, or the run fails.
//!
//! The classic programs (transitive closure, same generation, an Andersen-style points-to
//! analysis, in `fixtures/bench/`) get a load, single-tuple inserts and retractions, and crepe
//! recomputing each from scratch.
//!
//! It writes `report.json` (every figure with its unit, the machine, the targets with met or
//! missed and by how much) and `plot.svg` (latency against house size) to `-o DIR`, prints the
//! tables on stdout and its progress on stderr. See [`workloads`] for what is measured,
//! [`measure`] for how, [`report`] for the targets.

mod baselines;
mod http;
mod measure;
mod plot;
mod progress;
mod report;
mod runner;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use measure::{Case, HOUSE_IMPLEMENTATIONS, Settings};
use progress::Progress;
use report::Outcome;
use workloads::{CLASSICS, Paths, Scale, Size};

#[derive(Args)]
pub struct BenchArgs {
    /// Houses to measure, comma separated: `sample` (fixtures/homelab), and synthetic houses
    /// of N nodes with 10 N workloads and N / 10 edge nodes.
    #[arg(long, value_delimiter = ',', default_value = "sample,100,1000,10000")]
    sizes: Vec<String>,
    /// One-event transactions timed per house and implementation [default: 2000, or 200 with
    /// --quick]; also the transactions timed over HTTP.
    #[arg(long)]
    events: Option<usize>,
    /// A short run: 200 events, classic programs of 200 nodes, a shorter HTTP run.
    #[arg(long)]
    quick: bool,
    /// The directory for `report.json` and `plot.svg`, created if needed.
    #[arg(short = 'o', long = "output", default_value = "vigil-bench")]
    output: PathBuf,
    /// The seed of the synthetic houses, the events and the classic programs' inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds a case may take to load, and each of its measuring phases to run; a load that
    /// takes longer is reported as not measured, a phase that does stops early and says so.
    #[arg(long = "budget-s", default_value_t = 240.0)]
    budget_s: f64,
    /// Megabytes a case's process may use [default: half of the memory available at the
    /// start]; a case that needs more is reported as not measured.
    #[arg(long = "memory-budget-mb")]
    memory_budget_mb: Option<f64>,
    /// The directory that holds rules/, fixtures/homelab/ and fixtures/bench/.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Skip the classic programs.
    #[arg(long)]
    no_classic: bool,
    /// Skip the HTTP run.
    #[arg(long)]
    no_http: bool,
    /// A tiny run, for `cargo test --benches`.
    #[arg(long, hide = true)]
    smoke: bool,
    /// Measure one case in this process and print its figures (what the parent runs).
    #[arg(long, hide = true, value_name = "CASE")]
    one: Option<String>,
    /// The scale of the parent's run (for `--one`).
    #[arg(long, hide = true)]
    scale: Option<String>,
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let scale = match &args.scale {
        Some(name) => Scale::parse(name).with_context(|| format!("unknown scale `{name}`"))?,
        None if args.smoke => Scale::Smoke,
        None if args.quick => Scale::Quick,
        None => Scale::Full,
    };
    if !(args.budget_s.is_finite() && args.budget_s > 0.0) {
        bail!("--budget-s takes a number of seconds greater than 0");
    }
    let settings = Settings {
        scale,
        events: args.events.unwrap_or(scale.events()),
        seed: args.seed,
        budget: Duration::from_secs_f64(args.budget_s),
        paths: Paths::under(&args.root),
    };
    if settings.events == 0 {
        bail!("--events takes a number of transactions, at least 1");
    }
    if let Some(case) = &args.one {
        measure::run_child(Case::parse(case)?, &settings)?;
        return Ok(ExitCode::SUCCESS);
    }
    parent(&args, &settings)
}

fn parent(args: &BenchArgs, settings: &Settings) -> Result<ExitCode> {
    let paths = &settings.paths;
    for (path, what) in [
        (&paths.policy, "the policy"),
        (&paths.sample, "the sample house"),
        (&paths.programs, "the benchmark programs"),
    ] {
        if !path.exists() {
            bail!(
                "{what} is not at {}: run `vigil bench` from the repository's root, or give --root",
                path.display()
            );
        }
    }
    let sizes: Vec<Size> = args
        .sizes
        .iter()
        .map(|size| Size::parse(size))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let memory_budget_mb = args
        .memory_budget_mb
        .unwrap_or_else(|| measure::status_mb("/proc/meminfo", "MemAvailable") / 2.0);
    let memory_budget_mb = if memory_budget_mb.is_finite() {
        memory_budget_mb
    } else {
        8_192.0
    };

    let mut cases = Vec::new();
    for size in &sizes {
        for implementation in HOUSE_IMPLEMENTATIONS {
            cases.push(Case::House(*size, implementation));
        }
    }
    if !args.no_classic {
        for classic in CLASSICS {
            cases.push(Case::Classic(classic, true));
            cases.push(Case::Classic(classic, false));
        }
    }
    let started = Instant::now();
    let date = report::utc_now();
    let load_average_start = report::load_average();
    let mut progress = Progress::new("bench");
    progress.line(&format!(
        "{} run: {} cases{}, each in its own process; budgets {:.0} s per load and per phase, {memory_budget_mb:.0} MB per process",
        scale_name(settings.scale),
        cases.len(),
        if args.no_http { "" } else { ", then HTTP" },
        settings.budget.as_secs_f64(),
    ));
    let mut results = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        progress.line(&format!(
            "{}/{} {} ({:.0} s elapsed)",
            index + 1,
            cases.len(),
            case.key(),
            started.elapsed().as_secs_f64()
        ));
        let result = runner::run(*case, settings, memory_budget_mb);
        match &result.outcome {
            Outcome::Measured(_) => {
                progress.line(&format!("{} done in {:.1} s", case.key(), result.wall_s));
            }
            Outcome::NotMeasured { reason, .. } => {
                progress.line(&format!("{} not measured: {reason}", case.key()));
            }
        }
        results.push(result);
    }
    let http = if args.no_http {
        Outcome::not_measured("skipped (--no-http)")
    } else {
        progress.line(&format!(
            "HTTP: `vigil serve` on the sample house ({:.0} s elapsed)",
            started.elapsed().as_secs_f64()
        ));
        let (warm_up, events) = settings.scale.http();
        let events = args.events.unwrap_or(events);
        match http::measure(paths, settings.seed, warm_up, events) {
            Ok(figures) => Outcome::Measured(figures),
            Err(error) => {
                progress.line(&format!("HTTP not measured: {error:#}"));
                Outcome::not_measured(format!("{error:#}"))
            }
        }
    };
    let run = report::Run {
        scale: settings.scale.name(),
        seed: settings.seed,
        events: settings.events,
        sizes,
        budget_s: settings.budget.as_secs_f64(),
        memory_budget_mb,
        date,
        load_average_start,
    };
    let report = report::build(&run, &results, &http, started.elapsed().as_secs_f64());
    let json_path = args.output.join("report.json");
    let svg_path = args.output.join("plot.svg");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&svg_path, plot::svg(&report))
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    print!("{}", report::tables(&report));
    progress.line(&format!(
        "done in {:.0} s: {} and {}",
        started.elapsed().as_secs_f64(),
        json_path.display(),
        svg_path.display()
    ));
    // Implementations that disagree make every comparison meaningless: that is a failure.
    // Missed targets and cases that could not be measured are results, reported as such.
    let disagree = report["houses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report["classic"].as_array().into_iter().flatten())
        .any(|entry| entry["agreement"]["agree"] == false);
    if disagree {
        eprintln!("error: the implementations computed different results; see the report");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn scale_name(scale: Scale) -> &'static str {
    match scale {
        Scale::Full => "Full",
        Scale::Quick => "Quick",
        Scale::Smoke => "Smoke",
    }
}
