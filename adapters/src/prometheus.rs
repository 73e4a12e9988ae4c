//! Telemetry scraped from Prometheus exporters (node_exporter on every node), mapped to facts.
//!
//! Every node runs an exporter that answers `GET /metrics` with the Prometheus text exposition
//! format (version 0.0.4):
//!
//! ```text
//! # HELP node_load1 1m load average.
//! # TYPE node_load1 gauge
//! node_load1 0.21
//! node_hwmon_temp_celsius{chip="pci0000:00_0000:00:18_3",sensor="temp1"} 41.5
//! http_requests_total{method="post",path="/a \"b\"\n"} 1027 1395066363000
//! ```
//!
//! A line is a comment (`# HELP name text`, `# TYPE name counter|gauge|histogram|summary|untyped`,
//! or any other `#` line, ignored), blank, or a sample: a metric name, labels in braces
//! (values quoted, with `\\`, `\"` and `\n` escaped), a value (a float, `NaN`, `+Inf` or
//! `-Inf`) and an optional timestamp in milliseconds since the epoch. [`parse`] reads a scrape
//! line by line; a line it cannot read is a [`Malformed`], dropped and counted, and the rest of
//! the scrape is kept, so one exporter's odd metric does not blind the policy to the others.
//!
//! The policy does not want metrics, it wants facts, so each [`Mapping`] turns the samples of
//! one metric, selected by exact label matchers and an optional threshold, into rows of one
//! relation, after a column template: `$target` (the target's name, the node), `$time` (the
//! sample's timestamp if it has one, else the scrape's, in seconds since the epoch), `$value`
//! (the value rounded to a whole number; `$value/1073741824` or `$value*100` scale it first),
//! `$label:NAME` (a label's value, as a symbol), `_` (a column the engine fills, a stamp), a
//! number, or any other text, a symbol. So `node_load1` above a threshold becomes
//! `last_active(node, t)`:
//!
//! ```toml
//! [[prometheus.target]]
//! name = "pve"
//! url = "http://10.0.0.2:9100/metrics"
//!
//! [[prometheus.mapping]]
//! metric = "node_load1"
//! above = 0.5
//! relation = "last_active"
//! columns = ["$target", "$time"]
//! hold = "latch"
//! ```
//!
//! A mapping's rows are held in one of two ways ([`Hold`]). A *level* (the default) is what
//! the latest scrape says: a row that the next scrape does not give again is retracted, and
//! every level row of a target is retracted when the target falls silent for `stale_after_s`,
//! rather than keep an old truth. A *latch* records the last time something held (the last
//! activity of a node): it is replaced when the condition holds again, kept when it does not,
//! and kept through silence, because a past event stays true.
//!
//! The scraper ([`run`]) speaks HTTP/1.1 over TCP with hyper, one request per connection and
//! per interval, with a timeout, a size limit, and a [`Backoff`] after failures. Only `http://`
//! targets: exporters on the house's LAN rarely speak TLS.
//!
//! Caveat: a source starts with no memory, so a level row of an unkeyed relation that a
//! previous run reported (and the journal kept) is not retracted by this one.

use crate::source::{Backoff, GetFailure, HttpUrl, Malformed, Report, Staleness, get_once};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vigil_engine::Value;
use vigil_engine::trace::Field;

/// The kind of a metric, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// The labels in the order given.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A scrape, read: its samples, what the comments said about them, and the lines dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, MetricType>,
    pub help: BTreeMap<String, String>,
    pub malformed: Vec<Malformed>,
}

/// Reads a scrape in the text exposition format. `origin` names the target in the
/// [`Malformed`] of the lines that cannot be read (as `ORIGIN line N`).
pub fn parse(origin: &str, text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start_matches([' ', '\t']);
        let read = if trimmed.is_empty() {
            Ok(())
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            comment_line(comment, &mut exposition)
        } else {
            sample_line(trimmed).map(|sample| exposition.samples.push(sample))
        };
        if let Err(reason) = read {
            exposition.malformed.push(Malformed::new(
                format!("{origin} line {}", index + 1),
                line.as_bytes(),
                reason,
            ));
        }
    }
    exposition
}

/// A cursor over one line.
struct Line<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Line<'a> {
    fn new(text: &'a str) -> Line<'a> {
        Line { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_blanks(&mut self) -> bool {
        let before = self.at;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        self.at > before
    }

    fn eat(&mut self, wanted: char) -> bool {
        if self.peek() == Some(wanted) {
            self.at += wanted.len_utf8();
            true
        } else {
            false
        }
    }

    /// A run of characters up to a blank (or the end).
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    /// A name: `[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics, without `:` for labels.
    fn name(&mut self, colons: bool) -> Option<&'a str> {
        let rest = self.rest();
        let allowed = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colons && c == ':')
                || (!first && c.is_ascii_digit())
        };
        let mut end = 0;
        for (position, c) in rest.char_indices() {
            if !allowed(c, position == 0) {
                break;
            }
            end = position + 1;
        }
        (end > 0).then(|| {
            self.at += end;
            &rest[..end]
        })
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut line = Line::new(name);
    line.name(true)
        .is_some_and(|found| found.len() == name.len())
}

