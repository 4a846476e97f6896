//! One simulated elevator: a pure state machine driven by an injected clock.
//!
//! `step(now)` advances the car in 250 ms ticks up to `now` and returns the
//! messages a real terminal would have published in that time, stamped with
//! the tick's time: 1 Hz while moving or while the doors move, on every
//! change, every 30 s when idle. A healthy car never satisfies a rule of
//! rules.md; an injected fault satisfies its own rule for at least the
//! rule's "for" duration and then recovers so that the alarm clears.
//!
//! ```text
//!  Idle ──call here──▶ Opening ─▶ Open (board / alight) ─▶ Closing ─▶ Idle
//!   │                                                                 ▲
//!   └──call elsewhere──▶ Travel (accelerate, cruise, decelerate) ─────┘
//!  faults: Travel ─▶ Stuck ─▶ Rescue ─▶ Idle;  Idle ─▶ PowerOut ─▶ Idle
//! ```

mod trip;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigil_model::reading::{
    ControllerEvent, Direction, Door, ElevatorMode, ElevatorSample, Limit, Power,
};
use vigil_model::{EpochMs, Payload};

use crate::machine::{Emitted, FaultEdge};
use trip::Trip;

/// The model's time step.
pub(crate) const TICK_MS: EpochMs = 250;
/// Storey height; the shaft is `FLOOR_HEIGHT_M` per stop.
const FLOOR_HEIGHT_M: f64 = 3.0;
/// Half-height of the door (levelling) zone around each landing.
const DOOR_ZONE_M: f64 = 0.15;
const IDLE_REPORT_MS: EpochMs = 30_000;
const MOVING_REPORT_MS: EpochMs = 1_000;
/// A trapped car reports more often than an idle one: the supervisor is
/// watching it.
const STUCK_REPORT_MS: EpochMs = 5_000;
/// Ticks further behind `now` than this (the process was suspended) still
/// move the car but are not reported: a burst of stale samples helps nobody.
const MAX_BACKLOG_MS: EpochMs = 10_000;
/// rules.md `elevator.door_cycling` fires above 11 changes in 120 s at one
/// floor; a healthy car opens (or re-opens) only while that stays out of reach.
const DOOR_WINDOW_MS: EpochMs = 120_000;
const MAX_DOOR_CHANGES: usize = 11;
/// Share of door closings that someone interrupts (the door re-opens).
const REOPEN_CHANCE: f64 = 0.08;
/// A `door_wear` fault adds this much to every closing, reached after
/// `DOOR_WEAR_MS` of wear.
const DOOR_WEAR_EXTRA_MS: EpochMs = 2_000;
const DOOR_WEAR_MS: EpochMs = 3 * 3_600_000;
/// A `drive_wear` fault takes this share off the drive's speed and
/// acceleration, reached after `DRIVE_WEAR_MS` of wear.
const DRIVE_WEAR_LOSS: f64 = 0.5;
const DRIVE_WEAR_MS: EpochMs = 2 * 3_600_000;
/// Queued legs (two per passenger call) a car accepts.
const MAX_LEGS: usize = 4;
const RESCUE_SPEED_MPS: f64 = 0.3;
const OVERSPEED_FACTOR: f64 = 1.25;

