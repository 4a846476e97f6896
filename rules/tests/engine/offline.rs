//! `device.offline`: liveness on the engine's wall clock.

use serde_json::json;
use vigil_model::{AlarmId, AlarmState, DeviceId, Severity};
use vigil_rules::{RuleConfig, RuleEngine};

use crate::harness::*;

const RULE: &str = "device.offline";

#[test]
fn raised_after_three_reporting_intervals_and_cleared_by_a_message() {
    let mut h = H::new();
    h.send(0, healthy());
    none(&h.tick(30_000), RULE);
    none(&h.tick(89_999), RULE);
    let a = one(&h.tick(90_000), RULE);
    assert_raised(&a, RULE, 90_000);
    assert_eq!(a.severity, Severity::Minor);
    assert_eq!(
        a.details,
        json!({"devices": ["EL1"], "silent_s": 90, "last_ts": T0, "report_interval_s": 30})
    );
    // Still silent: no more changes.
    none(&h.tick(200_000), RULE);
    // Any message brings it back, whatever the stream.
    let c = one(&h.ride(250_000), RULE);
    assert_eq!(
        (c.alarm_id, c.state, c.cleared_at, c.version),
        (a.alarm_id, AlarmState::Cleared, Some(T0 + 250_000), 2)
    );
}

/// While ingest stands still (its store stalled), what a device sends
/// waits before the engine; silence counts only up to the time ingest has
/// handed everything on. Once it moves again a device that kept sending
/// is not offline; one that truly went quiet goes offline, measured from
/// its last message.
#[test]
fn silence_is_judged_only_as_far_as_ingest_has_heard() {
    let mut h = H::new();
    h.send(0, healthy());
    // Ingest stalled from 10 s on; the wall clock runs to 300 s.
    for at in (30_000..=300_000).step_by(30_000) {
        none(&h.engine.tick_heard(T0 + at, T0 + 10_000), RULE);
    }
    // What waited reaches the engine: the device sent on at 30 s and 60 s.
    h.send_received(30_000, 301_000, healthy());
    h.send_received(60_000, 301_000, healthy());
    none(&h.engine.tick_heard(T0 + 302_000, T0 + 302_000), RULE);
    // Then it is silent: offline 3 intervals after the engine last heard it.
    none(&h.engine.tick_heard(T0 + 390_999, T0 + 390_999), RULE);
    let a = one(&h.engine.tick_heard(T0 + 391_000, T0 + 391_000), RULE);
    assert_eq!(a.details["silent_s"], json!(90));
}

#[test]
fn the_interval_comes_from_the_registry_and_the_multiple_from_config() {
    let mut h = H::with_toml("[rule.\"device.offline\"]\nintervals = 2");
    h.ctx.report_interval_s = 10;
    h.send(0, healthy());
    none(&h.tick(19_999), RULE);
    one(&h.tick(20_000), RULE);
}

#[test]
fn readings_of_any_stream_keep_a_device_online() {
    let mut h = H::new();
    h.send(0, healthy());
    let mut changes = Vec::new();
    for k in 1..10 {
        changes.extend(h.ride(k * 60_000));
        changes.extend(h.event(k * 60_000 + 30_000, "E1", k % 2 == 0));
        changes.extend(h.tick(k * 60_000 + 59_000));
    }
    none(&changes, RULE);
}

#[test]
fn a_second_device_of_the_equipment_is_a_repeat_and_both_must_return() {
    let mut h = H::new();
    let el1 = DeviceId::new("EL1").unwrap();
    let cam = DeviceId::new("CAM1").unwrap();
    h.send(0, healthy());
    h.device = cam.clone();
    h.ride(30_000);
    let a = one(&h.tick(90_000), RULE);
    assert_eq!(a.device_id.as_ref(), Some(&el1));
    let r = one(&h.tick(120_000), RULE);
    assert_eq!((r.alarm_id.clone(), r.count), (a.alarm_id.clone(), 2));
    assert_eq!(r.details["devices"], json!(["CAM1", "EL1"]));
    // EL1 reports: still one device offline, a new version says which.
    h.device = el1;
    let u = one(&h.send(130_000, healthy()), RULE);
    assert_eq!((u.state, u.count), (AlarmState::Active, 2));
    assert_eq!(u.details["devices"], json!(["CAM1"]));
    h.device = cam;
    assert_eq!(one(&h.ride(140_000), RULE).state, AlarmState::Cleared);
}

#[test]
fn disabled_for_a_category() {
    let mut h = H::with_toml("[category.elevator.\"device.offline\"]\nenabled = false");
    h.send(0, healthy());
    none(&h.tick(1_000_000), RULE);
}

#[test]
fn a_device_silent_since_before_a_restart_goes_offline_on_schedule() {
    // Heard 60 s before the restart (at 0), never again: offline at 90 s,
    // as if the engine had not stopped.
    let mut h = H::new();
    let ctx = h.ctx.clone();
    h.engine.last_heard(&h.device, &ctx, T0);
    none(&h.tick(60_000), RULE);
    none(&h.tick(89_999), RULE);
    let a = one(&h.tick(90_000), RULE);
    assert_raised(&a, RULE, 90_000);
    assert_eq!(a.details["last_ts"], json!(T0));
    // Other rules have nothing to go on: no sample was evaluated.
    assert_eq!(h.engine.open_alarms().count(), 1);
    // It speaks: back online.
    let c = one(&h.ride(120_000), RULE);
    assert_eq!(c.state, AlarmState::Cleared);
}

