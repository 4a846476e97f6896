//! The rules evaluated on ride and ropeway samples: a condition each
//! (written in `catalogue.toml`), with the `for` duration folded into a
//! "due" time, held per device like the elevator sample rules.

use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};
use vigil_model::reading::RideSample;
use vigil_model::{DeviceContext, DeviceId, EpochMs, Payload, Severity, Stream};

use super::elevator::round3;
use super::{Cx, DevCx, DevIx, DeviceTick, Family, Few, Hooks, Msg, Streams, TickDue, rules};
use crate::builtin::{self, Conditions};
use crate::catalogue::{Decl, Kind, Lit, Num, Param, Params, Period};
use crate::define::{Sample, Source};
use crate::engine::state::Tracker;

rules! {
    /// The ride and ropeway sample rules.
    pub(crate) enum Rule {
        RunningUnrestrained = Decl {
            id: "ride.running_unrestrained",
            description: "Ride running while not every passenger restraint is locked.",
            basis: "restraint interlock",
            for_s: Some(Period::of(0.0)),
            ..Decl::BASE
        },
        WindLimit = Decl {
            id: "ride.wind_limit",
            severity: Severity::Major,
            description: "Wind at or above the limit while running (registry wind_limit_mps, else limit_mps; ropeways 13.9 m/s).",
            basis: "practice; stop rides at force 6 (ropeways 7)",
            for_s: Some(Period::of(10.0)),
            params: &[Param {
                // Beaufort 6 (rides) and 7 (passenger ropeways), rules.md.
                by_category: &[(&["passenger_ropeway"], Lit::Num(13.9))],
                ..Param::new(
                    "limit_mps",
                    Kind::Positive,
                    Lit::Num(10.8),
                    "wind speed limit, m/s, when the registry gives no wind_limit_mps",
                )
            }],
            ..Decl::BASE
        },
        Overspeed = Decl {
            id: "ride.overspeed",
            description: "Ride speed above factor × the registered rated speed (no rated speed: not evaluated).",
            basis: "practice",
            for_s: Some(Period::of(2.0)),
            params: &[Param::new(
                "factor",
                Kind::Positive,
                Lit::Num(1.1),
                "multiple of the registry's rated_speed_mps that is overspeed",
            )],
            ..Decl::BASE
        },
        BrakeFault = Decl {
            id: "ride.brake_fault",
            description: "Brake system reports a fault.",
            basis: "brake system",
            for_s: Some(Period::of(0.0)),
            ..Decl::BASE
        },
        VibrationHigh = Decl {
            id: "ride.vibration_high",
            severity: Severity::Minor,
            description: "Drive vibration (RMS velocity) above limit_mm_s.",
            basis: "ISO 10816 zone D boundary for large machines",
            for_s: Some(Period::of(30.0)),
            params: &[Param::new(
                "limit_mm_s",
                Kind::Positive,
                Lit::Num(11.2),
                "vibration velocity limit, mm/s RMS",
            )],
            ..Decl::BASE
        },
    }
}

const WIND_LIMIT: Num = Num::of(Rule::WindLimit.decl(), "limit_mps");
const FACTOR: Num = Num::of(Rule::Overspeed.decl(), "factor");
const VIBRATION_LIMIT: Num = Num::of(Rule::VibrationHigh.decl(), "limit_mm_s");

static CONDITIONS: LazyLock<Conditions> =
    LazyLock::new(|| builtin::compile(Rule::DECLS, Source::Ride));

/// The ride rules and what they keep of each ride device.
#[derive(Default)]
pub(crate) struct Rides {
    devices: Few<RideDevice>,
}

#[derive(Debug, Default)]
struct RideDevice {
    registry: RideRegistry,
    trackers: [Tracker; Rule::ALL.len()],
    /// Per rule, the latest late sample that satisfied it on its own.
    late: [Option<EpochMs>; Rule::ALL.len()],
    /// Some period is running: `tick` must re-evaluate the last sample.
    busy: bool,
}

/// The equipment's registry parameters the ride rules read.
#[derive(Debug, Clone, Copy, Default)]
struct RideRegistry {
    rated_mps: Option<f64>,
    /// The ride's own wind limit; it wins over the configured `limit_mps`.
    wind_limit_mps: Option<f64>,
}

impl RideRegistry {
    fn of(ctx: &DeviceContext) -> RideRegistry {
        let positive = |name| {
            ctx.param_f64(name)
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
        };
        RideRegistry {
            rated_mps: positive("rated_speed_mps"),
            wind_limit_mps: positive("wind_limit_mps"),
        }
    }
}

