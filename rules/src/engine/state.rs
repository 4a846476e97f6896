//! What the engine keeps of every device and piece of equipment whatever
//! its rules (each family keeps its own state besides), and the condition
//! tracker the per-sample rules share.

use std::sync::Arc;

use serde_json::{Map, Value};
use vigil_model::reading::{ElevatorSample, RideSample, RideState};
use vigil_model::{Binding, DeviceId, EpochMs, EquipmentId, OwnerId, Reading, Region, Severity};

use super::book::Slot;
use crate::catalogue::{Key, ParamSet};
use crate::family::EqIx;

/// One rule's condition over time, for one device (or one equipment for
/// equipment-level rules). Times are device time. Kept for every rule of
/// every device, so it is small: a run of "condition true" and a run of
/// "condition false while holding an alarm" never overlap, and share one
/// start time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    /// Start of the current run (of `run`).
    since: EpochMs,
    run: Run,
    /// The current true run has already fired (one occurrence per run).
    pub fired: bool,
    /// This tracker keeps its alarm open.
    pub held: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Run {
    #[default]
    None,
    /// The condition is true since `since`.
    True,
    /// The condition is false since `since`, while holding an alarm.
    False,
}

pub(crate) enum Step {
    Idle,
    /// The condition qualified: raise, or repeat an open alarm, at this time.
    Fire(EpochMs),
    /// The condition has been false for the clear period, ending at this time.
    Release(EpochMs),
}

impl Tracker {
    /// Start of the current run of "condition true".
    pub(crate) fn true_since(&self) -> Option<EpochMs> {
        (self.run == Run::True).then_some(self.since)
    }

    /// Advances to device time `t`. `due` is `None` when the condition is
    /// false, else the device time at which it qualifies (start + `for`).
    pub(crate) fn step(&mut self, due: Option<EpochMs>, t: EpochMs, clear_ms: i64) -> Step {
        match due {
            Some(due) => {
                if self.run != Run::True {
                    self.run = Run::True;
                    self.since = t;
                }
                let start = self.since;
                if !self.fired && t >= due {
                    self.fired = true;
                    self.held = true;
                    // When it qualified, not when we noticed: replay equals live.
                    return Step::Fire(due.min(t).max(start));
                }
            }
            None => {
                if self.run == Run::True {
                    self.run = Run::None;
                }
                self.fired = false;
                if self.held {
                    if self.run != Run::False {
                        self.run = Run::False;
                        self.since = t;
                    }
                    let since = self.since;
                    if t.saturating_sub(since) >= clear_ms {
                        self.held = false;
                        self.run = Run::None;
                        return Step::Release(since + clear_ms);
                    }
                }
            }
        }
        Step::Idle
    }

    /// No run, no occurrence, no alarm held: as new, whatever `since` says.
    pub(crate) fn is_idle(&self) -> bool {
        self.run == Run::None && !self.fired && !self.held
    }

    /// Whether a later clock alone can change the outcome (a `for` or a
    /// clear period is running), so `tick` must look at it.
    pub(crate) fn pending(&self) -> bool {
        match self.run {
            Run::True => !self.fired,
            Run::False => self.held,
            Run::None => false,
        }
    }

    /// Neither the condition nor its clear condition holds: the open alarm
    /// stays, the current run (if any) ends without a new occurrence.
    pub(crate) fn pause(&mut self) {
        self.run = Run::None;
        self.fired = false;
    }

    /// The device clock stepped back to `t`: measure running periods from `t`.
    pub(crate) fn rebase(&mut self, t: EpochMs) {
        if self.run != Run::None {
            self.since = self.since.min(t);
        }
    }

    /// Adopts a restored open alarm that no tracker holds yet. A condition
    /// that holds now continues that alarm's occurrence rather than
    /// repeating it; a false one starts its clear period.
    pub(crate) fn adopt(&mut self, condition_holds: bool, t: EpochMs) {
        self.held = true;
        if condition_holds {
            self.run = Run::True;
            self.since = t;
            self.fired = true;
        }
    }
}

