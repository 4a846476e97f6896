//! `elevator.frequent_faults`: repeat faults on one elevator.

use vigil_model::reading::{Door, ElevatorSample};
use vigil_model::{AlarmState, EpochMs, Severity};

use crate::harness::*;

const RULE: &str = "elevator.frequent_faults";

fn overspeed() -> ElevatorSample {
    ElevatorSample {
        speed_mps: 2.5,
        ..moving()
    }
}

/// Overspeed occurrences (a raise, then repeats) at the given seconds,
/// each followed by a healthy sample 5 s later.
fn overspeeds(h: &mut H, at_s: &[EpochMs]) -> Vec<vigil_model::Alarm> {
    let mut out = Vec::new();
    for s in at_s {
        out.extend(h.send(s * 1_000, overspeed()));
        out.extend(h.send(s * 1_000 + 5_000, moving()));
    }
    out
}

#[test]
fn three_major_occurrences_in_24_h_raise_and_the_window_clears_it() {
    let mut h = H::new();
    let changes = overspeeds(&mut h, &[0, 8]);
    none(&changes, RULE);
    let changes = h.send(16_000, overspeed());
    let a = one(&changes, RULE);
    assert_raised(&a, RULE, 16_000);
    assert_eq!(a.severity, Severity::Major);
    assert_eq!(a.details["occurrences"], 3);
    assert_eq!(a.details["rules"]["elevator.overspeed"], 3);
    // The overspeed alarm itself repeated twice: raises and repeats count.
    assert_eq!(h.open("elevator.overspeed").map(|o| o.count), Some(3));

    // Idle reports all day; the first occurrence leaves the window at 24 h.
    h.send(21_000, healthy());
    let day: EpochMs = 86_400_000;
    let mut t = 21_000;
    while t < day - 30_000 {
        t += 30_000;
        assert!(
            of(&h.send(t, healthy()), RULE).is_empty(),
            "cleared too early at {t}"
        );
    }
    // At 24 h the occurrence at 0 s leaves the window; cleared 10 s later.
    none(&h.tick(day), RULE);
    none(&h.tick(day + 9_999), RULE);
    let c = one(&h.tick(day + 10_000), RULE);
    assert_eq!(
        (c.state, c.cleared_at),
        (AlarmState::Cleared, Some(T0 + day + 10_000))
    );
}

#[test]
fn a_repeat_when_the_count_returns_within_the_clear_period() {
    // A 36 s window to keep the test short.
    let mut h = H::with_toml("[rule.\"elevator.frequent_faults\"]\nwindow_h = 0.01");
    overspeeds(&mut h, &[0, 10]);
    let a = one(&h.send(20_000, overspeed()), RULE);
    h.send(25_000, moving());
    // At 36 s the occurrence at 0 s leaves the window.
    none(&h.tick(36_000), RULE);
    // A new occurrence at 40 s (the overspeed alarm cleared at 35 s: a raise).
    let changes = h.send(40_000, overspeed());
    let r = one(&changes, RULE);
    assert_eq!((r.alarm_id, r.count), (a.alarm_id, 2));
    h.send(45_000, moving());
    // At 46 s the one at 10 s leaves: cleared at 56 s.
    none(&h.tick(46_000), RULE);
    none(&h.tick(55_999), RULE);
    assert_eq!(one(&h.tick(56_000), RULE).state, AlarmState::Cleared);
}

#[test]
fn a_period_that_ends_below_the_count_starts_over() {
    // A 36 s window and a 12 s `for`.
    let mut h = H::with_toml("[rule.\"elevator.frequent_faults\"]\nwindow_h = 0.01\nfor_s = 12");
    // The third occurrence at 27 s starts the period (due at 39 s).
    none(&overspeeds(&mut h, &[0, 20, 27]), RULE);
    // At 36 s the one at 0 s leaves the window: two, the period ends.
    none(&h.tick(36_000), RULE);
    // Three again at 37 s: a new period, due at 49 s, not at 39 s.
    none(&h.send(37_000, overspeed()), RULE);
    none(&h.send(42_000, moving()), RULE);
    for t in [40_000, 45_000, 48_999] {
        none(&h.tick(t), RULE);
    }
    let a = one(&h.tick(49_000), RULE);
    assert_raised(&a, RULE, 49_000);
    assert_eq!(a.details["occurrences"], 3);
}

#[test]
fn minor_alarms_offline_and_itself_do_not_count() {
    let mut h = H::new();
    // door_wont_close (minor) three times.
    let open = ElevatorSample {
        door: Door::Open,
        ..healthy()
    };
    let mut changes = Vec::new();
    for k in 0..3 {
        let base = k * 200_000;
        changes.extend(h.send(base, open.clone()));
        changes.extend(h.send(base + 180_000, open.clone()));
        changes.extend(h.send(base + 185_000, healthy()));
    }
    assert_eq!(
        of(&changes, "elevator.door_wont_close")
            .iter()
            .filter(|a| a.count >= 1 && a.state == AlarmState::Active)
            .count(),
        3
    );
    none(&changes, RULE);
    // Offline three times.
    for k in 0..3 {
        let t = 600_000 + k * 200_000;
        changes.extend(h.tick(t + 90_000));
        changes.extend(h.send(t + 100_000, healthy()));
    }
    assert!(of(&changes, "device.offline").len() >= 3);
    none(&changes, RULE);
}

#[test]
fn controller_faults_count_by_their_severity() {
    let mut h = H::new();
    h.send(0, healthy());
    // 02 and 03 are minor, E1 major by default.
    h.event(1_000, "02", true);
    h.event(2_000, "03", true);
    none(&h.event(3_000, "E1", true), RULE);
    h.event(4_000, "E2", true);
    let a = one(&h.event(5_000, "E3", true), RULE);
    assert_eq!(a.details["rules"]["elevator.controller_fault"], 3);
}
