//! Harvest end to end: a real `vigil serve` on the bundled policy and the sample house, and
//! the real `vigil edge` pushing artifacts to it: a sparse artifact of gigabytes in bounded
//! memory, a corrupted one quarantined (also when a byte flips in transit), a duplicate,
//! downloads and uploads cut on the way and resumed, stalled uploads cut, a crash after the
//! arrival finished from the disk, and malformed reports and uploads refused without a trace.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A scratch directory with a config that serves the bundled policy on the sample house,
/// with `extra` appended.
fn house(name: &str, extra: &str) -> (daemon::Scratch, PathBuf) {
    let dir = daemon::scratch(&format!("harvest-{name}"), "");
    let base = format!(
        "listen = \"127.0.0.1:0\"\nprogram = \"{}/rules/homelab.dl\"\nfacts = \"{}/fixtures/homelab\"\ndata_dir = \"data\"\nclock = \"event\"\nmax_request_bytes = 4096\nsnapshot_every = 0\n",
        env!("CARGO_MANIFEST_DIR"),
        env!("CARGO_MANIFEST_DIR")
    );
    let config = daemon::config_with(&dir, &base, extra);
    (dir, config)
}

fn harvest_dir(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("data/harvest").join(sub))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `vigil edge ARGS...`, its output once it exits, and the peak of its resident memory in
/// kB (VmHWM, read until it exits).
fn edge_measured(args: &[&str]) -> (Output, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("edge")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(hwm) = vm_hwm(child.id()) {
            peak = peak.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), peak)
}

