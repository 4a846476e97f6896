//! The v1 payloads of protocol.md, one struct per stream, and the envelope
//! that every stored reading carries.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, EquipmentId, OwnerId, Region};
use crate::{EpochMs, RejectReason};

word_enum!(
    /// The topic suffix a message arrived on: `/tenants/{device_id}/v1/{stream}`.
    Stream {
        Elevator = "elevator",
        Ride = "ride",
        Video = "video",
        Filling = "filling",
        Event = "event",
    }
);

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::Elevator,
        Stream::Ride,
        Stream::Video,
        Stream::Filling,
        Stream::Event,
    ];
}

/// Where a device sits in the registry, resolved once per message by ingest
/// and carried with the reading so rules and storage need no lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub equipment_id: EquipmentId,
    /// Registry category of the equipment (`elevator`, `escalator`, …).
    pub category: String,
    pub owner_id: OwnerId,
    pub region: Region,
}

/// One accepted message from one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device_id: DeviceId,
    pub seq: u64,
    /// Device time.
    pub ts: EpochMs,
    /// Engine time when the message was received.
    pub received_at: EpochMs,
    pub payload: Payload,
    /// Unknown extra fields of the payload, kept as a JSON object text.
    pub extra: Option<String>,
}

impl Reading {
    pub fn stream(&self) -> Stream {
        self.payload.stream()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    Elevator(ElevatorSample),
    Ride(RideSample),
    Video(VideoEvent),
    Filling(FillingRecord),
    Event(ControllerEvent),
}

impl Payload {
    pub fn stream(&self) -> Stream {
        match self {
            Payload::Elevator(_) => Stream::Elevator,
            Payload::Ride(_) => Stream::Ride,
            Payload::Video(_) => Stream::Video,
            Payload::Filling(_) => Stream::Filling,
            Payload::Event(_) => Stream::Event,
        }
    }
}

word_enum!(Direction { Up = "up", Down = "down", Stop = "stop" });
word_enum!(Door { Open = "open", Closed = "closed", Opening = "opening", Closing = "closing" });
word_enum!(ElevatorMode {
    Normal = "normal",
    Inspection = "inspection",
    Maintenance = "maintenance",
    Fire = "fire",
    OutOfService = "out_of_service",
});
word_enum!(Power { Mains = "mains", Battery = "battery", Off = "off" });
word_enum!(Limit { None = "none", Top = "top", Bottom = "bottom" });
word_enum!(RideState { Running = "running", Stopped = "stopped", Loading = "loading", Maintenance = "maintenance" });
word_enum!(Brake { Ok = "ok", Fault = "fault" });
word_enum!(VideoKind {
    ElectricBike = "electric_bike",
    PersonFall = "person_fall",
    RestraintUnlocked = "restraint_unlocked",
    DangerZoneIntrusion = "danger_zone_intrusion",
    Crowding = "crowding",
    SmokeFire = "smoke_fire",
    DoorObstruction = "door_obstruction",
    CameraOccluded = "camera_occluded",
});
word_enum!(FillResult { Ok = "ok", Aborted = "aborted" });

/// An elevator status sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElevatorSample {
    pub floor: i16,
    pub direction: Direction,
    pub speed_mps: f32,
    pub door: Door,
    pub leveled: bool,
    pub occupied: bool,
    pub mode: ElevatorMode,
    pub safety_circuit: bool,
    pub door_lock: bool,
    pub alarm_button: bool,
    pub power: Power,
    pub limit: Limit,
    pub run_count: Option<u64>,
    pub load_pct: Option<f32>,
}

impl ElevatorSample {
    /// An elevator at rest: stopped level at floor 3, door closed and
    /// locked, empty, normal mode, on mains. The shared starting point of
    /// tests, benches and simulations (override fields with `..idle()`).
    pub fn idle() -> ElevatorSample {
        ElevatorSample {
            floor: 3,
            direction: Direction::Stop,
            speed_mps: 0.0,
            door: Door::Closed,
            leveled: true,
            occupied: false,
            mode: ElevatorMode::Normal,
            safety_circuit: true,
            door_lock: true,
            alarm_button: false,
            power: Power::Mains,
            limit: Limit::None,
            run_count: None,
            load_pct: None,
        }
    }

    /// Travelling up between floors at a normal speed (1.5 m/s), occupied.
    pub fn moving() -> ElevatorSample {
        ElevatorSample {
            direction: Direction::Up,
            speed_mps: 1.5,
            leveled: false,
            occupied: true,
            ..ElevatorSample::idle()
        }
    }
}

/// A large amusement ride or passenger ropeway sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RideSample {
    pub state: RideState,
    pub speed_mps: f32,
    pub wind_mps: Option<f32>,
    pub restraints_locked: bool,
    pub vibration_mm_s: Option<f32>,
    pub brake: Brake,
    pub passengers: Option<u16>,
}

/// One video-analytics event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoEvent {
    pub camera_id: String,
    pub event: VideoKind,
    pub confidence: f32,
    pub snapshot: Option<String>,
}

/// One finished gas-cylinder filling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillingRecord {
    pub cylinder_code: String,
    pub operator_id: String,
    /// Open set (`LPG`, `O2`, …): kept as the device sent it.
    pub medium: String,
    pub tare_kg: f32,
    pub net_kg: f32,
    pub pressure_mpa: Option<f32>,
    pub temp_c: Option<f32>,
    pub started_ms: EpochMs,
    pub result: FillResult,
}

/// The maximum fill mass, kg, of an LPG cylinder model (GB 5842 YSP
/// series): YSP12 5.0 kg, YSP35.5 14.9 kg, YSP118 49.5 kg. A registry
/// `max_fill_kg` above it is a mistake the registry import warns about and
/// `filling.overfill` does not follow.
pub fn lpg_max_fill_kg(model: &str) -> Option<f64> {
    const TABLE: &[(&str, f64)] = &[("YSP12", 5.0), ("YSP35.5", 14.9), ("YSP118", 49.5)];
    TABLE
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(model.trim()))
        .map(|(_, kg)| *kg)
}

/// The `event` code a ride's controller (or the operator's console) sends,
/// `active: true`, when the day's trial run and safety check are done
/// (`ride.no_daily_check`). It is a record, not a fault:
/// `elevator.controller_fault` ignores it.
pub const DAILY_CHECK_CODE: &str = "daily_check";

/// A fault or event code the controller reports itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerEvent {
    pub code: String,
    pub text: Option<String>,
    pub active: bool,
}

/// A message that was not stored as a reading, with why and the raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_at: EpochMs,
    pub topic: String,
    /// The device named by the topic, when the topic could be parsed at all.
    pub device_id: Option<String>,
    pub reason: RejectReason,
    /// Human-readable: which field and what was wrong.
    pub detail: String,
    /// The payload as received, cut to [`crate::MAX_PAYLOAD_BYTES`]; see
    /// `payload_size` for the original length.
    pub payload: Vec<u8>,
    pub payload_size: u64,
    /// The `seq` this message took (its device's ack covers it, and a
    /// re-send is a duplicate); `None` when it took none.
    pub seq: Option<u64>,
}
