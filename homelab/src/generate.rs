//! Synthetic houses: plausible, varied, of any size, the same for the same seed.
//!
//! A house from [`generate`] looks like the sample house grown or shrunk: hypervisors and
//! gaming rigs with consumer GPUs, one logic node, edge harvesters; storage and database
//! stacks pinned to their hypervisor with applications on top, model servers, Ray jobs and
//! batch containers, in every tier. Its state is a moment of a real day: some heavy nodes up
//! and some asleep, workloads running where they fit, games on some rigs, requests for some
//! workloads and none for others, a UPS on line power or on battery (past its hold-off or
//! still within it), and a house draw anywhere from comfortable to over the limit.
//!
//! Random houses rarely land on the boundaries where a policy goes wrong, so the generator
//! puts them there on purpose, often: a node whose free VRAM, RAM and cores are exactly what a
//! waiting workload needs; a draw exactly at the limit; a headroom exactly a workload's draw
//! (plus the idle draw of the node it would wake); an excess exactly what shedding the first
//! tier in the order saves (or one watt more); identical nodes, so that costs tie and names decide; equal
//! draws within a tier, so that the shedding order falls back on names; a UPS switch exactly
//! as old as its hold-off; a wake packet exactly as old as the rate limit.
//!
//! The random numbers come from a SplitMix64 generator written here rather than a crate: a
//! seed must give the same house forever, and a crate is free to change its algorithm in a
//! new version.

use crate::house::{
    Config, EdgeHealth, House, Kind, Link, LinkKind, Meter, Node, Power, PowerState, Role, Source,
    State, Tier, Ups, Workload,
};
use std::collections::BTreeMap;

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, statistically sound for
/// sampling, and trivially reproducible: the seeded generator of houses, and of the tests and
/// benchmarks that must replay a run from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `low..=high`. The modulo bias is far below anything a house shows.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next_u64() % (high - low + 1) as u64) as i64
    }

    /// An index below `len` (which must not be 0).
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

/// The day the houses live on (2026-11-30, 00:00 UTC); the time of day varies by seed.
const DAY_START: i64 = 1_795_996_800;

/// Consumer GPUs with their VRAM in GiB.
const HYPERVISOR_GPUS: [(&str, i64); 6] = [
    ("rtx5080", 16),
    ("rtx4090", 24),
    ("rtx3090", 24),
    ("rtx3060", 12),
    ("a4000", 16),
    ("none", 0),
];
const GAMING_GPUS: [(&str, i64); 4] = [
    ("rtx4080super", 16),
    ("rx7900xtx", 24),
    ("rtx4070", 12),
    ("rtx5090", 32),
];

/// Edge hardware: name stem, cores, RAM, idle W, peak W, boot s.
const EDGES: [(&str, i64, i64, i64, i64, i64); 4] = [
    ("laptop", 4, 8, 8, 30, 40),
    ("pi4", 4, 4, 4, 7, 30),
    ("pi5", 4, 8, 5, 9, 25),
    ("nuc", 4, 16, 6, 25, 35),
];

const HARVEST_SOURCES: [&str; 5] = ["wikipedia-zim", "git-linux", "feeds", "arxiv", "osm-planet"];

/// A house of `nodes` nodes besides the edges (one of them the logic node, the others
/// hypervisors and gaming rigs), `workloads` workloads and `edges` edge nodes, the same for the
/// same arguments.
///
/// # Panics
///
/// If `nodes` is 0: every house has its logic node.
pub fn generate(seed: u64, nodes: usize, workloads: usize, edges: usize) -> House {
    assert!(nodes > 0, "a house has at least its logic node");
    let mut rng = Rng(seed);
    let nodes = generate_nodes(&mut rng, nodes, edges);
    let workloads = generate_workloads(&mut rng, &nodes, workloads);
    let links = generate_links(&mut rng, &nodes);
    let mut house = House {
        nodes,
        workloads,
        config: Config {
            // Both limits are set with the draw, by `set_power_budget`.
            house_limit_w: 0,
            battery_limit_w: 0,
            ups_holdoff_s: *rng.pick(&[30, 10, 60]),
            ups_shutdown_pct: *rng.pick(&[30, 20, 40]),
            ups_restore_holdoff_s: *rng.pick(&[120, 60, 300]),
            ups_restore_pct: *rng.pick(&[50, 40, 60]),
            wake_min_interval_s: *rng.pick(&[300, 120, 600]),
            idle_timeout_s: *rng.pick(&[900, 600, 1800]),
            borrow_idle_s: *rng.pick(&[600, 300, 1200]),
            approval_ttl_s: 3600,
            offpeak_start_h: 1,
            offpeak_end_h: 6,
        },
        links,
        state: State {
            now: DAY_START + rng.range(0, 86_399),
            ..State::default()
        },
    };
    generate_state(&mut rng, &mut house);
    fit_exactly(&mut rng, &mut house);
    set_power_budget(&mut rng, &mut house);
    house
}

