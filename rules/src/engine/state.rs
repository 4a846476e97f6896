//! Per-device and per-equipment state, the condition tracker every rule
//! shares, and the alarm book (ids, open alarms, recently cleared ones).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tracing::{debug, info, warn};
use vigil_model::log_limit::LogLimit;
use vigil_model::reading::{Door, ElevatorSample, RideState};
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeviceContext, DeviceId, EpochMs, EquipmentId, Reading,
    RuleId, Severity,
};

use super::filling::FillingEquipment;
use super::rides::RideDevice;
use super::video::VideoEquipment;
use crate::catalogue::Params;
use crate::catalogue::{Key, Rule, rule_id};
use crate::config::ParamSet;

/// "Alarm repeated." lines across every shard.
static REPEAT_LOG: LogLimit = LogLimit::per_second(5);

/// One rule's condition over time, for one device (or one equipment for
/// equipment-level rules). Times are device time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    /// Start of the current run of "condition true".
    pub true_since: Option<EpochMs>,
    /// The current true run has already fired (one occurrence per run).
    pub fired: bool,
    /// Start of the current run of "condition false" while holding an alarm.
    pub false_since: Option<EpochMs>,
    /// This tracker keeps its alarm open.
    pub held: bool,
}

pub(crate) enum Step {
    Idle,
    /// The condition qualified: raise, or repeat an open alarm, at this time.
    Fire(EpochMs),
    /// The condition has been false for the clear period, ending at this time.
    Release(EpochMs),
}

impl Tracker {
    /// Advances to device time `t`. `due` is `None` when the condition is
    /// false, else the device time at which it qualifies (start + `for`).
    pub fn step(&mut self, due: Option<EpochMs>, t: EpochMs, clear_ms: i64) -> Step {
        match due {
            Some(due) => {
                self.false_since = None;
                let start = *self.true_since.get_or_insert(t);
                if !self.fired && t >= due {
                    self.fired = true;
                    self.held = true;
                    // When it qualified, not when we noticed: replay equals live.
                    return Step::Fire(due.min(t).max(start));
                }
            }
            None => {
                self.true_since = None;
                self.fired = false;
                if self.held {
                    let since = *self.false_since.get_or_insert(t);
                    if t.saturating_sub(since) >= clear_ms {
                        self.held = false;
                        self.false_since = None;
                        return Step::Release(since + clear_ms);
                    }
                }
            }
        }
        Step::Idle
    }

    /// Whether a later clock alone can change the outcome (a `for` or a
    /// clear period is running), so `tick` must look at it.
    pub fn pending(&self) -> bool {
        (self.true_since.is_some() && !self.fired) || (self.held && self.false_since.is_some())
    }

    /// Neither the condition nor its clear condition holds: the open alarm
    /// stays, the current run (if any) ends without a new occurrence.
    pub fn pause(&mut self) {
        self.true_since = None;
        self.fired = false;
        self.false_since = None;
    }

    /// The device clock stepped back to `t`: measure running periods from `t`.
    pub fn rebase(&mut self, t: EpochMs) {
        for since in [&mut self.true_since, &mut self.false_since]
            .into_iter()
            .flatten()
        {
            *since = (*since).min(t);
        }
    }

    /// Adopts a restored open alarm that no tracker holds yet. A condition
    /// that holds now continues that alarm's occurrence rather than
    /// repeating it; a false one starts its clear period.
    pub fn adopt(&mut self, condition_holds: bool, t: EpochMs) {
        self.held = true;
        if condition_holds {
            self.true_since = Some(t);
            self.fired = true;
        }
    }
}

/// What the registry says about the car's shaft, read once per sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Geometry {
    pub floors: Option<(i16, i16)>,
    pub rated_mps: Option<f64>,
}

impl Geometry {
    pub fn of(ctx: &DeviceContext) -> Geometry {
        Geometry {
            floors: ctx.floor_range(),
            rated_mps: ctx
                .param_f64("rated_speed_mps")
                .filter(|v| v.is_finite() && *v > 0.0),
        }
    }
}

pub(crate) const TOP: usize = 0;
pub(crate) const BOTTOM: usize = 1;

