//! Property tests of the reactive layer: fixed programs over keyed, stamped and plain stream
//! inputs and a clock, driven by random transactions and what-ifs, with the engine checked
//! after every step against a model of the transaction semantics and the reference evaluator.
//!
//! The model is a plain transcription of what a transaction means (engine/src/transaction.rs):
//! writes resolved in order, an insert into a keyed relation replacing the tuple that holds its
//! key, a stamp that takes the transaction's time only when a non-key column changes, a
//! retraction by key with `_`, retractions of absent tuples reported, the clock moving forward
//! only, and a transaction with any invalid write applying nothing. It finds a key's holder by
//! scanning the relation, so it shares nothing with the engine's own bookkeeping.
//!
//! After each step:
//!
//! - every input relation, read back from the engine, equals the model's, and no keyed relation
//!   holds two tuples with the same key;
//! - every relation equals the reference evaluator's result on those inputs;
//! - a commit's change set is exactly the difference between the reference before and after,
//!   with the model's absent retractions, at the next logical time and the new event time;
//! - a what-if's change set is the difference between the reference before and the reference
//!   on the model's hypothetical inputs, and afterwards every relation, `time()` and `now()` are
//!   as they were;
//! - a rejected transaction (an invalid write, or a time before the current one) changes
//!   nothing and takes no logical time.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use vigil_engine::{Engine, EngineError, Op, Options, Tuple, Value, ir, reference};

/// The values a column takes: small domains, so that keys collide, readings repeat and
/// retractions find their tuple often.
#[derive(Clone, Copy, Debug)]
enum Domain {
    Numbers(i64),
    Symbols(&'static [&'static str]),
    Floats(&'static [f64]),
    /// The stamp column: `_` in an insert, filled by the engine.
    Stamp,
}

/// A stream input of a scenario, with its key and stamp as the model understands them.
struct Input {
    name: &'static str,
    columns: &'static [Domain],
    key: Option<&'static [usize]>,
    stamp: Option<usize>,
}

impl Input {
    fn is_key(&self, column: usize) -> bool {
        self.key.is_none_or(|key| key.contains(&column))
    }
}

/// A program and the inputs that random transactions write.
struct Scenario {
    name: &'static str,
    text: &'static str,
    inputs: &'static [Input],
    /// A derived relation and a tuple of its arity: writing it must be rejected.
    derived: (&'static str, &'static [i64]),
}

/// Links with a state, plain edges, readings held for a while, recursion through both kinds of
/// links, negation of the recursive view and of the held-for view, and every kind of aggregate
/// over keyed and stamped inputs. The clock is compared in each form the engine's timers take
/// (`>=`, `<`, `=` with the time negated, a rule that starts from it), next to a rule that
/// computes with it (`age`).
const NETWORK: Scenario = Scenario {
    name: "network",
    text: r#"
.decl edge(x: number, y: number)
.input edge(IO=stream)
.decl reading(node: number, value: number, since: number)
.input reading(IO=stream, key="node", stamp="since")
.decl link(a: number, b: number, state: number)
.input link(IO=stream, key="a,b")
.decl now(t: number)
.input now(IO=clock)

.decl up(a: number, b: number)
up(a, b) :- link(a, b, s), s > 0.
up(a, b) :- edge(a, b).
.decl path(x: number, y: number)
path(x, y) :- up(x, y).
path(x, z) :- path(x, y), up(y, z).
.decl cut(a: number, b: number)
cut(a, b) :- link(a, b, 0), !path(b, a).
.decl hot(n: number)
hot(n) :- reading(n, v, since), v >= 2, now(t), t - since >= 4.
.decl cool(n: number)
cool(n) :- reading(n, _, _), !hot(n).
.decl hot_reach(x: number, c: number)
hot_reach(x, c) :- path(x, _), c = count : { path(x, y), hot(y) }.
.decl oldest(t: number)
oldest(t) :- t = min s : { reading(n, v, s) }.
.decl age(n: number, a: number)
age(n, a) :- reading(n, _, s), now(t), a = t - s.
.decl recent(n: number)
recent(n) :- reading(n, _, since), now(t), t < since + 3.
.decl exactly(n: number)
exactly(n) :- reading(n, v, since), now(t), since - t = -2 - v.
.decl settled()
settled() :- now(t), t > 12, !hot(1).
.decl total(v: number)
total(v) :- v = sum x : { reading(n, x, s) }.
"#,
    inputs: &[
        Input {
            name: "edge",
            columns: &[Domain::Numbers(4), Domain::Numbers(4)],
            key: None,
            stamp: None,
        },
        Input {
            name: "reading",
            columns: &[Domain::Numbers(4), Domain::Numbers(3), Domain::Stamp],
            key: Some(&[0]),
            stamp: Some(2),
        },
        Input {
            name: "link",
            columns: &[Domain::Numbers(3), Domain::Numbers(3), Domain::Numbers(2)],
            key: Some(&[0, 1]),
            stamp: None,
        },
    ],
    derived: ("path", &[0, 1]),
};

