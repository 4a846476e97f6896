//! Every elevator status-sample rule: raised after its `for` (not before),
//! repeated (count 2, same alarm), cleared after the clear period (not before).

use serde_json::json;
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};
use vigil_model::{AlarmState, EpochMs, Severity};

use crate::harness::*;

struct Case {
    rule: &'static str,
    severity: Severity,
    bad: ElevatorSample,
    good: ElevatorSample,
    for_ms: EpochMs,
}

/// The common life of a sample rule, with the default 10 s clear period.
fn lifecycle(case: Case) {
    let Case {
        rule,
        severity,
        bad,
        good,
        for_ms,
    } = case;
    let mut h = H::new();
    none(&h.send(0, good.clone()), rule);

    // Raise: not a millisecond before `for`, exactly at it.
    let start = 1_000;
    let first = h.send(start, bad.clone());
    let raised_at = start + for_ms;
    let raised = if for_ms > 0 {
        none(&first, rule);
        none(&h.tick(raised_at - 1), rule);
        one(&h.send(raised_at, bad.clone()), rule)
    } else {
        one(&first, rule)
    };
    assert_raised(&raised, rule, raised_at);
    assert_eq!(raised.severity, severity, "{rule}");
    let id = raised.alarm_id.clone();

    // A condition that stays true is one occurrence.
    none(&h.send(raised_at + 1_000, bad.clone()), rule);
    none(&h.tick(raised_at + 1_500), rule);

    // False for 3 s (less than the clear period), then true again: a repeat
    // once it qualifies again.
    let gap = raised_at + 2_000;
    none(&h.send(gap, good.clone()), rule);
    let again = gap + 3_000;
    let mut changes = h.send(again, bad.clone());
    if for_ms > 0 {
        none(&changes, rule);
        changes = h.send(again + for_ms, bad.clone());
    }
    let repeat = one(&changes, rule);
    assert_eq!(repeat.alarm_id, id, "{rule}: a repeat is the same alarm");
    assert_eq!(
        (repeat.count, repeat.version, repeat.state),
        (2, 2, AlarmState::Active),
        "{rule}"
    );
    assert_eq!(
        (repeat.raised_at, repeat.updated_at),
        (T0 + raised_at, T0 + again + for_ms),
        "{rule}"
    );
    assert_eq!(
        h.engine
            .open_alarms()
            .filter(|a| a.rule.as_str() == rule)
            .count(),
        1,
        "{rule}: one open alarm"
    );

    // Clear: the condition false for 10 s, not 9.999 s.
    let ok = again + for_ms + 1_000;
    none(&h.send(ok, good.clone()), rule);
    none(&h.send(ok + 9_000, good.clone()), rule);
    none(&h.tick(ok + 9_999), rule);
    let cleared = one(&h.tick(ok + 10_000), rule);
    assert_eq!(cleared.alarm_id, id);
    assert_eq!(
        (cleared.state, cleared.count, cleared.version),
        (AlarmState::Cleared, 2, 3),
        "{rule}"
    );
    assert_eq!(cleared.cleared_at, Some(T0 + ok + 10_000), "{rule}");
    assert!(h.open(rule).is_none());
}

#[test]
fn trapped() {
    lifecycle(Case {
        rule: "elevator.trapped",
        severity: Severity::Critical,
        bad: ElevatorSample {
            occupied: true,
            ..healthy()
        },
        good: healthy(),
        for_ms: 180_000,
    });
}

#[test]
fn stopped_outside_zone() {
    lifecycle(Case {
        rule: "elevator.stopped_outside_zone",
        severity: Severity::Major,
        bad: ElevatorSample {
            leveled: false,
            ..healthy()
        },
        good: healthy(),
        for_ms: 180_000,
    });
}

#[test]
fn door_open_moving() {
    lifecycle(Case {
        rule: "elevator.door_open_moving",
        severity: Severity::Critical,
        bad: ElevatorSample {
            door: Door::Open,
            speed_mps: 0.5,
            ..moving()
        },
        good: moving(),
        for_ms: 600,
    });
}

#[test]
fn overspeed() {
    lifecycle(Case {
        rule: "elevator.overspeed",
        severity: Severity::Critical,
        bad: ElevatorSample {
            speed_mps: 2.1,
            ..moving()
        },
        good: moving(),
        for_ms: 0,
    });
}

