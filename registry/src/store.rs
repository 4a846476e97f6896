//! The registry itself: tables in memory, a precomputed device → context
//! map for the ingest hot path, device secrets and API tokens, and the
//! write path (validate a copy, save it, swap it in).

mod persist;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::info;
use vigil_model::{
    Binding, DeviceContext, DeviceId, EpochMs, EquipmentId, MaintainerId, OwnerId, Region,
    Resolution,
};

use crate::auth::{IssuedToken, Principal, Refusal, TokenId, TokenInfo, TokenPolicy, TokenRequest};
use crate::entity::*;
use crate::error::RegistryError;
use crate::table::{Attrs, Entity};
use crate::types::*;

/// The tables. Cloned whole for each change: the registry is small next to
/// the telemetry and changes rarely, and a failed change then leaves
/// nothing behind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Data {
    pub version: u64,
    pub owners: BTreeMap<OwnerId, Owner>,
    pub maintainers: BTreeMap<MaintainerId, Maintainer>,
    pub stations: BTreeMap<StationId, Station>,
    pub equipment: BTreeMap<EquipmentId, Equipment>,
    pub devices: BTreeMap<DeviceId, Device>,
    pub persons: BTreeMap<PersonId, Person>,
    pub cylinders: BTreeMap<CylinderCode, Cylinder>,
    pub maintenance: BTreeMap<MaintenanceKey, MaintenanceRecord>,
    pub secrets: HashMap<DeviceId, SecretHash>,
    pub tokens: Vec<StoredToken>,
}

/// One consistent state: the tables plus what is derived from them.
pub(crate) struct Snapshot {
    pub data: Data,
    /// Every device, enabled or not; absent means unknown.
    pub contexts: HashMap<DeviceId, Resolution>,
    /// Regions an owner is present in (its own, its equipment's, its stations').
    pub owner_regions: HashMap<OwnerId, Vec<Region>>,
    /// (owner, region) of the equipment each maintainer looks after.
    pub maintainer_scope: HashMap<MaintainerId, Vec<(OwnerId, Region)>>,
    /// SHA-256 (hex) of a token → what it grants and until when.
    pub tokens: HashMap<String, TokenEntry>,
    /// Token id → SHA-256 (hex), for revocation and validity checks.
    pub token_ids: HashMap<TokenId, String>,
}

/// A token as the hot path checks it.
#[derive(Debug, Clone)]
pub(crate) struct TokenEntry {
    pub id: TokenId,
    pub principal: Principal,
    pub expires_ms: Option<EpochMs>,
    pub revoked_ms: Option<EpochMs>,
}

impl TokenEntry {
    /// `Ok(expiry)` while the token is good.
    fn validity(&self, now: EpochMs) -> Result<Option<EpochMs>, Refusal> {
        if let Some(at) = self.revoked_ms {
            return Err(Refusal::Revoked { at });
        }
        match self.expires_ms {
            Some(at) if at <= now => Err(Refusal::Expired { at }),
            other => Ok(other),
        }
    }
}

impl Snapshot {
    fn build(data: Data) -> Snapshot {
        let mut contexts = HashMap::with_capacity(data.devices.len());
        for device in data.devices.values() {
            contexts.insert(device.device_id.clone(), resolution(device, &data));
        }
        let mut owner_regions: HashMap<OwnerId, Vec<Region>> = HashMap::new();
        for o in data.owners.values() {
            owner_regions
                .entry(o.owner_id.clone())
                .or_default()
                .push(o.region);
        }
        let mut maintainer_scope: HashMap<MaintainerId, Vec<(OwnerId, Region)>> = HashMap::new();
        for e in data.equipment.values() {
            owner_regions
                .entry(e.owner_id.clone())
                .or_default()
                .push(e.region);
            if let Some(m) = &e.maintainer_id {
                maintainer_scope
                    .entry(m.clone())
                    .or_default()
                    .push((e.owner_id.clone(), e.region));
            }
        }
        for s in data.stations.values() {
            owner_regions
                .entry(s.owner_id.clone())
                .or_default()
                .push(s.region);
        }
        for regions in owner_regions.values_mut() {
            regions.sort();
            regions.dedup();
        }
        for scope in maintainer_scope.values_mut() {
            scope.sort();
            scope.dedup();
        }
        let tokens = data
            .tokens
            .iter()
            .map(|t| {
                let entry = TokenEntry {
                    id: t.id.clone(),
                    principal: t.principal(),
                    expires_ms: t.expires_at.map(|d| d.timestamp_millis()),
                    revoked_ms: t.revoked_at.map(|d| d.timestamp_millis()),
                };
                (t.sha256.clone(), entry)
            })
            .collect();
        let token_ids = data
            .tokens
            .iter()
            .map(|t| (t.id.clone(), t.sha256.clone()))
            .collect();
        Snapshot {
            data,
            contexts,
            owner_regions,
            maintainer_scope,
            tokens,
            token_ids,
        }
    }
}

