//! The rules a configuration defines, through the same lifecycle as the
//! built-in ones: on elevator and ride samples a condition holds per device
//! with `for`, `clear_s` (or `clear_when`) and a cool-down; on video events
//! and filling records each matching message is an occurrence, and the
//! alarm clears `clear_s` after the last one.

use std::sync::Arc;

use vigil_model::{Alarm, DeviceId, EpochMs};

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
    if eq.defined_last.len() < n {
        eq.defined_last.resize(n, None);
    }
    eq.grow(Key::defined(n).index());
}

/// Evaluates the state rules of `source` (elevator or ride) on the device's
/// latest sample of it at device time `t` (the sample's own `ts`, or the
/// advanced clock when `tick` re-evaluates a silent device).
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    source: Source,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    grow(dev, eq, defined.len());
    let params = Arc::clone(&eq.params);
    let registry = Arc::clone(&eq.registry);
    let sample = match source {
        Source::Elevator => dev.sample.as_ref().map(Sample::Elevator),
        Source::Ride => dev.ride.sample.as_ref().map(Sample::Ride),
        Source::Video | Source::Filling => None,
    };
    let Some(sample) = sample else {
        return;
    };
    let mut busy = false;
    for (n, def) in defined.iter().enumerate() {
        let Some(def) = def.as_ref().filter(|d| d.source == source) else {
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
pub(crate) fn on_event(
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
/// passed, and the alarms of defined rules that are disabled or dropped.
pub(crate) fn timer(
    book: &mut Book,
    defined: &Defined,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    grow(dev, eq, defined.len());
    for (n, def) in defined.iter().enumerate() {
        let key = Key::defined(n);
        match def {
            Some(def) if def.source.is_state() => {
                if !eq.params.get(key).enabled {
                    dev.defined[n] = Tracker::default();
                    book.clear(eq, key, t, out);
                }
            }
            Some(_) => {
                let last = eq.defined_last[n].take();
                eq.defined_last[n] = quiet_period(book, eq, key, last, dev_id, t, out);
            }
            None => dev.defined[n] = Tracker::default(),
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
