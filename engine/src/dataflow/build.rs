//! Construction of the differential dataflow of a planned program.
//!
//! Strata are built in order. A non-recursive stratum is one relation: the union of its input
//! and of its rules' pipelines, made distinct (by one operator that counts rows,
//! [`distinct`](super::distinct), or where nothing else in the dataflow reads the relation,
//! by the operator that captures it: see [`Output::count`]). A recursive stratum is built
//! inside an iterative scope, with one [`Variable`] per relation, so that mutual recursion
//! works; the relations of earlier strata enter that scope, and so do their arrangements, which
//! are built once in the outer scope and shared by every rule that joins with the same relation
//! on the same columns.
//!
//! The rule pipelines are built by code generic over the scope's timestamp, so that the same
//! code serves the outer scope (`u64`, one step per transaction) and iterative scopes
//! (`Product<u64, u64>`).

use super::distinct::distinct;
use super::eval::{Compiled, Evaluator};
use super::plan::{AggregatePlan, Pipeline, Plan, Start, Step};
use super::row::{Row, RowBuilder};
use crate::ir::{self, RelationId};
use crate::syntax::ast::AggregateKind;
use crate::value::{Interner, Type, Word};
use differential_dataflow::VecCollection;
use differential_dataflow::collection::AsCollection;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::operators::iterate::Variable;
use differential_dataflow::trace::implementations::{
    KeyBatcher, KeyBuilder, KeySpine, ValBuilder, ValSpine,
};
use differential_dataflow::trace::wrappers::enter::TraceEnter;
use std::collections::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::channels::pact::Pipeline as Pact;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::Product;
use timely::progress::Timestamp;
use timely::progress::timestamp::Refines;

/// The logical time of the outer scope: one step per transaction.
pub type Time = u64;

type Spine<R, T> = ValSpine<R, R, T, isize>;
type Agent<R, T> = TraceAgent<Spine<R, T>>;
type KeyAgent<R, T> = TraceAgent<KeySpine<R, T, isize>>;
/// Collections of sources (or relations) by the columns they are keyed or projected on.
pub type ByColumns<'s, T, D> = HashMap<(usize, Vec<usize>), VecCollection<'s, T, D>>;

/// An arrangement a rule reads: built in its own scope, or in the outer scope and brought
/// into an iterative one.
#[derive(Clone)]
enum Shared<L, E> {
    Local(L),
    Entered(E),
}

/// A relation arranged by some of its columns: the key is those columns, the value the tuple.
type Arrangement<'s, R, T> =
    Shared<Arranged<'s, Agent<R, T>>, Arranged<'s, TraceEnter<Agent<R, Time>, T>>>;

/// The distinct projection of a relation on some columns, arranged by itself: what an
/// antijoin looks its rows up in.
type Keys<'s, R, T> =
    Shared<Arranged<'s, KeyAgent<R, T>>, Arranged<'s, TraceEnter<KeyAgent<R, Time>, T>>>;

/// What the rules of one scope can read.
struct Env<'s, R: Row, T: Timestamp + Lattice + Refines<Time>> {
    /// One empty row, where some rule starts from nothing.
    unit: Option<VecCollection<'s, T, R>>,
    relations: HashMap<RelationId, VecCollection<'s, T, R>>,
    arrangements: HashMap<(RelationId, Vec<usize>), Arrangement<'s, R, T>>,
    /// Distinct projections of relations, arranged, for negation.
    keys: HashMap<(RelationId, Vec<usize>), Keys<'s, R, T>>,
    /// Relations read from other dataflows, fed keyed by some columns (see [`Shapes`]).
    keyed_inputs: ByColumns<'s, T, (R, R)>,
    /// Relations read from other dataflows, fed as projections on some columns.
    keys_inputs: ByColumns<'s, T, (R, ())>,
}

impl<'s, R: Row, T: Timestamp + Lattice + Refines<Time>> Env<'s, R, T> {
    fn new(unit: Option<VecCollection<'s, T, R>>) -> Self {
        Env {
            unit,
            relations: HashMap::new(),
            arrangements: HashMap::new(),
            keys: HashMap::new(),
            keyed_inputs: HashMap::new(),
            keys_inputs: HashMap::new(),
        }
    }

    fn unit(&self) -> VecCollection<'s, T, R> {
        self.unit
            .clone()
            .expect("the unit row is fed to every dataflow whose rules start from it")
    }

    fn relation(&mut self, relation: RelationId) -> VecCollection<'s, T, R> {
        match self.relations.get(&relation) {
            Some(collection) => collection.clone(),
            None => panic!("relation {relation} is read before its stratum is built"),
        }
    }

    fn arrangement(&mut self, relation: RelationId, columns: &[usize]) -> Arrangement<'s, R, T> {
        let key = (relation, columns.to_vec());
        if let Some(arrangement) = self.arrangements.get(&key) {
            return arrangement.clone();
        }
        let keyed = match self.keyed_inputs.remove(&key) {
            Some(keyed) => keyed,
            None => {
                let columns = columns.to_vec();
                self.relation(relation)
                    .map(move |tuple: R| (tuple.project(&columns), tuple))
            }
        };
        let arrangement = Shared::Local(keyed.arrange_by_key());
        self.arrangements.insert(key, arrangement.clone());
        arrangement
    }

    /// The distinct projection of `relation` on `columns`, arranged. Relations are sets, so
    /// when the columns are the whole tuple (`whole`) it is the relation itself, and only a
    /// narrower projection needs its duplicates removed.
    fn keys(&mut self, relation: RelationId, columns: &[usize], whole: bool) -> Keys<'s, R, T> {
        let key = (relation, columns.to_vec());
        if let Some(keys) = self.keys.get(&key) {
            return keys.clone();
        }
        let projected = match self.keys_inputs.remove(&key) {
            Some(projected) => projected,
            None => {
                let columns = columns.to_vec();
                self.relation(relation)
                    .map(move |tuple: R| (project(tuple, &columns, whole), ()))
            }
        };
        let arranged =
            projected.arrange_named::<_, KeySpine<R, T, isize>>("ArrangeBySelf", KeyBatcher::new);
        let keys = if whole {
            arranged
        } else {
            distinct_keys(arranged)
        };
        let keys = Shared::Local(keys);
        self.keys.insert(key, keys.clone());
        keys
    }
}

/// A tuple's words at `columns`; all of them (`whole`) is the tuple itself.
pub fn project<R: Row>(tuple: R, columns: &[usize], whole: bool) -> R {
    if whole { tuple } else { tuple.project(columns) }
}

