//! crepe as a second, independent oracle of the incremental engine.
//!
//! The engine's own oracle (`engine/tests/oracle.rs`) is the reference evaluator, which shares
//! the engine's front end: a mistake in parsing or checking would fool both. Here the same
//! programs are also written by hand as crepe programs (Rust structs and the `crepe!` macro,
//! compiled by rustc), evaluated on random fact sets from a seeded generator, and compared as
//! sets with what the engine derives from the Soufflé text. Then random insert/retract
//! transactions are committed to the engine; after each commit, every relation is compared
//! with crepe recomputing from scratch on the current facts, and the change set the commit
//! returned with the difference between crepe's results before and after.
//!
//! Two programs: transitive closure with a negation of the recursive relation, and a
//! placement-like join with comparisons (`<=`, `<`, `!=`), arithmetic and negation.

use std::collections::{BTreeMap, BTreeSet};
use vigil_engine::{ChangeSet, Engine, Options, Value};

/// SplitMix64: a tiny seeded generator, so that every failure replays.
struct Random(u64);

impl Random {
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

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A relation's tuples as the engine's values, so that both sides compare as the same type.
type Tuples = BTreeSet<Vec<Value>>;

/// Every relation's tuples, by name.
type Database = BTreeMap<&'static str, Tuples>;

fn sym(text: &str) -> Value {
    Value::symbol(text)
}

fn num(n: i64) -> Value {
    Value::Number(n)
}

fn text(value: &Value) -> &str {
    match value {
        Value::Symbol(text) => text,
        other => panic!("expected a symbol, found {other:?}"),
    }
}

fn number(value: &Value) -> i64 {
    match value {
        Value::Number(n) => *n,
        other => panic!("expected a number, found {other:?}"),
    }
}

/// A program under test: its Soufflé text, its crepe twin, and random facts for it.
trait Case {
    const NAME: &'static str;
    const PROGRAM: &'static str;
    /// The writable relations.
    const INPUTS: &'static [&'static str];
    /// Every relation compared.
    const RELATIONS: &'static [&'static str];
    /// The relations crepe derives, and the inputs, from the input facts.
    fn crepe(facts: &Database) -> Database;
    /// A random tuple of input relation `relation`.
    fn random_tuple(random: &mut Random, relation: &str) -> Vec<Value>;
    /// A random set of input facts.
    fn random_facts(random: &mut Random) -> Database;
}

/// Reads every compared relation from the engine.
fn engine_database<C: Case>(engine: &Engine) -> Database {
    C::RELATIONS
        .iter()
        .map(|&relation| {
            let tuples = engine
                .read(relation, &[])
                .unwrap_or_else(|error| panic!("reading `{relation}`: {error}"));
            (relation, tuples.into_iter().collect())
        })
        .collect()
}

fn assert_same(context: &str, engine: &Database, crepe: &Database) {
    for (relation, expected) in crepe {
        let actual = &engine[relation];
        if actual != expected {
            let missing: Vec<_> = expected.difference(actual).collect();
            let extra: Vec<_> = actual.difference(expected).collect();
            panic!(
                "{context}: `{relation}` differs from crepe's ({} vs {} tuples)\n\
                 missing from the engine: {missing:?}\nonly in the engine: {extra:?}",
                actual.len(),
                expected.len()
            );
        }
    }
}

/// The change set of a commit must be exactly the difference between crepe's results before
/// and after it.
fn assert_changes(context: &str, changes: &ChangeSet, before: &Database, after: &Database) {
    for (relation, now) in after {
        let was = &before[relation];
        let mut expected: Vec<(Vec<Value>, isize)> = now
            .difference(was)
            .map(|tuple| (tuple.clone(), 1))
            .chain(was.difference(now).map(|tuple| (tuple.clone(), -1)))
            .collect();
        expected.sort();
        let mut actual = changes.of(relation).to_vec();
        actual.sort();
        assert_eq!(
            actual, expected,
            "{context}: the change set of `{relation}` is not crepe's difference"
        );
    }
}

