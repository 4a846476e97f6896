//! One consistent state of the registry, and how a change moves it on.
//!
//! The tables are persistent maps (`imbl`): cloning a snapshot is O(1) and
//! a change copies only the paths it touches. So a change is validated on
//! a cheap copy ([`Txn`]), and [`commit`] turns it into the next snapshot
//! and a [`Change`] (what the log keeps and what consumers receive) in
//! O(size of the change × log n), never O(registry). The indexes a change
//! must keep (which devices sit on a piece of equipment, where an owner is
//! present, how often an entity is referred to) are updated from the
//! change's old and new values in the same step.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigil_model::{
    Binding, DeviceContext, DeviceId, EquipmentId, MaintainerId, OwnerId, Region, Resolution,
};

use super::secrets::{SecretHash, StoredToken, TokenEntry};
use crate::auth::TokenId;
use crate::entity::*;
use crate::table::Entity;
use crate::types::*;

/// An entity table: id → entity, in id order (lists page by id).
pub(crate) type Table<K, E> = OrdMap<K, Arc<E>>;

/// The tables: everything the registry knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Data {
    pub version: u64,
    pub owners: Table<OwnerId, Owner>,
    pub maintainers: Table<MaintainerId, Maintainer>,
    pub stations: Table<StationId, Station>,
    pub equipment: Table<EquipmentId, Equipment>,
    pub devices: Table<DeviceId, Device>,
    pub persons: Table<PersonId, Person>,
    pub cylinders: Table<CylinderCode, Cylinder>,
    pub maintenance: Table<MaintenanceKey, MaintenanceRecord>,
    pub secrets: OrdMap<DeviceId, SecretHash>,
    /// In the order they were issued (lists show them so). Few: a copy
    /// per token change is nothing.
    pub tokens: Arc<Vec<StoredToken>>,
}

impl Data {
    /// The maintenance records of one piece of equipment, oldest key first.
    pub(crate) fn maintenance_of<'a>(
        &'a self,
        equipment: &'a EquipmentId,
    ) -> impl Iterator<Item = &'a Arc<MaintenanceRecord>> + 'a {
        let from = (equipment.clone(), MaintenanceKind::HalfMonth, String::new());
        self.maintenance
            .range((Bound::Included(from), Bound::Unbounded))
            .take_while(move |(k, _)| &k.0 == equipment)
            .map(|(_, m)| m)
    }
}

/// The lower bound of a range of composite keys: `(a, First)` sorts before
/// every `(a, Is(_))`, so `range((a, First)..)` lists everything under `a`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Sub<T> {
    First,
    Is(T),
}

/// What is referred to, for the counts that block a delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RefKey {
    /// By equipment and stations.
    Owner(OwnerId),
    /// By equipment.
    Maintainer(MaintainerId),
    /// By persons (an owner or a maintainer id).
    Employer(EmployerId),
    /// By cylinders.
    StationCylinders(StationId),
    /// By maintenance records.
    Person(PersonId),
}

/// Derived from the tables, kept up to date by [`commit`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    /// Devices bound to each piece of equipment / station.
    pub equipment_devices: OrdSet<(EquipmentId, Sub<DeviceId>)>,
    pub station_devices: OrdSet<(StationId, Sub<DeviceId>)>,
    /// Regions an owner is present in (its own, its equipment's, its
    /// stations'), with how many entities put it there.
    pub owner_regions: OrdMap<(OwnerId, Sub<Region>), u32>,
    /// (owner, region) of the equipment each maintainer looks after.
    pub maintainer_scope: OrdMap<(MaintainerId, Sub<(OwnerId, Region)>), u32>,
    pub refs: OrdMap<RefKey, u32>,
    /// SHA-256 (hex) of a token → what it grants and until when.
    pub tokens: Arc<HashMap<String, TokenEntry>>,
    /// Token id → SHA-256 (hex), for revocation and validity checks.
    pub token_ids: Arc<HashMap<TokenId, String>>,
}

impl Indexes {
    pub(crate) fn count(&mut self, key: RefKey, add: bool) {
        bump(&mut self.refs, key, add);
    }

    pub(crate) fn refs(&self, key: &RefKey) -> u32 {
        self.refs.get(key).copied().unwrap_or(0)
    }

    pub(crate) fn owner_in(&mut self, owner: &OwnerId, region: Region, add: bool) {
        bump(
            &mut self.owner_regions,
            (owner.clone(), Sub::Is(region)),
            add,
        );
    }

    pub(crate) fn scope(&mut self, key: (MaintainerId, Sub<(OwnerId, Region)>), add: bool) {
        bump(&mut self.maintainer_scope, key, add);
    }

