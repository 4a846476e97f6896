//! The rules a configuration defines, through the same lifecycle as the
//! built-in ones: on elevator and ride samples a condition holds per device
//! with `for`, `clear_s` (or `clear_when`) and a cool-down; on video events
//! and filling records each matching message is an occurrence, and the
//! alarm clears `clear_s` after the last one.

use std::sync::Arc;

use vigil_model::{Alarm, DeviceId, EpochMs, Payload};

use super::state::{
    Book, DeviceState, EquipmentState, Tracker, quiet_period, step_tracker, sync_tracker,
};
use crate::catalogue::Key;
use crate::define::{Definition, Sample, Scope, Source};

/// The engine's defined-rule slots, `n` ↔ `Key::defined(n)`; `None` is a
/// rule a reload dropped (its alarms clear).
pub(crate) type Defined = [Option<Arc<Definition>>];

/// Makes room for every defined rule in the device's and equipment's state.
fn grow(dev: &mut DeviceState, eq: &mut EquipmentState, n: usize) {
    if dev.defined.len() < n {
        dev.defined.resize_with(n, Tracker::default);
    }
    grow_equipment(eq, n);
}

fn grow_equipment(eq: &mut EquipmentState, n: usize) {
    if eq.defined_last.len() < n {
        eq.defined_last.resize(n, None);
    }
    eq.grow(Key::defined(n).index());
}

/// A message at its device time `t`, before (`stored` false) and after
/// the engine keeps it as the device's latest sample. Before: the previous
/// sample held until now, so running periods reach this moment first, as
/// ticks would have done live. After: the state rules judge the new sample,
/// or the event rules the event.
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_message(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    payload: &Payload,
    stored: bool,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let Some(sample) = Sample::of(payload, t).filter(|_| !defined.is_empty()) else {
        return;
    };
    match (sample.source().is_state(), stored) {
        (true, false) if dev.defined_busy => evaluate(book, defined, dev_id, dev, eq, t, out),
        (true, true) => evaluate(book, defined, dev_id, dev, eq, t, out),
        (false, true) => on_event(book, defined, dev_id, dev, eq, sample, t, out),
        _ => {}
    }
}

/// Evaluates the state rules on the device's latest elevator and ride
/// samples at device time `t` (the sample's own `ts`, or the advanced clock
/// when `tick` re-evaluates a silent device).
pub(crate) fn evaluate(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    if defined.is_empty() {
        return;
    }
    grow(dev, eq, defined.len());
    let params = Arc::clone(&eq.params);
    let registry = Arc::clone(&eq.registry);
    let (elevator, ride) = (dev.sample.as_ref(), dev.ride.sample.as_ref());
    let mut busy = false;
    for (n, def) in defined.iter().enumerate() {
        let sample = match def.as_ref().map(|d| d.source) {
            Some(Source::Elevator) => elevator.map(Sample::Elevator),
            Some(Source::Ride) => ride.map(Sample::Ride),
            _ => None,
        };
        let (Some(def), Some(sample)) = (def, sample) else {
            continue;
        };
        let key = Key::defined(n);
        let p = params.get(key);
        let tr = &mut dev.defined[n];
        if !sync_tracker(book, eq, key, tr, dev_id, p.enabled, t, out) {
            continue;
        }
        let scope = Scope {
            sample,
            params: &registry,
            settings: &p.settings,
        };
        let holds = def.when.holds(&scope);
        if !holds
            && tr.held
            && let Some(clear_when) = &def.clear_when
            && !clear_when.holds(&scope)
        {
            // Between the raise and the clear condition: the alarm stays
            // open, and no new occurrence starts.
            tr.pause();
            continue;
        }
        let run_start = tr.true_since.unwrap_or(t);
        let due = holds.then(|| {
            let mut due = run_start + p.for_ms;
            if p.cooldown_ms > 0
                && let Some(cleared) = eq.cleared_at[key.index()]
            {
                due = due.max(cleared + p.cooldown_ms);
            }
            due
        });
        step_tracker(
            book,
            eq,
            key,
            tr,
            dev_id,
            p,
            due,
            t,
            |_| def.details(&scope),
            out,
        );
        busy |= tr.pending();
    }
    dev.defined_busy = busy;
}

/// A video event or filling record at device time `t`: each event rule of
/// its stream whose condition holds raises its alarm or repeats it.
#[allow(clippy::too_many_arguments)]
fn on_event(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    sample: Sample<'_>,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    grow(dev, eq, defined.len());
    let params = Arc::clone(&eq.params);
    let registry = Arc::clone(&eq.registry);
    for (n, def) in defined.iter().enumerate() {
        let Some(def) = def.as_ref().filter(|d| d.source == sample.source()) else {
            continue;
        };
        let key = Key::defined(n);
        let p = params.get(key);
        if !p.enabled {
            continue;
        }
        let scope = Scope {
            sample,
            params: &registry,
            settings: &p.settings,
        };
        if !def.when.holds(&scope) {
            continue;
        }
        let cooling = eq.slot(key).is_none()
            && p.cooldown_ms > 0
            && eq.cleared_at[key.index()].is_some_and(|c| t < c + p.cooldown_ms);
        if cooling {
            continue;
        }
        book.fire(
            eq,
            key,
            p.severity,
            dev_id,
            t,
            def.details(&scope),
            false,
            out,
        );
        eq.defined_last[n] = Some((t, dev_id.clone()));
    }
}

/// Clears event-rule alarms whose quiet period `dev_id`'s clock `t` has
/// passed (or whose rule is disabled). State rules clear at their
/// evaluation, as built-in sample rules do.
pub(crate) fn timer(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    grow_equipment(eq, defined.len());
    for (n, def) in defined.iter().enumerate() {
        if def.as_ref().is_some_and(|d| !d.source.is_state()) {
            let last = eq.defined_last[n].take();
            eq.defined_last[n] = quiet_period(book, eq, Key::defined(n), last, dev_id, t, out);
        }
    }
}

/// Clears the open alarms of defined rules a reload (or a restart with
/// another configuration) dropped, at `t`.
pub(crate) fn retire(
    book: &mut Book,
    defined: &Defined,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    for (n, def) in defined.iter().enumerate() {
        let key = Key::defined(n);
        if def.is_none() && eq.slot(key).is_some() {
            if let Some(last) = eq.defined_last.get_mut(n) {
                *last = None;
            }
            book.clear(eq, key, t, out);
        }
    }
}
