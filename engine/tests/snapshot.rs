//! A snapshot restored into a fresh engine gives exactly the same state: every relation, the
//! logical time, the clock, keys, stamps and origins; and both engines then answer the next
//! transactions alike.

use vigil_engine::{Engine, Op, Options, Value, compile_source};

const PROGRAM: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl reading(node: symbol, watts: number, since: number)
.input reading(IO=stream, key="node", stamp="since")
.decl edge(a: number, b: number)
.input edge(IO=stream)
.decl path(a: number, b: number)
.output path
path(a, b) :- edge(a, b).
path(a, c) :- path(a, b), edge(b, c).
.decl hot(n: symbol)
.output hot
hot(n) :- reading(n, w, since), w > 80, now(t), t - since >= 60.
"#;

fn engine() -> Engine {
    let program = compile_source("snapshot.dl", PROGRAM).expect("the program compiles");
    Engine::new(program, Options::default()).expect("the engine starts")
}

fn reading(engine: &mut Engine, time: i64, node: &str, watts: i64) {
    let mut transaction = engine.transaction();
    transaction.at(time).event(format!("poll {time}"));
    transaction
        .write(
            Op::Insert,
            "reading",
            &[Some(Value::symbol(node)), Some(Value::Number(watts)), None],
        )
        .unwrap();
    transaction.commit().unwrap();
}

fn state(engine: &Engine) -> Vec<Vec<Vec<Value>>> {
    ["now", "reading", "edge", "path", "hot"]
        .iter()
        .map(|relation| engine.read(relation, &[]).unwrap())
        .collect()
}

#[test]
fn a_restored_snapshot_is_the_same_engine() {
    let mut original = engine();
    reading(&mut original, 10, "pve", 90);
    reading(&mut original, 20, "gaming", 50);
    let mut transaction = original.transaction();
    transaction.at(30).event("links");
    for (a, b) in [(1, 2), (2, 3), (3, 1)] {
        transaction
            .insert("edge", &[Value::Number(a), Value::Number(b)])
            .unwrap();
    }
    transaction.commit().unwrap();
    // An identical reading does not move the stamp; a different one does.
    reading(&mut original, 40, "pve", 90);
    reading(&mut original, 50, "gaming", 95);

    let snapshot = original.snapshot();
    let mut restored = engine();
    restored.restore(&snapshot).unwrap();
    assert_eq!(restored.time(), original.time());
    assert_eq!(restored.now(), original.now());
    assert_eq!(state(&restored), state(&original));
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(
        restored.read("reading", &[]).unwrap()[1],
        vec![Value::symbol("pve"), Value::Number(90), Value::Number(10)]
    );

    // The same next transactions give the same change sets: keys and stamps came back too.
    for engine in [&mut original, &mut restored] {
        reading(engine, 70, "pve", 90);
    }
    let step = |engine: &mut Engine| {
        let mut transaction = engine.transaction();
        transaction.at(110);
        transaction
            .write(
                Op::Retract,
                "reading",
                &[Some(Value::symbol("gaming")), None, None],
            )
            .unwrap();
        transaction
            .retract("edge", &[Value::Number(3), Value::Number(1)])
            .unwrap();
        transaction.commit().unwrap()
    };
    assert_eq!(step(&mut original), step(&mut restored));
    assert_eq!(state(&restored), state(&original));
}

#[test]
fn a_snapshot_goes_only_into_a_fresh_engine() {
    let mut original = engine();
    reading(&mut original, 10, "pve", 90);
    let snapshot = original.snapshot();
    let error = original.restore(&snapshot).unwrap_err();
    assert!(error.to_string().contains("fresh engine"), "{error}");
}

#[test]
fn a_snapshot_of_another_program_is_refused_whole() {
    let mut original = engine();
    reading(&mut original, 10, "pve", 90);
    let mut snapshot = original.snapshot();
    snapshot.relations[0].name = "nothing".to_string();
    let mut fresh = engine();
    let error = fresh.restore(&snapshot).unwrap_err();
    assert!(error.to_string().contains("`nothing`"), "{error}");
    assert_eq!(fresh.time(), 0);
    assert!(fresh.read("reading", &[]).unwrap().is_empty());
}
