//! The events of a running house, one at a time: what the sources report between two
//! decisions, for benchmarks that time how fast the policy follows them.
//!
//! An [`Event`] is one write to one input relation at one time: a meter reading (an upsert of
//! `house_power`), a person at a gaming rig (`last_input`), a node doing work (`last_active`), a
//! request made or withdrawn (`requested`), a node waking or falling asleep (`power_state`), a
//! UPS switching between line and battery (`ups_source`), a workload stopping or starting
//! (`running`). [`Events`] draws them from a seeded generator over a house's facts, in a fixed
//! mix, with event times one to three seconds apart.
//!
//! A benchmark replays thousands of events, and it measures something stationary only if the
//! house stays near where it started. So every change of state is undone by the next event of
//! its kind: a request withdrawn is made again, a node that fell asleep wakes, a UPS that
//! switched to battery switches back, a workload that stopped starts again. Meter readings
//! wander around the house's limit (from 80 % to 110 % of it), so that shedding starts and
//! stops. The same facts and seed give the same events, in every process.

use crate::facts::{FactSet, number, text};
use crate::house::{Power, Source};
use std::collections::{BTreeMap, BTreeSet};
use vigil_engine::trace::{Entry, Field};
use vigil_engine::{ChangeSet, Engine, EngineError, Op, Value};

/// What an event changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A power meter's reading, in watts: an upsert of `house_power`.
    Meter {
        meter: String,
        draw_watts: i64,
        solar_watts: i64,
    },
    /// A person touched the gaming rig now: an upsert of `last_input`.
    Input { node: String },
    /// The node did work now: an upsert of `last_active`.
    Active { node: String },
    /// Somebody asked for the workload, or withdrew the request: `requested`.
    Request { workload: String, requested: bool },
    /// The node is up or asleep from now on: an upsert of `power_state`, stamped.
    Power { node: String, power: Power },
    /// The UPS takes its power from this source from now on: an upsert of `ups_source`,
    /// stamped.
    Ups { ups: String, source: Source },
    /// The workload stopped on the node, or started there: `running`.
    Running {
        workload: String,
        node: String,
        runs: bool,
    },
}

/// The kinds of events, in the order of [`MIX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Meter,
    Input,
    Active,
    Request,
    Power,
    Ups,
    Running,
}

impl Kind {
    /// The kind's name, which labels the event's transaction.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Meter => "meter",
            Kind::Input => "input",
            Kind::Active => "active",
            Kind::Request => "request",
            Kind::Power => "power",
            Kind::Ups => "ups",
            Kind::Running => "running",
        }
    }

    /// The input relation events of this kind write.
    pub fn relation(self) -> &'static str {
        match self {
            Kind::Meter => "house_power",
            Kind::Input => "last_input",
            Kind::Active => "last_active",
            Kind::Request => "requested",
            Kind::Power => "power_state",
            Kind::Ups => "ups_source",
            Kind::Running => "running",
        }
    }
}

/// How often each kind of event comes, in percent. Meters report most often; a kind the house
/// has nothing for (no UPS, no gaming rig) gives its share to the others.
pub const MIX: [(Kind, u64); 7] = [
    (Kind::Meter, 35),
    (Kind::Input, 10),
    (Kind::Active, 10),
    (Kind::Request, 15),
    (Kind::Power, 10),
    (Kind::Ups, 10),
    (Kind::Running, 10),
];

