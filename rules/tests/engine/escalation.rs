//! Escalation of alarms nobody acknowledges, on the injected clock.

use serde_json::json;
use vigil_model::reading::ElevatorSample;
use vigil_model::{Alarm, AlarmState, Severity};
use vigil_rules::RuleConfig;

use crate::harness::*;

const OVERSPEED: &str = "elevator.overspeed";

fn overspeed() -> ElevatorSample {
    ElevatorSample {
        speed_mps: 2.5,
        ..moving()
    }
}

/// The escalations among `changes`: versions made at their `escalated_at`.
fn escalations(changes: &[Alarm]) -> Vec<Alarm> {
    changes
        .iter()
        .filter(|a| {
            a.state == AlarmState::Active
                && a.details.get("escalated_at") == Some(&json!(a.updated_at))
        })
        .cloned()
        .collect()
}

#[test]
fn a_critical_alarm_unacknowledged_for_5_min_escalates_once() {
    let mut h = H::new();
    let raised = one(&h.send(0, overspeed()), OVERSPEED);
    assert_eq!(raised.severity, Severity::Critical);

    assert!(escalations(&h.tick(299_000)).is_empty(), "not before 5 min");
    let changes = h.tick(300_000);
    let up = one(&escalations(&changes), OVERSPEED);
    assert_eq!(up.alarm_id, raised.alarm_id);
    assert_eq!(
        (up.state, up.severity, up.version, up.count),
        (AlarmState::Active, Severity::Critical, 2, 1)
    );
    assert_eq!(up.details["escalated_at"], json!(T0 + 300_000));
    assert_eq!(up.details["escalation"], json!("unacknowledged 5 min"));
    assert_eq!(up.details["speed_mps"], raised.details["speed_mps"]);
    assert_eq!(up.updated_at, T0 + 300_000);
    assert_eq!(h.open(OVERSPEED).unwrap(), up);

    // Once: later ticks leave it alone, and a repeat keeps the marks
    // instead of escalating it again.
    none(&escalations(&h.tick(301_000)), OVERSPEED);
    h.send(302_000, moving());
    let again = one(&h.send(303_000, overspeed()), OVERSPEED);
    assert_eq!(again.count, 2);
    assert_eq!(again.details["escalated_at"], json!(T0 + 300_000));
    none(&escalations(&h.tick(900_000)), OVERSPEED);
}

#[test]
fn an_acknowledged_alarm_does_not_escalate() {
    let mut h = H::new();
    let a = one(&h.send(0, overspeed()), OVERSPEED);
    h.engine
        .acknowledge(&a.alarm_id, "inspector Li", T0 + 60_000)
        .unwrap();
    assert!(escalations(&h.tick(600_000)).is_empty());
}

#[test]
fn limits_are_configured_per_severity() {
    // Critical after 1 min; escalation off: never.
    let mut h = H::with_toml("[escalation]\ncritical_s = 60\n");
    one(&h.send(0, overspeed()), OVERSPEED);
    assert!(escalations(&h.tick(59_000)).is_empty());
    let up = one(&escalations(&h.tick(60_000)), OVERSPEED);
    assert_eq!(up.details["escalation"], json!("unacknowledged 1 min"));

    let mut off = H::with_toml("[escalation]\nenabled = false\n");
    one(&off.send(0, overspeed()), OVERSPEED);
    assert!(escalations(&off.tick(3_600_000)).is_empty());

    // A severity without a limit never escalates: overspeed made major.
    let mut major = H::with_toml(
        "[rule.\"elevator.overspeed\"]\nseverity = \"major\"\n[escalation]\nmajor_s = 90\n",
    );
    let a = one(&major.send(0, overspeed()), OVERSPEED);
    assert_eq!(a.severity, Severity::Major);
    let up = one(&escalations(&major.tick(90_000)), OVERSPEED);
    assert_eq!(up.details["escalation"], json!("unacknowledged 90 s"));
}

#[test]
fn the_limit_runs_on_the_device_clock() {
    // The device's clock is an hour behind: its alarm is raised "an hour
    // ago" by the engine's clock, yet it has 5 minutes like any other.
    let mut h = H::new();
    one(&h.send_received(-3_600_000, 0, overspeed()), OVERSPEED);
    assert!(escalations(&h.tick(1_000)).is_empty());
    assert!(escalations(&h.tick(299_000)).is_empty());
    one(&escalations(&h.tick(300_000)), OVERSPEED);
}

#[test]
fn a_bad_limit_is_refused_naming_the_key() {
    let e = RuleConfig::from_toml("[escalation]\ncritical_s = -5\n").unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("escalation") && message.contains("critical_s"),
        "{message}"
    );
    assert!(
        RuleConfig::from_toml("[escalation]\ncritical = 5\n").is_err(),
        "typos are errors"
    );
}
