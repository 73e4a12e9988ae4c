//! The implementations a benchmark case drives, behind two small interfaces: one for houses
//! ([`House`]: Vigil with the policy or with the load-shedding view alone, crepe recomputing
//! the view, the hand-written dataflow of the view, both in `vigil_homelab::baseline`), one
//! for the classic programs ([`ClassicImplementation`]: Vigil, and crepe recomputing from
//! scratch with the programs below, written by hand from `fixtures/bench/*.dl`).

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use vigil_engine::{Engine, Value};
use vigil_homelab::baseline::{ShedView, crepe::Recompute, dataflow::ShedDataflow};
use vigil_homelab::events::{self, Event};

use super::workloads::{Classic, ClassicWorkload, Pair, Update};

/// An implementation of a house's decisions, fed one event or a batch at a time.
pub trait House {
    /// Applies one event and returns the number of rows that changed (for Vigil, over every
    /// relation of the change set; for the baselines, the rows of the view after the event).
    fn apply(&mut self, event: &Event) -> Result<usize>;
    /// Whether [`House::batch`] applies several events as one transaction.
    fn has_transactions(&self) -> bool {
        false
    }
    /// Applies several events as one transaction, if the implementation has transactions
    /// (otherwise one after the other).
    fn batch(&mut self, events: &[Event]) -> Result<usize> {
        let mut changed = 0;
        for event in events {
            changed += self.apply(event)?;
        }
        Ok(changed)
    }
    /// The load-shedding view now.
    fn view(&self) -> Result<ShedView>;
}

/// Vigil's engine, with the whole policy or the view alone.
pub struct Vigil(pub Engine);

impl House for Vigil {
    fn apply(&mut self, event: &Event) -> Result<usize> {
        Ok(event.commit(&mut self.0)?.len())
    }

    fn has_transactions(&self) -> bool {
        true
    }

    fn batch(&mut self, events: &[Event]) -> Result<usize> {
        Ok(events::commit_batch(events, &mut self.0)?.len())
    }

    fn view(&self) -> Result<ShedView> {
        Ok(ShedView::of_engine(&self.0)?)
    }
}

impl House for Recompute {
    fn apply(&mut self, event: &Event) -> Result<usize> {
        Recompute::apply(self, event);
        Ok(self.rows())
    }

    fn view(&self) -> Result<ShedView> {
        Ok(Recompute::view(self))
    }
}

impl House for ShedDataflow {
    fn apply(&mut self, event: &Event) -> Result<usize> {
        ShedDataflow::apply(self, event);
        Ok(self.rows())
    }

    fn view(&self) -> Result<ShedView> {
        Ok(ShedDataflow::view(self))
    }
}

// ---------------------------------------------------------------------------------------------
// The classic programs

/// An implementation of a classic program.
pub trait ClassicImplementation {
    /// Loads the whole input at once; returns the number of output tuples.
    fn load(&mut self, workload: &ClassicWorkload) -> Result<usize>;
    /// Applies one update; returns the number of output tuples after it.
    fn update(&mut self, update: Update) -> Result<usize>;
}

fn pair_values(tuple: Pair) -> [Value; 2] {
    [
        Value::Number(i64::from(tuple.0)),
        Value::Number(i64::from(tuple.1)),
    ]
}

/// Vigil's engine running the program of `fixtures/bench/`.
pub struct VigilClassic {
    pub engine: Engine,
    pub outputs: &'static [&'static str],
}

impl VigilClassic {
    fn size(&self) -> Result<usize> {
        let mut total = 0;
        for output in self.outputs {
            total += self.engine.len(output)?;
        }
        Ok(total)
    }
}

impl ClassicImplementation for VigilClassic {
    fn load(&mut self, workload: &ClassicWorkload) -> Result<usize> {
        let mut transaction = self.engine.transaction();
        for (relation, tuples) in &workload.facts {
            for tuple in tuples {
                transaction.insert(relation, &pair_values(*tuple))?;
            }
        }
        transaction.commit()?;
        self.size()
    }

    fn update(&mut self, update: Update) -> Result<usize> {
        let mut transaction = self.engine.transaction();
        let values = pair_values(update.tuple);
        if update.insert {
            transaction.insert(update.relation, &values)?;
        } else {
            transaction.retract(update.relation, &values)?;
        }
        transaction.commit()?;
        self.size()
    }
}

/// crepe, recomputing the whole program from the current input after every update.
pub struct CrepeClassic {
    pub classic: Classic,
    pub facts: BTreeMap<&'static str, HashSet<Pair>>,
}