/// A fault a piece of equipment of the fleet develops during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Stuck between floors with a passenger, who presses the alarm button;
    /// rescued after 90–120 s.
    Trapped,
    /// The door opens while the car leaves a landing, for about a second.
    DoorOpenMoving,
    /// One trip at 125 % of the rated speed.
    Overspeed,
    /// On battery for about 20 s, standing at a floor.
    PowerLoss,
    /// The controller reports code `E30` and clears it 30–60 s later.
    ControllerFault,
    /// Chronic, not in [`FaultKind::ALL`]: the door motor wears, and every
    /// closing takes a little longer, up to +2 s after `DOOR_WEAR_MS`.
    /// Nothing breaks; only `anomaly.door_close_s` can tell.
    DoorWear,
    /// A ride departs with a restraint unlocked; stopped 3–5 s later.
    RideUnrestrained,
    /// A squall past the ride's wind limit that the operator misses for 45 s.
    RideWind,
    /// One cycle (a ropeway: 40 s) at 130 % of the rated speed.
    RideOverspeed,
    /// The brake reports a fault at the station for 20–30 s.
    RideBrake,
    /// The main drive vibrates at 13.5–16 mm/s for 45 s.
    RideVibration,
    /// An e-bike in the car: three detections at confidence ≥ 0.82.
    CameraEbike,
    /// A person falls: two detections at ≥ 0.75.
    CameraFall,
    /// Smoke: two detections at ≥ 0.66.
    CameraSmoke,
    /// Someone in a ride's danger zone: two detections at ≥ 0.75.
    CameraIntrusion,
    /// A lens covered: reported every 60 s for 7 minutes.
    CameraOccluded,
    /// A filling of a cylinder past its inspection date.
    FillingOverdue,
    /// A filling of a scrapped cylinder.
    FillingScrapped,
    /// A filling of another station's cylinder.
    FillingForeign,
    /// A filling of a cylinder the registry does not know.
    FillingUnregistered,
    /// A filling 6 % over the cylinder's `max_fill_kg`.
    FillingOverfill,
    /// A compressed-gas filling 12 % over the working pressure at 20 °C.
    FillingOverpressure,
    /// A filling by an operator whose certificate has expired.
    FillingUncertified,
    /// Chronic, like `DoorWear`: the drive weakens, and every trip is a
    /// little slower (speed and acceleration down to 65 % over
    /// `DRIVE_WEAR_MS`). Only `anomaly.trip_s_per_floor` can tell.
    DriveWear,
    /// The operator skips the day's trial run and check: the first run of
    /// the day carries passengers and no `daily_check` event comes.
    RideNoCheck,
    /// Chronic: a drive bearing wears, and the vibration at the main drive
    /// rises from its own level (up to ×2.5 over 30 min, below 11.2 mm/s).
    BearingWear,
    /// Chronic: the filling pump wears, and every filling takes longer per
    /// kg (up to +60 % over 3 h).
    PumpWear,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Trapped,
        FaultKind::DoorOpenMoving,
        FaultKind::Overspeed,
        FaultKind::PowerLoss,
        FaultKind::ControllerFault,
    ];

    /// Ride faults the fleet deals to amusement rides (a ropeway gets all
    /// but the first: its cabins have no restraints to forget).
    pub const RIDE: [FaultKind; 5] = [
        FaultKind::RideUnrestrained,
        FaultKind::RideWind,
        FaultKind::RideOverspeed,
        FaultKind::RideBrake,
        FaultKind::RideVibration,
    ];
    /// Camera faults; an intrusion only at a ride's platform.
    pub const CAMERA: [FaultKind; 5] = [
        FaultKind::CameraEbike,
        FaultKind::CameraFall,
        FaultKind::CameraSmoke,
        FaultKind::CameraIntrusion,
        FaultKind::CameraOccluded,
    ];
    /// Filling faults; a foreign cylinder needs a second station, an
    /// overpressure a compressed-gas station.
    pub const FILLING: [FaultKind; 7] = [
        FaultKind::FillingOverdue,
        FaultKind::FillingScrapped,
        FaultKind::FillingForeign,
        FaultKind::FillingUnregistered,
        FaultKind::FillingOverfill,
        FaultKind::FillingOverpressure,
        FaultKind::FillingUncertified,
    ];

    /// Every kind, the chronic and scenario-only ones included.
    pub const EVERY: [FaultKind; 27] = [
        FaultKind::Trapped,
        FaultKind::DoorOpenMoving,
        FaultKind::Overspeed,
        FaultKind::PowerLoss,
        FaultKind::ControllerFault,
        FaultKind::DoorWear,
        FaultKind::DriveWear,
        FaultKind::RideUnrestrained,
        FaultKind::RideWind,
        FaultKind::RideOverspeed,
        FaultKind::RideBrake,
        FaultKind::RideVibration,
        FaultKind::RideNoCheck,
        FaultKind::BearingWear,
        FaultKind::CameraEbike,
        FaultKind::CameraFall,
        FaultKind::CameraSmoke,
        FaultKind::CameraIntrusion,
        FaultKind::CameraOccluded,
        FaultKind::FillingOverdue,
        FaultKind::FillingScrapped,
        FaultKind::FillingForeign,
        FaultKind::FillingUnregistered,
        FaultKind::FillingOverfill,
        FaultKind::FillingOverpressure,
        FaultKind::FillingUncertified,
        FaultKind::PumpWear,
    ];

    /// The kind named `name` (its [`FaultKind::as_str`]).
    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::EVERY.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind of machine that can have it.
    pub fn machine(self) -> crate::MachineKind {
        use crate::MachineKind as M;
        match self {
            FaultKind::Trapped
            | FaultKind::DoorOpenMoving
            | FaultKind::Overspeed
            | FaultKind::PowerLoss
            | FaultKind::ControllerFault
            | FaultKind::DoorWear
            | FaultKind::DriveWear => M::Elevator,
            FaultKind::RideUnrestrained
            | FaultKind::RideWind
            | FaultKind::RideOverspeed
            | FaultKind::RideBrake
            | FaultKind::RideVibration
            | FaultKind::RideNoCheck
            | FaultKind::BearingWear => M::Ride,
            FaultKind::CameraEbike
            | FaultKind::CameraFall
            | FaultKind::CameraSmoke
            | FaultKind::CameraIntrusion
            | FaultKind::CameraOccluded => M::Camera,
            FaultKind::FillingOverdue
            | FaultKind::FillingScrapped
            | FaultKind::FillingForeign
            | FaultKind::FillingUnregistered
            | FaultKind::FillingOverfill
            | FaultKind::FillingOverpressure
            | FaultKind::FillingUncertified
            | FaultKind::PumpWear => M::Scale,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trapped => "trapped",
            FaultKind::DoorOpenMoving => "door_open_moving",
            FaultKind::Overspeed => "overspeed",
            FaultKind::PowerLoss => "power_loss",
            FaultKind::ControllerFault => "controller_fault",
            FaultKind::DoorWear => "door_wear",
            FaultKind::RideUnrestrained => "ride_unrestrained",
            FaultKind::RideWind => "ride_wind",
            FaultKind::RideOverspeed => "ride_overspeed",
            FaultKind::RideBrake => "ride_brake",
            FaultKind::RideVibration => "ride_vibration",
            FaultKind::CameraEbike => "camera_ebike",
            FaultKind::CameraFall => "camera_fall",
            FaultKind::CameraSmoke => "camera_smoke",
            FaultKind::CameraIntrusion => "camera_intrusion",
            FaultKind::CameraOccluded => "camera_occluded",
            FaultKind::FillingOverdue => "filling_overdue",
            FaultKind::FillingScrapped => "filling_scrapped",
            FaultKind::FillingForeign => "filling_foreign",
            FaultKind::FillingUnregistered => "filling_unregistered",
            FaultKind::FillingOverfill => "filling_overfill",
            FaultKind::FillingOverpressure => "filling_overpressure",
            FaultKind::FillingUncertified => "filling_uncertified",
            FaultKind::DriveWear => "drive_wear",
            FaultKind::RideNoCheck => "ride_no_check",
            FaultKind::BearingWear => "bearing_wear",
            FaultKind::PumpWear => "pump_wear",
        }
    }

    /// The rules.md rule this fault is meant to raise.
    pub fn rule(self) -> &'static str {
        match self {
            FaultKind::Trapped => "elevator.trapped",
            FaultKind::DoorOpenMoving => "elevator.door_open_moving",
            FaultKind::Overspeed => "elevator.overspeed",
            FaultKind::PowerLoss => "elevator.power_loss",
            FaultKind::ControllerFault => "elevator.controller_fault",
            FaultKind::DoorWear => "anomaly.door_close_s",
            FaultKind::RideUnrestrained => "ride.running_unrestrained",
            FaultKind::RideWind => "ride.wind_limit",
            FaultKind::RideOverspeed => "ride.overspeed",
            FaultKind::RideBrake => "ride.brake_fault",
            FaultKind::RideVibration => "ride.vibration_high",
            FaultKind::CameraEbike => "video.electric_bike",
            FaultKind::CameraFall => "video.person_fall",
            FaultKind::CameraSmoke => "video.smoke_fire",
            FaultKind::CameraIntrusion => "video.danger_zone",
            FaultKind::CameraOccluded => "video.camera_occluded",
            FaultKind::FillingOverdue => "filling.cylinder_overdue",
            FaultKind::FillingScrapped => "filling.cylinder_scrapped",
            FaultKind::FillingForeign => "filling.foreign_cylinder",
            FaultKind::FillingUnregistered => "filling.cylinder_unregistered",
            FaultKind::FillingOverfill => "filling.overfill",
            FaultKind::FillingOverpressure => "filling.overpressure",
            FaultKind::FillingUncertified => "filling.operator_uncertified",
            FaultKind::DriveWear => "anomaly.trip_s_per_floor",
            FaultKind::RideNoCheck => "ride.no_daily_check",
            FaultKind::BearingWear => "anomaly.vibration_mm_s",
            FaultKind::PumpWear => "anomaly.fill_s_per_kg",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a fault is due, counted from the elevator's first step.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    pub kind: FaultKind,
    pub after_ms: EpochMs,
}