/// Sensors in rooms with symbol keys and float levels, a symmetric recursive adjacency, a
/// held-for rule, negation over it, and grouped `max`, `mean` and `count`.
const ROOMS: Scenario = Scenario {
    name: "rooms",
    text: r#"
.decl reading(sensor: symbol, room: symbol, level: float, since: number)
.input reading(IO=stream, key="sensor", stamp="since")
.decl adjacent(a: symbol, b: symbol)
.input adjacent(IO=stream)
.decl now(t: number)
.input now(IO=clock)

.decl loud(sensor: symbol)
loud(s) :- reading(s, _, level, since), level > 1.5, now(t), t - since >= 3.
.decl noisy(room: symbol)
noisy(r) :- loud(s), reading(s, r, _, _).
.decl near(a: symbol, b: symbol)
near(a, b) :- adjacent(a, b).
near(a, b) :- adjacent(b, a).
near(a, c) :- near(a, b), near(b, c).
.decl quiet(room: symbol)
quiet(r) :- reading(_, r, _, _), !noisy(r).
.decl spill(room: symbol)
spill(r) :- noisy(x), near(x, r), !noisy(r).
.decl peak(room: symbol, level: float)
peak(r, m) :- reading(_, r, _, _), m = max l : { reading(s, r, l, t) }.
.decl average(room: symbol, level: float)
average(r, m) :- reading(_, r, _, _), m = mean l : { reading(s, r, l, t) }.
.decl sensors(room: symbol, n: number)
sensors(r, n) :- reading(_, r, _, _), n = count : { reading(s, r, l, t) }.
"#,
    inputs: &[
        Input {
            name: "reading",
            columns: &[
                Domain::Symbols(&["s1", "s2", "s3"]),
                Domain::Symbols(&["hall", "kitchen", "office"]),
                // Halves add up exactly, so sums and means do not depend on the order.
                Domain::Floats(&[0.5, 1.0, 2.0, 2.5]),
                Domain::Stamp,
            ],
            key: Some(&[0]),
            stamp: Some(3),
        },
        Input {
            name: "adjacent",
            columns: &[
                Domain::Symbols(&["hall", "kitchen", "office"]),
                Domain::Symbols(&["hall", "kitchen", "office"]),
            ],
            key: None,
            stamp: None,
        },
    ],
    derived: ("near", &[0, 1]),
};

/// One random write, as choices that the scenario turns into values.
#[derive(Clone, Debug)]
struct RawWrite {
    input: usize,
    insert: bool,
    values: Vec<usize>,
    /// Per column, in a retraction: write `_` (a non-key column of a keyed relation only).
    wildcards: Vec<bool>,
}

/// An invalid write, which must make the whole transaction apply nothing.
#[derive(Clone, Copy, Debug)]
enum Fault {
    DerivedRelation,
    UnknownRelation,
    WrongArity,
    StampValue,
    ClockWrite,
    KeyWildcard,
    WrongType,
}

/// How a step sets the transaction's time.
#[derive(Clone, Copy, Debug)]
enum Clock {
    /// No time: the transaction happens at the current time.
    Unset,
    Forward(i64),
    /// Before the current time: rejected.
    Backward(i64),
}

#[derive(Clone, Debug)]
struct Step {
    what_if: bool,
    clock: Clock,
    writes: Vec<RawWrite>,
    /// An invalid write, and where among the writes it goes.
    fault: Option<(usize, Fault)>,
}

