//! The cluster state as the policy's facts.
//!
//! Two answers make the picture. `GET /cluster/status` lists the cluster (with `quorate`) and
//! its nodes (with `online`, corosync's view); `GET /cluster/resources?type=vm` lists every
//! guest with its node and status. They become, for the relations of `rules/quorum.dl` and
//! `rules/state.dl`:
//!
//! ```text
//! member_online(node)                 a node the cluster sees online
//! power_state(node, "up", _)          a node online (the stamp is the engine's)
//! power_state(node, "asleep", _)      a node the cluster lists but does not see
//! running(workload, node)             a guest whose status is "running", by its workload name
//! ```
//!
//! Guests are workloads by [`Names`]: by VMID, or by the guest's name (a VM's name, a
//! container's hostname). A running guest that is no workload is left out (and listed in
//! [`ClusterFacts::unmapped`] for the log): the policy would otherwise find a workload it does
//! not know running. Proxmox's node names can be renamed to the inventory's too. A guest on a
//! node that does not answer has the status `unknown`, and is not reported running.
//!
//! Caveats: Proxmox cannot tell a node asleep from one that crashed or lost its network, both
//! are `online: 0`; the rules treat both as asleep, and the network view (`isolated`) tells
//! them apart. `/cluster/status` does not show the qdevice, so `qdevice_online` comes from
//! elsewhere. A VM paused in memory still has the status `running`: it holds its memory.
//!
//! A source reports changes: [`ClusterFacts::report`] is the transaction from what was reported
//! before to what holds now, inserting what appeared and retracting what went away. An answer
//! that does not have the expected shape is a [`Malformed`] and changes nothing: leaving out
//! the part that could not be read would retract its facts.

use super::actions::{GuestKind, truth};
use super::client::{Answer, Client, api_path};
use super::{Error, Malformed};
use crate::source::{Backoff, Report, Staleness, open, symbol};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// `GET /cluster/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterStatus {
    /// `None` for a single node outside any cluster.
    pub quorate: Option<bool>,
    /// Each node and whether the cluster sees it online.
    pub nodes: BTreeMap<String, bool>,
}

/// A guest of `GET /cluster/resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestResource {
    pub kind: GuestKind,
    pub vmid: u32,
    pub name: Option<String>,
    pub node: String,
    /// `running`, `stopped`, `paused`, `unknown` (its node does not answer), ...
    pub status: String,
    pub template: bool,
}

impl GuestResource {
    fn describe(&self) -> String {
        format!(
            "{} {} ({}) on {}",
            self.kind.as_str(),
            self.vmid,
            self.name.as_deref().unwrap_or("no name"),
            self.node
        )
    }
}

/// Reads `/cluster/status`'s data.
pub fn parse_status(data: &Value) -> Result<ClusterStatus, String> {
    let items = data.as_array().ok_or("the cluster status is not a list")?;
    let mut status = ClusterStatus::default();
    for (index, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("item {index} has no `type`"))?;
        match kind {
            "cluster" => {
                let quorate = item
                    .get("quorate")
                    .ok_or_else(|| format!("the cluster (item {index}) has no `quorate`"))?;
                status.quorate = Some(
                    truth(quorate)
                        .ok_or_else(|| format!("the cluster's `quorate` is {quorate}"))?,
                );
            }
            "node" => {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| format!("node item {index} has no `name`"))?;
                let online = item
                    .get("online")
                    .ok_or_else(|| format!("node `{name}` has no `online`"))?;
                let online =
                    truth(online).ok_or_else(|| format!("node `{name}` has `online` {online}"))?;
                status.nodes.insert(name.to_string(), online);
            }
            // Other entries (none today) say nothing about nodes.
            _ => {}
        }
    }
    Ok(status)
}

