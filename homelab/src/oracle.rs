//! What the homelab policy decides about placement, waking and load shedding, computed
//! directly from a [`House`]: a second account of `rules/power.dl`, `rules/ups.dl`,
//! `rules/placement.dl` and the waking half of `rules/wake.dl`, written from their stated
//! intent (their comments and the homelab's description) with loops and sorts.
//!
//! Nothing here evaluates Datalog or shares code with the engine; the two meet only in the
//! rows they produce ([`Decisions::views`]), which a test compares on many generated houses.
//! Where they disagree, one of them misreads the policy. The intent, as implemented here:
//!
//! - **The UPS.** A UPS is on battery once it has run on battery for at least the hold-off
//!   (`ups_holdoff_s`); a shorter blip changes nothing. Power is unstable while any UPS runs on
//!   battery however briefly, has been back on line power for less than the restore hold-off
//!   (`ups_restore_holdoff_s`), or has less than `ups_restore_pct` of charge; nothing is woken
//!   or started then.
//! - **The budget.** The draw is the sum of every meter's draw. The limit is `house_limit_w`,
//!   or the lower of it and `battery_limit_w` while on battery. The headroom is the limit minus
//!   the draw; the excess, the draw minus the limit when the draw passes it (strictly).
//! - **Shedding.** Every running workload that is not essential may be shed: speculative ones
//!   before normal ones, within a tier the biggest draw first, equal draws by name. Shedding
//!   walks that order and stops as soon as what it has shed covers the excess: a workload is
//!   shed when what comes before it saves less than the excess.
//! - **Placement.** A wanted workload (essential, or requested) that runs stays where it runs,
//!   except on a gaming rig where a game now runs: it must leave the rig, and until it has
//!   stopped there it has no place (it runs, so it is not placed anew either). A wanted
//!   workload that does not run goes to the cheapest node that fits it: a hypervisor or a
//!   gaming rig (never the logic node, never an edge), up or asleep, with the VRAM, RAM and
//!   cores that the workloads running on it leave, no game running, its pinned node if it has
//!   one, and with the workload's draw (plus the node's idle draw if the node must wake)
//!   within the headroom. A node costs its idle draw, plus its boot time if it sleeps; equal
//!   costs go to the name that sorts first. A wanted workload with no such node (or unknown
//!   to the inventory) is unplaced. Each is placed against what runs now, independently of
//!   the others.
//! - **Starting.** A placed workload that does not run yet is ready when its node is up,
//!   everything it depends on runs, and the power is stable. Starts go one at a time, so that
//!   each is checked against what the previous one really left: of the ready workloads, only
//!   the one whose name sorts first starts now.
//! - **Waking.** A sleeping node that a placement needs is woken, ready after its boot time,
//!   unless the power is unstable or a wake packet went out less than `wake_min_interval_s`
//!   ago.

use crate::house::{House, Node, Power, Role, Source, Tier, Workload};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The policy's decisions about one house.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decisions {
    /// What the house may draw now, in watts.
    pub limit: i64,
    /// How much more it may draw (negative when over the limit).
    pub headroom: i64,
    /// How far the draw is over the limit, if it is.
    pub excess: Option<i64>,
    /// Every running workload that may be shed, first to shed first.
    pub shed_order: Vec<String>,
    /// The workloads to shed now.
    pub shed: BTreeSet<String>,
    /// Workload to the node it runs on or goes to.
    pub placement: BTreeMap<String, String>,
    /// Wanted workloads that no node can take now.
    pub unplaced: BTreeSet<String>,
    /// The workload to start now, with its node.
    pub start: Option<(String, String)>,
    /// Nodes to wake now, with the seconds until they are ready.
    pub wake: BTreeMap<String, i64>,
}

/// A view's rows, each a list of fields in the policy's text form (what `vigil run` prints).
pub type Rows = BTreeSet<Vec<String>>;

