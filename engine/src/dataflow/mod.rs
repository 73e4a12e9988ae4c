//! Incremental evaluation on differential dataflow.
//!
//! [`plan`] turns the checked program into pipelines over row positions, [`build`] turns those
//! into a differential dataflow, and [`runtime`] runs it on timely workers. Rows are fixed-size
//! arrays of words ([`row`]); the narrowest array that fits the plan is chosen when the program
//! is loaded, and [`Dataflow`] hides which one behind one interface.

pub mod build;
pub mod distinct;
pub mod eval;
pub mod plan;
pub mod row;
pub mod runtime;

use crate::ir::{self, RelationId};
use crate::value::{Interner, Word};
use plan::Plan;
use row::Row;
use runtime::{Failure, Runtime};
use std::sync::Arc;

/// Changes of one transaction, as words: relation, tuple, +1 or -1.
pub type WordUpdates = Vec<(RelationId, Vec<Word>, isize)>;

/// A running dataflow, whatever its row type.
pub trait Dataflow: Send {
    /// Applies net input updates at the next time, and calls `change` with every relation's
    /// changes (relation, tuple, +1 or -1).
    fn apply(
        &mut self,
        updates: WordUpdates,
        change: &mut dyn FnMut(RelationId, &[Word], isize),
    ) -> Result<(), Failure>;
    /// Calls `visit` on each tuple of `relation` that matches `pattern` (`None` matches anything).
    fn scan(&self, relation: RelationId, pattern: &[Option<Word>], visit: &mut dyn FnMut(&[Word]));
    fn contains(&self, relation: RelationId, tuple: &[Word]) -> bool;
    fn input_contains(&self, relation: RelationId, tuple: &[Word]) -> bool;
    /// Calls `visit` on each tuple written into the input relation `relation` (for a relation
    /// that rules also derive, only the written ones).
    fn scan_inputs(&self, relation: RelationId, visit: &mut dyn FnMut(&[Word]));
    fn len(&self, relation: RelationId) -> usize;
    /// The last completed time.
    fn time(&self) -> u64;
}

struct Typed<R: Row> {
    runtime: Runtime<R>,
    arities: Vec<usize>,
}

/// The words of a row of a relation of `arity` columns (a `Vec` row drops trailing zeros).
fn tuple_words<'a, R: Row>(row: &'a R, arity: usize, buffer: &'a mut Vec<Word>) -> &'a [Word] {
    let words = row.words();
    if words.len() >= arity {
        &words[..arity]
    } else {
        buffer.clear();
        buffer.extend_from_slice(words);
        buffer.resize(arity, 0);
        buffer
    }
}

fn to_words<R: Row>(updates: runtime::Updates<R>, arities: &[usize]) -> WordUpdates {
    let mut buffer = Vec::new();
    updates
        .into_iter()
        .map(|(relation, row, diff)| {
            (
                relation,
                tuple_words(&row, arities[relation], &mut buffer).to_vec(),
                diff,
            )
        })
        .collect()
}

fn matches(words: &[Word], pattern: &[Option<Word>]) -> bool {
    pattern
        .iter()
        .enumerate()
        .all(|(i, p)| p.is_none_or(|p| words.get(i).copied().unwrap_or(0) == p))
}

impl<R: Row> Dataflow for Typed<R> {
    fn apply(
        &mut self,
        updates: WordUpdates,
        change: &mut dyn FnMut(RelationId, &[Word], isize),
    ) -> Result<(), Failure> {
        let updates = updates
            .into_iter()
            .map(|(relation, tuple, diff)| (relation, R::from_words(&tuple), diff))
            .collect();
        let changes = self.runtime.apply(updates)?;
        let mut buffer = Vec::new();
        for (relation, row, diff) in &changes {
            change(
                *relation,
                tuple_words(row, self.arities[*relation], &mut buffer),
                *diff,
            );
        }
        Ok(())
    }

    fn scan(&self, relation: RelationId, pattern: &[Option<Word>], visit: &mut dyn FnMut(&[Word])) {
        let arity = self.arities[relation];
        let mut buffer = Vec::new();
        for row in self.runtime.contents(relation) {
            let words = tuple_words(row, arity, &mut buffer);
            if matches(words, pattern) {
                visit(words);
            }
        }
    }