fn edge(args: &[&str]) -> Output {
    edge_measured(args).0
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The peak resident memory of a process, in kB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `vigil edge push` of `file` to `daemon` (an http:// URL) from `edge-pi4`.
fn push(daemon: &str, source: &str, version: &str, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "push",
        "--daemon",
        daemon,
        "--edge",
        "edge-pi4",
        "--source",
        source,
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    let file = file.to_str().unwrap();
    args.push(file);
    edge(&args)
}

/// The rows of a query, as JSON arrays.
fn query(daemon: &Daemon, text: &str) -> Vec<serde_json::Value> {
    let body = serde_json::json!({ "query": text }).to_string();
    let (status, answer) = daemon.json("POST", "/v1/query", &body);
    assert_eq!(status, 200, "{text}: {answer}");
    answer["rows"].as_array().unwrap().clone()
}

/// The rows of `relation` whose first column is `source`.
fn rows_of(daemon: &Daemon, relation: &str, arity: usize, source: &str) -> Vec<serde_json::Value> {
    let variables: Vec<String> = (0..arity).map(|i| format!("X{i}")).collect();
    query(daemon, &format!("{relation}({})", variables.join(", ")))
        .into_iter()
        .filter(|row| row[0] == source)
        .collect()
}

/// `size` bytes that do not repeat (xorshift), so that no part of them is a hole.
fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// The BLAKE3 of a file, read in chunks.
fn blake3_of(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finalize().to_hex().to_string()
}

#[test]
fn a_sparse_multi_gigabyte_artifact_streams_through_in_bounded_memory() {
    let (dir, config) = house("sparse", "");
    let daemon = Daemon::start(&config, &[]);
    let url = format!("http://{}", daemon.address);
    // 2.5 GiB, nearly all a hole, with a few bytes of data in it.
    let file = dir.join("wikipedia.zim");
    let size: u64 = (5 << 30) / 2;
    {
        let artifact = std::fs::File::create(&file).unwrap();
        artifact.set_len(size).unwrap();
        for (at, mark) in [
            (0, &b"ZIM\x04"[..]),
            (1 << 30, b"middle"),
            (size - 3, b"end"),
        ] {
            use std::os::unix::fs::FileExt;
            artifact.write_all_at(mark, at).unwrap();
        }
    }
    let (output, edge_peak) = edge_measured(&[
        "push",
        "--daemon",
        &url,
        "--edge",
        "edge-laptop",
        "--source",
        "wikipedia_en",
        "--version",
        "20261126",
        file.to_str().unwrap(),
    ]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("accepted: wikipedia_en@20261126"), "{said}");
    let daemon_peak = vm_hwm(daemon.child.id()).unwrap();
    assert!(edge_peak > 0);
    assert!(
        edge_peak < 100_000,
        "the edge's peak memory: {edge_peak} kB"
    );
    assert!(
        daemon_peak < 100_000,
        "the daemon's peak memory: {daemon_peak} kB"
    );
    let objects = harvest_dir(&dir, "objects");
    assert_eq!(objects.len(), 1, "{objects:?}");
    let object = dir.join("data/harvest/objects").join(&objects[0]);
    assert_eq!(std::fs::metadata(&object).unwrap().len(), size);
    // The stored copy is as sparse as the artifact: its holes were not written out.
    {
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&object).unwrap().blocks() * 512;
        assert!(
            allocated < size / 100,
            "the object takes {allocated} bytes of disk for {size} bytes"
        );
    }
    assert_eq!(
        objects[0],
        blake3_of(&object),
        "the object is named by its BLAKE3"
    );
    assert!(said.contains(&objects[0]), "{said}");
    assert_eq!(harvest_dir(&dir, "partial"), Vec::<String>::new());
    let archived = rows_of(&daemon, "archived", 3, "wikipedia_en");
    assert_eq!(
        archived,
        vec![serde_json::json!(["wikipedia_en", 20261126, objects[0]])]
    );
    daemon.stop();
}

#[test]
fn a_flipped_byte_is_refused_and_quarantined() {
    let (dir, config) = house("flipped", "");
    let daemon = Daemon::start(&config, &[]);
    let url = format!("http://{}", daemon.address);
    let mut bytes = noise(1 << 20, 7);
    let original = blake3::hash(&bytes).to_hex().to_string();
    bytes[123_456] ^= 0x01;
    let flipped = blake3::hash(&bytes).to_hex().to_string();
    let file = dir.join("osm.pbf");
    std::fs::write(&file, &bytes).unwrap();
    let output = push(
        &url,
        "osm-extract",
        "20261126",
        &file,
        &["--hash", &original],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("quarantined: osm-extract@20261126"), "{said}");
    assert!(
        said.contains(&original) && said.contains(&flipped),
        "{said}"
    );
    assert_eq!(
        harvest_dir(&dir, "quarantine"),
        vec![format!("osm-extract@20261126.{flipped}")]
    );
    assert_eq!(harvest_dir(&dir, "objects"), Vec::<String>::new());
    assert_eq!(
        rows_of(&daemon, "quarantine", 4, "osm-extract"),
        vec![serde_json::json!([
            "osm-extract",
            20261126,
            original,
            flipped
        ])]
    );
    assert_eq!(
        rows_of(&daemon, "archived", 3, "osm-extract"),
        Vec::<serde_json::Value>::new()
    );
    // Once refused, always refused: pushing it again changes nothing.
    let again = push(
        &url,
        "osm-extract",
        "20261126",
        &file,
        &["--hash", &original],
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("quarantined"), "{}", text(&again));
    assert_eq!(harvest_dir(&dir, "objects"), Vec::<String>::new());
    daemon.stop();
}

/// A loopback HTTP server that serves `body` for any GET, `Range` requests included (416
/// from its end on); it cuts
/// its first answer after `cut` bytes of the body. Counts the partial answers (206) it gave.
fn file_server(body: Vec<u8>, cut: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let partials = Arc::new(AtomicUsize::new(0));
    let counted = partials.clone();
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let from = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("range")
                        .then(|| value.trim().strip_prefix("bytes="))?
                })
                .and_then(|range| range.trim_end_matches('-').parse::<usize>().ok());
            if from.is_some_and(|from| from >= body.len()) {
                let answer = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nContent-Range: bytes */{}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                continue;
            }
            let (status, part) = match from {
                Some(from) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    ("206 Partial Content", &body[from..])
                }
                None => ("200 OK", &body[..]),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
                part.len(),
                from.unwrap_or(0),
                body.len() - 1,
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.write_all(if index == 0 { &part[..cut] } else { part });
        }
    });
    (address, partials)
}

