//! The dashboard: a web page served by the daemon itself, and the state it shows.
//!
//! The page (`GET /dashboard`, plain HTML, CSS and JavaScript modules embedded in the binary)
//! needs more than the views: a node's power state, what runs where, the edges' health and the
//! UPS are input relations, which the watch stream of a view does not carry. So the daemon keeps
//! a [`Board`], fed by an observer on the engine thread that sees every committed change set
//! together with the engine:
//!
//! - the **state**: the rows of the relations the page shows (those of them the program has),
//!   rebuilt after each transaction that changed one of them, and served whole;
//! - the **power history**: one sample per logical time of the house's draw, its limit, solar,
//!   the UPS and what is shed, for the last hours of event time (a page opened late still
//!   draws them), without repeating a sample that says what the previous one said within the
//!   same minute;
//! - the **recent decisions**: the rows that appeared in and left the `action` view.
//!
//! `GET /v1/dashboard/watch?from=T` streams them as server-sent events, resumable from a logical
//! time like the watch stream of a view: a `state` event whenever the state moved (at most a
//! few a second: a page need not redraw every transaction of a fast simulation), and the
//! samples and decisions after `T`. Each event's id is the logical time it brings the page to.
//! The samples and decisions are bounded, so a page that comes back after a long time gets
//! the last hours only; that is all it draws anyway.
//!
//! The board reads the engine on its own thread, after the commit: a transaction costs a few
//! reads of small relations more, and the page never waits for the engine thread.

use super::http::Body;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use vigil_engine::trace::Field;
use vigil_engine::{ChangeSet, Engine, Value};

/// The relations whose rows the page shows, when the program has them.
const SHOWN: &[&str] = &[
    // The house and its power.
    "node",
    "node_role",
    "workload",
    "power_state",
    "running",
    "requested",
    "placement",
    "unplaced",
    "wake",
    "wake_deferred",
    "last_wake",
    "sleep",
    "unload",
    "limit",
    "solar",
    "excess",
    "headroom",
    "house_power",
    "shed_order",
    "shed",
    "stop",
    "shutdown",
    "ups_source",
    "ups_battery",
    "on_battery",
    "emergency",
    "power_unstable",
    // The gaming rig and the cluster.
    "borrow",
    "ray_worker",
    "game_running",
    "quorum",
    "member_online",
    // The harvest.
    "edge_status",
    "harvest_task",
    "task_assigned",
    "task_done",
    "assign",
    "reassign",
    "pause",
    "harvest_allowed",
    "artifact_report",
    "accept",
    "duplicate",
    "quarantine",
    "archived",
    // Decisions.
    "action",
    "tier",
    "awaiting_approval",
    "denied",
    "forbidden",
];

/// The relations a power sample reads.
const POWER: &[&str] = &[
    "house_power",
    "limit",
    "ups_source",
    "ups_battery",
    "on_battery",
    "emergency",
    "shed",
    "stop",
];

/// How much event time of power samples the board keeps.
const HISTORY_SECONDS: i64 = 6 * 3600;
/// At most this many samples, whatever their times.
const HISTORY_SAMPLES: usize = 8192;
/// At most this many recent decisions.
const DECISIONS: usize = 400;
/// At most this many rows of one relation in the state: the page is for a house, and a
/// house of many thousand workloads would make a page nobody reads.
const ROWS_SHOWN: usize = 2000;
/// The least time between two `state` events of one stream.
const STATE_INTERVAL: Duration = Duration::from_millis(250);

/// The power of the house at one logical time.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// The logical time.
    pub time: u64,
    /// The event time, in seconds.
    pub now: i64,
    /// The household's total draw (W), the sum of the meters.
    pub draw: Option<i64>,
    /// What the house may draw now (W).
    pub limit: Option<i64>,
    /// Solar production (W).
    pub solar: Option<i64>,
    /// `line` or `battery`, as the UPS reports it.
    pub ups: Option<String>,
    /// Battery charge (%), and runtime (s).
    pub charge: Option<i64>,
    pub runtime: Option<i64>,
    /// On battery past the hold-off; the battery under the shutdown threshold.
    pub on_battery: bool,
    pub emergency: bool,
    /// The workloads shed now, and those stopped for the UPS emergency.
    pub shed: Vec<String>,
    pub stopped: Vec<String>,
}

