//! The registry itself: [`Registry`], its write path and its reads.
//!
//! A change (an import, one CRUD call, a maintenance record, a token) runs
//! on a copy of the current snapshot (O(1), persistent maps), is validated
//! there, committed into the next snapshot and a [`Change`], appended to
//! the change log and fsync'd, and only then swapped in and published to
//! the change feed. Any error on the way changes nothing. Readers take the
//! current snapshot and never wait for a writer.
//!
//! - [`snapshot`]: the tables, their indexes, transactions and commit.
//! - [`import`]: the validated bulk upsert behind every create and replace.
//! - [`secrets`]: device-secret and token hashes.
//! - `disk`, `log`: the change log and snapshot files; `legacy`:
//!   `registry.json` of older engines, migrated once.

mod disk;
pub(crate) mod import;
mod legacy;
mod log;
pub(crate) mod secrets;
pub(crate) mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use chrono::DateTime;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::{info, warn};
use vigil_model::{DeviceId, EpochMs, EquipmentId, OwnerId, Region, Resolution};

use self::disk::Disk;
pub use self::disk::DiskOptions;
use self::import::apply;
pub use self::import::{Counts, ImportCounts, ImportReport, NewDeviceSecret};
use self::secrets::{StoredToken, random_bytes, token_hash, verify_or_pretend};
pub use self::snapshot::Change;
use self::snapshot::{Snapshot, Txn, commit};
use crate::auth::{IssuedToken, Principal, Refusal, TokenId, TokenInfo, TokenPolicy, TokenRequest};
use crate::entity::*;
use crate::error::RegistryError;
use crate::table::{Attrs, Entity};
use crate::types::*;

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

/// How many recent changes the feed keeps for [`Registry::changes_since`],
/// counted in entities: a consumer further behind rebuilds from a
/// snapshot instead. About a province's equipment and devices, in `Arc`s
/// shared with the tables.
const FEED_ENTITIES: usize = 4_000_000;

/// The recent changes, oldest first.
#[derive(Default)]
struct Feed {
    changes: VecDeque<Arc<Change>>,
    entities: usize,
}

/// The serialized part of the write path: the log (`None` in memory).
struct Writer {
    disk: Option<Disk>,
}

/// The registry: owners, maintainers, stations, equipment, devices,
/// persons, cylinders and maintenance records, device secrets and API
/// tokens. `Send + Sync`; share it as `Arc<Registry>`.
pub struct Registry {
    /// Readers clone the `Arc` and let go of the lock at once; a commit
    /// swaps in the next snapshot.
    state: RwLock<Arc<Snapshot>>,
    /// Serializes changes (each is validated against, and logged after,
    /// the one before it) and owns the change log.
    writer: Mutex<Writer>,
    /// Device → context for the devices that have been resolved: ingest's
    /// per-message lookup is one hash lookup, and a device that never
    /// sends costs nothing here. Entries of changed devices are dropped at
    /// each commit; a read lock per message, a write lock per first
    /// message of a device.
    contexts: RwLock<HashMap<DeviceId, Resolution>>,
    /// Recent changes for consumers of [`Registry::changes_since`]; one
    /// short lock per commit and per read.
    feed: Mutex<Feed>,
    /// The version after every commit.
    changed: tokio::sync::watch::Sender<u64>,
    /// Bumped after every token revocation, so that whatever a token
    /// opened (an SSE stream, a running query) can end at once.
    token_changes: tokio::sync::watch::Sender<u64>,
    /// When each issued token was last used, since start (not persisted:
    /// a write per request would be too dear). One short lock per request.
    last_used: Mutex<HashMap<TokenId, EpochMs>>,
}

impl Registry {
    /// Opens the registry kept in `data_dir/registry/` (created 0700 if
    /// missing), migrating `data_dir/registry.json` of an older engine.
    pub fn open(data_dir: &Path) -> Result<Registry, RegistryError> {
        Registry::open_with(data_dir, DiskOptions::default())
    }

