//! `vigil serve` without a config: the bundled policy on the sample house, fed by the
//! simulator's day, with the actuators in dry-run. The day runs as fast as the engine goes
//! (`--speed 0`); the test reads the decision log and asks the daemon about the state the day
//! left.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;
use std::ffi::OsStr;
use std::io::BufRead;

/// The lines the daemon printed until the simulated day was over.
fn play_the_day(daemon: &mut Daemon) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = daemon.output.read_line(&mut line).unwrap();
        assert!(
            read > 0,
            "the daemon stopped mid-day:\n{}",
            lines.join("\n")
        );
        lines.push(line.trim_end().to_string());
        if line.contains("simulator: the simulated day is over") {
            return lines;
        }
    }
}

/// The position of the first line that contains `text`.
fn find(lines: &[String], text: &str) -> usize {
    lines
        .iter()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no line contains {text:?}:\n{}", lines.join("\n")))
}

#[test]
fn a_day_of_the_sample_house() {
    let data = std::env::temp_dir().join(format!("vigil-simulator-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let arguments = [
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--speed"),
        OsStr::new("0"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ];
    let mut daemon = Daemon::launch(&arguments).unwrap();
    let lines = play_the_day(&mut daemon);

    // The heavy work of the night wakes the gaming rig, with the packet it would send.
    find(
        &lines,
        "dry-run  wake gaming: Wake-on-LAN: magic packet for 74:56:3c:a1:20:02",
    );
    // The harvest: the dump is verified and stored; the corrupt feeds update is refused.
    find(
        &lines,
        "decide   store wikipedia-zim@20261126: verified and new",
    );
    find(
        &lines,
        "decide   refuse feeds@20261126: the central hash differs from the edge's",
    );
    // Stopping the chat model needs a person.
    let unwanted = find(&lines, "event    the chat model is no longer needed");
    assert!(
        lines[unwanted..]
            .iter()
            .any(|line| line.contains("approval stop:llm-chat: waits for a person"))
    );
    // Cooking trips the limit: speculative work is shed first.
    let cooking = find(&lines, "event    cooking: the oven and the hob are on");
    let shed = find(&lines, "decide   shed ");
    assert!(shed > cooking, "{}", lines.join("\n"));
    assert!(
        lines[shed].contains("over its 3000 W limit"),
        "{}",
        lines[shed]
    );
    // The game evicts what runs on the rig and stops its Ray worker at once.
    let game = find(&lines, "event    a game session starts on the gaming rig");
    let evict = find(&lines, "decide   evict ");
    assert!(evict > game);
    assert!(
        lines[game..]
            .iter()
            .any(|line| line.contains("decide   ray_stop gaming"))
    );
    // The blip is ridden out: nothing is shed or shut down before the mains are back.
    let blip = find(&lines, "event    a short blip on the mains");
    let back = find(&lines, "event    the mains are back after 8 s");
    for line in &lines[blip..back] {
        assert!(
            !line.contains("shed") && !line.contains("emergency"),
            "during the blip: {line}"
        );
    }
    // The outage drains the battery; the house is shut down in order: the storage after
    // what needs it, then the hypervisor once it hosts nothing.
    let outage = find(&lines, "event    power outage: the UPS runs on battery");
    let db = find(&lines, "decide   emergency_stop nas-db");
    let storage = find(&lines, "decide   emergency_stop nas-storage");
    let pve = find(&lines, "decide   emergency_shutdown pve");
    assert!(
        outage < db && db < storage && storage < pve,
        "{}",
        lines.join("\n")
    );
    // Once the power is back and the battery recharged, the hypervisor is woken again.
    let mains = find(&lines, "event    the mains are back");
    assert!(
        lines[mains..]
            .iter()
            .any(|line| line.contains("dry-run  wake pve")),
        "{}",
        lines.join("\n")
    );

    // The state the day left, through the API.
    let (status, answer) = daemon.json(
        "POST",
        "/v1/query",
        r#"{"query": "archived(\"wikipedia-zim\", V, H)"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(answer["rows"], serde_json::json!([[20261126, "e3b7a41f"]]));
    let (_, answer) = daemon.json(
        "POST",
        "/v1/query",
        r#"{"query": "quarantine(\"feeds\", 20261126, R, A)"}"#,
    );
    assert_eq!(
        answer["rows"],
        serde_json::json!([["c0ffee11", "c0ffee1f"]])
    );
    let (_, health) = daemon.json("GET", "/v1/health", "");
    assert_eq!(health["now"], 1_796_004_000 + 86_400, "{health}");
    daemon.stop();

    // A restart on the same data directory brings the day's end back, and plays nothing.
    let mut daemon = Daemon::launch(&arguments).unwrap();
    let lines = play_the_day(&mut daemon);
    assert!(
        lines.iter().all(|line| !line.contains("decide")),
        "{}",
        lines.join("\n")
    );
    let (_, health) = daemon.json("GET", "/v1/health", "");
    assert_eq!(health["now"], 1_796_004_000 + 86_400, "{health}");
    daemon.stop();
    let _ = std::fs::remove_dir_all(&data);
}
