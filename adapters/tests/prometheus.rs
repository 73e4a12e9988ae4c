//! The Prometheus source against a real exporter: Debian's prometheus-node-exporter on
//! loopback, run by the test (not as a service), with only the collectors that need no
//! privileges and answer at once, and a textfile of our own for labels with escapes, `NaN`
//! and `+Inf`.

mod spawned;

use spawned::{Scratch, Server, free_port, program, wait_for_port};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use vigil_adapters::prometheus::{
    self, Endpoint, Hold, Mapping, MetricType, PrometheusConfig, Target, Template, Update,
};
use vigil_adapters::source::{Report, number, symbol};
use vigil_engine::trace::Field;

const TEXTFILE: &str = r#"# HELP vigil_test_watts Test power.
# TYPE vigil_test_watts gauge
vigil_test_watts{node="pve",note="a \"quoted\" \\ back\nslash"} 230.4
vigil_test_watts{node="gaming"} NaN
vigil_test_temp_celsius{sensor="temp1"} +Inf
"#;

/// node_exporter on 127.0.0.1, with the loadavg, meminfo and textfile collectors.
struct Exporter {
    port: u16,
    scratch: Scratch,
    server: Option<Server>,
}

impl Exporter {
    fn start() -> Exporter {
        let scratch = Scratch::new("node-exporter");
        std::fs::create_dir(scratch.path("textfiles")).expect("create the textfile directory");
        std::fs::write(scratch.path("textfiles/vigil.prom"), TEXTFILE).expect("write the textfile");
        let mut exporter = Exporter {
            port: free_port(),
            scratch,
            server: None,
        };
        exporter.resume();
        exporter
    }

    fn resume(&mut self) {
        let mut command = Command::new(program(
            "prometheus-node-exporter",
            "prometheus-node-exporter",
        ));
        command
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--collector.disable-defaults")
            .arg("--collector.loadavg")
            .arg("--collector.meminfo")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                self.scratch.path("textfiles").display()
            ));
        let server = Server::spawn(&mut command, self.scratch.path("node-exporter.log"));
        wait_for_port(self.port, "node_exporter", &server.log);
        self.server = Some(server);
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }
}

fn mapping(metric: &str, relation: &str, columns: &[&str]) -> Mapping {
    Mapping {
        metric: metric.into(),
        labels: BTreeMap::new(),
        above: None,
        below: None,
        relation: relation.into(),
        columns: columns
            .iter()
            .map(|text| Template::Text(text.to_string()))
            .collect(),
        hold: Hold::Level,
    }
}

fn mappings() -> Vec<Mapping> {
    // Any load counts as activity here, so that the latch fires on an idle machine too.
    let mut active = mapping("node_load1", "last_active", &["$target", "$time"]);
    active.above = Some(-1.0);
    active.hold = Hold::Latch;
    let ram = mapping(
        "node_memory_MemAvailable_bytes",
        "ram_available_mib",
        &["$target", "$value/1048576"],
    );
    let watts = mapping("vigil_test_watts", "draw", &["$label:node", "$value"]);
    let labelled = mapping("vigil_test_watts", "note", &["$label:node", "$label:note"]);
    vec![active, ram, watts, labelled]
}

