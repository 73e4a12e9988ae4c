//! The simulator of the sample house: what `vigil serve` runs without a config.
//!
//! It plays one day of the house in `fixtures/homelab/`, compressed into minutes, through the
//! same path as any source: transactions on the [`Core`], journaled like the rest. Every
//! simulated minute the meter reports the house's draw, computed from what the engine knows
//! runs (the nodes that are up, the workloads and their watts, a game) plus the household's
//! own load; the UPS reports its battery while it discharges or recharges. A script adds the
//! day's events: work finishing and heavy work requested, two harvested artifacts (one
//! corrupt on arrival), the evening cooking peak, a game session, a short UPS blip and then an
//! outage.
//!
//! The actuators run dry: after each of its transactions the simulator drives the actuation
//! loop ([`Actuation::pass`]), which journals each action of the `act` view as the command
//! Vigil would send (the Wake-on-LAN packet, the Proxmox call, the command line) and prints
//! it; the simulated house answers each dry-run record as the real one would, a little later
//! and through the same input relations (the node reports `up` after its boot time, the
//! workload reports running). Actions that no actuator binding carries out (the harvest's:
//! the edge nodes and the archive act on those themselves) are played by the house directly
//! and printed as such. The loop is level triggered: the `act` view is read every simulated
//! minute, so actions decided through the API are carried out too, and a restarted daemon
//! picks up where the journal left off.

use super::actuators::{Actuation, Line};
use super::core::{Core, Refusal};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use vigil_engine::Value;
use vigil_engine::trace::{Entry, Field};

/// The sample house's clock at the start of the day (`fixtures/homelab/now.facts`: 02:00 UTC).
pub const DAY_START: i64 = 1_796_004_000;
const DAY: i64 = 86_400;
/// Telemetry every simulated minute.
const STEP: i64 = 60;

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Write {
    Insert(&'static str, Vec<Cell>),
    Retract(&'static str, Vec<Cell>),
}

/// A column of a write: a value, or `_` (a stamp the engine sets, a column a retraction by
/// key leaves open).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    Text(String),
    Number(i64),
    Open,
}

fn text(value: &str) -> Cell {
    Cell::Text(value.to_string())
}

impl Cell {
    fn field(&self) -> Field {
        Field(match self {
            Cell::Text(value) => Some(Value::symbol(value)),
            Cell::Number(value) => Some(Value::Number(*value)),
            Cell::Open => None,
        })
    }
}

/// Something the house does at a moment: a scripted event or the answer to an action.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    /// Reported as the transaction's event.
    Event(String, Vec<Write>),
    /// The household's own draw changes (W); not an input of its own, it shows in the meter.
    Household(String, i64),
    /// The mains fail (`false`) or come back (`true`).
    Mains(String, bool),
    /// A person plays on the gaming rig for so many seconds: the rig reports input every
    /// minute.
    Game(String, i64),
    /// The harvest task finished: the edge that works on it reports the artifact, and it
    /// arrives with the given central hash.
    Harvest {
        label: String,
        task: &'static str,
        source: &'static str,
        version: i64,
        bytes: i64,
        reported: &'static str,
        arrived: &'static str,
    },
}

