//! The mutual-TLS listener's handshake and who a client certificate names.
//!
//! rustls verifies the client's chain against the device CA (a client
//! without a certificate, or with one from another CA, fails the
//! handshake). The certificate's subject then names the login:
//!
//! - `O = {device_id}` (and `OU = device`): a device;
//! - `O = r{region}`, `OU = alarm-feed`: a supervisor reading that region's
//!   alarm feed.
//!
//! The Organization is also the rumqttd tenant: the router keeps the
//! session's topics under `/tenants/{O}/`.

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;
use vigil_model::{DeviceId, Region};

use crate::IngestError;
use crate::guard::region_tenant;
use crate::sessions::Refusal;

/// `OU` of a device certificate.
pub(crate) const DEVICE_UNIT: &str = "device";
/// `OU` of a supervisor's alarm-feed certificate.
pub(crate) const FEED_UNIT: &str = "alarm-feed";

/// What the mTLS listener serves and trusts, as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The listener's certificate, then any intermediates.
    pub server_cert_chain_pem: String,
    pub server_key_pem: String,
    /// The device CA: client certificates must chain to it.
    pub client_ca_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_cert_chain_pem", &self.server_cert_chain_pem.len())
            .field("server_key_pem", &"(hidden)")
            .field("client_ca_pem", &self.client_ca_pem.len())
            .finish()
    }
}

fn bad(what: &'static str, why: impl fmt::Display) -> IngestError {
    IngestError::Tls {
        what,
        why: why.to_string(),
    }
}

/// rustls on *ring*: it builds with a C compiler alone (aws-lc-rs needs
/// cmake and minutes more on a small build machine). rustls 0.23.48 marks
/// it deprecated for lacking post-quantum key exchange, which devices'
/// TLS stacks do not offer anyway.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls acceptor that requires a client certificate from the device CA.
pub(crate) fn acceptor(material: &TlsMaterial) -> Result<TlsAcceptor, IngestError> {
    let provider = crypto_provider();
    let chain = CertificateDer::pem_slice_iter(material.server_cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("server certificate", e))?;
    if chain.is_empty() {
        return Err(bad("server certificate", "no CERTIFICATE block in the PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(material.server_key_pem.as_bytes())
        .map_err(|e| bad("server key", e))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(material.client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| bad("device CA certificate", e))?;
        roots.add(ca).map_err(|e| bad("device CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "device CA certificate",
            "no CERTIFICATE block in the PEM",
        ));
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| bad("client verifier", e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("server certificate and key", e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertIdentity {
    Device(DeviceId),
    Feed(Region),
}

impl CertIdentity {
    /// The rumqttd tenant: topics stay under `/tenants/{tenant}/`.
    pub(crate) fn tenant(&self) -> String {
        match self {
            CertIdentity::Device(id) => id.to_string(),
            CertIdentity::Feed(region) => region_tenant(region),
        }
    }

    /// Reads the subject's Organization (and Organizational Unit) of a
    /// certificate rustls has verified.
    pub(crate) fn of(cert: &CertificateDer<'_>) -> Result<CertIdentity, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("the certificate does not parse: {e}"))?;
        let subject = cert.subject();
        let first = |attrs: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >| { attrs.next().map(|a| a.as_str().map(str::to_owned)) };
        let org = match first(&mut subject.iter_organization()) {
            Some(Ok(org)) => org,
            Some(Err(e)) => return Err(format!("its Organization is not text: {e}")),
            None => return Err("its subject has no Organization (O)".to_owned()),
        };
        let unit = first(&mut subject.iter_organizational_unit()).and_then(Result::ok);
        if unit.as_deref() == Some(FEED_UNIT) {
            return org
                .strip_prefix('r')
                .and_then(|code| Region::new(code).ok())
                .map(CertIdentity::Feed)
                .ok_or_else(|| {
                    format!("an alarm-feed certificate's O must be r + a region code, not {org:?}")
                });
        }
        DeviceId::new(&org)
            .map(CertIdentity::Device)
            .map_err(|_| format!("a device certificate's O must be a device id, not {org:?}"))
    }
}

/// Why a handshake failed, as a refusal reason: anything about the client's
/// certificate is `bad_certificate`.
pub(crate) fn handshake_refusal(e: &io::Error) -> Refusal {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertificate(_)
            | rustls::Error::InvalidCertRevocationList(_),
        ) => Refusal::BadCertificate,
        _ => Refusal::TlsHandshake,
    }
}
