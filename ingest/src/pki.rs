//! The device CA: the engine's own certificate authority for the mTLS
//! listener. It issues device certificates (`O = {device_id}`), supervisors'
//! alarm-feed certificates (`O = r{region}`) and the listener's own server
//! certificate. ECDSA P-256 keys; rcgen builds and signs every certificate.
//!
//! The CA is created on first start (`ca.pem`, and `ca.key` readable by its
//! owner only) or loaded from PEM files the operator gives.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use serde::Serialize;
use time::OffsetDateTime;
use vigil_model::{DeviceId, Region};

use crate::IngestError;
use crate::guard::region_tenant;
use crate::tls::{DEVICE_UNIT, FEED_UNIT, TlsMaterial};

/// How long the CA itself is valid.
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);

/// Issued certificates start this much in the past, so a device whose clock
/// is a little behind accepts them at once.
const BACKDATE: Duration = Duration::from_secs(3600);

fn pki(what: &'static str, why: impl std::fmt::Display) -> IngestError {
    IngestError::Tls {
        what,
        why: why.to_string(),
    }
}

/// A certificate the CA issued, as PEM text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// The new private key; absent when the request brought a CSR (the key
    /// never left its owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    pub ca_pem: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_after: String,
}

/// The device CA. `Send + Sync`; share it as `Arc<DeviceCa>`.
pub struct DeviceCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

impl DeviceCa {
    /// A new CA in memory.
    pub fn generate() -> Result<DeviceCa, IngestError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| pki("CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Vigil");
        dn.push(DnType::CommonName, "Vigil device CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki("CA certificate", e))?;
        Ok(DeviceCa {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of a PEM certificate and its PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<DeviceCa, IngestError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| pki("CA key", e))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| pki("CA certificate", e))?;
        // The key must be the certificate's, or nothing it signs will verify.
        let cert_key = pem_der(cert_pem)
            .and_then(|der| {
                x509_parser::parse_x509_certificate(&der)
                    .map(|(_, c)| c.public_key().raw.to_vec())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| pki("CA certificate", e))?;
        if cert_key != issuer.key().subject_public_key_info() {
            return Err(pki(
                "CA key",
                "the key does not belong to the CA certificate",
            ));
        }
        Ok(DeviceCa {
            issuer,
            ca_pem: cert_pem.to_owned(),
        })
    }

    /// Loads the CA from `cert` and `key`; when neither file exists and
    /// `create` is set, makes a new CA there (the key file mode 0600).
    pub fn load_or_create(cert: &Path, key: &Path, create: bool) -> Result<DeviceCa, IngestError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| IngestError::CaFile {
                path: path.to_owned(),
                source,
            })
        };
        if cert.exists() || key.exists() || !create {
            return DeviceCa::from_pem(&read(cert)?, &read(key)?);
        }
        let ca = DeviceCa::generate()?;
        let write = |path: &Path, text: &str, mode: u32| -> Result<(), IngestError> {
            let failed = |source| IngestError::CaFile {
                path: path.to_owned(),
                source,
            };
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(failed)?;
            }
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .map_err(failed)?;
            file.write_all(text.as_bytes()).map_err(failed)?;
            file.sync_all().map_err(failed)?;
            // create_new's mode is masked by the umask; say it exactly.
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(failed)
        };
        write(key, &ca.issuer.key().serialize_pem(), 0o600)?;
        // Not a secret, but the data dir keeps one rule (0600 files):
        // devices get the CA from `vigil device cert` or the API.
        write(cert, &ca.ca_pem, 0o600)?;
        tracing::info!(cert = %cert.display(), key = %key.display(), "Device CA created.");
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate for `device` (`O = CN = {device_id}`,
    /// `OU = device`), for a new key or the key of `csr_pem`.
    pub fn issue_device(
        &self,
        device: &DeviceId,
        validity: Duration,
        csr_pem: Option<&str>,
    ) -> Result<IssuedCert, IngestError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, device.as_str());
        dn.push(DnType::OrganizationalUnitName, DEVICE_UNIT);
        dn.push(DnType::CommonName, device.as_str());
        self.issue_client(dn, validity, csr_pem)
    }

    /// A supervisor's alarm-feed certificate for `region`
    /// (`O = r{region}`, `OU = alarm-feed`, `CN = name`).
    pub fn issue_feed(
        &self,
        region: &Region,
        name: &str,
        validity: Duration,
        csr_pem: Option<&str>,
    ) -> Result<IssuedCert, IngestError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, region_tenant(region));
        dn.push(DnType::OrganizationalUnitName, FEED_UNIT);
        dn.push(DnType::CommonName, name);
        self.issue_client(dn, validity, csr_pem)
    }

    fn issue_client(
        &self,
        dn: DistinguishedName,
        validity: Duration,
        csr_pem: Option<&str>,
    ) -> Result<IssuedCert, IngestError> {
        let mut params = leaf(dn, validity);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        match csr_pem {
            Some(csr) => {
                // The CSR brings only the key; the subject is the CA's to say.
                let csr = CertificateSigningRequestParams::from_pem(csr)
                    .map_err(|e| pki("certificate signing request", e))?;
                self.sign(&params, &csr.public_key, None)
            }
            None => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| pki("client key", e))?;
                let key_pem = key.serialize_pem();
                self.sign(&params, &key, Some(key_pem))
            }
        }
    }

    /// The listener's server certificate for `names` (DNS names or IP
    /// addresses).
    pub fn issue_server(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<IssuedCert, IngestError> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Vigil");
        dn.push(
            DnType::CommonName,
            names.first().map_or("vigil", String::as_str),
        );
        let mut params = leaf(dn, validity);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| pki("server name", format!("{n:?}: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| pki("server key", e))?;
        let key_pem = key.serialize_pem();
        self.sign(&params, &key, Some(key_pem))
    }

    /// What the mTLS listener needs: a fresh server certificate for `names`
    /// and this CA as the trust anchor for client certificates.
    pub fn listener_material(&self, names: &[String]) -> Result<TlsMaterial, IngestError> {
        let server = self.issue_server(names, Duration::from_secs(397 * 86_400))?;
        Ok(TlsMaterial {
            server_cert_chain_pem: server.cert_pem,
            server_key_pem: server.key_pem.unwrap_or_default(),
            client_ca_pem: self.ca_pem.clone(),
        })
    }

    fn sign(
        &self,
        params: &CertificateParams,
        key: &impl PublicKeyData,
        key_pem: Option<String>,
    ) -> Result<IssuedCert, IngestError> {
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| pki("certificate", e))?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode_upper(s.to_bytes()))
            .unwrap_or_default();
        let not_after = params
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| pki("certificate", e))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem,
            ca_pem: self.ca_pem.clone(),
            serial,
            not_after,
        })
    }
}