/// A loopback proxy to `upstream` that flips one bit of the first `PUT` body, `at` bytes
/// into it, and forwards everything else as it is.
fn flipping_proxy(upstream: String, at: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let flipped = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_out, mut server_in) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(Shutdown::Write);
            });
            let flipped = flipped.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                let mut seen = Vec::new();
                let mut body_start = None;
                let mut forwarded = 0;
                loop {
                    let n = match client.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if body_start.is_none() {
                        seen.extend_from_slice(&buffer[..n]);
                        body_start = seen
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map(|end| end + 4);
                    }
                    if let Some(start) = body_start
                        && seen.starts_with(b"PUT ")
                    {
                        let target = start + at;
                        if (forwarded..forwarded + n).contains(&target)
                            && !flipped.swap(true, Ordering::SeqCst)
                        {
                            buffer[target - forwarded] ^= 0x10;
                        }
                    }
                    if server.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    forwarded += n;
                }
                let _ = server.shutdown(Shutdown::Write);
            });
        }
    });
    address
}

#[test]
fn a_byte_flipped_in_transit_is_quarantined() {
    let (dir, config) = house("transit", "");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(2 << 20, 13);
    let sent = blake3::hash(&bytes).to_hex().to_string();
    let mut damaged = bytes.clone();
    damaged[777_777] ^= 0x10;
    let arrived = blake3::hash(&damaged).to_hex().to_string();
    let file = dir.join("maps.pmtiles");
    std::fs::write(&file, &bytes).unwrap();
    let proxy = flipping_proxy(daemon.address.clone(), 777_777);
    let output = push(&format!("http://{proxy}"), "maps", "20261126", &file, &[]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("quarantined: maps@20261126"), "{said}");
    assert!(said.contains(&sent) && said.contains(&arrived), "{said}");
    assert_eq!(
        harvest_dir(&dir, "quarantine"),
        vec![format!("maps@20261126.{arrived}")]
    );
    assert_eq!(harvest_dir(&dir, "objects"), Vec::<String>::new());
    assert_eq!(
        rows_of(&daemon, "quarantine", 4, "maps"),
        vec![serde_json::json!(["maps", 20261126, sent, arrived])]
    );
    daemon.stop();
}

#[test]
fn the_same_bytes_under_another_source_are_a_duplicate_kept_once() {
    let (dir, config) = house("duplicate", "");
    let daemon = Daemon::start(&config, &[]);
    let url = format!("http://{}", daemon.address);
    let bytes = noise(3 << 20, 11);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let (mirror, partials) = file_server(bytes.clone(), 1 << 20);
    // Downloaded from the mirror, then pushed.
    let file = dir.join("git-linux.bundle");
    let output = push(
        &url,
        "git-linux",
        "20261126",
        &file,
        &["--url", &format!("http://{mirror}/mirrors/linux.bundle")],
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("warning: the download: cut at byte"),
        "{said}"
    );
    assert!(said.contains("downloaded"), "{said}");
    assert!(
        said.contains(&format!(
            "accepted: git-linux@20261126 stored as BLAKE3 {hash}"
        )),
        "{said}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert_eq!(partials.load(Ordering::SeqCst), 1, "the download resumed");
    // A download left half done by an earlier run goes on from its part file; one that does
    // not match the publisher's hash fails on the edge, and nothing is reported.
    let damaged = dir.join("damaged.bundle");
    std::fs::write(dir.join("damaged.bundle.part"), &bytes[..1 << 20]).unwrap();
    let wrong = blake3::hash(b"not the bundle").to_hex().to_string();
    let output = push(
        &url,
        "git-linux",
        "20261201",
        &damaged,
        &[
            "--url",
            &format!("http://{mirror}/mirrors/linux.bundle"),
            "--hash",
            &wrong,
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("resuming the download at byte 1048576"),
        "{said}"
    );
    assert_eq!(partials.load(Ordering::SeqCst), 2, "the download resumed");
    assert!(
        said.contains("damaged") && said.contains(&hash) && said.contains(&wrong),
        "{said}"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes);
    assert!(query(&daemon, "artifact_report(E, \"git-linux\", 20261201, B, H)").is_empty());
    // A part file that holds the whole download: the server has nothing more (416), and it is
    // done.
    let complete = dir.join("complete.bundle");
    std::fs::write(dir.join("complete.bundle.part"), &bytes).unwrap();
    let output = push(
        &url,
        "git-linux",
        "20261202",
        &complete,
        &["--url", &format!("http://{mirror}/mirrors/linux.bundle")],
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("downloaded"), "{said}");
    assert!(
        said.contains("duplicate: git-linux@20261202 holds the same bytes as git-linux@20261126"),
        "{said}"
    );
    assert_eq!(std::fs::read(&complete).unwrap(), bytes);
    // The same bytes under another name.
    let copy = dir.join("linux-copy.bundle");
    std::fs::write(&copy, &bytes).unwrap();
    let output = push(&url, "git-linux-mirror", "1", &copy, &[]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("duplicate: git-linux-mirror@1 holds the same bytes as git-linux@20261126"),
        "{said}"
    );
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash.clone()]);
    assert_eq!(harvest_dir(&dir, "partial"), Vec::<String>::new());
    assert_eq!(
        rows_of(&daemon, "duplicate", 3, "git-linux-mirror"),
        vec![serde_json::json!(["git-linux-mirror", 1, hash])]
    );
    // The copy is a duplicate, and only it: the original stays archived, and is not a
    // duplicate of its copy.
    assert_eq!(
        rows_of(&daemon, "archived", 3, "git-linux-mirror"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        rows_of(&daemon, "archived", 3, "git-linux")
            .into_iter()
            .filter(|row| row[1] == 20261126)
            .collect::<Vec<_>>(),
        vec![serde_json::json!(["git-linux", 20261126, hash])]
    );
    assert_eq!(
        rows_of(&daemon, "duplicate", 3, "git-linux")
            .into_iter()
            .filter(|row| row[1] == 20261126)
            .collect::<Vec<_>>(),
        Vec::<serde_json::Value>::new()
    );
    // Pushing the copy again uploads nothing.
    let output = push(&url, "git-linux-mirror", "1", &copy, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output)
            .contains("duplicate: git-linux-mirror@1 holds the same bytes as git-linux@20261126"),
        "{}",
        text(&output)
    );
    // Pushing an archived artifact again uploads nothing.
    let output = push(&url, "git-linux", "20261126", &file, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("archived already"),
        "{}",
        text(&output)
    );
    daemon.stop();
}

