//! `elevator.controller_fault`: the controller's own codes.

use serde_json::json;
use vigil_model::{AlarmState, Severity};

use crate::harness::*;

const RULE: &str = "elevator.controller_fault";

#[test]
fn raise_repeat_update_and_clear() {
    let mut h = H::new();
    h.send(0, healthy());
    // Code 01 (safety circuit) is critical in the default table.
    let a = one(&h.event(1_000, "01", true), RULE);
    assert_raised(&a, RULE, 1_000);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(
        a.details,
        json!({"codes": [{"code": "01", "severity": "critical", "since": T0 + 1_000}]})
    );

    // The controller repeating an active code is the same occurrence.
    none(&h.event(2_000, "01", true), RULE);

    // Another code while the first is active: a repeat listing both.
    let r = one(&h.event(3_000, "E77", true), RULE);
    assert_eq!(
        (r.alarm_id.clone(), r.count, r.version, r.severity),
        (a.alarm_id.clone(), 2, 2, Severity::Critical)
    );
    let codes: Vec<&str> = r.details["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["01", "E77"]);
    assert_eq!(
        r.details["codes"][1]["severity"], "major",
        "codes missing from the table are major"
    );

    // 01 clears: a new version listing E77 only, severity follows.
    let u = one(&h.event(4_000, "01", false), RULE);
    assert_eq!(
        (u.count, u.version, u.severity, u.state),
        (2, 3, Severity::Major, AlarmState::Active)
    );
    assert_eq!(u.details["codes"].as_array().unwrap().len(), 1);

    // The last active code clears: the alarm clears at once.
    let c = one(&h.event(5_000, "E77", false), RULE);
    assert_eq!(
        (c.alarm_id, c.state, c.cleared_at, c.version),
        (a.alarm_id, AlarmState::Cleared, Some(T0 + 5_000), 4)
    );

    // An inactive report of a code nobody knew changes nothing.
    none(&h.event(6_000, "E12", false), RULE);
}

#[test]
fn a_configured_clear_period_and_code_table() {
    let mut h = H::with_toml(
        "[rule.\"elevator.controller_fault\"]\nclear_s = 5\nseverity = \"minor\"\n[rule.\"elevator.controller_fault\".codes]\nE5 = \"critical\"",
    );
    let a = one(&h.event(0, "E5", true), RULE);
    assert_eq!(a.severity, Severity::Critical);
    none(&h.event(1_000, "E5", false), RULE);
    // Back within the clear period: a repeat, not a new alarm.
    let r = one(&h.event(3_000, "E5", true), RULE);
    assert_eq!((r.alarm_id.clone(), r.count), (a.alarm_id.clone(), 2));
    none(&h.event(4_000, "E5", false), RULE);
    none(&h.tick(8_999), RULE);
    let c = one(&h.tick(9_000), RULE);
    assert_eq!(
        (c.state, c.cleared_at),
        (AlarmState::Cleared, Some(T0 + 9_000))
    );
    // Codes missing from the table take the rule's severity.
    assert_eq!(
        one(&h.event(20_000, "X1", true), RULE).severity,
        Severity::Minor
    );
}

#[test]
fn codes_match_by_number() {
    let mut h = H::new();
    assert_eq!(
        one(&h.event(0, "9", true), RULE).severity,
        Severity::Critical,
        "\"9\" is code 09 (overtravel)"
    );
}

#[test]
fn elevator_samples_do_not_touch_controller_faults_and_events_do_not_touch_sample_rules() {
    let mut h = H::new();
    h.event(0, "04", true);
    let changes = h.send(1_000, healthy());
    none(&changes, RULE);
    assert!(h.open(RULE).is_some());
    assert_eq!(h.engine.open_alarms().count(), 1);
}
