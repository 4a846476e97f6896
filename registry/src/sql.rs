//! The registry as SQL sees it: one reference table per entity list
//! (`owners`, `equipment`, `devices`, …) with the column names of
//! registry.md. The engine hands these to the store whenever the registry
//! changes; the columns are defined here, beside the entities.

use serde_json::Value;
use vigil_model::reference::{ColumnType, RefColumn, RefTable};

use crate::Registry;
use ColumnType::{Bool, Date, Float, Int, Text};

/// A table's columns: name and type.
type Columns = &'static [(&'static str, ColumnType)];

/// Table name, the key of the entity list in the registry export, columns.
const TABLES: &[(&str, &str, Columns)] = &[
    (
        "owners",
        "owners",
        &[
            ("owner_id", Text),
            ("name", Text),
            ("credit_code", Text),
            ("region", Text),
            ("contact", Text),
            ("phone", Text),
        ],
    ),
    (
        "maintainers",
        "maintainers",
        &[
            ("maintainer_id", Text),
            ("name", Text),
            ("credit_code", Text),
            ("licence_expires", Date),
        ],
    ),
    (
        "stations",
        "stations",
        &[
            ("station_id", Text),
            ("owner_id", Text),
            ("region", Text),
            ("address", Text),
            ("working_hours", Text),
        ],
    ),
    (
        "equipment",
        "equipment",
        &[
            ("equipment_id", Text),
            ("reg_code", Text),
            ("category", Text),
            ("owner_id", Text),
            ("maintainer_id", Text),
            ("region", Text),
            ("address", Text),
            ("lat", Float),
            ("lon", Float),
            ("status", Text),
            ("next_inspection", Date),
            ("last_maintenance", Date),
            ("params", Text),
        ],
    ),
    (
        "devices",
        "devices",
        &[
            ("device_id", Text),
            ("equipment_id", Text),
            ("station_id", Text),
            ("kind", Text),
            ("enabled", Bool),
            ("report_interval_s", Int),
        ],
    ),
    (
        "persons",
        "persons",
        &[
            ("person_id", Text),
            ("name", Text),
            ("employer_id", Text),
            ("certificates", Text),
        ],
    ),
    (
        "cylinders",
        "cylinders",
        &[
            ("cylinder_code", Text),
            ("station_id", Text),
            ("medium", Text),
            ("model", Text),
            ("capacity_l", Float),
            ("max_fill_kg", Float),
            ("working_pressure_mpa", Float),
            ("next_inspection", Date),
            ("status", Text),
            ("made_on", Date),
            ("design_life_years", Int),
        ],
    ),
    (
        "maintenance_records",
        "maintenance",
        &[
            ("equipment_id", Text),
            ("kind", Text),
            ("done_at", Text),
            ("person_id", Text),
            ("confirmed_by_owner", Bool),
        ],
    ),
];

fn cell(value: Option<&Value>, ty: ColumnType) -> Value {
    match (value, ty) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(v @ Value::String(_)), Text | Date) => v.clone(),
        // Objects and lists (params, certificates) are shown as JSON text.
        (Some(v), Text) => Value::String(v.to_string()),
        (Some(v @ Value::Number(_)), Float | Int) => v.clone(),
        (Some(v @ Value::Bool(_)), Bool) => v.clone(),
        _ => Value::Null,
    }
}

/// The registry as reference tables.
pub fn tables(registry: &Registry) -> Vec<RefTable> {
    let export = serde_json::to_value(registry.export()).unwrap_or(Value::Null);
    TABLES
        .iter()
        .map(|(name, key, columns)| {
            let entities = export
                .get(*key)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let rows = entities
                .iter()
                .map(|e| {
                    columns
                        .iter()
                        .map(|(col, ty)| cell(e.get(*col), *ty))
                        .collect()
                })
                .collect();
            RefTable {
                name: (*name).to_owned(),
                columns: columns
                    .iter()
                    .map(|(col, ty)| RefColumn {
                        name: (*col).to_owned(),
                        ty: *ty,
                        nullable: true,
                    })
                    .collect(),
                rows,
            }
        })
        .collect()
}
