//! The built-in rules: stable ids, default severities, parameters and their
//! defaults. [`Params::default_for`] is the single source of every default;
//! the catalogue, the configuration checks and the docs read it from here.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};
use vigil_model::{RuleId, Severity};

/// One built-in rule. The discriminant indexes per-rule arrays; the first
/// [`Rule::SAMPLE`] entries are evaluated on elevator status samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Rule {
    Trapped,
    StoppedOutsideZone,
    DoorOpenMoving,
    Overspeed,
    OvertravelTop,
    OvertravelBottom,
    SafetyCircuitOpen,
    DoorLockOpenMoving,
    DoorWontClose,
    DoorCycling,
    PowerLoss,
    FloorOutOfRange,
    ControllerFault,
    FrequentFaults,
    RideRunningUnrestrained,
    RideWindLimit,
    RideOverspeed,
    RideBrakeFault,
    RideVibrationHigh,
    VideoElectricBike,
    VideoPersonFall,
    VideoRestraintUnlocked,
    VideoDangerZone,
    VideoSmokeFire,
    VideoCameraOccluded,
    DeviceOffline,
    InspectionDue,
    InspectionOverdue,
    MaintenanceOverdue,
    AnomalyDoorClose,
    AnomalyVibration,
    FillingCylinderUnregistered,
    FillingCylinderOverdue,
    FillingCylinderScrapped,
    FillingForeignCylinder,
    FillingOverfill,
    FillingOverpressure,
    FillingOperatorUncertified,
    CertificateExpired,
    FillingRecordsMissing,
    RideNoDailyCheck,
    AnomalyTrip,
    AnomalyFill,
}

/// An alarm slot of the engine: the built-in rules first (their [`Rule`]
/// index), then the rules a configuration defines, in the order the engine
/// first met them. A defined rule keeps its key for the engine's lifetime,
/// even when a reload drops it (it is then disabled), so per-equipment and
/// per-device state never has to be renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(u16);

impl Key {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The built-in rule of this slot, if it is one.
    pub fn builtin(self) -> Option<Rule> {
        Rule::ALL.get(self.index()).copied()
    }

    pub fn from_index(index: usize) -> Key {
        Key(u16::try_from(index).unwrap_or(u16::MAX))
    }

    /// The slot of the `n`-th defined rule.
    pub fn defined(n: usize) -> Key {
        Key(u16::try_from(Rule::COUNT + n).unwrap_or(u16::MAX))
    }
}

impl From<Rule> for Key {
    fn from(rule: Rule) -> Key {
        rule.key()
    }
}

impl Rule {
    pub const COUNT: usize = 43;
    pub const ALL: [Rule; Rule::COUNT] = [
        Rule::Trapped,
        Rule::StoppedOutsideZone,
        Rule::DoorOpenMoving,
        Rule::Overspeed,
        Rule::OvertravelTop,
        Rule::OvertravelBottom,
        Rule::SafetyCircuitOpen,
        Rule::DoorLockOpenMoving,
        Rule::DoorWontClose,
        Rule::DoorCycling,
        Rule::PowerLoss,
        Rule::FloorOutOfRange,
        Rule::ControllerFault,
        Rule::FrequentFaults,
        Rule::RideRunningUnrestrained,
        Rule::RideWindLimit,
        Rule::RideOverspeed,
        Rule::RideBrakeFault,
        Rule::RideVibrationHigh,
        Rule::VideoElectricBike,
        Rule::VideoPersonFall,
        Rule::VideoRestraintUnlocked,
        Rule::VideoDangerZone,
        Rule::VideoSmokeFire,
        Rule::VideoCameraOccluded,
        Rule::DeviceOffline,
        Rule::InspectionDue,
        Rule::InspectionOverdue,
        Rule::MaintenanceOverdue,
        Rule::AnomalyDoorClose,
        Rule::AnomalyVibration,
        Rule::FillingCylinderUnregistered,
        Rule::FillingCylinderOverdue,
        Rule::FillingCylinderScrapped,
        Rule::FillingForeignCylinder,
        Rule::FillingOverfill,
        Rule::FillingOverpressure,
        Rule::FillingOperatorUncertified,
        Rule::CertificateExpired,
        Rule::FillingRecordsMissing,
        Rule::RideNoDailyCheck,
        Rule::AnomalyTrip,
        Rule::AnomalyFill,
    ];
    /// Rules whose condition is a function of one elevator status sample.
    pub const SAMPLE: [Rule; 12] = [
        Rule::Trapped,
        Rule::StoppedOutsideZone,
        Rule::DoorOpenMoving,
        Rule::Overspeed,
        Rule::OvertravelTop,
        Rule::OvertravelBottom,
        Rule::SafetyCircuitOpen,
        Rule::DoorLockOpenMoving,
        Rule::DoorWontClose,
        Rule::DoorCycling,
        Rule::PowerLoss,
        Rule::FloorOutOfRange,
    ];
    /// Rules whose condition is a function of one ride / ropeway sample
    /// (contiguous in [`Rule::ALL`]).
    pub const RIDE: [Rule; 5] = [
        Rule::RideRunningUnrestrained,
        Rule::RideWindLimit,
        Rule::RideOverspeed,
        Rule::RideBrakeFault,
        Rule::RideVibrationHigh,
    ];
    /// Rules raised by video-analytics events (contiguous in [`Rule::ALL`]).
    pub const VIDEO: [Rule; 6] = [
        Rule::VideoElectricBike,
        Rule::VideoPersonFall,
        Rule::VideoRestraintUnlocked,
        Rule::VideoDangerZone,
        Rule::VideoSmokeFire,
        Rule::VideoCameraOccluded,
    ];

    /// Rules evaluated on a schedule against the registry, not per reading.
    pub const REGISTRY: [Rule; 3] = [
        Rule::InspectionDue,
        Rule::InspectionOverdue,
        Rule::MaintenanceOverdue,
    ];