fn resolution(device: &Device, data: &Data) -> Resolution {
    if !device.enabled {
        return Resolution::Disabled;
    }
    let (binding, params) = if let Some(e) = device
        .equipment_id
        .as_ref()
        .and_then(|id| data.equipment.get(id))
    {
        let binding = Binding {
            equipment_id: e.equipment_id.clone(),
            category: e.category.as_str().to_owned(),
            owner_id: e.owner_id.clone(),
            region: e.region,
        };
        (binding, e.params.clone())
    } else if let Some(s) = device
        .station_id
        .as_ref()
        .and_then(|id| data.stations.get(id))
    {
        let binding = Binding {
            equipment_id: s.station_id.as_equipment_id().clone(),
            category: FILLING_STATION_CATEGORY.to_owned(),
            owner_id: s.owner_id.clone(),
            region: s.region,
        };
        let mut params = Map::new();
        if let Some(hours) = &s.working_hours {
            params.insert("working_hours".to_owned(), Value::String(hours.clone()));
        }
        (binding, params)
    } else {
        // Validation keeps every binding pointing at something; a device
        // that somehow does not is not one the pipeline can use.
        return Resolution::Unknown;
    };
    Resolution::Active(Arc::new(DeviceContext {
        binding,
        kind: device.kind.as_str().to_owned(),
        report_interval_s: device.report_interval_s,
        params,
    }))
}

/// A device secret as stored: random salt and SHA-256(salt ‖ secret), hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretHash {
    salt: String,
    sha256: String,
}

impl SecretHash {
    fn new(secret: &str) -> SecretHash {
        let salt = random_bytes::<16>();
        SecretHash {
            salt: hex::encode(salt),
            sha256: hex::encode(salted(&salt, secret)),
        }
    }

    fn verify(&self, secret: &str) -> bool {
        match (hex::decode(&self.salt), hex::decode(&self.sha256)) {
            (Ok(salt), Ok(expected)) => ct_eq(&salted(&salt, secret), &expected),
            _ => false,
        }
    }
}

fn salted(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Constant-time equality (the lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An API token as stored: its hash, never the token. A revoked token is
/// kept (with `revoked_at`) so that lists show what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredToken {
    /// Empty in files written before tokens had ids; `persist::load`
    /// derives one.
    #[serde(default)]
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub regions: Vec<Region>,
    #[serde(default)]
    pub owner_id: Option<OwnerId>,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// `None` only for tokens issued before tokens expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredToken {
    fn info(&self, now: EpochMs, last_used: Option<EpochMs>) -> TokenInfo {
        let status = if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t.timestamp_millis() <= now) {
            "expired"
        } else {
            "active"
        };
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            regions: self.regions.clone(),
            owner_id: self.owner_id.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: last_used.and_then(DateTime::from_timestamp_millis),
            status: status.to_owned(),
        }
    }

    fn principal(&self) -> Principal {
        match (self.role, &self.owner_id) {
            (Role::Admin, _) => Principal::Admin,
            (Role::Supervisor, _) => Principal::Supervisor {
                regions: self.regions.clone(),
            },
            (Role::Analyst, _) => Principal::Analyst {
                regions: self.regions.clone(),
            },
            (Role::Owner, Some(owner_id)) => Principal::Owner {
                owner_id: owner_id.clone(),
            },
            // Refused on creation; a hand-edited file gets an empty grant.
            (Role::Owner, None) => Principal::Supervisor {
                regions: Vec::new(),
            },
        }
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Created and updated counts of one entity kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub owners: Counts,
    pub maintainers: Counts,
    pub stations: Counts,
    pub equipment: Counts,
    pub devices: Counts,
    pub persons: Counts,
    pub cylinders: Counts,
    pub maintenance: Counts,
}

/// A new device's secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDeviceSecret {
    pub device_id: DeviceId,
    pub secret: String,
}

