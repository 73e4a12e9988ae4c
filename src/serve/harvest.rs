//! Harvest: artifacts that edge nodes downloaded, reported and uploaded, verified on arrival.
//!
//! An edge node reports what it downloaded (`POST /v1/harvest/reports`: edge, source, version,
//! size and the BLAKE3 hash it computed), which commits an `artifact_report` fact, then uploads
//! the bytes (`PUT /v1/harvest/uploads/SOURCE/VERSION`). The body is never held in memory: its
//! frames go, through a small bounded channel, to a writer thread that feeds a
//! [`blake3::Hasher`] and appends them to `DATA_DIR/harvest/partial/SOURCE@VERSION` (runs of
//! zero bytes become holes, so a sparse artifact stays sparse). An upload that is cut keeps
//! what arrived: `GET` (or `HEAD`) on the same path answers how many bytes the daemon holds, and
//! the next `PUT` goes on from there (`Content-Range: bytes START-END/TOTAL`), after the
//! daemon has hashed the partial file again from disk, in constant memory.
//!
//! Once every reported byte is there, the file is synced and `artifact_arrived(source,
//! version, central hash)` is committed; then the policy decides (rules/harvest.dl), and the
//! daemon does what its views say:
//!
//! - `accept`: the file moves to the content-addressed store `DATA_DIR/harvest/objects/HASH`,
//!   and `archived(source, version, hash)` is committed;
//! - `duplicate`: the store holds these bytes already under another name; the upload is
//!   dropped (one copy is kept) and the view itself records it: archiving the copy too would
//!   make the policy see the original as a duplicate of its copy;
//! - `quarantine`: the hashes differ; the transfer is refused (422, with both hashes) and the
//!   file goes to `DATA_DIR/harvest/quarantine/SOURCE@VERSION.HASH` for a person to look at.
//!
//! Every file is synced (and its directory, after a rename) before the fact that names it is
//! committed, so a crash never leaves a fact about bytes that are not on disk. A crash after
//! `artifact_arrived` but before the move leaves a complete partial file (or the object,
//! without its `archived` fact): the next `GET` or `PUT` of the upload sees the arrival and
//! finishes what the policy says, without any bytes.
//!
//! One upload of an artifact runs at a time. Its bytes are received by a task that owns the
//! claim on the name, not by the request handler, which hyper drops when the client goes
//! away: the claim is freed only once the writer has finished, so two writers never share a
//! partial file. A body that sends nothing for `idle_timeout_s` counts as cut.
//!
//! Source names are used as file names: letters, digits, `.`, `_` and `-`, not starting with
//! a `.`, at most 128 characters. The harvest endpoints speak JSON.

use super::core::{Core, Refusal};
use super::http::{Api, Body};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_engine::Value;
use vigil_engine::trace::{Entry, Field};

/// `[harvest]` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The largest artifact an edge may report (and so upload), in bytes; no limit without it.
    #[serde(default)]
    pub max_artifact_bytes: Option<u64>,
    /// How long an upload may send nothing before the daemon treats it as cut, in seconds
    /// (60 by default): a stalled edge must not hold its artifact forever.
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
}

/// How long an upload may stay silent when `idle_timeout_s` is not set.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The header that says how many bytes of an upload the daemon holds.
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// The header that says how many bytes the upload has in all (the reported size).
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");

/// How many body frames may wait for the writer thread: the memory an upload takes is this
/// many frames, whatever the artifact's size.
const FRAMES_IN_FLIGHT: usize = 16;

/// The relations the harvest endpoints read and write, with their arities.
const RELATIONS: [(&str, usize); 6] = [
    ("artifact_report", 5),
    ("artifact_arrived", 3),
    ("archived", 3),
    ("accept", 3),
    ("quarantine", 4),
    ("duplicate", 3),
];

/// The harvest endpoints' state: where artifacts live, and the uploads in progress.
pub struct Harvest {
    root: PathBuf,
    max_artifact_bytes: Option<u64>,
    /// How long an upload may send nothing before it counts as cut.
    idle_timeout: Duration,
    /// Why harvest is off (the program lacks a relation it needs), if it is.
    off: Option<String>,
    /// Whether the program has `node_role(node, role)`, which names the edge nodes.
    node_roles: bool,
    /// `SOURCE@VERSION` of the uploads being received: one at a time for each.
    busy: Mutex<HashSet<String>>,
}

impl Harvest {
    pub fn new(data_dir: &Path, settings: &Settings, program: &vigil_engine::ir::Program) -> Self {
        let arity = |name: &str| {
            program
                .relation(name)
                .map(|id| program.relations[id].arity())
        };
        let off = RELATIONS
            .iter()
            .find(|(name, want)| arity(name) != Some(*want))
            .map(|(name, want)| {
                format!(
                    "harvest is off: the program has no `{name}` relation of {want} columns (rules/harvest.dl declares them)"
                )
            });
        Harvest {
            root: data_dir.join("harvest"),
            max_artifact_bytes: settings.max_artifact_bytes,
            idle_timeout: settings
                .idle_timeout_s
                .filter(|&seconds| seconds > 0)
                .map_or(IDLE_TIMEOUT, Duration::from_secs),
            off,
            node_roles: arity("node_role") == Some(2),
            busy: Mutex::new(HashSet::new()),
        }
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.root.join("partial").join(name)
    }

    fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Creates `dir` (under `harvest/`) if it is missing, and syncs the directories that
    /// gained an entry, so that a file synced into it later survives a crash.
    fn make_dir(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let root_existed = self.root.is_dir();
        std::fs::create_dir_all(dir)?;
        if !root_existed && let Some(parent) = self.root.parent() {
            sync_dir(parent)?;
        }
        sync_dir(&self.root)
    }
}

/// Marks an upload as in progress, or `None` if one already is.
fn claim(api: &Arc<Api>, name: &str) -> Option<Claim> {
    let mut busy = api.harvest.busy.lock().unwrap_or_else(|p| p.into_inner());
    busy.insert(name.to_string()).then(|| Claim {
        api: api.clone(),
        name: name.to_string(),
    })
}

/// An upload in progress; dropping it (the writer has finished, however it ended) frees
/// the name. The task that receives an upload owns it, not the request handler: hyper drops
/// a handler whose client went away, and the name must stay taken until the writer is done.
struct Claim {
    api: Arc<Api>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut busy = self
            .api
            .harvest
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.name);
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::Full(Full::new(Bytes::from(bytes))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Invalid(message) => fail(StatusCode::UNPROCESSABLE_ENTITY, message),
        Refusal::Failed(message) => fail(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

fn with_offset(mut response: Response<Body>, received: u64, total: u64) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(received));
    headers.insert(UPLOAD_LENGTH, HeaderValue::from(total));
    response
}

/// A disk failure: logged, and answered as a 500 that says what could not be done.
fn disk(what: String, error: std::io::Error) -> Response<Body> {
    say_err!("error: harvest: {what}: {error}");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{what}: {error}"),
    )
}

/// Serves `/v1/harvest/...`; the caller has checked the scope.
pub async fn handle(api: &Arc<Api>, request: Request<Incoming>) -> Response<Body> {
    let harvest = &api.harvest;
    if let Some(off) = &harvest.off {
        return fail(StatusCode::NOT_FOUND, off.clone());
    }
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "harvest", "reports"]) => report(api, request).await,
        (&Method::GET | &Method::HEAD, ["v1", "harvest", "uploads", source, version]) => {
            let upload = match Upload::named(source, version) {
                Ok(upload) => upload,
                Err(message) => return fail(StatusCode::BAD_REQUEST, message),
            };
            let response = status(api, &upload).await;
            if method == Method::HEAD {
                let (parts, _) = response.into_parts();
                return Response::from_parts(parts, Body::Full(Full::new(Bytes::new())));
            }
            response
        }
        (&Method::PUT, ["v1", "harvest", "uploads", source, version]) => {
            let upload = match Upload::named(source, version) {
                Ok(upload) => upload,
                Err(message) => return fail(StatusCode::BAD_REQUEST, message),
            };
            receive(api, upload, request).await
        }
        _ => fail(
            StatusCode::NOT_FOUND,
            format!("no endpoint {method} {path}; see the README for the API"),
        ),
    }
}

/// Checks a source name, which becomes part of file names.
fn check_source(source: &str) -> Result<(), String> {
    let fine = !source.is_empty()
        && source.len() <= 128
        && !source.starts_with('.')
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "`{source}` is not a source name: letters, digits, `.`, `_` and `-`, not starting with `.`, at most 128 characters"
        ))
    }
}

