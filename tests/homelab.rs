//! The README's first command: the bundled policy on the sample house. The expected decisions
//! are worked out by hand from `fixtures/homelab/`.

use std::process::Command;

#[test]
fn the_bundled_policy_decides_for_the_sample_house() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root)
        .args([
            "run",
            "rules/homelab.dl",
            "-F",
            "fixtures/homelab",
            "-D",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let section = |name: &str| -> Vec<String> {
        let start = stdout
            .find(&format!("---------------\n{name}\n===============\n"))
            .expect(name);
        let body = &stdout[start..].splitn(4, "\n").nth(3).unwrap();
        body.lines()
            .take_while(|line| *line != "===============")
            .map(str::to_string)
            .collect()
    };
    // pve runs the NAS, photos, backup and llm-chat: 14 of 16 GiB of VRAM, 48 of 64 GiB of
    // RAM and 14 of 16 cores are taken. sdxl-batch (10 GiB VRAM) only fits the gaming rig,
    // which sleeps: its cost is 50 W idle + 45 s of boot, and 280 W + 50 W fit in the 350 W
    // of headroom (2,650 W drawn, 3,000 W allowed), so the rig wakes, ready in 45 s.
    // lora-train needs 48 GiB of RAM and 15 GiB of VRAM: pve has 16 GiB of RAM left and the
    // rig 32, so nothing can take it now.
    assert_eq!(
        section("placement"),
        [
            "backup\tpve",
            "llm-chat\tpve",
            "nas-db\tpve",
            "nas-storage\tpve",
            "photos\tpve",
            "sdxl-batch\tgaming"
        ]
    );
    assert_eq!(section("wake"), ["gaming\t45"]);
    assert_eq!(section("unplaced"), ["lora-train"]);
    assert_eq!(section("headroom"), ["350"]);
    assert!(section("shed").is_empty());
    // Shedding order if it came to that: the normal workloads, biggest draw first; the
    // essential NAS never.
    assert_eq!(
        section("shed_order"),
        ["backup\t2", "llm-chat\t1", "photos\t3"]
    );
    // pve and the qdevice vote (2 of 3); the rig is asleep, so the cluster is degraded.
    assert_eq!(section("quorum"), ["degraded\t2\t3"]);
    // 02:00 UTC is off-peak: the Wikipedia task goes to edge-pi5 (48 °C like edge-pi4, but
    // 10 % load against 35 %). git-linux arrived with the edge's hash; feeds did not.
    assert_eq!(section("assign"), ["zim-2026-11\tedge-pi5"]);
    assert_eq!(section("accept"), ["git-linux\t20261120\t9f2c41aa"]);
    assert_eq!(
        section("quarantine"),
        ["feeds\t20261124\t77e0b1c2\t0bad0bad"]
    );
    // Every decision is a safe action here, so all of them act.
    assert_eq!(
        section("act"),
        [
            "assign:zim-2026-11\tassign\tzim-2026-11",
            "refuse:feeds@20261124\trefuse\tfeeds@20261124",
            "store:git-linux@20261120\tstore\tgit-linux@20261120",
            "wake:gaming\twake\tgaming"
        ]
    );
}
