//! The actuation loop: the daemon acting on the house when views change.
//!
//! A *binding* says which rows of which view ask for what: the view (`act`, whose rows are
//! the policy's actions that may happen now), the rows it takes (`kind = "wake"`, and a
//! `when` condition such as `workload_kind({target}, "vm")`), the actuator that carries them
//! out (`wol`, `proxmox`, `command`, `ray`), how the row's columns become the actuator's
//! parameters (`{target}`, or a lookup in the facts: `node_mac({target}, ?)`), and the
//! observation that says the action is done (`power_state({target}, "up", _)`; negated,
//! `!ray_worker({target})`, done once the query has no rows). The bundled policy's bindings
//! are built in ([`DEFAULT_BINDINGS`]); a config's `[[actuators.binding]]` replace them.
//!
//! After every commit (and every second, for backoffs and dwells) the loop reads the bound
//! views and hands their rows to the [`Reconciler`], which is level-triggered: it acts on
//! the difference between what the views want and what the sources report, retries with
//! backoff, limits the rate per target, and in dry-run decides and journals everything but
//! sends nothing. Each dispatch runs on a task of its own, under a timeout. Every outcome is
//!
//! - fed back as a fact of the `action_status(id, state, reason, at)` input (the latest state
//!   of each action), so that rules and queries see what the actuators did;
//! - appended, synced, to `DATA_DIR/actions.jsonl`: the time, the action, its parameters and
//!   the command, the attempt, the outcome and its reason, and the explanation (`why`) of
//!   the view row that asked for it, as `/v1/why` gives it;
//! - printed in the daemon's log, after the decision that caused it.
//!
//! The simulator of the sample house drives the loop itself after each of its transactions,
//! in dry-run, and answers the dry-run records as the house would, so that the journal is
//! the same whether the house is real or simulated. Its clock is the simulated one: the
//! dwell and the rate limits count simulated seconds.
//!
//! A restarted daemon starts with a fresh reconciler: an action whose last `action_status`
//! is `succeeded` is taken as done while its row stays; any other is tried again, which is
//! what level triggering means (a wake is sent again, a start finds the guest running).

use super::core::{Core, Refusal};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, broadcast, mpsc, watch};
use toml::Spanned;
use vigil_adapters::proxmox;
use vigil_adapters::ray;
use vigil_adapters::reconcile::{Action, Limits, Outcome, Reconciler};
use vigil_adapters::wol;
use vigil_engine::Value;
use vigil_engine::ir::Program;
use vigil_engine::trace::{Entry, Field};

/// The action journal's file in the data directory.
pub const JOURNAL: &str = "actions.jsonl";

/// The bindings of the bundled policy (rules/approvals.dl's `act(id, kind, target)`), used
/// when the config gives none and the program has that view. The README shows this table.
pub const DEFAULT_BINDINGS: &str = r#"
[[actuators.binding]]
view = "act"
kind = "wake"
actuator = "wol"
parameters = { mac = "node_mac({target}, ?)" }
done = 'power_state({target}, "up", _)'

[[actuators.binding]]
view = "act"
kind = "sleep"
actuator = "command"
command = ["ssh", "{target}", "systemctl", "suspend"]
done = 'power_state({target}, "asleep", _)'

[[actuators.binding]]
view = "act"
kind = "emergency_shutdown"
actuator = "proxmox"
operation = "node_shutdown"
parameters = { node = "{target}" }
done = 'power_state({target}, "asleep", _)'

[[actuators.binding]]
view = "act"
kind = "start"
when = 'workload_kind({target}, "vm")'
actuator = "proxmox"
operation = "start"
parameters = { guest = "{target}" }
done = "running({target}, _)"

[[actuators.binding]]
view = "act"
kind = "start"
when = 'workload_kind({target}, "ct")'
actuator = "proxmox"
operation = "start"
parameters = { guest = "{target}" }
done = "running({target}, _)"

[[actuators.binding]]
view = "act"
kind = "stop"
when = 'workload_kind({target}, "vm")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "stop"
when = 'workload_kind({target}, "ct")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "emergency_stop"
when = 'workload_kind({target}, "vm")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "emergency_stop"
when = 'workload_kind({target}, "ct")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "shed"
when = 'workload_kind({target}, "vm")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "shed"
when = 'workload_kind({target}, "ct")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "evict"
when = 'workload_kind({target}, "vm")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "evict"
when = 'workload_kind({target}, "ct")'
actuator = "proxmox"
operation = "shutdown"
parameters = { guest = "{target}" }

[[actuators.binding]]
view = "act"
kind = "migrate"
actuator = "proxmox"
operation = "migrate"
parameters = { guest = "{target}", to = "placement({target}, ?)" }

[[actuators.binding]]
view = "act"
kind = "ray_start"
actuator = "ray"
operation = "start"
parameters = { node = "{target}" }
done = "ray_worker({target})"

[[actuators.binding]]
view = "act"
kind = "ray_stop"
actuator = "ray"
operation = "drain"
parameters = { node = "{target}" }
done = "!ray_worker({target})"
"#;

/// `[actuators]`: whether and how hard to act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Decide and journal everything, send nothing. The default: acting on the house is
    /// asked for (`dry_run = false`).
    pub dry_run: bool,
    /// The wait after a first failure; it doubles after each one, up to `retry_cap_s`.
    pub retry_s: f64,
    pub retry_cap_s: f64,
    /// Failed attempts before giving up (until the row leaves the view and comes back).
    pub attempts: u32,
    /// At most `per_target` dispatches on one target within `window_s`.
    pub per_target: usize,
    pub window_s: f64,
    /// The least time between two dispatches on one target.
    pub dwell_s: f64,
    /// How long one dispatch may take: a command, a Proxmox call and its task, a wake until
    /// the node is up.
    pub timeout_s: f64,
    pub wol: WolSettings,
    /// The bindings; without any, the bundled policy's.
    #[serde(rename = "binding")]
    pub bindings: Option<Vec<BindingSettings>>,
    /// Where the settings were read, for errors that point into the file.
    #[serde(skip)]
    origin: Option<Origin>,
}

impl Default for Settings {
    fn default() -> Settings {
        let limits = Limits::default();
        Settings {
            dry_run: true,
            retry_s: limits.retry_first.as_secs_f64(),
            retry_cap_s: limits.retry_cap.as_secs_f64(),
            attempts: limits.attempts,
            per_target: limits.per_target,
            window_s: limits.window.as_secs_f64(),
            dwell_s: limits.dwell.as_secs_f64(),
            timeout_s: 300.0,
            wol: WolSettings::default(),
            bindings: None,
            origin: None,
        }
    }
}

/// `[actuators.wol]`: where magic packets go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WolSettings {
    /// The broadcast address of the nodes' subnet.
    pub broadcast: IpAddr,
    pub port: u16,
    /// A SecureOn password (4 or 6 bytes, as `AA:BB:CC:DD:EE:FF`), for cards that need one.
    pub password: Option<String>,
    /// Seconds between packets while the node is not up.
    pub interval_s: f64,
}

impl Default for WolSettings {
    fn default() -> WolSettings {
        WolSettings {
            broadcast: IpAddr::V4(Ipv4Addr::BROADCAST),
            port: wol::DEFAULT_PORT,
            password: None,
            interval_s: 5.0,
        }
    }
}