/// Checks a BLAKE3 hash in hex; answers it in lower case.
fn check_hash(hash: &str) -> Result<String, String> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{hash}` is not a BLAKE3 hash: 64 hexadecimal digits (the edge's `vigil edge hash FILE` prints it)"
        ))
    }
}

fn symbol(text: &str) -> Field {
    Field(Some(Value::symbol(text)))
}

fn number(n: i64) -> Field {
    Field(Some(Value::Number(n)))
}

/// Commits one fact.
async fn commit(
    core: &Core,
    relation: &str,
    tuple: Vec<Field>,
    event: String,
) -> Result<u64, Refusal> {
    let entry = Entry {
        event: Some(event),
        insert: BTreeMap::from([(relation.to_string(), vec![tuple])]),
        ..Entry::default()
    };
    core.transact(entry).await.map(|changes| changes.time)
}

/// The rows of `relation` (every column a variable).
async fn rows(core: &Core, relation: &str, arity: usize) -> Result<Vec<Vec<Value>>, Refusal> {
    let variables: Vec<String> = (0..arity).map(|i| format!("X{i}")).collect();
    let answer = core
        .query(format!("{relation}({})", variables.join(", ")))
        .await?;
    Ok(answer
        .rows
        .into_iter()
        .filter_map(|row| row.into_iter().map(|field| field.0).collect())
        .collect())
}

fn text(value: &Value) -> &str {
    match value {
        Value::Symbol(text) => text,
        _ => "",
    }
}

fn whole(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// An artifact by name: `SOURCE@VERSION`.
struct Upload {
    source: String,
    version: i64,
}

impl Upload {
    /// The artifact a path names; the reason it is not a name, for a 400.
    fn named(source: &str, version: &str) -> Result<Upload, String> {
        check_source(source)?;
        let version = version.parse::<i64>().map_err(|_| {
            format!("the version in the path must be a whole number, not `{version}`")
        })?;
        Ok(Upload {
            source: source.to_string(),
            version,
        })
    }

    fn name(&self) -> String {
        format!("{}@{}", self.source, self.version)
    }

    /// Whether a row's first two columns are this artifact.
    fn is(&self, row: &[Value]) -> bool {
        row.len() >= 2 && text(&row[0]) == self.source && whole(&row[1]) == Some(self.version)
    }
}

/// What the engine knows of an artifact.
struct Known {
    /// The reported size (all reports agree on it).
    bytes: u64,
    /// The hashes the edges reported.
    reported: Vec<String>,
    /// The edges' reports, as (edge, hash).
    reports: Vec<(String, String)>,
    /// The hashes the daemon computed on arrival (`artifact_arrived`).
    arrived: Vec<String>,
    /// The hash it is a duplicate under (the store holds these bytes under another name).
    duplicate: Option<String>,
    /// The hash it is archived under, if it is.
    archived: Option<String>,
    /// The hashes that arrived and differ from a report, if it was quarantined.
    quarantined: Vec<String>,
}

/// What the engine knows of `upload`; a 404 answer if no edge reported it.
async fn known(core: &Core, upload: &Upload) -> Result<Known, Response<Body>> {
    let reports = rows(core, "artifact_report", 5).await.map_err(refused)?;
    let mut bytes = None;
    let mut reported = Vec::new();
    let mut edges = Vec::new();
    for row in reports.iter().filter(|row| upload.is(&row[1..])) {
        bytes = bytes.max(whole(&row[3]));
        let hash = text(&row[4]).to_string();
        edges.push((text(&row[0]).to_string(), hash.clone()));
        if !reported.contains(&hash) {
            reported.push(hash);
        }
    }
    let Some(bytes) = bytes else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            format!(
                "no edge reported {}: POST /v1/harvest/reports before uploading",
                upload.name()
            ),
        ));
    };
    let archived = rows(core, "archived", 3)
        .await
        .map_err(refused)?
        .into_iter()
        .find(|row| upload.is(row))
        .map(|row| text(&row[2]).to_string());
    let quarantined = rows(core, "quarantine", 4)
        .await
        .map_err(refused)?
        .into_iter()
        .filter(|row| upload.is(row))
        .map(|row| text(&row[3]).to_string())
        .collect();
    let hashes_in = |rows: Vec<Vec<Value>>| -> Vec<String> {
        let mut hashes: Vec<String> = Vec::new();
        for row in rows.into_iter().filter(|row| upload.is(row)) {
            let hash = text(&row[2]).to_string();
            if !hashes.contains(&hash) {
                hashes.push(hash);
            }
        }
        hashes
    };
    let arrived = hashes_in(rows(core, "artifact_arrived", 3).await.map_err(refused)?);
    let duplicate = hashes_in(rows(core, "duplicate", 3).await.map_err(refused)?)
        .into_iter()
        .next();
    Ok(Known {
        bytes: u64::try_from(bytes).unwrap_or(0),
        reported,
        reports: edges,
        arrived,
        duplicate,
        archived,
        quarantined,
    })
}

/// The size of a file, 0 if there is none.
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `POST /v1/harvest/reports`.
async fn report(api: &Api, request: Request<Incoming>) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Report {
        edge: String,
        source: String,
        version: i64,
        bytes: i64,
        hash: String,
    }
    let limit = api.config.max_request_bytes;
    let bytes = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(failure) if failure.is::<http_body_util::LengthLimitError>() => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            );
        }
        Err(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    let mut body = serde_json::Deserializer::from_slice(&bytes);
    let report: Report = match serde_path_to_error::deserialize(&mut body) {
        Ok(report) => report,
        Err(error) => {
            let place = match error.path().to_string() {
                path if path == "." => String::new(),
                path => format!(" at `{path}`"),
            };
            return fail(
                StatusCode::BAD_REQUEST,
                format!("the JSON body{place}: {}", error.inner()),
            );
        }
    };
    if let Err(error) = body.end() {
        return fail(StatusCode::BAD_REQUEST, format!("the JSON body: {error}"));
    }
    if let Err(message) = check_source(&report.source) {
        return fail(StatusCode::BAD_REQUEST, format!("`source`: {message}"));
    }
    let hash = match check_hash(&report.hash) {
        Ok(hash) => hash,
        Err(message) => return fail(StatusCode::BAD_REQUEST, format!("`hash`: {message}")),
    };
    if report.bytes < 0 {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("`bytes`: a size is 0 or more, not {}", report.bytes),
        );
    }
    if let Some(max) = api.harvest.max_artifact_bytes
        && report.bytes as u64 > max
    {
        return fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "`bytes`: {} bytes is more than the largest artifact this daemon takes ({max} bytes, `max_artifact_bytes` in `[harvest]`)",
                report.bytes
            ),
        );
    }
    let core = &api.core;
    if api.harvest.node_roles {
        let roles = match rows(core, "node_role", 2).await {
            Ok(roles) => roles,
            Err(refusal) => return refused(refusal),
        };
        if !roles
            .iter()
            .any(|row| text(&row[0]) == report.edge && text(&row[1]) == "edge")
        {
            return fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`edge`: `{}` is not an edge node (no `node_role(\"{}\", \"edge\")`)",
                    report.edge, report.edge
                ),
            );
        }
    }
    let upload = Upload {
        source: report.source.clone(),
        version: report.version,
    };
    // Every report of an artifact must give the same size (the upload is complete at it)
    // and the same hash: one artifact has one content. The same report again is fine.
    match known(core, &upload).await {
        Ok(known) if known.bytes != report.bytes as u64 => {
            return fail(
                StatusCode::CONFLICT,
                format!(
                    "`bytes`: {} was reported as {} bytes, not {}",
                    upload.name(),
                    known.bytes,
                    report.bytes
                ),
            );
        }
        Ok(known) => {
            let again = known
                .reports
                .iter()
                .any(|(edge, reported)| *edge == report.edge && *reported == hash);
            if !again && let Some(conflict) = conflicting(&upload, &known, &hash) {
                return fail(StatusCode::CONFLICT, conflict);
            }
        }
        Err(response) if response.status() == StatusCode::NOT_FOUND => {}
        Err(response) => return response,
    }
    let tuple = vec![
        symbol(&report.edge),
        symbol(&report.source),
        number(report.version),
        number(report.bytes),
        symbol(&hash),
    ];
    let event = format!("harvest: {} reports {}", report.edge, upload.name());
    let time = match commit(core, "artifact_report", tuple, event).await {
        Ok(time) => time,
        Err(refusal) => return refused(refusal),
    };
    let received = size_of(&api.harvest.partial(&upload.name()));
    with_offset(
        json(
            StatusCode::OK,
            &serde_json::json!({
                "committed": time,
                "edge": report.edge,
                "source": report.source,
                "version": report.version,
                "bytes": report.bytes,
                "hash": hash,
                "received": received,
            }),
        ),
        received,
        report.bytes as u64,
    )
}

