//! The UPS, through NUT: a client of `upsd`'s network protocol, and the poller that turns a
//! UPS's variables into the policy's facts (rules/ups.dl).
//!
//! NUT splits the work in two: a *driver* talks to the UPS over USB, serial or SNMP, and
//! `upsd` serves what the drivers know over TCP (port 3493) to any number of clients. The
//! protocol is lines of words, one request and one reply at a time; a word with spaces is
//! quoted, with `\"` and `\\` escaped inside:
//!
//! ```text
//! LIST VAR ups                        BEGIN LIST VAR ups
//!                                     VAR ups battery.charge "80"
//!                                     VAR ups ups.status "OB DISCHRG"
//!                                     END LIST VAR ups
//! GET VAR ups battery.runtime         VAR ups battery.runtime "1200"
//! GET VAR ups nope                    ERR VAR-NOT-SUPPORTED
//! ```
//!
//! Reading needs no account. `USERNAME`, `PASSWORD` and `LOGIN ups` are sent only when a
//! [`Login`] is configured; upsd checks the pair at `LOGIN` (`ERR ACCESS-DENIED`, reported as
//! [`NutError::Login`]). Caveat: a client that logs in is counted as a secondary monitor of the
//! UPS (`NUMLOGINS`), and during a forced shutdown the primary `upsmon` waits (up to its
//! `HOSTSYNC`) for such clients to disconnect; so log in only where upsd demands it.
//!
//! `ups.status` is not a value but a set of tokens: `OL` (on line power), `OB` (on battery),
//! `LB` (battery low), `CHRG`, `DISCHRG`, `RB` (replace the battery), `BYPASS`, `OVER`,
//! `TRIM`, `BOOST`, `FSD` (forced shutdown) and more; drivers add their own, so an unknown
//! token is kept as [`Token::Other`], never an error. The policy needs two facts:
//!
//! - `ups_source(ups, source, since)`: `"line"` when `OL`, `"battery"` when `OB`, keyed by
//!   the UPS; `since` is the stamp the engine fills when the source changes (so a reading is
//!   inserted with `_` there);
//! - `ups_battery(ups, charge_pct, runtime_seconds)`: `battery.charge` and
//!   `battery.runtime`, keyed by the UPS.
//!
//! `ups.load` and `ups.realpower` are read and checked too ([`Reading`]), but no relation of
//! the policy takes them yet.
//!
//! The [`Poller`] keeps one connection, polls `LIST VAR` every interval and reports only what
//! changed since its last report ([`Facts`]); after a failure it reconnects with an
//! exponential [`Backoff`]. A value it cannot read (a charge of `abc` or of 250, a negative
//! runtime, a line that is not the protocol) is a [`Malformed`], dropped without touching any
//! other fact: a battery row is written only from a charge and a runtime that are both good,
//! never from a fresh value and a stale one. A fact that nothing has confirmed for the
//! staleness limit (upsd gone, the driver lost, a status with neither `OL` nor `OB`) is
//! retracted rather than kept as an old truth.

use crate::source::{Backoff, Malformed, Report, Staleness, number, open, symbol};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use vigil_engine::trace::Entry;

/// upsd's port, registered with IANA.
pub const DEFAULT_PORT: u16 = 3493;

/// The longest reply line read, in bytes: upsd's values are a few hundred bytes at most, and
/// a peer that sends more is not upsd.
pub const LONGEST_LINE: usize = 16 * 1024;

/// What went wrong talking to upsd. Only [`NutError::Refused`] leaves the connection usable.
#[derive(Debug, thiserror::Error)]
pub enum NutError {
    #[error("cannot connect to upsd at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("upsd at {address} did not answer `{command}` within {timeout:?}")]
    Timeout {
        address: String,
        command: String,
        timeout: Duration,
    },
    #[error("the connection to upsd at {address} failed: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("upsd at {address} closed the connection")]
    Closed { address: String },
    #[error("upsd at {address} refused `{command}`: {code}{hint}", hint = hint(code))]
    Refused {
        address: String,
        command: String,
        code: String,
    },
    #[error(
        "upsd at {address} refused to log `{username}` in to UPS `{ups}`: {code} (hint: check the username and password against upsd.users; the user needs `upsmon` rights)"
    )]
    Login {
        address: String,
        ups: String,
        username: String,
        code: String,
    },
    #[error("upsd at {address} has no UPS `{ups}` (it has: {known})")]
    UnknownUps {
        address: String,
        ups: String,
        known: String,
    },
    #[error("upsd at {address} answered `{command}` with {line:?}, which is not the protocol")]
    Protocol {
        address: String,
        command: String,
        line: String,
    },
    #[error("{what} cannot be sent to upsd: it holds a line break")]
    Argument { what: String },
}

impl NutError {
    /// Whether upsd answered with an error and the connection can be used again.
    pub fn is_refusal(&self) -> bool {
        matches!(self, NutError::Refused { .. })
    }
}

/// A word of advice for the error codes that a working setup meets.
fn hint(code: &str) -> &'static str {
    match code {
        "DATA-STALE" => {
            " (hint: the driver has not updated the UPS's data lately; is it connected to the UPS?)"
        }
        "DRIVER-NOT-CONNECTED" => " (hint: upsd cannot reach the UPS's driver; is it running?)",
        "UNKNOWN-UPS" => " (hint: the UPS name must match a section of ups.conf)",
        "ACCESS-DENIED" => " (hint: check upsd.users and the LISTEN lines of upsd.conf)",
        _ => "",
    }
}