/// The answer to an import.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub counts: ImportCounts,
    /// Secrets of the devices this import created, and only those.
    pub devices: Vec<NewDeviceSecret>,
    /// Devices that already existed: they keep their secret.
    pub secrets_kept: Vec<DeviceId>,
    /// Not errors: e.g. an elevator without `rated_speed_mps`, so
    /// `elevator.overspeed` cannot be evaluated for it.
    pub warnings: Vec<String>,
    pub note: String,
    /// The registry version after this import.
    pub version: u64,
}

const IMPORT_NOTE: &str = "Device secrets are shown once, only for devices this import created; devices that already existed keep their secret (secrets_kept).";

/// A page of a list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Page<E> {
    pub items: Vec<E>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

/// Validated list filters.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    pub region: Option<Region>,
    pub category: Option<String>,
    pub owner_id: Option<OwnerId>,
    pub status: Option<String>,
}

impl Filters {
    fn matches(&self, a: &Attrs) -> bool {
        self.region
            .is_none_or(|r| a.region.is_some_and(|x| r.covers(&x)))
            && self
                .category
                .as_deref()
                .is_none_or(|c| a.category == Some(c))
            && self
                .owner_id
                .as_ref()
                .is_none_or(|o| a.owner_id.as_ref() == Some(o))
            && self.status.as_deref().is_none_or(|s| a.status == Some(s))
    }
}

/// The registry: owners, maintainers, stations, equipment, devices,
/// persons, cylinders and maintenance records, device secrets and API
/// tokens. `Send + Sync`; share it as `Arc<Registry>`.
pub struct Registry {
    /// Readers clone the `Arc` (or look one device up) and let go at once;
    /// writers swap in a whole new snapshot.
    state: RwLock<Arc<Snapshot>>,
    /// Serializes changes, so each is validated against, and saved after,
    /// the one before it.
    writer: Mutex<()>,
    /// `dir/registry.json`, or `None` in memory.
    file: Option<PathBuf>,
    /// The version after each change, for whoever must act at once (the
    /// engine closes a disabled device's MQTT session).
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped after every token revocation, so that whatever a token
    /// opened (an SSE stream, a running query) can end at once.
    token_changes: tokio::sync::watch::Sender<u64>,
    /// When each issued token was last used, since start (not persisted:
    /// a save per request would be too dear). One short lock per request.
    last_used: Mutex<HashMap<TokenId, EpochMs>>,
}