#[test]
fn overtravel_top_by_limit_switch() {
    lifecycle(Case {
        rule: "elevator.overtravel_top",
        severity: Severity::Critical,
        bad: ElevatorSample {
            floor: 10,
            limit: Limit::Top,
            ..healthy()
        },
        good: ElevatorSample {
            floor: 10,
            ..healthy()
        },
        for_ms: 0,
    });
}

#[test]
fn overtravel_bottom_by_limit_switch() {
    lifecycle(Case {
        rule: "elevator.overtravel_bottom",
        severity: Severity::Critical,
        bad: ElevatorSample {
            floor: -1,
            limit: Limit::Bottom,
            ..healthy()
        },
        good: ElevatorSample {
            floor: -1,
            ..healthy()
        },
        for_ms: 0,
    });
}

#[test]
fn overtravel_top_by_moving_up_at_the_top_floor() {
    lifecycle(Case {
        rule: "elevator.overtravel_top",
        severity: Severity::Critical,
        bad: ElevatorSample {
            floor: 10,
            speed_mps: 0.3,
            direction: Direction::Up,
            leveled: false,
            ..healthy()
        },
        good: ElevatorSample {
            floor: 10,
            ..healthy()
        },
        for_ms: 8_000,
    });
}

#[test]
fn overtravel_bottom_by_moving_down_at_the_bottom_floor() {
    lifecycle(Case {
        rule: "elevator.overtravel_bottom",
        severity: Severity::Critical,
        bad: ElevatorSample {
            floor: -1,
            speed_mps: 0.3,
            direction: Direction::Down,
            leveled: false,
            ..healthy()
        },
        good: ElevatorSample {
            floor: -1,
            ..healthy()
        },
        for_ms: 8_000,
    });
}

#[test]
fn safety_circuit_open() {
    lifecycle(Case {
        rule: "elevator.safety_circuit_open",
        severity: Severity::Critical,
        bad: ElevatorSample {
            safety_circuit: false,
            ..healthy()
        },
        good: healthy(),
        for_ms: 0,
    });
}

#[test]
fn door_lock_open_moving() {
    lifecycle(Case {
        rule: "elevator.door_lock_open_moving",
        severity: Severity::Critical,
        bad: ElevatorSample {
            door_lock: false,
            ..moving()
        },
        good: moving(),
        for_ms: 0,
    });
}

#[test]
fn door_wont_close() {
    lifecycle(Case {
        rule: "elevator.door_wont_close",
        severity: Severity::Minor,
        bad: ElevatorSample {
            door: Door::Open,
            ..healthy()
        },
        good: healthy(),
        for_ms: 180_000,
    });
}

#[test]
fn power_loss() {
    lifecycle(Case {
        rule: "elevator.power_loss",
        severity: Severity::Major,
        bad: ElevatorSample {
            power: Power::Battery,
            ..healthy()
        },
        good: healthy(),
        for_ms: 5_000,
    });
}

#[test]
fn floor_out_of_range() {
    lifecycle(Case {
        rule: "elevator.floor_out_of_range",
        severity: Severity::Minor,
        bad: ElevatorSample {
            floor: 12,
            ..healthy()
        },
        good: healthy(),
        for_ms: 0,
    });
}

/// Door states cycling at one floor: `n` changes, one a second from `from`.
fn cycle_door(h: &mut H, from: EpochMs, n: usize) -> Vec<vigil_model::Alarm> {
    let mut out = Vec::new();
    for k in 0..n {
        let door = if k % 2 == 0 { Door::Open } else { Door::Closed };
        out.extend(h.send(
            from + 1_000 * k as EpochMs,
            ElevatorSample { door, ..healthy() },
        ));
    }
    out
}

