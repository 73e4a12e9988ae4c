//! Two other implementations of one view of the policy, load shedding, for benchmarks to
//! measure Vigil against: [`crepe`] recomputes it from scratch, [`dataflow`] maintains it with
//! a differential dataflow written by hand for it.
//!
//! The view is `shed_order(w, position)` and `shed(w)` of `rules/power.dl`: every running
//! workload that is not essential, speculative before normal, within a tier the biggest draw
//! first, equal draws by name; and, when the house draws more than its limit (lower while a UPS
//! has been on battery past the hold-off, `rules/ups.dl`), the workloads that must go, in that
//! order, until what is shed covers the excess. Its inputs are `workload`, `running`,
//! `house_power`, `ups_source`, `config` and the clock, which [`ShedInputs`] holds.
//!
//! Both baselines are checked against the engine running the policy (see the tests of this
//! module): their rows are the engine's, on generated houses and after every event of a
//! stream, so that a benchmark compares implementations of the same thing.

pub mod crepe;
pub mod dataflow;

use crate::events::{Change, Event};
use crate::facts::{FactSet, number, text};
use crate::house::Source;
use std::collections::{BTreeMap, BTreeSet};
use vigil_engine::{Engine, EngineError, Value};

/// The rows of the load-shedding view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShedView {
    /// `shed_order(w, position)`, positions from 1.
    pub order: BTreeSet<(String, i64)>,
    /// `shed(w)`.
    pub shed: BTreeSet<String>,
}

impl ShedView {
    /// The view as an engine running the policy (or any program with the two relations)
    /// holds it now.
    pub fn of_engine(engine: &Engine) -> Result<ShedView, EngineError> {
        let order = engine
            .read("shed_order", &[])?
            .iter()
            .map(|t| (text(&t[0]).to_string(), number(&t[1])))
            .collect();
        let shed = engine
            .read("shed", &[])?
            .iter()
            .map(|t| text(&t[0]).to_string())
            .collect();
        Ok(ShedView { order, shed })
    }

    /// A 64-bit FNV-1a digest of the rows, to compare views computed in different processes.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (workload, position) in &self.order {
            feed(workload.as_bytes());
            feed(&position.to_le_bytes());
        }
        feed(b"\x00shed\x00");
        for workload in &self.shed {
            feed(workload.as_bytes());
            feed(b"\x00");
        }
        hash
    }
}

/// What the view reads: the current tuples of its input relations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShedInputs {
    /// The clock, in seconds.
    pub now: i64,
    /// Workload to its tier and draw (W).
    pub workloads: BTreeMap<String, (String, i64)>,
    /// `running(workload, node)`.
    pub running: BTreeSet<(String, String)>,
    /// Meter to its draw (W).
    pub meters: BTreeMap<String, i64>,
    /// UPS to its source and since when.
    pub ups: BTreeMap<String, (Source, i64)>,
    /// Every `config` setting.
    pub config: BTreeMap<String, i64>,
}

impl ShedInputs {
    pub fn from_facts(facts: &FactSet) -> ShedInputs {
        ShedInputs {
            now: facts.now,
            workloads: facts
                .tuples("workload")
                .iter()
                .map(|t| {
                    (
                        text(&t[0]).to_string(),
                        (text(&t[4]).to_string(), number(&t[5])),
                    )
                })
                .collect(),
            running: facts
                .tuples("running")
                .iter()
                .map(|t| (text(&t[0]).to_string(), text(&t[1]).to_string()))
                .collect(),
            meters: facts
                .tuples("house_power")
                .iter()
                .map(|t| (text(&t[0]).to_string(), number(&t[1])))
                .collect(),
            ups: facts
                .tuples("ups_source")
                .iter()
                .map(|t| (text(&t[0]).to_string(), (source(&t[1]), number(&t[2]))))
                .collect(),
            config: facts
                .tuples("config")
                .iter()
                .map(|t| (text(&t[0]).to_string(), number(&t[1])))
                .collect(),
        }
    }

    /// Applies an event as the engine does: the clock moves to its time; a reading replaces
    /// the meter's; a UPS's `since` moves only when its source changes (the stamp).
    pub fn apply(&mut self, event: &Event) {
        self.now = self.now.max(event.time);
        match &event.change {
            Change::Meter {
                meter, draw_watts, ..
            } => {
                self.meters.insert(meter.clone(), *draw_watts);
            }
            Change::Ups { ups, source } => {
                let entry = self.ups.entry(ups.clone()).or_insert((*source, event.time));
                if entry.0 != *source {
                    *entry = (*source, event.time);
                }
            }
            Change::Running {
                workload,
                node,
                runs,
            } => {
                let tuple = (workload.clone(), node.clone());
                if *runs {
                    self.running.insert(tuple);
                } else {
                    self.running.remove(&tuple);
                }
            }
            Change::Input { .. }
            | Change::Active { .. }
            | Change::Request { .. }
            | Change::Power { .. } => {}
        }
    }

