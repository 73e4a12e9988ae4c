//! `vigil edge`: the client that runs on the edge nodes (old laptops, Raspberry Pis).
//!
//! `vigil edge push` downloads an artifact (with `--url`), hashes it with BLAKE3, reports it to
//! the daemon (`POST /v1/harvest/reports`) and uploads it (`PUT
//! /v1/harvest/uploads/SOURCE/VERSION`); `vigil edge hash` prints a file's hash. Files are
//! read and written in fixed-size chunks, so an artifact of any size takes the same little
//! memory, which matters on a Raspberry Pi.
//!
//! An upload that fails on the way (the connection is reset, the daemon restarts) is not
//! started over: the client asks the daemon how many bytes it holds (`GET` on the upload) and
//! sends the rest, after a pause that doubles with each failure in a row (from 250 ms to 8 s),
//! up to `--retries` failures without progress. A download that fails asks the server for the
//! rest (`Range`) and starts over if the server does not serve ranges; a `FILE.part` left by
//! an earlier run is hashed again and continued. A connection on which nothing moves for
//! [`IDLE_TIMEOUT`] counts as cut, so a silent cut resumes instead of hanging. With `--url`
//! and `--hash`, a download that does not have the given hash fails here, before anything is
//! reported: uploading it would only get it quarantined.
//!
//! The exit status is 0 when the daemon stored the artifact (or holds the same bytes already)
//! and 1 when it refused it (its hash differs from the reported one: quarantined) or the
//! client gave up.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use vigil_adapters::source::HttpUrl;

/// How much of a file is read (or written) at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the connection: an upload's memory is about this many chunks.
const CHUNKS_AHEAD: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a short request (a report, a status) may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connection may make no progress (nothing read, nothing written) before it
/// counts as cut: a silent cut then resumes instead of hanging.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(8);

#[derive(Args)]
pub struct EdgeArgs {
    #[command(subcommand)]
    command: EdgeCommand,
}

#[derive(Subcommand)]
enum EdgeCommand {
    /// Prints the BLAKE3 hash of each file, as `HASH  FILE`.
    Hash {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Reports an artifact to the daemon and uploads it (downloading it first with `--url`).
    Push(PushArgs),
}

#[derive(Args)]
struct PushArgs {
    /// The daemon, as http://HOST:PORT.
    #[arg(long, value_name = "URL")]
    daemon: String,
    /// The bearer token (with the `ingest` scope); by default the VIGIL_TOKEN environment
    /// variable.
    #[arg(long)]
    token: Option<String>,
    /// This edge node's name, as the daemon's inventory has it.
    #[arg(long)]
    edge: String,
    /// What the artifact is (letters, digits, `.`, `_`, `-`): `wikipedia_en`, `git-linux`.
    #[arg(long)]
    source: String,
    /// Which version of the source (a whole number, such as 20261126).
    #[arg(long, allow_negative_numbers = true)]
    version: i64,
    /// Download the artifact from this http:// URL into FILE first.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Report this BLAKE3 hash (from the publisher, or an earlier download) instead of the
    /// file's own.
    #[arg(long, value_name = "HASH")]
    hash: Option<String>,
    /// Failures in a row (without progress) before giving up.
    #[arg(long, default_value_t = 10, value_name = "N")]
    retries: u32,
    /// The artifact.
    file: PathBuf,
}

pub fn edge(args: EdgeArgs) -> Result<ExitCode> {
    match args.command {
        EdgeCommand::Hash { files } => {
            for file in files {
                let (hash, _) = hash_file(&file)?;
                println!("{hash}  {}", file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        EdgeCommand::Push(args) => push(args),
    }
}

/// The BLAKE3 hash of a file (in hex) and its size, read in chunks.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open it", path.display()))?;
    let (hasher, size) = hash_reader(file, path)?;
    Ok((hasher.finalize().to_hex().to_string(), size))
}

/// Hashes what `reader` (the file at `path`) holds, in chunks; answers the hasher and the
/// number of bytes.
fn hash_reader(mut reader: impl Read, path: &Path) -> Result<(blake3::Hasher, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; CHUNK * 4];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .with_context(|| format!("{}: cannot read it", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hasher, size))
}

/// An http:// URL, split for a request.
#[derive(Debug, Clone, PartialEq)]
struct Url {
    /// As given, for messages.
    text: String,
    /// `HOST:PORT`, to connect to.
    address: String,
    /// The `Host` header.
    host: String,
    /// The path and query, `/` at least.
    target: String,
}

impl Url {
    fn parse(text: &str) -> Result<Url> {
        let url = HttpUrl::parse(
            text,
            "not an http:// URL (https is not spoken here: fetch the file with curl, then push it)",
        )
        .map_err(|reason| anyhow!("`{text}`: {reason}"))?;
        let address = url.address();
        let target = match url.uri.path_and_query().map(|path| path.as_str()) {
            Some(path) if path.starts_with('/') => path.to_string(),
            Some(path) => format!("/{path}"),
            None => "/".to_string(),
        };
        Ok(Url {
            text: text.to_string(),
            address,
            host: url.authority,
            target,
        })
    }

    /// The daemon's API path `path` (which starts with `/`) under this URL.
    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.target.trim_end_matches('/'))
    }
}