/// A loopback proxy to `upstream` that cuts the first `PUT` (both ways) after `cut_after`
/// bytes of it, and keeps the head of every request it forwards.
struct Proxy {
    address: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn proxy(upstream: String, cut_after: usize) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let cut = Arc::new(AtomicBool::new(false));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_out, mut server_in) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(Shutdown::Write);
            });
            let (heads, cut) = (kept.clone(), cut.clone());
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                let mut forwarded = 0;
                let mut head = Vec::new();
                let mut recorded = false;
                loop {
                    let n = match client.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if !recorded {
                        head.extend_from_slice(&buffer[..n.min(4096 - head.len())]);
                        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            heads
                                .lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&head[..end]).to_string());
                            recorded = true;
                        }
                    }
                    let is_put = head.starts_with(b"PUT ");
                    if is_put && forwarded + n > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        let _ = server.write_all(&buffer[..cut_after - forwarded]);
                        let _ = server.shutdown(Shutdown::Both);
                        let _ = client.shutdown(Shutdown::Both);
                        break;
                    }
                    if server.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    forwarded += n;
                }
                let _ = server.shutdown(Shutdown::Write);
            });
        }
    });
    Proxy { address, heads }
}

/// The offset in the last `resuming NAME at byte X of N`.
fn resumed_at(said: &str) -> Option<u64> {
    let line = said.lines().rfind(|line| line.contains("resuming"))?;
    line.split(" at byte ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_cut_upload_resumes_from_what_the_daemon_holds() {
    let (dir, config) = house("cut", "");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(24 << 20, 3);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let file = dir.join("feeds.tar");
    std::fs::write(&file, &bytes).unwrap();
    let proxy = proxy(daemon.address.clone(), 6 << 20);
    let output = push(
        &format!("http://{}", proxy.address),
        "feeds",
        "20261127",
        &file,
        &[],
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("warning: the upload of feeds@20261127"),
        "{said}"
    );
    let offset = resumed_at(&said).unwrap_or_else(|| panic!("no resumption: {said}"));
    assert!(offset > 0 && offset <= 6 << 20, "{said}");
    // The second PUT started where the daemon said it stood.
    let heads = proxy.heads.lock().unwrap().clone();
    let puts: Vec<&String> = heads
        .iter()
        .filter(|head| head.starts_with("PUT "))
        .collect();
    assert!(puts.len() >= 2, "{heads:#?}");
    assert!(
        puts[0].contains(&format!(
            "content-range: bytes 0-{}/{}",
            bytes.len() - 1,
            bytes.len()
        )),
        "{}",
        puts[0]
    );
    let last = puts[puts.len() - 1];
    assert!(
        last.contains(&format!(
            "content-range: bytes {offset}-{}/{}",
            bytes.len() - 1,
            bytes.len()
        )),
        "{last}"
    );
    assert!(
        said.contains(&format!("accepted: feeds@20261127 stored as BLAKE3 {hash}")),
        "{said}"
    );
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash.clone()]);
    let object = dir.join("data/harvest/objects").join(&hash);
    assert_eq!(std::fs::read(object).unwrap(), bytes);
    daemon.stop();
}

