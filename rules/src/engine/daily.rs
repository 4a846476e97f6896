//! `ride.no_daily_check`: a large amusement ride or passenger ropeway must
//! make a trial run before it carries passengers each day (Special
//! Equipment Safety Law Art. 43). The registry keeps no daily-check
//! records, so the ride's own samples are the record: a run that reports
//! `passengers: 0` is the trial run, and the first run of a local day that
//! reports passengers before any trial run raises the alarm (once a day).
//! It ends at the next local midnight. Samples without `passengers` cannot
//! tell a trial from a passenger run and are not judged.

use std::sync::Arc;

use serde_json::json;
use vigil_model::reading::{RideSample, RideState};
use vigil_model::{Alarm, DeviceId, EpochMs};

use super::state::{Book, EquipmentState};
use crate::catalogue::Rule;

const DAY_MS: EpochMs = 86_400_000;

/// One local day of one ride.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DailyCheck {
    day: i64,
    trial_done: bool,
    /// Raised (or resolved) today already: once a day is enough.
    judged: bool,
}

fn day_of(t: EpochMs, offset_ms: EpochMs) -> i64 {
    (t + offset_ms).div_euclid(DAY_MS)
}

/// A ride sample at device time `ts`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_sample(
    book: &mut Book,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    sample: &RideSample,
    ts: EpochMs,
    offset_ms: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::RideNoDailyCheck;
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        book.clear(eq, rule, ts, out);
        return;
    }
    let day = day_of(ts, offset_ms);
    match eq.daily {
        Some(d) if d.day > day => return, // a late sample of an earlier day
        Some(d) if d.day == day => {}
        _ => {
            // A new day: yesterday's alarm ends at midnight.
            book.clear(eq, rule, day * DAY_MS - offset_ms, out);
            eq.daily = Some(DailyCheck {
                day,
                ..DailyCheck::default()
            });
        }
    }
    let Some(d) = eq.daily.as_mut() else {
        return;
    };
    if sample.state != RideState::Running {
        return;
    }
    match sample.passengers {
        Some(0) => d.trial_done = true,
        Some(n) if !d.trial_done && !d.judged => {
            d.judged = true;
            let details = json!({
                "passengers": n,
                "day_start": day * DAY_MS - offset_ms,
                "trial_run": false,
            });
            book.fire(eq, rule, p.severity, dev_id, ts, details, false, out);
        }
        _ => {}
    }
}

/// The wall clock: an alarm of an earlier local day ends at midnight even
/// when the ride sends nothing more.
pub(crate) fn tick(
    book: &mut Book,
    eq: &mut EquipmentState,
    now: EpochMs,
    offset_ms: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let today = day_of(now, offset_ms);
    if eq.daily.is_some_and(|d| d.day < today) && eq.slot(Rule::RideNoDailyCheck).is_some() {
        book.clear(eq, Rule::RideNoDailyCheck, today * DAY_MS - offset_ms, out);
    }
}
