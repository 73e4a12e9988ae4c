//! The load-shedding view recomputed from scratch with crepe, after every event.
//!
//! crepe compiles Datalog rules into Rust at build time and evaluates them semi-naively on the
//! facts it is given; it keeps nothing between runs, so every event costs a whole evaluation.
//! The rules below are the view's joins, filters and negation, as in `rules/power.dl` and
//! `rules/ups.dl`. crepe has no aggregates, so the three aggregates of the view (the draw, a
//! sum; the shedding position, a count; the saving before each workload, a sum) are computed
//! in Rust from what crepe derives: a sort by the shedding order and one pass over it. That is
//! how one would write this view for crepe, and it is the fastest way to recompute it: the
//! order in O(n log n), where the rules' pairwise `shed_before` would be quadratic.
//!
//! Names are numbered ([`Names`]), so that crepe's relations are small `Copy` tuples.

use super::{Names, ShedInputs, ShedView, tier_code};
use crate::events::{Change, Event};
use crate::house::Source;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

mod datalog {
    use super::super::NEVER_SHED;

    crepe::crepe! {
        @input
        pub struct Workload(pub u32, pub u8, pub i64);
        @input
        pub struct Running(pub u32, pub u32);
        @input
        pub struct UpsSource(pub u32, pub bool, pub i64);
        @input
        pub struct Holdoff(pub i64);
        @input
        pub struct Now(pub i64);

        @output
        pub struct Sheddable(pub u32, pub u8, pub i64);
        @output
        pub struct OnBattery(pub u32);

        // sheddable(w, rank, watts) :- running(w, _), workload(w, _, _, _, tier, watts),
        //     tier_rank(tier, rank).
        Sheddable(w, rank, watts) <- Running(w, _), Workload(w, rank, watts), (rank != NEVER_SHED);

        // on_battery(u) :- ups_source(u, "battery", since), now(t), config("ups_holdoff_s", h),
        //     t - since >= h.
        OnBattery(u) <- UpsSource(u, battery, since), (battery), Now(t), Holdoff(h), (t - since >= h);
    }
}

/// The view's inputs in crepe's terms, kept up to date event by event.
struct Inputs {
    now: i64,
    workloads: Vec<datalog::Workload>,
    running: HashSet<(u32, u32)>,
    meters: HashMap<u32, i64>,
    ups: HashMap<u32, (bool, i64)>,
    house_limit: Option<i64>,
    battery_limit: Option<i64>,
    holdoff: Option<i64>,
}

/// The view, recomputed from scratch after every event.
pub struct Recompute {
    names: Names,
    inputs: Inputs,
    /// The shedding order, by workload id, and the workloads to shed, after the last run.
    order: Vec<u32>,
    shed: Vec<u32>,
}

impl Recompute {
    /// Takes the house's inputs and computes the view once (the load).
    pub fn new(start: ShedInputs) -> Recompute {
        let mut names = Names::new(&start);
        let workloads = start
            .workloads
            .iter()
            .map(|(name, (tier, watts))| datalog::Workload(names.id(name), tier_code(tier), *watts))
            .collect();
        let running = start
            .running
            .iter()
            .map(|(workload, node)| (names.id(workload), names.id(node)))
            .collect();
        let meters = start
            .meters
            .iter()
            .map(|(meter, watts)| (names.id(meter), *watts))
            .collect();
        let ups = start
            .ups
            .iter()
            .map(|(ups, (source, since))| (names.id(ups), (*source == Source::Battery, *since)))
            .collect();
        let inputs = Inputs {
            now: start.now,
            workloads,
            running,
            meters,
            ups,
            house_limit: start.setting("house_limit_w"),
            battery_limit: start.setting("battery_limit_w"),
            holdoff: start.setting("ups_holdoff_s"),
        };
        let mut recompute = Recompute {
            names,
            inputs,
            order: Vec::new(),
            shed: Vec::new(),
        };
        recompute.run();
        recompute
    }