#[test]
fn door_cycling() {
    let rule = "elevator.door_cycling";
    let door = |k: EpochMs| ElevatorSample {
        door: if k % 2 == 1 { Door::Open } else { Door::Closed },
        ..healthy()
    };
    let mut h = H::new();
    h.send(0, healthy());
    // Changes at 1 … 11 s: eleven is the tolerated maximum.
    for k in 1..=11 {
        none(&h.send(k * 1_000, door(k)), rule);
    }
    // The twelfth, at 12 s, raises.
    let raised = one(&h.send(12_000, door(12)), rule);
    assert_raised(&raised, rule, 12_000);
    assert_eq!(raised.severity, Severity::Minor);
    assert_eq!(
        raised.details,
        json!({"floor": 3, "changes": 12, "window_s": 120})
    );
    none(&h.send(13_000, door(13)), rule);

    // The 120 s window slides: at 122 s only the changes at 3 … 13 s are in it.
    none(&h.tick(121_000), rule);
    none(&h.tick(122_000), rule);
    // A new change within the clear period makes it twelve again: a repeat.
    let repeat = one(&h.send(122_500, door(14)), rule);
    assert_eq!(
        (repeat.alarm_id.clone(), repeat.count),
        (raised.alarm_id.clone(), 2)
    );

    // At 123 s the change at 3 s leaves (eleven again); it clears 10 s later.
    none(&h.tick(123_000), rule);
    none(&h.tick(132_999), rule);
    let cleared = one(&h.tick(133_000), rule);
    assert_eq!(
        (cleared.state, cleared.cleared_at),
        (AlarmState::Cleared, Some(T0 + 133_000))
    );
}

#[test]
fn door_changes_at_another_floor_start_a_new_count() {
    let rule = "elevator.door_cycling";
    let mut h = H::new();
    h.send(0, healthy());
    none(&cycle_door(&mut h, 1_000, 10), rule);
    // The car leaves for floor 4 and cycles there: counting restarts.
    h.send(
        11_000,
        ElevatorSample {
            floor: 4,
            ..healthy()
        },
    );
    let mut changes = Vec::new();
    for k in 0..6 {
        let door = if k % 2 == 0 { Door::Open } else { Door::Closed };
        changes.extend(h.send(
            12_000 + 1_000 * k,
            ElevatorSample {
                floor: 4,
                door,
                ..healthy()
            },
        ));
    }
    none(&changes, rule);
}

#[test]
fn trapped_with_the_alarm_button_fires_after_60_s() {
    let rule = "elevator.trapped";
    let mut h = H::new();
    let trapped = ElevatorSample {
        occupied: true,
        ..healthy()
    };
    h.send(0, trapped.clone());
    h.send(
        10_000,
        ElevatorSample {
            alarm_button: true,
            ..trapped.clone()
        },
    );
    none(&h.tick(59_999), rule);
    let a = one(&h.tick(60_000), rule);
    assert_eq!(a.raised_at, T0 + 60_000);
    assert_eq!(
        a.details,
        json!({"floor": 3, "stopped_for_s": 60, "alarm_button": true})
    );

    // Pressed only after 100 s: fires at the press, not back-dated.
    let mut h = H::new();
    h.send(0, trapped.clone());
    none(&h.send(99_000, trapped.clone()), rule);
    let a = one(
        &h.send(
            100_000,
            ElevatorSample {
                alarm_button: true,
                ..trapped.clone()
            },
        ),
        rule,
    );
    assert_eq!(a.raised_at, T0 + 100_000);
}

#[test]
fn trapped_details_tell_floor_and_time() {
    let mut h = H::new();
    let trapped = ElevatorSample {
        occupied: true,
        floor: 5,
        ..healthy()
    };
    h.send(0, trapped.clone());
    let a = one(&h.send(182_000, trapped), "elevator.trapped");
    assert_eq!(
        a.raised_at,
        T0 + 180_000,
        "raised when it qualified, not when noticed"
    );
    assert_eq!(
        a.details,
        json!({"floor": 5, "stopped_for_s": 180, "alarm_button": false})
    );
}

#[test]
fn trapped_needs_normal_mode_and_a_closed_door() {
    let mut h = H::new();
    h.send(
        0,
        ElevatorSample {
            occupied: true,
            mode: ElevatorMode::Maintenance,
            ..healthy()
        },
    );
    none(&h.tick(400_000), "elevator.trapped");
    let mut h = H::new();
    h.send(
        0,
        ElevatorSample {
            occupied: true,
            door: Door::Open,
            ..healthy()
        },
    );
    none(&h.tick(400_000), "elevator.trapped");
}

#[test]
fn safety_circuit_open_while_stopped_in_inspection_is_expected_work() {
    let rule = "elevator.safety_circuit_open";
    let mut h = H::new();
    let inspection = ElevatorSample {
        safety_circuit: false,
        mode: ElevatorMode::Inspection,
        ..healthy()
    };
    none(&h.send(0, inspection.clone()), rule);
    // …but not while the car moves.
    let a = one(
        &h.send(
            1_000,
            ElevatorSample {
                speed_mps: 0.3,
                direction: Direction::Up,
                ..inspection
            },
        ),
        rule,
    );
    assert_eq!(
        a.details,
        json!({"floor": 3, "speed_mps": 0.3, "mode": "inspection"})
    );
}