fn comment_line(comment: &str, exposition: &mut Exposition) -> Result<(), String> {
    let mut line = Line::new(comment);
    if !line.skip_blanks() {
        return Ok(());
    }
    let keyword = line.word();
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    if !line.skip_blanks() {
        return Err(format!("`# {keyword}` names no metric"));
    }
    let name = line.word();
    if !is_metric_name(name) {
        return Err(format!("`{name}` is not a metric name"));
    }
    line.skip_blanks();
    if keyword == "HELP" {
        let text = unescape(line.rest(), false)?;
        if exposition.help.insert(name.into(), text).is_some() {
            return Err(format!("a second HELP for `{name}`"));
        }
        return Ok(());
    }
    let kind = match line.word() {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" => MetricType::Untyped,
        "" => return Err(format!("`# TYPE {name}` gives no type")),
        other => return Err(format!("`{other}` is not a metric type")),
    };
    line.skip_blanks();
    if !line.rest().is_empty() {
        return Err(format!("text after the type: `{}`", line.rest()));
    }
    if exposition.types.insert(name.into(), kind).is_some() {
        return Err(format!("a second TYPE for `{name}`"));
    }
    Ok(())
}

/// Undoes the escapes of HELP text (`\\`, `\n`) or of label values (also `\"`).
fn unescape(text: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            // HELP text keeps an unknown escape as it is, as Prometheus does.
            Some(other) if !quotes => {
                out.push('\\');
                out.push(other);
            }
            Some(other) => {
                return Err(format!(
                    "`\\{other}` is not an escape (only `\\\\`, `\\\"` and `\\n`)"
                ));
            }
            None if !quotes => out.push('\\'),
            None => return Err("a `\\` at the end".into()),
        }
    }
    Ok(out)
}

fn sample_line(text: &str) -> Result<Sample, String> {
    let mut line = Line::new(text);
    let name = line
        .name(true)
        .ok_or_else(|| "a sample must start with a metric name".to_string())?
        .to_string();
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut blank = line.skip_blanks();
    if line.eat('{') {
        loop {
            line.skip_blanks();
            if line.eat('}') {
                break;
            }
            let label = line
                .name(false)
                .ok_or_else(|| format!("a label name where `{}` is", first_char(line.rest())))?
                .to_string();
            line.skip_blanks();
            if !line.eat('=') {
                return Err(format!("`=` after the label `{label}`"));
            }
            line.skip_blanks();
            if !line.eat('"') {
                return Err(format!("the value of `{label}` must be quoted"));
            }
            let value =
                quoted(&mut line).ok_or_else(|| format!("the value of `{label}` never ends"))?;
            let value = unescape(value, true)?;
            if labels.iter().any(|(seen, _)| *seen == label) {
                return Err(format!("the label `{label}` twice"));
            }
            labels.push((label, value));
            line.skip_blanks();
            if line.eat(',') {
                continue;
            }
            if line.eat('}') {
                break;
            }
            return Err(format!(
                "`,` or `}}` where `{}` is",
                first_char(line.rest())
            ));
        }
        blank = line.skip_blanks();
    }
    if !blank {
        return Err(match line.peek() {
            None => format!("`{name}` has no value"),
            Some(c) => format!("`{c}` after the metric name"),
        });
    }
    let value = line.word();
    let value = number(value).ok_or_else(|| format!("`{value}` is not a number"))?;
    line.skip_blanks();
    let timestamp_ms = match line.word() {
        "" => None,
        stamp => Some(
            stamp
                .parse::<i64>()
                .map_err(|_| format!("`{stamp}` is not a timestamp in milliseconds"))?,
        ),
    };
    line.skip_blanks();
    if !line.rest().is_empty() {
        return Err(format!("text after the sample: `{}`", line.rest()));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

fn first_char(text: &str) -> String {
    text.chars()
        .next()
        .map(String::from)
        .unwrap_or_else(|| "the end".into())
}

/// The raw text of a quoted label value, the opening quote read: up to the closing quote,
/// escapes left in.
fn quoted<'a>(line: &mut Line<'a>) -> Option<&'a str> {
    let rest = line.rest();
    let mut escaped = false;
    for (position, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                line.at += position + 1;
                return Some(&rest[..position]);
            }
            _ => escaped = false,
        }
    }
    None
}

/// A sample value as Go's `strconv.ParseFloat` reads them: decimals, exponents, `NaN`,
/// `+Inf`, `-Inf` (in any case).
fn number(text: &str) -> Option<f64> {
    // Rust reads `inf` and `infinity` too, like Go; neither reads hexadecimal floats here,
    // which no exporter writes.
    text.parse::<f64>().ok()
}

