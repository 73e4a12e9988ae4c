//! The Ray actuator: lending a node's GPU to a Ray cluster, and seeing who is in it.
//!
//! The policy starts a Ray worker on the gaming rig while nobody plays (`ray_start(n)`,
//! rules/borrow.dl) and stops it when a game starts (`ray_stop(n)`); the `ray_worker(n)`
//! input says which nodes run a worker now. [`Ray`] is both sides of that loop:
//!
//! - **Acting** runs commands, because a worker is started and stopped on its own machine
//!   (usually over ssh): each configured node has argv templates for `start`, `drain` and
//!   `stop` ([`RayNode`]), each run with a timeout, with its standard error kept for the
//!   error that a failure returns. Templates name `{head}` (the GCS address, `HEAD:6379`),
//!   `{dashboard}`, `{node}` (the inventory's name), `{address}` (the node's configured IP)
//!   and, in `drain` only, `{node_id}`; `{{` and `}}` are literal braces. A template is a
//!   list of arguments, never a shell line, so no value is ever split or interpreted.
//! - **Draining** is Ray's own graceful path: `ray drain-node --node-id=... --reason=...`
//!   asks the GCS to drain the node by its id (no new work is placed on it; with
//!   `DRAIN_NODE_REASON_IDLE_TERMINATION` an idle node's raylet exits at once, a busy one is
//!   refused; with `DRAIN_NODE_REASON_PREEMPTION` and a deadline it is accepted and its work
//!   runs on until the deadline). [`Ray::drain`] looks the node id up in the dashboard, runs
//!   the `drain` command, waits up to `drain_wait_s` for the node to leave the cluster, and
//!   then runs `stop` whatever happened, so that no process is left behind on the node.
//! - **Observing** reads the dashboard's state API, `GET /api/v0/nodes` ([`Ray::members`]),
//!   which lists every node the GCS knows, alive or dead, with its id, IP, labels, state and
//!   resources. A Ray node is the inventory's node `n` when it carries the label
//!   `vigil-node=n` (`ray start --labels=vigil-node={node}`), or else when its IP is the
//!   node's configured `address`. [`Members::report`] turns the membership into
//!   `ray_worker(n)` facts.
//!
//! ```toml
//! [ray]
//! head = "logic.lan:6379"
//! dashboard = "http://logic.lan:8265"
//!
//! [ray.node.gaming]
//! address = "192.168.1.20"
//! start = ["ssh", "gaming", "ray", "start", "--address={head}", "--num-gpus=1",
//!          "--labels=vigil-node={node}"]
//! drain = ["ray", "drain-node", "--address={head}", "--node-id={node_id}",
//!          "--reason=DRAIN_NODE_REASON_PREEMPTION", "--reason-message=vigil: {node} is needed",
//!          "--deadline-remaining-seconds=30"]
//! stop = ["ssh", "gaming", "ray", "stop"]
//! start_timeout_s = 120
//! drain_wait_s = 40
//! ```
//!
//! Caveats: `ray drain-node` is a developer-facing command of Ray (2.x) whose interface Ray
//! does not promise to keep; it is a template here so that it can follow Ray. `ray stop` on
//! a machine stops every Ray process of that machine, so a worker's machine must not also be
//! the head's. A dead node stays in the dashboard's list (state `DEAD`) until the GCS forgets
//! it, so membership is decided by the `ALIVE` state, not by presence.

use crate::source::{GetFailure, HttpUrl, Report, get_once, symbol};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The relation that membership feeds.
pub const RELATION: &str = "ray_worker";

/// The label that names a Ray node's inventory node.
pub const NODE_LABEL: &str = "vigil-node";

/// The longest dashboard answer read, in bytes (a node is about 600 bytes).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How much of a failed command's output an error keeps, in bytes (its end, where the
/// reason usually is).
pub const KEPT_OUTPUT: usize = 2048;

