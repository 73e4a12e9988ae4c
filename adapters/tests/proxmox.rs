//! The Proxmox client against fakepve, a fake of the Proxmox VE API (`pip install
//! 'fakepve[crypto]'`): one fake per test on 127.0.0.1, with its own certificate and the API
//! token `root@pam!vigil`. Every request the client makes in a test is checked against the API
//! schema fakepve ships, and must carry the token (`finish`).

#[path = "proxmox/fake.rs"]
mod fake;
#[path = "proxmox/schema.rs"]
mod schema;

use fake::Fake;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use schema::Schema;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_adapters::proxmox::cluster::Polled;
use vigil_adapters::proxmox::{
    ApiToken, Client, ClusterSource, Config, Error, Fingerprint, Guest, Names, Power, Trust,
};
use vigil_adapters::source::{open, symbol};

fn client(fake: &Fake, trust: Trust) -> Client {
    let token = ApiToken::parse(&fake.token).expect("the fake's token");
    let mut config = Config::new("127.0.0.1", token, trust);
    config.port = fake.port;
    config.request_timeout = Duration::from_secs(5);
    config.task_timeout = Duration::from_secs(10);
    config.poll_interval = Duration::from_millis(20);
    Client::new(config).expect("a client")
}

/// A client that trusts the fake's certificate as its CA.
fn trusting(fake: &Fake) -> Client {
    client(
        fake,
        Trust::ca_pem(&fake.certificate).expect("the fake's certificate"),
    )
}

/// Every request of the test was made with the token and is one the schema allows.
fn finish(fake: &mut Fake) {
    let schema = Schema::load(&fake.schema);
    let requests = fake.requests();
    assert!(!requests.is_empty(), "the fake saw no request");
    let mut wrong = Vec::new();
    for request in &requests {
        if request.auth != "token:root@pam!vigil" {
            wrong.push(format!(
                "{} {}: authorised by {}, not the token",
                request.method, request.path, request.auth
            ));
        }
        wrong.extend(schema.check(request));
    }
    assert!(
        wrong.is_empty(),
        "requests the Proxmox API does not allow:\n{}",
        wrong.join("\n")
    );
}

fn der(pem: &[u8]) -> CertificateDer<'static> {
    let mut reader = pem;
    rustls_pemfile::certs(&mut reader)
        .next()
        .expect("a certificate")
        .expect("PEM")
}

#[tokio::test]
async fn a_vm_starts_suspends_resumes_shuts_down_and_stops() {
    let mut fake = Fake::start();
    fake.add_vm(100, "nas-db", "pve1", "stopped");
    let client = trusting(&fake);
    let vm = Guest::qemu("pve1", 100);

    let started = client.power(&vm, Power::Start).await.unwrap();
    assert_eq!(started.upid.kind, "qmstart");
    assert_eq!(started.upid.node, "pve1");
    assert_eq!(started.upid.user, "root@pam!vigil");
    assert_eq!(started.warnings, 0);
    assert_eq!(fake.guest(100)["status"], "running");

    client.power(&vm, Power::Suspend).await.unwrap();
    assert_eq!(fake.guest(100)["qmpstatus"], "paused");
    client.power(&vm, Power::Resume).await.unwrap();
    assert_eq!(fake.guest(100)["qmpstatus"], "running");

    let shut = client.power(&vm, Power::Shutdown).await.unwrap();
    assert_eq!(shut.upid.kind, "qmshutdown");
    assert_eq!(fake.guest(100)["status"], "stopped");

    client.power(&vm, Power::Start).await.unwrap();
    let stopped = client.power(&vm, Power::Stop).await.unwrap();
    assert_eq!(stopped.upid.kind, "qmstop");
    assert_eq!(fake.guest(100)["status"], "stopped");
    finish(&mut fake);
}