impl Registry {
    /// Opens the registry kept in `dir` (created 0700 if missing), loading
    /// `dir/registry.json` if present.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| RegistryError::Read {
                path: dir.to_owned(),
                source,
            })?;
        let file = dir.join(persist::FILE_NAME);
        let data = persist::load(&file)?.unwrap_or_default();
        info!(
            path = %file.display(),
            version = data.version,
            equipment = data.equipment.len(),
            devices = data.devices.len(),
            "Registry opened."
        );
        Ok(Registry::with(data, Some(file)))
    }

    /// An empty registry that keeps nothing on disk (tests, demos).
    pub fn in_memory() -> Registry {
        Registry::with(Data::default(), None)
    }

    fn with(data: Data, file: Option<PathBuf>) -> Registry {
        let version = data.version;
        Registry {
            state: RwLock::new(Arc::new(Snapshot::build(data))),
            writer: Mutex::new(()),
            file,
            changes: tokio::sync::watch::channel(version).0,
            token_changes: tokio::sync::watch::Sender::new(0),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// Sees the registry version after every change (tokens included).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().clone()
    }

    /// Applies `change` to a copy of the tables, saves the copy and swaps it
    /// in; on any error nothing changes. `change` sees the new version.
    fn mutate<R>(
        &self,
        change: impl FnOnce(&mut Data) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let _writer = self.writer.lock();
        let mut data = self.snapshot().data.clone();
        data.version += 1;
        let out = change(&mut data)?;
        if let Some(file) = &self.file {
            persist::save(file, &data)?;
        }
        let version = data.version;
        let next = Arc::new(Snapshot::build(data));
        *self.state.write() = next;
        self.changes.send_replace(version);
        Ok(out)
    }

    /// Bulk upsert, validated as a whole: any mistake changes nothing.
    pub fn import(&self, doc: ImportDoc) -> Result<ImportReport, RegistryError> {
        let report = self.mutate(|data| apply(data, doc, true, true))?;
        info!(
            version = report.version,
            created_devices = report.counts.devices.created,
            created_equipment = report.counts.equipment.created,
            updated_equipment = report.counts.equipment.updated,
            warnings = report.warnings.len(),
            "Registry import applied."
        );
        Ok(report)
    }

    /// Where a device's readings belong. A hash lookup under a read lock.
    pub fn resolve(&self, device: &DeviceId) -> Resolution {
        self.state
            .read()
            .contexts
            .get(device)
            .cloned()
            .unwrap_or(Resolution::Unknown)
    }

    /// Whether `secret` is the secret of an enabled device `device_id`.
    pub fn verify_device_secret(&self, device_id: &str, secret: &str) -> bool {
        let snap = self.snapshot();
        let stored = DeviceId::new(device_id)
            .ok()
            .filter(|id| snap.data.devices.get(id).is_some_and(|d| d.enabled))
            .and_then(|id| snap.data.secrets.get(&id));
        match stored {
            Some(hash) => hash.verify(secret),
            None => {
                // Same work as a real check, so timing does not tell which ids exist.
                let _ = ct_eq(&salted(&[0; 16], secret), &[0; 32]);
                false
            }
        }
    }

    /// Bumps on every change; the integrator refreshes SQL reference tables
    /// when it moves.
    pub fn version(&self) -> u64 {
        self.state.read().data.version
    }

    /// Every entity (no secrets, no tokens), ids sorted.
    pub fn export(&self) -> Export {
        let snap = self.snapshot();
        let d = &snap.data;
        Export {
            version: d.version,
            owners: d.owners.values().cloned().collect(),
            maintainers: d.maintainers.values().cloned().collect(),
            stations: d.stations.values().cloned().collect(),
            equipment: d.equipment.values().cloned().collect(),
            devices: d.devices.values().cloned().collect(),
            persons: d.persons.values().cloned().collect(),
            cylinders: d.cylinders.values().cloned().collect(),
            maintenance: d.maintenance.values().cloned().collect(),
        }
    }

    pub fn equipment(&self, id: &EquipmentId) -> Option<Equipment> {
        self.state.read().data.equipment.get(id).cloned()
    }

    pub fn owner(&self, id: &OwnerId) -> Option<Owner> {
        self.state.read().data.owners.get(id).cloned()
    }

    /// A cylinder by the code a filling record carries.
    pub fn cylinder(&self, code: &str) -> Option<Cylinder> {
        let code = CylinderCode::new(code).ok()?;
        self.state.read().data.cylinders.get(&code).cloned()
    }

    /// A person (e.g. a filling record's `operator_id`) with certificates.
    pub fn person(&self, id: &str) -> Option<Person> {
        let id = PersonId::new(id).ok()?;
        self.state.read().data.persons.get(&id).cloned()
    }

    pub fn station(&self, id: &str) -> Option<Station> {
        let id = StationId::new(id).ok()?;
        self.state.read().data.stations.get(&id).cloned()
    }

    /// Issues an API token expiring under `policy`; only its hash is kept.
    pub fn create_token(
        &self,
        req: TokenRequest,
        now: EpochMs,
        policy: &TokenPolicy,
    ) -> Result<IssuedToken, RegistryError> {
        let bad = |field: &str, message: &str| RegistryError::Invalid {
            entity: "token",
            index: None,
            id_field: "name",
            id: req.name.clone(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if req.name.trim().is_empty() || req.name.chars().count() > 100 {
            return Err(bad("name", "must be 1 to 100 characters"));
        }
        match req.role {
            Role::Supervisor | Role::Analyst if req.regions.is_empty() => {
                return Err(bad(
                    "regions",
                    "a supervisor or analyst token needs at least one region",
                ));
            }
            Role::Supervisor | Role::Analyst if req.owner_id.is_some() => {
                return Err(bad("owner_id", "only owner tokens name an owner_id"));
            }
            Role::Owner if req.owner_id.is_none() => {
                return Err(bad("owner_id", "an owner token needs owner_id"));
            }
            Role::Owner | Role::Admin if !req.regions.is_empty() => {
                return Err(bad(
                    "regions",
                    "only supervisor and analyst tokens are granted regions",
                ));
            }
            Role::Admin if req.owner_id.is_some() => {
                return Err(bad("owner_id", "only owner tokens name an owner_id"));
            }
            _ => {}
        }
        let max_s = policy.max_ttl.as_secs().max(1);
        let ttl_s = match req.expires_in_s {
            Some(s) if s == 0 || s > max_s => {
                return Err(bad(
                    "expires_in_s",
                    &format!("must be from 1 to {max_s} seconds (the configured maximum)"),
                ));
            }
            Some(s) => s,
            None => policy.default_ttl.as_secs().clamp(1, max_s),
        };
        let created_at = DateTime::from_timestamp_millis(now)
            .ok_or_else(|| bad("created_at", "the clock is outside the calendar"))?;
        let expires_at = created_at
            .checked_add_signed(chrono::TimeDelta::seconds(ttl_s as i64))
            .ok_or_else(|| bad("expires_in_s", "too far in the future"))?;
        let token = format!("vgl_{}", hex::encode(random_bytes::<32>()));
        let stored = StoredToken {
            id: TokenId::random(),
            name: req.name.clone(),
            role: req.role,
            regions: req.regions.clone(),
            owner_id: req.owner_id.clone(),
            sha256: token_hash(&token),
            created_at,
            expires_at: Some(expires_at),
            revoked_at: None,
        };
        let id = stored.id.clone();
        self.mutate(|data| {
            if let Some(o) = &stored.owner_id
                && !data.owners.contains_key(o)
            {
                return Err(bad(
                    "owner_id",
                    &format!("owner {:?} is not in the registry", o.as_str()),
                ));
            }
            data.tokens.push(stored);
            Ok(())
        })?;
        info!(token = %id, name = %req.name, role = %req.role, expires_at = %expires_at, "API token issued.");
        Ok(IssuedToken {
            token,
            id,
            name: req.name,
            role: req.role,
            regions: req.regions,
            owner_id: req.owner_id,
            created_at,
            expires_at: Some(expires_at),
        })
    }

    /// The token's id and principal if it is known, unexpired and not
    /// revoked; notes its use.
    pub(crate) fn check_token(
        &self,
        token: &str,
        now: EpochMs,
    ) -> Result<(TokenId, Principal), Refusal> {
        let hash = token_hash(token);
        let entry = self
            .state
            .read()
            .tokens
            .get(&hash)
            .cloned()
            .ok_or(Refusal::Unknown)?;
        entry.validity(now)?;
        self.last_used.lock().insert(entry.id.clone(), now);
        Ok((entry.id, entry.principal))
    }

    /// `Ok(expiry)` while token `id` is good, else why not.
    pub(crate) fn token_validity(
        &self,
        id: &TokenId,
        now: EpochMs,
    ) -> Result<Option<EpochMs>, Refusal> {
        let snap = self.snapshot();
        snap.token_ids
            .get(id)
            .and_then(|hash| snap.tokens.get(hash))
            .ok_or(Refusal::Unknown)?
            .validity(now)
    }

    /// Bumps after every revocation (see [`Registry::revoke_token`]).
    pub fn token_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.token_changes.subscribe()
    }

    /// Every issued token (never the token or its hash), oldest first.
    pub fn tokens(&self, now: EpochMs) -> Vec<TokenInfo> {
        let snap = self.snapshot();
        let used = self.last_used.lock();
        snap.data
            .tokens
            .iter()
            .map(|t| t.info(now, used.get(&t.id).copied()))
            .collect()
    }

    pub fn token(&self, id: &TokenId, now: EpochMs) -> Option<TokenInfo> {
        let snap = self.snapshot();
        let used = self.last_used.lock().get(id).copied();
        snap.data
            .tokens
            .iter()
            .find(|t| &t.id == id)
            .map(|t| t.info(now, used))
    }

    /// Revokes a token: from now on it is refused everywhere, and whatever
    /// it holds open ends (watchers of [`Registry::token_changes`]).
    /// Revoking a revoked token changes nothing and answers the same.
    pub fn revoke_token(&self, id: &TokenId, now: EpochMs) -> Result<TokenInfo, RegistryError> {
        match self.token(id, now) {
            None => {
                return Err(RegistryError::NotFound {
                    entity: "token",
                    id: id.to_string(),
                });
            }
            Some(info) if info.revoked_at.is_some() => return Ok(info),
            Some(_) => {}
        }
        let at = DateTime::from_timestamp_millis(now).unwrap_or_default();
        let changed = self.mutate(|data| {
            // Found above; a concurrent revocation may have come first.
            let t = data.tokens.iter_mut().find(|t| &t.id == id);
            match t {
                Some(t) if t.revoked_at.is_none() => {
                    t.revoked_at = Some(at);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })?;
        if changed {
            self.token_changes.send_modify(|n| *n += 1);
            info!(token = %id, "API token revoked.");
        }
        self.token(id, now).ok_or_else(|| RegistryError::NotFound {
            entity: "token",
            id: id.to_string(),
        })
    }

    // Generic CRUD behind the HTTP API.

    /// Creates one entity; a new device's secret comes back.
    pub(crate) fn create<E: Entity>(&self, entity: E) -> Result<Option<String>, RegistryError> {
        let id = entity.id().clone();
        let report = self.mutate(|data| {
            if E::table(data).contains_key(&id) {
                return Err(RegistryError::AlreadyExists {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            let mut doc = ImportDoc::default();
            E::doc_list(&mut doc).push(entity);
            apply(data, doc, false, true)
        })?;
        info!(entity = E::NAME, id = %id, "Registry entity created.");
        Ok(report.devices.into_iter().next().map(|s| s.secret))
    }

    /// Replaces one entity (a device keeps its secret).
    pub(crate) fn update<E: Entity>(&self, id: &E::Id, entity: E) -> Result<(), RegistryError> {
        if entity.id() != id {
            return Err(RegistryError::Invalid {
                entity: E::NAME,
                index: None,
                id_field: E::ID_FIELD,
                id: id.to_string(),
                field: E::ID_FIELD.to_owned(),
                message: format!(
                    "{:?} does not match the id in the path",
                    entity.id().to_string()
                ),
            });
        }
        self.mutate(|data| {
            if !E::table(data).contains_key(id) {
                return Err(RegistryError::NotFound {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            let mut doc = ImportDoc::default();
            E::doc_list(&mut doc).push(entity);
            apply(data, doc, false, true)
        })?;
        info!(entity = E::NAME, id = %id, "Registry entity updated.");
        Ok(())
    }

    pub(crate) fn delete<E: Entity>(&self, id: &E::Id) -> Result<(), RegistryError> {
        self.mutate(|data| {
            if !E::table(data).contains_key(id) {
                return Err(RegistryError::NotFound {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            if let Some(by) = E::referenced_by(id, data) {
                return Err(RegistryError::InUse {
                    entity: E::NAME,
                    id: id.to_string(),
                    by,
                });
            }
            E::table_mut(data).remove(id);
            data.secrets.retain(|d, _| data.devices.contains_key(d));
            Ok(())
        })?;
        info!(entity = E::NAME, id = %id, "Registry entity deleted.");
        Ok(())
    }

    pub(crate) fn list<E: Entity>(
        &self,
        who: &Principal,
        filters: &Filters,
        after: Option<&E::Id>,
        limit: usize,
    ) -> Page<E> {
        let snap = self.snapshot();
        let table = E::table(&snap.data);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut items = Vec::new();
        let mut more = false;
        for e in table.range((from, Bound::Unbounded)).map(|(_, e)| e) {
            if !e.visible(who, &snap) || !filters.matches(&e.attrs(&snap)) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(e.clone());
        }
        let next_after = if more {
            items.last().map(|e: &E| e.id().to_string())
        } else {
            None
        };
        Page { items, next_after }
    }

    /// One entity if it exists and `who` may see it.
    pub(crate) fn get<E: Entity>(&self, who: &Principal, id: &E::Id) -> Option<E> {
        let snap = self.snapshot();
        E::table(&snap.data)
            .get(id)
            .filter(|e| e.visible(who, &snap))
            .cloned()
    }

    /// Upserts a maintenance record; true when it is new.
    pub(crate) fn record_maintenance(
        &self,
        record: MaintenanceRecord,
    ) -> Result<bool, RegistryError> {
        let key = record.key();
        let report = self.mutate(|data| {
            apply(
                data,
                ImportDoc {
                    maintenance: vec![record],
                    ..ImportDoc::default()
                },
                false,
                true,
            )
        })?;
        let created = report.counts.maintenance.created == 1;
        info!(equipment = %key.0, kind = %key.1, done_at = %key.2, created, "Maintenance recorded.");
        Ok(created)
    }

    /// The maintenance records of one piece of equipment, oldest key first.
    pub(crate) fn maintenance_of(&self, equipment: &EquipmentId) -> Vec<MaintenanceRecord> {
        let snap = self.snapshot();
        snap.data
            .maintenance
            .values()
            .filter(|m| &m.equipment_id == equipment)
            .cloned()
            .collect()
    }
}

fn invalid<E: Entity>(index: Option<usize>, id: &E::Id, e: FieldError) -> RegistryError {
    RegistryError::Invalid {
        entity: if index.is_some() { E::KEY } else { E::NAME },
        index,
        id_field: E::ID_FIELD,
        id: id.to_string(),
        field: e.field,
        message: e.message,
    }
}

/// Field checks and duplicate ids within the document.
fn stage<E: Entity>(list: &[E], indexed: bool) -> Result<(), RegistryError> {
    let mut seen: HashMap<&E::Id, usize> = HashMap::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let at = indexed.then_some(i);
        e.check().map_err(|fe| invalid::<E>(at, e.id(), fe))?;
        if let Some(first) = seen.insert(e.id(), i) {
            let fe = field_err(
                E::ID_FIELD,
                format!("duplicate id, already at {}[{first}]", E::KEY),
            );
            return Err(invalid::<E>(at, e.id(), fe));
        }
    }
    Ok(())
}

/// Upserts `list`; returns each id with whether it was new.
fn merge<E: Entity>(data: &mut Data, list: Vec<E>, counts: &mut Counts) -> Vec<(E::Id, bool)> {
    let table = E::table_mut(data);
    let mut ids = Vec::with_capacity(list.len());
    for e in list {
        let id = e.id().clone();
        let created = table.insert(id.clone(), e).is_none();
        if created {
            counts.created += 1;
        } else {
            counts.updated += 1;
        }
        ids.push((id, created));
    }
    ids
}

/// References of the merged entities, against the merged tables.
fn refs<E: Entity>(data: &Data, ids: &[(E::Id, bool)], indexed: bool) -> Result<(), RegistryError> {
    for (i, (id, _)) in ids.iter().enumerate() {
        if let Some(e) = E::table(data).get(id) {
            e.check_refs(data)
                .map_err(|fe| invalid::<E>(indexed.then_some(i), id, fe))?;
        }
    }
    Ok(())
}

/// Applies an import document to `data` (a scratch copy): checks fields and
/// duplicates, merges everything, then checks references against the
/// result, so the order of lists and entries does not matter. `indexed`
/// names entries by their index (an import) rather than alone (one CRUD
/// call); `fresh_secrets` is off when loading from disk.
pub(crate) fn apply(
    data: &mut Data,
    doc: ImportDoc,
    indexed: bool,
    fresh_secrets: bool,
) -> Result<ImportReport, RegistryError> {
    let ImportDoc {
        owners,
        maintainers,
        stations,
        equipment,
        devices,
        persons,
        cylinders,
        maintenance,
    } = doc;
    stage(&owners, indexed)?;
    stage(&maintainers, indexed)?;
    stage(&stations, indexed)?;
    stage(&equipment, indexed)?;
    stage(&devices, indexed)?;
    stage(&persons, indexed)?;
    stage(&cylinders, indexed)?;
    let mut seen: HashMap<MaintenanceKey, usize> = HashMap::new();
    for (i, m) in maintenance.iter().enumerate() {
        let bad = |fe: FieldError| maintenance_invalid(indexed.then_some(i), m, fe);
        m.check().map_err(bad)?;
        if let Some(first) = seen.insert(m.key(), i) {
            return Err(bad(field_err(
                "done_at",
                format!("same equipment_id, kind and done_at as maintenance[{first}]"),
            )));
        }
    }

    let mut report = ImportReport {
        note: IMPORT_NOTE.to_owned(),
        version: data.version,
        ..ImportReport::default()
    };
    for (i, e) in equipment.iter().enumerate() {
        for (param, rule) in e.missing_params() {
            let at = if indexed {
                format!("equipment[{i}] ({:?})", e.equipment_id.as_str())
            } else {
                format!("equipment {:?}", e.equipment_id.as_str())
            };
            report.warnings.push(format!(
                "{at}: params.{param} is missing, so {rule} cannot be evaluated"
            ));
        }
    }
    let c = &mut report.counts;
    let owner_ids = merge(data, owners, &mut c.owners);
    let maintainer_ids = merge(data, maintainers, &mut c.maintainers);
    let station_ids = merge(data, stations, &mut c.stations);
    let equipment_ids = merge(data, equipment, &mut c.equipment);
    keep_maintenance_dates(data, &equipment_ids);
    let device_ids = merge(data, devices, &mut c.devices);
    let person_ids = merge(data, persons, &mut c.persons);
    let cylinder_ids = merge(data, cylinders, &mut c.cylinders);

    refs::<Owner>(data, &owner_ids, indexed)?;
    refs::<Maintainer>(data, &maintainer_ids, indexed)?;
    refs::<Station>(data, &station_ids, indexed)?;
    refs::<Equipment>(data, &equipment_ids, indexed)?;
    refs::<Device>(data, &device_ids, indexed)?;
    refs::<Person>(data, &person_ids, indexed)?;
    refs::<Cylinder>(data, &cylinder_ids, indexed)?;

    for (i, m) in maintenance.into_iter().enumerate() {
        let at = indexed.then_some(i);
        let Some(eq) = data.equipment.get_mut(&m.equipment_id) else {
            return Err(maintenance_invalid(
                at,
                &m,
                field_err(
                    "equipment_id",
                    format!(
                        "equipment {:?} is neither in this document nor in the registry",
                        m.equipment_id.as_str()
                    ),
                ),
            ));
        };
        if !data.persons.contains_key(&m.person_id) {
            return Err(maintenance_invalid(
                at,
                &m,
                field_err(
                    "person_id",
                    format!(
                        "person {:?} is neither in this document nor in the registry",
                        m.person_id.as_str()
                    ),
                ),
            ));
        }
        if let Some(day) = m.done_on()
            && eq.last_maintenance.is_none_or(|last| last < day)
        {
            eq.last_maintenance = Some(day);
        }
        if data.maintenance.insert(m.key(), m).is_none() {
            report.counts.maintenance.created += 1;
        } else {
            report.counts.maintenance.updated += 1;
        }
    }

    for (id, created) in device_ids {
        if !created {
            report.secrets_kept.push(id);
        } else if fresh_secrets {
            let secret = hex::encode(random_bytes::<32>());
            data.secrets.insert(id.clone(), SecretHash::new(&secret));
            report.devices.push(NewDeviceSecret {
                device_id: id,
                secret,
            });
        }
    }
    Ok(report)
}

/// A replaced piece of equipment keeps what its recorded maintenance says:
/// `last_maintenance` never goes back behind a record it already has (else
/// the next start, whose load applies the records again, would move it
/// forward: a restart would change the registry).
fn keep_maintenance_dates(data: &mut Data, merged: &[(EquipmentId, bool)]) {
    if merged.is_empty() || data.maintenance.is_empty() {
        return;
    }
    let merged: std::collections::HashSet<&EquipmentId> = merged.iter().map(|(id, _)| id).collect();
    let mut latest: HashMap<EquipmentId, chrono::NaiveDate> = HashMap::new();
    for m in data.maintenance.values() {
        if let Some(day) = m.done_on()
            && merged.contains(&m.equipment_id)
        {
            let e = latest.entry(m.equipment_id.clone()).or_insert(day);
            *e = (*e).max(day);
        }
    }
    for (id, day) in latest {
        if let Some(eq) = data.equipment.get_mut(&id)
            && eq.last_maintenance.is_none_or(|last| last < day)
        {
            eq.last_maintenance = Some(day);
        }
    }
}

fn maintenance_invalid(
    index: Option<usize>,
    m: &MaintenanceRecord,
    e: FieldError,
) -> RegistryError {
    RegistryError::Invalid {
        entity: if index.is_some() {
            "maintenance"
        } else {
            "maintenance record of equipment"
        },
        index,
        id_field: "equipment_id",
        id: m.equipment_id.to_string(),
        field: e.field,
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_themselves() {
        let h = SecretHash::new("abc");
        assert!(h.verify("abc"));
        assert!(!h.verify("abd"));
        assert!(!h.verify(""));
        let other = SecretHash::new("abc");
        assert_ne!(h.salt, other.salt, "salts are random");
        assert_ne!(h.sha256, other.sha256, "same secret, different hash");
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn filters_match_sub_regions() {
        let f = Filters {
            region: Region::new("440700").ok(),
            ..Filters::default()
        };
        let inside = Attrs {
            region: Region::new("440703").ok(),
            ..Attrs::default()
        };
        let outside = Attrs {
            region: Region::new("440100").ok(),
            ..Attrs::default()
        };
        assert!(f.matches(&inside));
        assert!(!f.matches(&outside));
        assert!(!f.matches(&Attrs::default()));
    }
}