/// The Ray cluster: its head, its dashboard, and the nodes that may lend themselves to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayConfig {
    /// The head's GCS address, `HEAD:6379`: `{head}` in templates.
    pub head: String,
    /// The dashboard's URL, `http://HEAD:8265`.
    pub dashboard: String,
    /// Seconds a dashboard request may take.
    #[serde(default = "default_dashboard_timeout")]
    pub dashboard_timeout_s: f64,
    /// Seconds between looks at the dashboard while a drained node leaves.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_s: f64,
    /// The nodes, by the inventory's names.
    #[serde(rename = "node", default)]
    pub nodes: BTreeMap<String, RayNode>,
}

fn default_dashboard_timeout() -> f64 {
    10.0
}

fn default_poll_interval() -> f64 {
    1.0
}

/// One node that can run a Ray worker: how to start, drain and stop it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayNode {
    /// The node's IP as Ray reports it (`node_ip`): `{address}` in templates, and how the
    /// node is recognised when it carries no `vigil-node` label.
    #[serde(default)]
    pub address: Option<String>,
    /// Starts a worker: `ray start --address={head} ...`, returning once it runs.
    pub start: Vec<String>,
    /// Drains the worker by its id: `ray drain-node --node-id={node_id} ...`.
    pub drain: Vec<String>,
    /// Stops every Ray process on the node: `ray stop`.
    pub stop: Vec<String>,
    #[serde(default = "default_start_timeout")]
    pub start_timeout_s: f64,
    #[serde(default = "default_command_timeout")]
    pub drain_timeout_s: f64,
    #[serde(default = "default_command_timeout")]
    pub stop_timeout_s: f64,
    /// Seconds a drained node is given to leave the cluster before it is stopped.
    #[serde(default = "default_drain_wait")]
    pub drain_wait_s: f64,
}

fn default_start_timeout() -> f64 {
    120.0
}

fn default_command_timeout() -> f64 {
    60.0
}

fn default_drain_wait() -> f64 {
    60.0
}

/// What was asked of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Drain,
    Stop,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Drain => "drain",
            Action::Stop => "stop",
        })
    }
}

/// Why a Ray action or a look at the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum RayError {
    #[error("ray config: {0}")]
    Config(String),
    #[error("`{0}` is not a configured Ray node")]
    UnknownNode(String),
    #[error("ray {action} {node}: cannot run `{program}`: {reason}")]
    Spawn {
        node: String,
        action: Action,
        program: String,
        reason: String,
    },
    #[error("ray {action} {node}: `{command}` failed ({status}): {output}")]
    Failed {
        node: String,
        action: Action,
        command: String,
        status: String,
        /// The end of the command's standard error (or, when it wrote none, of its output).
        output: String,
    },
    #[error("ray {action} {node}: `{command}` did not end within {timeout:?} and was killed")]
    Timeout {
        node: String,
        action: Action,
        command: String,
        timeout: Duration,
    },
    #[error("ray dashboard {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("ray dashboard {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("ray dashboard {url}: no answer within {timeout:?}")]
    DashboardTimeout { url: String, timeout: Duration },
    #[error("ray dashboard {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("ray dashboard {url} refused the request: {message}")]
    Refused { url: String, message: String },
    #[error("ray dashboard {url}: malformed answer: {reason}")]
    Malformed { url: String, reason: String },
}

/// A node's state as the GCS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Alive,
    Dead,
    /// A state this version does not know, kept as Ray spelt it.
    Other(String),
}

/// One node of the cluster, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RayMember {
    /// The node's id, hexadecimal: what `ray drain-node --node-id` takes.
    pub node_id: String,
    pub node_ip: String,
    /// The node's name (its IP unless `ray start --node-name` named it).
    pub node_name: String,
    pub is_head: bool,
    pub state: NodeState,
    /// Why the node is in its state (why it died, say), if Ray says.
    pub state_message: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The node's total resources: `CPU`, `GPU`, `memory` (bytes), custom ones.
    pub resources: BTreeMap<String, f64>,
}

impl RayMember {
    pub fn is_alive(&self) -> bool {
        self.state == NodeState::Alive
    }
}

