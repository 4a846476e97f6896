//! The rules a configuration defines (`define.rs`), through the same
//! lifecycle as the built-in ones: on elevator and ride samples a condition
//! holds per device with `for`, `clear_s` (or `clear_when`) and a
//! cool-down; on video events and filling records each matching message is
//! an occurrence, and the alarm clears `clear_s` after the last one.
//!
//! Their keys follow the built-in rules': defined rule `n` of the engine
//! (in the order it first met them) is this family's [`Local`] `n`.

use std::sync::Arc;

use vigil_model::{Alarm, DeviceId, EpochMs, Stream};

use super::{
    Bits, Cx, Dense, DevCx, DevIx, DeviceTick, Family, Few, Hooks, Local, Msg, Streams, TickDue,
    Tuning,
};
use crate::catalogue::{Decl, Key};
use crate::define::{Definition, Sample, Scope, Source};
use crate::engine::state::Tracker;

/// The defined rules and what they keep per device and equipment.
#[derive(Default)]
pub(crate) struct Defined {
    /// By slot; `None` is a rule a reload dropped (its alarms clear).
    rules: Vec<Option<Arc<Definition>>>,
    devices: Dense<DefinedDevice>,
    /// Some defined rule's period of the device is running.
    busy: Bits,
    /// The slots of the event rules (video, filling), which the timer of
    /// every device asks about on every tick.
    event_rules: Vec<Local>,
    /// Event rules: the last matching event's time and device, by slot.
    last: Few<Vec<Option<(EpochMs, DeviceId)>>>,
}

#[derive(Debug, Default)]
struct DefinedDevice {
    /// One per defined rule (state rules use theirs), by slot; to its
    /// exact length (kept for every device: a `Vec` is 8 bytes more).
    trackers: Box<[Tracker]>,
}

impl Family for Defined {
    fn name(&self) -> &'static str {
        "defined"
    }

    fn rules(&self) -> &'static [Decl] {
        &[]
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            rebase: true,
            before: Streams::of(&[Stream::Elevator, Stream::Ride]),
            // Every message: its timer ends quiet periods on the device's clock.
            message: Streams::ALL,
            device_tick: true,
            equipment_tick: true,
            ..Hooks::NONE
        }
    }

    fn on_config(&mut self, defined: &[Option<Arc<Definition>>]) {
        self.rules = defined.to_vec();
        self.event_rules = (defined.iter().enumerate())
            .filter(|(_, def)| def.as_ref().is_some_and(|d| !d.source.is_state()))
            .map(|(n, _)| Local(n as u16))
            .collect();
    }

    fn on_rebase(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        if let Some(d) = self.devices.get_mut(cx.ix) {
            d.trackers.iter_mut().for_each(|tr| tr.rebase(t));
        }
    }

    /// The previous sample held until now, so running periods reach this
    /// moment first, as ticks would have done live.
    fn before_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let state = Sample::of(msg.payload, msg.ts).is_some_and(|s| s.source().is_state());
        if state && self.busy.get(cx.ix) {
            self.evaluate(cx, msg.ts);
        }
    }

    /// The state rules judge the new sample, or the event rules the event.
    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if let Some(sample) = Sample::of(msg.payload, msg.ts).filter(|_| !self.rules.is_empty()) {
            if sample.source().is_state() {
                self.evaluate(cx, msg.ts);
            } else {
                self.on_event(cx, sample, msg.ts);
            }
        }
        let t = cx.dev.last_ts;
        self.timer(cx, t);
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        if tick.everything || self.busy.get(cx.ix) {
            self.evaluate(cx, tick.device_now);
        }
        self.timer(cx, tick.device_now);
    }

    /// Evaluation while a period runs; the timer where last events are
    /// kept or an event rule's alarm is open.
    fn tick_due(&self, base: usize, due: &mut TickDue) -> bool {
        due.devices.union_with(&self.busy);
        due.equipment.union_with(self.last.kept());
        for &rule in &self.event_rules {
            due.open(base, rule);
        }
        true
    }

    /// Clears the open alarms of defined rules a reload (or a restart with
    /// another configuration) dropped.
    fn on_equipment_tick(&mut self, cx: &mut Cx<'_>) {
        let t = cx.eq.clock().unwrap_or(cx.now);
        for (n, def) in self.rules.iter().enumerate() {
            let rule = Local(n as u16);
            if def.is_none() && cx.is_open(rule) {
                if let Some(last) = self.last.get_mut(cx.eq.ix()).and_then(|l| l.get_mut(n)) {
                    *last = None;
                }
                cx.clear(rule, t);
            }
        }
    }

    fn on_release(&mut self, _cx: &mut Cx<'_>, dev: DevIx, _id: &DeviceId, _at: EpochMs) {
        self.devices.reset(dev);
        self.busy.set(dev, false);
    }

    /// Event rules clear a quiet period after the last matching event: a
    /// restored alarm's latest version is that event.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        let Some(n) = key.defined_index() else {
            return;
        };
        let event_rule = self
            .rules
            .get(n)
            .and_then(Option::as_ref)
            .is_some_and(|d| !d.source.is_state());
        if event_rule && let Some(device) = &latest.device_id {
            let last = self.last.at(cx.eq.ix());
            if last.len() <= n {
                last.resize(n + 1, None);
            }
            last[n] = Some((latest.updated_at, device.clone()));
        }
    }
}

