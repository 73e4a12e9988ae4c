//! The sources the config names, feeding the engine: each runs as a task of its own, and each
//! report it makes becomes a transaction (journaled like any other, at the daemon's clock).
//! Input a source cannot read is logged with its payload, counted in `/metrics`
//! (`vigil_source_dropped_total`), and dropped without touching any other fact.
//!
//! ```toml
//! [[nut]]                          # a UPS on a NUT server (upsd)
//! address = "127.0.0.1:3493"
//! ups = "ups"                      # its name on upsd, and the `ups` column of the facts
//! username = "monitor"             # optional: log in as a secondary monitor
//! password = "secret"
//! interval_s = 5
//! stale_after_s = 60               # silence after which its facts are retracted
//!
//! [mqtt]                           # smart plugs (Shelly Gen2, Tasmota): see adapters/src/mqtt.rs
//! host = "127.0.0.1"
//! [[mqtt.plug]]
//! kind = "shelly"
//! id = "shellyplugs-kitchen"
//! meter = "house"
//!
//! [proxmox]                        # the cluster's state: quorum, nodes online, guests running
//! host = "pve.lan"
//! token = "vigil@pve!state=SECRET"  # an API token (Datacenter > Permissions > API Tokens)
//! fingerprint = "AA:BB:..."        # the certificate's SHA-256, or `ca_file = "pve-root-ca.pem"`
//! interval_s = 10
//!
//! [ray]                            # ray_worker, from the dashboard: see adapters/src/ray.rs
//! head = "logic.lan:6379"
//! dashboard = "http://logic.lan:8265"
//! poll_interval_s = 1              # between two reads of the cluster's membership
//!
//! [prometheus]                     # scrapes: see adapters/src/prometheus.rs
//! [[prometheus.target]]
//! name = "pve"
//! url = "http://pve:9100/metrics"
//! ```

use super::core::{Core, Refusal};
use super::metrics::Metrics;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vigil_adapters::source::{Malformed, Report, Staleness, symbol};
use vigil_adapters::{mqtt, nut, prometheus, proxmox, ray};
use vigil_engine::trace::Entry;

/// `[[nut]]`: one UPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nut {
    pub address: String,
    pub ups: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "five")]
    pub interval_s: f64,
    #[serde(default = "sixty")]
    pub stale_after_s: f64,
}

fn five() -> f64 {
    5.0
}

fn sixty() -> f64 {
    60.0
}

impl Nut {
    fn config(&self) -> Result<nut::Config, String> {
        let mut config = nut::Config::new(&self.address, &self.ups);
        let seconds = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!(
                    "[[nut]] `{}`: `{name}` must be a positive number of seconds",
                    self.ups
                ))
            }
        };
        config.interval = seconds("interval_s", self.interval_s)?;
        config.stale_after = seconds("stale_after_s", self.stale_after_s)?;
        config.login = match (&self.username, &self.password) {
            (Some(username), Some(password)) => Some(nut::Login {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "[[nut]] `{}`: `username` and `password` go together",
                    self.ups
                ));
            }
        };
        Ok(config)
    }
}

/// `[proxmox]`: the cluster's state, polled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxmox {
    pub host: String,
    #[serde(default = "pve_port")]
    pub port: u16,
    /// `USER@REALM!TOKENID=SECRET`.
    pub token: String,
    /// Trust the certificates this CA (PEM) signed, or exactly the certificate with this
    /// SHA-256 fingerprint; one of the two.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default = "ten")]
    pub interval_s: f64,
    #[serde(default = "sixty")]
    pub stale_after_s: f64,
    /// Guests whose name is not the workload's: guest name = workload.
    #[serde(default)]
    pub guests: std::collections::BTreeMap<String, String>,
    /// Proxmox nodes whose name is not the inventory's: Proxmox name = node.
    #[serde(default)]
    pub nodes: std::collections::BTreeMap<String, String>,
}

fn pve_port() -> u16 {
    8006
}

fn ten() -> f64 {
    10.0
}

impl Proxmox {
    fn client(&self) -> Result<proxmox::Client, String> {
        let token = proxmox::ApiToken::parse(&self.token)
            .map_err(|error| format!("[proxmox] `token`: {error}"))?;
        let trust = match (&self.ca_file, &self.fingerprint) {
            (Some(path), None) => {
                let pem = std::fs::read(path)
                    .map_err(|error| format!("[proxmox] `ca_file` {}: {error}", path.display()))?;
                proxmox::Trust::ca_pem(&pem)
                    .map_err(|error| format!("[proxmox] `ca_file`: {error}"))?
            }
            (None, Some(fingerprint)) => proxmox::Trust::pin(fingerprint)
                .map_err(|error| format!("[proxmox] `fingerprint`: {error}"))?,
            _ => {
                return Err(
                    "[proxmox]: give `ca_file` or `fingerprint` (one of them): whom to trust"
                        .into(),
                );
            }
        };
        let mut config = proxmox::Config::new(&self.host, token, trust);
        config.port = self.port;
        proxmox::Client::new(config).map_err(|error| format!("[proxmox]: {error}"))
    }