impl Sample {
    /// Whether two samples say the same (their times aside).
    fn same(&self, other: &Sample) -> bool {
        self.draw == other.draw
            && self.limit == other.limit
            && self.solar == other.solar
            && self.ups == other.ups
            && self.charge == other.charge
            && self.runtime == other.runtime
            && self.on_battery == other.on_battery
            && self.emergency == other.emergency
            && self.shed == other.shed
            && self.stopped == other.stopped
    }
}

/// A row that appeared in (`diff` 1) or left (-1) the `action` view.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub time: u64,
    pub now: i64,
    pub diff: isize,
    pub id: String,
    pub kind: String,
    pub target: String,
    pub reason: String,
}

struct Inner {
    /// The logical and event time of the state.
    time: u64,
    now: i64,
    /// `{"relation": [[...], ...], ...}`, serialized.
    relations: Arc<str>,
    /// Relations cut to [`ROWS_SHOWN`] rows.
    truncated: Vec<String>,
    samples: VecDeque<Sample>,
    decisions: VecDeque<Decision>,
}

/// What the dashboard shows, kept up to date by the engine thread.
pub struct Board {
    /// The relations of [`SHOWN`] that the program has.
    shown: Vec<String>,
    /// By relation of `shown`: its rows as JSON and whether they were cut short, as of the
    /// last change set that touched it (only the engine thread uses it).
    serialized: Mutex<Vec<Option<(String, bool)>>>,
    inner: Mutex<Inner>,
    /// The logical time of the latest state.
    latest: watch::Sender<u64>,
}

