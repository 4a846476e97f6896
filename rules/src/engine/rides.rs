//! The rules evaluated on ride and ropeway samples: a condition each, with
//! the `for` duration folded into a "due" time, held per device like the
//! elevator sample rules.

use std::sync::Arc;

use serde_json::{Value, json};
use vigil_model::reading::RideSample;
use vigil_model::{Alarm, DeviceContext, DeviceId, EpochMs};

use super::elevator::round3;
use super::state::{Book, DeviceState, EquipmentState, Tracker, step_tracker, sync_tracker};
use crate::builtin;
use crate::catalogue::{Params, Rule};
use crate::define::Sample;

/// What the engine keeps about one device's ride samples.
#[derive(Debug, Default)]
pub(crate) struct RideDevice {
    /// The latest sample, re-evaluated by `tick` while the device is silent.
    pub sample: Option<RideSample>,
    pub ts: Option<EpochMs>,
    pub registry: RideRegistry,
    /// One per rule of [`Rule::RIDE`], in that order.
    pub trackers: [Tracker; Rule::RIDE.len()],
    /// Some period is running: `tick` must re-evaluate the last sample.
    pub busy: bool,
}

/// The equipment's registry parameters the ride rules read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RideRegistry {
    pub rated_mps: Option<f64>,
    /// The ride's own wind limit; it wins over the configured `limit_mps`.
    pub wind_limit_mps: Option<f64>,
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

/// A ride sample at its device time `t`, evaluated in arrival order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_sample(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    ctx: &DeviceContext,
    sample: &RideSample,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    // The previous sample held until now: let its running periods reach
    // this moment first, as ticks would have done live.
    if dev.ride.busy {
        evaluate(book, dev_id, dev, eq, t, out);
    }
    dev.ride.registry = RideRegistry::of(ctx);
    dev.ride.sample = Some(sample.clone());
    dev.ride.ts = Some(t);
    eq.ride_state = Some(sample.state);
    evaluate(book, dev_id, dev, eq, t, out);
}

/// Evaluates every ride rule on the device's latest ride sample at device
/// time `t` (its `ts`, or the advanced clock when `tick` re-evaluates).
pub(crate) fn evaluate(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let params = Arc::clone(&eq.params);
    let registry_params = Arc::clone(&eq.registry);
    let ride = &mut dev.ride;
    let Some(sample) = ride.sample.as_ref() else {
        return;
    };
    let mut busy = false;
    for (k, rule) in Rule::RIDE.into_iter().enumerate() {
        let p = params.get(rule);
        let tr = &mut ride.trackers[k];
        if !sync_tracker(book, eq, rule, tr, dev_id, p.enabled, t, out) {
            continue;
        }
        let run_start = tr.true_since.unwrap_or(t);
        let holds = builtin::holds(rule, Sample::Ride(sample), &registry_params, p);
        let due = holds.unwrap_or(false).then_some(run_start + p.for_ms);
        let registry = &ride.registry;
        step_tracker(
            book,
            eq,
            rule,
            tr,
            dev_id,
            p,
            due,
            t,
            |at| details(rule, sample, registry, p, run_start, at),
            out,
        );
        busy |= tr.pending();
    }
    ride.busy = busy;
}

/// The wind limit that applies: the registry's, else the configured one.
fn wind_limit(reg: &RideRegistry, p: &Params) -> f64 {
    reg.wind_limit_mps.unwrap_or(p.limit)
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
        Rule::RideRunningUnrestrained => json!({
            "state": s.state.as_str(), "speed_mps": speed, "passengers": s.passengers,
        }),
        Rule::RideWindLimit => json!({
            "wind_mps": opt(s.wind_mps),
            "limit_mps": wind_limit(reg, p),
            "limit_from": if reg.wind_limit_mps.is_some() { "registry" } else { "rule" },
            "for_s": held_s,
        }),
        Rule::RideOverspeed => {
            let rated = reg.rated_mps.unwrap_or_default();
            let limit = (p.factor * rated * 10_000.0).round() / 10_000.0;
            json!({"speed_mps": speed, "rated_speed_mps": rated, "limit_mps": limit, "for_s": held_s})
        }
        Rule::RideBrakeFault => json!({
            "brake": s.brake.as_str(), "state": s.state.as_str(), "speed_mps": speed,
        }),
        Rule::RideVibrationHigh => json!({
            "vibration_mm_s": opt(s.vibration_mm_s), "limit_mm_s": p.limit, "for_s": held_s,
        }),
        _ => Value::Null,
    }
}