#[test]
fn an_upload_cut_by_a_daemon_restart_resumes_from_the_disk() {
    let (dir, config) = house("restart", "");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(16 << 20, 5);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let file = dir.join("zim.part1");
    std::fs::write(&file, &bytes).unwrap();
    let proxy = proxy(daemon.address.clone(), 5 << 20);
    // No retries: the edge gives up at the cut.
    let output = push(
        &format!("http://{}", proxy.address),
        "zim",
        "1",
        &file,
        &["--retries", "0"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("gave up"), "{}", text(&output));
    // Once the daemon has written what arrived (it holds a steady count), it dies.
    let mut last = 0;
    for _ in 0..200 {
        let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/zim/1", "");
        assert_eq!(status, 200, "{answer}");
        let received = answer["received"].as_u64().unwrap_or(0);
        if received > 0 && received == last {
            break;
        }
        last = received;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(last > 0, "the daemon never held any of the upload");
    // The daemon dies; the next one finds the report in its journal and the bytes on disk.
    daemon.kill();
    let held = std::fs::metadata(dir.join("data/harvest/partial/zim@1"))
        .unwrap()
        .len();
    assert!(held > 0 && held <= 5 << 20, "{held}");
    let daemon = Daemon::start(&config, &[]);
    let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/zim/1", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["received"], held, "{answer}");
    let output = push(
        &format!("http://{}", daemon.address),
        "zim",
        "1",
        &file,
        &[],
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains(&format!("uploading zim@1 from byte {held} of")),
        "{said}"
    );
    assert!(
        said.contains(&format!("accepted: zim@1 stored as BLAKE3 {hash}")),
        "{said}"
    );
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash]);
    daemon.stop();
}