/// What the engine keeps of one device for every family.
#[derive(Debug)]
pub(crate) struct DeviceCore {
    pub id: DeviceId,
    /// A hash of `id` (the engine's id hasher): checks the place a
    /// context's `engine_slot` names without reading the id from the heap.
    pub id_hash: u64,
    /// The equipment it is bound to ([`DeviceCore::eq`]). 4 bytes, as in
    /// the equipment record; the record stays 136 bytes (its padding),
    /// with room for flags beside it.
    eq: u32,
    pub report_interval_s: u32,
    /// Whether `max_seq` has been set (a flag beside the others rather
    /// than an `Option`, which would double the field).
    pub seq_seen: bool,
    /// Counted as offline (set by liveness on a tick, reset by any message;
    /// `filling.records_missing` waits while its scale is offline).
    pub offline: bool,
    /// Latest device time seen on any stream: the base of the device clock.
    pub last_ts: EpochMs,
    /// Engine time when the latest message arrived.
    pub last_received: EpochMs,
    /// Highest `seq` seen (if `seq_seen`).
    pub max_seq: u64,
    /// Latest device time evaluated per stream (elevator samples, events,
    /// ride samples, video events, by [`StreamTs`]): an older reading is
    /// not evaluated. [`NEVER`] until the stream's first reading: no
    /// reading is older than that, so it needs no `Option` (8 bytes each
    /// instead of 16).
    pub stream_ts: [EpochMs; 4],
    /// The latest elevator and ride samples: they hold until the next one,
    /// so ticks evaluate them again (the sample rules, defined rules).
    pub latest: Latest,
}

/// A dense index as kept in the per-device and per-equipment records: the
/// engine holds far fewer than 2^32 of either (each costs it hundreds of
/// bytes).
fn index_u32(ix: usize) -> u32 {
    u32::try_from(ix).expect("fewer than 2^32 devices and equipment")
}

/// No reading on the stream yet (see [`DeviceCore::stream_ts`]).
pub(crate) const NEVER: EpochMs = EpochMs::MIN;

/// The streams [`DeviceCore::stream_ts`] keeps, by place.
pub(crate) enum StreamTs {
    Elevator = 0,
    Event = 1,
    Ride = 2,
    Video = 3,
}

/// A device's latest elevator and ride samples. A device sends one of the
/// two (it is a car's monitor or a ride's), so one place holds either: two
/// places cost every device the larger sample twice. One that sends both
/// keeps both, boxed.
#[derive(Debug, Default)]
pub(crate) enum Latest {
    #[default]
    Neither,
    Elevator(ElevatorSample),
    Ride(RideSample),
    Both(Box<(ElevatorSample, RideSample)>),
}

impl Latest {
    pub(crate) fn elevator(&self) -> Option<&ElevatorSample> {
        match self {
            Latest::Elevator(s) => Some(s),
            Latest::Both(both) => Some(&both.0),
            Latest::Neither | Latest::Ride(_) => None,
        }
    }

    pub(crate) fn ride(&self) -> Option<&RideSample> {
        match self {
            Latest::Ride(s) => Some(s),
            Latest::Both(both) => Some(&both.1),
            Latest::Neither | Latest::Elevator(_) => None,
        }
    }

    pub(crate) fn set_elevator(&mut self, sample: &ElevatorSample) {
        *self = match std::mem::take(self) {
            Latest::Neither | Latest::Elevator(_) => Latest::Elevator(sample.clone()),
            Latest::Ride(ride) => Latest::Both(Box::new((sample.clone(), ride))),
            Latest::Both(mut both) => {
                both.0 = sample.clone();
                Latest::Both(both)
            }
        };
    }

    pub(crate) fn set_ride(&mut self, sample: &RideSample) {
        *self = match std::mem::take(self) {
            Latest::Neither | Latest::Ride(_) => Latest::Ride(sample.clone()),
            Latest::Elevator(elevator) => Latest::Both(Box::new((elevator, sample.clone()))),
            Latest::Both(mut both) => {
                both.1 = sample.clone();
                Latest::Both(both)
            }
        };
    }
}

impl DeviceCore {
    /// The equipment it is bound to.
    pub(crate) fn eq(&self) -> EqIx {
        self.eq as EqIx
    }

    pub(crate) fn new(
        id: DeviceId,
        id_hash: u64,
        eq: EqIx,
        reading: &Reading,
        now: EpochMs,
    ) -> DeviceCore {
        let mut dev = DeviceCore::silent(id, id_hash, eq, now);
        dev.last_ts = reading.ts;
        dev
    }

