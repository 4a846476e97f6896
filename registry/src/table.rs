//! What the generic import, CRUD and list code needs to know about each
//! entity kind: its table, its references, who may see it and the
//! attributes list filters match on. One impl per entity, no copies of the
//! handlers.

use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use vigil_model::ids::IdError;
use vigil_model::{DeviceId, EquipmentId, MaintainerId, OwnerId, Region};

use crate::auth::Principal;
use crate::entity::*;
use crate::store::snapshot::{Change, Data, Indexes, RefKey, Snapshot, Sub, Table, Touched, Txn};
use crate::types::*;

/// What a list filter compares.
#[derive(Debug, Default)]
pub(crate) struct Attrs {
    pub region: Option<Region>,
    pub category: Option<&'static str>,
    pub owner_id: Option<OwnerId>,
    pub status: Option<&'static str>,
}

pub(crate) trait Entity:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Id: Clone + Ord + Hash + fmt::Display + fmt::Debug + FromStr<Err = IdError> + Send + Sync;
    /// Import-document key and URL segment: `owners`.
    const KEY: &'static str;
    /// For messages: `owner`.
    const NAME: &'static str;
    const ID_FIELD: &'static str;
    /// The list filters that apply (`region`, `category`, `owner_id`, `status`).
    const FILTERS: &'static [&'static str];
    const CATEGORY_WORDS: &'static [&'static str] = &[];
    const STATUS_WORDS: &'static [&'static str] = &[];

    fn id(&self) -> &Self::Id;
    fn table(d: &Data) -> &Table<Self::Id, Self>;
    fn table_mut(d: &mut Data) -> &mut Table<Self::Id, Self>;
    fn touched(t: &mut Touched) -> &mut Vec<Self::Id>;
    fn changes(c: &Change) -> &[(Self::Id, Option<Arc<Self>>)];
    fn changes_mut(c: &mut Change) -> &mut Vec<(Self::Id, Option<Arc<Self>>)>;
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self>;
    /// Its own fields, alone.
    fn check(&self) -> Result<(), FieldError>;
    /// Its references, against the registry as it would be after the change.
    fn check_refs(&self, d: &Data) -> Result<(), FieldError>;
    /// Adds (or, `add` false, takes away) what this entity puts into the
    /// indexes: the references it makes, where it places its owner.
    fn index(&self, idx: &mut Indexes, add: bool);
    /// Who still points at `id` (blocks a delete): the first in id order.
    /// Counted by the indexes, so a delete nothing blocks costs O(log n).
    fn referenced_by(id: &Self::Id, s: &Snapshot) -> Option<String>;
    /// What goes with the entity when it is deleted (a device's secret).
    fn removed(_id: &Self::Id, _tx: &mut Txn) {}
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool;
    fn attrs(&self, s: &Snapshot) -> Attrs;
}

/// The accessors that only name the entity's table.
macro_rules! tables {
    ($field:ident) => {
        fn table(d: &Data) -> &Table<Self::Id, Self> {
            &d.$field
        }
        fn table_mut(d: &mut Data) -> &mut Table<Self::Id, Self> {
            &mut d.$field
        }
        fn touched(t: &mut Touched) -> &mut Vec<Self::Id> {
            &mut t.$field
        }
        fn changes(c: &Change) -> &[(Self::Id, Option<Arc<Self>>)] {
            &c.$field
        }
        fn changes_mut(c: &mut Change) -> &mut Vec<(Self::Id, Option<Arc<Self>>)> {
            &mut c.$field
        }
        fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
            &mut doc.$field
        }
    };
}

fn missing(field: &str, what: &str, id: &dyn fmt::Display) -> FieldError {
    field_err(
        field,
        format!(
            "{what} {:?} is neither in this document nor in the registry",
            id.to_string()
        ),
    )
}

/// The first entity of `table` (in id order) that `refers` says points at
/// the deleted one, described. A scan, but only when the counts say
/// something refers (the delete is refused then).
fn first<K: Ord, E>(
    table: &Table<K, E>,
    refers: impl Fn(&E) -> bool,
    describe: impl Fn(&E) -> String,
) -> Option<String> {
    table.values().find(|e| refers(e)).map(|e| describe(e))
}

fn owner_visible(id: &OwnerId, p: &Principal, s: &Snapshot) -> bool {
    match p {
        Principal::Admin => true,
        Principal::Owner { owner_id } => owner_id == id,
        _ => s.idx.owner_regions(id).any(|r| p.sees_region(&r)),
    }
}

fn maintainer_visible(id: &MaintainerId, p: &Principal, s: &Snapshot) -> bool {
    p.is_admin()
        || s.idx
            .maintainer_scope(id)
            .any(|(o, r)| p.sees_equipment(o, r))
}