/// Sub-conditions that need their own start time or history, updated once
/// per accepted sample (never by `tick`, which re-evaluates the last one).
#[derive(Debug, Clone, Default)]
pub(crate) struct ElevatorAux {
    /// When the alarm button was first pressed during the current trapped run.
    pub button_at: Option<EpochMs>,
    /// Since when the final limit switch (top, bottom) is tripped.
    pub limit_since: [Option<EpochMs>; 2],
    /// Since when the car is moving on past the top (bottom) floor.
    pub beyond_since: [Option<EpochMs>; 2],
    pub door_floor: Option<i16>,
    pub last_door: Option<Door>,
    /// Door state changes at `door_floor`, device time, oldest first.
    pub door_changes: VecDeque<EpochMs>,
}

impl ElevatorAux {
    pub fn observe(&mut self, s: &ElevatorSample, geo: &Geometry, ts: EpochMs) {
        use vigil_model::reading::{Direction, ElevatorMode, Limit};
        let since =
            |holds: bool, was: Option<EpochMs>| if holds { Some(was.unwrap_or(ts)) } else { None };
        let moving = s.speed_mps > 0.0;
        let trapped =
            s.door == Door::Closed && s.occupied && !moving && s.mode == ElevatorMode::Normal;
        self.button_at = if trapped && s.alarm_button {
            Some(self.button_at.unwrap_or(ts))
        } else if trapped {
            self.button_at
        } else {
            None
        };
        self.limit_since[TOP] = since(s.limit == Limit::Top, self.limit_since[TOP]);
        self.limit_since[BOTTOM] = since(s.limit == Limit::Bottom, self.limit_since[BOTTOM]);
        let (at_top, at_bottom) = geo
            .floors
            .map_or((false, false), |(lo, hi)| (s.floor >= hi, s.floor <= lo));
        self.beyond_since[TOP] = since(
            at_top && moving && s.direction == Direction::Up,
            self.beyond_since[TOP],
        );
        self.beyond_since[BOTTOM] = since(
            at_bottom && moving && s.direction == Direction::Down,
            self.beyond_since[BOTTOM],
        );
        if self.door_floor != Some(s.floor) {
            // Door changes count "at one floor": a new floor starts afresh.
            self.door_floor = Some(s.floor);
            self.door_changes.clear();
        } else if self.last_door.is_some_and(|d| d != s.door) {
            self.door_changes.push_back(ts);
        }
        self.last_door = Some(s.door);
    }

    pub fn prune_door_changes(&mut self, older_than_or_at: EpochMs) {
        while self
            .door_changes
            .front()
            .is_some_and(|t| *t <= older_than_or_at)
        {
            self.door_changes.pop_front();
        }
    }

    pub fn rebase(&mut self, t: EpochMs) {
        for since in self
            .limit_since
            .iter_mut()
            .chain(self.beyond_since.iter_mut())
            .chain([&mut self.button_at])
            .flatten()
        {
            *since = (*since).min(t);
        }
        self.door_changes.clear();
    }
}

/// What the engine remembers about one device.
#[derive(Debug)]
pub(crate) struct DeviceState {
    pub equipment_id: EquipmentId,
    pub report_interval_s: u32,
    pub geo: Geometry,
    /// Latest device time seen on any stream: the base of the device clock.
    pub last_ts: EpochMs,
    /// Engine time when the latest message arrived.
    pub last_received: EpochMs,
    pub max_seq: Option<u64>,
    /// The latest elevator sample, re-evaluated by `tick` while silent.
    pub sample: Option<ElevatorSample>,
    pub sample_ts: Option<EpochMs>,
    pub event_ts: Option<EpochMs>,
    pub trackers: [Tracker; Rule::SAMPLE.len()],
    pub aux: ElevatorAux,
    pub ride: RideDevice,
    pub anomaly: super::anomaly::AnomalyDevice,
    /// Latest video event evaluated.
    pub video_ts: Option<EpochMs>,
    /// Counted as offline (set by `tick`, reset by any message).
    pub offline: bool,
    /// Some period is running: `tick` must re-evaluate the last sample.
    pub busy: bool,
    /// One per defined rule (state rules use theirs), by defined index.
    pub defined: Vec<Tracker>,
    /// Some defined rule's period is running.
    pub defined_busy: bool,
}