    /// [`Registry::open`] with the log's compaction threshold given.
    pub fn open_with(data_dir: &Path, options: DiskOptions) -> Result<Registry, RegistryError> {
        let (snapshot, disk) = Disk::open(data_dir, options)?;
        let d = &snapshot.data;
        info!(
            path = %data_dir.join(disk::DIR).display(),
            version = d.version,
            equipment = d.equipment.len(),
            devices = d.devices.len(),
            "Registry opened."
        );
        let forever = d
            .tokens
            .iter()
            .filter(|t| t.expires_at.is_none() && t.revoked_at.is_none())
            .count();
        if forever > 0 {
            warn!(
                tokens = forever,
                "API tokens without an expiry (issued before tokens expired): list them with `vigil token list`, revoke and re-issue."
            );
        }
        Ok(Registry::with(snapshot, Some(disk)))
    }

    /// An empty registry that keeps nothing on disk (tests, demos).
    pub fn in_memory() -> Registry {
        Registry::with(Snapshot::default(), None)
    }

    fn with(snapshot: Snapshot, disk: Option<Disk>) -> Registry {
        let version = snapshot.data.version;
        Registry {
            state: RwLock::new(Arc::new(snapshot)),
            writer: Mutex::new(Writer { disk }),
            contexts: RwLock::new(HashMap::new()),
            feed: Mutex::new(Feed::default()),
            changed: tokio::sync::watch::Sender::new(version),
            token_changes: tokio::sync::watch::Sender::new(0),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().clone()
    }

    /// Runs `change` on a copy of the current snapshot, commits it, makes
    /// it durable and swaps it in; on any error nothing changes. `change`
    /// sees the new version in `tx.data.version`.
    fn mutate<R>(
        &self,
        change: impl FnOnce(&mut Txn) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let mut writer = self.writer.lock();
        let mut tx = Txn::new(self.snapshot());
        let out = change(&mut tx)?;
        let (next, change) = commit(tx);
        if let Some(disk) = &mut writer.disk {
            disk.append(&change)?;
        }
        let next = Arc::new(next);
        *self.state.write() = Arc::clone(&next);
        self.forget_contexts(&next, &change);
        let version = change.version;
        self.publish(Arc::new(change));
        self.changed.send_replace(version);
        if let Some(disk) = &mut writer.disk {
            disk.after_commit(&next);
        }
        Ok(out)
    }

    /// Drops the cached contexts a change may have made wrong: its devices,
    /// and the devices of its equipment and stations.
    fn forget_contexts(&self, next: &Snapshot, change: &Change) {
        let mut cache = self.contexts.write();
        if cache.is_empty() {
            return;
        }
        for (id, _) in &change.devices {
            cache.remove(id);
        }
        for (id, _) in &change.equipment {
            for d in next.idx.devices_on(id) {
                cache.remove(d);
            }
        }
        for (id, _) in &change.stations {
            for d in next.idx.devices_at(id) {
                cache.remove(d);
            }
        }
    }

    fn publish(&self, change: Arc<Change>) {
        let mut feed = self.feed.lock();
        feed.entities += change.len();
        feed.changes.push_back(change);
        while feed.entities > FEED_ENTITIES && feed.changes.len() > 1 {
            if let Some(old) = feed.changes.pop_front() {
                feed.entities -= old.len();
            }
        }
    }

    /// The changes after `version`, oldest first, each with the entities it
    /// wrote. `None` when they are no longer all kept (the consumer is too
    /// far behind, or `version` is not one this registry had since it
    /// opened): rebuild from [`Registry::export`] then.
    pub fn changes_since(&self, version: u64) -> Option<Vec<Arc<Change>>> {
        let current = self.version();
        if version == current {
            return Some(Vec::new());
        }
        let feed = self.feed.lock();
        let first = feed.changes.front()?.version;
        if version > current || version + 1 < first {
            return None;
        }
        Some(
            feed.changes
                .iter()
                .filter(|c| c.version > version)
                .cloned()
                .collect(),
        )
    }

    /// The version after each commit, for consumers that follow the
    /// registry ([`Registry::changes_since`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Bulk upsert, validated as a whole: any mistake changes nothing.
    pub fn import(&self, doc: ImportDoc) -> Result<ImportReport, RegistryError> {
        let report = self.mutate(|tx| apply(tx, doc, true, true))?;
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

    /// Where a device's readings belong. After a device's first message,
    /// one hash lookup under a read lock.
    pub fn resolve(&self, device: &DeviceId) -> Resolution {
        if let Some(r) = self.contexts.read().get(device) {
            return r.clone();
        }
        let snap = self.snapshot();
        let r = snap.resolution(device);
        // Unknown ids are not kept: anyone can make up any number of them.
        if !matches!(r, Resolution::Unknown) {
            let mut cache = self.contexts.write();
            // A commit since `snap` may already have dropped this device's
            // entry; caching what it computed from `snap` would bring the
            // old context back. (A commit swaps the state before it takes
            // this lock, so the check sees it.)
            if self.state.read().data.version == snap.data.version {
                cache.insert(device.clone(), r.clone());
            }
        }
        r
    }

    /// Whether `secret` is the secret of an enabled device `device_id`.
    pub fn verify_device_secret(&self, device_id: &str, secret: &str) -> bool {
        let snap = self.snapshot();
        let stored = DeviceId::new(device_id)
            .ok()
            .filter(|id| snap.data.devices.get(id).is_some_and(|d| d.enabled))
            .and_then(|id| snap.data.secrets.get(&id));
        verify_or_pretend(stored, secret)
    }

    /// Bumps on every change.
    pub fn version(&self) -> u64 {
        self.state.read().data.version
    }

    /// Every entity (no secrets, no tokens), ids sorted. Copies the whole
    /// registry: for tests and small registries; consumers that follow a
    /// large one use [`Registry::changes_since`] and [`Registry::each`].
    pub fn export(&self) -> Export {
        let snap = self.snapshot();
        let d = &snap.data;
        fn all<K: Ord, E: Clone>(t: &snapshot::Table<K, E>) -> Vec<E> {
            t.values().map(|e| E::clone(e)).collect()
        }
        Export {
            version: d.version,
            owners: all(&d.owners),
            maintainers: all(&d.maintainers),
            stations: all(&d.stations),
            equipment: all(&d.equipment),
            devices: all(&d.devices),
            persons: all(&d.persons),
            cylinders: all(&d.cylinders),
            maintenance: all(&d.maintenance),
        }
    }

    /// Hands every entity of one consistent version to `visit`, without
    /// copying them; answers that version.
    pub fn each(&self, visit: &mut dyn FnMut(Entry<'_>)) -> u64 {
        let snap = self.snapshot();
        let d = &snap.data;
        d.owners.values().for_each(|e| visit(Entry::Owner(e)));
        d.maintainers
            .values()
            .for_each(|e| visit(Entry::Maintainer(e)));
        d.stations.values().for_each(|e| visit(Entry::Station(e)));
        d.equipment
            .values()
            .for_each(|e| visit(Entry::Equipment(e)));
        d.devices.values().for_each(|e| visit(Entry::Device(e)));
        d.persons.values().for_each(|e| visit(Entry::Person(e)));
        d.cylinders.values().for_each(|e| visit(Entry::Cylinder(e)));
        d.maintenance
            .values()
            .for_each(|e| visit(Entry::Maintenance(e)));
        d.version
    }

    /// Numbers of entities, for logs and benchmarks.
    pub fn sizes(&self) -> Sizes {
        let snap = self.snapshot();
        let d = &snap.data;
        Sizes {
            version: d.version,
            owners: d.owners.len(),
            maintainers: d.maintainers.len(),
            stations: d.stations.len(),
            equipment: d.equipment.len(),
            devices: d.devices.len(),
            persons: d.persons.len(),
            cylinders: d.cylinders.len(),
            maintenance: d.maintenance.len(),
            cached_contexts: self.contexts.read().len(),
        }
    }

    pub fn equipment(&self, id: &EquipmentId) -> Option<Equipment> {
        self.state
            .read()
            .data
            .equipment
            .get(id)
            .map(|e| Equipment::clone(e))
    }

    pub fn owner(&self, id: &OwnerId) -> Option<Owner> {
        self.state
            .read()
            .data
            .owners
            .get(id)
            .map(|e| Owner::clone(e))
    }

    /// A cylinder by the code a filling record carries.
    pub fn cylinder(&self, code: &str) -> Option<Cylinder> {
        let code = CylinderCode::new(code).ok()?;
        self.state
            .read()
            .data
            .cylinders
            .get(&code)
            .map(|e| Cylinder::clone(e))
    }

    /// A person (e.g. a filling record's `operator_id`) with certificates.
    pub fn person(&self, id: &str) -> Option<Person> {
        let id = PersonId::new(id).ok()?;
        self.state
            .read()
            .data
            .persons
            .get(&id)
            .map(|e| Person::clone(e))
    }

    pub fn station(&self, id: &str) -> Option<Station> {
        let id = StationId::new(id).ok()?;
        self.state
            .read()
            .data
            .stations
            .get(&id)
            .map(|e| Station::clone(e))
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
        self.mutate(|tx| {
            if let Some(o) = &stored.owner_id
                && !tx.data.owners.contains_key(o)
            {
                return Err(bad(
                    "owner_id",
                    &format!("owner {:?} is not in the registry", o.as_str()),
                ));
            }
            tx.put_token(stored);
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
            .idx
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
        snap.idx
            .token_ids
            .get(id)
            .and_then(|hash| snap.idx.tokens.get(hash))
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
        let changed = self.mutate(|tx| {
            // Found above; a concurrent revocation may have come first.
            let t = tx.data.tokens.iter().find(|t| &t.id == id).cloned();
            match t {
                Some(mut t) if t.revoked_at.is_none() => {
                    t.revoked_at = Some(at);
                    tx.put_token(t);
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
        let report = self.mutate(|tx| {
            if E::table(&tx.data).contains_key(&id) {
                return Err(RegistryError::AlreadyExists {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            let mut doc = ImportDoc::default();
            E::doc_list(&mut doc).push(entity);
            apply(tx, doc, false, true)
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
        self.mutate(|tx| {
            if !E::table(&tx.data).contains_key(id) {
                return Err(RegistryError::NotFound {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            let mut doc = ImportDoc::default();
            E::doc_list(&mut doc).push(entity);
            apply(tx, doc, false, true)
        })?;
        info!(entity = E::NAME, id = %id, "Registry entity updated.");
        Ok(())
    }

    pub(crate) fn delete<E: Entity>(&self, id: &E::Id) -> Result<(), RegistryError> {
        self.mutate(|tx| {
            if !E::table(&tx.data).contains_key(id) {
                return Err(RegistryError::NotFound {
                    entity: E::NAME,
                    id: id.to_string(),
                });
            }
            if let Some(by) = E::referenced_by(id, tx.base()) {
                return Err(RegistryError::InUse {
                    entity: E::NAME,
                    id: id.to_string(),
                    by,
                });
            }
            tx.remove::<E>(id);
            E::removed(id, tx);
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
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
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
            items.push(E::clone(e));
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
            .map(|e| E::clone(e))
    }

    /// Upserts a maintenance record; true when it is new.
    pub(crate) fn record_maintenance(
        &self,
        record: MaintenanceRecord,
    ) -> Result<bool, RegistryError> {
        let key = record.key();
        let report = self.mutate(|tx| {
            apply(
                tx,
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
            .maintenance_of(equipment)
            .map(|m| MaintenanceRecord::clone(m))
            .collect()
    }
}

/// One entity as [`Registry::each`] hands it over.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Owner(&'a Owner),
    Maintainer(&'a Maintainer),
    Station(&'a Station),
    Equipment(&'a Equipment),
    Device(&'a Device),
    Person(&'a Person),
    Cylinder(&'a Cylinder),
    Maintenance(&'a MaintenanceRecord),
}

/// How many entities of each kind the registry holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub version: u64,
    pub owners: usize,
    pub maintainers: usize,
    pub stations: usize,
    pub equipment: usize,
    pub devices: usize,
    pub persons: usize,
    pub cylinders: usize,
    pub maintenance: usize,
    /// Devices whose context ingest has asked for (and is cached).
    pub cached_contexts: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

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
