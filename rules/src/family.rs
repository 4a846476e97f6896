//! Rule families: the one contract every group of rules implements, and
//! the list of families the engine runs.
//!
//! A family is the rules that share a stream and a kind of memory (the
//! elevator sample rules, the video rules, liveness, …). It declares its
//! rules ([`crate::catalogue::Decl`], with the [`rules!`] macro), keeps its
//! own state per device and per equipment (by the engine's dense indices,
//! [`DevIx`] and [`EqIx`]), and implements the hooks of [`Family`] it
//! needs. Each hook gets a [`Cx`]: the alarm book, the equipment (and for
//! device hooks, in a [`DevCx`], the device), the time and the output. The
//! engine calls every family's hook in the order of [`all`].
//!
//! To add a built-in rule, add it to its family's `rules!` declaration and
//! evaluate it in that family's hooks; `catalogue.toml` takes its condition
//! if it is one of a sample. To add a family, write `family/NAME.rs` and
//! list it in [`all`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde_json::Value;
use vigil_model::{Alarm, DeviceContext, DeviceId, EpochMs, Payload, Severity, Stream};

use crate::catalogue::{Decl, Key, ParamSet, Params};
use crate::define::Definition;
use crate::engine::book::{Book, Fire, Slot};
use crate::engine::state::{DeviceCore, EquipmentCore, Step, Tracker};

pub(crate) mod anomaly;
pub(crate) mod controller;
pub(crate) mod daily;
pub(crate) mod defined;
pub(crate) mod elevator;
pub(crate) mod filling;
pub(crate) mod frequent;
pub(crate) mod liveness;
pub(crate) mod registry;
pub(crate) mod rides;
pub(crate) mod video;

pub use filling::{CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts};
pub use registry::{MaintenanceFacts, RegistryFacts, Telemetry, UNVERIFIED_WINDOW_MS};

/// Every family, in the order the engine calls their hooks (and `vigil
/// rules list` lists their rules). Order matters twice: liveness comes
/// before filling (`filling.records_missing` asks whether the scale is
/// online), and frequent faults after elevator and controller (it counts
/// what they raised in the same call). Defined rules come last: their keys
/// follow every built-in one.
pub(crate) fn all() -> Vec<Box<dyn Family>> {
    vec![
        Box::new(elevator::Elevator::default()),
        Box::new(controller::Controller::default()),
        Box::new(frequent::Frequent::default()),
        Box::new(rides::Rides::default()),
        Box::new(daily::Daily::default()),
        Box::new(video::Video::default()),
        Box::new(liveness::Liveness::default()),
        Box::new(filling::Filling::default()),
        Box::new(registry::Registry::default()),
        Box::new(anomaly::Anomaly::default()),
        Box::new(defined::Defined::default()),
    ]
}

/// A group of rules and their state. Every hook but [`Family::rules`] does
/// nothing by default.
pub(crate) trait Family: Send {
    /// The family's name in docs/rules.md's generated tables.
    fn name(&self) -> &'static str;

    /// The built-in rules it declares, in the order of its [`Local`] ids.
    fn rules(&self) -> &'static [Decl];

    /// Which of the per-reading and per-tick hooks it implements, and for
    /// which streams: the engine calls no others. Saying more than it
    /// implements costs time, saying less loses evaluations.
    fn hooks(&self) -> Hooks;

    /// A configuration was loaded; `defined` are its defined rules by slot.
    fn on_config(&mut self, _defined: &[Option<Arc<Definition>>]) {}

    /// Any accepted reading of the device, late ones included: it is
    /// alive, and the registry's context of it is current.
    fn on_heard(&mut self, _cx: &mut DevCx<'_>, _msg: &Msg<'_>) {}