/// `02:00:..`: a locally administered MAC address, unique per node.
fn mac(index: usize) -> String {
    let bytes = (index as u32).to_be_bytes();
    format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    )
}

/// The logic node first, then the hypervisors (`pve-1`, ...), the gaming rigs (`rig-1`, ...)
/// and the edges (`edge-pi4-1`, ...). Some heavy nodes are twins of an earlier one (the same
/// hardware, so the same cost), and some boot just fast enough that waking them costs what
/// keeping an earlier node up does.
fn generate_nodes(rng: &mut Rng, count: usize, edges: usize) -> Vec<Node> {
    let heavy = count - 1;
    let rigs = if heavy < 2 {
        0
    } else {
        ((heavy + rng.index(3)) / 3).clamp(1, heavy - 1)
    };
    let mut nodes = Vec::with_capacity(count + edges);
    nodes.push(Node {
        name: "logic".to_string(),
        cores: *rng.pick(&[4, 8]),
        ram: *rng.pick(&[8, 16]),
        gpu: "none".to_string(),
        vram: 0,
        idle_watts: rng.range(8, 15),
        peak_watts: rng.range(25, 40),
        boot_seconds: 0,
        role: Role::Logic,
        mac: mac(0),
        votes: 1,
    });
    for index in 0..heavy {
        let hypervisors = heavy - rigs;
        let (role, name) = if index < hypervisors {
            (Role::Hypervisor, format!("pve-{}", index + 1))
        } else {
            (Role::Gaming, format!("rig-{}", index - hypervisors + 1))
        };
        let mut node = match role {
            Role::Hypervisor => {
                let (gpu, vram) = *rng.pick(&HYPERVISOR_GPUS);
                Node {
                    name,
                    cores: *rng.pick(&[8, 12, 16, 24, 32]),
                    ram: *rng.pick(&[32, 64, 96, 128]),
                    gpu: gpu.to_string(),
                    vram,
                    idle_watts: rng.range(8, 18) * 5,
                    peak_watts: rng.range(30, 70) * 10,
                    boot_seconds: rng.range(6, 18) * 10,
                    role,
                    mac: mac(nodes.len()),
                    votes: 1,
                }
            }
            _ => {
                let (gpu, vram) = *rng.pick(&GAMING_GPUS);
                Node {
                    name,
                    cores: *rng.pick(&[8, 12, 16]),
                    ram: *rng.pick(&[32, 64]),
                    gpu: gpu.to_string(),
                    vram,
                    idle_watts: rng.range(8, 14) * 5,
                    peak_watts: rng.range(35, 55) * 10,
                    boot_seconds: rng.range(6, 12) * 5,
                    role,
                    mac: mac(nodes.len()),
                    votes: 1,
                }
            }
        };
        if nodes.len() > 1 && rng.chance(25) {
            let twin = &nodes[rng.range(1, nodes.len() as i64 - 1) as usize];
            if twin.role == role {
                node = Node {
                    name: node.name,
                    mac: node.mac,
                    ..twin.clone()
                };
            }
        } else if nodes.len() > 1 && rng.chance(15) {
            let other = &nodes[rng.range(1, nodes.len() as i64 - 1) as usize];
            if other.idle_watts > node.idle_watts {
                node.boot_seconds = other.idle_watts - node.idle_watts;
            }
        }
        nodes.push(node);
    }
    for index in 0..edges {
        let (stem, cores, ram, idle, peak, boot) = *rng.pick(&EDGES);
        nodes.push(Node {
            name: format!("edge-{stem}-{}", index + 1),
            cores,
            ram,
            gpu: "none".to_string(),
            vram: 0,
            idle_watts: idle,
            peak_watts: peak,
            boot_seconds: boot,
            role: Role::Edge,
            mac: mac(nodes.len()),
            votes: 0,
        });
    }
    nodes
}