    /// A config setting.
    pub fn setting(&self, name: &str) -> Option<i64> {
        self.config.get(name).copied()
    }
}

fn source(value: &Value) -> Source {
    if text(value) == "battery" {
        Source::Battery
    } else {
        Source::Line
    }
}

/// A tier as the typed baselines carry it: its place in the shedding order, or
/// [`NEVER_SHED`] for essential workloads (and tiers the policy does not know).
pub fn tier_code(tier: &str) -> u8 {
    match tier {
        "speculative" => 0,
        "normal" => 1,
        _ => NEVER_SHED,
    }
}

/// The tier code of workloads that are never shed.
pub const NEVER_SHED: u8 = u8::MAX;

/// Names as the typed baselines carry them: small integers. The workloads of the inventory
/// come first, numbered in the order of their names, so that comparing two ids compares the
/// names (the shedding order's last tie-break); other names (nodes, meters, UPSes, workloads
/// unknown to the inventory) are numbered after them as they come.
#[derive(Clone, Debug, Default)]
pub struct Names {
    ids: std::collections::HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    pub fn new(inputs: &ShedInputs) -> Names {
        let mut names = Names::default();
        for workload in inputs.workloads.keys() {
            names.id(workload);
        }
        names
    }

    /// The id of a name, numbering it if it is new.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Events;
    use crate::generate;
    use std::path::Path;
    use vigil_engine::Options;

    fn policy() -> vigil_engine::ir::Program {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/homelab.dl");
        vigil_engine::compile_file(&path).unwrap_or_else(|d| panic!("{}: {d}", path.display()))
    }

    /// Loads the house of `facts` into a fresh engine, as the benchmark does (a facts
    /// directory, one transaction).
    fn engine_with(facts_dir: &Path) -> Engine {
        let mut engine = Engine::new(policy(), Options { workers: 1 }).expect("the engine");
        engine.load_facts(facts_dir).expect("the facts load");
        engine
    }

    /// The engine, crepe recomputing and the typed dataflow agree on the view after the load
    /// and after every event, on generated houses of several sizes.
    #[test]
    fn both_baselines_compute_the_engines_rows_after_every_event() {
        let mut shed_seen = 0;
        let mut changes_seen = 0;
        for (seed, nodes) in [(1, 6), (2, 10), (3, 16), (7, 24)] {
            let house = generate(seed, nodes, nodes * 10, 2);
            let dir = std::env::temp_dir().join(format!(
                "vigil-homelab-baseline-{}-{seed}",
                std::process::id()
            ));
            house.write_facts(&dir).expect("the facts are written");
            let mut engine = engine_with(&dir);
            std::fs::remove_dir_all(&dir).ok();
            let facts = FactSet::from_house(&house);
            let mut inputs = ShedInputs::from_facts(&facts);
            let events: Vec<Event> = Events::new(&facts, seed).take(60).collect();
            let mut recompute = crepe::Recompute::new(inputs.clone());
            let mut typed = dataflow::ShedDataflow::new(&inputs);
            let expected = ShedView::of_engine(&engine).expect("the view");
            assert_eq!(
                recompute.view(),
                expected,
                "crepe, house {seed}, after the load"
            );
            assert_eq!(
                typed.view(),
                expected,
                "dataflow, house {seed}, after the load"
            );
            let mut previous = expected;
            for (index, event) in events.iter().enumerate() {
                event.commit(&mut engine).expect("the event commits");
                inputs.apply(event);
                recompute.apply(event);
                typed.apply(event);
                let expected = ShedView::of_engine(&engine).expect("the view");
                assert_eq!(
                    recompute.view(),
                    expected,
                    "crepe, house {seed}, after event {index}: {event:?}"
                );
                assert_eq!(
                    typed.view(),
                    expected,
                    "dataflow, house {seed}, after event {index}: {event:?}"
                );
                shed_seen += usize::from(!expected.shed.is_empty());
                changes_seen += usize::from(expected != previous);
                previous = expected;
            }
        }
        // The events do move the view: shedding starts and stops.
        assert!(shed_seen > 10, "shedding in {shed_seen} states");
        assert!(changes_seen > 10, "the view changed {changes_seen} times");
    }
}
