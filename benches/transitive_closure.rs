//! Transitive closure, three ways: Vigil's engine, a hand-written typed differential dataflow,
//! and crepe recomputing from scratch.
//!
//! ```text
//! path(x, y) :- edge(x, y).
//! path(x, z) :- path(x, y), edge(y, z).
//! ```
//!
//! Each implementation runs on three graphs: a random graph of 2,000 nodes and 2,000 edges, one
//! of 2,000 nodes and 4,000 edges, and a chain `0 -> 1 -> ... -> 1999`. For each (graph,
//! implementation) pair we measure the initial load (every edge inserted in one transaction,
//! until the closure is complete), the latency of single-edge updates, and the peak resident
//! memory. Every implementation replays the same update sequence.
//!
//! On the random graphs an update is the insertion of a new random edge followed by its
//! retraction, so that every measurement starts from the same graph. On the chain, random new
//! edges would either close a cycle (squaring the closure) or add a shortcut, so an update
//! there cuts an existing edge `(i, i + 1)` and then restores it: near the tail a cut removes a
//! few thousand tuples, in the middle about a million. The middle cuts are slow for every
//! implementation, so the chain gets few of them.
//!
//! Peak memory (`VmHWM`) is per process, so each (graph, implementation) pair runs in a fresh
//! child process: the binary re-executes itself with `--case GRAPH IMPLEMENTATION`, and the
//! child prints its figures as one JSON line that the parent collects. Progress goes to stderr,
//! the final Markdown tables to stdout.
//!
//! `cargo bench --bench transitive_closure` runs the full benchmark (about four minutes on two
//! cores); `-- --quick` (or `VIGIL_BENCH_QUICK=1`) shrinks every graph to 200 nodes for a
//! smoke run of a few seconds. Without `--bench`, which `cargo bench` passes and `cargo test
//! --all-targets` does not, the binary also runs the smoke run. Other arguments are ignored.

use std::cell::Cell;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Instant;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::iterate::Variable;
use serde_json::{Value as Json, json};
use timely::dataflow::ProbeHandle;
use timely::order::Product;
use vigil_engine::{Engine, Options, Value};

/// The line prefix of a child's result on its stdout.
const RESULT_PREFIX: &str = "VIGIL_BENCH_RESULT ";

const VIGIL_PROGRAM: &str = "\
.decl edge(x: number, y: number)
.input edge
.decl path(x: number, y: number)
.output path
path(x, y) :- edge(x, y).
path(x, z) :- path(x, y), edge(y, z).
";

const GRAPHS: [&str; 3] = ["random-sparse", "random-dense", "chain"];
const IMPLEMENTATIONS: [&str; 3] = ["vigil", "typed-dd", "crepe"];

// ---------------------------------------------------------------------------------------------
// Configuration and workloads

/// The sizes of one run, full or quick.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    quick: bool,
    nodes: u32,
    sparse_edges: usize,
    dense_edges: usize,
    /// Insert/retract pairs on the random graphs.
    random_updates: usize,
    /// Crepe recomputes everything on every update: on the dense graph (2.5 M tuples, about a
    /// second per recomputation) it replays only a prefix of the sequence.
    crepe_dense_updates: usize,
    /// Cut/restore pairs near the chain's tail and in its middle.
    chain_tail: usize,
    chain_middle: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                nodes: 200,
                sparse_edges: 200,
                dense_edges: 400,
                random_updates: 20,
                crepe_dense_updates: 10,
                chain_tail: 5,
                chain_middle: 2,
            }
        } else {
            Sizes {
                quick,
                nodes: 2_000,
                sparse_edges: 2_000,
                dense_edges: 4_000,
                random_updates: 100,
                crepe_dense_updates: 20,
                chain_tail: 20,
                chain_middle: 5,
            }
        }
    }
}

/// SplitMix64: a tiny seeded generator, so that every process builds the same graphs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u32) -> u32 {
        (self.next() % u64::from(bound)) as u32
    }
}

type Edge = (u32, u32);

/// One update: the edge, and whether it is inserted (or retracted).
#[derive(Clone, Copy, Debug)]
struct Update {
    edge: Edge,
    insert: bool,
}