impl Board {
    pub fn new(program: &vigil_engine::ir::Program) -> Board {
        let shown: Vec<String> = SHOWN
            .iter()
            .filter(|name| program.relation(name).is_some())
            .map(ToString::to_string)
            .collect();
        Board {
            serialized: Mutex::new(vec![None; shown.len()]),
            shown,
            inner: Mutex::new(Inner {
                time: 0,
                now: 0,
                relations: Arc::from("{}"),
                truncated: Vec::new(),
                samples: VecDeque::new(),
                decisions: VecDeque::new(),
            }),
            latest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in a committed change set; called on the engine thread.
    pub fn observe(&self, changes: &ChangeSet, engine: &Engine) {
        let first = self.lock().time == 0;
        let changed: Vec<&str> = changes.relations().collect();
        let touched: Vec<usize> = (0..self.shown.len())
            .filter(|&index| first || changed.contains(&self.shown[index].as_str()))
            .collect();
        let relations = (!touched.is_empty()).then(|| self.read_relations(engine, &touched));
        let sample = power_sample(changes, engine);
        let decisions: Vec<Decision> = changes
            .of("action")
            .into_iter()
            .filter_map(|(tuple, diff)| {
                let text: Vec<String> = tuple.iter().map(symbol_text).collect();
                let [id, kind, target, reason] = <[String; 4]>::try_from(text).ok()?;
                Some(Decision {
                    time: changes.time,
                    now: changes.now,
                    diff,
                    id,
                    kind,
                    target,
                    reason,
                })
            })
            .collect();
        {
            let mut inner = self.lock();
            inner.time = changes.time;
            inner.now = changes.now;
            if let Some((relations, truncated)) = relations {
                inner.relations = relations;
                inner.truncated = truncated;
            }
            let repeated = inner
                .samples
                .back()
                .is_some_and(|last| last.same(&sample) && last.now / 60 == sample.now / 60);
            if !repeated {
                inner.samples.push_back(sample);
            }
            let horizon = changes.now - HISTORY_SECONDS;
            while inner
                .samples
                .front()
                .is_some_and(|s| s.now < horizon || inner.samples.len() > HISTORY_SAMPLES)
            {
                inner.samples.pop_front();
            }
            inner.decisions.extend(decisions);
            while inner.decisions.len() > DECISIONS {
                inner.decisions.pop_front();
            }
        }
        self.latest.send_replace(changes.time);
    }

    /// The rows of the shown relations, serialized, and the names of those cut short; only
    /// the relations `touched` (indices into `shown`) are read again.
    fn read_relations(&self, engine: &Engine, touched: &[usize]) -> (Arc<str>, Vec<String>) {
        let mut serialized = self.serialized.lock().unwrap_or_else(|p| p.into_inner());
        for &index in touched {
            serialized[index] = engine.read(&self.shown[index], &[]).ok().map(|mut rows| {
                let cut = rows.len() > ROWS_SHOWN;
                rows.truncate(ROWS_SHOWN);
                let rows: Vec<Vec<Field>> = rows
                    .into_iter()
                    .map(|tuple| tuple.into_iter().map(|v| Field(Some(v))).collect())
                    .collect();
                let text = serde_json::to_string(&rows).unwrap_or_else(|_| "null".into());
                (text, cut)
            });
        }
        let mut text = String::from("{");
        let mut truncated = Vec::new();
        for (name, entry) in self.shown.iter().zip(serialized.iter()) {
            let Some((rows, cut)) = entry else { continue };
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(name).unwrap_or_default());
            text.push(':');
            text.push_str(rows);
            if *cut {
                truncated.push(name.clone());
            }
        }
        text.push('}');
        (Arc::from(text), truncated)
    }

    /// The state event's body: `{"time", "now", "truncated", "relations"}`.
    fn state_json(&self) -> (u64, String) {
        let inner = self.lock();
        let truncated = serde_json::to_string(&inner.truncated).unwrap_or_else(|_| "[]".into());
        (
            inner.time,
            format!(
                "{{\"time\":{},\"now\":{},\"truncated\":{truncated},\"relations\":{}}}",
                inner.time, inner.now, inner.relations
            ),
        )
    }

    /// The samples and decisions after logical time `after`, and the latest time.
    fn history_after(&self, after: u64) -> serde_json::Value {
        let inner = self.lock();
        let samples: Vec<&Sample> = inner.samples.iter().filter(|s| s.time > after).collect();
        let decisions: Vec<&Decision> = inner.decisions.iter().filter(|d| d.time > after).collect();
        serde_json::json!({
            "time": inner.time,
            "now": inner.now,
            "window_seconds": HISTORY_SECONDS,
            "samples": samples,
            "decisions": decisions,
        })
    }

    /// Serves `GET /v1/dashboard/WHAT`: `state`, `history` or `watch` (the scope is checked).
    pub fn serve(
        self: &Arc<Self>,
        what: &str,
        query: Option<&str>,
        last_event_id: Option<&str>,
        shutdown: watch::Receiver<bool>,
    ) -> Response<Body> {
        let from = query
            .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("from=")))
            .or(last_event_id);
        let from = match from.map(|text| (text, text.parse::<u64>())) {
            None => None,
            Some((_, Ok(time))) => Some(time),
            Some((text, Err(_))) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{{\"error\":{}}}",
                        serde_json::Value::from(format!(
                            "`from` must be a logical time (a whole number), not `{text}`"
                        ))
                    ),
                );
            }
        };
        match what {
            "state" => json(StatusCode::OK, self.state_json().1),
            "history" => json(
                StatusCode::OK,
                self.history_after(from.unwrap_or(0)).to_string(),
            ),
            "watch" => self.watch(from, shutdown),
            other => json(
                StatusCode::NOT_FOUND,
                format!(
                    "{{\"error\":{}}}",
                    serde_json::Value::from(format!(
                        "no dashboard endpoint `{other}`: there are `state`, `history` and `watch`"
                    ))
                ),
            ),
        }
    }

    /// The dashboard's stream: the state, then the samples and decisions after `from` (all
    /// that is kept without it), then each change as it comes.
    fn watch(
        self: &Arc<Self>,
        from: Option<u64>,
        shutdown: watch::Receiver<bool>,
    ) -> Response<Body> {
        let (sender, receiver) = mpsc::channel::<Bytes>(16);
        let board = self.clone();
        let mut latest = self.latest.subscribe();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let mut cursor = from.unwrap_or(0);
            let mut shown_state = None;
            loop {
                latest.borrow_and_update();
                let history = board.history_after(cursor);
                let time = history["time"].as_u64().unwrap_or(cursor);
                if shown_state != Some(time) {
                    let (time, state) = board.state_json();
                    shown_state = Some(time);
                    let event = format!("id: {time}\nevent: state\ndata: {state}\n\n");
                    if sender.send(Bytes::from(event)).await.is_err() {
                        return;
                    }
                }
                let fresh = history["samples"].as_array().is_some_and(|s| !s.is_empty())
                    || history["decisions"]
                        .as_array()
                        .is_some_and(|d| !d.is_empty());
                if fresh || time > cursor {
                    cursor = cursor.max(time);
                    let event = format!("id: {cursor}\nevent: history\ndata: {history}\n\n");
                    if sender.send(Bytes::from(event)).await.is_err() {
                        return;
                    }
                }
                // Coalesce: a fast simulation commits far more often than a page redraws.
                tokio::select! {
                    () = tokio::time::sleep(STATE_INTERVAL) => {}
                    _ = shutdown.changed() => return,
                }
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(15)) => {
                        if sender.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        super::http::event_stream(receiver)
    }
}

