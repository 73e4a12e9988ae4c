//! Latency of explanations: `why` and `why not` on transitive closure over a sparse random graph.
//!
//! ```text
//! path(x, y) :- edge(x, y).
//! path(x, z) :- path(x, y), edge(y, z).
//! ```
//!
//! The graph has 10,000 nodes and 10,000 random edges (no self-loops, no duplicates, from a
//! seeded SplitMix64): an average out-degree of one, where the closure of a random graph is a
//! few hundred thousand rows, depending on the seed; with this one, 208,797 (the run prints the
//! count). All edges are inserted in one transaction, then:
//!
//! - **first why**: one `why` right after the transaction, which also builds the index the
//!   explanations need (`edge` by its second column; `path` is only probed by whole rows);
//! - **why**: `why` on random rows of `path`, with the index built: p50, p99 and max;
//! - **first why not**: one `why not` on a pair that is not in `path`, which also builds the
//!   index of `path` by its first column (the body is evaluated left to right, and the
//!   recursive rule starts with `path(x, y)`);
//! - **why not**: `why not` on more such pairs (each visits every `path(x, _)` row of the
//!   pair's source);
//! - **first why after a transaction**: one edge inserted, then one `why`: the indexes of the
//!   previous time are dropped and `edge`'s is rebuilt.
//!
//! Every answer is checked to be of the expected kind (a derivation for a row that holds, a
//! why-not for one that does not), and the table reports the mean size of the derivations.
//!
//! `cargo bench --bench why` runs the full benchmark; `-- --quick` (or `VIGIL_BENCH_QUICK=1`)
//! uses a graph of 1,000 nodes and 1,000 edges and fewer questions, for a smoke run of a few
//! seconds. Without `--bench`, which `cargo bench` passes and `cargo test --all-targets` does
//! not, the binary also runs the smoke run. Progress goes to stderr, the table to stdout.

use std::collections::HashSet;
use std::time::Instant;

use vigil_engine::explain::Explanation;
use vigil_engine::{Engine, Options, Value};

const PROGRAM: &str = "\
.decl edge(x: number, y: number)
.input edge
.decl path(x: number, y: number)
.output path
path(x, y) :- edge(x, y).
path(x, z) :- path(x, y), edge(y, z).
";

/// The sizes of one run, full or quick.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    nodes: u64,
    edges: usize,
    /// `why` questions timed after the first.
    whys: usize,
    why_nots: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                nodes: 1_000,
                edges: 1_000,
                whys: 200,
                why_nots: 50,
            }
        } else {
            Sizes {
                nodes: 10_000,
                edges: 10_000,
                whys: 5_000,
                why_nots: 500,
            }
        }
    }
}

/// SplitMix64: a tiny seeded generator, so that every run builds the same graph.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn edge(x: u64, y: u64) -> [Value; 2] {
    [Value::Number(x as i64), Value::Number(y as i64)]
}

/// Nearest-rank percentile of unsorted samples.
fn percentile(samples: &[f64], quantile: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn milliseconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Times `why` on a row that holds; returns the time and the derivation's size.
fn timed_why(engine: &Engine, row: &[Value]) -> (f64, usize) {
    let start = Instant::now();
    let answer = engine.why("path", row).expect("a valid question");
    let elapsed = milliseconds(start);
    match answer {
        Explanation::Holds(derivation) => (elapsed, derivation.nodes.len()),
        Explanation::Absent(_) => panic!("a row of path is explained as absent"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without it,
    // and then a smoke run is what is wanted.
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|value| value == "1")
        || !args.iter().any(|arg| arg == "--bench");
    let sizes = Sizes::new(quick);
    let mut random = SplitMix64(0x005E_ED0F_7E11);

    let mut edges = HashSet::new();
    while edges.len() < sizes.edges {
        let (x, y) = (random.below(sizes.nodes), random.below(sizes.nodes));
        if x != y {
            edges.insert((x, y));
        }
    }
    let program = vigil_engine::compile_source("why.dl", PROGRAM).expect("the program");
    let mut engine = Engine::new(program, Options::default()).expect("the engine");
    let start = Instant::now();
    let mut transaction = engine.transaction();
    let mut sorted: Vec<(u64, u64)> = edges.iter().copied().collect();
    sorted.sort_unstable();
    for &(x, y) in &sorted {
        transaction.insert("edge", &edge(x, y)).expect("an edge");
    }
    transaction.commit().expect("the load");
    let load = start.elapsed().as_secs_f64();
    let rows = engine.read("path", &[]).expect("path");
    eprintln!(
        "{} nodes, {} edges: {} path rows, loaded in {load:.2} s",
        sizes.nodes,
        sizes.edges,
        rows.len()
    );

    let pick = |random: &mut SplitMix64| rows[random.below(rows.len() as u64) as usize].clone();
    let (first, _) = timed_why(&engine, &pick(&mut random));
    let mut samples = Vec::with_capacity(sizes.whys);
    let mut nodes = 0;
    for _ in 0..sizes.whys {
        let (elapsed, size) = timed_why(&engine, &pick(&mut random));
        samples.push(elapsed);
        nodes += size;
    }
    eprintln!("{} whys", samples.len());

    let mut absent = Vec::with_capacity(sizes.why_nots + 1);
    while absent.len() <= sizes.why_nots {
        let row = edge(random.below(sizes.nodes), random.below(sizes.nodes));
        if !engine.contains("path", &row).expect("path") {
            let pattern: Vec<Option<Value>> = row.iter().cloned().map(Some).collect();
            let start = Instant::now();
            let answer = engine.why_not("path", &pattern).expect("a valid question");
            absent.push(milliseconds(start));
            assert!(answer.to_string().contains("does not hold"), "{answer}");
        }
    }
    let first_absent = absent.remove(0);
    eprintln!("{} why-nots", absent.len());

    let mut transaction = engine.transaction();
    loop {
        let (x, y) = (random.below(sizes.nodes), random.below(sizes.nodes));
        if x != y && !edges.contains(&(x, y)) {
            transaction.insert("edge", &edge(x, y)).expect("an edge");
            break;
        }
    }
    transaction.commit().expect("one more edge");
    let (after, _) = timed_why(&engine, &pick(&mut random));

    let mode = if quick { "quick" } else { "full" };
    println!(
        "### why: transitive closure, {} nodes, {} edges, {} path rows ({mode} run)\n",
        sizes.nodes,
        sizes.edges,
        rows.len()
    );
    println!("| measurement | questions | p50 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|---:|");
    let line = |name: &str, samples: &[f64]| {
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} |",
            samples.len(),
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            percentile(samples, 1.0)
        );
    };
    line("first why (builds the indexes)", &[first]);
    line("why", &samples);
    line("first why not (builds `path`'s index)", &[first_absent]);
    line("why not", &absent);
    line("first why after a transaction", &[after]);
    println!(
        "\nLoad: {load:.2} s. Mean derivation: {:.1} nodes.",
        nodes as f64 / samples.len() as f64
    );
}
