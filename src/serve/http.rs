//! The HTTP API. Every endpoint speaks JSON, and MessagePack with the same schema when the
//! request's `Content-Type` (or `Accept`) is `application/msgpack`. Errors are 4xx or 5xx with
//! a JSON body `{"error": "..."}`; a request that is refused changes nothing.
//!
//! | method and path | scope | what |
//! |---|---|---|
//! | `GET /v1/health` | none | liveness, logical and event time |
//! | `POST /v1/transactions` | ingest | apply a transaction (a trace entry); answers its change set |
//! | `POST /v1/whatif` | read | the change set a transaction would give; applies nothing |
//! | `GET /v1/relations` | read | every relation: name, columns, kind, size |
//! | `GET /v1/program` | read | the declarations (with their I/O directives) and the clauses |
//! | `POST /v1/query` | read | `{"query": "placement(W, \"pve\")"}`: the matching rows |
//! | `POST /v1/why`, `POST /v1/whynot` | read | `{"atom": "shed(\"sdxl\")"}`: the explanation |
//! | `GET /v1/watch/VIEW?from=T` | read | server-sent events: the view's change sets after logical time T |
//! | `GET /v1/actions?since=SEQ&limit=N` | read | the action journal: what the actuators did, oldest first |
//! | `GET /v1/approvals` | approve | the approval requests waiting, with their decision links |
//! | `POST /v1/approvals/decide?token=T` | the token | a decision link: a valid one commits its `approval` fact |
//! | `POST /v1/harvest/reports` | ingest | an edge's artifact report: commits `artifact_report` |
//! | `GET`/`HEAD`/`PUT /v1/harvest/uploads/SOURCE/VERSION` | ingest | how far an upload got; its bytes, streamed (see `harvest.rs`) |
//! | `POST /v1/admin/compact` | admin | snapshot the state and truncate the journal |
//! | `GET /metrics` | read | Prometheus text format |
//! | `GET /dashboard` | none | the dashboard page and its assets (`/` redirects there); it holds no data |
//! | `GET /v1/dashboard/state`, `history`, `watch?from=T` | read | what the dashboard shows: the state, the power history and recent decisions, and their stream |
//!
//! A change set shows the views (the `.output` relations, or every relation of a program that
//! declares none); `?changes=all` on `/v1/transactions` and `/v1/whatif` shows every relation,
//! as `vigil repl` does.

use super::approvals::{self, Desk};
use super::config::{Config, Scope};
use super::core::{Changes, Core, Refusal};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, watch};
use vigil_engine::trace::Entry;

/// A response of server-sent events, each sent on `receiver`.
pub fn event_stream(receiver: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::Events(receiver));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A response body: whole, or a stream of server-sent events.
pub enum Body {
    Full(Full<Bytes>),
    Events(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            Body::Events(receiver) => receiver
                .poll_recv(cx)
                .map(|event| event.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }
}

/// What every request handler shares.
pub struct Api {
    pub core: Core,
    pub config: Config,
    /// BLAKE3 hashes of the token secrets, with their scopes: comparing hashes takes the same
    /// time whatever the guess.
    tokens: Vec<(blake3::Hash, Vec<Scope>)>,
    pub shutdown: watch::Receiver<bool>,
    relations: Vec<String>,
    /// The relations whose changes the feed carries.
    views: Vec<String>,
    /// Approval requests and their decision links, if approvals are on.
    desk: Option<Arc<Desk>>,
    relation_info: serde_json::Value,
    /// What `GET /v1/program` answers.
    schema: crate::repl::schema::Schema,
    /// Artifact reports and uploads (`/v1/harvest/...`).
    pub harvest: super::harvest::Harvest,
    /// What the dashboard shows, if the daemon keeps it.
    dashboard: Option<Arc<super::dashboard::Board>>,
}

impl Api {
    pub fn new(
        core: Core,
        config: Config,
        shutdown: watch::Receiver<bool>,
        program: &vigil_engine::ir::Program,
        desk: Option<Arc<Desk>>,
    ) -> Api {
        let tokens = config
            .tokens
            .iter()
            .map(|token| (blake3::hash(token.secret.as_bytes()), token.scopes.clone()))
            .collect();
        let relations = program.relations.iter().map(|r| r.name.clone()).collect();
        // What change sets show, as the engine thread decides it: the `.output` relations, or
        // every relation of a program that declares none.
        let any_output = program.relations.iter().any(|r| !r.outputs.is_empty());
        let views = program
            .relations
            .iter()
            .filter(|r| !any_output || !r.outputs.is_empty())
            .map(|r| r.name.clone())
            .collect();
        let relation_info = serde_json::Value::Array(
            program
                .relations
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "columns": r.columns.iter().map(|c| serde_json::json!({"name": c.name, "type": c.type_name})).collect::<Vec<_>>(),
                        "input": r.writable,
                        "view": !r.outputs.is_empty(),
                    })
                })
                .collect(),
        );
        let harvest = super::harvest::Harvest::new(&config.data_dir, &config.harvest, program);
        Api {
            core,
            config,
            tokens,
            shutdown,
            relations,
            views,
            desk,
            relation_info,
            schema: crate::repl::schema::Schema::of(program),
            harvest,
            dashboard: None,
        }
    }

    /// Serves the dashboard of `board`.
    pub fn with_dashboard(mut self, board: Arc<super::dashboard::Board>) -> Api {
        self.dashboard = Some(board);
        self
    }
}

