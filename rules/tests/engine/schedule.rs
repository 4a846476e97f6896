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
        awaiting_confirmation: None,
        maintenance: Vec::new(),
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
        json!({"last_maintenance": "2024-11-22", "days_since": 16, "max_days": 15, "awaiting_confirmation": null})
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

/// `registry.maintenance_unverified`: a maintenance record is a claim,
/// checked against the elevator's telemetry within ±2 h of `done_at`.
mod unverified {
    use vigil_model::reading::ElevatorMode;
    use vigil_model::{AlarmState, Severity};
    use vigil_rules::{CertificateFacts, MaintenanceFacts, Telemetry};

    use super::{DAY, check, facts};
    use crate::harness::*;

    const RULE: &str = "registry.maintenance_unverified";
    const HOUR: i64 = 3_600_000;

    /// A half-monthly job by W1 done at `at` (ms after T0).
    fn record(at: i64, stored: Option<Telemetry>) -> MaintenanceFacts {
        MaintenanceFacts {
            kind: "half_month".into(),
            done_at: format!("T0+{at}"),
            at: T0 + at,
            date_only: false,
            person_id: "W1".into(),
            certificates: vec![CertificateFacts {
                kind: "elevator_maintenance".into(),
                number: "T-1".into(),
                expires: T0 + 400 * DAY,
                expires_date: "2025-12-27".into(),
            }],
            confirmed_by_owner: true,
            stored,
        }
    }

    fn stored(samples: u64, service: u64) -> Option<Telemetry> {
        Some(Telemetry {
            samples,
            service,
            device: Some("EL1".into()),
        })
    }

    fn mode(m: ElevatorMode) -> vigil_model::reading::ElevatorSample {
        vigil_model::reading::ElevatorSample {
            mode: m,
            ..healthy()
        }
    }

