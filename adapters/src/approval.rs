//! The human-in-the-loop approval flow: a request for a person's decision, the signed links
//! that carry it back, and the push notification that shows them.
//!
//! An action whose tier is "approval" waits in the `awaiting_approval` view until an
//! `approval(action, decision, at)` fact says what a person decided (rules/approvals.dl). This
//! module is the path between the two:
//!
//! 1. The caller turns a new `awaiting_approval` row into an [`ApprovalRequest`] (what, why,
//!    until when) and opens it in [`Approvals`].
//! 2. [`Notifier`] publishes it to ntfy (or anything that speaks ntfy's publish-as-JSON) with
//!    two buttons, Approve and Deny. Each button POSTs to the daemon's public URL,
//!    [`DECIDE_PATH`]`?token=...`, and the token says everything: which request, which
//!    decision, until when, and a MAC over those three.
//! 3. The daemon's endpoint hands the token to [`Approvals::decide`], which returns a
//!    [`DecisionRecord`] to journal whatever happened and, for a valid token, the
//!    [`Report`] with the `approval` fact to commit.
//!
//! # Tokens
//!
//! A token is `v1.<request id>.<approve|deny>.<expires>.<mac>`: the request id is 32 hex
//! digits, `expires` is in Unix seconds, and the MAC is BLAKE3 in keyed mode (64 hex digits)
//! over the version, the id, the decision and the expiry, with a key derived from the
//! configured secret by `blake3::derive_key` under [`TOKEN_KEY_CONTEXT`]. Every character is
//! URL-safe, so a token goes in a query string as it is. The MAC is compared in constant time
//! (`blake3::Hash` equality), so a forger learns nothing from how long a refusal takes.
//!
//! The request id is itself a hash of the whole request (action, kind, target, parameters,
//! explanation, times): a link approves exactly what the notification showed, and opening the
//! same request again (after a restart, say) gives the same id, so its links keep working.
//!
//! A token is checked in this order, and the first failure is the outcome: it must parse
//! ([`Refusal::Malformed`]), its MAC must match ([`Refusal::Forged`]), it must not have
//! expired ([`Refusal::Expired`]), its request must not be decided yet ([`Refusal::Reused`]),
//! and its request must be open ([`Refusal::UnknownRequest`]). Expiry comes before reuse so
//! that the ledger only ever needs to remember a decision until its request expires.
//!
//! # Single use
//!
//! Single use is per request, not per token: the Approve and Deny links of one notification
//! answer one question, and once either is used both are spent. A person who changes their
//! mind later writes an `approval` fact through the API instead; a request re-raised after a
//! denial is a new request with new links.
//!
//! The [`Ledger`] of decided requests is an append-only text file, synced (`fsync`) before a
//! decision is returned, so a restart never forgets a used token; a line torn by a crash was
//! never acknowledged and is dropped when the file is opened. If the ledger cannot be written,
//! the decision is refused ([`Refusal::Unrecorded`]) rather than applied without the
//! guarantee.
//!
//! # Caveats
//!
//! - Open requests live in memory. After a restart the caller opens them again from the
//!   `awaiting_approval` view; links sent before the restart keep working only if the request
//!   is opened with the same fields (or the caller persists the requests: they are serde
//!   types). Otherwise their tokens are refused as [`Refusal::UnknownRequest`] and a new
//!   notification goes out.
//! - The buttons use POST, not GET, so that a link preview or a prefetching proxy cannot
//!   decide anything; the endpoint should accept POST only.
//! - The notifier speaks plain HTTP/1.1 (ntfy on the LAN, or a local TLS proxy in front of a
//!   remote one); an `https://` ntfy URL is refused when the [`Notifier`] is built.
//! - [`Approvals`] is synchronous and `&mut`: the daemon keeps it behind a lock, and calls
//!   [`Approvals::decide`] where a short blocking `fsync` is acceptable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::source::{Backoff, Report, number, symbol};

/// The context string under which the token key is derived from the configured secret. It is
/// fixed: changing it invalidates every link in flight.
pub const TOKEN_KEY_CONTEXT: &str = "vigil 2025-01-01 approval decision tokens v1";

/// The context string of the request id's hash.
const REQUEST_ID_CONTEXT: &str = "vigil 2025-01-01 approval request id v1";

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The daemon's path that receives decisions: `POST <public url>/v1/approvals/decide?token=...`.
pub const DECIDE_PATH: &str = "/v1/approvals/decide";

/// The token format's version, its first field.
const TOKEN_VERSION: &str = "v1";

/// Longest token read, in bytes: a real one has about 120.
const TOKEN_MAX: usize = 256;

/// Hex digits of a request id (128 bits).
const REQUEST_ID_DIGITS: usize = 32;

/// The input relation that decisions feed (rules/approvals.dl).
pub const APPROVAL_RELATION: &str = "approval";

/// What a person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The decision as the `approval` relation spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A question for a person: may this action happen? Built from an `awaiting_approval(id,
/// kind, target, reason)` row, with whatever explanation the caller gives (the reason, the
/// derivation). Its id is a hash of all of it ([`ApprovalRequest::id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The action id, such as `stop:llm-chat`: the key of the `approval` fact.
    pub action: String,
    pub kind: String,
    pub target: String,
    /// Anything else the person should see and the decision binds to (a node, a size).
    pub parameters: BTreeMap<String, String>,
    /// Why the action is wanted, as the person will read it.
    pub explanation: String,
    /// When the request was raised, in Unix seconds.
    pub created: i64,
    /// The first second at which its links no longer decide anything.
    pub expires: i64,
}

impl ApprovalRequest {
    pub fn new(
        action: &str,
        kind: &str,
        target: &str,
        explanation: &str,
        created: i64,
        expires: i64,
    ) -> ApprovalRequest {
        ApprovalRequest {
            action: action.into(),
            kind: kind.into(),
            target: target.into(),
            parameters: BTreeMap::new(),
            explanation: explanation.into(),
            created,
            expires,
        }
    }