/// How a mapping's rows are held between scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    /// What the latest scrape says; retracted when it no longer does, or when the target
    /// falls silent.
    #[default]
    Level,
    /// The last time the condition held: replaced when it holds again, kept otherwise.
    Latch,
}

/// A column template as configured: a number, or text (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Template {
    Number(i64),
    Text(String),
}

/// Samples of one metric, turned into rows of one relation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub metric: String,
    /// Exact label matchers; an empty value matches a sample without the label, as in
    /// Prometheus.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only samples whose value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Only samples whose value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    pub relation: String,
    pub columns: Vec<Template>,
    #[serde(default)]
    pub hold: Hold,
}

/// A scrape target: its name (what `$target` gives, the node) and its URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub url: String,
}

/// The Prometheus source: targets, mappings, and timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    #[serde(rename = "target")]
    pub targets: Vec<Target>,
    #[serde(rename = "mapping")]
    pub mappings: Vec<Mapping>,
    /// Seconds between scrapes of a target.
    pub interval_s: f64,
    /// Seconds a scrape may take, connection included.
    pub timeout_s: f64,
    /// Seconds without a successful scrape after which a target's level rows are retracted.
    pub stale_after_s: f64,
    /// The first wait after a failed scrape, in seconds; doubled up to `retry_cap_s`.
    pub retry_first_s: f64,
    pub retry_cap_s: f64,
    /// The largest response accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for PrometheusConfig {
    fn default() -> PrometheusConfig {
        PrometheusConfig {
            targets: Vec::new(),
            mappings: Vec::new(),
            interval_s: 15.0,
            timeout_s: 5.0,
            stale_after_s: 60.0,
            retry_first_s: 1.0,
            retry_cap_s: 60.0,
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why the Prometheus source cannot start, or why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus config: {0}")]
    Config(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the response is over {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: the response is not UTF-8 text")]
    NotText { url: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

fn seconds(name: &str, value: f64) -> Result<Duration, PrometheusError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            PrometheusError::Config(format!(
                "`{name}` must be a positive number of seconds, not {value}"
            ))
        })
}

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Target,
    Time,
    Value { scale: f64 },
    Label(String),
    Symbol(String),
    Number(i64),
    Open,
}

impl Column {
    fn new(template: &Template) -> Result<Column, String> {
        let text = match template {
            Template::Number(number) => return Ok(Column::Number(*number)),
            Template::Text(text) => text.as_str(),
        };
        if text == "_" {
            return Ok(Column::Open);
        }
        let Some(special) = text.strip_prefix('$') else {
            return Ok(Column::Symbol(text.into()));
        };
        match special {
            "target" => return Ok(Column::Target),
            "time" => return Ok(Column::Time),
            "value" => return Ok(Column::Value { scale: 1.0 }),
            _ => {}
        }
        if let Some(label) = special.strip_prefix("label:") {
            let mut line = Line::new(label);
            return match line.name(false) {
                Some(name) if name.len() == label.len() => Ok(Column::Label(label.into())),
                _ => Err(format!("`{label}` is not a label name")),
            };
        }
        let scale = |factor: &str| {
            factor
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|factor| factor.is_finite() && *factor > 0.0)
                .ok_or_else(|| format!("`{factor}` is not a positive factor in `{text}`"))
        };
        if let Some(factor) = special.strip_prefix("value*") {
            return Ok(Column::Value {
                scale: scale(factor)?,
            });
        }
        if let Some(divisor) = special.strip_prefix("value/") {
            return Ok(Column::Value {
                scale: 1.0 / scale(divisor)?,
            });
        }
        Err(format!(
            "`{text}` is not a template: `$target`, `$time`, `$value`, `$value*K`, `$value/K`, `$label:NAME`"
        ))
    }
}

#[derive(Debug, Clone)]
struct Compiled {
    mapping: Mapping,
    columns: Vec<Column>,
}

/// One row a scrape gives, with how it is held and, for a latch, the series it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub relation: String,
    pub values: Vec<Option<Value>>,
    pub hold: Hold,
    /// The mapping's index and the sample's labels: a latch's row replaces the one of the
    /// same series.
    pub series: (usize, Vec<(String, String)>),
}

/// The configured mappings, checked.
#[derive(Debug, Clone)]
pub struct Mapper {
    mappings: Vec<Compiled>,
}