/// Why a report of `hash` contradicts what is known of `upload`, if it does: another
/// report of it, or the bytes that arrived or are archived, have another hash.
fn conflicting(upload: &Upload, known: &Known, hash: &str) -> Option<String> {
    let name = upload.name();
    if let Some((edge, other)) = known.reports.iter().find(|(_, other)| other != hash) {
        return Some(format!(
            "`hash`: {edge} reported {name} as BLAKE3 {other}, not {hash}; one artifact has one content (report a new version)"
        ));
    }
    if let Some(other) = known.archived.as_ref().filter(|other| *other != hash) {
        return Some(format!(
            "`hash`: {name} is archived as BLAKE3 {other}, not {hash}"
        ));
    }
    if let Some(other) = known.arrived.iter().find(|other| *other != hash) {
        return Some(format!(
            "`hash`: {name} arrived as BLAKE3 {other}, not {hash}"
        ));
    }
    None
}

/// After a crash between `artifact_arrived` and the move that follows it, finishes the job
/// from what is on disk; the caller holds the claim. Answers the outcome if it settled the
/// upload; `None` when there was nothing to finish.
async fn recover(api: &Api, upload: &Upload, known: &Known) -> Option<Response<Body>> {
    if known.arrived.is_empty() || known.archived.is_some() {
        return None;
    }
    let harvest = &api.harvest;
    let name = upload.name();
    let partial = harvest.partial(&name);
    let full = std::fs::metadata(&partial).is_ok_and(|m| m.len() == known.bytes);
    if let Some(arrived) = known.quarantined.first() {
        if full {
            let dir = harvest.quarantine();
            let target = dir.join(format!("{name}.{arrived}"));
            let moved = harvest
                .make_dir(&dir)
                .and_then(|()| std::fs::rename(&partial, &target))
                .and_then(|()| sync_dir(&dir))
                .and_then(|()| sync_dir(&harvest.root.join("partial")));
            if let Err(error) = moved {
                return Some(disk(
                    format!("cannot quarantine {}", partial.display()),
                    error,
                ));
            }
            say!("harvest: {name} quarantined (finished after a restart)");
        }
        return None;
    }
    if known.duplicate.is_some() {
        if partial.exists() {
            let removed = std::fs::remove_file(&partial)
                .and_then(|()| sync_dir(&harvest.root.join("partial")));
            if let Err(error) = removed {
                return Some(disk(format!("cannot remove {}", partial.display()), error));
            }
        }
        return None;
    }
    let hash = known.arrived.first()?.clone();
    if full || harvest.objects().join(&hash).is_file() {
        return Some(settle(api, upload, known, &partial, hash, true).await);
    }
    None
}

