//! A house as the homelab policy sees it: the inventory, the configuration, the network, and
//! the state of one moment.
//!
//! A [`House`] is plain data. It has two encodings, and both say the same thing:
//!
//! - [`House::write_facts`] writes a Soufflé facts directory in the shape `rules/` reads (the
//!   shape of `fixtures/homelab/`): one `R.facts` file per input relation, stamped streams with
//!   their stamp column, and `now.facts` with the clock. `vigil run rules/homelab.dl -F DIR`
//!   evaluates the policy on it from scratch.
//! - [`House::apply`] moves a running [`Engine`] to the house by transactions, from whatever
//!   house it held before. Transactions cannot write a stamp: the engine stamps a reading with
//!   the time of the transaction that changed it. So the state is replayed in time order, one
//!   transaction at each distinct stamp (a node that came up at `since` is inserted by a
//!   transaction at `since`), and a last one at the house's clock. Time never goes backwards
//!   in an engine, so a house that follows another must start after it: [`House::shift_after`]
//!   moves a house's clock and every time in its state forward by whole days, which changes
//!   no decision (the policy only compares times with each other, and the time of day stays).
//!
//! Units are the policy's: cores and GiB as counts, whole watts, seconds since the epoch,
//! durations in seconds, charge in percent.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use vigil_engine::{ChangeSet, Engine, EngineError, Op, Value};

/// What a node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A Proxmox hypervisor: hosts VMs, containers and model servers; sleeps unless needed.
    Hypervisor,
    /// Somebody's gaming rig, borrowed for work while nobody plays; sleeps unless needed.
    Gaming,
    /// The always-on, low-power node that runs Vigil and casts the qdevice vote.
    Logic,
    /// A harvester: an old laptop or a Raspberry Pi that downloads archives.
    Edge,
}

impl Role {
    /// The role's name in `node_role`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Hypervisor => "hypervisor",
            Role::Gaming => "gaming",
            Role::Logic => "logic",
            Role::Edge => "edge",
        }
    }
}

/// A workload's priority tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Always wanted, never shed.
    Essential,
    /// Wanted when requested; shed after every speculative workload.
    Normal,
    /// Wanted when requested; shed first.
    Speculative,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Essential => "essential",
            Tier::Normal => "normal",
            Tier::Speculative => "speculative",
        }
    }
}

/// What a workload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Vm,
    Container,
    Ray,
    Model,
}

impl Kind {
    /// The kind's name in `workload_kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Container => "ct",
            Kind::Ray => "ray",
            Kind::Model => "model",
        }
    }
}

/// A network link's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    Lan,
    Vlan,
    Wireguard,
}

impl LinkKind {
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Lan => "lan",
            LinkKind::Vlan => "vlan",
            LinkKind::Wireguard => "wireguard",
        }
    }
}

/// A node's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Power {
    Up,
    Asleep,
}

impl Power {
    pub fn name(self) -> &'static str {
        match self {
            Power::Up => "up",
            Power::Asleep => "asleep",
        }
    }
}

/// Where a UPS takes its power from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Line,
    Battery,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Line => "line",
            Source::Battery => "battery",
        }
    }
}

/// A machine of the house.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub cores: i64,
    /// GiB.
    pub ram: i64,
    /// The GPU model, `none` without one.
    pub gpu: String,
    /// GiB of GPU memory.
    pub vram: i64,
    pub idle_watts: i64,
    pub peak_watts: i64,
    /// From the wake packet to ready.
    pub boot_seconds: i64,
    pub role: Role,
    pub mac: String,
    /// Quorum votes: a cluster member's own, or on the logic node its qdevice's; 0 for a node
    /// outside the cluster.
    pub votes: i64,
}

/// Something that runs on a node: a VM, a container, a Ray job or a model server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    /// GiB of GPU memory.
    pub vram: i64,
    /// GiB.
    pub ram: i64,
    pub cores: i64,
    pub tier: Tier,
    pub watts: i64,
    pub kind: Kind,
    /// What must run before it (its database, the storage it lives on).
    pub depends_on: Vec<String>,
    /// The only node it can run on (its disks are there).
    pub pinned: Option<String>,
    /// It may be restarted elsewhere when its node is lost.
    pub ha: bool,
}