/// A request body read from a file by a thread of its own, a chunk at a time.
struct FileBody {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    length: u64,
}

impl FileBody {
    /// `length` bytes of `path` from `offset` on.
    fn new(path: &Path, offset: u64, length: u64) -> Result<FileBody> {
        let mut file =
            File::open(path).with_context(|| format!("{}: cannot open it", path.display()))?;
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("{}: cannot seek to byte {offset}", path.display()))?;
        let (sender, chunks) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let name = path.display().to_string();
        std::thread::spawn(move || {
            let mut left = length;
            let mut buffer = vec![0; CHUNK];
            while left > 0 {
                let want = buffer
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let chunk = match file.read(&mut buffer[..want]) {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{name} ended {left} bytes early: it changed since it was hashed"),
                    )),
                    Ok(n) => Ok(Bytes::copy_from_slice(&buffer[..n])),
                    Err(error) => Err(error),
                };
                let failed = chunk.is_err();
                if let Ok(chunk) = &chunk {
                    left -= chunk.len() as u64;
                }
                // The connection is gone when the receiver is: stop reading.
                if sender.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        Ok(FileBody { chunks, length })
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length)
    }
}

/// A short answer: the status and the body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The daemon's `{"error": ...}`, or what it answered.
    fn error(&self) -> String {
        let message = self.message();
        if self.status == StatusCode::UNAUTHORIZED {
            return format!(
                "{message} (give it with --token, or in the VIGIL_TOKEN environment variable)"
            );
        }
        message
    }

    fn message(&self) -> String {
        match self.json()["error"].as_str() {
            Some(message) => message.to_string(),
            None => {
                let text = String::from_utf8_lossy(&self.body);
                format!(
                    "{}{}",
                    self.status,
                    if text.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", text.trim().chars().take(200).collect::<String>())
                    }
                )
            }
        }
    }
}

/// Opens a connection to `url`'s host and sends one request.
async fn send<B>(
    url: &Url,
    method: Method,
    target: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: B,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let unreachable = |error: &dyn std::fmt::Display| format!("cannot reach {}: {error}", url.text);
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&url.address),
    )
    .await
    .map_err(|_| unreachable(&format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
    .map_err(|error| unreachable(&error))?;
    let stream = Idle::new(stream, IDLE_TIMEOUT);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable(&error))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, &url.host);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(body)
        .map_err(|error| format!("cannot send {target} to {}: {error}", url.text))?;
    sender
        .send_request(request)
        .await
        .map_err(|error| format!("the connection to {} failed: {error}", url.text))
}

/// A connection that fails with `TimedOut` when it makes no progress for `limit`: neither a
/// read nor a write completes. One deadline serves both ways, so a long upload that keeps
/// writing is never cut for not reading, and a wait for the answer is bounded.
struct Idle<T> {
    inner: T,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Idle<T> {
    fn new(inner: T, limit: Duration) -> Idle<T> {
        Idle {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn progressed(&mut self) {
        let next = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(next);
    }

    /// After an operation that could not go on: whether the connection has been idle too long.
    fn expired<R>(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing moved for {} s", self.limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.expired(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Sends one request and reads the whole (short) answer.
async fn exchange<B>(
    url: &Url,
    method: Method,
    target: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: B,
) -> Result<Answer, String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = send(url, method, target, headers, body).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("the connection to {} failed: {error}", url.text))?
        .to_bytes();
    Ok(Answer { status, body })
}

/// Like [`exchange`], within [`ANSWER_TIMEOUT`].
async fn ask(
    url: &Url,
    method: Method,
    target: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let call = exchange(url, method, target, headers, Full::new(Bytes::from(body)));
    match tokio::time::timeout(ANSWER_TIMEOUT, call).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "{} did not answer within {} s",
            url.text,
            ANSWER_TIMEOUT.as_secs()
        )),
    }
}