/// Workloads in stacks, as a homelab grows them: storage pinned to its hypervisor, a database
/// on it, applications on the database; model servers, some on storage; Ray jobs, some on a
/// model server; batch containers and plain VMs. Dependencies only point back, so there is no
/// cycle. Draws come from coarse steps and are sometimes copied, so that equal draws are
/// common.
fn generate_workloads(rng: &mut Rng, nodes: &[Node], count: usize) -> Vec<Workload> {
    let names_of = |roles: &[Role]| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| roles.contains(&n.role))
            .map(|n| n.name.clone())
            .collect()
    };
    let hypervisors = names_of(&[Role::Hypervisor]);
    let heavy = names_of(&[Role::Hypervisor, Role::Gaming]);
    let never_hosts = names_of(&[Role::Logic, Role::Edge]);
    let mut storage: Vec<usize> = Vec::new();
    let mut databases: Vec<usize> = Vec::new();
    let mut models: Vec<usize> = Vec::new();
    let mut list: Vec<Workload> = Vec::with_capacity(count + 4);
    let mut number = 0;
    let plain = |name: String, kind: Kind, tier: Tier| Workload {
        name,
        vram: 0,
        ram: 1,
        cores: 1,
        tier,
        watts: 10,
        kind,
        depends_on: Vec::new(),
        pinned: None,
        ha: false,
    };
    while list.len() < count {
        number += 1;
        let first = list.len();
        match rng.range(0, 9) {
            0..=2 => {
                let host = if !hypervisors.is_empty() {
                    Some(rng.pick(&hypervisors).clone())
                } else if !heavy.is_empty() {
                    Some(rng.pick(&heavy).clone())
                } else {
                    None
                };
                let nas = format!("nas-{number}");
                storage.push(list.len());
                list.push(Workload {
                    ram: *rng.pick(&[4, 8]),
                    cores: *rng.pick(&[1, 2]),
                    watts: rng.range(4, 8) * 5,
                    pinned: host.clone(),
                    ..plain(nas.clone(), Kind::Container, Tier::Essential)
                });
                let db = format!("db-{number}");
                databases.push(list.len());
                list.push(Workload {
                    ram: *rng.pick(&[4, 8, 16]),
                    cores: *rng.pick(&[2, 4]),
                    watts: rng.range(3, 8) * 5,
                    depends_on: vec![nas.clone()],
                    pinned: if rng.chance(80) { host } else { None },
                    ..plain(db.clone(), Kind::Vm, Tier::Essential)
                });
                for app in 0..rng.range(1, 3) {
                    let mut depends_on = vec![db.clone()];
                    if rng.chance(30) {
                        depends_on.push(nas.clone());
                    }
                    let kind = if rng.chance(50) {
                        Kind::Container
                    } else {
                        Kind::Vm
                    };
                    list.push(Workload {
                        vram: if rng.chance(10) { 4 } else { 0 },
                        ram: *rng.pick(&[2, 4, 8]),
                        cores: *rng.pick(&[1, 2, 4]),
                        watts: rng.range(2, 8) * 5,
                        depends_on,
                        ha: rng.chance(40),
                        ..plain(format!("app-{number}-{}", app + 1), kind, Tier::Normal)
                    });
                }
            }
            3..=4 => {
                let tier = if rng.chance(20) {
                    Tier::Speculative
                } else {
                    Tier::Normal
                };
                let mut depends_on = Vec::new();
                if !storage.is_empty() && rng.chance(30) {
                    depends_on.push(list[*rng.pick(&storage)].name.clone());
                }
                models.push(list.len());
                list.push(Workload {
                    vram: *rng.pick(&[4, 8, 12, 14, 16, 24]),
                    ram: *rng.pick(&[8, 16, 24, 32]),
                    cores: *rng.pick(&[2, 4, 6, 8]),
                    watts: rng.range(15, 40) * 10,
                    depends_on,
                    ha: rng.chance(20),
                    ..plain(format!("llm-{number}"), Kind::Model, tier)
                });
            }
            5..=6 => {
                let tier = if rng.chance(20) {
                    Tier::Normal
                } else {
                    Tier::Speculative
                };
                let mut depends_on = Vec::new();
                if !models.is_empty() && rng.chance(30) {
                    depends_on.push(list[*rng.pick(&models)].name.clone());
                }
                list.push(Workload {
                    vram: *rng.pick(&[0, 4, 8, 10, 15, 24]),
                    ram: *rng.pick(&[4, 8, 16, 32, 48, 64]),
                    cores: *rng.pick(&[2, 4, 8, 12, 16]),
                    watts: rng.range(4, 20) * 20,
                    depends_on,
                    ..plain(format!("ray-{number}"), Kind::Ray, tier)
                });
            }
            7 => {
                let mut depends_on = Vec::new();
                if !storage.is_empty() && rng.chance(20) {
                    depends_on.push(list[*rng.pick(&storage)].name.clone());
                }
                list.push(Workload {
                    vram: *rng.pick(&[0, 4]),
                    ram: *rng.pick(&[2, 4, 8]),
                    cores: *rng.pick(&[2, 4]),
                    watts: rng.range(2, 8) * 20,
                    depends_on,
                    ..plain(
                        format!("batch-{number}"),
                        Kind::Container,
                        Tier::Speculative,
                    )
                });
            }
            _ => {
                let tier = *rng.pick(&[
                    Tier::Normal,
                    Tier::Normal,
                    Tier::Normal,
                    Tier::Normal,
                    Tier::Essential,
                    Tier::Speculative,
                ]);
                let mut depends_on = Vec::new();
                if !databases.is_empty() && rng.chance(20) {
                    depends_on.push(list[*rng.pick(&databases)].name.clone());
                }
                list.push(Workload {
                    ram: *rng.pick(&[2, 4, 8, 16]),
                    cores: *rng.pick(&[1, 2, 4]),
                    watts: rng.range(2, 12) * 5,
                    depends_on,
                    ha: rng.chance(50),
                    ..plain(format!("vm-{number}"), Kind::Vm, tier)
                });
            }
        }
        for index in first..list.len() {
            if index > 0 && rng.chance(20) {
                let twin = rng.index(index);
                list[index].watts = list[twin].watts;
            }
            if list[index].pinned.is_none() {
                if !heavy.is_empty() && rng.chance(8) {
                    list[index].pinned = Some(rng.pick(&heavy).clone());
                } else if rng.chance(2) {
                    list[index].pinned = Some(rng.pick(&never_hosts).clone());
                }
            }
        }
    }
    list.truncate(count);
    list
}

