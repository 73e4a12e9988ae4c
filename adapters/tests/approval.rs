//! The approval flow end to end: a request is published to a stand-in for ntfy (a real HTTP
//! server on 127.0.0.1:0), the links in the buttons it received are followed back through
//! `Approvals::decide`, and the tokens are tampered with, replayed and left to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vigil_adapters::approval::{
    ApprovalError, ApprovalRequest, Approvals, DECIDE_PATH, Decision, Ledger, Notifier,
    NotifyFailure, NtfyAuth, NtfyConfig, Outcome, Signer,
};
use vigil_adapters::source::{Report, number, symbol};

const SECRET: &[u8] = b"the homelab's approval secret, 32+";
const PUBLIC_URL: &str = "https://vigil.lan:7070";
/// 2025-11-26 15:00:00 UTC.
const NOW: i64 = 1_764_169_200;

/// How the stand-in for ntfy answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 with a message envelope, as ntfy does.
    Accept,
    /// This status to the first `n` requests, then 200.
    FailFirst(usize, u16),
    /// Never answers.
    Hang,
}

/// A request the stand-in received.
struct Received {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// The stand-in for ntfy, stopped when dropped.
struct FakeNtfy {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
    requests: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Drop for FakeNtfy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeNtfy {
    async fn start(behaviour: Behaviour) -> FakeNtfy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on loopback");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        let (sender, received) = mpsc::unbounded_channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sender = sender.clone();
                let counter = counter.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let sender = sender.clone();
                    let counter = counter.clone();
                    async move { answer(request, behaviour, &sender, &counter).await }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        FakeNtfy {
            url,
            received,
            requests,
            server,
        }
    }