/// How to encode the response.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    MessagePack,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::MessagePack => "MessagePack",
        }
    }
}

const MSGPACK: &str = "application/msgpack";

fn format_of(request: &Request<Incoming>) -> (Format, Format) {
    let is_msgpack = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(MSGPACK))
    };
    let input = if is_msgpack(header::CONTENT_TYPE) {
        Format::MessagePack
    } else {
        Format::Json
    };
    let output = if is_msgpack(header::ACCEPT) || input == Format::MessagePack {
        Format::MessagePack
    } else {
        Format::Json
    };
    (input, output)
}

fn respond(status: StatusCode, format: Format, value: &impl Serialize) -> Response<Body> {
    let (bytes, content_type) = match format {
        Format::Json => (
            serde_json::to_vec(value).unwrap_or_default(),
            "application/json",
        ),
        Format::MessagePack => (rmp_serde::to_vec_named(value).unwrap_or_default(), MSGPACK),
    };
    let mut response = Response::new(Body::Full(Full::new(Bytes::from(bytes))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error(status: StatusCode, format: Format, message: impl Into<String>) -> Response<Body> {
    respond(
        status,
        format,
        &serde_json::json!({ "error": message.into() }),
    )
}

fn refused(format: Format, refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Invalid(message) => error(StatusCode::UNPROCESSABLE_ENTITY, format, message),
        Refusal::Failed(message) => error(StatusCode::INTERNAL_SERVER_ERROR, format, message),
    }
}

/// The methods an endpoint takes, none if there is no such endpoint.
fn allowed_methods(segments: &[&str]) -> Vec<&'static str> {
    match segments {
        ["v1", "health" | "relations" | "program" | "watch", ..]
        | ["v1", "dashboard", ..]
        | [""]
        | ["dashboard", ..]
        | ["v1", "approvals"]
        | ["metrics"]
        | ["v1", "actions"] => vec!["GET"],
        ["v1", "approvals", "decide"] => vec!["POST"],
        ["v1", "harvest", "reports"] => vec!["POST"],
        ["v1", "harvest", "uploads", _, _] => vec!["GET", "HEAD", "PUT"],
        ["v1", "transactions" | "whatif" | "query" | "why" | "whynot"]
        | ["v1", "admin", "compact"] => {
            vec!["POST"]
        }
        _ => Vec::new(),
    }
}

/// Whether `?changes=all` asks for the change set of every relation (`?changes=views`, the
/// default, for the views only).
fn changes_shown(request: &Request<Incoming>) -> Result<bool, String> {
    let given = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("changes="))
    });
    match given {
        None | Some("views") => Ok(false),
        Some("all") => Ok(true),
        Some(other) => Err(format!("`changes` is `all` or `views`, not `{other}`")),
    }
}