    /// Rules that compare a device with its own learned normal.
    pub const ANOMALY: [Rule; 4] = [
        Rule::AnomalyDoorClose,
        Rule::AnomalyVibration,
        Rule::AnomalyTrip,
        Rule::AnomalyFill,
    ];
    /// Rules a gas-cylinder filling record breaks or not, one record at a
    /// time (contiguous in [`Rule::ALL`]).
    pub const FILLING: [Rule; 7] = [
        Rule::FillingCylinderUnregistered,
        Rule::FillingCylinderOverdue,
        Rule::FillingCylinderScrapped,
        Rule::FillingForeignCylinder,
        Rule::FillingOverfill,
        Rule::FillingOverpressure,
        Rule::FillingOperatorUncertified,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn key(self) -> Key {
        Key(self as u16)
    }

    pub fn id(self) -> &'static str {
        match self {
            Rule::Trapped => "elevator.trapped",
            Rule::StoppedOutsideZone => "elevator.stopped_outside_zone",
            Rule::DoorOpenMoving => "elevator.door_open_moving",
            Rule::Overspeed => "elevator.overspeed",
            Rule::OvertravelTop => "elevator.overtravel_top",
            Rule::OvertravelBottom => "elevator.overtravel_bottom",
            Rule::SafetyCircuitOpen => "elevator.safety_circuit_open",
            Rule::DoorLockOpenMoving => "elevator.door_lock_open_moving",
            Rule::DoorWontClose => "elevator.door_wont_close",
            Rule::DoorCycling => "elevator.door_cycling",
            Rule::PowerLoss => "elevator.power_loss",
            Rule::FloorOutOfRange => "elevator.floor_out_of_range",
            Rule::ControllerFault => "elevator.controller_fault",
            Rule::FrequentFaults => "elevator.frequent_faults",
            Rule::RideRunningUnrestrained => "ride.running_unrestrained",
            Rule::RideWindLimit => "ride.wind_limit",
            Rule::RideOverspeed => "ride.overspeed",
            Rule::RideBrakeFault => "ride.brake_fault",
            Rule::RideVibrationHigh => "ride.vibration_high",
            Rule::VideoElectricBike => "video.electric_bike",
            Rule::VideoPersonFall => "video.person_fall",
            Rule::VideoRestraintUnlocked => "video.restraint_unlocked",
            Rule::VideoDangerZone => "video.danger_zone",
            Rule::VideoSmokeFire => "video.smoke_fire",
            Rule::VideoCameraOccluded => "video.camera_occluded",
            Rule::DeviceOffline => "device.offline",
            Rule::InspectionDue => "registry.inspection_due",
            Rule::InspectionOverdue => "registry.inspection_overdue",
            Rule::MaintenanceOverdue => "registry.maintenance_overdue",
            Rule::AnomalyDoorClose => "anomaly.door_close_s",
            Rule::AnomalyVibration => "anomaly.vibration_mm_s",
            Rule::FillingCylinderUnregistered => "filling.cylinder_unregistered",
            Rule::FillingCylinderOverdue => "filling.cylinder_overdue",
            Rule::FillingCylinderScrapped => "filling.cylinder_scrapped",
            Rule::FillingForeignCylinder => "filling.foreign_cylinder",
            Rule::FillingOverfill => "filling.overfill",
            Rule::FillingOverpressure => "filling.overpressure",
            Rule::FillingOperatorUncertified => "filling.operator_uncertified",
            Rule::CertificateExpired => "registry.certificate_expired",
            Rule::FillingRecordsMissing => "filling.records_missing",
            Rule::RideNoDailyCheck => "ride.no_daily_check",
            Rule::AnomalyTrip => "anomaly.trip_s_per_floor",
            Rule::AnomalyFill => "anomaly.fill_s_per_kg",
        }
    }

