//! What the generic import, CRUD and list code needs to know about each
//! entity kind: its table, its references, who may see it and the
//! attributes list filters match on. One impl per entity, no copies of the
//! handlers.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use vigil_model::ids::IdError;
use vigil_model::{DeviceId, EquipmentId, MaintainerId, OwnerId, Region};

use crate::auth::Principal;
use crate::entity::*;
use crate::store::{Data, Snapshot};
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
    fn table(d: &Data) -> &BTreeMap<Self::Id, Self>;
    fn table_mut(d: &mut Data) -> &mut BTreeMap<Self::Id, Self>;
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self>;
    /// Its own fields, alone.
    fn check(&self) -> Result<(), FieldError>;
    /// Its references, against the registry as it would be after the change.
    fn check_refs(&self, d: &Data) -> Result<(), FieldError>;
    /// Who still points at `id` (blocks a delete).
    fn referenced_by(id: &Self::Id, d: &Data) -> Option<String>;
    fn visible(&self, p: &Principal, s: &Snapshot) -> bool;
    fn attrs(&self, s: &Snapshot) -> Attrs;
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

fn first<'a, T: 'a>(
    mut it: impl Iterator<Item = &'a T>,
    describe: impl Fn(&T) -> String,
) -> Option<String> {
    it.next().map(describe)
}

fn owner_visible(id: &OwnerId, p: &Principal, s: &Snapshot) -> bool {
    match p {
        Principal::Admin => true,
        Principal::Owner { owner_id } => owner_id == id,
        _ => s
            .owner_regions
            .get(id)
            .is_some_and(|rs| rs.iter().any(|r| p.sees_region(r))),
    }
}

fn maintainer_visible(id: &MaintainerId, p: &Principal, s: &Snapshot) -> bool {
    p.is_admin()
        || s.maintainer_scope
            .get(id)
            .is_some_and(|scope| scope.iter().any(|(o, r)| p.sees_equipment(o, r)))
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
    fn table(d: &Data) -> &BTreeMap<OwnerId, Self> {
        &d.owners
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<OwnerId, Self> {
        &mut d.owners
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.owners
    }
    fn check(&self) -> Result<(), FieldError> {
        Owner::check(self)
    }
    fn check_refs(&self, _: &Data) -> Result<(), FieldError> {
        Ok(())
    }
    fn referenced_by(id: &OwnerId, d: &Data) -> Option<String> {
        first(d.equipment.values().filter(|e| &e.owner_id == id), |e| {
            format!("equipment {:?}", e.equipment_id.as_str())
        })
        .or_else(|| {
            first(d.stations.values().filter(|s| &s.owner_id == id), |s| {
                format!("station {:?}", s.station_id.as_str())
            })
        })
        .or_else(|| {
            employer_reference(id.as_str(), d, |e| {
                d.maintainers.keys().any(|m| m.as_str() == e)
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
fn employer_reference(id: &str, d: &Data, other_kind_has: impl Fn(&str) -> bool) -> Option<String> {
    if other_kind_has(id) {
        return None;
    }
    first(
        d.persons.values().filter(|p| p.employer_id.as_str() == id),
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
    fn table(d: &Data) -> &BTreeMap<MaintainerId, Self> {
        &d.maintainers
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<MaintainerId, Self> {
        &mut d.maintainers
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.maintainers
    }
    fn check(&self) -> Result<(), FieldError> {
        Maintainer::check(self)
    }
    fn check_refs(&self, _: &Data) -> Result<(), FieldError> {
        Ok(())
    }
    fn referenced_by(id: &MaintainerId, d: &Data) -> Option<String> {
        first(
            d.equipment
                .values()
                .filter(|e| e.maintainer_id.as_ref() == Some(id)),
            |e| format!("equipment {:?}", e.equipment_id.as_str()),
        )
        .or_else(|| {
            employer_reference(id.as_str(), d, |e| d.owners.keys().any(|o| o.as_str() == e))
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
    fn table(d: &Data) -> &BTreeMap<StationId, Self> {
        &d.stations
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<StationId, Self> {
        &mut d.stations
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.stations
    }
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
    fn referenced_by(id: &StationId, d: &Data) -> Option<String> {
        first(
            d.devices
                .values()
                .filter(|v| v.station_id.as_ref() == Some(id)),
            |v| format!("device {:?}", v.device_id.as_str()),
        )
        .or_else(|| {
            first(d.cylinders.values().filter(|c| &c.station_id == id), |c| {
                format!("cylinder {:?}", c.cylinder_code.as_str())
            })
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
    fn table(d: &Data) -> &BTreeMap<EquipmentId, Self> {
        &d.equipment
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<EquipmentId, Self> {
        &mut d.equipment
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.equipment
    }
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
    fn referenced_by(id: &EquipmentId, d: &Data) -> Option<String> {
        first(
            d.devices
                .values()
                .filter(|v| v.equipment_id.as_ref() == Some(id)),
            |v| format!("device {:?}", v.device_id.as_str()),
        )
        .or_else(|| {
            first(
                d.maintenance.values().filter(|m| &m.equipment_id == id),
                |m| format!("maintenance record {} of {}", m.kind, m.done_at),
            )
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
    fn table(d: &Data) -> &BTreeMap<DeviceId, Self> {
        &d.devices
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<DeviceId, Self> {
        &mut d.devices
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.devices
    }
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
    fn referenced_by(_: &DeviceId, _: &Data) -> Option<String> {
        None
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
    fn table(d: &Data) -> &BTreeMap<PersonId, Self> {
        &d.persons
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<PersonId, Self> {
        &mut d.persons
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.persons
    }
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
    fn referenced_by(id: &PersonId, d: &Data) -> Option<String> {
        first(d.maintenance.values().filter(|m| &m.person_id == id), |m| {
            format!(
                "maintenance record {} of {} on equipment {:?}",
                m.kind,
                m.done_at,
                m.equipment_id.as_str()
            )
        })
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
    fn table(d: &Data) -> &BTreeMap<CylinderCode, Self> {
        &d.cylinders
    }
    fn table_mut(d: &mut Data) -> &mut BTreeMap<CylinderCode, Self> {
        &mut d.cylinders
    }
    fn doc_list(doc: &mut ImportDoc) -> &mut Vec<Self> {
        &mut doc.cylinders
    }
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
    fn referenced_by(_: &CylinderCode, _: &Data) -> Option<String> {
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
