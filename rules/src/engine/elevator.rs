//! The rules evaluated on elevator status samples: one condition each,
//! with the `for` duration folded into a "due" time, plus the details an
//! alarm carries.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use vigil_model::reading::ElevatorSample;
use vigil_model::{Alarm, DeviceId, EpochMs};

use super::state::{
    BOTTOM, Book, DeviceState, ElevatorAux, EquipmentState, Geometry, TOP, step_tracker,
    sync_tracker,
};
use crate::builtin;
use crate::catalogue::{Params, Rule};
use crate::define::Sample;

/// Evaluates every sample rule on the device's latest sample at device
/// time `t` (the sample's own `ts`, or the advanced clock when `tick`
/// re-evaluates a silent device).
pub(crate) fn evaluate(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let params = Arc::clone(&eq.params);
    let registry = Arc::clone(&eq.registry);
    let Some(sample) = dev.sample.as_ref() else {
        return;
    };
    dev.aux
        .prune_door_changes(t - params.get(Rule::DoorCycling).window_ms);
    let mut busy = !dev.aux.door_changes.is_empty();
    for rule in Rule::SAMPLE {
        let p = params.get(rule);
        let tr = &mut dev.trackers[rule.index()];
        if !sync_tracker(book, eq, rule, tr, dev_id, p.enabled, t, out) {
            continue;
        }
        let run_start = tr.true_since.unwrap_or(t);
        let due = due_time(rule, sample, &registry, p, &dev.aux, run_start);
        let (geo, aux) = (&dev.geo, &dev.aux);
        let fired = step_tracker(
            book,
            eq,
            rule,
            tr,
            dev_id,
            p,
            due,
            t,
            |at| details(rule, sample, geo, p, aux, run_start, at),
            out,
        );
        if let Some(at) = fired {
            eq.record(rule, p.severity, at, dev_id);
        }
        busy |= tr.pending();
    }
    dev.busy = busy;
}

/// `None` when the rule's condition is false; else the device time at
/// which it qualifies, given that it has held since `run_start`.
/// The conditions written in `catalogue.toml` are evaluated from there;
/// the ones that need earlier samples are here.
fn due_time(
    rule: Rule,
    s: &ElevatorSample,
    registry: &Map<String, Value>,
    p: &Params,
    aux: &ElevatorAux,
    run_start: EpochMs,
) -> Option<EpochMs> {
    let after_for = |holds: bool| holds.then_some(run_start + p.for_ms);
    if let Some(holds) = builtin::holds(rule, Sample::Elevator(s), registry, p) {
        let due = after_for(holds)?;
        return Some(match (rule, aux.button_at) {
            // The button shortens the wait, but never to before it was pressed.
            (Rule::Trapped, Some(pressed)) => {
                due.min((run_start + p.alarm_button_for_ms).max(pressed))
            }
            _ => due,
        });
    }
    match rule {
        Rule::OvertravelTop => overtravel(aux, TOP, p, run_start),
        Rule::OvertravelBottom => overtravel(aux, BOTTOM, p, run_start),
        Rule::DoorCycling => after_for(aux.door_changes.len() > p.max_changes as usize),
        // Not sample rules: evaluated elsewhere.
        _ => None,
    }
}

/// Either clause qualifies: the limit switch after `for_s` (immediate by
/// default), or moving on past the end floor after `moving_for_s`.
fn overtravel(aux: &ElevatorAux, end: usize, p: &Params, run_start: EpochMs) -> Option<EpochMs> {
    let by_switch = aux.limit_since[end].map(|since| since.max(run_start) + p.for_ms);
    let by_floor = aux.beyond_since[end].map(|since| since.max(run_start) + p.moving_for_ms);
    match (by_switch, by_floor) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn details(
    rule: Rule,
    s: &ElevatorSample,
    geo: &Geometry,
    p: &Params,
    aux: &ElevatorAux,
    run_start: EpochMs,
    at: EpochMs,
) -> Value {
    let held_s = ((at - run_start).max(0) as f64 / 1000.0).round() as i64;
    let speed = round3(f64::from(s.speed_mps));
    match rule {
        Rule::Trapped => {
            json!({"floor": s.floor, "stopped_for_s": held_s, "alarm_button": aux.button_at.is_some()})
        }
        Rule::StoppedOutsideZone => json!({"floor": s.floor, "stopped_for_s": held_s}),
        Rule::DoorOpenMoving => {
            json!({"floor": s.floor, "door": s.door.as_str(), "speed_mps": speed})
        }
        Rule::Overspeed => {
            let rated = geo.rated_mps.unwrap_or_default();
            // Four decimals: 1.15 × 1.75 is 2.0125, not 2.012.
            let limit = (p.factor * rated * 10_000.0).round() / 10_000.0;
            json!({"speed_mps": speed, "rated_speed_mps": rated, "limit_mps": limit})
        }
        Rule::OvertravelTop | Rule::OvertravelBottom => {
            let end = if rule == Rule::OvertravelTop {
                TOP
            } else {
                BOTTOM
            };
            let trigger = if aux.limit_since[end].is_some() {
                "limit_switch"
            } else {
                "moving_past_end_floor"
            };
            json!({"floor": s.floor, "limit": s.limit.as_str(), "direction": s.direction.as_str(), "speed_mps": speed, "trigger": trigger})
        }
        Rule::SafetyCircuitOpen => {
            json!({"floor": s.floor, "speed_mps": speed, "mode": s.mode.as_str()})
        }
        Rule::DoorLockOpenMoving => {
            json!({"floor": s.floor, "speed_mps": speed, "door": s.door.as_str()})
        }
        Rule::DoorWontClose => {
            json!({"floor": s.floor, "door": s.door.as_str(), "open_for_s": held_s})
        }
        Rule::DoorCycling => {
            json!({"floor": s.floor, "changes": aux.door_changes.len(), "window_s": p.window_ms / 1000})
        }
        Rule::PowerLoss => json!({"power": s.power.as_str(), "floor": s.floor, "for_s": held_s}),
        Rule::FloorOutOfRange => {
            let (lo, hi) = geo.floors.unwrap_or_default();
            json!({"floor": s.floor, "floors": [lo, hi]})
        }
        _ => Value::Null,
    }
}

/// Device floats are f32; three decimals keep JSON free of `1.2000000476`.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
