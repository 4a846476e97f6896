//! The rules raised by video-analytics events. A camera reports incidents,
//! not states (protocol.md has no "ended" flag), so an alarm stays open
//! while qualifying events keep coming: each event while it is open is a
//! repeat, and it clears `clear_s` after the last one (device time).
//! `video.camera_occluded` is the exception: a camera reporting occlusion
//! again and again, each report less than `clear_s` after the one before,
//! for `for_s`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tracing::warn;
use vigil_model::reading::{RideState, VideoEvent, VideoKind};
use vigil_model::{Alarm, DeviceId, EpochMs, Payload, Severity, Stream};

use super::elevator::round3;
use super::{
    Cx, DevCx, DevIx, DeviceTick, Family, Few, Hooks, Local, Msg, Streams, TickDue, rules,
};
use crate::catalogue::{Clear, Decl, Key, Kind, Lit, Num, Param, Period, RIDE_CATEGORIES};

/// What `clear_s` means for the rules that clear after a quiet period.
const QUIET: &str = "seconds without a qualifying event before the alarm clears (events within it repeat the alarm)";

// Video alarms clear after a quiet period. The critical ones stay open
// longer than the 5 min after which an unacknowledged critical alarm
// escalates, so an unseen fall is escalated first.
rules! {
    /// The video-analytics rules.
    pub(crate) enum Rule {
        ElectricBike = Decl {
            id: "video.electric_bike",
            severity: Severity::Major,
            description: "Camera sees an electric bike in the elevator car (elevators only by default).",
            basis: "e-bikes banned from elevator cars (fire risk)",
            clear_s: Clear::own(300.0, QUIET),
            params: &[confidence(0.8)],
            categories: Some(&["elevator"]),
            ..Decl::BASE
        },
        PersonFall = Decl {
            id: "video.person_fall",
            description: "Camera sees a person fall.",
            basis: "video analytics",
            clear_s: Clear::own(600.0, QUIET),
            params: &[confidence(0.7)],
            ..Decl::BASE
        },
        RestraintUnlocked = Decl {
            id: "video.restraint_unlocked",
            description: "Camera sees an unlocked restraint while the ride runs (rides and ropeways only by default).",
            basis: "video analytics; restraint interlock",
            clear_s: Clear::own(600.0, QUIET),
            params: &[confidence(0.0)],
            categories: Some(RIDE_CATEGORIES),
            ..Decl::BASE
        },
        DangerZone = Decl {
            id: "video.danger_zone",
            severity: Severity::Major,
            description: "Camera sees someone in a danger zone.",
            basis: "video analytics",
            clear_s: Clear::own(60.0, QUIET),
            params: &[confidence(0.7)],
            ..Decl::BASE
        },
        SmokeFire = Decl {
            id: "video.smoke_fire",
            description: "Camera sees smoke or fire.",
            basis: "video analytics",
            clear_s: Clear::own(600.0, QUIET),
            params: &[confidence(0.6)],
            ..Decl::BASE
        },
        CameraOccluded = Decl {
            id: "video.camera_occluded",
            severity: Severity::Minor,
            description: "A camera keeps reporting itself occluded for for_s, each report within clear_s of the last.",
            basis: "video analytics; camera tampering",
            for_s: Some(Period::of(300.0).meaning("seconds a camera must keep reporting occlusion before the alarm fires (device time)")),
            clear_s: Clear::own(120.0, "longest gap between occlusion reports of one occlusion; the alarm clears this long after the last"),
            params: &[confidence(0.0)],
            ..Decl::BASE
        },
    }
}

const fn confidence(default: f64) -> Param {
    Param::new(
        "min_confidence",
        Kind::Fraction,
        Lit::Num(default),
        "lowest detector confidence that counts, 0 to 1",
    )
}

/// Every video rule's `min_confidence`: its only parameter (checked below
/// when the crate builds).
const MIN_CONFIDENCE: Num = Num::of(Rule::PersonFall.decl(), "min_confidence");
const _: () = {
    let mut i = 0;
    while i < Rule::DECLS.len() {
        assert!(Rule::DECLS[i].params.len() == 1);
        Num::of(&Rule::DECLS[i], "min_confidence");
        i += 1;
    }
};

