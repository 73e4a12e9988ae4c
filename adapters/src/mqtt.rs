//! Power readings from smart plugs over MQTT: `house_power(meter, draw_watts, solar_watts)`.
//!
//! A house's power is measured by plugs (a Shelly in front of the rack, a Tasmota plug on the
//! freezer, a plug behind a balcony inverter) that publish what they measure to an MQTT broker.
//! The policy does not want plugs, it wants meters: `house_power` is keyed by meter, and
//! `draw` is the sum of its `draw_watts` over every meter, `solar` the sum of its
//! `solar_watts` (rules/power.dl). So each configured [`Plug`] names its meter and the
//! [`Column`] it feeds, and a meter's row is the sum of its plugs' latest readings, column by
//! column: two plugs on one meter and one column add up, a solar plug never counts as draw.
//! A meter's row is reported when it changes, as an upsert of its key.
//!
//! Two firmwares are read, each on its own topics:
//!
//! - **Shelly Gen2 and later** (Plus, Pro, Gen3), with `<id>` the device's MQTT topic prefix
//!   (by default its id, such as `shellyplusplugs-a8032ab12345`):
//!   - `<id>/events/rpc`: RPC notifications. `NotifyStatus` and `NotifyFullStatus` carry
//!     `params` with a Unix timestamp `ts` and one object per component, such as
//!     `"switch:0": {"id": 0, "apower": 12.3, ...}`, `apower` being the active power in
//!     watts. A `NotifyStatus` holds only what changed (the minutely energy counter, say) and
//!     is to be overlaid on the status known before: a component without `apower`, or no
//!     component at all, leaves the reading as it was. Other methods (`NotifyEvent`) carry
//!     no reading.
//!   - `<id>/status/<component>` (when "generic status update over MQTT" is on): the
//!     component's whole status, so its `apower` must be there.
//!
//!   The component is `switch:0` unless configured (`switch:2` on a Pro 4PM, `pm1:0` on a
//!   PM Mini).
//! - **Tasmota**, with `<topic>` the device's topic and the default full topic
//!   `%prefix%/%topic%/`: `tele/<topic>/SENSOR`, sent every `TelePeriod` (300 s by default),
//!   `{"Time": "2024-01-11T21:57:38", "ENERGY": {"Power": 45, "Voltage": 233, ...}}`.
//!   `Power` is a list on devices with several channels (`[12, 34]`): a plug reads one of them
//!   (`channel`, counted from 1 like Tasmota's `POWER1`), or their sum.
//!
//! A payload that cannot be read (not JSON, a missing field, `"12 W"` where a number of watts
//! belongs, a negative power, more than [`MAX_WATTS`]) is a [`Malformed`]: it is dropped and
//! counted, and no other reading changes. A plug whose meter measures a flow that it reports
//! as negative (a Shelly behind a micro-inverter reads the production as negative `apower`) is
//! configured `inverted`: its readings are negated before they are checked.
//!
//! A plug that stays silent for `stale_after_s` (a little more than Tasmota's default
//! `TelePeriod`, unless configured) loses its reading: its meter's row is reported again
//! without it, and a meter left with no live plug is retracted (`house_power(meter, _, _)`),
//! because an old reading is not a truth the policy should act on. Caveat: a meter whose
//! plugs are partly silent reports only what its live plugs measure, so its draw may be too
//! low until the silent ones come back.
//!
//! The client ([`run`]) speaks MQTT 3.1.1 over TCP with rumqttc, with an optional user name
//! and password, subscribes to its plugs' topics on every connection (the session is clean,
//! so a broker that restarts has forgotten them), and reconnects with a [`Backoff`].
//!
//! With a `ca_file` the connection is MQTT over TLS (port 8883 by convention), with rustls and
//! its ring provider: the broker's certificate must chain to that CA (and to nothing else:
//! the system's roots are not consulted) and name `host` (a DNS name, or an IP address in the
//! certificate's subject alternative names). A client certificate and its key
//! (`client_cert_file`, `client_key_file`, PEM; the key PKCS#8, PKCS#1 or SEC1) are presented
//! to a broker that asks for one (mosquitto's `require_certificate true`). The files are read
//! once, when the source starts; a file that cannot be read or holds no certificate (or key)
//! stops the source with a [`MqttError::Config`] that names it.

use crate::source::{AbortOnDrop, Backoff, Malformed, Report, Staleness, number, open, symbol};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// The relation the meters feed.
pub const RELATION: &str = "house_power";

/// The most a plug may read, in watts: more than any house draws (a 3-phase 63 A supply is
/// about 43 kW), so a larger reading is a unit mistake (mW, say) or a broken device.
pub const MAX_WATTS: f64 = 100_000.0;

/// Which firmware a plug runs, and so which topics and payloads it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Shelly,
    Tasmota,
}

/// The column of `house_power` that a plug's readings add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Column {
    /// What the house draws.
    #[default]
    Draw,
    /// What the solar panels produce.
    Solar,
}