impl Mapper {
    pub fn new(mappings: &[Mapping]) -> Result<Mapper, PrometheusError> {
        let mut compiled = Vec::with_capacity(mappings.len());
        for (index, mapping) in mappings.iter().enumerate() {
            let error = |reason: String| {
                PrometheusError::Config(format!(
                    "mapping {} (`{}`): {reason}",
                    index + 1,
                    mapping.metric
                ))
            };
            if !is_metric_name(&mapping.metric) {
                return Err(error("not a metric name".into()));
            }
            if mapping.relation.is_empty() {
                return Err(error("no relation".into()));
            }
            if mapping.columns.is_empty() {
                return Err(error("no columns".into()));
            }
            for bound in [mapping.above, mapping.below].into_iter().flatten() {
                if !bound.is_finite() {
                    return Err(error(format!("the threshold {bound} is not a number")));
                }
            }
            let columns = mapping
                .columns
                .iter()
                .map(Column::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            compiled.push(Compiled {
                mapping: mapping.clone(),
                columns,
            });
        }
        Ok(Mapper { mappings: compiled })
    }

    /// The rows a scrape of `target` at `time` (seconds since the epoch) gives, and the
    /// samples that matched a mapping but cannot fill its columns (a `NaN` for `$value`).
    pub fn rows(
        &self,
        target: &str,
        exposition: &Exposition,
        time: i64,
    ) -> (Vec<Row>, Vec<Malformed>) {
        let mut rows = Vec::new();
        let mut malformed = Vec::new();
        for sample in &exposition.samples {
            for (index, compiled) in self.mappings.iter().enumerate() {
                let mapping = &compiled.mapping;
                // A NaN is neither above nor below anything.
                let selected = sample.name == mapping.metric
                    && mapping
                        .labels
                        .iter()
                        .all(|(label, value)| sample.label(label).unwrap_or("") == value)
                    && mapping.above.is_none_or(|above| sample.value > above)
                    && mapping.below.is_none_or(|below| sample.value < below);
                if !selected {
                    continue;
                }
                match fill(&compiled.columns, target, sample, time) {
                    Ok(values) => rows.push(Row {
                        relation: mapping.relation.clone(),
                        values,
                        hold: mapping.hold,
                        series: (index, sample.labels.clone()),
                    }),
                    Err(reason) => malformed.push(Malformed::new(
                        format!("{target} {}", mapping.relation),
                        describe(sample).as_bytes(),
                        reason,
                    )),
                }
            }
        }
        (rows, malformed)
    }
}

fn describe(sample: &Sample) -> String {
    let labels: Vec<String> = sample
        .labels
        .iter()
        .map(|(label, value)| format!("{label}={value:?}"))
        .collect();
    format!("{}{{{}}} {}", sample.name, labels.join(","), sample.value)
}

fn fill(
    columns: &[Column],
    target: &str,
    sample: &Sample,
    time: i64,
) -> Result<Vec<Option<Value>>, String> {
    columns
        .iter()
        .map(|column| match column {
            Column::Target => Ok(Some(Value::symbol(target))),
            Column::Time => Ok(Some(Value::Number(
                sample.timestamp_ms.map_or(time, |ms| ms.div_euclid(1000)),
            ))),
            Column::Value { scale } => {
                let scaled = (sample.value * scale).round();
                // i64::MAX is not exact in f64: stay strictly inside.
                if scaled.is_finite() && scaled.abs() < 9.0e18 {
                    Ok(Some(Value::Number(scaled as i64)))
                } else {
                    Err(format!(
                        "the value {} does not fit a number column",
                        sample.value
                    ))
                }
            }
            Column::Label(label) => sample
                .label(label)
                .map(|value| Some(Value::symbol(value)))
                .ok_or_else(|| format!("no label `{label}`")),
            Column::Symbol(text) => Ok(Some(Value::symbol(text))),
            Column::Number(number) => Ok(Some(Value::Number(*number))),
            Column::Open => Ok(None),
        })
        .collect()
}

type Fact = (String, Vec<Option<Value>>);

fn fields(values: &[Option<Value>]) -> Vec<Field> {
    values.iter().cloned().map(Field).collect()
}

/// What a source has reported for one target: its level rows and its latches. It does no
/// I/O; [`run`] feeds it scrapes and silences.
#[derive(Debug, Default)]
pub struct TargetFacts {
    level: BTreeSet<Fact>,
    latched: BTreeMap<(usize, Vec<(String, String)>), Fact>,
}

impl TargetFacts {
    /// A scrape's rows: the report that moves the facts from the last scrape's to these.
    pub fn update(&mut self, rows: Vec<Row>) -> Report {
        let mut report = Report::default();
        let mut level = BTreeSet::new();
        let mut latches = Vec::new();
        for row in rows {
            match row.hold {
                Hold::Level => {
                    level.insert((row.relation, row.values));
                }
                Hold::Latch => latches.push(row),
            }
        }
        for (relation, values) in self.level.difference(&level) {
            report.retract(relation, fields(values));
        }
        for (relation, values) in level.difference(&self.level) {
            report.insert(relation, fields(values));
        }
        self.level = level;
        for row in latches {
            let fact = (row.relation, row.values);
            let previous = self.latched.get(&row.series);
            if previous == Some(&fact) {
                continue;
            }
            // The same series twice in a scrape (a duplicate sample) keeps the last one.
            if let Some((relation, values)) = previous {
                report.retract(relation, fields(values));
            }
            report.insert(&fact.0, fields(&fact.1));
            self.latched.insert(row.series, fact);
        }
        report
    }