/// The keys of an arrangement, each once.
fn distinct_keys<'s, R: Row, T: Timestamp + Lattice>(
    arranged: Arranged<'s, KeyAgent<R, T>>,
) -> Arranged<'s, KeyAgent<R, T>> {
    arranged.reduce_abelian::<_, KeyBuilder<R, T, isize>, KeySpine<R, T, isize>, _, _>(
        "Distinct",
        |_key, _present, output| output.push(((), 1)),
        keyed_batch,
    )
}

/// How a reduction's output for one key becomes updates of its arrangement.
fn keyed_batch<K: Clone, V, T, D>(
    batch: &mut Vec<((K, V), T, D)>,
    key: &K,
    updates: &mut Vec<(V, T, D)>,
) {
    batch.clear();
    batch.extend(
        updates
            .drain(..)
            .map(|(value, time, diff)| ((key.clone(), value), time, diff)),
    );
}

/// What a group of the partition computes.
#[derive(Clone, Debug)]
pub enum Body {
    /// Whole strata (indexes into the program's strata, in order): their relations.
    Strata(Vec<usize>),
    /// Rules of one non-recursive relation that read the same relations (indexes into the
    /// plan's rules): the union of their rows, before it is made distinct.
    Rules(Vec<usize>),
    /// A non-recursive relation: the distinct union of its writes and of the rows of the
    /// groups of its rules.
    Union(RelationId),
}

/// A part of the program built as one dataflow. What flows between groups is identified by a
/// *source*: a relation id, or for the rows of a [`Body::Rules`] group, the number of
/// relations plus the index of its first rule; the bounds of a [`Timer`](super::plan::Timer)
/// are the sources after those of the rules.
#[derive(Clone, Debug)]
pub struct Group {
    pub body: Body,
    /// The sources it computes.
    pub outputs: Vec<usize>,
    /// The sources of other groups, or written relations, that it reads.
    pub reads: Vec<usize>,
    /// The writable relations among its outputs, which transactions feed.
    pub written: Vec<RelationId>,
    /// The clock, if the group reads it and every rule of the group that reads it does so only
    /// through comparisons: then the group's results change with the clock only when the
    /// bounds of its timers say so, and the clock need not be fed to it otherwise.
    pub clock: Option<RelationId>,
    /// Its rules' timers (indexes into [`Plan::timers`]), whose bounds it computes.
    pub timers: Vec<usize>,
}

impl Group {
    fn new(body: Body, outputs: Vec<usize>, reads: Vec<usize>, written: Vec<RelationId>) -> Group {
        Group {
            body,
            outputs,
            reads,
            written,
            clock: None,
            timers: Vec::new(),
        }
    }

    /// The plan rules whose rows the group computes.
    fn rules(&self, program: &ir::Program, plan: &Plan) -> Vec<usize> {
        match &self.body {
            Body::Union(_) => Vec::new(),
            Body::Rules(rules) => rules.clone(),
            Body::Strata(strata) => (0..plan.rules.len())
                .filter(|&rule| {
                    strata.iter().any(|&index| {
                        program.strata[index]
                            .relations
                            .contains(&plan.rules[rule].head)
                    })
                })
                .collect(),
        }
    }

    /// The relations of each pipeline's positive atoms, for a group whose rows only
    /// non-recursive rules derive (besides the writes of its relation): while one of a
    /// pipeline's atoms reads an empty relation, the pipeline derives nothing. `None` for other
    /// groups, or when some pipeline has no positive atom.
    pub fn guards(&self, program: &ir::Program, plan: &Plan) -> Option<Vec<Vec<RelationId>>> {
        let derived = match &self.body {
            Body::Rules(_) => true,
            Body::Strata(strata) => strata.len() == 1 && !program.strata[strata[0]].recursive,
            Body::Union(_) => false,
        };
        if !derived {
            return None;
        }
        self.pipelines(program, plan)
            .into_iter()
            .map(|pipeline| {
                let mut atoms = Vec::new();
                if let Start::Scan { relation, .. } = &pipeline.start {
                    atoms.push(*relation);
                }
                for step in &pipeline.steps {
                    if let Step::Join { relation, .. } = step {
                        atoms.push(*relation);
                    }
                }
                atoms.sort_unstable();
                atoms.dedup();
                (!atoms.is_empty()).then_some(atoms)
            })
            .collect()
    }

    /// The pipelines the group runs: its rules', and its timers' bounds.
    fn pipelines<'p>(&self, program: &ir::Program, plan: &'p Plan) -> Vec<&'p Pipeline> {
        let rules = self.rules(program, plan).into_iter();
        rules
            .map(|rule| &plan.rules[rule].pipeline)
            .chain(
                self.timers
                    .iter()
                    .map(|&timer| &plan.timers[timer].bounds.pipeline),
            )
            .collect()
    }
}

/// How a program is cut into dataflows.
#[derive(Clone, Debug)]
pub struct Partition {
    /// In order: a group reads only sources of earlier groups and of `passthrough`.
    pub groups: Vec<Group>,
    /// Relations that only transactions write (no rule derives them): no dataflow computes them.
    pub passthrough: Vec<RelationId>,
    /// How many sources there are: relations and rule groups.
    pub sources: usize,
}