/// Reads and decodes a request body, within the size limit.
async fn decode<T: DeserializeOwned>(
    request: Request<Incoming>,
    format: Format,
    limit: usize,
) -> Result<T, Response<Body>> {
    let bytes = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(failure) => {
            return Err(if failure.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format,
                    format!("the request body is larger than {limit} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format,
                    "the request body could not be read",
                )
            });
        }
    };
    // Errors name the field they are in (`insert.edge[0]: invalid type ...`).
    let located = |path: String, message: String| {
        let place = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        error(
            StatusCode::BAD_REQUEST,
            format,
            format!("the {} body{place}: {message}", format.name()),
        )
    };
    match format {
        Format::Json => {
            let mut body = serde_json::Deserializer::from_slice(&bytes);
            let value = serde_path_to_error::deserialize(&mut body)
                .map_err(|e| located(e.path().to_string(), e.inner().to_string()))?;
            body.end().map_err(|e| located(".".into(), e.to_string()))?;
            Ok(value)
        }
        Format::MessagePack => {
            let mut body = rmp_serde::Deserializer::from_read_ref(&bytes[..]);
            serde_path_to_error::deserialize(&mut body)
                .map_err(|e| located(e.path().to_string(), e.inner().to_string()))
        }
    }
}

impl Api {
    /// The scopes of the request's bearer token; every scope when no token is configured.
    fn scopes(&self, request: &Request<Incoming>) -> Option<Vec<Scope>> {
        if self.tokens.is_empty() {
            return Some(vec![Scope::Admin]);
        }
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let (scheme, given) = request
            .headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .trim()
            .split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let hash = blake3::hash(given.trim().as_bytes());
        self.tokens
            .iter()
            .find(|(known, _)| *known == hash)
            .map(|(_, scopes)| scopes.clone())
    }

