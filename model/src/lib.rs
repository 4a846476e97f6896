//! The shared vocabulary of Vigil.
//!
//! Bytes arrive from a device on a topic; [`codec::decode`] turns topic and
//! payload into a [`Reading`] (or a [`codec::Rejection`] naming the reason),
//! ingest enriches it with the registry's [`Binding`], rules turn readings
//! into [`Alarm`] changes, and storage keeps readings, alarms and
//! [`DeadLetter`]s. Everything here is plain data with no I/O, so every
//! stage can share it without pulling in each other.
//!
//! - [`ids`]: newtype ids (`DeviceId`, `EquipmentId`, …) and [`ids::Region`].
//! - [`reading`]: the v1 payloads of protocol.md as typed structs.
//! - [`category`]: equipment categories ([`Category`]) and the binding
//!   categories rules and devices use.
//! - [`clock`]: injected time ([`Clock`]).
//! - `macros`: [`string_id!`] and [`word_enum!`], the workspace's one id
//!   macro and one enum macro.
//! - [`codec`]: topic parsing, JSON decoding and validation.
//! - [`grant`]: who may see what ([`Grant`]): the one access rule.
//! - [`device`]: a device's registry context and the lookup result.
//! - [`reference`]: reference tables (registry data shown to SQL).
//! - [`alarm`]: alarms, severities, their lifecycle states and the filter
//!   readers choose them by.
//! - [`log_limit`]: a budget for log lines a device can multiply.

#[macro_use]
mod macros;

pub mod alarm;
pub mod category;
pub mod clock;
pub mod codec;
pub mod device;
pub mod grant;
pub mod ids;
pub mod log_limit;
pub mod reading;
pub mod reference;

pub use alarm::{Alarm, AlarmFilter, AlarmState, Severity};
pub use category::{BINDING_CATEGORIES, Category, FILLING_STATION_CATEGORY};
pub use clock::{Clock, system_clock};
pub use codec::{RejectReason, Rejection};
pub use device::{DeviceContext, EngineSlot, Resolution};
pub use grant::Grant;
pub use ids::{AlarmId, DeviceId, EquipmentId, MaintainerId, OwnerId, Region, RuleId};
pub use reading::{Binding, DeadLetter, Payload, Reading, Stream};

/// Milliseconds since the Unix epoch, UTC. Device time (`ts`) and engine
/// time alike; one unit everywhere keeps replay and live evaluation equal.
pub type EpochMs = i64;

/// Largest accepted payload (protocol.md: at most 64 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

#[doc(hidden)]
/// For [`string_id!`] in other crates.
pub use serde as __serde;