/// Counts failures in a row and pauses between attempts.
struct Patience {
    failures: u32,
    retries: u32,
}

impl Patience {
    /// After a failure: pauses and answers `Ok`, or gives up with the error.
    async fn failed(&mut self, what: &str, error: String) -> Result<()> {
        self.failures += 1;
        if self.failures > self.retries {
            bail!("{what}: {error}; gave up after {} attempts", self.failures);
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(LONGEST_PAUSE);
        eprintln!(
            "warning: {what}: {error}; trying again in {:.2} s ({} of {} retries)",
            pause.as_secs_f64(),
            self.failures,
            self.retries
        );
        tokio::time::sleep(pause).await;
        Ok(())
    }

    fn progressed(&mut self) {
        self.failures = 0;
    }
}

/// Whether the daemon's answer is worth another attempt: it is busy with the same upload, or
/// failed on its side.
fn transient(status: StatusCode) -> bool {
    status == StatusCode::CONFLICT || status.is_server_error()
}

fn push(args: PushArgs) -> Result<ExitCode> {
    let daemon = Url::parse(&args.daemon).context("--daemon")?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("VIGIL_TOKEN").ok())
        .filter(|token| !token.is_empty());
    let mut headers = Vec::new();
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| anyhow!("the token holds characters that cannot be sent in a header"))?;
        headers.push((header::AUTHORIZATION, value));
    }
    let download = args
        .url
        .as_deref()
        .map(Url::parse)
        .transpose()
        .context("--url")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut patience = Patience {
            failures: 0,
            retries: args.retries,
        };
        let (own, bytes) = match &download {
            Some(url) => fetch(url, &args.file, &mut patience).await?,
            None => hash_file(&args.file)?,
        };
        println!(
            "vigil edge: {}: {bytes} bytes, BLAKE3 {own}",
            args.file.display()
        );
        let hash = match &args.hash {
            Some(given) => given.trim().to_ascii_lowercase(),
            None => own.clone(),
        };
        // A download that does not match the publisher's hash is damaged: reporting the
        // publisher's hash and uploading it would only get it quarantined for good.
        if download.is_some() && hash != own {
            bail!(
                "the download of {} is damaged: its BLAKE3 is {own}, but --hash gives {hash}; {} is kept for a look, nothing was reported",
                download.as_ref().map_or("", |url| url.text.as_str()),
                args.file.display()
            );
        }
        let name = format!("{}@{}", args.source, args.version);
        let report = serde_json::json!({
            "edge": args.edge,
            "source": args.source,
            "version": args.version,
            "bytes": bytes,
            "hash": hash,
        });
        let mut json_headers = headers.clone();
        json_headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        let body = serde_json::to_vec(&report)?;
        loop {
            let target = daemon.api("/v1/harvest/reports");
            match ask(&daemon, Method::POST, &target, &json_headers, body.clone()).await {
                Ok(answer) if answer.status.is_success() => break,
                Ok(answer) if answer.status.is_server_error() => {
                    patience.failed("the report", answer.error()).await?;
                }
                Ok(answer) => bail!("the daemon refused the report of {name}: {}", answer.error()),
                Err(error) => patience.failed("the report", error).await?,
            }
        }
        patience.progressed();
        println!("vigil edge: reported {name} from {} (BLAKE3 {hash})", args.edge);
        let target = daemon.api(&format!(
            "/v1/harvest/uploads/{}/{}",
            args.source, args.version
        ));
        let mut first = true;
        let mut last_offset = None;
        loop {
            // How far the daemon got.
            let answer = match ask(&daemon, Method::GET, &target, &headers, Vec::new()).await {
                Ok(answer) if answer.status.is_success() => answer,
                Ok(answer) if transient(answer.status) => {
                    patience.failed("asking how far the upload got", answer.error()).await?;
                    continue;
                }
                Ok(answer) => bail!("the daemon refused {name}: {}", answer.error()),
                Err(error) => {
                    patience.failed("asking how far the upload got", error).await?;
                    continue;
                }
            };
            let state = answer.json();
            match state["state"].as_str() {
                Some("archived") => {
                    let stored = state["hash"].as_str().unwrap_or_default();
                    if stored == hash {
                        println!("vigil edge: archived already: {name} as BLAKE3 {stored}");
                        return Ok(ExitCode::SUCCESS);
                    }
                    println!(
                        "vigil edge: archived already: {name} as BLAKE3 {stored}, but this edge reported {hash}"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Some("duplicate") => {
                    println!(
                        "vigil edge: duplicate: {name} holds the same bytes as {} (BLAKE3 {}); the daemon keeps one copy",
                        strings(&state["of"]).join(", "),
                        state["hash"].as_str().unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Some("quarantined") => {
                    let arrived = strings(&state["arrived"]);
                    println!(
                        "vigil edge: quarantined: {name}: this edge reported BLAKE3 {hash}, the daemon computed {}; the transfer was refused",
                        arrived.join(", ")
                    );
                    return Ok(ExitCode::FAILURE);
                }
                _ => {}
            }
            let offset = state["received"].as_u64().unwrap_or(0).min(bytes);
            if last_offset.is_some_and(|last| offset > last) {
                patience.progressed();
            }
            last_offset = Some(offset);
            if first {
                println!("vigil edge: uploading {name} from byte {offset} of {bytes}");
                first = false;
            } else {
                println!("vigil edge: resuming {name} at byte {offset} of {bytes}");
            }
            let range = if offset == bytes {
                format!("bytes */{bytes}")
            } else {
                format!("bytes {offset}-{}/{bytes}", bytes - 1)
            };
            let mut put_headers = headers.clone();
            put_headers.push((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ));
            put_headers.push((
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range).map_err(|error| anyhow!("{error}"))?,
            ));
            let body = FileBody::new(&args.file, offset, bytes - offset)?;
            let answer = match exchange(&daemon, Method::PUT, &target, &put_headers, body).await {
                Ok(answer) => answer,
                Err(error) => {
                    patience.failed(&format!("the upload of {name}"), error).await?;
                    continue;
                }
            };
            let result = answer.json();
            match (answer.status, result["outcome"].as_str()) {
                (StatusCode::OK, Some("accepted")) => {
                    println!("vigil edge: accepted: {name} stored as BLAKE3 {}", result["hash"].as_str().unwrap_or_default());
                    return Ok(ExitCode::SUCCESS);
                }
                (StatusCode::OK, Some("duplicate")) => {
                    println!(
                        "vigil edge: duplicate: {name} holds the same bytes as {} (BLAKE3 {}); the daemon keeps one copy",
                        strings(&result["of"]).join(", "),
                        result["hash"].as_str().unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                (StatusCode::OK, Some(other)) => {
                    println!("vigil edge: {other}: {name}");
                    return Ok(ExitCode::SUCCESS);
                }
                (StatusCode::UNPROCESSABLE_ENTITY, Some("quarantined")) => {
                    println!(
                        "vigil edge: quarantined: {name}: this edge reported BLAKE3 {}, the daemon computed {}; the transfer was refused",
                        strings(&result["reported"]).join(", "),
                        result["arrived"].as_str().unwrap_or_default()
                    );
                    return Ok(ExitCode::FAILURE);
                }
                // A part arrived (the daemon answered before the end): go on.
                (StatusCode::OK, None) => {}
                (status, _) if transient(status) => {
                    patience.failed(&format!("the upload of {name}"), answer.error()).await?;
                }
                _ => bail!("the daemon refused the upload of {name}: {}", answer.error()),
            }
        }
    })
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::String(text) => vec![text.clone()],
        _ => Vec::new(),
    }
}

/// Downloads `url` into `file` (through `FILE.part`, renamed when complete), hashing it on
/// the way; a failed download goes on where it stopped if the server serves ranges. Answers
/// the hash and the size.
async fn fetch(url: &Url, file: &Path, patience: &mut Patience) -> Result<(String, u64)> {
    let part = {
        let mut name = file.as_os_str().to_owned();
        name.push(".part");
        PathBuf::from(name)
    };
    // A download cut in an earlier run goes on from what its part file holds, hashed again.
    let mut output = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .with_context(|| format!("{}: cannot open it", part.display()))?;
    let (mut hasher, mut written) = hash_reader(&mut output, &part)?;
    output
        .seek(SeekFrom::Start(written))
        .with_context(|| format!("{}: cannot seek to byte {written}", part.display()))?;
    if written > 0 {
        println!(
            "vigil edge: resuming the download at byte {written} ({} holds them)",
            part.display()
        );
    }
    let mut url = url.clone();
    let mut redirects = 0;
    loop {
        let mut headers = Vec::new();
        if written > 0 {
            headers.push((
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={written}-"))?,
            ));
        }
        let target = url.target.clone();
        let response = match send(
            &url,
            Method::GET,
            &target,
            &headers,
            Full::new(Bytes::new()),
        )
        .await
        {
            Ok(response) => response,
            Err(error) => {
                patience.failed("the download", error).await?;
                continue;
            }
        };
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(header::LOCATION)
        {
            redirects += 1;
            if redirects > 5 {
                bail!("{}: more than 5 redirects", url.text);
            }
            let location = location.to_str().unwrap_or_default();
            url = if location.starts_with('/') {
                Url {
                    text: format!("http://{}{location}", url.host),
                    target: location.to_string(),
                    ..url
                }
            } else {
                Url::parse(location)?
            };
            continue;
        }
        match status {
            StatusCode::OK => {
                // The whole file, from the start.
                if written > 0 {
                    output.set_len(0)?;
                    output.seek(SeekFrom::Start(0))?;
                    hasher = blake3::Hasher::new();
                    written = 0;
                }
            }
            StatusCode::PARTIAL_CONTENT if written > 0 => {
                let from = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("bytes "))
                    .and_then(|value| value.split('-').next())
                    .and_then(|start| start.parse::<u64>().ok());
                if from != Some(written) {
                    bail!(
                        "{}: asked for the bytes from {written} on, the server sent {}",
                        url.text,
                        response
                            .headers()
                            .get(header::CONTENT_RANGE)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("another range")
                    );
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if written > 0 => {
                // Nothing from byte `written` on: the part is complete if the file is that
                // long (`Content-Range: bytes */TOTAL`); otherwise it is not this file.
                let total = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("bytes */"))
                    .and_then(|total| total.trim().parse::<u64>().ok());
                if total == Some(written) {
                    break;
                }
                eprintln!(
                    "warning: {}: the server has no bytes from {written} on; downloading it again",
                    url.text
                );
                output.set_len(0)?;
                output.seek(SeekFrom::Start(0))?;
                hasher = blake3::Hasher::new();
                written = 0;
                continue;
            }
            status if status.is_server_error() => {
                patience
                    .failed("the download", format!("{} answered {status}", url.text))
                    .await?;
                continue;
            }
            status => bail!("{}: the server answered {status}", url.text),
        }
        let mut body = response.into_body();
        let before = written;
        let outcome = loop {
            match body.frame().await {
                None => break Ok(()),
                Some(Err(error)) => break Err(error.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        hasher.update(&data);
                        output
                            .write_all(&data)
                            .with_context(|| format!("{}: cannot write it", part.display()))?;
                        written += data.len() as u64;
                    }
                }
            }
        };
        match outcome {
            Ok(()) => break,
            Err(error) => {
                if written > before {
                    patience.progressed();
                }
                patience
                    .failed("the download", format!("cut at byte {written}: {error}"))
                    .await?;
            }
        }
    }
    output
        .sync_all()
        .with_context(|| format!("{}: cannot sync it", part.display()))?;
    std::fs::rename(&part, file)
        .with_context(|| format!("cannot rename {} to {}", part.display(), file.display()))?;
    println!("vigil edge: downloaded {} ({written} bytes)", url.text);
    Ok((hasher.finalize().to_hex().to_string(), written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = Url::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(url.address, "127.0.0.1:7070");
        assert_eq!(url.api("/v1/health"), "/v1/health");
        let url = Url::parse("http://vigil.lan/api/").unwrap();
        assert_eq!(url.address, "vigil.lan:80");
        assert_eq!(url.api("/v1/health"), "/api/v1/health");
        let url = Url::parse("http://mirror.lan:8080/dumps/a.zim?x=1#top").unwrap();
        assert_eq!(url.target, "/dumps/a.zim?x=1");
        assert_eq!(url.host, "mirror.lan:8080");
        let url = Url::parse("http://[::1]:7070/").unwrap();
        assert_eq!(url.address, "[::1]:7070");
        assert_eq!(url.host, "[::1]:7070");
        let url = Url::parse("http://vigil.lan?x=1").unwrap();
        assert_eq!(url.target, "/?x=1");
        let error = Url::parse("https://example.org/").unwrap_err().to_string();
        assert!(error.contains("https is not spoken here"), "{error}");
        assert!(Url::parse("http:///x").is_err());
        assert!(Url::parse("http://user@vigil.lan/").is_err());
    }

    #[tokio::test]
    async fn a_silent_connection_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(64);
        let mut idle = Idle::new(near, Duration::from_millis(50));
        far.write_all(b"some").await.unwrap();
        let mut buffer = [0; 4];
        idle.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"some");
        // Then nothing: the read fails instead of waiting for ever.
        let error = idle.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        drop(far);
    }
}