fn config(targets: Vec<Target>) -> PrometheusConfig {
    PrometheusConfig {
        targets,
        mappings: mappings(),
        interval_s: 0.2,
        timeout_s: 5.0,
        stale_after_s: 3600.0,
        retry_first_s: 0.05,
        retry_cap_s: 0.2,
        ..PrometheusConfig::default()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// The next update, within a generous limit (the limit only keeps a broken test from hanging).
async fn next(updates: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(30), updates.recv())
        .await
        .expect("an update within 30 s")
        .expect("the source is running")
}

fn rows<'a>(report: &'a Report, relation: &str) -> &'a [Vec<Field>] {
    report.insert.get(relation).map_or(&[], Vec::as_slice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_parses_cleanly() {
    let exporter = Exporter::start();
    let endpoint = Endpoint::parse(&exporter.url()).expect("the URL");
    let text = prometheus::scrape(&endpoint, Duration::from_secs(5), 8 << 20)
        .await
        .expect("a scrape");
    let exposition = prometheus::parse("local", &text);
    assert!(
        exposition.malformed.is_empty(),
        "{:?}",
        exposition.malformed
    );
    assert!(exposition.samples.len() > 50, "{text}");
    assert_eq!(exposition.types["node_load1"], MetricType::Gauge);
    assert_eq!(exposition.help["node_load1"], "1m load average.");
    let value = |name: &str| {
        exposition
            .samples
            .iter()
            .find(|sample| sample.name == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .value
    };
    assert!(value("node_load1") >= 0.0);
    assert!(value("node_memory_MemAvailable_bytes") > 1e6);
    assert!(value("node_memory_MemTotal_bytes") >= value("node_memory_MemAvailable_bytes"));
    assert!(value("vigil_test_temp_celsius").is_infinite());
    let quoted = exposition
        .samples
        .iter()
        .find(|sample| sample.name == "vigil_test_watts" && sample.label("node") == Some("pve"))
        .expect("the textfile's sample");
    assert_eq!(quoted.label("note"), Some("a \"quoted\" \\ back\nslash"));
    assert_eq!(quoted.value, 230.4);

    // node_exporter's landing page is HTML: every line is dropped, no sample is made up.
    let landing =
        Endpoint::parse(&format!("http://127.0.0.1:{}/", exporter.port)).expect("the URL");
    let page = prometheus::scrape(&landing, Duration::from_secs(5), 8 << 20)
        .await
        .expect("the landing page");
    let exposition = prometheus::parse("local", &page);
    assert!(exposition.samples.is_empty());
    assert!(!exposition.malformed.is_empty());
    // A response over the limit is refused.
    let error = prometheus::scrape(&endpoint, Duration::from_secs(5), 1000)
        .await
        .expect_err("too large");
    assert!(error.to_string().contains("over 1000 bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_map_to_facts_and_silence_retracts_the_levels() {
    let mut exporter = Exporter::start();
    let mut settings = config(vec![Target {
        name: "pve".into(),
        url: exporter.url(),
    }]);
    settings.stale_after_s = 1.0;
    let (sender, mut updates) = mpsc::channel(64);
    let before = unix_now();
    let _source = tokio::spawn(prometheus::run(settings, sender));

    match next(&mut updates).await {
        Update::Scraped {
            target,
            samples,
            rows,
        } => {
            assert_eq!(target, "pve");
            assert!(samples > 50);
            assert_eq!(rows, 5);
        }
        other => panic!("expected a scrape, got {other:?}"),
    }
    // The NaN of `gaming` fits no number column: dropped and counted.
    match next(&mut updates).await {
        Update::Malformed { malformed, dropped } => {
            assert_eq!(dropped, 1);
            assert_eq!(malformed.origin, "pve draw");
            assert!(malformed.reason.contains("NaN"), "{malformed}");
        }
        other => panic!("expected a dropped sample, got {other:?}"),
    }
    let (event, first) = match next(&mut updates).await {
        Update::Report { event, report, .. } => (event, report),
        other => panic!("expected a report, got {other:?}"),
    };
    assert_eq!(event, "prometheus: pve");
    assert!(first.retract.is_empty());
    let active = rows(&first, "last_active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0][0], symbol("pve"));
    let Field(Some(vigil_engine::Value::Number(at))) = active[0][1] else {
        panic!("{active:?}");
    };
    assert!(at >= before && at <= unix_now(), "{at}");
    let ram = rows(&first, "ram_available_mib");
    assert_eq!(ram.len(), 1);
    assert!(matches!(ram[0][1], Field(Some(vigil_engine::Value::Number(mib))) if mib > 1));
    assert_eq!(rows(&first, "draw"), [vec![symbol("pve"), number(230)]]);
    // node_exporter gives the sample without a `note` an empty one.
    let notes = rows(&first, "note");
    assert_eq!(notes.len(), 2);
    assert!(notes.contains(&vec![symbol("gaming"), symbol("")]));
    assert!(notes.contains(&vec![symbol("pve"), symbol("a \"quoted\" \\ back\nslash")]));

    // The exporter goes away: scrapes fail, and after the silence the levels are retracted,
    // the latch kept.
    exporter.stop();
    let silence = loop {
        match next(&mut updates).await {
            Update::Report { event, report, .. } if event == "prometheus: pve went silent" => {
                break report;
            }
            // The last scrapes before the stop, with a new `last_active` time or memory size.
            Update::Scraped { .. } | Update::Malformed { .. } | Update::Report { .. } => {}
            Update::Failed { target, reason, .. } => {
                assert_eq!(target, "pve");
                assert!(reason.contains("cannot connect"), "{reason}");
            }
        }
    };
    assert!(silence.insert.is_empty());
    let mut retracted: Vec<&str> = silence.retract.keys().map(String::as_str).collect();
    retracted.sort();
    assert_eq!(retracted, ["draw", "note", "ram_available_mib"]);

    // It comes back: the levels return.
    exporter.resume();
    let back = loop {
        match next(&mut updates).await {
            Update::Report { report, .. } => break report,
            Update::Failed { .. } | Update::Scraped { .. } | Update::Malformed { .. } => {}
        }
    };
    assert_eq!(rows(&back, "draw"), [vec![symbol("pve"), number(230)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_is_retried_with_backoff() {
    let closed = free_port();
    let (sender, mut updates) = mpsc::channel(64);
    let _source = tokio::spawn(prometheus::run(
        config(vec![Target {
            name: "asleep".into(),
            url: format!("http://127.0.0.1:{closed}/metrics"),
        }]),
        sender,
    ));
    let mut waits = Vec::new();
    while waits.len() < 4 {
        match next(&mut updates).await {
            Update::Failed {
                target, retry_in, ..
            } => {
                assert_eq!(target, "asleep");
                waits.push(retry_in.as_millis());
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert_eq!(waits, [50, 100, 200, 200]);
}

/// A one-shot HTTP peer on loopback: it reads the request, then answers `response` (or
/// nothing, holding the connection, when it is `None`).
fn peer(response: Option<&'static str>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        match response {
            Some(response) => {
                let _ = stream.write_all(response.as_bytes());
            }
            None => {
                // Hold the connection until the client gives up.
                let _ = stream.read(&mut request);
            }
        }
    });
    (port, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_silent_peers_are_failures() {
    let (port, thread) = peer(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
    ));
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/metrics")).expect("the URL");
    let error = prometheus::scrape(&endpoint, Duration::from_secs(5), 1 << 20)
        .await
        .expect_err("a 503");
    assert!(error.to_string().ends_with("answered 503"), "{error}");
    thread.join().expect("the peer");

    let (port, thread) = peer(None);
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/metrics")).expect("the URL");
    let error = prometheus::scrape(&endpoint, Duration::from_millis(300), 1 << 20)
        .await
        .expect_err("no answer");
    assert!(error.to_string().contains("no answer within"), "{error}");
    thread.join().expect("the peer");
}