fn leaf(dn: DistinguishedName, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial());
    params
}

/// 16 random bytes, top bit clear so the DER integer stays positive.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertIdentity;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn identity(pem: &str) -> Result<CertIdentity, String> {
        CertIdentity::of(&CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
    }

    #[test]
    fn issued_certificates_name_their_login() {
        let ca = DeviceCa::generate().unwrap();
        let day = Duration::from_secs(86_400);
        let device = ca
            .issue_device(&DeviceId::new("EL1").unwrap(), day, None)
            .unwrap();
        assert_eq!(
            identity(&device.cert_pem),
            Ok(CertIdentity::Device(DeviceId::new("EL1").unwrap()))
        );
        assert!(device.key_pem.is_some());
        assert_eq!(device.serial.len(), 32);
        let feed = ca
            .issue_feed(&Region::new("440700").unwrap(), "alice", day, None)
            .unwrap();
        assert_eq!(
            identity(&feed.cert_pem),
            Ok(CertIdentity::Feed(Region::new("440700").unwrap()))
        );
    }

    #[test]
    fn a_csr_keeps_its_key_and_gets_the_cas_subject() {
        let ca = DeviceCa::generate().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut req = CertificateParams::default();
        req.distinguished_name
            .push(DnType::OrganizationName, "SOMEONEELSE");
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let issued = ca
            .issue_device(
                &DeviceId::new("EL2").unwrap(),
                Duration::from_secs(60),
                Some(&csr),
            )
            .unwrap();
        assert_eq!(issued.key_pem, None);
        assert_eq!(
            identity(&issued.cert_pem),
            Ok(CertIdentity::Device(DeviceId::new("EL2").unwrap())),
            "the CA decides the subject, not the request"
        );
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        assert!(
            ca.issue_device(
                &DeviceId::new("EL2").unwrap(),
                Duration::from_secs(60),
                Some("junk")
            )
            .is_err()
        );
    }

    #[test]
    fn the_ca_is_created_once_with_a_private_key_file_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("pki/ca.pem"), dir.path().join("pki/ca.key"));
        assert!(
            DeviceCa::load_or_create(&cert, &key, false).is_err(),
            "nothing to load"
        );
        let created = DeviceCa::load_or_create(&cert, &key, true).unwrap();
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = DeviceCa::load_or_create(&cert, &key, true).unwrap();
        assert_eq!(loaded.ca_pem(), created.ca_pem());
        // A key of another CA is refused.
        let other = DeviceCa::generate().unwrap();
        let err = DeviceCa::from_pem(created.ca_pem(), &other.issuer.key().serialize_pem());
        assert!(err.is_err());
    }
}