    pub fn with_parameter(mut self, name: &str, value: &str) -> ApprovalRequest {
        self.parameters.insert(name.into(), value.into());
        self
    }

    /// The request's id: 32 hex digits of a BLAKE3 hash over every field, each length-prefixed
    /// so that no two requests share an encoding.
    pub fn id(&self) -> String {
        fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let mut hasher = blake3::Hasher::new_derive_key(REQUEST_ID_CONTEXT);
        field(&mut hasher, self.action.as_bytes());
        field(&mut hasher, self.kind.as_bytes());
        field(&mut hasher, self.target.as_bytes());
        hasher.update(&(self.parameters.len() as u64).to_le_bytes());
        for (name, value) in &self.parameters {
            field(&mut hasher, name.as_bytes());
            field(&mut hasher, value.as_bytes());
        }
        field(&mut hasher, self.explanation.as_bytes());
        hasher.update(&self.created.to_le_bytes());
        hasher.update(&self.expires.to_le_bytes());
        hasher.finalize().to_hex()[..REQUEST_ID_DIGITS].to_string()
    }
}

/// Signs and checks decision tokens with a key derived from the configured secret.
#[derive(Clone)]
pub struct Signer {
    key: [u8; blake3::KEY_LEN],
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { key: <redacted> }")
    }
}

impl Signer {
    /// A signer for `secret`, which must have at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(secret: &[u8]) -> Result<Signer, ApprovalError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ApprovalError::WeakSecret {
                length: secret.len(),
            });
        }
        Ok(Signer {
            key: blake3::derive_key(TOKEN_KEY_CONTEXT, secret),
        })
    }

    /// The token that decides `request` as `decision`, valid until the request expires.
    pub fn token(&self, request: &ApprovalRequest, decision: Decision) -> String {
        let id = request.id();
        let mac = self.mac(&id, decision, request.expires);
        format!(
            "{TOKEN_VERSION}.{id}.{decision}.{}.{}",
            request.expires,
            mac.to_hex()
        )
    }

    /// Reads `text` and checks its MAC: the token's fields if both hold. Expiry and use are
    /// [`Approvals::verify`]'s business.
    pub fn check(&self, text: &str) -> Result<Token, Refusal> {
        let (token, mac) = Token::parse(text)?;
        // `blake3::Hash` equality is constant-time.
        if self.mac(&token.request, token.decision, token.expires) != mac {
            return Err(Refusal::Forged {
                request: token.request,
                decision: token.decision,
            });
        }
        Ok(token)
    }

    fn mac(&self, request: &str, decision: Decision, expires: i64) -> blake3::Hash {
        // The fields cannot contain '\n' (parsing and `ApprovalRequest::id` see to it), so
        // this encoding is unambiguous.
        let message = format!("{TOKEN_VERSION}\n{request}\n{decision}\n{expires}");
        blake3::keyed_hash(&self.key, message.as_bytes())
    }
}

/// The fields a token carries (and its MAC covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub request: String,
    pub decision: Decision,
    pub expires: i64,
}

impl Token {
    /// Reads a token's text, without checking its MAC.
    fn parse(text: &str) -> Result<(Token, blake3::Hash), Refusal> {
        let malformed = |reason: &str| Refusal::Malformed {
            reason: reason.to_string(),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(malformed("the token is empty"));
        }
        if text.len() > TOKEN_MAX {
            return Err(Refusal::Malformed {
                reason: format!(
                    "the token has {} bytes, more than the {TOKEN_MAX} a token can have",
                    text.len()
                ),
            });
        }
        let fields: Vec<&str> = text.split('.').collect();
        let [version, request, decision, expires, mac] = fields[..] else {
            return Err(Refusal::Malformed {
                reason: format!(
                    "expected 5 fields separated by '.' (version, request, decision, expiry, signature), found {}",
                    fields.len()
                ),
            });
        };
        if version != TOKEN_VERSION {
            return Err(malformed("unknown version (this daemon reads v1 tokens)"));
        }
        if request.len() != REQUEST_ID_DIGITS || !request.bytes().all(is_lower_hex) {
            return Err(malformed("the request id is not 32 lowercase hex digits"));
        }
        let Some(decision) = Decision::parse(decision) else {
            return Err(malformed(
                "the decision is neither \"approve\" nor \"deny\"",
            ));
        };
        let expires = if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            expires.parse::<i64>().ok()
        };
        let Some(expires) = expires else {
            return Err(malformed("the expiry is not a number of seconds"));
        };
        if mac.len() != 2 * blake3::OUT_LEN || !mac.bytes().all(is_lower_hex) {
            return Err(malformed("the signature is not 64 lowercase hex digits"));
        }
        let mac = blake3::Hash::from_hex(mac)
            .map_err(|_| malformed("the signature is not 64 lowercase hex digits"))?;
        let token = Token {
            request: request.to_string(),
            decision,
            expires,
        };
        Ok((token, mac))
    }
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

/// Why a token decided nothing. Each is a distinct outcome in the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed token: {reason}")]
    Malformed { reason: String },
    #[error(
        "forged token for request {request}: the signature does not match its fields (they were changed, or another secret signed it)"
    )]
    Forged { request: String, decision: Decision },
    #[error("expired token: request {request} could be decided until {until}, {ago} ago", until = utc(*.expires), ago = span(.now.saturating_sub(*.expires)))]
    Expired {
        request: String,
        decision: Decision,
        expires: i64,
        now: i64,
    },
    #[error("used token: request {request} was already decided ({previous} at {when}); a request is decided once", when = utc(*.at))]
    Reused {
        request: String,
        decision: Decision,
        previous: Decision,
        at: i64,
    },
    #[error(
        "unknown request {request}: nothing waits for it (the action no longer needs approval, or the daemon did not open the request again after a restart)"
    )]
    UnknownRequest { request: String, decision: Decision },
    #[error(
        "cannot record the decision on request {request} in the ledger, so it was not applied: {error}"
    )]
    Unrecorded {
        request: String,
        decision: Decision,
        error: String,
    },
}

