//! The Proxmox VE API: the actuator that starts, stops and moves guests and powers nodes, and
//! the source of the cluster's state (who is online, what runs where).
//!
//! Proxmox answers every call under `https://HOST:8006/api2/json`, authenticated here by an API
//! token (`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`), never by a password: a token
//! can be given exactly the privileges Vigil needs (`VM.PowerMgmt`, `VM.Migrate`,
//! `Sys.PowerMgmt`, `Sys.Audit`) and revoked alone. Parameters go form-encoded, as Proxmox's
//! own clients send them; answers are `{"data": ...}`, and errors carry Proxmox's message in
//! the status line, in a `message` field, and per parameter in an `errors` field.
//!
//! A Proxmox node serves a certificate signed by its cluster's own CA, which no system trust
//! store knows. So the connection trusts exactly one of two things ([`Trust`]): that CA's
//! certificate (PEM), checked as any CA is, name included; or a pinned certificate, its SHA-256
//! fingerprint in the `AA:BB:...` form that the Proxmox GUI shows. A pin replaces the chain and
//! name checks by the exact fingerprint match and nothing else: the handshake's signature is
//! still verified with the pinned certificate's key, so only the holder of that key gets
//! through. There is no "accept any certificate".
//!
//! Most actions do not finish when the call returns: Proxmox starts a worker task and answers
//! with its UPID. [`Client::wait`] polls the task until it has stopped; only an exit status of
//! `OK` or `WARNINGS: n` is a success, anything else is the task's error message. Each request
//! has a timeout, and so has the whole task: a guest that ignores its shutdown, or a task that
//! hangs, becomes [`Error::TaskTimeout`] rather than a stuck actuator. Two calls are not tasks
//! in Proxmox's schema: a node's shutdown answers `null` (the node goes down on its own; the
//! cluster state shows when it is off), and Wake-on-LAN answers the MAC address it woke.
//!
//! The cluster state (`/cluster/status` and `/cluster/resources`) becomes the policy's input
//! facts in [`cluster`]: `member_online(node)`, `power_state(node, "up" | "asleep", _)`, and
//! `running(workload, node)` for every running guest whose name is a known workload.
//!
//! - [`tls`]: the trust settings and the pinned-certificate verifier.
//! - [`client`]: the HTTP client: connection, token, encoding, errors.
//! - [`tasks`]: UPIDs and the waiting for a task to end.
//! - [`actions`]: guest power and migration, node shutdown, Wake-on-LAN.
//! - [`cluster`]: the cluster state as facts.

pub mod actions;
pub mod client;
pub mod cluster;
pub mod tasks;
pub mod tls;

pub use actions::{Guest, GuestKind, Power};
pub use client::{ApiToken, Client, Config};
pub use cluster::{ClusterFacts, ClusterSource, Names};
pub use tasks::{Finished, Upid};
pub use tls::{Fingerprint, Trust};

use crate::source::Malformed;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything that can go wrong talking to Proxmox. Each message names the request (or the
/// task) and carries Proxmox's own words where it gave some.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Proxmox settings: {0}")]
    Config(String),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("TLS with {endpoint} failed: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("{method} {path}: no answer within {}", seconds(.timeout))]
    Timeout {
        method: String,
        path: String,
        timeout: Duration,
    },
    #[error("{method} {path}: {reason}")]
    Transport {
        method: String,
        path: String,
        reason: String,
    },
    /// Proxmox refused the request: its status code, its message, and its message for each
    /// parameter it rejected.
    #[error("{method} {path}: Proxmox answered {status}: {}", api_message(.message, .errors))]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
        errors: BTreeMap<String, String>,
    },
    #[error("{0}")]
    Malformed(Malformed),
    /// The task ended with an exit status other than `OK` or `WARNINGS: n`, which is
    /// Proxmox's error message (`VM is locked (backup)`).
    #[error("task {upid} failed: {exitstatus}")]
    TaskFailed { upid: String, exitstatus: String },
    #[error("task {upid} still running after {}", seconds(.waited))]
    TaskTimeout { upid: String, waited: Duration },
}

impl Error {
    /// Whether trying again later may succeed: the network or the server's load, not a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::Transport { .. } => true,
            // 595 is pveproxy's "no route to host" to another node; 5xx without a message
            // are the proxy's own failures.
            Error::Api {
                status, message, ..
            } => *status == 595 || (*status >= 502 && *status <= 504 && message.is_empty()),
            _ => false,
        }
    }
}

fn seconds(duration: &Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

fn api_message(message: &str, errors: &BTreeMap<String, String>) -> String {
    let mut text = message.trim().to_string();
    if !errors.is_empty() {
        let fields: Vec<String> = errors
            .iter()
            .map(|(name, why)| format!("{name}: {}", why.trim()))
            .collect();
        text = format!("{text} ({})", fields.join("; "));
    }
    text
}
