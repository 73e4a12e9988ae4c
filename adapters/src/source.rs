//! What every source shares: the facts it reports, the input it drops, and how it waits
//! between attempts to reach its peer.
//!
//! A source turns what it reads (a UPS's variables, an MQTT payload, a scrape) into a
//! [`Report`]: the facts it now holds true for its relations, as one transaction
//! ([`Report::entry`]). Input that cannot be read is a [`Malformed`]: counted and logged with
//! the offending payload by the caller, and dropped without touching any other fact.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use vigil_engine::Value;
use vigil_engine::trace::{Entry, Field};

/// The facts a source reports at one moment: rows to insert into (and retract from) input
/// relations. A keyed relation's insert replaces the row that holds its key, so a reading is
/// an insert; `_` ([`Field`] of `None`) stands for a stamp the engine sets.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub insert: BTreeMap<String, Vec<Vec<Field>>>,
    pub retract: BTreeMap<String, Vec<Vec<Field>>>,
}

impl Report {
    pub fn insert(&mut self, relation: &str, row: Vec<Field>) -> &mut Report {
        self.insert.entry(relation.into()).or_default().push(row);
        self
    }

    pub fn retract(&mut self, relation: &str, row: Vec<Field>) -> &mut Report {
        self.retract.entry(relation.into()).or_default().push(row);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.retract.is_empty()
    }

    /// The report as a transaction of the daemon, with its event label and, if given, its
    /// event time.
    pub fn entry(&self, event: &str, time: Option<i64>) -> Entry {
        Entry {
            time,
            event: Some(event.to_string()),
            insert: self.insert.clone(),
            retract: self.retract.clone(),
            ..Entry::default()
        }
    }
}

/// A symbol column.
pub fn symbol(text: &str) -> Field {
    Field(Some(Value::symbol(text)))
}

/// A number column.
pub fn number(value: i64) -> Field {
    Field(Some(Value::Number(value)))
}

/// A column the engine fills (a stamp), or that a retraction by key leaves open.
pub fn open() -> Field {
    Field(None)
}

/// Input a source could not read: what it was and why. The caller counts it, logs it with
/// the payload, and drops it; nothing else is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Where it came from: a topic, a UPS variable, a scrape target.
    pub origin: String,
    /// The offending payload, cut to a readable length.
    pub payload: String,
    pub reason: String,
}

impl Malformed {
    /// Longest payload kept, in bytes.
    pub const KEPT: usize = 512;

    pub fn new(origin: impl Into<String>, payload: &[u8], reason: impl Into<String>) -> Malformed {
        let text = String::from_utf8_lossy(payload);
        let payload = if text.len() > Malformed::KEPT {
            let mut end = Malformed::KEPT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}... ({} bytes)", &text[..end], payload.len())
        } else {
            text.into_owned()
        };
        Malformed {
            origin: origin.into(),
            payload,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (payload: {:?})",
            self.origin, self.reason, self.payload
        )
    }
}

impl std::error::Error for Malformed {}

/// Exponential backoff between attempts: the first wait, doubled after each failure up to
/// the cap, back to the first after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            next: first,
            failures: 0,
        }
    }

    /// The wait before the next attempt, after a failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.failures += 1;
        wait
    }

    /// A success: the next failure waits the first interval again.
    pub fn succeeded(&mut self) {
        self.next = self.first;
        self.failures = 0;
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When a source's facts go stale: after `after` without a reading, the source retracts what
/// it reported rather than keep an old truth.
#[derive(Debug, Clone)]
pub struct Staleness {
    after: Duration,
    last: Option<std::time::Instant>,
    stale: bool,
}

impl Staleness {
    pub fn new(after: Duration) -> Staleness {
        Staleness {
            after,
            last: None,
            stale: false,
        }
    }

    /// A reading arrived at `now`.
    pub fn heard(&mut self, now: std::time::Instant) {
        self.last = Some(now);
        self.stale = false;
    }

    /// Whether the facts turned stale at `now`: true once per silence, when it passes the
    /// limit (then the caller retracts them).
    pub fn turned_stale(&mut self, now: std::time::Instant) -> bool {
        let silent = self
            .last
            .is_some_and(|last| now.duration_since(last) >= self.after);
        if silent && !self.stale {
            self.stale = true;
            return true;
        }
        false
    }
}

/// A task that is aborted when this is dropped: a connection driven beside what uses it,
/// stopped with it.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a one-shot GET failed, for the caller to word in its own errors.
pub(crate) enum GetFailure {
    /// No TCP connection.
    Connect(String),
    /// The HTTP exchange failed: the handshake, the request or the body.
    Http(String),
    /// The body is over the caller's limit.
    TooLarge,
}

/// The answer to a one-shot GET: its status, and its body still to read, on the connection
/// that is driven until the answer is dropped.
pub(crate) struct Answer {
    pub(crate) status: hyper::StatusCode,
    body: hyper::body::Incoming,
    _connection: AbortOnDrop,
}

impl Answer {
    /// Reads the body, refusing one over `limit` bytes.
    pub(crate) async fn body(self, limit: usize) -> Result<hyper::body::Bytes, GetFailure> {
        use http_body_util::BodyExt;
        let collected = http_body_util::Limited::new(self.body, limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    GetFailure::TooLarge
                } else {
                    GetFailure::Http(error.to_string())
                }
            })?;
        Ok(collected.to_bytes())
    }
}

