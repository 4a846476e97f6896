//! The rules evaluated on elevator status samples: one condition each,
//! with the `for` duration folded into a "due" time, held per device. The
//! conditions of one sample are written in `catalogue.toml`; overtravel
//! and door cycling need earlier samples and are evaluated here.

use std::collections::VecDeque;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit};
use vigil_model::{DeviceId, EpochMs, Payload, Stream};

use super::{
    Bits, Cx, Dense, DevCx, DevIx, DeviceTick, Family, Hooks, Msg, Streams, TickDue, Tuning, rules,
};
use crate::builtin::{self, Conditions};
use crate::catalogue::{Decl, Key, Kind, Lit, Ms, Num, Param, Params, Period, Whole};
use crate::define::{Sample, Source};
use crate::engine::state::{Tracker, open_bit};

rules! {
    /// The elevator status-sample rules.
    pub(crate) enum Rule {
        Trapped = Decl {
            id: "elevator.trapped",
            description: "Passenger trapped: door closed, car occupied, speed 0, normal mode (shorter when the alarm button is pressed).",
            basis: "困人; practice: terminals use 3 min",
            for_s: Some(Period::of(180.0)),
            params: &[Param::new(
                "alarm_button_for_s",
                Kind::Seconds,
                Lit::Num(60.0),
                "shorter `for` once the car alarm button has been pressed",
            )],
            counts_as_fault: true,
            ..Decl::BASE
        },
        StoppedOutsideZone = Decl {
            id: "elevator.stopped_outside_zone",
            severity: vigil_model::Severity::Major,
            description: "Car stopped outside the door zone (not leveled) in normal mode.",
            basis: "非平层停梯 (GB/T 24476 code 04)",
            for_s: Some(Period::of(180.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
        DoorOpenMoving = Decl {
            id: "elevator.door_open_moving",
            description: "Door not closed while the car moves outside the door zone.",
            basis: "开门走梯",
            for_s: Some(Period::of(0.6)),
            params: &[Param::new(
                "speed_mps",
                Kind::Speed,
                Lit::Num(0.1),
                "car speed above which the car counts as moving, m/s",
            )],
            counts_as_fault: true,
            ..Decl::BASE
        },
        Overspeed = Decl {
            id: "elevator.overspeed",
            description: "Car speed above factor × the registered rated speed (governor trip point).",
            basis: "governor trip point 115 %",
            for_s: Some(Period::of(0.0)),
            params: &[Param::new(
                "factor",
                Kind::Positive,
                Lit::Num(1.15),
                "multiple of the registry's rated_speed_mps that is overspeed",
            )],
            counts_as_fault: true,
            ..Decl::BASE
        },
        OvertravelTop = Decl {
            id: "elevator.overtravel_top",
            description: "Top final limit switch tripped, or still moving up at the top floor.",
            basis: "冲顶 (code 09)",
            for_s: Some(Period::of(0.0).meaning("seconds the limit switch must be tripped (device time)")),
            params: &[MOVING_FOR_S],
            counts_as_fault: true,
            ..Decl::BASE
        },
        OvertravelBottom = Decl {
            id: "elevator.overtravel_bottom",
            description: "Bottom final limit switch tripped, or still moving down at the bottom floor.",
            basis: "蹲底 (code 10)",
            for_s: Some(Period::of(0.0).meaning("seconds the limit switch must be tripped (device time)")),
            params: &[MOVING_FOR_S],
            counts_as_fault: true,
            ..Decl::BASE
        },
        SafetyCircuitOpen = Decl {
            id: "elevator.safety_circuit_open",
            description: "Safety circuit open while moving or in normal mode.",
            basis: "code 01",
            for_s: Some(Period::of(0.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
        DoorLockOpenMoving = Decl {
            id: "elevator.door_lock_open_moving",
            description: "Door-lock circuit open while the car moves.",
            basis: "门锁回路断路",
            for_s: Some(Period::of(0.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
        DoorWontClose = Decl {
            id: "elevator.door_wont_close",
            severity: vigil_model::Severity::Minor,
            description: "Door not closed at a floor (leveled) in normal mode.",
            basis: "code 02",
            for_s: Some(Period::of(180.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
        DoorCycling = Decl {
            id: "elevator.door_cycling",
            severity: vigil_model::Severity::Minor,
            description: "More than max_changes door state changes at one floor within window_s.",
            basis: "code 03 practice",
            for_s: Some(Period::of(0.0)),
            params: &[
                Param::new(
                    "max_changes",
                    Kind::Whole,
                    Lit::Whole(11),
                    "door state changes at one floor tolerated within the window",
                ),
                Param::new(
                    "window_s",
                    Kind::PositiveSeconds,
                    Lit::Num(120.0),
                    "trailing window for door changes, seconds",
                ),
            ],
            counts_as_fault: true,
            ..Decl::BASE
        },
        PowerLoss = Decl {
            id: "elevator.power_loss",
            severity: vigil_model::Severity::Major,
            description: "Supply is not mains (battery or off).",
            basis: "event 41",
            for_s: Some(Period::of(5.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
        FloorOutOfRange = Decl {
            id: "elevator.floor_out_of_range",
            severity: vigil_model::Severity::Minor,
            description: "Reported floor outside the registered floors (position lost).",
            basis: "code 07 (position lost)",
            for_s: Some(Period::of(0.0)),
            counts_as_fault: true,
            ..Decl::BASE
        },
    }
}

const MOVING_FOR_S: Param = Param::new(
    "moving_for_s",
    Kind::Seconds,
    Lit::Num(8.0),
    "seconds still moving beyond the end floor of the registry's floors",
);

const ALARM_BUTTON_FOR: Ms = Ms::of(Rule::Trapped.decl(), "alarm_button_for_s");
const FACTOR: Num = Num::of(Rule::Overspeed.decl(), "factor");
const MOVING_FOR: Ms = Ms::of(Rule::OvertravelTop.decl(), "moving_for_s");
const MAX_CHANGES: Whole = Whole::of(Rule::DoorCycling.decl(), "max_changes");
const WINDOW: Ms = Ms::of(Rule::DoorCycling.decl(), "window_s");

/// The conditions `catalogue.toml` writes for these rules, by [`Rule`].
static CONDITIONS: LazyLock<Conditions> =
    LazyLock::new(|| builtin::compile(Rule::DECLS, Source::Elevator));

/// The elevator sample rules and what they keep per device.
#[derive(Default)]
pub(crate) struct Elevator {
    devices: Dense<ElevatorDevice>,
    /// Some period of the device is running: `tick` must re-evaluate its
    /// last sample.
    busy: Bits,
    /// Between `before_message` and `on_message` of one sample: it agrees
    /// with the device's previous sample on every field the conditions
    /// read, so the conditions' bits judged on that one stand.
    same_as_last: bool,
}

type Trackers = [Tracker; Rule::ALL.len()];

#[derive(Debug, Default)]
struct ElevatorDevice {
    /// The rules' trackers, only while one of them is not idle (a run
    /// going, an alarm held): most cars have none most of the time, and an
    /// idle tracker is a new one.
    trackers: Option<Box<Trackers>>,
    /// Per rule, the latest late sample that satisfied it on its own
    /// (boxed: few devices ever send late samples).
    late: Option<Box<[Option<EpochMs>; Rule::ALL.len()]>>,
    aux: ElevatorAux,
    geo: Geometry,
    /// The equipment's `inputs` `geo` was read under (never 0, so 0: not
    /// yet read).
    geo_inputs: u32,
    /// Which rules' `catalogue.toml` conditions hold on the latest sample
    /// (bit per [`Rule`]), with the equipment's `inputs` they were judged
    /// under: ticks and the next sample's first look judge the same
    /// sample again.
    holding: Option<(u32, u16)>,
}

impl Family for Elevator {
    fn name(&self) -> &'static str {
        "elevator"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            rebase: true,
            before: Streams::of(&[Stream::Elevator]),
            message: Streams::of(&[Stream::Elevator]),
            late: Streams::of(&[Stream::Elevator]),
            device_tick: true,
            ..Hooks::NONE
        }
    }

    fn on_rebase(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        if let Some(d) = self.devices.get_mut(cx.ix) {
            d.trackers
                .iter_mut()
                .flat_map(|trs| trs.iter_mut())
                .for_each(|tr| tr.rebase(t));
            d.aux.rebase(t);
        }
    }

    fn before_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        // The previous sample held until now: let its running periods
        // reach this moment first, as ticks would have done live. Replay
        // and live then agree even without ticks.
        let Payload::Elevator(sample) = msg.payload else {
            return;
        };
        self.same_as_last = cx
            .dev
            .latest
            .elevator()
            .is_some_and(|last| same_for_conditions(last, sample));
        if self.busy.get(cx.ix) {
            self.evaluate(cx, msg.ts);
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let Payload::Elevator(sample) = msg.payload else {
            return;
        };
        let d = self.devices.at(cx.ix);
        // The equipment's registry is the reading's context's params (the
        // engine keeps it equal): read again only when it changed.
        if d.geo_inputs != cx.eq.inputs {
            d.geo = Geometry::of(&cx.eq.registry);
            d.geo_inputs = cx.eq.inputs;
        }
        d.aux.observe(sample, &d.geo, msg.ts);
        if !std::mem::take(&mut self.same_as_last) {
            d.holding = None;
        }
        self.evaluate(cx, msg.ts);
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        if tick.everything || self.busy.get(cx.ix) {
            self.evaluate(cx, tick.device_now);
        }
    }

    fn tick_due(&self, _base: usize, due: &mut TickDue) -> bool {
        due.devices.union_with(&self.busy);
        true
    }

    /// A late sample: the point rules (a condition of this sample alone,
    /// `for` 0, and the limit-switch clause of overtravel) at its time.
    fn on_late(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let Payload::Elevator(sample) = msg.payload else {
            return;
        };
        let tuning = cx.tuning();
        let registry = std::sync::Arc::clone(&cx.eq.registry);
        let geo = Geometry::of(&msg.ctx.params);
        let d = self.devices.at(cx.ix);
        let read = CONDITIONS.registry(&registry);
        let mut fired = false;
        let late = d.late.get_or_insert_with(Box::default);
        for (&rule, run) in Rule::ALL.iter().zip(late.iter_mut()) {
            let p = tuning.of(rule);
            if !p.enabled || p.for_ms != 0 {
                continue;
            }
            let holds = match (CONDITIONS.get(rule as usize), rule) {
                (Some(c), _) => c.holds(Sample::Elevator(sample), &read, p),
                (None, Rule::OvertravelTop) => sample.limit == Limit::Top,
                (None, Rule::OvertravelBottom) => sample.limit == Limit::Bottom,
                _ => false,
            };
            if !holds {
                continue;
            }
            // The sample alone: its own run starts and ends at its time.
            let mut aux = ElevatorAux::default();
            aux.observe(sample, &geo, msg.ts);
            let details = details(rule, sample, &geo, p, &aux, msg.ts, msg.ts);
            if cx.fire_late(rule, run, p, msg.ts, details) {
                cx.count_fault(rule, p.severity, msg.ts);
                fired = true;
            }
        }
        // The live condition adopts a late alarm at its next evaluation;
        // a silent device's tick must come by.
        if fired {
            self.busy.set(cx.ix, true);
        }
    }

    fn on_release(&mut self, _cx: &mut Cx<'_>, dev: DevIx, _id: &DeviceId, _at: EpochMs) {
        self.devices.reset(dev);
        self.busy.set(dev, false);
    }
}

impl Elevator {
    /// Evaluates every rule on the device's latest sample at device time
    /// `t` (the sample's own `ts`, or the advanced clock when `tick`
    /// re-evaluates a silent device).
    fn evaluate(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let Some(sample) = cx.dev.latest.elevator().cloned() else {
            return;
        };
        let tuning = cx.tuning();
        let d = self.devices.at(cx.ix);
        let inputs = cx.eq.inputs;
        let holding = match d.holding {
            Some((judged, bits)) if judged == inputs => bits,
            _ => {
                let bits = holding(&sample, &cx.eq.registry, tuning);
                d.holding = Some((inputs, bits));
                bits
            }
        };
        d.aux
            .prune_door_changes(t - tuning.of(Rule::DoorCycling).ms(WINDOW));
        // Time alone only shortens the door-change window: a tick can
        // change door cycling only while it holds (or its period runs).
        let cycling = tuning.of(Rule::DoorCycling);
        let mut busy = d.aux.door_changes.len() > cycling.whole(MAX_CHANGES) as usize;
        let mine =
            (0..Rule::ALL.len()).fold(0, |bits, i| bits | open_bit(Key::from_index(cx.base + i)));
        if holding == 0
            && !busy
            && d.trackers.is_none()
            && d.aux.since_set == 0
            && cx.eq.open_bits() & mine == 0
        {
            // No condition holds (nor a limit switch, an overtravel or the
            // button: `since_set`), no run is going, none of these rules'
            // alarms is open: every rule's turn below would change nothing
            // (a disabled rule has nothing to clear). Most samples.
            self.busy.set(cx.ix, false);
            return;
        }
        // A run going: its trackers are worked on where they are (copying
        // the twelve in and out was a twentieth of the bench's time). None:
        // on the stack, boxed only if a run starts.
        let mut kept = d.trackers.take();
        let mut fresh = None;
        let trackers: &mut Trackers = match &mut kept {
            Some(kept) => kept,
            None => fresh.insert(Trackers::default()),
        };
        for (&rule, tr) in Rule::ALL.iter().zip(trackers.iter_mut()) {
            let p = tuning.of(rule);
            let holds = holding & (1 << rule as u16) != 0;
            if p.enabled
                && tr.is_idle()
                && !cx.is_open(rule)
                && due_time(rule, holds, p, &d.aux, t).is_none()
            {
                // False, no run, no alarm: `sync` and `step` would change nothing.
                continue;
            }
            if !cx.sync(rule, tr, p.enabled, t) {
                continue;
            }
            let run_start = tr.true_since().unwrap_or(t);
            let due = due_time(rule, holds, p, &d.aux, run_start);
            let (geo, aux) = (&d.geo, &d.aux);
            let fired = cx.step(rule, tr, p, due, t, |at| {
                details(rule, &sample, geo, p, aux, run_start, at)
            });
            if let Some(at) = fired {
                cx.count_fault(rule, p.severity, at);
            }
            busy |= tr.pending();
        }
        if !trackers.iter().all(Tracker::is_idle) {
            d.trackers = kept.or_else(|| fresh.map(Box::new));
        }
        self.busy.set(cx.ix, busy);
    }
}

const _: () = assert!(Rule::ALL.len() <= u16::BITS as usize, "a bit per rule");

/// Whether `a` and `b` agree on every field the `catalogue.toml`
/// conditions read (floats bit for bit): the conditions then hold alike on
/// both, and a car reports the same status over and over while it idles
/// or travels.
fn same_for_conditions(a: &ElevatorSample, b: &ElevatorSample) -> bool {
    // Every field, so that a new one cannot be missed; in the order of the
    // stream's fields (`define::ELEVATOR_FIELDS`, checked by a test).
    let ElevatorSample {
        floor,
        direction,
        speed_mps,
        door,
        leveled,
        occupied,
        mode,
        safety_circuit,
        door_lock,
        alarm_button,
        power,
        limit,
        run_count,
        load_pct,
    } = a;
    let same = [
        *floor == b.floor,
        *direction == b.direction,
        speed_mps.to_bits() == b.speed_mps.to_bits(),
        *door == b.door,
        *leveled == b.leveled,
        *occupied == b.occupied,
        *mode == b.mode,
        *safety_circuit == b.safety_circuit,
        *door_lock == b.door_lock,
        *alarm_button == b.alarm_button,
        *power == b.power,
        *limit == b.limit,
        *run_count == b.run_count,
        load_pct.map(f32::to_bits) == b.load_pct.map(f32::to_bits),
    ];
    (same.iter().enumerate()).all(|(i, same)| *same || !CONDITIONS.read(i))
}

/// Which enabled rules' `catalogue.toml` conditions hold on `sample`, a
/// bit per [`Rule`].
fn holding(sample: &ElevatorSample, registry: &Map<String, Value>, tuning: Tuning<'_>) -> u16 {
    let mut bits = 0;
    let registry = CONDITIONS.registry(registry);
    for &rule in Rule::ALL {
        let p = tuning.of(rule);
        if let Some(c) = CONDITIONS.get(rule as usize)
            && p.enabled
            && c.holds(Sample::Elevator(sample), &registry, p)
        {
            bits |= 1 << rule as u16;
        }
    }
    bits
}

/// `None` when the rule's condition is false; else the device time at
/// which it qualifies, given that it has held since `run_start`. `holds`:
/// whether its `catalogue.toml` condition holds, for rules that have one.
fn due_time(
    rule: Rule,
    holds: bool,
    p: &Params,
    aux: &ElevatorAux,
    run_start: EpochMs,
) -> Option<EpochMs> {
    let after_for = |holds: bool| holds.then_some(run_start + p.for_ms);
    if CONDITIONS.get(rule as usize).is_some() {
        let due = after_for(holds)?;
        return Some(match (rule, aux.button_at()) {
            // The button shortens the wait, but never to before it was pressed.
            (Rule::Trapped, Some(pressed)) => {
                due.min((run_start + p.ms(ALARM_BUTTON_FOR)).max(pressed))
            }
            _ => due,
        });
    }
    match rule {
        Rule::OvertravelTop => overtravel(aux, TOP, p, run_start),
        Rule::OvertravelBottom => overtravel(aux, BOTTOM, p, run_start),
        Rule::DoorCycling => after_for(aux.door_changes.len() > p.whole(MAX_CHANGES) as usize),
        // Written in catalogue.toml (checked by a test).
        _ => None,
    }
}

/// Either clause qualifies: the limit switch after `for_s` (immediate by
/// default), or moving on past the end floor after `moving_for_s`.
fn overtravel(aux: &ElevatorAux, end: usize, p: &Params, run_start: EpochMs) -> Option<EpochMs> {
    let by_switch = aux
        .limit_since(end)
        .map(|since| since.max(run_start) + p.for_ms);
    let by_floor = aux
        .beyond_since(end)
        .map(|since| since.max(run_start) + p.ms(MOVING_FOR));
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
            json!({"floor": s.floor, "stopped_for_s": held_s, "alarm_button": aux.button_at().is_some()})
        }
        Rule::StoppedOutsideZone => json!({"floor": s.floor, "stopped_for_s": held_s}),
        Rule::DoorOpenMoving => {
            json!({"floor": s.floor, "door": s.door.as_str(), "speed_mps": speed})
        }
        Rule::Overspeed => {
            let rated = geo.rated_mps().unwrap_or_default();
            // Four decimals: 1.15 × 1.75 is 2.0125, not 2.012.
            let limit = (p.num(FACTOR) * rated * 10_000.0).round() / 10_000.0;
            json!({"speed_mps": speed, "rated_speed_mps": rated, "limit_mps": limit})
        }
        Rule::OvertravelTop | Rule::OvertravelBottom => {
            let end = if rule == Rule::OvertravelTop {
                TOP
            } else {
                BOTTOM
            };
            let trigger = if aux.limit_since(end).is_some() {
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
            json!({"floor": s.floor, "changes": aux.door_changes.len(), "window_s": p.ms(WINDOW) / 1000})
        }
        Rule::PowerLoss => json!({"power": s.power.as_str(), "floor": s.floor, "for_s": held_s}),
        Rule::FloorOutOfRange => {
            let (lo, hi) = geo.floors.unwrap_or_default();
            json!({"floor": s.floor, "floors": [lo, hi]})
        }
    }
}

/// Device floats are f32; three decimals keep JSON free of `1.2000000476`.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What the registry says about the car's shaft, read once per sample.
/// Kept for every device: the rated speed is NaN when unknown (an
/// `Option<f64>` would take twice its room).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    floors: Option<(i16, i16)>,
    rated: f64,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            floors: None,
            rated: f64::NAN,
        }
    }
}

impl Geometry {
    /// From the registry's `params` of the equipment (as
    /// `DeviceContext::floor_range` and `param_f64` read them).
    fn of(params: &Map<String, Value>) -> Geometry {
        Geometry {
            floors: vigil_model::device::floor_range(params),
            rated: (params.get("rated_speed_mps").and_then(Value::as_f64))
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(f64::NAN),
        }
    }

    /// The rated speed, if the registry gives a positive one.
    fn rated_mps(&self) -> Option<f64> {
        (!self.rated.is_nan()).then_some(self.rated)
    }
}

const TOP: usize = 0;
const BOTTOM: usize = 1;

/// Sub-conditions that need their own start time or history, updated once
/// per accepted sample (never by `tick`, which re-evaluates the last one).
#[derive(Debug, Clone, Default)]
struct ElevatorAux {
    /// Since when: the final limit switch (top, bottom) is tripped
    /// ([`LIMIT`] + end), the car moves on past the top (bottom) floor
    /// ([`BEYOND`] + end), the alarm button was first pressed during the
    /// current trapped run ([`BUTTON`]); set where `since_set` has the
    /// place's bit (five `Option`s took twice the room).
    /// Boxed: most cars never trip a limit switch, overtravel or get
    /// trapped, and five times are 32 bytes more for every device.
    since: Option<Box<[EpochMs; 5]>>,
    since_set: u8,
    door_floor: Option<i16>,
    last_door: Option<Door>,
    /// Door state changes at `door_floor`, device time, oldest first.
    door_changes: VecDeque<EpochMs>,
    /// The oldest of `door_changes` (when there is one), kept here too:
    /// every evaluation prunes the window, and reading the list's own
    /// allocation for that was a cache miss per sample.
    oldest_door_change: EpochMs,
}

/// Places in [`ElevatorAux::since`].
const LIMIT: usize = 0;
const BEYOND: usize = 2;
const BUTTON: usize = 4;

impl ElevatorAux {
    fn since(&self, place: usize) -> Option<EpochMs> {
        if self.since_set & (1 << place) == 0 {
            return None;
        }
        self.since.as_ref().map(|since| since[place])
    }

    fn set_since(&mut self, place: usize, at: Option<EpochMs>) {
        match at {
            Some(at) => {
                self.since.get_or_insert_default()[place] = at;
                self.since_set |= 1 << place;
            }
            None => self.since_set &= !(1 << place),
        }
    }

    fn button_at(&self) -> Option<EpochMs> {
        self.since(BUTTON)
    }

    fn limit_since(&self, end: usize) -> Option<EpochMs> {
        self.since(LIMIT + end)
    }

    fn beyond_since(&self, end: usize) -> Option<EpochMs> {
        self.since(BEYOND + end)
    }

    fn observe(&mut self, s: &ElevatorSample, geo: &Geometry, ts: EpochMs) {
        let since =
            |holds: bool, was: Option<EpochMs>| if holds { Some(was.unwrap_or(ts)) } else { None };
        let moving = s.speed_mps > 0.0;
        let trapped =
            s.door == Door::Closed && s.occupied && !moving && s.mode == ElevatorMode::Normal;
        let button_at = if trapped && s.alarm_button {
            Some(self.button_at().unwrap_or(ts))
        } else if trapped {
            self.button_at()
        } else {
            None
        };
        self.set_since(BUTTON, button_at);
        for (end, limit) in [(TOP, Limit::Top), (BOTTOM, Limit::Bottom)] {
            let at = since(s.limit == limit, self.limit_since(end));
            self.set_since(LIMIT + end, at);
        }
        let (at_top, at_bottom) = geo
            .floors
            .map_or((false, false), |(lo, hi)| (s.floor >= hi, s.floor <= lo));
        let top = since(
            at_top && moving && s.direction == Direction::Up,
            self.beyond_since(TOP),
        );
        self.set_since(BEYOND + TOP, top);
        let bottom = since(
            at_bottom && moving && s.direction == Direction::Down,
            self.beyond_since(BOTTOM),
        );
        self.set_since(BEYOND + BOTTOM, bottom);
        if self.door_floor != Some(s.floor) {
            // Door changes count "at one floor": a new floor starts afresh.
            self.door_floor = Some(s.floor);
            self.door_changes.clear();
        } else if self.last_door.is_some_and(|d| d != s.door) {
            if self.door_changes.is_empty() {
                self.oldest_door_change = ts;
            }
            self.door_changes.push_back(ts);
        }
        self.last_door = Some(s.door);
    }

    fn prune_door_changes(&mut self, older_than_or_at: EpochMs) {
        if self.door_changes.is_empty() || self.oldest_door_change > older_than_or_at {
            return;
        }
        while self
            .door_changes
            .front()
            .is_some_and(|t| *t <= older_than_or_at)
        {
            self.door_changes.pop_front();
        }
        if let Some(&oldest) = self.door_changes.front() {
            self.oldest_door_change = oldest;
        }
    }

    fn rebase(&mut self, t: EpochMs) {
        // Unset places keep whatever they hold: only set ones are read.
        for since in self.since.iter_mut().flat_map(|since| since.iter_mut()) {
            *since = (*since).min(t);
        }
        self.door_changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::define::ELEVATOR_FIELDS;
    use vigil_model::reading::Power;

    /// Each field changed alone, in the order of the stream's fields.
    fn each_field_changed(a: &ElevatorSample) -> Vec<ElevatorSample> {
        let change = |f: &dyn Fn(&mut ElevatorSample)| {
            let mut b = a.clone();
            f(&mut b);
            b
        };
        vec![
            change(&|s| s.floor += 1),
            change(&|s| s.direction = Direction::Down),
            change(&|s| s.speed_mps += 0.5),
            change(&|s| s.door = Door::Open),
            change(&|s| s.leveled = !s.leveled),
            change(&|s| s.occupied = !s.occupied),
            change(&|s| s.mode = ElevatorMode::Inspection),
            change(&|s| s.safety_circuit = !s.safety_circuit),
            change(&|s| s.door_lock = !s.door_lock),
            change(&|s| s.alarm_button = !s.alarm_button),
            change(&|s| s.power = Power::Battery),
            change(&|s| s.limit = Limit::Top),
            change(&|s| s.run_count = Some(7)),
            change(&|s| s.load_pct = Some(55.0)),
        ]
    }

    #[test]
    fn samples_alike_for_the_conditions_differ_only_in_fields_they_do_not_read() {
        let a = ElevatorSample::moving();
        let changed = each_field_changed(&a);
        assert_eq!(changed.len(), ELEVATOR_FIELDS.len(), "one change per field");
        assert!(same_for_conditions(&a, &a.clone()));
        for (i, (b, field)) in changed.iter().zip(ELEVATOR_FIELDS).enumerate() {
            let sample = Sample::Elevator(b);
            assert_ne!(
                sample.value(i),
                Sample::Elevator(&a).value(i),
                "{}",
                field.name
            );
            let read = Rule::DECLS
                .iter()
                .filter_map(|d| builtin::text(d.id))
                .flat_map(|text| text.split(|c: char| !(c.is_alphanumeric() || c == '_')))
                .any(|word| word == field.name);
            assert_eq!(CONDITIONS.read(i), read, "{}", field.name);
            assert_eq!(same_for_conditions(&a, b), !read, "{}", field.name);
        }
        // Floats bit for bit: 0.0 and -0.0 compare equal, but are not the same.
        let zero = ElevatorSample::idle();
        let minus = ElevatorSample {
            speed_mps: -0.0,
            ..zero.clone()
        };
        assert!(!same_for_conditions(&zero, &minus));
    }
}