    pub fn parse(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    pub fn is_ride(self) -> bool {
        Rule::RIDE.contains(&self)
    }

    pub fn is_video(self) -> bool {
        Rule::VIDEO.contains(&self)
    }

    pub fn is_registry(self) -> bool {
        Rule::REGISTRY.contains(&self)
    }

    pub fn is_anomaly(self) -> bool {
        Rule::ANOMALY.contains(&self)
    }

    pub fn is_filling(self) -> bool {
        Rule::FILLING.contains(&self)
    }

    /// Whether an occurrence of this rule counts towards
    /// `elevator.frequent_faults` (when its severity is major or critical):
    /// the elevator's own faults, not what a camera sees nor a ride's rules.
    pub fn counts_as_fault(self) -> bool {
        !matches!(self, Rule::FrequentFaults | Rule::DeviceOffline)
            && !self.is_ride()
            && !self.is_video()
            && !self.is_registry()
            && !self.is_anomaly()
            && !self.is_filling()
            && !matches!(
                self,
                Rule::CertificateExpired | Rule::FillingRecordsMissing | Rule::RideNoDailyCheck
            )
    }

    /// Whether the top-level `clear_s` of the configuration sets this rule's
    /// clear period (controller faults clear on the controller's word, a
    /// device is back online with its first message, and a video rule's
    /// `clear_s` is a quiet period with a default of its own).
    pub fn uses_global_clear(self) -> bool {
        !matches!(
            self,
            Rule::ControllerFault
                | Rule::DeviceOffline
                | Rule::CertificateExpired
                | Rule::FillingRecordsMissing
        ) && !self.is_video()
            && !self.is_registry()
            && !self.is_anomaly()
            && !self.is_filling()
    }

    fn description(self) -> &'static str {
        match self {
            Rule::Trapped => {
                "Passenger trapped: door closed, car occupied, speed 0, normal mode (shorter when the alarm button is pressed)."
            }
            Rule::StoppedOutsideZone => {
                "Car stopped outside the door zone (not leveled) in normal mode."
            }
            Rule::DoorOpenMoving => "Door not closed while the car moves outside the door zone.",
            Rule::Overspeed => {
                "Car speed above factor × the registered rated speed (governor trip point)."
            }
            Rule::OvertravelTop => {
                "Top final limit switch tripped, or still moving up at the top floor."
            }
            Rule::OvertravelBottom => {
                "Bottom final limit switch tripped, or still moving down at the bottom floor."
            }
            Rule::SafetyCircuitOpen => "Safety circuit open while moving or in normal mode.",
            Rule::DoorLockOpenMoving => "Door-lock circuit open while the car moves.",
            Rule::DoorWontClose => "Door not closed at a floor (leveled) in normal mode.",
            Rule::DoorCycling => {
                "More than max_changes door state changes at one floor within window_s."
            }
            Rule::PowerLoss => "Supply is not mains (battery or off).",
            Rule::FloorOutOfRange => {
                "Reported floor outside the registered floors (position lost)."
            }
            Rule::ControllerFault => {
                "A fault code the controller reports itself; one alarm lists every active code."
            }
            Rule::FrequentFaults => {
                "At least `count` critical or major alarm occurrences on one elevator within window_h."
            }
            Rule::RideRunningUnrestrained => {
                "Ride running while not every passenger restraint is locked."
            }
            Rule::RideWindLimit => {
                "Wind at or above the limit while running (registry wind_limit_mps, else limit_mps; ropeways 13.9 m/s)."
            }
            Rule::RideOverspeed => {
                "Ride speed above factor × the registered rated speed (no rated speed: not evaluated)."
            }
            Rule::RideBrakeFault => "Brake system reports a fault.",
            Rule::RideVibrationHigh => "Drive vibration (RMS velocity) above limit_mm_s.",
            Rule::VideoElectricBike => {
                "Camera sees an electric bike in the elevator car (elevators only by default)."
            }
            Rule::VideoPersonFall => "Camera sees a person fall.",
            Rule::VideoRestraintUnlocked => {
                "Camera sees an unlocked restraint while the ride runs (rides and ropeways only by default)."
            }
            Rule::VideoDangerZone => "Camera sees someone in a danger zone.",
            Rule::VideoSmokeFire => "Camera sees smoke or fire.",
            Rule::VideoCameraOccluded => {
                "A camera keeps reporting itself occluded for for_s, each report within clear_s of the last."
            }
            Rule::DeviceOffline => {
                "No message from a device for intervals × its reporting interval (wall time)."
            }
            Rule::InspectionDue => {
                "Equipment in use whose next periodic inspection is within `days` (registry, on a schedule)."
            }
            Rule::InspectionOverdue => {
                "Next periodic inspection date passed while the equipment is in use and its devices were heard within flowing_h."
            }
            Rule::MaintenanceOverdue => {
                "More than `days` days since the last maintenance of an elevator or escalator in use (registry)."
            }
            Rule::AnomalyDoorClose => {
                "The car door's closing time drifts from this elevator's own learned normal (a wearing door motor)."
            }
            Rule::AnomalyVibration => {
                "Drive vibration drifts above or below this ride's own learned normal."
            }
            Rule::FillingCylinderUnregistered => {
                "A filling record names a cylinder_code the registry does not know."
            }
            Rule::FillingCylinderOverdue => {
                "A cylinder filled after its next periodic inspection date."
            }
            Rule::FillingCylinderScrapped => {
                "A cylinder filled while scrapped or past made_on + design_life_years."
            }
            Rule::FillingForeignCylinder => "A cylinder registered to another station filled here.",
            Rule::FillingOverfill => {
                "net_kg above the cylinder's max_fill_kg (else the LPG model table: YSP12 5.0, YSP35.5 14.9, YSP118 49.5 kg)."
            }
            Rule::FillingOverpressure => {
                "pressure_mpa, corrected to 20 °C as an ideal gas, above the cylinder's working_pressure_mpa."
            }
            Rule::FillingOperatorUncertified => {
                "The operator is unknown, or holds no `filling` certificate valid on the day of the record."
            }
            Rule::CertificateExpired => {
                "A filling certificate an operator used within window_h (valid then) has expired since."
            }
            Rule::FillingRecordsMissing => {
                "A station whose scale is online sends no filling record for for_s of its working hours."
            }
            Rule::RideNoDailyCheck => {
                "A ride runs with passengers on a local day before any trial run (a run reporting 0 passengers)."
            }
            Rule::AnomalyTrip => {
                "An elevator's trip time per floor drifts from its own learned normal (drive, brake or load trouble)."
            }
            Rule::AnomalyFill => {
                "A filling scale's seconds per kg filled drift from the station's own learned normal."
            }
        }
    }

