//! Certificates from the engine's device CA, over HTTP (admin only):
//!
//! - `POST /api/v1/devices/{id}/certificate`: a client certificate for a
//!   registered device (`O = {device_id}`), for the mutual-TLS listener;
//! - `POST /api/v1/alarm-feed/certificates`: a supervisor's certificate for
//!   one region's MQTT alarm feed (`O = r{region}`).
//!
//! Both take an optional `csr_pem` (the key then never leaves its owner) and
//! `days`, and answer the PEM texts in JSON. `vigil device cert` and
//! `vigil feed cert` call them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;
use vigil_ingest::pki::{DeviceCa, IssuedCert};
use vigil_ingest::{MqttsListener, TlsMaterial};
use vigil_model::{DeviceId, Region, Resolution};
use vigil_registry::api::ApiError;
use vigil_registry::auth::Principal;

use crate::config::ServerConfig;
use crate::state::AppState;

/// The longest validity the API issues.
const MAX_DAYS: u32 = 3650;

/// The device CA and how long what it issues is valid.
pub(crate) struct Pki {
    pub ca: DeviceCa,
    pub device_days: u32,
    pub feed_days: u32,
}

impl Pki {
    /// Loads the configured CA, or the one in `{data_dir}/pki` (created on
    /// first start).
    pub(crate) fn open(config: &ServerConfig) -> anyhow::Result<Pki> {
        let dir = config.data_dir.join("pki");
        let t = &config.tls;
        let configured = t.ca_cert.is_some() || t.ca_key.is_some();
        let cert = t.ca_cert.clone().unwrap_or_else(|| dir.join("ca.pem"));
        let key = t.ca_key.clone().unwrap_or_else(|| dir.join("ca.key"));
        let ca = DeviceCa::load_or_create(&cert, &key, !configured)
            .with_context(|| format!("cannot load the device CA ({})", cert.display()))?;
        Ok(Pki {
            ca,
            device_days: t.device_cert_days,
            feed_days: t.feed_cert_days,
        })
    }

    /// The TLS listener's settings when `mqtts_addr` is set: its server
    /// certificate from the configured files, or issued now for
    /// `tls.server_names`.
    pub(crate) fn listener(&self, config: &ServerConfig) -> anyhow::Result<Option<MqttsListener>> {
        let Some(addr) = config.mqtts_addr else {
            return Ok(None);
        };
        let t = &config.tls;
        let material = match (&t.server_cert, &t.server_key) {
            (Some(cert), Some(key)) => TlsMaterial {
                server_cert_chain_pem: read(cert)?,
                server_key_pem: read(key)?,
                client_ca_pem: self.ca.ca_pem().to_owned(),
            },
            (None, None) => self
                .ca
                .listener_material(&t.server_names)
                .context("cannot issue the TLS listener's certificate")?,
            _ => anyhow::bail!("tls.server_cert and tls.server_key go together"),
        };
        Ok(Some(MqttsListener { addr, material }))
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/devices/:id/certificate", post(device_certificate))
        .route("/alarm-feed/certificates", post(feed_certificate))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceCertRequest {
    days: Option<u32>,
    csr_pem: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedCertRequest {
    region: String,
    name: String,
    days: Option<u32>,
    csr_pem: Option<String>,
}

fn admin(who: &Principal, what: &str) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("only admin may issue {what}")))
    }
}

/// An empty body is `{}`.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

fn validity(days: Option<u32>, default: u32) -> Result<Duration, ApiError> {
    let days = days.unwrap_or(default);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_days",
            format!("days must be from 1 to {MAX_DAYS}, not {days}"),
        ));
    }
    Ok(Duration::from_secs(u64::from(days) * 86_400))
}

fn issued(mut head: Value, cert: IssuedCert) -> Json<Value> {
    if let (Value::Object(out), Ok(Value::Object(rest))) = (&mut head, serde_json::to_value(cert)) {
        out.extend(rest);
    }
    Json(head)
}

fn refused(e: vigil_ingest::IngestError) -> ApiError {
    ApiError::bad_request("invalid_request", e.to_string())
}

async fn device_certificate(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    UrlPath(raw): UrlPath<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin(&who, "device certificates")?;
    let req: DeviceCertRequest = body(&bytes)?;
    let not_found = || ApiError::not_found(format!("device {raw:?} is not registered"));
    let device = DeviceId::new(&raw).map_err(|_| not_found())?;
    // Registered (a disabled device is refused at CONNECT until enabled).
    if matches!(state.registry.resolve(&device), Resolution::Unknown) {
        return Err(not_found());
    }
    let validity = validity(req.days, state.pki.device_days)?;
    let cert = state
        .pki
        .ca
        .issue_device(&device, validity, req.csr_pem.as_deref())
        .map_err(refused)?;
    info!(device = %device, serial = %cert.serial, not_after = %cert.not_after, by = %who.name(), "Device certificate issued.");
    Ok(issued(json!({"device_id": device, "tenant": device}), cert))
}

async fn feed_certificate(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin(&who, "alarm-feed certificates")?;
    let req: FeedCertRequest = body(&bytes)?;
    let region = Region::new(&req.region)
        .map_err(|e| ApiError::bad_request("invalid_region", e.to_string()))?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name (who holds the certificate) must be 1 to 64 characters",
        ));
    }
    let validity = validity(req.days, state.pki.feed_days)?;
    let cert = state
        .pki
        .ca
        .issue_feed(&region, name, validity, req.csr_pem.as_deref())
        .map_err(refused)?;
    info!(region = %region, name, serial = %cert.serial, not_after = %cert.not_after, by = %who.name(), "Alarm-feed certificate issued.");
    let tenant = vigil_ingest::region_tenant(&region);
    Ok(issued(
        json!({"region": region, "tenant": tenant, "name": name, "topics": format!("/tenants/{tenant}/v1/alarms/#")}),
        cert,
    ))
}
