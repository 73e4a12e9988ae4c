//! `vigil repl --connect URL`: the REPL's commands answered by a running `vigil serve`, over
//! its HTTP API.
//!
//! The session parses and prints exactly as it does on a local engine; this backend asks the
//! daemon: queries and `.dump` are `POST /v1/query`; changes, `commit` and `.tick` are one
//! `POST /v1/transactions?changes=all` each (the change set of every relation, as a local
//! session prints it; `.changes outputs` filters here); `whatif` is `POST /v1/whatif`; `why`
//! is `POST /v1/why` or `/v1/whynot`; `.decls` and `.rules` read `GET /v1/program` (fetched
//! once); `.size` reads `GET /v1/relations`; `.time` and `.tick` read `GET /v1/health`; `.actions`
//! reads `GET /v1/actions`. A
//! change typed in an open transaction is checked at once with a what-if. Answers are asked
//! for in MessagePack, which keeps every value's type.
//!
//! The daemon's errors (`{"error": ...}`) are placed back on the line: on the atom's part that
//! a query error names (the daemon renders them `1:COLUMN: message` in the atom it was sent),
//! on the change that a rejected transaction's item names. A daemon that cannot be reached is
//! an error of the command, and the session goes on.
//!
//! A daemon's transaction (a trace entry) applies its retractions before its inserts, whatever
//! order they were typed in. That is the same transaction unless a retraction follows an
//! insert of a row it may remove (the same row, or for a keyed relation the same key): such a
//! transaction is refused here, with the advice to commit the two separately, rather than sent
//! with another meaning.

use super::Failure;
use super::backend::{ActionLine, Backend, Clock, Delta, Rows, Write};
use super::schema::Schema;
use anyhow::{Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;
use vigil_adapters::source::HttpUrl;
use vigil_engine::query::{Atom, Change, Term};
use vigil_engine::trace::{Entry, Field};
use vigil_engine::{Op, Tuple, Value, format_fields};

const MSGPACK: &str = "application/msgpack";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the daemon listens.
#[derive(Debug, PartialEq)]
struct Endpoint {
    /// The URL as given, without a trailing `/`, for messages.
    url: String,
    /// `HOST:PORT`, to connect to.
    address: String,
    /// The `Host` header.
    host: String,
    /// A path the API is under (behind a proxy), without a trailing `/`; usually empty.
    base: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint> {
        const USAGE: &str = "--connect takes http://HOST:PORT, like http://127.0.0.1:7070";
        if url.starts_with("https://") {
            bail!(
                "`{url}`: only http:// URLs are supported, not https:// (vigil serve speaks plain HTTP; reach a remote daemon through an SSH tunnel or a TLS-terminating proxy on this machine)"
            );
        }
        if !url.starts_with("http://") {
            bail!("`{url}` is not an http:// URL: {USAGE}");
        }
        let parsed = HttpUrl::parse(url, "not an http:// URL")
            .map_err(|reason| anyhow!("`{url}` is not a daemon's URL ({reason}): {USAGE}"))?;
        if parsed.uri.query().is_some() || url.contains('#') {
            bail!("`{url}` is not a daemon's URL (a query or fragment): {USAGE}");
        }
        Ok(Endpoint {
            url: url.trim_end_matches('/').to_string(),
            address: parsed.address(),
            host: parsed.authority.clone(),
            base: parsed.uri.path().trim_end_matches('/').to_string(),
        })
    }
}

/// A request the daemon did not answer with what was asked.
struct Refusal {
    message: String,
    /// The daemon refused what it was sent (422): the message may be placed on the line.
    invalid: bool,
}

impl Refusal {
    fn transport(message: String) -> Refusal {
        Refusal {
            message,
            invalid: false,
        }
    }

    fn whole(self) -> Failure {
        Failure::whole(self.message)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Deserialize)]
struct AnswerBody {
    variables: Vec<String>,
    rows: Vec<Vec<Field>>,
}

#[derive(Deserialize)]
struct ChangesBody {
    changes: Vec<ChangeRow>,
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Deserialize)]
struct ChangeRow {
    relation: String,
    diff: isize,
    tuple: Vec<Field>,
}

#[derive(Deserialize)]
struct WhyBody {
    explanation: serde_json::Value,
    text: String,
}

#[derive(Deserialize)]
struct HealthBody {
    time: u64,
    now: i64,
}

