//! Mutual TLS for a device: its certificate and key, and the CA that signed
//! the broker's certificate, as PEM files (what `vigil device cert` writes).

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::EdgeError;

fn open(what: &'static str, path: &Path) -> Result<BufReader<std::fs::File>, EdgeError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| EdgeError::io(what, path, e))
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, EdgeError> {
    let certs = rustls_pemfile::certs(&mut open(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EdgeError::io(what, path, e))?;
    if certs.is_empty() {
        return Err(EdgeError::Tls(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// A rustls client configuration (ring) presenting `cert`/`key` and
/// trusting only `ca`.
pub(crate) fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, EdgeError> {
    let mut roots = RootCertStore::empty();
    for c in certs("cannot read CA certificate", ca)? {
        roots
            .add(c)
            .map_err(|e| EdgeError::Tls(format!("CA {}: {e}", ca.display())))?;
    }
    let chain = certs("cannot read device certificate", cert)?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut open("cannot read device key", key)?)
            .map_err(|e| EdgeError::io("cannot read device key", key, e))?
            .ok_or_else(|| EdgeError::Tls(format!("{} holds no PEM private key", key.display())))?;
    // ring rather than aws-lc (no C toolchain beyond cc, a small binary);
    // rustls 0.23.48 deprecates it only for lacking post-quantum key
    // exchange, which a device talking to its own engine can do without.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| EdgeError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| EdgeError::Tls(format!("device certificate and key: {e}")))
}