/// One state rule `rule` (`def`) of a device, with its tracker, on the
/// sample of `scope` at device time `t`.
fn state_rule(
    cx: &mut DevCx<'_>,
    rule: Local,
    def: &Definition,
    tr: &mut Tracker,
    scope: Scope<'_>,
    tuning: Tuning<'_>,
    t: EpochMs,
) {
    let key = cx.key(rule);
    let p = tuning.of(rule);
    if !cx.sync(rule, tr, p.enabled, t) {
        return;
    }
    let scope = Scope {
        settings: &p.settings,
        ..scope
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
        return;
    }
    let run_start = tr.true_since().unwrap_or(t);
    let due = holds.then(|| {
        let mut due = run_start + p.for_ms;
        if p.cooldown_ms > 0
            && let Some(cleared) = cx.eq.cleared_at(key)
        {
            due = due.max(cleared + p.cooldown_ms);
        }
        due
    });
    cx.step(rule, tr, p, due, t, |_| def.details(&scope));
}

impl Defined {
    /// Evaluates the state rules on the device's latest elevator and ride
    /// samples at device time `t` (the sample's own `ts`, or the advanced
    /// clock when `tick` re-evaluates a silent device).
    fn evaluate(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        if self.rules.is_empty() {
            return;
        }
        let d = self.devices.at(cx.ix);
        let tuning = cx.tuning();
        let registry = Arc::clone(&cx.eq.registry);
        let (elevator, ride) = (
            cx.dev.latest.elevator().cloned(),
            cx.dev.latest.ride().cloned(),
        );
        let mut busy = false;
        for (n, def) in self.rules.iter().enumerate() {
            let sample = match def.as_ref().map(|d| d.source) {
                Some(Source::Elevator) => elevator.as_ref().map(Sample::Elevator),
                Some(Source::Ride) => ride.as_ref().map(Sample::Ride),
                _ => None,
            };
            let (Some(def), Some(sample)) = (def, sample) else {
                continue;
            };
            // Trackers are kept only while one is not idle (an idle one is
            // a new one): most devices' conditions are false most of the time.
            let mut tr = d
                .trackers
                .get_mut(n)
                .map(std::mem::take)
                .unwrap_or_default();
            let scope = Scope {
                sample,
                params: &registry,
                settings: &[],
            };
            state_rule(cx, Local(n as u16), def, &mut tr, scope, tuning, t);
            busy |= tr.pending();
            if !tr.is_idle() {
                if d.trackers.len() <= n {
                    let mut longer = Vec::from(std::mem::take(&mut d.trackers));
                    longer.resize_with(n + 1, Tracker::default);
                    d.trackers = longer.into_boxed_slice();
                }
                d.trackers[n] = tr;
            }
        }
        if d.trackers.iter().all(Tracker::is_idle) {
            d.trackers = Box::default();
        }
        self.busy.set(cx.ix, busy);
    }

    /// A video event or filling record at device time `t`: each event rule
    /// of its stream whose condition holds raises its alarm or repeats it.
    fn on_event(&mut self, cx: &mut DevCx<'_>, sample: Sample<'_>, t: EpochMs) {
        let tuning = cx.tuning();
        let registry = Arc::clone(&cx.eq.registry);
        let last = self.last.at(cx.eq.ix());
        if last.len() < self.rules.len() {
            last.resize(self.rules.len(), None);
        }
        for (n, def) in self.rules.iter().enumerate() {
            let Some(def) = def.as_ref().filter(|d| d.source == sample.source()) else {
                continue;
            };
            let rule = Local(n as u16);
            let key = cx.key(rule);
            let p = tuning.of(rule);
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
            let cooling = !cx.is_open(rule)
                && p.cooldown_ms > 0
                && cx.eq.cleared_at(key).is_some_and(|c| t < c + p.cooldown_ms);
            if cooling {
                continue;
            }
            cx.fire(rule, p.severity, t, def.details(&scope));
            last[n] = Some((t, cx.dev.id.clone()));
        }
    }

    /// Clears event-rule alarms whose quiet period the device's clock `t`
    /// has passed (or whose rule is disabled). State rules clear at their
    /// evaluation, as built-in sample rules do.
    fn timer(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let is_event =
            |def: &Option<Arc<Definition>>| def.as_ref().is_some_and(|d| !d.source.is_state());
        let open = self.event_rules.iter().any(|&rule| cx.is_open(rule));
        if !open {
            // Without an open alarm a quiet period has nothing to end, and
            // forgets its last event (as `quiet_period` does). Only event
            // rules keep a last event: the equipment's record goes, so the
            // next tick does not read it again.
            self.last.reset(cx.eq.ix());
            return;
        }
        let last = self.last.at(cx.eq.ix());
        if last.len() < self.rules.len() {
            last.resize(self.rules.len(), None);
        }
        let dev_id = cx.dev.id.clone();
        for (n, def) in self.rules.iter().enumerate() {
            if is_event(def) {
                let rule = Local(n as u16);
                last[n] = cx.quiet_period(rule, last[n].take(), &dev_id, t);
            }
        }
    }
}