    async fn next(&mut self) -> Received {
        self.received.recv().await.expect("a request reached ntfy")
    }
}

async fn answer(
    request: Request<Incoming>,
    behaviour: Behaviour,
    sender: &mpsc::UnboundedSender<Received>,
    counter: &AtomicUsize,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(hyper::header::AUTHORIZATION);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let method = request.method().to_string();
    let path = request.uri().to_string();
    let body = request.into_body().collect().await?.to_bytes().to_vec();
    let _ = sender.send(Received {
        method,
        path,
        authorization,
        content_type,
        body,
    });
    let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let status = match behaviour {
        Behaviour::Accept => StatusCode::OK,
        Behaviour::FailFirst(n, status) if seen <= n => {
            StatusCode::from_u16(status).expect("a status")
        }
        Behaviour::FailFirst(..) => StatusCode::OK,
        Behaviour::Hang => std::future::pending().await,
    };
    let body = if status.is_success() {
        r#"{"id":"sPs71M8A2T","event":"message","topic":"homelab"}"#
    } else {
        r#"{"code":50001,"http":500,"error":"internal server error"}"#
    };
    Ok(Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a response"))
}

fn request() -> ApprovalRequest {
    ApprovalRequest::new(
        "stop:llm-chat",
        "stop",
        "llm-chat",
        "nobody wants it any more: the last prompt was 40 minutes ago",
        NOW,
        NOW + 900,
    )
    .with_parameter("node", "pve")
}

fn config(url: &str) -> NtfyConfig {
    let mut config = NtfyConfig::new(url, "homelab", PUBLIC_URL);
    config.timeout = Duration::from_millis(300);
    config.attempts = 3;
    config.retry_first = Duration::from_millis(10);
    config.retry_cap = Duration::from_millis(40);
    config
}

fn approvals(secret: &[u8]) -> Approvals {
    Approvals::new(
        Signer::new(secret).expect("a long secret"),
        Ledger::in_memory(),
    )
}

/// The token in a decision link.
fn token_of(url: &str) -> &str {
    let prefix = format!("{PUBLIC_URL}{DECIDE_PATH}?token=");
    url.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not a decision link"))
}

/// Publishes `request()` to a stand-in that accepts it; returns the approvals (with the
/// request open) and the Approve and Deny links ntfy received.
async fn published() -> (Approvals, String, String, Value) {
    let mut ntfy = FakeNtfy::start(Behaviour::Accept).await;
    let mut approvals = approvals(SECRET);
    approvals.open(request());
    let mut config = config(&ntfy.url);
    config.auth = Some(NtfyAuth::Bearer("tk_homelab".into()));
    let notifier = Notifier::new(config).expect("a valid configuration");
    let delivery = notifier
        .notify(approvals.signer(), &request())
        .await
        .expect("delivered");
    assert_eq!(delivery.attempts, 1);

    let received = ntfy.next().await;
    assert_eq!(received.method, "POST");
    assert_eq!(
        received.path, "/",
        "publishing as JSON posts to the root URL"
    );
    assert_eq!(received.authorization.as_deref(), Some("Bearer tk_homelab"));
    assert_eq!(received.content_type.as_deref(), Some("application/json"));
    let json: Value = serde_json::from_slice(&received.body).expect("JSON");
    let actions = json["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 2);
    let approve = actions[0]["url"].as_str().expect("a URL").to_string();
    let deny = actions[1]["url"].as_str().expect("a URL").to_string();
    (approvals, approve, deny, json)
}

#[tokio::test]
async fn ntfy_receives_the_request_with_two_buttons() {
    let (_, approve, deny, json) = published().await;
    assert_eq!(json["topic"], "homelab");
    assert_eq!(json["title"], "Approve stop llm-chat?");
    let message = json["message"].as_str().expect("a message");
    assert!(
        message.contains("nobody wants it any more: the last prompt was 40 minutes ago"),
        "{message}"
    );
    assert!(message.contains("action: stop:llm-chat"), "{message}");
    assert!(message.contains("parameters: node=pve"), "{message}");
    assert!(
        message.contains("decide before 2025-11-26 15:15:00 UTC"),
        "{message}"
    );
    assert_eq!(json["priority"], 4);
    assert_eq!(json["tags"], serde_json::json!(["vigil", "stop"]));
    for (action, label, url) in [
        (&json["actions"][0], "Approve", &approve),
        (&json["actions"][1], "Deny", &deny),
    ] {
        assert_eq!(action["action"], "http");
        assert_eq!(action["label"], label);
        assert_eq!(action["method"], "POST");
        assert_eq!(action["clear"], true);
        assert!(
            url.starts_with(&format!("{PUBLIC_URL}/v1/approvals/decide?token=v1.")),
            "{url}"
        );
    }
    assert!(token_of(&approve).contains(".approve."));
    assert!(token_of(&deny).contains(".deny."));
}

#[tokio::test]
async fn the_approve_link_approves_once() {
    let (mut approvals, approve, _, _) = published().await;
    let decided = approvals.decide(token_of(&approve), NOW + 60);
    assert_eq!(decided.record.outcome, Outcome::Approved);
    assert_eq!(decided.record.time, NOW + 60);
    assert_eq!(decided.record.request, Some(request().id()));
    assert_eq!(decided.record.action.as_deref(), Some("stop:llm-chat"));
    assert_eq!(decided.record.decision, Some(Decision::Approve));
    let mut facts = Report::default();
    facts.insert(
        "approval",
        vec![symbol("stop:llm-chat"), symbol("approve"), number(NOW + 60)],
    );
    assert_eq!(decided.report, Some(facts));

    let again = approvals.decide(token_of(&approve), NOW + 61);
    assert_eq!(again.record.outcome, Outcome::Reused);
    assert!(again.report.is_none());
    assert!(
        again.record.reason.starts_with("used token: request "),
        "{}",
        again.record.reason
    );
}

#[tokio::test]
async fn the_deny_link_denies() {
    let (mut approvals, _, deny, _) = published().await;
    let decided = approvals.decide(token_of(&deny), NOW + 5);
    assert_eq!(decided.record.outcome, Outcome::Denied);
    let rows = &decided.report.expect("facts").insert["approval"];
    assert_eq!(
        rows,
        &vec![vec![
            symbol("stop:llm-chat"),
            symbol("deny"),
            number(NOW + 5)
        ]]
    );
}

#[tokio::test]
async fn a_deny_token_turned_into_an_approval_is_forged() {
    let (mut approvals, _, deny, _) = published().await;
    let tampered = token_of(&deny).replace(".deny.", ".approve.");
    let decided = approvals.decide(&tampered, NOW + 10);
    assert_eq!(decided.record.outcome, Outcome::Forged);
    assert_eq!(decided.record.decision, Some(Decision::Approve));
    assert_eq!(decided.record.action, None);
    assert!(decided.report.is_none());
    assert!(
        decided
            .record
            .reason
            .starts_with("forged token for request ")
    );
    // The forgery spent nothing: the genuine link still works.
    assert_eq!(
        approvals.decide(token_of(&deny), NOW + 11).record.outcome,
        Outcome::Denied
    );
}

#[tokio::test]
async fn a_token_past_its_expiry_is_expired() {
    let (mut approvals, approve, _, _) = published().await;
    let decided = approvals.decide(token_of(&approve), NOW + 900);
    assert_eq!(decided.record.outcome, Outcome::Expired);
    assert!(decided.report.is_none());
    assert_eq!(
        decided.record.reason,
        format!(
            "expired token: request {} could be decided until 2025-11-26 15:15:00 UTC, 0 s ago",
            request().id()
        )
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    let (mut approvals, approve, _, _) = published().await;
    for garbage in [
        "",
        "not a token",
        "v1....",
        &approve,
        "v1.%27%20OR%201=1.approve.1.2",
    ] {
        let decided = approvals.decide(garbage, NOW);
        assert_eq!(decided.record.outcome, Outcome::Malformed, "{garbage:?}");
        assert_eq!(decided.record.request, None);
        assert!(decided.report.is_none());
    }
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_forged() {
    let (mut approvals, _, _, _) = published().await;
    let other = Signer::new(b"somebody else's secret, also long").expect("long");
    let token = other.token(&request(), Decision::Approve);
    let decided = approvals.decide(&token, NOW);
    assert_eq!(decided.record.outcome, Outcome::Forged);
    assert!(decided.report.is_none());
}

#[tokio::test]
async fn a_token_for_a_request_nobody_opened_is_unknown() {
    let (mut approvals, _, _, _) = published().await;
    let other = ApprovalRequest::new(
        "wake:pve",
        "wake",
        "pve",
        "placed work needs it",
        NOW,
        NOW + 60,
    );
    let token = approvals.signer().token(&other, Decision::Approve);
    let decided = approvals.decide(&token, NOW);
    assert_eq!(decided.record.outcome, Outcome::UnknownRequest);
    assert_eq!(decided.record.request, Some(other.id()));
}

#[tokio::test]
async fn a_server_error_is_retried_until_delivered() {
    let mut ntfy = FakeNtfy::start(Behaviour::FailFirst(2, 500)).await;
    let mut config = config(&ntfy.url);
    config.auth = Some(NtfyAuth::Basic {
        user: "vigil".into(),
        password: "hunter2".into(),
    });
    let notifier = Notifier::new(config).expect("valid");
    let signer = Signer::new(SECRET).expect("long");
    let delivery = notifier
        .notify(&signer, &request())
        .await
        .expect("delivered");
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.failures.len(), 2);
    assert!(matches!(
        delivery.failures[0],
        NotifyFailure::Status { status: 500, .. }
    ));
    assert_eq!(ntfy.requests.load(Ordering::SeqCst), 3);
    let first = ntfy.next().await;
    assert_eq!(
        first.authorization.as_deref(),
        Some("Basic dmlnaWw6aHVudGVyMg==")
    );
    for _ in 1..3 {
        assert_eq!(
            ntfy.next().await.body,
            first.body,
            "the same message each time"
        );
    }
}

#[tokio::test]
async fn a_refusal_of_the_credentials_is_not_retried() {
    let ntfy = FakeNtfy::start(Behaviour::FailFirst(5, 401)).await;
    let notifier = Notifier::new(config(&ntfy.url)).expect("valid");
    let signer = Signer::new(SECRET).expect("long");
    let error = notifier
        .notify(&signer, &request())
        .await
        .expect_err("refused");
    assert!(matches!(
        error,
        ApprovalError::Notify {
            attempts: 1,
            failure: NotifyFailure::Status { status: 401, .. },
            ..
        }
    ));
    assert_eq!(ntfy.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_hangs_times_out() {
    let ntfy = FakeNtfy::start(Behaviour::Hang).await;
    let mut config = config(&ntfy.url);
    config.timeout = Duration::from_millis(100);
    config.attempts = 2;
    let notifier = Notifier::new(config).expect("valid");
    let signer = Signer::new(SECRET).expect("long");
    let error = notifier
        .notify(&signer, &request())
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            error,
            ApprovalError::Notify {
                attempts: 2,
                failure: NotifyFailure::Timeout(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "cannot notify ntfy at {} (2 attempts): no answer within 100 ms",
            ntfy.url
        )
    );
}

#[tokio::test]
async fn nobody_listening_is_a_connection_failure() {
    // A port that was just free: bound, then released.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        format!("http://{}/", listener.local_addr().expect("bound"))
    };
    let mut config = config(&url);
    config.attempts = 1;
    let notifier = Notifier::new(config).expect("valid");
    let signer = Signer::new(SECRET).expect("long");
    let error = notifier
        .notify(&signer, &request())
        .await
        .expect_err("nobody there");
    assert!(
        matches!(
            error,
            ApprovalError::Notify {
                failure: NotifyFailure::Connect(_),
                ..
            }
        ),
        "{error:?}"
    );
}
