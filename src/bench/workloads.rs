//! What `vigil bench` measures: the houses and the classic programs, their sizes, and the
//! updates replayed on them.
//!
//! Houses are the sample house of `fixtures/homelab/` and synthetic houses from
//! [`vigil_homelab::generate()`] with N nodes, 10 N workloads and N / 10 edge nodes; their events
//! come from [`vigil_homelab::events::Events`]. The classic programs are in `fixtures/bench/`;
//! their inputs come from a seeded SplitMix64 here, so that every process builds the same ones.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vigil_homelab::facts::FactSet;

/// How much to measure: a full run, a quick one, or a smoke run (what `cargo test` runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Full,
    Quick,
    Smoke,
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Quick => "quick",
            Scale::Smoke => "smoke",
        }
    }

    pub fn parse(text: &str) -> Option<Scale> {
        [Scale::Full, Scale::Quick, Scale::Smoke]
            .into_iter()
            .find(|scale| scale.name() == text)
    }

    /// One-event transactions timed per house and implementation.
    pub fn events(self) -> usize {
        match self {
            Scale::Full => 2_000,
            Scale::Quick => 200,
            Scale::Smoke => 20,
        }
    }

    /// Batched transactions timed per house, and events in each.
    pub fn batches(self) -> (usize, usize) {
        match self {
            Scale::Full => (20, 100),
            Scale::Quick => (5, 100),
            Scale::Smoke => (2, 20),
        }
    }

    /// The size of the classic programs' inputs (nodes, variables), and the insert/retract
    /// pairs timed on them.
    pub fn classic(self) -> (u32, usize) {
        match self {
            Scale::Full => (2_000, 100),
            Scale::Quick => (200, 20),
            Scale::Smoke => (60, 3),
        }
    }

    /// Warm-up and timed one-event transactions over HTTP.
    pub fn http(self) -> (usize, usize) {
        match self {
            Scale::Full => (200, 2_000),
            Scale::Quick => (50, 300),
            Scale::Smoke => (5, 30),
        }
    }
}

/// Events applied before timing starts, for `events` timed ones: caches and allocators settle.
pub fn warm_up(events: usize) -> usize {
    (events / 20).clamp(1, 100)
}

/// A house to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Size {
    /// The sample house of `fixtures/homelab/`.
    Sample,
    /// A synthetic house of this many nodes (besides the edges).
    Nodes(usize),
}

impl Size {
    pub fn parse(text: &str) -> Result<Size> {
        let text = text.trim();
        if text == "sample" {
            return Ok(Size::Sample);
        }
        let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
        match digits.parse::<usize>() {
            Ok(nodes) if nodes >= 2 => Ok(Size::Nodes(nodes)),
            _ => bail!("`{text}` is not a house size: `sample`, or a number of nodes (2 or more)"),
        }
    }

    /// `sample`, `100`, ...: as on the command line and in the report.
    pub fn key(self) -> String {
        match self {
            Size::Sample => "sample".to_string(),
            Size::Nodes(nodes) => nodes.to_string(),
        }
    }

    /// The arguments of [`vigil_homelab::generate()`] for a synthetic house: nodes, workloads,
    /// edge nodes.
    pub fn shape(self) -> Option<(usize, usize, usize)> {
        match self {
            Size::Sample => None,
            Size::Nodes(nodes) => Some((nodes, nodes * 10, (nodes / 10).max(1))),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Sample => f.write_str("the sample house"),
            Size::Nodes(nodes) => write!(f, "{} nodes", thousands(*nodes as u64)),
        }
    }
}

/// `12,345`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Where the policy, the sample house and the benchmark programs are.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub policy: PathBuf,
    pub sample: PathBuf,
    pub programs: PathBuf,
}

impl Paths {
    pub fn under(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            policy: root.join("rules/homelab.dl"),
            sample: root.join("fixtures/homelab"),
            programs: root.join("fixtures/bench"),
        }
    }

    /// The program of the load-shedding view alone.
    pub fn shed_view(&self) -> PathBuf {
        self.programs.join("shed_view.dl")
    }
}

/// A house ready to load: its facts directory (written for a synthetic house), its facts, and
/// what it is made of.
pub struct PreparedHouse {
    pub facts_dir: PathBuf,
    /// A directory written for this run, removed when the house is dropped.
    scratch: Option<PathBuf>,
    pub facts: FactSet,
    pub nodes: usize,
    pub workloads: usize,
}

impl PreparedHouse {
    /// Generates (or reads) the house of `size`. A synthetic house's facts are written under
    /// the system's temporary directory, for the engine to load as it loads any facts.
    pub fn new(size: Size, seed: u64, paths: &Paths, write_facts: bool) -> Result<PreparedHouse> {
        match size.shape() {
            None => {
                let program = compile(&paths.policy)?;
                let facts = FactSet::from_dir(&program, &paths.sample)
                    .with_context(|| format!("cannot read {}", paths.sample.display()))?;
                Ok(PreparedHouse {
                    facts_dir: paths.sample.clone(),
                    scratch: None,
                    nodes: facts.tuples("node").len(),
                    workloads: facts.tuples("workload").len(),
                    facts,
                })
            }
            Some((nodes, workloads, edges)) => {
                let house = vigil_homelab::generate(seed, nodes, workloads, edges);
                let mut scratch = None;
                let facts_dir = std::env::temp_dir().join(format!(
                    "vigil-bench-{}-{}",
                    std::process::id(),
                    size.key()
                ));
                if write_facts {
                    house.write_facts(&facts_dir).with_context(|| {
                        format!("cannot write the house to {}", facts_dir.display())
                    })?;
                    scratch = Some(facts_dir.clone());
                }
                Ok(PreparedHouse {
                    facts_dir,
                    scratch,
                    facts: FactSet::from_house(&house),
                    nodes: house.nodes.len(),
                    workloads: house.workloads.len(),
                })
            }
        }
    }
}