impl DeviceState {
    pub fn new(equipment_id: EquipmentId, reading: &Reading, now: EpochMs) -> DeviceState {
        let mut dev = DeviceState::silent(equipment_id, now);
        dev.last_ts = reading.ts;
        dev
    }

    /// A device known only to have been heard at `last_seen` (engine time).
    pub fn silent(equipment_id: EquipmentId, last_seen: EpochMs) -> DeviceState {
        DeviceState {
            equipment_id,
            report_interval_s: 0,
            geo: Geometry::default(),
            last_ts: last_seen,
            last_received: last_seen,
            max_seq: None,
            sample: None,
            sample_ts: None,
            event_ts: None,
            trackers: Default::default(),
            aux: ElevatorAux::default(),
            ride: RideDevice::default(),
            anomaly: Default::default(),
            video_ts: None,
            offline: false,
            busy: false,
            defined: Vec::new(),
            defined_busy: false,
        }
    }

    /// The device clock stepped back to `t` (a reboot with a wrong clock, an
    /// NTP correction): keep every state, measure running periods from `t`.
    pub fn rebase(&mut self, t: EpochMs) {
        self.last_ts = t;
        for ts in [
            &mut self.sample_ts,
            &mut self.event_ts,
            &mut self.ride.ts,
            &mut self.video_ts,
        ]
        .into_iter()
        .flatten()
        {
            *ts = (*ts).min(t);
        }
        self.trackers.iter_mut().for_each(|tr| tr.rebase(t));
        self.ride.trackers.iter_mut().for_each(|tr| tr.rebase(t));
        self.defined.iter_mut().for_each(|tr| tr.rebase(t));
        self.aux.rebase(t);
    }
}

/// A critical or major alarm occurrence, for `elevator.frequent_faults`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Occurrence {
    pub at: EpochMs,
    pub rule: Rule,
}

/// A controller code that is active.
#[derive(Debug, Clone)]
pub(crate) struct ActiveCode {
    pub text: Option<String>,
    pub severity: Severity,
    pub since: EpochMs,
}

/// The open alarm of one `(equipment, rule)` and who keeps it open.
#[derive(Debug)]
pub(crate) struct Slot {
    pub alarm: Alarm,
    /// Devices whose condition holds this alarm open (sample rules). Empty
    /// for a restored alarm until a device's tracker adopts it.
    pub holders: Vec<DeviceId>,
}

/// Marks parameters as never resolved.
pub(crate) const STALE: u64 = u64::MAX;

/// What the engine remembers about one piece of equipment: its open alarms
/// (at most one per rule) and the equipment-level rules' state.
#[derive(Debug)]
pub(crate) struct EquipmentState {
    pub binding: Binding,
    pub params: Arc<ParamSet>,
    pub params_gen: u64,
    /// Indexed by [`Key`]: built-in rules, then defined ones (grown by
    /// `Resolver::refresh` when a configuration defines more).
    pub slots: Vec<Option<Slot>>,
    /// When each rule's last alarm here cleared (cool-down of defined rules).
    pub cleared_at: Vec<Option<EpochMs>>,
    /// Latest device time of any of its devices (advanced by `tick`).
    pub clock: Option<EpochMs>,
    pub history: Vec<Occurrence>,
    pub ff: Tracker,
    /// Resolved by a person: wait for a new occurrence before re-raising.
    pub ff_quiet: bool,
    pub ff_device: Option<DeviceId>,
    pub codes: BTreeMap<String, ActiveCode>,
    /// Since when no controller code is active while the alarm is open.
    pub codes_clear_since: Option<EpochMs>,
    /// Devices counted in the open `device.offline` alarm.
    pub offline: BTreeSet<DeviceId>,
    /// The latest ride sample's `state` from any of its devices (a ride
    /// camera's restraint events count only while it is running).
    pub ride_state: Option<RideState>,
    /// A ride's registry `operating_hours` as minutes of the local day
    /// (`None`: not given, taken as always operating).
    pub operating_hours: Option<(i64, i64)>,
    /// `ride.no_daily_check`: today's trial run.
    pub daily: Option<super::daily::DailyCheck>,
    pub video: VideoEquipment,
    pub filling: FillingEquipment,
    /// The registry's `params` of the equipment, as its latest reading
    /// came with them (`param.x` in defined rules).
    pub registry: Arc<serde_json::Map<String, Value>>,
    /// Event rules (defined): the last matching event's time and device.
    pub defined_last: Vec<Option<(EpochMs, DeviceId)>>,
}