/// An account on upsd, for servers that require one.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// The password never shows in logs.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// Splits a protocol line into words: separated by spaces or tabs; a word may be quoted, and
/// `\` escapes the next character (so `\"` and `\\` inside quotes).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut characters = line.chars().peekable();
    loop {
        while characters.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(first) = characters.next() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' {
            loop {
                match characters.next() {
                    None => return Err("a quoted word is not closed".into()),
                    Some('"') => break,
                    Some('\\') => match characters.next() {
                        Some(escaped) => word.push(escaped),
                        None => return Err("the line ends in an escape".into()),
                    },
                    Some(character) => word.push(character),
                }
            }
            if characters.peek().is_some_and(|c| *c != ' ' && *c != '\t') {
                return Err("a closing quote is followed by more text".into());
            }
        } else {
            let mut next = Some(first);
            while let Some(character) = next {
                match character {
                    ' ' | '\t' => break,
                    '"' => return Err("a quote opens inside a word".into()),
                    '\\' => match characters.next() {
                        Some(escaped) => word.push(escaped),
                        None => return Err("the line ends in an escape".into()),
                    },
                    _ => word.push(character),
                }
                next = characters.next();
            }
        }
        words.push(word);
    }
}

/// A word as a request carries it: quoted and escaped if it must be. A line break cannot be
/// carried at all (it would end the request and start another).
fn quote(word: &str, what: &str) -> Result<String, NutError> {
    if word.contains(['\n', '\r']) {
        return Err(NutError::Argument { what: what.into() });
    }
    if !word.is_empty() && !word.contains([' ', '\t', '"', '\\']) {
        return Ok(word.to_string());
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for character in word.chars() {
        if character == '"' || character == '\\' {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    Ok(quoted)
}

/// A connection to upsd. Every request waits at most the timeout for its whole reply; after a
/// timeout or any error but [`NutError::Refused`], the connection is out of step and must be
/// dropped.
#[derive(Debug)]
pub struct Client {
    address: String,
    timeout: Duration,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to upsd at `address` (`host:port`), waiting at most `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Client, NutError> {
        let connect = |source| NutError::Connect {
            address: address.to_string(),
            source,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(stream) => stream.map_err(connect)?,
            Err(_) => {
                return Err(connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )));
            }
        };
        stream.set_nodelay(true).map_err(connect)?;
        let (reader, writer) = stream.into_split();
        Ok(Client {
            address: address.to_string(),
            timeout,
            reader: BufReader::new(reader),
            writer,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Logs in to `ups`: `USERNAME`, `PASSWORD`, `LOGIN`. Any refusal is a
    /// [`NutError::Login`].
    pub async fn login(&mut self, ups: &str, login: &Login) -> Result<(), NutError> {
        let requests = [
            (
                format!("USERNAME {}", quote(&login.username, "the username")?),
                "USERNAME",
            ),
            (
                format!("PASSWORD {}", quote(&login.password, "the password")?),
                "PASSWORD (hidden)",
            ),
            (format!("LOGIN {}", quote(ups, "the UPS name")?), "LOGIN"),
        ];
        for (request, shown) in requests {
            match self.ok(&request, shown).await {
                Ok(()) => {}
                Err(NutError::Refused { code, .. }) => {
                    return Err(NutError::Login {
                        address: self.address.clone(),
                        ups: ups.to_string(),
                        username: login.username.clone(),
                        code,
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The UPSes upsd serves, with their descriptions.
    pub async fn list_ups(&mut self) -> Result<Vec<(String, String)>, NutError> {
        let (rows, _) = self.list(&["UPS"], "nut").await?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, words)| match <[String; 3]>::try_from(words) {
                Ok([kind, name, description]) if kind == "UPS" => Some((name, description)),
                _ => None,
            })
            .collect())
    }

    /// Every variable of `ups`, and the lines of the reply that could not be read.
    pub async fn list_var(
        &mut self,
        ups: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<Malformed>), NutError> {
        let origin = format!("nut {ups}");
        let (rows, mut malformed) = self.list(&["VAR", ups], &origin).await?;
        let mut variables = BTreeMap::new();
        for (line, words) in rows {
            let count = words.len();
            match <[String; 4]>::try_from(words) {
                Ok([kind, name, variable, value]) if kind == "VAR" && name == ups => {
                    variables.insert(variable, value);
                }
                Ok(_) => malformed.push(Malformed::new(
                    origin.as_str(),
                    line.as_bytes(),
                    "not a `VAR ups name \"value\"` line of this UPS",
                )),
                Err(_) => malformed.push(Malformed::new(
                    origin.as_str(),
                    line.as_bytes(),
                    format!("a variable line has 4 words, not {count}"),
                )),
            }
        }
        Ok((variables, malformed))
    }

    /// One variable of `ups`.
    pub async fn get_var(&mut self, ups: &str, variable: &str) -> Result<String, NutError> {
        let request = format!(
            "GET VAR {} {}",
            quote(ups, "the UPS name")?,
            quote(variable, "the variable name")?
        );
        let line = self.request(&request, &request).await?;
        match split_words(&line).as_deref() {
            Ok([kind, name, got, value]) if kind == "VAR" && name == ups && got == variable => {
                Ok(value.clone())
            }
            _ => Err(self.protocol(&request, &line)),
        }
    }

    /// Says goodbye and closes the connection.
    pub async fn logout(mut self) -> Result<(), NutError> {
        self.ok("LOGOUT", "LOGOUT").await
    }

    /// Sends a request whose answer is `OK` (upsd may add words, as in `OK Goodbye`).
    async fn ok(&mut self, request: &str, shown: &str) -> Result<(), NutError> {
        let line = self.request(request, shown).await?;
        if line == "OK" || line.starts_with("OK ") {
            Ok(())
        } else {
            Err(self.protocol(shown, &line))
        }
    }

    /// Sends one request and reads the first line of its reply; `ERR` is a refusal.
    /// `shown` is the request as errors may print it (no password).
    async fn request(&mut self, request: &str, shown: &str) -> Result<String, NutError> {
        let timeout = self.timeout;
        let exchange = async {
            self.send(request).await?;
            self.read_line().await
        };
        let line = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| self.timed_out(shown))??;
        self.refusal(&line, shown)?;
        Ok(line)
    }

    /// `LIST what...`: the lines between `BEGIN LIST what...` and `END LIST what...`, each
    /// with its words, and the lines that are not words (origin `origin`).
    async fn list(
        &mut self,
        what: &[&str],
        origin: &str,
    ) -> Result<(Vec<(String, Vec<String>)>, Vec<Malformed>), NutError> {
        let mut request = String::from("LIST");
        for word in what {
            request.push(' ');
            request.push_str(&quote(word, "a LIST argument")?);
        }
        let timeout = self.timeout;
        let shown = request.clone();
        let exchange = async {
            self.send(&request).await?;
            let first = self.read_line().await?;
            self.refusal(&first, &request)?;
            // `BEGIN LIST what...` or `END LIST what...`.
            let frames = |words: &[String], edge: &str| match words {
                [first, list, rest @ ..] => first == edge && list == "LIST" && rest == what,
                _ => false,
            };
            if !split_words(&first).is_ok_and(|words| frames(&words, "BEGIN")) {
                return Err(self.protocol(&request, &first));
            }
            let mut rows = Vec::new();
            let mut malformed = Vec::new();
            loop {
                let line = self.read_line().await?;
                match split_words(&line) {
                    Ok(words) if frames(&words, "END") => return Ok((rows, malformed)),
                    Ok(words) => rows.push((line, words)),
                    Err(reason) => malformed.push(Malformed::new(origin, line.as_bytes(), reason)),
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| self.timed_out(&shown))?
    }

    async fn send(&mut self, request: &str) -> Result<(), NutError> {
        let mut line = Vec::with_capacity(request.len() + 1);
        line.extend_from_slice(request.as_bytes());
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|source| NutError::Io {
                address: self.address.clone(),
                source,
            })
    }

    /// One line, without its `\n` (or `\r\n`), at most [`LONGEST_LINE`] bytes.
    async fn read_line(&mut self) -> Result<String, NutError> {
        let mut line = Vec::new();
        loop {
            let buffer = self
                .reader
                .fill_buf()
                .await
                .map_err(|source| NutError::Io {
                    address: self.address.clone(),
                    source,
                })?;
            if buffer.is_empty() {
                return Err(NutError::Closed {
                    address: self.address.clone(),
                });
            }
            let (taken, end) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(position) => (position + 1, true),
                None => (buffer.len(), false),
            };
            line.extend_from_slice(&buffer[..taken]);
            self.reader.consume(taken);
            if line.len() > LONGEST_LINE + 1 {
                return Err(NutError::Protocol {
                    address: self.address.clone(),
                    command: "(a reply)".into(),
                    line: format!("a line longer than {LONGEST_LINE} bytes"),
                });
            }
            if end {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    fn refusal(&self, line: &str, shown: &str) -> Result<(), NutError> {
        match line.strip_prefix("ERR") {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => Err(NutError::Refused {
                address: self.address.clone(),
                command: shown.to_string(),
                code: rest.split_whitespace().next().unwrap_or("").to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn protocol(&self, shown: &str, line: &str) -> NutError {
        NutError::Protocol {
            address: self.address.clone(),
            command: shown.to_string(),
            line: Malformed::new("", line.as_bytes(), "").payload,
        }
    }

    fn timed_out(&self, shown: &str) -> NutError {
        NutError::Timeout {
            address: self.address.clone(),
            command: shown.to_string(),
            timeout: self.timeout,
        }
    }
}

/// One token of `ups.status`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Token {
    /// `OL`: on line power.
    Online,
    /// `OB`: on battery.
    OnBattery,
    /// `LB`: the battery is low.
    LowBattery,
    /// `HB`: the battery is high.
    HighBattery,
    /// `RB`: the battery needs replacing.
    ReplaceBattery,
    /// `CHRG`: the battery is charging.
    Charging,
    /// `DISCHRG`: the battery is discharging.
    Discharging,
    /// `BYPASS`: the load is fed around the inverter, without battery protection.
    Bypass,
    /// `CAL`: runtime calibration.
    Calibrating,
    /// `OFF`: the UPS does not feed its load.
    Off,
    /// `OVER`: overloaded.
    Overloaded,
    /// `TRIM`: lowering a high input voltage.
    Trim,
    /// `BOOST`: raising a low input voltage.
    Boost,
    /// `FSD`: a forced shutdown is under way.
    ForcedShutdown,
    /// `ALARM`: see `ups.alarm`.
    Alarm,
    /// `TEST`: a test is running.
    Test,
    /// Any other token, kept as written.
    Other(String),
}

impl Token {
    pub fn parse(text: &str) -> Token {
        match text {
            "OL" => Token::Online,
            "OB" => Token::OnBattery,
            "LB" => Token::LowBattery,
            "HB" => Token::HighBattery,
            "RB" => Token::ReplaceBattery,
            "CHRG" => Token::Charging,
            "DISCHRG" => Token::Discharging,
            "BYPASS" => Token::Bypass,
            "CAL" => Token::Calibrating,
            "OFF" => Token::Off,
            "OVER" => Token::Overloaded,
            "TRIM" => Token::Trim,
            "BOOST" => Token::Boost,
            "FSD" => Token::ForcedShutdown,
            "ALARM" => Token::Alarm,
            "TEST" => Token::Test,
            other => Token::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Token::Online => "OL",
            Token::OnBattery => "OB",
            Token::LowBattery => "LB",
            Token::HighBattery => "HB",
            Token::ReplaceBattery => "RB",
            Token::Charging => "CHRG",
            Token::Discharging => "DISCHRG",
            Token::Bypass => "BYPASS",
            Token::Calibrating => "CAL",
            Token::Off => "OFF",
            Token::Overloaded => "OVER",
            Token::Trim => "TRIM",
            Token::Boost => "BOOST",
            Token::ForcedShutdown => "FSD",
            Token::Alarm => "ALARM",
            Token::Test => "TEST",
            Token::Other(text) => text,
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the UPS takes its power from: the `source` column of `ups_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerSource {
    Line,
    Battery,
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Line => "line",
            PowerSource::Battery => "battery",
        }
    }
}

/// `ups.status`: its tokens, in the order written, each once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status(Vec<Token>);

impl Status {
    /// Reads the tokens. Unknown tokens are kept; a status is malformed only if it is empty,
    /// holds a token of other characters than letters, digits, `-` and `_`, or says both `OL`
    /// and `OB`.
    pub fn parse(text: &str) -> Result<Status, String> {
        let mut tokens: Vec<Token> = Vec::new();
        for word in text.split_ascii_whitespace() {
            if !word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("`{word}` is not a status token"));
            }
            let token = Token::parse(word);
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        if tokens.is_empty() {
            return Err("the status is empty".into());
        }
        if tokens.contains(&Token::Online) && tokens.contains(&Token::OnBattery) {
            return Err("the status says both OL and OB".into());
        }
        Ok(Status(tokens))
    }

    pub fn tokens(&self) -> &[Token] {
        &self.0
    }

    pub fn has(&self, token: &Token) -> bool {
        self.0.contains(token)
    }

    /// `OL` is line power, `OB` battery; a status with neither (`OFF`, upsd's `WAIT` before
    /// the driver has spoken) says nothing about the source.
    pub fn source(&self) -> Option<PowerSource> {
        if self.has(&Token::Online) {
            Some(PowerSource::Line)
        } else if self.has(&Token::OnBattery) {
            Some(PowerSource::Battery)
        } else {
            None
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, token) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            f.write_str(token.as_str())?;
        }
        Ok(())
    }
}

/// What one poll read of a UPS: each value that was present and readable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reading {
    /// `ups.status`.
    pub status: Option<Status>,
    /// `battery.charge`, 0 to 100 %, rounded.
    pub charge_pct: Option<i64>,
    /// `battery.runtime`, seconds, rounded.
    pub runtime_seconds: Option<i64>,
    /// `ups.load`, % of the nominal power (over 100 when overloaded).
    pub load_pct: Option<i64>,
    /// `ups.realpower`, W.
    pub realpower_watts: Option<i64>,
}

/// The highest load taken as a reading: an overloaded UPS shows more than 100 %, but not ten
/// times its rating.
const HIGHEST_LOAD_PCT: f64 = 1000.0;
/// The highest real power taken as a reading, W: far more than a house's UPS delivers.
const HIGHEST_REALPOWER_WATTS: f64 = 1_000_000.0;
/// The longest runtime taken as a reading, s (about 68 years): UPSes report odd but large
/// runtimes when lightly loaded, and those are still readings.
const LONGEST_RUNTIME_SECONDS: f64 = i32::MAX as f64;

impl Reading {
    /// Reads the variables of `ups` that the policy needs. Absent variables are `None`; a
    /// present one that cannot be read is `None` and a [`Malformed`] (origin
    /// `nut UPS VARIABLE`).
    pub fn from_variables(
        ups: &str,
        variables: &BTreeMap<String, String>,
    ) -> (Reading, Vec<Malformed>) {
        let mut malformed = Vec::new();
        let mut read = |variable: &str, parse: &dyn Fn(&str) -> Result<i64, String>| {
            let text = variables.get(variable)?;
            parse(text)
                .map_err(|reason| {
                    malformed.push(Malformed::new(
                        format!("nut {ups} {variable}"),
                        text.as_bytes(),
                        reason,
                    ))
                })
                .ok()
        };
        let charge_pct = read("battery.charge", &|text| quantity(text, 100.0, "%"));
        let runtime_seconds = read("battery.runtime", &|text| {
            quantity(text, LONGEST_RUNTIME_SECONDS, "s")
        });
        let load_pct = read("ups.load", &|text| quantity(text, HIGHEST_LOAD_PCT, "%"));
        let realpower_watts = read("ups.realpower", &|text| {
            quantity(text, HIGHEST_REALPOWER_WATTS, "W")
        });
        let status = variables
            .get("ups.status")
            .and_then(|text| match Status::parse(text) {
                Ok(status) => Some(status),
                Err(reason) => {
                    malformed.push(Malformed::new(
                        format!("nut {ups} ups.status"),
                        text.as_bytes(),
                        reason,
                    ));
                    None
                }
            });
        let reading = Reading {
            status,
            charge_pct,
            runtime_seconds,
            load_pct,
            realpower_watts,
        };
        (reading, malformed)
    }

    /// The battery row, when both its values were read.
    pub fn battery(&self) -> Option<(i64, i64)> {
        self.charge_pct.zip(self.runtime_seconds)
    }
}

/// A non-negative decimal number up to `highest`, rounded to an integer.
fn quantity(text: &str, highest: f64, unit: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let value: f64 = trimmed
        .parse()
        .map_err(|_| format!("`{trimmed}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{trimmed}` is not a finite number"));
    }
    if value < 0.0 {
        return Err(format!("{trimmed} {unit} is negative"));
    }
    if value > highest {
        return Err(format!("{trimmed} {unit} is over {highest} {unit}"));
    }
    Ok(value.round() as i64)
}

/// The facts of one UPS as this source last reported them, so that a poll reports only what
/// changed, and each fact's staleness. Time is given by the caller.
#[derive(Debug, Clone)]
pub struct Facts {
    ups: String,
    source: Option<PowerSource>,
    battery: Option<(i64, i64)>,
    source_staleness: Staleness,
    battery_staleness: Staleness,
}

impl Facts {
    /// Nothing reported yet. The silence counts from `now`: facts that an earlier run left in
    /// the engine are retracted if no reading confirms them within `stale_after`.
    pub fn new(ups: &str, stale_after: Duration, now: Instant) -> Facts {
        let mut source_staleness = Staleness::new(stale_after);
        let mut battery_staleness = Staleness::new(stale_after);
        source_staleness.heard(now);
        battery_staleness.heard(now);
        Facts {
            ups: ups.to_string(),
            source: None,
            battery: None,
            source_staleness,
            battery_staleness,
        }
    }

    pub fn source(&self) -> Option<PowerSource> {
        self.source
    }

    pub fn battery(&self) -> Option<(i64, i64)> {
        self.battery
    }

    /// A reading at `now`: inserts the facts that differ from the last report, and retracts
    /// those that went unconfirmed for too long.
    pub fn update(&mut self, reading: &Reading, now: Instant) -> Report {
        let mut report = Report::default();
        let ups = symbol(&self.ups);
        if let Some(source) = reading.status.as_ref().and_then(Status::source) {
            self.source_staleness.heard(now);
            if self.source != Some(source) {
                self.source = Some(source);
                report.insert(
                    "ups_source",
                    vec![ups.clone(), symbol(source.as_str()), open()],
                );
            }
        }
        if let Some(battery) = reading.battery() {
            self.battery_staleness.heard(now);
            if self.battery != Some(battery) {
                self.battery = Some(battery);
                report.insert(
                    "ups_battery",
                    vec![ups.clone(), number(battery.0), number(battery.1)],
                );
            }
        }
        if self.source_staleness.turned_stale(now) {
            self.source = None;
            report.retract("ups_source", vec![ups.clone(), open(), open()]);
        }
        if self.battery_staleness.turned_stale(now) {
            self.battery = None;
            report.retract("ups_battery", vec![ups, open(), open()]);
        }
        report
    }

    /// No reading at `now` (upsd unreachable or refusing): retracts what went stale.
    pub fn silence(&mut self, now: Instant) -> Report {
        self.update(&Reading::default(), now)
    }
}

/// Where and how to poll one UPS.
#[derive(Debug, Clone)]
pub struct Config {
    /// upsd's `host:port`.
    pub address: String,
    /// The UPS's name on upsd (its section in ups.conf), also the `ups` column of the facts.
    pub ups: String,
    pub login: Option<Login>,
    /// The longest wait for a connection or for a whole reply.
    pub timeout: Duration,
    /// Between two polls.
    pub interval: Duration,
    /// A fact unconfirmed for this long is retracted.
    pub stale_after: Duration,
    /// The first wait after a failure; it doubles up to `retry_cap`.
    pub retry_first: Duration,
    pub retry_cap: Duration,
}

impl Config {
    /// Polls every 5 s, waits 5 s for a reply, retracts after 60 s of silence, retries after
    /// 1 s doubling up to 60 s.
    pub fn new(address: &str, ups: &str) -> Config {
        Config {
            address: address.to_string(),
            ups: ups.to_string(),
            login: None,
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            retry_first: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
        }
    }
}

/// The outcome of one poll.
#[derive(Debug)]
pub struct Poll {
    pub ups: String,
    /// What the UPS said, or why it could not be read.
    pub reading: Result<Reading, NutError>,
    /// The facts that changed, as one transaction; empty when nothing did.
    pub report: Report,
    /// Input dropped: values or lines that could not be read.
    pub malformed: Vec<Malformed>,
    /// Whether anything here is news: facts changed, input was dropped, an error, or the
    /// status tokens changed (`LB`, say, which no fact carries).
    pub news: bool,
    /// The wait before the next poll: the interval, or the backoff after a failure.
    pub wait: Duration,
}

impl Poll {
    /// The report as a transaction, labelled with the UPS and its status
    /// (`nut: ups OB DISCHRG`).
    pub fn entry(&self, time: Option<i64>) -> Entry {
        let status = match &self.reading {
            Ok(Reading {
                status: Some(status),
                ..
            }) => status.to_string(),
            Ok(_) => "no status".to_string(),
            Err(_) => "silent".to_string(),
        };
        self.report
            .entry(&format!("nut: {} {status}", self.ups), time)
    }
}

/// Polls one UPS over a kept connection (see the module's documentation).
#[derive(Debug)]
pub struct Poller {
    config: Config,
    client: Option<Client>,
    backoff: Backoff,
    facts: Facts,
    status: Option<Status>,
}

impl Poller {
    pub fn new(config: Config) -> Poller {
        Poller {
            backoff: Backoff::new(config.retry_first, config.retry_cap),
            facts: Facts::new(&config.ups, config.stale_after, Instant::now()),
            client: None,
            status: None,
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The facts as last reported.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Connects if needed, reads the UPS, and compares with what was reported.
    pub async fn poll(&mut self) -> Poll {
        let result = self.read().await;
        let now = Instant::now();
        match result {
            Ok((reading, malformed)) => {
                self.backoff.succeeded();
                let report = self.facts.update(&reading, now);
                let status_changed = reading.status != self.status;
                self.status = reading.status.clone();
                Poll {
                    ups: self.config.ups.clone(),
                    news: !report.is_empty() || !malformed.is_empty() || status_changed,
                    reading: Ok(reading),
                    report,
                    malformed,
                    wait: self.config.interval,
                }
            }
            Err(error) => {
                if !error.is_refusal() {
                    self.client = None;
                }
                self.status = None;
                // Never wait so long that a stale fact outlives its limit by more than the
                // limit itself.
                let wait = self.backoff.failed().min(self.config.stale_after);
                Poll {
                    ups: self.config.ups.clone(),
                    report: self.facts.silence(now),
                    reading: Err(error),
                    malformed: Vec::new(),
                    news: true,
                    wait,
                }
            }
        }
    }

    async fn read(&mut self) -> Result<(Reading, Vec<Malformed>), NutError> {
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(connect(&self.config).await?),
        };
        let (variables, mut malformed) = client.list_var(&self.config.ups).await?;
        let (reading, unreadable) = Reading::from_variables(&self.config.ups, &variables);
        malformed.extend(unreadable);
        Ok((reading, malformed))
    }

    /// Polls until `updates` is closed, sending every poll that has news, then logs out.
    pub async fn run(mut self, updates: tokio::sync::mpsc::Sender<Poll>) {
        loop {
            let poll = self.poll().await;
            let wait = poll.wait;
            if poll.news && updates.send(poll).await.is_err() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = updates.closed() => break,
            }
        }
        self.close().await;
    }

    /// Logs out, if connected. upsd forgets a client that just disconnects, too; this is the
    /// polite way.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.logout().await;
        }
    }
}

/// A new connection, checked: the UPS exists, and the login (if any) is accepted.
async fn connect(config: &Config) -> Result<Client, NutError> {
    let mut client = Client::connect(&config.address, config.timeout).await?;
    let known = client.list_ups().await?;
    if !known.iter().any(|(name, _)| *name == config.ups) {
        let names: Vec<&str> = known.iter().map(|(name, _)| name.as_str()).collect();
        return Err(NutError::UnknownUps {
            address: config.address.clone(),
            ups: config.ups.clone(),
            known: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        });
    }
    if let Some(login) = &config.login {
        client.login(&config.ups, login).await?;
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use vigil_engine::Value;
    use vigil_engine::trace::Field;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn words_are_split_on_spaces_and_quotes_hold_spaces_and_escapes() {
        assert_eq!(
            words(r#"VAR ups ups.status "OB DISCHRG LB""#),
            ["VAR", "ups", "ups.status", "OB DISCHRG LB"]
        );
        assert_eq!(
            words(r#"VAR ups ups.alarm "say \"hi\" \\ bye""#),
            ["VAR", "ups", "ups.alarm", r#"say "hi" \ bye"#]
        );
        assert_eq!(
            words("  END\tLIST  VAR ups "),
            ["END", "LIST", "VAR", "ups"]
        );
        assert_eq!(words(r#"VAR ups x """#), ["VAR", "ups", "x", ""]);
        assert!(words("").is_empty());
    }

    #[test]
    fn broken_quoting_is_an_error() {
        for (line, reason) in [
            (r#"VAR ups x "open"#, "not closed"),
            (r#"VAR ups x "a"b"#, "followed by more text"),
            (r#"VAR ups x a"b""#, "opens inside a word"),
            ("VAR ups x \\", "ends in an escape"),
        ] {
            let error = split_words(line).unwrap_err();
            assert!(error.contains(reason), "{line}: {error}");
        }
    }

    #[test]
    fn requests_quote_what_needs_it_and_refuse_line_breaks() {
        assert_eq!(quote("ups", "x").unwrap(), "ups");
        assert_eq!(quote("a b", "x").unwrap(), r#""a b""#);
        assert_eq!(quote(r#"p"w\d"#, "x").unwrap(), r#""p\"w\\d""#);
        assert_eq!(quote("", "x").unwrap(), r#""""#);
        let error = quote("secret\nLOGOUT", "the password").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the password cannot be sent to upsd: it holds a line break"
        );
        for word in ["a b", r#"p"w\d"#, ""] {
            assert_eq!(words(&quote(word, "x").unwrap()), [word]);
        }
    }

    #[test]
    fn status_tokens_are_a_set_and_unknown_ones_are_kept() {
        let status = Status::parse("OB DISCHRG LB OB ECO").unwrap();
        assert_eq!(
            status.tokens(),
            [
                Token::OnBattery,
                Token::Discharging,
                Token::LowBattery,
                Token::Other("ECO".into())
            ]
        );
        assert_eq!(status.to_string(), "OB DISCHRG LB ECO");
        assert_eq!(status.source(), Some(PowerSource::Battery));
        assert!(status.has(&Token::LowBattery));
        let status = Status::parse("OL CHRG RB BYPASS OVER TRIM BOOST FSD CAL HB").unwrap();
        assert_eq!(status.source(), Some(PowerSource::Line));
        assert!(!status.tokens().iter().any(|t| matches!(t, Token::Other(_))));
        assert_eq!(Status::parse("WAIT").unwrap().source(), None);
        assert_eq!(Status::parse("OFF").unwrap().source(), None);
    }

    #[test]
    fn a_status_that_cannot_be_meant_is_malformed() {
        for (text, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("OL OB", "both OL and OB"),
            ("OL <b>", "`<b>` is not a status token"),
        ] {
            let error = Status::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_variables_become_a_reading() {
        let (reading, malformed) = Reading::from_variables(
            "ups",
            &variables(&[
                ("ups.status", "OB DISCHRG"),
                ("battery.charge", "79.6"),
                ("battery.runtime", " 1200 "),
                ("ups.load", "105"),
                ("ups.realpower", "312.4"),
                ("device.mfr", "Dummy"),
            ]),
        );
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(reading.status, Some(Status::parse("OB DISCHRG").unwrap()));
        assert_eq!(reading.battery(), Some((80, 1200)));
        assert_eq!(reading.load_pct, Some(105));
        assert_eq!(reading.realpower_watts, Some(312));
        let (reading, malformed) = Reading::from_variables("ups", &variables(&[]));
        assert_eq!(reading, Reading::default());
        assert!(malformed.is_empty());
    }

    #[test]
    fn a_malformed_value_is_dropped_alone() {
        let cases = [
            ("battery.charge", "abc", "`abc` is not a number"),
            ("battery.charge", "250", "250 % is over 100 %"),
            ("battery.charge", "-1", "-1 % is negative"),
            ("battery.charge", "NaN", "not a finite number"),
            ("battery.charge", "", "`` is not a number"),
            ("battery.runtime", "-30", "-30 s is negative"),
            ("battery.runtime", "inf", "not a finite number"),
            ("ups.load", "5000", "over 1000 %"),
            ("ups.realpower", "-3", "negative"),
            ("ups.status", "OL OB", "both OL and OB"),
        ];
        for (variable, value, reason) in cases {
            let mut all = variables(&[
                ("ups.status", "OL CHRG"),
                ("battery.charge", "90"),
                ("battery.runtime", "1500"),
                ("ups.load", "20"),
                ("ups.realpower", "150"),
            ]);
            all.insert(variable.into(), value.into());
            let (reading, malformed) = Reading::from_variables("ups", &all);
            assert_eq!(malformed.len(), 1, "{variable}={value}: {malformed:?}");
            assert_eq!(malformed[0].origin, format!("nut ups {variable}"));
            assert_eq!(malformed[0].payload, value);
            assert!(
                malformed[0].reason.contains(reason),
                "{variable}={value}: {}",
                malformed[0].reason
            );
            let unread = |name: &str, got: bool| assert_eq!(got, name != variable, "{name}");
            unread("ups.status", reading.status.is_some());
            unread("battery.charge", reading.charge_pct.is_some());
            unread("battery.runtime", reading.runtime_seconds.is_some());
            unread("ups.load", reading.load_pct.is_some());
            unread("ups.realpower", reading.realpower_watts.is_some());
        }
    }

    fn reading(status: &str, charge: Option<i64>, runtime: Option<i64>) -> Reading {
        Reading {
            status: Status::parse(status).ok(),
            charge_pct: charge,
            runtime_seconds: runtime,
            ..Reading::default()
        }
    }

    /// A report as text, one `+relation(...)` or `-relation(...)` per row, sorted.
    fn rows(report: &Report) -> Vec<String> {
        let field = |field: &Field| match &field.0 {
            Some(Value::Symbol(text)) => format!("\"{text}\""),
            Some(value) => value.to_string(),
            None => "_".to_string(),
        };
        let mut rows = Vec::new();
        for (sign, relations) in [("+", &report.insert), ("-", &report.retract)] {
            for (relation, tuples) in relations {
                for tuple in tuples {
                    let columns: Vec<String> = tuple.iter().map(field).collect();
                    rows.push(format!("{sign}{relation}({})", columns.join(", ")));
                }
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn only_what_changed_is_reported() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut facts = Facts::new("ups", Duration::from_secs(60), start);
        let steps = [
            (
                reading("OL CHRG", Some(100), Some(1800)),
                vec![
                    "+ups_battery(\"ups\", 100, 1800)",
                    "+ups_source(\"ups\", \"line\", _)",
                ],
            ),
            (reading("OL", Some(100), Some(1800)), vec![]),
            (
                reading("OB DISCHRG", Some(100), Some(1800)),
                vec!["+ups_source(\"ups\", \"battery\", _)"],
            ),
            (
                reading("OB DISCHRG", Some(80), Some(1200)),
                vec!["+ups_battery(\"ups\", 80, 1200)"],
            ),
            (reading("OB DISCHRG LB", Some(80), Some(1200)), vec![]),
            // A malformed charge leaves the battery row as it was; the source still moves.
            (
                reading("OL CHRG", None, Some(1300)),
                vec!["+ups_source(\"ups\", \"line\", _)"],
            ),
        ];
        for (second, (reading, expected)) in (0..).zip(steps) {
            assert_eq!(
                rows(&facts.update(&reading, at(second))),
                expected,
                "{reading:?}"
            );
        }
        assert_eq!(facts.source(), Some(PowerSource::Line));
        assert_eq!(facts.battery(), Some((80, 1200)));
    }

    #[test]
    fn facts_unconfirmed_for_too_long_are_retracted_with_open_columns() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut facts = Facts::new("ups", Duration::from_secs(60), start);
        facts.update(&reading("OL", Some(100), Some(1800)), at(0));
        assert!(facts.silence(at(59)).is_empty());
        // The battery keeps being read, the status says neither OL nor OB.
        assert!(
            facts
                .update(&reading("WAIT", Some(100), Some(1800)), at(59))
                .is_empty()
        );
        assert_eq!(
            rows(&facts.update(&reading("WAIT", Some(100), Some(1800)), at(60))),
            ["-ups_source(\"ups\", _, _)"]
        );
        // The battery was last read at 60.
        assert!(facts.silence(at(119)).is_empty());
        assert_eq!(
            rows(&facts.silence(at(120))),
            ["-ups_battery(\"ups\", _, _)"]
        );
        assert!(facts.silence(at(500)).is_empty());
        assert_eq!(
            rows(&facts.update(&reading("OB", Some(90), Some(900)), at(501))),
            [
                "+ups_battery(\"ups\", 90, 900)",
                "+ups_source(\"ups\", \"battery\", _)"
            ]
        );
    }

    #[test]
    fn facts_left_by_an_earlier_run_are_retracted_if_nothing_confirms_them() {
        let start = Instant::now();
        let mut facts = Facts::new("ups", Duration::from_secs(60), start);
        assert_eq!(
            rows(&facts.silence(start + Duration::from_secs(60))),
            ["-ups_battery(\"ups\", _, _)", "-ups_source(\"ups\", _, _)"]
        );
    }

    #[test]
    fn a_poll_is_labelled_with_the_ups_and_its_status() {
        let poll = Poll {
            ups: "ups".into(),
            reading: Ok(reading("OB DISCHRG", Some(80), Some(1200))),
            report: Report::default(),
            malformed: Vec::new(),
            news: false,
            wait: Duration::ZERO,
        };
        let entry = poll.entry(Some(7));
        assert_eq!(entry.event.as_deref(), Some("nut: ups OB DISCHRG"));
        assert_eq!(entry.time, Some(7));
    }

    /// A scripted upsd: answers each request line with the reply the script gives for it, and
    /// says nothing to a request it does not know.
    async fn fake_upsd(script: Vec<(&'static str, &'static str)>) -> String {
        fake_upsd_hearing(script).await.0
    }

    /// A scripted upsd, and what it heard once the client is gone.
    async fn fake_upsd_hearing(
        script: Vec<(&'static str, &'static str)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            let mut heard = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, reply)) = script.iter().find(|(request, _)| *request == line) {
                    writer.write_all(reply.as_bytes()).await.unwrap();
                }
                heard.push(line);
            }
            heard
        });
        (address, server)
    }

    #[tokio::test]
    async fn the_poller_sends_its_news_and_logs_out_when_nobody_listens() {
        let (address, server) = fake_upsd_hearing(vec![
            (
                "LIST UPS",
                "BEGIN LIST UPS\nUPS ups \"the rack's UPS\"\nEND LIST UPS\n",
            ),
            ("USERNAME monitor", "OK\n"),
            ("PASSWORD secret", "OK\n"),
            ("LOGIN ups", "OK\n"),
            (
                "LIST VAR ups",
                "BEGIN LIST VAR ups\n\
                 VAR ups ups.status \"OB DISCHRG\"\n\
                 VAR ups battery.charge \"abc\"\n\
                 VAR ups battery.runtime \"1200\"\n\
                 END LIST VAR ups\n",
            ),
            ("LOGOUT", "OK Goodbye\n"),
        ])
        .await;
        let mut config = Config::new(&address, "ups");
        config.login = Some(Login {
            username: "monitor".into(),
            password: "secret".into(),
        });
        config.interval = Duration::from_secs(3600);
        let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
        let poller = tokio::spawn(Poller::new(config).run(sender));
        let poll = receiver.recv().await.unwrap();
        assert!(poll.news);
        assert_eq!(rows(&poll.report), ["+ups_source(\"ups\", \"battery\", _)"]);
        assert_eq!(poll.malformed.len(), 1);
        assert_eq!(poll.malformed[0].origin, "nut ups battery.charge");
        assert_eq!(
            poll.entry(None).event.as_deref(),
            Some("nut: ups OB DISCHRG")
        );
        drop(receiver);
        poller.await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            [
                "LIST UPS",
                "USERNAME monitor",
                "PASSWORD secret",
                "LOGIN ups",
                "LIST VAR ups",
                "LOGOUT"
            ]
        );
    }

    #[tokio::test]
    async fn a_garbage_line_in_a_list_is_dropped_and_the_rest_is_read() {
        let address = fake_upsd(vec![(
            "LIST VAR ups",
            "BEGIN LIST VAR ups\r\n\
             VAR ups battery.charge \"80\"\r\n\
             VAR ups ups.status \"OB\r\n\
             \u{1}\u{2}garbage\r\n\
             VAR other battery.charge \"10\"\r\n\
             VAR ups battery.runtime \"1200\"\r\n\
             END LIST VAR ups\r\n",
        )])
        .await;
        let mut client = Client::connect(&address, Duration::from_secs(10))
            .await
            .unwrap();
        let (variables, malformed) = client.list_var("ups").await.unwrap();
        assert_eq!(
            variables,
            BTreeMap::from([
                ("battery.charge".to_string(), "80".to_string()),
                ("battery.runtime".to_string(), "1200".to_string()),
            ])
        );
        let reasons: Vec<(&str, &str)> = malformed
            .iter()
            .map(|m| (m.payload.as_str(), m.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("VAR ups ups.status \"OB", "a quoted word is not closed"),
                ("\u{1}\u{2}garbage", "a variable line has 4 words, not 1"),
                (
                    "VAR other battery.charge \"10\"",
                    "not a `VAR ups name \"value\"` line of this UPS"
                ),
            ]
        );
        assert!(malformed.iter().all(|m| m.origin == "nut ups"));
    }

    #[tokio::test]
    async fn an_err_reply_is_a_refusal_that_keeps_the_connection() {
        let address = fake_upsd(vec![
            ("GET VAR ups battery.charge", "ERR DATA-STALE\n"),
            ("GET VAR ups ups.status", "VAR ups ups.status \"OL\"\n"),
        ])
        .await;
        let mut client = Client::connect(&address, Duration::from_secs(10))
            .await
            .unwrap();
        let error = client.get_var("ups", "battery.charge").await.unwrap_err();
        assert!(error.is_refusal());
        assert!(
            error
                .to_string()
                .contains("refused `GET VAR ups battery.charge`: DATA-STALE (hint: the driver"),
            "{error}"
        );
        assert_eq!(client.get_var("ups", "ups.status").await.unwrap(), "OL");
    }

    #[tokio::test]
    async fn a_refused_login_names_the_user_and_never_the_password() {
        let address = fake_upsd(vec![
            ("USERNAME monitor", "OK\n"),
            ("PASSWORD \"wrong one\"", "OK\n"),
            ("LOGIN ups", "ERR ACCESS-DENIED\n"),
        ])
        .await;
        let mut client = Client::connect(&address, Duration::from_secs(10))
            .await
            .unwrap();
        let login = Login {
            username: "monitor".into(),
            password: "wrong one".into(),
        };
        let error = client.login("ups", &login).await.unwrap_err();
        assert!(matches!(&error, NutError::Login { code, .. } if code == "ACCESS-DENIED"));
        let message = error.to_string();
        assert!(
            message.contains("refused to log `monitor` in to UPS `ups`"),
            "{message}"
        );
        assert!(!message.contains("wrong one"), "{message}");
        assert!(!format!("{login:?}").contains("wrong one"));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
        });
        let mut client = Client::connect(&address, Duration::from_millis(100))
            .await
            .unwrap();
        let error = client.list_var("ups").await.unwrap_err();
        assert!(matches!(error, NutError::Timeout { .. }), "{error}");
        assert!(!error.is_refusal());
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_reply_that_is_not_the_protocol_is_an_error() {
        let address = fake_upsd(vec![("LIST VAR ups", "HTTP/1.1 400 Bad Request\n")]).await;
        let mut client = Client::connect(&address, Duration::from_secs(10))
            .await
            .unwrap();
        let error = client.list_var("ups").await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("answered `LIST VAR ups` with \"HTTP/1.1 400 Bad Request\""),
            "{error}"
        );
    }
}
