//! The approval loop over HTTP: an action that needs a person is announced to an
//! ntfy-compatible server with Approve and Deny links; a valid link commits the approval and
//! the action goes ahead; a forged, replayed or expired one changes nothing; every token
//! presented is journaled.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const START: i64 = 1_796_004_000;

/// A stand-in for ntfy on loopback: every JSON body posted to it, in order.
fn ntfy() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
            if let Ok(json) = serde_json::from_slice(&body) {
                let _ = sender.send(json);
            }
        }
    });
    (format!("http://{address}/"), receiver)
}

/// The Approve and Deny links of the next notification, and its message.
fn links(notifications: &mpsc::Receiver<serde_json::Value>) -> (String, String, String) {
    let message = notifications
        .recv_timeout(Duration::from_secs(30))
        .expect("a notification");
    let url = |index: usize| {
        message["actions"][index]["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(message["actions"][0]["label"], "Approve", "{message}");
    assert_eq!(message["actions"][1]["label"], "Deny", "{message}");
    (
        url(0),
        url(1),
        message["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// `POST` a decision link (its path and query) to the daemon.
fn decide(daemon: &Daemon, link: &str) -> (u16, serde_json::Value) {
    let path = &link[link.find("/v1/").expect("a daemon link")..];
    daemon.json("POST", path, "")
}

fn transact(daemon: &Daemon, body: &str) {
    let (status, answer) = daemon.json("POST", "/v1/transactions", body);
    assert_eq!(status, 200, "{answer}");
}

fn acts(daemon: &Daemon, action: &str) -> usize {
    let query = serde_json::json!({ "query": format!("act({action:?}, K, X)") });
    let (_, answer) = daemon.json("POST", "/v1/query", &query.to_string());
    answer["rows"].as_array().map_or(0, Vec::len)
}

#[test]
fn approvals_go_through_signed_single_use_links() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("vigil-approvals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ntfy_url, notifications) = ntfy();
    let config = dir.join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nprogram = {:?}\nfacts = {:?}\ndata_dir = \"data\"\nclock = \"event\"\n\n[approvals]\nsecret = \"a secret of the approval links\"\nttl_s = 600\nntfy_url = {ntfy_url:?}\nntfy_topic = \"vigil\"\n",
            root.join("rules/homelab.dl"),
            root.join("fixtures/homelab"),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &[]);

    // Nobody wants the chat model any more: stopping it needs a person.
    transact(
        &daemon,
        &format!(
            r#"{{"time": {}, "retract": {{"requested": [["llm-chat"]]}}}}"#,
            START + 60
        ),
    );
    let (approve, deny, message) = links(&notifications);
    assert!(message.contains("nobody wants it any more"), "{message}");
    assert_eq!(acts(&daemon, "stop:llm-chat"), 0);
    let (status, pending) = daemon.json("GET", "/v1/approvals", "");
    assert_eq!(status, 200);
    assert_eq!(pending[0]["action"], "stop:llm-chat", "{pending}");

    // A forged link: the decision of the Deny link changed to approve.
    let forged = deny.replace(".deny.", ".approve.");
    let (status, answer) = decide(&daemon, &forged);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["outcome"], "forged");
    assert_eq!(acts(&daemon, "stop:llm-chat"), 0);

    // The genuine Approve link: the approval fact is committed and the stop goes ahead.
    let (status, answer) = decide(&daemon, &approve);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "approved");
    assert!(answer["committed"].as_u64().is_some(), "{answer}");
    assert_eq!(acts(&daemon, "stop:llm-chat"), 1);

    // Used once: the same link, and the Deny link of the same request, decide nothing.
    let (status, answer) = decide(&daemon, &approve);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["outcome"], "reused");
    let (status, _) = decide(&daemon, &deny);
    assert_eq!(status, 409);
    assert_eq!(acts(&daemon, "stop:llm-chat"), 1);

    // A link presented after its request expired.
    transact(
        &daemon,
        &format!(
            r#"{{"time": {}, "retract": {{"requested": [["backup"]]}}}}"#,
            START + 120
        ),
    );
    let (approve, _, _) = links(&notifications);
    transact(&daemon, &format!(r#"{{"time": {}}}"#, START + 120 + 600));
    let (status, answer) = decide(&daemon, &approve);
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["outcome"], "expired");
    assert_eq!(acts(&daemon, "stop:backup"), 0);

    // Garbage, and no token at all.
    let (status, answer) = daemon.json("POST", "/v1/approvals/decide?token=v1.zz", "");
    assert_eq!(status, 400, "{answer}");
    let (status, _) = daemon.json("POST", "/v1/approvals/decide", "");
    assert_eq!(status, 400);
    daemon.stop();

    // Every token presented is in the journal of decisions.
    let journal = std::fs::read_to_string(dir.join("data/approvals.jsonl")).unwrap();
    let outcomes: Vec<String> = journal
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["outcome"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "forged",
            "approved",
            "reused",
            "reused",
            "expired",
            "malformed"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