#[derive(Deserialize)]
struct ActionsBody {
    actions: Vec<ActionLine>,
}

#[derive(Deserialize)]
struct RelationBody {
    name: String,
    size: Option<usize>,
}

/// A session's connection to a daemon.
pub struct Remote {
    endpoint: Endpoint,
    token: Option<HeaderValue>,
    runtime: tokio::runtime::Runtime,
    /// Fetched at the first command that needs it; the daemon's program does not change while
    /// it runs.
    schema: Option<Schema>,
}

impl Remote {
    /// Checks the URL; connects at the first command.
    pub fn new(url: &str, token: Option<String>) -> Result<Remote> {
        let endpoint = Endpoint::parse(url)?;
        let token = match token {
            Some(token) => match HeaderValue::from_str(&format!("Bearer {}", token.trim())) {
                Ok(value) => Some(value),
                Err(_) => bail!("the token holds characters that cannot be sent in a header"),
            },
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Remote {
            endpoint,
            token,
            runtime,
            schema: None,
        })
    }

    /// Sends one request and decodes the answer.
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Refusal> {
        let url = &self.endpoint.url;
        let (status, content_type, bytes) = self
            .runtime
            .block_on(async {
                match tokio::time::timeout(ANSWER_TIMEOUT, self.exchange(method, path, body)).await
                {
                    Ok(answer) => answer,
                    Err(_) => Err(format!(
                        "the daemon at {url} did not answer within {} s",
                        ANSWER_TIMEOUT.as_secs()
                    )),
                }
            })
            .map_err(Refusal::transport)?;
        let msgpack = content_type.starts_with(MSGPACK);
        if status.is_success() {
            return decode(msgpack, &bytes).map_err(|error| {
                Refusal::transport(format!(
                    "the daemon at {url} answered {path} with what this REPL cannot read: {error}"
                ))
            });
        }
        let mut message = match decode::<ErrorBody>(msgpack, &bytes) {
            Ok(body) => body.error,
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                let mut message = format!("the daemon at {url} answered {status} to {path}");
                if !text.is_empty() {
                    message.push_str(&format!(": {}", text.chars().take(200).collect::<String>()));
                }
                message
            }
        };
        if status == StatusCode::UNAUTHORIZED {
            message.push_str(" (give it with --token, or in the VIGIL_TOKEN environment variable)");
        }
        Err(Refusal {
            message,
            invalid: status == StatusCode::UNPROCESSABLE_ENTITY,
        })
    }

    /// One request on a new connection: the status, the content type and the body.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, String, Bytes), String> {
        let Endpoint { url, address, .. } = &self.endpoint;
        let unreachable =
            |error: &dyn std::fmt::Display| format!("cannot reach the daemon at {url}: {error}");
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| unreachable(&format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|error| unreachable(&error))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| unreachable(&error))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint.base))
            .header(header::HOST, &self.endpoint.host)
            .header(header::ACCEPT, MSGPACK);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, token.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| format!("cannot send {path} to {url}: {error}"))?;
        let lost =
            |error: hyper::Error| format!("the connection to the daemon at {url} failed: {error}");
        let response = sender.send_request(request).await.map_err(lost)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(lost)?
            .to_bytes();
        Ok((status, content_type, bytes))
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, Refusal> {
        let body =
            serde_json::to_vec(body).map_err(|error| Refusal::transport(error.to_string()))?;
        self.call(Method::POST, path, Some(body))
    }

    /// The daemon's program, fetched once.
    fn fetch_schema(&mut self) -> Result<&Schema, Failure> {
        if self.schema.is_none() {
            let schema = self
                .call(Method::GET, "/v1/program", None)
                .map_err(Refusal::whole)?;
            self.schema = Some(schema);
        }
        Ok(self.schema.as_ref().expect("the schema was just fetched"))
    }

    /// A transaction as a trace entry, and, for each of the entry's items in the order the
    /// daemon numbers them, the change it comes from.
    fn entry(
        &mut self,
        changes: &[Change],
        at: Option<i64>,
        event: String,
    ) -> Result<(Entry, Vec<usize>), Failure> {
        let rows = changes.iter().map(fields).collect::<Result<Vec<_>, _>>()?;
        let mut lists: [BTreeMap<&str, Vec<usize>>; 2] = Default::default();
        for (index, change) in changes.iter().enumerate() {
            let list = match change.op {
                Op::Retract => &mut lists[0],
                Op::Insert => &mut lists[1],
            };
            list.entry(change.atom.relation.as_str())
                .or_default()
                .push(index);
        }
        if let Some((insert, retract)) = conflict(self.fetch_schema()?, changes) {
            return Err(Failure::at(
                retract.atom.span.clone(),
                format!(
                    "`{}` follows `{}` in this transaction and may undo it, which a daemon's transaction cannot say: it applies every retraction before the inserts. Over --connect, commit them separately",
                    written(retract),
                    written(insert)
                ),
            ));
        }
        let tuples = |list: &BTreeMap<&str, Vec<usize>>| -> BTreeMap<String, Vec<Vec<Field>>> {
            list.iter()
                .map(|(relation, indices)| {
                    let tuples = indices.iter().map(|&index| rows[index].clone()).collect();
                    (relation.to_string(), tuples)
                })
                .collect()
        };
        let entry = Entry {
            time: at,
            event: Some(event),
            retract: tuples(&lists[0]),
            insert: tuples(&lists[1]),
            ..Entry::default()
        };
        let order = lists
            .iter()
            .flat_map(|list| list.values().flatten().copied())
            .collect();
        Ok((entry, order))
    }

    /// Sends a transaction (or its what-if); places a refusal on the change it names.
    fn transact(
        &mut self,
        changes: &[Change],
        at: Option<i64>,
        event: String,
        what_if: bool,
    ) -> Result<ChangesBody, Failure> {
        let (entry, order) = self.entry(changes, at, event)?;
        let path = if what_if {
            "/v1/whatif?changes=all"
        } else {
            "/v1/transactions?changes=all"
        };
        self.post(path, &entry).map_err(|refusal| {
            if refusal.invalid {
                self.place_rejection(refusal.message, changes, &order)
            } else {
                refusal.whole()
            }
        })
    }

    /// `the transaction was not applied: item 2 (`+edge(1, "x")`): column ...`: the rest of
    /// the message, on the part of item 2's change that it is about, as a local session
    /// places it.
    fn place_rejection(&self, message: String, changes: &[Change], order: &[usize]) -> Failure {
        let rest = message.strip_prefix("the transaction was not applied: item ");
        let item = rest.and_then(|rest| {
            let (number, _) = rest.split_once(' ')?;
            let index = *order.get(number.parse::<usize>().ok()?.checked_sub(1)?)?;
            Some((number, &changes[index]))
        });
        let (Some(rest), Some((number, change))) = (rest, item) else {
            return Failure::whole(message);
        };
        let head = format!("{number} (`{}`): ", written(change));
        let Some(inner) = rest.strip_prefix(&head) else {
            return Failure::at(change.atom.span.clone(), message);
        };
        let atom = &change.atom;
        let column = self
            .schema
            .as_ref()
            .and_then(|schema| schema.relation(&atom.relation))
            .and_then(|relation| {
                relation.columns.iter().position(|column| {
                    inner.starts_with(&format!(
                        "column `{}` of `{}` is a `",
                        column.name, atom.relation
                    ))
                })
            });
        let span = column
            .and_then(|column| atom.arguments.get(column))
            .map_or(atom.name_span.clone(), |argument| argument.span.clone());
        Failure::at(span, inner)
    }

    fn unsupported_at(&self, command: &str, span: Range<usize>) -> Failure {
        Failure::at(
            span,
            self.unsupported(command)
                .unwrap_or_else(|| format!("`{command}` does not work over --connect")),
        )
    }
}