    fn basis(self) -> &'static str {
        match self {
            Rule::Trapped => "困人; practice: terminals use 3 min",
            Rule::StoppedOutsideZone => "非平层停梯 (GB/T 24476 code 04)",
            Rule::DoorOpenMoving => "开门走梯",
            Rule::Overspeed => "governor trip point 115 %",
            Rule::OvertravelTop => "冲顶 (code 09)",
            Rule::OvertravelBottom => "蹲底 (code 10)",
            Rule::SafetyCircuitOpen => "code 01",
            Rule::DoorLockOpenMoving => "门锁回路断路",
            Rule::DoorWontClose => "code 02",
            Rule::DoorCycling => "code 03 practice",
            Rule::PowerLoss => "event 41",
            Rule::FloorOutOfRange => "code 07 (position lost)",
            Rule::ControllerFault => "controller's own code",
            Rule::FrequentFaults => "practice (repeat-fault elevators)",
            Rule::RideRunningUnrestrained => "restraint interlock",
            Rule::RideWindLimit => "practice; stop rides at force 6",
            Rule::RideOverspeed => "practice",
            Rule::RideBrakeFault => "brake system",
            Rule::RideVibrationHigh => "ISO 10816 zone D boundary for large machines",
            Rule::VideoElectricBike => "e-bikes banned from elevator cars (fire risk)",
            Rule::VideoPersonFall => "video analytics",
            Rule::VideoRestraintUnlocked => "video analytics; restraint interlock",
            Rule::VideoDangerZone => "video analytics",
            Rule::VideoSmokeFire => "video analytics",
            Rule::VideoCameraOccluded => "video analytics; camera tampering",
            Rule::DeviceOffline => "liveness",
            Rule::InspectionDue => "Safety Law Art. 40: request inspection 1 month before",
            Rule::InspectionOverdue => "Safety Law Art. 40: uninspected equipment must stop",
            Rule::MaintenanceOverdue => "Regulation Art. 31; TSG T5002 half-monthly maintenance",
            Rule::AnomalyDoorClose
            | Rule::AnomalyVibration
            | Rule::AnomalyTrip
            | Rule::AnomalyFill => "rules.md anomaly detection (EWMA baseline and deviation)",
            Rule::FillingCylinderUnregistered => "TSG 23 no-fill rule: unregistered cylinder",
            Rule::FillingCylinderOverdue => "TSG 23 no-fill rule: inspection expired",
            Rule::FillingCylinderScrapped => "TSG 23 no-fill rule: scrapped or past design life",
            Rule::FillingForeignCylinder => "stations fill only their own cylinders",
            Rule::FillingOverfill => "TSG 23 filling limits",
            Rule::FillingOverpressure => "TSG 23 compressed gases: settled pressure at 20 °C",
            Rule::FillingOperatorUncertified => "Safety Law Art. 14: certified operators",
            Rule::CertificateExpired => "Safety Law Art. 14",
            Rule::FillingRecordsMissing => "filling records must be uploaded",
            Rule::RideNoDailyCheck => {
                "Special Equipment Safety Law Art. 43: trial run and check before daily use"
            }
        }
    }

    /// The parameter names a configuration may set for this rule.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Rule::Trapped => &[
                "enabled",
                "severity",
                "for_s",
                "clear_s",
                "alarm_button_for_s",
            ],
            Rule::DoorOpenMoving => &["enabled", "severity", "for_s", "clear_s", "speed_mps"],
            Rule::Overspeed => &["enabled", "severity", "for_s", "clear_s", "factor"],
            Rule::OvertravelTop | Rule::OvertravelBottom => {
                &["enabled", "severity", "for_s", "clear_s", "moving_for_s"]
            }
            Rule::DoorCycling => &[
                "enabled",
                "severity",
                "for_s",
                "clear_s",
                "max_changes",
                "window_s",
            ],
            Rule::FrequentFaults => &[
                "enabled", "severity", "for_s", "clear_s", "count", "window_h",
            ],
            Rule::ControllerFault => &["enabled", "severity", "clear_s", "codes"],
            Rule::DeviceOffline => &["enabled", "severity", "intervals", "operating_severity"],
            Rule::InspectionDue | Rule::MaintenanceOverdue => &["enabled", "severity", "days"],
            Rule::InspectionOverdue => &["enabled", "severity", "flowing_h"],
            Rule::AnomalyDoorClose
            | Rule::AnomalyVibration
            | Rule::AnomalyTrip
            | Rule::AnomalyFill => &["enabled", "severity", "threshold", "warmup"],
            Rule::FillingCylinderUnregistered
            | Rule::FillingCylinderOverdue
            | Rule::FillingCylinderScrapped
            | Rule::FillingForeignCylinder
            | Rule::FillingOverfill
            | Rule::FillingOverpressure
            | Rule::FillingOperatorUncertified => &["enabled", "severity", "clear_s"],
            Rule::CertificateExpired => &["enabled", "severity", "window_h"],
            Rule::FillingRecordsMissing => &["enabled", "severity", "for_s"],
            Rule::RideNoDailyCheck => &["enabled", "severity"],
            Rule::RideWindLimit => &["enabled", "severity", "for_s", "clear_s", "limit_mps"],
            Rule::RideOverspeed => &["enabled", "severity", "for_s", "clear_s", "factor"],
            Rule::RideVibrationHigh => &["enabled", "severity", "for_s", "clear_s", "limit_mm_s"],
            Rule::VideoCameraOccluded => {
                &["enabled", "severity", "for_s", "clear_s", "min_confidence"]
            }
            Rule::VideoElectricBike
            | Rule::VideoPersonFall
            | Rule::VideoRestraintUnlocked
            | Rule::VideoDangerZone
            | Rule::VideoSmokeFire => &["enabled", "severity", "clear_s", "min_confidence"],
            Rule::StoppedOutsideZone
            | Rule::SafetyCircuitOpen
            | Rule::DoorLockOpenMoving
            | Rule::DoorWontClose
            | Rule::PowerLoss
            | Rule::FloorOutOfRange
            | Rule::RideRunningUnrestrained
            | Rule::RideBrakeFault => &["enabled", "severity", "for_s", "clear_s"],
        }
    }
}

/// What each parameter means (for the catalogue and `vigil rules list`).
fn key_meaning(rule: Rule, key: &str) -> &'static str {
    match key {
        "enabled" => "evaluate this rule at all",
        "severity" => match rule {
            Rule::ControllerFault => "severity of codes missing from `codes`",
            _ => "severity of the alarm",
        },
        "for_s" => match rule {
            Rule::OvertravelTop | Rule::OvertravelBottom => {
                "seconds the limit switch must be tripped (device time)"
            }
            Rule::VideoCameraOccluded => {
                "seconds a camera must keep reporting occlusion before the alarm fires (device time)"
            }
            Rule::FillingRecordsMissing => {
                "seconds of the station's working hours without a filling record (wall time)"
            }
            _ => "seconds the condition must hold before the alarm fires (device time)",
        },
        "clear_s" => match rule {
            Rule::ControllerFault => "seconds without any active code before the alarm clears",
            Rule::VideoCameraOccluded => {
                "longest gap between occlusion reports of one occlusion; the alarm clears this long after the last"
            }
            r if r.is_filling() => {
                "seconds without a record breaking the rule before the alarm clears (breaking records within it repeat the alarm)"
            }
            r if r.is_video() => {
                "seconds without a qualifying event before the alarm clears (events within it repeat the alarm)"
            }
            _ => "seconds the condition must have been false before the alarm clears",
        },
        "alarm_button_for_s" => "shorter `for` once the car alarm button has been pressed",
        "speed_mps" => "car speed above which the car counts as moving, m/s",
        "factor" => "multiple of the registry's rated_speed_mps that is overspeed",
        "limit_mps" => "wind speed limit, m/s, when the registry gives no wind_limit_mps",
        "limit_mm_s" => "vibration velocity limit, mm/s RMS",
        "min_confidence" => "lowest detector confidence that counts, 0 to 1",
        "moving_for_s" => "seconds still moving beyond the end floor of the registry's floors",
        "max_changes" => "door state changes at one floor tolerated within the window",
        "window_s" => "trailing window for door changes, seconds",
        "count" => "critical/major occurrences within the window that raise the alarm",
        "window_h" => match rule {
            Rule::CertificateExpired => {
                "hours since an operator's last filling record that count as use"
            }
            _ => "trailing window, hours",
        },
        "intervals" => "multiples of the device's report_interval_s of silence",
        "days" => match rule {
            Rule::InspectionDue => "days before the inspection date the warning starts",
            _ => "days since the last maintenance that are tolerated",
        },
        "flowing_h" => "hours within which a device of the equipment must have been heard (in use)",
        "threshold" => "baseline deviations the recent mean may move before the alarm",
        "operating_severity" => {
            "severity while the equipment is inside its registry operating_hours (rides: major)"
        }
        "warmup" => "values learned before any verdict (no alarm while warming up)",
        "codes" => "controller code → severity table",
        _ => "",
    }
}

