//! Two `vigil run` processes on loopback, joined by timely's process flags, compute the same
//! outputs as one process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/programs")
}

/// Two ports that were free a moment ago.
fn free_ports() -> [u16; 2] {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    [
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    ]
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vigil(case: &Path, output: &Path, extra: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("run")
        .arg(case.join("prog.dl"))
        .arg("-F")
        .arg(case.join("facts"))
        .arg("-D")
        .arg(output)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil starts")
}

/// Waits for a child, killing it after a minute so that a hung cluster fails the test.
fn finish(mut child: Child) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("a cluster process did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn outputs(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect()
}

#[test]
fn two_processes_on_loopback_compute_what_one_computes() {
    // Recursion, negation, aggregates, and symbols made by functors in whichever process
    // evaluates them.
    for name in [
        "transitive_closure",
        "points_to",
        "aggregates_grouped",
        "string_functors",
        "same_generation",
        "bipartite",
    ] {
        let case = fixtures().join(name);
        let single = scratch(&format!("{name}-single"));
        let output = finish(vigil(&case, &single, &[]));
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let cluster = scratch(&format!("{name}-cluster"));
        let [first, second] = free_ports();
        let hosts = cluster.join("hosts.txt");
        std::fs::write(&hosts, format!("127.0.0.1:{first}\n127.0.0.1:{second}\n")).unwrap();
        let output_dir = cluster.join("out");
        std::fs::create_dir_all(&output_dir).unwrap();
        let process = |index: usize| {
            let flags: Vec<String> = [
                "--",
                "-n",
                "2",
                "-p",
                &index.to_string(),
                "-h",
                &hosts.display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            vigil(&case, &output_dir, &flags)
        };
        let (zero, one) = (process(0), process(1));
        let (zero, one) = (finish(zero), finish(one));
        assert!(
            zero.status.success(),
            "{name}, process 0: {}",
            String::from_utf8_lossy(&zero.stderr)
        );
        assert!(
            one.status.success(),
            "{name}, process 1: {}",
            String::from_utf8_lossy(&one.stderr)
        );
        assert!(!outputs(&single).is_empty(), "{name} writes outputs");
        assert_eq!(
            outputs(&single),
            outputs(&output_dir),
            "{name}: two processes differ from one"
        );
        let _ = std::fs::remove_dir_all(&single);
        let _ = std::fs::remove_dir_all(&cluster);
    }
}