/// A cable, VLAN or tunnel between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub kind: LinkKind,
}

/// Every threshold and timeout of the policy, by its `config` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub house_limit_w: i64,
    pub battery_limit_w: i64,
    pub ups_holdoff_s: i64,
    pub ups_shutdown_pct: i64,
    pub ups_restore_holdoff_s: i64,
    pub ups_restore_pct: i64,
    pub wake_min_interval_s: i64,
    pub idle_timeout_s: i64,
    pub borrow_idle_s: i64,
    pub approval_ttl_s: i64,
    pub offpeak_start_h: i64,
    pub offpeak_end_h: i64,
}

impl Config {
    /// The `config` rows: every setting by name.
    pub fn entries(&self) -> [(&'static str, i64); 12] {
        [
            ("house_limit_w", self.house_limit_w),
            ("battery_limit_w", self.battery_limit_w),
            ("ups_holdoff_s", self.ups_holdoff_s),
            ("ups_shutdown_pct", self.ups_shutdown_pct),
            ("ups_restore_holdoff_s", self.ups_restore_holdoff_s),
            ("ups_restore_pct", self.ups_restore_pct),
            ("wake_min_interval_s", self.wake_min_interval_s),
            ("idle_timeout_s", self.idle_timeout_s),
            ("borrow_idle_s", self.borrow_idle_s),
            ("approval_ttl_s", self.approval_ttl_s),
            ("offpeak_start_h", self.offpeak_start_h),
            ("offpeak_end_h", self.offpeak_end_h),
        ]
    }
}

/// The safety tier of every kind of action: every house is configured alike, the way the
/// sample house is.
pub const ACTION_TIERS: [(&str, &str); 18] = [
    ("wake", "safe"),
    ("sleep", "safe"),
    ("unload", "safe"),
    ("start", "safe"),
    ("stop", "approval"),
    ("emergency_stop", "safe"),
    ("emergency_shutdown", "safe"),
    ("shed", "safe"),
    ("ray_start", "safe"),
    ("ray_stop", "safe"),
    ("migrate", "approval"),
    ("recover", "approval"),
    ("delete", "approval"),
    ("refuse", "safe"),
    ("store", "safe"),
    ("assign", "safe"),
    ("reassign", "safe"),
    ("pause", "safe"),
];

/// A node's power state, and since when it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerState {
    pub power: Power,
    pub since: i64,
}

/// One power meter's reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    pub draw_watts: i64,
    pub solar_watts: i64,
}

/// A UPS: where its power comes from since when, and its battery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ups {
    pub source: Source,
    pub since: i64,
    pub charge_pct: i64,
    pub runtime_seconds: i64,
}

/// An edge node's health report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeHealth {
    pub online: bool,
    pub temp_c: i64,
    pub load_pct: i64,
}

/// What the sources report at one moment. Every map is keyed by the node, workload, meter,
/// UPS or task it is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The clock.
    pub now: i64,
    /// The nodes' power states; a node that has not reported yet has none. Stamps must not be
    /// later than `now`.
    pub power: BTreeMap<String, PowerState>,
    /// Workload to the node it runs on.
    pub running: BTreeMap<String, String>,
    /// Workloads someone asked for; a request may name a workload the inventory lacks.
    pub requested: BTreeSet<String>,
    pub meters: BTreeMap<String, Meter>,
    pub ups: BTreeMap<String, Ups>,
    /// Gaming rigs where a game runs.
    pub games: BTreeSet<String>,
    /// When each node last did work.
    pub last_active: BTreeMap<String, i64>,
    /// When a person last touched each gaming rig.
    pub last_input: BTreeMap<String, i64>,
    /// When Vigil last sent each node a wake packet.
    pub last_wake: BTreeMap<String, i64>,
    pub edges: BTreeMap<String, EdgeHealth>,
    /// Harvest task to the source it downloads.
    pub harvest_tasks: BTreeMap<String, String>,
}

