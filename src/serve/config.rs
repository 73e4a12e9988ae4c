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
}
