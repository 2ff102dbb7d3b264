//! The DTLS identity of a peer.

use str0m::config::DtlsCert;

use crate::error::Error;

/// A DTLS certificate and its private key: what a peer proves it holds in
/// the handshake, and whose fingerprint its offer or answer carries.
///
/// Generating one costs about 1.5 ms, so servers make one and share it among
/// their peers ([`Config::dtls_cert`](crate::Config::dtls_cert)); cloning is
/// cheap.
#[derive(Clone)]
pub struct Certificate {
    inner: std::sync::Arc<DtlsCert>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Certificate")
            .field("certificate_der_len", &self.inner.certificate.len())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A new self-signed certificate (ECDSA P-256).
    pub fn generate() -> Result<Certificate, Error> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .map(|c| Certificate { inner: c.into() })
            .ok_or_else(|| Error::Rtc("the crypto provider cannot generate certificates".into()))
    }

    /// A certificate from its DER encoding and its private key's (PKCS#8
    /// DER), for a server that keeps one identity across restarts. The pair
    /// is checked when the first peer builds its DTLS state.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Certificate {
        Certificate {
            inner: DtlsCert {
                certificate,
                private_key,
            }
            .into(),
        }
    }

    /// The certificate's DER encoding.
    pub fn certificate_der(&self) -> &[u8] {
        &self.inner.certificate
    }

    pub(crate) fn to_str0m(&self) -> DtlsCert {
        (*self.inner).clone()
    }
}