/// One plug and the meter it reports to.
///
/// ```toml
/// [[mqtt.plug]]
/// kind = "shelly"
/// id = "shellyplusplugs-a8032ab12345"   # the topic prefix
/// component = "switch:0"                # the default
/// meter = "rack"
///
/// [[mqtt.plug]]
/// kind = "tasmota"
/// id = "balcony"                        # the topic: tele/balcony/SENSOR
/// meter = "house"
/// column = "solar"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plug {
    pub kind: Kind,
    /// The Shelly's topic prefix, or the Tasmota's topic.
    pub id: String,
    /// Shelly only: the component that measures, `switch:0` if not given.
    #[serde(default)]
    pub component: Option<String>,
    /// Tasmota only: the channel of a multi-channel device, from 1; not given, the sum of all.
    #[serde(default)]
    pub channel: Option<usize>,
    pub meter: String,
    #[serde(default)]
    pub column: Column,
    /// The plug reports the flow it measures as negative: negate its readings.
    #[serde(default)]
    pub inverted: bool,
}

impl Plug {
    fn component(&self) -> &str {
        self.component.as_deref().unwrap_or("switch:0")
    }

    /// How the plug is named in messages.
    fn name(&self) -> String {
        match self.kind {
            Kind::Shelly => format!("shelly {} {}", self.id, self.component()),
            Kind::Tasmota => match self.channel {
                Some(channel) => format!("tasmota {} channel {channel}", self.id),
                None => format!("tasmota {}", self.id),
            },
        }
    }
}

/// The MQTT source: the broker, the credentials, and the plugs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// The client id; two clients with the same id take the session from each other.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The CA certificate (PEM) that signed the broker's: given, the connection is TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a broker that asks for one; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key_file: Option<PathBuf>,
    /// Seconds between pings when nothing else is sent (at least 1).
    pub keep_alive_s: u64,
    /// Seconds of silence after which a plug's reading is dropped.
    pub stale_after_s: f64,
    /// The first wait before reconnecting, in seconds; doubled up to `retry_cap_s`.
    pub retry_first_s: f64,
    pub retry_cap_s: f64,
    /// The largest message accepted, in bytes (a Shelly's full status is a few kB).
    pub max_message_bytes: usize,
    #[serde(rename = "plug")]
    pub plugs: Vec<Plug>,
}

impl Default for MqttConfig {
    fn default() -> MqttConfig {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "vigil".into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            keep_alive_s: 30,
            stale_after_s: 330.0,
            retry_first_s: 1.0,
            retry_cap_s: 60.0,
            max_message_bytes: 256 * 1024,
            plugs: Vec::new(),
        }
    }
}

/// Why the MQTT source cannot start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MqttError {
    #[error("mqtt config: {0}")]
    Config(String),
}

fn seconds(name: &str, value: f64) -> Result<Duration, MqttError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            MqttError::Config(format!(
                "`{name}` must be a positive number of seconds, not {value}"
            ))
        })
}

fn read_pem(field: &str, path: &Path) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|error| {
        MqttError::Config(format!(
            "`{field}` {}: cannot read: {error}",
            path.display()
        ))
    })
}

/// The TLS settings of the configuration, its files read and checked: `None` without a
/// `ca_file`.
pub fn tls(config: &MqttConfig) -> Result<Option<TlsConfiguration>, MqttError> {
    let Some(ca_file) = &config.ca_file else {
        if config.client_cert_file.is_some() || config.client_key_file.is_some() {
            return Err(MqttError::Config(
                "a client certificate is for TLS, which needs a `ca_file`".into(),
            ));
        }
        return Ok(None);
    };
    let ca = read_pem("ca_file", ca_file)?;
    let certificates = |field: &str, path: &Path, pem: &[u8]| {
        let count = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                MqttError::Config(format!("`{field}` {}: not PEM: {error}", path.display()))
            })?
            .len();
        if count == 0 {
            return Err(MqttError::Config(format!(
                "`{field}` {}: no certificate in it (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            )));
        }
        Ok(())
    };
    certificates("ca_file", ca_file, &ca)?;
    let client_auth = match (&config.client_cert_file, &config.client_key_file) {
        (None, None) => None,
        (Some(cert_file), Some(key_file)) => {
            let cert = read_pem("client_cert_file", cert_file)?;
            certificates("client_cert_file", cert_file, &cert)?;
            let key = read_pem("client_key_file", key_file)?;
            match rustls_pemfile::private_key(&mut &key[..]) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(MqttError::Config(format!(
                        "`client_key_file` {}: no private key in it (PKCS#8, PKCS#1 or SEC1 PEM)",
                        key_file.display()
                    )));
                }
                Err(error) => {
                    return Err(MqttError::Config(format!(
                        "`client_key_file` {}: not PEM: {error}",
                        key_file.display()
                    )));
                }
            }
            Some((cert, key))
        }
        (Some(_), None) => {
            return Err(MqttError::Config(
                "a `client_cert_file` needs its `client_key_file`".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(MqttError::Config(
                "a `client_key_file` needs its `client_cert_file`".into(),
            ));
        }
    };
    Ok(Some(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    }))
}

/// A connection error as the log shows it, with a hint where the cause is usually the
/// configuration.
fn reason(error: &rumqttc::ConnectionError) -> String {
    let text = error.to_string();
    if text.contains("invalid peer certificate") {
        format!(
            "{text} (the broker's certificate is not trusted: is `ca_file` the CA that signed it, for this `host`?)"
        )
    } else {
        text
    }
}

