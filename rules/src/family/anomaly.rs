//! Anomaly rules: per device, a metric is taken from its samples and fed to
//! a detector (`crate::anomaly`) that learns the device's own normal.
//!
//! - `anomaly.door_close_s`: how long the car door takes from `closing` to
//!   `closed` (a re-opening interrupts the measurement). A wearing door
//!   motor closes slower and slower.
//! - `anomaly.vibration_mm_s`: every ride sample's `vibration_mm_s`.
//! - `anomaly.trip_s_per_floor`: an elevator trip's time, from the first
//!   sample that leaves a floor to the next standing at a floor, per floor
//!   travelled. A tiring drive or a dragging brake makes every trip slower.
//! - `anomaly.fill_s_per_kg`: a filling record's `ts - started_ms` per kg
//!   of `net_kg` (completed fillings of at least 1 kg only): a failing pump
//!   or a leaking line fills slower.
//!
//! The alarm is raised when the detector says anomalous (never while it
//! warms up), and clears once the recent mean is back within three quarters
//! of the threshold, so a metric hovering at the limit does not flap. The
//! detectors live in memory: after a restart they warm up again, and an
//! open anomaly alarm clears only when a warmed-up detector finds the
//! metric normal.

use serde_json::json;
use vigil_model::reading::{Direction, Door, FillResult};
use vigil_model::{DeviceId, EpochMs, Payload, Severity, Stream};

use super::elevator::round3;
use super::{Cx, Dense, DevCx, DevIx, Family, Hooks, Msg, Sparse, Streams, rules};
use crate::anomaly::{AnomalyParams, Detector, Verdict};
use crate::catalogue::{Clear, Decl, Kind, Lit, Num, Param, RIDE_CATEGORIES, Whole};

const BASIS: &str = "rules.md anomaly detection (EWMA baseline and deviation)";
const TUNING: &[Param] = &[
    Param::new(
        "threshold",
        Kind::Positive,
        Lit::Num(AnomalyParams::DEFAULT.threshold),
        "baseline deviations the recent mean may move before the alarm",
    ),
    Param::new(
        "warmup",
        Kind::Whole,
        Lit::Whole(AnomalyParams::DEFAULT.warmup),
        "values learned before any verdict (no alarm while warming up)",
    ),
];
/// Every anomaly rule is minor, has [`TUNING`] and clears on its own.
const ANOMALY: Decl = Decl {
    severity: Severity::Minor,
    basis: BASIS,
    clear_s: Clear::None,
    params: TUNING,
    ..Decl::BASE
};

rules! {
    /// The anomaly rules, one per metric.
    pub(crate) enum Rule {
        DoorClose = Decl {
            id: "anomaly.door_close_s",
            description: "The car door's closing time drifts from this elevator's own learned normal (a wearing door motor).",
            // Car doors are elevators'.
            categories: Some(&["elevator"]),
            ..ANOMALY
        },
        Vibration = Decl {
            id: "anomaly.vibration_mm_s",
            description: "Drive vibration drifts above or below this ride's own learned normal.",
            // Drive vibration is measured on rides.
            categories: Some(RIDE_CATEGORIES),
            ..ANOMALY
        },
        Trip = Decl {
            id: "anomaly.trip_s_per_floor",
            description: "An elevator's trip time per floor drifts from its own learned normal (drive, brake or load trouble).",
            categories: Some(&["elevator"]),
            ..ANOMALY
        },
        Fill = Decl {
            id: "anomaly.fill_s_per_kg",
            description: "A filling scale's seconds per kg filled drift from the station's own learned normal.",
            categories: Some(&["filling_station"]),
            ..ANOMALY
        },
    }
}

const THRESHOLD: Num = Num::of(&ANOMALY, "threshold");
const WARMUP: Whole = Whole::of(&ANOMALY, "warmup");

/// Closing times outside this range are not a door motor's work (a door
/// held, a sample lost) and are not learned.
const DOOR_CLOSE_MS: std::ops::RangeInclusive<EpochMs> = 500..=30_000;

/// Trips outside this time per floor are not a drive's work (a stop
/// between floors, a lost sample) and are not learned.
const TRIP_MS_PER_FLOOR: std::ops::RangeInclusive<EpochMs> = 500..=60_000;

/// The detectors of every device: an elevator's two metrics by device,
/// the ride's and the scale's (few devices feed them) apart, so that no
/// device keeps detectors for metrics it never sends.
#[derive(Default)]
pub(crate) struct Anomaly {
    devices: Dense<AnomalyDevice>,
    vibration: Sparse<Watch>,
    fill: Sparse<Watch>,
}

/// One metric of one device.
#[derive(Debug, Default)]
struct Watch {
    detector: Detector,
    /// This device holds the rule's alarm.
    flagged: bool,
}

/// The elevator anomaly state of one device: kept for every device, so
/// its flags share one word rather than each detector and `Option`
/// padding its own (120 bytes as two [`Watch`]es and two `Option`s).
#[derive(Debug, Default)]
struct AnomalyDevice {
    door_close: Detector,
    trip: Detector,
    /// This device holds the door-closing (the trip) alarm.
    door_close_flagged: bool,
    trip_flagged: bool,
    /// The door is closing, since `closing_since`.
    closing: bool,
    closing_since: EpochMs,
    /// The car is travelling, since `trip_since` from `trip_from`.
    travelling: bool,
    trip_from: i16,
    trip_since: EpochMs,
}

