//! `registry.json`, the registry's file before the change log: the whole
//! registry in one JSON document that was rewritten on every change. Read
//! once, to migrate a data dir an older engine wrote (see `disk`). Its
//! content goes through the same validation as an import, so a hand-edited
//! file cannot smuggle in a dangling reference.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use vigil_model::DeviceId;

use super::import::apply;
use super::secrets::{SecretHash, StoredToken};
use super::snapshot::{Snapshot, Txn, commit};
use crate::auth::TokenId;
use crate::entity::*;
use crate::error::RegistryError;

pub(super) const FILE_NAME: &str = "registry.json";
const FORMAT: u32 = 1;

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
pub(super) fn load(path: &Path) -> Result<Option<Snapshot>, RegistryError> {
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
    let file: FileIn = crate::json::parse(&bytes).map_err(|e| corrupt(e.message()))?;
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
    let mut tx = Txn::new(Arc::new(Snapshot::default()));
    apply(&mut tx, doc, true, false).map_err(|e| corrupt(e.to_string()))?;
    if let Some(id) = tx
        .data
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
        .find(|id| !tx.data.devices.contains_key(*id))
    {
        return Err(corrupt(format!(
            "device_secrets names device {:?}, which is not in devices",
            id.as_str()
        )));
    }
    for (id, hash) in file.device_secrets {
        tx.set_secret(id, Some(hash));
    }
    let mut ids = std::collections::HashSet::new();
    for mut t in file.tokens {
        if t.id.is_empty() {
            t.id = TokenId::derived(&t.sha256);
        }
        if !ids.insert(t.id.clone()) {
            return Err(corrupt(format!("token id {} appears twice", t.id)));
        }
        tx.put_token(t);
    }
    tx.data.version = file.version;
    let (snapshot, _) = commit(tx);
    Ok(Some(snapshot))
}