/// `[[actuators.binding]]`: which rows of a view ask for what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSettings {
    pub view: Spanned<String>,
    /// Rows whose `kind` column holds this; for a view without one, the action's kind.
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    /// A condition on the row: a query that must have rows (`workload_kind({target}, "vm")`).
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// `wol`, `proxmox`, `command` or `ray`.
    pub actuator: Spanned<String>,
    /// For `proxmox`: `start`, `shutdown`, `stop`, `suspend`, `resume`, `migrate`,
    /// `node_shutdown`, `node_wake`; for `ray`: `start`, `drain`, `stop`.
    #[serde(default)]
    pub operation: Option<Spanned<String>>,
    /// For `command`: the program and its arguments, templates over the row's columns and
    /// the parameters. Never a shell line.
    #[serde(default)]
    pub command: Option<Spanned<Vec<String>>>,
    /// The action's id and target; by default the `id` and `target` columns.
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    /// The actuator's parameters: templates (`{target}`) or lookups (`node_mac({target}, ?)`).
    #[serde(default)]
    pub parameters: BTreeMap<String, Spanned<String>>,
    /// The observation that says the action is done: a query that has rows once it is.
    #[serde(default)]
    pub done: Option<Spanned<String>>,
}

/// The text the settings came from.
#[derive(Debug, Clone)]
struct Origin {
    name: String,
    text: String,
}

impl Origin {
    /// `NAME:LINE:COL` of a byte offset.
    fn at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
        format!("{}:{line}:{column}", self.name)
    }
}

impl Settings {
    /// Remembers the config file the settings were read from, for errors.
    pub fn located(&mut self, path: &Path, text: &str) {
        self.origin = Some(Origin {
            name: path.display().to_string(),
            text: text.to_string(),
        });
    }

    /// Checks what needs no program: numbers and the Wake-on-LAN settings.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("retry_s", self.retry_s),
            ("retry_cap_s", self.retry_cap_s),
            ("window_s", self.window_s),
            ("timeout_s", self.timeout_s),
            ("wol.interval_s", self.wol.interval_s),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!(
                    "[actuators] `{name}` must be a positive number of seconds"
                ));
            }
        }
        if !(self.dwell_s.is_finite() && self.dwell_s >= 0.0) {
            return Err("[actuators] `dwell_s` must be a number of seconds, 0 or more".into());
        }
        if self.attempts == 0 || self.per_target == 0 {
            return Err("[actuators] `attempts` and `per_target` must be at least 1".into());
        }
        self.password()?;
        Ok(())
    }

    fn password(&self) -> Result<Option<wol::SecureOn>, String> {
        let Some(text) = &self.wol.password else {
            return Ok(None);
        };
        let bytes: Result<Vec<u8>, _> = text
            .split([':', '-'])
            .map(|group| u8::from_str_radix(group, 16))
            .collect();
        let bytes = bytes.map_err(|_| {
            format!("[actuators.wol] `password`: `{text}` is not hex bytes like AA:BB:CC:DD")
        })?;
        wol::SecureOn::new(&bytes)
            .map(Some)
            .map_err(|error| format!("[actuators.wol] `password`: {error}"))
    }

    fn limits(&self) -> Limits {
        Limits {
            retry_first: Duration::from_secs_f64(self.retry_s),
            retry_cap: Duration::from_secs_f64(self.retry_cap_s),
            attempts: self.attempts,
            per_target: self.per_target,
            window: Duration::from_secs_f64(self.window_s),
            dwell: Duration::from_secs_f64(self.dwell_s),
        }
    }
}

/// A piece of a template: text, a column of the row, or a parameter (in commands).
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Column(usize),
    Parameter(String),
}

/// `text {column} text`; `{{` and `}}` are braces.
#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

impl Template {
    /// Parses a template whose names are `columns` (and, if given, `parameters`).
    fn parse(text: &str, columns: &[String], parameters: &[String]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut characters = text.chars().peekable();
        while let Some(character) = characters.next() {
            match character {
                '{' if characters.peek() == Some(&'{') => {
                    characters.next();
                    literal.push('{');
                }
                '}' if characters.peek() == Some(&'}') => {
                    characters.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match characters.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("`{text}`: `{{{name}` is not closed")),
                        }
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    if let Some(index) = columns.iter().position(|c| *c == name) {
                        pieces.push(Piece::Column(index));
                    } else if parameters.contains(&name) {
                        pieces.push(Piece::Parameter(name));
                    } else {
                        let mut known = columns.to_vec();
                        known.extend(parameters.iter().cloned());
                        return Err(format!(
                            "unknown column `{name}` (there are: {})",
                            known.join(", ")
                        ));
                    }
                }
                '}' => return Err(format!("`{text}`: a lone `}}` (write `}}}}`)")),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The text, with each column as `show` renders it.
    fn render(
        &self,
        row: &[Value],
        parameters: &BTreeMap<String, String>,
        show: &dyn Fn(&Value) -> String,
    ) -> String {
        let mut text = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(literal) => text.push_str(literal),
                Piece::Column(index) => {
                    text.push_str(&row.get(*index).map(show).unwrap_or_default())
                }
                Piece::Parameter(name) => {
                    text.push_str(parameters.get(name).map_or("", String::as_str))
                }
            }
        }
        text
    }

    fn text(&self, row: &[Value]) -> String {
        self.render(row, &BTreeMap::new(), &|value| value.to_string())
    }
}

/// A value as a query literal.
fn literal(value: &Value) -> String {
    match value {
        Value::Symbol(_) => format!("{:?}", value.to_string()),
        other => other.to_string(),
    }
}

/// A query over the facts with the row's columns in it: `relation(arg, ...)`, where `?`
/// (in a lookup) is the value wanted.
/// A condition (`when`, `done`) may be negated, `!relation(...)`: it holds while the query
/// has no rows (`done = "!ray_worker({target})"`: done once the worker is gone).
#[derive(Debug, Clone)]
struct Query {
    template: Template,
    lookup: bool,
    negated: bool,
}

