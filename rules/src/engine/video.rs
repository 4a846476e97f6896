//! The rules raised by video-analytics events. A camera reports incidents,
//! not states (protocol.md has no "ended" flag), so an alarm stays open
//! while qualifying events keep coming: each event while it is open is a
//! repeat, and it clears `clear_s` after the last one (device time).
//! `video.camera_occluded` is the exception: a camera reporting occlusion
//! again and again, each report less than `clear_s` after the one before,
//! for `for_s`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tracing::warn;
use vigil_model::reading::{RideState, VideoEvent, VideoKind};
use vigil_model::{Alarm, DeviceId, EpochMs};

use super::elevator::round3;
use super::state::{Book, EquipmentState, quiet_period};
use crate::catalogue::Rule;

/// Occlusion runs one equipment tracks at once; more cameras than this
/// reporting within one gap are ignored (with a warning) until runs end.
const MAX_OCCLUSION_RUNS: usize = 256;

/// What the engine keeps about one equipment's video rules.
#[derive(Debug, Default)]
pub(crate) struct VideoEquipment {
    /// Per rule of [`Rule::VIDEO`]: the latest event that keeps its open
    /// alarm open, and the device that sent it (whose clock clears it).
    pub last: [Option<(EpochMs, DeviceId)>; Rule::VIDEO.len()],
    /// Occlusion runs by (device, camera).
    pub occluded: HashMap<(DeviceId, String), Occlusion>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Occlusion {
    since: EpochMs,
    last: EpochMs,
    /// This run has fired; its further reports keep the alarm open.
    fired: bool,
}

fn slot_of(rule: Rule) -> usize {
    rule.index() - Rule::VIDEO[0].index()
}

fn rule_for(kind: VideoKind) -> Option<Rule> {
    match kind {
        VideoKind::ElectricBike => Some(Rule::VideoElectricBike),
        VideoKind::PersonFall => Some(Rule::VideoPersonFall),
        VideoKind::RestraintUnlocked => Some(Rule::VideoRestraintUnlocked),
        VideoKind::DangerZoneIntrusion => Some(Rule::VideoDangerZone),
        VideoKind::SmokeFire => Some(Rule::VideoSmokeFire),
        VideoKind::CameraOccluded => Some(Rule::VideoCameraOccluded),
        // Stored and shown in SQL; no built-in rule in rules.md.
        VideoKind::Crowding | VideoKind::DoorObstruction => None,
    }
}

/// A video event at its device time `t`.
pub(crate) fn on_event(
    book: &mut Book,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    ev: &VideoEvent,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    // Quiet periods that ended before this event end first: a qualifying
    // event after them raises a new alarm rather than repeating the old one.
    timer(book, eq, dev_id, t, out);
    let Some(rule) = rule_for(ev.event) else {
        return;
    };
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled || ev.confidence < p.min_confidence as f32 {
        return;
    }
    let k = slot_of(rule);
    let mut details = event_details(ev);
    match rule {
        Rule::VideoRestraintUnlocked => {
            // Unlocked restraints are normal while loading: only a running
            // ride counts, as its own ride samples report it.
            if eq.ride_state != Some(RideState::Running) {
                return;
            }
            details.insert("ride_state".into(), json!("running"));
        }
        Rule::VideoCameraOccluded => {
            let key = (dev_id.clone(), ev.camera_id.clone());
            if !eq.video.occluded.contains_key(&key) {
                eq.video.occluded.retain(|_, r| t - r.last < p.clear_ms);
                if eq.video.occluded.len() >= MAX_OCCLUSION_RUNS {
                    warn!(equipment = %eq.binding.equipment_id, device = %dev_id, "Too many occluded cameras at once; this report is not tracked.");
                    return;
                }
            }
            let fresh = Occlusion {
                since: t,
                last: t,
                fired: false,
            };
            let open = eq.slot(rule).is_some();
            let run = eq.video.occluded.entry(key).or_insert(fresh);
            if t - run.last >= p.clear_ms || (run.fired && !open) {
                // A gap of clear_s or more (its alarm has cleared): a new occlusion.
                *run = fresh;
            }
            run.last = run.last.max(t);
            let (since, fired) = (run.since, run.fired);
            if fired {
                hold(eq, k, dev_id, t);
                return;
            }
            if t - since < p.for_ms {
                return;
            }
            if let Some(run) = eq
                .video
                .occluded
                .get_mut(&(dev_id.clone(), ev.camera_id.clone()))
            {
                run.fired = true;
            }
            details.insert("since".into(), json!(since));
            details.insert("occluded_for_s".into(), json!((t - since) / 1000));
        }
        _ => {}
    }
    hold(eq, k, dev_id, t);
    book.fire(
        eq,
        rule,
        p.severity,
        dev_id,
        t,
        Value::Object(details),
        false,
        out,
    );
}

/// Marks the latest event that keeps rule `k`'s alarm open.
fn hold(eq: &mut EquipmentState, k: usize, dev_id: &DeviceId, t: EpochMs) {
    let last = &mut eq.video.last[k];
    if last.as_ref().is_none_or(|(at, _)| t >= *at) {
        *last = Some((t, dev_id.clone()));
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

/// Clears the video alarms whose quiet period has ended on `dev_id`'s
/// clock `t` (the device whose event was the last), and every video alarm
/// of a rule the configuration disabled.
pub(crate) fn timer(
    book: &mut Book,
    eq: &mut EquipmentState,
    dev_id: &DeviceId,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    for (k, rule) in Rule::VIDEO.into_iter().enumerate() {
        if rule == Rule::VideoCameraOccluded && !eq.params.get(rule).enabled {
            eq.video.occluded.clear();
        }
        let last = eq.video.last[k].take();
        eq.video.last[k] = quiet_period(book, eq, rule, last, dev_id, t, out);
    }
}

/// A restored open alarm: its latest version is the latest event we know.
pub(crate) fn restored(eq: &mut EquipmentState, rule: Rule, alarm: &Alarm) {
    if let Some(device) = &alarm.device_id {
        eq.video.last[slot_of(rule)] = Some((alarm.updated_at, device.clone()));
    }
}

/// Resolved by a person: the next qualifying event raises a new alarm; an
/// occlusion must last `for_s` again from its next report.
pub(crate) fn resolved(eq: &mut EquipmentState, rule: Rule) {
    eq.video.last[slot_of(rule)] = None;
    if rule == Rule::VideoCameraOccluded {
        eq.video.occluded.clear();
    }
}

/// `dev_id`'s clock stepped back to `t`: its quiet periods run from `t`.
pub(crate) fn rebase(eq: &mut EquipmentState, dev_id: &DeviceId, t: EpochMs) {
    for (at, by) in eq.video.last.iter_mut().flatten() {
        if by == dev_id {
            *at = (*at).min(t);
        }
    }
    for ((by, _), run) in &mut eq.video.occluded {
        if by == dev_id {
            run.since = run.since.min(t);
            run.last = run.last.min(t);
        }
    }
}

/// `dev_id` is bound to other equipment: the video alarms its events were
/// keeping open on this one clear now.
pub(crate) fn release_device(
    book: &mut Book,
    eq: &mut EquipmentState,
    dev_id: &DeviceId,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    eq.video.occluded.retain(|(by, _), _| by != dev_id);
    for (k, rule) in Rule::VIDEO.into_iter().enumerate() {
        if eq.video.last[k]
            .as_ref()
            .is_some_and(|(_, by)| by == dev_id)
        {
            eq.video.last[k] = None;
            book.clear(eq, rule, t, out);
        }
    }
}
