//! `elevator.frequent_faults`: repeat faults on one piece of equipment, on
//! its device clock. The occurrences are the raises and repeats of the
//! rules declared `counts_as_fault` (major or critical at that moment),
//! recorded by their families in the equipment's fault log.

use serde_json::{Map, Value, json};
use vigil_model::{Alarm, EpochMs, Severity};

use super::{Cx, Dense, DevCx, Family, Hooks, Local, Msg, Streams, rules};
use crate::catalogue::{Decl, Key, Kind, Lit, Ms, Param, Period, Whole};
use crate::engine::state::{Occurrence, Step, Tracker};

rules! {
    pub(crate) enum Rule {
        FrequentFaults = Decl {
            id: "elevator.frequent_faults",
            severity: Severity::Major,
            description: "At least `count` critical or major alarm occurrences on one elevator within window_h.",
            basis: "practice (repeat-fault elevators)",
            for_s: Some(Period::of(0.0)),
            params: &[
                Param::new(
                    "count",
                    Kind::Whole,
                    Lit::Whole(3),
                    "critical/major occurrences within the window that raise the alarm",
                ),
                Param::new("window_h", Kind::Hours, Lit::Num(24.0), "trailing window, hours"),
            ],
            ..Decl::BASE
        },
    }
}

const COUNT: Whole = Whole::of(Rule::FrequentFaults.decl(), "count");
const WINDOW: Ms = Ms::of(Rule::FrequentFaults.decl(), "window_h");

/// The condition of each equipment.
#[derive(Default)]
pub(crate) struct Frequent {
    equipment: Dense<Tracker>,
}

impl Family for Frequent {
    fn name(&self) -> &'static str {
        "frequent"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            message: Streams::ALL,
            equipment_tick: true,
            ..Hooks::NONE
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, _msg: &Msg<'_>) {
        if let Some(clock) = cx.eq.clock() {
            self.evaluate(cx, clock);
        }
    }

    fn on_equipment_tick(&mut self, cx: &mut Cx<'_>) {
        if let Some(clock) = cx.eq.clock() {
            self.evaluate(cx, clock);
        }
    }

    fn on_resolve(&mut self, cx: &mut Cx<'_>, _rule: Local, _alarm: &Alarm) {
        // Fires again only after a new occurrence.
        cx.eq.faults(|faults| faults.quiet = true);
    }

    /// The raises and repeats of a stored alarm that counts as a fault,
    /// within the trailing window at `now`: after a restart the window
    /// goes on where it was.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        if !crate::catalogue::decl(key).is_some_and(|d| d.counts_as_fault) {
            return;
        }
        let Some(latest) = versions.last() else {
            return;
        };
        let cutoff = cx.now - cx.tuning().of(Rule::FrequentFaults).ms(WINDOW);
        cx.eq.faults(|faults| {
            let before = faults.history.len();
            for (at, severity) in occurrences(versions) {
                if severity >= Severity::Major && at > cutoff {
                    faults.history.push(Occurrence { at, key });
                }
            }
            if faults.history.len() > before {
                faults.device = latest.device_id.clone().or(faults.device.take());
            }
        });
    }
}

impl Frequent {
    /// The number of critical/major occurrences in the trailing window at
    /// the equipment's device time `t`.
    fn evaluate(&mut self, cx: &mut Cx<'_>, t: EpochMs) {
        let rule = Rule::FrequentFaults;
        let ix = cx.eq.ix();
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        // Too few occurrences, no alarm and no period running: time alone
        // only drops occurrences, so nothing can change until the next one
        // (their window is pruned then). The tracker last: the equipment's
        // own record is already at hand.
        if cx.eq.fault_count() < p.whole(COUNT) as usize
            && !cx.is_open(rule)
            && !self
                .equipment
                .get(ix)
                .is_some_and(|tr| tr.held || tr.pending())
        {
            return;
        }
        let ff = self.equipment.at(ix);
        if ff.held && !cx.is_open(rule) {
            // Resolved by a person.
            *ff = Tracker::default();
        }
        if !p.enabled {
            *ff = Tracker::default();
            cx.clear(rule, t);
            return;
        }
        let cutoff = t - p.ms(WINDOW);
        let counted = cx.eq.faults(|faults| {
            faults.history.retain(|o| o.at > cutoff);
            !faults.quiet && faults.history.len() >= p.whole(COUNT) as usize
        });
        let run_start = ff.true_since().unwrap_or(t);
        let due = counted.then_some(run_start + p.for_ms);
        if !ff.held && cx.is_open(rule) {
            ff.adopt(due.is_some(), t);
        }
        match ff.step(due, t, p.clear_ms) {
            Step::Fire(at) => {
                let mut by_rule = Map::new();
                let (history, device) = cx
                    .eq
                    .faults(|faults| (faults.history.clone(), faults.device.clone()));
                for o in &history {
                    let id = cx.book.rule_ids[o.key.index()].as_str();
                    let n = by_rule.get(id).and_then(Value::as_u64).unwrap_or(0);
                    by_rule.insert(id.to_owned(), json!(n + 1));
                }
                let details = json!({
                    "occurrences": history.len(),
                    "threshold": p.whole(COUNT),
                    "window_h": p.ms(WINDOW) as f64 / 3_600_000.0,
                    "rules": by_rule,
                });
                let Some(device) = device else {
                    return;
                };
                cx.fire_by(rule, &device, p.severity, at, details);
            }
            Step::Release(at) => cx.clear(rule, at),
            Step::Idle => {}
        }
    }
}

const MAX_REPEATS_PER_VERSION: usize = 1_000;

/// When each raise and repeat of one alarm happened, with the severity it
/// had. Versions given carry exact times; repeats whose own version is
/// missing are placed at the next known `updated_at` (never earlier than
/// they happened, so the window errs on the side of alarming).
fn occurrences(versions: &[Alarm]) -> Vec<(EpochMs, Severity)> {
    let mut out = Vec::new();
    let mut seen = 0u32;
    for v in versions {
        if v.count <= seen {
            continue;
        }
        if seen == 0 {
            out.push((v.raised_at, v.severity));
            seen = 1;
        }
        // Bounded: a corrupt count must not allocate without limit, and no
        // window needs more occurrences than this.
        let repeats = ((v.count - seen) as usize).min(MAX_REPEATS_PER_VERSION);
        out.extend(std::iter::repeat_n((v.updated_at, v.severity), repeats));
        seen = v.count;
    }
    out
}