    /// Applies one event to the inputs and recomputes the whole view.
    pub fn apply(&mut self, event: &Event) {
        let inputs = &mut self.inputs;
        inputs.now = inputs.now.max(event.time);
        match &event.change {
            Change::Meter {
                meter, draw_watts, ..
            } => {
                let id = self.names.id(meter);
                inputs.meters.insert(id, *draw_watts);
            }
            Change::Ups { ups, source } => {
                let id = self.names.id(ups);
                let battery = *source == Source::Battery;
                let entry = inputs.ups.entry(id).or_insert((battery, event.time));
                if entry.0 != battery {
                    *entry = (battery, event.time);
                }
            }
            Change::Running {
                workload,
                node,
                runs,
            } => {
                let tuple = (self.names.id(workload), self.names.id(node));
                if *runs {
                    inputs.running.insert(tuple);
                } else {
                    inputs.running.remove(&tuple);
                }
            }
            Change::Input { .. }
            | Change::Active { .. }
            | Change::Request { .. }
            | Change::Power { .. } => {}
        }
        self.run();
    }

    /// One evaluation from scratch: crepe for the rules, then the aggregates.
    fn run(&mut self) {
        let inputs = &self.inputs;
        let mut runtime = datalog::Crepe::new();
        runtime.extend(inputs.workloads.iter().copied());
        runtime.extend(inputs.running.iter().map(|&(w, n)| datalog::Running(w, n)));
        runtime.extend(
            inputs
                .ups
                .iter()
                .map(|(&ups, &(battery, since))| datalog::UpsSource(ups, battery, since)),
        );
        runtime.extend(inputs.holdoff.map(datalog::Holdoff));
        runtime.extend([datalog::Now(inputs.now)]);
        let (sheddable, on_battery) = runtime.run();

        // draw(d) :- d = sum x : { house_power(_, x, _) }.
        let draw: i64 = inputs.meters.values().sum();
        // limit(l) :- config("house_limit_w", l), !on_battery(_).
        // limit(min(l, b)) :- config("house_limit_w", l), config("battery_limit_w", b),
        //     on_battery(_).
        let limit = match (inputs.house_limit, on_battery.is_empty()) {
            (Some(house), true) => Some(house),
            (Some(house), false) => inputs.battery_limit.map(|battery| house.min(battery)),
            (None, _) => None,
        };
        // excess(d - l) :- draw(d), limit(l), d > l.
        let excess = limit
            .filter(|limit| draw > *limit)
            .map(|limit| draw - limit);

        // shed_order(w, n + 1) :- sheddable(w, _, _), n = count : { shed_before(_, w) }: the
        // position in the sorted order (ids sort as names do).
        let mut order: Vec<(u8, Reverse<i64>, u32)> = sheddable
            .into_iter()
            .map(|datalog::Sheddable(w, rank, watts)| (rank, Reverse(watts), w))
            .collect();
        order.sort_unstable();
        // shed(w) :- excess(x), saved_before(w, s), s < x, where saved_before sums the draws
        // before w in the order.
        self.shed.clear();
        if let Some(excess) = excess {
            let mut saved = 0;
            for (_, Reverse(watts), workload) in &order {
                if saved < excess {
                    self.shed.push(*workload);
                }
                saved += watts;
            }
        }
        self.order.clear();
        self.order
            .extend(order.iter().map(|(_, _, workload)| *workload));
    }

    /// The rows of the view after the last event.
    pub fn view(&self) -> ShedView {
        ShedView {
            order: self
                .order
                .iter()
                .enumerate()
                .map(|(index, id)| (self.names.name(*id).to_string(), index as i64 + 1))
                .collect(),
            shed: self
                .shed
                .iter()
                .map(|id| self.names.name(*id).to_string())
                .collect(),
        }
    }

    /// The number of rows of the view (`shed_order` and `shed`) after the last event.
    pub fn rows(&self) -> usize {
        self.order.len() + self.shed.len()
    }
}
