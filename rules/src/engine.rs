//! The rule engine: readings and clock ticks in, alarm changes out.

mod anomaly;
mod daily;
mod defined;
mod elevator;
mod equipment;
mod escalation;
mod filling;
mod restore;
mod rides;
mod schedule;
mod state;
mod video;

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{debug, info, warn};
use vigil_model::{
    Alarm, AlarmId, AlarmState, DeviceContext, DeviceId, EpochMs, EquipmentId, Payload, Reading,
    RuleId,
};

use crate::catalogue::{Key, Rule};
use crate::config::{ParamSet, RuleConfig};
use crate::define::Definition;
use crate::error::AlarmOpError;
pub(crate) use escalation::Escalation;
pub use filling::{CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts};
pub use schedule::RegistryFacts;
use state::{Book, DeviceState, EquipmentState};

/// A reading this much older than the device's latest `ts`, but with a
/// newer `seq`, means the device clock stepped back rather than a late
/// delivery (seq is strictly increasing per device, across reboots).
const CLOCK_STEP_MS: EpochMs = 1_000;

/// Evaluates the built-in rules for the equipment of one shard. Pure: no
/// I/O, no wall clock; the caller passes `now` and publishes what comes out.
pub struct RuleEngine {
    resolver: Resolver,
    book: Book,
    devices: HashMap<DeviceId, DeviceState>,
    equipment: HashMap<EquipmentId, EquipmentState>,
    schedule: schedule::ScheduleState,
    /// The configuration changed: the next `tick` looks at every device.
    retick_all: bool,
    /// Local time minus UTC (stations' working hours).
    local_offset_ms: i64,
}