/// Random fact sets, each evaluated by both; then random transactions on the engine, each
/// compared with crepe from scratch.
fn check<C: Case>(seeds: std::ops::Range<u64>, transactions: usize) {
    let program = vigil_engine::compile_source(C::NAME, C::PROGRAM)
        .unwrap_or_else(|diagnostics| panic!("{} does not compile:\n{diagnostics}", C::NAME));
    // How many of the compared states had tuples in each relation: a relation that is always
    // empty would be compared vacuously.
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut count = |database: &Database| {
        for (relation, tuples) in database {
            *seen.entry(relation).or_default() += usize::from(!tuples.is_empty());
        }
    };
    for seed in seeds {
        let mut random = Random(seed);
        let mut facts = C::random_facts(&mut random);
        let mut engine = Engine::new(program.clone(), Options { workers: 1 })
            .unwrap_or_else(|error| panic!("the engine does not start: {error}"));
        let mut transaction = engine.transaction();
        for (relation, tuples) in &facts {
            for tuple in tuples {
                transaction
                    .insert(relation, tuple)
                    .unwrap_or_else(|error| panic!("inserting into `{relation}`: {error}"));
            }
        }
        transaction.commit().expect("the facts commit");
        let mut expected = C::crepe(&facts);
        count(&expected);
        let context = format!("{}, seed {seed}, initial facts", C::NAME);
        assert_same(&context, &engine_database::<C>(&engine), &expected);

        for step in 1..=transactions {
            // A few inserts of random (possibly present) tuples, and a few retractions of
            // present (and sometimes absent) ones; the last write to a tuple wins.
            let mut writes: BTreeMap<(&'static str, Vec<Value>), bool> = BTreeMap::new();
            for _ in 0..1 + random.below(4) {
                let relation = C::INPUTS[random.below(C::INPUTS.len() as u64) as usize];
                let present: Vec<&Vec<Value>> = facts[relation].iter().collect();
                let tuple = if !present.is_empty() && random.chance(80) {
                    present[random.below(present.len() as u64) as usize].clone()
                } else {
                    C::random_tuple(&mut random, relation)
                };
                writes.insert((relation, tuple), false);
            }
            for _ in 0..random.below(4) {
                let relation = C::INPUTS[random.below(C::INPUTS.len() as u64) as usize];
                writes.insert((relation, C::random_tuple(&mut random, relation)), true);
            }
            let mut transaction = engine.transaction();
            for ((relation, tuple), &insert) in &writes {
                let result = if insert {
                    transaction.insert(relation, tuple)
                } else {
                    transaction.retract(relation, tuple)
                };
                result.unwrap_or_else(|error| panic!("writing `{relation}`: {error}"));
            }
            let changes = transaction.commit().expect("the transaction commits");
            for ((relation, tuple), insert) in writes {
                let tuples = facts.get_mut(relation).expect("an input relation");
                if insert {
                    tuples.insert(tuple);
                } else {
                    tuples.remove(&tuple);
                }
            }
            let before = std::mem::replace(&mut expected, C::crepe(&facts));
            count(&expected);
            let context = format!("{}, seed {seed}, after transaction {step}", C::NAME);
            assert_same(&context, &engine_database::<C>(&engine), &expected);
            assert_changes(&context, &changes, &before, &expected);
        }
    }
    for relation in C::RELATIONS {
        assert!(
            seen.get(relation).is_some_and(|&states| states > 0),
            "{}: `{relation}` was empty in every state; the random facts need tuning",
            C::NAME
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Transitive closure, and its complement by negation

mod closure {
    use super::{Database, sym, text};

    crepe::crepe! {
        @input
        pub struct Node<'a>(&'a str);
        @input
        pub struct Edge<'a>(&'a str, &'a str);

        @output
        pub struct Path<'a>(&'a str, &'a str);
        @output
        pub struct Unreachable<'a>(&'a str, &'a str);

        Path(x, y) <- Edge(x, y);
        Path(x, z) <- Path(x, y), Edge(y, z);
        Unreachable(x, y) <- Node(x), Node(y), !Path(x, y);
    }

    pub fn run(facts: &Database) -> Database {
        let mut runtime = Crepe::new();
        runtime.extend(facts["node"].iter().map(|t| Node(text(&t[0]))));
        runtime.extend(facts["edge"].iter().map(|t| Edge(text(&t[0]), text(&t[1]))));
        let (path, unreachable) = runtime.run();
        let mut database = facts.clone();
        database.insert(
            "path",
            path.into_iter()
                .map(|Path(x, y)| vec![sym(x), sym(y)])
                .collect(),
        );
        database.insert(
            "unreachable",
            unreachable
                .into_iter()
                .map(|Unreachable(x, y)| vec![sym(x), sym(y)])
                .collect(),
        );
        database
    }
}

struct Closure;

impl Closure {
    const NODES: u64 = 9;

    fn node(random: &mut Random) -> Value {
        sym(&format!("n{}", random.below(Self::NODES)))
    }
}

impl Case for Closure {
    const NAME: &'static str = "closure.dl";
    const PROGRAM: &'static str = r#"
.decl node(n: symbol)
.input node
.decl edge(x: symbol, y: symbol)
.input edge

.decl path(x: symbol, y: symbol)
path(x, y) :- edge(x, y).
path(x, z) :- path(x, y), edge(y, z).

.decl unreachable(x: symbol, y: symbol)
unreachable(x, y) :- node(x), node(y), !path(x, y).
.output path
.output unreachable
"#;
    const INPUTS: &'static [&'static str] = &["node", "edge"];
    const RELATIONS: &'static [&'static str] = &["node", "edge", "path", "unreachable"];

    fn crepe(facts: &Database) -> Database {
        closure::run(facts)
    }

    fn random_tuple(random: &mut Random, relation: &str) -> Vec<Value> {
        match relation {
            "node" => vec![Self::node(random)],
            _ => vec![Self::node(random), Self::node(random)],
        }
    }

    fn random_facts(random: &mut Random) -> Database {
        // Some nodes are missing from `node` and some edges leave the node set: the negation
        // must only range over `node`.
        let nodes = (0..Self::NODES)
            .filter(|_| random.chance(80))
            .map(|n| vec![sym(&format!("n{n}"))])
            .collect();
        let edge_count = random.below(2 * Self::NODES);
        let edges = (0..edge_count)
            .map(|_| Self::random_tuple(random, "edge"))
            .collect();
        BTreeMap::from([("node", nodes), ("edge", edges)])
    }
}

#[test]
fn closure_with_negation_agrees_with_crepe() {
    check::<Closure>(0..30, 12);
}

// ---------------------------------------------------------------------------------------------
// Placement: which workloads fit on which machines

mod placement {
    use super::{Database, num, number, sym, text};

    crepe::crepe! {
        @input
        pub struct Machine<'a>(&'a str, i64, i64);
        @input
        pub struct Workload<'a>(&'a str, i64, i64);
        @input
        pub struct Avoid<'a>(&'a str, &'a str);

        @output
        pub struct Fits<'a>(&'a str, &'a str);
        @output
        pub struct Roomier<'a>(&'a str, &'a str);
        @output
        pub struct Best<'a>(&'a str, &'a str);
        @output
        pub struct Contested<'a>(&'a str);
        @output
        pub struct Headroom<'a>(&'a str, &'a str, i64);
        @output
        pub struct Tight<'a>(&'a str, &'a str);

        Fits(w, m) <- Workload(w, r, v), Machine(m, mr, mv), (r <= mr), (v <= mv), !Avoid(w, m);
        Roomier(w, m) <-
            Fits(w, m), Fits(w, o), Machine(m, mr, _), Machine(o, omr, _), (m != o), (mr < omr);
        Best(w, m) <- Fits(w, m), !Roomier(w, m);
        Contested(m) <- Best(w1, m), Best(w2, m), (w1 != w2);
        Headroom(w, m, d) <- Fits(w, m), Workload(w, r, _), Machine(m, mr, _), let d = mr - r;
        Tight(w, m) <- Headroom(w, m, d), (d < 4), (d != 0);
    }

    pub fn run(facts: &Database) -> Database {
        let mut runtime = Crepe::new();
        runtime.extend(
            facts["machine"]
                .iter()
                .map(|t| Machine(text(&t[0]), number(&t[1]), number(&t[2]))),
        );
        runtime.extend(
            facts["workload"]
                .iter()
                .map(|t| Workload(text(&t[0]), number(&t[1]), number(&t[2]))),
        );
        runtime.extend(
            facts["avoid"]
                .iter()
                .map(|t| Avoid(text(&t[0]), text(&t[1]))),
        );
        let (fits, roomier, best, contested, headroom, tight) = runtime.run();
        let mut database = facts.clone();
        database.insert(
            "fits",
            fits.into_iter()
                .map(|Fits(w, m)| vec![sym(w), sym(m)])
                .collect(),
        );
        database.insert(
            "roomier",
            roomier
                .into_iter()
                .map(|Roomier(w, m)| vec![sym(w), sym(m)])
                .collect(),
        );
        database.insert(
            "best",
            best.into_iter()
                .map(|Best(w, m)| vec![sym(w), sym(m)])
                .collect(),
        );
        database.insert(
            "contested",
            contested
                .into_iter()
                .map(|Contested(m)| vec![sym(m)])
                .collect(),
        );
        database.insert(
            "headroom",
            headroom
                .into_iter()
                .map(|Headroom(w, m, d)| vec![sym(w), sym(m), num(d)])
                .collect(),
        );
        database.insert(
            "tight",
            tight
                .into_iter()
                .map(|Tight(w, m)| vec![sym(w), sym(m)])
                .collect(),
        );
        database
    }
}