impl EquipmentState {
    pub fn new(binding: Binding, params: Arc<ParamSet>) -> EquipmentState {
        EquipmentState {
            binding,
            params,
            params_gen: STALE,
            slots: (0..Rule::COUNT).map(|_| None).collect(),
            cleared_at: vec![None; Rule::COUNT],
            clock: None,
            history: Vec::new(),
            ff: Tracker::default(),
            ff_quiet: false,
            ff_device: None,
            codes: BTreeMap::new(),
            codes_clear_since: None,
            offline: BTreeSet::new(),
            ride_state: None,
            operating_hours: None,
            daily: None,
            video: VideoEquipment::default(),
            filling: FillingEquipment::default(),
            registry: Arc::default(),
            defined_last: Vec::new(),
        }
    }

    /// The registry changed the equipment's owner, region or category:
    /// its parameters resolve again.
    pub fn rebind(&mut self, binding: &Binding) {
        if self.binding != *binding {
            self.binding = binding.clone();
            self.params_gen = STALE;
        }
    }

    pub fn slot(&self, rule: impl Into<Key>) -> Option<&Slot> {
        self.slots.get(rule.into().index())?.as_ref()
    }

    /// Makes room for every rule slot up to `count` (defined rules added).
    pub fn grow(&mut self, count: usize) {
        if self.slots.len() < count {
            self.slots.resize_with(count, || None);
            self.cleared_at.resize(count, None);
        }
    }

    pub fn advance_clock(&mut self, t: EpochMs) {
        self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
    }

    /// Counts a raise or repeat towards `elevator.frequent_faults`.
    pub fn record(&mut self, rule: Rule, severity: Severity, at: EpochMs, device: &DeviceId) {
        if rule.counts_as_fault() && severity >= Severity::Major {
            self.history.push(Occurrence { at, rule });
            self.ff_quiet = false;
            self.ff_device = Some(device.clone());
        }
    }
}

/// The first half of a per-device sample rule's turn: a tracker whose run
/// the equipment's alarm no longer follows (resolved by a person, rule
/// disabled, restored over) starts over, so a condition that still holds
/// must qualify again from here; a disabled rule clears its alarm. Returns
/// whether the rule is to be evaluated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sync_tracker(
    book: &mut Book,
    eq: &mut EquipmentState,
    rule: impl Into<Key>,
    tr: &mut Tracker,
    dev_id: &DeviceId,
    enabled: bool,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) -> bool {
    let rule = rule.into();
    let followed = eq.slots[rule.index()]
        .as_ref()
        .is_some_and(|s| s.holders.contains(dev_id));
    if (tr.held && !followed) || !enabled {
        *tr = Tracker::default();
    }
    if !enabled {
        book.clear(eq, rule, t, out);
    }
    enabled
}

/// The second half: a restored alarm nobody holds is adopted, then the
/// tracker steps to `t` with the condition's `due` time, firing (with the
/// details `details` gives for the firing time) or releasing. Returns the
/// firing time, if it fired.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step_tracker(
    book: &mut Book,
    eq: &mut EquipmentState,
    rule: impl Into<Key>,
    tr: &mut Tracker,
    dev_id: &DeviceId,
    p: &Params,
    due: Option<EpochMs>,
    t: EpochMs,
    details: impl FnOnce(EpochMs) -> Value,
    out: &mut Vec<Alarm>,
) -> Option<EpochMs> {
    let rule = rule.into();
    if !tr.held
        && let Some(slot) = eq.slots[rule.index()].as_mut()
        && slot.holders.is_empty()
    {
        tr.adopt(due.is_some(), t);
        slot.holders.push(dev_id.clone());
    }
    match tr.step(due, t, p.clear_ms) {
        Step::Fire(at) => {
            book.fire(eq, rule, p.severity, dev_id, at, details(at), true, out);
            Some(at)
        }
        Step::Release(at) => {
            book.release(eq, rule, dev_id, at, out);
            None
        }
        Step::Idle => None,
    }
}