/// Runs the decision log (if any) and then the board on every committed change set.
pub fn alongside(
    observer: Option<super::core::Observer>,
    board: Arc<Board>,
) -> Option<super::core::Observer> {
    let mut observer = observer;
    Some(Box::new(move |changes: &ChangeSet, engine: &Engine| {
        if let Some(observer) = &mut observer {
            observer(changes, engine);
        }
        board.observe(changes, engine);
    }))
}

/// A symbol's text, or a number written out.
fn symbol_text(value: &Value) -> String {
    match value {
        Value::Symbol(text) => text.to_string(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => Some(*n),
        Value::Unsigned(n) => i64::try_from(*n).ok(),
        Value::Float(x) => Some(*x as i64),
        Value::Symbol(_) => None,
    }
}

/// The power of the house now, from the relations of [`POWER`] that the program has.
fn power_sample(changes: &ChangeSet, engine: &Engine) -> Sample {
    let read = |name: &str| engine.read(name, &[]).unwrap_or_default();
    let column_sum = |rows: &[Vec<Value>], column: usize| -> Option<i64> {
        (!rows.is_empty()).then(|| {
            rows.iter()
                .filter_map(|row| row.get(column).and_then(number))
                .sum()
        })
    };
    let meters = read(POWER[0]);
    let first =
        |name: &str, column: usize| read(name).first().and_then(|row| row.get(column).cloned());
    let names = |name: &str| -> Vec<String> {
        read(name)
            .iter()
            .filter_map(|row| row.first().map(symbol_text))
            .collect()
    };
    Sample {
        time: changes.time,
        now: changes.now,
        draw: column_sum(&meters, 1),
        solar: column_sum(&meters, 2),
        limit: first("limit", 0).as_ref().and_then(number),
        ups: first("ups_source", 1).as_ref().map(symbol_text),
        charge: first("ups_battery", 1).as_ref().and_then(number),
        runtime: first("ups_battery", 2).as_ref().and_then(number),
        on_battery: !read("on_battery").is_empty(),
        emergency: !read("emergency").is_empty(),
        shed: names("shed"),
        stopped: names("stop"),
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Full(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The page and its assets, embedded in the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/api.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/chart.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("dashboard/icon.svg"),
    ),
];

/// Serves `GET /` (a redirect), `GET /dashboard` and `GET /dashboard/ASSET`. The page and its
/// assets hold no data; every call it makes carries the user's token.
pub fn page(path: &str) -> Response<Body> {
    let name = match path.trim_end_matches('/') {
        "" => {
            let mut response = Response::new(Body::Full(Full::new(Bytes::new())));
            *response.status_mut() = StatusCode::SEE_OTHER;
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/dashboard/"));
            return response;
        }
        "/dashboard" => "index.html",
        other => other.strip_prefix("/dashboard/").unwrap_or(other),
    };
    let Some((_, content_type, text)) = ASSETS.iter().find(|(asset, _, _)| *asset == name) else {
        return json(
            StatusCode::NOT_FOUND,
            format!(
                "{{\"error\":{}}}",
                serde_json::Value::from(format!("the dashboard has no file `{name}`"))
            ),
        );
    };
    let mut response = Response::new(Body::Full(Full::new(Bytes::from_static(text.as_bytes()))));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::Options;

    /// A house in miniature: a meter, a limit that drops on battery, shedding and actions.
    const PROGRAM: &str = r#"
.decl now(t: number)
.input now(IO=clock)
.decl house_power(meter: symbol, draw: number, solar: number)
.input house_power(IO=stream, key="meter")
.decl ups_source(ups: symbol, source: symbol, since: number)
.input ups_source(IO=stream, key="ups")
.decl running(w: symbol, n: symbol)
.input running(IO=stream)
.decl on_battery(ups: symbol)
.output on_battery
on_battery(u) :- ups_source(u, "battery", _).
.decl limit(w: number)
.output limit
limit(3000) :- !on_battery(_).
limit(900) :- on_battery(_).
.decl shed(w: symbol)
.output shed
shed(w) :- running(w, _), on_battery(_).
.decl action(id: symbol, kind: symbol, target: symbol, reason: symbol)
.output action
action(cat("shed:", w), "shed", w, "on battery") :- shed(w).
"#;

    fn commit(engine: &mut Engine, board: &Board, at: i64, rows: &[(&str, Vec<Value>)]) {
        let mut transaction = engine.transaction();
        transaction.at(at);
        for (relation, tuple) in rows {
            transaction.insert(relation, tuple).unwrap();
        }
        let changes = transaction.commit().unwrap();
        board.observe(&changes, engine);
    }

    #[test]
    fn the_board_keeps_the_state_the_power_history_and_the_decisions() {
        let program = vigil_engine::compile_source("house.dl", PROGRAM).unwrap();
        let board = Board::new(&program);
        // Only the relations the program has are shown.
        assert!(board.shown.contains(&"house_power".to_string()));
        assert!(!board.shown.contains(&"node".to_string()));
        let mut engine = Engine::new(program, Options { workers: 1 }).unwrap();
        let meter = |w: i64| {
            (
                "house_power",
                vec![Value::symbol("house"), Value::Number(w), Value::Number(100)],
            )
        };
        commit(
            &mut engine,
            &board,
            1_000,
            &[
                meter(1200),
                (
                    "ups_source",
                    vec![
                        Value::symbol("ups"),
                        Value::symbol("line"),
                        Value::Number(0),
                    ],
                ),
                ("running", vec![Value::symbol("sdxl"), Value::symbol("pve")]),
            ],
        );
        // The same reading in the same minute adds no sample; a new minute does.
        commit(&mut engine, &board, 1_010, &[meter(1200)]);
        commit(&mut engine, &board, 1_090, &[meter(1200)]);
        commit(
            &mut engine,
            &board,
            1_100,
            &[(
                "ups_source",
                vec![
                    Value::symbol("ups"),
                    Value::symbol("battery"),
                    Value::Number(0),
                ],
            )],
        );
        let history = board.history_after(0);
        let samples = history["samples"].as_array().unwrap();
        let times: Vec<u64> = samples
            .iter()
            .map(|s| s["time"].as_u64().unwrap())
            .collect();
        assert_eq!(times, [1, 3, 4], "{history}");
        let last = &samples[2];
        assert_eq!(last["draw"], 1200);
        assert_eq!(last["solar"], 100);
        assert_eq!(last["limit"], 900);
        assert_eq!(last["ups"], "battery");
        assert_eq!(last["on_battery"], true);
        assert_eq!(last["shed"], serde_json::json!(["sdxl"]));
        assert_eq!(samples[0]["limit"], 3000);
        // The decision, and only what came after a time.
        let decisions = history["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 1, "{history}");
        assert_eq!(decisions[0]["id"], "shed:sdxl");
        assert_eq!(decisions[0]["diff"], 1);
        let after = board.history_after(3);
        assert_eq!(after["samples"].as_array().unwrap().len(), 1);
        assert_eq!(board.history_after(4)["decisions"], serde_json::json!([]));
        // The state: every shown relation, inputs included.
        let (time, state) = board.state_json();
        assert_eq!(time, 4);
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(state["now"], 1_100);
        assert_eq!(
            state["relations"]["running"],
            serde_json::json!([["sdxl", "pve"]])
        );
        assert_eq!(state["relations"]["limit"], serde_json::json!([[900]]));
    }

    #[test]
    fn the_history_keeps_the_last_hours_only() {
        let program = vigil_engine::compile_source("house.dl", PROGRAM).unwrap();
        let board = Board::new(&program);
        let mut engine = Engine::new(program, Options { workers: 1 }).unwrap();
        for hour in 0..10 {
            let reading = (
                "house_power",
                vec![
                    Value::symbol("house"),
                    Value::Number(1000 + hour),
                    Value::Number(0),
                ],
            );
            commit(&mut engine, &board, hour * 3600, &[reading]);
        }
        let history = board.history_after(0);
        let kept: Vec<i64> = history["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["now"].as_i64().unwrap())
            .collect();
        assert_eq!(kept, [3, 4, 5, 6, 7, 8, 9].map(|h| h * 3600));
    }

    #[test]
    fn the_page_and_its_assets_are_served() {
        let response = page("/");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        for path in [
            "/dashboard",
            "/dashboard/",
            "/dashboard/app.js",
            "/dashboard/style.css",
        ] {
            assert_eq!(page(path).status(), StatusCode::OK, "{path}");
        }
        let missing = page("/dashboard/secrets.txt");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        // Every module the page imports is served.
        for (_, _, text) in ASSETS {
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let module = line.rsplit("\"./").next().unwrap().trim_end_matches("\";");
                assert!(
                    ASSETS.iter().any(|(name, _, _)| *name == module),
                    "{line} imports a module that is not served"
                );
            }
        }
    }
}