impl Family for Anomaly {
    fn name(&self) -> &'static str {
        "anomaly"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            message: Streams::of(&[Stream::Elevator, Stream::Ride, Stream::Filling]),
            ..Hooks::NONE
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let ts = msg.ts;
        match msg.payload {
            // An elevator sample: a finished door closing, a finished trip.
            Payload::Elevator(sample) => {
                let a = self.devices.at(cx.ix);
                let finished = match sample.door {
                    Door::Closing => {
                        if !a.closing {
                            a.closing = true;
                            a.closing_since = ts;
                        }
                        None
                    }
                    Door::Closed => std::mem::take(&mut a.closing).then(|| ts - a.closing_since),
                    Door::Open | Door::Opening => {
                        a.closing = false;
                        None
                    }
                };
                // A trip: from leaving a floor to standing at one again.
                let moving = sample.direction != Direction::Stop;
                let start = a.travelling.then_some((a.trip_since, a.trip_from));
                let trip = match (start, moving) {
                    (None, true) => {
                        a.travelling = true;
                        (a.trip_since, a.trip_from) = (ts, sample.floor);
                        None
                    }
                    (Some((start, from)), false) if sample.leveled => {
                        a.travelling = false;
                        // Widened first: floors are any i16 a device sends,
                        // and 32767 - (-32768) does not fit one.
                        let floors = (i64::from(sample.floor) - i64::from(from)).abs().max(1);
                        Some((ts - start) / floors)
                    }
                    _ => None,
                };
                if let Some(ms) = trip.filter(|ms| TRIP_MS_PER_FLOOR.contains(ms)) {
                    self.observe(cx, Rule::Trip, ms as f64 / 1000.0, ts);
                }
                if let Some(ms) = finished.filter(|ms| DOOR_CLOSE_MS.contains(ms)) {
                    self.observe(cx, Rule::DoorClose, ms as f64 / 1000.0, ts);
                }
            }
            // A ride sample: its vibration, when it reports one.
            Payload::Ride(sample) => {
                if let Some(v) = sample.vibration_mm_s {
                    self.observe(cx, Rule::Vibration, f64::from(v), ts);
                }
            }
            // A filling record: its seconds per kg, when complete and at
            // least 1 kg.
            Payload::Filling(record) => {
                let ms = ts - record.started_ms;
                if record.result != FillResult::Ok
                    || record.net_kg < 1.0
                    || !(1_000..=3_600_000).contains(&ms)
                {
                    return;
                }
                let per_kg = ms as f64 / 1000.0 / f64::from(record.net_kg);
                self.observe(cx, Rule::Fill, per_kg, ts);
            }
            Payload::Event(_) | Payload::Video(_) => {}
        }
    }

    fn on_release(&mut self, _cx: &mut Cx<'_>, dev: DevIx, _id: &DeviceId, _at: EpochMs) {
        self.devices.reset(dev);
        self.vibration.remove(&dev);
        self.fill.remove(&dev);
    }
}

impl Anomaly {
    fn observe(&mut self, cx: &mut DevCx<'_>, rule: Rule, value: f64, ts: EpochMs) {
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        let (detector, flagged) = match rule {
            Rule::DoorClose => {
                let a = self.devices.at(cx.ix);
                (&mut a.door_close, &mut a.door_close_flagged)
            }
            Rule::Trip => {
                let a = self.devices.at(cx.ix);
                (&mut a.trip, &mut a.trip_flagged)
            }
            Rule::Vibration => {
                let w = self.vibration.entry(cx.ix).or_default();
                (&mut w.detector, &mut w.flagged)
            }
            Rule::Fill => {
                let w = self.fill.entry(cx.ix).or_default();
                (&mut w.detector, &mut w.flagged)
            }
        };
        if !p.enabled {
            if *flagged {
                *flagged = false;
                cx.release_mine(rule, ts);
            }
            return;
        }
        let params = AnomalyParams {
            warmup: p.whole(WARMUP),
            threshold: p.num(THRESHOLD),
            ..AnomalyParams::DEFAULT
        };
        match detector.observe(value, &params) {
            Verdict::Anomalous {
                score,
                recent,
                baseline,
                deviation,
            } if !*flagged => {
                *flagged = true;
                let details = json!({
                    "metric": &rule.decl().id["anomaly.".len()..],
                    "recent": round3(recent),
                    "normal": round3(baseline),
                    "deviation": round3(deviation),
                    "score": round3(score),
                });
                cx.hold(rule, p.severity, ts, details);
            }
            Verdict::Normal { score } if score < 0.75 * p.num(THRESHOLD) => {
                if *flagged {
                    *flagged = false;
                    cx.release_mine(rule, ts);
                } else if cx.slot(rule).is_some_and(|s| s.holders.is_empty()) {
                    // Restored after a restart and nobody holds it: the
                    // warmed-up detector finds the metric normal again.
                    cx.clear(rule, ts);
                }
            }
            _ => {}
        }
    }
}