/// One write at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event time, in seconds since the epoch.
    pub time: i64,
    pub change: Change,
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self.change {
            Change::Meter { .. } => Kind::Meter,
            Change::Input { .. } => Kind::Input,
            Change::Active { .. } => Kind::Active,
            Change::Request { .. } => Kind::Request,
            Change::Power { .. } => Kind::Power,
            Change::Ups { .. } => Kind::Ups,
            Change::Running { .. } => Kind::Running,
        }
    }

    /// The write, as the engine takes it: insert or retract, the relation, and the fields
    /// (`None` for a stamp, which the engine fills with the transaction's time).
    pub fn write(&self) -> (Op, &'static str, Vec<Option<Value>>) {
        let symbol = |text: &str| Some(Value::symbol(text));
        let relation = self.kind().relation();
        match &self.change {
            Change::Meter {
                meter,
                draw_watts,
                solar_watts,
            } => (
                Op::Insert,
                relation,
                vec![
                    symbol(meter),
                    Some(Value::Number(*draw_watts)),
                    Some(Value::Number(*solar_watts)),
                ],
            ),
            Change::Input { node } | Change::Active { node } => (
                Op::Insert,
                relation,
                vec![symbol(node), Some(Value::Number(self.time))],
            ),
            Change::Request {
                workload,
                requested,
            } => (op(*requested), relation, vec![symbol(workload)]),
            Change::Power { node, power } => (
                Op::Insert,
                relation,
                vec![symbol(node), symbol(power.name()), None],
            ),
            Change::Ups { ups, source } => (
                Op::Insert,
                relation,
                vec![symbol(ups), symbol(source.name()), None],
            ),
            Change::Running {
                workload,
                node,
                runs,
            } => (op(*runs), relation, vec![symbol(workload), symbol(node)]),
        }
    }

    /// Commits the event alone, at its time, and returns the change set.
    pub fn commit(&self, engine: &mut Engine) -> Result<ChangeSet, EngineError> {
        let (op, relation, fields) = self.write();
        let mut transaction = engine.transaction();
        transaction.at(self.time).event(self.kind().name());
        transaction.write(op, relation, &fields)?;
        transaction.commit()
    }

    /// The event as a trace entry (what `POST /v1/transactions` takes).
    pub fn entry(&self) -> Entry {
        let (op, relation, fields) = self.write();
        let tuple = fields.into_iter().map(Field).collect();
        let writes = BTreeMap::from([(relation.to_string(), vec![tuple])]);
        let mut entry = Entry {
            time: Some(self.time),
            event: Some(self.kind().name().to_string()),
            ..Entry::default()
        };
        match op {
            Op::Insert => entry.insert = writes,
            Op::Retract => entry.retract = writes,
        }
        entry
    }
}

fn op(insert: bool) -> Op {
    if insert { Op::Insert } else { Op::Retract }
}

/// Commits `events` as one transaction, in order, at the last one's time: a collector that
/// buffers readings and sends them together.
pub fn commit_batch(events: &[Event], engine: &mut Engine) -> Result<ChangeSet, EngineError> {
    let mut transaction = engine.transaction();
    if let Some(last) = events.last() {
        transaction.at(last.time).event("batch");
    }
    for event in events {
        let (op, relation, fields) = event.write();
        transaction.write(op, relation, &fields)?;
    }
    transaction.commit()
}

/// SplitMix64 (see `generate.rs` for why a generator is written here and not taken from a
/// crate): a seed must give the same events forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// An endless stream of realistic events over one house. See the module's documentation.
pub struct Events {
    random: SplitMix64,
    time: i64,
    /// What the house may draw, at the start: readings are drawn around it.
    limit: i64,
    /// Every meter and its current draw.
    meters: Vec<(String, i64)>,
    rigs: Vec<String>,
    heavy: Vec<String>,
    /// Workloads that are not essential, which a request changes.
    requestable: Vec<String>,
    requested: BTreeSet<String>,
    /// Heavy nodes with a power state and nothing running: they may sleep and wake.
    sleepers: Vec<String>,
    power: BTreeMap<String, Power>,
    upses: Vec<String>,
    sources: BTreeMap<String, Source>,
    /// Running workloads that are not essential: they may stop and start again.
    stoppable: Vec<(String, String)>,
    /// The event that undoes the last change of each kind, due next.
    undo: BTreeMap<Kind, Change>,
}

