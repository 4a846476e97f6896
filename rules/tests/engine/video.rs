//! The video rules: an event at or above its confidence raises, events
//! while the alarm is open repeat it, and it clears `clear_s` after the
//! last one; camera occlusion must last; restraints count only while the
//! ride runs; per-category and per-equipment overrides.

use vigil_model::reading::{Brake, RideSample, RideState, VideoEvent, VideoKind};
use vigil_model::{Alarm, AlarmState, DeviceId, EpochMs, Payload, Severity};
use vigil_rules::RuleConfig;

use crate::harness::*;

fn video_h(config: &str, category: &str) -> H {
    let mut h = H::with_config(RuleConfig::from_toml(config).unwrap());
    h.ctx = ctx_for("EQ1", category);
    h.ctx.kind = "video".into();
    h.device = DeviceId::new("CAM1").unwrap();
    h
}

fn event(kind: VideoKind, confidence: f32) -> VideoEvent {
    VideoEvent {
        camera_id: "car".into(),
        event: kind,
        confidence,
        snapshot: Some("snap/0001.jpg".into()),
    }
}

fn see(h: &mut H, at: EpochMs, ev: VideoEvent) -> Vec<Alarm> {
    let r = h.reading(at, Payload::Video(ev));
    h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
}

/// The ride's own PLC gateway (another device of the same equipment).
fn ride_state(h: &mut H, at: EpochMs, state: RideState) {
    let r = vigil_model::Reading {
        device_id: DeviceId::new("PLC1").unwrap(),
        seq: at as u64 + 1,
        ts: T0 + at,
        received_at: T0 + at,
        payload: Payload::Ride(RideSample {
            state,
            speed_mps: 1.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake: Brake::Ok,
            passengers: None,
        }),
        extra: None,
    };
    let mut ctx = h.ctx.clone();
    ctx.kind = "ride".into();
    let changes = h.engine.on_reading(&r, &ctx, T0 + at);
    assert!(changes.is_empty(), "{changes:#?}");
}

/// Raise on the event, repeat within the quiet period, clear exactly
/// `clear_ms` after the last event (on a tick), then a later event
/// raises a new alarm.
fn lifecycle(
    h: &mut H,
    rule: &str,
    kind: VideoKind,
    confidence: f32,
    severity: Severity,
    clear_ms: EpochMs,
) {
    let a = one(&see(h, 1_000, event(kind, confidence)), rule);
    assert_eq!((a.state, a.count, a.version), (AlarmState::Active, 1, 1));
    assert_eq!(a.severity, severity, "{rule}");
    assert_eq!((a.raised_at, a.updated_at), (T0 + 1_000, T0 + 1_000));
    assert_eq!(a.device_id.as_ref().map(DeviceId::as_str), Some("CAM1"));
    assert_eq!(a.details["camera_id"], "car");
    assert_eq!(a.details["event"], kind.as_str());
    assert_eq!(a.details["snapshot"], "snap/0001.jpg");

    // Within the quiet period: the same alarm, counted.
    let repeat_at = 1_000 + clear_ms - 1;
    let r = one(&see(h, repeat_at, event(kind, 0.99)), rule);
    assert_eq!(r.alarm_id, a.alarm_id, "{rule}: a repeat is the same alarm");
    assert_eq!((r.count, r.version, r.updated_at), (2, 2, T0 + repeat_at));
    assert_eq!(r.details["confidence"], 0.99);

    // Quiet: clears clear_ms after the last event, not a millisecond sooner
    // (an unacknowledged critical alarm escalates meanwhile; not a clear).
    let quiet = h.tick(repeat_at + clear_ms - 1);
    assert!(
        of(&quiet, rule)
            .iter()
            .all(|a| a.state == AlarmState::Active && a.details.get("escalated_at").is_some()),
        "{quiet:#?}"
    );
    let c = one(&h.tick(repeat_at + clear_ms + 300), rule);
    assert_eq!(c.alarm_id, a.alarm_id);
    assert_eq!(
        (c.state, c.count, c.cleared_at),
        (AlarmState::Cleared, 2, Some(T0 + repeat_at + clear_ms)),
        "{rule}"
    );
    assert!(h.open(rule).is_none());

    // The next event is a new alarm.
    let later = repeat_at + clear_ms + 1_000;
    let b = one(&see(h, later, event(kind, confidence)), rule);
    assert_ne!(b.alarm_id, a.alarm_id);
    assert_eq!(b.count, 1);
}