#[test]
fn malformed_reports_and_uploads_are_refused_and_change_nothing() {
    let (dir, config) = house("malformed", "[harvest]\nmax_artifact_bytes = 1000000\n");
    let daemon = Daemon::start(&config, &[]);
    let reports_before = query(&daemon, "artifact_report(E, S, V, B, H)").len();
    let hash = blake3::hash(&[7; 100]).to_hex().to_string();
    let report = |edge: &str, source: &str, bytes: &str, hash: &str| {
        format!(
            r#"{{"edge": "{edge}", "source": "{source}", "version": 1, "bytes": {bytes}, "hash": "{hash}"}}"#
        )
    };
    let cases = [
        (
            report("edge-pi4", "ok", "100", "abc"),
            400,
            "`hash`: `abc` is not a BLAKE3 hash",
        ),
        (
            report("edge-pi4", "ok", "-1", &hash),
            400,
            "`bytes`: a size is 0 or more, not -1",
        ),
        (
            report("pve", "ok", "100", &hash),
            422,
            "`edge`: `pve` is not an edge node",
        ),
        (
            report("edge-pi4", "../etc", "100", &hash),
            400,
            "`source`: `../etc` is not a source name",
        ),
        (
            report("edge-pi4", "ok", "2000000", &hash),
            413,
            "max_artifact_bytes",
        ),
        (
            r#"{"edge": "edge-pi4", "source": "ok", "version": 1, "bytes": 100}"#.to_string(),
            400,
            "missing field `hash`",
        ),
        (
            r#"{"edge": "edge-pi4", "source": "ok", "version": "one", "bytes": 100, "hash": "x"}"#
                .to_string(),
            400,
            "at `version`",
        ),
        (
            format!(
                r#"{{"edge": "edge-pi4", "source": "ok", "version": 1, "bytes": 100, "hash": "{hash}", "size": 1}}"#
            ),
            400,
            "unknown field `size`",
        ),
        ("not json".to_string(), 400, "the JSON body"),
    ];
    for (body, status, message) in &cases {
        let (got, answer) = daemon.json("POST", "/v1/harvest/reports", body);
        assert_eq!(got, *status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{body}: {error}");
    }
    assert_eq!(
        query(&daemon, "artifact_report(E, S, V, B, H)").len(),
        reports_before
    );
    // An upload with no report.
    let response = daemon.send("PUT", "/v1/harvest/uploads/ok/1", &[], &[7; 100]);
    assert_eq!(response.status, 404, "{}", response.text());
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains("no edge reported ok@1")
    );
    let response = daemon.send("PUT", "/v1/harvest/uploads/ok/one", &[], &[7; 100]);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains("must be a whole number, not `one`")
    );
    let response = daemon.send("DELETE", "/v1/harvest/uploads/ok/1", &[], b"");
    assert_eq!(response.status, 405, "{}", response.text());
    assert_eq!(response.header("allow").as_deref(), Some("GET, HEAD, PUT"));
    // A good report, then uploads that do not fit it.
    let (status, answer) = daemon.json(
        "POST",
        "/v1/harvest/reports",
        &report("edge-pi4", "ok", "100", &hash),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["received"], 0);
    let (status, answer) = daemon.json(
        "POST",
        "/v1/harvest/reports",
        &report("edge-pi5", "ok", "99", &hash),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("`bytes`: ok@1 was reported as 100 bytes")
    );
    // One artifact has one content: another hash is refused, the same report again is fine.
    let other = blake3::hash(b"other").to_hex().to_string();
    for edge in ["edge-pi4", "edge-laptop"] {
        let (status, answer) = daemon.json(
            "POST",
            "/v1/harvest/reports",
            &report(edge, "ok", "100", &other),
        );
        assert_eq!(status, 409, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(&hash) && error.contains(&other), "{error}");
    }
    let (status, answer) = daemon.json(
        "POST",
        "/v1/harvest/reports",
        &report("edge-pi4", "ok", "100", &hash),
    );
    assert_eq!(status, 200, "{answer}");
    let put = |range: &str, body: &[u8]| {
        let response = daemon.send(
            "PUT",
            "/v1/harvest/uploads/ok/1",
            &[("Content-Range", range)],
            body,
        );
        (
            response.status,
            response.json()["error"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            response,
        )
    };
    let (status, error, _) = put("bytes 0-200/100", &[7; 201]);
    assert_eq!(
        (status, error.contains("START <= END < TOTAL")),
        (400, true),
        "{error}"
    );
    let (status, error, _) = put("bytes=0-99", &[7; 100]);
    assert_eq!(
        (status, error.contains("`bytes START-END/TOTAL`")),
        (400, true),
        "{error}"
    );
    let (status, error, _) = put("bytes 0-98/99", &[7; 99]);
    assert_eq!(
        (status, error.contains("reported as 100 bytes")),
        (416, true),
        "{error}"
    );
    let (status, error, response) = put("bytes 50-99/100", &[7; 50]);
    assert_eq!(
        (status, error.contains("send from byte 0")),
        (409, true),
        "{error}"
    );
    assert_eq!(response.header("upload-offset").as_deref(), Some("0"));
    let (status, error, _) = put("bytes 0-99/100", &[7; 10]);
    assert_eq!(
        (status, error.contains("does not match the range")),
        (400, true),
        "{error}"
    );
    // A chunked body longer than its range: nothing of it is kept.
    let mut raw = b"PUT /v1/harvest/uploads/ok/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Range: bytes 0-9/100\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n".to_vec();
    raw.extend_from_slice(&[7; 20]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let response = daemon.raw(&raw).unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains("more than the 10 bytes of its range"),
        "{}",
        response.text()
    );
    // A body whose first chunk fits its range and whose second goes past it: the first
    // chunk is not kept either.
    let mut raw = b"PUT /v1/harvest/uploads/ok/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Range: bytes 0-9/100\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n".to_vec();
    raw.extend_from_slice(&[7; 6]);
    raw.extend_from_slice(b"\r\na\r\n");
    raw.extend_from_slice(&[7; 10]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let response = daemon.raw(&raw).unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains("more than the 10 bytes of its range"),
        "{}",
        response.text()
    );
    assert_eq!(
        std::fs::metadata(dir.join("data/harvest/partial/ok@1")).map_or(0, |m| m.len()),
        0
    );
    // Nothing arrived.
    let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/ok/1", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["state"].as_str(), answer["received"].as_u64()),
        (Some("partial"), Some(0)),
        "{answer}"
    );
    assert_eq!(
        rows_of(&daemon, "artifact_arrived", 3, "ok"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(harvest_dir(&dir, "objects"), Vec::<String>::new());
    // The protocol by hand: half, how far it got, the other half.
    let (status, _, response) = put("bytes 0-49/100", &[7; 50]);
    assert_eq!(status, 200, "{}", response.text());
    assert_eq!(response.json()["received"], 50);
    let response = daemon.send("HEAD", "/v1/harvest/uploads/ok/1", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("upload-offset").as_deref(), Some("50"));
    assert_eq!(response.header("upload-length").as_deref(), Some("100"));
    let (status, _, response) = put("bytes 50-99/100", &[7; 50]);
    assert_eq!(status, 200, "{}", response.text());
    assert_eq!(
        response.json()["outcome"],
        "accepted",
        "{}",
        response.text()
    );
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash.clone()]);
    let (status, error, _) = put("bytes 0-99/100", &[7; 100]);
    assert_eq!(
        (status, error.contains("archived already")),
        (409, true),
        "{error}"
    );
    daemon.stop();
}