#[tokio::test]
async fn a_container_starts_suspends_resumes_shuts_down_and_stops() {
    let mut fake = Fake::start();
    fake.add_ct(200, "photos", "pve1", "stopped");
    let client = trusting(&fake);
    let ct = Guest::lxc("pve1", 200);

    let started = client.power(&ct, Power::Start).await.unwrap();
    assert_eq!(started.upid.kind, "vzstart");
    assert_eq!(fake.guest(200)["status"], "running");

    // A container's suspend is a checkpoint: it stops, and resumes from the dump.
    let suspended = client.power(&ct, Power::Suspend).await.unwrap();
    assert_eq!(suspended.upid.kind, "vzsuspend");
    assert_eq!(fake.guest(200)["status"], "stopped");
    client.power(&ct, Power::Resume).await.unwrap();
    assert_eq!(fake.guest(200)["status"], "running");

    client.power(&ct, Power::Shutdown).await.unwrap();
    assert_eq!(fake.guest(200)["status"], "stopped");
    client.power(&ct, Power::Start).await.unwrap();
    client.power(&ct, Power::Stop).await.unwrap();
    assert_eq!(fake.guest(200)["status"], "stopped");
    finish(&mut fake);
}

#[tokio::test]
async fn guests_migrate_to_another_node() {
    let mut fake = Fake::start();
    fake.add_node("pve2", true);
    fake.add_ct(200, "photos", "pve1", "running");
    fake.add_ct(201, "media", "pve1", "stopped");
    fake.add_vm(100, "nas-db", "pve1", "running");
    let client = trusting(&fake);

    // A running container moves in restart mode and runs on the target.
    let moved = client
        .migrate(&Guest::lxc("pve1", 200), "pve2")
        .await
        .unwrap();
    assert_eq!(moved.upid.kind, "vzmigrate");
    assert_eq!(fake.guest(200)["node"], "pve2");
    assert_eq!(fake.guest(200)["status"], "running");
    // A stopped one simply moves.
    client
        .migrate(&Guest::lxc("pve1", 201), "pve2")
        .await
        .unwrap();
    assert_eq!(fake.guest(201)["node"], "pve2");
    assert_eq!(fake.guest(201)["status"], "stopped");
    // A VM's migration is a task too (fakepve answers it from the schema alone).
    client
        .migrate(&Guest::qemu("pve1", 100), "pve2")
        .await
        .unwrap();

    let posts: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path.ends_with("/migrate"))
        .map(|request| format!("{} {}", request.path, request.body))
        .collect();
    assert_eq!(
        posts,
        [
            "/api2/json/nodes/pve1/lxc/200/migrate target=pve2&restart=1",
            "/api2/json/nodes/pve1/lxc/201/migrate target=pve2",
            "/api2/json/nodes/pve1/qemu/100/migrate target=pve2",
        ]
    );
    finish(&mut fake);
}

#[tokio::test]
async fn a_node_shuts_down_and_another_node_wakes_it() {
    let mut fake = Fake::start();
    fake.add_node("pve2", true);
    let client = trusting(&fake);
    client.shutdown_node("pve2").await.unwrap();
    // The request goes to the API's node (pve1 here), which sends the packet; pve2 is the node
    // to wake. Proxmox does not forward this call to pve2, but fakepve answers 595 for any
    // path of a node it holds offline, so pve2 stays online in the fake.
    let mac = client.wake_node("pve2").await.unwrap();
    assert_eq!(mac.split(':').count(), 6, "{mac}");

    let bodies: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|request| format!("{} {} {}", request.method, request.path, request.body))
        .collect();
    assert_eq!(
        bodies,
        [
            "POST /api2/json/nodes/pve2/status command=shutdown",
            "POST /api2/json/nodes/pve2/wakeonlan ",
        ]
    );
    finish(&mut fake);
}