    /// The device's clock stepped back to `t`: running periods measure
    /// from `t` on.
    fn on_rebase(&mut self, _cx: &mut DevCx<'_>, _t: EpochMs) {}

    /// A reading to evaluate, before the engine keeps it as the device's
    /// latest sample: periods running on the previous sample reach its time.
    fn before_message(&mut self, _cx: &mut DevCx<'_>, _msg: &Msg<'_>) {}

    /// A reading to evaluate, now the device's latest of its stream.
    fn on_message(&mut self, _cx: &mut DevCx<'_>, _msg: &Msg<'_>) {}

    /// A late reading: older than the latest its stream evaluated, so it
    /// cannot become the device's latest. Families judge what the reading
    /// alone decides, at its own time ([`DevCx::fire_late`]).
    fn on_late(&mut self, _cx: &mut DevCx<'_>, _msg: &Msg<'_>) {}

    /// The wall clock moved on; the device's clock is `tick.device_now`.
    fn on_device_tick(&mut self, _cx: &mut DevCx<'_>, _tick: &DeviceTick) {}

    /// Before a tick: marks in `due` what this family's `on_device_tick`
    /// could act on now (devices, equipment, and rules whose open alarm
    /// makes it act wherever one is open; its first rule's key is
    /// `base`), so `tick` calls the hook for those devices only. Marking
    /// more costs a call, marking less loses evaluations. `false`: it
    /// cannot say, and every device is visited (the default).
    fn tick_due(&self, _base: usize, _due: &mut TickDue) -> bool {
        false
    }

    /// The wall clock moved on (after every device's tick).
    fn on_equipment_tick(&mut self, _cx: &mut Cx<'_>) {}

    /// The registry's facts of the equipment on a schedule (`None`: it left
    /// the registry or this shard). `heard` is when a device of it was last heard.
    fn on_registry(
        &mut self,
        _cx: &mut Cx<'_>,
        _facts: Option<&RegistryFacts>,
        _heard: Option<EpochMs>,
    ) {
    }

    /// Whether it keeps state of equipment `eq` (the engine keeps equipment
    /// that a registry check gave state, even without an alarm).
    fn holds_state(&self, _eq: EqIx) -> bool {
        false
    }

    /// A person resolved this family's alarm `rule` (already cleared).
    fn on_resolve(&mut self, _cx: &mut Cx<'_>, _rule: Local, _alarm: &Alarm) {}

    /// The device is bound to other equipment (noticed at its reading of
    /// device time `at`): let go of it here. The engine has already
    /// released the alarms it held as a holder.
    fn on_release(&mut self, _cx: &mut Cx<'_>, _dev: DevIx, _id: &DeviceId, _at: EpochMs) {}

    /// After a restart: the stored versions of one alarm of rule `key`
    /// (any family's; the latest last), before it is open again.
    fn on_restore(&mut self, _cx: &mut Cx<'_>, _key: Key, _versions: &[Alarm]) {}
}

/// The frequent hooks a family implements ([`Family::hooks`]). A call of
/// every family's hook on every reading and tick, most of them returning at
/// once, was a fifth of the engine's time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hooks {
    pub heard: Streams,
    pub rebase: bool,
    pub before: Streams,
    pub message: Streams,
    pub late: Streams,
    pub device_tick: bool,
    pub equipment_tick: bool,
}

impl Hooks {
    /// None of them (every field is set by the family).
    pub(crate) const NONE: Hooks = Hooks {
        heard: Streams::NONE,
        rebase: false,
        before: Streams::NONE,
        message: Streams::NONE,
        late: Streams::NONE,
        device_tick: false,
        equipment_tick: false,
    };
}

/// A set of streams: the readings a hook wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streams(u8);

impl Streams {
    pub(crate) const NONE: Streams = Streams(0);
    pub(crate) const ALL: Streams = Streams::of(&Stream::ALL);

    pub(crate) const fn of(streams: &[Stream]) -> Streams {
        let mut bits = 0;
        let mut i = 0;
        while i < streams.len() {
            bits |= Streams::bit(streams[i]);
            i += 1;
        }
        Streams(bits)
    }

    const fn bit(stream: Stream) -> u8 {
        1 << stream as u8
    }

    pub(crate) fn has(self, stream: Stream) -> bool {
        self.0 & Streams::bit(stream) != 0
    }
}

/// Declares a family's rules once: an enum to name them by in code, and
/// their [`Decl`]s in the same order.
///
/// ```text
/// rules! {
///     pub(crate) enum Rule {
///         Trapped = Decl { id: "elevator.trapped", …, ..Decl::BASE },
///     }
/// }
/// ```
macro_rules! rules {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $decl:expr),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every rule of the family, in declaration order.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Their declarations, in the same order.
            pub(crate) const DECLS: &'static [$crate::catalogue::Decl] = &[$($decl),+];

            #[allow(dead_code)]
            pub(crate) const fn decl(self) -> &'static $crate::catalogue::Decl {
                &Self::DECLS[self as usize]
            }
        }

        impl From<$name> for $crate::family::Local {
            fn from(rule: $name) -> Self {
                $crate::family::Local(rule as u16)
            }
        }
    };
}
pub(crate) use rules;

/// A rule of one family: its index among the family's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Local(pub u16);

impl Local {
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The engine's index of a device.
pub(crate) type DevIx = usize;
/// The engine's index of a piece of equipment.
pub(crate) type EqIx = usize;

/// A reading as the families see it.
pub(crate) struct Msg<'a> {
    pub payload: &'a Payload,
    /// Device time.
    pub ts: EpochMs,
    pub ctx: &'a DeviceContext,
    /// What the registry says of a filling record's cylinder and operator.
    pub facts: Option<&'a FillingFacts>,
}

/// What the families' `on_device_tick` could act on at a tick
/// ([`Family::tick_due`]): by device, by equipment, and the rules whose
/// open alarms ([`EquipmentCore::open_bits`]) make them act. A tick used
/// to call every family's hook for every device, each returning at once
/// for most of them: a fifth of the engine's time.
#[derive(Debug, Default)]
pub(crate) struct TickDue {
    pub devices: Bits,
    pub equipment: Bits,
    pub open: u64,
}

impl TickDue {
    /// Rule `local` of the family whose first key is `base`: its open alarm
    /// makes the family's tick act.
    pub(crate) fn open(&mut self, base: usize, local: impl Into<Local>) {
        let key = Key::from_index(base + local.into().index());
        self.open |= crate::engine::state::open_bit(key);
    }
}

/// A tick as one device sees it.
pub(crate) struct DeviceTick {
    /// The device's clock: its last `ts` plus the wall time since.
    pub device_now: EpochMs,
    /// Wall time since its last message.
    pub silent_ms: i64,
    /// The configuration changed: re-evaluate even what is not running.
    pub everything: bool,
}

/// What a hook works with: the alarm book, one piece of equipment, the
/// time and the output. Rules are named by the family's own [`Local`] ids.
pub(crate) struct Cx<'a> {
    pub book: &'a mut Book,
    pub eq: &'a mut EquipmentCore,
    /// The equipment's resolved parameters (`eq.params`, held apart so
    /// that reading them does not borrow the context).
    pub params: &'a ParamSet,
    pub out: &'a mut Vec<Alarm>,
    /// Engine (wall) time of the call.
    pub now: EpochMs,
    /// Local time minus UTC (working and operating hours, local days).
    pub local_offset_ms: i64,
    /// The key of the family's first rule.
    pub base: usize,
}