/// The default controller code table: the fault and event numbers of the
/// GB/T 24476 lists that rules.md cites, with the severity of the matching
/// built-in rule. Codes not listed get the rule's `severity` (major).
pub(crate) const DEFAULT_CODES: &[(&str, Severity, &str)] = &[
    (
        "01",
        Severity::Critical,
        "safety circuit open (安全回路断路)",
    ),
    ("02", Severity::Minor, "door fails to close (关门故障)"),
    ("03", Severity::Minor, "door fails to open (开门故障)"),
    (
        "04",
        Severity::Major,
        "car stopped outside the unlocking zone (非平层停梯)",
    ),
    (
        "05",
        Severity::Critical,
        "unintended car movement (轿厢意外移动)",
    ),
    ("06", Severity::Major, "motor run-time limiter tripped"),
    ("07", Severity::Minor, "floor position lost"),
    ("08", Severity::Major, "other fault preventing restart"),
    ("09", Severity::Critical, "overtravel at the top (冲顶)"),
    ("10", Severity::Critical, "overtravel at the bottom (蹲底)"),
    ("41", Severity::Major, "power failure (停电)"),
];

/// Resolved parameters of one rule for one piece of equipment. Durations
/// are kept in milliseconds, the unit of device time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub enabled: bool,
    pub severity: Severity,
    pub for_ms: i64,
    pub clear_ms: i64,
    pub alarm_button_for_ms: i64,
    pub speed_mps: f64,
    pub factor: f64,
    pub moving_for_ms: i64,
    pub max_changes: u32,
    /// `window_s` (door cycling) or `window_h` (frequent faults).
    pub window_ms: i64,
    pub count: u32,
    pub intervals: f64,
    pub codes: BTreeMap<String, Severity>,
    /// `limit_mps` (wind) or `limit_mm_s` (vibration).
    pub limit: f64,
    pub min_confidence: f64,
    /// Registry-time rules: `days` ahead (inspection due) or since (maintenance).
    pub days: u32,
    /// `flowing_h`: how recently a device must have been heard.
    pub flowing_ms: i64,
    /// Anomaly rules: distance in baseline deviations, and warm-up values.
    pub threshold: f64,
    pub warmup: u32,
    /// `device.offline`: the severity inside the equipment's registry
    /// `operating_hours` (rides), when it differs.
    pub operating_severity: Option<Severity>,
    /// Defined rules: after an alarm clears, a new one waits this long.
    pub cooldown_ms: i64,
    /// Defined rules: their own thresholds (`rule.NAME`), in definition order.
    pub settings: Vec<f64>,
}

pub(crate) const DEFAULT_CLEAR_S: f64 = 10.0;
/// Quiet period after a station's last record breaking a filling rule.
pub(crate) const FILLING_CLEAR_MS: i64 = 3_600_000;
/// Beaufort 6 (rides) and 7 (passenger ropeways), rules.md.
pub(crate) const RIDE_WIND_LIMIT_MPS: f64 = 10.8;
pub(crate) const ROPEWAY_WIND_LIMIT_MPS: f64 = 13.9;
/// The categories `registry.maintenance_overdue` watches by default.
pub(crate) const MAINTAINED_CATEGORIES: &[&str] = &["elevator", "escalator"];
/// The registry categories a ride sample or ride camera belongs to.
pub(crate) const RIDE_CATEGORIES: &[&str] = &["amusement_ride", "passenger_ropeway"];

impl Params {
    /// A rule that is not evaluated (a defined rule a reload dropped).
    pub const DISABLED: Params = Params {
        enabled: false,
        severity: Severity::Minor,
        for_ms: 0,
        clear_ms: 0,
        alarm_button_for_ms: 0,
        speed_mps: 0.0,
        factor: 0.0,
        moving_for_ms: 0,
        max_changes: 0,
        window_ms: 0,
        count: 0,
        intervals: 0.0,
        codes: BTreeMap::new(),
        limit: 0.0,
        min_confidence: 0.0,
        days: 0,
        flowing_ms: 0,
        threshold: 0.0,
        warmup: 0,
        operating_severity: None,
        cooldown_ms: 0,
        settings: Vec::new(),
    };