/// Cuts `program` into dataflows: one for the whole program, or (`split`) one per stratum that
/// has rules, so that a transaction need only advance the strata whose inputs changed. A
/// non-recursive relation whose rules read different relations is cut further: a group per
/// set of rules that read the same relations, and one that makes their union distinct, so
/// that a change reaches only the rules that read it.
pub fn partition(program: &ir::Program, plan: &Plan, split: bool) -> Partition {
    let count = program.relations.len();
    let writable = |relations: &[RelationId]| -> Vec<RelationId> {
        relations
            .iter()
            .copied()
            .filter(|&relation| program.relations[relation].writable)
            .collect()
    };
    let mut partition = Partition {
        groups: Vec::new(),
        passthrough: Vec::new(),
        sources: count + plan.rules.len() + plan.timers.len(),
    };
    if !split {
        let relations: Vec<RelationId> = program
            .strata
            .iter()
            .flat_map(|stratum| stratum.relations.iter().copied())
            .collect();
        let written = writable(&relations);
        partition.groups.push(Group::new(
            Body::Strata((0..program.strata.len()).collect()),
            relations,
            Vec::new(),
            written,
        ));
        return partition;
    }
    for (index, stratum) in program.strata.iter().enumerate() {
        let rules: Vec<usize> = (0..plan.rules.len())
            .filter(|&rule| stratum.relations.contains(&plan.rules[rule].head))
            .collect();
        if !stratum.recursive && rules.is_empty() {
            partition
                .passthrough
                .extend(stratum.relations.iter().copied());
            continue;
        }
        // The rules of a non-recursive relation, by what they read.
        let mut classes: Vec<(Vec<RelationId>, Vec<usize>)> = Vec::new();
        if !stratum.recursive {
            for &rule in &rules {
                let reads = reads(plan, &[rule], &stratum.relations);
                match classes.iter_mut().find(|(read, _)| *read == reads) {
                    Some((_, members)) => members.push(rule),
                    None => classes.push((reads, vec![rule])),
                }
            }
        }
        if classes.len() < 2 {
            let mut group = Group::new(
                Body::Strata(vec![index]),
                stratum.relations.clone(),
                reads(plan, &rules, &stratum.relations),
                writable(&stratum.relations),
            );
            if !stratum.recursive {
                timed(&mut group, program, plan, &rules);
            }
            partition.groups.push(group);
            continue;
        }
        let mut parts = Vec::new();
        for (reads, members) in classes {
            let source = count + members[0];
            parts.push(source);
            let mut group = Group::new(
                Body::Rules(members.clone()),
                vec![source],
                reads,
                Vec::new(),
            );
            timed(&mut group, program, plan, &members);
            partition.groups.push(group);
        }
        let relation = stratum.relations[0];
        partition.groups.push(Group::new(
            Body::Union(relation),
            vec![relation],
            parts,
            writable(&[relation]),
        ));
    }
    partition
}

/// Marks `group`, of non-recursive `rules`, as reading the clock only through timers, if it
/// reads the clock and every rule of it that does reads it only through comparisons (see
/// [`Group::clock`]).
fn timed(group: &mut Group, program: &ir::Program, plan: &Plan, rules: &[usize]) {
    let Some(clock) = program.relations.iter().position(|r| r.feed.clock) else {
        return;
    };
    let mut reads_clock = false;
    for &rule in rules {
        let (mut joins, mut negations, mut scans) = (Vec::new(), Vec::new(), Vec::new());
        needs(
            &plan.rules[rule].pipeline,
            &mut joins,
            &mut negations,
            &mut scans,
        );
        let reads = joins.iter().any(|(relation, _)| *relation == clock)
            || negations.iter().any(|(relation, _, _)| *relation == clock)
            || scans.contains(&clock);
        if reads {
            if plan.rules[rule].clock != Some(clock) {
                return;
            }
            reads_clock = true;
        }
    }
    if reads_clock {
        group.clock = Some(clock);
        group.timers = (0..plan.timers.len())
            .filter(|&timer| rules.contains(&plan.timers[timer].rule))
            .collect();
    }
}

/// The relations that `rules` read, other than `own`, sorted.
fn reads(plan: &Plan, rules: &[usize], own: &[RelationId]) -> Vec<RelationId> {
    let (mut joins, mut negations, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    for &rule in rules {
        needs(
            &plan.rules[rule].pipeline,
            &mut joins,
            &mut negations,
            &mut reads,
        );
    }
    reads.extend(
        joins
            .into_iter()
            .chain(
                negations
                    .into_iter()
                    .map(|(relation, columns, _)| (relation, columns)),
            )
            .map(|(relation, _)| relation),
    );
    reads.retain(|relation| !own.contains(relation));
    reads.sort_unstable();
    reads.dedup();
    reads
}

/// The shapes in which a group's dataflow reads the sources of other groups: as rows, keyed by
/// some columns for a join, or projected on some columns for an antijoin. Each is an input of
/// its own, fed in that shape, so that no operator has to reshape it.
#[derive(Debug, Default)]
pub struct Shapes {
    pub rows: Vec<usize>,
    /// (source, columns).
    pub keyed: Vec<(usize, Vec<usize>)>,
    /// (source, columns, whether they are all of them).
    pub keys: Vec<(usize, Vec<usize>, bool)>,
}

/// How the dataflow of `group` reads each source of its [`Group::reads`].
pub fn shapes(program: &ir::Program, plan: &Plan, group: &Group) -> Shapes {
    if let Body::Union(_) = &group.body {
        return Shapes {
            rows: group.reads.clone(),
            ..Shapes::default()
        };
    }
    let (mut joins, mut negations, mut scans) = (Vec::new(), Vec::new(), Vec::new());
    for pipeline in group.pipelines(program, plan) {
        needs(pipeline, &mut joins, &mut negations, &mut scans);
    }
    let read = |source: &usize| group.reads.contains(source);
    scans.retain(read);
    scans.sort_unstable();
    scans.dedup();
    joins.retain(|(relation, _)| read(relation));
    joins.sort_unstable();
    joins.dedup();
    negations.retain(|(relation, _, _)| read(relation));
    negations.sort_unstable();
    negations.dedup();
    Shapes {
        rows: scans,
        keyed: joins,
        keys: negations,
    }
}

/// What flows into the dataflow of a group.
pub struct Feeds<'s, R: Row> {
    /// The input collection of each writable relation of the group.
    pub written: HashMap<RelationId, VecCollection<'s, Time, R>>,
    /// The collection of each source that the group reads from other parts as rows.
    pub reads: HashMap<usize, VecCollection<'s, Time, R>>,
    /// Sources read keyed by some columns (see [`Shapes`]).
    pub keyed: ByColumns<'s, Time, (R, R)>,
    /// Sources read projected on some columns.
    pub keys: ByColumns<'s, Time, (R, ())>,
    /// One empty row, where [`uses_unit`] says the group needs it.
    pub unit: Option<VecCollection<'s, Time, R>>,
}

/// Whether the dataflow of `group` reads the unit row: a rule that starts from nothing, or a
/// relation with neither rules nor writes, which is empty.
pub fn uses_unit(program: &ir::Program, plan: &Plan, group: &Group) -> bool {
    fn starts_from_unit(pipeline: &Pipeline) -> bool {
        matches!(pipeline.start, Start::Unit)
            || pipeline.steps.iter().any(|step| match step {
                Step::Aggregate(aggregate) => starts_from_unit(&aggregate.body),
                _ => false,
            })
    }
    // A relation of a stratum with neither rules nor writes is empty: made from the unit row.
    let empty = match &group.body {
        Body::Strata(strata) => strata.iter().any(|&index| {
            let stratum = &program.strata[index];
            !stratum.recursive
                && !plan
                    .rules
                    .iter()
                    .any(|rule| stratum.relations.contains(&rule.head))
                && !group.written.contains(&stratum.relations[0])
        }),
        _ => false,
    };
    empty
        || group
            .pipelines(program, plan)
            .into_iter()
            .any(starts_from_unit)
}