/// `GET /v1/harvest/uploads/SOURCE/VERSION`: how far the upload got.
async fn status(api: &Arc<Api>, upload: &Upload) -> Response<Body> {
    let mut known = match known(&api.core, upload).await {
        Ok(known) => known,
        Err(response) => return response,
    };
    if !known.arrived.is_empty()
        && known.archived.is_none()
        && let Some(_claim) = claim(api, &upload.name())
    {
        known = match self::known(&api.core, upload).await {
            Ok(known) => known,
            Err(response) => return response,
        };
        if let Some(settled) = recover(api, upload, &known).await
            && !settled.status().is_success()
            && settled.status() != StatusCode::UNPROCESSABLE_ENTITY
        {
            return settled;
        }
        known = match self::known(&api.core, upload).await {
            Ok(known) => known,
            Err(response) => return response,
        };
    }
    let mut body = serde_json::json!({
        "source": upload.source,
        "version": upload.version,
        "bytes": known.bytes,
        "reported": known.reported,
    });
    let received = if let Some(hash) = &known.archived {
        body["state"] = "archived".into();
        body["hash"] = hash.as_str().into();
        known.bytes
    } else if !known.quarantined.is_empty() {
        body["state"] = "quarantined".into();
        body["arrived"] = known.quarantined.clone().into();
        known.bytes
    } else if let Some(hash) = &known.duplicate {
        body["state"] = "duplicate".into();
        body["hash"] = hash.as_str().into();
        body["of"] = match copies_of(&api.core, upload, hash).await {
            Ok(of) => of.into(),
            Err(refusal) => return refused(refusal),
        };
        known.bytes
    } else {
        body["state"] = "partial".into();
        size_of(&api.harvest.partial(&upload.name()))
    };
    body["received"] = received.into();
    with_offset(json(StatusCode::OK, &body), received, known.bytes)
}

/// The byte range a `PUT` carries: from `start` to `end` (excluded), of `total`.
#[derive(Debug, PartialEq)]
struct Range {
    start: u64,
    end: u64,
    total: u64,
}

/// Reads `Content-Range: bytes START-END/TOTAL` (END included, as HTTP has it) or
/// `bytes */TOTAL` (no bytes: finish an upload whose bytes are all there). Without the header,
/// the body is the whole artifact.
fn content_range(header: Option<&str>, reported: u64) -> Result<Range, String> {
    let Some(header) = header else {
        return Ok(Range {
            start: 0,
            end: reported,
            total: reported,
        });
    };
    let usage = "it reads `bytes START-END/TOTAL` (END included) or `bytes */TOTAL`";
    let Some(spec) = header.trim().strip_prefix("bytes ") else {
        return Err(format!("`Content-Range: {header}`: {usage}"));
    };
    let Some((span, total)) = spec.trim().split_once('/') else {
        return Err(format!("`Content-Range: {header}`: {usage}"));
    };
    let Ok(total) = total.parse::<u64>() else {
        return Err(format!(
            "`Content-Range: {header}`: the total must be a whole number; {usage}"
        ));
    };
    if span == "*" {
        return Ok(Range {
            start: total,
            end: total,
            total,
        });
    }
    let parsed = span
        .split_once('-')
        .and_then(|(start, end)| Some((start.parse::<u64>().ok()?, end.parse::<u64>().ok()?)));
    let Some((start, last)) = parsed else {
        return Err(format!("`Content-Range: {header}`: {usage}"));
    };
    if last < start || last >= total {
        return Err(format!(
            "`Content-Range: {header}`: the range must have START <= END < TOTAL"
        ));
    }
    Ok(Range {
        start,
        end: last + 1,
        total,
    })
}