/// A named sequence of updates, measured on its own.
#[derive(Clone, Debug)]
struct Phase {
    name: &'static str,
    updates: Vec<Update>,
}

#[derive(Clone, Debug)]
struct Workload {
    edges: Vec<Edge>,
    phases: Vec<Phase>,
}

/// A random edge that is neither a self-loop nor in `present`; it is added to `present`.
fn fresh_edge(random: &mut SplitMix64, nodes: u32, present: &mut HashSet<Edge>) -> Edge {
    loop {
        let edge = (random.below(nodes), random.below(nodes));
        if edge.0 != edge.1 && present.insert(edge) {
            return edge;
        }
    }
}

fn random_workload(nodes: u32, edge_count: usize, updates: usize, seed: u64) -> Workload {
    let mut random = SplitMix64(seed);
    let mut present = HashSet::new();
    let edges: Vec<Edge> = (0..edge_count)
        .map(|_| fresh_edge(&mut random, nodes, &mut present))
        .collect();
    let mut sequence = Vec::new();
    for _ in 0..updates {
        let edge = fresh_edge(&mut random, nodes, &mut present);
        sequence.push(Update { edge, insert: true });
        sequence.push(Update {
            edge,
            insert: false,
        });
    }
    Workload {
        edges,
        phases: vec![Phase {
            name: "random",
            updates: sequence,
        }],
    }
}

/// Cuts `(i, i + 1)` and restores it, for each `i`.
fn cuts(name: &'static str, positions: impl Iterator<Item = u32>) -> Phase {
    let mut updates = Vec::new();
    for i in positions {
        updates.push(Update {
            edge: (i, i + 1),
            insert: false,
        });
        updates.push(Update {
            edge: (i, i + 1),
            insert: true,
        });
    }
    Phase { name, updates }
}

fn chain_workload(nodes: u32, tail: usize, middle: usize) -> Workload {
    let edges = (0..nodes - 1).map(|i| (i, i + 1)).collect();
    let last = nodes - 2;
    let tail_positions = (0..tail as u32).map(move |k| last - k);
    let start = nodes / 2 - middle as u32 / 2;
    let middle_positions = (0..middle as u32).map(move |k| start + k);
    Workload {
        edges,
        phases: vec![
            cuts("tail", tail_positions),
            cuts("middle", middle_positions),
        ],
    }
}

fn workload(graph: &str, sizes: &Sizes) -> Workload {
    match graph {
        "random-sparse" => {
            random_workload(sizes.nodes, sizes.sparse_edges, sizes.random_updates, 1)
        }
        "random-dense" => random_workload(sizes.nodes, sizes.dense_edges, sizes.random_updates, 2),
        "chain" => chain_workload(sizes.nodes, sizes.chain_tail, sizes.chain_middle),
        other => panic!("unknown graph `{other}`"),
    }
}

fn graph_label(graph: &str, sizes: &Sizes) -> String {
    match graph {
        "random-sparse" => format!(
            "random {} nodes / {} edges",
            sizes.nodes, sizes.sparse_edges
        ),
        "random-dense" => format!("random {} nodes / {} edges", sizes.nodes, sizes.dense_edges),
        _ => format!("chain of {} nodes", sizes.nodes),
    }
}

// ---------------------------------------------------------------------------------------------
// The implementations

/// One implementation of the closure, driven by the measuring loop.
trait Closure {
    /// Inserts every edge at once and waits until the closure is complete; returns the number
    /// of output changes delivered.
    fn load(&mut self, edges: &[Edge]) -> usize;
    /// Applies one update and waits until the closure is complete; returns the number of
    /// output changes delivered.
    fn update(&mut self, update: Update) -> usize;
    /// The number of tuples of `path` now.
    fn path_len(&self) -> usize;
}

/// (a) Vigil's engine through its public API, one worker.
struct Vigil {
    engine: Engine,
}

impl Vigil {
    fn new() -> Vigil {
        let program = vigil_engine::compile_source("transitive_closure.dl", VIGIL_PROGRAM)
            .unwrap_or_else(|diagnostics| panic!("the program does not compile:\n{diagnostics}"));
        let engine = Engine::new(program, Options { workers: 1 })
            .unwrap_or_else(|error| panic!("the engine does not start: {error}"));
        Vigil { engine }
    }
}