impl Events {
    /// Events over the house of `facts`, from its clock on.
    pub fn new(facts: &FactSet, seed: u64) -> Events {
        let config: BTreeMap<&str, i64> = facts
            .tuples("config")
            .iter()
            .map(|t| (text(&t[0]), number(&t[1])))
            .collect();
        let setting = |name: &str, default: i64| config.get(name).copied().unwrap_or(default);
        let sources: BTreeMap<String, (Source, i64)> = facts
            .tuples("ups_source")
            .iter()
            .map(|t| {
                let source = if text(&t[1]) == "battery" {
                    Source::Battery
                } else {
                    Source::Line
                };
                (text(&t[0]).to_string(), (source, number(&t[2])))
            })
            .collect();
        let holdoff = setting("ups_holdoff_s", 30);
        let on_battery = sources
            .values()
            .any(|(source, since)| *source == Source::Battery && facts.now - since >= holdoff);
        let house_limit = setting("house_limit_w", 3_000);
        let limit = if on_battery {
            house_limit.min(setting("battery_limit_w", house_limit))
        } else {
            house_limit
        };
        let roles: BTreeMap<&str, &str> = facts
            .tuples("node_role")
            .iter()
            .map(|t| (text(&t[0]), text(&t[1])))
            .collect();
        let with_role = |wanted: &[&str]| -> Vec<String> {
            roles
                .iter()
                .filter(|(_, role)| wanted.contains(role))
                .map(|(node, _)| node.to_string())
                .collect()
        };
        let tiers: BTreeMap<&str, &str> = facts
            .tuples("workload")
            .iter()
            .map(|t| (text(&t[0]), text(&t[4])))
            .collect();
        let running: Vec<(String, String)> = facts
            .tuples("running")
            .iter()
            .map(|t| (text(&t[0]).to_string(), text(&t[1]).to_string()))
            .collect();
        let hosting: BTreeSet<&str> = running.iter().map(|(_, node)| node.as_str()).collect();
        let power: BTreeMap<String, Power> = facts
            .tuples("power_state")
            .iter()
            .map(|t| {
                let power = if text(&t[1]) == "up" {
                    Power::Up
                } else {
                    Power::Asleep
                };
                (text(&t[0]).to_string(), power)
            })
            .collect();
        let heavy = with_role(&["hypervisor", "gaming"]);
        let sleepers = heavy
            .iter()
            .filter(|node| power.contains_key(*node) && !hosting.contains(node.as_str()))
            .cloned()
            .collect();
        Events {
            random: SplitMix64(seed),
            time: facts.now,
            limit,
            meters: facts
                .tuples("house_power")
                .iter()
                .map(|t| (text(&t[0]).to_string(), number(&t[1])))
                .collect(),
            rigs: with_role(&["gaming"]),
            heavy,
            requestable: tiers
                .iter()
                .filter(|(_, tier)| **tier != "essential")
                .map(|(name, _)| name.to_string())
                .collect(),
            requested: facts
                .tuples("requested")
                .iter()
                .map(|t| text(&t[0]).to_string())
                .collect(),
            sleepers,
            power,
            upses: sources.keys().cloned().collect(),
            sources: sources
                .into_iter()
                .map(|(ups, (source, _))| (ups, source))
                .collect(),
            stoppable: running
                .iter()
                .filter(|(workload, _)| {
                    tiers
                        .get(workload.as_str())
                        .is_some_and(|tier| *tier != "essential")
                })
                .cloned()
                .collect(),
            undo: BTreeMap::new(),
        }
    }