impl Refusal {
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::Malformed { .. } => Outcome::Malformed,
            Refusal::Forged { .. } => Outcome::Forged,
            Refusal::Expired { .. } => Outcome::Expired,
            Refusal::Reused { .. } => Outcome::Reused,
            Refusal::UnknownRequest { .. } => Outcome::UnknownRequest,
            Refusal::Unrecorded { .. } => Outcome::Unrecorded,
        }
    }

    /// The request the token names, if it could be read (for a forged token, the one it
    /// claims).
    pub fn request(&self) -> Option<&str> {
        match self {
            Refusal::Malformed { .. } => None,
            Refusal::Forged { request, .. }
            | Refusal::Expired { request, .. }
            | Refusal::Reused { request, .. }
            | Refusal::UnknownRequest { request, .. }
            | Refusal::Unrecorded { request, .. } => Some(request),
        }
    }

    /// The decision the token carries, if it could be read.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Refusal::Malformed { .. } => None,
            Refusal::Forged { decision, .. }
            | Refusal::Expired { decision, .. }
            | Refusal::Reused { decision, .. }
            | Refusal::UnknownRequest { decision, .. }
            | Refusal::Unrecorded { decision, .. } => Some(*decision),
        }
    }
}

/// What became of a token, as the journal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    Denied,
    Malformed,
    Forged,
    Expired,
    Reused,
    UnknownRequest,
    Unrecorded,
}

impl Outcome {
    /// Whether the token decided its request.
    pub fn is_valid(self) -> bool {
        matches!(self, Outcome::Approved | Outcome::Denied)
    }
}

/// A valid decision: the request it decided, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub request: ApprovalRequest,
    pub request_id: String,
    pub decision: Decision,
    /// When the token was presented, in Unix seconds: the `at` of the `approval` fact.
    pub at: i64,
}

impl Verified {
    pub fn outcome(&self) -> Outcome {
        match self.decision {
            Decision::Approve => Outcome::Approved,
            Decision::Deny => Outcome::Denied,
        }
    }

    /// The decision as facts: `approval(action, "approve"|"deny", at)`, an insert into the
    /// keyed stream input that replaces any earlier decision on the action.
    pub fn report(&self) -> Report {
        let mut report = Report::default();
        report.insert(
            APPROVAL_RELATION,
            vec![
                symbol(&self.request.action),
                symbol(self.decision.as_str()),
                number(self.at),
            ],
        );
        report
    }
}

/// What the journal keeps of every token presented, valid or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When the token was presented, in Unix seconds.
    pub time: i64,
    /// The request the token names, if it could be read.
    pub request: Option<String>,
    /// The action the request is about, if the token is genuine and its request open.
    pub action: Option<String>,
    /// The decision the token carries, if it could be read (valid or not).
    pub decision: Option<Decision>,
    pub outcome: Outcome,
    /// A sentence: what was decided, or why the token was refused.
    pub reason: String,
}

/// The answer to a decision link: the record to journal and, when the token was valid, the
/// facts to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub record: DecisionRecord,
    pub report: Option<Report>,
}

/// A decided request, as the ledger remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub decision: Decision,
    /// When it was decided.
    pub at: i64,
    /// When its tokens expire: after that the entry matters no more.
    pub expires: i64,
}

/// The requests already decided, so that no token decides twice, even across a restart.
///
/// On disk it is a text file: a header line, then one line per decision, `<request id> TAB
/// <decision> TAB <at> TAB <expires>`, appended and synced before the decision is returned.
/// A last line without its newline was torn by a crash before it was acknowledged: it is cut
/// off when the file is opened. Any other line that does not read is damage, and the file is
/// refused rather than half-trusted. It grows by about 60 bytes per decision.
#[derive(Debug)]
pub struct Ledger {
    file: Option<(PathBuf, File)>,
    used: HashMap<String, Used>,
}

const LEDGER_HEADER: &str = "vigil approval ledger v1\n";

impl Ledger {
    /// A ledger that forgets on restart: for tests, and for callers that keep the decisions
    /// elsewhere.
    pub fn in_memory() -> Ledger {
        Ledger {
            file: None,
            used: HashMap::new(),
        }
    }

