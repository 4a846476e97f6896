//! `device.offline`: liveness on the engine's wall clock.

use serde_json::json;
use vigil_model::{AlarmState, DeviceId, Severity};

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