    /// The target fell silent: its level rows are retracted, its latches kept.
    pub fn expire(&mut self) -> Report {
        let mut report = Report::default();
        for (relation, values) in std::mem::take(&mut self.level) {
            report.retract(&relation, fields(&values));
        }
        report
    }
}

/// An `http://` URL, taken apart for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, PrometheusError> {
        let error = |reason: &str| PrometheusError::Config(format!("`{url}`: {reason}"));
        let parsed = HttpUrl::parse(url, "only http:// targets are scraped")
            .map_err(|reason| error(&reason))?;
        Ok(Endpoint {
            url: url.into(),
            host: parsed.host,
            port: parsed.port,
            authority: parsed.authority,
            path: parsed
                .uri
                .path_and_query()
                .map_or("/".into(), |path| path.as_str().into()),
        })
    }
}

/// One scrape: `GET` the endpoint over a new HTTP/1.1 connection, within `timeout`, and
/// return the body if it is text of at most `limit` bytes.
pub async fn scrape(
    endpoint: &Endpoint,
    timeout: Duration,
    limit: usize,
) -> Result<String, PrometheusError> {
    match tokio::time::timeout(timeout, fetch(endpoint, limit)).await {
        Ok(result) => result,
        Err(_) => Err(PrometheusError::Timeout {
            url: endpoint.url.clone(),
            timeout,
        }),
    }
}

async fn fetch(endpoint: &Endpoint, limit: usize) -> Result<String, PrometheusError> {
    let url = || endpoint.url.clone();
    let failed = |failure| match failure {
        GetFailure::Connect(reason) => PrometheusError::Connect { url: url(), reason },
        GetFailure::Http(reason) => PrometheusError::Http { url: url(), reason },
        GetFailure::TooLarge => PrometheusError::TooLarge { url: url(), limit },
    };
    let target = (
        endpoint.host.as_str(),
        endpoint.port,
        endpoint.authority.as_str(),
    );
    let accept = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
    let answer = get_once(target, &endpoint.path, accept)
        .await
        .map_err(failed)?;
    if !answer.status.is_success() {
        return Err(PrometheusError::Status {
            url: url(),
            status: answer.status.as_u16(),
        });
    }
    let body = answer.body(limit).await.map_err(failed)?;
    String::from_utf8(body.to_vec()).map_err(|_| PrometheusError::NotText { url: url() })
}

/// What the Prometheus source tells its consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Facts changed. `time` is the scrape's wall clock, in seconds since the epoch; `event`
    /// labels the transaction ([`Report::entry`]).
    Report {
        event: String,
        time: i64,
        report: Report,
    },
    /// A line or a sample was dropped; `dropped` counts them since the start, over every
    /// target.
    Malformed { malformed: Malformed, dropped: u64 },
    /// A target was scraped: `samples` read, `rows` mapped.
    Scraped {
        target: String,
        samples: usize,
        rows: usize,
    },
    /// A scrape failed; the next attempt is in `retry_in`.
    Failed {
        target: String,
        reason: String,
        retry_in: Duration,
    },
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    interval: Duration,
    timeout: Duration,
    stale_after: Duration,
    retry_first: Duration,
    retry_cap: Duration,
    limit: usize,
}