    /// Opens the ledger at `path`, creating it (and syncing its directory) if it is missing.
    pub fn open(path: &Path) -> Result<Ledger, ApprovalError> {
        let io_error = |source| ApprovalError::LedgerIo {
            path: path.to_path_buf(),
            source,
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let mut used = HashMap::new();
        if bytes.len() < LEDGER_HEADER.len() && LEDGER_HEADER.as_bytes().starts_with(&bytes) {
            // New, or its header was torn: start it over.
            file.set_len(0).map_err(io_error)?;
            file.write_all(LEDGER_HEADER.as_bytes()).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            if created {
                sync_directory(path).map_err(io_error)?;
            }
        } else {
            if !bytes.starts_with(LEDGER_HEADER.as_bytes()) {
                return Err(ApprovalError::LedgerDamaged {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!("it does not start with {:?}", LEDGER_HEADER.trim_end()),
                });
            }
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole < bytes.len() {
                // A torn last line: its decision was never returned.
                file.set_len(whole as u64).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
            }
            // Invalid UTF-8 becomes replacement characters, which no field accepts: the
            // damage is then reported with its line.
            let text = String::from_utf8_lossy(&bytes[..whole]);
            for (index, line) in text.lines().enumerate().skip(1) {
                let (request, entry) =
                    parse_ledger_line(line).map_err(|reason| ApprovalError::LedgerDamaged {
                        path: path.to_path_buf(),
                        line: index + 1,
                        reason,
                    })?;
                used.insert(request, entry);
            }
        }
        Ok(Ledger {
            file: Some((path.to_path_buf(), file)),
            used,
        })
    }

    /// How `request` was decided, if it was.
    pub fn used(&self, request: &str) -> Option<Used> {
        self.used.get(request).copied()
    }

    /// Records that `request` was decided; on disk, durably, before it returns.
    pub fn record(&mut self, request: &str, used: Used) -> io::Result<()> {
        if let Some((_, file)) = &mut self.file {
            let line = format!(
                "{request}\t{}\t{}\t{}\n",
                used.decision, used.at, used.expires
            );
            let length = file.metadata()?.len();
            let written = file
                .write_all(line.as_bytes())
                .and_then(|()| file.sync_data());
            if let Err(error) = written {
                // Take a partial line back so that the next record starts on a line of its
                // own; if even that fails, opening the file cuts the torn tail.
                let _ = file.set_len(length);
                return Err(error);
            }
        }
        self.used.insert(request.to_string(), used);
        Ok(())
    }

    /// How many decisions it holds.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// Where it is kept, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }
}

fn parse_ledger_line(line: &str) -> Result<(String, Used), String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [request, decision, at, expires] = fields[..] else {
        return Err(format!(
            "expected 4 tab-separated fields, found {}",
            fields.len()
        ));
    };
    if request.len() != REQUEST_ID_DIGITS || !request.bytes().all(is_lower_hex) {
        return Err(format!("{request:?} is not a request id"));
    }
    let decision =
        Decision::parse(decision).ok_or_else(|| format!("{decision:?} is not a decision"))?;
    let at = at
        .parse()
        .map_err(|_| format!("{at:?} is not a time in seconds"))?;
    let expires = expires
        .parse()
        .map_err(|_| format!("{expires:?} is not a time in seconds"))?;
    Ok((
        request.to_string(),
        Used {
            decision,
            at,
            expires,
        },
    ))
}

/// Makes a new file's directory entry durable.
fn sync_directory(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// The open requests, the signer and the ledger: everything a decision link is checked
/// against.
#[derive(Debug)]
pub struct Approvals {
    signer: Signer,
    ledger: Ledger,
    open: BTreeMap<String, ApprovalRequest>,
}

impl Approvals {
    pub fn new(signer: Signer, ledger: Ledger) -> Approvals {
        Approvals {
            signer,
            ledger,
            open: BTreeMap::new(),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Opens `request` for decision and returns its id. Opening the same request again changes
    /// nothing.
    pub fn open(&mut self, request: ApprovalRequest) -> String {
        let id = request.id();
        self.open.insert(id.clone(), request);
        id
    }

    /// Whether a request with this id is open.
    pub fn is_open(&self, request: &str) -> bool {
        self.open.contains_key(request)
    }

    /// The open requests, by id.
    pub fn pending(&self) -> impl Iterator<Item = (&str, &ApprovalRequest)> {
        self.open.iter().map(|(id, request)| (id.as_str(), request))
    }

    /// Closes the requests about `action` (it no longer awaits approval): their links are
    /// refused from now on. Returns them.
    pub fn withdraw(&mut self, action: &str) -> Vec<ApprovalRequest> {
        let ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, request)| request.action == action)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.open.remove(id)).collect()
    }

    /// Closes the requests that expired by `now`. Returns them.
    pub fn expire(&mut self, now: i64) -> Vec<ApprovalRequest> {
        let ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, request)| now >= request.expires)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.open.remove(id)).collect()
    }

    /// Checks `token` at `now` (Unix seconds): its form, its MAC, its expiry, its use and its
    /// request, in that order. A valid token is recorded in the ledger (synced) and closes its
    /// request before this returns.
    pub fn verify(&mut self, token: &str, now: i64) -> Result<Verified, Refusal> {
        let Token {
            request,
            decision,
            expires,
        } = self.signer.check(token)?;
        if now >= expires {
            return Err(Refusal::Expired {
                request,
                decision,
                expires,
                now,
            });
        }
        if let Some(used) = self.ledger.used(&request) {
            return Err(Refusal::Reused {
                request,
                decision,
                previous: used.decision,
                at: used.at,
            });
        }
        if !self.open.contains_key(&request) {
            return Err(Refusal::UnknownRequest { request, decision });
        }
        let used = Used {
            decision,
            at: now,
            expires,
        };
        if let Err(error) = self.ledger.record(&request, used) {
            return Err(Refusal::Unrecorded {
                request,
                decision,
                error: error.to_string(),
            });
        }
        let Some(opened) = self.open.remove(&request) else {
            return Err(Refusal::UnknownRequest { request, decision });
        };
        Ok(Verified {
            request: opened,
            request_id: request,
            decision,
            at: now,
        })
    }

    /// What the daemon's decision endpoint does with a token presented at `now`: verifies it,
    /// and returns the record to journal (always) and the facts to commit (valid tokens only).
    pub fn decide(&mut self, token: &str, now: i64) -> Decided {
        match self.verify(token, now) {
            Ok(verified) => {
                let request = &verified.request;
                let reason = format!(
                    "{} by a person: {} {} ({})",
                    match verified.decision {
                        Decision::Approve => "approved",
                        Decision::Deny => "denied",
                    },
                    request.kind,
                    request.target,
                    request.action
                );
                let record = DecisionRecord {
                    time: now,
                    request: Some(verified.request_id.clone()),
                    action: Some(request.action.clone()),
                    decision: Some(verified.decision),
                    outcome: verified.outcome(),
                    reason,
                };
                Decided {
                    record,
                    report: Some(verified.report()),
                }
            }
            Err(refusal) => {
                // The action only for a genuine token: a forged one names what it likes.
                let action = match &refusal {
                    Refusal::Malformed { .. } | Refusal::Forged { .. } => None,
                    _ => refusal
                        .request()
                        .and_then(|id| self.open.get(id))
                        .map(|request| request.action.clone()),
                };
                let record = DecisionRecord {
                    time: now,
                    request: refusal.request().map(str::to_string),
                    action,
                    decision: refusal.decision(),
                    outcome: refusal.outcome(),
                    reason: refusal.to_string(),
                };
                Decided {
                    record,
                    report: None,
                }
            }
        }
    }
}