/// A [`Cx`] for one device of the equipment.
pub(crate) struct DevCx<'a> {
    pub cx: Cx<'a>,
    pub dev: &'a mut DeviceCore,
    pub ix: DevIx,
}

impl<'a> Deref for DevCx<'a> {
    type Target = Cx<'a>;
    fn deref(&self) -> &Cx<'a> {
        &self.cx
    }
}

impl DerefMut for DevCx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cx
    }
}

/// The parameters of one family's rules for one piece of equipment.
#[derive(Clone, Copy)]
pub(crate) struct Tuning<'a> {
    set: &'a ParamSet,
    base: usize,
}

impl<'a> Tuning<'a> {
    pub(crate) fn of(&self, rule: impl Into<Local>) -> &'a Params {
        self.set
            .get(Key::from_index(self.base + rule.into().index()))
    }
}

impl<'a> Cx<'a> {
    pub(crate) fn key(&self, rule: impl Into<Local>) -> Key {
        Key::from_index(self.base + rule.into().index())
    }

    /// This family's rule of `key`, if it is one of its rules.
    pub(crate) fn local(&self, key: Key, count: usize) -> Option<Local> {
        let i = key.index().checked_sub(self.base)?;
        (i < count).then_some(Local(i as u16))
    }

    /// The equipment's resolved parameters of this family's rules (shared:
    /// holding them does not borrow the context).
    pub(crate) fn tuning(&self) -> Tuning<'a> {
        Tuning {
            set: self.params,
            base: self.base,
        }
    }

    pub(crate) fn slot(&self, rule: impl Into<Local>) -> Option<&Slot> {
        self.eq.slot(self.key(rule))
    }

    pub(crate) fn is_open(&self, rule: impl Into<Local>) -> bool {
        self.slot(rule).is_some()
    }

    /// The rule qualified on `by`'s word: raise its alarm, or repeat the
    /// open one (count + 1).
    pub(crate) fn fire_by(
        &mut self,
        rule: impl Into<Local>,
        by: &DeviceId,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) {
        let fire = self.firing(rule, severity, at, details);
        self.book.fire(self.eq, fire, by, None, self.out);
    }

    fn firing(
        &self,
        rule: impl Into<Local>,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) -> Fire {
        Fire {
            key: self.key(rule),
            severity,
            at,
            details,
        }
    }

    /// A new alarm no device raised (registry-time rules).
    pub(crate) fn raise(
        &mut self,
        rule: impl Into<Local>,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) {
        let fire = self.firing(rule, severity, at, details);
        let alarm = self.book.raise(self.eq, fire, None, Vec::new());
        self.out.push(alarm);
    }

    /// A new version of the open alarm without a new occurrence.
    pub(crate) fn update(
        &mut self,
        rule: impl Into<Local>,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) {
        let key = self.key(rule);
        self.book
            .update(self.eq, key, severity, at, details, self.out);
    }

    /// The rule clears its open alarm at `at` (nothing if none is open).
    pub(crate) fn clear(&mut self, rule: impl Into<Local>, at: EpochMs) {
        let key = self.key(rule);
        self.book.clear(self.eq, key, at, self.out);
    }

    /// An alarm that ends `clear_s` after its rule's last qualifying event
    /// (video, filling, defined event rules): `last` is that event's time
    /// and device. Clears it when the rule is disabled, or once `dev_id`'s
    /// clock `t` has passed the quiet period of an event of `dev_id`;
    /// returns what `last` becomes.
    pub(crate) fn quiet_period(
        &mut self,
        rule: impl Into<Local>,
        last: Option<(EpochMs, DeviceId)>,
        dev_id: &DeviceId,
        t: EpochMs,
    ) -> Option<(EpochMs, DeviceId)> {
        let rule = rule.into();
        let tuning = self.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            self.clear(rule, t);
            return None;
        }
        self.slot(rule)?;
        match last {
            // The time first: the id of another device is a miss away.
            Some((at, by)) if t.saturating_sub(at) >= p.clear_ms && by == *dev_id => {
                self.clear(rule, at + p.clear_ms);
                None
            }
            other => other,
        }
    }
}

