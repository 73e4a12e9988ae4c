//! Subscriptions: a subscriber receives the relation's contents, then every change set that
//! touches it, in time order and without gaps; a consumer that falls behind gets merged
//! batches whose size stays bounded, and applying every batch it received, in order, still
//! gives exactly the relation; a dropped subscription costs nothing; and once the engine is
//! gone, `recv` says so.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;
use vigil_engine::{
    ChangeSet, Engine, EngineError, Options, Subscription, Tuple, Value, ViewChanges,
};

const PROGRAM: &str = r#"
.decl edge(x: number, y: number)
.input edge(IO=stream)
.decl path(x: number, y: number)
.output path
path(x, y) :- edge(x, y).
path(x, z) :- path(x, y), edge(y, z).

.decl reading(sensor: number, value: number)
.input reading(IO=stream, key="sensor")
.decl view(sensor: number, value: number)
.output view
view(s, v) :- reading(s, v).
"#;

fn engine(workers: usize) -> Engine {
    let program = vigil_engine::compile_source("subscription.dl", PROGRAM)
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    Engine::new(program, Options { workers }).expect("the program starts")
}

fn numbers(values: &[i64]) -> Vec<Value> {
    values.iter().map(|v| Value::Number(*v)).collect()
}

/// A deterministic sequence of pseudo-random numbers (a linear congruential generator).
struct Sequence(u64);

impl Sequence {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Commits one random change to `reading`: upserts of one to three sensors out of 40, or the
/// retraction of a sensor by key.
fn random_reading(engine: &mut Engine, sequence: &mut Sequence) -> ChangeSet {
    let mut transaction = engine.transaction();
    if sequence.below(5) == 0 {
        let sensor = Value::Number(sequence.below(40) as i64);
        transaction
            .write(vigil_engine::Op::Retract, "reading", &[Some(sensor), None])
            .expect("a valid retraction");
    } else {
        for _ in 0..=sequence.below(3) {
            let tuple = numbers(&[sequence.below(40) as i64, sequence.below(6) as i64]);
            transaction
                .insert("reading", &tuple)
                .expect("a valid reading");
        }
    }
    transaction.commit().expect("the transaction commits")
}

/// What a consumer rebuilds from the batches it receives, checking them as they come.
#[derive(Default)]
struct Replica {
    rows: BTreeMap<Tuple, isize>,
    /// The last time covered so far.
    last: Option<u64>,
    batches: usize,
}

impl Replica {
    fn apply(&mut self, batch: &ViewChanges) {
        match self.last {
            None => assert_eq!(batch.first, 0, "the first batch starts at time 0"),
            Some(last) => assert_eq!(
                batch.first,
                last + 1,
                "batch {}..={} does not follow {last}",
                batch.first,
                batch.last
            ),
        }
        assert!(
            batch.first <= batch.last,
            "{}..={}",
            batch.first,
            batch.last
        );
        assert!(
            batch.rows.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "the rows are sorted by tuple, one row per tuple: {:?}",
            batch.rows
        );
        for (tuple, diff) in &batch.rows {
            assert!(*diff == 1 || *diff == -1, "{tuple:?} has diff {diff}");
            let count = self.rows.entry(tuple.clone()).or_insert(0);
            *count += diff;
            assert!(
                *count == 0 || *count == 1,
                "after {}..={}, {tuple:?} is counted {count} times",
                batch.first,
                batch.last
            );
        }
        self.rows.retain(|_, count| *count != 0);
        self.last = Some(batch.last);
        self.batches += 1;
    }

    /// Receives every batch queued now.
    fn drain(&mut self, subscription: &Subscription) {
        while let Some(batch) = subscription.try_recv() {
            self.apply(&batch);
        }
    }