    fn timing(&self) -> Result<(Duration, Duration), String> {
        let seconds = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!(
                    "[proxmox] `{name}` must be a positive number of seconds"
                ))
            }
        };
        Ok((
            seconds("interval_s", self.interval_s)?,
            seconds("stale_after_s", self.stale_after_s)?,
        ))
    }
}

/// How long the Ray dashboard may stay silent before the `ray_worker` facts it gave are
/// retracted.
pub const RAY_STALE_AFTER: Duration = Duration::from_secs(60);

/// What the config asks the daemon to listen to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sources {
    #[serde(default, rename = "nut")]
    pub nut: Vec<Nut>,
    #[serde(default)]
    pub mqtt: Option<mqtt::MqttConfig>,
    #[serde(default)]
    pub prometheus: Option<prometheus::PrometheusConfig>,
    #[serde(default)]
    pub proxmox: Option<Proxmox>,
    #[serde(default)]
    pub ray: Option<ray::RayConfig>,
}

impl Sources {
    /// Checks what can be checked before anything starts.
    pub fn check(&self) -> Result<(), String> {
        for ups in &self.nut {
            ups.config()?;
        }
        if let Some(proxmox) = &self.proxmox {
            proxmox.timing()?;
            proxmox.client()?;
        }
        if let Some(config) = &self.ray {
            ray::Ray::new(config.clone()).map_err(|error| format!("[ray] {error}"))?;
        }
        Ok(())
    }

    /// Starts every source; each stops when the daemon does (its channel closes).
    pub fn start(&self, core: &Core, metrics: &Arc<Metrics>) {
        for ups in &self.nut {
            let Ok(config) = ups.config() else { continue };
            let (updates, mut polls) = mpsc::channel(16);
            let name = format!("nut:{}", ups.ups);
            tokio::spawn(nut::Poller::new(config).run(updates));
            let feed = Feed::new(&name, core, metrics);
            tokio::spawn(async move {
                while let Some(poll) = polls.recv().await {
                    for malformed in &poll.malformed {
                        feed.dropped(malformed);
                    }
                    if let Err(error) = &poll.reading {
                        say_err!("warning: source {}: {error}", feed.name);
                    }
                    if !poll.report.is_empty() {
                        feed.commit(poll.entry(None)).await;
                    }
                }
            });
        }
        if let Some(config) = &self.mqtt {
            let (updates, mut receiver) = mpsc::channel(64);
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(error) = mqtt::run(config, updates).await {
                    say_err!("error: source mqtt: {error}");
                }
            });
            let feed = Feed::new("mqtt", core, metrics);
            tokio::spawn(async move {
                while let Some(update) = receiver.recv().await {
                    match update {
                        mqtt::Update::Report { event, report, .. } => {
                            feed.commit(report.entry(&event, None)).await;
                        }
                        mqtt::Update::Malformed { malformed, .. } => feed.dropped(&malformed),
                        mqtt::Update::Connected { refused } if !refused.is_empty() => say_err!(
                            "warning: source mqtt: the broker refused the topics {refused:?}"
                        ),
                        mqtt::Update::Connected { .. } => {}
                        mqtt::Update::Disconnected { reason, retry_in } => say_err!(
                            "warning: source mqtt: {reason}; again in {:.1} s",
                            retry_in.as_secs_f64()
                        ),
                    }
                }
            });
        }
        if let Some(settings) = &self.proxmox {
            let settings = settings.clone();
            let feed = Feed::new("proxmox", core, metrics);
            tokio::spawn(async move {
                if let Err(error) = feed.proxmox(&settings).await {
                    say_err!("error: source proxmox: {error}");
                }
            });
        }
        if let Some(config) = &self.ray {
            let config = config.clone();
            let feed = Feed::new("ray", core, metrics);
            tokio::spawn(async move {
                if let Err(error) = feed.ray(config).await {
                    say_err!("error: source ray: {error}");
                }
            });
        }
        if let Some(config) = &self.prometheus {
            let (updates, mut receiver) = mpsc::channel(64);
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(error) = prometheus::run(config, updates).await {
                    say_err!("error: source prometheus: {error}");
                }
            });
            let feed = Feed::new("prometheus", core, metrics);
            tokio::spawn(async move {
                while let Some(update) = receiver.recv().await {
                    match update {
                        prometheus::Update::Report { event, report, .. } => {
                            feed.commit(report.entry(&event, None)).await;
                        }
                        prometheus::Update::Malformed { malformed, .. } => {
                            feed.dropped(&malformed);
                        }
                        prometheus::Update::Failed { target, reason, .. } => {
                            say_err!("warning: source prometheus: {target}: {reason}");
                        }
                        _ => {}
                    }
                }
            });
        }
    }
}

/// Where a source's reports go.
struct Feed {
    name: String,
    core: Core,
    metrics: Arc<Metrics>,
}

impl Feed {
    fn new(name: &str, core: &Core, metrics: &Arc<Metrics>) -> Feed {
        Feed {
            name: name.to_string(),
            core: core.clone(),
            metrics: metrics.clone(),
        }
    }