impl Cx<'_> {
    /// `dev_id` is bound to other equipment: the alarms of `rules` (each
    /// open until a quiet period after its last event, `lasts`) that its
    /// events were keeping open here clear at `at`.
    pub(crate) fn let_go<R: Into<Local> + Copy>(
        &mut self,
        rules: &[R],
        lasts: &mut [Option<(EpochMs, DeviceId)>],
        dev_id: &DeviceId,
        at: EpochMs,
    ) {
        for (&rule, last) in rules.iter().zip(lasts) {
            if last.as_ref().is_some_and(|(_, by)| by == dev_id) {
                *last = None;
                self.clear(rule, at);
            }
        }
    }
}

impl DevCx<'_> {
    /// The rule qualified on this device: raise or repeat.
    pub(crate) fn fire(
        &mut self,
        rule: impl Into<Local>,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) {
        let fire = self.cx.firing(rule, severity, at, details);
        self.fire_here(fire, false);
    }

    /// As [`DevCx::fire`], and this device's condition keeps the alarm
    /// open until it lets go ([`DevCx::release_mine`]).
    pub(crate) fn hold(
        &mut self,
        rule: impl Into<Local>,
        severity: Severity,
        at: EpochMs,
        details: Value,
    ) {
        let fire = self.cx.firing(rule, severity, at, details);
        self.fire_here(fire, true);
    }

    fn fire_here(&mut self, fire: Fire, holder: bool) {
        let cx = &mut self.cx;
        let holder = holder.then_some(self.ix);
        cx.book.fire(cx.eq, fire, &self.dev.id, holder, cx.out);
    }

    /// A late reading at device time `at` satisfies `rule` on its own (a
    /// point condition: no `for`, no earlier samples needed). `run` is the
    /// time of the device's previous late reading that satisfied the rule:
    /// one less than the clear period from it continues its occurrence. One that belongs to the open
    /// alarm's episode (no earlier than its `raised_at` − clear period)
    /// changes nothing; else the rule fires at `at`: a repeat of the open
    /// alarm, or a new alarm stamped `at` that nobody holds, which the
    /// device's live condition adopts at its next evaluation (and clears a
    /// clear period after it is false), as after a restart.
    pub(crate) fn fire_late(
        &mut self,
        rule: impl Into<Local>,
        run: &mut Option<EpochMs>,
        p: &Params,
        at: EpochMs,
        details: Value,
    ) -> bool {
        let rule = rule.into();
        let gap = p.clear_ms.max(1_000);
        let same_run = run.is_some_and(|last| (at - last).abs() < gap);
        *run = Some(at);
        if same_run {
            return false;
        }
        if self
            .slot(rule)
            .is_some_and(|s| at >= s.head().raised_at - gap)
        {
            return false;
        }
        let fire = self.cx.firing(rule, p.severity, at, details);
        self.fire_here(fire, false);
        true
    }

    /// [`Cx::quiet_period`] of each of `rules`, whose last qualifying
    /// events are `lasts`, on this device's clock `t`.
    pub(crate) fn quiet_periods<R: Into<Local> + Copy>(
        &mut self,
        rules: &[R],
        lasts: &mut [Option<(EpochMs, DeviceId)>],
        t: EpochMs,
    ) {
        for (&rule, last) in rules.iter().zip(lasts) {
            *last = self.cx.quiet_period(rule, last.take(), &self.dev.id, t);
        }
    }

    /// This device's condition no longer holds the alarm open; the last
    /// holder clears it.
    pub(crate) fn release_mine(&mut self, rule: impl Into<Local>, at: EpochMs) {
        let key = self.cx.key(rule);
        let cx = &mut self.cx;
        cx.book.release(cx.eq, key, self.ix, at, cx.out);
    }

    /// An occurrence of `rule` on this device at `at` with `severity`:
    /// major and critical ones of rules that count as faults feed
    /// `elevator.frequent_faults`.
    pub(crate) fn count_fault(&mut self, rule: impl Into<Local>, severity: Severity, at: EpochMs) {
        let key = self.cx.key(rule);
        self.cx.eq.record_fault(key, severity, at, &self.dev.id);
    }

    /// The first half of a per-device condition's turn: a tracker whose
    /// run the equipment's alarm no longer follows (resolved by a person,
    /// rule disabled, restored over) starts over, so a condition that still
    /// holds must qualify again from here; a disabled rule clears its
    /// alarm. Returns whether the rule is to be evaluated.
    pub(crate) fn sync(
        &mut self,
        rule: impl Into<Local>,
        tr: &mut Tracker,
        enabled: bool,
        t: EpochMs,
    ) -> bool {
        let rule = rule.into();
        let followed = self
            .slot(rule)
            .is_some_and(|s| s.holders.contains(&self.ix));
        if (tr.held && !followed) || !enabled {
            *tr = Tracker::default();
        }
        if !enabled {
            self.clear(rule, t);
        }
        enabled
    }

    /// The second half: a restored alarm nobody holds is adopted, then the
    /// tracker steps to `t` with the condition's `due` time (`None`: false),
    /// firing (with the details `details` gives for the firing time) or
    /// releasing. Returns the firing time, if it fired.
    pub(crate) fn step(
        &mut self,
        rule: impl Into<Local>,
        tr: &mut Tracker,
        p: &Params,
        due: Option<EpochMs>,
        t: EpochMs,
        details: impl FnOnce(EpochMs) -> Value,
    ) -> Option<EpochMs> {
        let key = self.key(rule);
        if !tr.held
            && let Some(slot) = self.cx.eq.slot_mut(key)
            && slot.holders.is_empty()
        {
            tr.adopt(due.is_some(), t);
            slot.holders.push(self.ix);
        }
        match tr.step(due, t, p.clear_ms) {
            Step::Fire(at) => {
                let fire = Fire {
                    key,
                    severity: p.severity,
                    at,
                    details: details(at),
                };
                self.fire_here(fire, true);
                Some(at)
            }
            Step::Release(at) => {
                let cx = &mut self.cx;
                cx.book.release(cx.eq, key, self.ix, at, cx.out);
                None
            }
            Step::Idle => None,
        }
    }
}