impl Drop for PreparedHouse {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Compiles a program, or fails with its diagnostics.
pub fn compile(path: &Path) -> Result<vigil_engine::ir::Program> {
    vigil_engine::compile_file(path).map_err(|diagnostics| {
        anyhow::anyhow!("{} does not compile:\n{diagnostics}", path.display())
    })
}

// ---------------------------------------------------------------------------------------------
// The classic programs

/// A classic Datalog program of `fixtures/bench/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classic {
    TransitiveClosure,
    SameGeneration,
    PointsTo,
}

pub const CLASSICS: [Classic; 3] = [
    Classic::TransitiveClosure,
    Classic::SameGeneration,
    Classic::PointsTo,
];

impl Classic {
    pub fn key(self) -> &'static str {
        match self {
            Classic::TransitiveClosure => "transitive_closure",
            Classic::SameGeneration => "same_generation",
            Classic::PointsTo => "points_to",
        }
    }

    pub fn parse(text: &str) -> Option<Classic> {
        CLASSICS.into_iter().find(|classic| classic.key() == text)
    }

    pub fn file(self, paths: &Paths) -> PathBuf {
        paths.programs.join(format!("{}.dl", self.key()))
    }

    /// The output relations whose sizes are compared between implementations.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Classic::TransitiveClosure => &["path"],
            Classic::SameGeneration => &["same_generation"],
            Classic::PointsTo => &["points_to", "heap_points_to"],
        }
    }
}

/// A binary tuple of numbers: every input of the classic programs is one.
pub type Pair = (u32, u32);

/// One single-tuple update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    pub relation: &'static str,
    pub tuple: Pair,
    pub insert: bool,
}

/// A classic program's input and its updates: each inserts a new tuple, then retracts it, so
/// that every update starts from the same input.
pub struct ClassicWorkload {
    pub description: String,
    pub facts: BTreeMap<&'static str, Vec<Pair>>,
    pub updates: Vec<Update>,
}

/// SplitMix64, as in the homelab generator: the same seed, the same inputs, in every process.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u32) -> u32 {
        (self.next() % u64::from(bound.max(1))) as u32
    }
}

/// Pairs of an insert of `tuple` and its retraction.
fn insert_and_retract(relation: &'static str, tuples: Vec<Pair>) -> Vec<Update> {
    tuples
        .into_iter()
        .flat_map(|tuple| {
            [true, false].map(|insert| Update {
                relation,
                tuple,
                insert,
            })
        })
        .collect()
}

/// `count` distinct random pairs below `bound` that are not in `taken` (and not loops), added to
/// it.
fn fresh_pairs(
    random: &mut SplitMix64,
    bound: u32,
    count: usize,
    taken: &mut std::collections::HashSet<Pair>,
) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(count);
    while pairs.len() < count {
        let pair = (random.below(bound), random.below(bound));
        if pair.0 != pair.1 && taken.insert(pair) {
            pairs.push(pair);
        }
    }
    pairs
}

impl Classic {
    /// The input of size `n` and `pairs` insert/retract pairs.
    pub fn workload(self, n: u32, pairs: usize, seed: u64) -> ClassicWorkload {
        let mut random = SplitMix64(seed ^ (self as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
        let mut taken = std::collections::HashSet::new();
        match self {
            Classic::TransitiveClosure => {
                // As many edges as nodes: sparse enough that the closure stays far from n².
                let edges = fresh_pairs(&mut random, n, n as usize, &mut taken);
                let updates = fresh_pairs(&mut random, n, pairs, &mut taken);
                ClassicWorkload {
                    description: format!("random graph, {n} nodes, {n} edges"),
                    facts: BTreeMap::from([("edge", edges)]),
                    updates: insert_and_retract("edge", updates),
                }
            }
            Classic::SameGeneration => {
                // A random tree: each node's parent is one of the `window` nodes before it, so
                // that the tree is deep (many iterations) and its generations stay small.
                let window = (n / 40).max(2);
                let parents: Vec<Pair> = (1..n)
                    .map(|child| {
                        let low = child.saturating_sub(window);
                        (child, low + random.below(child - low))
                    })
                    .collect();
                // A new leaf under a random node, and its removal.
                let leaves: Vec<Pair> = (0..pairs as u32)
                    .map(|k| (n + k, random.below(n)))
                    .collect();
                ClassicWorkload {
                    description: format!("random tree, {n} nodes, parents within {window}"),
                    facts: BTreeMap::from([("parent", parents)]),
                    updates: insert_and_retract("parent", leaves),
                }
            }
            Classic::PointsTo => {
                // Variables, objects, and about as many copies as variables: near the point
                // where points-to sets start to merge.
                let objects = (n / 5).max(2);
                let statements = (n * 3 / 20).max(1) as usize;
                let new: Vec<Pair> = (0..objects).map(|o| (random.below(n), o)).collect();
                let assign = fresh_pairs(&mut random, n, n as usize, &mut taken);
                let load = fresh_pairs(&mut random, n, statements, &mut Default::default());
                let store = fresh_pairs(&mut random, n, statements, &mut Default::default());
                let updates = fresh_pairs(&mut random, n, pairs, &mut taken);
                ClassicWorkload {
                    description: format!(
                        "{n} variables, {objects} objects, {n} copies, {statements} loads, {statements} stores"
                    ),
                    facts: BTreeMap::from([
                        ("new", new),
                        ("assign", assign),
                        ("load", load),
                        ("store", store),
                    ]),
                    updates: insert_and_retract("assign", updates),
                }
            }
        }
    }
}
