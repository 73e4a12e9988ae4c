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
//! [prometheus]                     # scrapes: see adapters/src/prometheus.rs
//! [[prometheus.target]]
//! name = "pve"
//! url = "http://pve:9100/metrics"
//! ```

use super::core::{Core, Refusal};
use super::metrics::Metrics;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vigil_adapters::source::Malformed;
use vigil_adapters::{mqtt, nut, prometheus};
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

/// What the config asks the daemon to listen to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sources {
    #[serde(default, rename = "nut")]
    pub nut: Vec<Nut>,
    #[serde(default)]
    pub mqtt: Option<mqtt::MqttConfig>,
    #[serde(default)]
    pub prometheus: Option<prometheus::PrometheusConfig>,
}

impl Sources {
    /// Checks what can be checked before anything starts.
    pub fn check(&self) -> Result<(), String> {
        for ups in &self.nut {
            ups.config()?;
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
                        eprintln!("warning: source {}: {error}", feed.name);
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
                    eprintln!("error: source mqtt: {error}");
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
                        mqtt::Update::Connected { refused } if !refused.is_empty() => eprintln!(
                            "warning: source mqtt: the broker refused the topics {refused:?}"
                        ),
                        mqtt::Update::Connected { .. } => {}
                        mqtt::Update::Disconnected { reason, retry_in } => eprintln!(
                            "warning: source mqtt: {reason}; again in {:.1} s",
                            retry_in.as_secs_f64()
                        ),
                    }
                }
            });
        }
        if let Some(config) = &self.prometheus {
            let (updates, mut receiver) = mpsc::channel(64);
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(error) = prometheus::run(config, updates).await {
                    eprintln!("error: source prometheus: {error}");
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
                            eprintln!("warning: source prometheus: {target}: {reason}");
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
                eprintln!(
                    "error: source {}: the engine refused its report: {message}",
                    self.name
                );
            }
        }
    }

    fn dropped(&self, malformed: &Malformed) {
        self.metrics.source(&self.name, true);
        eprintln!("warning: source {}: dropped {malformed}", self.name);
    }
}
