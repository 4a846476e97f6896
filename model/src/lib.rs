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
//! - [`codec`]: topic parsing, JSON decoding and validation.
//! - [`device`]: a device's registry context and the lookup result.
//! - [`alarm`]: alarms, severities and their lifecycle states.
//! - [`log_limit`]: a budget for log lines a device can multiply.

pub mod alarm;
pub mod codec;
pub mod device;
pub mod ids;
pub mod log_limit;
pub mod reading;

pub use alarm::{Alarm, AlarmState, Severity};
pub use codec::{RejectReason, Rejection};
pub use device::{DeviceContext, Resolution};
pub use ids::{AlarmId, DeviceId, EquipmentId, MaintainerId, OwnerId, Region, RuleId};
pub use reading::{Binding, DeadLetter, Payload, Reading, Stream};

/// Milliseconds since the Unix epoch, UTC. Device time (`ts`) and engine
/// time alike; one unit everywhere keeps replay and live evaluation equal.
pub type EpochMs = i64;

/// Largest accepted payload (protocol.md: at most 64 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