    fn tuples(&self) -> Vec<Tuple> {
        self.rows.keys().cloned().collect()
    }
}

#[test]
fn a_subscriber_gets_the_snapshot_then_every_change_set_in_time_order() {
    let mut engine = engine(1);
    let mut transaction = engine.transaction();
    transaction.insert("edge", &numbers(&[1, 2])).unwrap();
    transaction.insert("edge", &numbers(&[2, 3])).unwrap();
    transaction.commit().unwrap();
    let mut transaction = engine.transaction();
    transaction.insert("reading", &numbers(&[1, 1])).unwrap();
    transaction.commit().unwrap();

    let subscription = engine.subscribe("path", 1000).unwrap();
    let snapshot = subscription
        .try_recv()
        .expect("the snapshot is queued at once");
    assert_eq!(snapshot.relation, "path");
    assert_eq!((snapshot.first, snapshot.last), (0, 2));
    let tuples = [[1, 2], [1, 3], [2, 3]];
    let rows: Vec<(Tuple, isize)> = tuples.iter().map(|t| (numbers(t), 1)).collect();
    assert_eq!(snapshot.rows, rows);
    let mut replica = Replica::default();
    replica.apply(&snapshot);

    let mut sequence = Sequence(7);
    for step in 0..60 {
        if step % 5 == 0 {
            // What-ifs and rejected transactions publish nothing.
            let mut hypothetical = engine.transaction();
            hypothetical.insert("edge", &numbers(&[7, 8])).unwrap();
            hypothetical.retract("edge", &numbers(&[1, 2])).unwrap();
            assert!(!hypothetical.what_if().unwrap().of("path").is_empty());
            let mut rejected = engine.transaction();
            rejected.insert("edge", &numbers(&[7, 8])).unwrap();
            assert!(rejected.insert("path", &numbers(&[0, 0])).is_err());
            assert!(rejected.commit().is_err());
            assert!(subscription.try_recv().is_none(), "step {step}");
        }
        let mut transaction = engine.transaction();
        let edge = numbers(&[sequence.below(5) as i64, sequence.below(5) as i64]);
        match step % 4 {
            0 | 1 => transaction.insert("edge", &edge).unwrap(),
            2 => transaction.retract("edge", &edge).unwrap(),
            // A transaction that does not touch `path`: no batch, and no gap either.
            _ => transaction.insert("reading", &numbers(&[step, 1])).unwrap(),
        }
        let changes = transaction.commit().unwrap();
        let expected = changes.of("path");
        match subscription.try_recv() {
            None => assert!(
                expected.is_empty(),
                "step {step}: no batch for {expected:?}"
            ),
            Some(batch) => {
                assert!(!expected.is_empty(), "step {step}: a batch without changes");
                assert_eq!(batch.last, changes.time, "step {step}");
                assert_eq!(batch.rows, expected, "step {step}");
                replica.apply(&batch);
            }
        }
        assert!(
            subscription.try_recv().is_none(),
            "one batch per transaction"
        );
    }
    assert!(replica.batches > 10, "only {} batches", replica.batches);
    assert_eq!(replica.tuples(), engine.read("path", &[]).unwrap());
    assert_eq!(subscription.merges(), 0);
    assert_eq!(subscription.queued_rows(), 0);
}

#[test]
fn a_slow_consumer_gets_merged_batches_of_bounded_size() {
    let mut engine = engine(1);
    let mut sequence = Sequence(11);
    for _ in 0..30 {
        random_reading(&mut engine, &mut sequence);
    }
    let capacity = 8;
    // Never reads until the end, not even the snapshot.
    let never = engine.subscribe("view", capacity).unwrap();
    // Reads the snapshot, then falls behind.
    let behind = engine.subscribe("view", capacity).unwrap();
    let mut behind_replica = Replica::default();
    behind_replica.drain(&behind);
    let size_before = engine.len("view").unwrap();
    // Keeps up by capacity alone: nothing is ever merged.
    let roomy = engine.subscribe("view", 1_000_000).unwrap();
    let mut changed = 0;

    for step in 0..1000 {
        let time = engine.time();
        if random_reading(&mut engine, &mut sequence).count("view") > 0 {
            changed += 1;
        }
        let size = engine.len("view").unwrap();
        // Everything `never` has queued, the snapshot included, nets to the contents.
        assert!(
            never.queued_rows() <= capacity.max(size),
            "step {step}: {} rows queued, capacity {capacity}, view of {size}",
            never.queued_rows()
        );
        // `behind` holds the net changes since its snapshot: at most before + after.
        assert!(
            behind.queued_rows() <= capacity.max(size_before + size),
            "step {step}: {} rows queued, capacity {capacity}, view of {size_before} then {size}",
            behind.queued_rows()
        );
        assert_eq!(engine.time(), time + 1);
    }
    // A last transaction that certainly changes the view, so that every subscription's last
    // batch ends at the engine's time.
    let mut transaction = engine.transaction();
    transaction.insert("reading", &numbers(&[100, 1])).unwrap();
    transaction.commit().unwrap();
    changed += 1;
    assert!(never.merges() > 0);
    assert!(behind.merges() > 0);
    assert_eq!(roomy.merges(), 0);

    let contents = engine.read("view", &[]).unwrap();
    let mut never_replica = Replica::default();
    never_replica.drain(&never);
    behind_replica.drain(&behind);
    let mut roomy_replica = Replica::default();
    roomy_replica.drain(&roomy);
    for (name, replica) in [
        ("never", &never_replica),
        ("behind", &behind_replica),
        ("roomy", &roomy_replica),
    ] {
        assert_eq!(replica.tuples(), contents, "{name}");
        assert_eq!(replica.last, Some(engine.time()), "{name}");
    }
    // The roomy subscription got one batch per transaction that changed the view; the slow
    // ones got far fewer.
    assert_eq!(roomy_replica.batches, 1 + changed);
    assert!(
        changed > 500,
        "only {changed} transactions changed the view"
    );
    assert!(never_replica.batches < 1 + changed / 2);
    assert!(behind_replica.batches < 1 + changed / 2);
}

#[test]
fn a_batch_larger_than_the_capacity_is_delivered_whole() {
    let mut engine = engine(1);
    let mut transaction = engine.transaction();
    for sensor in 0..10 {
        transaction
            .insert("reading", &numbers(&[sensor, 0]))
            .unwrap();
    }
    transaction.commit().unwrap();
    let subscription = engine.subscribe("view", 3).unwrap();
    assert_eq!(subscription.capacity(), 3);
    assert_eq!(subscription.queued_rows(), 10);
    assert_eq!(subscription.merges(), 0);
    let snapshot = subscription.try_recv().unwrap();
    assert_eq!(snapshot.rows.len(), 10);
    assert_eq!(subscription.queued_rows(), 0);
}

#[test]
fn a_dropped_subscription_is_forgotten() {
    let mut engine = engine(2);
    let live = engine.subscribe("path", 4).unwrap();
    let mut replica = Replica::default();
    let mut sequence = Sequence(3);
    for step in 0..200 {
        // Subscriptions come and go, some with batches still queued.
        let dropped = engine.subscribe("path", 2).unwrap();
        let edge = numbers(&[sequence.below(6) as i64, sequence.below(6) as i64]);
        let mut transaction = engine.transaction();
        if step % 3 == 2 {
            transaction.retract("edge", &edge).unwrap();
        } else {
            transaction.insert("edge", &edge).unwrap();
        }
        transaction.commit().unwrap();
        drop(dropped);
        replica.drain(&live);
    }
    let mut transaction = engine.transaction();
    transaction.insert("edge", &numbers(&[9, 10])).unwrap();
    transaction.commit().unwrap();
    replica.drain(&live);
    assert_eq!(replica.tuples(), engine.read("path", &[]).unwrap());
    assert_eq!(replica.last, Some(engine.time()));
}

#[test]
fn recv_returns_none_once_the_engine_is_dropped() {
    let mut engine = engine(1);
    let subscription = engine.subscribe("path", 100).unwrap();
    for edge in [[1, 2], [2, 3]] {
        let mut transaction = engine.transaction();
        transaction.insert("edge", &numbers(&edge)).unwrap();
        transaction.commit().unwrap();
    }
    drop(engine);
    // What was queued is still delivered, then the end.
    let mut replica = Replica::default();
    while let Some(batch) = subscription.recv() {
        replica.apply(&batch);
    }
    assert_eq!(replica.batches, 3);
    let tuples = [[1, 2], [1, 3], [2, 3]];
    assert_eq!(replica.tuples(), tuples.map(|t| numbers(&t)).to_vec());
    assert!(subscription.recv().is_none());
    assert!(subscription.try_recv().is_none());
    assert!(subscription.recv_timeout(Duration::from_secs(60)).is_none());
}

#[test]
fn a_waiting_consumer_wakes_up_when_the_engine_is_dropped() {
    let mut engine = engine(1);
    let subscription = engine.subscribe("path", 100).unwrap();
    assert!(subscription.try_recv().is_some(), "the empty snapshot");
    let (sender, receiver) = mpsc::channel();
    let consumer = std::thread::spawn(move || {
        // Blocks until the engine publishes or goes away.
        let first = subscription.recv();
        let second = subscription.recv();
        sender.send((first, second)).expect("the test waits");
    });
    let mut transaction = engine.transaction();
    transaction.insert("edge", &numbers(&[1, 2])).unwrap();
    transaction.commit().unwrap();
    drop(engine);
    // A consumer that never wakes up fails here rather than hanging the test run.
    let (first, second) = receiver
        .recv_timeout(Duration::from_secs(120))
        .expect("the consumer wakes up once the engine is gone");
    consumer.join().unwrap();
    let first = first.expect("the batch published before the engine went away");
    assert_eq!((first.first, first.last), (1, 1));
    assert_eq!(first.rows, vec![(numbers(&[1, 2]), 1)]);
    assert!(second.is_none());
}

#[test]
fn a_consumer_on_another_thread_receives_everything() {
    let mut engine = engine(2);
    let subscription = engine.subscribe("view", 4).unwrap();
    let consumer = std::thread::spawn(move || {
        let mut replica = Replica::default();
        while let Some(batch) = subscription.recv() {
            replica.apply(&batch);
        }
        replica
    });
    let mut sequence = Sequence(5);
    for _ in 0..500 {
        random_reading(&mut engine, &mut sequence);
    }
    // The last transaction certainly changes the view.
    let mut transaction = engine.transaction();
    transaction.insert("reading", &numbers(&[100, 1])).unwrap();
    transaction.commit().unwrap();
    let contents = engine.read("view", &[]).unwrap();
    let time = engine.time();
    drop(engine);
    let replica = consumer.join().expect("the consumer never panics");
    assert_eq!(replica.tuples(), contents);
    assert_eq!(replica.last, Some(time));
}

#[test]
fn subscribing_to_an_unknown_relation_fails() {
    let mut engine = engine(1);
    assert!(matches!(
        engine.subscribe("nowhere", 10),
        Err(EngineError::UnknownRelation(name)) if name == "nowhere"
    ));
}