/// The source of the bounds of `timer` (see [`Group`]).
pub fn timer_source(program: &ir::Program, plan: &Plan, timer: usize) -> usize {
    program.relations.len() + plan.rules.len() + timer
}

/// The bounds of the timers of `group`, as outputs.
fn timer_bounds<'s, R: Row>(
    program: &ir::Program,
    plan: &Plan,
    group: &Group,
    env: &mut Env<'s, R, Time>,
    interner: &Interner,
) -> Vec<Output<'s, R>> {
    group
        .timers
        .iter()
        .map(|&timer| {
            let bounds = build_rule(&plan.timers[timer].bounds, env, interner);
            Output::new(timer_source(program, plan, timer), bounds, false)
        })
        .collect()
}

/// What a group computes for one of its sources.
pub struct Output<'s, R: Row> {
    pub source: usize,
    pub collection: VecCollection<'s, Time, R>,
    /// Whether the collection is a relation's rows as a multiset, which whoever captures it
    /// must make a set ([`Settling`](super::distinct::Settling)): nothing in the group reads
    /// the relation, so the operator that captures it can count its rows as well as a
    /// [`distinct`] between them would, a worker step sooner.
    pub count: bool,
}

impl<'s, R: Row> Output<'s, R> {
    fn new(source: usize, collection: VecCollection<'s, Time, R>, count: bool) -> Self {
        Output {
            source,
            collection,
            count,
        }
    }
}

/// Builds the dataflow of `group` in `scope`. Returns what it computes for each of its outputs.
pub fn build<'s, R: Row>(
    scope: Scope<'s, Time>,
    program: &ir::Program,
    plan: &Plan,
    interner: &Interner,
    group: &Group,
    feeds: Feeds<'s, R>,
) -> Vec<Output<'s, R>> {
    let strata = match &group.body {
        Body::Strata(strata) => strata,
        Body::Rules(rules) => {
            let mut env: Env<'s, R, Time> = Env::new(feeds.unit);
            env.relations = feeds.reads;
            env.keyed_inputs = feeds.keyed;
            env.keys_inputs = feeds.keys;
            let parts = rules
                .iter()
                .map(|&rule| build_rule(&plan.rules[rule], &mut env, interner))
                .collect();
            let mut outputs = vec![Output::new(group.outputs[0], union(scope, parts), false)];
            outputs.extend(timer_bounds(program, plan, group, &mut env, interner));
            return outputs;
        }
        Body::Union(relation) => {
            let mut parts: Vec<_> = feeds.written.get(relation).cloned().into_iter().collect();
            let mut reads: Vec<_> = feeds.reads.into_iter().collect();
            reads.sort_unstable_by_key(|(source, _)| *source);
            parts.extend(reads.into_iter().map(|(_, collection)| collection));
            return vec![Output::new(*relation, union(scope, parts), true)];
        }
    };
    let inputs = &feeds.written;
    // A group of one non-recursive stratum does not read its relation: whoever captures it
    // makes it a set.
    let alone = strata.len() == 1;
    let mut counted = HashMap::new();
    let mut env: Env<'s, R, Time> = Env::new(feeds.unit);
    env.relations = feeds.reads;
    env.keyed_inputs = feeds.keyed;
    env.keys_inputs = feeds.keys;
    for stratum in strata.iter().map(|&index| &program.strata[index]) {
        let rules: Vec<_> = plan
            .rules
            .iter()
            .filter(|rule| stratum.relations.contains(&rule.head))
            .collect();
        if !stratum.recursive {
            let relation = stratum.relations[0];
            let mut parts: Vec<VecCollection<'s, Time, R>> =
                inputs.get(&relation).cloned().into_iter().collect();
            for rule in &rules {
                parts.push(build_rule(rule, &mut env, interner));
            }
            if rules.is_empty() {
                let collection = parts.pop().unwrap_or_else(|| env.unit().filter(|_| false));
                env.relations.insert(relation, collection);
            } else if alone {
                counted.insert(relation, union(scope, parts));
            } else {
                env.relations
                    .insert(relation, distinct(union(scope, parts)));
            }
            continue;
        }

        // Arrange, in the outer scope, what the stratum reads from earlier strata.
        let mut joins = Vec::new();
        let mut negations = Vec::new();
        let mut scans = Vec::new();
        for rule in &rules {
            needs(&rule.pipeline, &mut joins, &mut negations, &mut scans);
        }
        let lower = |relation: &RelationId| !stratum.relations.contains(relation);
        let outer_arrangements: Vec<_> = joins
            .iter()
            .filter(|(relation, _)| lower(relation))
            .map(|(relation, columns)| {
                let Shared::Local(arranged) = env.arrangement(*relation, columns) else {
                    unreachable!("the outer scope builds its own arrangements")
                };
                ((*relation, columns.clone()), arranged)
            })
            .collect();
        let outer_keys: Vec<_> = negations
            .iter()
            .filter(|(relation, _, _)| lower(relation))
            .map(|(relation, columns, whole)| {
                let Shared::Local(arranged) = env.keys(*relation, columns, *whole) else {
                    unreachable!("the outer scope builds its own arrangements")
                };
                ((*relation, columns.clone()), arranged)
            })
            .collect();
        // Only scans read lower relations as rows: joins and antijoins read the arrangements
        // entered above.
        let outer_relations: Vec<_> = scans
            .iter()
            .filter(|relation| lower(relation))
            .map(|relation| (*relation, env.relation(*relation)))
            .collect();
        let outer_unit = env.unit.clone();

        let results = scope.iterative::<u64, _, _>(|inner| {
            let mut inner_env: Env<'_, R, Product<Time, u64>> =
                Env::new(outer_unit.map(|unit| unit.enter(inner)));
            for (relation, collection) in outer_relations {
                inner_env
                    .relations
                    .insert(relation, collection.enter(inner));
            }
            for (key, arranged) in outer_arrangements {
                inner_env
                    .arrangements
                    .insert(key, Shared::Entered(arranged.enter(inner)));
            }
            for (key, arranged) in outer_keys {
                inner_env
                    .keys
                    .insert(key, Shared::Entered(arranged.enter(inner)));
            }
            let mut variables = Vec::new();
            for &relation in &stratum.relations {
                let (variable, collection) =
                    Variable::new(inner, Product::new(Default::default(), 1));
                inner_env.relations.insert(relation, collection);
                variables.push((relation, variable));
            }
            let mut results = Vec::new();
            for (relation, variable) in variables {
                let mut parts: Vec<_> = inputs
                    .get(&relation)
                    .cloned()
                    .map(|input| input.enter(inner))
                    .into_iter()
                    .collect();
                for rule in rules.iter().filter(|rule| rule.head == relation) {
                    parts.push(build_rule(rule, &mut inner_env, interner));
                }
                let collection = union(inner, parts).distinct();
                variable.set(collection.clone());
                results.push((relation, collection.leave(scope)));
            }
            results
        });
        for (relation, collection) in results {
            env.relations.insert(relation, collection);
        }
    }
    let mut outputs: Vec<_> = group
        .outputs
        .iter()
        .map(|&relation| match counted.remove(&relation) {
            Some(collection) => Output::new(relation, collection, true),
            None => Output::new(relation, env.relation(relation), false),
        })
        .collect();
    outputs.extend(timer_bounds(program, plan, group, &mut env, interner));
    outputs
}