impl Query {
    fn parse(
        text: &str,
        columns: &[String],
        program: &Program,
        lookup: bool,
    ) -> Result<Query, String> {
        let trimmed = text.trim();
        let (negated, trimmed) = match trimmed.strip_prefix('!') {
            Some(_) if lookup => {
                return Err(format!("`{text}`: a lookup cannot be negated"));
            }
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        let (relation, rest) = trimmed
            .split_once('(')
            .ok_or_else(|| format!("`{text}` is not an atom like `relation(a, b)`"))?;
        let relation = relation.trim();
        let Some(arguments) = rest.strip_suffix(')') else {
            return Err(format!("`{text}` does not end with `)`"));
        };
        let Some(id) = program.relation(relation) else {
            return Err(format!("unknown relation `{relation}` in `{text}`"));
        };
        let arguments = split_arguments(arguments);
        let arity = program.relations[id].arity();
        if arguments.len() != arity {
            return Err(format!(
                "`{relation}` has {arity} columns, `{text}` gives {}",
                arguments.len()
            ));
        }
        let holes = arguments.iter().filter(|a| a.trim() == "?").count();
        match (lookup, holes) {
            (true, 1) | (false, 0) => {}
            (true, _) => return Err(format!("`{text}`: a lookup marks exactly one column `?`")),
            (false, _) => return Err(format!("`{text}`: `?` is only for parameter lookups")),
        }
        let rendered: Vec<String> = arguments
            .iter()
            .map(|a| {
                if a.trim() == "?" {
                    "Wanted".to_string()
                } else {
                    a.trim().to_string()
                }
            })
            .collect();
        let template = Template::parse(
            &format!("{relation}({})", rendered.join(", ")),
            columns,
            &[],
        )?;
        Ok(Query {
            template,
            lookup,
            negated,
        })
    }

    /// The query to ask, without its negation.
    fn text(&self, row: &[Value]) -> String {
        self.template.render(row, &BTreeMap::new(), &literal)
    }

    /// Whether the condition holds, given whether the query has rows.
    fn holds(&self, has_rows: bool) -> bool {
        has_rows != self.negated
    }
}

/// Splits `a, "b, c", d` at the commas outside quotes.
fn split_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for character in text.chars() {
        match character {
            _ if escaped => {
                escaped = false;
                current.push(character);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(character);
            }
            '"' => {
                quoted = !quoted;
                current.push(character);
            }
            ',' if !quoted => arguments.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    if !current.trim().is_empty() || !arguments.is_empty() {
        arguments.push(current);
    }
    arguments
}

/// A parameter: from the row, or looked up in the facts.
#[derive(Debug, Clone)]
enum Parameter {
    Text(Template),
    Lookup(Query),
}

/// What carries an action out.
#[derive(Debug, Clone)]
enum Actuator {
    Wol,
    Proxmox(Operation),
    Command(Vec<Template>),
    /// Over the `[ray]` cluster: a worker on the node of the parameter `node`.
    Ray(RayOperation),
}

/// What the `ray` actuator does to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RayOperation {
    /// Runs the node's `start` command.
    Start,
    /// Drains the worker gracefully, then runs `stop`.
    Drain,
    /// Runs `stop` at once.
    Stop,
}

impl RayOperation {
    fn parse(text: &str) -> Option<RayOperation> {
        Some(match text {
            "start" => RayOperation::Start,
            "drain" => RayOperation::Drain,
            "stop" => RayOperation::Stop,
            _ => return None,
        })
    }
}

impl Actuator {
    fn name(&self) -> &'static str {
        match self {
            Actuator::Wol => "wol",
            Actuator::Proxmox(_) => "proxmox",
            Actuator::Command(_) => "command",
            Actuator::Ray(_) => "ray",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Power(proxmox::Power),
    Migrate,
    NodeShutdown,
    NodeWake,
}

impl Operation {
    fn parse(text: &str) -> Option<Operation> {
        Some(match text {
            "start" => Operation::Power(proxmox::Power::Start),
            "shutdown" => Operation::Power(proxmox::Power::Shutdown),
            "stop" => Operation::Power(proxmox::Power::Stop),
            "suspend" => Operation::Power(proxmox::Power::Suspend),
            "resume" => Operation::Power(proxmox::Power::Resume),
            "migrate" => Operation::Migrate,
            "node_shutdown" => Operation::NodeShutdown,
            "node_wake" => Operation::NodeWake,
            _ => return None,
        })
    }

    /// The parameters it needs, and those it may take.
    fn parameters(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Operation::Power(_) => (&[], &["guest", "vmid", "node", "type"]),
            Operation::Migrate => (&["to"], &["guest", "vmid", "node", "type"]),
            Operation::NodeShutdown | Operation::NodeWake => (&["node"], &[]),
        }
    }
}

/// A binding, checked against the program.
#[derive(Debug, Clone)]
struct Binding {
    view: String,
    columns: Vec<String>,
    kind_column: Option<usize>,
    kind: Option<String>,
    when: Option<Query>,
    actuator: Actuator,
    id: Template,
    target: Template,
    parameters: Vec<(String, Parameter)>,
    done: Option<Query>,
}

impl Binding {
    fn compile(
        settings: &BindingSettings,
        number: usize,
        program: &Program,
        origin: &Origin,
    ) -> Result<Binding> {
        let place = |span: std::ops::Range<usize>, message: String| {
            anyhow::anyhow!(
                "{}: [[actuators.binding]] {number}: {message}",
                origin.at(span.start)
            )
        };
        let view = settings.view.get_ref().clone();
        let Some(relation) = program.relation(&view) else {
            return Err(place(
                settings.view.span(),
                format!("unknown view `{view}`"),
            ));
        };
        let columns: Vec<String> = program.relations[relation]
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let kind_column = columns.iter().position(|c| c == "kind");
        let kind = settings.kind.as_ref().map(|k| k.get_ref().clone());
        if kind_column.is_none() && kind.is_none() {
            return Err(place(
                settings.view.span(),
                format!("`{view}` has no `kind` column: give the actions' `kind`"),
            ));
        }
        let template = |field: &Option<Spanned<String>>, default: &str, span| -> Result<Template> {
            let text = field.as_ref().map_or(default, |f| f.get_ref().as_str());
            let span = field.as_ref().map_or(span, |f: &Spanned<String>| f.span());
            Template::parse(text, &columns, &[]).map_err(|message| place(span, message))
        };
        let id = template(&settings.id, "{id}", settings.view.span())?;
        let target = template(&settings.target, "{target}", settings.view.span())?;
        let query = |field: &Spanned<String>, lookup: bool| -> Result<Query> {
            Query::parse(field.get_ref(), &columns, program, lookup)
                .map_err(|message| place(field.span(), message))
        };
        let when = settings
            .when
            .as_ref()
            .map(|w| query(w, false))
            .transpose()?;
        let done = settings
            .done
            .as_ref()
            .map(|d| query(d, false))
            .transpose()?;
        let mut parameters = Vec::new();
        for (name, value) in &settings.parameters {
            let text = value.get_ref();
            let parameter = if text.contains('?') && text.trim_end().ends_with(')') {
                Parameter::Lookup(query(value, true)?)
            } else {
                Parameter::Text(
                    Template::parse(text, &columns, &[])
                        .map_err(|message| place(value.span(), message))?,
                )
            };
            parameters.push((name.clone(), parameter));
        }
        let names: Vec<String> = parameters.iter().map(|(name, _)| name.clone()).collect();
        let given = |name: &str| names.iter().any(|n| n == name);
        let actuator_span = settings.actuator.span();
        let actuator = match settings.actuator.get_ref().as_str() {
            "wol" => {
                for name in &names {
                    if name != "mac" {
                        return Err(place(
                            actuator_span,
                            format!("`wol` takes the parameter `mac`, not `{name}`"),
                        ));
                    }
                }
                if !given("mac") {
                    return Err(place(
                        actuator_span,
                        "`wol` needs the parameter `mac` (e.g. `node_mac({target}, ?)`)".into(),
                    ));
                }
                Actuator::Wol
            }
            "proxmox" => {
                let Some(operation) = &settings.operation else {
                    return Err(place(
                        actuator_span,
                        "`proxmox` needs an `operation`: start, shutdown, stop, suspend, resume, migrate, node_shutdown or node_wake".into(),
                    ));
                };
                let Some(parsed) = Operation::parse(operation.get_ref()) else {
                    return Err(place(
                        operation.span(),
                        format!(
                            "unknown operation `{}`: start, shutdown, stop, suspend, resume, migrate, node_shutdown or node_wake",
                            operation.get_ref()
                        ),
                    ));
                };
                let (needed, optional) = parsed.parameters();
                for name in needed {
                    if !given(name) {
                        return Err(place(
                            operation.span(),
                            format!("`{}` needs the parameter `{name}`", operation.get_ref()),
                        ));
                    }
                }
                for name in &names {
                    if !needed.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
                        return Err(place(
                            operation.span(),
                            format!("`{}` takes no parameter `{name}`", operation.get_ref()),
                        ));
                    }
                }
                if matches!(parsed, Operation::Power(_) | Operation::Migrate)
                    && !given("guest")
                    && !(given("vmid") && given("node"))
                {
                    return Err(place(
                        operation.span(),
                        "a guest is named by `guest` (its name) or by `vmid` and `node`".into(),
                    ));
                }
                Actuator::Proxmox(parsed)
            }
            "command" => {
                let Some(command) = &settings.command else {
                    return Err(place(
                        actuator_span,
                        "`command` needs `command = [\"program\", \"argument\", ...]`".into(),
                    ));
                };
                if command.get_ref().is_empty() {
                    return Err(place(command.span(), "the command is empty".into()));
                }
                let argv = command
                    .get_ref()
                    .iter()
                    .map(|argument| Template::parse(argument, &columns, &names))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|message| place(command.span(), message))?;
                Actuator::Command(argv)
            }
            "ray" => {
                let Some(operation) = &settings.operation else {
                    return Err(place(
                        actuator_span,
                        "`ray` needs an `operation`: start, drain or stop".into(),
                    ));
                };
                let Some(parsed) = RayOperation::parse(operation.get_ref()) else {
                    return Err(place(
                        operation.span(),
                        format!(
                            "unknown operation `{}`: start, drain or stop",
                            operation.get_ref()
                        ),
                    ));
                };
                for name in &names {
                    if name != "node" {
                        return Err(place(
                            actuator_span,
                            format!("`ray` takes the parameter `node`, not `{name}`"),
                        ));
                    }
                }
                if !given("node") {
                    return Err(place(
                        actuator_span,
                        "`ray` needs the parameter `node` (e.g. `{target}`)".into(),
                    ));
                }
                Actuator::Ray(parsed)
            }
            other => {
                return Err(place(
                    actuator_span,
                    format!("unknown actuator `{other}`: wol, proxmox, command or ray"),
                ));
            }
        };
        if settings.command.is_some() && !matches!(actuator, Actuator::Command(_)) {
            return Err(place(
                actuator_span,
                "`command` is only for the `command` actuator".into(),
            ));
        }
        if settings.operation.is_some()
            && !matches!(actuator, Actuator::Proxmox(_) | Actuator::Ray(_))
        {
            return Err(place(
                actuator_span,
                "`operation` is only for the `proxmox` and `ray` actuators".into(),
            ));
        }
        Ok(Binding {
            view,
            columns,
            kind_column,
            kind,
            when,
            actuator,
            id,
            target,
            parameters,
            done,
        })
    }

    /// Whether a row is of this binding's kind.
    fn takes(&self, row: &[Value]) -> bool {
        match (self.kind_column, &self.kind) {
            (Some(column), Some(kind)) => row.get(column).is_some_and(|v| v.to_string() == *kind),
            _ => true,
        }
    }

    fn kind_of(&self, row: &[Value]) -> String {
        match (&self.kind, self.kind_column) {
            (Some(kind), _) => kind.clone(),
            (None, Some(column)) => row.get(column).map(ToString::to_string).unwrap_or_default(),
            (None, None) => String::new(),
        }
    }

    /// The atom of a row, for `why`.
    fn atom(&self, row: &[Value]) -> String {
        let values: Vec<String> = row.iter().map(literal).collect();
        format!("{}({})", self.view, values.join(", "))
    }
}

