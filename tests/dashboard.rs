//! The dashboard, end to end: `vigil serve` with the simulator of the sample house, and the
//! page in headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`). The tests read the page as a person would (what it shows, what a click
//! does) and check what reached the engine through the API.
//!
//! They also write the screenshots of the README (`docs/dashboard.png`, desktop, and
//! `docs/dashboard-phone.png`, a phone's viewport).

#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;
use fantoccini::{Client, ClientBuilder, Locator};
use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the page may take to show something; generous, for a loaded machine. Never a
/// measure of speed: a test only fails on it when the thing never shows.
const PATIENCE: Duration = Duration::from_secs(60);

/// A `chromedriver` on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    profiles: daemon::Scratch,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!(
        "none of {names:?} is installed: the dashboard tests need Debian's `chromium` and `chromium-driver` (.ci/run installs them)"
    );
}

impl Driver {
    fn start(name: &str) -> Driver {
        let driver = find_program(&["chromedriver"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver does not start");
        let profiles = daemon::Scratch::new(&format!("dashboard-{name}"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver does not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            profiles,
        }
    }

    /// A browser session with a fresh profile: a desktop window, or a phone's screen.
    async fn session(&self, profile: &str, phone: bool) -> Client {
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let user_data = self.profiles.join(profile);
        let mut arguments = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let mut options = serde_json::json!({ "binary": chromium });
        if phone {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14) Mobile",
            });
        } else {
            arguments.push("--window-size=1440,1560".into());
        }
        options["args"] = serde_json::json!(arguments);
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("no WebDriver session with chromium")
    }
}

/// The text the page shows in the element `css`, or "" if there is none.
async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `test` holds of the text of `css`; panics with what it showed last.
async fn wait_text(client: &Client, css: &str, what: &str, test: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = text_of(client, css).await;
        if test(&text) {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the page never showed {what} in `{css}`; it showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts the elements that match `css`.
async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map(|found| found.len())
        .unwrap_or(0)
}

async fn wait_count(client: &Client, css: &str, what: &str, test: impl Fn(usize) -> bool) {
    let started = Instant::now();
    loop {
        let n = count(client, css).await;
        if test(n) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the page never showed {what} (`{css}` matched {n} elements)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Saves a screenshot of the viewport in docs/.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::write(&path, png).unwrap();
}

/// Reads the daemon's output until the simulated day is over.
fn play_the_day(daemon: &mut Daemon) {
    let mut line = String::new();
    loop {
        line.clear();
        let read = daemon.output.read_line(&mut line).unwrap();
        assert!(read > 0, "the daemon stopped mid-day");
        if line.contains("simulator: the simulated day is over") {
            return;
        }
    }
}

fn query(daemon: &Daemon, text: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "query": text }).to_string();
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    let response = daemon.send("POST", "/v1/query", &headers, body.as_bytes());
    (response.status, response.json())
}

fn now_of(daemon: &Daemon) -> i64 {
    let (status, health) = daemon.json("GET", "/v1/health", "");
    assert_eq!(status, 200);
    health["now"].as_i64().unwrap()
}

