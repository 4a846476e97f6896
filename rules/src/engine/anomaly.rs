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

use std::sync::Arc;

use serde_json::json;
use vigil_model::reading::{
    Direction, Door, ElevatorSample, FillResult, FillingRecord, RideSample,
};
use vigil_model::{Alarm, DeviceId, EpochMs};

use super::state::{Book, DeviceState, EquipmentState};
use crate::anomaly::{AnomalyParams, Detector, Verdict};
use crate::catalogue::Rule;

/// Closing times outside this range are not a door motor's work (a door
/// held, a sample lost) and are not learned.
const DOOR_CLOSE_MS: std::ops::RangeInclusive<EpochMs> = 500..=30_000;

/// One metric of one device.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    detector: Detector,
    /// This device holds the rule's alarm.
    flagged: bool,
}

/// The anomaly state of one device.
#[derive(Debug, Default)]
pub(crate) struct AnomalyDevice {
    door_close: Watch,
    /// When the door began its current closing, if it is closing.
    closing_since: Option<EpochMs>,
    vibration: Watch,
    trip: Watch,
    /// When and where the current trip began, if the car is travelling.
    trip_start: Option<(EpochMs, i16)>,
    fill: Watch,
}

/// Trips outside this time per floor are not a drive's work (a stop
/// between floors, a lost sample) and are not learned.
const TRIP_MS_PER_FLOOR: std::ops::RangeInclusive<EpochMs> = 500..=60_000;

/// An elevator sample: measures a finished door closing.
pub(crate) fn on_elevator(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    sample: &ElevatorSample,
    ts: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let a = &mut dev.anomaly;
    let finished = match sample.door {
        Door::Closing => {
            a.closing_since.get_or_insert(ts);
            None
        }
        Door::Closed => a.closing_since.take().map(|start| ts - start),
        Door::Open | Door::Opening => {
            a.closing_since = None;
            None
        }
    };
    // A trip: from leaving a floor to standing at one again.
    let moving = sample.direction != Direction::Stop;
    let trip = match (a.trip_start, moving) {
        (None, true) => {
            a.trip_start = Some((ts, sample.floor));
            None
        }
        (Some((start, from)), false) if sample.leveled => {
            a.trip_start = None;
            // Widened first: floors are any i16 a device sends, and
            // 32767 - (-32768) does not fit one.
            let floors = (i64::from(sample.floor) - i64::from(from)).abs().max(1);
            Some((ts - start) / floors)
        }
        _ => None,
    };
    if let Some(ms) = trip.filter(|ms| TRIP_MS_PER_FLOOR.contains(ms)) {
        observe(
            book,
            dev_id,
            eq,
            &mut a.trip,
            Rule::AnomalyTrip,
            ms as f64 / 1000.0,
            ts,
            out,
        );
    }
    if let Some(ms) = finished.filter(|ms| DOOR_CLOSE_MS.contains(ms)) {
        observe(
            book,
            dev_id,
            eq,
            &mut a.door_close,
            Rule::AnomalyDoorClose,
            ms as f64 / 1000.0,
            ts,
            out,
        );
    }
}

/// A ride sample: its vibration, when it reports one.
pub(crate) fn on_ride(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    sample: &RideSample,
    ts: EpochMs,
    out: &mut Vec<Alarm>,
) {
    if let Some(v) = sample.vibration_mm_s {
        observe(
            book,
            dev_id,
            eq,
            &mut dev.anomaly.vibration,
            Rule::AnomalyVibration,
            f64::from(v),
            ts,
            out,
        );
    }
}

/// A filling record: its seconds per kg, when complete and at least 1 kg.
pub(crate) fn on_filling(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    record: &FillingRecord,
    ts: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let ms = ts - record.started_ms;
    if record.result != FillResult::Ok || record.net_kg < 1.0 || !(1_000..=3_600_000).contains(&ms)
    {
        return;
    }
    let per_kg = ms as f64 / 1000.0 / f64::from(record.net_kg);
    observe(
        book,
        dev_id,
        eq,
        &mut dev.anomaly.fill,
        Rule::AnomalyFill,
        per_kg,
        ts,
        out,
    );
}

#[allow(clippy::too_many_arguments)]
fn observe(
    book: &mut Book,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    watch: &mut Watch,
    rule: Rule,
    value: f64,
    ts: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        if watch.flagged {
            watch.flagged = false;
            book.release(eq, rule, dev_id, ts, out);
        }
        return;
    }
    let tuning = AnomalyParams {
        warmup: p.warmup,
        threshold: p.threshold,
        ..AnomalyParams::default()
    };
    match watch.detector.observe(value, &tuning) {
        Verdict::Anomalous {
            score,
            recent,
            baseline,
            deviation,
        } if !watch.flagged => {
            watch.flagged = true;
            let details = json!({
                "metric": &rule.id()["anomaly.".len()..],
                "recent": round3(recent),
                "normal": round3(baseline),
                "deviation": round3(deviation),
                "score": round3(score),
            });
            book.fire(eq, rule, p.severity, dev_id, ts, details, true, out);
        }
        Verdict::Normal { score } if score < 0.75 * p.threshold => {
            if watch.flagged {
                watch.flagged = false;
                book.release(eq, rule, dev_id, ts, out);
            } else if eq.slot(rule).is_some_and(|s| s.holders.is_empty()) {
                // Restored after a restart and nobody holds it: the
                // warmed-up detector finds the metric normal again.
                book.clear(eq, rule, ts, out);
            }
        }
        _ => {}
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