/// The cluster as the dashboard lists it, with the inventory's nodes recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    /// Every node the GCS knows, alive or dead, in the dashboard's order.
    pub nodes: Vec<RayMember>,
    /// Each configured node's Ray nodes, as indices into `nodes` (a node that joined,
    /// left and joined again has several, one of them alive at most).
    pub recognised: BTreeMap<String, Vec<usize>>,
    /// A warning of the dashboard (a list cut short, a partial failure), if any.
    pub warning: Option<String>,
}

impl Members {
    /// The alive Ray node of an inventory node, if it runs a worker now.
    pub fn alive(&self, node: &str) -> Option<&RayMember> {
        self.recognised
            .get(node)?
            .iter()
            .map(|&index| &self.nodes[index])
            .find(|member| member.is_alive())
    }

    /// The inventory nodes that run a worker now.
    pub fn workers(&self) -> BTreeSet<String> {
        self.recognised
            .keys()
            .filter(|node| self.alive(node).is_some())
            .cloned()
            .collect()
    }

    /// The `ray_worker` facts that changed since `reported` was reported: an insert for a
    /// node that runs a worker now and did not, a retraction for one that did and no
    /// longer does. With an empty `reported`, every worker is inserted.
    pub fn report(&self, reported: &BTreeSet<String>) -> Report {
        let workers = self.workers();
        let mut report = Report::default();
        for gone in reported.difference(&workers) {
            report.retract(RELATION, vec![symbol(gone)]);
        }
        for joined in workers.difference(reported) {
            report.insert(RELATION, vec![symbol(joined)]);
        }
        report
    }
}

/// A command that ran to a successful end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The argv, as run.
    pub argv: Vec<String>,
    pub stdout: String,
    pub stderr: String,
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The Ray node that was drained; `None` when the node had no live worker, and only
    /// `stop` was run.
    pub node_id: Option<String>,
    /// The drain command, when it ran.
    pub drain: Option<Ran>,
    /// Whether the node left the cluster by itself within `drain_wait_s`.
    pub left: bool,
    /// The stop command that ended it.
    pub stop: Ran,
}

/// The placeholders a template may name.
const PLACEHOLDERS: [&str; 5] = ["head", "dashboard", "node", "address", "node_id"];

/// Fills a template's placeholders. `{{` and `}}` are literal braces; an unknown or missing
/// placeholder is an error that names it.
fn render(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(position) = rest.find(['{', '}']) {
        out.push_str(&rest[..position]);
        let tail = &rest[position..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(&tail[..1]);
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "`{template}`: a lone `}}` (write `}}}}` for a brace)"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "`{template}`: `{{` is not closed (write `{{{{` for a brace)"
            ));
        };
        let name = &tail[1..end];
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(value),
            None if PLACEHOLDERS.contains(&name) => {
                return Err(format!("`{template}`: `{{{name}}}` has no value here"));
            }
            None => {
                return Err(format!(
                    "`{template}`: unknown placeholder `{{{name}}}` (known: {{head}}, {{dashboard}}, {{node}}, {{address}}, {{node_id}} in drain)"
                ));
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn seconds(name: &str, value: f64) -> Result<Duration, RayError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            RayError::Config(format!(
                "`{name}` must be a positive number of seconds, not {value}"
            ))
        })
}

/// Where the dashboard is, read from its URL.
#[derive(Debug, Clone)]
struct Dashboard {
    host: String,
    port: u16,
    authority: String,
    /// The URL's path without its final `/`, for a dashboard behind a prefix.
    prefix: String,
}

impl Dashboard {
    fn parse(url: &str) -> Result<Dashboard, RayError> {
        let error = |reason: &str| RayError::Config(format!("dashboard `{url}`: {reason}"));
        let parsed = HttpUrl::parse(
            url,
            "only http:// is supported (Ray's dashboard speaks HTTP)",
        )
        .map_err(|reason| error(&reason))?;
        if parsed.uri.query().is_some() {
            return Err(error("a query has no place in the dashboard's URL"));
        }
        Ok(Dashboard {
            host: parsed.host,
            port: parsed.port,
            authority: parsed.authority,
            prefix: parsed.uri.path().trim_end_matches('/').into(),
        })
    }
}