/// The bindings and settings the loop runs with.
pub struct Plan {
    settings: Settings,
    bindings: Vec<Binding>,
    /// Whether the program has the `action_status(id, state, reason, at)` input.
    status: bool,
    proxmox: Option<super::sources::Proxmox>,
    /// The `[ray]` cluster, for the `ray` actuator.
    ray: Option<ray::RayConfig>,
}

impl Plan {
    /// Checks the bindings against the program: the configured ones, or the bundled
    /// policy's if the program has its `act` view.
    pub fn new(
        settings: &Settings,
        program: &Program,
        proxmox: Option<super::sources::Proxmox>,
    ) -> Result<Plan> {
        let (bindings, origin) = match &settings.bindings {
            Some(bindings) => (
                bindings.clone(),
                settings.origin.clone().unwrap_or(Origin {
                    name: "the config".into(),
                    text: String::new(),
                }),
            ),
            None => {
                let bundled = program.relation("act").is_some_and(|act| {
                    let names: Vec<&str> = program.relations[act]
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    names == ["id", "kind", "target"]
                });
                if bundled {
                    (
                        default_bindings()?,
                        Origin {
                            name: "the built-in bindings".into(),
                            text: DEFAULT_BINDINGS.into(),
                        },
                    )
                } else {
                    (
                        Vec::new(),
                        Origin {
                            name: String::new(),
                            text: String::new(),
                        },
                    )
                }
            }
        };
        let mut compiled = Vec::new();
        for (index, binding) in bindings.iter().enumerate() {
            match Binding::compile(binding, index + 1, program, &origin) {
                Ok(binding) => compiled.push(binding),
                // The built-in bindings bind what the program has: a program with an `act`
                // view but without `workload_kind` (say) has fewer actuators.
                Err(_) if settings.bindings.is_none() => {}
                Err(error) => return Err(error),
            }
        }
        let status = program
            .relation("action_status")
            .is_some_and(|id| program.relations[id].arity() == 4 && program.relations[id].writable);
        if let Err(message) = settings.check() {
            bail!("{message}");
        }
        Ok(Plan {
            settings: settings.clone(),
            bindings: compiled,
            status,
            proxmox,
            ray: None,
        })
    }

    /// The `[ray]` cluster the `ray` actuator acts on; without one, its actions fail with
    /// the reason.
    pub fn with_ray(mut self, ray: Option<ray::RayConfig>) -> Plan {
        self.ray = ray;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn dry_run(&self) -> bool {
        self.settings.dry_run
    }

    /// Acts on nothing real: every action is journaled, nothing is sent.
    pub fn force_dry_run(&mut self) {
        self.settings.dry_run = true;
    }
}

/// The built-in table, parsed.
fn default_bindings() -> Result<Vec<BindingSettings>> {
    #[derive(Deserialize)]
    struct Table {
        actuators: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        binding: Vec<BindingSettings>,
    }
    let table: Table = toml::from_str(DEFAULT_BINDINGS)
        .map_err(|error| anyhow::anyhow!("the built-in bindings: {}", error.message()))?;
    Ok(table.actuators.binding)
}

/// One line of the action journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// Counts every line of the journal, from 1.
    pub seq: u64,
    /// Seconds since the epoch (the simulated clock for the simulated house).
    pub time: i64,
    pub id: String,
    pub kind: String,
    pub target: String,
    pub actuator: String,
    pub parameters: BTreeMap<String, String>,
    /// What is (or, dry, would be) sent.
    pub command: String,
    pub attempt: u32,
    /// `started`, `succeeded`, `failed`, `gave-up` or `dry-run`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The explanation of the view row that asked for the action.
    pub why: String,
}