/// Where a topic's payload is read for one plug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `<id>/events/rpc`: Shelly's RPC notifications, read for one component (`switch:0`).
    ShellyRpc { component: String },
    /// `<id>/status/<component>`: the component's whole status.
    ShellyStatus,
    /// `tele/<topic>/SENSOR`: Tasmota's telemetry, one channel (from 1) or the sum of all.
    TasmotaSensor { channel: Option<usize> },
}

/// The power a payload reports, in watts as sent, for one plug: `None` when the payload is
/// well formed but says nothing about the plug's power (a partial Shelly notification).
/// An `Err` is the reason the payload cannot be read.
pub fn power(route: &Route, payload: &[u8]) -> Result<Option<f64>, String> {
    let json: Json =
        serde_json::from_slice(payload).map_err(|error| format!("not JSON: {error}"))?;
    let Json::Object(object) = &json else {
        return Err(format!("a JSON {} where an object belongs", kind_of(&json)));
    };
    match route {
        Route::ShellyRpc { component } => {
            let method = match object.get("method") {
                Some(Json::String(method)) => method.as_str(),
                Some(other) => return Err(format!("`method` is {other}, not a string")),
                None => return Err("no `method`: not an RPC notification".into()),
            };
            if method != "NotifyStatus" && method != "NotifyFullStatus" {
                return Ok(None);
            }
            let params = match object.get("params") {
                Some(Json::Object(params)) => params,
                Some(other) => return Err(format!("`params` is {other}, not an object")),
                None => return Err(format!("a {method} without `params`")),
            };
            match params.get(component.as_str()) {
                None => Ok(None),
                Some(Json::Object(status)) => match status.get("apower") {
                    None => Ok(None),
                    Some(apower) => watts_field("apower", apower).map(Some),
                },
                Some(other) => Err(format!("`{component}` is {other}, not an object")),
            }
        }
        Route::ShellyStatus => match object.get("apower") {
            Some(apower) => watts_field("apower", apower).map(Some),
            None => Err("the status has no `apower`: is the component metered?".into()),
        },
        Route::TasmotaSensor { channel } => {
            let energy = match object.get("ENERGY") {
                Some(Json::Object(energy)) => energy,
                Some(other) => return Err(format!("`ENERGY` is {other}, not an object")),
                None => return Err("no `ENERGY`: is the device a power meter?".into()),
            };
            let power = energy.get("Power").ok_or("no `ENERGY.Power`")?;
            match (power, channel) {
                (Json::Array(channels), Some(channel)) => {
                    let value = channels.get(channel - 1).ok_or_else(|| {
                        format!(
                            "`ENERGY.Power` has {} channels, not {channel}",
                            channels.len()
                        )
                    })?;
                    watts_field("ENERGY.Power", value).map(Some)
                }
                (Json::Array(channels), None) => {
                    let mut sum = 0.0;
                    for value in channels {
                        sum += watts_field("ENERGY.Power", value)?;
                    }
                    Ok(Some(sum))
                }
                (value, None | Some(1)) => watts_field("ENERGY.Power", value).map(Some),
                (_, Some(channel)) => Err(format!("`ENERGY.Power` has one channel, not {channel}")),
            }
        }
    }
}