#[test]
fn door_open_moving_ignores_relevelling_and_creeping() {
    let rule = "elevator.door_open_moving";
    let mut h = H::new();
    // In the door zone (relevelling with the door open is allowed).
    h.send(
        0,
        ElevatorSample {
            door: Door::Open,
            speed_mps: 0.5,
            leveled: true,
            ..moving()
        },
    );
    none(&h.tick(5_000), rule);
    // Below 0.1 m/s.
    let mut h = H::new();
    h.send(
        0,
        ElevatorSample {
            door: Door::Opening,
            speed_mps: 0.05,
            ..moving()
        },
    );
    none(&h.tick(5_000), rule);
}

#[test]
fn overspeed_details_and_threshold() {
    let rule = "elevator.overspeed";
    let mut h = H::new();
    // 1.15 × 1.75 = 2.0125 m/s.
    none(
        &h.send(
            0,
            ElevatorSample {
                speed_mps: 2.01,
                ..moving()
            },
        ),
        rule,
    );
    let a = one(
        &h.send(
            1_000,
            ElevatorSample {
                speed_mps: 2.02,
                ..moving()
            },
        ),
        rule,
    );
    assert_eq!(
        a.details,
        json!({"speed_mps": 2.02, "rated_speed_mps": 1.75, "limit_mps": 2.0125})
    );
}

#[test]
fn rules_without_their_registry_parameter_are_not_evaluated() {
    let mut h = H::new();
    std::sync::Arc::make_mut(&mut h.ctx.params).clear();
    let changes = h.send(
        0,
        ElevatorSample {
            speed_mps: 9.0,
            floor: 99,
            ..moving()
        },
    );
    none(&changes, "elevator.overspeed");
    none(&changes, "elevator.floor_out_of_range");
    none(&h.tick(60_000), "elevator.overtravel_top");
    // The limit switch needs no registry parameter.
    one(
        &h.send(
            61_000,
            ElevatorSample {
                limit: Limit::Top,
                ..healthy()
            },
        ),
        "elevator.overtravel_top",
    );
}

#[test]
fn a_healthy_day_raises_nothing() {
    let mut h = H::new();
    let mut t = 0;
    let mut changes = Vec::new();
    // Trips between floors 1 and 9 with door cycles at each stop.
    for trip in 0..50 {
        let floor = if trip % 2 == 0 { 9 } else { 1 };
        let direction = if trip % 2 == 0 {
            Direction::Up
        } else {
            Direction::Down
        };
        for _ in 0..8 {
            t += 1_000;
            changes.extend(h.send(
                t,
                ElevatorSample {
                    floor: 5,
                    direction,
                    ..moving()
                },
            ));
        }
        for door in [Door::Opening, Door::Open, Door::Closing, Door::Closed] {
            t += 2_000;
            changes.extend(h.send(
                t,
                ElevatorSample {
                    floor,
                    door,
                    occupied: true,
                    ..healthy()
                },
            ));
        }
        changes.extend(h.tick(t + 500));
    }
    assert!(changes.is_empty(), "{changes:#?}");
}

#[test]
fn a_top_floor_moved_by_the_registry_counts_from_the_next_sample() {
    let mut h = H::new();
    let up_at_10 = ElevatorSample {
        floor: 10,
        speed_mps: 0.3,
        direction: Direction::Up,
        leveled: false,
        ..healthy()
    };
    none(&h.send(0, healthy()), "elevator.overtravel_top");
    // The shaft now goes to floor 12: moving up at 10 is a normal trip.
    std::sync::Arc::make_mut(&mut h.ctx.params).insert("floors".into(), json!([-1, 12]));
    for at in [1_000, 5_000, 10_000, 20_000] {
        none(&h.send(at, up_at_10.clone()), "elevator.overtravel_top");
    }
    none(&h.tick(21_000), "elevator.overtravel_top");
    // Back to 10: the same sample is past the top floor, for 8 s.
    std::sync::Arc::make_mut(&mut h.ctx.params).insert("floors".into(), json!([-1, 10]));
    none(&h.send(22_000, up_at_10.clone()), "elevator.overtravel_top");
    let a = one(&h.send(30_000, up_at_10), "elevator.overtravel_top");
    assert_eq!(a.raised_at, T0 + 30_000);
}