/// The logic node reaches every heavy node over the LAN (a few over a VLAN); the heavy nodes
/// form a storage chain; edges hang off the logic node or, over WireGuard, off another node,
/// so that some are several hops away. A few nodes have no link at all: they are isolated.
fn generate_links(rng: &mut Rng, nodes: &[Node]) -> Vec<Link> {
    let mut links = Vec::new();
    let logic = &nodes[0].name;
    let mut previous_heavy: Option<&str> = None;
    for (index, node) in nodes.iter().enumerate().skip(1) {
        if rng.chance(3) {
            continue;
        }
        let link = |a: &str, kind| Link {
            a: a.to_string(),
            b: node.name.clone(),
            kind,
        };
        if node.role == Role::Edge {
            match rng.range(0, 3) {
                0 | 1 => links.push(link(logic, LinkKind::Lan)),
                2 => links.push(link(logic, LinkKind::Vlan)),
                _ => {
                    let via = &nodes[rng.range(0, index as i64 - 1) as usize].name;
                    links.push(link(via, LinkKind::Wireguard));
                }
            }
        } else {
            let kind = if rng.chance(10) {
                LinkKind::Vlan
            } else {
                LinkKind::Lan
            };
            links.push(link(logic, kind));
            if let Some(previous) = previous_heavy
                && rng.chance(50)
            {
                links.push(link(previous, LinkKind::Lan));
            }
            previous_heavy = Some(&node.name);
        }
    }
    links
}

/// What a node has left for workloads, by what runs on it now: VRAM, RAM, cores.
fn free_on(house: &House, node: &Node) -> (i64, i64, i64) {
    let mut free = (node.vram, node.ram, node.cores);
    for workload in &house.workloads {
        if house.state.running.get(&workload.name) == Some(&node.name) {
            free.0 -= workload.vram;
            free.1 -= workload.ram;
            free.2 -= workload.cores;
        }
    }
    free
}