fn raw_write() -> impl Strategy<Value = RawWrite> {
    (
        0usize..6,
        0u8..5,
        proptest::collection::vec(0usize..12, 4),
        proptest::collection::vec(any::<bool>(), 4),
    )
        .prop_map(|(input, kind, values, wildcards)| RawWrite {
            input,
            // Three inserts for two retractions, so that the relations fill up.
            insert: kind < 3,
            values,
            wildcards,
        })
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::DerivedRelation),
        Just(Fault::UnknownRelation),
        Just(Fault::WrongArity),
        Just(Fault::StampValue),
        Just(Fault::ClockWrite),
        Just(Fault::KeyWildcard),
        Just(Fault::WrongType),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..4,
        prop_oneof![
            3 => Just(Clock::Unset),
            1 => Just(Clock::Forward(0)),
            4 => (1i64..5).prop_map(Clock::Forward),
            1 => (1i64..3).prop_map(Clock::Backward),
        ],
        proptest::collection::vec(raw_write(), 0..6),
        proptest::option::weighted(0.1, (0usize..6, fault())),
    )
        .prop_map(|(kind, clock, writes, fault)| Step {
            what_if: kind == 0,
            clock,
            writes,
            fault,
        })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 1..14)
}

/// The inputs as the model sees them, by the scenario's input index, and the clock.
#[derive(Clone, Debug)]
struct Model {
    inputs: Vec<BTreeSet<Tuple>>,
    now: i64,
    time: u64,
}

/// A retraction as reported absent: the relation and the fields as written (`None` for `_`).
type Retraction = (String, Vec<Option<Value>>);

/// A write as given to the engine: `None` for `_`.
#[derive(Clone, Debug)]
struct Write {
    op: Op,
    input: usize,
    fields: Vec<Option<Value>>,
}

impl Model {
    fn new(scenario: &Scenario) -> Model {
        Model {
            inputs: vec![BTreeSet::new(); scenario.inputs.len()],
            now: 0,
            time: 0,
        }
    }

    /// The tuple of a keyed relation that holds the key of `fields`.
    fn holder(&self, scenario: &Scenario, input: usize, fields: &[Option<Value>]) -> Option<Tuple> {
        let key = scenario.inputs[input].key?;
        self.inputs[input]
            .iter()
            .find(|tuple| key.iter().all(|&c| fields[c].as_ref() == Some(&tuple[c])))
            .cloned()
    }

    /// Applies valid writes at event time `now`, one after the other. Returns the model after
    /// them and the retractions that found nothing to remove.
    fn apply(&self, scenario: &Scenario, writes: &[Write], now: i64) -> (Model, Vec<Retraction>) {
        let mut next = self.clone();
        next.now = now;
        let mut absent = Vec::new();
        for write in writes {
            let input = &scenario.inputs[write.input];
            let holder = next.holder(scenario, write.input, &write.fields);
            let set = &mut next.inputs[write.input];
            match (write.op, input.key) {
                (Op::Insert, None) => {
                    set.insert(fields_to_tuple(&write.fields));
                }
                (Op::Retract, None) => {
                    if !set.remove(&fields_to_tuple(&write.fields)) {
                        absent.push((input.name.to_string(), write.fields.clone()));
                    }
                }
                (Op::Insert, Some(_)) => {
                    let mut fields = write.fields.clone();
                    if let Some(stamp) = input.stamp {
                        let unchanged = holder.as_ref().is_some_and(|old| {
                            (0..fields.len())
                                .all(|c| c == stamp || fields[c].as_ref() == Some(&old[c]))
                        });
                        fields[stamp] = Some(match &holder {
                            Some(old) if unchanged => old[stamp].clone(),
                            _ => Value::Number(now),
                        });
                    }
                    let tuple = fields_to_tuple(&fields);
                    if let Some(old) = holder {
                        set.remove(&old);
                    }
                    set.insert(tuple);
                }
                (Op::Retract, Some(_)) => {
                    let matching = holder.filter(|old| {
                        write
                            .fields
                            .iter()
                            .zip(old)
                            .all(|(field, value)| field.as_ref().is_none_or(|f| f == value))
                    });
                    match matching {
                        Some(old) => {
                            set.remove(&old);
                        }
                        None => absent.push((input.name.to_string(), write.fields.clone())),
                    }
                }
            }
        }
        (next, absent)
    }

    /// The reference evaluator's inputs: the model's relations and the clock.
    fn reference_inputs(
        &self,
        scenario: &Scenario,
        program: &ir::Program,
    ) -> HashMap<usize, reference::Tuples> {
        let mut inputs: HashMap<usize, reference::Tuples> = scenario
            .inputs
            .iter()
            .zip(&self.inputs)
            .map(|(input, tuples)| (id(program, input.name), tuples.clone()))
            .collect();
        inputs.insert(
            id(program, "now"),
            BTreeSet::from([vec![Value::Number(self.now)]]),
        );
        inputs
    }
}