/// The parameters of `GET /v1/actions`: `since=SEQ` (the lines after it) and `limit=N` (the
/// last N of them).
pub fn journal_query(query: Option<&str>) -> Result<(u64, Option<usize>), String> {
    let (mut since, mut limit) = (0, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "since" => {
                since = value.parse().map_err(|_| {
                    format!("`since` is the `seq` of a journal line, a number, not `{value}`")
                })?;
            }
            "limit" => {
                limit = Some(
                    value
                        .parse()
                        .map_err(|_| format!("`limit` is a number of lines, not `{value}`"))?,
                );
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`: `/v1/actions` takes `since` and `limit`"
                ));
            }
        }
    }
    Ok((since, limit))
}

/// Reads the journal: the lines after `since` (a `seq`), the last `limit` of them.
pub fn read_journal(dir: &Path, since: u64, limit: Option<usize>) -> Result<Vec<Line>, String> {
    let path = dir.join(JOURNAL);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let mut lines = Vec::new();
    let count = text.lines().count();
    for (number, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        // A torn last line (a crash while it was written) is not an action.
        let Ok(line) = serde_json::from_str::<Line>(text) else {
            if number + 1 < count {
                say_err!(
                    "warning: {}:{}: not a journal line",
                    path.display(),
                    number + 1
                );
            }
            continue;
        };
        if line.seq > since {
            lines.push(line);
        }
    }
    if let Some(limit) = limit
        && lines.len() > limit
    {
        lines.drain(..lines.len() - limit);
    }
    Ok(lines)
}

/// A view row the loop knows, with what it resolved once.
struct Known {
    /// The binding that takes it, if any.
    binding: Option<usize>,
    row: Vec<Value>,
    action: Action,
    why: String,
    /// Why a lookup gave nothing, which fails the dispatch.
    unresolved: Option<String>,
}

struct State {
    reconciler: Reconciler,
    known: BTreeMap<String, Known>,
    /// Journal records of the reconciler already written.
    written: usize,
    /// The actuator and command of each action dispatched, for the records of its outcome
    /// once its row has left the view.
    described: BTreeMap<String, (String, String)>,
    seq: u64,
    file: Option<std::fs::File>,
    path: PathBuf,
    /// The event time the simulated clock starts at.
    origin_event: Option<i64>,
    origin: Instant,
    seeded: bool,
}

/// A dispatch's action id and outcome.
type Finished = (String, Result<(), String>);

/// The actuation loop.
pub struct Actuation {
    core: Core,
    plan: Arc<Plan>,
    state: Mutex<State>,
    lines: broadcast::Sender<Line>,
    completions: mpsc::UnboundedSender<Finished>,
    finished: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    /// Driven by the simulator, on its clock.
    simulated: bool,
    proxmox: Option<Result<proxmox::Client, String>>,
    ray: Option<Result<ray::Ray, String>>,
}

impl Actuation {
    pub fn new(core: Core, plan: Plan, data_dir: &Path, simulated: bool) -> Result<Actuation> {
        let path = data_dir.join(JOURNAL);
        let seq = read_journal(data_dir, 0, None)
            .map_err(|message| anyhow::anyhow!("{message}"))?
            .last()
            .map_or(0, |line| line.seq);
        let proxmox = plan.proxmox.as_ref().map(proxmox_client);
        if let Some(Err(message)) = &proxmox
            && !plan.dry_run()
        {
            say_err!("warning: actuators: {message}; Proxmox actions will fail");
        }
        let ray = plan
            .ray
            .clone()
            .map(|config| ray::Ray::new(config).map_err(|error| format!("[ray]: {error}")));
        if let Some(Err(message)) = &ray
            && !plan.dry_run()
        {
            say_err!("warning: actuators: {message}; Ray actions will fail");
        }
        let (completions, finished) = mpsc::unbounded_channel();
        let start = Instant::now();
        Ok(Actuation {
            core,
            state: Mutex::new(State {
                reconciler: Reconciler::new(plan.settings.limits(), plan.dry_run(), start),
                known: BTreeMap::new(),
                written: 0,
                described: BTreeMap::new(),
                seq,
                file: None,
                path,
                origin_event: None,
                origin: start,
                seeded: false,
            }),
            plan: Arc::new(plan),
            lines: broadcast::channel(4096).0,
            completions,
            finished: Mutex::new(Some(finished)),
            simulated,
            proxmox,
            ray,
        })
    }

    /// Every journal line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Line> {
        self.lines.subscribe()
    }

    /// Whether a row of a bound view (by its action id) has a binding that carries it out.
    pub async fn carries_out(&self, id: &str) -> bool {
        let state = self.state.lock().await;
        state
            .known
            .get(id)
            .is_some_and(|known| known.binding.is_some())
    }

    /// Runs the loop until the daemon stops: a pass after each commit (unless the simulator
    /// drives it) and every second, and each dispatch's outcome as it comes.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(mut finished) = self.finished.lock().await.take() else {
            return;
        };
        let mut latest = self.core.feed.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = latest.changed(), if !self.simulated => {
                    if changed.is_err() {
                        return;
                    }
                    self.pass().await;
                }
                Some((id, result)) = finished.recv() => self.finish(&id, result).await,
                _ = tick.tick() => self.pass().await,
                _ = stopped.changed() => return,
            }
        }
    }

    /// The clock: the reconciler's instant, and the time journaled.
    async fn now(&self, state: &mut State) -> Option<(Instant, i64)> {
        let event = match self.core.status().await {
            Ok(status) => status.now,
            Err(Refusal::Invalid(message) | Refusal::Failed(message)) => {
                say_err!("error: actuators: {message}");
                return None;
            }
        };
        if !self.simulated {
            return Some((Instant::now(), super::wall_clock()));
        }
        let origin = *state.origin_event.get_or_insert(event);
        let elapsed = Duration::from_secs((event - origin).max(0) as u64);
        Some((state.origin + elapsed, event))
    }

    /// Reads the bound views, feeds the reconciler, and dispatches what is due.
    pub async fn pass(&self) {
        if self.plan.is_empty() {
            return;
        }
        let mut state = self.state.lock().await;
        let Some((now, time)) = self.now(&mut state).await else {
            return;
        };
        let mut rows: BTreeMap<String, ()> = BTreeMap::new();
        let views: BTreeSet<&str> = self.plan.bindings.iter().map(|b| b.view.as_str()).collect();
        for view in views {
            let columns = self
                .plan
                .bindings
                .iter()
                .find(|b| b.view == view)
                .map_or(0, |b| b.columns.len());
            let variables: Vec<String> = (0..columns).map(|i| format!("Column{i}")).collect();
            let Some(answer) = self.ask(&format!("{view}({})", variables.join(", "))).await else {
                return;
            };
            for row in answer {
                self.learn(&mut state, view, row, &mut rows).await;
            }
        }
        state.known.retain(|id, _| rows.contains_key(id));
        let desired: Vec<(Action, String)> = state
            .known
            .values()
            .filter(|known| known.binding.is_some())
            .map(|known| (known.action.clone(), known.why.clone()))
            .collect();
        state.reconciler.desired(now, desired);
        if !state.seeded {
            state.seeded = true;
            if self.plan.status
                && let Some(done) = self.ask("action_status(Id, \"succeeded\", _, _)").await
            {
                for row in done {
                    if let Some(id) = row.first() {
                        state.reconciler.observed_done(&id.to_string());
                    }
                }
            }
        }
        let checks: Vec<(String, Query, String)> = state
            .known
            .iter()
            .filter_map(|(id, known)| {
                let binding = &self.plan.bindings[known.binding?];
                let done = binding.done.as_ref()?;
                Some((id.clone(), done.clone(), done.text(&known.row)))
            })
            .collect();
        for (id, done, query) in checks {
            if let Some(rows) = self.ask(&query).await
                && done.holds(!rows.is_empty())
            {
                state.reconciler.observed_done(&id);
            }
        }
        for dispatch in state.reconciler.due(now) {
            let Some((known, binding)) = state
                .known
                .get(&dispatch.action.id)
                .and_then(|known| Some((known, known.binding?)))
            else {
                let _ = self.completions.send((
                    dispatch.action.id.clone(),
                    Err("its row left the view before it was sent".into()),
                ));
                continue;
            };
            let job = Job {
                binding: self.plan.bindings[binding].clone(),
                row: known.row.clone(),
                // The row's latest resolution: a lookup may have found its value since.
                action: known.action.clone(),
                unresolved: known.unresolved.clone(),
            };
            let (core, settings, proxmox, cluster, completions) = (
                self.core.clone(),
                self.plan.clone(),
                self.proxmox.clone(),
                self.ray.clone(),
                self.completions.clone(),
            );
            tokio::spawn(async move {
                let id = job.action.id.clone();
                let timeout = Duration::from_secs_f64(settings.settings.timeout_s);
                let result = match tokio::time::timeout(
                    timeout,
                    job.execute(&core, &settings, proxmox.as_ref(), cluster.as_ref()),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(format!("no outcome within {:.1} s", timeout.as_secs_f64())),
                };
                let _ = completions.send((id, result));
            });
        }
        self.flush(&mut state, time).await;
    }

    /// A dispatch ended.
    async fn finish(&self, id: &str, result: Result<(), String>) {
        let mut state = self.state.lock().await;
        let Some((now, time)) = self.now(&mut state).await else {
            return;
        };
        state.reconciler.finished(now, id, result);
        self.flush(&mut state, time).await;
        drop(state);
        // A failure may be retried at once if its backoff is short; a success may let
        // another action on the target through.
        self.pass().await;
    }

    /// Takes a row in: the first time, finds its binding and resolves its parameters and
    /// its explanation.
    async fn learn(
        &self,
        state: &mut State,
        view: &str,
        row: Vec<Value>,
        seen: &mut BTreeMap<String, ()>,
    ) {
        let candidates: Vec<usize> = self
            .plan
            .bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| b.view == view && b.takes(&row))
            .map(|(index, _)| index)
            .collect();
        let Some(&first) = candidates.first() else {
            // A row of a bound view that no binding takes: known, and carried out by nobody.
            if let Some(binding) = self.plan.bindings.iter().find(|b| b.view == view) {
                let id = binding.id.text(&row);
                seen.insert(id.clone(), ());
                state.known.entry(id.clone()).or_insert_with(|| Known {
                    binding: None,
                    action: Action {
                        id,
                        kind: binding.kind_of(&row),
                        target: binding.target.text(&row),
                        parameters: BTreeMap::new(),
                    },
                    row,
                    why: String::new(),
                    unresolved: None,
                });
            }
            return;
        };
        let id = self.plan.bindings[first].id.text(&row);
        seen.insert(id.clone(), ());
        // A row is resolved once, or again while a lookup finds nothing (the facts it needs
        // may come later).
        if state
            .known
            .get(&id)
            .is_some_and(|known| known.row == row && known.unresolved.is_none())
        {
            return;
        }
        let mut chosen = None;
        for index in candidates {
            let binding = &self.plan.bindings[index];
            match &binding.when {
                Some(when) => {
                    if self
                        .ask(&when.text(&row))
                        .await
                        .is_some_and(|r| when.holds(!r.is_empty()))
                    {
                        chosen = Some(index);
                        break;
                    }
                }
                None => {
                    chosen = Some(index);
                    break;
                }
            }
        }
        let binding = &self.plan.bindings[chosen.unwrap_or(first)];
        let mut parameters = BTreeMap::new();
        let mut unresolved = None;
        if chosen.is_some() {
            for (name, parameter) in &binding.parameters {
                match parameter {
                    Parameter::Text(template) => {
                        parameters.insert(name.clone(), template.text(&row));
                    }
                    Parameter::Lookup(query) => {
                        let text = query.text(&row);
                        match self
                            .ask(&text)
                            .await
                            .and_then(|rows| rows.into_iter().next())
                        {
                            Some(values) if query.lookup => {
                                let value = values.first().map(ToString::to_string);
                                parameters.insert(name.clone(), value.unwrap_or_default());
                            }
                            _ => {
                                unresolved = Some(format!(
                                    "no value for the parameter `{name}`: `{}` has no row",
                                    text.replace("Wanted", "?")
                                ));
                            }
                        }
                    }
                }
            }
        }
        let why = if chosen.is_some() {
            match self.core.why(binding.atom(&row), false).await {
                Ok(answer) => answer["text"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string(),
                Err(Refusal::Invalid(message) | Refusal::Failed(message)) => {
                    format!("(no explanation: {message})")
                }
            }
        } else {
            String::new()
        };
        let action = Action {
            id: id.clone(),
            kind: binding.kind_of(&row),
            target: binding.target.text(&row),
            parameters,
        };
        state.known.insert(
            id,
            Known {
                binding: chosen,
                row,
                action,
                why,
                unresolved,
            },
        );
    }

    /// The rows of a query, or `None` (logged) if the engine refused it.
    async fn ask(&self, query: &str) -> Option<Vec<Vec<Value>>> {
        match self.core.query(query.to_string()).await {
            Ok(answer) => Some(
                answer
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().filter_map(|field| field.0).collect())
                    .collect(),
            ),
            Err(Refusal::Invalid(message) | Refusal::Failed(message)) => {
                say_err!("error: actuators: `{query}`: {message}");
                None
            }
        }
    }

    /// Journals the reconciler's new records: to the file, the log, the subscribers, and
    /// the `action_status` facts.
    async fn flush(&self, state: &mut State, time: i64) {
        let records: Vec<_> = state.reconciler.journal()[state.written..].to_vec();
        state.written += records.len();
        // The reconciler's own status facts count from its start; the journal's time is
        // the daemon's, so the facts are made from the lines.
        let _ = state.reconciler.take_status();
        if records.is_empty() {
            return;
        }
        let mut lines = Vec::new();
        for record in records {
            state.seq += 1;
            let known = state.known.get(&record.action.id);
            let binding = known
                .and_then(|k| k.binding)
                .map(|index| &self.plan.bindings[index]);
            let (actuator, command) = match (binding, known) {
                (Some(binding), Some(known)) => {
                    let described = (
                        binding.actuator.name().to_string(),
                        describe(binding, &known.row, &record.action, &self.plan.settings),
                    );
                    state
                        .described
                        .insert(record.action.id.clone(), described.clone());
                    described
                }
                _ => state
                    .described
                    .get(&record.action.id)
                    .cloned()
                    .unwrap_or_default(),
            };
            let reason = match &record.outcome {
                Outcome::Failed(reason) | Outcome::GaveUp(reason) => reason.clone(),
                _ => String::new(),
            };
            lines.push(Line {
                seq: state.seq,
                time,
                id: record.action.id.clone(),
                kind: record.action.kind.clone(),
                target: record.action.target.clone(),
                actuator,
                parameters: record.action.parameters.clone(),
                command,
                attempt: record.attempt,
                outcome: record.outcome.state().to_string(),
                reason,
                why: record.why.clone(),
            });
        }
        let mut text = String::new();
        for line in &lines {
            if let Ok(json) = serde_json::to_string(line) {
                text.push_str(&json);
                text.push('\n');
            }
        }
        if let Err(error) = state.append(text.as_bytes()) {
            say_err!(
                "error: actuators: {}: cannot append to the action journal: {error}",
                state.path.display()
            );
        }
        for line in &lines {
            say!("{}", log_line(line));
            let _ = self.lines.send(line.clone());
        }
        if self.plan.status {
            let rows = lines
                .iter()
                .map(|line| {
                    vec![
                        Field(Some(Value::symbol(&line.id))),
                        Field(Some(Value::symbol(&line.outcome))),
                        Field(Some(Value::symbol(&line.reason))),
                        Field(Some(Value::Number(line.time))),
                    ]
                })
                .collect();
            let mut entry = Entry {
                event: Some("actuators: action status".into()),
                ..Entry::default()
            };
            entry.insert.insert("action_status".into(), rows);
            if let Err(Refusal::Invalid(message) | Refusal::Failed(message)) =
                self.core.transact(entry).await
            {
                say_err!("error: actuators: the action status was refused: {message}");
            }
        }
    }
}

impl State {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.write_all(bytes)?;
        file.sync_data()
    }
}

/// A client on the `[proxmox]` connection: the same host, token and trust as the source.
fn proxmox_client(settings: &super::sources::Proxmox) -> Result<proxmox::Client, String> {
    let token = proxmox::ApiToken::parse(&settings.token)
        .map_err(|error| format!("[proxmox] `token`: {error}"))?;
    let trust = match (&settings.ca_file, &settings.fingerprint) {
        (Some(path), None) => {
            let pem = std::fs::read(path)
                .map_err(|error| format!("[proxmox] `ca_file` {}: {error}", path.display()))?;
            proxmox::Trust::ca_pem(&pem).map_err(|error| format!("[proxmox] `ca_file`: {error}"))?
        }
        (None, Some(fingerprint)) => proxmox::Trust::pin(fingerprint)
            .map_err(|error| format!("[proxmox] `fingerprint`: {error}"))?,
        _ => return Err("[proxmox]: give `ca_file` or `fingerprint` (one of them)".into()),
    };
    let mut config = proxmox::Config::new(&settings.host, token, trust);
    config.port = settings.port;
    proxmox::Client::new(config).map_err(|error| format!("[proxmox]: {error}"))
}

/// How a journal line reads in the daemon's log.
fn log_line(line: &Line) -> String {
    let at = super::sim::clock(line.time);
    let (label, detail) = match line.outcome.as_str() {
        "dry-run" => ("dry-run ", line.command.clone()),
        "started" => (
            "act     ",
            format!("{} (attempt {})", line.command, line.attempt),
        ),
        "succeeded" => ("done    ", "succeeded".to_string()),
        "failed" => ("failed  ", format!("{}; tried again later", line.reason)),
        _ => ("gave up ", line.reason.clone()),
    };
    format!("{at} {label} {} {}: {detail}", line.kind, line.target)
}

/// What a dispatch sends, in words: the dry run's command and the journal's.
fn describe(binding: &Binding, row: &[Value], action: &Action, settings: &Settings) -> String {
    let parameter = |name: &str| action.parameters.get(name).cloned().unwrap_or_default();
    match &binding.actuator {
        Actuator::Wol => match parameter("mac").parse::<wol::MacAddress>() {
            Ok(mac) => {
                let mut target =
                    wol::Target::new(mac, settings.wol.broadcast).port(settings.wol.port);
                if let Ok(Some(password)) = settings.password() {
                    target = target.password(password);
                }
                target.to_string()
            }
            Err(_) => format!("Wake-on-LAN: no valid MAC address for {}", action.target),
        },
        Actuator::Proxmox(operation) => {
            let guest = if action.parameters.contains_key("vmid") {
                format!(
                    "{} {} on {}",
                    action.parameters.get("type").map_or("qemu", String::as_str),
                    parameter("vmid"),
                    parameter("node")
                )
            } else {
                format!("guest {}", parameter("guest"))
            };
            match operation {
                Operation::Power(power) => format!("Proxmox: {} {guest}", power.as_str()),
                Operation::Migrate => format!("Proxmox: migrate {guest} to {}", parameter("to")),
                Operation::NodeShutdown => format!(
                    "Proxmox: POST /nodes/{}/status command=shutdown",
                    parameter("node")
                ),
                Operation::NodeWake => {
                    format!("Proxmox: POST /nodes/{}/wakeonlan", parameter("node"))
                }
            }
        }
        Actuator::Command(argv) => argv
            .iter()
            .map(|argument| quote(&argument.render(row, &action.parameters, &|v| v.to_string())))
            .collect::<Vec<_>>()
            .join(" "),
        Actuator::Ray(operation) => {
            let node = parameter("node");
            match operation {
                RayOperation::Start => format!("Ray: start a worker on {node}"),
                RayOperation::Drain => format!("Ray: drain the worker on {node}, then stop it"),
                RayOperation::Stop => format!("Ray: stop the worker on {node}"),
            }
        }
    }
}

/// An argument as a shell would need it, for reading only (commands never go through one).
fn quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        argument.to_string()
    } else {
        format!("'{}'", argument.replace('\'', "'\\''"))
    }
}

/// A dispatch, carried out on a task of its own.
struct Job {
    binding: Binding,
    row: Vec<Value>,
    action: Action,
    unresolved: Option<String>,
}

impl Job {
    async fn execute(
        &self,
        core: &Core,
        plan: &Plan,
        proxmox: Option<&Result<proxmox::Client, String>>,
        cluster: Option<&Result<ray::Ray, String>>,
    ) -> Result<(), String> {
        if let Some(unresolved) = &self.unresolved {
            return Err(unresolved.clone());
        }
        let parameter = |name: &str| self.action.parameters.get(name).cloned();
        match &self.binding.actuator {
            Actuator::Wol => {
                let text = parameter("mac").unwrap_or_default();
                let mac: wol::MacAddress = text
                    .parse()
                    .map_err(|error| format!("the MAC address `{text}`: {error}"))?;
                let settings = &plan.settings;
                let mut target =
                    wol::Target::new(mac, settings.wol.broadcast).port(settings.wol.port);
                if let Some(password) = settings.password()? {
                    target = target.password(password);
                }
                let sender = wol::Sender::for_destination(target.to)
                    .await
                    .map_err(|error| error.to_string())?;
                let done = self
                    .binding
                    .done
                    .as_ref()
                    .map(|query| query.text(&self.row));
                let ready = || {
                    let core = core.clone();
                    let done = done.clone();
                    let condition = self.binding.done.clone();
                    async move {
                        match (done, condition) {
                            (Some(query), Some(condition)) => core
                                .query(query)
                                .await
                                .is_ok_and(|answer| condition.holds(!answer.rows.is_empty())),
                            _ => true,
                        }
                    }
                };
                let interval = Duration::from_secs_f64(settings.wol.interval_s);
                let timeout = Duration::from_secs_f64(settings.timeout_s);
                let wake = wol::wake_until_ready(&sender, &target, ready, interval, timeout)
                    .await
                    .map_err(|error| error.to_string())?;
                match wake.outcome {
                    wol::Outcome::Ready => Ok(()),
                    wol::Outcome::TimedOut => Err(format!(
                        "{} not up after {} packets in {:.1} s",
                        self.action.target,
                        wake.packets,
                        wake.elapsed.as_secs_f64()
                    )),
                }
            }
            Actuator::Proxmox(operation) => {
                let client = match proxmox {
                    Some(Ok(client)) => client,
                    Some(Err(message)) => return Err(message.clone()),
                    None => return Err("no `[proxmox]` connection is configured".into()),
                };
                let settings = plan.proxmox.as_ref();
                let proxmox_node = |node: &str| {
                    settings
                        .and_then(|s| s.nodes.iter().find(|(_, ours)| *ours == node))
                        .map_or_else(|| node.to_string(), |(theirs, _)| theirs.clone())
                };
                match operation {
                    Operation::NodeShutdown => client
                        .shutdown_node(&proxmox_node(&parameter("node").unwrap_or_default()))
                        .await
                        .map_err(|error| error.to_string()),
                    Operation::NodeWake => client
                        .wake_node(&proxmox_node(&parameter("node").unwrap_or_default()))
                        .await
                        .map(|_| ())
                        .map_err(|error| error.to_string()),
                    Operation::Power(power) => {
                        let guest = self.guest(client, settings).await?;
                        client
                            .power(&guest, *power)
                            .await
                            .map(|_| ())
                            .map_err(|error| error.to_string())
                    }
                    Operation::Migrate => {
                        let guest = self.guest(client, settings).await?;
                        let to = proxmox_node(&parameter("to").unwrap_or_default());
                        client
                            .migrate(&guest, &to)
                            .await
                            .map(|_| ())
                            .map_err(|error| error.to_string())
                    }
                }
            }
            Actuator::Command(argv) => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| a.render(&self.row, &self.action.parameters, &|v| v.to_string()))
                    .collect();
                let output = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|error| format!("cannot run `{}`: {error}", argv[0]))?;
                if output.status.success() {
                    return Ok(());
                }
                let stderr = String::from_utf8_lossy(&output.stderr);
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Err(format!(
                    "`{}` {}{}{}",
                    argv[0],
                    output.status,
                    if last.is_empty() { "" } else { ": " },
                    last.trim()
                ))
            }
            Actuator::Ray(operation) => {
                let cluster = match cluster {
                    Some(Ok(cluster)) => cluster,
                    Some(Err(message)) => return Err(message.clone()),
                    None => {
                        return Err(
                            "no `[ray]` cluster is configured: give its `head`, `dashboard` and `[ray.node.NAME]` commands".into(),
                        );
                    }
                };
                let node = parameter("node").unwrap_or_default();
                let acted = match operation {
                    RayOperation::Start => cluster.start(&node).await.map(|_| ()),
                    RayOperation::Drain => cluster.drain(&node).await.map(|_| ()),
                    RayOperation::Stop => cluster.stop(&node).await.map(|_| ()),
                };
                acted.map_err(|error| error.to_string())?;
                // Done when the membership source reports the worker (or its absence).
                let interval = plan
                    .ray
                    .as_ref()
                    .map_or(1.0, |config| config.poll_interval_s);
                self.until_done(core, Duration::from_secs_f64(interval.clamp(0.05, 5.0)))
                    .await
            }
        }
    }

    /// Waits until the binding's `done` holds (its sources report the effect), asking every
    /// `interval`; the dispatch's timeout bounds the wait.
    async fn until_done(&self, core: &Core, interval: Duration) -> Result<(), String> {
        let Some(done) = &self.binding.done else {
            return Ok(());
        };
        let query = done.text(&self.row);
        loop {
            match core.query(query.clone()).await {
                Ok(answer) if done.holds(!answer.rows.is_empty()) => return Ok(()),
                Ok(_) => {}
                Err(Refusal::Invalid(message) | Refusal::Failed(message)) => {
                    return Err(format!("`{query}`: {message}"));
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The guest: by `vmid` and `node`, or found by its name in the cluster's resources.
    async fn guest(
        &self,
        client: &proxmox::Client,
        settings: Option<&super::sources::Proxmox>,
    ) -> Result<proxmox::Guest, String> {
        let parameters = &self.action.parameters;
        if let (Some(vmid), Some(node)) = (parameters.get("vmid"), parameters.get("node")) {
            let vmid: u32 = vmid
                .parse()
                .map_err(|_| format!("the VMID `{vmid}` is not a number"))?;
            let kind = parameters.get("type").map_or("qemu", String::as_str);
            let kind = proxmox::GuestKind::parse(kind)
                .ok_or_else(|| format!("the guest type `{kind}` is neither qemu nor lxc"))?;
            let node = settings
                .and_then(|s| s.nodes.iter().find(|(_, ours)| *ours == node))
                .map_or_else(|| node.clone(), |(theirs, _)| theirs.clone());
            return Ok(proxmox::Guest { node, kind, vmid });
        }
        let name = parameters.get("guest").cloned().unwrap_or_default();
        let mut names = proxmox::Names::same_names([name.as_str()]);
        if let Some(settings) = settings {
            for (guest, workload) in &settings.guests {
                names = names.guest(guest, workload);
            }
        }
        let guests = client
            .cluster_guests()
            .await
            .map_err(|error| error.to_string())?;
        guests
            .iter()
            .filter(|guest| !guest.template)
            .find(|guest| names.workload_of(guest) == Some(name.as_str()))
            .map(|guest| proxmox::Guest {
                node: guest.node.clone(),
                kind: guest.kind,
                vmid: guest.vmid,
            })
            .ok_or_else(|| format!("Proxmox has no guest named `{name}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_columns_and_keep_braces() {
        let columns = vec!["id".to_string(), "target".to_string()];
        let template = Template::parse("{{x}} {target}!", &columns, &[]).unwrap();
        let row = vec![Value::symbol("wake:a"), Value::symbol("a")];
        assert_eq!(template.text(&row), "{x} a!");
        let error = Template::parse("{node}", &columns, &[]).unwrap_err();
        assert_eq!(error, "unknown column `node` (there are: id, target)");
    }

    #[test]
    fn arguments_split_outside_quotes() {
        assert_eq!(
            split_arguments(r#"{target}, "a, b", _"#),
            vec!["{target}", r#" "a, b""#, " _"]
        );
    }

    #[test]
    fn the_built_in_bindings_are_valid_toml() {
        let bindings = default_bindings().unwrap();
        assert!(
            bindings
                .iter()
                .any(|b| b.kind.as_ref().unwrap().get_ref() == "wake")
        );
    }

    #[test]
    fn the_readme_shows_the_built_in_bindings() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("the README");
        assert!(readme.contains(DEFAULT_BINDINGS.trim()));
    }

    /// The `ray` actuator's bindings are checked like the others, and a negated `done`
    /// holds while its query has no rows.
    #[test]
    fn ray_bindings_are_checked_and_a_negated_done_holds_without_rows() {
        let program = vigil_engine::compile_source(
            "ray.dl",
            ".decl act(id: symbol, kind: symbol, target: symbol)\n.input act(IO=stream)\n.decl ray_worker(n: symbol)\n.input ray_worker(IO=stream)\n",
        )
        .expect("the program");
        let compile = |binding: &str| {
            let text = format!("[[actuators.binding]]\nview = \"act\"\n{binding}");
            #[derive(Deserialize)]
            struct File {
                actuators: Settings,
            }
            let mut settings = toml::from_str::<File>(&text).expect("settings").actuators;
            settings.located(Path::new("vigil.toml"), &text);
            Plan::new(&settings, &program, None).map(|plan| plan.bindings)
        };
        let bindings = compile(
            "kind = \"ray_stop\"\nactuator = \"ray\"\noperation = \"drain\"\nparameters = { node = \"{target}\" }\ndone = \"!ray_worker({target})\"\n",
        )
        .unwrap();
        assert!(matches!(
            bindings[0].actuator,
            Actuator::Ray(RayOperation::Drain)
        ));
        let done = bindings[0].done.as_ref().unwrap();
        let row = [
            Value::symbol("ray_stop:gaming"),
            Value::symbol("ray_stop"),
            Value::symbol("gaming"),
        ];
        assert_eq!(done.text(&row), "ray_worker(\"gaming\")");
        assert!(done.holds(false) && !done.holds(true));
        for (binding, expected) in [
            (
                "kind = \"ray_start\"\nactuator = \"ray\"\nparameters = { node = \"{target}\" }\n",
                "vigil.toml:4:12: [[actuators.binding]] 1: `ray` needs an `operation`: start, drain or stop",
            ),
            (
                "kind = \"ray_start\"\nactuator = \"ray\"\noperation = \"launch\"\nparameters = { node = \"{target}\" }\n",
                "vigil.toml:5:13: [[actuators.binding]] 1: unknown operation `launch`: start, drain or stop",
            ),
            (
                "kind = \"ray_start\"\nactuator = \"ray\"\noperation = \"start\"\n",
                "vigil.toml:4:12: [[actuators.binding]] 1: `ray` needs the parameter `node`",
            ),
            (
                "kind = \"ray_start\"\nactuator = \"ray\"\noperation = \"start\"\nparameters = { host = \"{target}\" }\n",
                "`ray` takes the parameter `node`, not `host`",
            ),
        ] {
            let error = compile(binding).expect_err(binding).to_string();
            assert!(error.contains(expected), "{binding}\n{error}");
        }
    }

    #[test]
    fn arguments_are_quoted_for_reading() {
        assert_eq!(quote("--address=logic:6379"), "--address=logic:6379");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