impl State {
    /// A node's power state, if the node has reported one.
    pub fn power_of(&self, node: &str) -> Option<Power> {
        self.power.get(node).map(|p| p.power)
    }
}

/// A whole house at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct House {
    pub nodes: Vec<Node>,
    pub workloads: Vec<Workload>,
    pub config: Config,
    pub links: Vec<Link>,
    pub state: State,
}

/// The input relations of a house and their tuples, stamps included, by relation name.
pub type Facts = BTreeMap<&'static str, Vec<Vec<Value>>>;

fn symbol(text: &str) -> Value {
    Value::symbol(text)
}

fn number(value: i64) -> Value {
    Value::Number(value)
}

impl House {
    /// The name of the logic node's qdevice in `qdevice`.
    pub fn qdevice_name(logic: &str) -> String {
        format!("{logic}-qdevice")
    }

    /// Every input relation the house feeds, with its tuples; relations the house has nothing
    /// for are there, empty, so that a facts directory has every file the policy reads. The
    /// clock is not among them: it is [`State::now`].
    ///
    /// The cluster's membership follows the power states: a member is online when it is up,
    /// and so is the logic node's qdevice.
    pub fn facts(&self) -> Facts {
        let state = &self.state;
        let mut facts = Facts::new();
        let mut add = |relation: &'static str, tuple: Vec<Value>| {
            facts.entry(relation).or_default().push(tuple);
        };
        let is_up = |node: &str| state.power.get(node).is_some_and(|p| p.power == Power::Up);
        for node in &self.nodes {
            add(
                "node",
                vec![
                    symbol(&node.name),
                    number(node.cores),
                    number(node.ram),
                    symbol(&node.gpu),
                    number(node.vram),
                    number(node.idle_watts),
                    number(node.peak_watts),
                    number(node.boot_seconds),
                ],
            );
            add(
                "node_role",
                vec![symbol(&node.name), symbol(node.role.name())],
            );
            add("node_mac", vec![symbol(&node.name), symbol(&node.mac)]);
            match node.role {
                Role::Logic if node.votes > 0 => {
                    let qdevice = House::qdevice_name(&node.name);
                    add("qdevice", vec![symbol(&qdevice), number(node.votes)]);
                    if is_up(&node.name) {
                        add("qdevice_online", vec![symbol(&qdevice)]);
                    }
                }
                Role::Logic => {}
                _ if node.votes > 0 => {
                    add("quorum_votes", vec![symbol(&node.name), number(node.votes)]);
                    if is_up(&node.name) {
                        add("member_online", vec![symbol(&node.name)]);
                    }
                }
                _ => {}
            }
        }
        for workload in &self.workloads {
            add(
                "workload",
                vec![
                    symbol(&workload.name),
                    number(workload.vram),
                    number(workload.ram),
                    number(workload.cores),
                    symbol(workload.tier.name()),
                    number(workload.watts),
                ],
            );
            add(
                "workload_kind",
                vec![symbol(&workload.name), symbol(workload.kind.name())],
            );
            for dependency in &workload.depends_on {
                add(
                    "depends_on",
                    vec![symbol(&workload.name), symbol(dependency)],
                );
            }
            if let Some(node) = &workload.pinned {
                add("pinned", vec![symbol(&workload.name), symbol(node)]);
            }
            if workload.ha {
                add("ha_enabled", vec![symbol(&workload.name)]);
            }
        }
        for link in &self.links {
            add(
                "link",
                vec![symbol(&link.a), symbol(&link.b), symbol(link.kind.name())],
            );
        }
        for (name, value) in self.config.entries() {
            add("config", vec![symbol(name), number(value)]);
        }
        for (kind, tier) in ACTION_TIERS {
            add("action_tier", vec![symbol(kind), symbol(tier)]);
        }
        for (node, power) in &state.power {
            add(
                "power_state",
                vec![
                    symbol(node),
                    symbol(power.power.name()),
                    number(power.since),
                ],
            );
        }
        for (workload, node) in &state.running {
            add("running", vec![symbol(workload), symbol(node)]);
        }
        for workload in &state.requested {
            add("requested", vec![symbol(workload)]);
        }
        for (meter, reading) in &state.meters {
            add(
                "house_power",
                vec![
                    symbol(meter),
                    number(reading.draw_watts),
                    number(reading.solar_watts),
                ],
            );
        }
        for (ups, reading) in &state.ups {
            add(
                "ups_source",
                vec![
                    symbol(ups),
                    symbol(reading.source.name()),
                    number(reading.since),
                ],
            );
            add(
                "ups_battery",
                vec![
                    symbol(ups),
                    number(reading.charge_pct),
                    number(reading.runtime_seconds),
                ],
            );
        }
        for node in &state.games {
            add("game_running", vec![symbol(node)]);
        }
        for (relation, times) in [
            ("last_active", &state.last_active),
            ("last_input", &state.last_input),
            ("last_wake", &state.last_wake),
        ] {
            for (node, at) in times {
                add(relation, vec![symbol(node), number(*at)]);
            }
        }
        for (edge, health) in &state.edges {
            let status = if health.online { "online" } else { "offline" };
            add(
                "edge_status",
                vec![
                    symbol(edge),
                    symbol(status),
                    number(health.temp_c),
                    number(health.load_pct),
                ],
            );
        }
        for (task, source) in &state.harvest_tasks {
            add("harvest_task", vec![symbol(task), symbol(source)]);
        }
        for relation in [
            "node",
            "node_role",
            "node_mac",
            "workload",
            "workload_kind",
            "depends_on",
            "pinned",
            "ha_enabled",
            "quorum_votes",
            "qdevice",
            "link",
        ] {
            facts.entry(relation).or_default();
        }
        facts
    }

    /// Writes the house as a Soufflé facts directory: `R.facts` for every relation of
    /// [`House::facts`], tab separated, and `now.facts` with the clock. Creates the directory
    /// if needed.
    pub fn write_facts(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (relation, tuples) in self.facts() {
            let text = vigil_engine::io::format_tuples(&tuples, "\t");
            std::fs::write(dir.join(format!("{relation}.facts")), text)?;
        }
        std::fs::write(dir.join("now.facts"), format!("{}\n", self.state.now))
    }

    /// The earliest time the state mentions as a stamp (a power state's or a UPS source's
    /// `since`), or the clock if earlier: a transaction that reaches this house cannot be
    /// earlier than it.
    pub fn earliest_stamp(&self) -> i64 {
        let state = &self.state;
        state
            .power
            .values()
            .map(|p| p.since)
            .chain(state.ups.values().map(|u| u.since))
            .fold(state.now, i64::min)
    }

    /// Moves the clock and every time of the state by `seconds`.
    pub fn shift(&mut self, seconds: i64) {
        let state = &mut self.state;
        state.now += seconds;
        for power in state.power.values_mut() {
            power.since += seconds;
        }
        for ups in state.ups.values_mut() {
            ups.since += seconds;
        }
        for time in state
            .last_active
            .values_mut()
            .chain(state.last_input.values_mut())
            .chain(state.last_wake.values_mut())
        {
            *time += seconds;
        }
    }

    /// Moves the house forward by as many whole days as it takes for its earliest stamp to be
    /// at or after `time` (not at all if it is already), so that an engine at `time` can move
    /// to it. Whole days keep the time of day, which the harvest's off-peak hours read.
    pub fn shift_after(&mut self, time: i64) {
        const DAY: i64 = 86_400;
        let behind = time - self.earliest_stamp();
        if behind > 0 {
            self.shift((behind + DAY - 1) / DAY * DAY);
        }
    }

    /// Moves `engine` to this house by transactions, and returns the net change of them all.
    ///
    /// `previous` is the house the engine holds now (`None` for an engine that holds no house):
    /// its tuples are retracted (keyed ones by their key) in the first transaction, which
    /// inserts this house's unstamped tuples. Each stamped tuple is inserted by a transaction
    /// at its stamp, in time order, and a last transaction moves the clock to [`State::now`].
    /// The first transaction's time, [`House::earliest_stamp`], must not be before the
    /// engine's clock (see [`House::shift_after`]); the engine rejects a transaction that would
    /// turn time back, and then this fails with the engine partway to the house.
    pub fn apply(
        &self,
        engine: &mut Engine,
        previous: Option<&House>,
    ) -> Result<ChangeSet, EngineError> {
        type Write = (Op, &'static str, Vec<Option<Value>>);
        let mut first: Vec<Write> = Vec::new();
        if let Some(previous) = previous {
            for (relation, tuples) in previous.facts() {
                let feed = engine.program().relations[engine.relation(relation)?]
                    .feed
                    .clone();
                for tuple in tuples {
                    let fields = tuple
                        .into_iter()
                        .enumerate()
                        .map(|(column, value)| feed.is_key(column).then_some(value))
                        .collect();
                    first.push((Op::Retract, relation, fields));
                }
            }
        }
        let mut stamped: BTreeMap<i64, Vec<Write>> = BTreeMap::new();
        stamped.entry(self.state.now).or_default();
        for (relation, tuples) in self.facts() {
            let stamp = engine.program().relations[engine.relation(relation)?]
                .feed
                .stamp;
            for tuple in tuples {
                let at = stamp.and_then(|column| match tuple[column] {
                    Value::Number(at) => Some((column, at)),
                    _ => None,
                });
                let mut fields: Vec<Option<Value>> = tuple.into_iter().map(Some).collect();
                match at {
                    Some((column, at)) => {
                        fields[column] = None;
                        stamped
                            .entry(at)
                            .or_default()
                            .push((Op::Insert, relation, fields));
                    }
                    None => first.push((Op::Insert, relation, fields)),
                }
            }
        }
        let mut net: Option<ChangeSet> = None;
        for (index, (at, writes)) in stamped.into_iter().enumerate() {
            let mut transaction = engine.transaction();
            transaction.at(at);
            let writes = if index == 0 {
                std::mem::take(&mut first)
                    .into_iter()
                    .chain(writes)
                    .collect()
            } else {
                writes
            };
            for (op, relation, fields) in writes {
                transaction.write(op, relation, &fields)?;
            }
            let changes = transaction.commit()?;
            net = Some(match net {
                Some(before) => before.then(&changes),
                None => changes,
            });
        }
        Ok(net.expect("the clock's transaction is always there"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate;

    #[test]
    fn shifting_after_a_time_moves_by_whole_days_and_keeps_every_interval() {
        let house = generate(3, 4, 10, 2);
        let mut later = house.clone();
        later.shift_after(house.state.now + 1);
        let moved = later.state.now - house.state.now;
        assert!(moved > 0 && moved % 86_400 == 0);
        assert!(later.earliest_stamp() > house.state.now);
        later.shift(-moved);
        assert_eq!(later, house);
        let mut same = house.clone();
        same.shift_after(house.earliest_stamp());
        assert_eq!(same, house);
    }

    #[test]
    fn the_facts_follow_the_relations_of_the_rules() {
        let house = generate(5, 6, 12, 3);
        let facts = house.facts();
        let count = |relation| facts[relation].len();
        assert_eq!(count("node"), 9);
        assert_eq!(count("node_role"), 9);
        assert_eq!(count("workload"), 12);
        assert_eq!(count("config"), 12);
        assert_eq!(count("power_state"), house.state.power.len());
        assert_eq!(count("edge_status"), 3);
        assert_eq!(count("qdevice"), 1);
        // Members online are the members that are up.
        let up_members = house
            .nodes
            .iter()
            .filter(|n| n.votes > 0 && n.role != Role::Logic)
            .filter(|n| house.state.power_of(&n.name) == Some(Power::Up))
            .count();
        assert_eq!(facts.get("member_online").map_or(0, Vec::len), up_members);
        // A stamped stream keeps its stamp column.
        let logic = &house.state.power["logic"];
        assert!(facts["power_state"].contains(&vec![
            Value::symbol("logic"),
            Value::symbol("up"),
            Value::Number(logic.since),
        ]));
    }
}