/// The union of the parts of a relation: a concatenation only where there is more than one.
fn union<'s, R: Row, T: Timestamp + Lattice>(
    scope: Scope<'s, T>,
    mut parts: Vec<VecCollection<'s, T, R>>,
) -> VecCollection<'s, T, R> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        differential_dataflow::collection::concatenate(scope, parts)
    }
}

/// Collects what a pipeline reads: joined (relation, columns), negated (relation, columns,
/// whole), and scanned relations.
fn needs(
    pipeline: &Pipeline,
    joins: &mut Vec<(RelationId, Vec<usize>)>,
    negations: &mut Vec<(RelationId, Vec<usize>, bool)>,
    scans: &mut Vec<RelationId>,
) {
    if let Start::Scan { relation, .. } = &pipeline.start {
        scans.push(*relation);
    }
    for step in &pipeline.steps {
        match step {
            Step::Join {
                relation, columns, ..
            } => joins.push((*relation, columns.clone())),
            Step::Antijoin {
                relation,
                columns,
                whole,
                ..
            } => negations.push((*relation, columns.clone(), *whole)),
            Step::Aggregate(aggregate) => needs(&aggregate.body, joins, negations, scans),
            _ => {}
        }
    }
}

fn build_rule<'s, R: Row, T: Timestamp + Lattice + Refines<Time>>(
    rule: &super::plan::RulePlan,
    env: &mut Env<'s, R, T>,
    interner: &Interner,
) -> VecCollection<'s, T, R> {
    build_pipeline(
        &rule.pipeline,
        env,
        interner,
        None,
        Exit::Head(rule.head_args.clone()),
    )
}

/// How rows leave a stretch of row-level steps: in the shape the next operator takes.
#[derive(Clone)]
enum Exit {
    /// As they are.
    Rows,
    /// Keyed for a join: the words at `row_key`, and the positions the join keeps.
    Join {
        row_key: Vec<usize>,
        keep: Vec<usize>,
    },
    /// Keyed for an antijoin: the words at `row_key`, and the row.
    Antijoin { row_key: Vec<usize> },
    /// The head of a rule, evaluated (rows where it fails are dropped).
    Head(Vec<Compiled>),
}

impl Exit {
    /// The exit of the stretch that ends at `next` (`None`: the pipeline's end).
    fn before(next: Option<&Step>, last: &Exit) -> Exit {
        match next {
            Some(Step::Join { row_key, keep, .. }) => Exit::Join {
                row_key: row_key.clone(),
                keep: keep.clone(),
            },
            Some(Step::Antijoin { row_key, .. }) => Exit::Antijoin {
                row_key: row_key.clone(),
            },
            Some(_) => Exit::Rows,
            None => last.clone(),
        }
    }

    fn keyed(&self) -> bool {
        matches!(self, Exit::Join { .. } | Exit::Antijoin { .. })
    }
}

/// The rows that row-level steps make of one row: usually none or one, more after a range.
struct Emitted<O> {
    first: Option<O>,
    rest: Vec<O>,
}

impl<O> Emitted<O> {
    fn push(&mut self, item: O) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push(item);
        }
    }
}

impl<O> IntoIterator for Emitted<O> {
    type Item = O;
    type IntoIter = std::iter::Chain<std::option::IntoIter<O>, std::vec::IntoIter<O>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// A stretch of row-level steps (filters, assignments, ranges, projections) between two
/// operators, run inside the closure of the first: one operator per join instead of one per
/// step, which is most of what a logical time costs in progress tracking.
struct Stretch {
    steps: Vec<Step>,
    evaluator: Evaluator,
}

impl Stretch {
    fn new(steps: Vec<Step>, interner: &Interner) -> Stretch {
        Stretch {
            steps,
            evaluator: Evaluator::new(interner.clone()),
        }
    }