impl Family for Rides {
    fn name(&self) -> &'static str {
        "rides"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            rebase: true,
            before: Streams::of(&[Stream::Ride]),
            message: Streams::of(&[Stream::Ride]),
            late: Streams::of(&[Stream::Ride]),
            device_tick: true,
            ..Hooks::NONE
        }
    }

    fn on_rebase(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        if let Some(d) = self.devices.get_mut(cx.ix) {
            d.trackers.iter_mut().for_each(|tr| tr.rebase(t));
        }
    }

    fn before_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        // The previous sample held until now: let its running periods
        // reach this moment first, as ticks would have done live.
        if matches!(msg.payload, Payload::Ride(_))
            && self.devices.get(cx.ix).is_some_and(|d| d.busy)
        {
            self.evaluate(cx, msg.ts);
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if matches!(msg.payload, Payload::Ride(_)) {
            self.devices.at(cx.ix).registry = RideRegistry::of(msg.ctx);
            self.evaluate(cx, msg.ts);
        }
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        if tick.everything || self.devices.get(cx.ix).is_some_and(|d| d.busy) {
            self.evaluate(cx, tick.device_now);
        }
    }

    /// Rides are few: every one with state (the busy ones among them).
    fn tick_due(&self, _base: usize, due: &mut TickDue) -> bool {
        due.devices.union_with(self.devices.kept());
        true
    }

    /// A late sample: the rules whose `for` is 0 at its own time.
    fn on_late(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let Payload::Ride(sample) = msg.payload else {
            return;
        };
        let tuning = cx.tuning();
        let registry_params = Arc::clone(&cx.eq.registry);
        let ride = self.devices.at(cx.ix);
        ride.registry = RideRegistry::of(msg.ctx);
        let read = CONDITIONS.registry(&registry_params);
        let mut fired = false;
        for (&rule, run) in Rule::ALL.iter().zip(ride.late.iter_mut()) {
            let p = tuning.of(rule);
            let holds = CONDITIONS
                .get(rule as usize)
                .is_some_and(|c| c.holds(Sample::Ride(sample), &read, p));
            if !p.enabled || p.for_ms != 0 || !holds {
                continue;
            }
            let details = details(rule, sample, &ride.registry, p, msg.ts, msg.ts);
            fired |= cx.fire_late(rule, run, p, msg.ts, details);
        }
        ride.busy |= fired;
    }

    fn on_release(&mut self, _cx: &mut Cx<'_>, dev: DevIx, _id: &DeviceId, _at: EpochMs) {
        self.devices.reset(dev);
    }
}

impl Rides {
    /// Evaluates every ride rule on the device's latest ride sample at
    /// device time `t` (its `ts`, or the advanced clock when `tick`
    /// re-evaluates).
    fn evaluate(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let Some(sample) = cx.dev.latest.ride().cloned() else {
            return;
        };
        let Some(ride) = self.devices.get_mut(cx.ix) else {
            return;
        };
        let tuning = cx.tuning();
        let registry_params = Arc::clone(&cx.eq.registry);
        let read = CONDITIONS.registry(&registry_params);
        let mut busy = false;
        for (&rule, tr) in Rule::ALL.iter().zip(ride.trackers.iter_mut()) {
            let p = tuning.of(rule);
            if !cx.sync(rule, tr, p.enabled, t) {
                continue;
            }
            let run_start = tr.true_since().unwrap_or(t);
            let holds = CONDITIONS
                .get(rule as usize)
                .is_some_and(|c| c.holds(Sample::Ride(&sample), &read, p));
            let due = holds.then_some(run_start + p.for_ms);
            let registry = &ride.registry;
            cx.step(rule, tr, p, due, t, |at| {
                details(rule, &sample, registry, p, run_start, at)
            });
            busy |= tr.pending();
        }
        ride.busy = busy;
    }
}

/// The wind limit that applies: the registry's, else the configured one.
fn wind_limit(reg: &RideRegistry, p: &Params) -> f64 {
    reg.wind_limit_mps.unwrap_or(p.num(WIND_LIMIT))
}

fn details(
    rule: Rule,
    s: &RideSample,
    reg: &RideRegistry,
    p: &Params,
    run_start: EpochMs,
    at: EpochMs,
) -> Value {
    let held_s = ((at - run_start).max(0) as f64 / 1000.0).round() as i64;
    let speed = round3(f64::from(s.speed_mps));
    let opt = |v: Option<f32>| v.map(|x| round3(f64::from(x)));
    match rule {
        Rule::RunningUnrestrained => json!({
            "state": s.state.as_str(), "speed_mps": speed, "passengers": s.passengers,
        }),
        Rule::WindLimit => json!({
            "wind_mps": opt(s.wind_mps),
            "limit_mps": wind_limit(reg, p),
            "limit_from": if reg.wind_limit_mps.is_some() { "registry" } else { "rule" },
            "for_s": held_s,
        }),
        Rule::Overspeed => {
            let rated = reg.rated_mps.unwrap_or_default();
            let limit = (p.num(FACTOR) * rated * 10_000.0).round() / 10_000.0;
            json!({"speed_mps": speed, "rated_speed_mps": rated, "limit_mps": limit, "for_s": held_s})
        }
        Rule::BrakeFault => json!({
            "brake": s.brake.as_str(), "state": s.state.as_str(), "speed_mps": speed,
        }),
        Rule::VibrationHigh => json!({
            "vibration_mm_s": opt(s.vibration_mm_s), "limit_mm_s": p.num(VIBRATION_LIMIT), "for_s": held_s,
        }),
    }
}