fn fields_to_tuple(fields: &[Option<Value>]) -> Tuple {
    fields
        .iter()
        .map(|field| field.clone().expect("only a retraction or a stamp has `_`"))
        .collect()
}

fn id(program: &ir::Program, name: &str) -> usize {
    program
        .relation(name)
        .unwrap_or_else(|| panic!("the program declares `{name}`"))
}

/// Turns a raw write into a valid one. A stamp column of a retraction is either `_` or the
/// holder's stamp, so that full retractions from a stamped relation sometimes match.
fn resolve_write(scenario: &Scenario, model: &Model, raw: &RawWrite) -> Write {
    let input_index = raw.input % scenario.inputs.len();
    let input = &scenario.inputs[input_index];
    let op = if raw.insert { Op::Insert } else { Op::Retract };
    let mut fields: Vec<Option<Value>> = input
        .columns
        .iter()
        .zip(&raw.values)
        .map(|(domain, &choice)| match domain {
            Domain::Numbers(n) => Some(Value::Number(choice as i64 % n)),
            Domain::Symbols(names) => Some(Value::symbol(names[choice % names.len()])),
            Domain::Floats(values) => Some(Value::Float(values[choice % values.len()])),
            Domain::Stamp => None,
        })
        .collect();
    if op == Op::Retract && input.key.is_some() {
        let holder = model.holder(scenario, input_index, &fields);
        for (column, field) in fields.iter_mut().enumerate() {
            if input.is_key(column) {
                continue;
            }
            if raw.wildcards[column] {
                *field = None;
            } else if input.stamp == Some(column) {
                *field = Some(
                    holder
                        .as_ref()
                        .map_or(Value::Number(0), |old| old[column].clone()),
                );
            }
        }
    }
    Write {
        op,
        input: input_index,
        fields,
    }
}

/// The invalid write of a fault: relation name and fields.
fn fault_write(scenario: &Scenario, fault: Fault) -> (Op, String, Vec<Option<Value>>) {
    let numbers = |values: &[i64]| values.iter().map(|v| Some(Value::Number(*v))).collect();
    let stamped = scenario
        .inputs
        .iter()
        .find(|input| input.stamp.is_some())
        .expect("every scenario has a stamped input");
    let valid = |input: &Input| -> Vec<Option<Value>> {
        input
            .columns
            .iter()
            .map(|domain| match domain {
                Domain::Numbers(_) => Some(Value::Number(0)),
                Domain::Symbols(names) => Some(Value::symbol(names[0])),
                Domain::Floats(values) => Some(Value::Float(values[0])),
                Domain::Stamp => None,
            })
            .collect()
    };
    match fault {
        Fault::DerivedRelation => (
            Op::Insert,
            scenario.derived.0.to_string(),
            numbers(scenario.derived.1),
        ),
        Fault::UnknownRelation => (Op::Insert, "nowhere".to_string(), numbers(&[1])),
        Fault::WrongArity => {
            let mut fields = valid(&scenario.inputs[0]);
            fields.push(Some(Value::Number(0)));
            (Op::Insert, scenario.inputs[0].name.to_string(), fields)
        }
        Fault::StampValue => {
            let mut fields = valid(stamped);
            fields[stamped.stamp.expect("stamped")] = Some(Value::Number(0));
            (Op::Insert, stamped.name.to_string(), fields)
        }
        Fault::ClockWrite => (Op::Insert, "now".to_string(), numbers(&[0])),
        Fault::KeyWildcard => {
            let mut fields = valid(stamped);
            fields[stamped.key.expect("keyed")[0]] = None;
            (Op::Retract, stamped.name.to_string(), fields)
        }
        Fault::WrongType => {
            // The first column of the first input, given a value of another type.
            let mut fields = valid(&scenario.inputs[0]);
            fields[0] = Some(match scenario.inputs[0].columns[0] {
                Domain::Numbers(_) => Value::symbol("seven"),
                _ => Value::Number(7),
            });
            (Op::Insert, scenario.inputs[0].name.to_string(), fields)
        }
    }
}

/// Every relation's contents, read from the engine.
fn contents(engine: &Engine, program: &ir::Program) -> Vec<reference::Tuples> {
    program
        .relations
        .iter()
        .map(|relation| {
            engine
                .read(&relation.name, &[])
                .unwrap_or_else(|error| panic!("reading `{}`: {error}", relation.name))
                .into_iter()
                .collect()
        })
        .collect()
}