    /// A new change of `kind`, with the change that will undo it; `None` if the house has
    /// nothing for that kind.
    fn change(&mut self, kind: Kind) -> Option<(Change, Option<Change>)> {
        let random = &mut self.random;
        Some(match kind {
            Kind::Meter => {
                if self.meters.is_empty() {
                    return None;
                }
                let index = random.below(self.meters.len() as u64) as usize;
                let others: i64 = self
                    .meters
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, (_, draw))| draw)
                    .sum();
                let target = self.limit * (80 + random.below(31) as i64) / 100;
                let draw_watts = (target - others).max(0);
                self.meters[index].1 = draw_watts;
                let change = Change::Meter {
                    meter: self.meters[index].0.clone(),
                    draw_watts,
                    solar_watts: random.below(80) as i64 * 10,
                };
                (change, None)
            }
            Kind::Input => {
                if self.rigs.is_empty() {
                    return None;
                }
                let node = random.pick(&self.rigs).clone();
                (Change::Input { node }, None)
            }
            Kind::Active => {
                if self.heavy.is_empty() {
                    return None;
                }
                let node = random.pick(&self.heavy).clone();
                (Change::Active { node }, None)
            }
            Kind::Request => {
                if self.requestable.is_empty() {
                    return None;
                }
                let workload = random.pick(&self.requestable).clone();
                let requested = !self.requested.contains(&workload);
                let undo = Change::Request {
                    workload: workload.clone(),
                    requested: !requested,
                };
                (
                    Change::Request {
                        workload,
                        requested,
                    },
                    Some(undo),
                )
            }
            Kind::Power => {
                if self.sleepers.is_empty() {
                    return None;
                }
                let node = random.pick(&self.sleepers).clone();
                let now = self.power[&node];
                let other = match now {
                    Power::Up => Power::Asleep,
                    Power::Asleep => Power::Up,
                };
                let undo = Change::Power {
                    node: node.clone(),
                    power: now,
                };
                (Change::Power { node, power: other }, Some(undo))
            }
            Kind::Ups => {
                if self.upses.is_empty() {
                    return None;
                }
                let ups = random.pick(&self.upses).clone();
                let now = self.sources[&ups];
                let other = match now {
                    Source::Line => Source::Battery,
                    Source::Battery => Source::Line,
                };
                let undo = Change::Ups {
                    ups: ups.clone(),
                    source: now,
                };
                (Change::Ups { ups, source: other }, Some(undo))
            }
            Kind::Running => {
                if self.stoppable.is_empty() {
                    return None;
                }
                let (workload, node) = random.pick(&self.stoppable).clone();
                let undo = Change::Running {
                    workload: workload.clone(),
                    node: node.clone(),
                    runs: true,
                };
                let change = Change::Running {
                    workload,
                    node,
                    runs: false,
                };
                (change, Some(undo))
            }
        })
    }

    /// Keeps the generator's view of the house in step with an event it gives.
    fn note(&mut self, change: &Change) {
        match change {
            Change::Request {
                workload,
                requested,
            } => {
                if *requested {
                    self.requested.insert(workload.clone());
                } else {
                    self.requested.remove(workload);
                }
            }
            Change::Power { node, power } => {
                self.power.insert(node.clone(), *power);
            }
            Change::Ups { ups, source } => {
                self.sources.insert(ups.clone(), *source);
            }
            Change::Meter { .. }
            | Change::Input { .. }
            | Change::Active { .. }
            | Change::Running { .. } => {}
        }
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.time += 1 + self.random.below(3) as i64;
        let total: u64 = MIX.iter().map(|(_, weight)| weight).sum();
        // A house with nothing at all to report (no meter, no node) is not a house; give up
        // after enough draws rather than loop.
        for _ in 0..1_000 {
            let mut draw = self.random.below(total);
            let kind = MIX
                .iter()
                .find(|(_, weight)| {
                    let found = draw < *weight;
                    draw = draw.saturating_sub(*weight);
                    found
                })
                .map_or(Kind::Meter, |(kind, _)| *kind);
            let change = match self.undo.remove(&kind) {
                Some(undo) => undo,
                None => match self.change(kind) {
                    Some((change, undo)) => {
                        if let Some(undo) = undo {
                            self.undo.insert(kind, undo);
                        }
                        change
                    }
                    None => continue,
                },
            };
            self.note(&change);
            return Some(Event {
                time: self.time,
                change,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate;

    #[test]
    fn the_same_house_and_seed_give_the_same_events_and_changes_are_undone() {
        let facts = FactSet::from_house(&generate(4, 12, 120, 2));
        let first: Vec<Event> = Events::new(&facts, 9).take(400).collect();
        let again: Vec<Event> = Events::new(&facts, 9).take(400).collect();
        assert_eq!(first, again);
        assert!(first.windows(2).all(|pair| pair[0].time < pair[1].time));
        let kinds: BTreeSet<Kind> = first.iter().map(Event::kind).collect();
        assert!(kinds.len() >= 5, "{kinds:?}");
        // Each toggled request is undone by the next request event.
        let requests: Vec<&Change> = first
            .iter()
            .filter(|e| e.kind() == Kind::Request)
            .map(|e| &e.change)
            .collect();
        for pair in requests.chunks(2) {
            if let [
                Change::Request {
                    workload: a,
                    requested: x,
                },
                Change::Request {
                    workload: b,
                    requested: y,
                },
            ] = pair
            {
                assert_eq!((a, *x), (b, !*y));
            }
        }
    }

    #[test]
    fn an_event_is_a_trace_entry_with_one_write() {
        let event = Event {
            time: 100,
            change: Change::Ups {
                ups: "ups".to_string(),
                source: Source::Battery,
            },
        };
        let entry = event.entry();
        assert_eq!(entry.time, Some(100));
        assert_eq!(
            entry.insert["ups_source"],
            vec![vec![
                Field(Some(Value::symbol("ups"))),
                Field(Some(Value::symbol("battery"))),
                Field(None),
            ]]
        );
    }
}
