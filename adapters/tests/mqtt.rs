//! The MQTT source against a real broker: Debian's mosquitto on loopback, fed by
//! `mosquitto_pub` with the payloads Shelly and Tasmota plugs send.

mod spawned;

use spawned::{Scratch, Server, free_port, program, wait_for_port};
use std::process::Command;
use std::time::Duration;
use tokio::sync::mpsc;
use vigil_adapters::mqtt::{self, Column, Kind, MqttConfig, Plug, Update};
use vigil_adapters::source::{Report, number, open, symbol};
use vigil_engine::trace::Field;

/// A mosquitto broker on 127.0.0.1, anonymous or with one user, over TCP or TLS.
struct Broker {
    port: u16,
    scratch: Scratch,
    credentials: Option<(String, String)>,
    tls: Option<Tls>,
    server: Option<Server>,
}

/// The certificates of a TLS broker, made for the test: a CA, the broker's certificate for
/// 127.0.0.1 signed by it, and a client's certificate signed by it too.
struct Tls {
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    /// Whether the broker requires a client certificate.
    require_certificate: bool,
}

/// A CA: its certificate, and what signs with it.
struct Authority {
    certificate: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let certificate = params.self_signed(&key).expect("a CA certificate");
        Authority { certificate, key }
    }

    /// A certificate for `names` signed by this CA, and its key, both PEM.
    fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("a key");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("a signed certificate");
        (certificate.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.certificate.pem()
    }
}

impl Broker {
    fn start(credentials: Option<(&str, &str)>) -> Broker {
        Broker::start_with(credentials, None)
    }

    /// A broker whose only listener speaks TLS, with a certificate that `authority` signed
    /// for 127.0.0.1; with `require_certificate`, clients must present one it signed too.
    fn start_tls(authority: &Authority, require_certificate: bool) -> Broker {
        Broker::start_with(None, Some((authority, require_certificate)))
    }

    fn start_with(credentials: Option<(&str, &str)>, tls: Option<(&Authority, bool)>) -> Broker {
        let scratch = Scratch::new("mosquitto");
        let port = free_port();
        let mut config = format!("listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n");
        let tls = tls.map(|(authority, require_certificate)| {
            let write = |name: &str, pem: &str| {
                let path = scratch.path(name);
                std::fs::write(&path, pem).expect("write a certificate");
                path
            };
            let ca = write("ca.pem", &authority.pem());
            let (server_cert, server_key) =
                authority.issue("mosquitto", &["127.0.0.1", "localhost"]);
            let server_cert = write("server.pem", &server_cert);
            let server_key = write("server.key", &server_key);
            let (client_cert, client_key) = authority.issue("vigil", &["vigil"]);
            let client_cert = write("client.pem", &client_cert);
            let client_key = write("client.key", &client_key);
            config += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
                ca.display(),
                server_cert.display(),
                server_key.display()
            );
            Tls {
                ca,
                client_cert,
                client_key,
                require_certificate,
            }
        });
        if let Some((user, password)) = credentials {
            let passwords = scratch.path("passwords");
            let status = Command::new(program("mosquitto_passwd", "mosquitto"))
                .arg("-b")
                .arg("-c")
                .arg(&passwords)
                .arg(user)
                .arg(password)
                .status()
                .expect("run mosquitto_passwd");
            assert!(status.success(), "mosquitto_passwd failed");
            config += &format!(
                "allow_anonymous false\npassword_file {}\n",
                passwords.display()
            );
        } else {
            config += "allow_anonymous true\n";
        }
        std::fs::write(scratch.path("mosquitto.conf"), config).expect("write the config");
        let mut broker = Broker {
            port,
            scratch,
            credentials: credentials.map(|(user, password)| (user.into(), password.into())),
            tls,
            server: None,
        };
        broker.resume();
        broker
    }

    /// (Re)starts the broker on its port.
    fn resume(&mut self) {
        let mut command = Command::new(program("mosquitto", "mosquitto"));
        command.arg("-c").arg(self.scratch.path("mosquitto.conf"));
        let server = Server::spawn(&mut command, self.scratch.path("mosquitto.log"));
        wait_for_port(self.port, "mosquitto", &server.log);
        self.server = Some(server);
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    fn publish(&self, topic: &str, payload: &str) {
        let mut command = Command::new(program("mosquitto_pub", "mosquitto-clients"));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-m", payload]);
        if let Some((user, password)) = &self.credentials {
            command.args(["-u", user, "-P", password]);
        }
        if let Some(tls) = &self.tls {
            command.arg("--cafile").arg(&tls.ca);
            if tls.require_certificate {
                command
                    .arg("--cert")
                    .arg(&tls.client_cert)
                    .arg("--key")
                    .arg(&tls.client_key);
            }
        }
        let output = command.output().expect("run mosquitto_pub");
        assert!(
            output.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn config(&self, client: &str, plugs: Vec<Plug>) -> MqttConfig {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            client_id: client.into(),
            username: self.credentials.as_ref().map(|(user, _)| user.clone()),
            password: self
                .credentials
                .as_ref()
                .map(|(_, password)| password.clone()),
            stale_after_s: 3600.0,
            retry_first_s: 0.05,
            retry_cap_s: 0.5,
            ca_file: self.tls.as_ref().map(|tls| tls.ca.clone()),
            plugs,
            ..MqttConfig::default()
        }
    }
}

fn plug(kind: Kind, id: &str, meter: &str, column: Column) -> Plug {
    Plug {
        kind,
        id: id.into(),
        component: None,
        channel: None,
        meter: meter.into(),
        column,
        inverted: false,
    }
}

fn plugs() -> Vec<Plug> {
    vec![
        plug(Kind::Shelly, "shellyplusplugs-rack", "rack", Column::Draw),
        plug(Kind::Tasmota, "freezer", "house", Column::Draw),
        plug(Kind::Tasmota, "balcony", "house", Column::Solar),
    ]
}

fn shelly(watts: &str) -> String {
    format!(
        r#"{{"src":"shellyplusplugs-rack","dst":"shellyplusplugs-rack/events","method":"NotifyStatus","params":{{"ts":1700000000.52,"switch:0":{{"id":0,"apower":{watts},"current":0.061,"voltage":231.4}}}}}}"#
    )
}

fn tasmota(watts: &str) -> String {
    format!(
        r#"{{"Time":"2024-01-11T21:57:38","ENERGY":{{"TotalStartTime":"2023-10-21T22:15:00","Total":3.705,"Yesterday":0.028,"Today":0.026,"Period":1,"Power":{watts},"ApparentPower":47,"ReactivePower":12,"Factor":0.96,"Voltage":233,"Current":0.201}}}}"#
    )
}

/// The next update, within a generous limit (the limit only keeps a broken test from hanging).
async fn next(updates: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(30), updates.recv())
        .await
        .expect("an update within 30 s")
        .expect("the source is running")
}