#[tokio::test]
async fn failed_tasks_and_refusals_carry_proxmox_s_message() {
    let mut fake = Fake::start();
    for vmid in [100, 101, 102, 103] {
        fake.add_vm(vmid, &format!("vm{vmid}"), "pve1", "stopped");
    }
    fake.add_ct(200, "photos", "pve1", "stopped");
    fake.add_vm(300, "far", "pve2", "stopped");
    let client = trusting(&fake);

    // A backup holds the lock: the start task ends in TASK ERROR.
    fake.command(json!({"op": "lock", "vmid": 100, "lock": "backup"}));
    let error = client
        .power(&Guest::qemu("pve1", 100), Power::Start)
        .await
        .unwrap_err();
    let Error::TaskFailed { upid, exitstatus } = &error else {
        panic!("{error}")
    };
    assert_eq!(exitstatus, "VM is locked (backup)");
    assert_eq!(
        error.to_string(),
        format!("task {upid} failed: VM is locked (backup)")
    );

    // One of Proxmox's catalogued errors, raised inside the worker.
    fake.command(json!({"op": "fail", "method": "POST",
        "suffix": "/nodes/pve1/qemu/101/status/start", "error": "qemu_exited_code"}));
    let error = client
        .power(&Guest::qemu("pve1", 101), Power::Start)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::TaskFailed { exitstatus, .. } if exitstatus == "QEMU exited with code 1"),
        "{error}"
    );

    // A task that ends with warnings did its work.
    fake.command(json!({"op": "set", "vmid": 102, "attr": "start_error", "value": "WARNINGS: 2"}));
    let done = client
        .power(&Guest::qemu("pve1", 102), Power::Start)
        .await
        .unwrap();
    assert_eq!(done.warnings, 2);

    // Refused before any task: Proxmox's status and message.
    let error = client
        .power(&Guest::qemu("pve1", 103), Power::Shutdown)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Api { status: 500, message, .. } if message == "VM 103 not running"),
        "{error}"
    );
    assert!(!error.is_transient());

    // Without quorum nothing moves.
    fake.command(json!({"op": "quorum", "quorate": false}));
    let error = client
        .power(&Guest::qemu("pve1", 103), Power::Start)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("Proxmox answered 500: cluster not ready - no quorum?"),
        "{error}"
    );
    fake.command(json!({"op": "quorum", "quorate": true}));

    // A parameter refused: the message for the field comes along.
    let error = client
        .migrate(&Guest::lxc("pve1", 200), "pve1")
        .await
        .unwrap_err();
    let Error::Api { status, errors, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(*status, 400);
    assert_eq!(errors["target"], "target is local node.");
    assert!(
        error
            .to_string()
            .ends_with("Parameter verification failed. (target: target is local node.)"),
        "{error}"
    );

    // A node that does not answer: pveproxy's 595, worth trying again later.
    fake.command(json!({"op": "node_online", "name": "pve2", "online": false}));
    let error = client
        .power(&Guest::qemu("pve2", 300), Power::Start)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Api { status: 595, message, .. } if message == "No route to host"),
        "{error}"
    );
    assert!(error.is_transient());
    finish(&mut fake);
}

#[tokio::test]
async fn a_hanging_task_times_out() {
    let mut fake = Fake::start();
    fake.add_vm(100, "nas-db", "pve1", "running");
    // The guest ignores its shutdown, and the fake's time runs at the real pace: the task
    // runs for Proxmox's shutdown timeout, a minute.
    fake.command(json!({"op": "set", "vmid": 100, "attr": "shutdown_secs", "value": 100000}));
    fake.command(json!({"op": "time_scale", "value": 1}));
    let client = trusting(&fake);
    let upid = client
        .start_power(&Guest::qemu("pve1", 100), Power::Shutdown)
        .await
        .unwrap();
    let error = client
        .wait_within(&upid, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::TaskTimeout { upid: timed_out, .. } if *timed_out == upid.to_string()),
        "{error}"
    );
    assert!(error.to_string().contains("still running after"));
    finish(&mut fake);
}

