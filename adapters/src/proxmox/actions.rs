//! What the actuator asks of Proxmox: a guest's power, its migration, a node's shutdown and
//! its wake-up.
//!
//! | action | request | answer |
//! |---|---|---|
//! | start, shutdown, stop, suspend, resume | `POST /nodes/N/{qemu,lxc}/ID/status/ACTION` | a task |
//! | migrate | `GET /nodes/N/{qemu,lxc}/ID/migrate`, then `POST` the same with `target` | a task |
//! | node shutdown | `POST /nodes/N/status` with `command=shutdown` | `null` |
//! | wake a node | `POST /nodes/N/wakeonlan` | the MAC address woken |
//!
//! A migration first asks Proxmox whether the guest runs: a running VM moves live
//! (`online=1`); a running container cannot, so it moves in restart mode (`restart=1`: shut
//! down, moved, started on the target), which is the only way Proxmox moves one.
//!
//! Wake-on-LAN goes through the node that answers the API: `N` is the sleeping node, whose
//! MAC address Proxmox knows from its node configuration (`wakeonlan`), and the node that
//! receives the request sends the magic packet on its own network.

use super::Error;
use super::client::{Client, api_path};
use super::tasks::{Finished, Upid, upid_of};
use serde_json::Value;
use std::fmt;

/// A virtual machine or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    /// The path segment, which is also the `type` of `/cluster/resources`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    pub fn parse(text: &str) -> Option<GuestKind> {
        match text {
            "qemu" => Some(GuestKind::Qemu),
            "lxc" => Some(GuestKind::Lxc),
            _ => None,
        }
    }
}

/// A guest where it runs now: Proxmox addresses it through its node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guest {
    pub node: String,
    pub kind: GuestKind,
    pub vmid: u32,
}

impl Guest {
    pub fn qemu(node: &str, vmid: u32) -> Guest {
        Guest {
            node: node.into(),
            kind: GuestKind::Qemu,
            vmid,
        }
    }

    pub fn lxc(node: &str, vmid: u32) -> Guest {
        Guest {
            node: node.into(),
            kind: GuestKind::Lxc,
            vmid,
        }
    }

    fn path(&self, tail: &[&str]) -> String {
        let vmid = self.vmid.to_string();
        let mut segments = vec!["nodes", &self.node, self.kind.as_str(), &vmid];
        segments.extend_from_slice(tail);
        api_path(&segments)
    }
}

impl fmt::Display for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} on {}", self.kind.as_str(), self.vmid, self.node)
    }
}

/// A change of a guest's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Power {
    Start,
    /// Ask the guest to power off (ACPI for a VM), within Proxmox's shutdown timeout.
    Shutdown,
    /// Power off at once, as pulling the plug.
    Stop,
    /// Pause a VM in memory; checkpoint a container (experimental in Proxmox).
    Suspend,
    Resume,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Shutdown => "shutdown",
            Power::Stop => "stop",
            Power::Suspend => "suspend",
            Power::Resume => "resume",
        }
    }
}

impl Client {
    /// Changes a guest's power state and waits for the task to end.
    pub async fn power(&self, guest: &Guest, action: Power) -> Result<Finished, Error> {
        let upid = self.start_power(guest, action).await?;
        self.wait(&upid).await
    }

    /// Asks for a change of a guest's power state: the task's UPID, not waited for.
    pub async fn start_power(&self, guest: &Guest, action: Power) -> Result<Upid, Error> {
        let answer = self
            .post(&guest.path(&["status", action.as_str()]), &[])
            .await?;
        upid_of(&answer)
    }

    /// Moves a guest to the `target` node and waits for the task to end: live for a running
    /// VM, in restart mode for a running container.
    pub async fn migrate(&self, guest: &Guest, target: &str) -> Result<Finished, Error> {
        let upid = self.start_migrate(guest, target).await?;
        self.wait(&upid).await
    }

    /// Asks for a migration: the task's UPID, not waited for.
    pub async fn start_migrate(&self, guest: &Guest, target: &str) -> Result<Upid, Error> {
        let path = guest.path(&["migrate"]);
        let check = self.get(&path, &[("target", target.to_string())]).await?;
        let running = match check.data.get("running") {
            Some(value) => match truth(value) {
                Some(running) => running,
                None => return Err(check.malformed("`running` is not a boolean")),
            },
            None => return Err(check.malformed("the migration check has no `running`")),
        };
        let mut params = vec![("target", target.to_string())];
        if running {
            match guest.kind {
                GuestKind::Qemu => params.push(("online", "1".into())),
                GuestKind::Lxc => params.push(("restart", "1".into())),
            }
        }
        let answer = self.post(&path, &params).await?;
        upid_of(&answer)
    }

    /// Shuts a node down. Proxmox starts the shutdown and answers at once, without a task:
    /// the cluster state shows the node offline once it is.
    pub async fn shutdown_node(&self, node: &str) -> Result<(), Error> {
        let path = api_path(&["nodes", node, "status"]);
        let answer = self
            .post(&path, &[("command", "shutdown".to_string())])
            .await?;
        if !answer.data.is_null() {
            return Err(answer.malformed("a node shutdown answers `null`"));
        }
        Ok(())
    }

    /// Wakes a sleeping node with a Wake-on-LAN packet that the node answering the API sends;
    /// the MAC address it woke.
    pub async fn wake_node(&self, node: &str) -> Result<String, Error> {
        let path = api_path(&["nodes", node, "wakeonlan"]);
        let answer = self.post(&path, &[]).await?;
        match answer.data.as_str() {
            Some(mac) => Ok(mac.to_string()),
            None => Err(answer.malformed("Wake-on-LAN answers the MAC address, a string")),
        }
    }
}

/// A boolean as Proxmox writes one: `0`/`1`, `true`/`false`, or those as text.
pub fn truth(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(truth) => Some(*truth),
        Value::Number(number) => match number.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(text) => match text.as_str() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}