fn edge_values(edge: Edge) -> [Value; 2] {
    [
        Value::Number(i64::from(edge.0)),
        Value::Number(i64::from(edge.1)),
    ]
}

impl Closure for Vigil {
    fn load(&mut self, edges: &[Edge]) -> usize {
        let mut transaction = self.engine.transaction();
        for &edge in edges {
            transaction
                .insert("edge", &edge_values(edge))
                .expect("a valid edge");
        }
        transaction.commit().expect("the load commits").len()
    }

    fn update(&mut self, update: Update) -> usize {
        let mut transaction = self.engine.transaction();
        let values = edge_values(update.edge);
        if update.insert {
            transaction.insert("edge", &values).expect("a valid edge");
        } else {
            transaction.retract("edge", &values).expect("a valid edge");
        }
        transaction.commit().expect("the update commits").len()
    }

    fn path_len(&self) -> usize {
        self.engine.len("path").expect("`path` exists")
    }
}

/// (b) The same rules as a hand-written differential dataflow over `(u64, u64)` rows: `edge`
/// arranged by source once, in the outer scope, and shared with the iteration; `path` a
/// variable made distinct at the end of each round; output changes counted by `inspect`.
struct TypedDataflow<'w> {
    worker: &'w mut timely::worker::Worker,
    input: InputSession<u64, (u64, u64), isize>,
    probe: ProbeHandle<u64>,
    /// Output changes delivered since the last reset.
    changes: Rc<Cell<usize>>,
    /// The sum of the output diffs: the size of `path`.
    size: Rc<Cell<isize>>,
}

impl<'w> TypedDataflow<'w> {
    fn new(worker: &'w mut timely::worker::Worker) -> TypedDataflow<'w> {
        let probe = ProbeHandle::new();
        let changes = Rc::new(Cell::new(0));
        let size = Rc::new(Cell::new(0));
        let (output_changes, output_size) = (changes.clone(), size.clone());
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, edges) = scope.new_collection::<(u64, u64), isize>();
            // edge(y, z), by y: arranged once and entered into the iteration.
            let edges_by_source = edges.clone().arrange_by_key();
            let path = scope.iterative::<u64, _, _>(|inner| {
                let (variable, path) = Variable::new(inner, Product::new(Default::default(), 1));
                // path(x, z) :- path(x, y), edge(y, z).
                let extended = path
                    .map(|(x, y)| (y, x))
                    .join_core(edges_by_source.enter(inner), |_y, x, z| Some((*x, *z)));
                // path(x, y) :- edge(x, y).
                let next = edges.enter(inner).concat(extended).distinct();
                variable.set(next.clone());
                next.leave(scope)
            });
            path.inspect(move |(_, _, diff)| {
                output_changes.set(output_changes.get() + 1);
                output_size.set(output_size.get() + diff);
            })
            .probe_with(&probe);
            input
        });
        TypedDataflow {
            worker,
            input,
            probe,
            changes,
            size,
        }
    }

    /// Completes the current time: advance, flush, and step until the output caught up.
    fn complete(&mut self) -> usize {
        let next = self.input.time() + 1;
        self.input.advance_to(next);
        self.input.flush();
        let probe = &self.probe;
        let time = *self.input.time();
        self.worker.step_while(|| probe.less_than(&time));
        self.changes.replace(0)
    }
}

fn wide(edge: Edge) -> (u64, u64) {
    (u64::from(edge.0), u64::from(edge.1))
}

impl Closure for TypedDataflow<'_> {
    fn load(&mut self, edges: &[Edge]) -> usize {
        for &edge in edges {
            self.input.insert(wide(edge));
        }
        self.complete()
    }

    fn update(&mut self, update: Update) -> usize {
        if update.insert {
            self.input.insert(wide(update.edge));
        } else {
            self.input.remove(wide(update.edge));
        }
        self.complete()
    }

    fn path_len(&self) -> usize {
        self.size.get() as usize
    }
}