/// Reads the guests of `/cluster/resources`'s data; other resources are skipped.
pub fn parse_resources(data: &Value) -> Result<Vec<GuestResource>, String> {
    let items = data.as_array().ok_or("the resources are not a list")?;
    let mut guests = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(kind) = item.get("type").and_then(Value::as_str) else {
            return Err(format!("item {index} has no `type`"));
        };
        let Some(kind) = GuestKind::parse(kind) else {
            continue;
        };
        let vmid = item
            .get("vmid")
            .and_then(|vmid| {
                vmid.as_u64()
                    .or_else(|| vmid.as_str().and_then(|text| text.parse().ok()))
            })
            .and_then(|vmid| u32::try_from(vmid).ok())
            .ok_or_else(|| format!("guest item {index} has no numeric `vmid`"))?;
        let node = item
            .get("node")
            .and_then(Value::as_str)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| format!("guest {vmid} has no `node`"))?;
        let status = item
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("guest {vmid} has no `status`"))?;
        let name = match item.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(other) => return Err(format!("guest {vmid} has the name {other}")),
        };
        let template = match item.get("template") {
            None | Some(Value::Null) => false,
            Some(value) => {
                truth(value).ok_or_else(|| format!("guest {vmid} has `template` {value}"))?
            }
        };
        guests.push(GuestResource {
            kind,
            vmid,
            name,
            node: node.to_string(),
            status: status.to_string(),
            template,
        });
    }
    Ok(guests)
}

/// Which guest is which workload, and which Proxmox node is which node of the inventory.
#[derive(Debug, Clone, Default)]
pub struct Names {
    by_vmid: BTreeMap<u32, String>,
    by_name: BTreeMap<String, String>,
    nodes: BTreeMap<String, String>,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// Each of these workloads is the guest of the same name.
    pub fn same_names<S: AsRef<str>>(workloads: impl IntoIterator<Item = S>) -> Names {
        let mut names = Names::new();
        for workload in workloads {
            let workload = workload.as_ref();
            names.by_name.insert(workload.into(), workload.into());
        }
        names
    }

    /// The guest named `guest` (a VM's name, a container's hostname) is `workload`.
    pub fn guest(mut self, guest: &str, workload: &str) -> Names {
        self.by_name.insert(guest.into(), workload.into());
        self
    }

    /// The guest `vmid` is `workload`, whatever its name; this comes before names.
    pub fn vmid(mut self, vmid: u32, workload: &str) -> Names {
        self.by_vmid.insert(vmid, workload.into());
        self
    }

    /// Proxmox's node `proxmox` is the inventory's `node`; other nodes keep their names.
    pub fn node(mut self, proxmox: &str, node: &str) -> Names {
        self.nodes.insert(proxmox.into(), node.into());
        self
    }

    pub fn workload_of(&self, guest: &GuestResource) -> Option<&str> {
        self.by_vmid
            .get(&guest.vmid)
            .or_else(|| guest.name.as_ref().and_then(|name| self.by_name.get(name)))
            .map(String::as_str)
    }

    pub fn node_of<'a>(&'a self, proxmox: &'a str) -> &'a str {
        self.nodes.get(proxmox).map_or(proxmox, String::as_str)
    }
}

/// The facts the cluster state holds, by the inventory's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    pub quorate: Option<bool>,
    /// Every node the cluster lists, and whether it is online.
    pub nodes: BTreeMap<String, bool>,
    /// `(workload, node)` of every running guest that is a workload.
    pub running: BTreeSet<(String, String)>,
    /// Running guests that are no workload, described for the log.
    pub unmapped: Vec<String>,
}

impl ClusterFacts {
    pub fn new(status: &ClusterStatus, guests: &[GuestResource], names: &Names) -> ClusterFacts {
        let nodes = status
            .nodes
            .iter()
            .map(|(node, online)| (names.node_of(node).to_string(), *online))
            .collect();
        let mut running = BTreeSet::new();
        let mut unmapped = Vec::new();
        for guest in guests {
            if guest.template || guest.status != "running" {
                continue;
            }
            match names.workload_of(guest) {
                Some(workload) => {
                    running.insert((workload.to_string(), names.node_of(&guest.node).into()));
                }
                None => unmapped.push(guest.describe()),
            }
        }
        ClusterFacts {
            quorate: status.quorate,
            nodes,
            running,
            unmapped,
        }
    }

    /// The transaction from the facts reported `before` to these: what appeared is
    /// inserted, what went away retracted, what stayed untouched.
    pub fn report(&self, before: &ClusterFacts) -> Report {
        let mut report = Report::default();
        let online = |facts: &ClusterFacts, node: &str| facts.nodes.get(node) == Some(&true);
        for (node, up) in &before.nodes {
            if *up && !online(self, node) {
                report.retract("member_online", vec![symbol(node)]);
            }
            if !self.nodes.contains_key(node) {
                report.retract("power_state", vec![symbol(node), open(), open()]);
            }
        }
        for (node, up) in &self.nodes {
            if *up && !online(before, node) {
                report.insert("member_online", vec![symbol(node)]);
            }
            if before.nodes.get(node) != Some(up) {
                let state = if *up { "up" } else { "asleep" };
                report.insert("power_state", vec![symbol(node), symbol(state), open()]);
            }
        }
        for (workload, node) in before.running.difference(&self.running) {
            report.retract("running", vec![symbol(workload), symbol(node)]);
        }
        for (workload, node) in self.running.difference(&before.running) {
            report.insert("running", vec![symbol(workload), symbol(node)]);
        }
        report
    }
}

