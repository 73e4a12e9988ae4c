//! Property tests: random programs and random transactions, with the incremental engine
//! compared after every commit with the reference evaluator recomputing from scratch.
//!
//! A program is a random selection of rule templates over two input relations (`e`, binary,
//! and `v`, unary) and three derived ones at increasing strata (`a`, `b`, `c`), of which `b`
//! is written too. The templates
//! cover joins, recursion (linear and non-linear, and mutual through `a` and `b`'s lower
//! strata), negation, every aggregate (grouped and global), comparisons, arithmetic and
//! `range`; a template may only negate or aggregate a relation of a lower stratum, so every
//! selection is stratified.

use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use vigil_engine::{Engine, Options, Value, reference};

const DECLARATIONS: &str = "
.decl e(x: number, y: number)
.decl v(x: number)
.input e
.input v
.decl a(x: number, y: number)
.decl b(x: number)
.input b
.decl c(x: number, y: number)
";

/// (head relation, rule text). Each derived relation needs at least one rule.
const TEMPLATES: &[(&str, &str)] = &[
    ("a", "a(x, y) :- e(x, y)."),
    ("a", "a(x, z) :- a(x, y), e(y, z)."),
    ("a", "a(x, z) :- a(x, y), a(y, z)."),
    ("a", "a(x, y) :- e(y, x), x < y."),
    ("a", "a(x, x) :- v(x), x > 2."),
    ("a", "a(x, y) :- v(x), y = x + 1, y < 6."),
    ("a", "a(x, y) :- e(x, y), e(y, x)."),
    ("b", "b(x) :- v(x), !a(x, x)."),
    ("b", "b(x) :- a(x, _), !v(x)."),
    ("b", "b(n) :- n = count : { e(_, _) }."),
    ("b", "b(x) :- a(x, y), x + y = 4."),
    ("b", "b(x) :- v(x), x = range(0, 3)."),
    ("b", "b(s) :- s = sum y : { a(_, y) }."),
    ("b", "b(x) :- e(x, _), !e(_, x)."),
    ("c", "c(x, n) :- v(x), n = count : { a(x, _) }."),
    ("c", "c(x, s) :- v(x), s = sum y : { e(x, y) }."),
    ("c", "c(x, m) :- b(x), m = max y : { a(x, y) }."),
    ("c", "c(x, m) :- b(x), m = min y : { e(y, x) }."),
    ("c", "c(y, x) :- c(x, y), x < y."),
    ("c", "c(x, y) :- e(x, y), !b(x)."),
    ("c", "c(x, y) :- b(x), b(y), x != y, !a(x, y)."),
    (
        "c",
        "c(x, m) :- v(x), m = to_number(mean to_float(y) : { e(x, y) } * 2.0).",
    ),
    ("c", "c(x, y) :- a(x, y), b(x) ; e(x, y), b(y)."),
];

fn program_text(selection: &[bool]) -> String {
    let mut text = DECLARATIONS.to_string();
    for (index, (_, rule)) in TEMPLATES.iter().enumerate() {
        if selection[index] {
            text.push_str(rule);
            text.push('\n');
        }
    }
    // Every derived relation gets at least one rule, so the program is complete.
    for head in ["a", "b", "c"] {
        let has_rule = TEMPLATES
            .iter()
            .zip(selection)
            .any(|((h, _), chosen)| *h == head && *chosen);
        if !has_rule {
            let rule = TEMPLATES.iter().find(|(h, _)| *h == head).unwrap().1;
            text.push_str(rule);
            text.push('\n');
        }
    }
    text
}

#[derive(Clone, Debug)]
enum Change {
    Insert(&'static str, Vec<i64>),
    Retract(&'static str, Vec<i64>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0i64..6, 0i64..6).prop_map(|(x, y)| Change::Insert("e", vec![x, y])),
        (0i64..6, 0i64..6).prop_map(|(x, y)| Change::Retract("e", vec![x, y])),
        (0i64..6).prop_map(|x| Change::Insert("v", vec![x])),
        (0i64..6).prop_map(|x| Change::Retract("v", vec![x])),
        (0i64..6).prop_map(|x| Change::Insert("b", vec![x])),
        (0i64..6).prop_map(|x| Change::Retract("b", vec![x])),
    ]
}

fn check(
    selection: &[bool],
    transactions: &[Vec<Change>],
    workers: usize,
) -> Result<(), TestCaseError> {
    let text = program_text(selection);
    let program = vigil_engine::compile_source("random.dl", &text)
        .map_err(|d| TestCaseError::fail(format!("{d}\n{text}")))?;
    let relations: Vec<String> = program.relations.iter().map(|r| r.name.clone()).collect();
    let mut engine = Engine::new(program.clone(), Options { workers })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut inputs: HashMap<usize, reference::Tuples> = HashMap::new();
    for (step, transaction) in transactions.iter().enumerate() {
        let mut tx = engine.transaction();
        for change in transaction {
            let (relation, values, insert) = match change {
                Change::Insert(r, v) => (*r, v, true),
                Change::Retract(r, v) => (*r, v, false),
            };
            let tuple: Vec<Value> = values.iter().map(|v| Value::Number(*v)).collect();
            let id = program.relation(relation).unwrap();
            if insert {
                tx.insert(relation, &tuple).unwrap();
                inputs.entry(id).or_default().insert(tuple);
            } else {
                tx.retract(relation, &tuple).unwrap();
                inputs.entry(id).or_default().remove(&tuple);
            }
        }
        tx.commit()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = reference::evaluate(&program, &inputs);
        for (id, name) in relations.iter().enumerate() {
            let actual: BTreeSet<Vec<Value>> =
                engine.read(name, &[]).unwrap().into_iter().collect();
            prop_assert_eq!(
                &actual,
                &expected[id],
                "relation `{}` after transaction {} with {} worker(s)\nprogram:\n{}",
                name,
                step,
                workers,
                text
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_reference_after_every_commit(
        selection in proptest::collection::vec(any::<bool>(), TEMPLATES.len()),
        transactions in proptest::collection::vec(proptest::collection::vec(change(), 1..8), 1..6),
    ) {
        check(&selection, &transactions, 1)?;
    }

    #[test]
    fn two_workers_match_the_reference_after_every_commit(
        selection in proptest::collection::vec(any::<bool>(), TEMPLATES.len()),
        transactions in proptest::collection::vec(proptest::collection::vec(change(), 1..8), 1..5),
    ) {
        check(&selection, &transactions, 2)?;
    }
}
