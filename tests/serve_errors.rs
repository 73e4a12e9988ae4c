//! `vigil serve` refuses malformed requests: a table of them against one daemon with tokens,
//! each with its status and a piece of its error message (which names what is wrong), and
//! after all of them the state is exactly what the valid transactions made it.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, PROGRAM, Response};
use std::io::{Read, Write};
use std::time::Duration;

const TOKENS: &str = r#"
watch_backlog = 3

[[token]]
name = "operator"
secret = "admin-secret-0123456789"
scopes = ["admin"]

[[token]]
name = "sensor"
secret = "ingest-secret-0123456789"
scopes = ["ingest"]

[[token]]
name = "grafana"
secret = "read-secret-0123456789"
scopes = ["read"]
"#;

const ADMIN: &str = "Bearer admin-secret-0123456789";
const INGEST: &str = "Bearer ingest-secret-0123456789";
const READ: &str = "Bearer read-secret-0123456789";

/// The valid transactions, in order; the state they give is checked after the refusals.
const VALID: [&str; 4] = [
    r#"{"time": 100, "event": "setup", "insert": {"edge": [[1, 2], [2, 3]], "reading": [["pve", 90, null]]}}"#,
    r#"{"time": 110, "insert": {"edge": [[3, 4]]}}"#,
    r#"{"time": 120, "retract": {"edge": [[1, 2]]}}"#,
    r#"{"time": 130, "insert": {"edge": [[5, 6]]}}"#,
];

/// How a case sends its body.
enum Body {
    /// JSON text, `Content-Length`.
    Json(&'static str),
    /// A JSON value, encoded as MessagePack, `Content-Type: application/msgpack`.
    MessagePack(serde_json::Value),
    /// These bytes, `Content-Type: application/msgpack`.
    MessagePackBytes(Vec<u8>),
    /// JSON text, sent with `Transfer-Encoding: chunked` in chunks of 1000 bytes.
    Chunked(String),
    /// JSON text, `Content-Length`.
    Owned(String),
}

/// One malformed request and what the daemon answers.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    /// The `Authorization` header, if any.
    token: Option<&'static str>,
    /// More headers.
    headers: &'static [(&'static str, &'static str)],
    body: Body,
    status: u16,
    /// A piece of the `error` message.
    says: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    token: Option<&'static str>,
    body: Body,
    status: u16,
    says: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        token,
        headers: &[],
        body,
        status,
        says,
    }
}

fn tx(body: &'static str, status: u16, says: &'static str, name: &'static str) -> Case {
    case(
        name,
        "POST",
        "/v1/transactions",
        Some(INGEST),
        Body::Json(body),
        status,
        says,
    )
}

