//! The load-shedding view as a differential dataflow written by hand for it.
//!
//! This is what one would write with differential dataflow directly, knowing the view: typed
//! rows of numbered names (`u32`) and integers rather than a general row format, one operator
//! per step of the rules, and the shedding order as a single `reduce` that sorts the running
//! workloads and numbers them (the rules' pairwise `shed_before` would be quadratic). Each
//! event becomes a few input updates at the next epoch, and the worker steps until the probe
//! has passed it, as Vigil's engine does for a transaction.
//!
//! The dataflow runs on one timely worker in the calling thread, owned by [`ShedDataflow`].

use super::{NEVER_SHED, Names, ShedInputs, ShedView, tier_code};
use crate::events::{Change, Event};
use crate::house::Source;
use differential_dataflow::input::{Input, InputSession};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use timely::communication::Allocator;
use timely::communication::allocator::Thread;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

type Time = u64;

/// Config settings the view reads, as the `config` input keys them.
const HOUSE_LIMIT: u8 = 0;
const BATTERY_LIMIT: u8 = 1;
const HOLDOFF: u8 = 2;

/// The id of the marker meter that always reads 0 W, so that the draw is 0 rather than
/// missing when no meter reports (as the engine's sum of an empty group is 0).
const MARKER: u32 = u32::MAX;

/// Rows of an output and their accumulated multiplicities.
type Output<D> = Rc<RefCell<HashMap<D, isize>>>;

/// The view, maintained incrementally by a hand-written dataflow.
pub struct ShedDataflow {
    worker: Worker,
    names: Names,
    /// The inputs as last fed, to retract what an event replaces.
    current: ShedInputs,
    running: InputSession<Time, (u32, u32), isize>,
    workloads: InputSession<Time, (u32, (u8, i64)), isize>,
    meters: InputSession<Time, (u32, i64), isize>,
    ups: InputSession<Time, (u32, (bool, i64)), isize>,
    config: InputSession<Time, (u8, i64), isize>,
    now: InputSession<Time, i64, isize>,
    probe: ProbeHandle<Time>,
    order: Output<(u32, i64)>,
    shed: Output<u32>,
    epoch: Time,
}

impl ShedDataflow {
    /// Builds the dataflow on a worker of its own, feeds it the house's inputs, and runs it
    /// until the view is complete (the load).
    pub fn new(start: &ShedInputs) -> ShedDataflow {
        let mut worker = Worker::new(
            timely::WorkerConfig::default(),
            Allocator::Thread(Thread::default()),
            Some(std::time::Instant::now()),
        );
        let probe = ProbeHandle::new();
        let order: Output<(u32, i64)> = Rc::default();
        let shed: Output<u32> = Rc::default();
        let (order_sink, shed_sink) = (order.clone(), shed.clone());
        let (running, workloads, meters, ups, config, now) =
            worker.dataflow::<Time, _, _>(|scope| {
                let (running_input, running) = scope.new_collection::<(u32, u32), isize>();
                let (workloads_input, workloads) =
                    scope.new_collection::<(u32, (u8, i64)), isize>();
                let (meters_input, meters) = scope.new_collection::<(u32, i64), isize>();
                let (ups_input, ups) = scope.new_collection::<(u32, (bool, i64)), isize>();
                let (config_input, config) = scope.new_collection::<(u8, i64), isize>();
                let (now_input, now) = scope.new_collection::<i64, isize>();

                // sheddable(w, rank, watts) :- running(w, _), workload(w, _, _, _, tier, watts),
                //     tier_rank(tier, rank).
                let sheddable = workloads
                    .filter(|(_, (rank, _))| *rank != NEVER_SHED)
                    .semijoin(running.map(|(workload, _)| workload).distinct());

                // shed_order(w, n + 1) :- sheddable(w, _, _), n = count : { shed_before(_, w) }.
                // saved_before(w, s) :- sheddable(w, _, _),
                //     s = sum x : { shed_before(o, w), sheddable(o, _, x) }.
                // One group: its values arrive sorted by (rank, -watts, id), the shedding order.
                let order = sheddable
                    .map(|(workload, (rank, watts))| ((), (rank, -watts, workload)))
                    .reduce(|_, input, output| {
                        let mut saved = 0;
                        for (position, ((_, minus_watts, workload), _)) in input.iter().enumerate()
                        {
                            output.push(((*workload, position as i64 + 1, saved), 1));
                            saved -= minus_watts;
                        }
                    });
                order
                    .clone()
                    .map(|((), (workload, position, _))| (workload, position))
                    .inspect(move |(row, _, diff)| {
                        *order_sink.borrow_mut().entry(*row).or_default() += diff;
                    })
                    .probe_with(&probe);

                // draw(d) :- d = sum x : { house_power(_, x, _) }.
                let draw = meters
                    .map(|(_, watts)| ((), watts))
                    .reduce(|_, input, output| {
                        let total: i64 = input
                            .iter()
                            .map(|(watts, count)| **watts * *count as i64)
                            .sum();
                        output.push((total, 1));
                    });

                // on_battery(u) :- ups_source(u, "battery", since), now(t),
                //     config("ups_holdoff_s", h), t - since >= h.
                let setting = |key: u8| {
                    config
                        .clone()
                        .filter(move |(name, _)| *name == key)
                        .map(|(_, value)| ((), value))
                };
                let on_battery = ups
                    .filter(|(_, (battery, _))| *battery)
                    .map(|(_, (_, since))| ((), since))
                    .join(now.map(|t| ((), t)))
                    .join(setting(HOLDOFF))
                    .filter(|((), ((since, t), holdoff))| t - since >= *holdoff)
                    .map(|_| ())
                    .distinct();

                // limit(l) :- config("house_limit_w", l), !on_battery(_).
                // limit(min(l, b)) :- config("house_limit_w", l), config("battery_limit_w", b),
                //     on_battery(_).
                let normal = setting(HOUSE_LIMIT).antijoin(on_battery.clone());
                let lowered = setting(HOUSE_LIMIT)
                    .join(setting(BATTERY_LIMIT))
                    .semijoin(on_battery)
                    .map(|((), (house, battery))| ((), house.min(battery)));
                let limit = normal.concat(lowered);

                // excess(d - l) :- draw(d), limit(l), d > l.
                let excess = draw
                    .join(limit)
                    .filter(|((), (draw, limit))| draw > limit)
                    .map(|((), (draw, limit))| ((), draw - limit));

                // shed(w) :- excess(x), saved_before(w, s), s < x.
                order
                    .join(excess)
                    .filter(|((), ((_, _, saved), excess))| saved < excess)
                    .map(|((), ((workload, _, _), _))| workload)
                    .inspect(move |(row, _, diff)| {
                        *shed_sink.borrow_mut().entry(*row).or_default() += diff;
                    })
                    .probe_with(&probe);

                (
                    running_input,
                    workloads_input,
                    meters_input,
                    ups_input,
                    config_input,
                    now_input,
                )
            });
        let mut dataflow = ShedDataflow {
            worker,
            names: Names::new(start),
            current: start.clone(),
            running,
            workloads,
            meters,
            ups,
            config,
            now,
            probe,
            order,
            shed,
            epoch: 0,
        };
        dataflow.load(start);
        dataflow
    }