/// Power states, the UPS, what runs, requests, games and activity.
fn generate_state(rng: &mut Rng, house: &mut House) {
    let now = house.state.now;
    let config = house.config.clone();
    let state = &mut house.state;
    // Things happen together in a house: everything came up after the last power cut, and
    // the heavy nodes woke or fell asleep at a few moments of the day. Sharing moments keeps
    // the number of distinct stamps (one transaction each, see `House::apply`) small.
    let power_back = now - rng.range(1, 30) * 86_400 - rng.range(0, 86_399);
    let moments = [
        now,
        now - config.idle_timeout_s,
        now - rng.range(60, 6 * 3_600),
        now - rng.range(6 * 3_600, 3 * 86_400),
    ];
    for node in &house.nodes {
        let since = if rng.chance(10) {
            now - rng.range(1, 10 * 86_400)
        } else {
            match node.role {
                Role::Logic | Role::Edge => power_back,
                Role::Hypervisor | Role::Gaming => match rng.range(0, 9) {
                    0 => moments[0],
                    1 => moments[1],
                    2..=5 => moments[2],
                    _ => moments[3],
                },
            }
        };
        let power = match node.role {
            // A node just added to the inventory has not reported its state yet.
            Role::Hypervisor | Role::Gaming if rng.chance(3) => continue,
            Role::Hypervisor | Role::Gaming if rng.chance(45) => Power::Asleep,
            _ => Power::Up,
        };
        state
            .power
            .insert(node.name.clone(), PowerState { power, since });
    }

    let upses: &[&str] = match rng.range(0, 19) {
        0 => &[],
        1 | 2 => &["ups", "ups-rack"],
        _ => &["ups"],
    };
    for name in upses {
        let (source, since, settled) = match rng.range(0, 99) {
            0..=54 => (Source::Line, power_back, true),
            55..=64 => (
                Source::Line,
                now - rng.range(0, config.ups_restore_holdoff_s - 1),
                false,
            ),
            65..=69 => (Source::Line, now - config.ups_restore_holdoff_s, false),
            70..=77 => (
                Source::Battery,
                now - rng.range(0, config.ups_holdoff_s - 1),
                false,
            ),
            78..=83 => (Source::Battery, now - config.ups_holdoff_s, false),
            _ => (
                Source::Battery,
                now - rng.range(config.ups_holdoff_s + 1, 3_600),
                false,
            ),
        };
        let charge_pct = match rng.range(0, 19) {
            0..=2 => config.ups_restore_pct,
            3 | 4 => config.ups_shutdown_pct,
            _ if settled && rng.chance(85) => 100,
            _ => rng.range(5, 100),
        };
        state.ups.insert(
            name.to_string(),
            Ups {
                source,
                since,
                charge_pct,
                runtime_seconds: charge_pct * 24,
            },
        );
    }

    // What runs: where it fits on a node that is up, mostly; now and then a node is
    // overcommitted, as after a manual start.
    let mut free: BTreeMap<&str, (i64, i64, i64)> = house
        .nodes
        .iter()
        .filter(|n| {
            matches!(n.role, Role::Hypervisor | Role::Gaming)
                && state.power_of(&n.name) == Some(Power::Up)
        })
        .map(|n| (n.name.as_str(), (n.vram, n.ram, n.cores)))
        .collect();
    for workload in &house.workloads {
        let mut percent = match workload.tier {
            Tier::Essential => 75,
            Tier::Normal => 45,
            Tier::Speculative => 30,
        };
        if !workload
            .depends_on
            .iter()
            .all(|d| state.running.contains_key(d))
        {
            percent /= 4;
        }
        if !rng.chance(percent) {
            continue;
        }
        let overcommit = rng.chance(5);
        let candidates: Vec<&str> = free
            .iter()
            .filter(|(node, left)| {
                workload.pinned.as_deref().is_none_or(|p| p == **node)
                    && (overcommit
                        || (workload.vram <= left.0
                            && workload.ram <= left.1
                            && workload.cores <= left.2))
            })
            .map(|(node, _)| *node)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let node = *rng.pick(&candidates);
        let left = free.get_mut(node).expect("a candidate is a node with room");
        left.0 -= workload.vram;
        left.1 -= workload.ram;
        left.2 -= workload.cores;
        state
            .running
            .insert(workload.name.clone(), node.to_string());
    }

    for workload in &house.workloads {
        let percent = match (workload.tier, state.running.contains_key(&workload.name)) {
            (Tier::Essential, _) => 10,
            (_, true) => 80,
            (_, false) => 50,
        };
        if rng.chance(percent) {
            state.requested.insert(workload.name.clone());
        }
    }
    if rng.chance(3) {
        state.requested.insert("ghost".to_string());
    }

    for node in &house.nodes {
        let up = state.power_of(&node.name) == Some(Power::Up);
        match node.role {
            Role::Gaming => {
                if up && rng.chance(35) {
                    state.games.insert(node.name.clone());
                }
                let touched = match rng.range(0, 19) {
                    0..=9 => now - rng.range(0, 2 * config.borrow_idle_s),
                    10..=12 => now - config.borrow_idle_s,
                    _ => now - rng.range(3_600, 86_400),
                };
                state.last_input.insert(node.name.clone(), touched);
            }
            Role::Edge => {
                state.edges.insert(
                    node.name.clone(),
                    EdgeHealth {
                        online: rng.chance(90),
                        temp_c: rng.range(35, 55),
                        load_pct: rng.range(0, 20) * 5,
                    },
                );
            }
            Role::Hypervisor | Role::Logic => {}
        }
        if matches!(node.role, Role::Hypervisor | Role::Gaming) {
            if up && rng.chance(70) {
                let active = now - rng.range(0, 2 * config.idle_timeout_s);
                state.last_active.insert(node.name.clone(), active);
            }
            let woken = match rng.range(0, 19) {
                0..=6 if !up => Some(now - rng.range(0, 2 * config.wake_min_interval_s)),
                7 | 8 => Some(now - config.wake_min_interval_s),
                9..=11 => Some(now - rng.range(600, 86_400)),
                _ => None,
            };
            if let Some(at) = woken {
                state.last_wake.insert(node.name.clone(), at);
            }
        }
    }
    let edges = state.edges.len();
    for task in 0..edges.div_ceil(2) {
        state.harvest_tasks.insert(
            format!("task-{}", task + 1),
            rng.pick(&HARVEST_SOURCES).to_string(),
        );
    }
}