impl RuleEngine {
    /// An engine whose alarm ids are random UUID v4 strings.
    pub fn new(config: RuleConfig) -> Self {
        Self::with_id_source(
            config,
            Box::new(|| {
                // A hyphenated UUID is 36 printable ASCII characters: always a valid id.
                AlarmId::new(uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid alarm id")
            }),
        )
    }

    /// An engine that takes alarm ids from `ids` (deterministic ids in tests).
    pub fn with_id_source(config: RuleConfig, ids: Box<dyn FnMut() -> AlarmId + Send>) -> Self {
        let mut engine = RuleEngine {
            resolver: Resolver::new(RuleConfig::default()),
            book: Book::new(ids),
            devices: HashMap::new(),
            equipment: HashMap::new(),
            schedule: schedule::ScheduleState::default(),
            retick_all: false,
            local_offset_ms: 0,
        };
        engine.replace_config(config);
        engine.retick_all = false;
        engine
    }

    /// Local time is `offset_s` ahead of UTC (default 0): the time zone of
    /// the stations' `working_hours`.
    pub fn set_local_offset(&mut self, offset_s: i32) {
        self.local_offset_ms = i64::from(offset_s) * 1000;
    }

    /// After a restart: the latest version (or several versions) of every
    /// open alarm and of every alarm raised within the last 24 h. Open ones
    /// become this engine's open alarms again, so the same condition after
    /// the restart continues them instead of raising a duplicate; the raises
    /// and repeats feed `elevator.frequent_faults`' trailing window.
    pub fn restore(&mut self, alarms: Vec<Alarm>, now: EpochMs) {
        restore::restore(self, alarms, now);
    }

    /// After a restart: `device` was last heard at `last_seen` (engine time).
    /// A device that stays silent then goes offline on schedule, as if the
    /// engine had never stopped; nothing else is evaluated until it speaks.
    /// A device this engine has already heard from since is left alone.
    pub fn last_heard(&mut self, device: &DeviceId, ctx: &DeviceContext, last_seen: EpochMs) {
        if self.devices.contains_key(device) {
            return;
        }
        let eq_id = &ctx.binding.equipment_id;
        let eq = self.equipment.entry(eq_id.clone()).or_insert_with(|| {
            EquipmentState::new(ctx.binding.clone(), self.resolver.defaults.clone())
        });
        eq.rebind(&ctx.binding);
        equipment::operating_hours(eq, ctx);
        let mut dev = DeviceState::silent(eq_id.clone(), last_seen);
        dev.report_interval_s = ctx.report_interval_s;
        self.devices.insert(device.clone(), dev);
    }

    /// Evaluates one accepted reading, in arrival order. `now` is the engine
    /// clock at receipt (liveness); rules measure durations on `reading.ts`.
    /// Returns every alarm change (raised, repeated, updated, cleared).
    pub fn on_reading(
        &mut self,
        reading: &Reading,
        ctx: &DeviceContext,
        now: EpochMs,
    ) -> Vec<Alarm> {
        let mut out = Vec::new();
        let dev_id = &reading.device_id;
        let eq_id = &ctx.binding.equipment_id;
        if self
            .devices
            .get(dev_id)
            .is_some_and(|d| d.equipment_id != *eq_id)
        {
            self.unbind(dev_id, reading.ts, &mut out);
        }
        let eq = self.equipment.entry(eq_id.clone()).or_insert_with(|| {
            EquipmentState::new(ctx.binding.clone(), self.resolver.defaults.clone())
        });
        eq.rebind(&ctx.binding);
        self.resolver.refresh(eq);
        let dev = self
            .devices
            .entry(dev_id.clone())
            .or_insert_with(|| DeviceState::new(eq_id.clone(), reading, now));
        dev.report_interval_s = ctx.report_interval_s;
        dev.last_received = dev.last_received.max(now);
        filling::heard(eq, ctx, now);
        equipment::operating_hours(eq, ctx);
        if *eq.registry != ctx.params {
            eq.registry = Arc::new(ctx.params.clone());
        }
        equipment::back_online(&mut self.book, dev_id, dev, eq, reading.ts, &mut out);

        let stream_latest = match reading.payload {
            Payload::Elevator(_) => dev.sample_ts,
            Payload::Event(_) => dev.event_ts,
            Payload::Ride(_) => dev.ride.ts,
            Payload::Video(_) => dev.video_ts,
            Payload::Filling(_) => None,
        };
        let newer_seq = dev.max_seq.is_none_or(|m| reading.seq > m);
        dev.max_seq = Some(dev.max_seq.map_or(reading.seq, |m| m.max(reading.seq)));
        if newer_seq && reading.ts.saturating_add(CLOCK_STEP_MS) < dev.last_ts {
            info!(device = %dev_id, seq = reading.seq, ts = reading.ts, last_ts = dev.last_ts, "Device clock stepped back; rule periods now run on the new clock.");
            dev.rebase(reading.ts);
            video::rebase(eq, dev_id, reading.ts);
            filling::rebase(eq, dev_id, reading.ts);
        } else if stream_latest.is_some_and(|latest| reading.ts < latest) {
            // A late message (a spool emptied out of order): its moment has
            // passed and evaluating it would rewind the rules' state.
            debug!(device = %dev_id, seq = reading.seq, ts = reading.ts, "Reading older than the device's latest; not evaluated by rules.");
            return out;
        }
        dev.last_ts = dev.last_ts.max(reading.ts);
        eq.advance_clock(reading.ts);
        let defined = &self.resolver.defined;
        let (payload, ts) = (&reading.payload, reading.ts);
        defined::on_message(
            &mut self.book,
            defined,
            dev_id,
            dev,
            eq,
            payload,
            false,
            ts,
            &mut out,
        );
        match &reading.payload {
            Payload::Elevator(sample) => {
                // The previous sample held until now: let its running periods
                // reach this moment first, as ticks would have done live.
                // Replay and live then agree even without ticks.
                if dev.busy {
                    elevator::evaluate(&mut self.book, dev_id, dev, eq, reading.ts, &mut out);
                }
                dev.geo = state::Geometry::of(ctx);
                dev.aux.observe(sample, &dev.geo, reading.ts);
                dev.sample = Some(sample.clone());
                dev.sample_ts = Some(reading.ts);
                elevator::evaluate(&mut self.book, dev_id, dev, eq, reading.ts, &mut out);
                anomaly::on_elevator(
                    &mut self.book,
                    dev_id,
                    dev,
                    eq,
                    sample,
                    reading.ts,
                    &mut out,
                );
            }
            Payload::Event(event) => {
                dev.event_ts = Some(reading.ts);
                equipment::controller_timer(&mut self.book, eq, reading.ts, &mut out);
                equipment::on_event(&mut self.book, dev_id, eq, event, reading.ts, &mut out);
            }
            Payload::Ride(sample) => {
                rides::on_sample(
                    &mut self.book,
                    dev_id,
                    dev,
                    eq,
                    ctx,
                    sample,
                    reading.ts,
                    &mut out,
                );
                anomaly::on_ride(
                    &mut self.book,
                    dev_id,
                    dev,
                    eq,
                    sample,
                    reading.ts,
                    &mut out,
                );
                daily::on_sample(
                    &mut self.book,
                    dev_id,
                    eq,
                    sample,
                    reading.ts,
                    self.local_offset_ms,
                    &mut out,
                );
            }
            Payload::Video(event) => {
                dev.video_ts = Some(reading.ts);
                video::on_event(&mut self.book, dev_id, eq, event, reading.ts, &mut out);
            }
            // The registry-fact rules run in `on_filling`; the fill-rate
            // anomaly needs only the record.
            Payload::Filling(record) => {
                anomaly::on_filling(
                    &mut self.book,
                    dev_id,
                    dev,
                    eq,
                    record,
                    reading.ts,
                    &mut out,
                );
            }
        }
        defined::on_message(
            &mut self.book,
            defined,
            dev_id,
            dev,
            eq,
            payload,
            true,
            ts,
            &mut out,
        );
        video::timer(&mut self.book, eq, dev_id, dev.last_ts, &mut out);
        filling::timer(&mut self.book, eq, dev_id, dev.last_ts, &mut out);
        defined::timer(&mut self.book, defined, dev_id, eq, dev.last_ts, &mut out);
        if let Some(clock) = eq.clock {
            equipment::frequent_faults(&mut self.book, eq, clock, &mut out);
        }
        out
    }

    /// Evaluates one accepted filling record with what the registry says of
    /// its cylinder and operator (`facts`), as `on_reading` does any
    /// reading, then the filling rules on it. Any other reading is just
    /// `on_reading`.
    pub fn on_filling(
        &mut self,
        reading: &Reading,
        ctx: &DeviceContext,
        facts: &FillingFacts,
        now: EpochMs,
    ) -> Vec<Alarm> {
        let mut out = self.on_reading(reading, ctx, now);
        let Payload::Filling(record) = &reading.payload else {
            return out;
        };
        if let Some(eq) = self.equipment.get_mut(&ctx.binding.equipment_id) {
            filling::on_record(
                &mut self.book,
                &reading.device_id,
                eq,
                record,
                facts,
                reading.ts,
                now,
                &mut out,
            );
        }
        out
    }

    /// The registry-time rules (inspection due and overdue, maintenance
    /// overdue) over the registry's `facts` of every equipment of this
    /// engine, at wall time `now`; call it on a schedule (about a minute).
    /// Equipment missing from `facts` has its registry-time alarms cleared.
    pub fn registry_check(&mut self, facts: &[RegistryFacts], now: EpochMs) -> Vec<Alarm> {
        schedule::check(self, facts, now)
    }

    /// Advances time to the wall clock `now` (call it about once a second).
    /// A silent device's clock runs on from its last `ts` by the wall time
    /// since its last message, so pending `for` durations fire and clear
    /// periods end on time; devices silent too long go offline; the
    /// frequent-faults window slides.
    pub fn tick(&mut self, now: EpochMs) -> Vec<Alarm> {
        let mut out = Vec::new();
        let everything = std::mem::take(&mut self.retick_all);
        for (dev_id, dev) in &mut self.devices {
            let Some(eq) = self.equipment.get_mut(&dev.equipment_id) else {
                continue;
            };
            self.resolver.refresh(eq);
            let silent = now.saturating_sub(dev.last_received).max(0);
            let device_now = dev.last_ts.saturating_add(silent);
            eq.advance_clock(device_now);
            equipment::check_offline(
                &mut self.book,
                dev_id,
                dev,
                eq,
                silent,
                device_now,
                self.local_offset_ms,
                &mut out,
            );
            if dev.busy || everything {
                elevator::evaluate(&mut self.book, dev_id, dev, eq, device_now, &mut out);
            }
            if dev.ride.busy || everything {
                rides::evaluate(&mut self.book, dev_id, dev, eq, device_now, &mut out);
            }
            let defined = &self.resolver.defined;
            if dev.defined_busy || everything {
                defined::evaluate(
                    &mut self.book,
                    defined,
                    dev_id,
                    dev,
                    eq,
                    device_now,
                    &mut out,
                );
            }
            defined::timer(&mut self.book, defined, dev_id, eq, device_now, &mut out);
            equipment::controller_timer(&mut self.book, eq, device_now, &mut out);
            video::timer(&mut self.book, eq, dev_id, device_now, &mut out);
            filling::timer(&mut self.book, eq, dev_id, device_now, &mut out);
            filling::records_missing(
                &mut self.book,
                dev_id,
                !dev.offline,
                eq,
                now,
                self.local_offset_ms,
                &mut out,
            );
        }
        for eq in self.equipment.values_mut() {
            self.resolver.refresh(eq);
            let t = eq.clock.unwrap_or(now);
            defined::retire(&mut self.book, &self.resolver.defined, eq, t, &mut out);
            filling::certificates(&mut self.book, eq, now, &mut out);
            daily::tick(&mut self.book, eq, now, self.local_offset_ms, &mut out);
            if let Some(clock) = eq.clock {
                equipment::frequent_faults(&mut self.book, eq, clock, &mut out);
            }
        }
        escalation::escalate(
            &mut self.equipment,
            self.resolver.config.escalation(),
            now,
            &mut out,
        );
        out
    }

    /// A person acknowledges an open alarm: `active` → `acknowledged`, with
    /// `acknowledged_at = now`. Acknowledging an acknowledged alarm changes
    /// nothing and returns it as it is (same `version`).
    pub fn acknowledge(
        &mut self,
        id: &AlarmId,
        by: &str,
        now: EpochMs,
    ) -> Result<Alarm, AlarmOpError> {
        let slot = self.open_slot(id)?;
        let a = &mut slot.alarm;
        if a.state == AlarmState::Acknowledged {
            return Ok(a.clone());
        }
        a.state = AlarmState::Acknowledged;
        a.acknowledged_at = Some(now);
        a.acknowledged_by = Some(by.to_owned());
        a.updated_at = now;
        a.version += 1;
        info!(alarm = %a.alarm_id, rule = %a.rule, by, "Alarm acknowledged.");
        Ok(a.clone())
    }

    /// A person closes an open alarm with a note: state `cleared`,
    /// `cleared_at = now`. Resolving also acknowledges (`acknowledged_by`)
    /// when nobody had. A condition that still holds afterwards raises a
    /// fresh alarm once it qualifies again from the next reading.
    pub fn resolve(
        &mut self,
        id: &AlarmId,
        by: &str,
        note: &str,
        now: EpochMs,
    ) -> Result<Alarm, AlarmOpError> {
        let (eq_id, rule) = self
            .book
            .by_alarm
            .get(id)
            .cloned()
            .ok_or_else(|| self.missing(id))?;
        let eq = self
            .equipment
            .get_mut(&eq_id)
            .ok_or_else(|| AlarmOpError::NotFound(id.clone()))?;
        eq.cleared_at[rule.index()] = Some(now);
        let slot = eq.slots[rule.index()]
            .take()
            .ok_or_else(|| AlarmOpError::NotFound(id.clone()))?;
        let mut a = slot.alarm;
        a.state = AlarmState::Cleared;
        a.cleared_at = Some(now);
        a.updated_at = now;
        a.note = Some(note.to_owned());
        if a.acknowledged_by.is_none() {
            a.acknowledged_by = Some(by.to_owned());
            a.acknowledged_at = Some(now);
        }
        a.version += 1;
        // What "handled" means for the equipment-level rules; sample rules'
        // trackers notice the missing alarm at their next evaluation.
        match rule.builtin() {
            None => {}
            Some(Rule::ControllerFault) => {
                eq.codes.clear();
                eq.codes_clear_since = None;
            }
            Some(Rule::FrequentFaults) => eq.ff_quiet = true,
            Some(Rule::DeviceOffline) => eq.offline.clear(),
            Some(rule) if rule.is_video() => video::resolved(eq, rule),
            Some(rule) if rule.is_filling() || rule == Rule::CertificateExpired => {
                filling::resolved(eq, rule, &a)
            }
            Some(rule) if rule.is_registry() => {
                self.schedule.resolved(&eq.binding.equipment_id, rule)
            }
            Some(_) => {}
        }
        self.book.by_alarm.remove(id);
        self.book.cleared.insert(id.clone());
        info!(alarm = %a.alarm_id, rule = %a.rule, by, "Alarm resolved.");
        Ok(a)
    }

    /// The current version of every open alarm of this engine.
    pub fn open_alarms(&self) -> impl Iterator<Item = &Alarm> {
        self.equipment
            .values()
            .flat_map(|eq| eq.slots.iter().flatten().map(|slot| &slot.alarm))
    }

    /// Takes a new configuration. Open alarms keep their severity until
    /// their next change; alarms of rules it disables clear at the next
    /// `tick` or reading.
    pub fn replace_config(&mut self, config: RuleConfig) {
        let definitions = config.definitions();
        self.resolver.replace(config);
        // A defined rule keeps its slot across reloads; one the new
        // configuration drops becomes an empty slot and its alarms clear.
        self.resolver.defined.fill(None);
        for def in definitions {
            let n = self.defined_slot(&def.id);
            self.resolver.defined[n] = Some(Arc::new(def));
        }
        self.retick_all = true;
    }

    /// The slot of defined rule `id` (see [`Key::defined`]): the one it had,
    /// or a new, empty one.
    fn defined_slot(&mut self, id: &RuleId) -> usize {
        let known = &self.book.rule_ids[Rule::COUNT..];
        if let Some(n) = known.iter().position(|known| known == id) {
            return n;
        }
        self.book.rule_ids.push(id.clone());
        self.resolver.defined.push(None);
        self.resolver.defined.len() - 1
    }

    fn open_slot(&mut self, id: &AlarmId) -> Result<&mut state::Slot, AlarmOpError> {
        let (eq_id, rule) = self
            .book
            .by_alarm
            .get(id)
            .cloned()
            .ok_or_else(|| self.missing(id))?;
        self.equipment
            .get_mut(&eq_id)
            .and_then(|eq| eq.slots[rule.index()].as_mut())
            .ok_or_else(|| AlarmOpError::NotFound(id.clone()))
    }

    fn missing(&self, id: &AlarmId) -> AlarmOpError {
        if self.book.cleared.contains(id) {
            AlarmOpError::AlreadyCleared(id.clone())
        } else {
            AlarmOpError::NotFound(id.clone())
        }
    }

    /// The registry moved a device to other equipment: it lets go of the
    /// alarms it held there and starts afresh.
    fn unbind(&mut self, dev_id: &DeviceId, ts: EpochMs, out: &mut Vec<Alarm>) {
        let Some(dev) = self.devices.remove(dev_id) else {
            return;
        };
        info!(device = %dev_id, from = %dev.equipment_id, "Device bound to other equipment; its rule state starts afresh.");
        let Some(old) = self.equipment.get_mut(&dev.equipment_id) else {
            return;
        };
        // Sample rules, built in and defined, hold alarms per device.
        let held: Vec<usize> = (old.slots.iter().enumerate())
            .filter(|(_, slot)| slot.as_ref().is_some_and(|s| s.holders.contains(dev_id)))
            .map(|(i, _)| i)
            .collect();
        for index in held {
            let key = Key::from_index(index);
            self.book.release(old, key, dev_id, ts, out);
        }
        video::release_device(&mut self.book, old, dev_id, ts, out);
        filling::release_device(&mut self.book, old, dev_id, ts, out);
        if old.offline.remove(dev_id) && old.offline.is_empty() {
            self.book.clear(old, Rule::DeviceOffline, ts, out);
        }
    }
}

/// Turns the configuration into per-equipment parameters, shared per
/// category unless an equipment has overrides of its own.
struct Resolver {
    config: RuleConfig,
    /// The defined rules' slots (see [`Key::defined`]).
    defined: Vec<Option<Arc<Definition>>>,
    generation: u64,
    defaults: Arc<ParamSet>,
    by_category: HashMap<String, Arc<ParamSet>>,
}

impl Resolver {
    fn new(config: RuleConfig) -> Resolver {
        if let Err(e) = config.validate() {
            warn!(error = %e, "Rule configuration has errors; the engine ignores what is invalid.");
        }
        let defaults = Arc::new(RuleConfig::default().resolve("elevator", None, &[]));
        Resolver {
            config,
            defined: Vec::new(),
            generation: 0,
            defaults,
            by_category: HashMap::new(),
        }
    }

    fn replace(&mut self, config: RuleConfig) {
        if let Err(e) = config.validate() {
            warn!(error = %e, "Rule configuration has errors; the engine ignores what is invalid.");
        }
        self.config = config;
        self.generation += 1;
        self.by_category.clear();
    }

    fn refresh(&mut self, eq: &mut EquipmentState) {
        if eq.params_gen == self.generation {
            return;
        }
        let category = eq.binding.category.as_str();
        let equipment = eq.binding.equipment_id.as_str();
        eq.params = if self.config.has_equipment_overrides(equipment) {
            Arc::new(
                self.config
                    .resolve(category, Some(equipment), &self.defined),
            )
        } else {
            match self.by_category.get(category) {
                Some(p) => Arc::clone(p),
                None => {
                    let p = Arc::new(self.config.resolve(category, None, &self.defined));
                    self.by_category.insert(category.to_owned(), Arc::clone(&p));
                    p
                }
            }
        };
        eq.params_gen = self.generation;
        eq.grow(eq.params.len());
    }
}