impl Decisions {
    /// The decisions as the policy's views name them: `(view, rows)`.
    pub fn views(&self) -> Vec<(&'static str, Rows)> {
        let pairs = |map: &BTreeMap<String, String>| -> Rows {
            map.iter()
                .map(|(a, b)| vec![a.clone(), b.clone()])
                .collect()
        };
        let singles =
            |set: &BTreeSet<String>| -> Rows { set.iter().map(|a| vec![a.clone()]).collect() };
        let number = |value: i64| -> Rows { Rows::from([vec![value.to_string()]]) };
        vec![
            ("placement", pairs(&self.placement)),
            ("unplaced", singles(&self.unplaced)),
            (
                "start",
                self.start
                    .iter()
                    .map(|(w, n)| vec![w.clone(), n.clone()])
                    .collect(),
            ),
            (
                "wake",
                self.wake
                    .iter()
                    .map(|(node, eta)| vec![node.clone(), eta.to_string()])
                    .collect(),
            ),
            ("limit", number(self.limit)),
            ("headroom", number(self.headroom)),
            ("excess", self.excess.map(number).unwrap_or_default()),
            (
                "shed_order",
                self.shed_order
                    .iter()
                    .enumerate()
                    .map(|(index, w)| vec![w.clone(), (index + 1).to_string()])
                    .collect(),
            ),
            ("shed", singles(&self.shed)),
        ]
    }
}

/// The order of shedding among tiers: speculative first; essential never.
fn shed_rank(tier: Tier) -> Option<u8> {
    match tier {
        Tier::Speculative => Some(0),
        Tier::Normal => Some(1),
        Tier::Essential => None,
    }
}

/// Decides placement, waking and load shedding for `house`.
pub fn decide(house: &House) -> Decisions {
    let state = &house.state;
    let config = &house.config;
    let now = state.now;
    let workloads: HashMap<&str, &Workload> = house
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w))
        .collect();
    let nodes: HashMap<&str, &Node> = house.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let runs = |workload: &str| state.running.contains_key(workload);

    // The UPS.
    let on_battery = state
        .ups
        .values()
        .any(|ups| ups.source == Source::Battery && now - ups.since >= config.ups_holdoff_s);
    let unstable = state.ups.values().any(|ups| {
        ups.source == Source::Battery
            || now - ups.since < config.ups_restore_holdoff_s
            || ups.charge_pct < config.ups_restore_pct
    });

    // The budget.
    let draw: i64 = state.meters.values().map(|m| m.draw_watts).sum();
    let limit = if on_battery {
        config.house_limit_w.min(config.battery_limit_w)
    } else {
        config.house_limit_w
    };
    let headroom = limit - draw;
    let excess = (draw > limit).then_some(draw - limit);

    // Shedding.
    let mut sheddable: Vec<(u8, &Workload)> = state
        .running
        .keys()
        .filter_map(|name| workloads.get(name.as_str()))
        .filter_map(|w| shed_rank(w.tier).map(|rank| (rank, *w)))
        .collect();
    sheddable.sort_by_key(|(rank, w)| (*rank, Reverse(w.watts), w.name.as_str()));
    let shed_order: Vec<String> = sheddable.iter().map(|(_, w)| w.name.clone()).collect();
    let mut shed = BTreeSet::new();
    if let Some(excess) = excess {
        let mut saved = 0;
        for (_, workload) in &sheddable {
            if saved >= excess {
                break;
            }
            shed.insert(workload.name.clone());
            saved += workload.watts;
        }
    }

    // What each node that hosts workloads has left; only those nodes have an entry.
    let mut free: HashMap<&str, (i64, i64, i64)> = house
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Hypervisor | Role::Gaming))
        .map(|n| (n.name.as_str(), (n.vram, n.ram, n.cores)))
        .collect();
    for (workload, node) in &state.running {
        if let (Some(workload), Some(left)) = (
            workloads.get(workload.as_str()),
            free.get_mut(node.as_str()),
        ) {
            left.0 -= workload.vram;
            left.1 -= workload.ram;
            left.2 -= workload.cores;
        }
    }

    // Placement.
    let wanted: BTreeSet<&str> = state
        .requested
        .iter()
        .map(String::as_str)
        .chain(
            house
                .workloads
                .iter()
                .filter(|w| w.tier == Tier::Essential)
                .map(|w| w.name.as_str()),
        )
        .collect();
    let mut placement = BTreeMap::new();
    let mut unplaced = BTreeSet::new();
    for name in wanted {
        if let Some(node) = state.running.get(name) {
            if !state.games.contains(node) {
                placement.insert(name.to_string(), node.clone());
            } else {
                unplaced.insert(name.to_string());
            }
            continue;
        }
        let best = workloads.get(name).and_then(|workload| {
            house
                .nodes
                .iter()
                .filter_map(|node| {
                    let left = free.get(node.name.as_str())?;
                    cost(house, workload, node, *left, headroom).map(|c| (c, &node.name))
                })
                .min()
        });
        match best {
            Some((_, node)) => {
                placement.insert(name.to_string(), node.clone());
            }
            None => {
                unplaced.insert(name.to_string());
            }
        }
    }

    // Starting and waking.
    let power = |node: &str| state.power_of(node);
    let mut start = None;
    let mut wake = BTreeMap::new();
    // `placement` is in name order, so the first ready workload is the one to start.
    for (workload, node) in &placement {
        let dependencies_run = workloads
            .get(workload.as_str())
            .is_none_or(|w| w.depends_on.iter().all(|d| runs(d)));
        let ready =
            !runs(workload) && power(node) == Some(Power::Up) && dependencies_run && !unstable;
        if ready && start.is_none() {
            start = Some((workload.clone(), node.clone()));
        }
        let deferred = state
            .last_wake
            .get(node)
            .is_some_and(|at| now < at + config.wake_min_interval_s);
        if power(node) == Some(Power::Asleep)
            && !unstable
            && !deferred
            && let Some(asleep) = nodes.get(node.as_str())
        {
            wake.insert(node.clone(), asleep.boot_seconds);
        }
    }

    Decisions {
        limit,
        headroom,
        excess,
        shed_order,
        shed,
        placement,
        unplaced,
        start,
        wake,
    }
}

