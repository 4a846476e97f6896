//! `registry.json`: the whole registry in one file, rewritten atomically on
//! every change (write a temporary file, fsync, rename, fsync the folder),
//! so a crash leaves either the old or the new registry, never half of one.
//! It holds device-secret and token hashes: it is created 0600.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_model::DeviceId;

use super::{Data, SecretHash, StoredToken, apply};
use crate::auth::TokenId;
use crate::entity::*;
use crate::error::RegistryError;

pub(super) const FILE_NAME: &str = "registry.json";
const FORMAT: u32 = 1;

/// The file as written (borrowing, so saving copies nothing).
#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    version: u64,
    owners: Vec<&'a Owner>,
    maintainers: Vec<&'a Maintainer>,
    stations: Vec<&'a Station>,
    equipment: Vec<&'a Equipment>,
    devices: Vec<&'a Device>,
    persons: Vec<&'a Person>,
    cylinders: Vec<&'a Cylinder>,
    maintenance: Vec<&'a MaintenanceRecord>,
    device_secrets: BTreeMap<&'a DeviceId, &'a SecretHash>,
    tokens: &'a [StoredToken],
}

/// The file as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: u32,
    version: u64,
    #[serde(default)]
    owners: Vec<Owner>,
    #[serde(default)]
    maintainers: Vec<Maintainer>,
    #[serde(default)]
    stations: Vec<Station>,
    #[serde(default)]
    equipment: Vec<Equipment>,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default)]
    persons: Vec<Person>,
    #[serde(default)]
    cylinders: Vec<Cylinder>,
    #[serde(default)]
    maintenance: Vec<MaintenanceRecord>,
    #[serde(default)]
    device_secrets: BTreeMap<DeviceId, SecretHash>,
    #[serde(default)]
    tokens: Vec<StoredToken>,
}

/// Loads `path`; `None` when there is no file yet. The content goes through
/// the same validation as an import, so a hand-edited file cannot smuggle in
/// a dangling reference.
pub(super) fn load(path: &Path) -> Result<Option<Data>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |message: String| RegistryError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let file: FileIn =
        crate::api::parse_json(&bytes).map_err(|e| corrupt(e.message().to_owned()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!(
            "format {} is not the supported format {FORMAT}",
            file.format
        )));
    }
    let doc = ImportDoc {
        owners: file.owners,
        maintainers: file.maintainers,
        stations: file.stations,
        equipment: file.equipment,
        devices: file.devices,
        persons: file.persons,
        cylinders: file.cylinders,
        maintenance: file.maintenance,
    };
    let mut data = Data::default();
    apply(&mut data, doc, true, false).map_err(|e| corrupt(e.to_string()))?;
    if let Some(id) = data
        .devices
        .keys()
        .find(|id| !file.device_secrets.contains_key(*id))
    {
        return Err(corrupt(format!(
            "device {:?} has no secret in device_secrets",
            id.as_str()
        )));
    }
    if let Some(id) = file
        .device_secrets
        .keys()
        .find(|id| !data.devices.contains_key(*id))
    {
        return Err(corrupt(format!(
            "device_secrets names device {:?}, which is not in devices",
            id.as_str()
        )));
    }
    data.secrets = file.device_secrets.into_iter().collect();
    data.tokens = file.tokens;
    for t in &mut data.tokens {
        if t.id.is_empty() {
            t.id = TokenId::derived(&t.sha256);
        }
    }
    let mut ids = std::collections::HashSet::new();
    if let Some(t) = data.tokens.iter().find(|t| !ids.insert(t.id.clone())) {
        return Err(corrupt(format!("token id {} appears twice", t.id)));
    }
    let forever = data
        .tokens
        .iter()
        .filter(|t| t.expires_at.is_none() && t.revoked_at.is_none())
        .count();
    if forever > 0 {
        tracing::warn!(
            tokens = forever,
            "API tokens without an expiry (issued before tokens expired): list them with `vigil token list`, revoke and re-issue."
        );
    }
    data.version = file.version;
    Ok(Some(data))
}

pub(super) fn save(path: &Path, data: &Data) -> Result<(), RegistryError> {
    let out = FileOut {
        format: FORMAT,
        version: data.version,
        owners: data.owners.values().collect(),
        maintainers: data.maintainers.values().collect(),
        stations: data.stations.values().collect(),
        equipment: data.equipment.values().collect(),
        devices: data.devices.values().collect(),
        persons: data.persons.values().collect(),
        cylinders: data.cylinders.values().collect(),
        maintenance: data.maintenance.values().collect(),
        device_secrets: data.secrets.iter().collect(),
        tokens: &data.tokens,
    };
    let err = |source: std::io::Error| RegistryError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    // A temporary file left by a crash keeps its old mode unless told.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    // The rename is durable only once the folder's entry is.
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}