/// Runs the Prometheus source until `updates` is closed: scrapes every target on its
/// interval, maps what it reads, backs off after failures, and retracts the level rows of a
/// target that stays silent. It fails only on a configuration it cannot run.
pub async fn run(
    config: PrometheusConfig,
    updates: mpsc::Sender<Update>,
) -> Result<(), PrometheusError> {
    let timing = Timing {
        interval: seconds("interval_s", config.interval_s)?,
        timeout: seconds("timeout_s", config.timeout_s)?,
        stale_after: seconds("stale_after_s", config.stale_after_s)?,
        retry_first: seconds("retry_first_s", config.retry_first_s)?,
        retry_cap: seconds("retry_cap_s", config.retry_cap_s)?,
        limit: config.max_response_bytes,
    };
    let mapper = Arc::new(Mapper::new(&config.mappings)?);
    let mut names = BTreeSet::new();
    let mut targets = Vec::new();
    for target in &config.targets {
        if target.name.is_empty() || !names.insert(target.name.as_str()) {
            return Err(PrometheusError::Config(format!(
                "target `{}`: each target needs a name of its own",
                target.name
            )));
        }
        targets.push((target.name.clone(), Endpoint::parse(&target.url)?));
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, endpoint) in targets {
        tasks.spawn(watch(
            name,
            endpoint,
            mapper.clone(),
            timing,
            updates.clone(),
            dropped.clone(),
        ));
    }
    drop(updates);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Scrapes one target until the consumer goes away.
async fn watch(
    name: String,
    endpoint: Endpoint,
    mapper: Arc<Mapper>,
    timing: Timing,
    updates: mpsc::Sender<Update>,
    dropped: Arc<AtomicU64>,
) {
    let mut facts = TargetFacts::default();
    let mut backoff = Backoff::new(timing.retry_first, timing.retry_cap);
    let mut staleness = Staleness::new(timing.stale_after);
    // Silence is noticed within a tenth of its limit.
    let check = (timing.stale_after / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut next = Instant::now();
    loop {
        loop {
            let now = Instant::now();
            if staleness.turned_stale(now.into_std()) {
                let report = facts.expire();
                if !report.is_empty() {
                    let update = Update::Report {
                        event: format!("prometheus: {name} went silent"),
                        time: unix_now(),
                        report,
                    };
                    if updates.send(update).await.is_err() {
                        return;
                    }
                }
            }
            if now >= next {
                break;
            }
            tokio::time::sleep_until(next.min(now + check)).await;
        }
        let started = Instant::now();
        let mut sent = Vec::new();
        match scrape(&endpoint, timing.timeout, timing.limit).await {
            Ok(text) => {
                backoff.succeeded();
                staleness.heard(Instant::now().into_std());
                let time = unix_now();
                let exposition = parse(&name, &text);
                let (rows, unmapped) = mapper.rows(&name, &exposition, time);
                sent.push(Update::Scraped {
                    target: name.clone(),
                    samples: exposition.samples.len(),
                    rows: rows.len(),
                });
                for malformed in exposition.malformed.into_iter().chain(unmapped) {
                    let dropped = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    sent.push(Update::Malformed { malformed, dropped });
                }
                let report = facts.update(rows);
                if !report.is_empty() {
                    sent.push(Update::Report {
                        event: format!("prometheus: {name}"),
                        time,
                        report,
                    });
                }
                next = started + timing.interval;
            }
            Err(error) => {
                let retry_in = backoff.failed();
                sent.push(Update::Failed {
                    target: name.clone(),
                    reason: error.to_string(),
                    retry_in,
                });
                next = Instant::now() + retry_in;
            }
        }
        for update in sent {
            if updates.send(update).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{number, open, symbol};

    const NODE: &str = "# HELP node_load1 1m load average.\n\
# TYPE node_load1 gauge\n\
node_load1 0.71\n\
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.\n\
# TYPE node_memory_MemAvailable_bytes gauge\n\
node_memory_MemAvailable_bytes 1.2345678e+10\n\
# HELP node_hwmon_temp_celsius Hardware monitor for temperature (input)\n\
# TYPE node_hwmon_temp_celsius gauge\n\
node_hwmon_temp_celsius{chip=\"pci0000:00_0000:00:18_3\",sensor=\"temp1\"} 41.5\n\
node_hwmon_temp_celsius{chip=\"pci0000:00_0000:00:18_3\",sensor=\"temp3\"} 38\n";

    fn mapping(metric: &str, relation: &str, columns: &[&str]) -> Mapping {
        Mapping {
            metric: metric.into(),
            labels: BTreeMap::new(),
            above: None,
            below: None,
            relation: relation.into(),
            columns: columns
                .iter()
                .map(|text| Template::Text(text.to_string()))
                .collect(),
            hold: Hold::Level,
        }
    }

    fn sample(text: &str) -> Sample {
        let exposition = parse("t", text);
        assert!(
            exposition.malformed.is_empty(),
            "{:?}",
            exposition.malformed
        );
        exposition.samples.into_iter().next().unwrap()
    }

    #[test]
    fn comments_give_types_and_help() {
        let exposition = parse("pve", NODE);
        assert!(exposition.malformed.is_empty());
        assert_eq!(exposition.samples.len(), 4);
        assert_eq!(exposition.types["node_load1"], MetricType::Gauge);
        assert_eq!(exposition.help["node_load1"], "1m load average.");
        let escaped = parse(
            "t",
            "# HELP m a \\\\ b\\nc \\q\n# some comment\n#\n# TYPE h histogram\n",
        );
        assert!(escaped.malformed.is_empty());
        assert_eq!(escaped.help["m"], "a \\ b\nc \\q");
        assert_eq!(escaped.types["h"], MetricType::Histogram);
    }

    #[test]
    fn samples_with_labels_values_and_timestamps() {
        assert_eq!(
            sample("http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000"),
            Sample {
                name: "http_requests_total".into(),
                labels: vec![
                    ("method".into(), "post".into()),
                    ("code".into(), "200".into())
                ],
                value: 1027.0,
                timestamp_ms: Some(1395066363000),
            }
        );
        let escaped = sample(
            "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9",
        );
        assert_eq!(escaped.label("path"), Some("C:\\DIR\\FILE.TXT"));
        assert_eq!(
            escaped.label("error"),
            Some("Cannot find file:\n\"FILE.TXT\"")
        );
        assert_eq!(escaped.value, 1.458255915e9);
        let spaced = sample("  metric_without_timestamp_and_labels\t12.47  ");
        assert_eq!(spaced.value, 12.47);
        assert!(spaced.labels.is_empty());
        let trailing = sample("a{b=\"}{,\" , c = \"d\",} -3e-2");
        assert_eq!(
            trailing.labels,
            [("b".into(), "}{,".into()), ("c".into(), "d".into())]
        );
        assert_eq!(trailing.value, -0.03);
        assert!(sample("x{} 1").labels.is_empty());
        assert_eq!(
            sample("utf8{name=\"héllo ✓\"} 1").label("name"),
            Some("héllo ✓")
        );
    }

    #[test]
    fn special_values() {
        assert!(sample("a NaN").value.is_nan());
        assert_eq!(sample("a +Inf").value, f64::INFINITY);
        assert_eq!(sample("a -Inf").value, f64::NEG_INFINITY);
        assert_eq!(sample("a 1e3 -5").timestamp_ms, Some(-5));
        assert_eq!(
            sample("rpc_duration_seconds{quantile=\"0.99\"} 76656").value,
            76656.0
        );
    }

    #[test]
    fn a_bad_line_is_dropped_and_the_rest_kept() {
        let text = "good 1\n\
bad{a=\"x} 2\n\
no_value\n\
unit 12 W\n\
two{a=\"1\",a=\"2\"} 3\n\
escape{a=\"\\t\"} 4\n\
0starts_with_digit 5\n\
stamp 6 1.5\n\
unquoted{a=b} 7\n\
# TYPE good gauge\n\
# TYPE good counter\n\
# TYPE other kind\n\
also_good{x=\"y\"} 8\r\n";
        let exposition = parse("pve", text);
        let names: Vec<&str> = exposition.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["good", "also_good"]);
        let lines: Vec<&str> = exposition
            .malformed
            .iter()
            .map(|m| m.origin.as_str())
            .collect();
        assert_eq!(
            lines,
            [
                "pve line 2",
                "pve line 3",
                "pve line 4",
                "pve line 5",
                "pve line 6",
                "pve line 7",
                "pve line 8",
                "pve line 9",
                "pve line 11",
                "pve line 12"
            ]
        );
        assert_eq!(exposition.malformed[0].payload, "bad{a=\"x} 2");
        let reasons: Vec<&str> = exposition
            .malformed
            .iter()
            .map(|m| m.reason.as_str())
            .collect();
        assert!(reasons[1].contains("no value"), "{reasons:?}");
        assert!(reasons[2].contains("`W` is not a timestamp"), "{reasons:?}");
        assert!(reasons[3].contains("twice"), "{reasons:?}");
        assert!(reasons[4].contains("not an escape"), "{reasons:?}");
        assert!(reasons[6].contains("timestamp"), "{reasons:?}");
        assert!(reasons[8].contains("second TYPE"), "{reasons:?}");
        assert!(reasons[9].contains("not a metric type"), "{reasons:?}");
    }

    #[test]
    fn load_above_a_threshold_latches_last_active() {
        let mut active = mapping("node_load1", "last_active", &["$target", "$time"]);
        active.above = Some(0.5);
        active.hold = Hold::Latch;
        let mapper = Mapper::new(&[active]).unwrap();
        let mut facts = TargetFacts::default();
        let busy = parse("pve", "node_load1 0.71\n");
        let idle = parse("pve", "node_load1 0.02\n");
        let (rows, _) = mapper.rows("pve", &busy, 1000);
        let report = facts.update(rows);
        assert_eq!(
            report.insert["last_active"],
            [vec![symbol("pve"), number(1000)]]
        );
        assert!(report.retract.is_empty());
        // Idle: the last activity stays.
        let (rows, _) = mapper.rows("pve", &idle, 1015);
        assert!(facts.update(rows).is_empty());
        assert!(facts.expire().is_empty());
        let (rows, _) = mapper.rows("pve", &busy, 1030);
        let report = facts.update(rows);
        assert_eq!(
            report.retract["last_active"],
            [vec![symbol("pve"), number(1000)]]
        );
        assert_eq!(
            report.insert["last_active"],
            [vec![symbol("pve"), number(1030)]]
        );
    }

    #[test]
    fn level_rows_follow_the_scrapes_and_go_when_silent() {
        let mut ram = mapping(
            "node_memory_MemAvailable_bytes",
            "ram_free",
            &["$target", "$value/1073741824"],
        );
        ram.columns.push(Template::Number(1));
        let mut temperature = mapping(
            "node_hwmon_temp_celsius",
            "temperature",
            &["$target", "$label:sensor", "$value", "_"],
        );
        temperature.labels.insert("sensor".into(), "temp1".into());
        let mapper = Mapper::new(&[ram, temperature]).unwrap();
        let mut facts = TargetFacts::default();
        let (rows, malformed) = mapper.rows("pve", &parse("pve", NODE), 1000);
        assert!(malformed.is_empty());
        let report = facts.update(rows);
        assert_eq!(
            report.insert["ram_free"],
            [vec![symbol("pve"), number(11), number(1)]]
        );
        assert_eq!(
            report.insert["temperature"],
            [vec![symbol("pve"), symbol("temp1"), number(42), open()]]
        );
        // The same scrape again changes nothing; a new value replaces the old row.
        let (rows, _) = mapper.rows("pve", &parse("pve", NODE), 1015);
        assert!(facts.update(rows).is_empty());
        let warmer = NODE.replace("41.5", "55");
        let (rows, _) = mapper.rows("pve", &parse("pve", &warmer), 1030);
        let report = facts.update(rows);
        assert_eq!(
            report.retract["temperature"],
            [vec![symbol("pve"), symbol("temp1"), number(42), open()]]
        );
        assert_eq!(
            report.insert["temperature"],
            [vec![symbol("pve"), symbol("temp1"), number(55), open()]]
        );
        assert!(!report.insert.contains_key("ram_free"));
        // A metric that disappears takes its row along.
        let (rows, _) = mapper.rows("pve", &parse("pve", "node_load1 1\n"), 1045);
        let report = facts.update(rows);
        assert_eq!(report.retract.values().map(Vec::len).sum::<usize>(), 2);
        let (rows, _) = mapper.rows("pve", &parse("pve", NODE), 1060);
        facts.update(rows);
        let report = facts.expire();
        assert_eq!(report.retract.values().map(Vec::len).sum::<usize>(), 2);
        assert!(facts.expire().is_empty());
    }

    #[test]
    fn matchers_thresholds_and_unfillable_samples() {
        let mut hot = mapping("temp", "hot", &["$target", "$label:sensor"]);
        hot.above = Some(50.0);
        hot.below = Some(120.0);
        let mut unlabelled = mapping("temp", "plain", &["$value"]);
        unlabelled.labels.insert("sensor".into(), String::new());
        let value = mapping("temp", "value", &["$label:sensor", "$value*10"]);
        let mapper = Mapper::new(&[hot, unlabelled, value]).unwrap();
        let text = "temp{sensor=\"a\"} 60\ntemp{sensor=\"b\"} 40\ntemp{sensor=\"c\"} 130\ntemp 7\ntemp{sensor=\"d\"} NaN\n";
        let (rows, malformed) = mapper.rows("pve", &parse("pve", text), 0);
        let facts: Vec<(&str, Vec<Option<Value>>)> = rows
            .iter()
            .map(|row| (row.relation.as_str(), row.values.clone()))
            .collect();
        let sym = |text: &str| Some(Value::symbol(text));
        assert_eq!(
            facts,
            [
                ("hot", vec![sym("pve"), sym("a")]),
                ("value", vec![sym("a"), Some(Value::Number(600))]),
                ("value", vec![sym("b"), Some(Value::Number(400))]),
                ("value", vec![sym("c"), Some(Value::Number(1300))]),
                ("plain", vec![Some(Value::Number(7))]),
            ]
        );
        // `temp 7` has no sensor for `value`, and NaN fits no number column.
        assert_eq!(malformed.len(), 2);
        assert!(malformed[0].reason.contains("no label `sensor`"));
        assert!(malformed[1].reason.contains("NaN"));
    }

    #[test]
    fn a_sample_timestamp_is_its_time() {
        let mapper = Mapper::new(&[mapping("m", "seen", &["$time"])]).unwrap();
        let (rows, _) = mapper.rows("pve", &parse("pve", "m 1 1700000000999\n"), 5);
        assert_eq!(rows[0].values, [Some(Value::Number(1_700_000_000))]);
    }

    #[test]
    fn mappings_that_cannot_work_are_refused() {
        for columns in [
            &["$nope"][..],
            &["$value/0"],
            &["$value*-1"],
            &["$label:"],
            &[],
        ] {
            let error = Mapper::new(&[mapping("m", "r", columns)]).unwrap_err();
            assert!(matches!(error, PrometheusError::Config(_)));
        }
        assert!(Mapper::new(&[mapping("1m", "r", &["$value"])]).is_err());
        let config: PrometheusConfig = serde_json::from_str(
            r#"{"target": [{"name": "pve", "url": "http://10.0.0.2:9100/metrics"}],
                "mapping": [{"metric": "node_load1", "above": 0.5, "relation": "last_active",
                             "columns": ["$target", "$time", 3], "hold": "latch"}]}"#,
        )
        .unwrap();
        assert_eq!(config.mappings[0].columns[2], Template::Number(3));
        assert_eq!(config.mappings[0].hold, Hold::Latch);
        assert!(Mapper::new(&config.mappings).is_ok());
    }

    #[test]
    fn endpoints_are_plain_http() {
        let endpoint = Endpoint::parse("http://10.0.0.2:9100/metrics?x=1").unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("10.0.0.2", 9100));
        assert_eq!(endpoint.path, "/metrics?x=1");
        assert_eq!(endpoint.authority, "10.0.0.2:9100");
        let v6 = Endpoint::parse("http://[::1]/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 80));
        assert!(Endpoint::parse("https://pve:9100/metrics").is_err());
        assert!(Endpoint::parse("http://user:pw@pve/metrics").is_err());
        assert!(Endpoint::parse("pve:9100").is_err());
    }
}