/// A node's validated configuration.
#[derive(Debug, Clone)]
struct Node {
    config: RayNode,
    start_timeout: Duration,
    drain_timeout: Duration,
    stop_timeout: Duration,
    drain_wait: Duration,
}

/// The Ray actuator and membership observer.
#[derive(Debug, Clone)]
pub struct Ray {
    config: RayConfig,
    dashboard: Dashboard,
    dashboard_timeout: Duration,
    poll_interval: Duration,
    nodes: BTreeMap<String, Node>,
}

impl Ray {
    /// Checks the configuration: the dashboard's URL, the timeouts, and that every template
    /// names only placeholders it can fill.
    pub fn new(config: RayConfig) -> Result<Ray, RayError> {
        if config.head.trim().is_empty() || !config.head.contains(':') {
            return Err(RayError::Config(format!(
                "`head` must be the GCS address `HOST:PORT` (such as `logic.lan:6379`), not `{}`",
                config.head
            )));
        }
        let dashboard = Dashboard::parse(&config.dashboard)?;
        let dashboard_timeout = seconds("dashboard_timeout_s", config.dashboard_timeout_s)?;
        let poll_interval = seconds("poll_interval_s", config.poll_interval_s)?;
        let mut nodes = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for (name, node) in &config.nodes {
            let error = |reason: String| RayError::Config(format!("node `{name}`: {reason}"));
            if name.is_empty() {
                return Err(RayError::Config("a node has an empty name".into()));
            }
            if let Some(address) = &node.address
                && let Some(other) = addresses.insert(address.clone(), name.clone())
            {
                return Err(error(format!(
                    "`address` {address} is also `{other}`'s: a Ray node would be both"
                )));
            }
            let address = node.address.as_deref().unwrap_or("");
            for (action, template) in [
                (Action::Start, &node.start),
                (Action::Drain, &node.drain),
                (Action::Stop, &node.stop),
            ] {
                if template.is_empty() {
                    return Err(error(format!("`{action}` is an empty command")));
                }
                let mut values = vec![
                    ("head", config.head.as_str()),
                    ("dashboard", config.dashboard.as_str()),
                    ("node", name.as_str()),
                ];
                if node.address.is_some() {
                    values.push(("address", address));
                }
                if action == Action::Drain {
                    values.push(("node_id", "0"));
                }
                for argument in template {
                    render(argument, &values)
                        .map_err(|reason| error(format!("`{action}`: {reason}")))?;
                }
            }
            let timeout = |field: &str, value: f64| seconds(&format!("node.{name}.{field}"), value);
            nodes.insert(
                name.clone(),
                Node {
                    config: node.clone(),
                    start_timeout: timeout("start_timeout_s", node.start_timeout_s)?,
                    drain_timeout: timeout("drain_timeout_s", node.drain_timeout_s)?,
                    stop_timeout: timeout("stop_timeout_s", node.stop_timeout_s)?,
                    drain_wait: timeout("drain_wait_s", node.drain_wait_s)?,
                },
            );
        }
        Ok(Ray {
            config,
            dashboard,
            dashboard_timeout,
            poll_interval,
            nodes,
        })
    }