    /// A device known only to have been heard at `last_seen` (engine time).
    pub(crate) fn silent(id: DeviceId, id_hash: u64, eq: EqIx, last_seen: EpochMs) -> DeviceCore {
        DeviceCore {
            id,
            id_hash,
            eq: index_u32(eq),
            report_interval_s: 0,
            seq_seen: false,
            offline: false,
            last_ts: last_seen,
            last_received: last_seen,
            max_seq: 0,
            stream_ts: [NEVER; 4],
            latest: Latest::Neither,
        }
    }

    /// The device clock stepped back to `t` (a reboot with a wrong clock, an
    /// NTP correction): keep every state, measure running periods from `t`.
    pub(crate) fn rebase(&mut self, t: EpochMs) {
        self.last_ts = t;
        for ts in &mut self.stream_ts {
            // `NEVER` stays: it is below any `t`.
            *ts = (*ts).min(t);
        }
    }
}

/// An equipment's [`Binding`], with its category shared by every
/// equipment of that category: comparing a reading's binding with it (on
/// every reading) reads no string of its own from the heap, where a copy
/// per equipment was a cache miss each time. The ids are `Arc`s shared
/// with the caller's context.
#[derive(Debug, Clone)]
pub(crate) struct EqBinding {
    pub equipment_id: EquipmentId,
    /// An `Arc<String>`, not an `Arc<str>`: a thin pointer, 8 bytes less
    /// for every equipment.
    pub category: Arc<String>,
    pub owner_id: OwnerId,
    pub region: Region,
}

impl EqBinding {
    fn of(binding: &Binding, categories: &mut Categories) -> EqBinding {
        EqBinding {
            equipment_id: binding.equipment_id.clone(),
            category: categories.intern(&binding.category),
            owner_id: binding.owner_id.clone(),
            region: binding.region,
        }
    }
}

/// Whether two texts are equal, by address first: ids are shared `Arc`s,
/// and the registry's context of a device usually holds the very copy the
/// engine keeps (the std comparison of two `Arc<str>` reads both).
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

/// One shared copy of each category name the engine has seen (a handful:
/// the registry's categories).
#[derive(Debug, Default)]
pub(crate) struct Categories(Vec<Arc<String>>);

impl Categories {
    fn intern(&mut self, name: &str) -> Arc<String> {
        if let Some(known) = self.0.iter().find(|c| ***c == *name) {
            return Arc::clone(known);
        }
        let made = Arc::new(name.to_owned());
        self.0.push(Arc::clone(&made));
        made
    }
}

/// A critical or major alarm occurrence, for `elevator.frequent_faults`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Occurrence {
    pub at: EpochMs,
    pub key: Key,
}

/// The equipment's fault occurrences: families that raise the elevator's
/// own faults record them, `elevator.frequent_faults` counts them.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub history: Vec<Occurrence>,
    /// Resolved by a person: wait for a new occurrence before re-raising.
    pub quiet: bool,
    /// The device of the latest occurrence.
    pub device: Option<DeviceId>,
}

impl Faults {
    /// Whether an occurrence of `key` at `severity` counts: its rule
    /// counts as a fault and it is major or critical.
    fn counts(key: Key, severity: Severity) -> bool {
        severity >= Severity::Major
            && crate::catalogue::decl(key).is_some_and(|d| d.counts_as_fault)
    }
}

/// `key`'s bit in [`EquipmentCore::open`].
pub(crate) fn open_bit(key: Key) -> u64 {
    1 << key.index().min(63)
}

/// The [`EquipmentCore::inputs`] after `inputs`: never 0, which families
/// keep for "not judged under any".
pub(crate) fn next_inputs(inputs: u32) -> u32 {
    inputs.wrapping_add(1).max(1)
}

/// Parameters resolved under a generation no resolver ever has: the
/// equipment's are resolved at its next evaluation.
pub(crate) const STALE: u32 = u32::MAX;