/// Sends `GET path` with `Accept: accept` on a connection of its own to `host` and `port`
/// (`authority` goes into `Host`), and answers once the status has arrived.
pub(crate) async fn get_once(
    (host, port, authority): (&str, u16, &str),
    path: &str,
    accept: &str,
) -> Result<Answer, GetFailure> {
    use hyper::header::{ACCEPT, HOST, USER_AGENT};
    let http = |error: &dyn fmt::Display| GetFailure::Http(error.to_string());
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|error| GetFailure::Connect(error.to_string()))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| http(&error))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = hyper::Request::get(path)
        .header(HOST, authority)
        .header(ACCEPT, accept)
        .header(USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|error| http(&error))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| http(&error))?;
    Ok(Answer {
        status: response.status(),
        body: response.into_body(),
        _connection: connection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(backoff.failures(), 5);
        backoff.succeeded();
        assert_eq!(backoff.failed().as_millis(), 100);
    }

    #[test]
    fn facts_turn_stale_once_per_silence() {
        let start = Instant::now();
        let mut staleness = Staleness::new(Duration::from_secs(30));
        assert!(!staleness.turned_stale(start + Duration::from_secs(100)));
        staleness.heard(start);
        assert!(!staleness.turned_stale(start + Duration::from_secs(29)));
        assert!(staleness.turned_stale(start + Duration::from_secs(30)));
        assert!(!staleness.turned_stale(start + Duration::from_secs(60)));
        staleness.heard(start + Duration::from_secs(61));
        assert!(staleness.turned_stale(start + Duration::from_secs(91)));
    }

    #[test]
    fn a_long_payload_is_cut_at_a_character() {
        let payload = "é".repeat(400);
        let malformed = Malformed::new("topic", payload.as_bytes(), "not JSON");
        assert!(malformed.payload.ends_with("... (800 bytes)"));
        assert!(malformed.to_string().starts_with("topic: not JSON"));
    }

    #[test]
    fn a_report_is_a_transaction() {
        let mut report = Report::default();
        report.insert("ups_battery", vec![symbol("ups"), number(80), number(1200)]);
        report.retract("running", vec![symbol("photos"), open()]);
        let entry = report.entry("nut: ups", Some(60));
        assert_eq!(entry.time, Some(60));
        assert_eq!(entry.insert["ups_battery"].len(), 1);
        assert_eq!(entry.retract["running"][0][1], open());
    }
}

/// A plain `http://` URL, split for a client that connects by host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    pub uri: hyper::Uri,
}

impl HttpUrl {
    /// Parses `url`; the error says what is wrong with it, for the caller to prefix with
    /// where the URL came from. `refusal` is the message for a scheme other than `http`.
    pub fn parse(url: &str, refusal: &str) -> Result<HttpUrl, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
        if uri.scheme_str() != Some("http") {
            return Err(refusal.to_string());
        }
        let authority = uri.authority().ok_or("no host")?.clone();
        if authority.as_str().contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("no host".into());
        }
        Ok(HttpUrl {
            host: host.into(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().into(),
            uri,
        })
    }

    /// `host:port`, to connect to (an IPv6 host in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