    /// The configured nodes' names.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    fn node(&self, name: &str) -> Result<&Node, RayError> {
        self.nodes
            .get(name)
            .ok_or_else(|| RayError::UnknownNode(name.into()))
    }

    /// Starts a worker on `node`: runs its `start` command, which returns once the worker
    /// runs (it joins the cluster a moment later: [`Ray::members`] shows when).
    pub async fn start(&self, node: &str) -> Result<Ran, RayError> {
        let config = self.node(node)?;
        self.run(node, config, Action::Start, None, config.start_timeout)
            .await
    }

    /// Stops the worker on `node` at once: runs its `stop` command. Work on the node is lost
    /// (Ray retries its tasks elsewhere).
    pub async fn stop(&self, node: &str) -> Result<Ran, RayError> {
        let config = self.node(node)?;
        self.run(node, config, Action::Stop, None, config.stop_timeout)
            .await
    }

    /// Drains the worker on `node` gracefully, then stops it: finds its Ray node id in the
    /// dashboard, runs the `drain` command with it, waits up to `drain_wait_s` for the node
    /// to leave the cluster, and runs `stop`. A node without a live worker is only stopped.
    /// A refused drain (Ray refuses an idle-termination drain of a busy node) is an error
    /// with Ray's message, and nothing is stopped: [`Ray::stop`] is the way to force it.
    pub async fn drain(&self, node: &str) -> Result<Drained, RayError> {
        let config = self.node(node)?;
        let members = self.members().await?;
        let Some(member) = members.alive(node) else {
            let stop = self
                .run(node, config, Action::Stop, None, config.stop_timeout)
                .await?;
            return Ok(Drained {
                node_id: None,
                drain: None,
                left: false,
                stop,
            });
        };
        let node_id = member.node_id.clone();
        let drain = self
            .run(
                node,
                config,
                Action::Drain,
                Some(&node_id),
                config.drain_timeout,
            )
            .await?;
        let deadline = Instant::now() + config.drain_wait;
        let mut left = false;
        loop {
            // A dashboard that does not answer for a moment does not stop the drain: the
            // node is stopped at the deadline anyway.
            if let Ok(members) = self.members().await
                && !members
                    .nodes
                    .iter()
                    .any(|member| member.node_id == node_id && member.is_alive())
            {
                left = true;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
        let stop = self
            .run(node, config, Action::Stop, None, config.stop_timeout)
            .await?;
        Ok(Drained {
            node_id: Some(node_id),
            drain: Some(drain),
            left,
            stop,
        })
    }

    /// The cluster's nodes, from the dashboard's `GET /api/v0/nodes`, with the configured
    /// nodes recognised.
    pub async fn members(&self) -> Result<Members, RayError> {
        let path = format!("{}/api/v0/nodes?limit=10000", self.dashboard.prefix);
        let url = format!("http://{}{path}", self.dashboard.authority);
        let body = match tokio::time::timeout(self.dashboard_timeout, self.get(&url, &path)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(RayError::DashboardTimeout {
                    url,
                    timeout: self.dashboard_timeout,
                });
            }
        };
        let (nodes, warning) = parse_nodes(&body).map_err(|error| match error {
            Answer::Refused(message) => RayError::Refused {
                url: url.clone(),
                message,
            },
            Answer::Malformed(reason) => RayError::Malformed {
                url: url.clone(),
                reason,
            },
        })?;
        Ok(self.recognise(nodes, warning))
    }

    /// Recognises the configured nodes among Ray's: by the `vigil-node` label, or else by
    /// the configured address.
    pub fn recognise(&self, nodes: Vec<RayMember>, warning: Option<String>) -> Members {
        let mut recognised: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, member) in nodes.iter().enumerate() {
            let by_label = member
                .labels
                .get(NODE_LABEL)
                .filter(|name| self.nodes.contains_key(name.as_str()));
            let name = by_label.cloned().or_else(|| {
                if member.labels.contains_key(NODE_LABEL) {
                    // A label that names another node is that node's, not this address's.
                    return None;
                }
                self.nodes
                    .iter()
                    .find(|(_, node)| node.config.address.as_deref() == Some(&member.node_ip))
                    .map(|(name, _)| name.clone())
            });
            if let Some(name) = name {
                recognised.entry(name).or_default().push(index);
            }
        }
        Members {
            nodes,
            recognised,
            warning,
        }
    }

    async fn get(&self, url: &str, path: &str) -> Result<Vec<u8>, RayError> {
        let failed = |failure| match failure {
            GetFailure::Connect(reason) => RayError::Connect {
                url: url.into(),
                reason,
            },
            GetFailure::Http(reason) => RayError::Http {
                url: url.into(),
                reason,
            },
            GetFailure::TooLarge => RayError::Http {
                url: url.into(),
                reason: format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
            },
        };
        let dashboard = &self.dashboard;
        let target = (
            dashboard.host.as_str(),
            dashboard.port,
            dashboard.authority.as_str(),
        );
        let answer = get_once(target, path, "application/json")
            .await
            .map_err(failed)?;
        let status = answer.status;
        let body = answer.body(MAX_ANSWER_BYTES).await.map_err(failed)?;
        if !status.is_success() {
            return Err(RayError::Status {
                url: url.into(),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        Ok(body.to_vec())
    }

    async fn run(
        &self,
        name: &str,
        node: &Node,
        action: Action,
        node_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Ran, RayError> {
        let template = match action {
            Action::Start => &node.config.start,
            Action::Drain => &node.config.drain,
            Action::Stop => &node.config.stop,
        };
        let mut values = vec![
            ("head", self.config.head.as_str()),
            ("dashboard", self.config.dashboard.as_str()),
            ("node", name),
        ];
        if let Some(address) = &node.config.address {
            values.push(("address", address.as_str()));
        }
        if let Some(node_id) = node_id {
            values.push(("node_id", node_id));
        }
        let argv = template
            .iter()
            .map(|argument| render(argument, &values))
            .collect::<Result<Vec<String>, String>>()
            .map_err(RayError::Config)?;
        let command = shell_words(&argv);
        let mut child = tokio::process::Command::new(&argv[0]);
        child
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = child.spawn().map_err(|error| RayError::Spawn {
            node: name.into(),
            action,
            program: argv[0].clone(),
            reason: error.to_string(),
        })?;
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                return Err(RayError::Spawn {
                    node: name.into(),
                    action,
                    program: argv[0].clone(),
                    reason: error.to_string(),
                });
            }
            // Dropping the future kills the child.
            Err(_) => {
                return Err(RayError::Timeout {
                    node: name.into(),
                    action,
                    command,
                    timeout,
                });
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            let said = if stderr.trim().is_empty() {
                &stdout
            } else {
                &stderr
            };
            return Err(RayError::Failed {
                node: name.into(),
                action,
                command,
                status: output.status.to_string(),
                output: tail(said.trim(), KEPT_OUTPUT),
            });
        }
        Ok(Ran {
            argv,
            stdout,
            stderr,
        })
    }
}

/// The argv as a reader would type it, for messages.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/@%+".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `limit` bytes of a text, cut at a character, marked when cut.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.into();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// Ray's message in an error answer (`{"result": false, "msg": "..."}`), or the start of
/// the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        msg: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { msg: Some(msg) }) if !msg.is_empty() => msg,
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no body)".into()
            } else {
                let mut end = text.len().min(300);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].into()
            }
        }
    }
}

