//! The rule engine: readings, clock ticks and people's actions in, alarm
//! changes out. It keeps what every rule needs (devices, equipment, the
//! alarm book, the resolved parameters) and hands each moment to every
//! rule family in turn (`crate::family`).

pub(crate) mod book;
mod escalation;
mod restore;
pub(crate) mod state;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use tracing::{debug, info, warn};
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeviceContext, DeviceId, EpochMs, EquipmentId, Payload,
    Reading, RuleId,
};

use crate::catalogue::{Key, ParamSet, rules};
use crate::config::RuleConfig;
use crate::define::Definition;
use crate::error::AlarmOpError;
use crate::family::{
    Cx, DevCx, DevIx, DeviceTick, EqIx, Family, FillingFacts, Hooks, Local, Msg, RegistryFacts,
    TickDue, liveness,
};
use book::Book;
pub(crate) use escalation::Escalation;
use state::{Categories, DeviceCore, EquipmentCore, NEVER, StreamTs};

/// A reading this much older than the device's latest `ts`, but with a
/// newer `seq`, means the device clock stepped back rather than a late
/// delivery (seq is strictly increasing per device, across reboots).
const CLOCK_STEP_MS: EpochMs = 1_000;

/// Evaluates the rules for the equipment of one shard. Pure: no I/O, no
/// wall clock; the caller passes `now` and publishes what comes out.
pub struct RuleEngine {
    /// Every family with the key of its first rule and the hooks it
    /// implements, in calling order.
    families: Vec<(usize, Hooks, Box<dyn Family>)>,
    resolver: Resolver,
    world: World,
    /// The configuration changed: the next `tick` looks at every device.
    retick_all: bool,
    /// Local time minus UTC (working hours, operating hours, local days).
    local_offset_ms: i64,
    /// The key of liveness's first rule: `tick` asks it of every device
    /// (a silence deadline moves with every message).
    liveness_base: Option<usize>,
}