    fn load(&mut self, start: &ShedInputs) {
        let names = &mut self.names;
        for (name, (tier, watts)) in &start.workloads {
            self.workloads
                .insert((names.id(name), (tier_code(tier), *watts)));
        }
        for (workload, node) in &start.running {
            self.running.insert((names.id(workload), names.id(node)));
        }
        self.meters.insert((MARKER, 0));
        for (meter, watts) in &start.meters {
            self.meters.insert((names.id(meter), *watts));
        }
        for (ups, (source, since)) in &start.ups {
            self.ups
                .insert((names.id(ups), (*source == Source::Battery, *since)));
        }
        for (key, name) in [
            (HOUSE_LIMIT, "house_limit_w"),
            (BATTERY_LIMIT, "battery_limit_w"),
            (HOLDOFF, "ups_holdoff_s"),
        ] {
            if let Some(value) = start.setting(name) {
                self.config.insert((key, value));
            }
        }
        self.now.insert(start.now);
        self.advance();
    }

    /// Feeds one event to the dataflow and runs it until the view has caught up.
    pub fn apply(&mut self, event: &Event) {
        let current = &mut self.current;
        let names = &mut self.names;
        if event.time > current.now {
            self.now.remove(current.now);
            self.now.insert(event.time);
        }
        match &event.change {
            Change::Meter {
                meter, draw_watts, ..
            } => {
                let id = names.id(meter);
                if let Some(old) = current.meters.get(meter) {
                    self.meters.remove((id, *old));
                }
                self.meters.insert((id, *draw_watts));
            }
            Change::Ups { ups, source } => {
                let id = names.id(ups);
                let battery = *source == Source::Battery;
                match current.ups.get(ups) {
                    Some((old, _)) if old == source => {}
                    Some((old, since)) => {
                        self.ups.remove((id, (*old == Source::Battery, *since)));
                        self.ups.insert((id, (battery, event.time)));
                    }
                    None => self.ups.insert((id, (battery, event.time))),
                }
            }
            Change::Running {
                workload,
                node,
                runs,
            } => {
                let tuple = (workload.clone(), node.clone());
                let ids = (names.id(workload), names.id(node));
                match (*runs, current.running.contains(&tuple)) {
                    (true, false) => self.running.insert(ids),
                    (false, true) => self.running.remove(ids),
                    _ => {}
                }
            }
            Change::Input { .. }
            | Change::Active { .. }
            | Change::Request { .. }
            | Change::Power { .. } => {}
        }
        current.apply(event);
        self.advance();
    }

    /// Closes the current epoch and steps the worker until both outputs are complete for it.
    fn advance(&mut self) {
        self.epoch += 1;
        let epoch = self.epoch;
        self.running.advance_to(epoch);
        self.workloads.advance_to(epoch);
        self.meters.advance_to(epoch);
        self.ups.advance_to(epoch);
        self.config.advance_to(epoch);
        self.now.advance_to(epoch);
        self.running.flush();
        self.workloads.flush();
        self.meters.flush();
        self.ups.flush();
        self.config.flush();
        self.now.flush();
        let probe = &self.probe;
        self.worker.step_while(|| probe.less_than(&epoch));
    }

    /// The rows of the view now.
    pub fn view(&self) -> ShedView {
        ShedView {
            order: self
                .order
                .borrow()
                .iter()
                .filter(|(_, diff)| **diff > 0)
                .map(|((workload, position), _)| {
                    (self.names.name(*workload).to_string(), *position)
                })
                .collect(),
            shed: self
                .shed
                .borrow()
                .iter()
                .filter(|(_, diff)| **diff > 0)
                .map(|(workload, _)| self.names.name(*workload).to_string())
                .collect(),
        }
    }

    /// The number of rows of the view (`shed_order` and `shed`).
    pub fn rows(&self) -> usize {
        let order = self.order.borrow().values().filter(|d| **d > 0).count();
        let shed = self.shed.borrow().values().filter(|d| **d > 0).count();
        order + shed
    }
}
