//! Registry-time rules, checked on a schedule with the registry's facts and
//! an injected wall clock.

use serde_json::json;
use vigil_model::{AlarmState, Severity};
use vigil_rules::{RegistryFacts, RuleConfig, RuleEngine};

use crate::harness::*;

const DAY: i64 = 86_400_000;
const DUE: &str = "registry.inspection_due";
const OVERDUE: &str = "registry.inspection_overdue";
const MAINT: &str = "registry.maintenance_overdue";

/// EQ1 (an elevator) in use, inspection on day 100 (T0 + 100 days), last
/// maintenance on day 0.
fn facts() -> RegistryFacts {
    RegistryFacts {
        binding: ctx().binding,
        in_use: true,
        next_inspection: T0 + 100 * DAY,
        next_inspection_date: "2025-03-02".into(),
        last_maintenance: Some((T0, "2024-11-22".into())),
    }
}

fn check(h: &mut H, f: &RegistryFacts, at: i64) -> Vec<vigil_model::Alarm> {
    h.engine.registry_check(std::slice::from_ref(f), T0 + at)
}

#[test]
fn inspection_due_from_30_days_before_once_and_cleared_by_a_new_date() {
    let mut h = H::new();
    let mut f = facts();
    f.last_maintenance = Some((T0 + 69 * DAY, "recent".into()));
    none(&check(&mut h, &f, 70 * DAY - 1), DUE);
    let a = one(&check(&mut h, &f, 70 * DAY), DUE);
    assert_eq!(
        (a.severity, a.state, a.device_id.clone(), a.raised_at),
        (Severity::Warning, AlarmState::Active, None, T0 + 70 * DAY)
    );
    assert_eq!(
        a.details,
        json!({"next_inspection": "2025-03-02", "days_left": 30})
    );
    // Checked again and again: one occurrence, no repeats.
    for d in 71..80 {
        assert!(check(&mut h, &f, d * DAY).is_empty());
    }
    // The inspection was done: the registry has the next date.
    f.next_inspection += 365 * DAY;
    let c = one(&check(&mut h, &f, 80 * DAY), DUE);
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
}

#[test]
fn overdue_only_while_readings_flow_and_the_warning_gives_way_to_it() {
    let mut h = H::new();
    let mut f = facts();
    f.last_maintenance = Some((T0 + 100 * DAY, "recent".into()));
    one(&check(&mut h, &f, 99 * DAY), DUE);
    // The inspection day itself is still "due".
    none(&check(&mut h, &f, 101 * DAY - 1), OVERDUE);
    // Past it, but no device has been heard: not known to be in use.
    let changes = check(&mut h, &f, 101 * DAY);
    none(&changes, OVERDUE);
    assert_eq!(one(&changes, DUE).state, AlarmState::Cleared);
    // The elevator reports: in use past its inspection date.
    h.send(101 * DAY, healthy());
    let a = one(&check(&mut h, &f, 101 * DAY + 60_000), OVERDUE);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(
        a.details,
        json!({"next_inspection": "2025-03-02", "days_overdue": 1})
    );
    // Stopped by its owner: the alarm ends.
    f.in_use = false;
    assert_eq!(
        one(&check(&mut h, &f, 102 * DAY), OVERDUE).state,
        AlarmState::Cleared
    );
}

#[test]
fn overdue_needs_readings_within_flowing_h() {
    let mut h = H::new();
    let f = facts();
    h.send(0, healthy());
    none(&check(&mut h, &f, 101 * DAY), OVERDUE);
    h.send(101 * DAY, healthy());
    one(&check(&mut h, &f, 101 * DAY + 24 * 3_600_000), OVERDUE);
}

