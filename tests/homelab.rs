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
    // llm-chat fits both GPU hosts; gaming is up (cost 50 W) while pve sleeps (60 W + 90 s of
    // boot). lora-train needs 48 GiB of RAM, which only pve has, so pve must wake.
    assert_eq!(
        section("placement"),
        ["llm-chat\tgaming", "lora-train\tpve"]
    );
    assert_eq!(section("wake"), ["pve\t90"]);
    assert!(section("unplaced").is_empty());
    // 3,350 W against a 3,000 W limit: shed speculative work, biggest first, until 350 W are
    // saved: sdxl-batch (280 W), then media-transcode (150 W); backup (normal) stays, and
    // nas-db is essential.
    assert_eq!(section("excess"), ["350"]);
    assert_eq!(section("shed"), ["media-transcode", "sdxl-batch"]);
}