async fn connected(updates: &mut mpsc::Receiver<Update>) {
    loop {
        match next(updates).await {
            Update::Connected { refused } => {
                assert!(refused.is_empty(), "refused: {refused:?}");
                return;
            }
            Update::Disconnected { .. } => continue,
            other => panic!("expected a connection, got {other:?}"),
        }
    }
}

async fn report(updates: &mut mpsc::Receiver<Update>) -> (String, Report) {
    match next(updates).await {
        Update::Report { event, report, .. } => (event, report),
        other => panic!("expected a report, got {other:?}"),
    }
}

fn row(meter: &str, draw: i64, solar: i64) -> Vec<Field> {
    vec![symbol(meter), number(draw), number(solar)]
}

fn inserted(report: &Report) -> Vec<Vec<Field>> {
    assert!(report.retract.is_empty(), "{report:?}");
    report.insert[mqtt::RELATION].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_become_meter_rows_and_garbage_is_dropped_across_a_broker_restart() {
    let mut broker = Broker::start(None);
    let (sender, mut updates) = mpsc::channel(64);
    let source = tokio::spawn(mqtt::run(
        broker.config("vigil-test-readings", plugs()),
        sender,
    ));
    connected(&mut updates).await;

    broker.publish("shellyplusplugs-rack/events/rpc", &shelly("12.3"));
    let (event, first) = report(&mut updates).await;
    assert_eq!(event, "mqtt: shellyplusplugs-rack/events/rpc");
    assert_eq!(inserted(&first), [row("rack", 12, 0)]);
    let entry = first.entry(&event, Some(1_700_000_000));
    assert_eq!(entry.insert[mqtt::RELATION], [row("rack", 12, 0)]);

    broker.publish("tele/freezer/SENSOR", &tasmota("45"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("house", 45, 0)]
    );
    broker.publish("tele/balcony/SENSOR", &tasmota("600"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("house", 45, 600)]
    );

    // Garbage is dropped and counted; the good reading right after it still arrives.
    broker.publish("tele/freezer/SENSOR", "\u{1}\u{2} garbage");
    broker.publish("tele/freezer/SENSOR", &tasmota("\"12 W\""));
    broker.publish("shellyplusplugs-rack/events/rpc", &shelly("250000"));
    broker.publish("tele/freezer/SENSOR", &tasmota("50"));
    for (count, reason) in [
        (1, "not JSON"),
        (2, "not a number of watts"),
        (3, "unit mistake"),
    ] {
        match next(&mut updates).await {
            Update::Malformed { malformed, dropped } => {
                assert_eq!(dropped, count);
                assert!(malformed.reason.contains(reason), "{malformed}");
            }
            other => panic!("expected a dropped payload, got {other:?}"),
        }
    }
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("house", 50, 600)]
    );

    // The broker restarts: the source reconnects, subscribes again, and reads on.
    broker.stop();
    match next(&mut updates).await {
        Update::Disconnected { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("expected a disconnection, got {other:?}"),
    }
    broker.resume();
    connected(&mut updates).await;
    broker.publish("shellyplusplugs-rack/events/rpc", &shelly("20"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("rack", 20, 0)]
    );

    drop(updates);
    // With nobody listening, the source ends at its next update.
    broker.publish("tele/freezer/SENSOR", &tasmota("51"));
    tokio::time::timeout(Duration::from_secs(30), source)
        .await
        .expect("the source ends")
        .expect("the task")
        .expect("a clean end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_used() {
    let broker = Broker::start(Some(("vigil", "s3cret; with spaces")));

    let (sender, mut refused) = mpsc::channel(64);
    let mut wrong = broker.config("vigil-test-wrong", plugs());
    wrong.password = Some("guess".into());
    let _wrong = tokio::spawn(mqtt::run(wrong, sender));
    match next(&mut refused).await {
        Update::Disconnected { reason, retry_in } => {
            assert!(reason.contains("refused"), "{reason}");
            assert_eq!(retry_in, Duration::from_millis(50));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let (sender, mut updates) = mpsc::channel(64);
    let _source = tokio::spawn(mqtt::run(
        broker.config("vigil-test-right", plugs()),
        sender,
    ));
    connected(&mut updates).await;
    broker.publish("tele/balcony/SENSOR", &tasmota("[300, 120.4]"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("house", 0, 420)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_plug_is_retracted() {
    let broker = Broker::start(None);
    let mut config = broker.config("vigil-test-silence", plugs());
    config.stale_after_s = 0.5;
    let (sender, mut updates) = mpsc::channel(64);
    let _source = tokio::spawn(mqtt::run(config, sender));
    connected(&mut updates).await;
    broker.publish("shellyplusplugs-rack/status/switch:0", r#"{"id":0,"source":"init","output":true,"apower":230.0,"voltage":230.1,"current":1.0,"aenergy":{"total":5.0}}"#);
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("rack", 230, 0)]
    );
    let (event, silence) = report(&mut updates).await;
    assert_eq!(event, "mqtt: silent: shelly shellyplusplugs-rack switch:0");
    assert!(silence.insert.is_empty());
    assert_eq!(
        silence.retract[mqtt::RELATION],
        [vec![symbol("rack"), open(), open()]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_arrive_over_tls_with_a_client_certificate() {
    let authority = Authority::new("Vigil test CA");
    let broker = Broker::start_tls(&authority, true);
    let tls = broker.tls.as_ref().unwrap();

    // Without its certificate, the client is turned away by the broker.
    let (sender, mut refused) = mpsc::channel(64);
    let _anonymous = tokio::spawn(mqtt::run(
        broker.config("vigil-test-no-certificate", plugs()),
        sender,
    ));
    match next(&mut refused).await {
        Update::Disconnected { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("expected a refusal, got {other:?}"),
    }

    let mut config = broker.config("vigil-test-tls", plugs());
    config.client_cert_file = Some(tls.client_cert.clone());
    config.client_key_file = Some(tls.client_key.clone());
    let (sender, mut updates) = mpsc::channel(64);
    let _source = tokio::spawn(mqtt::run(config, sender));
    connected(&mut updates).await;
    broker.publish("tele/freezer/SENSOR", &tasmota("45"));
    let (event, readings) = report(&mut updates).await;
    assert_eq!(event, "mqtt: tele/freezer/SENSOR");
    assert_eq!(inserted(&readings), [row("house", 45, 0)]);
    broker.publish("shellyplusplugs-rack/events/rpc", &shelly("99.6"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("rack", 100, 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_signed_by_another_ca_is_refused() {
    let authority = Authority::new("Vigil test CA");
    let broker = Broker::start_tls(&authority, false);

    // The broker's own CA: the reading arrives.
    let (sender, mut updates) = mpsc::channel(64);
    let _source = tokio::spawn(mqtt::run(
        broker.config("vigil-test-right-ca", plugs()),
        sender,
    ));
    connected(&mut updates).await;
    broker.publish("tele/balcony/SENSOR", &tasmota("600"));
    assert_eq!(
        inserted(&report(&mut updates).await.1),
        [row("house", 0, 600)]
    );

    // Another CA, and one that looks the same by name: the handshake fails, and says why,
    // at every attempt.
    for (name, cause) in [
        ("Another CA", "UnknownIssuer"),
        ("Vigil test CA", "BadSignature"),
    ] {
        let stranger = Authority::new(name);
        let wrong_ca = broker.scratch.path("stranger.pem");
        std::fs::write(&wrong_ca, stranger.pem()).unwrap();
        let mut config = broker.config("vigil-test-wrong-ca", plugs());
        config.ca_file = Some(wrong_ca);
        let (sender, mut refused) = mpsc::channel(64);
        let wrong = tokio::spawn(mqtt::run(config, sender));
        for _ in 0..2 {
            match next(&mut refused).await {
                Update::Disconnected { reason, .. } => {
                    assert!(reason.contains("invalid peer certificate"), "{reason}");
                    assert!(reason.contains(cause), "{reason}");
                    assert!(
                        reason.contains("is `ca_file` the CA that signed it"),
                        "{reason}"
                    );
                }
                other => panic!("expected a refused certificate, got {other:?}"),
            }
        }
        wrong.abort();
    }

    // A plain client on the TLS port gets no session either.
    let mut plain = broker.config("vigil-test-plain", plugs());
    plain.ca_file = None;
    let (sender, mut refused) = mpsc::channel(64);
    let _plain = tokio::spawn(mqtt::run(plain, sender));
    match next(&mut refused).await {
        Update::Disconnected { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("expected a failed connection, got {other:?}"),
    }
}

#[tokio::test]
async fn unusable_tls_files_stop_the_source_with_their_names() {
    let scratch = Scratch::new("mqtt-tls");
    let authority = Authority::new("Vigil test CA");
    let (cert, key) = authority.issue("vigil", &["vigil"]);
    let write = |name: &str, text: &str| {
        let path = scratch.path(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &authority.pem());
    let cert = write("client.pem", &cert);
    let key = write("client.key", &key);
    let garbage = write("garbage.pem", "not a certificate\n");
    let missing = scratch.path("missing.pem");

    let base = MqttConfig {
        plugs: plugs(),
        ..MqttConfig::default()
    };
    let cases: Vec<(MqttConfig, String)> = vec![
        (
            MqttConfig {
                ca_file: Some(missing.clone()),
                ..base.clone()
            },
            format!("mqtt config: `ca_file` {}: cannot read:", missing.display()),
        ),
        (
            MqttConfig {
                ca_file: Some(garbage.clone()),
                ..base.clone()
            },
            format!(
                "mqtt config: `ca_file` {}: no certificate in it",
                garbage.display()
            ),
        ),
        (
            MqttConfig {
                ca_file: Some(ca.clone()),
                client_cert_file: Some(cert.clone()),
                ..base.clone()
            },
            "a `client_cert_file` needs its `client_key_file`".into(),
        ),
        (
            MqttConfig {
                ca_file: Some(ca.clone()),
                client_cert_file: Some(cert.clone()),
                client_key_file: Some(cert.clone()),
                ..base.clone()
            },
            format!("`client_key_file` {}: no private key in it", cert.display()),
        ),
        (
            MqttConfig {
                client_cert_file: Some(cert.clone()),
                client_key_file: Some(key.clone()),
                ..base.clone()
            },
            "a client certificate is for TLS, which needs a `ca_file`".into(),
        ),
    ];
    for (config, reason) in cases {
        let (sender, _updates) = mpsc::channel(4);
        let error = mqtt::run(config, sender).await.unwrap_err().to_string();
        assert!(error.contains(&reason), "{error}\nshould say: {reason}");
    }
    let good = MqttConfig {
        ca_file: Some(ca),
        client_cert_file: Some(cert),
        client_key_file: Some(key),
        ..base
    };
    assert!(mqtt::tls(&good).unwrap().is_some());
}