    pub(crate) fn owner_regions<'a>(
        &'a self,
        owner: &'a OwnerId,
    ) -> impl Iterator<Item = Region> + 'a {
        self.owner_regions
            .range((
                Bound::Included((owner.clone(), Sub::First)),
                Bound::Unbounded,
            ))
            .take_while(move |((o, _), _)| o == owner)
            .filter_map(|((_, r), _)| match r {
                Sub::Is(r) => Some(*r),
                Sub::First => None,
            })
    }

    pub(crate) fn maintainer_scope<'a>(
        &'a self,
        m: &'a MaintainerId,
    ) -> impl Iterator<Item = &'a (OwnerId, Region)> + 'a {
        self.maintainer_scope
            .range((Bound::Included((m.clone(), Sub::First)), Bound::Unbounded))
            .take_while(move |((x, _), _)| x == m)
            .filter_map(|((_, s), _)| match s {
                Sub::Is(s) => Some(s),
                Sub::First => None,
            })
    }

    pub(crate) fn devices_on<'a>(
        &'a self,
        equipment: &'a EquipmentId,
    ) -> impl Iterator<Item = &'a DeviceId> + 'a {
        self.equipment_devices
            .range((
                Bound::Included((equipment.clone(), Sub::First)),
                Bound::Unbounded,
            ))
            .take_while(move |(e, _)| e == equipment)
            .filter_map(|(_, d)| match d {
                Sub::Is(d) => Some(d),
                Sub::First => None,
            })
    }

    pub(crate) fn devices_at<'a>(
        &'a self,
        station: &'a StationId,
    ) -> impl Iterator<Item = &'a DeviceId> + 'a {
        self.station_devices
            .range((
                Bound::Included((station.clone(), Sub::First)),
                Bound::Unbounded,
            ))
            .take_while(move |(s, _)| s == station)
            .filter_map(|(_, d)| match d {
                Sub::Is(d) => Some(d),
                Sub::First => None,
            })
    }

    fn rebuild_tokens(&mut self, tokens: &[StoredToken]) {
        self.tokens = Arc::new(
            tokens
                .iter()
                .map(|t| (t.sha256.clone(), t.entry()))
                .collect(),
        );
        self.token_ids = Arc::new(
            tokens
                .iter()
                .map(|t| (t.id.clone(), t.sha256.clone()))
                .collect(),
        );
    }
}

fn bump<K: Ord + Clone>(map: &mut OrdMap<K, u32>, key: K, add: bool) {
    if add {
        *map.entry(key).or_insert(0) += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// One consistent state: the tables plus what is derived from them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub data: Data,
    pub idx: Indexes,
}

impl Snapshot {
    /// Where a device's readings belong, built from the tables (the
    /// registry caches it for the devices that send).
    pub(crate) fn resolution(&self, device: &DeviceId) -> Resolution {
        let Some(device) = self.data.devices.get(device) else {
            return Resolution::Unknown;
        };
        if !device.enabled {
            return Resolution::Disabled;
        }
        let data = &self.data;
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
            (binding, Arc::clone(&e.params))
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
            (binding, Arc::new(params))
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
            engine_slot: Default::default(),
        }))
    }

    /// Every check an import makes, over the whole state: for what was
    /// read from disk. The first problem found, as text.
    pub(crate) fn check_all(&self) -> Result<(), String> {
        fn each<E: Entity>(d: &Data) -> Result<(), String> {
            for (id, e) in E::table(d).iter() {
                e.check().and_then(|()| e.check_refs(d)).map_err(|fe| {
                    format!(
                        "{} {:?}: {}: {}",
                        E::NAME,
                        id.to_string(),
                        fe.field,
                        fe.message
                    )
                })?;
            }
            Ok(())
        }
        let d = &self.data;
        each::<Owner>(d)?;
        each::<Maintainer>(d)?;
        each::<Station>(d)?;
        each::<Equipment>(d)?;
        each::<Device>(d)?;
        each::<Person>(d)?;
        each::<Cylinder>(d)?;
        for m in d.maintenance.values() {
            m.check().map_err(|fe| {
                format!(
                    "maintenance of {:?}: {}: {}",
                    m.equipment_id.as_str(),
                    fe.field,
                    fe.message
                )
            })?;
            if !d.equipment.contains_key(&m.equipment_id) {
                return Err(format!(
                    "maintenance names equipment {:?}, which is not in the registry",
                    m.equipment_id.as_str()
                ));
            }
            if !d.persons.contains_key(&m.person_id) {
                return Err(format!(
                    "maintenance names person {:?}, which is not in the registry",
                    m.person_id.as_str()
                ));
            }
        }
        if let Some(id) = d.devices.keys().find(|id| !d.secrets.contains_key(*id)) {
            return Err(format!("device {:?} has no secret", id.as_str()));
        }
        if let Some(id) = d.secrets.keys().find(|id| !d.devices.contains_key(*id)) {
            return Err(format!(
                "a secret names device {:?}, which is not in the registry",
                id.as_str()
            ));
        }
        let mut ids = std::collections::HashSet::new();
        if let Some(t) = d.tokens.iter().find(|t| !ids.insert(t.id.clone())) {
            return Err(format!("token id {} appears twice", t.id));
        }
        Ok(())
    }
}