#[test]
fn maintenance_overdue_after_15_whole_days_for_elevators_and_escalators_only() {
    let mut h = H::new();
    let mut f = facts();
    none(&check(&mut h, &f, 16 * DAY - 1), MAINT);
    let a = one(&check(&mut h, &f, 16 * DAY), MAINT);
    assert_eq!(a.severity, Severity::Major);
    assert_eq!(
        a.details,
        json!({"last_maintenance": "2024-11-22", "days_since": 16, "max_days": 15})
    );
    // A maintenance record moves the date: cleared.
    f.last_maintenance = Some((T0 + 17 * DAY, "2024-12-09".into()));
    assert_eq!(
        one(&check(&mut h, &f, 17 * DAY), MAINT).state,
        AlarmState::Cleared
    );

    // Never maintained: overdue at once, saying so.
    let mut h = H::new();
    let mut esc = facts();
    esc.binding = ctx_for("ESC1", "escalator").binding;
    esc.last_maintenance = None;
    let a = one(&check(&mut h, &esc, 0), MAINT);
    assert_eq!(a.details["last_maintenance"], json!(null));

    // A ride is not under the half-monthly regime.
    let mut h = H::new();
    let mut ride = facts();
    ride.binding = ctx_for("RIDE1", "amusement_ride").binding;
    none(&check(&mut h, &ride, 60 * DAY), MAINT);
}

#[test]
fn a_resolved_alarm_stays_resolved_until_its_condition_ends() {
    let mut h = H::new();
    let mut f = facts();
    let a = one(&check(&mut h, &f, 20 * DAY), MAINT);
    let r = h
        .engine
        .resolve(
            &a.alarm_id,
            "supervisor",
            "Maintainer booked for tomorrow.",
            T0 + 20 * DAY,
        )
        .unwrap();
    assert_eq!(r.state, AlarmState::Cleared);
    none(&check(&mut h, &f, 21 * DAY), MAINT);
    // Maintained, then overdue again: a fresh alarm.
    f.last_maintenance = Some((T0 + 22 * DAY, "later".into()));
    assert!(check(&mut h, &f, 22 * DAY).is_empty());
    let again = one(&check(&mut h, &f, 38 * DAY), MAINT);
    assert_ne!(again.alarm_id, a.alarm_id);
}

#[test]
fn thresholds_are_configurable_per_equipment_and_rules_can_be_disabled() {
    let config = RuleConfig::from_toml(
        "[equipment.EQ1.\"registry.inspection_due\"]\ndays = 60\n\
         [category.elevator.\"registry.maintenance_overdue\"]\nenabled = false",
    )
    .unwrap();
    let mut h = H::with_config(config);
    let f = facts();
    let changes = check(&mut h, &f, 40 * DAY);
    one(&changes, DUE);
    none(&changes, MAINT);
}

#[test]
fn equipment_gone_from_the_registry_has_its_alarms_cleared() {
    let mut h = H::new();
    let f = facts();
    one(&check(&mut h, &f, 20 * DAY), MAINT);
    let changes = h.engine.registry_check(&[], T0 + 21 * DAY);
    assert_eq!(one(&changes, MAINT).state, AlarmState::Cleared);
}

#[test]
fn a_restored_registry_alarm_is_kept_without_a_duplicate() {
    let mut h = H::new();
    let f = facts();
    let a = one(&check(&mut h, &f, 20 * DAY), MAINT);
    let mut h2 = H::new();
    h2.engine = RuleEngine::with_id_source(
        RuleConfig::default(),
        Box::new(|| vigil_model::AlarmId::new("NEW").unwrap()),
    );
    h2.engine.restore(vec![a.clone()], T0 + 21 * DAY);
    assert!(check(&mut h2, &f, 21 * DAY).is_empty());
    assert_eq!(h2.open(MAINT).map(|x| x.alarm_id), Some(a.alarm_id));
}

#[test]
fn nothing_is_raised_when_every_date_is_fine() {
    let mut h = H::new();
    let f = facts();
    assert!(check(&mut h, &f, DAY).is_empty());
    assert_eq!(h.engine.open_alarms().count(), 0);
}
