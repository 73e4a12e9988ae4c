//! The homelab policy's placement, waking and load shedding (`rules/homelab.dl`) against an
//! independent oracle (`vigil_homelab::oracle`) on generated houses of several sizes.
//!
//! One engine runs the policy throughout and moves from house to house by transactions, as
//! the daemon's engine moves from one state of the house to the next; every view the oracle
//! computes is compared after each move. A failure names the house's seed and size, the
//! command that rebuilds it as facts, and each disagreeing view's rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use vigil_engine::{Engine, Options};
use vigil_homelab::oracle::{self, Rows};
use vigil_homelab::{House, generate};

/// `(nodes, workloads, edges, houses)`: from a single hypervisor to a house of a dozen heavy
/// nodes, 1,000 houses in all, in two halves of about the same cost that run in parallel.
type Sizes = [(usize, usize, usize, u64)];
const SMALL_AND_LARGE: &Sizes = &[(2, 4, 0, 150), (3, 6, 1, 300), (12, 40, 6, 80)];
const MIDDLE: &Sizes = &[(4, 10, 2, 300), (6, 16, 3, 170)];

fn homelab_rules() -> vigil_engine::ir::Program {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/homelab.dl");
    vigil_engine::compile_file(&path).unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
}

/// The engine's rows of a view, in the oracle's text form.
fn engine_rows(engine: &Engine, view: &str) -> Rows {
    engine
        .read(view, &[])
        .unwrap_or_else(|error| panic!("{view}: {error}"))
        .into_iter()
        .map(|tuple| tuple.iter().map(ToString::to_string).collect())
        .collect()
}

/// One line per row that only one side has, or nothing if both agree.
fn diff(view: &str, expected: &Rows, actual: &Rows) -> String {
    let mut text = String::new();
    for row in expected.difference(actual) {
        let _ = writeln!(text, "  {view}: oracle only: {}", row.join("\t"));
    }
    for row in actual.difference(expected) {
        let _ = writeln!(text, "  {view}: rules only:  {}", row.join("\t"));
    }
    text
}

/// Moves one engine through the houses of `sizes` (seeds from 0) and compares every view
/// with the oracle after each move. Fails with the first disagreements, or if some view was
/// empty in almost every house: a generator that stopped reaching a decision would otherwise
/// pass vacuously.
fn agree_with_the_oracle(sizes: &Sizes) {
    let mut engine = Engine::new(homelab_rules(), Options::default()).unwrap();
    let mut previous: Option<House> = None;
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut exercised: BTreeMap<&str, usize> = BTreeMap::new();
    for &(nodes, workloads, edges, houses) in sizes {
        for seed in 0..houses {
            let mut house = generate(seed, nodes, workloads, edges);
            house.shift_after(engine.now());
            house
                .apply(&mut engine, previous.as_ref())
                .unwrap_or_else(|error| panic!("seed {seed}: the house was not applied: {error}"));
            let mut report = String::new();
            for (view, expected) in oracle::decide(&house).views() {
                if !expected.is_empty() {
                    *exercised.entry(view).or_default() += 1;
                }
                report.push_str(&diff(view, &expected, &engine_rows(&engine, view)));
            }
            if !report.is_empty() {
                failures.push(format!(
                    "seed {seed}, {nodes} nodes, {workloads} workloads, {edges} edges \
                     (`vigil house --nodes {nodes} --workloads {workloads} --edges {edges} \
                     --seed {seed} -o DIR`):\n{report}"
                ));
            }
            compared += 1;
            previous = Some(house);
        }
    }
    assert!(
        failures.is_empty(),
        "the rules and the oracle disagree on {} of {compared} houses; the first ones:\n{}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<String>()
    );
    for view in [
        "placement",
        "unplaced",
        "start",
        "wake",
        "excess",
        "shed_order",
        "shed",
    ] {
        let houses = exercised.get(view).copied().unwrap_or(0);
        assert!(
            houses * 20 >= compared,
            "only {houses} of {compared} houses have rows in `{view}`"
        );
    }
}

#[test]
fn placement_and_shedding_agree_with_the_oracle_on_small_and_large_houses() {
    agree_with_the_oracle(SMALL_AND_LARGE);
}

#[test]
fn placement_and_shedding_agree_with_the_oracle_on_middle_sized_houses() {
    agree_with_the_oracle(MIDDLE);
}

/// Soufflé's standard-output form, parsed: each relation's rows.
fn sections(stdout: &str) -> BTreeMap<String, Rows> {
    let mut sections = BTreeMap::new();
    let mut blocks = stdout.split("---------------\n");
    blocks.next();
    for block in blocks {
        let (name, rest) = block.split_once("\n===============\n").expect("a header");
        let body = rest.strip_suffix("===============\n").expect("a footer");
        let rows = body
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect();
        sections.insert(name.to_string(), rows);
    }
    sections
}

#[test]
fn vigil_house_writes_a_house_that_vigil_run_decides_like_the_oracle() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vigil-house-seed-7");
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["house", "--nodes", "8", "--workloads", "30", "--edges", "4"])
        .args(["--seed", "7", "-o"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root)
        .args(["run", "rules/homelab.dl", "-F"])
        .arg(&dir)
        .args(["-D", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = sections(&String::from_utf8(output.stdout).unwrap());
    let house = generate(7, 8, 30, 4);
    let mut report = String::new();
    for (view, expected) in oracle::decide(&house).views() {
        let actual = printed
            .get(view)
            .unwrap_or_else(|| panic!("no `{view}` printed"));
        report.push_str(&diff(view, &expected, actual));
    }
    assert!(report.is_empty(), "seed 7:\n{report}");
    // The rest of the policy ran on the house too: its quorum, and the harvest on its edges.
    assert_eq!(printed["quorum"].len(), 1);
    assert!(!printed["reach"].is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vigil_house_refuses_a_house_without_its_logic_node() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["house", "--nodes", "0", "--workloads", "3", "-o"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("vigil-house-empty"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("at least 1"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