#[test]
fn electric_bike_in_an_elevator_car() {
    let mut h = video_h("", "elevator");
    lifecycle(
        &mut h,
        "video.electric_bike",
        VideoKind::ElectricBike,
        0.8,
        Severity::Major,
        300_000,
    );
}

#[test]
fn person_fall() {
    let mut h = video_h("", "escalator");
    lifecycle(
        &mut h,
        "video.person_fall",
        VideoKind::PersonFall,
        0.7,
        Severity::Critical,
        600_000,
    );
}

#[test]
fn danger_zone_with_its_60_s_cool_down() {
    let mut h = video_h("", "amusement_ride");
    lifecycle(
        &mut h,
        "video.danger_zone",
        VideoKind::DangerZoneIntrusion,
        0.7,
        Severity::Major,
        60_000,
    );
}

#[test]
fn smoke_fire() {
    let mut h = video_h("", "elevator");
    lifecycle(
        &mut h,
        "video.smoke_fire",
        VideoKind::SmokeFire,
        0.6,
        Severity::Critical,
        600_000,
    );
}

#[test]
fn restraint_unlocked_on_a_running_ride() {
    let mut h = video_h("", "amusement_ride");
    ride_state(&mut h, 0, RideState::Running);
    lifecycle(
        &mut h,
        "video.restraint_unlocked",
        VideoKind::RestraintUnlocked,
        0.5,
        Severity::Critical,
        600_000,
    );
}

#[test]
fn restraint_unlocked_only_while_the_ride_runs() {
    const RULE: &str = "video.restraint_unlocked";
    let mut h = video_h("", "amusement_ride");
    // No ride sample yet: the ride's state is unknown.
    none(
        &see(&mut h, 0, event(VideoKind::RestraintUnlocked, 0.95)),
        RULE,
    );
    ride_state(&mut h, 1_000, RideState::Loading);
    none(
        &see(&mut h, 2_000, event(VideoKind::RestraintUnlocked, 0.95)),
        RULE,
    );
    ride_state(&mut h, 3_000, RideState::Running);
    let a = one(
        &see(&mut h, 4_000, event(VideoKind::RestraintUnlocked, 0.95)),
        RULE,
    );
    assert_eq!(a.details["ride_state"], "running");
    assert_eq!(a.device_id.as_ref().map(DeviceId::as_str), Some("CAM1"));

    // Not an elevator rule unless configured.
    let mut h = video_h("", "elevator");
    ride_state(&mut h, 0, RideState::Running);
    none(
        &see(&mut h, 1_000, event(VideoKind::RestraintUnlocked, 0.95)),
        RULE,
    );
}

#[test]
fn confidence_at_the_threshold_counts_and_below_it_does_not() {
    for (rule, kind, at_threshold, below) in [
        ("video.electric_bike", VideoKind::ElectricBike, 0.8, 0.79),
        ("video.person_fall", VideoKind::PersonFall, 0.7, 0.69),
        (
            "video.danger_zone",
            VideoKind::DangerZoneIntrusion,
            0.7,
            0.69,
        ),
        ("video.smoke_fire", VideoKind::SmokeFire, 0.6, 0.59),
    ] {
        let mut h = video_h("", "elevator");
        none(&see(&mut h, 0, event(kind, below)), rule);
        assert_eq!(
            one(&see(&mut h, 1_000, event(kind, at_threshold)), rule).count,
            1
        );
    }
}

