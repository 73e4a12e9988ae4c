//! Wake-on-LAN: the packet that wakes a sleeping node, and sending it until the node is up.
//!
//! A network card that sleeps with Wake-on-LAN armed watches every frame for its *magic
//! packet*: six bytes `0xFF`, then its own MAC address sixteen times (102 bytes), optionally
//! followed by a SecureOn password of four or six bytes that cards configured with one
//! require. The card does not care how the frame got there; by convention it travels as a UDP
//! datagram to the discard port (9) of the subnet's broadcast address, so that it reaches the
//! sleeping node's segment without an ARP entry for a machine that cannot answer ARP. Sending
//! to a broadcast address needs `SO_BROADCAST` on the socket, which [`Sender`] sets.
//!
//! Nothing answers a magic packet: a lost datagram, a switch that had forgotten the port, a
//! card that was still settling into its sleep state all look alike from here. So the wake is
//! *repeated until ready*: [`wake_until_ready`] sends a packet, waits an interval, asks the
//! caller's readiness check (a ping, an SSH banner, the node's agent reporting in), and sends
//! again until the check says yes or the timeout passes. A node that wakes on the first packet
//! and ignores the later ones is the common case; the extra packets are harmless.
//!
//! The rate limit that keeps anything from power-cycling hardware too often is not here: it is
//! the policy's (`wake_deferred` in rules/wake.dl) and the reconciler's. This module only
//! sends what it is asked to.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The port magic packets go to unless configured otherwise: discard.
pub const DEFAULT_PORT: u16 = 9;

/// What went wrong with a wake.
#[derive(Debug, thiserror::Error)]
pub enum WolError {
    #[error(
        "`{input}` is not a MAC address: {reason} (write it as aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff)"
    )]
    BadMac { input: String, reason: String },
    #[error(
        "`{input}` is not a SecureOn password: {reason} (write 4 or 6 bytes in hex, as aa:bb:cc:dd or aa:bb:cc:dd:ee:ff)"
    )]
    BadPassword { input: String, reason: String },
    #[error("cannot open a UDP socket on {local}: {source}")]
    Bind {
        local: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot send the magic packet to {to}: {source}")]
    Send {
        to: SocketAddr,
        source: std::io::Error,
    },
}