/// What placing `workload` on `node` costs, if the node can take it now: `left` is what the
/// node has left (VRAM, RAM, cores) and `headroom` the power the house may still draw.
fn cost(
    house: &House,
    workload: &Workload,
    node: &Node,
    left: (i64, i64, i64),
    headroom: i64,
) -> Option<i64> {
    let state = &house.state;
    // A node that has not reported its power state cannot be costed, nor trusted with work.
    let asleep = match state.power_of(&node.name)? {
        Power::Up => false,
        Power::Asleep => true,
    };
    let room = workload.vram <= left.0 && workload.ram <= left.1 && workload.cores <= left.2;
    let pinned_here = workload.pinned.as_ref().is_none_or(|p| *p == node.name);
    let wake_watts = if asleep { node.idle_watts } else { 0 };
    let power_fits = workload.watts + wake_watts <= headroom;
    if !room || !pinned_here || state.games.contains(&node.name) || !power_fits {
        return None;
    }
    Some(node.idle_watts + if asleep { node.boot_seconds } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::house::{Config, Kind, Meter, PowerState, State, Ups};

    fn node(name: &str, role: Role, hardware: [i64; 6]) -> Node {
        let [cores, ram, vram, idle_watts, peak_watts, boot_seconds] = hardware;
        Node {
            name: name.to_string(),
            cores,
            ram,
            gpu: if vram > 0 { "gpu" } else { "none" }.to_string(),
            vram,
            idle_watts,
            peak_watts,
            boot_seconds,
            role,
            mac: "02:00:00:00:00:00".to_string(),
            votes: 1,
        }
    }

    fn workload(name: &str, needs: [i64; 3], tier: Tier, watts: i64, on: &[&str]) -> Workload {
        Workload {
            name: name.to_string(),
            vram: needs[0],
            ram: needs[1],
            cores: needs[2],
            tier,
            watts,
            kind: Kind::Vm,
            depends_on: on.iter().map(|d| d.to_string()).collect(),
            pinned: None,
            ha: false,
        }
    }

    /// The sample house of `fixtures/homelab/`, at 02:00 UTC.
    fn sample() -> House {
        let now = 1_796_004_000;
        let up = |since| PowerState {
            power: Power::Up,
            since,
        };
        House {
            nodes: vec![
                node("pve", Role::Hypervisor, [16, 64, 16, 60, 450, 90]),
                node("gaming", Role::Gaming, [16, 32, 16, 50, 400, 45]),
                node("logic", Role::Logic, [8, 16, 0, 12, 35, 0]),
                node("edge-pi4", Role::Edge, [4, 4, 0, 4, 7, 30]),
            ],
            workloads: vec![
                Workload {
                    pinned: Some("pve".to_string()),
                    ..workload("nas-storage", [0, 8, 2], Tier::Essential, 35, &[])
                },
                Workload {
                    pinned: Some("pve".to_string()),
                    ..workload("nas-db", [0, 4, 2], Tier::Essential, 20, &["nas-storage"])
                },
                workload(
                    "photos",
                    [0, 4, 2],
                    Tier::Normal,
                    25,
                    &["nas-db", "nas-storage"],
                ),
                workload("backup", [0, 8, 2], Tier::Normal, 40, &["nas-storage"]),
                workload("llm-chat", [14, 24, 6], Tier::Normal, 320, &[]),
                workload("sdxl-batch", [10, 16, 4], Tier::Speculative, 280, &[]),
                workload("lora-train", [15, 48, 12], Tier::Speculative, 380, &[]),
                workload("media-transcode", [4, 8, 4], Tier::Speculative, 150, &[]),
            ],
            config: Config {
                house_limit_w: 3000,
                battery_limit_w: 900,
                ups_holdoff_s: 30,
                ups_shutdown_pct: 30,
                ups_restore_holdoff_s: 120,
                ups_restore_pct: 50,
                wake_min_interval_s: 300,
                idle_timeout_s: 900,
                borrow_idle_s: 600,
                approval_ttl_s: 3600,
                offpeak_start_h: 1,
                offpeak_end_h: 6,
            },
            links: Vec::new(),
            state: State {
                now,
                power: BTreeMap::from([
                    ("pve".to_string(), up(1_795_996_800)),
                    (
                        "gaming".to_string(),
                        PowerState {
                            power: Power::Asleep,
                            since: 1_795_984_000,
                        },
                    ),
                    ("logic".to_string(), up(1_795_104_000)),
                    ("edge-pi4".to_string(), up(1_795_917_600)),
                ]),
                running: ["nas-storage", "nas-db", "photos", "backup", "llm-chat"]
                    .into_iter()
                    .map(|w| (w.to_string(), "pve".to_string()))
                    .collect(),
                requested: ["llm-chat", "sdxl-batch", "lora-train", "photos", "backup"]
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                meters: BTreeMap::from([(
                    "house".to_string(),
                    Meter {
                        draw_watts: 2650,
                        solar_watts: 400,
                    },
                )]),
                ups: BTreeMap::from([(
                    "ups".to_string(),
                    Ups {
                        source: Source::Line,
                        since: 1_795_104_000,
                        charge_pct: 100,
                        runtime_seconds: 2400,
                    },
                )]),
                ..State::default()
            },
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_sample_house_gets_the_decisions_worked_out_by_hand() {
        let decisions = decide(&sample());
        // pve has 2 GiB of VRAM left; sdxl-batch fits only the sleeping rig: 50 W idle plus
        // 280 W fit in the 350 W of headroom. lora-train's 48 GiB of RAM fit nowhere.
        let placed: BTreeMap<String, String> = [
            ("backup", "pve"),
            ("llm-chat", "pve"),
            ("nas-db", "pve"),
            ("nas-storage", "pve"),
            ("photos", "pve"),
            ("sdxl-batch", "gaming"),
        ]
        .into_iter()
        .map(|(w, n)| (w.to_string(), n.to_string()))
        .collect();
        assert_eq!(decisions.placement, placed);
        assert_eq!(decisions.unplaced, names(&["lora-train"]));
        assert_eq!(decisions.wake, BTreeMap::from([("gaming".to_string(), 45)]));
        assert_eq!(decisions.start, None);
        assert_eq!((decisions.limit, decisions.headroom), (3000, 350));
        assert_eq!(decisions.excess, None);
        assert_eq!(decisions.shed_order, ["llm-chat", "backup", "photos"]);
        assert!(decisions.shed.is_empty());
    }

    #[test]
    fn shedding_stops_once_the_excess_is_covered() {
        let mut house = sample();
        // 320 W over: llm-chat alone saves exactly that.
        house.state.meters.get_mut("house").unwrap().draw_watts = 3320;
        let decisions = decide(&house);
        assert_eq!(decisions.excess, Some(320));
        assert_eq!(decisions.shed, names(&["llm-chat"]));
        // 1 W more, and backup goes too; photos is not needed.
        house.state.meters.get_mut("house").unwrap().draw_watts = 3321;
        assert_eq!(decide(&house).shed, names(&["llm-chat", "backup"]));
        // Exactly at the limit is not over it.
        house.state.meters.get_mut("house").unwrap().draw_watts = 3000;
        let decisions = decide(&house);
        assert_eq!((decisions.headroom, decisions.excess), (0, None));
        assert!(decisions.shed.is_empty());
    }

    #[test]
    fn speculative_workloads_go_first_and_equal_draws_by_name() {
        let mut house = sample();
        house
            .state
            .running
            .insert("media-transcode".to_string(), "pve".to_string());
        // photos draws as much as llm-chat now: the name decides.
        house.workloads[2].watts = 320;
        let decisions = decide(&house);
        assert_eq!(
            decisions.shed_order,
            ["media-transcode", "llm-chat", "photos", "backup"]
        );
    }

    #[test]
    fn on_battery_past_the_hold_off_the_battery_limit_applies_and_nothing_wakes() {
        let mut house = sample();
        let ups = house.state.ups.get_mut("ups").unwrap();
        ups.source = Source::Battery;
        ups.since = house.state.now - 29;
        // Within the hold-off: the house limit still applies, but the power is unstable.
        let decisions = decide(&house);
        assert_eq!(decisions.limit, 3000);
        assert!(decisions.wake.is_empty());
        house.state.ups.get_mut("ups").unwrap().since = house.state.now - 30;
        let decisions = decide(&house);
        assert_eq!((decisions.limit, decisions.excess), (900, Some(1750)));
        assert_eq!(decisions.shed, names(&["llm-chat", "backup", "photos"]));
        assert_eq!(decisions.unplaced, names(&["lora-train", "sdxl-batch"]));
        assert!(decisions.wake.is_empty());
    }

    #[test]
    fn equal_costs_go_to_the_name_that_sorts_first_and_wakes_are_rate_limited() {
        let mut house = sample();
        // A second rig, identical to the first and asleep too: the cost ties.
        house.nodes.push(Node {
            name: "alpha-rig".to_string(),
            ..house.nodes[1].clone()
        });
        house.state.power.insert(
            "alpha-rig".to_string(),
            PowerState {
                power: Power::Asleep,
                since: 0,
            },
        );
        let decisions = decide(&house);
        assert_eq!(decisions.placement["sdxl-batch"], "alpha-rig");
        assert_eq!(
            decisions.wake,
            BTreeMap::from([("alpha-rig".to_string(), 45)])
        );
        house
            .state
            .last_wake
            .insert("alpha-rig".to_string(), house.state.now - 299);
        assert!(decide(&house).wake.is_empty());
        house
            .state
            .last_wake
            .insert("alpha-rig".to_string(), house.state.now - 300);
        assert_eq!(decide(&house).wake.len(), 1);
    }

    #[test]
    fn a_placed_workload_starts_once_its_node_is_up_and_its_dependencies_run() {
        let mut house = sample();
        house.state.running.remove("photos");
        house.state.running.remove("nas-db");
        let decisions = decide(&house);
        // nas-db depends on nas-storage, which runs; photos waits for nas-db.
        assert_eq!(
            decisions.start,
            Some(("nas-db".to_string(), "pve".to_string()))
        );
        assert_eq!(decisions.placement["photos"], "pve");
        // With nas-db up again, photos and a new backup are both ready: the name that sorts
        // first starts, and the other waits for it.
        house
            .state
            .running
            .insert("nas-db".to_string(), "pve".to_string());
        house.state.running.remove("backup");
        let decisions = decide(&house);
        assert_eq!(
            decisions.start,
            Some(("backup".to_string(), "pve".to_string()))
        );
    }

    #[test]
    fn a_workload_on_a_rig_where_a_game_starts_has_no_place_until_it_stops() {
        let mut house = sample();
        house.state.power.get_mut("gaming").unwrap().power = Power::Up;
        house
            .state
            .running
            .insert("sdxl-batch".to_string(), "gaming".to_string());
        assert_eq!(decide(&house).placement["sdxl-batch"], "gaming");
        house.state.games.insert("gaming".to_string());
        let decisions = decide(&house);
        assert!(!decisions.placement.contains_key("sdxl-batch"));
        assert!(decisions.unplaced.contains("sdxl-batch"));
    }
}