/// Everything needed to build one elevator; made by the fleet generator.
#[derive(Debug, Clone)]
pub(crate) struct ElevatorSpec {
    pub device_id: String,
    /// Registered `floors: [lowest, highest]`; floor 0 does not exist.
    pub floors: (i16, i16),
    pub rated_speed_mps: f64,
    pub seed: u64,
    pub fault: Option<FaultPlan>,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    /// `acted`: the passenger already got in or out (a re-opening).
    Opening {
        until: EpochMs,
        acted: bool,
    },
    Open {
        until: EpochMs,
        action_at: EpochMs,
        acted: bool,
    },
    /// `reopen_at`: someone blocks the door then, and it opens again.
    Closing {
        until: EpochMs,
        reopen_at: Option<EpochMs>,
    },
    Travel(Trip),
    Stuck {
        button_at: EpochMs,
        rescue_at: EpochMs,
    },
    Rescue(Trip),
    PowerOut {
        until: EpochMs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Board,
    Alight,
}

#[derive(Debug, Clone, Copy)]
struct Leg {
    stop: usize,
    action: Action,
}

#[derive(Debug, Clone)]
enum FaultState {
    None,
    /// Due at this absolute time (known once the first step fixes the start).
    Planned(FaultPlan),
    /// Due and waiting for the situation it needs (an occupied trip, an idle car…).
    Armed(FaultKind),
    Active,
    /// Controller fault: the event to clear at this time.
    EventUntil(EpochMs),
    /// Door wear since this time.
    Wearing(EpochMs),
    /// Drive wear since this time.
    DriveWearing(EpochMs),
    Done,
}

/// What the supervisor sees change; a change is always reported.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    door: Door,
    direction: Direction,
    occupied: bool,
    alarm_button: bool,
    power: Power,
    door_lock: bool,
    /// Floor and levelling only count while standing (they flicker in motion).
    standing: Option<(i16, bool)>,
}