/// The change set that turns `before` into `after`, by relation name, without empty entries.
fn difference(
    program: &ir::Program,
    before: &[reference::Tuples],
    after: &[reference::Tuples],
) -> BTreeMap<String, Vec<(Tuple, isize)>> {
    let mut changes = BTreeMap::new();
    for (relation, (old, new)) in program.relations.iter().zip(before.iter().zip(after)) {
        let mut rows: Vec<(Tuple, isize)> = new
            .difference(old)
            .map(|tuple| (tuple.clone(), 1))
            .chain(old.difference(new).map(|tuple| (tuple.clone(), -1)))
            .collect();
        rows.sort();
        if !rows.is_empty() {
            changes.insert(relation.name.clone(), rows);
        }
    }
    changes
}

fn change_rows(changes: &vigil_engine::ChangeSet) -> BTreeMap<String, Vec<(Tuple, isize)>> {
    changes
        .decoded()
        .into_iter()
        .filter(|relation| !relation.rows.is_empty())
        .map(|relation| (relation.relation, relation.rows))
        .collect()
}

fn absent_of(changes: &vigil_engine::ChangeSet) -> Vec<Retraction> {
    changes
        .absent
        .iter()
        .map(|absent| (absent.relation.clone(), absent.fields.clone()))
        .collect()
}

/// Checks that the engine's inputs are the model's, that keys are unique, and that every
/// relation is what the reference evaluator derives from those inputs; returns that result.
fn check_state(
    scenario: &Scenario,
    program: &ir::Program,
    engine: &Engine,
    model: &Model,
    context: &str,
) -> Result<Vec<reference::Tuples>, TestCaseError> {
    prop_assert_eq!(engine.time(), model.time, "logical time {}", context);
    prop_assert_eq!(engine.now(), model.now, "event time {}", context);
    let actual = contents(engine, program);
    for (input, expected) in scenario.inputs.iter().zip(&model.inputs) {
        let read = &actual[id(program, input.name)];
        prop_assert_eq!(read, expected, "input `{}` {}", input.name, context);
        if let Some(key) = input.key {
            let keys: BTreeSet<Vec<&Value>> = read
                .iter()
                .map(|tuple| key.iter().map(|&c| &tuple[c]).collect())
                .collect();
            prop_assert_eq!(
                keys.len(),
                read.len(),
                "two tuples of `{}` share a key {}",
                input.name,
                context
            );
        }
    }
    // The reference runs on the inputs as read back from the engine.
    let inputs: HashMap<usize, reference::Tuples> = program
        .relations
        .iter()
        .enumerate()
        .filter(|(_, relation)| relation.input.is_some())
        .map(|(relation, _)| (relation, actual[relation].clone()))
        .collect();
    prop_assert_eq!(
        inputs.len(),
        scenario.inputs.len() + 1,
        "the inputs and the clock"
    );
    let expected = reference::evaluate(program, &inputs);
    for (relation, (actual, expected)) in program.relations.iter().zip(actual.iter().zip(&expected))
    {
        prop_assert_eq!(actual, expected, "relation `{}` {}", relation.name, context);
    }
    Ok(expected)
}

