//! `ride.no_daily_check`: a large amusement ride or passenger ropeway must
//! make a trial run before it carries passengers each day (Special
//! Equipment Safety Law Art. 43). The registry keeps no daily-check
//! records, so the ride's own samples are the record: a run that reports
//! `passengers: 0` is the trial run, and the first run of a local day that
//! reports passengers before any trial run raises the alarm (once a day).
//! It ends at the next local midnight. Samples without `passengers` cannot
//! tell a trial from a passenger run and are not judged.

use serde_json::json;
use vigil_model::reading::RideState;
use vigil_model::{EpochMs, Payload, Severity};

use super::{Cx, DevCx, Family, Msg, Sparse, rules};
use crate::catalogue::{Clear, Decl, RIDE_CATEGORIES};

rules! {
    pub(crate) enum Rule {
        NoDailyCheck = Decl {
            id: "ride.no_daily_check",
            severity: Severity::Major,
            description: "A ride runs with passengers on a local day before any trial run (a run reporting 0 passengers).",
            basis: "Special Equipment Safety Law Art. 43: trial run and check before daily use",
            clear_s: Clear::None,
            categories: Some(RIDE_CATEGORIES),
            ..Decl::BASE
        },
    }
}

const DAY_MS: EpochMs = 86_400_000;

/// The trial runs of each ride, by equipment.
#[derive(Default)]
pub(crate) struct Daily {
    equipment: Sparse<DailyCheck>,
}

/// One local day of one ride.
#[derive(Debug, Clone, Copy, Default)]
struct DailyCheck {
    day: i64,
    trial_done: bool,
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

    /// A ride sample at its device time.
    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let Payload::Ride(sample) = msg.payload else {
            return;
        };
        let (rule, ts, offset_ms) = (Rule::NoDailyCheck, msg.ts, cx.local_offset_ms);
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            cx.clear(rule, ts);
            return;
        }
        let day = day_of(ts, offset_ms);
        match self.equipment.get(&cx.eq.ix) {
            Some(d) if d.day > day => return, // a late sample of an earlier day
            Some(d) if d.day == day => {}
            _ => {
                // A new day: yesterday's alarm ends at midnight.
                cx.clear(rule, day * DAY_MS - offset_ms);
                self.equipment.insert(
                    cx.eq.ix,
                    DailyCheck {
                        day,
                        ..DailyCheck::default()
                    },
                );
            }
        }
        let Some(d) = self.equipment.get_mut(&cx.eq.ix) else {
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
                cx.fire(rule, p.severity, ts, details);
            }
            _ => {}
        }
    }

    /// The wall clock: an alarm of an earlier local day ends at midnight
    /// even when the ride sends nothing more.
    fn on_equipment_tick(&mut self, cx: &mut Cx<'_>) {
        let today = day_of(cx.now, cx.local_offset_ms);
        let rule = Rule::NoDailyCheck;
        if self.equipment.get(&cx.eq.ix).is_some_and(|d| d.day < today) && cx.is_open(rule) {
            cx.clear(rule, today * DAY_MS - cx.local_offset_ms);
        }
    }
}