fn transact(daemon: &Daemon, body: serde_json::Value) {
    let (status, answer) = daemon.json("POST", "/v1/transactions", &body.to_string());
    assert_eq!(status, 200, "{body}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_house_on_the_dashboard() {
    let data = daemon::Scratch::new("dashboard-data");
    let arguments = [
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--speed"),
        OsStr::new("0"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ];
    let mut daemon = Daemon::launch(&arguments).unwrap();
    // The daemon says where the page is.
    let mut line = String::new();
    daemon.output.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!(
            "vigil serve: the dashboard is at http://{}/dashboard/",
            daemon.address
        )
    );
    play_the_day(&mut daemon);
    let url = format!("http://{}/", daemon.address);

    // At the end of the day the transcode is no longer wanted: stopping a running workload
    // waits for a person.
    let now = now_of(&daemon);
    transact(
        &daemon,
        serde_json::json!({"time": now + 1, "event": "the transcode is no longer wanted", "retract": {"requested": [["media-transcode"]]}}),
    );

    let driver = Driver::start("open");
    let client = driver.session("desktop", false).await;
    client.goto(&url).await.unwrap();

    // An open daemon: no sign-in, and the page says why.
    wait_text(&client, "#notice", "the open-daemon notice", |t| {
        t.contains("no tokens configured")
    })
    .await;
    assert_eq!(count(&client, "#login:not([hidden])").await, 0);

    // The sample house: its nodes and what runs on them.
    let nodes = wait_text(&client, "#node-list", "the nodes", |t| {
        t.contains("pve") && t.contains("gaming") && t.contains("logic")
    })
    .await;
    for workload in ["nas-storage", "nas-db", "media-transcode"] {
        assert!(
            nodes.contains(workload),
            "{workload} is not shown:\n{nodes}"
        );
    }
    assert!(nodes.contains("up"), "{nodes}");
    let harvest = wait_text(&client, "#harvest", "the edges", |t| {
        t.contains("edge-pi5") && t.contains("quarantined")
    })
    .await;
    assert!(harvest.contains("feeds@20261126"), "{harvest}");
    assert!(harvest.contains("wikipedia-zim@20261126"), "{harvest}");

    // The outage of the evening is in the chart (on battery, then the emergency) and in the
    // list of what was shed and stopped.
    wait_count(
        &client,
        "#power-chart rect.band-battery",
        "the outage in the chart",
        |n| n >= 1,
    )
    .await;
    wait_count(
        &client,
        "#power-chart rect.band-emergency",
        "the UPS emergency in the chart",
        |n| n >= 1,
    )
    .await;
    let recent = wait_text(&client, "#shed-recent", "the emergency stops", |t| {
        t.contains("nas-storage")
    })
    .await;
    assert!(recent.contains("emergency stop"), "{recent}");
    assert!(recent.contains("23:27"), "{recent}");
    // The decisions feed, and a decision's full explanation.
    wait_text(&client, "#feed", "the decisions", |t| t.contains("stop")).await;
    let first = client.find(Locator::Css("#feed li.decided")).await.unwrap();
    first.click().await.unwrap();
    let why = wait_text(&client, "#why-text", "an explanation", |t| {
        t.contains("by rule")
    })
    .await;
    assert!(why.contains("action("), "{why}");
    client
        .find(Locator::Css("#why button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The action journal is shown where the daemon keeps one, and left out where it does not.
    let journal = daemon.send("GET", "/v1/actions", &[], b"");
    let shown = if journal.status == 200 { 1 } else { 0 };
    wait_count(
        &client,
        "#journal:not([hidden])",
        "the journal as the daemon has it",
        |n| n == shown,
    )
    .await;

    // The waiting request, with its explanation and its buttons.
    let approvals = wait_text(&client, "#approval-list", "the approval request", |t| {
        t.contains("stop media-transcode") && t.contains("expires in")
    })
    .await;
    assert!(approvals.contains("Approve"), "{approvals}");
    screenshot(&client, "dashboard.png").await;

    // A live outage: the UPS goes on battery, the hold-off passes, and the draw is over the
    // battery's limit; the page follows the stream.
    let now = now_of(&daemon);
    transact(
        &daemon,
        serde_json::json!({"time": now + 1, "event": "the mains fail", "insert": {"ups_source": [["ups", "battery", null]], "house_power": [["house", 1400, 0]]}}),
    );
    transact(
        &daemon,
        serde_json::json!({"time": now + 60, "event": "still on battery", "insert": {"ups_battery": [["ups", 90, 1500]]}}),
    );
    let shed = wait_text(&client, "#shed-now", "the workloads shed now", |t| {
        t.contains("media-transcode") || t.contains("sdxl-batch")
    })
    .await;
    assert!(shed.contains("shed"), "{shed}");
    wait_text(&client, "#power-stats", "the UPS on battery", |t| {
        t.contains("On battery")
    })
    .await;
    client.close().await.unwrap();

    // On a phone: the same page, one column; the request is approved from there.
    let phone = driver.session("phone", true).await;
    phone.goto(&url).await.unwrap();
    wait_text(&phone, "#node-list", "the nodes on a phone", |t| {
        t.contains("pve")
    })
    .await;
    let width: f64 = phone
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        width <= 390.0,
        "the page is wider than the phone: {width} px"
    );
    screenshot(&phone, "dashboard-phone.png").await;
    let approve = phone
        .find(Locator::Css(
            "#approval-list li[data-action='stop:media-transcode'] button.primary",
        ))
        .await
        .unwrap();
    phone
        .execute(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![serde_json::to_value(&approve).unwrap()],
        )
        .await
        .unwrap();
    screenshot(&phone, "dashboard-phone-approvals.png").await;
    approve.click().await.unwrap();
    wait_text(&phone, "#approval-list", "the decision taken", |t| {
        t.contains("approved") || !t.contains("stop media-transcode")
    })
    .await;
    phone.close().await.unwrap();

    // The click reached the engine as an approval fact.
    let (status, answer) = query(&daemon, "approval(\"stop:media-transcode\", D, T)", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0][0], "approve", "{answer}");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_needed_and_a_read_token_cannot_approve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = daemon::scratch("dashboard-tokens", "");
    let config = daemon::config_with(
        &dir,
        &format!(
            "listen = \"127.0.0.1:0\"\nprogram = {:?}\nfacts = {:?}\ndata_dir = \"data\"\nclock = \"event\"\nsimulate = true\nsimulation_speed = 240.0\n\n[[token]]\nname = \"wall screen\"\nsecret = \"reader-secret-of-the-wall\"\nscopes = [\"read\"]\n\n[[token]]\nname = \"owner\"\nsecret = \"owner-secret-of-the-house\"\nscopes = [\"read\", \"approve\"]\n\n[approvals]\nsecret = \"a secret of the approval links\"\nttl_s = 3600\n",
            root.join("rules/homelab.dl"),
            root.join("fixtures/homelab"),
        ),
        "",
    );
    let daemon = Daemon::start(&config, &[]);
    let url = format!("http://{}/dashboard", daemon.address);
    let driver = Driver::start("tokens");
    let client = driver.session("desktop", false).await;

    // Without a token: the sign-in form, and nothing of the house.
    client.goto(&url).await.unwrap();
    wait_count(&client, "#login:not([hidden])", "the sign-in form", |n| {
        n == 1
    })
    .await;
    assert_eq!(count(&client, "#board:not([hidden])").await, 0);
    let body = text_of(&client, "body").await;
    assert!(
        !body.contains("pve"),
        "the house shows without a token:\n{body}"
    );

    // A wrong token is refused, and says so.
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys("not-a-token").await.unwrap();
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#login-error", "the refusal", |t| {
        t.contains("not accepted")
    })
    .await;
    assert_eq!(count(&client, "#board:not([hidden])").await, 0);

    // A read token shows the house, and the requests without a way to decide them.
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys("reader-secret-of-the-wall").await.unwrap();
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#node-list", "the nodes", |t| t.contains("pve")).await;
    wait_text(
        &client,
        "#approvals-note",
        "that the token cannot approve",
        |t| t.contains("can view but not approve"),
    )
    .await;
    assert_eq!(count(&client, "#approval-list button").await, 0);
    // Nor can the token get the signed links the buttons would present.
    let response = daemon.send(
        "GET",
        "/v1/approvals",
        &[("Authorization", "Bearer reader-secret-of-the-wall")],
        b"",
    );
    assert_eq!(response.status, 403, "{}", response.text());

    // Signing out forgets the token.
    client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_count(
        &client,
        "#login:not([hidden])",
        "the sign-in form again",
        |n| n == 1,
    )
    .await;
    client.goto(&url).await.unwrap();
    wait_count(
        &client,
        "#login:not([hidden])",
        "the sign-in form after a reload",
        |n| n == 1,
    )
    .await;

    // An approve token shows the requests' buttons.
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys("owner-secret-of-the-house").await.unwrap();
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#node-list", "the nodes", |t| t.contains("pve")).await;
    let (status, _) = query(
        &daemon,
        "node(N, _, _, _, _, _, _, _)",
        Some("owner-secret-of-the-house"),
    );
    assert_eq!(status, 200);
    wait_count(
        &client,
        "#approvals-note:not([hidden])",
        "no refusal note",
        |n| n == 0,
    )
    .await;
    client.close().await.unwrap();
    daemon.stop();
}