    /// The shipped defaults of rules.md.
    pub fn default_for(rule: Rule) -> Params {
        let base = Params {
            enabled: true,
            severity: Severity::Critical,
            clear_ms: secs_to_ms(DEFAULT_CLEAR_S),
            ..Params::DISABLED
        };
        match rule {
            Rule::Trapped => Params {
                for_ms: 180_000,
                alarm_button_for_ms: 60_000,
                ..base
            },
            Rule::StoppedOutsideZone => Params {
                severity: Severity::Major,
                for_ms: 180_000,
                ..base
            },
            Rule::DoorOpenMoving => Params {
                for_ms: 600,
                speed_mps: 0.1,
                ..base
            },
            Rule::Overspeed => Params {
                factor: 1.15,
                ..base
            },
            Rule::OvertravelTop | Rule::OvertravelBottom => Params {
                moving_for_ms: 8_000,
                ..base
            },
            Rule::SafetyCircuitOpen | Rule::DoorLockOpenMoving => base,
            Rule::DoorWontClose => Params {
                severity: Severity::Minor,
                for_ms: 180_000,
                ..base
            },
            Rule::DoorCycling => Params {
                severity: Severity::Minor,
                max_changes: 11,
                window_ms: 120_000,
                ..base
            },
            Rule::PowerLoss => Params {
                severity: Severity::Major,
                for_ms: 5_000,
                ..base
            },
            Rule::FloorOutOfRange => Params {
                severity: Severity::Minor,
                ..base
            },
            Rule::ControllerFault => Params {
                severity: Severity::Major,
                clear_ms: 0,
                codes: DEFAULT_CODES
                    .iter()
                    .map(|(code, sev, _)| ((*code).to_owned(), *sev))
                    .collect(),
                ..base
            },
            Rule::FrequentFaults => Params {
                severity: Severity::Major,
                count: 3,
                window_ms: 24 * 3_600_000,
                ..base
            },
            Rule::DeviceOffline => Params {
                severity: Severity::Minor,
                clear_ms: 0,
                intervals: 3.0,
                ..base
            },
            Rule::RideRunningUnrestrained | Rule::RideBrakeFault => base,
            Rule::RideWindLimit => Params {
                severity: Severity::Major,
                for_ms: 10_000,
                limit: RIDE_WIND_LIMIT_MPS,
                ..base
            },
            Rule::RideOverspeed => Params {
                for_ms: 2_000,
                factor: 1.1,
                ..base
            },
            Rule::RideVibrationHigh => Params {
                severity: Severity::Minor,
                for_ms: 30_000,
                limit: 11.2,
                ..base
            },
            // Video alarms clear after a quiet period. The critical ones stay
            // open longer than the 5 min after which an unacknowledged
            // critical alarm escalates, so an unseen fall is escalated first.
            Rule::VideoElectricBike => Params {
                severity: Severity::Major,
                clear_ms: 300_000,
                min_confidence: 0.8,
                ..base
            },
            Rule::VideoPersonFall => Params {
                clear_ms: 600_000,
                min_confidence: 0.7,
                ..base
            },
            Rule::VideoRestraintUnlocked => Params {
                clear_ms: 600_000,
                ..base
            },
            Rule::VideoDangerZone => Params {
                severity: Severity::Major,
                clear_ms: 60_000,
                min_confidence: 0.7,
                ..base
            },
            Rule::VideoSmokeFire => Params {
                clear_ms: 600_000,
                min_confidence: 0.6,
                ..base
            },
            Rule::VideoCameraOccluded => Params {
                severity: Severity::Minor,
                for_ms: 300_000,
                clear_ms: 120_000,
                ..base
            },
            Rule::InspectionDue => Params {
                severity: Severity::Warning,
                clear_ms: 0,
                days: 30,
                ..base
            },
            Rule::InspectionOverdue => Params {
                clear_ms: 0,
                flowing_ms: 24 * 3_600_000,
                ..base
            },
            Rule::MaintenanceOverdue => Params {
                severity: Severity::Major,
                clear_ms: 0,
                days: 15,
                ..base
            },
            Rule::AnomalyDoorClose
            | Rule::AnomalyVibration
            | Rule::AnomalyTrip
            | Rule::AnomalyFill => {
                let d = crate::anomaly::AnomalyParams::default();
                Params {
                    severity: Severity::Minor,
                    clear_ms: 0,
                    threshold: d.threshold,
                    warmup: d.warmup,
                    ..base
                }
            }
            // One bad record is one occurrence; a station that keeps
            // breaking the rule keeps one alarm open, counted, for an hour
            // past its last bad record.
            Rule::FillingCylinderUnregistered
            | Rule::FillingCylinderOverdue
            | Rule::FillingCylinderScrapped
            | Rule::FillingOverfill
            | Rule::FillingOverpressure => Params {
                clear_ms: FILLING_CLEAR_MS,
                ..base
            },
            Rule::FillingForeignCylinder | Rule::FillingOperatorUncertified => Params {
                severity: Severity::Major,
                clear_ms: FILLING_CLEAR_MS,
                ..base
            },
            Rule::CertificateExpired => Params {
                severity: Severity::Major,
                clear_ms: 0,
                window_ms: 24 * 3_600_000,
                ..base
            },
            Rule::FillingRecordsMissing => Params {
                severity: Severity::Warning,
                for_ms: 4 * 3_600_000,
                clear_ms: 0,
                ..base
            },
            Rule::RideNoDailyCheck => Params {
                severity: Severity::Major,
                clear_ms: 0,
                ..base
            },
        }
    }

    /// The shipped defaults for equipment of `category`: ropeways have a
    /// higher wind limit; the e-bike rule watches elevator cars and the
    /// restraint rule rides and ropeways, unless configured otherwise.
    pub fn default_for_category(rule: Rule, category: &str) -> Params {
        let mut p = Params::default_for(rule);
        match rule {
            Rule::RideWindLimit if category == "passenger_ropeway" => {
                p.limit = ROPEWAY_WIND_LIMIT_MPS;
            }
            Rule::VideoElectricBike => p.enabled = category == "elevator",
            Rule::VideoRestraintUnlocked => p.enabled = RIDE_CATEGORIES.contains(&category),
            Rule::RideNoDailyCheck => p.enabled = RIDE_CATEGORIES.contains(&category),
            // rules.md: a silent ride is major while it operates.
            Rule::DeviceOffline if RIDE_CATEGORIES.contains(&category) => {
                p.operating_severity = Some(Severity::Major);
            }
            // Half-monthly maintenance is the elevator regulation's.
            Rule::MaintenanceOverdue => p.enabled = MAINTAINED_CATEGORIES.contains(&category),
            // Car doors are elevators'; drive vibration is measured on rides.
            Rule::AnomalyDoorClose => p.enabled = category == "elevator",
            Rule::AnomalyVibration => p.enabled = RIDE_CATEGORIES.contains(&category),
            Rule::AnomalyTrip => p.enabled = category == "elevator",
            Rule::AnomalyFill => p.enabled = category == "filling_station",
            _ => {}
        }
        p
    }