/// Decodes a body in MessagePack or JSON.
fn decode<T: DeserializeOwned>(msgpack: bool, bytes: &[u8]) -> Result<T, String> {
    if msgpack {
        rmp_serde::from_slice(bytes).map_err(|error| error.to_string())
    } else {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }
}

/// A value from the daemon. Answers are MessagePack, so every value has its type; `null`
/// only stands for `_`.
fn value(field: Field) -> Value {
    field.0.unwrap_or_else(|| Value::symbol("_"))
}

fn tuple(fields: Vec<Field>) -> Tuple {
    fields.into_iter().map(value).collect()
}

/// A change's fields for a trace entry: values, and `null` for `_`; a variable is an error,
/// as on a local engine.
fn fields(change: &Change) -> Result<Vec<Field>, Failure> {
    change
        .atom
        .arguments
        .iter()
        .map(|argument| match &argument.term {
            Term::Constant(value) => Ok(Field(Some(value.clone()))),
            Term::Wildcard => Ok(Field(None)),
            Term::Variable(name) => Err(Failure::at(
                argument.span.clone(),
                format!("a change holds values, not variables: write a value or `_` for `{name}`"),
            )),
        })
        .collect()
}

/// `+edge(1, 2)`, as the daemon names an item.
fn written(change: &Change) -> String {
    let sign = if change.op == Op::Insert { '+' } else { '-' };
    format!("{sign}{}", fields_text(change))
}