/// A family's state of each device or piece of equipment, by the engine's
/// dense index; a slot is made (as `T::default()`) when first used.
#[derive(Debug)]
pub(crate) struct Dense<T>(Vec<T>);

impl<T> Default for Dense<T> {
    fn default() -> Self {
        Dense(Vec::new())
    }
}

impl<T: Default> Dense<T> {
    pub(crate) fn get(&self, ix: usize) -> Option<&T> {
        self.0.get(ix)
    }

    pub(crate) fn at(&mut self, ix: usize) -> &mut T {
        if self.0.len() <= ix {
            reserve_modestly(&mut self.0, ix + 1);
            self.0.resize_with(ix + 1, T::default);
        }
        &mut self.0[ix]
    }

    pub(crate) fn get_mut(&mut self, ix: usize) -> Option<&mut T> {
        self.0.get_mut(ix)
    }

    /// Forgets what was kept at `ix`.
    pub(crate) fn reset(&mut self, ix: usize) {
        if let Some(slot) = self.0.get_mut(ix) {
            *slot = T::default();
        }
    }
}

/// A flag per device or equipment, by the engine's dense index, kept
/// apart from the family's records: `tick` reads it for every device, and
/// a bit per device stays in cache where the records (hundreds of bytes
/// each) would each be a miss.
#[derive(Debug, Default)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    /// Sets every bit `other` has.
    pub(crate) fn union_with(&mut self, other: &Bits) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (word, more) in self.0.iter_mut().zip(&other.0) {
            *word |= more;
        }
    }

    pub(crate) fn get(&self, ix: usize) -> bool {
        self.0
            .get(ix / 64)
            .is_some_and(|w| w & (1 << (ix % 64)) != 0)
    }

    pub(crate) fn set(&mut self, ix: usize, on: bool) {
        let word = ix / 64;
        if self.0.len() <= word {
            if !on {
                return;
            }
            self.0.resize(word + 1, 0);
        }
        if on {
            self.0[word] |= 1 << (ix % 64);
        } else {
            self.0[word] &= !(1 << (ix % 64));
        }
    }
}