#[test]
fn electric_bikes_matter_in_elevator_cars_only_unless_configured() {
    const RULE: &str = "video.electric_bike";
    let mut h = video_h("", "amusement_ride");
    none(&see(&mut h, 0, event(VideoKind::ElectricBike, 0.99)), RULE);
    let mut h = video_h(
        "[category.escalator.\"video.electric_bike\"]\nenabled = true",
        "escalator",
    );
    one(&see(&mut h, 0, event(VideoKind::ElectricBike, 0.99)), RULE);
}

#[test]
fn per_category_and_per_equipment_overrides() {
    let config = "[category.elevator.\"video.electric_bike\"]\nmin_confidence = 0.9\n\
                  [equipment.EQ2.\"video.electric_bike\"]\nmin_confidence = 0.5\nclear_s = 30\nseverity = \"critical\"";
    const RULE: &str = "video.electric_bike";
    let mut h = video_h(config, "elevator");
    none(&see(&mut h, 0, event(VideoKind::ElectricBike, 0.85)), RULE);
    let a = one(
        &see(&mut h, 1_000, event(VideoKind::ElectricBike, 0.9)),
        RULE,
    );
    assert_eq!(a.severity, Severity::Major);

    let mut h = video_h(config, "elevator");
    h.ctx = ctx_for("EQ2", "elevator");
    let a = one(&see(&mut h, 0, event(VideoKind::ElectricBike, 0.5)), RULE);
    assert_eq!(a.severity, Severity::Critical);
    none(&h.tick(29_999), RULE);
    assert_eq!(one(&h.tick(30_000), RULE).cleared_at, Some(T0 + 30_000));
}

#[test]
fn camera_occluded_for_five_minutes() {
    const RULE: &str = "video.camera_occluded";
    let mut h = video_h("", "elevator");
    let occluded = || event(VideoKind::CameraOccluded, 0.9);
    // Reported every minute: fires at the first report 5 min after the first.
    for m in 0..5 {
        none(&see(&mut h, m * 60_000, occluded()), RULE);
    }
    let a = one(&see(&mut h, 300_000, occluded()), RULE);
    assert_eq!((a.raised_at, a.severity), (T0 + 300_000, Severity::Minor));
    assert_eq!(a.details["occluded_for_s"], 300);
    assert_eq!(a.details["since"], T0);
    // Still occluded: one occurrence. Meanwhile another camera of the
    // device is occluded too, and after 5 min that is a repeat.
    let landing = || VideoEvent {
        camera_id: "landing".into(),
        ..occluded()
    };
    let mut changes = Vec::new();
    for (at, ev) in [
        (360_000, occluded()),
        (400_000, landing()),
        (420_000, occluded()),
        (480_000, occluded()),
        (500_000, landing()),
        (540_000, occluded()),
        (600_000, occluded()),
        (600_000, landing()),
        (660_000, occluded()),
    ] {
        changes.extend(see(&mut h, at, ev));
    }
    none(&changes, RULE);
    let r = one(&see(&mut h, 700_000, landing()), RULE);
    assert_eq!((r.alarm_id.clone(), r.count), (a.alarm_id.clone(), 2));
    assert_eq!(r.details["camera_id"], "landing");
    assert_eq!(r.details["occluded_for_s"], 300);
    // Clears 2 min after the last report.
    none(&h.tick(700_000 + 119_999), RULE);
    let c = one(&h.tick(700_000 + 120_000), RULE);
    assert_eq!(
        (c.state, c.cleared_at),
        (AlarmState::Cleared, Some(T0 + 820_000))
    );
}

#[test]
fn an_occlusion_with_a_two_minute_gap_starts_again() {
    const RULE: &str = "video.camera_occluded";
    let mut h = video_h("", "elevator");
    let occluded = || event(VideoKind::CameraOccluded, 0.9);
    none(&see(&mut h, 0, occluded()), RULE);
    none(&see(&mut h, 100_000, occluded()), RULE);
    // 120 s without a report: the occlusion ended; this is a new one.
    none(&see(&mut h, 220_000, occluded()), RULE);
    none(&see(&mut h, 320_000, occluded()), RULE);
    none(&see(&mut h, 419_000, occluded()), RULE);
    let a = one(&see(&mut h, 520_000, occluded()), RULE);
    assert_eq!(a.details["since"], T0 + 220_000);
}