/// `edge(1, _)`, as the daemon names a retraction of a missing row.
fn fields_text(change: &Change) -> String {
    let fields: Vec<Option<Value>> = fields(change)
        .unwrap_or_default()
        .into_iter()
        .map(|field| field.0)
        .collect();
    format_fields(&change.atom.relation, &fields)
}

/// The first insert and the retraction after it, in the same relation, that may be about the
/// same row: equal (or `_`) in every column, or in every key column of a keyed relation. Any
/// two in an `eqrel` relation, whose rows are related through others.
fn conflict<'c>(schema: &Schema, changes: &'c [Change]) -> Option<(&'c Change, &'c Change)> {
    for (position, retract) in changes.iter().enumerate() {
        if retract.op != Op::Retract {
            continue;
        }
        let relation = schema.relation(&retract.atom.relation);
        let eqrel = relation.is_some_and(|relation| relation.eqrel);
        let key = relation.and_then(|relation| relation.key.as_ref());
        let insert = changes[..position].iter().find(|insert| {
            let (a, b) = (&insert.atom.arguments, &retract.atom.arguments);
            insert.op == Op::Insert
                && insert.atom.relation == retract.atom.relation
                && a.len() == b.len()
                && (eqrel
                    || (0..a.len())
                        .filter(|column| key.is_none_or(|key| key.contains(column)))
                        .all(|column| may_equal(&a[column].term, &b[column].term)))
        });
        if let Some(insert) = insert {
            return Some((insert, retract));
        }
    }
    None
}