/// What the engine keeps of one piece of equipment for every family: who
/// it is, its rules' parameters and open alarms, its clock.
#[derive(Debug)]
pub(crate) struct EquipmentCore {
    /// Its index ([`EquipmentCore::ix`]). The narrow fields here (4 bytes
    /// where 8 would do too, flags beside them) keep the record, one per
    /// equipment, at 144 bytes.
    ix: u32,
    pub binding: EqBinding,
    pub params: Arc<ParamSet>,
    pub params_gen: u32,
    /// The open alarms, by [`Key`] ascending: built-in rules, then defined
    /// ones. Most equipment has none or a few of its rules' alarms open, so
    /// a short list beats a place for each rule. Changed only by
    /// `put_slot` and `take_slot` (they keep `open` true), each to its
    /// exact length (alarms open and close far less often than readings
    /// come, and a `Vec`'s capacity is 8 bytes more per equipment).
    pub slots: Box<[Slot]>,
    /// A bit per rule with an open alarm here (keys from 63 on share the
    /// last bit: the 44 built-in rules and the first defined ones have
    /// their own): most "is it open?" questions, asked of every equipment
    /// on every tick, are answered without reading `slots` (a cache miss
    /// each).
    open: u64,
    /// When each defined rule's last alarm here cleared (cool-down), by
    /// defined index; made at the first such clear (16 bytes for the
    /// equipment that never had one, not 24).
    defined_cleared_at: Option<Box<[Option<EpochMs>]>>,
    /// Latest device time of any of its devices (advanced by `tick`), if
    /// `clock_set` ([`EquipmentCore::clock`]).
    clock: EpochMs,
    clock_set: bool,
    /// The registry's `params` of the equipment, as its latest reading
    /// came with them (`param.x` in conditions).
    pub registry: Arc<Map<String, Value>>,
    /// Changes whenever `registry`'s contents change or `params` is
    /// replaced: what a family derives from both alone (a sample's
    /// conditions) stays valid while it is the same.
    pub inputs: u32,
    /// The latest ride sample's `state` from any of its devices (a ride
    /// camera's restraint events count only while it is running).
    pub ride_state: Option<RideState>,
    /// Boxed, and only once a fault counted here: most equipment has none.
    faults: Option<Box<Faults>>,
    /// How many occurrences `faults` holds: asked of every equipment on
    /// every tick, answered without following the box (a cache miss).
    fault_count: u32,
}

impl EquipmentCore {
    pub(crate) fn new(
        ix: EqIx,
        binding: &Binding,
        categories: &mut Categories,
        params: Arc<ParamSet>,
    ) -> EquipmentCore {
        EquipmentCore {
            ix: index_u32(ix),
            binding: EqBinding::of(binding, categories),
            params,
            params_gen: STALE,
            slots: Box::default(),
            open: 0,
            defined_cleared_at: None,
            clock: 0,
            clock_set: false,
            registry: Arc::default(),
            inputs: 0,
            ride_state: None,
            faults: None,
            fault_count: 0,
        }
    }

    /// Its index in the engine.
    pub(crate) fn ix(&self) -> EqIx {
        self.ix as EqIx
    }

    /// Latest device time of any of its devices (advanced by `tick`).
    pub(crate) fn clock(&self) -> Option<EpochMs> {
        self.clock_set.then_some(self.clock)
    }

    /// The registry's `params` of the equipment, as a reading came with
    /// them. The registry hands out one context per device until the
    /// device or its equipment changes, so the same `Arc` as last time is
    /// known to be unchanged without a comparison (held here, it cannot
    /// have been changed in place or freed and reused); another with equal
    /// contents (a second device of the equipment) changes nothing either.
    pub(crate) fn note_registry(&mut self, params: &Arc<Map<String, Value>>) {
        if Arc::ptr_eq(&self.registry, params) {
            return;
        }
        let changed = *self.registry != **params;
        self.registry = Arc::clone(params);
        if changed {
            self.inputs = next_inputs(self.inputs);
        }
    }

    /// The registry changed the equipment's owner, region or category:
    /// its parameters resolve again. Asked on every reading: the ids are
    /// compared by pointer first (the caller's context shares them), the
    /// category in the engine's shared copy (in cache).
    pub(crate) fn rebind(&mut self, binding: &Binding, categories: &mut Categories) {
        let b = &self.binding;
        let same = same_text(b.equipment_id.as_str(), binding.equipment_id.as_str())
            && *b.category == *binding.category
            && same_text(b.owner_id.as_str(), binding.owner_id.as_str())
            && b.region == binding.region;
        if !same {
            self.binding = EqBinding::of(binding, categories);
            self.params_gen = STALE;
        }
    }

    /// A bit per rule with an open alarm here ([`open_bit`]).
    pub(crate) fn open_bits(&self) -> u64 {
        self.open
    }