/// A MAC address, as a node's inventory gives it (`node_mac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = WolError;

    /// Six groups of two hex digits, separated all by `:` or all by `-`, in either case.
    fn from_str(input: &str) -> Result<MacAddress, WolError> {
        let bytes = hex_groups(input.trim()).map_err(|reason| WolError::BadMac {
            input: input.to_string(),
            reason,
        })?;
        let octets: [u8; 6] = bytes.as_slice().try_into().map_err(|_| WolError::BadMac {
            input: input.to_string(),
            reason: format!("it has {} bytes, not 6", bytes.len()),
        })?;
        Ok(MacAddress(octets))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A SecureOn password: 4 or 6 bytes that follow the MAC repetitions, for cards that
/// require one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureOn(Vec<u8>);

impl SecureOn {
    pub fn new(bytes: &[u8]) -> Result<SecureOn, WolError> {
        match bytes.len() {
            4 | 6 => Ok(SecureOn(bytes.to_vec())),
            length => Err(WolError::BadPassword {
                input: hex(bytes),
                reason: format!("it has {length} bytes"),
            }),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for SecureOn {
    type Err = WolError;

    fn from_str(input: &str) -> Result<SecureOn, WolError> {
        let bad = |reason: String| WolError::BadPassword {
            input: input.to_string(),
            reason,
        };
        let bytes = hex_groups(input.trim()).map_err(bad)?;
        match bytes.len() {
            4 | 6 => Ok(SecureOn(bytes)),
            length => Err(bad(format!("it has {length} bytes"))),
        }
    }
}

/// Groups of two hex digits separated by one separator, `:` or `-`, used throughout.
fn hex_groups(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let separator = match (text.contains(':'), text.contains('-')) {
        (true, true) => return Err("it mixes `:` and `-`".into()),
        (true, false) => ':',
        (false, true) => '-',
        (false, false) => return Err("its bytes are not separated by `:` or `-`".into()),
    };
    text.split(separator)
        .enumerate()
        .map(|(index, group)| {
            if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "byte {} is `{group}`, not two hex digits",
                    index + 1
                ));
            }
            u8::from_str_radix(group, 16).map_err(|error| error.to_string())
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The magic packet for `mac`: 6 bytes `0xFF`, the MAC 16 times, then the password if any
/// (102, 106 or 108 bytes).
pub fn magic_packet(mac: &MacAddress, password: Option<&SecureOn>) -> Vec<u8> {
    let mut packet = Vec::with_capacity(6 + 16 * 6 + 6);
    packet.extend_from_slice(&[0xFF; 6]);
    for _ in 0..16 {
        packet.extend_from_slice(&mac.0);
    }
    if let Some(password) = password {
        packet.extend_from_slice(password.bytes());
    }
    packet
}

/// A node to wake: its MAC, where the packet goes (the broadcast address of its subnet and a
/// port), and its SecureOn password if its card needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mac: MacAddress,
    pub to: SocketAddr,
    pub password: Option<SecureOn>,
}

impl Target {
    /// A target reached through `broadcast` on the default port, without a password.
    pub fn new(mac: MacAddress, broadcast: IpAddr) -> Target {
        Target {
            mac,
            to: SocketAddr::new(broadcast, DEFAULT_PORT),
            password: None,
        }
    }

    pub fn port(mut self, port: u16) -> Target {
        self.to.set_port(port);
        self
    }

    pub fn password(mut self, password: SecureOn) -> Target {
        self.password = Some(password);
        self
    }

    pub fn packet(&self) -> Vec<u8> {
        magic_packet(&self.mac, self.password.as_ref())
    }
}

/// What a dry run prints instead of sending.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Wake-on-LAN: magic packet for {} to {}",
            self.mac, self.to
        )?;
        if self.password.is_some() {
            write!(f, " with its SecureOn password")?;
        }
        Ok(())
    }
}

/// A UDP socket allowed to send to broadcast addresses.
#[derive(Debug)]
pub struct Sender {
    socket: UdpSocket,
}

impl Sender {
    /// Binds to `local` (port 0 for any) and sets `SO_BROADCAST`.
    pub async fn bind(local: SocketAddr) -> Result<Sender, WolError> {
        let bind = |source| WolError::Bind { local, source };
        let socket = UdpSocket::bind(local).await.map_err(bind)?;
        socket.set_broadcast(true).map_err(bind)?;
        Ok(Sender { socket })
    }

    /// A sender on any local address of the family of `to`, for sending there.
    pub async fn for_destination(to: SocketAddr) -> Result<Sender, WolError> {
        let any: IpAddr = match to {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        Sender::bind(SocketAddr::new(any, 0)).await
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one magic packet to the target.
    pub async fn send(&self, target: &Target) -> Result<(), WolError> {
        let packet = target.packet();
        let send = |source| WolError::Send {
            to: target.to,
            source,
        };
        let sent = self
            .socket
            .send_to(&packet, target.to)
            .await
            .map_err(send)?;
        if sent != packet.len() {
            return Err(send(std::io::Error::other(format!(
                "only {sent} of {} bytes went out",
                packet.len()
            ))));
        }
        Ok(())
    }
}

/// How a wake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The readiness check said yes.
    Ready,
    /// The timeout passed first.
    TimedOut,
}

/// A wake's outcome, with how many packets it took and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub outcome: Outcome,
    pub packets: u32,
    /// Readiness checks made.
    pub checks: u32,
    pub elapsed: Duration,
}