impl Client {
    /// `GET /cluster/status`.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let answer = self.get(&api_path(&["cluster", "status"]), &[]).await?;
        parse_status(&answer.data).map_err(|reason| answer.malformed(reason))
    }

    /// The guests of `GET /cluster/resources?type=vm` (VMs and containers).
    pub async fn cluster_guests(&self) -> Result<Vec<GuestResource>, Error> {
        let answer: Answer = self
            .get(
                &api_path(&["cluster", "resources"]),
                &[("type", "vm".to_string())],
            )
            .await?;
        parse_resources(&answer.data).map_err(|reason| answer.malformed(reason))
    }

    /// The cluster's facts now.
    pub async fn cluster_facts(&self, names: &Names) -> Result<ClusterFacts, Error> {
        let status = self.cluster_status().await?;
        let guests = self.cluster_guests().await?;
        Ok(ClusterFacts::new(&status, &guests, names))
    }
}

/// What a poll of the cluster gave.
#[derive(Debug)]
pub enum Polled {
    /// The changes since the last report (empty when nothing changed).
    Report(Report),
    /// An answer that could not be read: log it with its payload; nothing changed.
    Malformed(Malformed),
    /// Proxmox could not be asked: nothing changed.
    Failed(Error),
}

/// The cluster state as a source: polled, reported as changes, retracted when it goes stale.
#[derive(Debug)]
pub struct ClusterSource {
    client: Client,
    names: Names,
    reported: ClusterFacts,
    interval: Duration,
    backoff: Backoff,
    staleness: Staleness,
}

impl ClusterSource {
    /// Polled every `interval`, backing off up to ten times that after failures; its facts
    /// are retracted after `stale_after` without an answer.
    pub fn new(
        client: Client,
        names: Names,
        interval: Duration,
        stale_after: Duration,
    ) -> ClusterSource {
        ClusterSource {
            client,
            names,
            reported: ClusterFacts::default(),
            interval,
            backoff: Backoff::new(interval, interval * 10),
            staleness: Staleness::new(stale_after),
        }
    }

    /// What the engine holds already (after a restart, say), so that the next report is the
    /// change from it.
    pub fn assume(&mut self, facts: ClusterFacts) {
        self.reported = facts;
    }

    pub fn reported(&self) -> &ClusterFacts {
        &self.reported
    }

    /// Asks the cluster; what changed, and the wait before the next poll.
    pub async fn poll(&mut self, now: Instant) -> (Polled, Duration) {
        match self.client.cluster_facts(&self.names).await {
            Ok(facts) => {
                self.staleness.heard(now);
                self.backoff.succeeded();
                let report = facts.report(&self.reported);
                self.reported = facts;
                (Polled::Report(report), self.interval)
            }
            Err(Error::Malformed(malformed)) => {
                (Polled::Malformed(malformed), self.backoff.failed())
            }
            Err(error) => (Polled::Failed(error), self.backoff.failed()),
        }
    }