    #[test]
    fn telemetry_in_normal_mode_around_done_at_raises_it_with_the_record() {
        let mut h = H::new();
        let mut f = facts();
        f.maintenance = vec![record(10 * HOUR, stored(240, 0))];
        // The window (8 h to 12 h) is not over yet: nothing to say.
        none(&check(&mut h, &f, 11 * HOUR), RULE);
        let a = one(&check(&mut h, &f, 12 * HOUR), RULE);
        assert_eq!(
            (a.severity, a.state, a.count),
            (Severity::Major, AlarmState::Active, 1)
        );
        assert_eq!(a.device_id.as_ref().map(|d| d.as_str()), Some("EL1"));
        let r = &a.details["records"][0];
        assert_eq!(
            (&r["kind"], &r["person_id"], &r["samples"]),
            (&"half_month".into(), &"W1".into(), &240.into())
        );
        assert_eq!(
            r["window"],
            serde_json::json!([T0 + 8 * HOUR, T0 + 12 * HOUR])
        );
        // Checked again and again: one occurrence.
        none(&check(&mut h, &f, 13 * HOUR), RULE);
        // A second unverified record is another occurrence.
        f.maintenance.push(record(20 * HOUR, stored(100, 0)));
        let b = one(&check(&mut h, &f, 23 * HOUR), RULE);
        assert_eq!((b.alarm_id, b.count), (a.alarm_id, 2));
        assert_eq!(b.details["records"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn inspection_or_maintenance_mode_in_the_window_verifies_it() {
        let mut h = H::new();
        let mut f = facts();
        f.maintenance = vec![record(10 * HOUR, stored(240, 30))];
        none(&check(&mut h, &f, 13 * HOUR), RULE);
        // Live samples count too: maintenance mode 1 h 50 min after.
        let mut h = H::new();
        f.maintenance = vec![record(10 * HOUR, stored(0, 0))];
        none(&check(&mut h, &f, 10 * HOUR), RULE);
        h.send(10 * HOUR + 100 * 60_000, mode(ElevatorMode::Normal));
        h.send(11 * HOUR + 50 * 60_000, mode(ElevatorMode::Maintenance));
        none(&check(&mut h, &f, 13 * HOUR), RULE);
    }

    #[test]
    fn no_telemetry_no_verdict_until_late_readings_fill_the_window() {
        let mut h = H::new();
        let mut f = facts();
        // The gateway was cut off: nothing stored around the job.
        f.maintenance = vec![record(10 * HOUR, stored(0, 0))];
        h.send(20 * HOUR, healthy());
        none(&check(&mut h, &f, 20 * HOUR), RULE);
        // Its spool empties later: samples of the window, all normal. The
        // late readings are judged by when they happened.
        let mut seq = 100;
        let mut raised = Vec::new();
        for k in 0..10 {
            seq += 1;
            let at = 9 * HOUR + k * 6 * 60_000;
            raised.extend(h.send_seq(seq, at, 21 * HOUR, healthy()));
        }
        let a = one(&raised, RULE);
        assert_eq!(a.details["records"][0]["samples"], 1);
        // Later still, more of the spool: the car was in inspection mode
        // for the job after all. Verified: the alarm ends.
        let c = one(
            &h.send_seq(
                5,
                10 * HOUR + 60_000,
                22 * HOUR,
                mode(ElevatorMode::Inspection),
            ),
            RULE,
        );
        assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
    }

    #[test]
    fn a_date_is_judged_over_that_day_and_a_resolve_is_final() {
        let mut h = H::new();
        let mut f = facts();
        let mut r = record(0, stored(0, 0));
        r.date_only = true;
        r.done_at = "2024-11-22".into();
        f.maintenance = vec![r];
        // Recorded in the morning; inspection mode at 20 h that day
        // verifies a date.
        none(&check(&mut h, &f, HOUR), RULE);
        h.send(20 * HOUR, mode(ElevatorMode::Inspection));
        none(&check(&mut h, &f, DAY + 2 * HOUR), RULE);

        let mut h = H::new();
        none(&check(&mut h, &f, HOUR), RULE);
        h.send(20 * HOUR, healthy());
        none(&check(&mut h, &f, DAY + 2 * HOUR - 1), RULE);
        let a = one(&check(&mut h, &f, DAY + 2 * HOUR), RULE);
        h.engine
            .resolve(
                &a.alarm_id,
                "supervisor",
                "called the maintainer",
                T0 + DAY + 3 * HOUR,
            )
            .unwrap();
        none(&check(&mut h, &f, DAY + 4 * HOUR), RULE);
    }

    #[test]
    fn only_elevators_with_telemetry_and_not_when_disabled() {
        // No device ever reported and nothing stored: no claim to test.
        let mut h = H::new();
        let mut f = facts();
        f.maintenance = vec![record(10 * HOUR, stored(0, 0))];
        none(&check(&mut h, &f, 13 * HOUR), RULE);
        // An escalator's samples carry no controller mode.
        let mut h = H::new();
        let mut esc = facts();
        esc.binding = ctx_for("ESC1", "escalator").binding;
        esc.maintenance = vec![record(10 * HOUR, stored(240, 0))];
        none(&check(&mut h, &esc, 13 * HOUR), RULE);
        // Turned off by configuration.
        let mut h = H::with_toml("[rule.\"registry.maintenance_unverified\"]\nenabled = false");
        f.maintenance = vec![record(10 * HOUR, stored(240, 0))];
        none(&check(&mut h, &f, 13 * HOUR), RULE);
    }

    #[test]
    fn a_worker_with_an_expired_certificate_raises_certificate_expired_for_a_day() {
        const EXPIRED: &str = "registry.certificate_expired";
        let mut h = H::new();
        let mut f = facts();
        let mut r = record(10 * HOUR, stored(240, 40));
        r.certificates[0].expires = T0 - 30 * DAY;
        r.certificates[0].expires_date = "2024-10-23".into();
        f.maintenance = vec![r];
        let a = one(&check(&mut h, &f, 11 * HOUR), EXPIRED);
        assert_eq!(a.severity, Severity::Major);
        let w = &a.details["workers"][0];
        assert_eq!(
            (&w["person_id"], &w["certificate"], &w["expires"]),
            (&"W1".into(), &"T-1".into(), &"2024-10-23".into())
        );
        none(&check(&mut h, &f, 30 * HOUR), EXPIRED);
        // 24 h after the job it no longer counts as use.
        let c = one(&check(&mut h, &f, 34 * HOUR + 1), EXPIRED);
        assert_eq!(c.state, AlarmState::Cleared);
        // A valid certificate: nothing.
        let mut h = H::new();
        f.maintenance = vec![record(10 * HOUR, stored(240, 40))];
        none(&check(&mut h, &f, 11 * HOUR), EXPIRED);
    }
}

#[test]
fn maintenance_overdue_shows_a_record_awaiting_confirmation() {
    let mut h = H::new();
    let mut f = facts();
    f.awaiting_confirmation = Some("2024-12-07".into());
    let a = one(&check(&mut h, &f, 16 * DAY), MAINT);
    assert_eq!(a.details["awaiting_confirmation"], "2024-12-07");
}