    /// Serves one request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let (input, output) = format_of(&request);
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let needed = match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "health"]) => None,
            (&Method::GET, [""] | ["dashboard", ..]) => return super::dashboard::page(&path),
            (&Method::GET, ["v1", "dashboard", _]) => Some(Scope::Read),
            // The signed token is the credential: a phone's notification button has no other.
            (&Method::POST, ["v1", "approvals", "decide"]) => None,
            (&Method::GET, ["v1", "approvals"]) => Some(Scope::Approve),
            (&Method::POST, ["v1", "transactions"]) => Some(Scope::Ingest),
            (&Method::POST, ["v1", "harvest", "reports"])
            | (&Method::GET | &Method::HEAD | &Method::PUT, ["v1", "harvest", "uploads", _, _]) => {
                Some(Scope::Ingest)
            }
            (&Method::POST, ["v1", "admin", "compact"]) => Some(Scope::Admin),
            (&Method::GET, ["v1", "relations" | "program"])
            | (&Method::POST, ["v1", "whatif" | "query" | "why" | "whynot"])
            | (&Method::GET, ["v1", "watch", _])
            | (&Method::GET, ["metrics"])
            | (&Method::GET, ["v1", "actions"]) => Some(Scope::Read),
            (_, segments) => {
                let allowed = allowed_methods(segments);
                if allowed.is_empty() {
                    return error(
                        StatusCode::NOT_FOUND,
                        output,
                        format!("no endpoint {method} {path}; see the README for the API"),
                    );
                }
                let mut response = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    output,
                    format!("{path} takes {}, not {method}", allowed.join(" or ")),
                );
                if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                return response;
            }
        };
        if let Some(needed) = needed {
            match self.scopes(&request) {
                None => {
                    let mut response = error(
                        StatusCode::UNAUTHORIZED,
                        output,
                        "a bearer token is required: `Authorization: Bearer SECRET`",
                    );
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return response;
                }
                Some(scopes) if !scopes.contains(&needed) && !scopes.contains(&Scope::Admin) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        output,
                        format!("this token lacks the `{needed:?}` scope").to_lowercase(),
                    );
                }
                Some(_) => {}
            }
        }
        let limit = self.config.max_request_bytes;
        let all = match changes_shown(&request) {
            Ok(all) => all,
            Err(message) => return error(StatusCode::BAD_REQUEST, output, message),
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "approvals"]) => match &self.desk {
                Some(desk) => respond(StatusCode::OK, output, &desk.pending()),
                None => error(
                    StatusCode::NOT_FOUND,
                    output,
                    "approvals are off: configure `[approvals]`",
                ),
            },
            (&Method::POST, ["v1", "approvals", "decide"]) => {
                let Some(desk) = &self.desk else {
                    return error(
                        StatusCode::NOT_FOUND,
                        output,
                        "approvals are off: configure `[approvals]`",
                    );
                };
                let token = request.uri().query().and_then(|query| {
                    query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix("token="))
                });
                let Some(token) = token else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        output,
                        "`token` is missing: POST /v1/approvals/decide?token=...",
                    );
                };
                let now = match self.core.status().await {
                    Ok(status) => status.now,
                    Err(refusal) => return refused(output, refusal),
                };
                match desk.decide(&self.core, token, now).await {
                    Ok(answer) => {
                        let status = StatusCode::from_u16(approvals::status(answer.record.outcome))
                            .unwrap_or(StatusCode::BAD_REQUEST);
                        let mut body =
                            serde_json::to_value(&answer.record).unwrap_or(serde_json::Value::Null);
                        if let Some(time) = answer.committed {
                            body["committed"] = time.into();
                        }
                        if !status.is_success() {
                            body["error"] = body["reason"].clone();
                        }
                        respond(status, output, &body)
                    }
                    Err(refusal) => refused(output, refusal),
                }
            }
            (&Method::GET, ["v1", "health"]) => match self.core.status().await {
                Ok(status) => respond(
                    StatusCode::OK,
                    output,
                    &serde_json::json!({"status": "ok", "time": status.time, "now": status.now}),
                ),
                Err(refusal) => refused(output, refusal),
            },
            (&Method::POST, ["v1", "transactions"]) => {
                let entry: Entry = match decode(request, input, limit).await {
                    Ok(entry) => entry,
                    Err(response) => return response,
                };
                if entry.whatif {
                    return error(
                        StatusCode::BAD_REQUEST,
                        output,
                        "`whatif` transactions go to /v1/whatif",
                    );
                }
                match self.core.transact_showing(entry, all).await {
                    Ok(changes) => respond(StatusCode::OK, output, &changes),
                    Err(refusal) => refused(output, refusal),
                }
            }
            (&Method::POST, ["v1", "whatif"]) => {
                let entry: Entry = match decode(request, input, limit).await {
                    Ok(entry) => entry,
                    Err(response) => return response,
                };
                match self.core.what_if_showing(entry, all).await {
                    Ok(changes) => respond(StatusCode::OK, output, &changes),
                    Err(refusal) => refused(output, refusal),
                }
            }
            (&Method::GET, ["v1", "actions"]) => {
                let (since, limit) = match super::actuators::journal_query(request.uri().query()) {
                    Ok(parameters) => parameters,
                    Err(message) => return error(StatusCode::BAD_REQUEST, output, message),
                };
                match super::actuators::read_journal(&self.config.data_dir, since, limit) {
                    Ok(actions) => respond(
                        StatusCode::OK,
                        output,
                        &serde_json::json!({ "actions": actions }),
                    ),
                    Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, output, message),
                }
            }
            (&Method::GET, ["v1", "relations"]) => match self.core.sizes().await {
                Ok(sizes) => {
                    let mut info = self.relation_info.clone();
                    if let serde_json::Value::Array(relations) = &mut info {
                        for (relation, (_, size)) in relations.iter_mut().zip(sizes) {
                            relation["size"] = size.into();
                        }
                    }
                    respond(StatusCode::OK, output, &info)
                }
                Err(refusal) => refused(output, refusal),
            },
            (&Method::GET, ["v1", "program"]) => respond(StatusCode::OK, output, &self.schema),
            (&Method::POST, ["v1", "query"]) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Query {
                    query: String,
                }
                let query: Query = match decode(request, input, limit).await {
                    Ok(query) => query,
                    Err(response) => return response,
                };
                match self.core.query(query.query).await {
                    Ok(answer) => respond(StatusCode::OK, output, &answer),
                    Err(refusal) => refused(output, refusal),
                }
            }
            (&Method::POST, ["v1", which @ ("why" | "whynot")]) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Why {
                    atom: String,
                }
                let not = *which == "whynot";
                let why: Why = match decode(request, input, limit).await {
                    Ok(why) => why,
                    Err(response) => return response,
                };
                match self.core.why(why.atom, not).await {
                    Ok(answer) => respond(StatusCode::OK, output, &answer),
                    Err(refusal) => refused(output, refusal),
                }
            }
            (&Method::GET, ["v1", "watch", view]) => self.watch(&request, view, output),
            (_, ["v1", "harvest", ..]) => super::harvest::handle(&self, request).await,
            (&Method::GET, ["v1", "dashboard", what]) => match &self.dashboard {
                Some(board) => board.serve(
                    what,
                    request.uri().query(),
                    request
                        .headers()
                        .get("last-event-id")
                        .and_then(|v| v.to_str().ok()),
                    self.shutdown.clone(),
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    output,
                    "this daemon keeps no dashboard",
                ),
            },
            (&Method::POST, ["v1", "admin", "compact"]) => match self.core.compact().await {
                Ok(status) => respond(StatusCode::OK, output, &status),
                Err(refusal) => refused(output, refusal),
            },
            (&Method::GET, ["metrics"]) => {
                let mut response = Response::new(Body::Full(Full::new(Bytes::from(
                    self.core.metrics.render(),
                ))));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            _ => error(StatusCode::NOT_FOUND, output, "no such endpoint"),
        }
    }

    /// Streams the change sets of `view` after the logical time `from` (the query parameter,
    /// or the `Last-Event-ID` of a reconnecting client; without either, from now on).
    fn watch(&self, request: &Request<Incoming>, view: &str, format: Format) -> Response<Body> {
        if !self.relations.iter().any(|name| name == view) {
            return error(
                StatusCode::NOT_FOUND,
                format,
                format!("unknown relation `{view}`"),
            );
        }
        if !self.views.iter().any(|name| name == view) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format,
                format!(
                    "`{view}` is not a view (an `.output` relation): its changes are not watched; query it instead"
                ),
            );
        }
        let from = request
            .uri()
            .query()
            .and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("from="))
                    .map(str::to_string)
            })
            .or_else(|| {
                request
                    .headers()
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
        let latest = self.core.feed.subscribe();
        let mut cursor = match from {
            None => *latest.borrow(),
            Some(text) => match text.parse::<u64>() {
                Ok(time) => time,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format,
                        format!("`from` must be a logical time (a whole number), not `{text}`"),
                    );
                }
            },
        };
        if self.core.feed.since(cursor).is_none() {
            return error(
                StatusCode::GONE,
                format,
                format!(
                    "the change sets after time {cursor} are no longer kept; read the view again and watch from the current time"
                ),
            );
        }
        let (sender, receiver) = mpsc::channel::<Bytes>(64);
        let feed = self.core.feed.clone();
        let view = view.to_string();
        let mut latest = latest;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let hello = format!(": watching {view} after time {cursor}\n\n");
            if sender.send(Bytes::from(hello)).await.is_err() {
                return;
            }
            loop {
                latest.borrow_and_update();
                let Some(batches) = feed.since(cursor) else {
                    let gone = format!(
                        "event: gone\ndata: {{\"error\": \"the change sets after time {cursor} are no longer kept\"}}\n\n"
                    );
                    let _ = sender.send(Bytes::from(gone)).await;
                    return;
                };
                for batch in batches {
                    cursor = batch.time;
                    let only: Changes = batch.only(&view);
                    if only.changes.is_empty() {
                        continue;
                    }
                    let data = serde_json::to_string(&only).unwrap_or_default();
                    let event = format!("id: {}\nevent: changes\ndata: {data}\n\n", batch.time);
                    if sender.send(Bytes::from(event)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(15)) => {
                        if sender.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        event_stream(receiver)
    }
}