/// The keys a transaction wrote, per table.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub owners: Vec<OwnerId>,
    pub maintainers: Vec<MaintainerId>,
    pub stations: Vec<StationId>,
    pub equipment: Vec<EquipmentId>,
    pub devices: Vec<DeviceId>,
    pub persons: Vec<PersonId>,
    pub cylinders: Vec<CylinderCode>,
    pub maintenance: Vec<MaintenanceKey>,
    pub secrets: Vec<DeviceId>,
    pub tokens: Vec<TokenId>,
}

/// A change in the making: a copy of the tables (O(1)) that the change
/// writes, noting each key it writes. Dropped on any error: nothing of it
/// is seen.
pub(crate) struct Txn {
    base: Arc<Snapshot>,
    pub data: Data,
    touched: Touched,
}

impl Txn {
    /// A copy of `base` whose version is the next one.
    pub(crate) fn new(base: Arc<Snapshot>) -> Txn {
        let mut data = base.data.clone();
        data.version += 1;
        Txn {
            base,
            data,
            touched: Touched::default(),
        }
    }

    /// The state the change started from (its indexes answer for it).
    pub(crate) fn base(&self) -> &Snapshot {
        &self.base
    }

    /// Inserts or replaces; true when the id is new.
    pub(crate) fn put<E: Entity>(&mut self, e: E) -> bool {
        self.put_arc(Arc::new(e))
    }

    pub(crate) fn put_arc<E: Entity>(&mut self, e: Arc<E>) -> bool {
        let id = e.id().clone();
        E::touched(&mut self.touched).push(id.clone());
        E::table_mut(&mut self.data).insert(id, e).is_none()
    }

    pub(crate) fn remove<E: Entity>(&mut self, id: &E::Id) -> bool {
        E::touched(&mut self.touched).push(id.clone());
        E::table_mut(&mut self.data).remove(id).is_some()
    }

    pub(crate) fn put_maintenance(&mut self, m: Arc<MaintenanceRecord>) -> bool {
        let key = m.key();
        self.touched.maintenance.push(key.clone());
        self.data.maintenance.insert(key, m).is_none()
    }

    pub(crate) fn remove_maintenance(&mut self, key: &MaintenanceKey) {
        self.touched.maintenance.push(key.clone());
        self.data.maintenance.remove(key);
    }

    pub(crate) fn set_secret(&mut self, device: DeviceId, hash: Option<SecretHash>) {
        self.touched.secrets.push(device.clone());
        match hash {
            Some(h) => {
                self.data.secrets.insert(device, h);
            }
            None => {
                self.data.secrets.remove(&device);
            }
        }
    }

    /// Adds a token, or replaces the one with its id.
    pub(crate) fn put_token(&mut self, token: StoredToken) {
        self.touched.tokens.push(token.id.clone());
        let tokens = Arc::make_mut(&mut self.data.tokens);
        match tokens.iter_mut().find(|t| t.id == token.id) {
            Some(t) => *t = token,
            None => tokens.push(token),
        }
    }

    /// Applies a committed change (from the log or a snapshot file) as it
    /// was: no checks, they were made when it was committed.
    pub(crate) fn replay(&mut self, change: &Change) {
        fn each<E: Entity>(tx: &mut Txn, change: &Change) {
            for (id, e) in E::changes(change) {
                match e {
                    Some(e) => {
                        tx.put_arc(Arc::clone(e));
                    }
                    None => {
                        tx.remove::<E>(id);
                    }
                }
            }
        }
        each::<Owner>(self, change);
        each::<Maintainer>(self, change);
        each::<Station>(self, change);
        each::<Equipment>(self, change);
        each::<Device>(self, change);
        each::<Person>(self, change);
        each::<Cylinder>(self, change);
        for (key, m) in &change.maintenance {
            match m {
                Some(m) => {
                    self.put_maintenance(Arc::clone(m));
                }
                None => self.remove_maintenance(key),
            }
        }
        for (device, hash) in &change.secrets {
            self.set_secret(device.clone(), *hash);
        }
        for t in &change.tokens {
            self.put_token(t.clone());
        }
    }
}