/// A workload that is wanted and waits (not running, known to the inventory), with a node
/// that might take it: one that hosts workloads, is its pinned node if it has one, and has no
/// game running. `None` if the workload picked has no such node, or nothing waits.
fn pick_waiting(rng: &mut Rng, house: &House) -> Option<(usize, usize)> {
    let state = &house.state;
    let waiting: Vec<usize> = (0..house.workloads.len())
        .filter(|&w| {
            let workload = &house.workloads[w];
            (workload.tier == Tier::Essential || state.requested.contains(&workload.name))
                && !state.running.contains_key(&workload.name)
        })
        .collect();
    if waiting.is_empty() {
        return None;
    }
    let w = *rng.pick(&waiting);
    let pinned = house.workloads[w].pinned.as_ref();
    let nodes: Vec<usize> = (0..house.nodes.len())
        .filter(|&n| {
            let node = &house.nodes[n];
            matches!(node.role, Role::Hypervisor | Role::Gaming)
                && !state.games.contains(&node.name)
                && pinned.is_none_or(|p| *p == node.name)
        })
        .collect();
    if nodes.is_empty() {
        return None;
    }
    Some((w, *rng.pick(&nodes)))
}

/// Makes a waiting workload need exactly what a node has left: its VRAM, and sometimes its
/// RAM and cores too.
fn fit_exactly(rng: &mut Rng, house: &mut House) {
    if !rng.chance(60) {
        return;
    }
    for _ in 0..2 {
        let Some((w, n)) = pick_waiting(rng, house) else {
            return;
        };
        let (vram, ram, cores) = free_on(house, &house.nodes[n]);
        if vram < 0 || ram < 0 || cores < 0 {
            continue;
        }
        let workload = &mut house.workloads[w];
        workload.vram = vram;
        if rng.chance(50) {
            workload.ram = ram;
            workload.cores = cores;
        }
    }
}