fn cases() -> Vec<Case> {
    use Body::{Chunked, Json, MessagePack, MessagePackBytes, Owned};
    let big = format!(r#"{{"event": "{}"}}"#, "x".repeat(5000));
    let mut cases = vec![
        // Transactions the engine refuses: 422, naming the item.
        tx(
            r#"{"time": 200, "insert": {"edge": [[7, "x"]]}}"#,
            422,
            "item 1 (`+edge(7, \"x\")`): column `b` of `edge` is a `number`, but `\"x\"` is a `symbol`",
            "a symbol in a number column",
        ),
        tx(
            r#"{"time": 200, "insert": {"reading": [[5, 90, null]]}}"#,
            422,
            "column `node` of `reading` is a `symbol`, but `5` is a `number`",
            "a number in a symbol column",
        ),
        tx(
            r#"{"time": 200, "insert": {"edge": [[7, 2.5]]}}"#,
            422,
            "column `b` of `edge` is a `number`, but `2.5` is a `float`",
            "a float in a number column",
        ),
        tx(
            r#"{"time": 200, "insert": {"edge": [[18446744073709551615, 1]]}}"#,
            422,
            "column `a` of `edge` is a `number`",
            "an unsigned beyond i64 in a number column",
        ),
        tx(
            r#"{"time": 200, "insert": {"edgy": [[1, 2]]}}"#,
            422,
            "item 1 (`+edgy(1, 2)`): unknown relation `edgy`",
            "an unknown relation",
        ),
        tx(
            r#"{"time": 200, "insert": {"edge": [[1]]}}"#,
            422,
            "relation `edge` has 2 columns, but 1 value is given",
            "too few values",
        ),
        tx(
            r#"{"time": 200, "retract": {"edge": [[1, 2, 3]]}}"#,
            422,
            "item 1 (`-edge(1, 2, 3)`): relation `edge` has 2 columns, but 3 values are given",
            "too many values in a retraction",
        ),
        tx(
            r#"{"time": 200, "insert": {"path": [[9, 9]]}}"#,
            422,
            "relation `path` is derived by rules and cannot be written",
            "a derived relation",
        ),
        tx(
            r#"{"time": 200, "insert": {"now": [[5]]}}"#,
            422,
            "`now` is the clock",
            "a write to the clock",
        ),
        tx(
            r#"{"time": 200, "insert": {"reading": [["pve", 95, 5]]}}"#,
            422,
            "column `since` of `reading` is its stamp, which the engine fills",
            "a stamp given",
        ),
        tx(
            r#"{"time": 200, "insert": {"edge": [[1, null]]}}"#,
            422,
            "column `b` of `edge` cannot be `_`",
            "`_` in a plain insert",
        ),
        tx(
            r#"{"time": 50, "insert": {"edge": [[7, 8]]}}"#,
            422,
            "its time 50 is before the current time 130; time never goes backwards",
            "time going backwards",
        ),
        tx(
            r#"{"time": 200, "insert": {"edge": [[7, 8], [8, "y"]]}}"#,
            422,
            "item 2 (`+edge(8, \"y\")`)",
            "a valid item, then an invalid one",
        ),
        tx(
            r#"{"time": 200, "retract": {"edge": [[2, 3]]}, "insert": {"edgy": [[1, 2]]}}"#,
            422,
            "item 2 (`+edgy(1, 2)`): unknown relation `edgy`",
            "a valid retraction, then an unknown relation",
        ),
        // Bodies that are not an entry: 400.
        tx(
            r#"{"time": 200, "insrt": {"edge": [[7, 8]]}}"#,
            400,
            "the JSON body at `insrt`: unknown field `insrt`, expected one of `time`, `event`, `restore`, `retract`, `insert`, `whatif`",
            "an unknown field",
        ),
        tx(
            r#"{"time": "soon"}"#,
            400,
            "the JSON body at `time`: invalid type: string \"soon\", expected i64",
            "a string for the time",
        ),
        tx(
            r#"{"time": 9223372036854775808}"#,
            400,
            "invalid value: integer `9223372036854775808`, expected i64",
            "a time beyond i64",
        ),
        tx(
            r#"{"insert": {"edge": [1, 2]}}"#,
            400,
            "the JSON body at `insert.edge[0]`: invalid type: integer `1`, expected a sequence",
            "a row that is not a list",
        ),
        tx(
            r#"{"insert": [["edge", 1, 2]]}"#,
            400,
            "the JSON body at `insert`: invalid type: sequence, expected a map",
            "writes that are not by relation",
        ),
        tx(
            r#"{"insert": {"edge": [[{"a": 1}, 2]]}}"#,
            400,
            "expected a number, a string, or null for `_`",
            "a map as a value",
        ),
        tx(
            r#"{"time": 200, "insert": "#,
            400,
            "the JSON body at `insert`: EOF while parsing a value",
            "truncated JSON",
        ),
        tx(
            "",
            400,
            "the JSON body: EOF while parsing a value",
            "an empty body",
        ),
        tx(
            r#"{"time": 200} {"time": 300}"#,
            400,
            "the JSON body: trailing characters",
            "two entries",
        ),
        tx(
            r#""hello""#,
            400,
            "the JSON body: invalid type: string \"hello\", expected struct Entry",
            "a string body",
        ),
        tx(
            r#"{"whatif": true, "insert": {"edge": [[7, 8]]}}"#,
            400,
            "`whatif` transactions go to /v1/whatif",
            "a what-if sent as a transaction",
        ),
        // MessagePack: the same schema, and errors in MessagePack.
        case(
            "invalid MessagePack",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            MessagePackBytes(vec![0xc1, 0x00]),
            400,
            "the MessagePack body",
        ),
        case(
            "JSON sent as MessagePack",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            MessagePackBytes(br#"{"time": 200}"#.to_vec()),
            400,
            "the MessagePack body",
        ),
        case(
            "MessagePack with an unknown field",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            MessagePack(serde_json::json!({"time": 200, "insrt": {}})),
            400,
            "the MessagePack body at `insrt`: unknown field `insrt`",
        ),
        case(
            "MessagePack with a wrong arity",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            MessagePack(serde_json::json!({"time": 200, "insert": {"edge": [[1]]}})),
            422,
            "relation `edge` has 2 columns, but 1 value is given",
        ),
        // The size limit: 413, whatever the encoding.
        case(
            "a body over the limit",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            Owned(big.clone()),
            413,
            "the request body is larger than 4096 bytes",
        ),
        case(
            "a chunked body over the limit",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            Chunked(big.clone()),
            413,
            "the request body is larger than 4096 bytes",
        ),
        case(
            "a MessagePack body over the limit",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            MessagePack(serde_json::json!({"event": "x".repeat(5000)})),
            413,
            "the request body is larger than 4096 bytes",
        ),
        case(
            "a query over the limit",
            "POST",
            "/v1/query",
            Some(READ),
            Owned(format!(r#"{{"query": "path({})"}}"#, "1".repeat(5000))),
            413,
            "the request body is larger than 4096 bytes",
        ),
        // Tokens and scopes.
        case(
            "no token",
            "POST",
            "/v1/transactions",
            None,
            Json(VALID[3]),
            401,
            "a bearer token is required: `Authorization: Bearer SECRET`",
        ),
        case(
            "a wrong token",
            "POST",
            "/v1/transactions",
            Some("Bearer ingest-secret-0123456780"),
            Json(VALID[3]),
            401,
            "a bearer token is required",
        ),
        case(
            "another scheme",
            "POST",
            "/v1/transactions",
            Some("Basic aW5nZXN0LXNlY3JldC0wMTIzNDU2Nzg5"),
            Json(VALID[3]),
            401,
            "a bearer token is required",
        ),
        case(
            "a secret without its scheme",
            "POST",
            "/v1/transactions",
            Some("ingest-secret-0123456789"),
            Json(VALID[3]),
            401,
            "a bearer token is required",
        ),
        case(
            "no token for a read",
            "GET",
            "/v1/relations",
            None,
            Json(""),
            401,
            "a bearer token is required",
        ),
        case(
            "a read token ingesting",
            "POST",
            "/v1/transactions",
            Some(READ),
            Json(r#"{"time": 200, "insert": {"edge": [[7, 8]]}}"#),
            403,
            "this token lacks the `ingest` scope",
        ),
        case(
            "an ingest token querying",
            "POST",
            "/v1/query",
            Some(INGEST),
            Json(r#"{"query": "path(X, Y)"}"#),
            403,
            "this token lacks the `read` scope",
        ),
        case(
            "an ingest token asking what if",
            "POST",
            "/v1/whatif",
            Some(INGEST),
            Json(r#"{"insert": {"edge": [[7, 8]]}}"#),
            403,
            "this token lacks the `read` scope",
        ),
        case(
            "an ingest token watching",
            "GET",
            "/v1/watch/path",
            Some(INGEST),
            Json(""),
            403,
            "this token lacks the `read` scope",
        ),
        case(
            "a read token compacting",
            "POST",
            "/v1/admin/compact",
            Some(READ),
            Json(""),
            403,
            "this token lacks the `admin` scope",
        ),
        case(
            "an ingest token reading metrics",
            "GET",
            "/metrics",
            Some(INGEST),
            Json(""),
            403,
            "this token lacks the `read` scope",
        ),
        // Routes and methods.
        case(
            "an unknown route",
            "GET",
            "/v1/nothing",
            Some(ADMIN),
            Json(""),
            404,
            "no endpoint GET /v1/nothing",
        ),
        case(
            "an unknown route, without a token",
            "POST",
            "/v2/transactions",
            None,
            Json(VALID[3]),
            404,
            "no endpoint POST /v2/transactions",
        ),
        // A wrong method on a known path: 405, with the methods it takes.
        case(
            "GET on transactions",
            "GET",
            "/v1/transactions",
            Some(ADMIN),
            Json(""),
            405,
            "/v1/transactions takes POST, not GET",
        ),
        case(
            "PUT on transactions",
            "PUT",
            "/v1/transactions",
            Some(ADMIN),
            Json(VALID[3]),
            405,
            "/v1/transactions takes POST, not PUT",
        ),
        case(
            "DELETE on query",
            "DELETE",
            "/v1/query",
            Some(ADMIN),
            Json(""),
            405,
            "/v1/query takes POST, not DELETE",
        ),
        case(
            "POST on health",
            "POST",
            "/v1/health",
            None,
            Json("{}"),
            405,
            "/v1/health takes GET, not POST",
        ),
        // Queries and explanations.
        case(
            "a query cut short",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": "path(1, "}"#),
            422,
            "1:9: expected a value or a variable, found the end of the line",
        ),
        case(
            "a query with no parenthesis",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": "path"}"#),
            422,
            "expected `(` after `path`",
        ),
        case(
            "a query of an unknown relation",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": "nothing(X)"}"#),
            422,
            "unknown relation `nothing`",
        ),
        case(
            "a query with a wrong arity",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": "path(1)"}"#),
            422,
            "relation `path` has 2 columns, but 1 value is given",
        ),
        case(
            "a query with a wrong type",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": "path(\"a\", X)"}"#),
            422,
            "column `a` of `path` is a `number`",
        ),
        case(
            "a query with an unknown field",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"q": "path(X, Y)"}"#),
            400,
            "the JSON body at `q`: unknown field `q`, expected `query`",
        ),
        case(
            "a query without its field",
            "POST",
            "/v1/query",
            Some(READ),
            Json("{}"),
            400,
            "the JSON body: missing field `query`",
        ),
        case(
            "a query that is a number",
            "POST",
            "/v1/query",
            Some(READ),
            Json(r#"{"query": 5}"#),
            400,
            "the JSON body at `query`: invalid type: integer `5`, expected a string",
        ),
        case(
            "why of a pattern",
            "POST",
            "/v1/why",
            Some(READ),
            Json(r#"{"atom": "path(2, X)"}"#),
            422,
            "`why` takes a tuple: every argument must be a value",
        ),
        case(
            "why cut short",
            "POST",
            "/v1/why",
            Some(READ),
            Json(r#"{"atom": "path(2, 3"}"#),
            422,
            "1:10: expected `,` or `)`, found the end of the line",
        ),
        case(
            "why of an unknown relation",
            "POST",
            "/v1/why",
            Some(READ),
            Json(r#"{"atom": "nothing(1)"}"#),
            422,
            "unknown relation `nothing`",
        ),
        case(
            "why with an unknown field",
            "POST",
            "/v1/why",
            Some(READ),
            Json(r#"{"query": "path(2, 3)"}"#),
            400,
            "unknown field `query`, expected `atom`",
        ),
        case(
            "why not with a wrong arity",
            "POST",
            "/v1/whynot",
            Some(READ),
            Json(r#"{"atom": "path(1)"}"#),
            422,
            "relation `path` has 2 columns, but 1 value is given",
        ),
        case(
            "why not with a wrong type",
            "POST",
            "/v1/whynot",
            Some(READ),
            Json(r#"{"atom": "hot(5)"}"#),
            422,
            "column `n` of `hot` is a `symbol`",
        ),
        // What-if refuses what a transaction refuses.
        case(
            "a what-if with a wrong type",
            "POST",
            "/v1/whatif",
            Some(READ),
            Json(r#"{"insert": {"edge": [[1, "x"]]}}"#),
            422,
            "item 1 (`+edge(1, \"x\")`): column `b` of `edge` is a `number`",
        ),
        case(
            "a what-if going backwards",
            "POST",
            "/v1/whatif",
            Some(READ),
            Json(r#"{"time": 10, "insert": {"edge": [[7, 8]]}}"#),
            422,
            "its time 10 is before the current time 130",
        ),
        case(
            "a what-if with an unknown field",
            "POST",
            "/v1/whatif",
            Some(READ),
            Json(r#"{"retrct": {}}"#),
            400,
            "unknown field `retrct`",
        ),
        // Watching.
        case(
            "watching an unknown view",
            "GET",
            "/v1/watch/nothing",
            Some(READ),
            Json(""),
            404,
            "unknown relation `nothing`",
        ),
        case(
            "watching from a word",
            "GET",
            "/v1/watch/path?from=abc",
            Some(READ),
            Json(""),
            400,
            "`from` must be a logical time (a whole number), not `abc`",
        ),
        case(
            "watching from a negative time",
            "GET",
            "/v1/watch/path?from=-1",
            Some(READ),
            Json(""),
            400,
            "`from` must be a logical time (a whole number), not `-1`",
        ),
        case(
            "watching from an empty time",
            "GET",
            "/v1/watch/path?from=",
            Some(READ),
            Json(""),
            400,
            "`from` must be a logical time (a whole number), not ``",
        ),
        case(
            "watching from a time no longer kept",
            "GET",
            "/v1/watch/path?from=0",
            Some(READ),
            Json(""),
            410,
            "the change sets after time 0 are no longer kept; read the view again",
        ),
    ];
    cases.push(Case {
        headers: &[("Last-Event-ID", "twelve")],
        ..case(
            "watching from a bad Last-Event-ID",
            "GET",
            "/v1/watch/path",
            Some(READ),
            Json(""),
            400,
            "`from` must be a logical time (a whole number), not `twelve`",
        )
    });
    cases.push(Case {
        headers: &[("Accept", "application/msgpack")],
        ..case(
            "a MessagePack answer to an unknown relation",
            "POST",
            "/v1/transactions",
            Some(INGEST),
            Json(r#"{"time": 200, "insert": {"edgy": [[1, 2]]}}"#),
            422,
            "unknown relation `edgy`",
        )
    });
    cases
}

/// Sends a case's request.
fn send(daemon: &Daemon, case: &Case) -> Response {
    let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
    if let Some(token) = case.token {
        headers.push(("Authorization", token));
    }
    let msgpack = ("Content-Type", "application/msgpack");
    match &case.body {
        Body::Json(text) => daemon.send(case.method, case.path, &headers, text.as_bytes()),
        Body::Owned(text) => daemon.send(case.method, case.path, &headers, text.as_bytes()),
        Body::MessagePack(value) => {
            headers.push(msgpack);
            let bytes = rmp_serde::to_vec_named(value).unwrap();
            daemon.send(case.method, case.path, &headers, &bytes)
        }
        Body::MessagePackBytes(bytes) => {
            headers.push(msgpack);
            daemon.send(case.method, case.path, &headers, bytes)
        }
        Body::Chunked(text) => {
            let mut head = format!(
                "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n",
                case.method, case.path, daemon.address
            );
            for (name, value) in &headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            for chunk in text.as_bytes().chunks(1000) {
                bytes.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
            daemon.raw(&bytes).unwrap()
        }
    }
}

fn ingest(daemon: &Daemon, body: &str) -> serde_json::Value {
    let response = daemon.send(
        "POST",
        "/v1/transactions",
        &[("Authorization", INGEST)],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{body}: {}", response.text());
    response.json()
}

fn query(daemon: &Daemon, atom: &str) -> serde_json::Value {
    let response = daemon.send(
        "POST",
        "/v1/query",
        &[("Authorization", READ)],
        serde_json::json!({ "query": atom }).to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{atom}: {}", response.text());
    response.json()["rows"].clone()
}

/// What the state must be after the valid transactions, whatever was refused.
fn assert_state_of_the_valid_transactions(daemon: &Daemon) {
    let (status, health) = daemon.json("GET", "/v1/health", "");
    assert_eq!(status, 200);
    assert_eq!(health["time"], 4, "{health}");
    assert_eq!(health["now"], 130, "{health}");
    assert_eq!(
        query(daemon, "edge(X, Y)"),
        serde_json::json!([[2, 3], [3, 4], [5, 6]])
    );
    assert_eq!(
        query(daemon, "path(X, Y)"),
        serde_json::json!([[2, 3], [2, 4], [3, 4], [5, 6]])
    );
    assert_eq!(
        query(daemon, "reading(N, W, S)"),
        serde_json::json!([["pve", 90, 100]])
    );
    assert_eq!(query(daemon, "hot(N)"), serde_json::json!([]));
    let metrics = daemon
        .send("GET", "/metrics", &[("Authorization", READ)], b"")
        .text();
    for line in [
        "vigil_transactions_total{outcome=\"committed\"} 4",
        "vigil_logical_time 4",
        "vigil_journal_records 4",
        "vigil_view_rows{view=\"path\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[test]
fn malformed_requests_are_refused_with_a_reason_and_change_nothing() {
    let started = std::time::Instant::now();
    let dir = daemon::scratch("errors", PROGRAM);
    let config = daemon::config(&dir, TOKENS);
    let daemon = Daemon::start(&config, &[]);
    for body in VALID {
        ingest(&daemon, body);
    }
    assert_state_of_the_valid_transactions(&daemon);
    let journal = std::fs::read(dir.join("data/journal.vj")).unwrap();

    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let response = send(&daemon, case);
        let msgpack = matches!(case.body, Body::MessagePack(_) | Body::MessagePackBytes(_))
            || case
                .headers
                .iter()
                .any(|(_, value)| value.contains("msgpack"));
        let (error, content_type) = if msgpack {
            (
                rmp_serde::from_slice::<serde_json::Value>(&response.body)
                    .unwrap_or(serde_json::Value::Null),
                "application/msgpack",
            )
        } else {
            (response.json(), "application/json")
        };
        let message = error["error"].as_str().unwrap_or_default();
        let problem = if response.status != case.status {
            Some(format!("status {}, not {}", response.status, case.status))
        } else if !message.contains(case.says) {
            Some(format!("the message does not say `{}`", case.says))
        } else if error.as_object().map(|o| o.len()) != Some(1) {
            Some("the body is not `{\"error\": ...}` alone".to_string())
        } else if response.header("content-type").as_deref() != Some(content_type) {
            Some(format!(
                "content type {:?}, not {content_type}",
                response.header("content-type")
            ))
        } else if response.status == 401
            && response.header("www-authenticate").as_deref() != Some("Bearer")
        {
            Some("no `WWW-Authenticate: Bearer`".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            wrong.push(format!(
                "{}: {} {}: {problem}; it answered {} {}",
                case.name,
                case.method,
                case.path,
                response.status,
                if msgpack {
                    error.to_string()
                } else {
                    response.text()
                }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // Nothing was applied, nor journaled.
    assert_state_of_the_valid_transactions(&daemon);
    assert_eq!(std::fs::read(dir.join("data/journal.vj")).unwrap(), journal);

    // Something that is not HTTP at all gets a 400 from the HTTP layer, and the daemon goes
    // on serving.
    let mut stream = daemon.connect().unwrap();
    stream.write_all(b"HELLO THERE\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // So does a connection that closes in the middle of a body.
    let mut stream = daemon.connect().unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nAuthorization: {INGEST}\r\nContent-Length: 100\r\n\r\n{{\"time\": 300, \"insert\": {{\"edge\": [[7, 8]]}}"
            )
            .as_bytes(),
        )
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_state_of_the_valid_transactions(&daemon);

    // The daemon still takes transactions, at the next logical time.
    let changes = ingest(&daemon, r#"{"time": 140, "insert": {"edge": [[6, 7]]}}"#);
    assert_eq!(changes["time"], 5, "{changes}");
    daemon.stop();
    eprintln!(
        "{} malformed requests in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Reads only the status of a response whose body may never end (an event stream).
fn status_of(daemon: &Daemon, head: &str) -> (u16, String) {
    let mut stream = daemon.connect().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&received).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Only views' changes are published: watching a relation that is not a view is refused,
/// rather than answered with a stream that stays silent forever.
#[test]
fn watching_a_relation_that_is_not_a_view_is_refused() {
    let dir = daemon::scratch("watch-input", PROGRAM);
    let daemon = Daemon::start(&daemon::config(&dir, ""), &[]);
    let (status, head) = status_of(
        &daemon,
        &format!(
            "GET /v1/watch/edge?from=0 HTTP/1.1\r\nHost: {}\r\n\r\n",
            daemon.address
        ),
    );
    daemon.stop();
    assert!((400..500).contains(&status), "{head}");
}

/// A known path with a method it does not take: 405, and `Allow` says which it takes.
#[test]
fn a_wrong_method_is_405_with_allow() {
    let dir = daemon::scratch("method", PROGRAM);
    let daemon = Daemon::start(&daemon::config(&dir, ""), &[]);
    let response = daemon.send("GET", "/v1/transactions", &[], b"");
    let query = daemon.send("DELETE", "/v1/query", &[], b"");
    daemon.stop();
    assert_eq!(response.status, 405, "{}", response.text());
    assert_eq!(response.header("allow").as_deref(), Some("POST"));
    assert_eq!(query.status, 405, "{}", query.text());
}

/// The authentication scheme is case-insensitive (RFC 9110, 11.1): `bearer SECRET` is the
/// same credential as `Bearer SECRET`.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let dir = daemon::scratch("scheme", PROGRAM);
    let daemon = Daemon::start(&daemon::config(&dir, TOKENS), &[]);
    let response = daemon.send(
        "GET",
        "/v1/relations",
        &[("Authorization", "bearer read-secret-0123456789")],
        b"",
    );
    daemon.stop();
    assert_eq!(response.status, 200, "{}", response.text());
}

/// A body that decodes to the wrong type of value names the field it is in.
#[test]
fn type_errors_in_a_body_name_the_field() {
    let dir = daemon::scratch("field", PROGRAM);
    let daemon = Daemon::start(&daemon::config(&dir, ""), &[]);
    let answers: Vec<(&str, serde_json::Value)> = [
        (r#"{"time": "soon"}"#, "time"),
        (r#"{"insert": {"edge": [1, 2]}}"#, "edge"),
        (r#"{"event": 5}"#, "event"),
    ]
    .into_iter()
    .map(|(body, field)| (field, daemon.json("POST", "/v1/transactions", body).1))
    .collect();
    daemon.stop();
    for (field, answer) in answers {
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(field), "`{field}` in {message}");
    }
}