#[test]
fn the_edge_needs_a_token_with_the_ingest_scope() {
    let tokens = "[[token]]\nname = \"grafana\"\nsecret = \"a read-only secret, long enough\"\nscopes = [\"read\"]\n\n[[token]]\nname = \"edge-pi4\"\nsecret = \"the edge's secret, long enough\"\nscopes = [\"ingest\"]\n";
    let (dir, config) = house("tokens", tokens);
    let daemon = Daemon::start(&config, &[]);
    let url = format!("http://{}", daemon.address);
    let file = dir.join("feed.xml");
    std::fs::write(&file, noise(100_000, 13)).unwrap();
    let run = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command.args(["edge", "push", "--daemon", &url, "--edge", "edge-pi5"]);
        command.args(["--source", "rss", "--version", "3", file.to_str().unwrap()]);
        command.env_remove("VIGIL_TOKEN");
        if let Some(token) = token {
            command.env("VIGIL_TOKEN", token);
        }
        command.output().unwrap()
    };
    let output = run(None);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("a bearer token is required"),
        "{}",
        text(&output)
    );
    let output = run(Some("a read-only secret, long enough"));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("lacks the `ingest` scope"),
        "{}",
        text(&output)
    );
    assert_eq!(harvest_dir(&dir, "objects"), Vec::<String>::new());
    let output = run(Some("the edge's secret, long enough"));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("accepted: rss@3"),
        "{}",
        text(&output)
    );
    assert_eq!(harvest_dir(&dir, "objects").len(), 1);
    daemon.stop();
}