    async fn commit(&self, entry: Entry) {
        match self.core.transact(entry).await {
            Ok(_) => self.metrics.source(&self.name, false),
            Err(Refusal::Invalid(message) | Refusal::Failed(message)) => {
                say_err!(
                    "error: source {}: the engine refused its report: {message}",
                    self.name
                );
            }
        }
    }

    /// Polls the cluster until the daemon stops. Guests are the inventory's workloads by name
    /// (the `workload` relation), or as `guests` maps them.
    async fn proxmox(&self, settings: &Proxmox) -> Result<(), String> {
        let client = settings.client()?;
        let (interval, stale_after) = settings.timing()?;
        let workloads = self
            .core
            .query("workload(W, _, _, _, _, _)".into())
            .await
            .map(|answer| {
                answer
                    .rows
                    .into_iter()
                    .filter_map(|row| row.into_iter().next().and_then(|field| field.0))
                    .map(|value| value.to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut names = proxmox::Names::same_names(workloads);
        for (guest, workload) in &settings.guests {
            names = names.guest(guest, workload);
        }
        for (proxmox, node) in &settings.nodes {
            names = names.node(proxmox, node);
        }
        let mut source = proxmox::ClusterSource::new(client, names, interval, stale_after);
        loop {
            let now = std::time::Instant::now();
            let (polled, wait) = source.poll(now).await;
            match polled {
                proxmox::cluster::Polled::Report(report) if !report.is_empty() => {
                    self.commit(report.entry("proxmox: cluster state", None))
                        .await;
                }
                proxmox::cluster::Polled::Report(_) => {}
                proxmox::cluster::Polled::Malformed(malformed) => self.dropped(&malformed),
                proxmox::cluster::Polled::Failed(error) => {
                    say_err!("warning: source proxmox: {error}");
                }
            }
            if let Some(report) = source.stale(std::time::Instant::now()) {
                self.commit(report.entry("proxmox: silent; its facts are retracted", None))
                    .await;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads the Ray cluster's membership every `poll_interval_s` until the daemon stops, and
    /// commits the difference between it and the engine's `ray_worker` facts: level-triggered
    /// on what Ray really has, whoever started or stopped the worker (a restart, a report
    /// the engine refused, a fact typed in by hand are all set right at the next look).
    /// While the dashboard does not answer the facts are kept, for [`RAY_STALE_AFTER`] (or
    /// three polls, if longer), and then retracted: a cluster nobody can see is not one to
    /// count on.
    async fn ray(&self, config: ray::RayConfig) -> Result<(), String> {
        let cluster = ray::Ray::new(config.clone()).map_err(|error| format!("[ray] {error}"))?;
        let interval = Duration::from_secs_f64(config.poll_interval_s);
        self.ray_workers().await?;
        let mut staleness = Staleness::new(RAY_STALE_AFTER.max(interval * 3));
        staleness.heard(Instant::now());
        // The last failure logged: a dashboard that stays down is logged once, not each poll.
        let mut failing: Option<String> = None;
        let mut warned: Option<String> = None;
        loop {
            match cluster.members().await {
                Ok(members) => {
                    staleness.heard(Instant::now());
                    if failing.take().is_some() {
                        say_err!("source ray: the dashboard answers again");
                    }
                    if members.warning != warned {
                        if let Some(warning) = &members.warning {
                            say_err!("warning: source ray: {warning}");
                        }
                        warned = members.warning.clone();
                    }
                    match self.ray_workers().await {
                        Ok(reported) => {
                            let report = members.report(&reported);
                            if !report.is_empty() {
                                self.commit(report.entry("ray: cluster membership", None))
                                    .await;
                            }
                        }
                        Err(message) => say_err!("error: source ray: {message}"),
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    if failing.as_ref() != Some(&message) {
                        say_err!("warning: source ray: {message}");
                        failing = Some(message);
                    }
                    if staleness.turned_stale(Instant::now())
                        && let Ok(reported) = self.ray_workers().await
                        && !reported.is_empty()
                    {
                        let mut report = Report::default();
                        for node in reported {
                            report.retract(ray::RELATION, vec![symbol(&node)]);
                        }
                        self.commit(report.entry(
                            "ray: the dashboard is silent; its workers are retracted",
                            None,
                        ))
                        .await;
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The nodes the engine holds a `ray_worker` fact of.
    async fn ray_workers(&self) -> Result<BTreeSet<String>, String> {
        let query = format!("{}(Node)", ray::RELATION);
        match self.core.query(query).await {
            Ok(answer) => Ok(answer
                .rows
                .into_iter()
                .filter_map(|row| row.into_iter().next().and_then(|field| field.0))
                .map(|value| value.to_string())
                .collect()),
            Err(Refusal::Invalid(message) | Refusal::Failed(message)) => Err(format!(
                "the program has no `{}(node)` input to report to: {message}",
                ray::RELATION
            )),
        }
    }

    fn dropped(&self, malformed: &Malformed) {
        self.metrics.source(&self.name, true);
        say_err!("warning: source {}: dropped {malformed}", self.name);
    }
}
