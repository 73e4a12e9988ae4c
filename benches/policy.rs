//! The rule-latency benchmark of the homelab policy: `vigil bench`, run by `cargo bench`.
//!
//! The harness lives in the `vigil` binary (`src/bench/`), so that `vigil bench` and this
//! benchmark measure the same workloads with the same code: this target only runs the binary
//! that cargo built with it (`CARGO_BIN_EXE_vigil`, in the bench profile under `cargo bench`),
//! from the repository's root.
//!
//! - `cargo bench --bench policy`: the full run (the sample house and 100, 1,000 and 10,000
//!   nodes, the classic programs, HTTP), with the report in `target/bench-policy/`;
//! - `cargo bench --bench policy -- --quick` (or `VIGIL_BENCH_QUICK=1`): the quick run, of the
//!   sample house and 100 nodes;
//! - any other arguments after `--` go to `vigil bench` as they are (`--sizes sample,100`,
//!   `--events 500`, ...);
//! - without `--bench`, which `cargo bench` passes and `cargo test --benches` does not: a tiny
//!   smoke run of the sample house, so that the test suite checks the harness end to end
//!   without measuring anything.

use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let benchmarking = args.iter().any(|arg| arg == "--bench");
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|value| value == "1");
    let passed: Vec<&String> = args
        .iter()
        .filter(|arg| *arg != "--bench" && *arg != "--quick")
        .collect();
    let output = root.join("target").join(if benchmarking {
        "bench-policy"
    } else {
        "bench-policy-smoke"
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command
        .current_dir(root)
        .arg("bench")
        .arg("-o")
        .arg(&output);
    if !benchmarking {
        command.args(["--smoke", "--sizes", "sample", "--budget-s", "60"]);
    } else if quick {
        command.arg("--quick");
        if !passed.iter().any(|arg| arg.starts_with("--sizes")) {
            command.args(["--sizes", "sample,100"]);
        }
    }
    command.args(passed);
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("vigil bench failed: {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("cannot run vigil bench: {error}");
            ExitCode::FAILURE
        }
    }
}