/// The day's script: (seconds after 02:00, what happens).
fn script() -> Vec<(i64, Happening)> {
    let hm = |h: i64, m: i64| (h - 2).rem_euclid(24) * 3600 + m * 60;
    let requested = |label: &str, on: bool, workloads: &[&str]| {
        let writes = workloads
            .iter()
            .map(|w| {
                let tuple = vec![text(w)];
                if on {
                    Write::Insert("requested", tuple)
                } else {
                    Write::Retract("requested", tuple)
                }
            })
            .collect();
        Happening::Event(label.to_string(), writes)
    };
    vec![
        (
            hm(2, 40),
            requested("the LoRA training run finished", false, &["lora-train"]),
        ),
        (
            hm(3, 30),
            requested("the SDXL batch finished", false, &["sdxl-batch"]),
        ),
        (
            hm(4, 45),
            requested("the nightly backup finished", false, &["backup"]),
        ),
        (
            hm(6, 10),
            Happening::Harvest {
                label: "harvest: the Wikipedia dump arrived".into(),
                task: "zim-2026-11",
                source: "wikipedia-zim",
                version: 20_261_126,
                bytes: 103_079_215_104,
                reported: "e3b7a41f",
                arrived: "e3b7a41f",
            },
        ),
        (
            hm(6, 40),
            Happening::Event(
                "harvest: a feeds update was downloaded".into(),
                vec![Write::Insert(
                    "harvest_task",
                    vec![text("feeds-2026-11-26"), text("feeds")],
                )],
            ),
        ),
        (
            hm(7, 5),
            Happening::Harvest {
                label: "harvest: the feeds update arrived, one byte flipped on the way".into(),
                task: "feeds-2026-11-26",
                source: "feeds",
                version: 20_261_126,
                bytes: 1_048_576,
                reported: "c0ffee11",
                arrived: "c0ffee1f",
            },
        ),
        (
            hm(7, 30),
            Happening::Household("the household wakes up: kettle, lights".into(), 900),
        ),
        (
            hm(9, 0),
            Happening::Household("the household settles".into(), 350),
        ),
        (
            hm(10, 0),
            requested(
                "someone asks for a media transcode",
                true,
                &["media-transcode"],
            ),
        ),
        (
            hm(13, 0),
            requested(
                "heavy requests: an SDXL batch and a LoRA training run",
                true,
                &["sdxl-batch", "lora-train"],
            ),
        ),
        (
            hm(15, 0),
            requested("the chat model is no longer needed", false, &["llm-chat"]),
        ),
        (
            hm(17, 30),
            Happening::Household("cooking: the oven and the hob are on".into(), 2300),
        ),
        (hm(18, 40), Happening::Household("cooking done".into(), 450)),
        (
            hm(19, 0),
            Happening::Game("a game session starts on the gaming rig".into(), 9000),
        ),
        (
            hm(22, 40),
            Happening::Mains("a short blip on the mains".into(), false),
        ),
        (
            hm(22, 40) + 8,
            Happening::Mains("the mains are back after 8 s".into(), true),
        ),
        (
            hm(23, 10),
            Happening::Mains("power outage: the UPS runs on battery".into(), false),
        ),
        (
            hm(0, 5),
            Happening::Mains("the mains are back".into(), true),
        ),
    ]
}

/// What the simulated house knows of itself that the engine does not hold.
struct House {
    household_watts: i64,
    /// On line power, or on battery.
    mains: bool,
    charge: f64,
    /// The end of the game session, if one is on.
    game_until: Option<i64>,
    /// The meter's last reading (W).
    draw: i64,
    /// Hardware, read from the engine once: idle W, peak W, MAC per node; W per workload.
    nodes: BTreeMap<String, (i64, i64, String)>,
    workloads: BTreeMap<String, (i64, String)>,
}

/// What is up and what runs.
#[derive(Default)]
struct Running {
    up: BTreeSet<String>,
    running: BTreeSet<(String, String)>,
    ray: BTreeSet<String>,
}

pub struct Simulator {
    core: Core,
    /// Simulated seconds per wall second; 0 runs as fast as the engine goes.
    speed: f64,
    house: House,
    /// Things due, in time order.
    due: BinaryHeap<Reverse<(i64, u64, Happening)>>,
    sequence: u64,
    /// The `act` rows that no actuator carries out, played by the house until they leave
    /// the view.
    carried_out: BTreeSet<String>,
    /// The actuation loop, and its journal lines.
    actuation: Arc<Actuation>,
    lines: broadcast::Receiver<Line>,
}