#[test]
fn a_device_heard_after_the_restart_keeps_its_live_state() {
    let mut h = H::new();
    h.send(50_000, healthy());
    let ctx = h.ctx.clone();
    // Recovery arrives late with an older time: it must not rewind liveness.
    h.engine.last_heard(&h.device, &ctx, T0);
    none(&h.tick(100_000), RULE);
    one(&h.tick(140_000), RULE);
}

#[test]
fn a_restored_offline_alarm_continues_when_the_device_is_still_silent() {
    let mut h = H::new();
    h.send(0, healthy());
    let raised = one(&h.tick(90_000), RULE);
    // Restart: a fresh engine gets the open alarm and the last-heard time.
    let mut h2 = H::new();
    // Ids a new alarm would get differ from the restored one's.
    h2.engine = RuleEngine::with_id_source(
        RuleConfig::default(),
        Box::new(|| AlarmId::new("NEW").unwrap()),
    );
    let ctx = h2.ctx.clone();
    h2.engine.restore(vec![raised.clone()], T0 + 100_000);
    h2.engine.last_heard(&h2.device, &ctx, T0);
    let changes = h2.tick(110_000);
    assert!(
        of(&changes, RULE)
            .iter()
            .all(|a| a.alarm_id == raised.alarm_id),
        "no second offline alarm: {changes:?}"
    );
    assert_eq!(h2.open(RULE).map(|a| a.alarm_id), Some(raised.alarm_id));
}

/// T0 is 18:26:40 UTC: inside 09:00–22:00 and outside 20:00–23:00.
fn ride_with_hours(hours: Option<&str>) -> H {
    let mut h = H::new();
    h.ctx = ctx_for("RIDE1", "amusement_ride");
    if let Some(hours) = hours {
        std::sync::Arc::make_mut(&mut h.ctx.params).insert("operating_hours".into(), json!(hours));
    }
    h
}

#[test]
fn a_silent_ride_is_major_in_its_operating_hours_and_minor_outside() {
    let mut h = ride_with_hours(Some("09:00-22:00"));
    h.ride(0);
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Major);

    let mut h = ride_with_hours(Some("20:00-23:00"));
    h.ride(0);
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Minor);

    // A span across midnight, and local time ahead of UTC: 18:26 UTC is
    // 02:26 at UTC+8, inside 18:00–03:00.
    let mut h = ride_with_hours(Some("18:00-03:00"));
    h.engine.set_local_offset(8 * 3600);
    h.ride(0);
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Major);

    // No hours in the registry: taken as always operating.
    let mut h = ride_with_hours(None);
    h.ride(0);
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Major);

    // Elevators stay minor; a configured operating severity applies to any category.
    let mut h = H::new();
    h.send(0, healthy());
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Minor);
    let mut h =
        H::with_toml("[category.elevator.\"device.offline\"]\noperating_severity = \"critical\"");
    h.send(0, healthy());
    assert_eq!(one(&h.tick(90_000), RULE).severity, Severity::Critical);
}

/// A tick visits only devices something is due for; a silent device is
/// due when its silence reaches the threshold, however far the clock
/// jumped, and a configuration change reaches every device: disabling
/// the rule clears its open alarm at the next tick, enabling it again
/// raises it anew for a device still silent (stamped at its threshold).
#[test]
fn silences_and_configuration_changes_reach_a_tick_that_visits_only_due_devices() {
    let mut h = H::new();
    h.send(0, healthy());
    let quiet = h.device.clone();
    // A second device, of other equipment, that keeps talking.
    let talking = DeviceId::new("EL2").unwrap();
    h.device = talking.clone();
    h.ctx = ctx_for("EQ2", "elevator");
    h.send(0, healthy());
    none(&h.tick(60_000), RULE);
    h.send(60_000, healthy());
    h.send(490_000, healthy());
    // One jump far past the threshold: raised as of the threshold.
    let a = one(&h.tick(500_000), RULE);
    assert_eq!(a.device_id.as_ref(), Some(&quiet));
    assert_eq!(a.raised_at, T0 + 90_000);
    h.engine.replace_config(
        RuleConfig::from_toml("[rule.\"device.offline\"]\nenabled = false").unwrap(),
    );
    let c = one(&h.tick(501_000), RULE);
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
    none(&h.tick(600_000), RULE);
    h.send(595_000, healthy());
    // Enabled again: the device that went offline counts as offline until
    // it is heard from (as after a resolve); the other one is watched.
    h.engine.replace_config(RuleConfig::default());
    none(&h.tick(601_000), RULE);
    none(&h.tick(684_999), RULE);
    let d = one(&h.tick(700_000), RULE);
    assert_eq!(d.device_id.as_ref(), Some(&talking));
    assert_eq!(d.raised_at, T0 + 685_000);
    // The first one speaks, then falls silent again.
    h.device = quiet.clone();
    h.ctx = ctx();
    h.send(710_000, healthy());
    none(&h.tick(799_999), RULE);
    let e = one(&h.tick(800_000), RULE);
    assert_eq!(
        (e.device_id.as_ref(), e.raised_at),
        (Some(&quiet), T0 + 800_000)
    );
}
