//! `ride.no_daily_check`: a large amusement ride or passenger ropeway must
//! make a trial run and a safety check before it carries passengers each
//! day (Special Equipment Safety Law Art. 43).
//!
//! The record of the check is an `event` with code `daily_check`
//! (`active: true`) from any device of the ride: the operator confirms the
//! check on the controller or its console. Without one, the ride's own
//! samples are the record, as inference: a run that reports
//! `passengers: 0` is the trial run. The first run of a local day that
//! carries passengers before either raises the alarm (once a day), and so
//! does, for a ride whose registry `params.daily_check` is `"event"`
//! (it records its checks), any run after the day's first (the trial) while
//! no check event has come, whether or not it reports passengers. The
//! alarm ends at the next local midnight. Samples without `passengers` of
//! other rides cannot tell a trial from a passenger run and are not judged.

use serde_json::{Value, json};
use vigil_model::reading::{DAILY_CHECK_CODE, RideState};
use vigil_model::{EpochMs, Payload, Severity, Stream};

use super::{Cx, DevCx, Family, Hooks, Msg, Sparse, Streams, rules};
use crate::catalogue::{Clear, Decl, RIDE_CATEGORIES};

rules! {
    pub(crate) enum Rule {
        NoDailyCheck = Decl {
            id: "ride.no_daily_check",
            severity: Severity::Major,
            description: "A ride carries passengers on a local day before its daily check: no `daily_check` event and no trial run (a run reporting 0 passengers) before a run with passengers, or (registry daily_check = \"event\") before its second run.",
            basis: "Special Equipment Safety Law Art. 43: trial run and check before daily use",
            clear_s: Clear::None,
            categories: Some(RIDE_CATEGORIES),
            ..Decl::BASE
        },
    }
}

const DAY_MS: EpochMs = 86_400_000;

/// The daily checks of each ride, by equipment.
#[derive(Default)]
pub(crate) struct Daily {
    equipment: Sparse<DailyCheck>,
}

/// One local day of one ride.
#[derive(Debug, Clone, Copy, Default)]
struct DailyCheck {
    day: i64,
    /// A check event, or a trial run, today.
    checked: bool,
    /// Runs started today, and whether the last sample was running.
    runs: u32,
    running: bool,
    /// Raised (or resolved) today already: once a day is enough.
    judged: bool,
}

fn day_of(t: EpochMs, offset_ms: EpochMs) -> i64 {
    (t + offset_ms).div_euclid(DAY_MS)
}

impl Family for Daily {
    fn name(&self) -> &'static str {
        "daily"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            message: Streams::of(&[Stream::Ride, Stream::Event]),
            equipment_tick: true,
            ..Hooks::NONE
        }
    }

    /// A ride sample or event at its device time.
    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let check_event =
            matches!(msg.payload, Payload::Event(ev) if ev.code == DAILY_CHECK_CODE && ev.active);
        if !matches!(msg.payload, Payload::Ride(_)) && !check_event {
            return;
        }
        let (rule, ts, offset_ms) = (Rule::NoDailyCheck, msg.ts, cx.local_offset_ms);
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            cx.clear(rule, ts);
            return;
        }
        let day = day_of(ts, offset_ms);
        match self.equipment.get(&cx.eq.ix()) {
            Some(d) if d.day > day => return, // a late message of an earlier day
            Some(d) if d.day == day => {}
            _ => {
                // A new day: yesterday's alarm ends at midnight.
                cx.clear(rule, day * DAY_MS - offset_ms);
                self.equipment.insert(
                    cx.eq.ix(),
                    DailyCheck {
                        day,
                        ..DailyCheck::default()
                    },
                );
            }
        }
        let by_event = cx.eq.registry.get("daily_check").and_then(Value::as_str) == Some("event");
        let Some(d) = self.equipment.get_mut(&cx.eq.ix()) else {
            return;
        };
        let Payload::Ride(sample) = msg.payload else {
            // The check event: the day is checked from now on.
            d.checked = true;
            return;
        };
        let running = sample.state == RideState::Running;
        if running && !d.running {
            d.runs += 1;
        }
        d.running = running;
        if !running {
            return;
        }
        if sample.passengers == Some(0) && !d.checked {
            d.checked = true;
            return;
        }
        let carries = sample.passengers.is_some_and(|n| n > 0);
        // Recorded by event: the day's first run is the trial itself.
        let unchecked_run = by_event && d.runs >= 2;
        if d.checked || d.judged || !(carries || unchecked_run) {
            return;
        }
        d.judged = true;
        let details = json!({
            "passengers": sample.passengers,
            "run": d.runs,
            "day_start": day * DAY_MS - offset_ms,
            "trial_run": false,
            "check_event": false,
        });
        cx.fire(rule, p.severity, ts, details);
    }

    /// The wall clock: an alarm of an earlier local day ends at midnight
    /// even when the ride sends nothing more.
    fn on_equipment_tick(&mut self, cx: &mut Cx<'_>) {
        let today = day_of(cx.now, cx.local_offset_ms);
        let rule = Rule::NoDailyCheck;
        // The open-alarm bit first: most equipment has none, and the table
        // probe is a cache miss.
        if cx.is_open(rule)
            && self
                .equipment
                .get(&cx.eq.ix())
                .is_some_and(|d| d.day < today)
        {
            cx.clear(rule, today * DAY_MS - cx.local_offset_ms);
        }
    }
}
