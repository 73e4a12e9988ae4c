//! `vigil.toml`: what the daemon runs, where it listens, where it keeps its journal, and who
//! may call it.
//!
//! ```toml
//! listen = "127.0.0.1:7070"        # the default; only loopback unless tokens are configured
//! program = "rules/homelab.dl"
//! facts = "fixtures/homelab"       # initial facts, loaded once into a new data directory
//! data_dir = "vigil-data"          # journal and snapshot
//! clock = "wall"                   # or "event": transactions carry their own times
//! max_request_bytes = 1048576
//! snapshot_every = 10000           # journal records between snapshots
//! simulate = false                 # play a day of the sample house (facts must be the sample)
//! simulation_speed = 240           # simulated seconds per second; 0: as fast as possible
//!
//! [approvals]                      # decision links for actions that need a person
//! secret = "another long random string"
//! public_url = "http://vigil.lan:7070"   # what the phone reaches; default http://LISTEN
//! ttl_s = 3600
//! ntfy_url = "http://ntfy.lan/"    # optional: announce each request with Approve/Deny
//! ntfy_topic = "vigil"
//!
//! [harvest]                       # artifacts from the edge nodes, in DATA_DIR/harvest
//! max_artifact_bytes = 107374182400   # optional: the largest artifact an edge may report
//! idle_timeout_s = 60                 # optional: a silent upload is cut after this long
//!
//! [[token]]
//! name = "grafana"
//! secret = "a long random string"
//! scopes = ["read"]                # ingest, read, approve, admin
//! ```

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Submit transactions.
    Ingest,
    /// Read relations, query, explain, what-if, watch, metrics.
    Read,
    /// Approve or deny pending actions.
    Approve,
    /// Everything, and compaction.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// The daemon moves the clock to the wall clock (every second, and with every transaction
    /// that gives no time).
    Wall,
    /// Only transactions move the clock.
    Event,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub name: String,
    pub secret: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub program: PathBuf,
    /// Without a config file, the sample house; in a config file, none unless given.
    #[serde(default)]
    pub facts: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub clock: Clock,
    pub workers: usize,
    pub max_request_bytes: usize,
    pub snapshot_every: u64,
    /// Change sets kept in memory for watchers that reconnect.
    pub watch_backlog: usize,
    /// Runs the simulator of the sample house: without a config file, yes; in one, only if
    /// asked for.
    #[serde(default)]
    pub simulate: bool,
    /// Simulated seconds per second (0: as fast as the engine goes).
    pub simulation_speed: f64,
    #[serde(rename = "token")]
    pub tokens: Vec<Token>,
    /// Human-in-the-loop approvals: signed decision links, ntfy notifications.
    #[serde(default)]
    pub approvals: Option<super::approvals::Settings>,
    /// Sources (see `sources.rs`): `[[nut]]`, `[mqtt]`, `[prometheus]`.
    #[serde(default, rename = "nut")]
    pub nut: Vec<super::sources::Nut>,
    #[serde(default)]
    pub mqtt: Option<vigil_adapters::mqtt::MqttConfig>,
    #[serde(default)]
    pub prometheus: Option<vigil_adapters::prometheus::PrometheusConfig>,
    #[serde(default)]
    pub proxmox: Option<super::sources::Proxmox>,
    /// A Ray cluster (`[ray]`, see `adapters/src/ray.rs`): the actuator of `ray_start` and
    /// `ray_stop`, and the source of `ray_worker`.
    #[serde(default)]
    pub ray: Option<vigil_adapters::ray::RayConfig>,
    /// Actuators (see `actuators.rs`): `[actuators]`, `[actuators.wol]`, `[[actuators.binding]]`.
    #[serde(default)]
    pub actuators: super::actuators::Settings,
    /// Artifact uploads from the edge nodes (`[harvest]`).
    #[serde(default)]
    pub harvest: super::harvest::Settings,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            program: PathBuf::from("rules/homelab.dl"),
            facts: Some(PathBuf::from("fixtures/homelab")),
            data_dir: PathBuf::from("vigil-data"),
            clock: Clock::Wall,
            workers: 1,
            max_request_bytes: 1 << 20,
            snapshot_every: 10_000,
            watch_backlog: 10_000,
            simulate: true,
            simulation_speed: 240.0,
            tokens: Vec::new(),
            approvals: None,
            nut: Vec::new(),
            mqtt: None,
            prometheus: None,
            proxmox: None,
            ray: None,
            actuators: Default::default(),
            harvest: Default::default(),
        }
    }
}

