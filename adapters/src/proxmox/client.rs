//! The HTTP side: one Proxmox endpoint, its token, its TLS trust, and requests with timeouts.
//!
//! Requests go over HTTP/1.1 on rustls. An idle connection is kept for the next request (the
//! task polls of an action come one after another); a kept connection that the server closed
//! in the meantime is replaced by a new one before the request is sent, never after, so a
//! `POST` is never sent twice. Parameters are form-encoded, in the body of a `POST` and in the
//! query of a `GET`, as Proxmox's own clients send them.

use super::Error;
use super::tls::{self, Trust};
use crate::source::Malformed;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Proxmox's API port.
pub const PORT: u16 = 8006;
/// Every API path starts here.
pub const PREFIX: &str = "/api2/json";
/// The longest answer read, in bytes: `/cluster/resources` of a big cluster fits many times.
const MAX_ANSWER: usize = 32 << 20;
/// Idle connections kept.
const IDLE_KEPT: usize = 2;

/// An API token: `USER@REALM!TOKENID` and its secret (a UUID). Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// `USER@REALM`, such as `vigil@pve`.
    pub user: String,
    /// The token's name under the user.
    pub id: String,
    secret: String,
}

impl ApiToken {
    pub fn new(user: &str, id: &str, secret: &str) -> Result<ApiToken, Error> {
        let bad = |why: &str| Error::Config(format!("API token `{user}!{id}`: {why}"));
        if !user.contains('@') || user.contains('!') || user.contains('=') {
            return Err(bad("the user must be USER@REALM"));
        }
        if id.is_empty() || id.contains('!') || id.contains('=') {
            return Err(bad("the token id must not be empty nor hold `!` or `=`"));
        }
        if secret.is_empty() {
            return Err(bad("the secret is empty"));
        }
        if [user, id, secret]
            .iter()
            .any(|part| part.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(bad("white space or control characters"));
        }
        Ok(ApiToken {
            user: user.into(),
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// `USER@REALM!TOKENID=SECRET`, as Proxmox shows a new token and as the header carries it.
    pub fn parse(text: &str) -> Result<ApiToken, Error> {
        let text = text.trim();
        let shape = || {
            Error::Config(
                "an API token reads USER@REALM!TOKENID=SECRET (such as `vigil@pve!actuator=...`)"
                    .into(),
            )
        };
        let (name, secret) = text.split_once('=').ok_or_else(shape)?;
        let (user, id) = name.split_once('!').ok_or_else(shape)?;
        ApiToken::new(user, id, secret)
    }

    /// `USER@REALM!TOKENID`, the name tasks are owned by.
    pub fn name(&self) -> String {
        format!("{}!{}", self.user, self.id)
    }

    fn header(&self) -> String {
        format!("PVEAPIToken={}!{}={}", self.user, self.id, self.secret)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}!{}=***)", self.user, self.id)
    }
}

/// Where the API is, how to authenticate and whom to trust, and how long to wait.
#[derive(Debug, Clone)]
pub struct Config {
    /// A host name or an IP address (an IPv6 one without brackets).
    pub host: String,
    pub port: u16,
    pub token: ApiToken,
    pub trust: Trust,
    /// The longest wait for one request, connection included.
    pub request_timeout: Duration,
    /// The longest wait for a task to end, from its start.
    pub task_timeout: Duration,
    /// The wait between two polls of a running task.
    pub poll_interval: Duration,
}

impl Config {
    /// Port 8006, requests within 10 s, tasks within 10 minutes, polled every second.
    pub fn new(host: &str, token: ApiToken, trust: Trust) -> Config {
        Config {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port: PORT,
            token,
            trust,
            request_timeout: Duration::from_secs(10),
            task_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A successful answer: its `data`, and the body it came in (for a [`Malformed`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub data: Value,
    pub body: Bytes,
    /// Where a [`Malformed`] came from: `GET /cluster/status`.
    pub origin: String,
}

impl Answer {
    /// The answer could not be read as expected.
    pub fn malformed(&self, reason: impl Into<String>) -> Error {
        Error::Malformed(Malformed::new(self.origin.clone(), &self.body, reason))
    }
}

/// A Proxmox VE API client. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.config.endpoint())
            .field("token", &self.inner.config.token)
            .field("trust", &self.inner.config.trust)
            .finish()
    }
}

impl Client {
    pub fn new(config: Config) -> Result<Client, Error> {
        let tls = tls::client_config(&config.trust)?;
        let server_name = match config.host.parse::<IpAddr>() {
            Ok(address) => ServerName::IpAddress(address.into()),
            Err(_) => ServerName::try_from(config.host.clone())
                .map_err(|_| Error::Config(format!("`{}` is not a host name", config.host)))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                connector: TlsConnector::from(tls),
                server_name,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// `GET PATH?PARAMS`, within the request timeout.
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Answer, Error> {
        self.request(Method::GET, path, params, self.config().request_timeout)
            .await
    }

    /// `POST PATH` with the parameters form-encoded, within the request timeout.
    pub async fn post(&self, path: &str, params: &[(&str, String)]) -> Result<Answer, Error> {
        self.request(Method::POST, path, params, self.config().request_timeout)
            .await
    }

    /// A request to `PATH` (below `/api2/json`, its segments encoded by [`api_path`]),
    /// answered within `timeout`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let form = form_encode(params);
        let mut target = format!("{PREFIX}{path}");
        let body = if method == Method::GET || method == Method::DELETE {
            if !form.is_empty() {
                target = format!("{target}?{form}");
            }
            None
        } else {
            Some(form)
        };
        let config = self.config();
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&target)
            .header(hyper::header::HOST, config.endpoint())
            .header(hyper::header::AUTHORIZATION, config.token.header())
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "vigil");
        let body = match body {
            Some(form) if !form.is_empty() => {
                builder = builder.header(
                    hyper::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
                Bytes::from(form)
            }
            _ => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|error| Error::Transport {
                method: method.to_string(),
                path: path.to_string(),
                reason: format!("cannot build the request: {error}"),
            })?;
        let exchange = async {
            let (response, sender) = self.send(request, &method, path).await?;
            let status = response.status();
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned());
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|error| Error::Transport {
                    method: method.to_string(),
                    path: path.to_string(),
                    reason: format!("reading the answer: {error}"),
                })?
                .to_bytes();
            self.keep(sender);
            Ok::<_, Error>((status, reason, body))
        };
        let (status, reason, body) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Timeout {
                    method: method.to_string(),
                    path: path.to_string(),
                    timeout,
                })??;
        answer(&method, path, status, reason, body)
    }