fn kind_of(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn watts_field(name: &str, value: &Json) -> Result<f64, String> {
    value
        .as_f64()
        .ok_or_else(|| format!("`{name}` is {value}, not a number of watts"))
}

/// A reading as the policy takes it: whole watts, never negative, at most [`MAX_WATTS`].
pub fn whole_watts(watts: f64) -> Result<i64, String> {
    if !watts.is_finite() {
        return Err(format!("{watts} W is not a power"));
    }
    if watts < 0.0 {
        return Err(format!("negative power: {watts} W (an `inverted` plug?)"));
    }
    if watts > MAX_WATTS {
        return Err(format!(
            "{watts} W is more than any house draws (over {MAX_WATTS} W): a unit mistake?"
        ));
    }
    Ok(watts.round() as i64)
}

struct PlugState {
    plug: Plug,
    watts: Option<i64>,
    staleness: Staleness,
}

/// The meters' state: every plug's latest reading, the rows reported, and the payloads
/// dropped. It does no I/O; [`run`] feeds it messages and the passing of time.
pub struct Meters {
    plugs: Vec<PlugState>,
    routes: HashMap<String, Vec<(usize, Route)>>,
    /// What was last reported for each meter: (draw, solar).
    reported: BTreeMap<String, (i64, i64)>,
    dropped: u64,
}

impl Meters {
    pub fn new(plugs: &[Plug], stale_after: Duration) -> Result<Meters, MqttError> {
        let mut routes: HashMap<String, Vec<(usize, Route)>> = HashMap::new();
        let mut seen = HashMap::new();
        for (index, plug) in plugs.iter().enumerate() {
            let name = plug.name();
            if plug.id.is_empty() || plug.id.contains(['+', '#']) || plug.id.starts_with('/') {
                return Err(MqttError::Config(format!(
                    "{name}: the id must be a topic without wildcards (`+`, `#`) or leading `/`"
                )));
            }
            if plug.meter.is_empty() {
                return Err(MqttError::Config(format!("{name}: the meter has no name")));
            }
            if let Some(previous) = seen.insert(name.clone(), index) {
                return Err(MqttError::Config(format!(
                    "{name} is configured twice (plugs {} and {})",
                    previous + 1,
                    index + 1
                )));
            }
            match plug.kind {
                Kind::Shelly => {
                    if plug.channel.is_some() {
                        return Err(MqttError::Config(format!(
                            "{name}: `channel` is for Tasmota; a Shelly names its `component`"
                        )));
                    }
                    let component = plug.component();
                    let valid = component.split_once(':').is_some_and(|(kind, id)| {
                        !kind.is_empty()
                            && kind
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                            && !id.is_empty()
                            && id.bytes().all(|b| b.is_ascii_digit())
                    });
                    if !valid {
                        return Err(MqttError::Config(format!(
                            "{name}: the component must be like `switch:0`"
                        )));
                    }
                    routes
                        .entry(format!("{}/events/rpc", plug.id))
                        .or_default()
                        .push((
                            index,
                            Route::ShellyRpc {
                                component: component.into(),
                            },
                        ));
                    routes
                        .entry(format!("{}/status/{component}", plug.id))
                        .or_default()
                        .push((index, Route::ShellyStatus));
                }
                Kind::Tasmota => {
                    if plug.component.is_some() {
                        return Err(MqttError::Config(format!(
                            "{name}: `component` is for Shelly; a Tasmota plug names its `channel`"
                        )));
                    }
                    if plug.channel == Some(0) {
                        return Err(MqttError::Config(format!(
                            "{name}: channels count from 1, like POWER1"
                        )));
                    }
                    if plug.id.contains('/') {
                        return Err(MqttError::Config(format!(
                            "{name}: a Tasmota topic has no `/`"
                        )));
                    }
                    let readers = routes
                        .entry(format!("tele/{}/SENSOR", plug.id))
                        .or_default();
                    readers.push((
                        index,
                        Route::TasmotaSensor {
                            channel: plug.channel,
                        },
                    ));
                    let sums = readers
                        .iter()
                        .any(|(_, route)| *route == Route::TasmotaSensor { channel: None });
                    if sums && readers.len() > 1 {
                        return Err(MqttError::Config(format!(
                            "tasmota {}: one plug sums every channel and another reads one of them again",
                            plug.id
                        )));
                    }
                }
            }
        }
        Ok(Meters {
            plugs: plugs
                .iter()
                .map(|plug| PlugState {
                    plug: plug.clone(),
                    watts: None,
                    staleness: Staleness::new(stale_after),
                })
                .collect(),
            routes,
            reported: BTreeMap::new(),
            dropped: 0,
        })
    }

    /// The topics to subscribe to, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.routes.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// A message arrived at `now`: the rows it changes (an empty report when it changes
    /// none), or why it was dropped, with nothing changed.
    pub fn message(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: Instant,
    ) -> Result<Report, Malformed> {
        let Some(routes) = self.routes.get(topic) else {
            return Ok(Report::default());
        };
        // Read the payload for every plug first, so that a payload that is bad for one plug
        // changes none.
        let mut readings = Vec::with_capacity(routes.len());
        for (index, route) in routes {
            let plug = &self.plugs[*index].plug;
            let reading = power(route, payload)
                .and_then(|watts| {
                    watts
                        .map(|watts| whole_watts(if plug.inverted { -watts } else { watts }))
                        .transpose()
                })
                .map_err(|reason| {
                    let reason = if routes.len() > 1 {
                        format!("{}: {reason}", plug.name())
                    } else {
                        reason
                    };
                    Malformed::new(topic, payload, reason)
                });
            match reading {
                Ok(watts) => readings.push((*index, watts)),
                Err(malformed) => {
                    self.dropped += 1;
                    return Err(malformed);
                }
            }
        }
        for (index, watts) in readings {
            let state = &mut self.plugs[index];
            state.staleness.heard(now);
            if watts.is_some() {
                state.watts = watts;
            }
        }
        Ok(self.changes())
    }

    /// Time passed: the plugs silent for too long lose their readings. Returns the rows they
    /// leave (an empty report when none went silent) and the plugs' names.
    pub fn expire(&mut self, now: Instant) -> (Report, Vec<String>) {
        let mut silent = Vec::new();
        for state in &mut self.plugs {
            if state.staleness.turned_stale(now) && state.watts.take().is_some() {
                silent.push(state.plug.name());
            }
        }
        if silent.is_empty() {
            (Report::default(), silent)
        } else {
            (self.changes(), silent)
        }
    }

    /// Payloads dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Each meter's row from its plugs' readings; a meter without any is absent.
    fn rows(&self) -> BTreeMap<String, (i64, i64)> {
        let mut rows: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for state in &self.plugs {
            if let Some(watts) = state.watts {
                let row = rows.entry(state.plug.meter.clone()).or_default();
                match state.plug.column {
                    Column::Draw => row.0 += watts,
                    Column::Solar => row.1 += watts,
                }
            }
        }
        rows
    }

    fn changes(&mut self) -> Report {
        let rows = self.rows();
        let mut report = Report::default();
        for meter in self.reported.keys() {
            if !rows.contains_key(meter) {
                report.retract(RELATION, vec![symbol(meter), open(), open()]);
            }
        }
        for (meter, &(draw, solar)) in &rows {
            if self.reported.get(meter) != Some(&(draw, solar)) {
                report.insert(RELATION, vec![symbol(meter), number(draw), number(solar)]);
            }
        }
        self.reported = rows;
        report
    }
}

/// What the MQTT source tells its consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Facts changed: a reading moved a meter's row, or a silent plug took its share out.
    /// `time` is the wall clock when it happened, in seconds since the epoch; `event` labels
    /// the transaction ([`Report::entry`]).
    Report {
        event: String,
        time: i64,
        report: Report,
    },
    /// A payload was dropped; `dropped` counts them since the start.
    Malformed { malformed: Malformed, dropped: u64 },
    /// Connected and subscribed; `refused` lists the topics the broker would not subscribe.
    Connected { refused: Vec<String> },
    /// The connection failed or broke; the next attempt is in `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
}