fn station_visible(id: &StationId, p: &Principal, s: &Snapshot) -> bool {
    s.data
        .stations
        .get(id)
        .is_some_and(|st| p.sees_equipment(&st.owner_id, &st.region))
}

impl Entity for Owner {
    type Id = OwnerId;
    const KEY: &'static str = "owners";
    const NAME: &'static str = "owner";
    const ID_FIELD: &'static str = "owner_id";
    const FILTERS: &'static [&'static str] = &["region"];

    fn id(&self) -> &OwnerId {
        &self.owner_id
    }
    tables!(owners);
    fn check(&self) -> Result<(), FieldError> {
        Owner::check(self)
    }
    fn check_refs(&self, _: &Data) -> Result<(), FieldError> {
        Ok(())
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        idx.owner_in(&self.owner_id, self.region, add);
    }
    fn referenced_by(id: &OwnerId, s: &Snapshot) -> Option<String> {
        let d = &s.data;
        let by_kind = if s.idx.refs(&RefKey::Owner(id.clone())) == 0 {
            None
        } else {
            first(
                &d.equipment,
                |e| &e.owner_id == id,
                |e| format!("equipment {:?}", e.equipment_id.as_str()),
            )
            .or_else(|| {
                first(
                    &d.stations,
                    |st| &st.owner_id == id,
                    |st| format!("station {:?}", st.station_id.as_str()),
                )
            })
        };
        by_kind.or_else(|| {
            employer_reference(id.as_str(), s, |e| {
                MaintainerId::new(e).is_ok_and(|m| d.maintainers.contains_key(&m))
            })
        })
    }
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool {
        owner_visible(&self.owner_id, p, s)
    }
    fn attrs(&self, _: &Snapshot) -> Attrs {
        Attrs {
            region: Some(self.region),
            owner_id: Some(self.owner_id.clone()),
            ..Attrs::default()
        }
    }
}

/// A person employed by `id`, unless the other kind of employer with the
/// same id keeps that person's reference valid.
fn employer_reference(
    id: &str,
    s: &Snapshot,
    other_kind_has: impl Fn(&str) -> bool,
) -> Option<String> {
    let employed = EmployerId::new(id).is_ok_and(|e| s.idx.refs(&RefKey::Employer(e)) > 0);
    if !employed || other_kind_has(id) {
        return None;
    }
    first(
        &s.data.persons,
        |p| p.employer_id.as_str() == id,
        |p| format!("person {:?}", p.person_id.as_str()),
    )
}

impl Entity for Maintainer {
    type Id = MaintainerId;
    const KEY: &'static str = "maintainers";
    const NAME: &'static str = "maintainer";
    const ID_FIELD: &'static str = "maintainer_id";
    const FILTERS: &'static [&'static str] = &[];

    fn id(&self) -> &MaintainerId {
        &self.maintainer_id
    }
    tables!(maintainers);
    fn check(&self) -> Result<(), FieldError> {
        Maintainer::check(self)
    }
    fn check_refs(&self, _: &Data) -> Result<(), FieldError> {
        Ok(())
    }
    fn index(&self, _: &mut Indexes, _: bool) {}
    fn referenced_by(id: &MaintainerId, s: &Snapshot) -> Option<String> {
        let d = &s.data;
        let by_equipment = if s.idx.refs(&RefKey::Maintainer(id.clone())) == 0 {
            None
        } else {
            first(
                &d.equipment,
                |e| e.maintainer_id.as_ref() == Some(id),
                |e| format!("equipment {:?}", e.equipment_id.as_str()),
            )
        };
        by_equipment.or_else(|| {
            employer_reference(id.as_str(), s, |e| {
                OwnerId::new(e).is_ok_and(|o| d.owners.contains_key(&o))
            })
        })
    }
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool {
        maintainer_visible(&self.maintainer_id, p, s)
    }
    fn attrs(&self, _: &Snapshot) -> Attrs {
        Attrs::default()
    }
}

