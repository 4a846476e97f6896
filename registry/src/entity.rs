//! The registry's entities with the JSON field names of registry.md, the
//! import document that carries them, and the checks each entity makes on
//! its own fields (references are checked by the store, which sees all).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigil_model::{DeviceId, EquipmentId, MaintainerId, OwnerId, Region};

use crate::error::RegistryError;
use crate::types::*;

/// A using unit (使用单位).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub owner_id: OwnerId,
    pub name: String,
    pub credit_code: CreditCode,
    pub region: Region,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A maintenance company (维保单位).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintainer {
    pub maintainer_id: MaintainerId,
    pub name: String,
    pub credit_code: CreditCode,
    #[serde(with = "date")]
    pub licence_expires: NaiveDate,
}

/// A gas-cylinder filling station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    pub station_id: StationId,
    pub owner_id: OwnerId,
    pub region: Region,
    pub address: String,
    /// `"HH:MM-HH:MM"`, may wrap midnight; absent means always open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<String>,
}

/// A piece of special equipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equipment {
    pub equipment_id: EquipmentId,
    /// Use-registration code (使用登记证编号), free text.
    pub reg_code: String,
    pub category: Category,
    pub owner_id: OwnerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainer_id: Option<MaintainerId>,
    pub region: Region,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    pub status: EquipmentStatus,
    #[serde(with = "date")]
    pub next_inspection: NaiveDate,
    /// Advanced by maintenance records: never older than the newest record.
    #[serde(
        default,
        with = "date::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_maintenance: Option<NaiveDate>,
    /// Read by rules by name: `rated_speed_mps`, `floors`, `wind_limit_mps`, …
    /// Shared with every context the registry hands out for the
    /// equipment's devices: the rule engine, seeing the `Arc` it already
    /// holds, knows them unchanged without comparing (and one copy is kept
    /// however many devices the equipment has).
    #[serde(default, with = "vigil_model::device::shared_map")]
    pub params: Arc<Map<String, Value>>,
}

/// An edge device; its secret lives apart and never appears here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub device_id: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equipment_id: Option<EquipmentId>,
    /// Filling scales are bound to a station instead of equipment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_id: Option<StationId>,
    pub kind: DeviceKind,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    #[serde(default = "default_report_interval")]
    pub report_interval_s: u32,
}

fn default_enabled() -> bool {
    true
}

fn default_report_interval() -> u32 {
    30
}

/// One certificate of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// e.g. `filling`, `elevator_maintenance`.
    pub kind: String,
    pub number: String,
    #[serde(with = "date")]
    pub expires: NaiveDate,
}

/// A maintenance worker, filling operator, …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub person_id: PersonId,
    pub name: String,
    /// An owner or a maintainer.
    pub employer_id: EmployerId,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
}

/// A gas cylinder, registered to the station that owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cylinder {
    pub cylinder_code: CylinderCode,
    pub station_id: StationId,
    pub medium: String,
    pub model: String,
    pub capacity_l: f64,
    pub max_fill_kg: f64,
    pub working_pressure_mpa: f64,
    #[serde(with = "date")]
    pub next_inspection: NaiveDate,
    pub status: CylinderStatus,
    #[serde(with = "date")]
    pub made_on: NaiveDate,
    pub design_life_years: u32,
}

/// One maintenance job. Its key is `(equipment_id, kind, done_at)`: posting
/// the same key again updates the record (an owner's confirmation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRecord {
    pub equipment_id: EquipmentId,
    pub kind: MaintenanceKind,
    /// `YYYY-MM-DD` or an RFC 3339 timestamp, kept as given.
    pub done_at: String,
    pub person_id: PersonId,
    #[serde(default)]
    pub confirmed_by_owner: bool,
}

impl MaintenanceRecord {
    /// The day the job was done (a timestamp's own local date).
    pub fn done_on(&self) -> Option<NaiveDate> {
        date::parse(&self.done_at).or_else(|| {
            DateTime::parse_from_rfc3339(&self.done_at)
                .ok()
                .map(|t| t.date_naive())
        })
    }