/// What the connection task hands the source.
enum Link {
    Ready { refused: Vec<String> },
    Message { topic: String, payload: Vec<u8> },
    Lost { reason: String, retry_in: Duration },
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the MQTT source until `updates` is closed: connects, subscribes, turns messages into
/// reports, reconnects with backoff, and drops the readings of silent plugs. It fails only on
/// a configuration it cannot run.
pub async fn run(config: MqttConfig, updates: mpsc::Sender<Update>) -> Result<(), MqttError> {
    let stale_after = seconds("stale_after_s", config.stale_after_s)?;
    let retry_first = seconds("retry_first_s", config.retry_first_s)?;
    let retry_cap = seconds("retry_cap_s", config.retry_cap_s)?;
    if config.keep_alive_s == 0 {
        return Err(MqttError::Config(
            "`keep_alive_s` must be at least 1".into(),
        ));
    }
    if config.client_id.is_empty() {
        return Err(MqttError::Config("`client_id` must not be empty".into()));
    }
    if config.password.is_some() && config.username.is_none() {
        return Err(MqttError::Config("a `password` needs a `username`".into()));
    }
    let mut meters = Meters::new(&config.plugs, stale_after)?;
    let topics = meters.topics();
    let tls = tls(&config)?;

    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_s))
        .set_clean_session(true)
        .set_max_packet_size(config.max_message_bytes, 64 * 1024);
    if let Some(username) = &config.username {
        options.set_credentials(
            username.clone(),
            config.password.clone().unwrap_or_default(),
        );
    }
    if let Some(tls) = tls {
        options.set_transport(Transport::tls_with_config(tls));
    }

    let (links, mut link) = mpsc::channel(64);
    let backoff = Backoff::new(retry_first, retry_cap);
    let _connection = AbortOnDrop(tokio::spawn(connection(options, topics, backoff, links)));

    // Staleness is checked often enough that a reading outlives its limit by a tenth at most.
    let mut tick = tokio::time::interval(
        (stale_after / 10).clamp(Duration::from_millis(50), Duration::from_secs(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let update = tokio::select! {
            received = link.recv() => match received {
                Some(Link::Ready { refused }) => Some(Update::Connected { refused }),
                Some(Link::Lost { reason, retry_in }) => Some(Update::Disconnected { reason, retry_in }),
                Some(Link::Message { topic, payload }) => {
                    match meters.message(&topic, &payload, Instant::now()) {
                        Ok(report) if report.is_empty() => None,
                        Ok(report) => Some(Update::Report {
                            event: format!("mqtt: {topic}"),
                            time: unix_now(),
                            report,
                        }),
                        Err(malformed) => Some(Update::Malformed {
                            malformed,
                            dropped: meters.dropped(),
                        }),
                    }
                }
                // The connection task ended: it only does when the source is dropped.
                None => return Ok(()),
            },
            _ = tick.tick() => {
                let (report, silent) = meters.expire(Instant::now());
                (!report.is_empty()).then(|| Update::Report {
                    event: format!("mqtt: silent: {}", silent.join(", ")),
                    time: unix_now(),
                    report,
                })
            }
        };
        if let Some(update) = update
            && updates.send(update).await.is_err()
        {
            return Ok(());
        }
    }
}

/// Owns the connection: polls it, subscribes after every connection, and waits out the
/// backoff after every failure. It runs in its own task so that the source's timers never
/// interrupt the MQTT state machine in the middle of a packet.
async fn connection(
    options: MqttOptions,
    topics: Vec<String>,
    mut backoff: Backoff,
    links: mpsc::Sender<Link>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    eventloop.network_options.set_connection_timeout(10);
    let mut awaiting_suback = false;
    loop {
        let link = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.succeeded();
                if topics.is_empty() {
                    Some(Link::Ready {
                        refused: Vec::new(),
                    })
                } else {
                    let filters = topics
                        .iter()
                        .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtMostOnce));
                    // The request waits in the client's channel until the next poll sends
                    // it; the channel holds nothing else, so it has room.
                    match client.try_subscribe_many(filters) {
                        Ok(()) => {
                            awaiting_suback = true;
                            None
                        }
                        Err(error) => Some(Link::Lost {
                            reason: format!("cannot subscribe: {error}"),
                            retry_in: Duration::ZERO,
                        }),
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) if awaiting_suback => {
                awaiting_suback = false;
                let refused = topics
                    .iter()
                    .zip(&suback.return_codes)
                    .filter(|(_, code)| matches!(code, SubscribeReasonCode::Failure))
                    .map(|(topic, _)| topic.clone())
                    .collect();
                Some(Link::Ready { refused })
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => Some(Link::Message {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
            }),
            Ok(_) => None,
            Err(error) => {
                awaiting_suback = false;
                let retry_in = backoff.failed();
                if links
                    .send(Link::Lost {
                        reason: reason(&error),
                        retry_in,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(retry_in).await;
                None
            }
        };
        if let Some(link) = link
            && links.send(link).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::trace::Field;

    fn shelly(id: &str, meter: &str) -> Plug {
        Plug {
            kind: Kind::Shelly,
            id: id.into(),
            component: None,
            channel: None,
            meter: meter.into(),
            column: Column::Draw,
            inverted: false,
        }
    }

    fn tasmota(topic: &str, meter: &str, column: Column) -> Plug {
        Plug {
            kind: Kind::Tasmota,
            id: topic.into(),
            component: None,
            channel: None,
            meter: meter.into(),
            column,
            inverted: false,
        }
    }

    fn rpc() -> Route {
        Route::ShellyRpc {
            component: "switch:0".into(),
        }
    }

    fn sensor() -> Route {
        Route::TasmotaSensor { channel: None }
    }

    fn inserted(report: &Report) -> Vec<Vec<Field>> {
        report.insert.get(RELATION).cloned().unwrap_or_default()
    }

    fn row(meter: &str, draw: i64, solar: i64) -> Vec<Field> {
        vec![symbol(meter), number(draw), number(solar)]
    }

    const NOTIFY: &str = r#"{"src":"shellyplusplugs-a8032ab12345","dst":"shellyplusplugs-a8032ab12345/events","method":"NotifyStatus","params":{"ts":1700000000.52,"switch:0":{"id":0,"apower":12.3,"current":0.061,"voltage":231.4}}}"#;

    const SENSOR: &str = r#"{"Time":"2024-01-11T21:57:38","ENERGY":{"TotalStartTime":"2023-10-21T22:15:00","Total":3.705,"Yesterday":0.028,"Today":0.026,"Period":1,"Power":45,"ApparentPower":47,"ReactivePower":12,"Factor":0.96,"Voltage":233,"Current":0.201}}"#;

    #[test]
    fn a_shelly_notification_gives_the_active_power() {
        assert_eq!(power(&rpc(), NOTIFY.as_bytes()), Ok(Some(12.3)));
        let full = r#"{"src":"s","method":"NotifyFullStatus","params":{"ts":1.0,"sys":{},"switch:0":{"id":0,"output":true,"apower":1500,"aenergy":{"total":3.2}}}}"#;
        assert_eq!(power(&rpc(), full.as_bytes()), Ok(Some(1500.0)));
        let other = Route::ShellyRpc {
            component: "switch:1".into(),
        };
        let two = r#"{"method":"NotifyStatus","params":{"ts":1.0,"switch:0":{"apower":5},"switch:1":{"apower":7.5}}}"#;
        assert_eq!(power(&other, two.as_bytes()), Ok(Some(7.5)));
    }

    #[test]
    fn a_partial_shelly_notification_says_nothing_about_power() {
        let energy = r#"{"src":"s","method":"NotifyStatus","params":{"ts":1.0,"switch:0":{"id":0,"aenergy":{"by_minute":[1,2,3],"minute_ts":1700000000,"total":12.5}}}}"#;
        assert_eq!(power(&rpc(), energy.as_bytes()), Ok(None));
        let wifi = r#"{"src":"s","method":"NotifyStatus","params":{"ts":1.0,"wifi":{"rssi":-60}}}"#;
        assert_eq!(power(&rpc(), wifi.as_bytes()), Ok(None));
        let event = r#"{"src":"s","method":"NotifyEvent","params":{"ts":1.0,"events":[{"component":"switch:0","event":"toggle"}]}}"#;
        assert_eq!(power(&rpc(), event.as_bytes()), Ok(None));
    }

    #[test]
    fn a_shelly_status_must_carry_the_power() {
        let status = r#"{"id":0,"source":"init","output":true,"apower":230.0,"voltage":230.1,"current":1.0,"aenergy":{"total":5.0},"temperature":{"tC":40.1,"tF":104.2}}"#;
        assert_eq!(
            power(&Route::ShellyStatus, status.as_bytes()),
            Ok(Some(230.0))
        );
        let unmetered = r#"{"id":0,"source":"init","output":true}"#;
        let error = power(&Route::ShellyStatus, unmetered.as_bytes()).unwrap_err();
        assert!(error.contains("no `apower`"), "{error}");
    }

    #[test]
    fn a_tasmota_sensor_gives_the_power_of_one_channel_or_all() {
        assert_eq!(power(&sensor(), SENSOR.as_bytes()), Ok(Some(45.0)));
        let two =
            r#"{"Time":"2024-01-11T21:57:38","ENERGY":{"Power":[12,34.5],"Voltage":[230,231]}}"#;
        assert_eq!(power(&sensor(), two.as_bytes()), Ok(Some(46.5)));
        let second = Route::TasmotaSensor { channel: Some(2) };
        assert_eq!(power(&second, two.as_bytes()), Ok(Some(34.5)));
        let third = Route::TasmotaSensor { channel: Some(3) };
        assert!(
            power(&third, two.as_bytes())
                .unwrap_err()
                .contains("2 channels")
        );
    }

    #[test]
    fn unreadable_payloads_are_named() {
        let cases: [(Route, &str, &str); 8] = [
            (rpc(), "on", "not JSON"),
            (rpc(), "[1, 2]", "a JSON array"),
            (rpc(), r#"{"params":{}}"#, "no `method`"),
            (
                rpc(),
                r#"{"method":"NotifyStatus","params":3}"#,
                "`params` is 3",
            ),
            (
                rpc(),
                r#"{"method":"NotifyStatus","params":{"switch:0":{"apower":"12 W"}}}"#,
                "`apower` is \"12 W\", not a number",
            ),
            (
                sensor(),
                r#"{"Time":"2024-01-11T21:57:38","ANALOG":{"A0":3}}"#,
                "no `ENERGY`",
            ),
            (
                sensor(),
                r#"{"ENERGY":{"Voltage":230}}"#,
                "no `ENERGY.Power`",
            ),
            (
                sensor(),
                r#"{"ENERGY":{"Power":[12,"x"]}}"#,
                "`ENERGY.Power` is \"x\"",
            ),
        ];
        for (route, payload, reason) in cases {
            let error = power(&route, payload.as_bytes()).unwrap_err();
            assert!(error.contains(reason), "{payload}: {error}");
        }
    }

    #[test]
    fn watts_are_whole_never_negative_and_never_absurd() {
        assert_eq!(whole_watts(12.5), Ok(13));
        assert_eq!(whole_watts(0.0), Ok(0));
        assert_eq!(whole_watts(100_000.0), Ok(100_000));
        assert!(whole_watts(-3.0).unwrap_err().contains("negative"));
        assert!(whole_watts(100_000.5).unwrap_err().contains("unit mistake"));
        assert!(whole_watts(f64::NAN).is_err());
    }

    #[test]
    fn plugs_add_up_per_meter_and_column() {
        let plugs = [
            shelly("shellyplusplugs-rack", "house"),
            tasmota("freezer", "house", Column::Draw),
            tasmota("balcony", "house", Column::Solar),
            shelly("shellypro4pm-lab", "lab"),
        ];
        let mut meters = Meters::new(&plugs, Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        let report = meters
            .message("shellyplusplugs-rack/events/rpc", NOTIFY.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 12, 0)]);
        let report = meters
            .message("tele/freezer/SENSOR", SENSOR.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 57, 0)]);
        let solar = r#"{"Time":"2024-01-11T12:00:00","ENERGY":{"Power":600}}"#;
        let report = meters
            .message("tele/balcony/SENSOR", solar.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 57, 600)]);
        // The same reading again changes nothing.
        let report = meters
            .message("tele/balcony/SENSOR", solar.as_bytes(), now)
            .unwrap();
        assert!(report.is_empty());
        // A topic nobody reads is ignored.
        assert!(
            meters
                .message("tele/other/SENSOR", b"junk", now)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            meters.topics(),
            [
                "shellyplusplugs-rack/events/rpc",
                "shellyplusplugs-rack/status/switch:0",
                "shellypro4pm-lab/events/rpc",
                "shellypro4pm-lab/status/switch:0",
                "tele/balcony/SENSOR",
                "tele/freezer/SENSOR",
            ]
        );
    }

    #[test]
    fn a_malformed_payload_is_dropped_counted_and_changes_nothing() {
        let plugs = [tasmota("freezer", "house", Column::Draw)];
        let mut meters = Meters::new(&plugs, Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        meters
            .message("tele/freezer/SENSOR", SENSOR.as_bytes(), now)
            .unwrap();
        for payload in [
            "garbage",
            r#"{"ENERGY":{"Power":"12 W"}}"#,
            r#"{"ENERGY":{"Power":-5}}"#,
            r#"{"ENERGY":{"Power":250000}}"#,
        ] {
            let malformed = meters
                .message("tele/freezer/SENSOR", payload.as_bytes(), now)
                .unwrap_err();
            assert_eq!(malformed.origin, "tele/freezer/SENSOR");
            assert_eq!(malformed.payload, payload);
        }
        assert_eq!(meters.dropped(), 4);
        // The reading held before the garbage still holds: a good one is compared with it.
        let report = meters
            .message("tele/freezer/SENSOR", SENSOR.as_bytes(), now)
            .unwrap();
        assert!(report.is_empty());
        let fifty = r#"{"ENERGY":{"Power":50}}"#;
        let report = meters
            .message("tele/freezer/SENSOR", fifty.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 50, 0)]);
    }

    #[test]
    fn a_payload_bad_for_one_plug_of_a_device_changes_none() {
        let mut first = shelly("shellypro4pm-lab", "lab");
        first.component = Some("switch:0".into());
        let mut second = shelly("shellypro4pm-lab", "lab");
        second.component = Some("switch:1".into());
        let mut meters = Meters::new(&[first, second], Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        let both = r#"{"method":"NotifyStatus","params":{"switch:0":{"apower":100},"switch:1":{"apower":20}}}"#;
        let report = meters
            .message("shellypro4pm-lab/events/rpc", both.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("lab", 120, 0)]);
        let bad = r#"{"method":"NotifyStatus","params":{"switch:0":{"apower":300},"switch:1":{"apower":"x"}}}"#;
        let malformed = meters
            .message("shellypro4pm-lab/events/rpc", bad.as_bytes(), now)
            .unwrap_err();
        assert!(
            malformed
                .reason
                .starts_with("shelly shellypro4pm-lab switch:1"),
            "{malformed}"
        );
        let one = r#"{"method":"NotifyStatus","params":{"switch:1":{"apower":30}}}"#;
        let report = meters
            .message("shellypro4pm-lab/events/rpc", one.as_bytes(), now)
            .unwrap();
        assert_eq!(inserted(&report), [row("lab", 130, 0)]);
    }

    #[test]
    fn an_inverted_plug_reads_negative_power_as_production() {
        let mut inverter = shelly("shellyplus1pm-balcony", "house");
        inverter.column = Column::Solar;
        inverter.inverted = true;
        let mut meters = Meters::new(&[inverter], Duration::from_secs(60)).unwrap();
        let producing = r#"{"method":"NotifyStatus","params":{"switch:0":{"apower":-412.6}}}"#;
        let report = meters
            .message(
                "shellyplus1pm-balcony/events/rpc",
                producing.as_bytes(),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 0, 413)]);
        let backwards = r#"{"method":"NotifyStatus","params":{"switch:0":{"apower":5}}}"#;
        let malformed = meters
            .message(
                "shellyplus1pm-balcony/events/rpc",
                backwards.as_bytes(),
                Instant::now(),
            )
            .unwrap_err();
        assert!(malformed.reason.contains("negative"));
    }

    #[test]
    fn silent_plugs_lose_their_share_and_an_empty_meter_is_retracted() {
        let plugs = [
            tasmota("freezer", "house", Column::Draw),
            tasmota("balcony", "house", Column::Solar),
        ];
        let mut meters = Meters::new(&plugs, Duration::from_secs(60)).unwrap();
        let start = Instant::now();
        meters
            .message("tele/freezer/SENSOR", SENSOR.as_bytes(), start)
            .unwrap();
        let solar = r#"{"ENERGY":{"Power":600}}"#;
        let later = start + Duration::from_secs(30);
        meters
            .message("tele/balcony/SENSOR", solar.as_bytes(), later)
            .unwrap();
        assert!(meters.expire(start + Duration::from_secs(59)).0.is_empty());
        let (report, silent) = meters.expire(start + Duration::from_secs(60));
        assert_eq!(silent, ["tasmota freezer"]);
        assert_eq!(inserted(&report), [row("house", 0, 600)]);
        assert!(report.retract.is_empty());
        let (report, _) = meters.expire(later + Duration::from_secs(60));
        assert!(report.insert.is_empty());
        assert_eq!(
            report.retract[RELATION],
            [vec![symbol("house"), open(), open()]]
        );
        // Once gone, nothing more to say; a new reading brings the meter back.
        assert!(meters.expire(later + Duration::from_secs(600)).0.is_empty());
        let report = meters
            .message(
                "tele/freezer/SENSOR",
                SENSOR.as_bytes(),
                later + Duration::from_secs(601),
            )
            .unwrap();
        assert_eq!(inserted(&report), [row("house", 45, 0)]);
    }

    #[test]
    fn a_partial_notification_keeps_the_reading_alive() {
        let mut meters = Meters::new(&[shelly("s", "rack")], Duration::from_secs(60)).unwrap();
        let start = Instant::now();
        meters
            .message("s/events/rpc", NOTIFY.as_bytes(), start)
            .unwrap();
        let energy =
            r#"{"method":"NotifyStatus","params":{"switch:0":{"aenergy":{"total":12.5}}}}"#;
        let report = meters
            .message(
                "s/events/rpc",
                energy.as_bytes(),
                start + Duration::from_secs(50),
            )
            .unwrap();
        assert!(report.is_empty());
        assert!(meters.expire(start + Duration::from_secs(100)).0.is_empty());
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused() {
        let mut twice = vec![shelly("s", "rack"), shelly("s", "lab")];
        assert!(Meters::new(&twice, Duration::from_secs(1)).is_err());
        twice[1].component = Some("switch:1".into());
        assert!(Meters::new(&twice, Duration::from_secs(1)).is_ok());
        let mut wildcard = shelly("shellies/+", "rack");
        assert!(Meters::new(&[wildcard.clone()], Duration::from_secs(1)).is_err());
        wildcard.id = "s".into();
        wildcard.component = Some("switch".into());
        assert!(Meters::new(&[wildcard], Duration::from_secs(1)).is_err());
        let mut all = tasmota("strip", "rack", Column::Draw);
        let mut one = all.clone();
        one.channel = Some(1);
        let error = Meters::new(&[all.clone(), one.clone()], Duration::from_secs(1));
        assert!(matches!(error, Err(MqttError::Config(reason)) if reason.contains("again")));
        one.channel = Some(0);
        assert!(Meters::new(&[one], Duration::from_secs(1)).is_err());
        all.component = Some("switch:0".into());
        assert!(Meters::new(&[all], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_configuration_reads_from_toml_like_data() {
        let config: MqttConfig = serde_json::from_str(
            r#"{"host": "broker.lan", "username": "vigil", "password": "secret",
                "plug": [{"kind": "tasmota", "id": "balcony", "meter": "house", "column": "solar"},
                         {"kind": "shelly", "id": "shellyplusplugs-a8", "meter": "rack"}]}"#,
        )
        .unwrap();
        assert_eq!(config.port, 1883);
        assert_eq!(config.plugs[0].column, Column::Solar);
        assert_eq!(config.plugs[1].column, Column::Draw);
        assert!(serde_json::from_str::<MqttConfig>(r#"{"hots": "x"}"#).is_err());
    }
}