fn run(scenario: &Scenario, steps: &[Step], workers: usize) -> Result<(), TestCaseError> {
    let program = vigil_engine::compile_source(scenario.name, scenario.text)
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let mut engine = Engine::new(program.clone(), Options { workers })
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    let mut model = Model::new(scenario);
    let mut current = check_state(scenario, &program, &engine, &model, "at the start")?;
    for (index, step) in steps.iter().enumerate() {
        let context = format!(
            "after step {index} of {} with {workers} worker(s): {step:?}",
            scenario.name
        );
        let writes: Vec<Write> = step
            .writes
            .iter()
            .map(|raw| resolve_write(scenario, &model, raw))
            .collect();
        let at = match step.clock {
            Clock::Unset => None,
            Clock::Forward(delta) => Some(model.now + delta),
            Clock::Backward(delta) => Some(model.now - delta),
        };
        let mut transaction = engine.transaction();
        if let Some(at) = at {
            transaction.at(at);
        }
        transaction.event(format!("step {index}"));
        for (position, write) in writes.iter().enumerate() {
            if let Some((_, fault)) = step
                .fault
                .filter(|(slot, _)| slot % (writes.len() + 1) == position)
            {
                let (op, relation, fields) = fault_write(scenario, fault);
                prop_assert!(
                    transaction.write(op, &relation, &fields).is_err(),
                    "{:?} accepted {}",
                    fault,
                    context
                );
            }
            let relation = scenario.inputs[write.input].name;
            let written = transaction.write(write.op, relation, &write.fields);
            prop_assert!(written.is_ok(), "{:?}: {:?} {}", write, written, context);
        }
        if let Some((slot, fault)) = step.fault
            && slot % (writes.len() + 1) == writes.len()
        {
            let (op, relation, fields) = fault_write(scenario, fault);
            prop_assert!(
                transaction.write(op, &relation, &fields).is_err(),
                "{:?} accepted {}",
                fault,
                context
            );
        }
        let result = if step.what_if {
            transaction.what_if()
        } else {
            transaction.commit()
        };

        let now = at.unwrap_or(model.now);
        if step.fault.is_some() || now < model.now {
            match result {
                Err(EngineError::Rejected(_)) => {}
                other => prop_assert!(false, "expected a rejection, got {:?} {}", other, context),
            }
            check_state(scenario, &program, &engine, &model, &context)?;
            continue;
        }
        let changes = result.map_err(|error| TestCaseError::fail(format!("{error} {context}")))?;
        let (next, absent) = model.apply(scenario, &writes, now);
        prop_assert_eq!(
            absent_of(&changes),
            absent,
            "absent retractions {}",
            &context
        );
        prop_assert_eq!(changes.now, now, "the change set's event time {}", &context);
        let hypothetical =
            reference::evaluate(&program, &next.reference_inputs(scenario, &program));
        prop_assert_eq!(
            change_rows(&changes),
            difference(&program, &current, &hypothetical),
            "change set {}",
            &context
        );
        if step.what_if {
            // Nothing moved: the state is checked against the model as it was.
            check_state(scenario, &program, &engine, &model, &context)?;
        } else {
            model = Model {
                time: model.time + 1,
                ..next
            };
            prop_assert_eq!(
                changes.time,
                model.time,
                "the change set's logical time {}",
                &context
            );
            check_state(scenario, &program, &engine, &model, &context)?;
            current = hypothetical;
        }
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failure is reported with its minimal case; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn network_transactions_match_the_model_and_the_reference(steps in steps()) {
        run(&NETWORK, &steps, 1)?;
    }

    #[test]
    fn rooms_transactions_match_the_model_and_the_reference(steps in steps()) {
        run(&ROOMS, &steps, 1)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn network_transactions_on_two_workers(steps in steps()) {
        run(&NETWORK, &steps, 2)?;
    }

    #[test]
    fn rooms_transactions_on_two_workers(steps in steps()) {
        run(&ROOMS, &steps, 2)?;
    }
}

/// The scenarios' key and stamp columns, as the model assumes them, are the program's.
#[test]
fn the_model_knows_the_programs_keys_and_stamps() {
    for scenario in [&NETWORK, &ROOMS] {
        let program = vigil_engine::compile_source(scenario.name, scenario.text)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        for input in scenario.inputs {
            let relation = &program.relations[id(&program, input.name)];
            assert!(relation.feed.stream, "`{}` is a stream", input.name);
            assert_eq!(relation.arity(), input.columns.len(), "`{}`", input.name);
            assert_eq!(
                relation.feed.key.as_deref(),
                input.key,
                "the key of `{}`",
                input.name
            );
            assert_eq!(
                relation.feed.stamp, input.stamp,
                "the stamp of `{}`",
                input.name
            );
        }
        assert!(program.relations[id(&program, "now")].feed.clock);
    }
}

/// A keyed relation that also has a clause in the program (here a fact) must still hold one
/// tuple per key once a reading for that key arrives, or the program must be refused.
#[test]
fn a_keyed_relation_with_a_program_fact_keeps_one_tuple_per_key() {
    let text = r#"
.decl reading(sensor: symbol, value: number)
.input reading(IO=stream, key="sensor")
reading("a", 1).
"#;
    let program = match vigil_engine::compile_source("keyed_fact.dl", text) {
        Ok(program) => program,
        Err(diagnostics) => {
            assert!(diagnostics.to_string().contains("reading"), "{diagnostics}");
            return;
        }
    };
    let mut engine = Engine::new(program, Options::default()).unwrap();
    let mut transaction = engine.transaction();
    transaction
        .insert("reading", &[Value::symbol("a"), Value::Number(2)])
        .unwrap();
    transaction.commit().unwrap();
    assert_eq!(
        engine.read("reading", &[]).unwrap(),
        vec![vec![Value::symbol("a"), Value::Number(2)]],
        "the new reading of `a` replaces the program's"
    );
}