/// Hashes the first `length` bytes of a file, in constant memory.
fn hash_prefix(path: &Path, length: u64) -> std::io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    if length == 0 {
        return Ok(hasher);
    }
    let mut file = File::open(path)?.take(length);
    let mut buffer = vec![0; 1 << 20];
    let mut read = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        read += n as u64;
    }
    if read < length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the partial file holds {read} bytes, not {length}"),
        ));
    }
    Ok(hasher)
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Whether a chunk is all zero bytes (compared with a zero block: the comparison is a
/// `memcmp`).
fn is_zero(chunk: &[u8]) -> bool {
    chunk
        .chunks(ZEROS.len())
        .all(|part| part == &ZEROS[..part.len()])
}

/// The writer thread: hashes the chunks and writes them from `position` on (zero chunks as
/// holes); then fixes the length and syncs the file. Answers the new length and the hasher.
fn write_chunks(
    mut file: File,
    mut position: u64,
    mut hasher: blake3::Hasher,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<(u64, blake3::Hasher)> {
    file.seek(SeekFrom::Start(position))?;
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        if is_zero(&chunk) {
            file.seek(SeekFrom::Current(chunk.len() as i64))?;
        } else {
            file.write_all(&chunk)?;
        }
        position += chunk.len() as u64;
    }
    file.set_len(position)?;
    file.sync_all()?;
    Ok((position, hasher))
}

/// Syncs a directory, so that a rename into it is durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How a body's frames ended.
enum Ended {
    /// All of the range arrived.
    Complete,
    /// The body ended (cleanly) before the end of the range.
    Short,
    /// The body held more than the range.
    Over,
    /// The connection failed (cut, reset).
    Cut(String),
    /// The writer thread stopped (a disk error).
    Writer,
}

/// `PUT /v1/harvest/uploads/SOURCE/VERSION`: bytes of the upload, from where it is.
///
/// The checks that need no claim answer at once; the upload itself runs in a task of its
/// own, which owns the claim: if the client goes away and hyper drops this handler, the
/// writer still finishes (and the bytes that arrived are settled) before the name is free
/// for the next `PUT`.
async fn receive(api: &Arc<Api>, upload: Upload, request: Request<Incoming>) -> Response<Body> {
    let name = upload.name();
    let known = match known(&api.core, &upload).await {
        Ok(known) => known,
        Err(response) => return response,
    };
    let header = request
        .headers()
        .get(header::CONTENT_RANGE)
        .map(|value| value.to_str().unwrap_or("(not text)").to_string());
    let range = match content_range(header.as_deref(), known.bytes) {
        Ok(range) => range,
        Err(message) => return fail(StatusCode::BAD_REQUEST, message),
    };
    if range.total != known.bytes {
        return fail(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "`Content-Range`: the total is {} bytes, but {name} was reported as {} bytes",
                range.total, known.bytes
            ),
        );
    }
    let length = range.end - range.start;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared != length
    {
        return fail(
            StatusCode::BAD_REQUEST,
            format!(
                "`Content-Length: {declared}` does not match the range, which holds {length} bytes"
            ),
        );
    }
    let Some(claim) = claim(api, &name) else {
        return fail(
            StatusCode::CONFLICT,
            format!("an upload of {name} is in progress; ask how far it got and try again"),
        );
    };
    let api = api.clone();
    let task = tokio::spawn(async move {
        let answer = upload_claimed(&api, &upload, range, request).await;
        drop(claim);
        answer
    });
    match task.await {
        Ok(answer) => answer,
        Err(error) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the upload of {name} failed: {error}"),
        ),
    }
}

