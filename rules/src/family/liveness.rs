//! `device.offline`: liveness on the wall clock. A device silent for
//! `intervals` × its reporting interval goes offline; one alarm per
//! equipment lists its offline devices, and clears when the last of them
//! is heard from again.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use vigil_model::{Alarm, DeviceId, EpochMs, Severity};

use super::{
    Cx, DevCx, DevIx, DeviceTick, Family, Few, Hooks, Local, Msg, Streams, TickDue, parse_hours,
    rules,
};
use crate::catalogue::{
    Clear, Decl, Key, Kind, Lit, Num, Param, ParamSet, Params, RIDE_CATEGORIES, Sev,
};
use crate::engine::state::DeviceCore;

rules! {
    pub(crate) enum Rule {
        DeviceOffline = Decl {
            id: "device.offline",
            severity: Severity::Minor,
            description: "No message from a device for intervals × its reporting interval (wall time).",
            basis: "liveness",
            clear_s: Clear::None,
            params: &[
                Param::new(
                    "intervals",
                    Kind::Positive,
                    Lit::Num(3.0),
                    "multiples of the device's report_interval_s of silence",
                ),
                Param {
                    // rules.md: a silent ride is major while it operates.
                    by_category: &[(RIDE_CATEGORIES, Lit::Severity(Some(Severity::Major)))],
                    ..Param::new(
                        "operating_severity",
                        Kind::Severity,
                        Lit::Severity(None),
                        "severity while the equipment is inside its registry operating_hours (rides: major)",
                    )
                },
            ],
            ..Decl::BASE
        },
    }
}

const INTERVALS: Num = Num::of(Rule::DeviceOffline.decl(), "intervals");
const OPERATING_SEVERITY: Sev = Sev::of(Rule::DeviceOffline.decl(), "operating_severity");

/// Reporting interval assumed when the registry gives none (registry.md's default).
const DEFAULT_REPORT_INTERVAL_S: u32 = 30;

/// The devices counted in each equipment's open alarm.
#[derive(Default)]
pub(crate) struct Liveness {
    offline: Few<BTreeSet<DeviceId>>,
}

impl Family for Liveness {
    fn name(&self) -> &'static str {
        "liveness"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            heard: Streams::ALL,
            device_tick: true,
            ..Hooks::NONE
        }
    }

    /// Any message from a device: it is online. The offline alarm clears
    /// when no device of the equipment is left offline.
    fn on_heard(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        cx.dev.offline = false;
        let rule = Rule::DeviceOffline;
        let listed = self
            .offline
            .get_mut(cx.eq.ix())
            .is_some_and(|set| set.remove(&cx.dev.id));
        let Some(slot) = cx.slot(rule) else {
            return;
        };
        let still = self.offline.get(cx.eq.ix()).is_some_and(|s| !s.is_empty());
        if !still {
            // Also clears a restored alarm whose device list was unreadable.
            cx.clear(rule, msg.ts);
        } else if listed {
            let severity = slot.head().severity;
            let mut details = slot.details();
            if let Value::Object(m) = &mut details {
                m.insert("devices".into(), self.devices(cx.eq.ix()));
            }
            cx.update(rule, severity, msg.ts, details);
        }
    }

    /// A device silent for `intervals` × its reporting interval (wall
    /// time) goes offline, at its clock `device_now`.
    /// Time alone makes a device due: the engine asks [`due`] of each.
    fn tick_due(&self, _base: usize, _due: &mut TickDue) -> bool {
        true
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        let rule = Rule::DeviceOffline;
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            self.offline.reset(cx.eq.ix());
            cx.clear(rule, tick.device_now);
            return;
        }
        if cx.dev.offline {
            return;
        }
        let (interval_s, threshold) = threshold(cx.dev, p);
        if tick.silent_ms < threshold {
            return;
        }
        cx.dev.offline = true;
        // rules.md: minor, but major for a ride in its operating hours.
        let hours = cx
            .eq
            .registry
            .get("operating_hours")
            .and_then(Value::as_str)
            .and_then(parse_hours);
        let severity = match p.severity_of(OPERATING_SEVERITY) {
            Some(s) if super::in_hours(hours, tick.device_now, cx.local_offset_ms) => s,
            _ => p.severity,
        };
        self.offline.at(cx.eq.ix()).insert(cx.dev.id.clone());
        let details = json!({
            "devices": self.devices(cx.eq.ix()),
            "silent_s": tick.silent_ms / 1000,
            "last_ts": cx.dev.last_ts,
            "report_interval_s": interval_s,
        });
        let at = cx.dev.last_ts + threshold;
        cx.fire(rule, severity, at, details);
    }

    /// Resolved by a person: raised again only after a device has been
    /// heard from and falls silent again.
    fn on_resolve(&mut self, cx: &mut Cx<'_>, _rule: Local, _alarm: &Alarm) {
        self.offline.reset(cx.eq.ix());
    }

    fn on_release(&mut self, cx: &mut Cx<'_>, _dev: DevIx, id: &DeviceId, at: EpochMs) {
        if let Some(set) = self.offline.get_mut(cx.eq.ix())
            && set.remove(id)
            && set.is_empty()
        {
            cx.clear(Rule::DeviceOffline, at);
        }
    }

    /// A restored open alarm: the devices it lists are offline.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: super::Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        if cx.local(key, Rule::ALL.len()).is_none() {
            return;
        }
        let set = self.offline.at(cx.eq.ix());
        set.clear();
        let listed = latest
            .details
            .get("devices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        set.extend(listed.filter_map(|d| DeviceId::new(d).ok()));
        set.extend(latest.device_id.clone());
    }
}

impl Liveness {
    fn devices(&self, eq: usize) -> Value {
        let list: Vec<&str> = self
            .offline
            .get(eq)
            .into_iter()
            .flatten()
            .map(DeviceId::as_str)
            .collect();
        json!(list)
    }
}

/// The reporting interval the device goes by, and the silence (wall ms)
/// after which it is offline, with `device.offline`'s parameters `p`.
fn threshold(dev: &DeviceCore, p: &Params) -> (u32, i64) {
    let interval_s = if dev.report_interval_s == 0 {
        DEFAULT_REPORT_INTERVAL_S
    } else {
        dev.report_interval_s
    };
    let threshold = (p.num(INTERVALS) * f64::from(interval_s) * 1000.0).round() as i64;
    (interval_s, threshold)
}

/// Whether the tick hook acts on `dev`, silent for `silent_ms`, with its
/// equipment's parameters `params` (the family's first key `base`): the
/// rule is disabled (its alarm clears), or the device is online and has
/// been silent for the threshold. The engine asks it of every device on
/// every tick (see [`Family::tick_due`]): a deadline that moves with
/// every message.
pub(crate) fn due(dev: &DeviceCore, params: &ParamSet, base: usize, silent_ms: i64) -> bool {
    let p = params.get(Key::from_index(base + Rule::DeviceOffline as usize));
    !p.enabled || (!dev.offline && silent_ms >= threshold(dev, p).1)
}