struct Placement;

impl Placement {
    const MACHINES: u64 = 5;
    const WORKLOADS: u64 = 6;

    fn machine(random: &mut Random) -> Value {
        sym(&format!("host-{}", random.below(Self::MACHINES)))
    }

    fn workload(random: &mut Random) -> Value {
        sym(&format!("job{}", random.below(Self::WORKLOADS)))
    }
}

impl Case for Placement {
    const NAME: &'static str = "placement.dl";
    const PROGRAM: &'static str = r#"
.decl machine(name: symbol, ram: number, vram: number)
.input machine
.decl workload(w: symbol, ram_needed: number, vram_needed: number)
.input workload
.decl avoid(w: symbol, m: symbol)
.input avoid

.decl fits(w: symbol, m: symbol)
fits(w, m) :- workload(w, r, v), machine(m, mr, mv), r <= mr, v <= mv, !avoid(w, m).

// Another machine that fits has strictly more memory.
.decl roomier(w: symbol, m: symbol)
roomier(w, m) :- fits(w, m), fits(w, o), machine(m, mr, _), machine(o, omr, _), m != o, mr < omr.

.decl best(w: symbol, m: symbol)
best(w, m) :- fits(w, m), !roomier(w, m).

.decl contested(m: symbol)
contested(m) :- best(w1, m), best(w2, m), w1 != w2.

.decl headroom(w: symbol, m: symbol, d: number)
headroom(w, m, d) :- fits(w, m), workload(w, r, _), machine(m, mr, _), d = mr - r.

.decl tight(w: symbol, m: symbol)
tight(w, m) :- headroom(w, m, d), d < 4, d != 0.

.output fits
.output best
.output contested
.output headroom
.output tight
"#;
    const INPUTS: &'static [&'static str] = &["machine", "workload", "avoid"];
    const RELATIONS: &'static [&'static str] = &[
        "machine",
        "workload",
        "avoid",
        "fits",
        "roomier",
        "best",
        "contested",
        "headroom",
        "tight",
    ];

    fn crepe(facts: &Database) -> Database {
        placement::run(facts)
    }

    fn random_tuple(random: &mut Random, relation: &str) -> Vec<Value> {
        // Small ranges, so that equal sizes (the edges of `<=` and `<`) are common.
        let ram = |random: &mut Random| num(2 * random.below(8) as i64);
        let vram = |random: &mut Random| num(random.below(4) as i64);
        match relation {
            "machine" => vec![Self::machine(random), ram(random), vram(random)],
            "workload" => vec![Self::workload(random), ram(random), vram(random)],
            _ => vec![Self::workload(random), Self::machine(random)],
        }
    }

    fn random_facts(random: &mut Random) -> Database {
        let mut database = Database::new();
        for (relation, count) in [("machine", 6), ("workload", 7), ("avoid", 3)] {
            let tuples = (0..random.below(count + 1))
                .map(|_| Self::random_tuple(random, relation))
                .collect();
            database.insert(relation, tuples);
        }
        database
    }
}

#[test]
fn placement_with_comparisons_agrees_with_crepe() {
    check::<Placement>(100..130, 12);
}