/// As [`Dense`], for state that few pieces of equipment or devices ever
/// get (a controller's active codes, an offline list, an event rule's
/// last event, a station's records): a place for each index would cost
/// every equipment. A bit per index says whether it has an entry, so the
/// question most ticks ask of every device ("anything kept here?") is
/// answered without a probe of the table (a random bucket, a cache miss).
#[derive(Debug)]
pub(crate) struct Few<T> {
    map: Sparse<T>,
    kept: Bits,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few {
            map: Sparse::default(),
            kept: Bits::default(),
        }
    }
}

impl<T: Default> Few<T> {
    /// A bit for each index with an entry.
    pub(crate) fn kept(&self) -> &Bits {
        &self.kept
    }

    pub(crate) fn get(&self, ix: usize) -> Option<&T> {
        if !self.kept.get(ix) {
            return None;
        }
        self.map.get(&ix)
    }

    pub(crate) fn at(&mut self, ix: usize) -> &mut T {
        self.kept.set(ix, true);
        self.map.entry(ix).or_default()
    }

    pub(crate) fn get_mut(&mut self, ix: usize) -> Option<&mut T> {
        if !self.kept.get(ix) {
            return None;
        }
        self.map.get_mut(&ix)
    }

    /// Forgets what was kept at `ix`.
    pub(crate) fn reset(&mut self, ix: usize) {
        if self.kept.get(ix) {
            self.kept.set(ix, false);
            self.map.remove(&ix);
        }
    }
}