    pub(crate) fn slot(&self, key: Key) -> Option<&Slot> {
        if self.open & open_bit(key) == 0 {
            return None;
        }
        self.slots.iter().find(|s| s.key == key)
    }

    pub(crate) fn slot_mut(&mut self, key: Key) -> Option<&mut Slot> {
        if self.open & open_bit(key) == 0 {
            return None;
        }
        self.slots.iter_mut().find(|s| s.key == key)
    }

    /// Takes `key`'s open alarm out (it is no longer open here).
    pub(crate) fn take_slot(&mut self, key: Key) -> Option<Slot> {
        if self.open & open_bit(key) == 0 {
            return None;
        }
        let i = self.slots.iter().position(|s| s.key == key)?;
        let mut slots = Vec::from(std::mem::take(&mut self.slots));
        let slot = slots.remove(i);
        self.slots = slots.into_boxed_slice();
        self.open = (self.slots.iter()).fold(0, |bits, s| bits | open_bit(s.key));
        Some(slot)
    }

    /// `slot` is its rule's open alarm now; returns the one it replaces.
    pub(crate) fn put_slot(&mut self, slot: Slot) -> Option<Slot> {
        self.open |= open_bit(slot.key);
        match self.slots.binary_search_by_key(&slot.key, |s| s.key) {
            Ok(i) => Some(std::mem::replace(&mut self.slots[i], slot)),
            Err(i) => {
                let mut slots = Vec::from(std::mem::take(&mut self.slots));
                slots.reserve_exact(1);
                slots.insert(i, slot);
                self.slots = slots.into_boxed_slice();
                None
            }
        }
    }

    /// How many fault occurrences are kept (see [`EquipmentCore::faults`]).
    pub(crate) fn fault_count(&self) -> usize {
        self.fault_count as usize
    }

    /// The fault occurrences, changed by `change` (made if there were none).
    pub(crate) fn faults<R>(&mut self, change: impl FnOnce(&mut Faults) -> R) -> R {
        let faults = self.faults.get_or_insert_default();
        let out = change(faults);
        self.fault_count = u32::try_from(faults.history.len()).unwrap_or(u32::MAX);
        out
    }

    /// Counts a raise or repeat of `key` by `device` (if its rule counts as
    /// a fault and the occurrence is major or critical).
    pub(crate) fn record_fault(
        &mut self,
        key: Key,
        severity: Severity,
        at: EpochMs,
        device: &DeviceId,
    ) {
        if Faults::counts(key, severity) {
            self.faults(|faults| {
                faults.history.push(Occurrence { at, key });
                faults.quiet = false;
                faults.device = Some(device.clone());
            });
        }
    }

    pub(crate) fn advance_clock(&mut self, t: EpochMs) {
        self.clock = if self.clock_set { self.clock.max(t) } else { t };
        self.clock_set = true;
    }

    /// When defined rule `key` last cleared here.
    pub(crate) fn cleared_at(&self, key: Key) -> Option<EpochMs> {
        let n = key.defined_index()?;
        self.defined_cleared_at.as_ref()?.get(n).copied().flatten()
    }

    pub(crate) fn set_cleared_at(&mut self, key: Key, at: EpochMs) {
        if let Some(n) = key.defined_index() {
            let cleared = &mut self.defined_cleared_at;
            if cleared.as_ref().is_none_or(|c| c.len() <= n) {
                let mut longer = cleared.take().map(Vec::from).unwrap_or_default();
                longer.resize(n + 1, None);
                *cleared = Some(longer.into_boxed_slice());
            }
            if let Some(c) = cleared {
                c[n] = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_fires_once_per_run_and_releases_after_the_clear_period() {
        let mut tr = Tracker::default();
        assert!(matches!(tr.step(Some(1_000), 0, 500), Step::Idle));
        assert!(tr.pending());
        assert!(matches!(
            tr.step(Some(1_000), 1_200, 500),
            Step::Fire(1_000)
        ));
        assert!(
            matches!(tr.step(Some(1_000), 2_000, 500), Step::Idle),
            "a condition that stays true is one occurrence"
        );
        assert!(!tr.pending());
        assert!(matches!(tr.step(None, 3_000, 500), Step::Idle));
        assert!(matches!(tr.step(None, 3_499, 500), Step::Idle));
        assert!(matches!(tr.step(None, 3_600, 500), Step::Release(3_500)));
        assert!(!tr.held && !tr.pending());
    }
}