    /// Once per silence past the limit: the retraction of every fact reported.
    pub fn stale(&mut self, now: Instant) -> Option<Report> {
        if !self.staleness.turned_stale(now) {
            return None;
        }
        let report = ClusterFacts::default().report(&self.reported);
        self.reported = ClusterFacts::default();
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn house() -> (ClusterStatus, Vec<GuestResource>) {
        let status = parse_status(&json!([
            {"type": "cluster", "id": "cluster", "name": "home", "nodes": 2, "quorate": 1, "version": 3},
            {"type": "node", "id": "node/pve1", "name": "pve1", "online": 1, "local": 1, "nodeid": 1},
            {"type": "node", "id": "node/gaming", "name": "gaming", "online": 0, "nodeid": 2}
        ]))
        .unwrap();
        let guests = parse_resources(&json!([
            {"id": "qemu/100", "type": "qemu", "vmid": 100, "name": "nas-db", "node": "pve1", "status": "running", "template": 0},
            {"id": "lxc/200", "type": "lxc", "vmid": 200, "name": "photos", "node": "pve1", "status": "running"},
            {"id": "qemu/101", "type": "qemu", "vmid": 101, "name": "backup", "node": "pve1", "status": "stopped"},
            {"id": "qemu/102", "type": "qemu", "vmid": 102, "name": "scratch", "node": "pve1", "status": "running"},
            {"id": "qemu/103", "type": "qemu", "vmid": 103, "name": "sdxl-batch", "node": "gaming", "status": "unknown"},
            {"id": "qemu/9000", "type": "qemu", "vmid": 9000, "name": "nas-db", "node": "pve1", "status": "running", "template": 1},
            {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "status": "available"}
        ]))
        .unwrap();
        (status, guests)
    }

    #[test]
    fn the_cluster_becomes_facts_by_the_inventory_s_names() {
        let (status, guests) = house();
        let names = Names::same_names(["nas-db", "backup", "sdxl-batch"])
            .vmid(200, "photos")
            .node("pve1", "pve");
        let facts = ClusterFacts::new(&status, &guests, &names);
        assert_eq!(facts.quorate, Some(true));
        assert_eq!(
            facts.nodes,
            BTreeMap::from([("pve".into(), true), ("gaming".into(), false)])
        );
        assert_eq!(
            facts.running,
            BTreeSet::from([
                ("nas-db".into(), "pve".into()),
                ("photos".into(), "pve".into())
            ])
        );
        assert_eq!(facts.unmapped, ["qemu 102 (scratch) on pve1"]);

        let report = facts.report(&ClusterFacts::default());
        assert_eq!(report.insert["member_online"], [vec![symbol("pve")]]);
        assert_eq!(
            report.insert["power_state"],
            [
                vec![symbol("gaming"), symbol("asleep"), open()],
                vec![symbol("pve"), symbol("up"), open()]
            ]
        );
        assert_eq!(report.insert["running"].len(), 2);
        assert!(report.retract.is_empty());
    }

    #[test]
    fn a_report_is_the_change_since_the_last_one() {
        let (status, guests) = house();
        let names = Names::same_names(["nas-db", "photos"]).node("pve1", "pve");
        let before = ClusterFacts::new(&status, &guests, &names);
        assert!(before.report(&before).is_empty());

        // gaming wakes, photos stops, nas-db moves to gaming.
        let mut status = status;
        status.nodes.insert("gaming".into(), true);
        let mut guests = guests;
        guests.retain(|guest| guest.vmid != 200);
        guests[0].node = "gaming".into();
        let after = ClusterFacts::new(&status, &guests, &names);
        let report = after.report(&before);
        assert_eq!(report.insert["member_online"], [vec![symbol("gaming")]]);
        assert_eq!(
            report.insert["power_state"],
            [vec![symbol("gaming"), symbol("up"), open()]]
        );
        assert_eq!(
            report.insert["running"],
            [vec![symbol("nas-db"), symbol("gaming")]]
        );
        assert_eq!(
            report.retract["running"],
            [
                vec![symbol("nas-db"), symbol("pve")],
                vec![symbol("photos"), symbol("pve")]
            ]
        );
        assert!(!report.retract.contains_key("member_online"));

        // Everything gone: every fact retracted, power states by their key.
        let gone = ClusterFacts::default().report(&after);
        assert_eq!(gone.retract["member_online"].len(), 2);
        assert_eq!(
            gone.retract["power_state"][0],
            vec![symbol("gaming"), open(), open()]
        );
        assert!(gone.insert.is_empty());
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_refused_whole() {
        assert!(parse_status(&json!({"nodes": []})).is_err());
        assert!(parse_status(&json!([{"type": "node", "name": "pve"}])).is_err());
        assert!(
            parse_status(&json!([{"type": "node", "name": "pve", "online": "maybe"}])).is_err()
        );
        assert!(parse_resources(&json!([{"type": "qemu", "vmid": 100, "node": "pve"}])).is_err());
        assert!(
            parse_resources(
                &json!([{"type": "lxc", "vmid": "x", "node": "pve", "status": "running"}])
            )
            .is_err()
        );
        // A single node outside a cluster has no cluster entry.
        let single =
            parse_status(&json!([{"type": "node", "name": "pve", "online": 1, "local": 1}]))
                .unwrap();
        assert_eq!(single.quorate, None);
    }
}