/// The Approve and Deny links of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLinks {
    pub approve: String,
    pub deny: String,
}

impl DecisionLinks {
    /// The links under the daemon's public base URL (such as `https://vigil.lan:7070`).
    pub fn new(public_url: &str, signer: &Signer, request: &ApprovalRequest) -> DecisionLinks {
        let base = public_url.trim_end_matches('/');
        let link = |decision| {
            format!(
                "{base}{DECIDE_PATH}?token={}",
                signer.token(request, decision)
            )
        };
        DecisionLinks {
            approve: link(Decision::Approve),
            deny: link(Decision::Deny),
        }
    }
}

/// How the notifier authenticates to ntfy.
#[derive(Clone, PartialEq, Eq)]
pub enum NtfyAuth {
    /// `Authorization: Bearer <token>` (an ntfy access token, `tk_...`).
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
}

impl fmt::Debug for NtfyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtfyAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            NtfyAuth::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: <redacted> }}")
            }
        }
    }
}

impl NtfyAuth {
    fn header(&self) -> String {
        match self {
            NtfyAuth::Bearer(token) => format!("Bearer {token}"),
            NtfyAuth::Basic { user, password } => {
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
            }
        }
    }
}

/// Where and how to publish approval requests.
#[derive(Debug, Clone)]
pub struct NtfyConfig {
    /// ntfy's root URL (publishing as JSON posts to the root, not to the topic's URL), such as
    /// `http://ntfy.lan/`. Plain HTTP only.
    pub url: String,
    pub topic: String,
    /// The daemon's public base URL, which the phone reaches: the buttons post there.
    pub public_url: String,
    pub auth: Option<NtfyAuth>,
    /// 1 (min) to 5 (max); 3 is ntfy's default.
    pub priority: u8,
    /// Tags (ntfy shows known ones as emojis); the action's kind is added.
    pub tags: Vec<String>,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first wait between attempts, doubled after each failure up to `retry_cap`.
    pub retry_first: Duration,
    pub retry_cap: Duration,
}

impl NtfyConfig {
    /// A configuration with the defaults: priority 4 (high), tag `vigil`, 10 s per attempt,
    /// 5 attempts, waits from 1 s doubling up to 60 s.
    pub fn new(url: &str, topic: &str, public_url: &str) -> NtfyConfig {
        NtfyConfig {
            url: url.into(),
            topic: topic.into(),
            public_url: public_url.into(),
            auth: None,
            priority: 4,
            tags: vec!["vigil".into()],
            timeout: Duration::from_secs(10),
            attempts: 5,
            retry_first: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
        }
    }
}

/// An ntfy message in the publish-as-JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtfyMessage {
    pub topic: String,
    pub title: String,
    pub message: String,
    pub priority: u8,
    pub tags: Vec<String>,
    pub actions: Vec<NtfyAction>,
}

/// An action button: `http` sends a request when tapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtfyAction {
    pub action: String,
    pub label: String,
    pub url: String,
    pub method: String,
    /// Dismiss the notification once tapped.
    pub clear: bool,
}

/// The longest explanation put in a message, in bytes: ntfy turns a message over 4096 bytes
/// into an attachment, and the rest of the message needs room.
const EXPLANATION_KEPT: usize = 3000;

/// Why one attempt to publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyFailure {
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the exchange failed: {0}")]
    Exchange(String),
    #[error("it answered {status}: {body:?}")]
    Status { status: u16, body: String },
}

impl NotifyFailure {
    /// Whether another attempt may succeed: not after a refusal of the request itself (a
    /// 4xx other than 408 and 429: bad credentials, a bad message).
    pub fn is_retriable(&self) -> bool {
        match self {
            NotifyFailure::Status { status, .. } => {
                !(400..500).contains(status) || *status == 408 || *status == 429
            }
            _ => true,
        }
    }
}

/// A message delivered: after how many attempts, and what failed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub attempts: u32,
    pub failures: Vec<NotifyFailure>,
}