/// A few values by name, in name order (a controller's active codes, a
/// station's operators): a sorted list of exactly its length. A
/// `BTreeMap` puts even one entry in a node of eleven places, most of a
/// kilobyte for each such equipment; lookups here scan a handful.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SmallMap<V>(Vec<(String, V)>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<V> SmallMap<V> {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`'s value (the key is copied only when it is new); returns
    /// the value it replaces.
    pub(crate) fn insert(&mut self, key: &str, value: V) -> Option<V> {
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (key.to_owned(), value));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.find(key).ok()?;
        let (_, value) = self.0.remove(i);
        self.shrink();
        Some(value)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
        self.shrink();
    }

    pub(crate) fn clear(&mut self) {
        self.0 = Vec::new();
    }

    /// Keeps no room for entries that are gone.
    fn shrink(&mut self) {
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// Makes room in `v` for `len` items, growing by an eighth rather than
/// doubling: these vectors hold state for every device, and half of a
/// doubled one would stay empty on average.
pub(crate) fn reserve_modestly<T>(v: &mut Vec<T>, len: usize) {
    if v.capacity() < len {
        let more = (len - v.len()).max(v.len() / 8).max(16);
        v.reserve_exact(more);
    }
}

/// Pushes `item`, growing `v` as [`reserve_modestly`] does.
pub(crate) fn push_modestly<T>(v: &mut Vec<T>, item: T) {
    reserve_modestly(v, v.len() + 1);
    v.push(item);
}

/// A family's state of the few devices or pieces of equipment that need
/// any (cameras, stations, rides), by the engine's index.
pub(crate) type Sparse<T> = HashMap<usize, T, BuildHasherDefault<IndexHasher>>;

/// Hashes the engine's own dense indices, or hashes it made already
/// (never a peer's input, so no seed is needed against collisions made on
/// purpose): a multiply spreads consecutive indices over the table, where
/// SipHash took longer than the family's work on most ticks.
#[derive(Default)]
pub(crate) struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        // Fibonacci hashing; the table uses the high bits too.
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `"HH:MM-HH:MM"` in local time (may wrap midnight) as minutes since
/// midnight; anything else, or a zero-length span, is taken as always
/// open (`None`). Registry `operating_hours` and `working_hours`.
pub(crate) fn parse_hours(text: &str) -> Option<(i64, i64)> {
    let minutes = |hm: &str| -> Option<i64> {
        let (h, m) = hm.trim().split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
    };
    let (open, close) = text.split_once('-')?;
    let (open, close) = (minutes(open)?, minutes(close)?);
    (open % 1440 != close % 1440).then_some((open, close))
}

/// Whether `t` falls in the local-time span `hours` (none given: always).
pub(crate) fn in_hours(hours: Option<(i64, i64)>, t: EpochMs, offset_ms: EpochMs) -> bool {
    let Some((open, close)) = hours else {
        return true;
    };
    let minute = (t + offset_ms).rem_euclid(86_400_000) / 60_000;
    if open < close {
        (open..close).contains(&minute)
    } else {
        minute >= open || minute < close % 1440
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_run_in_the_order_their_rules_need() {
        let names: Vec<&str> = all().iter().map(|f| f.name()).collect();
        let at = |name| names.iter().position(|n| *n == name).unwrap();
        assert!(
            at("liveness") < at("filling"),
            "records_missing asks whether the scale went offline in this tick"
        );
        assert!(
            at("elevator") < at("frequent") && at("controller") < at("frequent"),
            "frequent faults count what the others raised in the same call"
        );
        assert_eq!(
            names.last(),
            Some(&"defined"),
            "defined rules' keys follow every built-in one"
        );
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn a_small_map_keeps_names_in_order_and_replaces_values() {
        let mut m = SmallMap::default();
        assert_eq!(m.insert("P3", 3), None);
        assert_eq!(m.insert("P1", 1), None);
        assert_eq!(m.insert("P2", 2), None);
        assert_eq!(m.insert("P1", 10), Some(1), "one entry per name");
        let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["P1", "P2", "P3"]);
        assert!(m.contains_key("P2") && !m.contains_key("P4"));
        assert_eq!(m.remove("P2"), Some(2));
        assert_eq!(m.remove("P2"), None);
        m.retain(|k, _| k != "P3");
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [10]);
        m.clear();
        assert!(m.is_empty() && !m.contains_key("P1"));
    }

    #[test]
    fn hours_wrap_midnight() {
        let night = parse_hours("22:00-06:00");
        let minute = 60_000;
        assert!(in_hours(night, 23 * 60 * minute, 0));
        assert!(in_hours(night, 5 * 60 * minute, 0));
        assert!(!in_hours(night, 12 * 60 * minute, 0));
        assert!(in_hours(None, 12 * 60 * minute, 0), "none given: always");
        // Local time 8 h ahead: 14:00 UTC is 22:00 there.
        assert!(in_hours(night, 14 * 60 * minute, 8 * 60 * minute));
    }
}