impl Entity for Station {
    type Id = StationId;
    const KEY: &'static str = "stations";
    const NAME: &'static str = "station";
    const ID_FIELD: &'static str = "station_id";
    const FILTERS: &'static [&'static str] = &["region", "owner_id"];

    fn id(&self) -> &StationId {
        &self.station_id
    }
    tables!(stations);
    fn check(&self) -> Result<(), FieldError> {
        Station::check(self)
    }
    fn check_refs(&self, d: &Data) -> Result<(), FieldError> {
        if !d.owners.contains_key(&self.owner_id) {
            return Err(missing("owner_id", "owner", &self.owner_id));
        }
        if d.equipment.contains_key(self.station_id.as_equipment_id()) {
            return Err(field_err(
                "station_id",
                "is already an equipment_id (a station stands in for equipment in device bindings, so the two share one namespace)",
            ));
        }
        Ok(())
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        idx.owner_in(&self.owner_id, self.region, add);
        idx.count(RefKey::Owner(self.owner_id.clone()), add);
    }
    fn referenced_by(id: &StationId, s: &Snapshot) -> Option<String> {
        let by_device = s
            .idx
            .devices_at(id)
            .next()
            .map(|v| format!("device {:?}", v.as_str()));
        by_device.or_else(|| {
            if s.idx.refs(&RefKey::StationCylinders(id.clone())) == 0 {
                return None;
            }
            first(
                &s.data.cylinders,
                |c| &c.station_id == id,
                |c| format!("cylinder {:?}", c.cylinder_code.as_str()),
            )
        })
    }
    fn visible(&self, p: &Principal, _: &Snapshot) -> bool {
        p.sees_equipment(&self.owner_id, &self.region)
    }
    fn attrs(&self, _: &Snapshot) -> Attrs {
        Attrs {
            region: Some(self.region),
            owner_id: Some(self.owner_id.clone()),
            ..Attrs::default()
        }
    }
}

impl Entity for Equipment {
    type Id = EquipmentId;
    const KEY: &'static str = "equipment";
    const NAME: &'static str = "equipment";
    const ID_FIELD: &'static str = "equipment_id";
    const FILTERS: &'static [&'static str] = &["region", "category", "owner_id", "status"];
    const CATEGORY_WORDS: &'static [&'static str] = Category::WORDS;
    const STATUS_WORDS: &'static [&'static str] = EquipmentStatus::WORDS;

    fn id(&self) -> &EquipmentId {
        &self.equipment_id
    }
    tables!(equipment);
    fn check(&self) -> Result<(), FieldError> {
        Equipment::check(self)
    }
    fn check_refs(&self, d: &Data) -> Result<(), FieldError> {
        if !d.owners.contains_key(&self.owner_id) {
            return Err(missing("owner_id", "owner", &self.owner_id));
        }
        if let Some(m) = &self.maintainer_id
            && !d.maintainers.contains_key(m)
        {
            return Err(missing("maintainer_id", "maintainer", m));
        }
        if StationId::new(self.equipment_id.as_str()).is_ok_and(|s| d.stations.contains_key(&s)) {
            return Err(field_err(
                "equipment_id",
                "is already a station_id (a station stands in for equipment in device bindings, so the two share one namespace)",
            ));
        }
        Ok(())
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        idx.owner_in(&self.owner_id, self.region, add);
        idx.count(RefKey::Owner(self.owner_id.clone()), add);
        if let Some(m) = &self.maintainer_id {
            idx.count(RefKey::Maintainer(m.clone()), add);
            let key = (m.clone(), Sub::Is((self.owner_id.clone(), self.region)));
            idx.scope(key, add);
        }
    }
    fn referenced_by(id: &EquipmentId, s: &Snapshot) -> Option<String> {
        let by_device = s
            .idx
            .devices_on(id)
            .next()
            .map(|v| format!("device {:?}", v.as_str()));
        by_device.or_else(|| {
            s.data
                .maintenance_of(id)
                .next()
                .map(|m| format!("maintenance record {} of {}", m.kind, m.done_at))
        })
    }
    fn visible(&self, p: &Principal, _: &Snapshot) -> bool {
        p.sees_equipment(&self.owner_id, &self.region)
    }
    fn attrs(&self, _: &Snapshot) -> Attrs {
        Attrs {
            region: Some(self.region),
            category: Some(self.category.as_str()),
            owner_id: Some(self.owner_id.clone()),
            status: Some(self.status.as_str()),
        }
    }
}

/// Where a device sits: (owner, region, binding category).
fn device_place(v: &Device, d: &Data) -> Option<(OwnerId, Region, &'static str)> {
    if let Some(e) = v.equipment_id.as_ref().and_then(|id| d.equipment.get(id)) {
        return Some((e.owner_id.clone(), e.region, e.category.as_str()));
    }
    let st = v.station_id.as_ref().and_then(|id| d.stations.get(id))?;
    Some((st.owner_id.clone(), st.region, FILLING_STATION_CATEGORY))
}

const DEVICE_CATEGORIES: &[&str] = &vigil_model::BINDING_CATEGORIES;