/// Publishes approval requests to ntfy.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: NtfyConfig,
    /// The host to connect to (brackets of an IPv6 literal removed), its port, the `Host`
    /// header and the request path.
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Notifier {
    pub fn new(config: NtfyConfig) -> Result<Notifier, ApprovalError> {
        let invalid = |reason: String| ApprovalError::Config(reason);
        let uri: Uri = config.url.parse().map_err(|error| {
            invalid(format!(
                "the ntfy URL {:?} does not read: {error}",
                config.url
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(format!(
                    "the ntfy URL {:?} is https, which this notifier does not speak; reach ntfy over http on the LAN, or through a local TLS proxy",
                    config.url
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "the ntfy URL {:?} must start with http://",
                    config.url
                )));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid(format!(
                "the ntfy URL {:?} has no host",
                config.url
            )));
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        if config.topic.is_empty() {
            return Err(invalid("the ntfy topic is empty".into()));
        }
        if !(1..=5).contains(&config.priority) {
            return Err(invalid(format!(
                "the ntfy priority is {}; it goes from 1 (min) to 5 (max)",
                config.priority
            )));
        }
        if !(config.public_url.starts_with("http://") || config.public_url.starts_with("https://"))
        {
            return Err(invalid(format!(
                "the public URL {:?} must start with http:// or https://: the phone follows it to reach the daemon",
                config.public_url
            )));
        }
        if config.attempts == 0 {
            return Err(invalid("the ntfy attempts are 0; give at least 1".into()));
        }
        if let Some(auth) = &config.auth {
            HeaderValue::from_str(&auth.header()).map_err(|_| {
                invalid("the ntfy credentials hold characters a header cannot carry".into())
            })?;
        }
        Ok(Notifier {
            authority: authority.as_str().to_string(),
            host,
            port,
            path,
            config,
        })
    }

    pub fn config(&self) -> &NtfyConfig {
        &self.config
    }

    /// The message for `request`: its explanation, what it is about, until when it can be
    /// decided, and the two buttons with their signed links.
    pub fn message(&self, signer: &Signer, request: &ApprovalRequest) -> NtfyMessage {
        let links = DecisionLinks::new(&self.config.public_url, signer, request);
        let mut text = cut(&request.explanation, EXPLANATION_KEPT);
        text.push_str(&format!(
            "\n\naction: {} ({} {})",
            request.action, request.kind, request.target
        ));
        if !request.parameters.is_empty() {
            let parameters: Vec<String> = request
                .parameters
                .iter()
                .map(|(name, value)| format!("{name}={}", cut(value, 200)))
                .collect();
            text.push_str(&format!("\nparameters: {}", parameters.join(", ")));
        }
        text.push_str(&format!("\ndecide before {}", utc(request.expires)));
        let mut tags = self.config.tags.clone();
        if !tags.contains(&request.kind) {
            tags.push(request.kind.clone());
        }
        let button = |label: &str, url: String| NtfyAction {
            action: "http".into(),
            label: label.into(),
            url,
            method: "POST".into(),
            clear: true,
        };
        NtfyMessage {
            topic: self.config.topic.clone(),
            title: format!("Approve {} {}?", request.kind, request.target),
            message: text,
            priority: self.config.priority,
            tags,
            actions: vec![button("Approve", links.approve), button("Deny", links.deny)],
        }
    }

    /// Publishes the message for `request`.
    pub async fn notify(
        &self,
        signer: &Signer,
        request: &ApprovalRequest,
    ) -> Result<Delivery, ApprovalError> {
        self.send(&self.message(signer, request)).await
    }

    /// Publishes `message`, each attempt within the timeout, retrying with backoff after a
    /// failure that another attempt may cure, up to the configured attempts.
    pub async fn send(&self, message: &NtfyMessage) -> Result<Delivery, ApprovalError> {
        let body = serde_json::to_vec(message)
            .map(Bytes::from)
            .map_err(|error| {
                ApprovalError::Config(format!("cannot encode the message: {error}"))
            })?;
        let mut backoff = Backoff::new(self.config.retry_first, self.config.retry_cap);
        let mut failures = Vec::new();
        for attempt in 1..=self.config.attempts {
            let failure =
                match tokio::time::timeout(self.config.timeout, self.attempt(body.clone())).await {
                    Ok(Ok(())) => {
                        return Ok(Delivery {
                            attempts: attempt,
                            failures,
                        });
                    }
                    Ok(Err(failure)) => failure,
                    Err(_) => NotifyFailure::Timeout(self.config.timeout),
                };
            let last = attempt == self.config.attempts || !failure.is_retriable();
            if last {
                return Err(ApprovalError::Notify {
                    url: self.config.url.clone(),
                    attempts: attempt,
                    failure,
                });
            }
            failures.push(failure);
            tokio::time::sleep(backoff.failed()).await;
        }
        // `attempts` is at least 1 (checked in `new`), so the loop has returned.
        Err(ApprovalError::Config("the ntfy attempts are 0".into()))
    }

    /// One POST on a new connection. The connection is driven inside this future, so a
    /// timeout that drops it closes the socket.
    async fn attempt(&self, body: Bytes) -> Result<(), NotifyFailure> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| NotifyFailure::Connect(error.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| NotifyFailure::Exchange(error.to_string()))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "vigil");
        if let Some(auth) = &self.config.auth {
            request = request.header(header::AUTHORIZATION, auth.header());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| NotifyFailure::Exchange(error.to_string()))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| NotifyFailure::Exchange(error.to_string()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = match Limited::new(response.into_body(), 4096).collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
                Err(_) => String::new(),
            };
            Err(NotifyFailure::Status {
                status: status.as_u16(),
                body: cut(&body, 200),
            })
        };
        let mut exchange = pin!(exchange);
        let mut connection = pin!(connection);
        tokio::select! {
            result = &mut exchange => result,
            ended = &mut connection => match ended {
                Err(error) => Err(NotifyFailure::Exchange(error.to_string())),
                // Closed after answering: the answer is there to read.
                Ok(()) => exchange.await,
            },
        }
    }
}

/// What can go wrong setting up the approval flow or publishing a request.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(
        "the approval secret has {length} bytes; give at least {MIN_SECRET_BYTES} (for example the output of `openssl rand -hex 32`)"
    )]
    WeakSecret { length: usize },
    #[error("approval ledger {}: {source}", path.display())]
    LedgerIo { path: PathBuf, source: io::Error },
    #[error(
        "approval ledger {}:{line}: {reason}; it is damaged, and trusting it could let a used link decide again: repair it or move it away", path.display()
    )]
    LedgerDamaged {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("approval notifications: {0}")]
    Config(String),
    #[error("cannot notify ntfy at {url} ({attempts} {}): {failure}", if *.attempts == 1 { "attempt" } else { "attempts" })]
    Notify {
        url: String,
        attempts: u32,
        failure: NotifyFailure,
    },
}

/// `text` cut to at most `limit` bytes at a character boundary, with an ellipsis if cut.
fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Base64 (RFC 4648, standard alphabet, padded), for basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar; Howard
/// Hinnant's `civil_from_days`).
fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second / 3600,
        second % 3600 / 60,
        second % 60
    )
}