pub(crate) struct Elevator {
    stops: Vec<i16>,
    rated: f64,
    accel: f64,
    door_open_ms: EpochMs,
    door_close_ms: EpochMs,
    call_mean_ms: f64,
    reopen_chance: f64,
    rng: StdRng,

    t: Option<EpochMs>,
    phase: Phase,
    /// Stop index the car stands at, or last stood at.
    at: usize,
    /// The floor shown while stuck: the last landing passed.
    stuck_floor: usize,
    z: f64,
    v: f64,
    direction: Direction,
    door: Door,
    /// Door bypassed by the `door_open_moving` fault: the lock circuit reads closed.
    door_bypassed: bool,
    occupied: bool,
    load_pct: f32,
    run_count: u64,
    alarm_button: bool,
    power: Power,
    legs: VecDeque<Leg>,
    /// Door changes since arriving at the current stop, for the cycling guard.
    door_changes: VecDeque<EpochMs>,
    fault: FaultState,

    last_report: Option<(EpochMs, Key)>,
    /// Report this tick whatever the cadence says (fault samples).
    burst: bool,
    /// Add `run_count` and `load_pct` to the next report.
    counters: bool,
    events: Vec<Emitted>,
    edges: Vec<FaultEdge>,
}

impl Elevator {
    pub(crate) fn new(spec: &ElevatorSpec) -> Elevator {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let (lo, hi) = spec.floors;
        let mut stops: Vec<i16> = (lo..=hi).filter(|&f| f != 0).collect();
        if stops.len() < 2 {
            // A registry with a one-stop "elevator" is nonsense; keep the model sane.
            stops = vec![lo, lo.saturating_add(1)];
        }
        let rated = spec.rated_speed_mps.clamp(0.25, 10.0);
        let at = rng.gen_range(0..stops.len());
        Elevator {
            accel: 0.6 + 0.2 * (rated - 1.0).clamp(0.0, 1.5),
            door_open_ms: rng.gen_range(2000..=3000),
            door_close_ms: rng.gen_range(2500..=3500),
            call_mean_ms: rng.gen_range(40_000.0..120_000.0),
            reopen_chance: REOPEN_CHANCE,
            stops,
            rated,
            rng,
            t: None,
            phase: Phase::Idle,
            at,
            stuck_floor: at,
            z: at as f64 * FLOOR_HEIGHT_M,
            v: 0.0,
            direction: Direction::Stop,
            door: Door::Closed,
            door_bypassed: false,
            occupied: false,
            load_pct: 0.0,
            run_count: 10_000 + (spec.seed % 50_000),
            alarm_button: false,
            power: Power::Mains,
            legs: VecDeque::new(),
            door_changes: VecDeque::new(),
            fault: spec
                .fault
                .clone()
                .map_or(FaultState::None, FaultState::Planned),
            last_report: None,
            burst: false,
            counters: true,
            events: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// Advances to `now` and returns what was published meanwhile, oldest first.
    pub(crate) fn step(&mut self, now: EpochMs) -> Vec<Emitted> {
        let mut out = Vec::new();
        let Some(mut t) = self.t else {
            self.t = Some(now);
            if let FaultState::Planned(plan) = &self.fault {
                self.fault = FaultState::Planned(FaultPlan {
                    kind: plan.kind,
                    after_ms: now + plan.after_ms,
                });
            }
            self.report(now, now, &mut out);
            return out;
        };
        while t + TICK_MS <= now {
            t += TICK_MS;
            self.tick(t);
            self.report(t, now, &mut out);
        }
        self.t = Some(t);
        out
    }

    /// Fault starts and ends since the last call.
    pub(crate) fn take_fault_edges(&mut self) -> Vec<FaultEdge> {
        std::mem::take(&mut self.edges)
    }

    fn edge(&mut self, ts: EpochMs, kind: FaultKind, started: bool) {
        self.edges.push(FaultEdge { ts, kind, started });
    }

    fn tick(&mut self, t: EpochMs) {
        self.burst = false;
        self.fault_clock(t);
        self.maybe_call();
        match self.phase.clone() {
            Phase::Idle => self.idle(t),
            Phase::Opening { until, acted } => {
                if t >= until {
                    self.set_door(Door::Open, t);
                    let dwell = if acted {
                        self.rng.gen_range(2000..=4000)
                    } else {
                        self.rng.gen_range(3000..=8000)
                    };
                    self.phase = Phase::Open {
                        until: t + dwell,
                        action_at: t + 1500,
                        acted,
                    };
                }
            }
            Phase::Open {
                until,
                action_at,
                acted,
            } => {
                if !acted && t >= action_at {
                    self.act();
                    self.phase = Phase::Open {
                        until,
                        action_at,
                        acted: true,
                    };
                }
                if t >= until {
                    self.set_door(Door::Closing, t);
                    let reopen_at = self.rng.gen_bool(self.reopen_chance).then_some(t + 1000);
                    self.phase = Phase::Closing {
                        until: t + self.closing_ms(t),
                        reopen_at,
                    };
                }
            }
            Phase::Closing { until, reopen_at } => {
                // A re-opening adds 3 changes and the final close 1; within
                // the cycling limit only.
                if reopen_at.is_some_and(|at| t >= at)
                    && self.recent_door_changes(t) + 4 <= MAX_DOOR_CHANGES
                {
                    self.set_door(Door::Opening, t);
                    self.phase = Phase::Opening {
                        until: t + self.door_open_ms / 2,
                        acted: true,
                    };
                } else if t >= until {
                    self.set_door(Door::Closed, t);
                    self.legs.pop_front();
                    self.phase = Phase::Idle;
                }
            }
            Phase::Travel(trip) => self.travel(trip, t),
            Phase::Stuck {
                button_at,
                rescue_at,
            } => {
                if t >= rescue_at {
                    self.alarm_button = false;
                    let dest = self.nearest_stop();
                    self.direction = if dest as f64 * FLOOR_HEIGHT_M >= self.z {
                        Direction::Up
                    } else {
                        Direction::Down
                    };
                    self.legs.clear();
                    self.legs.push_back(Leg {
                        stop: dest,
                        action: Action::Alight,
                    });
                    let trip = Trip::new(
                        self.z,
                        dest as f64 * FLOOR_HEIGHT_M,
                        dest,
                        t,
                        RESCUE_SPEED_MPS,
                        RESCUE_SPEED_MPS,
                    );
                    self.phase = Phase::Rescue(trip);
                    self.v = 0.0;
                    self.burst = true;
                } else if t >= button_at && !self.alarm_button {
                    self.alarm_button = true;
                }
            }
            Phase::Rescue(trip) => {
                (self.z, self.v) = trip.at(t);
                if t >= trip.end {
                    self.arrive(&trip);
                    self.fault = FaultState::Done;
                    self.edge(t, FaultKind::Trapped, false);
                }
            }
            Phase::PowerOut { until } => {
                if t >= until {
                    self.power = Power::Mains;
                    self.phase = Phase::Idle;
                    self.fault = FaultState::Done;
                    self.edge(t, FaultKind::PowerLoss, false);
                }
            }
        }
    }

    /// Moves a planned fault to armed when due; runs the controller fault,
    /// which needs no particular situation.
    fn fault_clock(&mut self, t: EpochMs) {
        match self.fault {
            FaultState::Planned(ref plan) if t >= plan.after_ms => {
                let kind = plan.kind;
                if kind == FaultKind::DoorWear {
                    self.edge(t, kind, true);
                    self.fault = FaultState::Wearing(t);
                } else if kind == FaultKind::DriveWear {
                    self.edge(t, kind, true);
                    self.fault = FaultState::DriveWearing(t);
                } else if kind == FaultKind::ControllerFault {
                    let until = t + self.rng.gen_range(30_000..=60_000);
                    self.event(t, true);
                    self.edge(t, kind, true);
                    self.fault = FaultState::EventUntil(until);
                } else {
                    self.fault = FaultState::Armed(kind);
                }
            }
            FaultState::EventUntil(until) if t >= until => {
                self.event(t, false);
                self.edge(t, FaultKind::ControllerFault, false);
                self.fault = FaultState::Done;
            }
            _ => {}
        }
    }

    /// How long this closing takes: the car's own time, a tick more or less
    /// (friction, wind in the shaft; from the clock, so the model's random
    /// stream is untouched), plus the wear of a `door_wear` fault.
    fn closing_ms(&self, t: EpochMs) -> EpochMs {
        let jitter = ((t / TICK_MS) % 3 - 1) * TICK_MS;
        let wear = match self.fault {
            FaultState::Wearing(since) => {
                ((t - since) * DOOR_WEAR_EXTRA_MS / DOOR_WEAR_MS).min(DOOR_WEAR_EXTRA_MS)
            }
            _ => 0,
        };
        self.door_close_ms + jitter + wear
    }

    fn event(&mut self, ts: EpochMs, active: bool) {
        self.events.push(Emitted {
            ts,
            payload: Payload::Event(ControllerEvent {
                code: "E30".to_owned(),
                text: Some("Car position abnormal (电梯位置异常)".to_owned()),
                active,
            }),
        });
    }

    fn armed(&self) -> Option<FaultKind> {
        match self.fault {
            FaultState::Armed(kind) => Some(kind),
            _ => None,
        }
    }

    /// Passengers press call buttons now and then (a Poisson process).
    fn maybe_call(&mut self) {
        if self.legs.len() + 2 > MAX_LEGS
            || matches!(self.phase, Phase::Stuck { .. } | Phase::Rescue(_))
        {
            return;
        }
        if !self
            .rng
            .gen_bool((TICK_MS as f64 / self.call_mean_ms).min(1.0))
        {
            return;
        }
        let n = self.stops.len();
        let ground = self.ground();
        let origin = if self.rng.gen_bool(0.4) {
            ground
        } else {
            self.rng.gen_range(0..n)
        };
        let dest = if origin != ground && self.rng.gen_bool(0.6) {
            ground
        } else {
            let d = self.rng.gen_range(0..n - 1);
            if d >= origin { d + 1 } else { d }
        };
        self.legs.push_back(Leg {
            stop: origin,
            action: Action::Board,
        });
        self.legs.push_back(Leg {
            stop: dest,
            action: Action::Alight,
        });
    }

    fn ground(&self) -> usize {
        self.stops.iter().position(|&f| f == 1).unwrap_or(0)
    }

    fn idle(&mut self, t: EpochMs) {
        match self.armed() {
            Some(FaultKind::PowerLoss) if !self.occupied => {
                self.power = Power::Battery;
                let until = t + self.rng.gen_range(18_000..=25_000);
                self.phase = Phase::PowerOut { until };
                self.fault = FaultState::Active;
                self.edge(t, FaultKind::PowerLoss, true);
                return;
            }
            Some(FaultKind::Trapped | FaultKind::DoorOpenMoving | FaultKind::Overspeed)
                if self.legs.is_empty() =>
            {
                // Someone boards here for the far end of the shaft: a trip long
                // and occupied enough for any of these faults.
                let far = if self.at < self.stops.len() / 2 {
                    self.stops.len() - 1
                } else {
                    0
                };
                self.legs.push_back(Leg {
                    stop: self.at,
                    action: Action::Board,
                });
                self.legs.push_back(Leg {
                    stop: far,
                    action: Action::Alight,
                });
            }
            _ => {}
        }
        let Some(leg) = self.legs.front().copied() else {
            return;
        };
        if leg.stop == self.at {
            // A full cycle adds 4 changes.
            if self.recent_door_changes(t) + 4 <= MAX_DOOR_CHANGES {
                self.set_door(Door::Opening, t);
                self.phase = Phase::Opening {
                    until: t + self.door_open_ms,
                    acted: false,
                };
                self.counters = true;
            }
        } else {
            self.start_trip(leg.stop, t);
        }
    }

    fn start_trip(&mut self, dest: usize, t: EpochMs) {
        let z1 = dest as f64 * FLOOR_HEIGHT_M;
        let mut vmax = self.rated;
        let distance_stops = dest.abs_diff(self.at);
        let (mut door_fault, mut stuck, mut overspeed) = (false, false, false);
        match self.armed() {
            Some(FaultKind::Overspeed) => {
                let v = self.rated * OVERSPEED_FACTOR;
                // Long enough to hold the excess speed for a couple of seconds.
                if (z1 - self.z).abs() >= v * v / self.accel + 2.0 * v {
                    vmax = v;
                    overspeed = true;
                    self.fault = FaultState::Active;
                    self.edge(t, FaultKind::Overspeed, true);
                }
            }
            Some(FaultKind::DoorOpenMoving) if distance_stops >= 2 => {
                door_fault = true;
                self.fault = FaultState::Active;
            }
            Some(FaultKind::Trapped) if self.occupied => {
                stuck = true;
                self.fault = FaultState::Active;
            }
            _ => {}
        }
        let mut accel = self.accel;
        if let FaultState::DriveWearing(since) = self.fault {
            let worn = ((t - since) as f64 / DRIVE_WEAR_MS as f64).min(1.0);
            let f = 1.0 - DRIVE_WEAR_LOSS * worn;
            vmax *= f;
            accel *= f;
        }
        let mut trip = Trip::new(self.z, z1, dest, t, vmax, accel);
        trip.door_fault = door_fault;
        trip.stuck = stuck;
        trip.overspeed = overspeed;
        self.direction = if trip.up() {
            Direction::Up
        } else {
            Direction::Down
        };
        self.run_count += 1;
        self.phase = Phase::Travel(trip);
        self.v = 0.0;
    }

    fn travel(&mut self, trip: Trip, t: EpochMs) {
        (self.z, self.v) = trip.at(t);
        let e_ms = t - trip.t0;
        if trip.door_fault {
            // Leaving the landing with the door opening (bypassed lock): the
            // car is past the door zone from 0.75 s on, and still short of
            // the next one at 2.5 s even at the steepest acceleration.
            if (750..=2000).contains(&e_ms) {
                if self.door != Door::Opening {
                    self.edge(t, FaultKind::DoorOpenMoving, true);
                }
                self.door_bypassed = true;
                self.set_door(Door::Opening, t);
                self.burst = true;
            } else if (2001..=2500).contains(&e_ms) {
                self.set_door(Door::Closing, t);
                self.burst = true;
            } else if e_ms > 2500 && self.door != Door::Closed {
                self.set_door(Door::Closed, t);
                self.door_bypassed = false;
                self.burst = true;
                self.fault = FaultState::Done;
                self.edge(t, FaultKind::DoorOpenMoving, false);
            }
        }
        if trip.overspeed && self.v > self.rated {
            self.burst = true;
        }
        if trip.stuck {
            let e = trip.elapsed(t);
            let off_level = (self.z / FLOOR_HEIGHT_M - (self.z / FLOOR_HEIGHT_M).round()).abs()
                * FLOOR_HEIGHT_M;
            if e >= 0.3 * trip.total_s() && e + 0.5 < trip.total_s() && off_level >= 0.5 {
                self.stuck_floor = self.floor_index();
                self.v = 0.0;
                self.direction = Direction::Stop;
                let button_at = t + self.rng.gen_range(18_000..=25_000);
                let rescue_at = t + self.rng.gen_range(90_000..=120_000);
                self.phase = Phase::Stuck {
                    button_at,
                    rescue_at,
                };
                self.burst = true;
                self.edge(t, FaultKind::Trapped, true);
                return;
            }
        }
        if t >= trip.end {
            if trip.overspeed {
                self.fault = FaultState::Done;
                self.edge(t, FaultKind::Overspeed, false);
            }
            if trip.stuck {
                // No spot between floors on this trip: wait for the next one.
                self.fault = FaultState::Armed(FaultKind::Trapped);
            }
            self.arrive(&trip);
        }
    }

    fn arrive(&mut self, trip: &Trip) {
        self.at = trip.dest;
        self.z = trip.z1;
        self.v = 0.0;
        self.direction = Direction::Stop;
        self.door_changes.clear();
        self.phase = Phase::Idle;
    }

    /// Boarding or alighting at the front leg's stop.
    fn act(&mut self) {
        match self.legs.front().map(|l| l.action) {
            Some(Action::Board) => {
                self.occupied = true;
                self.load_pct = self.rng.gen_range(8..=70) as f32;
            }
            Some(Action::Alight) | None => {
                self.occupied = false;
                self.load_pct = 0.0;
            }
        }
        self.counters = true;
    }

    fn recent_door_changes(&self, t: EpochMs) -> usize {
        self.door_changes
            .iter()
            .filter(|&&c| c > t - DOOR_WINDOW_MS)
            .count()
    }

    fn set_door(&mut self, door: Door, t: EpochMs) {
        if door != self.door {
            self.door = door;
            self.door_changes.push_back(t);
            while self.door_changes.len() > 64 {
                self.door_changes.pop_front();
            }
        }
    }

    fn nearest_stop(&self) -> usize {
        ((self.z / FLOOR_HEIGHT_M).round().max(0.0) as usize).min(self.stops.len() - 1)
    }

    /// The floor a terminal shows: the last landing passed while moving (so
    /// the top floor appears only on arrival), the nearest one otherwise.
    fn floor_index(&self) -> usize {
        let f = self.z / FLOOR_HEIGHT_M;
        let last = self.stops.len() - 1;
        match &self.phase {
            Phase::Stuck { .. } => self.stuck_floor,
            // Creeping to the landing it shows.
            Phase::Rescue(trip) => trip.dest,
            Phase::Travel(trip) => {
                if trip.up() {
                    ((f + 1e-9).floor().max(0.0) as usize).min(trip.dest.saturating_sub(1))
                } else {
                    ((f - 1e-9).ceil().max(0.0) as usize)
                        .max(trip.dest + 1)
                        .min(last)
                }
            }
            _ => self.nearest_stop(),
        }
    }

    fn moving(&self) -> bool {
        matches!(self.phase, Phase::Travel(_) | Phase::Rescue(_))
    }

    /// What the car's controller shows right now.
    pub(crate) fn observe(&self) -> ElevatorSample {
        let off_level =
            (self.z / FLOOR_HEIGHT_M - (self.z / FLOOR_HEIGHT_M).round()).abs() * FLOOR_HEIGHT_M;
        let speed = if self.moving() {
            ((self.v * 100.0).round() / 100.0).max(0.01)
        } else {
            0.0
        };
        ElevatorSample {
            floor: self.stops[self.floor_index()],
            direction: self.direction,
            speed_mps: speed as f32,
            door: self.door,
            leveled: off_level <= DOOR_ZONE_M,
            occupied: self.occupied,
            mode: ElevatorMode::Normal,
            safety_circuit: true,
            door_lock: self.door == Door::Closed || self.door_bypassed,
            alarm_button: self.alarm_button,
            power: self.power,
            limit: Limit::None,
            run_count: self.counters.then_some(self.run_count),
            load_pct: self.counters.then_some(self.load_pct),
        }
    }

    fn report(&mut self, t: EpochMs, now: EpochMs, out: &mut Vec<Emitted>) {
        out.append(&mut self.events);
        let sample = self.observe();
        let key = Key {
            door: sample.door,
            direction: sample.direction,
            occupied: sample.occupied,
            alarm_button: sample.alarm_button,
            power: sample.power,
            door_lock: sample.door_lock,
            standing: (!self.moving()).then_some((sample.floor, sample.leveled)),
        };
        let due = match &self.last_report {
            None => true,
            Some((last_t, last_key)) => {
                let since = t - last_t;
                let busy = self.moving()
                    || matches!(self.door, Door::Opening | Door::Closing)
                    || self.power != Power::Mains;
                let stuck = matches!(self.phase, Phase::Stuck { .. });
                self.burst
                    || *last_key != key
                    || (busy && since >= MOVING_REPORT_MS)
                    || (stuck && since >= STUCK_REPORT_MS)
                    || since >= IDLE_REPORT_MS
            }
        };
        if due && t >= now - MAX_BACKLOG_MS {
            self.last_report = Some((t, key));
            self.counters = false;
            out.push(Emitted {
                ts: t,
                payload: Payload::Elevator(sample),
            });
        }
    }
}