    /// Sets one parameter from its configuration value. The error names
    /// what the value should have been.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<(), &'static str> {
        let seconds = |v: &Value| {
            v.as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .ok_or("a number of seconds ≥ 0")
        };
        let positive = |v: &Value| {
            v.as_f64()
                .filter(|x| x.is_finite() && *x > 0.0 && *x < 1e9)
                .ok_or("a number > 0")
        };
        let whole = |v: &Value| {
            v.as_u64()
                .filter(|n| (1..=1_000_000).contains(n))
                .map(|n| n as u32)
                .ok_or("a whole number ≥ 1")
        };
        match key {
            "enabled" => self.enabled = value.as_bool().ok_or("true or false")?,
            "severity" => self.severity = severity_of(value)?,
            "for_s" => self.for_ms = secs_to_ms(seconds(value)?),
            "clear_s" => self.clear_ms = secs_to_ms(seconds(value)?),
            // Defined rules only (no built-in rule lists it among its keys).
            "cooldown_s" => self.cooldown_ms = secs_to_ms(seconds(value)?),
            "alarm_button_for_s" => self.alarm_button_for_ms = secs_to_ms(seconds(value)?),
            "moving_for_s" => self.moving_for_ms = secs_to_ms(seconds(value)?),
            "speed_mps" => {
                self.speed_mps = value
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or("a speed in m/s ≥ 0")?
            }
            "factor" => self.factor = positive(value)?,
            "limit_mps" | "limit_mm_s" => self.limit = positive(value)?,
            "min_confidence" => {
                self.min_confidence = value
                    .as_f64()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .ok_or("a confidence from 0 to 1")?
            }
            "intervals" => self.intervals = positive(value)?,
            "days" => self.days = whole(value)?,
            "threshold" => self.threshold = positive(value)?,
            "operating_severity" => self.operating_severity = Some(severity_of(value)?),
            "warmup" => self.warmup = whole(value)?,
            "flowing_h" => self.flowing_ms = secs_to_ms(positive(value)? * 3600.0),
            "window_s" => self.window_ms = secs_to_ms(positive(value)?),
            "window_h" => self.window_ms = secs_to_ms(positive(value)? * 3600.0),
            "max_changes" => self.max_changes = whole(value)?,
            "count" => self.count = whole(value)?,
            "codes" => {
                const EXPECTED: &str = "a table of controller code = severity (\"critical\", \"major\", \"minor\", \"warning\")";
                let table = value.as_object().ok_or(EXPECTED)?;
                let mut codes = Vec::with_capacity(table.len());
                for (code, sev) in table {
                    codes.push((code.clone(), severity_of(sev).map_err(|_| EXPECTED)?));
                }
                // A table adds to (or changes) the codes already known
                // rather than replacing the whole default list.
                self.codes.extend(codes);
            }
            _ => return Err("a known parameter"),
        }
        Ok(())
    }

    /// The value of one parameter as a configuration would spell it.
    pub fn get(&self, key: &str) -> Value {
        let s = |ms: i64| json!(ms as f64 / 1000.0);
        match key {
            "enabled" => json!(self.enabled),
            "severity" => json!(self.severity.as_str()),
            "for_s" => s(self.for_ms),
            "clear_s" => s(self.clear_ms),
            "alarm_button_for_s" => s(self.alarm_button_for_ms),
            "moving_for_s" => s(self.moving_for_ms),
            "speed_mps" => json!(self.speed_mps),
            "factor" => json!(self.factor),
            "limit_mps" | "limit_mm_s" => json!(self.limit),
            "min_confidence" => json!(self.min_confidence),
            "intervals" => json!(self.intervals),
            "days" => json!(self.days),
            "threshold" => json!(self.threshold),
            "operating_severity" => json!(self.operating_severity.map(Severity::as_str)),
            "warmup" => json!(self.warmup),
            "flowing_h" => json!(self.flowing_ms as f64 / 3_600_000.0),
            "window_s" => s(self.window_ms),
            "window_h" => json!(self.window_ms as f64 / 3_600_000.0),
            "max_changes" => json!(self.max_changes),
            "count" => json!(self.count),
            "codes" => Value::Object(
                self.codes
                    .iter()
                    .map(|(c, s)| (c.clone(), json!(s.as_str())))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    /// Severity of a controller code: exact match first, then the same
    /// number (`"1"` and `"01"` are one code), else the rule's severity.
    pub fn code_severity(&self, code: &str) -> Severity {
        if let Some(sev) = self.codes.get(code) {
            return *sev;
        }
        let number = |c: &str| c.trim_start_matches('0').to_owned();
        if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) {
            let wanted = number(code);
            if let Some((_, sev)) = self
                .codes
                .iter()
                .find(|(c, _)| c.bytes().all(|b| b.is_ascii_digit()) && number(c) == wanted)
            {
                return *sev;
            }
        }
        self.severity
    }
}

pub(crate) fn severity_of(value: &Value) -> Result<Severity, &'static str> {
    value
        .as_str()
        .and_then(Severity::parse)
        .ok_or("one of \"critical\", \"major\", \"minor\", \"warning\"")
}

pub(crate) fn secs_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// One built-in rule as the docs and `vigil rules list` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub id: RuleId,
    /// The default severity.
    pub severity: Severity,
    pub description: &'static str,
    /// Where the default comes from (rules.md's "basis").
    pub basis: &'static str,
    /// The condition as `catalogue.toml` writes it (`None`: evaluated in
    /// code, as it needs earlier samples or the registry).
    pub when: Option<&'static str>,
    /// Every parameter a configuration may set, with its shipped default.
    pub params: Vec<ParamInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    pub name: &'static str,
    pub default: Value,
    pub meaning: &'static str,
}

impl fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<32} {:<8} {}",
            self.id.as_str(),
            self.severity.as_str(),
            self.description
        )?;
        let shown: Vec<String> = self
            .params
            .iter()
            .filter(|p| p.name != "enabled" && p.name != "severity")
            .map(|p| match &p.default {
                Value::Object(m) => format!("{}=({} codes)", p.name, m.len()),
                v => format!("{}={v}", p.name),
            })
            .collect();
        if !shown.is_empty() {
            write!(f, " [{}]", shown.join(", "))?;
        }
        if let Some(when) = self.when {
            let when: Vec<&str> = when.split_whitespace().collect();
            write!(f, "\n{:<32} when {}", "", when.join(" "))?;
        }
        Ok(())
    }
}

/// Every built-in rule with its default severity and parameters.
pub fn catalogue() -> Vec<RuleInfo> {
    Rule::ALL
        .into_iter()
        .map(|rule| {
            let defaults = Params::default_for(rule);
            RuleInfo {
                id: rule_id(rule),
                severity: defaults.severity,
                description: rule.description(),
                basis: rule.basis(),
                when: crate::builtin::text(rule),
                params: rule
                    .keys()
                    .iter()
                    .map(|&name| ParamInfo {
                        name,
                        default: defaults.get(name),
                        meaning: key_meaning(rule, name),
                    })
                    .collect(),
            }
        })
        .collect()
}