/// Occlusion runs one equipment tracks at once; more cameras than this
/// reporting within one gap are ignored (with a warning) until runs end.
const MAX_OCCLUSION_RUNS: usize = 256;

/// The video rules and what they keep of each equipment with cameras.
#[derive(Default)]
pub(crate) struct Video {
    equipment: Few<VideoEquipment>,
}

#[derive(Debug, Default)]
struct VideoEquipment {
    /// Per rule: the latest event that keeps its open alarm open, and the
    /// device that sent it (whose clock clears it).
    last: [Option<(EpochMs, DeviceId)>; Rule::ALL.len()],
    /// Occlusion runs by (device, camera).
    occluded: HashMap<(DeviceId, String), Occlusion>,
}

#[derive(Debug, Clone, Copy)]
struct Occlusion {
    since: EpochMs,
    last: EpochMs,
    /// This run has fired; its further reports keep the alarm open.
    fired: bool,
}

fn rule_for(kind: VideoKind) -> Option<Rule> {
    match kind {
        VideoKind::ElectricBike => Some(Rule::ElectricBike),
        VideoKind::PersonFall => Some(Rule::PersonFall),
        VideoKind::RestraintUnlocked => Some(Rule::RestraintUnlocked),
        VideoKind::DangerZoneIntrusion => Some(Rule::DangerZone),
        VideoKind::SmokeFire => Some(Rule::SmokeFire),
        VideoKind::CameraOccluded => Some(Rule::CameraOccluded),
        // Stored and shown in SQL; no built-in rule in rules.md.
        VideoKind::Crowding | VideoKind::DoorObstruction => None,
    }
}

impl Family for Video {
    fn name(&self) -> &'static str {
        "video"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            rebase: true,
            // Every message: its timer ends quiet periods on the device's clock.
            message: Streams::ALL,
            late: Streams::of(&[Stream::Video]),
            device_tick: true,
            ..Hooks::NONE
        }
    }

    /// `dev_id`'s clock stepped back to `t`: its quiet periods run from `t`.
    fn on_rebase(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let Some(v) = self.equipment.get_mut(cx.eq.ix()) else {
            return;
        };
        let dev_id = &cx.dev.id;
        for (at, by) in v.last.iter_mut().flatten() {
            if by == dev_id {
                *at = (*at).min(t);
            }
        }
        for ((by, _), run) in &mut v.occluded {
            if by == dev_id {
                run.since = run.since.min(t);
                run.last = run.last.min(t);
            }
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if let Payload::Video(ev) = msg.payload {
            self.on_event(cx, ev, msg.ts);
        }
        let t = cx.dev.last_ts;
        self.timer(cx, t);
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        self.timer(cx, tick.device_now);
    }

    /// The timer acts where the family keeps state, or one of its alarms is open.
    fn tick_due(&self, base: usize, due: &mut TickDue) -> bool {
        due.equipment.union_with(self.equipment.kept());
        for &rule in Rule::ALL {
            due.open(base, rule);
        }
        true
    }

    /// A late event is an incident like any other, at its own time; it
    /// raises (or repeats) and its quiet period ends `clear_s` after it.
    /// An occlusion report is not: a run of reports needs their order.
    fn on_late(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if let Payload::Video(ev) = msg.payload
            && ev.event != VideoKind::CameraOccluded
        {
            self.on_event(cx, ev, msg.ts);
        }
    }

    /// Resolved by a person: the next qualifying event raises a new alarm;
    /// an occlusion must last `for_s` again from its next report.
    fn on_resolve(&mut self, cx: &mut Cx<'_>, rule: Local, _alarm: &Alarm) {
        if let Some(v) = self.equipment.get_mut(cx.eq.ix()) {
            v.last[rule.index()] = None;
            if rule == Rule::CameraOccluded.into() {
                v.occluded.clear();
            }
        }
    }

    /// `dev_id` is bound to other equipment: the video alarms its events
    /// were keeping open on this one clear now.
    fn on_release(&mut self, cx: &mut Cx<'_>, _dev: DevIx, dev_id: &DeviceId, at: EpochMs) {
        let Some(v) = self.equipment.get_mut(cx.eq.ix()) else {
            return;
        };
        v.occluded.retain(|(by, _), _| by != dev_id);
        cx.let_go(Rule::ALL, &mut v.last, dev_id, at);
    }

    /// A restored open alarm: its latest version is the latest event we know.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        let Some(rule) = cx.local(key, Rule::ALL.len()) else {
            return;
        };
        if let Some(device) = &latest.device_id {
            let v = self.equipment.at(cx.eq.ix());
            v.last[rule.index()] = Some((latest.updated_at, device.clone()));
        }
    }
}