mod datalog {
    crepe::crepe! {
        @input
        pub struct Edge(u32, u32);

        @output
        pub struct Path(u32, u32);

        Path(x, y) <- Edge(x, y);
        Path(x, z) <- Path(x, y), Edge(y, z);
    }

    /// The number of tuples of the closure of `edges`, computed from scratch.
    pub fn closure_len<'e>(edges: impl IntoIterator<Item = &'e (u32, u32)>) -> usize {
        let mut runtime = Crepe::new();
        runtime.extend(edges.into_iter().map(|&(x, y)| Edge(x, y)));
        let (path,) = runtime.run();
        path.len()
    }
}

/// (c) crepe, recomputing the whole closure from the current edges after every update.
struct Crepe {
    edges: HashSet<Edge>,
    size: usize,
}

impl Crepe {
    fn recompute(&mut self) -> usize {
        self.size = datalog::closure_len(&self.edges);
        self.size
    }
}

impl Closure for Crepe {
    fn load(&mut self, edges: &[Edge]) -> usize {
        self.edges.extend(edges.iter().copied());
        self.recompute()
    }

    fn update(&mut self, update: Update) -> usize {
        if update.insert {
            self.edges.insert(update.edge);
        } else {
            self.edges.remove(&update.edge);
        }
        self.recompute()
    }