#[tokio::test]
async fn a_request_without_an_answer_times_out() {
    let mut fake = Fake::start();
    let token = ApiToken::parse(&fake.token).unwrap();
    let mut config = Config::new(
        "127.0.0.1",
        token,
        Trust::ca_pem(&fake.certificate).unwrap(),
    );
    config.port = fake.port;
    config.request_timeout = Duration::from_millis(300);
    let client = Client::new(config).unwrap();
    client.cluster_status().await.unwrap();
    fake.command(json!({"op": "hang", "secs": 1000}));
    let error = client.cluster_status().await.unwrap_err();
    assert!(
        matches!(&error, Error::Timeout { path, .. } if path == "/cluster/status"),
        "{error}"
    );
    assert!(error.is_transient());
    fake.command(json!({"op": "hang", "secs": 0}));
    finish(&mut fake);
}

#[tokio::test]
async fn only_the_pinned_certificate_or_the_configured_ca_is_trusted() {
    let mut fake = Fake::start();
    let genuine = Fingerprint::of(&der(&fake.certificate));
    // The pin as Proxmox shows it.
    let pinned = client(&fake, Trust::pin(&genuine.to_string()).unwrap());
    pinned.cluster_status().await.unwrap();

    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let wrong_pin = client(&fake, Trust::Pin(Fingerprint::of(stranger.cert.der())));
    let error = wrong_pin.cluster_status().await.unwrap_err();
    let Error::Tls { reason, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(
        *reason,
        format!(
            "the server's certificate has the fingerprint {genuine}, not the pinned {}",
            Fingerprint::of(stranger.cert.der())
        )
    );

    let other_ca = client(
        &fake,
        Trust::ca_pem(stranger.cert.pem().as_bytes()).unwrap(),
    );
    let error = other_ca.cluster_status().await.unwrap_err();
    assert!(
        matches!(&error, Error::Tls { reason, .. } if reason.contains("not signed by the configured CA")),
        "{error}"
    );
    finish(&mut fake);
}

/// A TLS server that presents `certificate` but signs the handshake with `key`.
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesServerCert for Presents {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Serves `{"data": []}` to every request over TLS, on a port of its own.
async fn serve(certificate: CertificateDer<'static>, key: &rcgen::KeyPair) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let certified = CertifiedKey::new(vec![certificate], signer);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Presents(Arc::new(certified))));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(mut stream) = acceptor.accept(stream).await else {
                continue;
            };
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let body = r#"{"data": []}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    port
}

#[tokio::test]
async fn a_server_with_the_pinned_certificate_but_not_its_key_is_refused() {
    // The certificate is public: pinning it must not let another key through.
    let genuine = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let pin = Trust::Pin(Fingerprint::of(genuine.cert.der()));
    let pinned = |port| {
        let token = ApiToken::parse("root@pam!vigil=secret").unwrap();
        let mut config = Config::new("127.0.0.1", token, pin.clone());
        config.port = port;
        config.request_timeout = Duration::from_secs(5);
        Client::new(config).unwrap()
    };

    let honest = serve(genuine.cert.der().clone(), &genuine.key_pair).await;
    let status = pinned(honest).cluster_status().await.unwrap();
    assert!(status.nodes.is_empty());

    let impostor = serve(genuine.cert.der().clone(), &other_key).await;
    let error = pinned(impostor).cluster_status().await.unwrap_err();
    assert!(
        matches!(&error, Error::Tls { reason, .. } if reason.contains("signature")),
        "{error}"
    );
}

#[tokio::test]
async fn the_cluster_state_becomes_the_policy_s_facts() {
    let mut fake = Fake::start();
    fake.add_node("pve2", true);
    fake.add_node("gaming", false);
    fake.add_vm(100, "nas-db", "pve1", "running");
    fake.add_ct(200, "photos", "pve1", "running");
    fake.add_vm(101, "backup", "pve1", "stopped");
    fake.add_vm(102, "scratch", "pve2", "running");
    fake.add_vm(103, "sdxl-batch", "gaming", "running");
    let client = trusting(&fake);
    let names = Names::same_names(["nas-db", "photos", "backup", "sdxl-batch"]).node("pve1", "pve");
    let mut source = ClusterSource::new(
        client.clone(),
        names,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    let start = Instant::now();

    let (polled, wait) = source.poll(start).await;
    assert_eq!(wait, Duration::from_secs(5));
    let Polled::Report(report) = polled else {
        panic!("{polled:?}")
    };
    assert!(report.retract.is_empty());
    assert_eq!(
        report.insert["member_online"],
        [vec![symbol("pve")], vec![symbol("pve2")]]
    );
    assert_eq!(
        report.insert["power_state"],
        [
            vec![symbol("gaming"), symbol("asleep"), open()],
            vec![symbol("pve"), symbol("up"), open()],
            vec![symbol("pve2"), symbol("up"), open()],
        ]
    );
    // sdxl-batch's node does not answer, so its status is unknown; scratch is no workload.
    assert_eq!(
        report.insert["running"],
        [
            vec![symbol("nas-db"), symbol("pve")],
            vec![symbol("photos"), symbol("pve")]
        ]
    );
    assert_eq!(source.reported().quorate, Some(true));
    assert_eq!(source.reported().unmapped, ["qemu 102 (scratch) on pve2"]);

    // Nothing changed, nothing to report.
    let (polled, _) = source.poll(start).await;
    assert!(
        matches!(&polled, Polled::Report(report) if report.is_empty()),
        "{polled:?}"
    );

    // photos stops, gaming wakes up with sdxl-batch on it.
    client
        .power(&Guest::lxc("pve1", 200), Power::Stop)
        .await
        .unwrap();
    fake.command(json!({"op": "node_online", "name": "gaming", "online": true}));
    let (polled, _) = source.poll(start).await;
    let Polled::Report(report) = polled else {
        panic!("{polled:?}")
    };
    assert_eq!(
        report.retract["running"],
        [vec![symbol("photos"), symbol("pve")]]
    );
    assert_eq!(report.insert["member_online"], [vec![symbol("gaming")]]);
    assert_eq!(
        report.insert["power_state"],
        [vec![symbol("gaming"), symbol("up"), open()]]
    );
    assert_eq!(
        report.insert["running"],
        [vec![symbol("sdxl-batch"), symbol("gaming")]]
    );

    // Quorum lost: the policy computes quorum from the members; the flag is kept for the log.
    fake.command(json!({"op": "quorum", "quorate": false}));
    let (polled, _) = source.poll(start).await;
    assert!(
        matches!(&polled, Polled::Report(report) if report.is_empty()),
        "{polled:?}"
    );
    assert_eq!(source.reported().quorate, Some(false));

    // A proxy's page instead of the answer: malformed, and nothing retracted.
    let before = source.reported().clone();
    fake.command(
        json!({"op": "fail", "method": "GET", "suffix": "/cluster/status",
        "status": 200, "message": "<html>502 Bad Gateway</html>", "html": true, "times": 1}),
    );
    let (polled, wait) = source.poll(start).await;
    let Polled::Malformed(malformed) = polled else {
        panic!("{polled:?}")
    };
    assert_eq!(malformed.origin, "GET /cluster/status");
    assert_eq!(malformed.payload, "<html>502 Bad Gateway</html>");
    assert_eq!(wait, Duration::from_secs(5));
    assert_eq!(*source.reported(), before);

    // Silent for a minute: every fact retracted, once.
    assert!(source.stale(start + Duration::from_secs(59)).is_none());
    let gone = source.stale(start + Duration::from_secs(60)).unwrap();
    assert!(gone.insert.is_empty());
    assert_eq!(gone.retract["member_online"].len(), 3);
    assert_eq!(gone.retract["power_state"].len(), 3);
    assert_eq!(gone.retract["running"].len(), 2);
    assert!(source.stale(start + Duration::from_secs(120)).is_none());
    finish(&mut fake);
}