    /// Runs the steps on `row`, and each row that comes out through `exit`.
    fn run<R: Row, O>(&mut self, row: R, exit: &impl Fn(&Evaluator, R) -> Option<O>) -> Emitted<O> {
        let mut emitted = Emitted {
            first: None,
            rest: Vec::new(),
        };
        run_steps(&self.steps, &mut self.evaluator, row, exit, &mut emitted);
        emitted
    }
}

fn run_steps<R: Row, O>(
    steps: &[Step],
    evaluator: &mut Evaluator,
    row: R,
    exit: &impl Fn(&Evaluator, R) -> Option<O>,
    emitted: &mut Emitted<O>,
) {
    let Some((step, rest)) = steps.split_first() else {
        if let Some(out) = exit(evaluator, row) {
            emitted.push(out);
        }
        return;
    };
    match step {
        Step::Filter(condition) => {
            if evaluator.holds(condition, row.words()) {
                run_steps(rest, evaluator, row, exit, emitted);
            }
        }
        Step::Assign { at, expr } => {
            if let Some(word) = evaluator.eval(expr, row.words()) {
                run_steps(rest, evaluator, row.with(*at, word), exit, emitted);
            }
        }
        Step::Range {
            at,
            ty,
            from,
            to,
            step,
        } => {
            let words = row.words();
            let values = match (evaluator.eval(from, words), evaluator.eval(to, words)) {
                (Some(from), Some(to)) => {
                    let step = match step {
                        Some(step) => evaluator.eval(step, words),
                        None => Some(default_step(*ty, from, to)),
                    };
                    step.map(|step| range_values(*ty, from, to, step))
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            for word in values {
                run_steps(rest, evaluator, row.with(*at, word), exit, emitted);
            }
        }
        Step::Project(keep) => run_steps(rest, evaluator, row.project(keep), exit, emitted),
        Step::Join { .. } | Step::Antijoin { .. } | Step::Aggregate(_) => {
            unreachable!("a stretch holds only row-level steps")
        }
    }
}

/// Rows between operators: plain, or keyed for the next join or antijoin.
enum Staged<'s, R: Row, T: Timestamp + Lattice> {
    Rows(VecCollection<'s, T, R>),
    Keyed(VecCollection<'s, T, (R, R)>),
}

impl<'s, R: Row, T: Timestamp + Lattice> Staged<'s, R, T> {
    fn rows(self) -> VecCollection<'s, T, R> {
        match self {
            Staged::Rows(rows) => rows,
            Staged::Keyed(_) => unreachable!("plain rows were planned here"),
        }
    }

    fn keyed(self) -> VecCollection<'s, T, (R, R)> {
        match self {
            Staged::Keyed(keyed) => keyed,
            Staged::Rows(_) => unreachable!("keyed rows were planned here"),
        }
    }
}

/// One function per shape of exit, for the closures of operators.
fn exit_rows<R: Row>(exit: Exit) -> impl Fn(&Evaluator, R) -> Option<R> + 'static {
    move |evaluator: &Evaluator, row: R| match &exit {
        Exit::Head(head) => R::try_from_fn(head.len(), |i| evaluator.eval(&head[i], row.words())),
        _ => Some(row),
    }
}

fn exit_keyed<R: Row>(exit: Exit) -> impl Fn(&Evaluator, R) -> Option<(R, R)> + 'static {
    move |_: &Evaluator, row: R| match &exit {
        Exit::Join { row_key, keep } => Some((row.project(row_key), row.project(keep))),
        Exit::Antijoin { row_key } => Some((row.project(row_key), row)),
        _ => unreachable!("a keyed exit"),
    }
}

/// Runs a stretch and its exit over plain rows, as one operator (none when there is nothing
/// to do).
fn stage<'s, R: Row, T: Timestamp + Lattice>(
    rows: VecCollection<'s, T, R>,
    mut stretch: Stretch,
    exit: Exit,
) -> Staged<'s, R, T> {
    if exit.keyed() {
        let exit = exit_keyed(exit);
        Staged::Keyed(rows.flat_map(move |row: R| stretch.run(row, &exit)))
    } else if stretch.steps.is_empty() && matches!(exit, Exit::Rows) {
        Staged::Rows(rows)
    } else {
        let exit = exit_rows(exit);
        Staged::Rows(rows.flat_map(move |row: R| stretch.run(row, &exit)))
    }
}

/// Splits steps into the row-level stretch before the first operator, then each operator
/// (join, antijoin, aggregate) with the stretch after it.
fn stretches(steps: &[Step]) -> (Vec<Step>, Vec<(&Step, Vec<Step>)>) {
    let mut first = Vec::new();
    let mut operators: Vec<(&Step, Vec<Step>)> = Vec::new();
    for step in steps {
        match step {
            Step::Join { .. } | Step::Antijoin { .. } | Step::Aggregate(_) => {
                operators.push((step, Vec::new()))
            }
            _ => match operators.last_mut() {
                Some((_, stretch)) => stretch.push(step.clone()),
                None => first.push(step.clone()),
            },
        }
    }
    (first, operators)
}

/// Builds a pipeline; its rows leave through `last` (as they are, or as a rule's head).
fn build_pipeline<'s, R: Row, T: Timestamp + Lattice + Refines<Time>>(
    pipeline: &Pipeline,
    env: &mut Env<'s, R, T>,
    interner: &Interner,
    outer: Option<VecCollection<'s, T, R>>,
    last: Exit,
) -> VecCollection<'s, T, R> {
    let (mut first, operators) = stretches(&pipeline.steps);
    let rows = match &pipeline.start {
        Start::Unit => env.unit(),
        Start::Outer => outer.expect("an aggregate body starts from its injected bindings"),
        Start::Scan {
            relation,
            columns,
            identity,
        } => {
            if !*identity {
                first.insert(0, Step::Project(columns.clone()));
            }
            env.relation(*relation)
        }
    };
    let next = |index: usize| operators.get(index).map(|(step, _)| *step);
    let mut staged = stage(
        rows,
        Stretch::new(first, interner),
        Exit::before(next(0), &last),
    );
    for (index, (step, stretch)) in operators.iter().enumerate() {
        let mut stretch = Stretch::new(stretch.clone(), interner);
        let exit = Exit::before(next(index + 1), &last);
        staged = match step {
            Step::Join {
                relation,
                columns,
                keep,
                take,
                ..
            } => {
                let arrangement = env.arrangement(*relation, columns);
                let keyed = staged.keyed();
                let kept = keep.len();
                let take = take.clone();
                let joined = move |row: &R, tuple: &R| {
                    R::from_fn(kept + take.len(), |i| {
                        if i < kept {
                            row.get(i)
                        } else {
                            tuple.get(take[i - kept])
                        }
                    })
                };
                // The join's closure runs the stretch after it and keys the rows for the next
                // operator.
                if exit.keyed() {
                    let exit = exit_keyed(exit);
                    let combine =
                        move |_key: &R, row: &R, tuple: &R| stretch.run(joined(row, tuple), &exit);
                    Staged::Keyed(match arrangement {
                        Shared::Local(arranged) => keyed.join_core(arranged, combine),
                        Shared::Entered(arranged) => keyed.join_core(arranged, combine),
                    })
                } else {
                    let exit = exit_rows(exit);
                    let combine =
                        move |_key: &R, row: &R, tuple: &R| stretch.run(joined(row, tuple), &exit);
                    Staged::Rows(match arrangement {
                        Shared::Local(arranged) => keyed.join_core(arranged, combine),
                        Shared::Entered(arranged) => keyed.join_core(arranged, combine),
                    })
                }
            }
            Step::Antijoin {
                relation,
                columns,
                whole,
                ..
            } => {
                // The rows less those whose key the relation has: the rows that have it are
                // found by a join with the relation's keys, and taken away, with the stretch
                // after the antijoin run, in one operator.
                let keys = env.keys(*relation, columns, *whole);
                let keyed = staged.keyed();
                let arranged = keyed.clone().arrange_by_key();
                let present = |_key: &R, row: &R, _: &()| Some(row.clone());
                let present = match keys {
                    Shared::Local(keys) => arranged.join_core(keys, present),
                    Shared::Entered(keys) => arranged.join_core(keys, present),
                };
                if exit.keyed() {
                    Staged::Keyed(subtract(keyed, present, stretch, exit_keyed(exit)))
                } else {
                    Staged::Rows(subtract(keyed, present, stretch, exit_rows(exit)))
                }
            }
            Step::Aggregate(aggregate) => {
                let rows = build_aggregate(aggregate, staged.rows(), env, interner);
                stage(rows, stretch, exit)
            }
            _ => unreachable!("operators only"),
        };
    }
    staged.rows()
}