impl Entity for Device {
    type Id = DeviceId;
    const KEY: &'static str = "devices";
    const NAME: &'static str = "device";
    const ID_FIELD: &'static str = "device_id";
    const FILTERS: &'static [&'static str] = &["region", "category", "owner_id"];
    const CATEGORY_WORDS: &'static [&'static str] = DEVICE_CATEGORIES;

    fn id(&self) -> &DeviceId {
        &self.device_id
    }
    tables!(devices);
    fn check(&self) -> Result<(), FieldError> {
        Device::check(self)
    }
    fn check_refs(&self, d: &Data) -> Result<(), FieldError> {
        if let Some(e) = &self.equipment_id
            && !d.equipment.contains_key(e)
        {
            return Err(missing("equipment_id", "equipment", e));
        }
        if let Some(s) = &self.station_id
            && !d.stations.contains_key(s)
        {
            return Err(missing("station_id", "station", s));
        }
        Ok(())
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        if let Some(e) = &self.equipment_id {
            let key = (e.clone(), Sub::Is(self.device_id.clone()));
            if add {
                idx.equipment_devices.insert(key);
            } else {
                idx.equipment_devices.remove(&key);
            }
        }
        if let Some(st) = &self.station_id {
            let key = (st.clone(), Sub::Is(self.device_id.clone()));
            if add {
                idx.station_devices.insert(key);
            } else {
                idx.station_devices.remove(&key);
            }
        }
    }
    fn referenced_by(_: &DeviceId, _: &Snapshot) -> Option<String> {
        None
    }
    fn removed(id: &DeviceId, tx: &mut Txn) {
        tx.set_secret(id.clone(), None);
    }
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool {
        device_place(self, &s.data).is_some_and(|(o, r, _)| p.sees_equipment(&o, &r))
    }
    fn attrs(&self, s: &Snapshot) -> Attrs {
        match device_place(self, &s.data) {
            Some((owner, region, category)) => Attrs {
                region: Some(region),
                category: Some(category),
                owner_id: Some(owner),
                status: None,
            },
            None => Attrs::default(),
        }
    }
}

impl Entity for Person {
    type Id = PersonId;
    const KEY: &'static str = "persons";
    const NAME: &'static str = "person";
    const ID_FIELD: &'static str = "person_id";
    const FILTERS: &'static [&'static str] = &[];

    fn id(&self) -> &PersonId {
        &self.person_id
    }
    tables!(persons);
    fn check(&self) -> Result<(), FieldError> {
        Person::check(self)
    }
    fn check_refs(&self, d: &Data) -> Result<(), FieldError> {
        let e = self.employer_id.as_str();
        let known = OwnerId::new(e).is_ok_and(|o| d.owners.contains_key(&o))
            || MaintainerId::new(e).is_ok_and(|m| d.maintainers.contains_key(&m));
        if known {
            Ok(())
        } else {
            Err(missing(
                "employer_id",
                "owner or maintainer",
                &self.employer_id,
            ))
        }
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        idx.count(RefKey::Employer(self.employer_id.clone()), add);
    }
    fn referenced_by(id: &PersonId, s: &Snapshot) -> Option<String> {
        if s.idx.refs(&RefKey::Person(id.clone())) == 0 {
            return None;
        }
        first(
            &s.data.maintenance,
            |m| &m.person_id == id,
            |m| {
                format!(
                    "maintenance record {} of {} on equipment {:?}",
                    m.kind,
                    m.done_at,
                    m.equipment_id.as_str()
                )
            },
        )
    }
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool {
        let e = self.employer_id.as_str();
        OwnerId::new(e).is_ok_and(|o| s.data.owners.contains_key(&o) && owner_visible(&o, p, s))
            || MaintainerId::new(e)
                .is_ok_and(|m| s.data.maintainers.contains_key(&m) && maintainer_visible(&m, p, s))
    }
    fn attrs(&self, _: &Snapshot) -> Attrs {
        Attrs::default()
    }
}

impl Entity for Cylinder {
    type Id = CylinderCode;
    const KEY: &'static str = "cylinders";
    const NAME: &'static str = "cylinder";
    const ID_FIELD: &'static str = "cylinder_code";
    const FILTERS: &'static [&'static str] = &["region", "owner_id", "status"];
    const STATUS_WORDS: &'static [&'static str] = CylinderStatus::WORDS;

    fn id(&self) -> &CylinderCode {
        &self.cylinder_code
    }
    tables!(cylinders);
    fn check(&self) -> Result<(), FieldError> {
        Cylinder::check(self)
    }
    fn check_refs(&self, d: &Data) -> Result<(), FieldError> {
        if d.stations.contains_key(&self.station_id) {
            Ok(())
        } else {
            Err(missing("station_id", "station", &self.station_id))
        }
    }
    fn index(&self, idx: &mut Indexes, add: bool) {
        idx.count(RefKey::StationCylinders(self.station_id.clone()), add);
    }
    fn referenced_by(_: &CylinderCode, _: &Snapshot) -> Option<String> {
        None
    }
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool {
        station_visible(&self.station_id, p, s)
    }
    fn attrs(&self, s: &Snapshot) -> Attrs {
        let station = s.data.stations.get(&self.station_id);
        Attrs {
            region: station.map(|st| st.region),
            owner_id: station.map(|st| st.owner_id.clone()),
            category: None,
            status: Some(self.status.as_str()),
        }
    }
}