/// Why a dashboard answer gave no nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Ray answered, with `"result": false` and this message.
    Refused(String),
    /// The answer is not the state API's node list; the reason says where.
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope {
    result: bool,
    #[serde(default)]
    msg: Option<String>,
    data: Option<EnvelopeData>,
}

#[derive(Deserialize)]
struct EnvelopeData {
    result: Option<ListResult>,
}

#[derive(Deserialize)]
struct ListResult {
    total: Option<u64>,
    num_after_truncation: Option<u64>,
    #[serde(default)]
    partial_failure_warning: Option<String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    result: Vec<NodeEntry>,
}

#[derive(Deserialize)]
struct NodeEntry {
    node_id: String,
    node_ip: String,
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    is_head_node: bool,
    state: String,
    #[serde(default)]
    state_message: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    resources_total: Option<BTreeMap<String, f64>>,
}

/// Reads the dashboard's answer to `GET /api/v0/nodes`:
/// `{"result": true, "msg": "", "data": {"result": {"total": N, "result": [NODE, ...]}}}`,
/// each NODE with `node_id`, `node_ip`, `is_head_node`, `state` (`ALIVE`, `DEAD`),
/// `state_message`, `node_name`, `labels` and `resources_total`. Returns the nodes and the
/// dashboard's warning, if it gave one (a list cut short, a partial failure).
pub fn parse_nodes(body: &[u8]) -> Result<(Vec<RayMember>, Option<String>), Answer> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|error| {
        Answer::Malformed(format!("not the state API's JSON envelope: {error}"))
    })?;
    if !envelope.result {
        return Err(Answer::Refused(
            envelope
                .msg
                .filter(|msg| !msg.is_empty())
                .unwrap_or_else(|| "(no message)".into()),
        ));
    }
    let list = envelope
        .data
        .and_then(|data| data.result)
        .ok_or_else(|| Answer::Malformed("no `data.result`: not a list of nodes".into()))?;
    let mut warnings = Vec::new();
    if let (Some(total), Some(kept)) = (list.total, list.num_after_truncation)
        && kept < total
    {
        warnings.push(format!("the list was cut to {kept} of {total} nodes"));
    }
    if let Some(warning) = list.partial_failure_warning.filter(|text| !text.is_empty()) {
        warnings.push(warning);
    }
    warnings.extend(list.warnings.unwrap_or_default());
    let mut nodes = Vec::with_capacity(list.result.len());
    for (index, entry) in list.result.into_iter().enumerate() {
        let bad = |reason: String| Answer::Malformed(format!("node {index}: {reason}"));
        if entry.node_id.is_empty() || !entry.node_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "`node_id` {:?} is not a hexadecimal id",
                entry.node_id
            )));
        }
        let state = match entry.state.as_str() {
            "ALIVE" => NodeState::Alive,
            "DEAD" => NodeState::Dead,
            "" => return Err(bad("an empty `state`".into())),
            other => NodeState::Other(other.into()),
        };
        nodes.push(RayMember {
            node_name: entry.node_name.unwrap_or_else(|| entry.node_ip.clone()),
            node_id: entry.node_id,
            node_ip: entry.node_ip,
            is_head: entry.is_head_node,
            state,
            state_message: entry.state_message,
            labels: entry.labels.unwrap_or_default(),
            resources: entry.resources_total.unwrap_or_default(),
        });
    }
    let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    Ok((nodes, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(nodes: &str) -> Result<Ray, RayError> {
        let text = format!(
            r#"{{"head": "10.0.0.1:6379", "dashboard": "http://10.0.0.1:8265", "node": {nodes}}}"#
        );
        let config: RayConfig =
            serde_json::from_str(&text).map_err(|error| RayError::Config(format!("{error}")))?;
        Ray::new(config)
    }

    #[test]
    fn templates_fill_their_placeholders() {
        let values = [("head", "h:6379"), ("node", "gaming")];
        assert_eq!(
            render("--address={head}", &values).unwrap(),
            "--address=h:6379"
        );
        assert_eq!(
            render(r#"--resources={{"rig": 1}} {node}"#, &values).unwrap(),
            r#"--resources={"rig": 1} gaming"#
        );
        assert!(
            render("{node_id}", &values)
                .unwrap_err()
                .contains("has no value")
        );
        assert!(
            render("{nod}", &values)
                .unwrap_err()
                .contains("unknown placeholder `{nod}`")
        );
        assert!(render("{head", &values).unwrap_err().contains("not closed"));
        assert!(render("a}b", &values).unwrap_err().contains("lone"));
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused() {
        let good = r#"{"gaming": {"start": ["ray", "start", "--address={head}"],
            "drain": ["ray", "drain-node", "--node-id={node_id}"], "stop": ["ray", "stop"]}}"#;
        let ray = config(good).unwrap();
        assert_eq!(ray.nodes().collect::<Vec<_>>(), ["gaming"]);
        for (nodes, reason) in [
            (
                r#"{"gaming": {"start": ["ray", "{node_id}"], "drain": ["x"], "stop": ["x"]}}"#,
                "`start`: `{node_id}`: `{node_id}` has no value here",
            ),
            (
                r#"{"gaming": {"start": [], "drain": ["x"], "stop": ["x"]}}"#,
                "`start` is an empty command",
            ),
            (
                r#"{"gaming": {"start": ["ssh", "{address}"], "drain": ["x"], "stop": ["x"]}}"#,
                "`{address}` has no value here",
            ),
            (
                r#"{"gaming": {"start": ["x"], "drain": ["x"], "stop": ["x"], "stop_timeout_s": 0}}"#,
                "`node.gaming.stop_timeout_s` must be a positive number",
            ),
            (
                r#"{"a": {"address": "10.0.0.5", "start": ["x"], "drain": ["x"], "stop": ["x"]},
                    "b": {"address": "10.0.0.5", "start": ["x"], "drain": ["x"], "stop": ["x"]}}"#,
                "also `a`'s",
            ),
            (
                r#"{"gaming": {"start": ["x"], "drain": ["x"], "stop": ["x"], "stop_s": 3}}"#,
                "unknown field `stop_s`",
            ),
        ] {
            let error = config(nodes).unwrap_err().to_string();
            assert!(error.contains(reason), "{nodes}: {error}");
        }
        let mut bad: RayConfig = serde_json::from_str(
            r#"{"head": "10.0.0.1:6379", "dashboard": "https://10.0.0.1:8265"}"#,
        )
        .unwrap();
        assert!(
            Ray::new(bad.clone())
                .unwrap_err()
                .to_string()
                .contains("only http://")
        );
        bad.dashboard = "http://10.0.0.1:8265".into();
        bad.head = "10.0.0.1".into();
        assert!(Ray::new(bad).unwrap_err().to_string().contains("HOST:PORT"));
    }

    #[test]
    fn messages_quote_what_a_shell_would_split() {
        let argv = ["ray", "drain-node", "--reason-message=vigil: it's needed"].map(String::from);
        assert_eq!(
            shell_words(&argv),
            r"ray drain-node '--reason-message=vigil: it'\''s needed'"
        );
        assert_eq!(tail("abcdef", 3), "...def");
        assert_eq!(tail("abc", 3), "abc");
    }

    fn member(id: &str, ip: &str, state: NodeState, label: Option<&str>) -> RayMember {
        RayMember {
            node_id: id.into(),
            node_ip: ip.into(),
            node_name: ip.into(),
            is_head: false,
            state,
            state_message: None,
            labels: label
                .map(|name| BTreeMap::from([(NODE_LABEL.to_string(), name.to_string())]))
                .unwrap_or_default(),
            resources: BTreeMap::new(),
        }
    }

    #[test]
    fn nodes_are_recognised_by_label_or_address_and_reported_when_they_change() {
        let ray = config(
            r#"{"gaming": {"address": "10.0.0.20", "start": ["x"], "drain": ["x"], "stop": ["x"]},
                "pve": {"address": "10.0.0.2", "start": ["x"], "drain": ["x"], "stop": ["x"]}}"#,
        )
        .unwrap();
        let members = ray.recognise(
            vec![
                member("aa", "10.0.0.20", NodeState::Dead, None),
                member("bb", "10.0.0.20", NodeState::Alive, None),
                // Labelled for pve, whatever its address says.
                member("cc", "10.0.0.21", NodeState::Alive, Some("pve")),
                // Labelled for a node that is not configured: nobody's.
                member("dd", "10.0.0.2", NodeState::Alive, Some("laptop")),
            ],
            None,
        );
        assert_eq!(members.alive("gaming").unwrap().node_id, "bb");
        assert_eq!(members.alive("pve").unwrap().node_id, "cc");
        assert_eq!(members.recognised["gaming"], [0, 1]);
        let report = members.report(&BTreeSet::new());
        assert_eq!(
            report.insert[RELATION],
            [vec![symbol("gaming")], vec![symbol("pve")]]
        );
        let before = BTreeSet::from(["gaming".to_string(), "laptop".to_string()]);
        let report = members.report(&before);
        assert_eq!(report.insert[RELATION], [vec![symbol("pve")]]);
        assert_eq!(report.retract[RELATION], [vec![symbol("laptop")]]);
        assert!(members.report(&members.workers()).is_empty());
    }
}