#[test]
fn events_without_a_rule_raise_nothing() {
    let mut h = video_h("", "elevator");
    assert!(see(&mut h, 0, event(VideoKind::Crowding, 1.0)).is_empty());
    assert!(see(&mut h, 1_000, event(VideoKind::DoorObstruction, 1.0)).is_empty());
}

#[test]
fn after_a_resolve_the_next_event_raises_a_new_alarm() {
    const RULE: &str = "video.person_fall";
    let mut h = video_h("", "elevator");
    let a = one(&see(&mut h, 0, event(VideoKind::PersonFall, 0.9)), RULE);
    let acked = h
        .engine
        .acknowledge(&a.alarm_id, "guard", T0 + 1_000)
        .unwrap();
    assert_eq!(acked.state, AlarmState::Acknowledged);
    let r = one(&see(&mut h, 2_000, event(VideoKind::PersonFall, 0.9)), RULE);
    assert_eq!(
        (r.alarm_id.clone(), r.count, r.state),
        (a.alarm_id.clone(), 2, AlarmState::Acknowledged)
    );
    h.engine
        .resolve(&a.alarm_id, "guard", "helped up", T0 + 3_000)
        .unwrap();
    none(&h.tick(700_000), RULE);
    let b = one(&see(&mut h, 4_000, event(VideoKind::PersonFall, 0.9)), RULE);
    assert_ne!(b.alarm_id, a.alarm_id);
}

#[test]
fn a_disabled_rule_clears_its_alarm() {
    const RULE: &str = "video.smoke_fire";
    let mut h = video_h("", "elevator");
    one(&see(&mut h, 0, event(VideoKind::SmokeFire, 0.9)), RULE);
    h.engine.replace_config(
        RuleConfig::from_toml("[rule.\"video.smoke_fire\"]\nenabled = false").unwrap(),
    );
    let c = one(&h.tick(1_000), RULE);
    assert_eq!(c.state, AlarmState::Cleared);
    none(&see(&mut h, 2_000, event(VideoKind::SmokeFire, 0.9)), RULE);
}

#[test]
fn a_restored_video_alarm_clears_after_its_quiet_period() {
    const RULE: &str = "video.danger_zone";
    let mut h = video_h("", "elevator");
    let a = one(
        &see(&mut h, 0, event(VideoKind::DangerZoneIntrusion, 0.9)),
        RULE,
    );
    let mut after = video_h("", "elevator");
    after.engine.restore(vec![a.clone()], T0 + 5_000);
    after.seq = 100;
    // An event within the cool-down continues the restored alarm.
    let r = one(
        &see(
            &mut after,
            30_000,
            event(VideoKind::DangerZoneIntrusion, 0.9),
        ),
        RULE,
    );
    assert_eq!((r.alarm_id.clone(), r.count), (a.alarm_id.clone(), 2));
    let c = one(&after.tick(90_000), RULE);
    assert_eq!((c.alarm_id, c.cleared_at), (a.alarm_id, Some(T0 + 90_000)));
}

#[test]
fn video_rules_have_confidence_and_quiet_period_parameters() {
    assert!(
        RuleConfig::from_toml("[rule.\"video.person_fall\"]\nmin_confidence = 0.5\nclear_s = 120")
            .is_ok()
    );
    let err =
        RuleConfig::from_toml("[rule.\"video.person_fall\"]\nmin_confidence = 1.5").unwrap_err();
    assert!(err.to_string().contains("min_confidence"), "{err}");
    let err = RuleConfig::from_toml("[rule.\"video.person_fall\"]\nfor_s = 5").unwrap_err();
    assert!(err.to_string().contains("for_s"), "{err}");
    assert!(RuleConfig::from_toml("[rule.\"video.camera_occluded\"]\nfor_s = 600").is_ok());
}