#[test]
fn a_crash_after_the_arrival_is_finished_from_the_disk() {
    let (dir, config) = house("crash", "");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(100_000, 17);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let other = blake3::hash(b"what the edge thought").to_hex().to_string();
    // Two artifacts whose bytes all arrived and whose arrival was committed, but which the
    // daemon did not move before it died: one verified, one whose report differs.
    for (source, reported) in [("kept", &hash), ("refused", &other)] {
        let report = format!(
            r#"{{"edge": "edge-pi4", "source": "{source}", "version": 1, "bytes": {}, "hash": "{reported}"}}"#,
            bytes.len()
        );
        let (status, answer) = daemon.json("POST", "/v1/harvest/reports", &report);
        assert_eq!(status, 200, "{answer}");
        let partial = dir.join("data/harvest/partial");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join(format!("{source}@1")), &bytes).unwrap();
        let arrived = format!(
            r#"{{"event": "arrived", "insert": {{"artifact_arrived": [["{source}", 1, "{hash}"]]}}}}"#
        );
        let (status, answer) = daemon.json("POST", "/v1/transactions", &arrived);
        assert_eq!(status, 200, "{answer}");
    }
    // Asking how far they got finishes them.
    let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/kept/1", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "archived", "{answer}");
    assert_eq!(answer["hash"], hash.as_str(), "{answer}");
    assert_eq!(
        rows_of(&daemon, "archived", 3, "kept"),
        vec![serde_json::json!(["kept", 1, hash])]
    );
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash.clone()]);
    let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/refused/1", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "quarantined", "{answer}");
    assert_eq!(
        harvest_dir(&dir, "quarantine"),
        vec![format!("refused@1.{hash}")]
    );
    assert_eq!(harvest_dir(&dir, "partial"), Vec::<String>::new());
    daemon.stop();
}

#[test]
fn a_stalled_upload_is_cut_and_frees_its_artifact() {
    let (_dir, config) = house("stalled", "[harvest]\nidle_timeout_s = 1\n");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(100, 19);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let report = format!(
        r#"{{"edge": "edge-pi4", "source": "stalled", "version": 1, "bytes": 100, "hash": "{hash}"}}"#
    );
    let (status, answer) = daemon.json("POST", "/v1/harvest/reports", &report);
    assert_eq!(status, 200, "{answer}");
    // Ten bytes of a hundred, then silence, with the connection open.
    let mut stalled = TcpStream::connect(&daemon.address).unwrap();
    stalled
        .write_all(
            b"PUT /v1/harvest/uploads/stalled/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        )
        .unwrap();
    stalled.write_all(&bytes[..10]).unwrap();
    let mut held = 0;
    for _ in 0..100 {
        let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/stalled/1", "");
        assert_eq!(status, 200, "{answer}");
        held = answer["received"].as_u64().unwrap_or(0);
        if held == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(held, 10, "the first bytes never arrived");
    // The rest, as soon as the daemon lets the stalled upload go.
    let mut answer = None;
    for _ in 0..100 {
        let response = daemon.send(
            "PUT",
            "/v1/harvest/uploads/stalled/1",
            &[("Content-Range", "bytes 10-99/100")],
            &bytes[10..],
        );
        if response.status == 409 && response.text().contains("send from byte 0") {
            panic!("the stalled bytes were not kept: {}", response.text());
        }
        if response.status != 409 {
            answer = Some(response);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = answer.expect("the stalled upload never let go");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["outcome"], "accepted", "{}", answer.text());
    assert_eq!(answer.json()["hash"], hash.as_str());
    drop(stalled);
    daemon.stop();
}

#[test]
fn an_upload_whose_client_went_away_is_settled_all_the_same() {
    let (dir, config) = house("gone", "");
    let daemon = Daemon::start(&config, &[]);
    let bytes = noise(1 << 20, 23);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let report = format!(
        r#"{{"edge": "edge-pi4", "source": "gone", "version": 1, "bytes": {}, "hash": "{hash}"}}"#,
        bytes.len()
    );
    let (status, answer) = daemon.json("POST", "/v1/harvest/reports", &report);
    assert_eq!(status, 200, "{answer}");
    // The whole body, and the client is gone before the answer.
    {
        let mut client = TcpStream::connect(&daemon.address).unwrap();
        let head = format!(
            "PUT /v1/harvest/uploads/gone/1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        );
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(&bytes).unwrap();
        client.shutdown(Shutdown::Both).unwrap();
    }
    let mut state = serde_json::Value::Null;
    for _ in 0..200 {
        let (status, answer) = daemon.json("GET", "/v1/harvest/uploads/gone/1", "");
        assert_eq!(status, 200, "{answer}");
        state = answer;
        if state["state"] == "archived" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(state["state"], "archived", "{state}");
    assert_eq!(state["hash"], hash.as_str(), "{state}");
    assert_eq!(harvest_dir(&dir, "objects"), vec![hash]);
    assert_eq!(harvest_dir(&dir, "partial"), Vec::<String>::new());
    daemon.stop();
}
