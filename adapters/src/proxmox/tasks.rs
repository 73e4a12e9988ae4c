//! Proxmox tasks: the UPID an action answers with, and the wait until the task ends.
//!
//! A UPID names a worker process on a node:
//! `UPID:NODE:PID:PSTART:STARTTIME:TYPE:ID:USER:`, the numbers in hexadecimal
//! (`UPID:pve:000A1B2C:01234567:6650F1A2:qmstart:100:vigil@pve!actuator:`). Its status is at
//! `GET /nodes/NODE/tasks/UPID/status`: `running`, or `stopped` with an `exitstatus`, which is
//! `OK`, `WARNINGS: n` (done, with warnings in its log), or the error that ended it.
//!
//! The wait polls until the task stops or the task timeout passes. A poll that fails on the
//! way (a timeout, a dropped connection, pveproxy's 595 for a node it cannot reach) says
//! nothing about the task, so the wait goes on until the deadline; Proxmox refusing the poll
//! itself (an unknown UPID, a token without the right to see the task) ends it.

use super::Error;
use super::client::{Client, api_path};
use hyper::Method;
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// A task's id, as Proxmox writes it, with its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    /// Unix seconds.
    pub starttime: i64,
    /// `qmstart`, `vzmigrate`, ...
    pub kind: String,
    /// The guest's VMID, or empty.
    pub id: String,
    pub user: String,
    text: String,
}

impl Upid {
    pub fn parse(text: &str) -> Result<Upid, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let ["UPID", node, pid, pstart, starttime, kind, id, user, ""] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not a UPID (UPID:NODE:PID:PSTART:STARTTIME:TYPE:ID:USER:)"
            ));
        };
        let hex = |field: &str, value: &str| {
            u64::from_str_radix(value, 16).map_err(|_| {
                format!("`{text}` is not a UPID: its {field} `{value}` is not hexadecimal")
            })
        };
        if node.is_empty() || kind.is_empty() || user.is_empty() {
            return Err(format!("`{text}` is not a UPID: a part is empty"));
        }
        Ok(Upid {
            node: node.to_string(),
            pid: u32::try_from(hex("pid", pid)?)
                .map_err(|_| format!("`{text}` is not a UPID: its pid is too big"))?,
            pstart: hex("pstart", pstart)?,
            starttime: i64::try_from(hex("start time", starttime)?)
                .map_err(|_| format!("`{text}` is not a UPID: its start time is too big"))?,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A task that ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub upid: Upid,
    /// The `n` of `WARNINGS: n`: the task did its work, and its log holds warnings.
    pub warnings: u32,
}

/// A task's status as Proxmox reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    Stopped { exitstatus: String },
}

/// The meaning of an exit status: the number of warnings of a success, `None` for a failure.
pub fn judge(exitstatus: &str) -> Option<u32> {
    let exitstatus = exitstatus.trim();
    if exitstatus == "OK" {
        return Some(0);
    }
    exitstatus
        .strip_prefix("WARNINGS:")
        .and_then(|count| count.trim().parse().ok())
}

/// The UPID a task-starting call answered with.
pub(super) fn upid_of(answer: &super::client::Answer) -> Result<Upid, Error> {
    let Some(text) = answer.data.as_str() else {
        return Err(answer.malformed("expected a task's UPID, a string"));
    };
    Upid::parse(text).map_err(|reason| answer.malformed(reason))
}

impl Client {
    /// The status of a task, within `timeout`.
    pub async fn task_status(&self, upid: &Upid, timeout: Duration) -> Result<TaskStatus, Error> {
        let path = api_path(&["nodes", &upid.node, "tasks", upid.as_str(), "status"]);
        let answer = self.request(Method::GET, &path, &[], timeout).await?;
        let status = answer.data.get("status").and_then(Value::as_str);
        match status {
            Some("running") => Ok(TaskStatus::Running),
            Some("stopped") => match answer.data.get("exitstatus").and_then(Value::as_str) {
                Some(exitstatus) => Ok(TaskStatus::Stopped {
                    exitstatus: exitstatus.to_string(),
                }),
                None => Err(answer.malformed("a stopped task without an `exitstatus`")),
            },
            _ => Err(answer.malformed("a task status is `running` or `stopped`")),
        }
    }

    /// Waits for the task to end, within the configured task timeout.
    pub async fn wait(&self, upid: &Upid) -> Result<Finished, Error> {
        self.wait_within(upid, self.config().task_timeout).await
    }

    /// Waits for the task to end: polls its status until it stops or `timeout` has passed.
    pub async fn wait_within(&self, upid: &Upid, timeout: Duration) -> Result<Finished, Error> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::TaskTimeout {
                    upid: upid.to_string(),
                    waited: now - start,
                });
            }
            let request_timeout = self.config().request_timeout.min(deadline - now);
            match self.task_status(upid, request_timeout).await {
                Ok(TaskStatus::Stopped { exitstatus }) => {
                    return match judge(&exitstatus) {
                        Some(warnings) => Ok(Finished {
                            upid: upid.clone(),
                            warnings,
                        }),
                        None => Err(Error::TaskFailed {
                            upid: upid.to_string(),
                            exitstatus,
                        }),
                    };
                }
                Ok(TaskStatus::Running) => {}
                Err(error) if error.is_transient() => {}
                Err(error) => return Err(error),
            }
            let pause = self
                .config()
                .poll_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_upid_has_its_parts() {
        let upid =
            Upid::parse("UPID:pve:000A1B2C:01234567:6650F1A2:qmstart:100:vigil@pve!actuator:")
                .unwrap();
        assert_eq!(upid.node, "pve");
        assert_eq!(upid.pid, 0x000A_1B2C);
        assert_eq!(upid.starttime, 0x6650_F1A2);
        assert_eq!(upid.kind, "qmstart");
        assert_eq!(upid.id, "100");
        assert_eq!(upid.user, "vigil@pve!actuator");
        assert_eq!(
            upid.to_string(),
            "UPID:pve:000A1B2C:01234567:6650F1A2:qmstart:100:vigil@pve!actuator:"
        );
        // A node task has no id.
        assert!(Upid::parse("UPID:pve:1:2:3:srvreload::root@pam:").is_ok());
        assert!(Upid::parse("UPID:pve:1:2:3:qmstart:100:root@pam").is_err());
        assert!(Upid::parse("UPID:pve:xyz:2:3:qmstart:100:root@pam:").is_err());
        assert!(Upid::parse("100").is_err());
    }

    #[test]
    fn only_ok_and_warnings_are_a_success() {
        assert_eq!(judge("OK"), Some(0));
        assert_eq!(judge("WARNINGS: 3"), Some(3));
        assert_eq!(judge("VM is locked (backup)"), None);
        assert_eq!(judge("WARNINGS: many"), None);
        assert_eq!(judge("unexpected status"), None);
    }
}
