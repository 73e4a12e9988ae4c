//! The daemon's side of the human-in-the-loop approvals.
//!
//! Each row that appears in the `awaiting_approval` view becomes an approval request (the
//! action, its reason and the `why` of the row), opened with signed Approve and Deny links
//! under the daemon's public URL, announced by an ntfy-compatible notification if one is
//! configured, and printed in the decision log. A row that leaves the view withdraws its
//! request. A link presented at `POST /v1/approvals/decide?token=...` is checked
//! ([`vigil_adapters::approval`]): a valid one commits the `approval(action, decision, at)` fact;
//! every token presented, valid or not, is appended (and synced) to `approvals.jsonl` in the
//! data directory.

use super::core::{Core, Refusal};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::mpsc;
use vigil_adapters::approval::{
    ApprovalRequest, Approvals, DecisionLinks, DecisionRecord, Ledger, Notifier, NtfyConfig,
    Outcome, Signer,
};

/// `[approvals]` in the config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The key the decision links are signed with (at least 16 characters). Without a
    /// config, a random one per run.
    pub secret: String,
    /// The daemon's base URL as the phone reaches it; default `http://LISTEN`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a request's links decide anything, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_s: i64,
    /// ntfy's root URL and topic; without them, requests are only logged and listed.
    #[serde(default)]
    pub ntfy_url: Option<String>,
    #[serde(default)]
    pub ntfy_topic: Option<String>,
}

fn default_ttl() -> i64 {
    3600
}

impl Settings {
    /// A random secret, for a daemon without a config: links work until it stops.
    pub fn ephemeral() -> Result<Settings> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
            .context("cannot read /dev/urandom for the approval links' key")?;
        Ok(Settings {
            secret: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            public_url: None,
            ttl_s: default_ttl(),
            ntfy_url: None,
            ntfy_topic: None,
        })
    }
}

/// A change of the `awaiting_approval` view: (action id, kind, target, reason), appeared or
/// gone, at an event time.
pub type Row = (String, String, String, String, bool, i64);

pub struct Desk {
    approvals: Mutex<Approvals>,
    notifier: Option<Notifier>,
    /// Configured, or `http://` and the address the daemon listens on, once it does.
    public_url: std::sync::OnceLock<String>,
    ntfy: Option<(String, String)>,
    ttl: i64,
    journal: Mutex<std::fs::File>,
    journal_path: PathBuf,
}

/// A decision link's answer: the record, and whether its fact was committed.
pub struct Answer {
    pub record: DecisionRecord,
    pub committed: Option<u64>,
}