pub(crate) fn rule_id(rule: Rule) -> RuleId {
    // Built-in ids are lower-case words joined by '.' and '_' (checked by a test).
    RuleId::new(rule.id()).expect("built-in rule ids are valid RuleIds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_listed_once_with_a_valid_id() {
        let list = catalogue();
        assert_eq!(list.len(), Rule::COUNT);
        for (i, rule) in Rule::ALL.into_iter().enumerate() {
            assert_eq!(rule.index(), i);
            assert_eq!(Rule::parse(rule.id()), Some(rule));
            assert_eq!(list[i].id.as_str(), rule.id());
        }
        for (i, rule) in Rule::SAMPLE.into_iter().enumerate() {
            assert_eq!(rule.index(), i, "sample rules come first");
        }
        for group in [&Rule::RIDE[..], &Rule::VIDEO[..], &Rule::FILLING[..]] {
            for (k, rule) in group.iter().enumerate() {
                assert_eq!(rule.index(), group[0].index() + k, "groups are contiguous");
            }
        }
    }

    #[test]
    fn shipped_defaults_match_rules_md() {
        let p = Params::default_for;
        assert_eq!(
            (
                p(Rule::Trapped).for_ms,
                p(Rule::Trapped).alarm_button_for_ms,
                p(Rule::Trapped).severity
            ),
            (180_000, 60_000, Severity::Critical)
        );
        assert_eq!(
            (
                p(Rule::StoppedOutsideZone).for_ms,
                p(Rule::StoppedOutsideZone).severity
            ),
            (180_000, Severity::Major)
        );
        assert_eq!(
            (
                p(Rule::DoorOpenMoving).for_ms,
                p(Rule::DoorOpenMoving).speed_mps
            ),
            (600, 0.1)
        );
        assert_eq!(
            (p(Rule::Overspeed).for_ms, p(Rule::Overspeed).factor),
            (0, 1.15)
        );
        assert_eq!(
            (
                p(Rule::OvertravelTop).for_ms,
                p(Rule::OvertravelTop).moving_for_ms
            ),
            (0, 8_000)
        );
        assert_eq!(
            (
                p(Rule::DoorWontClose).for_ms,
                p(Rule::DoorWontClose).severity
            ),
            (180_000, Severity::Minor)
        );
        assert_eq!(
            (
                p(Rule::DoorCycling).max_changes,
                p(Rule::DoorCycling).window_ms
            ),
            (11, 120_000)
        );
        assert_eq!(
            (p(Rule::PowerLoss).for_ms, p(Rule::PowerLoss).severity),
            (5_000, Severity::Major)
        );
        assert_eq!(
            (
                p(Rule::FrequentFaults).count,
                p(Rule::FrequentFaults).window_ms
            ),
            (3, 86_400_000)
        );
        assert_eq!(
            (
                p(Rule::DeviceOffline).intervals,
                p(Rule::DeviceOffline).severity
            ),
            (3.0, Severity::Minor)
        );
        assert_eq!(p(Rule::SafetyCircuitOpen).clear_ms, 10_000);
    }

    #[test]
    fn ride_and_video_defaults_match_rules_md() {
        let p = Params::default_for;
        let r = p(Rule::RideRunningUnrestrained);
        assert_eq!((r.for_ms, r.severity), (0, Severity::Critical));
        let r = p(Rule::RideWindLimit);
        assert_eq!(
            (r.for_ms, r.limit, r.severity),
            (10_000, 10.8, Severity::Major)
        );
        let r = Params::default_for_category(Rule::RideWindLimit, "passenger_ropeway");
        assert_eq!(r.limit, 13.9);
        let r = p(Rule::RideOverspeed);
        assert_eq!(
            (r.for_ms, r.factor, r.severity),
            (2_000, 1.1, Severity::Critical)
        );
        assert_eq!(p(Rule::RideBrakeFault).severity, Severity::Critical);
        let r = p(Rule::RideVibrationHigh);
        assert_eq!(
            (r.for_ms, r.limit, r.severity),
            (30_000, 11.2, Severity::Minor)
        );
        let v = |rule| {
            let p = p(rule);
            (p.min_confidence, p.clear_ms, p.severity)
        };
        assert_eq!(v(Rule::VideoElectricBike), (0.8, 300_000, Severity::Major));
        assert_eq!(v(Rule::VideoPersonFall).0, 0.7);
        assert_eq!(v(Rule::VideoPersonFall).2, Severity::Critical);
        assert_eq!(v(Rule::VideoRestraintUnlocked).2, Severity::Critical);
        assert_eq!(v(Rule::VideoDangerZone), (0.7, 60_000, Severity::Major));
        assert_eq!(v(Rule::VideoSmokeFire).0, 0.6);
        assert_eq!(v(Rule::VideoSmokeFire).2, Severity::Critical);
        let occluded = p(Rule::VideoCameraOccluded);
        assert_eq!(
            (occluded.for_ms, occluded.severity),
            (300_000, Severity::Minor)
        );
        let on = |rule, category| Params::default_for_category(rule, category).enabled;
        assert!(on(Rule::VideoElectricBike, "elevator"));
        assert!(!on(Rule::VideoElectricBike, "amusement_ride"));
        assert!(on(Rule::VideoRestraintUnlocked, "amusement_ride"));
        assert!(on(Rule::VideoRestraintUnlocked, "passenger_ropeway"));
        assert!(!on(Rule::VideoRestraintUnlocked, "elevator"));
    }

    #[test]
    fn controller_codes_match_by_number() {
        let p = Params::default_for(Rule::ControllerFault);
        assert_eq!(p.code_severity("01"), Severity::Critical);
        assert_eq!(p.code_severity("1"), Severity::Critical);
        assert_eq!(p.code_severity("E99"), Severity::Major);
        assert_eq!(p.code_severity(""), Severity::Major);
    }

    #[test]
    fn display_gives_defaults_then_the_condition_where_it_is_written() {
        let text = catalogue()[0].to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("elevator.trapped"), "{text}");
        assert!(
            lines[0].contains("for_s=180") && lines[0].contains("alarm_button_for_s=60"),
            "{text}"
        );
        assert_eq!(
            lines[1].trim(),
            "when door == \"closed\" and occupied and speed_mps == 0 and mode == \"normal\""
        );
        let cycling = catalogue()
            .into_iter()
            .find(|r| r.id.as_str() == "elevator.door_cycling")
            .unwrap()
            .to_string();
        assert_eq!(
            cycling.lines().count(),
            1,
            "evaluated in code: no condition line"
        );
    }
}