    fn path_len(&self) -> usize {
        self.size
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring one case (in the child process)

/// `VmHWM` (peak resident set) of this process, in MB.
fn peak_memory_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn milliseconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Loads the workload's graph, replays its phases (at most `limit` updates each, if given),
/// and returns the figures as JSON.
fn measure(
    label: &str,
    closure: &mut dyn Closure,
    workload: &Workload,
    limit: Option<usize>,
) -> Json {
    let base_mb = peak_memory_mb();
    let start = Instant::now();
    let load_changes = closure.load(&workload.edges);
    let load_seconds = start.elapsed().as_secs_f64();
    let path_len = closure.path_len();
    eprintln!(
        "  [{label}] load: {load_seconds:.3} s, {path_len} path tuples, {load_changes} changes"
    );
    let mut phases = Vec::new();
    for phase in &workload.phases {
        let count = limit.map_or(phase.updates.len(), |limit| limit.min(phase.updates.len()));
        let (mut inserts, mut retracts, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        let mut changes = 0;
        let phase_start = Instant::now();
        for (index, &update) in phase.updates[..count].iter().enumerate() {
            let start = Instant::now();
            changes += closure.update(update);
            let elapsed = milliseconds(start);
            if update.insert {
                inserts.push(elapsed);
            } else {
                retracts.push(elapsed);
            }
            sizes.push(closure.path_len());
            if (index + 1) % 50 == 0 || elapsed > 1_000.0 {
                eprintln!(
                    "  [{label}] {} update {}/{count}: {elapsed:.1} ms",
                    phase.name,
                    index + 1
                );
            }
        }
        eprintln!(
            "  [{label}] {}: {count} updates in {:.2} s, {changes} changes",
            phase.name,
            phase_start.elapsed().as_secs_f64()
        );
        phases.push(json!({
            "name": phase.name,
            "inserts_ms": inserts,
            "retracts_ms": retracts,
            "sizes": sizes,
            "changes": changes,
        }));
    }
    json!({
        "load_s": load_seconds,
        "load_changes": load_changes,
        "path_len": path_len,
        "phases": phases,
        "base_mb": base_mb,
        "peak_mb": peak_memory_mb(),
    })
}

fn run_child(graph: &str, implementation: &str, sizes: Sizes) {
    let workload = workload(graph, &sizes);
    let label = format!("{implementation} / {graph}");
    let result = match implementation {
        "vigil" => measure(&label, &mut Vigil::new(), &workload, None),
        "typed-dd" => timely::execute_directly(move |worker| {
            measure(&label, &mut TypedDataflow::new(worker), &workload, None)
        }),
        "crepe" => {
            let limit = (graph == "random-dense").then_some(2 * sizes.crepe_dense_updates);
            let mut crepe = Crepe {
                edges: HashSet::new(),
                size: 0,
            };
            measure(&label, &mut crepe, &workload, limit)
        }
        other => panic!("unknown implementation `{other}`"),
    };
    println!("{RESULT_PREFIX}{result}");
}

// ---------------------------------------------------------------------------------------------
// The parent: run every case in a child, then print the tables

/// Nearest-rank percentile of unsorted samples.
fn percentile(samples: &[f64], quantile: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn samples(phase: &Json, key: &str) -> Vec<f64> {
    phase[key]
        .as_array()
        .map(|values| values.iter().filter_map(Json::as_f64).collect())
        .unwrap_or_default()
}

struct CaseResult {
    graph: &'static str,
    implementation: &'static str,
    json: Json,
}

impl CaseResult {
    fn f64(&self, key: &str) -> f64 {
        self.json[key].as_f64().unwrap_or(f64::NAN)
    }

    fn phase(&self, name: &str) -> Option<&Json> {
        self.json["phases"]
            .as_array()?
            .iter()
            .find(|phase| phase["name"] == name)
    }

    /// The p50 of inserts or retracts of a phase.
    fn p50(&self, phase: &str, key: &str) -> f64 {
        self.phase(phase)
            .map_or(f64::NAN, |phase| percentile(&samples(phase, key), 0.5))
    }
}

fn run_parent(sizes: Sizes) {
    let exe = std::env::current_exe().expect("the path of this benchmark");
    let started = Instant::now();
    let mut results = Vec::new();
    let total = GRAPHS.len() * IMPLEMENTATIONS.len();
    for graph in GRAPHS {
        for implementation in IMPLEMENTATIONS {
            eprintln!(
                "[{}/{total}] {implementation} on {} ({:.0} s elapsed)",
                results.len() + 1,
                graph_label(graph, &sizes),
                started.elapsed().as_secs_f64()
            );
            let mut command = Command::new(&exe);
            command.args(["--case", graph, implementation]);
            if sizes.quick {
                command.arg("--quick");
            }
            let output = command
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .expect("the benchmark can run itself");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout
                .lines()
                .find_map(|line| line.strip_prefix(RESULT_PREFIX));
            let json = match (output.status.success(), line) {
                (true, Some(line)) => serde_json::from_str(line).expect("a JSON result line"),
                _ => panic!(
                    "the case {implementation} / {graph} failed ({}); its stdout:\n{stdout}",
                    output.status
                ),
            };
            results.push(CaseResult {
                graph,
                implementation,
                json,
            });
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    check_agreement(&results);
    print_tables(&results, &sizes, started.elapsed().as_secs_f64());
}

/// Every implementation must compute the same closure after the load and after every update
/// (over the prefix of the sequence they all replayed): otherwise the timings mean nothing.
fn check_agreement(results: &[CaseResult]) {
    for graph in GRAPHS {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.graph == graph).collect();
        let reference = cases[0];
        for case in &cases[1..] {
            assert_eq!(
                case.json["path_len"], reference.json["path_len"],
                "{graph}: {} and {} disagree on the closure after the load",
                case.implementation, reference.implementation
            );
            for phase in reference.json["phases"].as_array().into_iter().flatten() {
                let name = phase["name"].as_str().unwrap_or_default();
                let (Some(ours), Some(theirs)) = (
                    case.phase(name).and_then(|p| p["sizes"].as_array()),
                    phase["sizes"].as_array(),
                ) else {
                    continue;
                };
                let common = ours.len().min(theirs.len());
                assert_eq!(
                    ours[..common],
                    theirs[..common],
                    "{graph} ({name}): {} and {} disagree on the closure after an update",
                    case.implementation,
                    reference.implementation
                );
            }
        }
    }
}

fn print_tables(results: &[CaseResult], sizes: &Sizes, seconds: f64) {
    println!(
        "\n## Transitive closure{} ({seconds:.0} s)\n",
        if sizes.quick { ", quick run" } else { "" }
    );
    println!(
        "| graph | implementation | load (s) | updates | insert p50 (ms) | insert p99 (ms) \
         | retract p50 (ms) | retract p99 (ms) | peak memory (MB) |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|");
    for result in results {
        for phase in result.json["phases"].as_array().into_iter().flatten() {
            let name = phase["name"].as_str().unwrap_or_default();
            let (inserts, retracts) = (samples(phase, "inserts_ms"), samples(phase, "retracts_ms"));
            let graph = match name {
                "random" => graph_label(result.graph, sizes),
                _ => format!("{} ({name} cuts)", graph_label(result.graph, sizes)),
            };
            let updates = if name == "random" {
                format!("{} + {}", inserts.len(), retracts.len())
            } else {
                format!("{} cuts + {} restores", retracts.len(), inserts.len())
            };
            println!(
                "| {graph} | {} | {:.3} | {updates} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
                result.implementation,
                result.f64("load_s"),
                percentile(&inserts, 0.5),
                percentile(&inserts, 0.99),
                percentile(&retracts, 0.5),
                percentile(&retracts, 0.99),
                result.f64("peak_mb"),
            );
        }
    }
    println!(
        "\nPercentiles are nearest-rank: with 5 samples p99 is the maximum. On the chain, a \
         retraction cuts the edge (i, i+1) and the following insertion restores it; \"tail\" \
         cuts are the last {} edges, \"middle\" cuts {} edges around the middle (each removes \
         about half of the closure). crepe replays only the first {} insert/retract pairs \
         on the {}-edge graph. Load and peak memory are per process, so the two chain rows of \
         an implementation repeat them.",
        sizes.chain_tail, sizes.chain_middle, sizes.crepe_dense_updates, sizes.dense_edges
    );

    println!("\n| target | graph | ratio | goal | verdict |");
    println!("|---|---|---:|---|---|");
    let find = |graph: &str, implementation: &str| {
        results
            .iter()
            .find(|r| r.graph == graph && r.implementation == implementation)
    };
    let verdict = |ratio: f64, goal: f64, at_most: bool| {
        let met = if at_most {
            ratio <= goal
        } else {
            ratio >= goal
        };
        if met { "met" } else { "**missed**" }
    };
    for graph in GRAPHS {
        let (Some(vigil), Some(typed)) = (find(graph, "vigil"), find(graph, "typed-dd")) else {
            continue;
        };
        let label = graph_label(graph, sizes);
        let mut rows = vec![(
            "load, Vigil / typed".to_string(),
            vigil.f64("load_s") / typed.f64("load_s"),
            1.3,
            true,
        )];
        for phase in vigil.json["phases"].as_array().into_iter().flatten() {
            let name = phase["name"].as_str().unwrap_or_default();
            let which = if name == "random" {
                String::new()
            } else {
                format!(" ({name} cuts)")
            };
            for (key, what) in [("inserts_ms", "insert"), ("retracts_ms", "retract")] {
                rows.push((
                    format!("{what} p50{which}, Vigil / typed"),
                    vigil.p50(name, key) / typed.p50(name, key),
                    1.3,
                    true,
                ));
            }
        }
        rows.push((
            "peak memory, Vigil / typed".to_string(),
            vigil.f64("peak_mb") / typed.f64("peak_mb"),
            1.5,
            true,
        ));
        if graph == "random-sparse"
            && let Some(crepe) = find(graph, "crepe")
        {
            for (key, what) in [("inserts_ms", "insert"), ("retracts_ms", "retract")] {
                rows.push((
                    format!("{what} p50, crepe / Vigil"),
                    crepe.p50("random", key) / vigil.p50("random", key),
                    10.0,
                    false,
                ));
            }
        }
        for (target, ratio, goal, at_most) in rows {
            println!(
                "| {target} | {label} | {ratio:.2}x | {} {goal}x | {} |",
                if at_most { "≤" } else { "≥" },
                verdict(ratio, goal, at_most)
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without it,
    // and then a smoke run is what is wanted (as criterion does).
    let under_cargo_test = !args.iter().any(|arg| arg == "--bench" || arg == "--case");
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|value| value == "1")
        || under_cargo_test;
    let sizes = Sizes::new(quick);
    match args.iter().position(|arg| arg == "--case") {
        Some(at) => {
            let graph = args.get(at + 1).expect("--case GRAPH IMPLEMENTATION");
            let implementation = args.get(at + 2).expect("--case GRAPH IMPLEMENTATION");
            run_child(graph, implementation, sizes);
        }
        // Anything else (cargo passes `--bench`) is ignored.
        None => run_parent(sizes),
    }
}