/// The rows of `kept` less those of `removed`, each run through `stretch` and its exit: the
/// last operator of an antijoin.
fn subtract<'s, R: Row, T: Timestamp + Lattice, O: Clone + 'static>(
    kept: VecCollection<'s, T, (R, R)>,
    removed: VecCollection<'s, T, R>,
    mut stretch: Stretch,
    exit: impl Fn(&Evaluator, R) -> Option<O> + 'static,
) -> VecCollection<'s, T, O> {
    kept.inner
        .binary::<_, CapacityContainerBuilder<Vec<(O, T, isize)>>, _, _, _, _>(
            removed.inner,
            Pact,
            Pact,
            "Antijoin",
            move |_, _| {
                move |kept, removed, output| {
                    kept.for_each(|time, data| {
                        let mut session = output.session(&time);
                        for ((_, row), at, diff) in data.drain(..) {
                            for out in stretch.run(row, &exit) {
                                session.give((out, at.clone(), diff));
                            }
                        }
                    });
                    removed.for_each(|time, data| {
                        let mut session = output.session(&time);
                        for (row, at, diff) in data.drain(..) {
                            for out in stretch.run(row, &exit) {
                                session.give((out, at.clone(), -diff));
                            }
                        }
                    });
                }
            },
        )
        .as_collection()
}

fn build_aggregate<'s, R: Row, T: Timestamp + Lattice + Refines<Time>>(
    aggregate: &AggregatePlan,
    rows: VecCollection<'s, T, R>,
    env: &mut Env<'s, R, T>,
    interner: &Interner,
) -> VecCollection<'s, T, R> {
    let keys = aggregate.keys.clone();
    // Counts and sums mark each group of the enclosing rows with an all-zero value, so that
    // a group whose body has no binding counts or sums to zero.
    let marked = matches!(aggregate.kind, AggregateKind::Count | AggregateKind::Sum);
    // A standalone body binds the injected variables itself; any other starts from their
    // distinct bindings in the enclosing rows.
    let (body, markers) = if aggregate.standalone {
        let body = build_pipeline(&aggregate.body, env, interner, None, Exit::Rows);
        let keys = keys.clone();
        let markers = marked.then(|| {
            rows.clone()
                .map(move |row: R| (row.project(&keys), R::default()))
        });
        (body, markers)
    } else {
        let groups = {
            let keys = keys.clone();
            rows.clone()
                .map(move |row: R| row.project(&keys))
                .distinct()
        };
        let body = build_pipeline(
            &aggregate.body,
            env,
            interner,
            Some(groups.clone()),
            Exit::Rows,
        );
        let markers = marked.then(|| groups.map(|group: R| (group, R::default())));
        (body, markers)
    };
    // Each binding of the body becomes (group, [1, target, locals...]).
    let (body_keys, body_locals, target) = (
        aggregate.body_keys.clone(),
        aggregate.body_locals.clone(),
        aggregate.target.clone(),
    );
    let evaluator = Evaluator::new(interner.clone());
    let mut values = body.flat_map(move |row: R| {
        let words = row.words();
        let mut value = RowBuilder::new();
        value.push(1);
        value.push(match &target {
            Some(target) => evaluator.eval(target, words)?,
            None => 0,
        });
        for &position in &body_locals {
            value.push(row.get(position));
        }
        Some((row.project(&body_keys), value.build::<R>()))
    });
    if let Some(markers) = markers {
        values = values.concat(markers);
    }
    let (kind, ty, target_ty) = (aggregate.kind, aggregate.ty, aggregate.target_ty);
    let evaluator = Evaluator::new(interner.clone());
    // The results stay arranged by group, as the join with the rows needs them.
    let results = values
        .arrange_by_key_named("Arrange: Reduce")
        .reduce_abelian::<_, ValBuilder<R, R, T, isize>, Spine<R, T>, _, _>(
            "Reduce",
            move |_group: &R, bindings: &[(&R, isize)], output: &mut Vec<(R, isize)>| {
                let present = bindings
                    .iter()
                    .filter(|(value, count)| *count > 0 && value.get(0) == 1);
                if let Some(word) = reduce_words(
                    kind,
                    ty,
                    target_ty,
                    present.map(|(value, _)| value.get(1)),
                    &evaluator,
                ) {
                    output.push((R::from_words(&[word]), 1));
                }
            },
            keyed_batch,
        );
    let at = aggregate.at;
    rows.map(move |row: R| (row.project(&keys), row))
        .join_core(results, move |_group: &R, row: &R, result: &R| {
            Some(row.with(at, result.get(0)))
        })
}

/// Aggregates the target words of one group's bindings.
fn reduce_words(
    kind: AggregateKind,
    ty: Type,
    target_ty: Type,
    words: impl Iterator<Item = Word>,
    evaluator: &Evaluator,
) -> Option<Word> {
    match kind {
        AggregateKind::Count => Some(words.count() as Word),
        AggregateKind::Sum => Some(match ty {
            Type::Float => words.map(f64::from_bits).sum::<f64>().to_bits(),
            _ => words.fold(0 as Word, Word::wrapping_add),
        }),
        AggregateKind::Mean => {
            let (mut sum, mut count) = (0.0f64, 0usize);
            for word in words {
                sum += to_f64(target_ty, word);
                count += 1;
            }
            (count > 0).then(|| (sum / count as f64).to_bits())
        }
        AggregateKind::Min | AggregateKind::Max => words.reduce(|best, word| {
            let ordering = evaluator.compare(ty, word, best);
            let better = match kind {
                AggregateKind::Min => ordering == Some(std::cmp::Ordering::Less),
                _ => ordering == Some(std::cmp::Ordering::Greater),
            };
            if better { word } else { best }
        }),
    }
}

fn to_f64(ty: Type, word: Word) -> f64 {
    match ty {
        Type::Number => word as i64 as f64,
        Type::Unsigned => word as f64,
        _ => f64::from_bits(word),
    }
}