impl Video {
    /// A video event at its device time `t`.
    fn on_event(&mut self, cx: &mut DevCx<'_>, ev: &VideoEvent, t: EpochMs) {
        // Quiet periods that ended before this event end first: a qualifying
        // event after them raises a new alarm rather than repeating the old one.
        self.timer(cx, t);
        let Some(rule) = rule_for(ev.event) else {
            return;
        };
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled || ev.confidence < p.num(MIN_CONFIDENCE) as f32 {
            return;
        }
        let mut details = event_details(ev);
        let dev_id = cx.dev.id.clone();
        let open = cx.is_open(rule);
        let v = self.equipment.at(cx.eq.ix());
        match rule {
            Rule::RestraintUnlocked => {
                // Unlocked restraints are normal while loading: only a running
                // ride counts, as its own ride samples report it.
                if cx.eq.ride_state != Some(RideState::Running) {
                    return;
                }
                details.insert("ride_state".into(), json!("running"));
            }
            Rule::CameraOccluded => {
                let key = (dev_id.clone(), ev.camera_id.clone());
                if !v.occluded.contains_key(&key) {
                    v.occluded.retain(|_, r| t - r.last < p.clear_ms);
                    if v.occluded.len() >= MAX_OCCLUSION_RUNS {
                        warn!(equipment = %cx.eq.binding.equipment_id, device = %dev_id, "Too many occluded cameras at once; this report is not tracked.");
                        return;
                    }
                }
                let fresh = Occlusion {
                    since: t,
                    last: t,
                    fired: false,
                };
                let run = v.occluded.entry(key).or_insert(fresh);
                if t - run.last >= p.clear_ms || (run.fired && !open) {
                    // A gap of clear_s or more (its alarm has cleared): a new occlusion.
                    *run = fresh;
                }
                run.last = run.last.max(t);
                let (since, fired) = (run.since, run.fired);
                if fired {
                    v.hold(rule, &dev_id, t);
                    return;
                }
                if t - since < p.for_ms {
                    return;
                }
                run.fired = true;
                details.insert("since".into(), json!(since));
                details.insert("occluded_for_s".into(), json!((t - since) / 1000));
            }
            _ => {}
        }
        v.hold(rule, &dev_id, t);
        cx.fire(rule, p.severity, t, Value::Object(details));
    }

    /// Clears the video alarms whose quiet period has ended on the
    /// device's clock `t` (the device whose event was the last), and every
    /// video alarm of a rule the configuration disabled.
    fn timer(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let ix = cx.eq.ix();
        if !Rule::ALL.iter().any(|&r| cx.is_open(r)) {
            // No alarm open: no quiet period to end; each forgets its last
            // event (as `quiet_periods` does). No event: nothing at all.
            if let Some(v) = self.equipment.get_mut(ix) {
                v.last.iter_mut().for_each(|last| *last = None);
                if !cx.tuning().of(Rule::CameraOccluded).enabled {
                    v.occluded.clear();
                }
            }
            return;
        }
        let v = self.equipment.at(ix);
        if !cx.tuning().of(Rule::CameraOccluded).enabled {
            v.occluded.clear();
        }
        cx.quiet_periods(Rule::ALL, &mut v.last, t);
    }
}

impl VideoEquipment {
    /// Marks the latest event that keeps `rule`'s alarm open.
    fn hold(&mut self, rule: Rule, dev_id: &DeviceId, t: EpochMs) {
        let last = &mut self.last[rule as usize];
        if last.as_ref().is_none_or(|(at, _)| t >= *at) {
            *last = Some((t, dev_id.clone()));
        }
    }
}

fn event_details(ev: &VideoEvent) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("camera_id".into(), json!(ev.camera_id));
    m.insert("event".into(), json!(ev.event.as_str()));
    m.insert("confidence".into(), json!(round3(f64::from(ev.confidence))));
    if let Some(snapshot) = &ev.snapshot {
        m.insert("snapshot".into(), json!(snapshot));
    }
    m
}