/// The part of a `PUT` that runs under the claim of its artifact.
async fn upload_claimed(
    api: &Api,
    upload: &Upload,
    range: Range,
    request: Request<Incoming>,
) -> Response<Body> {
    let harvest = &api.harvest;
    let core = &api.core;
    let name = upload.name();
    // Known again now that no other upload of it runs: one may have finished meanwhile.
    let mut known = match known(core, upload).await {
        Ok(known) => known,
        Err(response) => return response,
    };
    if let Some(settled) = recover(api, upload, &known).await {
        return settled;
    }
    if !known.arrived.is_empty() {
        known = match self::known(core, upload).await {
            Ok(known) => known,
            Err(response) => return response,
        };
    }
    if let Some(hash) = &known.archived {
        return fail(
            StatusCode::CONFLICT,
            format!("{name} is archived already (BLAKE3 {hash}): there is nothing to upload"),
        );
    }
    if !known.quarantined.is_empty() {
        return fail(
            StatusCode::CONFLICT,
            format!(
                "{name} was quarantined (the edge reported {}, the daemon computed {}): it is not taken again",
                known.reported.join(", "),
                known.quarantined.join(", ")
            ),
        );
    }
    if let Some(hash) = &known.duplicate {
        return fail(
            StatusCode::CONFLICT,
            format!(
                "{name} is a duplicate (the store holds BLAKE3 {hash} already): there is nothing to upload"
            ),
        );
    }
    if range.total != known.bytes {
        return fail(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "`Content-Range`: the total is {} bytes, but {name} was reported as {} bytes",
                range.total, known.bytes
            ),
        );
    }
    let length = range.end - range.start;
    let partial = harvest.partial(&name);
    let mut received = size_of(&partial);
    if received > known.bytes {
        // A report of another size came after: the bytes held are not this artifact's.
        if let Err(error) = std::fs::remove_file(&partial) {
            return disk(format!("cannot remove {}", partial.display()), error);
        }
        received = 0;
    }
    if range.start != received {
        return with_offset(
            fail(
                StatusCode::CONFLICT,
                format!(
                    "the daemon holds {received} bytes of {name}: send from byte {received} (`Content-Range: bytes {received}-END/{}`)",
                    known.bytes
                ),
            ),
            received,
            known.bytes,
        );
    }
    let partial_dir = harvest.root.join("partial");
    if let Err(error) = harvest.make_dir(&partial_dir) {
        return disk(format!("cannot create {}", partial_dir.display()), error);
    }
    let opened = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&partial);
    let file = match opened {
        Ok(file) => file,
        Err(error) => return disk(format!("cannot open {}", partial.display()), error),
    };
    // Go on from the bytes on disk: hash them again (the hash of a cut upload is not kept).
    let prefix = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || hash_prefix(&partial, received)).await
    };
    let hasher = match prefix {
        Ok(Ok(hasher)) => hasher,
        Ok(Err(error)) => return disk(format!("cannot read {}", partial.display()), error),
        Err(error) => return fail(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let (chunks, waiting) = tokio::sync::mpsc::channel::<Bytes>(FRAMES_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || write_chunks(file, received, hasher, waiting));
    let mut body = request.into_body();
    let mut arrived = 0u64;
    let idle = harvest.idle_timeout;
    let ended = loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                break Ended::Cut(format!("no bytes arrived for {} s", idle.as_secs()));
            }
        };
        match frame {
            None => {
                break if arrived == length {
                    Ended::Complete
                } else {
                    Ended::Short
                };
            }
            Some(Err(error)) => break Ended::Cut(error.to_string()),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if arrived + data.len() as u64 > length {
                    break Ended::Over;
                }
                arrived += data.len() as u64;
                if chunks.send(data).await.is_err() {
                    break Ended::Writer;
                }
            }
        }
    };
    drop(chunks);
    drop(body);
    let written = match writer.await {
        Ok(Ok(written)) => written,
        Ok(Err(error)) => return disk(format!("cannot write {}", partial.display()), error),
        Err(error) => return fail(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    // The file is synced; its name must be too, or a crash could lose it.
    if let Err(error) = sync_dir(&partial_dir) {
        return disk(format!("cannot sync {}", partial_dir.display()), error);
    }
    let (position, hasher) = written;
    match ended {
        Ended::Complete => {}
        Ended::Writer => {
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the writer of {} stopped", partial.display()),
            );
        }
        Ended::Over => {
            // Nothing of a body that does not match its range is kept.
            let truncated = File::options().write(true).open(&partial).and_then(|file| {
                file.set_len(range.start)?;
                file.sync_all()
            });
            if let Err(error) = truncated {
                return disk(format!("cannot truncate {}", partial.display()), error);
            }
            return with_offset(
                fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body holds more than the {length} bytes of its range (bytes {}-{} of {name}, as reported): nothing of it was kept",
                        range.start,
                        range.end.saturating_sub(1)
                    ),
                ),
                range.start,
                known.bytes,
            );
        }
        Ended::Short => {
            return with_offset(
                fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body ended at byte {position} of {name}, before the end of its range (byte {}); the daemon keeps the {position} bytes: go on from there",
                        range.end
                    ),
                ),
                position,
                known.bytes,
            );
        }
        Ended::Cut(error) => {
            say_err!("harvest: the upload of {name} was cut at byte {position}: {error}");
            return with_offset(
                fail(
                    StatusCode::BAD_REQUEST,
                    format!("the body was cut at byte {position} of {name}: {error}"),
                ),
                position,
                known.bytes,
            );
        }
    }
    if position < known.bytes {
        return with_offset(
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "source": upload.source,
                    "version": upload.version,
                    "state": "partial",
                    "received": position,
                    "bytes": known.bytes,
                }),
            ),
            position,
            known.bytes,
        );
    }
    let hash = hasher.finalize().to_hex().to_string();
    settle(api, upload, &known, &partial, hash, false).await
}

/// The names the store holds `hash` under, other than `upload`'s.
async fn copies_of(core: &Core, upload: &Upload, hash: &str) -> Result<Vec<String>, Refusal> {
    Ok(rows(core, "archived", 3)
        .await?
        .iter()
        .filter(|row| text(&row[2]) == hash && !upload.is(row))
        .map(|row| format!("{}@{}", text(&row[0]), whole(&row[1]).unwrap_or_default()))
        .collect())
}