/// Sends a magic packet, waits `interval`, asks `ready`, and repeats until it answers true
/// (ready) or `timeout` has passed since the first packet (timed out). A check that is still
/// running when the time is up is abandoned. Sending fails only if the socket does.
pub async fn wake_until_ready<Check, Answer>(
    sender: &Sender,
    target: &Target,
    mut ready: Check,
    interval: Duration,
    timeout: Duration,
) -> Result<Wake, WolError>
where
    Check: FnMut() -> Answer,
    Answer: Future<Output = bool>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut packets = 0;
    let mut checks = 0;
    let outcome = loop {
        sender.send(target).await?;
        packets += 1;
        tokio::time::sleep_until((Instant::now() + interval).min(deadline)).await;
        checks += 1;
        match tokio::time::timeout_at(deadline, ready()).await {
            Ok(true) => break Outcome::Ready,
            Ok(false) if Instant::now() < deadline => continue,
            Ok(false) | Err(_) => break Outcome::TimedOut,
        }
    };
    Ok(Wake {
        outcome,
        packets,
        checks,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_read_with_colons_or_dashes_in_either_case() {
        let expected = MacAddress([0x74, 0x56, 0x3c, 0xa1, 0x20, 0x02]);
        for text in [
            "74:56:3c:a1:20:02",
            "74-56-3C-A1-20-02",
            " 74:56:3C:a1:20:02\n",
        ] {
            assert_eq!(text.parse::<MacAddress>().unwrap(), expected, "{text:?}");
        }
        assert_eq!(expected.to_string(), "74:56:3c:a1:20:02");
    }

    #[test]
    fn a_bad_mac_says_what_is_wrong() {
        let cases = [
            ("", "it is empty"),
            ("74563ca12002", "not separated"),
            ("74:56:3c:a1:20", "5 bytes, not 6"),
            ("74:56:3c:a1:20:02:03", "7 bytes, not 6"),
            ("74:56-3c:a1:20:02", "mixes"),
            ("74:56:3c:a1:20:zz", "byte 6 is `zz`"),
            ("74:56:3c:a1:20:2", "byte 6 is `2`"),
            ("74:56::a1:20:02", "byte 3 is ``"),
            ("+4:56:3c:a1:20:02", "byte 1 is `+4`"),
        ];
        for (text, reason) in cases {
            let error = text.parse::<MacAddress>().unwrap_err().to_string();
            assert!(error.contains(reason), "{text:?}: {error}");
            assert!(error.contains("aa:bb:cc:dd:ee:ff"), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_magic_packet_is_six_ff_then_the_mac_sixteen_times() {
        let mac: MacAddress = "74:56:3c:a1:20:02".parse().unwrap();
        let packet = magic_packet(&mac, None);
        assert_eq!(packet.len(), 102);
        assert_eq!(packet[..6], [0xFF; 6]);
        for repetition in packet[6..].chunks(6) {
            assert_eq!(repetition, mac.0);
        }
    }

    #[test]
    fn a_secureon_password_follows_the_repetitions() {
        let mac: MacAddress = "74:56:3c:a1:20:02".parse().unwrap();
        for (text, length) in [("de:ad:be:ef", 106), ("01-02-03-04-05-06", 108)] {
            let password: SecureOn = text.parse().unwrap();
            let packet = magic_packet(&mac, Some(&password));
            assert_eq!(packet.len(), length);
            assert_eq!(&packet[102..], password.bytes());
            assert_eq!(packet[..102], magic_packet(&mac, None));
        }
        let error = "de:ad:be".parse::<SecureOn>().unwrap_err().to_string();
        assert!(error.contains("3 bytes"), "{error}");
        assert!(SecureOn::new(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn a_target_prints_like_the_dry_run() {
        let target = Target::new(
            "74:56:3c:a1:20:02".parse().unwrap(),
            Ipv4Addr::BROADCAST.into(),
        );
        assert_eq!(
            target.to_string(),
            "Wake-on-LAN: magic packet for 74:56:3c:a1:20:02 to 255.255.255.255:9"
        );
        assert_eq!(target.port(7).to.port(), 7);
    }
}