impl Desk {
    pub fn new(settings: &Settings, data: &std::path::Path) -> Result<Desk> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("{}: cannot create the data directory", data.display()))?;
        let signer = Signer::new(settings.secret.as_bytes())
            .map_err(|error| anyhow::anyhow!("[approvals] secret: {error}"))?;
        let ledger = Ledger::open(&data.join("approvals.ledger"))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let public_url = std::sync::OnceLock::new();
        if let Some(url) = &settings.public_url {
            let _ = public_url.set(url.clone());
        }
        let ntfy = match (&settings.ntfy_url, &settings.ntfy_topic) {
            (Some(url), Some(topic)) => Some((url.clone(), topic.clone())),
            (None, None) => None,
            _ => anyhow::bail!("[approvals]: `ntfy_url` and `ntfy_topic` go together"),
        };
        if let Some((url, topic)) = &ntfy {
            // Checked now, so that a wrong URL stops start-up.
            Notifier::new(NtfyConfig::new(url, topic, "http://localhost"))
                .map_err(|error| anyhow::anyhow!("[approvals] ntfy: {error}"))?;
        }
        let journal_path = data.join("approvals.jsonl");
        let journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .with_context(|| format!("{}: cannot open", journal_path.display()))?;
        Ok(Desk {
            approvals: Mutex::new(Approvals::new(signer, ledger)),
            notifier: None,
            public_url,
            ntfy,
            ttl: settings.ttl_s,
            journal: Mutex::new(journal),
            journal_path,
        })
    }

    /// The daemon listens at `address`: the links' base, unless one is configured. Also makes
    /// the notifier, whose buttons carry that base.
    pub fn listening(&mut self, address: std::net::SocketAddr) -> Result<()> {
        let base = self
            .public_url
            .get_or_init(|| format!("http://{address}"))
            .clone();
        if let Some((url, topic)) = &self.ntfy {
            self.notifier = Some(
                Notifier::new(NtfyConfig::new(url, topic, &base))
                    .map_err(|error| anyhow::anyhow!("[approvals] ntfy: {error}"))?,
            );
        }
        Ok(())
    }

    fn base(&self) -> &str {
        self.public_url
            .get()
            .map_or("http://127.0.0.1:7070", String::as_str)
    }

    /// Opens and withdraws requests as the view changes, until the channel closes.
    pub async fn run(&self, core: Core, mut rows: mpsc::UnboundedReceiver<Row>) {
        while let Some((action, kind, target, reason, appeared, now)) = rows.recv().await {
            if !appeared {
                self.lock().withdraw(&action);
                continue;
            }
            let atom = format!("awaiting_approval({action:?}, {kind:?}, {target:?}, {reason:?})");
            let why = match core.why(atom, false).await {
                Ok(answer) => answer["text"].as_str().unwrap_or_default().to_string(),
                Err(Refusal::Invalid(message) | Refusal::Failed(message)) => message,
            };
            let request = ApprovalRequest::new(
                &action,
                &kind,
                &target,
                &format!("{reason}\n\n{why}"),
                now,
                now + self.ttl,
            );
            let links = {
                let mut approvals = self.lock();
                approvals.open(request.clone());
                DecisionLinks::new(self.base(), approvals.signer(), &request)
            };
            say!(
                "{} approval {action}: approve with `curl -X POST '{}'`",
                super::sim::clock(now),
                links.approve
            );
            if let Some(notifier) = &self.notifier {
                let signer = self.lock().signer().clone();
                if let Err(error) = notifier.notify(&signer, &request).await {
                    say_err!("warning: approval {action}: {error}");
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Approvals> {
        self.approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The requests waiting, with their links.
    pub fn pending(&self) -> serde_json::Value {
        let approvals = self.lock();
        let rows: Vec<serde_json::Value> = approvals
            .pending()
            .map(|(id, request)| {
                let links = DecisionLinks::new(self.base(), approvals.signer(), request);
                serde_json::json!({
                    "id": id,
                    "action": request.action,
                    "kind": request.kind,
                    "target": request.target,
                    "explanation": request.explanation,
                    "created": request.created,
                    "expires": request.expires,
                    "approve": links.approve,
                    "deny": links.deny,
                })
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// A decision link presented at event time `now`: journaled whatever it is; a valid one
    /// commits its fact.
    pub async fn decide(&self, core: &Core, token: &str, now: i64) -> Result<Answer, Refusal> {
        let decided = self.lock().decide(token, now);
        self.journal(&decided.record)?;
        let mut committed = None;
        if let Some(report) = decided.report {
            let entry = report.entry(&decided.record.reason, None);
            committed = Some(core.transact(entry).await?.time);
        }
        Ok(Answer {
            record: decided.record,
            committed,
        })
    }

    fn journal(&self, record: &DecisionRecord) -> Result<(), Refusal> {
        let mut line = serde_json::to_vec(record)
            .map_err(|error| Refusal::Failed(format!("cannot encode a decision: {error}")))?;
        line.push(b'\n');
        let mut file = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|error| {
                Refusal::Failed(format!(
                    "{}: cannot journal a decision: {error}",
                    self.journal_path.display()
                ))
            })
    }
}

/// The HTTP status of a decision's outcome.
pub fn status(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Approved | Outcome::Denied => 200,
        Outcome::Malformed => 400,
        Outcome::Forged => 403,
        Outcome::UnknownRequest => 404,
        Outcome::Reused => 409,
        Outcome::Expired => 410,
        Outcome::Unrecorded => 500,
    }
}