/// `range(a, b)` counts up or down toward `b`.
fn default_step(ty: Type, from: Word, to: Word) -> Word {
    let down = match ty {
        Type::Number => (from as i64) > (to as i64),
        Type::Unsigned => from > to,
        _ => f64::from_bits(from) > f64::from_bits(to),
    };
    match (ty, down) {
        (Type::Float, false) => 1.0f64.to_bits(),
        (Type::Float, true) => (-1.0f64).to_bits(),
        (_, false) => 1,
        (_, true) => (-1i64) as u64,
    }
}

/// The values of `range(from, to, step)`: from toward `to`, excluding it; nothing when the
/// step is zero or points away from `to`.
pub fn range_values(ty: Type, from: Word, to: Word, step: Word) -> Vec<Word> {
    let mut values = Vec::new();
    match ty {
        Type::Number | Type::Symbol => {
            let (mut current, to, step) = (from as i64, to as i64, step as i64);
            while (step > 0 && current < to) || (step < 0 && current > to) {
                values.push(current as u64);
                match current.checked_add(step) {
                    Some(next) => current = next,
                    None => break,
                }
            }
        }
        Type::Unsigned => {
            // An unsigned step cannot point down, except for a descending default step, which
            // arrives as the two's complement of 1.
            let (mut current, down) = (from, step == u64::MAX);
            if step == 0 {
                return values;
            }
            while (!down && current < to) || (down && current > to) {
                values.push(current);
                current = if down {
                    current - 1
                } else {
                    match current.checked_add(step) {
                        Some(next) => next,
                        None => break,
                    }
                };
            }
        }
        Type::Float => {
            let (mut current, to, step) = (
                f64::from_bits(from),
                f64::from_bits(to),
                f64::from_bits(step),
            );
            while (step > 0.0 && current < to) || (step < 0.0 && current > to) {
                values.push(current.to_bits());
                current += step;
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str) -> (ir::Program, Partition) {
        let program = crate::compile_source("cut.dl", text).expect("a valid program");
        let plan = super::super::plan::plan(&program, &Interner::new()).expect("a plan");
        let partition = partition(&program, &plan, true);
        (program, partition)
    }

    fn name(program: &ir::Program, source: usize) -> String {
        match program.relations.get(source) {
            Some(relation) => relation.name.clone(),
            None => format!("rules#{}", source - program.relations.len()),
        }
    }

    #[test]
    fn rules_that_read_different_relations_get_dataflows_of_their_own() {
        let (program, partition) = cut("
            .decl e(x: number, y: number)
            .decl v(x: number)
            .input e
            .input v
            .decl p(x: number, y: number)
            p(x, y) :- e(x, y).
            p(x, z) :- p(x, y), e(y, z).
            .decl r(x: number)
            .input r
            r(x) :- v(x).
            r(x) :- v(x), x > 2.
            r(x) :- p(x, _).
        ");
        let passthrough: Vec<String> = partition
            .passthrough
            .iter()
            .map(|&relation| name(&program, relation))
            .collect();
        assert_eq!(passthrough, ["e", "v"]);
        let groups: Vec<String> = partition
            .groups
            .iter()
            .map(|group| {
                let reads: Vec<String> = group.reads.iter().map(|&s| name(&program, s)).collect();
                let outputs: Vec<String> =
                    group.outputs.iter().map(|&s| name(&program, s)).collect();
                format!(
                    "{} <- {} ({:?})",
                    outputs.join(","),
                    reads.join(","),
                    group.written
                )
            })
            .collect();
        let r = program.relation("r").unwrap();
        // The recursive stratum is one dataflow; r's two rules over v are one, its rule over p
        // another, and the union of both with r's writes a third.
        assert_eq!(
            groups,
            [
                "p <- e ([])".to_string(),
                "rules#2 <- v ([])".to_string(),
                "rules#4 <- p ([])".to_string(),
                format!("r <- rules#2,rules#4 ([{r}])"),
            ]
        );
        assert!(matches!(partition.groups[1].body, Body::Rules(ref rules) if rules.len() == 2));
        assert!(matches!(partition.groups[3].body, Body::Union(relation) if relation == r));
    }

    #[test]
    fn relations_from_other_dataflows_come_in_the_shapes_their_rules_read() {
        let (program, partition) = cut("
            .decl e(x: number, y: number)
            .decl v(x: number)
            .input e
            .input v
            .decl r(x: number)
            r(x) :- e(x, y), !v(y), !e(_, x).
            .decl s(x: number, z: number)
            s(x, z) :- r(x), e(x, z).
            .decl t(x: number)
            t(1).
            t(x) :- v(x).
        ");
        let plan = super::super::plan::plan(&program, &Interner::new()).expect("a plan");
        let id = |name: &str| program.relation(name).expect("declared");
        let group = |name: &str| {
            partition
                .groups
                .iter()
                .find(|group| group.outputs.contains(&id(name)))
                .expect("a group")
        };
        // r scans e, and looks v up whole (a set needs no distinct) and e by its second
        // column (a projection, made distinct).
        let r = shapes(&program, &plan, group("r"));
        assert_eq!(r.rows, [id("e")]);
        assert!(r.keyed.is_empty());
        assert_eq!(
            r.keys,
            [(id("e"), vec![1], false), (id("v"), vec![0], true)]
        );
        // s scans r and joins e on its first column.
        let s = shapes(&program, &plan, group("s"));
        assert_eq!(s.rows, [id("r")]);
        assert_eq!(s.keyed, [(id("e"), vec![0])]);
        assert!(s.keys.is_empty());
        // Only t's fact starts from the unit row.
        assert!(!uses_unit(&program, &plan, group("r")));
        assert!(!uses_unit(&program, &plan, group("s")));
        let t = partition
            .groups
            .iter()
            .filter(|group| matches!(group.body, Body::Rules(_)))
            .filter(|group| uses_unit(&program, &plan, group))
            .count();
        assert_eq!(
            t, 1,
            "t's fact is a group of its own, and only it reads the unit row"
        );
    }

    #[test]
    fn without_split_the_program_is_one_dataflow() {
        let program = crate::compile_source(
            "one.dl",
            ".decl e(x: number)\n.input e\n.decl r(x: number)\nr(x) :- e(x).\nr(1).\n",
        )
        .unwrap();
        let plan = super::super::plan::plan(&program, &Interner::new()).unwrap();
        let partition = partition(&program, &plan, false);
        assert_eq!(partition.groups.len(), 1);
        assert!(partition.passthrough.is_empty());
        assert_eq!(partition.groups[0].outputs.len(), program.relations.len());
    }
}