/// One committed change: what was written, each entity with its new value
/// or `None` for a deletion. The log keeps it (JSON); consumers of
/// [`crate::Registry::changes_since`] get it to update what they derive
/// (the SQL reference tables, the registry-time rules).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The registry version this change produced.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub owners: Vec<(OwnerId, Option<Arc<Owner>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub maintainers: Vec<(MaintainerId, Option<Arc<Maintainer>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub stations: Vec<(StationId, Option<Arc<Station>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub equipment: Vec<(EquipmentId, Option<Arc<Equipment>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub devices: Vec<(DeviceId, Option<Arc<Device>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub persons: Vec<(PersonId, Option<Arc<Person>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub cylinders: Vec<(CylinderCode, Option<Arc<Cylinder>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "arc_list")]
    pub maintenance: Vec<(MaintenanceKey, Option<Arc<MaintenanceRecord>>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) secrets: Vec<(DeviceId, Option<SecretHash>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tokens: Vec<StoredToken>,
}

/// Serde for a change's lists of shared entities, an `Arc<E>` written as
/// `E` (what serde's `rc` feature would do, without turning it on for every
/// crate in the build).
mod arc_list {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S, K, E>(list: &[(K, Option<Arc<E>>)], s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize,
        E: Serialize,
    {
        s.collect_seq(list.iter().map(|(k, e)| (k, e.as_deref())))
    }

    type Entries<K, E> = Vec<(K, Option<Arc<E>>)>;

    pub(super) fn deserialize<'de, D, K, E>(d: D) -> Result<Entries<K, E>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de>,
        E: Deserialize<'de>,
    {
        let list = Vec::<(K, Option<E>)>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|(k, e)| (k, e.map(Arc::new)))
            .collect())
    }
}

impl Change {
    /// How many entities it writes (its weight in the change feed).
    pub fn len(&self) -> usize {
        self.owners.len()
            + self.maintainers.len()
            + self.stations.len()
            + self.equipment.len()
            + self.devices.len()
            + self.persons.len()
            + self.cylinders.len()
            + self.maintenance.len()
            + self.secrets.len()
            + self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn dedup<K: Ord + Clone>(keys: &mut Vec<K>) {
    keys.sort();
    keys.dedup();
}

/// Turns a transaction into the next snapshot (at `tx.data.version`) and
/// the change that leads there. O(keys written × log n).
pub(crate) fn commit(tx: Txn) -> (Snapshot, Change) {
    fn each<E: Entity>(
        base: &Data,
        next: &Data,
        touched: &mut Touched,
        idx: &mut Indexes,
        change: &mut Change,
    ) {
        let keys = E::touched(touched);
        dedup(keys);
        let (old_t, new_t) = (E::table(base), E::table(next));
        for id in keys.drain(..) {
            let (old, new) = (old_t.get(&id), new_t.get(&id));
            match (old, new) {
                (Some(o), Some(n)) if Arc::ptr_eq(o, n) => continue,
                (None, None) => continue,
                _ => {}
            }
            if let Some(o) = old {
                o.index(idx, false);
            }
            if let Some(n) = new {
                n.index(idx, true);
            }
            E::changes_mut(change).push((id, new.cloned()));
        }
    }
    let Txn {
        base,
        data,
        mut touched,
    } = tx;
    let mut idx = base.idx.clone();
    let mut change = Change {
        version: data.version,
        ..Change::default()
    };
    let b = &base.data;
    each::<Owner>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Maintainer>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Station>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Equipment>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Device>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Person>(b, &data, &mut touched, &mut idx, &mut change);
    each::<Cylinder>(b, &data, &mut touched, &mut idx, &mut change);
    dedup(&mut touched.maintenance);
    for key in touched.maintenance.drain(..) {
        let (old, new) = (b.maintenance.get(&key), data.maintenance.get(&key));
        match (old, new) {
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) => continue,
            (None, None) => continue,
            _ => {}
        }
        if let Some(o) = old {
            idx.count(RefKey::Person(o.person_id.clone()), false);
        }
        if let Some(n) = new {
            idx.count(RefKey::Person(n.person_id.clone()), true);
        }
        change.maintenance.push((key, new.cloned()));
    }
    dedup(&mut touched.secrets);
    for device in touched.secrets.drain(..) {
        let new = data.secrets.get(&device).copied();
        if b.secrets.get(&device).copied() != new {
            change.secrets.push((device, new));
        }
    }
    if !touched.tokens.is_empty() {
        dedup(&mut touched.tokens);
        for t in data.tokens.iter() {
            if touched.tokens.binary_search(&t.id).is_ok() {
                change.tokens.push(t.clone());
            }
        }
        idx.rebuild_tokens(&data.tokens);
    }
    (Snapshot { data, idx }, change)
}