    /// Sends on an idle connection, or on a new one when none is left or the idle one was
    /// closed before the request went out.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        method: &Method,
        path: &str,
    ) -> Result<(Response<Incoming>, SendRequest<Full<Bytes>>), Error> {
        let transport = |error: hyper::Error| Error::Transport {
            method: method.to_string(),
            path: path.to_string(),
            reason: error.to_string(),
        };
        let mut request = request;
        while let Some(mut sender) = self.idle() {
            if sender.is_closed() || sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(transport(error.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender.send_request(request).await.map_err(transport)?;
        Ok((response, sender))
    }

    fn idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn keep(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_KEPT {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Error> {
        let config = self.config();
        let endpoint = config.endpoint();
        let tcp = TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        // Small requests, answered one at a time: do not wait to fill a segment.
        let _ = tcp.set_nodelay(true);
        let stream = self
            .inner
            .connector
            .connect(self.inner.server_name.clone(), tcp)
            .await
            .map_err(|error| {
                match error
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(tls) => Error::Tls {
                        endpoint: endpoint.clone(),
                        reason: tls::describe(tls),
                    },
                    None => Error::Connect {
                        endpoint: endpoint.clone(),
                        source: error,
                    },
                }
            })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| Error::Transport {
                method: "CONNECT".into(),
                path: endpoint.clone(),
                reason: error.to_string(),
            })?;
        // The connection runs until both ends are done with it; its errors reach the request.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// An answer as a result: its `data`, or Proxmox's error.
fn answer(
    method: &Method,
    path: &str,
    status: StatusCode,
    reason: Option<String>,
    body: Bytes,
) -> Result<Answer, Error> {
    let origin = format!("{method} {path}");
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let errors: BTreeMap<String, String> = json
        .as_ref()
        .and_then(|json| json.get("errors"))
        .and_then(Value::as_object)
        .map(|errors| {
            errors
                .iter()
                .map(|(name, why)| {
                    let why = why.as_str().map_or_else(|| why.to_string(), str::to_string);
                    (name.clone(), why)
                })
                .collect()
        })
        .unwrap_or_default();
    if !status.is_success() || !errors.is_empty() {
        // Proxmox puts its message in the status line, and newer versions in the body too.
        let message = json
            .as_ref()
            .and_then(|json| json.get("message"))
            .and_then(Value::as_str)
            .map(|message| message.trim().to_string())
            .filter(|message| !message.is_empty())
            .or(reason.filter(|reason| !reason.trim().is_empty()))
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        return Err(Error::Api {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            message,
            errors,
        });
    }
    let Some(json) = json else {
        return Err(Error::Malformed(Malformed::new(
            origin,
            &body,
            "the answer is not JSON",
        )));
    };
    let Some(data) = json.get("data").cloned() else {
        return Err(Error::Malformed(Malformed::new(
            origin,
            &body,
            "the answer has no `data`",
        )));
    };
    Ok(Answer { data, body, origin })
}

/// An API path from its segments, each percent-encoded: `["nodes", "pve", "qemu", "100"]`
/// is `/nodes/pve/qemu/100`.
pub fn api_path(segments: &[&str]) -> String {
    let mut path = String::new();
    for segment in segments {
        path.push('/');
        percent_encode(segment, false, &mut path);
    }
    path
}

/// `application/x-www-form-urlencoded`: `name=value&...`, spaces as `+`.
pub fn form_encode(params: &[(&str, String)]) -> String {
    let mut form = String::new();
    for (index, (name, value)) in params.iter().enumerate() {
        if index > 0 {
            form.push('&');
        }
        percent_encode(name, true, &mut form);
        form.push('=');
        percent_encode(value, true, &mut form);
    }
    form
}

/// Everything but RFC 3986's unreserved characters as `%XX` (and a space as `+` in a form).
fn percent_encode(text: &str, form: bool, out: &mut String) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_as_proxmox_shows_it_and_hides_its_secret() {
        let token = ApiToken::parse("vigil@pve!actuator=5ecf2b0e-8c59-4d5a").unwrap();
        assert_eq!(token.name(), "vigil@pve!actuator");
        assert_eq!(
            token.header(),
            "PVEAPIToken=vigil@pve!actuator=5ecf2b0e-8c59-4d5a"
        );
        assert_eq!(format!("{token:?}"), "ApiToken(vigil@pve!actuator=***)");
        assert!(ApiToken::parse("vigil@pve=secret").is_err());
        assert!(ApiToken::parse("vigil!actuator=secret").is_err());
        assert!(ApiToken::parse("vigil@pve!actuator=").is_err());
        assert!(ApiToken::parse("vigil@pve!actuator=a b").is_err());
    }

    #[test]
    fn parameters_are_form_encoded_and_segments_percent_encoded() {
        assert_eq!(
            form_encode(&[("command", "shutdown".into()), ("note", "a b&c=d/é".into())]),
            "command=shutdown&note=a+b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(
            api_path(&["nodes", "pve", "tasks", "UPID:pve:1:root@pam!t:", "status"]),
            "/nodes/pve/tasks/UPID%3Apve%3A1%3Aroot%40pam%21t%3A/status"
        );
    }

    #[test]
    fn an_error_answer_carries_proxmox_s_message_and_field_errors() {
        let body = Bytes::from_static(
            br#"{"data": null, "message": "Parameter verification failed.\n", "errors": {"target": "target is local node."}}"#,
        );
        let error = answer(
            &Method::POST,
            "/nodes/pve/lxc/200/migrate",
            StatusCode::BAD_REQUEST,
            Some("Parameter verification failed.".into()),
            body,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "POST /nodes/pve/lxc/200/migrate: Proxmox answered 400: Parameter verification failed. (target: target is local node.)"
        );
        // An older Proxmox: the message only in the status line.
        let error = answer(
            &Method::POST,
            "/x",
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("VM 100 not running".into()),
            Bytes::from_static(br#"{"data": null}"#),
        )
        .unwrap_err();
        assert!(error.to_string().ends_with("500: VM 100 not running"));
    }

    #[test]
    fn an_answer_without_data_is_malformed() {
        let error = answer(
            &Method::GET,
            "/cluster/status",
            StatusCode::OK,
            None,
            Bytes::from_static(b"<html>proxy</html>"),
        )
        .unwrap_err();
        let Error::Malformed(malformed) = error else {
            panic!("{error:?}")
        };
        assert_eq!(malformed.origin, "GET /cluster/status");
        assert_eq!(malformed.payload, "<html>proxy</html>");
    }
}
