//! The daemon fed by a real source: Debian's upsd with a `dummy-ups` driver on loopback
//! (`[[nut]]` in the config). The UPS goes on battery, then its battery runs low, and the
//! bundled policy's views order the emergency shutdown of the sample house: what nothing
//! needs stops first, the storage that others need stays until they are gone.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "../adapters/tests/support/upsd.rs"]
#[allow(dead_code)]
mod upsd;

use daemon::Daemon;
use std::path::Path;
use std::time::{Duration, Instant};
use upsd::{OUTAGE, PASSWORD, PATIENCE, USERNAME, Upsd};

const START: i64 = 1_796_004_000;

/// Waits until `query` has exactly the rows `expected`; the deadline only guards a broken run.
fn until(daemon: &Daemon, query: &str, expected: &[&str]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = daemon.query(query);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {now:?}, never {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_ups_outage_orders_the_emergency_shutdown() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut ups = runtime.block_on(Upsd::start(&OUTAGE[0]));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("vigil-sources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nprogram = {:?}\nfacts = {:?}\ndata_dir = \"data\"\nclock = \"event\"\n\n[[nut]]\naddress = {:?}\nups = \"ups\"\nusername = {USERNAME:?}\npassword = {PASSWORD:?}\ninterval_s = 0.1\n",
            root.join("rules/homelab.dl"),
            root.join("fixtures/homelab"),
            ups.address(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &[]);

    // On line power: the battery as the UPS reports it.
    until(&daemon, "ups_battery(\"ups\", C, R)", &["[100,1800]"]);
    until(&daemon, "ups_source(\"ups\", S, _)", &["[\"line\"]"]);

    // The mains fail: on battery, and once the hold-off has passed, on_battery holds.
    ups.play(&OUTAGE[1]);
    until(&daemon, "ups_source(\"ups\", S, _)", &["[\"battery\"]"]);
    until(&daemon, "on_battery(U)", &[]);
    let (status, _) = daemon.json(
        "POST",
        "/v1/transactions",
        &format!(r#"{{"time": {}}}"#, START + 60),
    );
    assert_eq!(status, 200);
    until(&daemon, "on_battery(U)", &["[\"ups\"]"]);
    until(&daemon, "emergency(U)", &[]);

    // The battery runs low: the emergency orders the stops. The workloads nothing needs go
    // first; the database and the storage wait for what needs them.
    ups.play(&OUTAGE[3]);
    until(&daemon, "emergency(U)", &["[\"ups\"]"]);
    until(
        &daemon,
        "stop(W, N)",
        &[
            "[\"backup\",\"pve\"]",
            "[\"llm-chat\",\"pve\"]",
            "[\"photos\",\"pve\"]",
        ],
    );
    let actions = daemon.query("act(I, \"emergency_stop\", X)");
    assert_eq!(actions.len(), 3, "{actions:?}");

    let response = daemon.send("GET", "/metrics", &[], b"");
    let text = response.text();
    assert!(
        text.contains("vigil_source_reports_total{source=\"nut:ups\"}"),
        "{text}"
    );
    daemon.stop();
    drop(ups);
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "../adapters/tests/proxmox/fake.rs"]
#[allow(dead_code)]
mod fake;

/// `[proxmox]`: the cluster's state, from fakepve (a Proxmox VE API fake) on loopback, over
/// TLS with its CA, by an API token: the gaming rig comes up and runs a guest that is a
/// workload of the inventory.
#[test]
fn the_proxmox_cluster_state_feeds_the_engine() {
    let mut pve = fake::Fake::start();
    pve.add_node("gaming", true);
    pve.add_ct(200, "photos", "pve1", "running");
    pve.add_vm(103, "sdxl-batch", "gaming", "running");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("vigil-proxmox-source-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pve-root-ca.pem"), &pve.certificate).unwrap();
    let config = dir.join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nprogram = {:?}\nfacts = {:?}\ndata_dir = \"data\"\nclock = \"event\"\n\n[proxmox]\nhost = \"127.0.0.1\"\nport = {}\ntoken = {:?}\nca_file = \"pve-root-ca.pem\"\ninterval_s = 0.2\n[proxmox.nodes]\npve1 = \"pve\"\n",
            root.join("rules/homelab.dl"),
            root.join("fixtures/homelab"),
            pve.port,
            pve.token,
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &[]);
    until(&daemon, "power_state(\"gaming\", S, _)", &["[\"up\"]"]);
    until(&daemon, "running(\"sdxl-batch\", N)", &["[\"gaming\"]"]);
    until(
        &daemon,
        "member_online(N)",
        &["[\"gaming\"]", "[\"logic\"]", "[\"pve\"]"],
    );
    daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