    fn contains(&self, relation: RelationId, tuple: &[Word]) -> bool {
        self.runtime
            .contents(relation)
            .contains(&R::from_words(tuple))
    }

    fn input_contains(&self, relation: RelationId, tuple: &[Word]) -> bool {
        self.runtime
            .inputs(relation)
            .contains(&R::from_words(tuple))
    }

    fn scan_inputs(&self, relation: RelationId, visit: &mut dyn FnMut(&[Word])) {
        let arity = self.arities[relation];
        let mut buffer = Vec::new();
        for row in self.runtime.inputs(relation) {
            visit(tuple_words(row, arity, &mut buffer));
        }
    }

    fn len(&self, relation: RelationId) -> usize {
        self.runtime.contents(relation).len()
    }

    fn time(&self) -> u64 {
        self.runtime.time()
    }
}

/// Starts the dataflow of a program on `workers` threads, with the narrowest row type that
/// fits its plan. Returns it and the changes of time 0 (the program's facts).
pub fn start(
    program: Arc<ir::Program>,
    interner: Interner,
    workers: usize,
) -> Result<(Box<dyn Dataflow>, WordUpdates), Failure> {
    let plan = Arc::new(plan::plan(&program, &interner)?);
    let arities: Vec<usize> = program.relations.iter().map(ir::Relation::arity).collect();
    fn typed<R: Row>(
        program: Arc<ir::Program>,
        plan: Arc<Plan>,
        interner: Interner,
        workers: usize,
        arities: Vec<usize>,
    ) -> Result<(Box<dyn Dataflow>, WordUpdates), Failure> {
        let (runtime, changes) = Runtime::<R>::start(program, plan, interner, workers)?;
        let changes = to_words(changes, &arities);
        Ok((Box::new(Typed { runtime, arities }), changes))
    }
    match plan.width {
        0..=2 => typed::<[Word; 2]>(program, plan, interner, workers, arities),
        3..=4 => typed::<[Word; 4]>(program, plan, interner, workers, arities),
        5..=8 => typed::<[Word; 8]>(program, plan, interner, workers, arities),
        _ => typed::<Vec<Word>>(program, plan, interner, workers, arities),
    }
}

/// Evaluates a program once (see [`runtime::run_batch`]), choosing the row type from the plan.
/// Returns the tuples of each wanted relation, as words, at the process of worker 0.
pub fn run_batch(
    program: Arc<ir::Program>,
    interner: Interner,
    config: timely::Config,
    wanted: Vec<RelationId>,
    load: runtime::Loader,
) -> Result<runtime::BatchOutput<Vec<Word>>, Failure> {
    let plan = Arc::new(plan::plan(&program, &interner)?);
    let arities: Vec<usize> = program.relations.iter().map(ir::Relation::arity).collect();
    fn typed<R: Row>(
        program: Arc<ir::Program>,
        plan: Arc<Plan>,
        interner: Interner,
        config: timely::Config,
        wanted: Vec<RelationId>,
        load: runtime::Loader,
        arities: &[usize],
    ) -> Result<runtime::BatchOutput<Vec<Word>>, Failure> {
        let result = runtime::run_batch::<R>(program, plan, interner, config, wanted, load)?;
        Ok(result.map(|relations| {
            relations
                .into_iter()
                .map(|(relation, rows)| {
                    let arity = arities[relation];
                    let tuples = rows
                        .into_iter()
                        .map(|row| {
                            let mut tuple = row.words()[..arity.min(row.words().len())].to_vec();
                            tuple.resize(arity, 0);
                            tuple
                        })
                        .collect();
                    (relation, tuples)
                })
                .collect()
        }))
    }
    match plan.width {
        0..=2 => typed::<[Word; 2]>(program, plan, interner, config, wanted, load, &arities),
        3..=4 => typed::<[Word; 4]>(program, plan, interner, config, wanted, load, &arities),
        5..=8 => typed::<[Word; 8]>(program, plan, interner, config, wanted, load, &arities),
        _ => typed::<Vec<Word>>(program, plan, interner, config, wanted, load, &arities),
    }
}