impl Config {
    /// Reads a config file; relative paths in it are relative to the file's directory.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the config", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|error| {
            let place = error
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{place}: {}", path.display(), error.message())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.program = base.join(&config.program);
        config.facts = config.facts.map(|facts| base.join(facts));
        config.data_dir = base.join(&config.data_dir);
        if let Some(proxmox) = &mut config.proxmox {
            proxmox.ca_file = proxmox.ca_file.as_ref().map(|file| base.join(file));
        }
        config.actuators.located(path, &text);
        if let Some(ray) = &config.ray
            && let Err(error) = vigil_adapters::ray::Ray::new(ray.clone())
        {
            let message = match error {
                vigil_adapters::ray::RayError::Config(message) => message,
                other => other.to_string(),
            };
            let place = ray_place(&text, &message)
                .map(|offset| {
                    let before = &text[..offset.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            bail!("{}{place}: [ray] {message}", path.display());
        }
        config.check(path)?;
        Ok(config)
    }

    /// The sources to start.
    pub fn sources(&self) -> super::sources::Sources {
        super::sources::Sources {
            nut: self.nut.clone(),
            mqtt: self.mqtt.clone(),
            prometheus: self.prometheus.clone(),
            proxmox: self.proxmox.clone(),
            ray: self.ray.clone(),
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        self.sources()
            .check()
            .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
        if !(self.simulation_speed.is_finite() && self.simulation_speed >= 0.0) {
            bail!(
                "{}: `simulation_speed` must be a number of seconds, 0 or more",
                path.display()
            );
        }
        self.actuators
            .check()
            .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
        if self.workers == 0 {
            bail!("{}: `workers` must be at least 1", path.display());
        }
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() {
            bail!(
                "{}: `listen = \"{}\"` is not a loopback address, and no `[[token]]` is configured: anyone could change the house",
                path.display(),
                self.listen
            );
        }
        for (index, token) in self.tokens.iter().enumerate() {
            if token.secret.len() < 16 {
                bail!(
                    "{}: token {} (`{}`): the secret must be at least 16 characters",
                    path.display(),
                    index + 1,
                    token.name
                );
            }
        }
        Ok(())
    }
}

/// Where in the config a `[ray]` error belongs: the value of the key it names (`head`,
/// `node.gaming.start`, ...), or else the `[ray]` table itself.
fn ray_place(text: &str, message: &str) -> Option<usize> {
    use std::collections::BTreeMap;
    use toml::Spanned;
    type Keys = BTreeMap<String, Spanned<toml::Value>>;
    #[derive(Deserialize)]
    struct File<T> {
        ray: Option<T>,
    }
    #[derive(Deserialize)]
    struct Nodes {
        #[serde(default)]
        node: BTreeMap<String, Keys>,
    }
    let keys = toml::from_str::<File<Keys>>(text).ok()?.ray?;
    let nodes = toml::from_str::<File<Nodes>>(text).ok()?.ray?.node;
    // The names the message quotes: `head`, `node.gaming.stop_timeout_s`, node `gaming`.
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let node = message
        .strip_prefix("node `")
        .and_then(|rest| rest.split('`').next())
        .or_else(|| {
            quoted
                .iter()
                .find_map(|name| name.strip_prefix("node.")?.split('.').next())
        });
    let last = |name: &str| name.rsplit('.').next().unwrap_or(name).to_string();
    if let Some(node_keys) = node.and_then(|node| nodes.get(node)) {
        let found = quoted.iter().find_map(|name| node_keys.get(&last(name)));
        return found
            .or_else(|| node_keys.values().next())
            .map(|value| value.span().start);
    }
    let found = quoted
        .iter()
        .find_map(|name| keys.get(&last(name)))
        .or_else(|| {
            message
                .contains("dashboard `")
                .then(|| keys.get("dashboard"))?
        });
    found
        .map(|value| value.span().start)
        .or_else(|| text.find("[ray]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML blocks of the README's daemon sections, each read as a config.
    #[test]
    fn the_readme_examples_are_valid_configs() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("the README");
        let daemon = &readme[readme.find("## `vigil serve`").expect("the daemon section")..];
        let mut blocks = 0;
        for block in daemon.split("```toml\n").skip(1) {
            let text = &block[..block.find("```").expect("a closed block")];
            let config: Config =
                toml::from_str(text).unwrap_or_else(|error| panic!("{error}\nin:\n{text}"));
            config.sources().check().expect("sources that can start");
            blocks += 1;
        }
        assert!(blocks >= 2, "{blocks} TOML blocks");
    }

    /// A `[ray]` that cannot work stops the start, pointing at what is wrong.
    #[test]
    fn a_bad_ray_section_is_refused_with_its_place() {
        let dir = std::env::temp_dir().join(format!("vigil-config-ray-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.toml");
        let node = "[ray.node.gaming]\nstart = [\"ssh\", \"gaming\", \"ray\", \"start\"]\ndrain = [\"ray\", \"drain-node\", \"--node-id={node_id}\"]\nstop = [\"ssh\", \"gaming\", \"ray\", \"stop\"]\n";
        for (text, expected) in [
            (
                format!("[ray]\nhead = \"logic.lan\"\ndashboard = \"http://logic.lan:8265\"\n{node}"),
                "vigil.toml:2:8: [ray] `head` must be the GCS address `HOST:PORT`",
            ),
            (
                format!("[ray]\nhead = \"logic.lan:6379\"\ndashboard = \"https://logic.lan:8265\"\n{node}"),
                "vigil.toml:3:13: [ray] dashboard `https://logic.lan:8265`: only http://",
            ),
            (
                "[ray]\nhead = \"logic.lan:6379\"\ndashboard = \"http://logic.lan:8265\"\n[ray.node.gaming]\nstart = [\"ray\", \"start\", \"--address={heads}\"]\ndrain = [\"x\"]\nstop = [\"x\"]\n".into(),
                "vigil.toml:5:9: [ray] node `gaming`: `start`: `--address={heads}`: unknown placeholder `{heads}`",
            ),
            (
                format!("[ray]\nhead = \"logic.lan:6379\"\ndashboard = \"http://logic.lan:8265\"\n{node}drain_wait_s = -1\n"),
                "vigil.toml:8:16: [ray] `node.gaming.drain_wait_s` must be a positive number of seconds",
            ),
            (
                "[ray]\nhead = \"logic.lan:6379\"\ndashboard = \"http://logic.lan:8265\"\ninterval = 5\n".into(),
                "vigil.toml:4:1: unknown field `interval`",
            ),
            (
                "[ray]\ndashboard = \"http://logic.lan:8265\"\n".into(),
                "vigil.toml:1:1: missing field `head`",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let error = format!("{:#}", Config::read(&path).unwrap_err());
            assert!(error.contains(expected), "{text}\n{error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