    /// What identifies the record: (equipment, kind, done_at).
    pub fn key(&self) -> MaintenanceKey {
        (self.equipment_id.clone(), self.kind, self.done_at.clone())
    }
}

/// A maintenance record's key: (equipment, kind, `done_at` as given).
pub type MaintenanceKey = (EquipmentId, MaintenanceKind, String);

/// The bulk import: every list optional, upserted as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportDoc {
    #[serde(default)]
    pub owners: Vec<Owner>,
    #[serde(default)]
    pub maintainers: Vec<Maintainer>,
    #[serde(default)]
    pub stations: Vec<Station>,
    #[serde(default)]
    pub equipment: Vec<Equipment>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub persons: Vec<Person>,
    #[serde(default)]
    pub cylinders: Vec<Cylinder>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceRecord>,
}

impl ImportDoc {
    /// Parses an import document; a mistake names its path
    /// (`equipment[3].category: unknown variant …`).
    pub fn from_json(bytes: &[u8]) -> Result<ImportDoc, RegistryError> {
        crate::json::parse(bytes).map_err(|e| RegistryError::BadDocument {
            message: e.message(),
        })
    }
}

/// Everything in the registry (no secrets, no tokens), for SQL tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Export {
    pub version: u64,
    pub owners: Vec<Owner>,
    pub maintainers: Vec<Maintainer>,
    pub stations: Vec<Station>,
    pub equipment: Vec<Equipment>,
    pub devices: Vec<Device>,
    pub persons: Vec<Person>,
    pub cylinders: Vec<Cylinder>,
    pub maintenance: Vec<MaintenanceRecord>,
}

/// A mistake in one field of one entity; the store adds which entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

pub(crate) fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn non_empty(field: &str, value: &str, max_chars: usize) -> Result<(), FieldError> {
    let n = value.trim().chars().count();
    if n == 0 {
        Err(field_err(field, "must not be empty"))
    } else if value.chars().count() > max_chars {
        Err(field_err(
            field,
            format!("is longer than {max_chars} characters"),
        ))
    } else {
        Ok(())
    }
}

fn positive(field: &str, value: f64) -> Result<(), FieldError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(field_err(
            field,
            format!("must be a positive number, got {value}"),
        ))
    }
}

fn hh_mm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && s[..2]
            .parse::<u8>()
            .is_ok_and(|h| h < 24 && b[0].is_ascii_digit() && b[1].is_ascii_digit())
        && s[3..]
            .parse::<u8>()
            .is_ok_and(|m| m < 60 && b[3].is_ascii_digit() && b[4].is_ascii_digit())
}

/// `"08:00-18:00"`; an end before the start wraps midnight.
pub(crate) fn valid_working_hours(s: &str) -> bool {
    match s.split_once('-') {
        Some((from, to)) => hh_mm(from) && hh_mm(to) && from != to,
        None => false,
    }
}