/// Meters whose readings sum to a plausible draw (the household, the idle draw of every node
/// that is up, what runs), and a limit anywhere from comfortable to exceeded, often exactly
/// on a boundary. The limit is set where it applies: on the battery limit while the UPS has
/// been on battery past its hold-off, on the house limit otherwise.
fn set_power_budget(rng: &mut Rng, house: &mut House) {
    let state = &house.state;
    let now = state.now;
    let on_battery = state
        .ups
        .values()
        .any(|u| u.source == Source::Battery && now - u.since >= house.config.ups_holdoff_s);
    let workload: BTreeMap<&str, &Workload> = house
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w))
        .collect();
    let idle: i64 = house
        .nodes
        .iter()
        .filter(|n| state.power_of(&n.name) == Some(Power::Up))
        .map(|n| n.idle_watts)
        .sum();
    let running: Vec<&Workload> = state
        .running
        .keys()
        .filter_map(|name| workload.get(name.as_str()).copied())
        .collect();
    let meters: &[&str] = match rng.range(0, 19) {
        0..=11 => &["house"],
        12..=16 => &["house", "garage"],
        _ => &["house", "garage", "workshop"],
    };
    let mut draw = rng.range(15, 120) * 10 + idle + running.iter().map(|w| w.watts).sum::<i64>();
    // Equal readings on several meters, sometimes: the draw is their sum, not their set.
    let equal = meters.len() > 1 && rng.chance(50);
    if equal {
        draw += (meters.len() as i64 - draw % meters.len() as i64) % meters.len() as i64;
    }
    // What shedding a whole tier saves: the speculative workloads, or the normal ones if no
    // speculative workload runs.
    let tier_draw = |tier| -> i64 {
        running
            .iter()
            .filter(|w| w.tier == tier)
            .map(|w| w.watts)
            .sum()
    };
    let first_tier = match tier_draw(Tier::Speculative) {
        0 => tier_draw(Tier::Normal),
        speculative => speculative,
    };
    let waiting = pick_waiting(rng, house);
    let limit = match (rng.range(0, 99), waiting) {
        (0..=29, _) => draw + rng.range(1, 25) * 100,
        (30..=41, _) => draw,
        (42..=56, Some((w, n))) => {
            let node = &house.nodes[n];
            let wake = match state.power_of(&node.name) {
                Some(Power::Asleep) => node.idle_watts,
                _ => 0,
            };
            draw + house.workloads[w].watts + wake
        }
        (57..=66, _) => draw - first_tier,
        (67..=74, _) => draw - first_tier - 1,
        (75..=89, _) => draw - rng.range(1, draw / 3),
        _ => draw + rng.range(-draw / 3, 300),
    };
    let above = rng.range(0, 30) * 100;
    let (house_limit_w, battery_limit_w) = match (on_battery, rng.chance(15)) {
        (true, false) => (limit + above, limit),
        (true, true) => (limit, limit + above),
        (false, _) => (limit, rng.range(12, 30) * 50),
    };
    house.config.house_limit_w = house_limit_w;
    house.config.battery_limit_w = battery_limit_w;
    let solar = rng.range(0, 300) * 10;
    let count = meters.len() as i64;
    let mut left = draw;
    for (index, meter) in meters.iter().enumerate() {
        let reading = if index as i64 == count - 1 {
            left
        } else if equal {
            draw / count
        } else {
            rng.range(0, left)
        };
        left -= reading;
        house.state.meters.insert(
            meter.to_string(),
            Meter {
                draw_watts: reading,
                solar_watts: if index == 0 { solar } else { 0 },
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle;

    #[test]
    fn the_same_seed_gives_the_same_house_and_another_seed_another() {
        assert_eq!(generate(42, 6, 20, 3), generate(42, 6, 20, 3));
        assert_ne!(generate(42, 6, 20, 3), generate(43, 6, 20, 3));
    }

    #[test]
    fn a_house_has_the_size_asked_for_and_is_consistent() {
        for seed in 0..50 {
            let house = generate(seed, 7, 25, 4);
            let count = |role| house.nodes.iter().filter(|n| n.role == role).count();
            assert_eq!(house.nodes.len(), 11);
            assert_eq!((count(Role::Logic), count(Role::Edge)), (1, 4));
            assert!(count(Role::Hypervisor) >= 1 && count(Role::Gaming) >= 1);
            assert_eq!(house.workloads.len(), 25);
            let names: BTreeMap<&str, usize> = house
                .workloads
                .iter()
                .enumerate()
                .map(|(index, w)| (w.name.as_str(), index))
                .collect();
            assert_eq!(names.len(), 25, "workload names are unique");
            for (index, workload) in house.workloads.iter().enumerate() {
                for dependency in &workload.depends_on {
                    assert!(
                        names[dependency.as_str()] < index,
                        "{dependency} comes first"
                    );
                }
            }
            let state = &house.state;
            for node in &house.nodes {
                let reported = state.power.contains_key(&node.name);
                assert!(reported || matches!(node.role, Role::Hypervisor | Role::Gaming));
            }
            assert!(house.earliest_stamp() <= state.now);
            for (workload, node) in &state.running {
                assert!(names.contains_key(workload.as_str()));
                assert_eq!(
                    state.power_of(node),
                    Some(Power::Up),
                    "{workload} on {node}"
                );
            }
        }
    }

    #[test]
    fn houses_land_on_the_boundaries() {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for seed in 0..300 {
            let house = generate(seed, 5, 14, 2);
            let state = &house.state;
            let decisions = oracle::decide(&house);
            let mut note = |boundary, holds: bool| {
                if holds {
                    *seen.entry(boundary).or_default() += 1;
                }
            };
            note("draw at the limit", decisions.headroom == 0);
            let running: Vec<&Workload> = house
                .workloads
                .iter()
                .filter(|w| state.running.contains_key(&w.name))
                .collect();
            let tier_draw = |tier| -> i64 {
                running
                    .iter()
                    .filter(|w| w.tier == tier)
                    .map(|w| w.watts)
                    .sum()
            };
            let first_tier = match tier_draw(Tier::Speculative) {
                0 => tier_draw(Tier::Normal),
                speculative => speculative,
            };
            note(
                "excess exactly what shedding the first tier saves",
                first_tier > 0 && decisions.excess == Some(first_tier),
            );
            note(
                "headroom exactly a waiting workload's draw",
                house.workloads.iter().any(|w| {
                    decisions.placement.contains_key(&w.name)
                        && !state.running.contains_key(&w.name)
                        && (decisions.headroom == w.watts
                            || house.nodes.iter().any(|n| {
                                state.power_of(&n.name) == Some(Power::Asleep)
                                    && decisions.headroom == w.watts + n.idle_watts
                            }))
                }),
            );
            note(
                "free resources exactly a waiting workload's needs",
                house.workloads.iter().any(|w| {
                    !state.running.contains_key(&w.name)
                        && house.nodes.iter().any(|n| {
                            matches!(n.role, Role::Hypervisor | Role::Gaming)
                                && free_on(&house, n) == (w.vram, w.ram, w.cores)
                        })
                }),
            );
            note(
                "equal draws within a tier in the shedding order",
                running.iter().enumerate().any(|(i, a)| {
                    a.tier != Tier::Essential
                        && running[i + 1..]
                            .iter()
                            .any(|b| b.tier == a.tier && b.watts == a.watts)
                }),
            );
            note(
                "twin heavy nodes",
                house.nodes.iter().enumerate().any(|(i, a)| {
                    a.role != Role::Edge
                        && house.nodes[i + 1..].iter().any(|b| {
                            (b.role, b.idle_watts, b.boot_seconds)
                                == (a.role, a.idle_watts, a.boot_seconds)
                        })
                }),
            );
            note(
                "on battery exactly the hold-off",
                state.ups.values().any(|u| {
                    u.source == Source::Battery && state.now - u.since == house.config.ups_holdoff_s
                }),
            );
            note(
                "a wake packet exactly the rate limit ago",
                state
                    .last_wake
                    .values()
                    .any(|at| state.now - at == house.config.wake_min_interval_s),
            );
            note(
                "equal readings on several meters",
                state.meters.len() > 1
                    && state
                        .meters
                        .values()
                        .all(|m| m.draw_watts == state.meters["house"].draw_watts),
            );
            note("shedding", !decisions.shed.is_empty());
            note("waking", !decisions.wake.is_empty());
        }
        for (boundary, houses) in &seen {
            assert!(*houses >= 10, "only {houses} of 300 houses: {boundary}");
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
    }

    #[test]
    fn a_big_house_is_quick_to_make() {
        let house = generate(1, 400, 4_000, 200);
        assert_eq!(house.nodes.len(), 600);
        assert_eq!(house.workloads.len(), 4_000);
    }
}
