//! What goes into the store and what comes back after a restart.
//! Reference tables (`RefTable`) are model vocabulary: the registry builds
//! them, the store shows them to SQL.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use vigil_model::{Alarm, Binding, DeadLetter, DeviceId, EpochMs, Reading};

use crate::StoredSeqs;
pub use vigil_model::reference::{ColumnType, RefColumn, RefTable};

/// A reading with the registry binding it was accepted under; stored
/// denormalised so that analysts filter by equipment and region without a join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReading {
    pub reading: Reading,
    pub binding: Binding,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// Goes to the table of its stream (`elevator_readings`, …, `device_events`).
    Reading(StoredReading),
    /// One change of one alarm (`alarm_changes`; `alarms` shows the latest).
    Alarm(Alarm),
    DeadLetter(DeadLetter),
}

/// Names a device message whose durability ingest wants to hear about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AckToken {
    pub device_id: DeviceId,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub record: Record,
    pub ack: Option<AckToken>,
}

/// State rebuilt from storage when the engine starts.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Per device with history, the seqs it has stored, over every stream:
    /// as readings, or as dead letters that took their seq. Exact from each
    /// set's floor upwards (the recent history, bounded); below it ask
    /// [`crate::Store::stored_seqs`].
    pub seqs: HashMap<DeviceId, StoredSeqs>,
    /// Latest `received_at` of a reading per device (a backend may read it
    /// from the device's most recent seqs only; see its `recover`).
    pub last_seen: HashMap<DeviceId, EpochMs>,
    /// The latest version of every alarm that is still open, plus every alarm
    /// raised in the last 24 hours (rules count repeat faults over that window).
    pub alarms: Vec<Alarm>,
}
