//! The bulk upsert behind `POST /registry/import`, and behind every single
//! create and replace: field checks and duplicate ids within the document,
//! then everything merged into the transaction, then references checked
//! against the result, so the order of lists and entries does not matter.
//! Any mistake returns an error and the transaction is dropped: all or
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use vigil_model::{DeviceId, EquipmentId};

use super::secrets::{SecretHash, new_device_secret};
use super::snapshot::Txn;
use crate::entity::*;
use crate::error::RegistryError;
use crate::table::Entity;

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

pub(crate) fn invalid<E: Entity>(index: Option<usize>, id: &E::Id, e: FieldError) -> RegistryError {
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
fn merge<E: Entity>(tx: &mut Txn, list: Vec<E>, counts: &mut Counts) -> Vec<(E::Id, bool)> {
    let mut ids = Vec::with_capacity(list.len());
    for e in list {
        let id = e.id().clone();
        let created = tx.put(e);
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
fn refs<E: Entity>(tx: &Txn, ids: &[(E::Id, bool)], indexed: bool) -> Result<(), RegistryError> {
    for (i, (id, _)) in ids.iter().enumerate() {
        if let Some(e) = E::table(&tx.data).get(id) {
            e.check_refs(&tx.data)
                .map_err(|fe| invalid::<E>(indexed.then_some(i), id, fe))?;
        }
    }
    Ok(())
}

/// Applies an import document to the transaction: checks fields and
/// duplicates, merges everything, then checks references against the
/// result. `indexed` names entries by their index (an import) rather than
/// alone (one CRUD call); `fresh_secrets` is off when loading
/// `registry.json`, whose secrets come with it.
pub(crate) fn apply(
    tx: &mut Txn,
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
        version: tx.data.version,
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
    for (i, c) in cylinders.iter().enumerate() {
        if let Some(table) = vigil_model::reading::lpg_max_fill_kg(&c.model)
            && c.max_fill_kg > table
        {
            let at = if indexed {
                format!("cylinders[{i}] ({:?})", c.cylinder_code.as_str())
            } else {
                format!("cylinder {:?}", c.cylinder_code.as_str())
            };
            report.warnings.push(format!(
                "{at}: max_fill_kg {} is above the {} limit of {table} kg (GB 5842); filling.overfill uses {table} kg",
                c.max_fill_kg, c.model
            ));
        }
    }
    let c = &mut report.counts;
    let owner_ids = merge(tx, owners, &mut c.owners);
    let maintainer_ids = merge(tx, maintainers, &mut c.maintainers);
    let station_ids = merge(tx, stations, &mut c.stations);
    let equipment_ids = merge(tx, equipment, &mut c.equipment);
    keep_maintenance_dates(tx, &equipment_ids);
    let device_ids = merge(tx, devices, &mut c.devices);
    let person_ids = merge(tx, persons, &mut c.persons);
    let cylinder_ids = merge(tx, cylinders, &mut c.cylinders);

    refs::<Owner>(tx, &owner_ids, indexed)?;
    refs::<Maintainer>(tx, &maintainer_ids, indexed)?;
    refs::<Station>(tx, &station_ids, indexed)?;
    refs::<Equipment>(tx, &equipment_ids, indexed)?;
    refs::<Device>(tx, &device_ids, indexed)?;
    refs::<Person>(tx, &person_ids, indexed)?;
    refs::<Cylinder>(tx, &cylinder_ids, indexed)?;

    for (i, m) in maintenance.into_iter().enumerate() {
        let at = indexed.then_some(i);
        let Some(eq) = tx.data.equipment.get(&m.equipment_id).cloned() else {
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
        if !tx.data.persons.contains_key(&m.person_id) {
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
            let mut eq = Equipment::clone(&eq);
            eq.last_maintenance = Some(day);
            tx.put(eq);
        }
        if tx.put_maintenance(Arc::new(m)) {
            report.counts.maintenance.created += 1;
        } else {
            report.counts.maintenance.updated += 1;
        }
    }

    for (id, created) in device_ids {
        if !created {
            report.secrets_kept.push(id);
        } else if fresh_secrets {
            let secret = new_device_secret();
            tx.set_secret(id.clone(), Some(SecretHash::new(&secret)));
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
/// forward: a restart would change the registry). Reads only the records
/// of the merged equipment.
fn keep_maintenance_dates(tx: &mut Txn, merged: &[(EquipmentId, bool)]) {
    if tx.data.maintenance.is_empty() {
        return;
    }
    for (id, _) in merged {
        let latest = tx.data.maintenance_of(id).filter_map(|m| m.done_on()).max();
        let Some(day) = latest else { continue };
        if let Some(eq) = tx.data.equipment.get(id)
            && eq.last_maintenance.is_none_or(|last| last < day)
        {
            let mut eq = Equipment::clone(eq);
            eq.last_maintenance = Some(day);
            tx.put(eq);
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
