//! Whom the client trusts: a CA certificate, or one pinned certificate.
//!
//! With a CA ([`Trust::Ca`]) the server's chain and name are checked by rustls's WebPKI
//! verifier, as for any HTTPS server, against that CA alone. With a pin ([`Trust::Pin`]) the
//! [`PinnedCertificate`] verifier accepts exactly the certificate whose SHA-256 fingerprint
//! (of its DER encoding) is the pinned one, whoever signed it and whatever name it carries,
//! as Proxmox's own tools do with a fingerprint. The pin only replaces the chain and the name:
//! the handshake's signature is verified with the key of that certificate, with the ring
//! provider's algorithms, so a server that merely presents a copy of the certificate (it is
//! public) cannot complete the handshake. Validity dates are not checked for a pin: pinning a
//! certificate is trusting that certificate, and Proxmox replaces it (and so its fingerprint)
//! when it renews it.

use super::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::fmt;
use std::sync::Arc;

/// The SHA-256 fingerprint of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint as Proxmox shows it (`AA:BB:...`, 32 pairs); lowercase, and pairs
    /// without colons, are accepted too.
    pub fn parse(text: &str) -> Result<Fingerprint, Error> {
        let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
        let wrong = || {
            Error::Config(format!(
                "`{text}` is not a SHA-256 fingerprint: expected 32 hexadecimal pairs such as `AA:BB:...`"
            ))
        };
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(wrong());
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).map_err(|_| wrong())?;
        }
        Ok(Fingerprint(bytes))
    }

    /// The fingerprint of a DER certificate, hashed by the ring provider's SHA-256.
    pub fn of(certificate: &[u8]) -> Fingerprint {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(sha256(certificate).as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// SHA-256 from the ring provider: the hash of the TLS 1.3 suite that uses it.
fn sha256(data: &[u8]) -> rustls::crypto::hash::Output {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let rustls::SupportedCipherSuite::Tls13(suite) = suite else {
        unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite")
    };
    suite.common.hash_provider.hash(data)
}

/// What the client trusts.
#[derive(Clone)]
pub enum Trust {
    /// Certificates signed by these CAs (the cluster's `pve-root-ca.pem`), for the server's
    /// name.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly the certificate with this fingerprint.
    Pin(Fingerprint),
}

impl Trust {
    /// The CA certificates of a PEM file's contents.
    pub fn ca_pem(pem: &[u8]) -> Result<Trust, Error> {
        let mut reader = pem;
        let certificates: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut reader)
            .collect::<Result<_, _>>()
            .map_err(|error| Error::Config(format!("the CA certificate is not PEM: {error}")))?;
        if certificates.is_empty() {
            return Err(Error::Config(
                "the CA file holds no certificate (`-----BEGIN CERTIFICATE-----`)".into(),
            ));
        }
        Ok(Trust::Ca(certificates))
    }

    /// A pinned fingerprint, `AA:BB:...`.
    pub fn pin(fingerprint: &str) -> Result<Trust, Error> {
        Fingerprint::parse(fingerprint).map(Trust::Pin)
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Ca(certificates) => write!(f, "Ca({} certificates)", certificates.len()),
            Trust::Pin(fingerprint) => write!(f, "Pin({fingerprint})"),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for a trust setting.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Config(format!("TLS: {error}")))?;
    let config = match trust {
        Trust::Ca(certificates) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates {
                roots.add(certificate.clone()).map_err(|error| {
                    Error::Config(format!("the CA certificate cannot be used: {error}"))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pin(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate::new(
                *fingerprint,
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server certificate verifier that accepts one certificate, by its fingerprint.
#[derive(Debug)]
pub struct PinnedCertificate {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertificate {
    pub fn new(pin: Fingerprint, algorithms: WebPkiSupportedAlgorithms) -> PinnedCertificate {
        PinnedCertificate { pin, algorithms }
    }
}

/// The server presented another certificate than the pinned one.
#[derive(Debug)]
pub struct PinMismatch {
    pub pinned: Fingerprint,
    pub presented: Fingerprint,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has the fingerprint {}, not the pinned {}",
            self.presented, self.pinned
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinnedCertificate {
    // The chain and the name are not checked: the fingerprint names the one certificate.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch {
                pinned: self.pin,
                presented,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A failed handshake in words: an untrusted CA, a wrong name, a wrong pin.
pub fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.to_string(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by the configured CA (unknown issuer)".into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for the host name".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".into(),
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "the server's handshake signature is not made by its certificate's key".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_as_proxmox_shows_it() {
        let text = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";
        let fingerprint = Fingerprint::parse(text).unwrap();
        assert_eq!(fingerprint.to_string(), text);
        assert_eq!(
            Fingerprint::parse(&text.to_lowercase().replace(':', "")).unwrap(),
            fingerprint
        );
        assert!(Fingerprint::parse("AA:BB").is_err());
        assert!(Fingerprint::parse(&text.replace("99", "9G")).is_err());
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2's example.
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn a_pem_without_a_certificate_is_refused() {
        assert!(Trust::ca_pem(b"not a certificate").is_err());
    }
}