/// An alarm that ends `clear_s` after its rule's last qualifying event
/// (video, filling): `last` is that event's time and device. Clears it
/// when the rule is disabled, or once `dev_id`'s clock `t` has passed the
/// quiet period of an event of `dev_id`; returns what `last` becomes.
pub(crate) fn quiet_period(
    book: &mut Book,
    eq: &mut EquipmentState,
    rule: impl Into<Key>,
    last: Option<(EpochMs, DeviceId)>,
    dev_id: &DeviceId,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) -> Option<(EpochMs, DeviceId)> {
    let rule = rule.into();
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        book.clear(eq, rule, t, out);
        return None;
    }
    eq.slot(rule)?;
    match last {
        Some((at, by)) if by == *dev_id && t.saturating_sub(at) >= p.clear_ms => {
            book.clear(eq, rule, at + p.clear_ms, out);
            None
        }
        other => other,
    }
}

/// Remembers ids of cleared alarms so a late acknowledge says "already
/// cleared" rather than "not found"; bounded, oldest forgotten first.
#[derive(Default)]
pub(crate) struct RecentlyCleared {
    order: VecDeque<AlarmId>,
    ids: HashSet<AlarmId>,
}

const REMEMBER_CLEARED: usize = 65_536;

impl RecentlyCleared {
    pub fn insert(&mut self, id: AlarmId) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > REMEMBER_CLEARED
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }

    pub fn contains(&self, id: &AlarmId) -> bool {
        self.ids.contains(id)
    }
}

/// The alarm lifecycle: ids, versions, the index by alarm id.
pub(crate) struct Book {
    pub next_id: Box<dyn FnMut() -> AlarmId + Send>,
    pub rule_ids: Vec<RuleId>,
    pub by_alarm: HashMap<AlarmId, (EquipmentId, Key)>,
    pub cleared: RecentlyCleared,
}

impl Book {
    pub fn new(next_id: Box<dyn FnMut() -> AlarmId + Send>) -> Book {
        Book {
            next_id,
            rule_ids: Rule::ALL.into_iter().map(rule_id).collect(),
            by_alarm: HashMap::new(),
            cleared: RecentlyCleared::default(),
        }
    }

    /// The rule qualified: raise a new alarm, or repeat the open one
    /// (count + 1). `holder` is the device whose condition keeps it open.
    #[allow(clippy::too_many_arguments)]
    pub fn fire(
        &mut self,
        eq: &mut EquipmentState,
        rule: impl Into<Key>,
        severity: Severity,
        device: &DeviceId,
        at: EpochMs,
        details: Value,
        holder: bool,
        out: &mut Vec<Alarm>,
    ) {
        let rule = rule.into();
        match &mut eq.slots[rule.index()] {
            Some(slot) => {
                let a = &mut slot.alarm;
                a.count += 1;
                a.updated_at = a.updated_at.max(at);
                a.severity = severity;
                a.details = super::escalation::carried(&a.details, details);
                a.version += 1;
                if holder && !slot.holders.contains(device) {
                    slot.holders.push(device.clone());
                }
                // A device stuck on a fault repeats its alarm with every
                // message: the count has every repeat, the log a few a second.
                match REPEAT_LOG.allow() {
                    Some(held_back) => {
                        info!(equipment = %a.equipment_id, device = %device, rule = %self.rule_ids[rule.index()], alarm = %a.alarm_id, count = a.count, held_back, "Alarm repeated.")
                    }
                    None => {
                        debug!(equipment = %a.equipment_id, device = %device, rule = %self.rule_ids[rule.index()], alarm = %a.alarm_id, count = a.count, "Alarm repeated.")
                    }
                }
                out.push(a.clone());
            }
            None => {
                let holders = if holder {
                    vec![device.clone()]
                } else {
                    Vec::new()
                };
                out.push(self.raise(eq, rule, severity, Some(device), at, details, holders));
            }
        }
    }