impl Owner {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("name", &self.name, 200)?;
        if let Some(contact) = &self.contact {
            non_empty("contact", contact, 100)?;
        }
        if let Some(phone) = &self.phone {
            let ok = (3..=32).contains(&phone.len())
                && phone.bytes().any(|b| b.is_ascii_digit())
                && phone
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b" +-()".contains(&b));
            if !ok {
                return Err(field_err(
                    "phone",
                    format!(
                        "{phone:?} is not a phone number (digits, spaces, + - ( ), 3 to 32 characters)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Maintainer {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("name", &self.name, 200)
    }
}

impl Station {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("address", &self.address, 300)?;
        if let Some(hours) = &self.working_hours
            && !valid_working_hours(hours)
        {
            return Err(field_err(
                "working_hours",
                format!("{hours:?} is not HH:MM-HH:MM"),
            ));
        }
        Ok(())
    }
}

impl Equipment {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("reg_code", &self.reg_code, 64)?;
        non_empty("address", &self.address, 300)?;
        match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => {
                if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                    return Err(field_err("lat", format!("{lat} is outside -90..90")));
                }
                if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                    return Err(field_err("lon", format!("{lon} is outside -180..180")));
                }
            }
            (None, None) => {}
            (Some(_), None) => return Err(field_err("lon", "is required when lat is given")),
            (None, Some(_)) => return Err(field_err("lat", "is required when lon is given")),
        }
        for name in ["rated_speed_mps", "wind_limit_mps"] {
            if let Some(v) = self.params.get(name) {
                match v.as_f64() {
                    Some(x) => positive(&format!("params.{name}"), x)?,
                    None => {
                        return Err(field_err(
                            format!("params.{name}"),
                            format!("must be a number, got {v}"),
                        ));
                    }
                }
            }
        }
        if let Some(v) = self.params.get("floors") {
            let range = v.as_array().filter(|a| a.len() == 2).and_then(|a| {
                let lo = i16::try_from(a[0].as_i64()?).ok()?;
                let hi = i16::try_from(a[1].as_i64()?).ok()?;
                Some((lo, hi))
            });
            match range {
                Some((lo, hi)) if lo <= hi => {}
                _ => {
                    return Err(field_err(
                        "params.floors",
                        format!("must be [lowest, highest] floor numbers, got {v}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Params a rule of this category reads and cannot do without.
    pub(crate) fn missing_params(&self) -> Vec<(&'static str, &'static str)> {
        let needed: &[(&str, &str)] = match self.category {
            Category::Elevator => &[
                ("rated_speed_mps", "elevator.overspeed"),
                ("floors", "elevator.floor_out_of_range"),
            ],
            c if Category::RIDES.contains(&c) => &[("rated_speed_mps", "ride.overspeed")],
            _ => &[],
        };
        needed
            .iter()
            .copied()
            .filter(|(p, _)| !self.params.contains_key(*p))
            .collect()
    }
}

impl Device {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        match (&self.equipment_id, &self.station_id, self.kind) {
            (Some(_), Some(_), _) => {
                return Err(field_err(
                    "station_id",
                    "give either equipment_id or station_id, not both",
                ));
            }
            (None, None, DeviceKind::Filling) => {
                return Err(field_err(
                    "station_id",
                    "a filling device must name its station_id",
                ));
            }
            (None, None, _) => return Err(field_err("equipment_id", "is required")),
            (Some(_), None, DeviceKind::Filling) => {
                return Err(field_err(
                    "equipment_id",
                    "a filling device is bound to a station: give station_id instead",
                ));
            }
            (None, Some(_), kind) if kind != DeviceKind::Filling => {
                return Err(field_err(
                    "station_id",
                    format!(
                        "only filling devices are bound to stations; a {kind} device needs equipment_id"
                    ),
                ));
            }
            _ => {}
        }
        if !(1..=86_400).contains(&self.report_interval_s) {
            return Err(field_err(
                "report_interval_s",
                format!("must be 1 to 86400 seconds, got {}", self.report_interval_s),
            ));
        }
        Ok(())
    }
}

impl Person {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("name", &self.name, 100)?;
        for (i, c) in self.certificates.iter().enumerate() {
            let word = !c.kind.is_empty()
                && c.kind.len() <= 64
                && c.kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !word {
                return Err(field_err(
                    format!("certificates[{i}].kind"),
                    format!("{:?} is not a lower-case word such as filling", c.kind),
                ));
            }
            non_empty(&format!("certificates[{i}].number"), &c.number, 64)?;
        }
        Ok(())
    }
}

impl Cylinder {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        non_empty("medium", &self.medium, 32)?;
        non_empty("model", &self.model, 32)?;
        positive("capacity_l", self.capacity_l)?;
        positive("max_fill_kg", self.max_fill_kg)?;
        positive("working_pressure_mpa", self.working_pressure_mpa)?;
        if !(1..=100).contains(&self.design_life_years) {
            return Err(field_err(
                "design_life_years",
                format!("must be 1 to 100, got {}", self.design_life_years),
            ));
        }
        Ok(())
    }
}

impl MaintenanceRecord {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        if self.done_on().is_none() {
            return Err(field_err(
                "done_at",
                format!(
                    "{:?} is neither a date YYYY-MM-DD nor an RFC 3339 timestamp",
                    self.done_at
                ),
            ));
        }
        Ok(())
    }
}
