//! Wake-on-LAN on loopback: the packet Vigil sends is, byte for byte, the one Debian's
//! `wakeonlan` sends for the same MAC (the Debian package `wakeonlan` must be installed), and a
//! wake is repeated until the node is ready or the time is up.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use tokio::net::UdpSocket;
use vigil_adapters::wol::{MacAddress, Outcome, Sender, Target, wake_until_ready};

/// Longest wait for a datagram that has been sent on loopback: it never decides the test,
/// it only keeps a broken run from hanging.
const PATIENCE: Duration = Duration::from_secs(30);

async fn receiver() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0; 2048];
    let (length, from) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buffer))
        .await
        .expect("no datagram arrived")
        .unwrap();
    buffer.truncate(length);
    (buffer, from)
}

/// The datagrams already queued on `socket`, without waiting. Loopback delivers a datagram
/// as it is sent, so after a wake this counts any packet beyond those it reported.
fn queued(socket: &UdpSocket) -> usize {
    let mut buffer = vec![0; 2048];
    let mut count = 0;
    while socket.try_recv_from(&mut buffer).is_ok() {
        count += 1;
    }
    count
}

async fn sender() -> Sender {
    Sender::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_packet_is_the_one_debians_wakeonlan_sends() {
    let sender = sender().await;
    for text in [
        "74:56:3c:a1:20:02",
        "dc:a6:32:55:10:05",
        "FF:00:7f:80:01:fe",
    ] {
        let (theirs_socket, theirs_port) = receiver().await;
        let output = Command::new("wakeonlan")
            .args(["-i", "127.0.0.1", "-p", &theirs_port.to_string(), text])
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run `wakeonlan` ({error}): install the Debian package `wakeonlan`")
            });
        assert!(output.status.success(), "wakeonlan failed: {output:?}");
        let (theirs, _) = receive(&theirs_socket).await;

        let (ours_socket, ours_port) = receiver().await;
        let mac: MacAddress = text.parse().unwrap();
        let target = Target::new(mac, Ipv4Addr::LOCALHOST.into()).port(ours_port);
        sender.send(&target).await.unwrap();
        let (ours, from) = receive(&ours_socket).await;

        assert_eq!(ours.len(), 102, "{text}");
        assert_eq!(
            ours, theirs,
            "{text}: Vigil's packet differs from wakeonlan's"
        );
        assert_eq!(from, sender.local_addr().unwrap());
        // The dashed spelling is the same MAC.
        assert_eq!(text.replace(':', "-").parse::<MacAddress>().unwrap(), mac);
    }
}

#[tokio::test]
async fn a_wake_repeats_until_the_node_is_ready() {
    let (socket, port) = receiver().await;
    let sender = sender().await;
    let target = Target::new(
        "74:56:3c:a1:20:02".parse().unwrap(),
        Ipv4Addr::LOCALHOST.into(),
    )
    .port(port);
    let mut checks = 0;
    let ready_at_the_third_check = || {
        checks += 1;
        let ready = checks == 3;
        async move { ready }
    };
    let wake = wake_until_ready(
        &sender,
        &target,
        ready_at_the_third_check,
        Duration::from_millis(10),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(wake.outcome, Outcome::Ready);
    assert_eq!((wake.packets, wake.checks), (3, 3));
    for _ in 0..3 {
        assert_eq!(receive(&socket).await.0, target.packet());
    }
    assert_eq!(queued(&socket), 0, "more than 3 packets were sent");
}

#[tokio::test]
async fn a_node_that_never_wakes_times_out() {
    let (socket, port) = receiver().await;
    let sender = sender().await;
    let target = Target::new(
        "74:56:3c:a1:20:02".parse().unwrap(),
        Ipv4Addr::LOCALHOST.into(),
    )
    .port(port);
    let timeout = Duration::from_millis(300);
    let wake = wake_until_ready(
        &sender,
        &target,
        || async { false },
        Duration::from_millis(20),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(wake.outcome, Outcome::TimedOut);
    assert!(wake.packets >= 1);
    // Every packet is followed by a check, the last one included.
    assert_eq!(wake.checks, wake.packets);
    assert!(wake.elapsed >= timeout, "{wake:?}");
    for _ in 0..wake.packets {
        assert_eq!(receive(&socket).await.0, target.packet());
    }
    assert_eq!(queued(&socket), 0, "more packets arrived than were counted");
}

#[tokio::test]
async fn a_check_that_never_answers_times_out_too() {
    let (_socket, port) = receiver().await;
    let sender = sender().await;
    let target = Target::new(
        "74:56:3c:a1:20:02".parse().unwrap(),
        Ipv4Addr::LOCALHOST.into(),
    )
    .port(port);
    let wake = wake_until_ready(
        &sender,
        &target,
        std::future::pending::<bool>,
        Duration::from_millis(10),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(wake.outcome, Outcome::TimedOut);
    assert_eq!((wake.packets, wake.checks), (1, 1));
}
