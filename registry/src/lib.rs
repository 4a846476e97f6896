//! Vigil's registry: who every device belongs to, and the HTTP API that
//! keeps it.
//!
//! An administrator imports (or edits one by one) owners, maintainers,
//! filling stations, equipment, devices, persons, cylinders and maintenance
//! records. Every change is validated as a whole against an O(1) copy of
//! the tables, appended as one record (what it wrote) to the change log in
//! `data_dir/registry/` and fsync'd, and then swapped in; snapshots are
//! written in the background. A device's [`DeviceContext`] is built on its
//! first message and cached, so ingest's per-message [`Registry::resolve`]
//! is one hash lookup.
//!
//! ```text
//!  POST /registry/import ─┐                        ┌─▶ resolve(device) → Resolution   (ingest, hot path)
//!  CRUD /owners, … ───────┼─▶ validate ─▶ log ──▶ swap ─▶ verify_device_secret      (MQTT login)
//!  POST /maintenance ─────┘   (a copy)   (fsync)   ├─▶ changes_since() / version()    (SQL tables)
//!                                                  └─▶ equipment(), cylinder(), person() (rules)
//!  Authorization: Bearer … ─▶ auth::require_auth ─▶ Principal ─▶ Gate (role, before the body) ─▶ handler
//!  DELETE /tokens/{id} ─▶ revoke ─▶ token_changes() ─▶ open requests and streams of that token end
//! ```
//!
//! - [`entity`]: the entities with registry.md's JSON names, [`ImportDoc`], [`Export`].
//! - [`types`]: local ids, the credit code, dates and the fixed words.
//! - `store`: [`Registry`], the write path, secrets, tokens, the change log
//!   and snapshots on disk, and the migration of an older `registry.json`.
//! - [`auth`]: roles, [`auth::Principal`], token expiry and revocation,
//!   bearer-token middleware, role gates.
//! - [`api`]: the axum router and its JSON errors.
//! - [`sql`]: the registry's reference tables and their columns, for SQL.
//! - `table`: per-entity validation against the whole registry.
//! - `error`: [`RegistryError`].
//!
//! [`DeviceContext`]: vigil_model::DeviceContext

pub mod api;
pub mod auth;
pub mod entity;
mod error;
pub mod json;
pub mod sql;
mod store;
mod table;
pub mod types;

pub use auth::{IssuedToken, TokenId, TokenInfo, TokenPolicy, TokenRequest};
pub use entity::{
    Certificate, Cylinder, Device, Equipment, Export, ImportDoc, Maintainer, MaintenanceKey,
    MaintenanceRecord, Owner, Person, Station,
};
pub use error::RegistryError;
pub use store::{
    Change, Counts, DiskOptions, Entry, ImportCounts, ImportReport, NewDeviceSecret, Registry,
    Sizes,
};
pub use types::{Category, CylinderStatus, DeviceKind, EquipmentStatus, MaintenanceKind, Role};
