//! Vigil's registry: who every device belongs to, and the HTTP API that
//! keeps it.
//!
//! An administrator imports (or edits one by one) owners, maintainers,
//! filling stations, equipment, devices, persons, cylinders and maintenance
//! records. Every change is validated as a whole against a copy of the
//! tables, written atomically to `registry.json`, and then swapped in
//! together with a precomputed device → [`DeviceContext`] map, so ingest's
//! per-message [`Registry::resolve`] is one hash lookup.
//!
//! ```text
//!  POST /registry/import ─┐                        ┌─▶ resolve(device) → Resolution   (ingest, hot path)
//!  CRUD /owners, … ───────┼─▶ validate ─▶ save ─▶ swap ─▶ verify_device_secret      (MQTT login)
//!  POST /maintenance ─────┘   (a copy)   (atomic)  ├─▶ export() / version()           (SQL tables)
//!                                                  └─▶ equipment(), cylinder(), person() (rules)
//!  Authorization: Bearer … ─▶ auth::require_auth ─▶ Principal ─▶ Gate (role, before the body) ─▶ handler
//!  DELETE /tokens/{id} ─▶ revoke ─▶ token_changes() ─▶ open requests and streams of that token end
//! ```
//!
//! - [`entity`]: the entities with registry.md's JSON names, [`ImportDoc`], [`Export`].
//! - [`types`]: local ids, the credit code, dates and the fixed words.
//! - `store`: [`Registry`], the write path, secrets, tokens and `registry.json`.
//! - [`auth`]: roles, [`auth::Principal`], token expiry and revocation,
//!   bearer-token middleware, role gates.
//! - [`api`]: the axum router and its JSON errors.
//!
//! [`DeviceContext`]: vigil_model::DeviceContext

pub mod api;
pub mod auth;
pub mod entity;
mod error;
mod store;
mod table;
pub mod types;

pub use auth::{IssuedToken, TokenId, TokenInfo, TokenPolicy, TokenRequest};
pub use entity::{
    Certificate, Cylinder, Device, Equipment, Export, ImportDoc, Maintainer, MaintenanceRecord,
    Owner, Person, Station,
};
pub use error::RegistryError;
pub use store::{Counts, ImportCounts, ImportReport, NewDeviceSecret, Registry};
pub use types::{Category, CylinderStatus, DeviceKind, EquipmentStatus, MaintenanceKind, Role};