/// Devices and equipment by dense index, and the alarm book.
struct World {
    book: Book,
    /// Looked up on every reading: a fast hasher, seeded per process.
    device_ix: HashMap<DeviceId, DevIx, foldhash::fast::RandomState>,
    devices: Vec<DeviceCore>,
    equipment_ix: HashMap<EquipmentId, EqIx, foldhash::fast::RandomState>,
    equipment: Vec<EquipmentCore>,
    categories: Categories,
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
        let mut base = 0;
        let families = crate::family::all()
            .into_iter()
            .map(|f| {
                let first = base;
                base += f.rules().len();
                (first, f.hooks(), f)
            })
            .collect();
        let mut engine = RuleEngine {
            families,
            resolver: Resolver::new(RuleConfig::default()),
            world: World {
                book: Book::new(ids),
                device_ix: HashMap::default(),
                devices: Vec::new(),
                equipment_ix: HashMap::default(),
                equipment: Vec::new(),
                categories: Categories::default(),
            },
            retick_all: false,
            local_offset_ms: 0,
            liveness_base: None,
        };
        engine.liveness_base = (engine.families.iter())
            .find(|(_, _, f)| f.name() == "liveness")
            .map(|(base, _, _)| *base);
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
        if self.world.device_ix.contains_key(device) {
            return;
        }
        let eix = self.equipment_of(&ctx.binding, None);
        let eq = &mut self.world.equipment[eix];
        // Liveness reads the ride's operating hours from it.
        eq.note_registry(&ctx.params);
        let mut dev = DeviceCore::silent(device.clone(), self.id_hash(device), eix, last_seen);
        dev.report_interval_s = ctx.report_interval_s;
        self.world
            .device_ix
            .insert(device.clone(), self.world.devices.len());
        crate::family::push_modestly(&mut self.world.devices, dev);
    }

    /// Evaluates one accepted reading, in arrival order. `now` is the engine
    /// clock at receipt (liveness); rules measure durations on `reading.ts`.
    /// Returns every alarm change (raised, repeated, updated, cleared).
    ///
    /// The device's place in this engine is noted in `ctx`
    /// ([`DeviceContext::engine_slot`]): a caller that hands the same
    /// context with the device's next reading, as the registry's cache
    /// does, saves the lookup by id.
    pub fn on_reading(
        &mut self,
        reading: &Reading,
        ctx: &DeviceContext,
        now: EpochMs,
    ) -> Vec<Alarm> {
        let known = self.known(ctx, &reading.device_id);
        self.evaluate(known, reading, ctx, None, now)
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
        let known = self.known(ctx, &reading.device_id);
        self.evaluate(known, reading, ctx, Some(facts), now)
    }

    /// The device's place noted in `ctx` if it is `id`'s (compared by a
    /// hash kept in the device's record: the id itself is on the heap, a
    /// miss away), else `id`'s by lookup.
    fn known(&self, ctx: &DeviceContext, id: &DeviceId) -> Option<DevIx> {
        let noted = ctx.engine_slot.get().map(|ix| ix as usize);
        match noted.and_then(|dix| self.world.devices.get(dix).map(|dev| (dix, dev))) {
            Some((dix, dev)) if dev.id_hash == self.id_hash(id) => Some(dix),
            _ => self.lookup(id),
        }
    }

    fn lookup(&self, id: &DeviceId) -> Option<DevIx> {
        self.world.device_ix.get(id).copied()
    }

    fn id_hash(&self, id: &DeviceId) -> u64 {
        self.world.device_ix.hasher().hash_one(id)
    }

    fn evaluate(
        &mut self,
        known: Option<DevIx>,
        reading: &Reading,
        ctx: &DeviceContext,
        facts: Option<&FillingFacts>,
        now: EpochMs,
    ) -> Vec<Alarm> {
        let mut out = Vec::new();
        let dev_id = &reading.device_id;
        let eix = self.equipment_of(&ctx.binding, known.map(|dix| self.world.devices[dix].eq()));
        let dix = match known {
            Some(dix) => {
                if self.world.devices[dix].eq() != eix {
                    self.unbind(dix, reading.ts, &mut out);
                    let id_hash = self.world.devices[dix].id_hash;
                    self.world.devices[dix] =
                        DeviceCore::new(dev_id.clone(), id_hash, eix, reading, now);
                }
                dix
            }
            None => {
                let dix = self.world.devices.len();
                self.world.device_ix.insert(dev_id.clone(), dix);
                let id_hash = self.id_hash(dev_id);
                let dev = DeviceCore::new(dev_id.clone(), id_hash, eix, reading, now);
                crate::family::push_modestly(&mut self.world.devices, dev);
                dix
            }
        };
        if ctx.engine_slot.get() != Some(dix as u32) {
            ctx.engine_slot.set(dix as u32);
        }
        let dev = &mut self.world.devices[dix];
        dev.report_interval_s = ctx.report_interval_s;
        dev.last_received = dev.last_received.max(now);
        let eq = &mut self.world.equipment[eix];
        eq.note_registry(&ctx.params);
        let msg = Msg {
            payload: &reading.payload,
            ts: reading.ts,
            ctx,
            facts,
        };
        let time = (now, self.local_offset_ms);
        let stream = reading.payload.stream();
        self.each_on_device(
            dix,
            time,
            &mut out,
            |h| h.heard.has(stream),
            |f, cx| f.on_heard(cx, &msg),
        );

        let dev = &mut self.world.devices[dix];
        let stream_latest = match reading.payload {
            Payload::Elevator(_) => Some(StreamTs::Elevator),
            Payload::Event(_) => Some(StreamTs::Event),
            Payload::Ride(_) => Some(StreamTs::Ride),
            Payload::Video(_) => Some(StreamTs::Video),
            Payload::Filling(_) => None,
        }
        .map_or(NEVER, |s| dev.stream_ts[s as usize]);
        let newer_seq = !dev.seq_seen || reading.seq > dev.max_seq;
        dev.max_seq = if dev.seq_seen {
            dev.max_seq.max(reading.seq)
        } else {
            reading.seq
        };
        dev.seq_seen = true;
        if newer_seq && reading.ts.saturating_add(CLOCK_STEP_MS) < dev.last_ts {
            info!(device = %dev_id, seq = reading.seq, ts = reading.ts, last_ts = dev.last_ts, "Device clock stepped back; rule periods now run on the new clock.");
            dev.rebase(reading.ts);
            self.each_on_device(
                dix,
                time,
                &mut out,
                |h| h.rebase,
                |f, cx| f.on_rebase(cx, reading.ts),
            );
        } else if reading.ts < stream_latest {
            // A late message (overtaken by newer ones): it cannot become the
            // latest, which would rewind the rules' state; what it decides
            // on its own is judged at its own time.
            debug!(device = %dev_id, seq = reading.seq, ts = reading.ts, "Reading older than the device's latest; judged on its own.");
            self.each_on_device(
                dix,
                time,
                &mut out,
                |h| h.late.has(stream),
                |f, cx| f.on_late(cx, &msg),
            );
            return out;
        }
        let dev = &mut self.world.devices[dix];
        dev.last_ts = dev.last_ts.max(reading.ts);
        self.world.equipment[eix].advance_clock(reading.ts);
        self.each_on_device(
            dix,
            time,
            &mut out,
            |h| h.before.has(stream),
            |f, cx| f.before_message(cx, &msg),
        );

        // The reading becomes the device's latest of its stream.
        let dev = &mut self.world.devices[dix];
        match &reading.payload {
            Payload::Elevator(sample) => {
                dev.latest.set_elevator(sample);
                dev.stream_ts[StreamTs::Elevator as usize] = reading.ts;
            }
            Payload::Event(_) => dev.stream_ts[StreamTs::Event as usize] = reading.ts,
            Payload::Ride(sample) => {
                dev.latest.set_ride(sample);
                dev.stream_ts[StreamTs::Ride as usize] = reading.ts;
                self.world.equipment[eix].ride_state = Some(sample.state);
            }
            Payload::Video(_) => dev.stream_ts[StreamTs::Video as usize] = reading.ts,
            Payload::Filling(_) => {}
        }
        self.each_on_device(
            dix,
            time,
            &mut out,
            |h| h.message.has(stream),
            |f, cx| f.on_message(cx, &msg),
        );
        out
    }

    /// The registry-time rules (inspection due and overdue, maintenance
    /// overdue) over the registry's `facts` of every equipment of this
    /// engine, at wall time `now`; call it on a schedule (about a minute).
    /// Equipment missing from `facts` has its registry-time alarms cleared.
    pub fn registry_check(&mut self, facts: &[RegistryFacts], now: EpochMs) -> Vec<Alarm> {
        let mut out = Vec::new();
        // When each equipment's devices were last heard: "in use" for the
        // overdue-inspection rule means readings are flowing.
        let mut heard: Vec<Option<EpochMs>> = vec![None; self.world.equipment.len()];
        for dev in &self.world.devices {
            let t = &mut heard[dev.eq()];
            *t = Some(t.map_or(dev.last_received, |t| t.max(dev.last_received)));
        }
        let mut seen = vec![false; self.world.equipment.len()];
        let time = (now, self.local_offset_ms);
        for f in facts {
            let id = &f.binding.equipment_id;
            match self.world.equipment_ix.get(id) {
                Some(&eix) => {
                    seen[eix] = true;
                    let world = &mut self.world;
                    world.equipment[eix].rebind(&f.binding, &mut world.categories);
                    self.resolver.refresh(&mut self.world.equipment[eix]);
                    let heard = heard[eix];
                    self.each_on_equipment(eix, time, &mut out, ANY, |fam, cx| {
                        fam.on_registry(cx, Some(f), heard)
                    });
                }
                None => {
                    // Equipment without state gets some only if a rule raises.
                    let eix = self.world.equipment.len();
                    let categories = &mut self.world.categories;
                    let eq =
                        EquipmentCore::new(eix, &f.binding, categories, self.resolver.defaults());
                    crate::family::push_modestly(&mut self.world.equipment, eq);
                    self.resolver.refresh(&mut self.world.equipment[eix]);
                    let mut changes = Vec::new();
                    self.each_on_equipment(eix, time, &mut changes, ANY, |fam, cx| {
                        fam.on_registry(cx, Some(f), None)
                    });
                    let kept = (self.families.iter()).any(|(_, _, fam)| fam.holds_state(eix));
                    if changes.is_empty() && !kept {
                        self.world.equipment.pop();
                    } else {
                        self.world.equipment_ix.insert(id.clone(), eix);
                        out.extend(changes);
                    }
                }
            }
        }
        // Equipment gone from the registry (or moved to another shard): its
        // registry-time alarms end.
        for (eix, seen) in seen.into_iter().enumerate() {
            if !seen {
                self.each_on_equipment(eix, time, &mut out, ANY, |f, cx| {
                    f.on_registry(cx, None, None)
                });
            }
        }
        out
    }

    /// Advances time to the wall clock `now` (call it about once a second).
    /// A silent device's clock runs on from its last `ts` by the wall time
    /// since its last message, so pending `for` durations fire and clear
    /// periods end on time; devices silent too long go offline; the
    /// frequent-faults window slides.
    pub fn tick(&mut self, now: EpochMs) -> Vec<Alarm> {
        self.tick_heard(now, now)
    }

    /// [`RuleEngine::tick`] for a caller whose readings may wait before they
    /// reach the engine: every reading received before `heard_through` has
    /// been handed over. A device's silence is measured up to then, not up
    /// to `now`: while ingest stands still (a stalled store), devices that
    /// keep sending are not taken offline, nor their clocks run on as if
    /// they had gone quiet. Other timers keep the wall clock.
    pub fn tick_heard(&mut self, now: EpochMs, heard_through: EpochMs) -> Vec<Alarm> {
        let heard = heard_through.min(now);
        let mut out = Vec::new();
        let everything = std::mem::take(&mut self.retick_all);
        let time = (now, self.local_offset_ms);
        // What the families' device hooks could act on: the others are not
        // called (their hooks would return at once), only their clocks run.
        let mut due = TickDue::default();
        let mut all = everything;
        for (base, hooks, family) in &self.families {
            if hooks.device_tick && !family.tick_due(*base, &mut due) {
                all = true;
            }
        }
        for dix in 0..self.world.devices.len() {
            let dev = &self.world.devices[dix];
            let eix = dev.eq();
            let silent_ms = heard.saturating_sub(dev.last_received).max(0);
            let tick = DeviceTick {
                device_now: dev.last_ts.saturating_add(silent_ms),
                silent_ms,
                everything,
            };
            let eq = &mut self.world.equipment[eix];
            self.resolver.refresh(eq);
            eq.advance_clock(tick.device_now);
            // Read now, not before the loop: an earlier device's hooks may
            // have opened an alarm of this equipment.
            let wanted = all
                || due.devices.get(dix)
                || due.equipment.get(eix)
                || eq.open_bits() & due.open != 0
                || self
                    .liveness_base
                    .is_some_and(|base| liveness::due(dev, &eq.params, base, silent_ms));
            if !wanted {
                continue;
            }
            self.each_on_device(
                dix,
                time,
                &mut out,
                |h| h.device_tick,
                |f, cx| f.on_device_tick(cx, &tick),
            );
        }
        for eix in 0..self.world.equipment.len() {
            self.resolver.refresh(&mut self.world.equipment[eix]);
            self.each_on_equipment(
                eix,
                time,
                &mut out,
                |h| h.equipment_tick,
                |f, cx| f.on_equipment_tick(cx),
            );
        }
        escalation::escalate(
            &mut self.world.equipment,
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
        let (eix, key) = self.open_alarm(id)?;
        let slot = self.world.equipment[eix]
            .slot_mut(key)
            .ok_or_else(|| AlarmOpError::NotFound(id.clone()))?;
        let a = slot.head_mut();
        if a.state == AlarmState::Acknowledged {
            return Ok(slot.alarm());
        }
        a.state = AlarmState::Acknowledged;
        a.acknowledged_at = Some(now);
        a.acknowledged_by = Some(by.to_owned());
        a.updated_at = now;
        a.version += 1;
        info!(alarm = %a.alarm_id, rule = %a.rule, by, "Alarm acknowledged.");
        Ok(slot.alarm())
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
        let (eix, key) = self.open_alarm(id)?;
        let eq = &mut self.world.equipment[eix];
        let slot = eq
            .take_slot(key)
            .ok_or_else(|| AlarmOpError::NotFound(id.clone()))?;
        eq.set_cleared_at(key, now);
        let mut a = slot.into_alarm();
        a.state = AlarmState::Cleared;
        a.cleared_at = Some(now);
        a.updated_at = now;
        a.note = Some(note.to_owned());
        if a.acknowledged_by.is_none() {
            a.acknowledged_by = Some(by.to_owned());
            a.acknowledged_at = Some(now);
        }
        a.version += 1;
        // What "handled" means is the rule's family's to say; per-device
        // conditions notice the missing alarm at their next evaluation.
        let owner = self.family_of(key);
        let (base, _, family) = &mut self.families[owner];
        let mut ignored = Vec::new();
        let params = Arc::clone(&self.world.equipment[eix].params);
        let mut cx = Cx {
            book: &mut self.world.book,
            eq: &mut self.world.equipment[eix],
            params: &params,
            out: &mut ignored,
            now,
            local_offset_ms: self.local_offset_ms,
            base: *base,
        };
        family.on_resolve(&mut cx, Local((key.index() - *base) as u16), &a);
        self.world.book.by_alarm.remove(id);
        self.world.book.cleared.insert(id);
        info!(alarm = %a.alarm_id, rule = %a.rule, by, "Alarm resolved.");
        Ok(a)
    }

    /// The current version of every open alarm of this engine (made as
    /// it is read: the engine keeps their details in a compact form).
    pub fn open_alarms(&self) -> impl Iterator<Item = Alarm> + '_ {
        self.world
            .equipment
            .iter()
            .flat_map(|eq| eq.slots.iter().map(|slot| slot.alarm()))
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
        self.announce_defined();
        self.retick_all = true;
    }

    /// Tells the families which rules are defined, by slot.
    fn announce_defined(&mut self) {
        for (_, _, f) in &mut self.families {
            f.on_config(&self.resolver.defined);
        }
    }

    /// The slot of defined rule `id` (see [`Key::defined`]): the one it had,
    /// or a new, empty one.
    fn defined_slot(&mut self, id: &RuleId) -> usize {
        let known = &self.world.book.rule_ids[rules().len()..];
        if let Some(n) = known.iter().position(|known| known == id) {
            return n;
        }
        self.world.book.rule_ids.push(id.clone());
        self.resolver.defined.push(None);
        self.resolver.defined.len() - 1
    }

    /// The equipment of an alarm this engine has open.
    fn open_alarm(&self, id: &AlarmId) -> Result<(EqIx, Key), AlarmOpError> {
        match self.world.book.by_alarm.get(id) {
            Some(&found) => Ok(found),
            None if self.world.book.cleared.contains(id) => {
                Err(AlarmOpError::AlreadyCleared(id.clone()))
            }
            None => Err(AlarmOpError::NotFound(id.clone())),
        }
    }

    /// The index of the family whose rule `key` is.
    fn family_of(&self, key: Key) -> usize {
        // Bases ascend; a family owns the keys from its base to the next
        // family's (the last one, defined rules, every key after it).
        self.families
            .iter()
            .rposition(|(base, _, _)| key.index() >= *base)
            .unwrap_or(0)
    }

    /// The equipment of `binding`, made (or rebound) and with its
    /// parameters current. `hint`: the equipment the device was bound to,
    /// most likely the same one (no lookup by id then).
    fn equipment_of(&mut self, binding: &Binding, hint: Option<EqIx>) -> EqIx {
        let hinted = hint.filter(|&eix| {
            let known = &self.world.equipment[eix].binding.equipment_id;
            state::same_text(known.as_str(), binding.equipment_id.as_str())
        });
        let eix =
            match hinted.or_else(|| self.world.equipment_ix.get(&binding.equipment_id).copied()) {
                Some(eix) => eix,
                None => {
                    let eix = self.world.equipment.len();
                    let categories = &mut self.world.categories;
                    let eq = EquipmentCore::new(eix, binding, categories, self.resolver.defaults());
                    crate::family::push_modestly(&mut self.world.equipment, eq);
                    self.world
                        .equipment_ix
                        .insert(binding.equipment_id.clone(), eix);
                    eix
                }
            };
        let eq = &mut self.world.equipment[eix];
        eq.rebind(binding, &mut self.world.categories);
        self.resolver.refresh(eq);
        eix
    }

    /// The registry moved a device to other equipment: it lets go of the
    /// alarms it held there; its state starts afresh.
    fn unbind(&mut self, dix: DevIx, ts: EpochMs, out: &mut Vec<Alarm>) {
        let dev = &self.world.devices[dix];
        let (id, old) = (dev.id.clone(), dev.eq());
        info!(device = %id, from = %self.world.equipment[old].binding.equipment_id, "Device bound to other equipment; its rule state starts afresh.");
        // Per-device conditions, built in and defined, hold alarms.
        let eq = &mut self.world.equipment[old];
        let held: Vec<Key> = (eq.slots.iter())
            .filter(|slot| slot.holders.contains(&dix))
            .map(|slot| slot.key)
            .collect();
        for key in held {
            self.world.book.release(eq, key, dix, ts, out);
        }
        let time = (ts, self.local_offset_ms);
        self.each_on_equipment(old, time, out, ANY, |f, cx| f.on_release(cx, dix, &id, ts));
    }

    /// Runs `hook` of every family that `wants` it, in order, for device `dix`.
    fn each_on_device(
        &mut self,
        dix: DevIx,
        (now, local_offset_ms): (EpochMs, i64),
        out: &mut Vec<Alarm>,
        wants: impl Fn(&Hooks) -> bool,
        mut hook: impl FnMut(&mut dyn Family, &mut DevCx<'_>),
    ) {
        let dev = &mut self.world.devices[dix];
        let eq = &mut self.world.equipment[dev.eq()];
        // Hooks do not resolve parameters again: one set for every family.
        let params = Arc::clone(&eq.params);
        for (base, hooks, family) in &mut self.families {
            if !wants(hooks) {
                continue;
            }
            let mut cx = DevCx {
                cx: Cx {
                    book: &mut self.world.book,
                    eq,
                    params: &params,
                    out,
                    now,
                    local_offset_ms,
                    base: *base,
                },
                dev,
                ix: dix,
            };
            hook(family.as_mut(), &mut cx);
        }
    }

    /// Runs `hook` of every family that `wants` it, in order, for equipment `eix`.
    fn each_on_equipment(
        &mut self,
        eix: EqIx,
        (now, local_offset_ms): (EpochMs, i64),
        out: &mut Vec<Alarm>,
        wants: impl Fn(&Hooks) -> bool,
        mut hook: impl FnMut(&mut dyn Family, &mut Cx<'_>),
    ) {
        let eq = &mut self.world.equipment[eix];
        let params = Arc::clone(&eq.params);
        for (base, hooks, family) in &mut self.families {
            if !wants(hooks) {
                continue;
            }
            let mut cx = Cx {
                book: &mut self.world.book,
                eq,
                params: &params,
                out,
                now,
                local_offset_ms,
                base: *base,
            };
            hook(family.as_mut(), &mut cx);
        }
    }
}

/// For hooks every family gets (rare ones: registry checks, releases).
const ANY: fn(&Hooks) -> bool = |_| true;

/// Turns the configuration into per-equipment parameters, shared per
/// category unless an equipment has overrides of its own.
struct Resolver {
    config: RuleConfig,
    /// The defined rules' slots (see [`Key::defined`]).
    defined: Vec<Option<Arc<Definition>>>,
    /// Never [`state::STALE`].
    generation: u32,
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

    fn defaults(&self) -> Arc<ParamSet> {
        Arc::clone(&self.defaults)
    }

    fn replace(&mut self, config: RuleConfig) {
        if let Err(e) = config.validate() {
            warn!(error = %e, "Rule configuration has errors; the engine ignores what is invalid.");
        }
        self.config = config;
        // 2^32 reloads wrap it past STALE, never onto it.
        self.generation = self.generation.wrapping_add(1) % state::STALE;
        self.by_category.clear();
    }

    fn refresh(&mut self, eq: &mut EquipmentCore) {
        if eq.params_gen == self.generation {
            return;
        }
        let category = &*eq.binding.category;
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
        eq.inputs = state::next_inputs(eq.inputs);
    }
}