    /// A new alarm of `rule` on `eq`, raised at `at` by `device` (none for
    /// the registry-time rules), now its open alarm; returns its first version.
    #[allow(clippy::too_many_arguments)]
    pub fn raise(
        &mut self,
        eq: &mut EquipmentState,
        rule: impl Into<Key>,
        severity: Severity,
        device: Option<&DeviceId>,
        at: EpochMs,
        details: Value,
        holders: Vec<DeviceId>,
    ) -> Alarm {
        let rule = rule.into();
        let alarm = Alarm {
            alarm_id: (self.next_id)(),
            rule: self.rule_ids[rule.index()].clone(),
            severity,
            state: AlarmState::Active,
            equipment_id: eq.binding.equipment_id.clone(),
            device_id: device.cloned(),
            category: eq.binding.category.clone(),
            owner_id: eq.binding.owner_id.clone(),
            region: eq.binding.region,
            raised_at: at,
            updated_at: at,
            cleared_at: None,
            count: 1,
            details,
            version: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            note: None,
        };
        info!(equipment = %alarm.equipment_id, device = ?device.map(DeviceId::as_str), rule = %self.rule_ids[rule.index()], alarm = %alarm.alarm_id, severity = severity.as_str(), "Alarm raised.");
        self.by_alarm
            .insert(alarm.alarm_id.clone(), (alarm.equipment_id.clone(), rule));
        eq.slots[rule.index()] = Some(Slot {
            alarm: alarm.clone(),
            holders,
        });
        alarm
    }

    /// After a restart: the stored open `alarm` is `rule`'s open alarm on
    /// `eq` again, held by no device until one adopts it. An open alarm
    /// already there (two stored for one rule) gives way to it.
    pub fn reopen(&mut self, eq: &mut EquipmentState, rule: Key, alarm: &Alarm) {
        eq.grow(rule.index() + 1);
        if let Some(existing) = eq.slots[rule.index()].take() {
            warn!(equipment = %alarm.equipment_id, rule = %alarm.rule, kept = %alarm.alarm_id, dropped = %existing.alarm.alarm_id, "Two open alarms for one equipment and rule; keeping the later one.");
            self.by_alarm.remove(&existing.alarm.alarm_id);
        }
        self.by_alarm
            .insert(alarm.alarm_id.clone(), (alarm.equipment_id.clone(), rule));
        eq.slots[rule.index()] = Some(Slot {
            alarm: alarm.clone(),
            holders: Vec::new(),
        });
    }

    /// A new version of the open alarm without a new occurrence (the set of
    /// active codes or offline devices changed).
    pub fn update(
        &mut self,
        eq: &mut EquipmentState,
        rule: impl Into<Key>,
        severity: Severity,
        at: EpochMs,
        details: Value,
        out: &mut Vec<Alarm>,
    ) {
        let rule = rule.into();
        if let Some(slot) = &mut eq.slots[rule.index()] {
            let a = &mut slot.alarm;
            a.updated_at = a.updated_at.max(at);
            a.severity = severity;
            a.details = super::escalation::carried(&a.details, details);
            a.version += 1;
            out.push(a.clone());
        }
    }

    /// `device` no longer holds the alarm; the last holder clears it.
    pub fn release(
        &mut self,
        eq: &mut EquipmentState,
        rule: impl Into<Key>,
        device: &DeviceId,
        at: EpochMs,
        out: &mut Vec<Alarm>,
    ) {
        let rule = rule.into();
        if let Some(slot) = &mut eq.slots[rule.index()] {
            slot.holders.retain(|d| d != device);
            if slot.holders.is_empty() {
                self.clear(eq, rule, at, out);
            }
        }
    }

    /// The rule clears its open alarm at device time `at`.
    pub fn clear(
        &mut self,
        eq: &mut EquipmentState,
        rule: impl Into<Key>,
        at: EpochMs,
        out: &mut Vec<Alarm>,
    ) {
        let rule = rule.into();
        if let Some(slot) = eq.slots[rule.index()].take() {
            let mut a = slot.alarm;
            let at = at.max(a.raised_at);
            a.state = AlarmState::Cleared;
            a.cleared_at = Some(at);
            a.updated_at = at;
            a.version += 1;
            eq.cleared_at[rule.index()] = Some(at);
            info!(equipment = %a.equipment_id, rule = %self.rule_ids[rule.index()], alarm = %a.alarm_id, count = a.count, "Alarm cleared.");
            self.by_alarm.remove(&a.alarm_id);
            self.cleared.insert(a.alarm_id.clone());
            out.push(a);
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