/// Whether two arguments may stand for the same value of a column (`1` and `1.0` may).
fn may_equal(a: &Term, b: &Term) -> bool {
    let number = |value: &Value| match value {
        Value::Number(n) => Some(*n as f64),
        Value::Unsigned(n) => Some(*n as f64),
        Value::Float(x) => Some(*x),
        Value::Symbol(_) => None,
    };
    match (a, b) {
        (Term::Constant(Value::Symbol(x)), Term::Constant(Value::Symbol(y))) => x == y,
        (Term::Constant(x), Term::Constant(y)) => match (number(x), number(y)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        _ => true,
    }
}

/// A daemon's error about an atom that was sent as `line[atom.span]`: `1:COLUMN: message`,
/// placed on the name or the argument at that column, as a local session places it.
fn place_in_atom(refusal: Refusal, line: &str, atom: &Atom) -> Failure {
    if !refusal.invalid {
        return refusal.whole();
    }
    let message = refusal.message;
    let column = message.split_once(": ").and_then(|(place, rest)| {
        let column = place.strip_prefix("1:")?.parse::<usize>().ok()?;
        Some((column.checked_sub(1)?, rest))
    });
    let Some((column, rest)) = column else {
        return Failure::at(atom.name_span.clone(), message);
    };
    let text = &line[atom.span.clone()];
    let at = atom.span.start
        + text
            .char_indices()
            .nth(column)
            .map_or(text.len(), |(offset, _)| offset);
    let span = std::iter::once(&atom.name_span)
        .chain(atom.arguments.iter().map(|argument| &argument.span))
        .find(|span| span.start == at)
        .cloned()
        .unwrap_or(at..at);
    Failure::at(span, rest)
}

impl Backend for Remote {
    fn banner(&mut self) -> String {
        let url = self.endpoint.url.clone();
        match self.fetch_schema() {
            Ok(schema) => format!(
                "{url}, {}",
                super::plural(schema.relations.len(), "relation")
            ),
            Err(failure) => failure.message,
        }
    }

    fn schema(&mut self) -> Result<&Schema, Failure> {
        self.fetch_schema()
    }

    fn known_schema(&self) -> Option<&Schema> {
        self.schema.as_ref()
    }

    fn query(&mut self, line: &str, atom: &Atom) -> Result<Rows, Failure> {
        let text = &line[atom.span.clone()];
        let answer: AnswerBody = self
            .post("/v1/query", &serde_json::json!({ "query": text }))
            .map_err(|refusal| place_in_atom(refusal, line, atom))?;
        Ok(Rows {
            variables: answer.variables,
            rows: answer.rows.into_iter().map(tuple).collect(),
        })
    }

    fn dump(&mut self, relation: &str) -> Result<Vec<Tuple>, Failure> {
        let arity = self
            .fetch_schema()?
            .relation(relation)
            .map_or(0, |relation| relation.columns.len());
        let query = format!("{relation}({})", vec!["_"; arity].join(", "));
        let answer: AnswerBody = self
            .post("/v1/query", &serde_json::json!({ "query": query }))
            .map_err(Refusal::whole)?;
        Ok(answer.rows.into_iter().map(tuple).collect())
    }

    fn check(&mut self, pending: &[Change], changes: &[Change]) -> Result<(), Failure> {
        // Variables, and a retraction that would undo a pending insert.
        let all: Vec<Change> = pending.iter().chain(changes).cloned().collect();
        self.entry(&all, None, String::new())?;
        self.transact(changes, None, String::new(), true)?;
        Ok(())
    }

    fn apply(&mut self, write: Write<'_>) -> Result<Delta, Failure> {
        let body = self.transact(write.changes, write.at, write.event, write.what_if)?;
        let mut relations: Vec<(String, Vec<(Tuple, isize)>)> = Vec::new();
        for row in body.changes {
            let tuple = tuple(row.tuple);
            match relations.last_mut() {
                Some((relation, rows)) if *relation == row.relation => rows.push((tuple, row.diff)),
                _ => relations.push((row.relation, vec![(tuple, row.diff)])),
            }
        }
        // The daemon reports missing rows relation by relation; a local engine in the order
        // they were typed.
        let mut reported = vec![false; write.changes.len()];
        let mut absent: Vec<(usize, String)> = body
            .absent
            .into_iter()
            .map(|text| {
                let typed = write
                    .changes
                    .iter()
                    .enumerate()
                    .position(|(index, change)| {
                        !reported[index] && change.op == Op::Retract && fields_text(change) == text
                    });
                if let Some(index) = typed {
                    reported[index] = true;
                }
                (typed.unwrap_or(usize::MAX), text)
            })
            .collect();
        absent.sort_by_key(|(typed, _)| *typed);
        let absent = absent.into_iter().map(|(_, text)| text).collect();
        Ok(Delta { relations, absent })
    }

    fn explain(
        &mut self,
        line: &str,
        atom: &Atom,
        negated: bool,
        json: bool,
    ) -> Result<String, Failure> {
        let path = if negated { "/v1/whynot" } else { "/v1/why" };
        let text = &line[atom.span.clone()];
        let answer: WhyBody = self
            .post(path, &serde_json::json!({ "atom": text }))
            .map_err(|refusal| place_in_atom(refusal, line, atom))?;
        Ok(if json {
            answer.explanation.to_string()
        } else {
            answer.text.trim_end().to_string()
        })
    }

    fn sizes(&mut self) -> Result<Vec<(String, usize)>, Failure> {
        let relations: Vec<RelationBody> = self
            .call(Method::GET, "/v1/relations", None)
            .map_err(Refusal::whole)?;
        relations
            .into_iter()
            .map(|relation| match relation.size {
                Some(size) => Ok((relation.name, size)),
                None => Err(Failure::whole(format!(
                    "the daemon at {} does not give the sizes of relations (an older vigil serve?)",
                    self.endpoint.url
                ))),
            })
            .collect()
    }

    fn clock(&mut self) -> Result<Clock, Failure> {
        let health: HealthBody = self
            .call(Method::GET, "/v1/health", None)
            .map_err(Refusal::whole)?;
        Ok(Clock {
            time: health.time,
            now: health.now,
        })
    }

    fn actions(&mut self, limit: usize) -> Result<Vec<ActionLine>, Failure> {
        let answer: ActionsBody = self
            .call(Method::GET, &format!("/v1/actions?limit={limit}"), None)
            .map_err(Refusal::whole)?;
        Ok(answer.actions)
    }

    fn unsupported(&self, command: &str) -> Option<String> {
        let url = &self.endpoint.url;
        match command {
            ".load" => Some(format!(
                "`.load` needs a local engine: the daemon at {url} runs the program it was started with (restart `vigil serve` with another program, or run `vigil repl FILE`)"
            )),
            ".facts" => Some(format!(
                "`.facts` needs a local engine: it reads files on this machine (insert the facts with `+R(...).`, or give the daemon at {url} a `facts` directory in its config)"
            )),
            _ => None,
        }
    }

    fn load(&mut self, _path: &str, span: Range<usize>) -> Result<String, Failure> {
        Err(self.unsupported_at(".load", span))
    }

    fn read_facts(&mut self, _dir: &str, span: Range<usize>) -> Result<usize, Failure> {
        Err(self.unsupported_at(".facts", span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let endpoint = Endpoint::parse("http://127.0.0.1:7070/").unwrap();
        assert_eq!(endpoint.address, "127.0.0.1:7070");
        assert_eq!(endpoint.url, "http://127.0.0.1:7070");
        assert_eq!(endpoint.base, "");
        let endpoint = Endpoint::parse("http://localhost/vigil/").unwrap();
        assert_eq!(endpoint.address, "localhost:80");
        assert_eq!(endpoint.host, "localhost");
        assert_eq!(endpoint.base, "/vigil");
        assert_eq!(
            Endpoint::parse("http://[::1]:7070").unwrap().address,
            "[::1]:7070"
        );
        assert_eq!(Endpoint::parse("http://[::1]").unwrap().address, "[::1]:80");
        let https = Endpoint::parse("https://example.org")
            .unwrap_err()
            .to_string();
        assert!(https.contains("only http:// URLs"), "{https}");
        assert!(Endpoint::parse("127.0.0.1:7070").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    fn changes(text: &str) -> Vec<Change> {
        vigil_engine::query::parse_changes(text).unwrap()
    }

    #[test]
    fn a_retraction_after_an_insert_of_the_same_row_conflicts() {
        let schema: Schema = serde_json::from_value(serde_json::json!({
            "relations": [
                {"name": "edge", "columns": [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]},
                {"name": "reading", "columns": [{"name": "n", "type": "symbol"}, {"name": "w", "type": "number"}], "key": [0]},
            ],
            "rules": [],
        }))
        .unwrap();
        let found = |text: &str| {
            let changes = changes(text);
            conflict(&schema, &changes).map(|(insert, retract)| (written(insert), written(retract)))
        };
        assert_eq!(found("+edge(1, 2). -edge(2, 3)."), None);
        assert_eq!(found("-edge(1, 2). +edge(1, 2)."), None);
        assert_eq!(
            found("+edge(9, 9). -edge(9, 9)."),
            Some(("+edge(9, 9)".into(), "-edge(9, 9)".into()))
        );
        assert_eq!(
            found("+edge(1, 2). -edge(1, 2.0)."),
            Some(("+edge(1, 2)".into(), "-edge(1, 2)".into()))
        );
        assert_eq!(found("+reading(\"a\", 1). -reading(\"b\", 1)."), None);
        assert!(found("+reading(\"a\", 1). -reading(\"a\", _).").is_some());
        assert!(found("+reading(\"a\", 1). -reading(\"a\", 2).").is_some());
    }

    #[test]
    fn errors_are_placed_on_the_atom() {
        let line = "?- path(1, \"x\").";
        let mut parser = vigil_engine::query::Parser::new(line);
        assert!(parser.eat("?-"));
        let atom = parser.atom().unwrap();
        let refusal = |message: &str| Refusal {
            message: message.to_string(),
            invalid: true,
        };
        let failure = place_in_atom(
            refusal("1:9: column `b` of `path` is a `number`"),
            line,
            &atom,
        );
        assert_eq!(failure.span, Some(11..14));
        assert_eq!(failure.message, "column `b` of `path` is a `number`");
        let failure = place_in_atom(refusal("1:1: unknown relation `path`"), line, &atom);
        assert_eq!(failure.span, Some(3..7));
        let failure = place_in_atom(refusal("no place"), line, &atom);
        assert_eq!(failure.span, Some(3..7));
    }
}