/// A span of seconds, roughly, as a person says it.
fn span(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a homelab secret of some length";

    fn request() -> ApprovalRequest {
        ApprovalRequest::new(
            "stop:llm-chat",
            "stop",
            "llm-chat",
            "nobody wants it any more",
            1_000,
            1_900,
        )
        .with_parameter("node", "pve")
    }

    fn approvals() -> Approvals {
        let signer = Signer::new(SECRET).expect("a long enough secret");
        Approvals::new(signer, Ledger::in_memory())
    }

    fn temporary(name: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("vigil-approval-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        directory
    }

    #[test]
    fn a_token_is_url_safe_and_carries_its_fields() {
        let approvals = approvals();
        let token = approvals.signer().token(&request(), Decision::Deny);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        );
        let fields: Vec<&str> = token.split('.').collect();
        assert_eq!(fields[0], "v1");
        assert_eq!(fields[1], request().id());
        assert_eq!(fields[2], "deny");
        assert_eq!(fields[3], "1900");
        assert_eq!(fields[4].len(), 64);
        let checked = approvals.signer().check(&token).expect("genuine");
        assert_eq!(checked.decision, Decision::Deny);
        assert_eq!(checked.expires, 1_900);
    }

    #[test]
    fn the_request_id_binds_every_field() {
        let base = request();
        let id = base.id();
        assert_eq!(id.len(), 32);
        assert_eq!(id, request().id(), "the same request has the same id");
        let variants = [
            ApprovalRequest {
                action: "stop:llm-chat2".into(),
                ..base.clone()
            },
            ApprovalRequest {
                target: "llm-chat ".into(),
                ..base.clone()
            },
            base.clone().with_parameter("node", "gaming"),
            ApprovalRequest {
                explanation: "something else".into(),
                ..base.clone()
            },
            ApprovalRequest {
                created: 1_001,
                ..base.clone()
            },
            ApprovalRequest {
                expires: 1_901,
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.id(), id, "{variant:?}");
        }
    }

    #[test]
    fn each_tampered_field_is_forged() {
        let approvals = approvals();
        let token = approvals.signer().token(&request(), Decision::Approve);
        let fields: Vec<&str> = token.split('.').collect();
        let other_id = ApprovalRequest {
            created: 7,
            ..request()
        }
        .id();
        let tampered = [
            format!("v1.{other_id}.{}.{}.{}", fields[2], fields[3], fields[4]),
            format!("v1.{}.deny.{}.{}", fields[1], fields[3], fields[4]),
            format!("v1.{}.{}.99999.{}", fields[1], fields[2], fields[4]),
            format!(
                "v1.{}.{}.{}.{}",
                fields[1],
                fields[2],
                fields[3],
                "0".repeat(64)
            ),
        ];
        for token in tampered {
            let refusal = approvals.signer().check(&token).expect_err("tampered");
            assert_eq!(refusal.outcome(), Outcome::Forged, "{token}");
        }
    }

    #[test]
    fn garbage_is_malformed_with_a_reason() {
        let approvals = approvals();
        let genuine = approvals.signer().token(&request(), Decision::Approve);
        let cases = [
            ("", "empty"),
            ("hello", "expected 5 fields"),
            ("v2.a.b.c.d", "unknown version"),
            (&genuine.replacen("v1.", "v1.x", 1), "request id"),
            (&genuine.replace(".approve.", ".maybe."), "neither"),
            (&genuine.replace(".1900.", ".-5."), "expiry"),
            (
                &genuine.replace(".1900.", ".99999999999999999999."),
                "expiry",
            ),
            (&format!("{genuine}0"), "signature"),
            (
                &genuine.to_uppercase().replacen("V1", "v1", 1),
                "request id",
            ),
            (&"v1.".repeat(100), "bytes"),
        ];
        for (token, reason) in cases {
            match approvals.signer().check(token) {
                Err(Refusal::Malformed { reason: said }) => {
                    assert!(said.contains(reason), "{token:?}: {said}")
                }
                other => panic!("{token:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        let error = Signer::new(b"short").expect_err("too short");
        assert!(error.to_string().contains("5 bytes"), "{error}");
        assert!(!format!("{:?}", Signer::new(SECRET).expect("long")).contains('['));
    }

    #[test]
    fn a_valid_token_decides_once_and_becomes_a_fact() {
        let mut approvals = approvals();
        let id = approvals.open(request());
        let deny = approvals.signer().token(&request(), Decision::Deny);
        let approve = approvals.signer().token(&request(), Decision::Approve);
        let decided = approvals.decide(&deny, 1_200);
        assert_eq!(decided.record.outcome, Outcome::Denied);
        assert_eq!(decided.record.request.as_deref(), Some(id.as_str()));
        assert_eq!(decided.record.action.as_deref(), Some("stop:llm-chat"));
        let mut expected = Report::default();
        expected.insert(
            "approval",
            vec![symbol("stop:llm-chat"), symbol("deny"), number(1_200)],
        );
        assert_eq!(decided.report, Some(expected));
        assert!(!approvals.is_open(&id));
        // The other button of the same notification is spent too.
        let again = approvals.decide(&approve, 1_201);
        assert_eq!(again.record.outcome, Outcome::Reused);
        assert_eq!(again.record.decision, Some(Decision::Approve));
        assert!(again.report.is_none());
        assert!(
            again.record.reason.contains("already decided (deny at"),
            "{}",
            again.record.reason
        );
    }

    #[test]
    fn expiry_is_checked_before_use_and_the_request() {
        let mut approvals = approvals();
        approvals.open(request());
        let token = approvals.signer().token(&request(), Decision::Approve);
        let refusal = approvals.verify(&token, 1_900).expect_err("expired");
        assert_eq!(refusal.outcome(), Outcome::Expired);
        assert!(
            refusal.to_string().contains("1970-01-01 00:31:40 UTC"),
            "{refusal}"
        );
        assert!(approvals.verify(&token, 1_899).is_ok());
    }

    #[test]
    fn a_withdrawn_request_is_unknown() {
        let mut approvals = approvals();
        approvals.open(request());
        assert_eq!(approvals.withdraw("stop:llm-chat").len(), 1);
        let token = approvals.signer().token(&request(), Decision::Approve);
        let decided = approvals.decide(&token, 1_100);
        assert_eq!(decided.record.outcome, Outcome::UnknownRequest);
        assert!(decided.report.is_none());
        assert!(approvals.ledger().is_empty(), "a refusal records nothing");
    }

    #[test]
    fn a_record_is_journaled_as_json() {
        let mut approvals = approvals();
        let decided = approvals.decide("nonsense", 5);
        let json = serde_json::to_value(&decided.record).expect("serialisable");
        assert_eq!(json["outcome"], "malformed");
        assert_eq!(json["time"], 5);
        assert!(json["request"].is_null());
        assert!(
            json["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("malformed token: "))
        );
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let directory = temporary("restart");
        let path = directory.join("ledger");
        let signer = Signer::new(SECRET).expect("long");
        let token = signer.token(&request(), Decision::Approve);
        {
            let mut approvals = Approvals::new(signer.clone(), Ledger::open(&path).expect("new"));
            approvals.open(request());
            assert!(approvals.verify(&token, 1_100).is_ok());
        }
        let mut approvals = Approvals::new(signer, Ledger::open(&path).expect("reopened"));
        approvals.open(request());
        let refusal = approvals.verify(&token, 1_101).expect_err("used");
        assert_eq!(refusal.outcome(), Outcome::Reused);
        let _ = std::fs::remove_dir_all(directory);
    }

    #[test]
    fn a_torn_ledger_line_is_cut_and_a_damaged_one_refused() {
        let directory = temporary("torn");
        let path = directory.join("ledger");
        let id = request().id();
        std::fs::write(
            &path,
            format!("{LEDGER_HEADER}{id}\tapprove\t10\t20\n{id}\tden"),
        )
        .expect("written");
        let mut ledger = Ledger::open(&path).expect("a torn tail is not damage");
        assert_eq!(ledger.len(), 1);
        ledger
            .record(
                &"0".repeat(32),
                Used {
                    decision: Decision::Deny,
                    at: 11,
                    expires: 30,
                },
            )
            .expect("recorded");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!(
                "{LEDGER_HEADER}{id}\tapprove\t10\t20\n{}\tdeny\t11\t30\n",
                "0".repeat(32)
            )
        );
        assert_eq!(Ledger::open(&path).expect("reopened").len(), 2);

        std::fs::write(&path, format!("{LEDGER_HEADER}{id}\tapprove\tten\t20\n")).expect("written");
        let error = Ledger::open(&path).expect_err("damaged");
        assert!(
            error.to_string().contains(":2: \"ten\" is not a time"),
            "{error}"
        );

        std::fs::write(&path, "something else\n").expect("written");
        assert!(matches!(
            Ledger::open(&path),
            Err(ApprovalError::LedgerDamaged { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(directory);
    }

    #[test]
    fn the_message_carries_the_explanation_and_two_buttons() {
        let signer = Signer::new(SECRET).expect("long");
        let mut config =
            NtfyConfig::new("http://127.0.0.1:1/", "homelab", "https://vigil.lan:7070/");
        config.tags = vec!["warning".into()];
        let notifier = Notifier::new(config).expect("valid");
        let long = ApprovalRequest {
            explanation: "é".repeat(2_000),
            ..request()
        };
        let message = notifier.message(&signer, &long);
        assert_eq!(message.title, "Approve stop llm-chat?");
        assert!(message.message.len() < 4096);
        assert!(
            message
                .message
                .contains("…\n\naction: stop:llm-chat (stop llm-chat)")
        );
        assert!(message.message.contains("parameters: node=pve"));
        assert_eq!(message.tags, ["warning", "stop"]);
        let [approve, deny] = &message.actions[..] else {
            panic!("{:?}", message.actions)
        };
        assert_eq!(
            (approve.label.as_str(), deny.label.as_str()),
            ("Approve", "Deny")
        );
        assert!(
            approve
                .url
                .starts_with("https://vigil.lan:7070/v1/approvals/decide?token=v1.")
        );
        assert!(deny.url.contains(".deny."));
        assert_eq!(approve.method, "POST");
    }

    #[test]
    fn a_notifier_refuses_what_it_cannot_use() {
        let config = |url: &str| NtfyConfig::new(url, "t", "http://vigil.lan");
        for (url, said) in [
            ("https://ntfy.sh/", "https"),
            ("ntfy.lan", "must start with http://"),
            ("http://", "does not read"),
        ] {
            let error = Notifier::new(config(url)).expect_err(url);
            assert!(error.to_string().contains(said), "{url}: {error}");
        }
        let mut bad = config("http://ntfy.lan");
        bad.public_url = "vigil.lan".into();
        assert!(Notifier::new(bad).is_err());
    }

    #[test]
    fn credentials_are_encoded_and_never_printed() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        let basic = NtfyAuth::Basic {
            user: "phil".into(),
            password: "hunter2".into(),
        };
        assert_eq!(basic.header(), format!("Basic {}", base64(b"phil:hunter2")));
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{:?}", NtfyAuth::Bearer("tk_secret".into())).contains("tk_secret"));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_169_200), "2025-11-26 15:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(3 * 86_400), "3 d");
    }

    #[test]
    fn only_some_failures_are_retried() {
        let status = |status| NotifyFailure::Status {
            status,
            body: String::new(),
        };
        assert!(status(500).is_retriable());
        assert!(status(429).is_retriable());
        assert!(!status(401).is_retriable());
        assert!(!status(400).is_retriable());
        assert!(NotifyFailure::Timeout(Duration::from_secs(1)).is_retriable());
    }
}