impl CrepeClassic {
    pub fn new(classic: Classic) -> CrepeClassic {
        CrepeClassic {
            classic,
            facts: BTreeMap::new(),
        }
    }

    fn recompute(&self) -> usize {
        let empty = HashSet::new();
        let facts = |relation: &str| self.facts.get(relation).unwrap_or(&empty);
        match self.classic {
            Classic::TransitiveClosure => transitive_closure::run(facts("edge")),
            Classic::SameGeneration => same_generation::run(facts("parent")),
            Classic::PointsTo => {
                points_to::run(facts("new"), facts("assign"), facts("load"), facts("store"))
            }
        }
    }
}

impl ClassicImplementation for CrepeClassic {
    fn load(&mut self, workload: &ClassicWorkload) -> Result<usize> {
        for (relation, tuples) in &workload.facts {
            self.facts
                .entry(relation)
                .or_default()
                .extend(tuples.iter().copied());
        }
        Ok(self.recompute())
    }

    fn update(&mut self, update: Update) -> Result<usize> {
        let tuples = self.facts.entry(update.relation).or_default();
        if update.insert {
            tuples.insert(update.tuple);
        } else {
            tuples.remove(&update.tuple);
        }
        Ok(self.recompute())
    }
}

mod transitive_closure {
    use super::Pair;
    use std::collections::HashSet;

    crepe::crepe! {
        @input
        struct Edge(u32, u32);
        @output
        struct Path(u32, u32);

        // path(x, y) :- edge(x, y).
        Path(x, y) <- Edge(x, y);
        // path(x, z) :- path(x, y), edge(y, z).
        Path(x, z) <- Path(x, y), Edge(y, z);
    }

    pub fn run(edges: &HashSet<Pair>) -> usize {
        let mut runtime = Crepe::new();
        runtime.extend(edges.iter().map(|&(x, y)| Edge(x, y)));
        let (path,) = runtime.run();
        path.len()
    }
}

mod same_generation {
    use super::Pair;
    use std::collections::HashSet;

    crepe::crepe! {
        @input
        struct Parent(u32, u32);
        @output
        struct SameGeneration(u32, u32);

        // same_generation(x, y) :- parent(x, p), parent(y, p), x != y.
        SameGeneration(x, y) <- Parent(x, p), Parent(y, p), (x != y);
        // same_generation(x, y) :- parent(x, a), same_generation(a, b), parent(y, b).
        SameGeneration(x, y) <- SameGeneration(a, b), Parent(x, a), Parent(y, b);
    }

    pub fn run(parents: &HashSet<Pair>) -> usize {
        let mut runtime = Crepe::new();
        runtime.extend(parents.iter().map(|&(child, parent)| Parent(child, parent)));
        let (same_generation,) = runtime.run();
        same_generation.len()
    }
}

mod points_to {
    use super::Pair;
    use std::collections::HashSet;

    crepe::crepe! {
        @input
        struct New(u32, u32);
        @input
        struct Assign(u32, u32);
        @input
        struct Load(u32, u32);
        @input
        struct Store(u32, u32);
        @output
        struct PointsTo(u32, u32);
        @output
        struct HeapPointsTo(u32, u32);

        // points_to(v, o) :- new(v, o).
        PointsTo(v, o) <- New(v, o);
        // points_to(v, o) :- assign(v, w), points_to(w, o).
        PointsTo(v, o) <- Assign(v, w), PointsTo(w, o);
        // points_to(v, o) :- load(v, w), points_to(w, p), heap_points_to(p, o).
        PointsTo(v, o) <- Load(v, w), PointsTo(w, p), HeapPointsTo(p, o);
        // heap_points_to(p, o) :- store(v, w), points_to(v, p), points_to(w, o).
        HeapPointsTo(p, o) <- Store(v, w), PointsTo(v, p), PointsTo(w, o);
    }

    pub fn run(
        new: &HashSet<Pair>,
        assign: &HashSet<Pair>,
        load: &HashSet<Pair>,
        store: &HashSet<Pair>,
    ) -> usize {
        let mut runtime = Crepe::new();
        runtime.extend(new.iter().map(|&(v, o)| New(v, o)));
        runtime.extend(assign.iter().map(|&(v, w)| Assign(v, w)));
        runtime.extend(load.iter().map(|&(v, w)| Load(v, w)));
        runtime.extend(store.iter().map(|&(v, w)| Store(v, w)));
        let (points_to, heap_points_to) = runtime.run();
        points_to.len() + heap_points_to.len()
    }
}