/// All the bytes are there, and synced: commits the central hash (unless `arrived` says it
/// is committed already: finishing after a crash) and does what the policy decides. The
/// partial file may be gone when finishing: moved to the store before the crash.
async fn settle(
    api: &Api,
    upload: &Upload,
    known: &Known,
    partial: &Path,
    hash: String,
    arrived: bool,
) -> Response<Body> {
    let (harvest, core, name) = (&api.harvest, &api.core, upload.name());
    let tuple = vec![
        symbol(&upload.source),
        number(upload.version),
        symbol(&hash),
    ];
    if !arrived
        && let Err(refusal) = commit(
            core,
            "artifact_arrived",
            tuple,
            format!("harvest: {name} arrived"),
        )
        .await
    {
        return refused(refusal);
    }
    let view = |relation: &'static str, arity: usize| async move {
        rows(core, relation, arity).await.map(|rows| {
            rows.into_iter()
                .filter(|row| upload.is(row))
                .collect::<Vec<_>>()
        })
    };
    let (quarantine, accept, duplicate) = match (
        view("quarantine", 4).await,
        view("accept", 3).await,
        view("duplicate", 3).await,
    ) {
        (Ok(q), Ok(a), Ok(d)) => (q, a, d),
        (Err(refusal), _, _) | (_, Err(refusal), _) | (_, _, Err(refusal)) => {
            return refused(refusal);
        }
    };
    let body = |outcome: &str| {
        serde_json::json!({
            "source": upload.source,
            "version": upload.version,
            "bytes": known.bytes,
            "outcome": outcome,
            "hash": hash,
        })
    };
    let partial_dir = harvest.root.join("partial");
    if !quarantine.is_empty() {
        let dir = harvest.quarantine();
        let target = dir.join(format!("{name}.{hash}"));
        let moved = harvest
            .make_dir(&dir)
            .and_then(|()| std::fs::rename(partial, &target))
            .and_then(|()| sync_dir(&dir))
            .and_then(|()| sync_dir(&partial_dir));
        if let Err(error) = moved {
            return disk(format!("cannot quarantine {}", partial.display()), error);
        }
        let reported: Vec<&str> = quarantine.iter().map(|row| text(&row[2])).collect();
        let mut answer = body("quarantined");
        answer["reported"] = reported.clone().into();
        answer["arrived"] = hash.as_str().into();
        answer["error"] = format!(
            "{name} refused: the daemon computed BLAKE3 {hash}, but the edge reported {}; the file is quarantined",
            reported.join(", ")
        )
        .into();
        say!(
            "harvest: {name} quarantined: reported {}, arrived {hash}",
            reported.join(", ")
        );
        return json(StatusCode::UNPROCESSABLE_ENTITY, &answer);
    }
    let objects = harvest.objects();
    let object = objects.join(&hash);
    if accept.is_empty() && !duplicate.is_empty() {
        // The store holds these bytes under another name: this copy is dropped, and the
        // `duplicate` view records it (archiving it too would make the original a duplicate
        // of the copy).
        if partial.exists() {
            let removed = std::fs::remove_file(partial).and_then(|()| sync_dir(&partial_dir));
            if let Err(error) = removed {
                return disk(format!("cannot remove {}", partial.display()), error);
            }
        }
        let mut answer = body("duplicate");
        answer["object"] = object.display().to_string().into();
        answer["of"] = match copies_of(core, upload, &hash).await {
            Ok(of) => of.into(),
            Err(refusal) => return refused(refusal),
        };
        say!("harvest: {name} duplicate as {hash}");
        return json(StatusCode::OK, &answer);
    }
    if accept.is_empty() {
        // Verified, but neither new nor a duplicate: another report disputes it. Nothing is
        // stored.
        return fail(
            StatusCode::CONFLICT,
            format!(
                "the policy neither accepts {name} nor refuses it (BLAKE3 {hash}); the bytes stay in {}",
                partial.display()
            ),
        );
    }
    // One copy of each content: a file already in the store is the same bytes.
    let stored = harvest.make_dir(&objects).and_then(|()| {
        if object.exists() {
            if partial.exists() {
                std::fs::remove_file(partial)?;
                sync_dir(&partial_dir)?;
            }
            Ok(())
        } else {
            std::fs::rename(partial, &object)?;
            sync_dir(&objects)?;
            sync_dir(&partial_dir)
        }
    });
    if let Err(error) = stored {
        return disk(format!("cannot store {}", partial.display()), error);
    }
    let tuple = vec![
        symbol(&upload.source),
        number(upload.version),
        symbol(&hash),
    ];
    if let Err(refusal) = commit(core, "archived", tuple, format!("harvest: {name} archived")).await
    {
        return refused(refusal);
    }
    let mut answer = body("accepted");
    answer["object"] = object.display().to_string().into();
    say!("harvest: {name} accepted as {hash}");
    json(StatusCode::OK, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let range = |start, end, total| Range { start, end, total };
        assert_eq!(content_range(None, 10), Ok(range(0, 10, 10)));
        assert_eq!(
            content_range(Some("bytes 0-9/10"), 10),
            Ok(range(0, 10, 10))
        );
        assert_eq!(
            content_range(Some("bytes 4-9/10"), 10),
            Ok(range(4, 10, 10))
        );
        assert_eq!(content_range(Some("bytes */10"), 10), Ok(range(10, 10, 10)));
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
        ] {
            assert!(content_range(Some(bad), 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_hashes() {
        assert!(check_source("wikipedia_en.zim-2026").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "..", &"x".repeat(129)] {
            assert!(check_source(bad).is_err(), "{bad}");
        }
        let hash = blake3::hash(b"x").to_hex().to_string();
        assert_eq!(check_hash(&hash.to_uppercase()), Ok(hash.clone()));
        assert!(check_hash(&hash[1..]).is_err());
        assert!(check_hash(&format!("{}g", &hash[1..])).is_err());
    }

    #[test]
    fn zero_chunks() {
        assert!(is_zero(&[]));
        assert!(is_zero(&vec![0; 200_000]));
        let mut chunk = vec![0; 200_000];
        chunk[150_000] = 1;
        assert!(!is_zero(&chunk));
    }
}