/// `HH:MM:SS` of an event time, UTC.
pub fn clock(now: i64) -> String {
    let seconds = now.rem_euclid(DAY);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

impl Simulator {
    pub async fn new(
        core: Core,
        speed: f64,
        actuation: Arc<Actuation>,
    ) -> Result<Simulator, String> {
        let lines = actuation.subscribe();
        let mut simulator = Simulator {
            actuation,
            lines,
            core,
            speed,
            house: House {
                household_watts: 350,
                mains: true,
                charge: 100.0,
                game_until: None,
                draw: 0,
                nodes: BTreeMap::new(),
                workloads: BTreeMap::new(),
            },
            due: BinaryHeap::new(),
            sequence: 0,
            carried_out: BTreeSet::new(),
        };
        for row in simulator.ask("node(N, _, _, _, _, Idle, Peak, _)").await? {
            if let [name, idle, peak] = row.as_slice() {
                simulator.house.nodes.insert(
                    name.to_string(),
                    (number(idle), number(peak), String::new()),
                );
            }
        }
        for row in simulator.ask("node_mac(N, M)").await? {
            if let [name, mac] = row.as_slice()
                && let Some(node) = simulator.house.nodes.get_mut(&name.to_string())
            {
                node.2 = mac.to_string();
            }
        }
        for row in simulator.ask("workload(W, _, _, _, _, Watts)").await? {
            if let [name, watts] = row.as_slice() {
                simulator
                    .house
                    .workloads
                    .insert(name.to_string(), (number(watts), String::new()));
            }
        }
        for row in simulator.ask("workload_kind(W, K)").await? {
            if let [name, kind] = row.as_slice()
                && let Some(workload) = simulator.house.workloads.get_mut(&name.to_string())
            {
                workload.1 = kind.to_string();
            }
        }
        if simulator.house.nodes.is_empty() {
            return Err("the program's `node` relation is empty: nothing to simulate".into());
        }
        Ok(simulator)
    }

    /// The rows of a query, one value per variable.
    async fn ask(&self, query: &str) -> Result<Vec<Vec<Value>>, String> {
        let answer = self
            .core
            .query(query.to_string())
            .await
            .map_err(|refusal| match refusal {
                Refusal::Invalid(message) | Refusal::Failed(message) => {
                    format!("the simulator's query `{query}` failed: {message}")
                }
            })?;
        Ok(answer
            .rows
            .into_iter()
            .map(|row| row.into_iter().filter_map(|field| field.0).collect())
            .collect())
    }

    /// The first value of a query's first row.
    async fn first(&self, query: &str) -> Result<Option<String>, String> {
        Ok(self
            .ask(query)
            .await?
            .first()
            .and_then(|row| row.first())
            .map(ToString::to_string))
    }

    fn schedule(&mut self, at: i64, happening: Happening) {
        self.sequence += 1;
        self.due.push(Reverse((at, self.sequence, happening)));
    }

    /// Plays the rest of the day from the engine's event time, then returns.
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Result<(), String> {
        let start = self.core.status().await.map_err(refusal)?.now;
        let end = DAY_START + DAY;
        if start >= end {
            say!(
                "{} simulator: the simulated day is over; serving the state as it is (start from an empty data directory to play it again)",
                clock(start)
            );
            return Ok(());
        }
        for (offset, happening) in script() {
            if DAY_START + offset > start {
                self.schedule(DAY_START + offset, happening);
            }
        }
        say!(
            "{} simulator: the sample house's day, {}; actuators in dry-run",
            clock(start),
            if self.speed > 0.0 {
                format!(
                    "{:.0} simulated seconds per second (a day in {:.0} min)",
                    self.speed,
                    DAY as f64 / self.speed / 60.0
                )
            } else {
                "as fast as the engine goes".to_string()
            }
        );
        // Actions already decided (a fresh house, or a restart) are carried out first.
        self.carry_out(start).await?;
        let wall_start = tokio::time::Instant::now();
        let mut next_reading = start - start.rem_euclid(STEP) + STEP;
        while next_reading <= end {
            let now = match self.due.peek() {
                Some(Reverse((at, _, _))) if *at < next_reading => *at,
                _ => next_reading,
            };
            if self.speed > 0.0 {
                let at = wall_start + Duration::from_secs_f64((now - start) as f64 / self.speed);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    _ = stopped.changed() => return Ok(()),
                }
            } else if *stopped.borrow() {
                return Ok(());
            }
            let mut entry = Entry {
                time: Some(now),
                ..Entry::default()
            };
            let mut labels = Vec::new();
            while let Some(Reverse((at, _, _))) = self.due.peek()
                && *at == now
            {
                let Some(Reverse((_, _, happening))) = self.due.pop() else {
                    break;
                };
                self.happen(now, happening, &mut entry, &mut labels).await?;
            }
            if now == next_reading {
                self.readings(now, &mut entry).await?;
                next_reading += STEP;
            }
            self.meter(now, &mut entry).await?;
            for label in &labels {
                say!("{} event    {label}", clock(now));
            }
            entry.event = Some(if labels.is_empty() {
                "telemetry".to_string()
            } else {
                labels.join("; ")
            });
            if let Err(refusal) = self.core.transact(entry).await {
                match refusal {
                    // Time moved past `now` through the API: the reading is stale; go on.
                    Refusal::Invalid(message) => {
                        say_err!("{} simulator: a reading was refused: {message}", clock(now));
                    }
                    Refusal::Failed(message) => return Err(message),
                }
            }
            self.carry_out(now).await?;
        }
        say!(
            "{} simulator: the simulated day is over; Vigil goes on serving",
            clock(end)
        );
        Ok(())
    }

    /// Adds what happens now to the transaction.
    async fn happen(
        &mut self,
        now: i64,
        happening: Happening,
        entry: &mut Entry,
        labels: &mut Vec<String>,
    ) -> Result<(), String> {
        match happening {
            Happening::Event(label, writes) => {
                if !label.is_empty() {
                    labels.push(label);
                }
                add(entry, writes);
            }
            Happening::Household(label, watts) => {
                labels.push(label);
                self.house.household_watts = watts;
            }
            Happening::Mains(label, on) => {
                labels.push(label);
                self.house.mains = on;
                let source = if on { "line" } else { "battery" };
                add(
                    entry,
                    vec![Write::Insert(
                        "ups_source",
                        vec![text("ups"), text(source), Cell::Open],
                    )],
                );
            }
            Happening::Game(label, seconds) => {
                labels.push(label);
                self.house.game_until = Some(now + seconds);
                let mut writes = vec![
                    Write::Insert("game_running", vec![text("gaming")]),
                    Write::Insert("network_busy", vec![text("gaming")]),
                    Write::Insert("last_input", vec![text("gaming"), Cell::Number(now)]),
                ];
                let asleep = self.ask("power_state(\"gaming\", \"asleep\", _)").await?;
                if !asleep.is_empty() {
                    labels.push("the player switches the gaming rig on".into());
                    writes.push(Write::Insert(
                        "power_state",
                        vec![text("gaming"), text("up"), Cell::Open],
                    ));
                }
                add(entry, writes);
            }
            Happening::Harvest {
                label,
                task,
                source,
                version,
                bytes,
                reported,
                arrived,
            } => {
                labels.push(label);
                let edge = self
                    .ask(&format!("task_assigned({task:?}, E)"))
                    .await?
                    .first()
                    .map_or_else(|| "edge-pi4".to_string(), |row| row[0].to_string());
                add(
                    entry,
                    vec![
                        Write::Insert(
                            "artifact_report",
                            vec![
                                text(&edge),
                                text(source),
                                Cell::Number(version),
                                Cell::Number(bytes),
                                text(reported),
                            ],
                        ),
                        Write::Insert(
                            "artifact_arrived",
                            vec![text(source), Cell::Number(version), text(arrived)],
                        ),
                        Write::Insert("task_done", vec![text(task)]),
                    ],
                );
            }
        }
        Ok(())
    }

    /// What is up and what runs, as the engine knows it with the transaction's writes.
    async fn state(&self, entry: &Entry) -> Result<Running, String> {
        let mut state = Running::default();
        for row in self.ask("power_state(N, \"up\", _)").await? {
            state.up.insert(row[0].to_string());
        }
        for row in self.ask("running(W, N)").await? {
            state
                .running
                .insert((row[0].to_string(), row[1].to_string()));
        }
        for row in self.ask("ray_worker(N)").await? {
            state.ray.insert(row[0].to_string());
        }
        let rows = |map: &std::collections::BTreeMap<String, Vec<Vec<Field>>>, relation: &str| {
            map.get(relation)
                .into_iter()
                .flatten()
                .map(|row| {
                    row.iter()
                        .map(|f| f.0.as_ref().map_or_else(String::new, ToString::to_string))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        for row in rows(&entry.retract, "running") {
            state.running.remove(&(row[0].clone(), row[1].clone()));
        }
        for row in rows(&entry.insert, "running") {
            state.running.insert((row[0].clone(), row[1].clone()));
        }
        for row in rows(&entry.retract, "ray_worker") {
            state.ray.remove(&row[0]);
        }
        for row in rows(&entry.insert, "ray_worker") {
            state.ray.insert(row[0].clone());
        }
        for row in rows(&entry.insert, "power_state") {
            if row[1] == "up" {
                state.up.insert(row[0].clone());
            } else {
                state.up.remove(&row[0]);
            }
        }
        Ok(state)
    }

    /// The meter's reading: the household (while the mains are on), each node that is up
    /// (at its peak while a game runs on it), each running workload and Ray worker.
    fn draw(&self, now: i64, state: &Running) -> i64 {
        let gaming = self.house.game_until.is_some_and(|until| now < until);
        let mut draw = if self.house.mains {
            self.house.household_watts
        } else {
            0
        };
        for name in &state.up {
            let (idle, peak, _) = self.house.nodes.get(name).cloned().unwrap_or_default();
            draw += if gaming && name == "gaming" {
                peak
            } else {
                idle
            };
        }
        for (workload, _) in &state.running {
            draw += self.house.workloads.get(workload).map_or(0, |w| w.0);
        }
        draw + 150 * state.ray.len() as i64
    }

    /// The meter, in every transaction: a plug reports a change in draw at once.
    async fn meter(&mut self, now: i64, entry: &mut Entry) -> Result<(), String> {
        let state = self.state(entry).await?;
        self.house.draw = self.draw(now, &state);
        add(
            entry,
            vec![Write::Insert(
                "house_power",
                vec![
                    text("house"),
                    Cell::Number(self.house.draw),
                    Cell::Number(solar(now)),
                ],
            )],
        );
        Ok(())
    }

    /// The minute's telemetry: the UPS battery, activity, the game's input.
    async fn readings(&mut self, now: i64, entry: &mut Entry) -> Result<(), String> {
        let state = self.state(entry).await?;
        let busy: BTreeSet<&String> = state
            .running
            .iter()
            .map(|(_, node)| node)
            .chain(&state.ray)
            .collect();
        let up = &state.up;
        let draw = self.house.draw;
        let mut writes = Vec::new();
        // Heavy nodes with work on them report activity every five minutes.
        if now % 300 == 0 {
            for node in busy.iter().filter(|node| up.contains(**node)) {
                writes.push(Write::Insert(
                    "last_active",
                    vec![text(node), Cell::Number(now)],
                ));
            }
        }
        match self.house.game_until {
            Some(until) if now < until => writes.push(Write::Insert(
                "last_input",
                vec![text("gaming"), Cell::Number(now)],
            )),
            Some(_) => {
                self.house.game_until = None;
                say!("{} event    the game session ends", clock(now));
                writes.push(Write::Retract("game_running", vec![text("gaming")]));
                writes.push(Write::Retract("network_busy", vec![text("gaming")]));
            }
            None => {}
        }
        // The battery: it discharges with the load (the UPS carries 900 W for 20 min), and
        // recharges at 1 % a minute.
        let before = self.house.charge;
        if self.house.mains {
            self.house.charge = (self.house.charge + 1.0).min(100.0);
        } else {
            let load = draw.max(200) as f64;
            self.house.charge = (self.house.charge - 5.0 * load / 900.0).max(0.0);
        }
        if self.house.charge != before || !self.house.mains {
            let load = draw.max(200) as f64;
            let runtime = (self.house.charge / 100.0 * 1200.0 * 900.0 / load) as i64;
            writes.push(Write::Insert(
                "ups_battery",
                vec![
                    text("ups"),
                    Cell::Number(self.house.charge.round() as i64),
                    Cell::Number(runtime),
                ],
            ));
        }
        add(entry, writes);
        Ok(())
    }

    /// Runs the actuation loop, dry, and schedules the house's answer to each dry-run
    /// record; plays the rows of `act` that no actuator carries out.
    async fn carry_out(&mut self, now: i64) -> Result<(), String> {
        self.actuation.pass().await;
        let mut dry = Vec::new();
        loop {
            match self.lines.try_recv() {
                Ok(line) if line.outcome == "dry-run" => dry.push(line),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        for line in dry {
            self.actuate(now, &line.kind, &line.target).await?;
        }
        let acts: BTreeSet<(String, String, String)> = self
            .ask("act(I, K, X)")
            .await?
            .into_iter()
            .map(|row| (row[0].to_string(), row[1].to_string(), row[2].to_string()))
            .collect();
        self.carried_out
            .retain(|id| acts.iter().any(|(act, _, _)| act == id));
        for (id, kind, target) in acts {
            if self.actuation.carries_out(&id).await || !self.carried_out.insert(id) {
                continue;
            }
            let command = self.actuate(now, &kind, &target).await?;
            say!("{} house    {kind} {target}: {command}", clock(now));
        }
        Ok(())
    }

    /// Schedules the house's answer to an action; what it would take, in words.
    async fn actuate(&mut self, now: i64, kind: &str, target: &str) -> Result<String, String> {
        let (command, answer_in, writes): (String, i64, Vec<Write>) = match kind {
            "wake" => {
                let mac = self
                    .house
                    .nodes
                    .get(target)
                    .map_or_else(String::new, |n| n.2.clone());
                let boot = self
                    .ask(&format!("node({target:?}, _, _, _, _, _, _, B)"))
                    .await?;
                let boot = boot.first().map_or(60, |row| number(&row[0]));
                self.schedule(
                    now + 1,
                    Happening::Event(
                        String::new(),
                        vec![Write::Insert(
                            "last_wake",
                            vec![text(target), Cell::Number(now)],
                        )],
                    ),
                );
                (
                    format!("Wake-on-LAN: magic packet for {mac} to 255.255.255.255:9"),
                    boot,
                    vec![Write::Insert(
                        "power_state",
                        vec![text(target), text("up"), Cell::Open],
                    )],
                )
            }
            "sleep" => (
                format!(
                    "suspend {target} (Proxmox: POST /nodes/{target}/status command=shutdown for a hypervisor)"
                ),
                20,
                vec![Write::Insert(
                    "power_state",
                    vec![text(target), text("asleep"), Cell::Open],
                )],
            ),
            "emergency_shutdown" => (
                format!("Proxmox: POST /nodes/{target}/status command=shutdown"),
                60,
                vec![Write::Insert(
                    "power_state",
                    vec![text(target), text("asleep"), Cell::Open],
                )],
            ),
            "unload" => {
                let (node, model) = target.split_once('/').unwrap_or((target, ""));
                (
                    format!("unload model {model} from {node}'s GPU"),
                    5,
                    vec![Write::Retract(
                        "model_loaded",
                        vec![text(node), text(model)],
                    )],
                )
            }
            "start" | "stop" | "emergency_stop" | "shed" | "evict" => {
                let starting = kind == "start";
                let query = if starting {
                    format!("placement({target:?}, N)")
                } else {
                    format!("running({target:?}, N)")
                };
                let Some(node) = self.first(&query).await? else {
                    return Ok(String::new());
                };
                let guest = self
                    .house
                    .workloads
                    .get(target)
                    .map_or("", |w| w.1.as_str());
                let (verb, ray, other) = if starting {
                    ("start", "submit", "load")
                } else {
                    ("shutdown", "stop", "unload")
                };
                let command = match guest {
                    "vm" => format!("Proxmox: POST /nodes/{node}/qemu/{target}/status/{verb}"),
                    "ct" => format!("Proxmox: POST /nodes/{node}/lxc/{target}/status/{verb}"),
                    "ray" => format!("Ray: {ray} {target} on {node}"),
                    _ => format!("{other} {target} on {node}"),
                };
                let row = vec![text(target), text(&node)];
                if starting {
                    (command, 30, vec![Write::Insert("running", row)])
                } else {
                    (command, 10, vec![Write::Retract("running", row)])
                }
            }
            "ray_start" => (
                format!("Ray: ray start --address=logic:6379 --num-gpus=1 on {target}"),
                10,
                vec![Write::Insert("ray_worker", vec![text(target)])],
            ),
            "ray_stop" => (
                format!("Ray: ray stop on {target}"),
                3,
                vec![Write::Retract("ray_worker", vec![text(target)])],
            ),
            "assign" => {
                let Some(edge) = self.first(&format!("assign({target:?}, E)")).await? else {
                    return Ok(String::new());
                };
                (
                    format!("harvest: hand task {target} to {edge}"),
                    1,
                    vec![Write::Insert(
                        "task_assigned",
                        vec![text(target), text(&edge)],
                    )],
                )
            }
            "reassign" => {
                let Some(edge) = self.first(&format!("reassign({target:?}, _, E)")).await? else {
                    return Ok(String::new());
                };
                (
                    format!("harvest: hand task {target} over to {edge}"),
                    1,
                    vec![Write::Insert(
                        "task_assigned",
                        vec![text(target), text(&edge)],
                    )],
                )
            }
            "pause" => (
                format!("harvest: pause task {target}"),
                1,
                vec![Write::Retract(
                    "task_assigned",
                    vec![text(target), Cell::Open],
                )],
            ),
            "store" | "delete" | "refuse" => {
                let (source, version) = target.split_once('@').unwrap_or((target, "0"));
                let version: i64 = version.parse().unwrap_or(0);
                let query = match kind {
                    "store" => format!("accept({source:?}, {version}, H)"),
                    "delete" => format!("archived({source:?}, {version}, H)"),
                    _ => format!("quarantine({source:?}, {version}, H, _)"),
                };
                let hash = self.first(&query).await?.unwrap_or_default();
                match kind {
                    "store" => (
                        format!("archive: store {source} {version} as blake3:{hash}"),
                        2,
                        vec![Write::Insert(
                            "archived",
                            vec![text(source), Cell::Number(version), text(&hash)],
                        )],
                    ),
                    "delete" => (
                        format!("archive: delete {source} {version} (blake3:{hash})"),
                        2,
                        vec![Write::Retract(
                            "archived",
                            vec![text(source), Cell::Number(version), text(&hash)],
                        )],
                    ),
                    _ => (
                        format!(
                            "archive: quarantine {source} {version} (the edge reported blake3:{hash})"
                        ),
                        0,
                        Vec::new(),
                    ),
                }
            }
            _ => (format!("{kind} {target}"), 0, Vec::new()),
        };
        if !writes.is_empty() {
            self.schedule(
                now + answer_in.max(1),
                Happening::Event(String::new(), writes),
            );
        }
        Ok(command)
    }
}

fn refusal(refusal: Refusal) -> String {
    match refusal {
        Refusal::Invalid(message) | Refusal::Failed(message) => message,
    }
}

fn number(value: &Value) -> i64 {
    match value {
        Value::Number(n) => *n,
        Value::Unsigned(n) => *n as i64,
        Value::Float(f) => *f as i64,
        Value::Symbol(_) => 0,
    }
}

/// Solar production in late November: from 08:00 to 16:00 UTC, up to 1.4 kW at noon.
fn solar(now: i64) -> i64 {
    let hour = now.rem_euclid(DAY) as f64 / 3600.0;
    if !(8.0..16.0).contains(&hour) {
        return 0;
    }
    (1400.0 * ((hour - 8.0) / 8.0 * std::f64::consts::PI).sin()).round() as i64
}

/// Adds writes to a transaction. A relation's inserts and retractions go in the order of the
/// engine (retractions first), which is what the writes mean here.
fn add(entry: &mut Entry, writes: Vec<Write>) {
    for write in writes {
        let (map, relation, cells) = match write {
            Write::Insert(relation, cells) => (&mut entry.insert, relation, cells),
            Write::Retract(relation, cells) => (&mut entry.retract, relation, cells),
        };
        map.entry(relation.to_string())
            .or_default()
            .push(cells.iter().map(Cell::field).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_utc() {
        assert_eq!(clock(DAY_START), "02:00:00");
        assert_eq!(clock(DAY_START + 3661), "03:01:01");
    }

    #[test]
    fn the_script_runs_within_the_day_in_order_of_the_clock() {
        let script = script();
        assert!(script.iter().all(|(offset, _)| (0..DAY).contains(offset)));
        assert!(script.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn the_sun_shines_by_day() {
        assert_eq!(solar(DAY_START), 0);
        assert_eq!(solar(DAY_START + 10 * 3600), 1400);
    }
}
