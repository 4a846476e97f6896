//! The ride and ropeway rules: raised after their `for` (not before),
//! repeated, cleared after the clear period; thresholds at the boundary;
//! the registry's wind limit and rated speed; per-category and
//! per-equipment overrides.

use serde_json::json;
use vigil_model::reading::{Brake, ElevatorSample, Power, RideSample, RideState};
use vigil_model::{Alarm, AlarmState, DeviceContext, DeviceId, EpochMs, Payload, Severity};
use vigil_rules::RuleConfig;

use crate::harness::*;

/// A ride or ropeway with a rated speed of 10 m/s and no wind limit of its own.
fn ride_ctx(equipment: &str, category: &str) -> DeviceContext {
    let mut ctx = ctx_for(equipment, category);
    ctx.kind = "ride".into();
    ctx.params = std::sync::Arc::new(
        json!({"rated_speed_mps": 10.0})
            .as_object()
            .unwrap()
            .clone(),
    );
    ctx
}

fn ride_h(config: &str) -> H {
    let mut h = H::with_config(RuleConfig::from_toml(config).unwrap());
    h.ctx = ride_ctx("EQ1", "amusement_ride");
    h.device = DeviceId::new("RIDE1").unwrap();
    h
}

/// Running normally: 8 m/s, restraints locked, a breeze, a smooth drive.
fn running() -> RideSample {
    RideSample {
        state: RideState::Running,
        speed_mps: 8.0,
        wind_mps: Some(5.0),
        restraints_locked: true,
        vibration_mm_s: Some(3.5),
        brake: Brake::Ok,
        passengers: Some(24),
    }
}

fn send(h: &mut H, at: EpochMs, sample: RideSample) -> Vec<Alarm> {
    let r = h.reading(at, Payload::Ride(sample));
    h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
}

struct Case {
    rule: &'static str,
    severity: Severity,
    bad: RideSample,
    good: RideSample,
    for_ms: EpochMs,
}

/// Raise exactly at `for`, one occurrence while it holds, a repeat after a
/// short break, clear after 10 s of false (not 9.999 s).
fn lifecycle(case: Case) -> Alarm {
    let Case {
        rule,
        severity,
        bad,
        good,
        for_ms,
    } = case;
    let mut h = ride_h("");
    none(&send(&mut h, 0, good.clone()), rule);

    let start = 1_000;
    let first = send(&mut h, start, bad.clone());
    let raised_at = start + for_ms;
    let raised = if for_ms > 0 {
        none(&first, rule);
        none(&h.tick(raised_at - 1), rule);
        one(&send(&mut h, raised_at, bad.clone()), rule)
    } else {
        one(&first, rule)
    };
    assert_eq!(raised.state, AlarmState::Active);
    assert_eq!((raised.count, raised.version), (1, 1));
    assert_eq!(raised.severity, severity, "{rule}");
    assert_eq!(
        (raised.raised_at, raised.updated_at),
        (T0 + raised_at, T0 + raised_at)
    );
    assert_eq!(
        (
            raised.equipment_id.as_str(),
            raised.category.as_str(),
            raised.device_id.as_ref().map(DeviceId::as_str)
        ),
        ("EQ1", "amusement_ride", Some("RIDE1"))
    );
    let id = raised.alarm_id.clone();

    none(&send(&mut h, raised_at + 1_000, bad.clone()), rule);
    none(&h.tick(raised_at + 1_500), rule);

    let gap = raised_at + 2_000;
    none(&send(&mut h, gap, good.clone()), rule);
    let again = gap + 3_000;
    let mut changes = send(&mut h, again, bad.clone());
    if for_ms > 0 {
        none(&changes, rule);
        changes = send(&mut h, again + for_ms, bad.clone());
    }
    let repeat = one(&changes, rule);
    assert_eq!(repeat.alarm_id, id, "{rule}: a repeat is the same alarm");
    assert_eq!((repeat.count, repeat.version), (2, 2), "{rule}");
    assert_eq!(repeat.updated_at, T0 + again + for_ms);

    let ok = again + for_ms + 1_000;
    none(&send(&mut h, ok, good.clone()), rule);
    none(&h.tick(ok + 9_999), rule);
    let cleared = one(&h.tick(ok + 10_000), rule);
    assert_eq!(cleared.alarm_id, id);
    assert_eq!(
        (cleared.state, cleared.count, cleared.cleared_at),
        (AlarmState::Cleared, 2, Some(T0 + ok + 10_000)),
        "{rule}"
    );
    assert!(h.open(rule).is_none());
    raised
}

#[test]
fn running_unrestrained() {
    let a = lifecycle(Case {
        rule: "ride.running_unrestrained",
        severity: Severity::Critical,
        bad: RideSample {
            restraints_locked: false,
            ..running()
        },
        good: running(),
        for_ms: 0,
    });
    assert_eq!(
        a.details,
        json!({"state": "running", "speed_mps": 8.0, "passengers": 24})
    );
}

#[test]
fn wind_limit_at_exactly_the_limit() {
    let a = lifecycle(Case {
        rule: "ride.wind_limit",
        severity: Severity::Major,
        bad: RideSample {
            wind_mps: Some(10.8),
            ..running()
        },
        good: RideSample {
            wind_mps: Some(10.7),
            ..running()
        },
        for_ms: 10_000,
    });
    assert_eq!(
        a.details,
        json!({"wind_mps": 10.8, "limit_mps": 10.8, "limit_from": "rule", "for_s": 10})
    );
}

#[test]
fn overspeed_just_above_the_limit() {
    let a = lifecycle(Case {
        rule: "ride.overspeed",
        severity: Severity::Critical,
        bad: RideSample {
            speed_mps: 11.01,
            ..running()
        },
        // 1.1 × 10 m/s exactly is not above the limit.
        good: RideSample {
            speed_mps: 11.0,
            ..running()
        },
        for_ms: 2_000,
    });
    assert_eq!(
        a.details,
        json!({"speed_mps": 11.01, "rated_speed_mps": 10.0, "limit_mps": 11.0, "for_s": 2})
    );
}

#[test]
fn brake_fault() {
    let a = lifecycle(Case {
        rule: "ride.brake_fault",
        severity: Severity::Critical,
        bad: RideSample {
            brake: Brake::Fault,
            state: RideState::Stopped,
            speed_mps: 0.0,
            ..running()
        },
        good: RideSample {
            state: RideState::Stopped,
            speed_mps: 0.0,
            ..running()
        },
        for_ms: 0,
    });
    assert_eq!(a.details["brake"], "fault");
    assert_eq!(a.details["state"], "stopped");
}

#[test]
fn vibration_high_just_above_11_2() {
    let a = lifecycle(Case {
        rule: "ride.vibration_high",
        severity: Severity::Minor,
        bad: RideSample {
            vibration_mm_s: Some(11.3),
            ..running()
        },
        // 11.2 mm/s is the boundary of zone D, not above it.
        good: RideSample {
            vibration_mm_s: Some(11.2),
            ..running()
        },
        for_ms: 30_000,
    });
    assert_eq!(
        a.details,
        json!({"vibration_mm_s": 11.3, "limit_mm_s": 11.2, "for_s": 30})
    );
}

/// Wind for 20 s at `wind` on `h`; whether `ride.wind_limit` fired.
fn windy(h: &mut H, state: RideState, wind: f32) -> Option<Alarm> {
    let mut changes = Vec::new();
    for s in 0..=20 {
        changes.extend(send(
            h,
            s * 1_000,
            RideSample {
                state,
                wind_mps: Some(wind),
                ..running()
            },
        ));
    }
    of(&changes, "ride.wind_limit").into_iter().next()
}

#[test]
fn wind_limit_depends_on_the_category_and_the_registry() {
    let mut h = ride_h("");
    assert!(windy(&mut h, RideState::Running, 10.79).is_none());
    let mut h = ride_h("");
    assert!(windy(&mut h, RideState::Running, 10.8).is_some());

    // Passenger ropeways stop at Beaufort 7.
    let mut h = ride_h("");
    h.ctx = ride_ctx("EQ1", "passenger_ropeway");
    assert!(windy(&mut h, RideState::Running, 13.8).is_none());
    let mut h = ride_h("");
    h.ctx = ride_ctx("EQ1", "passenger_ropeway");
    let a = windy(&mut h, RideState::Running, 13.9).expect("13.9 m/s is at the ropeway limit");
    assert_eq!(a.details["limit_mps"], 13.9);

    // The ride's own registered limit wins, even over a configured one.
    let config = "[equipment.EQ1.\"ride.wind_limit\"]\nlimit_mps = 20";
    let registry = |h: &mut H| {
        std::sync::Arc::make_mut(&mut h.ctx.params).insert("wind_limit_mps".into(), json!(12.0));
    };
    let mut h = ride_h(config);
    registry(&mut h);
    assert!(windy(&mut h, RideState::Running, 11.9).is_none());
    let mut h = ride_h(config);
    registry(&mut h);
    let a = windy(&mut h, RideState::Running, 12.0).expect("at the registry's limit");
    assert_eq!(
        (&a.details["limit_mps"], &a.details["limit_from"]),
        (&json!(12.0), &json!("registry"))
    );

    // Only while running; a ride without an anemometer never fires.
    for state in [
        RideState::Stopped,
        RideState::Loading,
        RideState::Maintenance,
    ] {
        let mut h = ride_h("");
        assert!(windy(&mut h, state, 25.0).is_none(), "{state:?}");
    }
    let mut h = ride_h("");
    let mut changes = Vec::new();
    for s in 0..=20 {
        let calm = RideSample {
            wind_mps: None,
            ..running()
        };
        changes.extend(send(&mut h, s * 1_000, calm));
    }
    none(&changes, "ride.wind_limit");
}

#[test]
fn overspeed_needs_a_rated_speed() {
    let mut h = ride_h("");
    std::sync::Arc::make_mut(&mut h.ctx.params).clear();
    let mut changes = Vec::new();
    for s in 0..10 {
        let fast = RideSample {
            speed_mps: 50.0,
            ..running()
        };
        changes.extend(send(&mut h, s * 1_000, fast));
    }
    none(&changes, "ride.overspeed");
}

#[test]
fn a_silent_device_fires_on_time_through_ticks() {
    let mut h = ride_h("");
    let gusty = RideSample {
        wind_mps: Some(15.0),
        ..running()
    };
    none(&send(&mut h, 0, gusty), "ride.wind_limit");
    none(&h.tick(9_999), "ride.wind_limit");
    let a = one(&h.tick(10_400), "ride.wind_limit");
    assert_eq!(
        a.raised_at,
        T0 + 10_000,
        "when it qualified, not when noticed"
    );
}

#[test]
fn per_category_and_per_equipment_overrides() {
    let config = "[category.amusement_ride.\"ride.vibration_high\"]\nlimit_mm_s = 7.1\nfor_s = 5\n\
                  [category.passenger_ropeway.\"ride.vibration_high\"]\nenabled = false\n\
                  [equipment.EQ2.\"ride.overspeed\"]\nfactor = 1.3\nseverity = \"major\"";
    let shaky = RideSample {
        vibration_mm_s: Some(7.2),
        speed_mps: 12.0,
        ..running()
    };
    let mut changes = Vec::new();
    let mut h = ride_h(config);
    for s in 0..=5 {
        changes.extend(send(&mut h, s * 1_000, shaky.clone()));
    }
    // Every amusement ride: vibration above 7.1 mm/s for 5 s.
    let v = one(&changes, "ride.vibration_high");
    assert_eq!(v.raised_at, T0 + 5_000);
    assert_eq!(v.details["limit_mm_s"], 7.1);
    // EQ1 keeps the shipped overspeed: 12 m/s > 11 m/s for 2 s, critical.
    assert_eq!(one(&changes, "ride.overspeed").severity, Severity::Critical);

    // EQ2 (same category): overspeed only above 13 m/s, and major.
    let mut h2 = ride_h(config);
    h2.ctx = ride_ctx("EQ2", "amusement_ride");
    let mut changes = Vec::new();
    for s in 0..=5 {
        changes.extend(send(&mut h2, s * 1_000, shaky.clone()));
    }
    none(&changes, "ride.overspeed");
    assert_eq!(of(&changes, "ride.vibration_high").len(), 1);
    let faster = RideSample {
        speed_mps: 13.1,
        ..shaky.clone()
    };
    send(&mut h2, 6_000, faster.clone());
    let a = one(&send(&mut h2, 8_000, faster), "ride.overspeed");
    assert_eq!(a.severity, Severity::Major);
    assert_eq!(a.details["limit_mps"], 13.0);

    // Ropeways: vibration disabled.
    let mut h3 = ride_h(config);
    h3.ctx = ride_ctx("EQ3", "passenger_ropeway");
    let mut changes = Vec::new();
    for s in 0..=40 {
        let rough = RideSample {
            vibration_mm_s: Some(30.0),
            ..running()
        };
        changes.extend(send(&mut h3, s * 1_000, rough));
    }
    none(&changes, "ride.vibration_high");
}

#[test]
fn ride_rules_accept_their_parameters_and_refuse_others() {
    assert!(RuleConfig::from_toml("[rule.\"ride.wind_limit\"]\nlimit_mps = 9").is_ok());
    let err = RuleConfig::from_toml("[rule.\"ride.brake_fault\"]\nlimit_mps = 9").unwrap_err();
    assert!(err.to_string().contains("limit_mps"), "{err}");
    let err = RuleConfig::from_toml("[rule.\"ride.vibration_high\"]\nlimit_mm_s = 0").unwrap_err();
    assert!(err.to_string().contains("limit_mm_s"), "{err}");
    assert!(RuleConfig::from_toml("[rule.\"ride.no_daily_check\"]\nenabled = false").is_ok());
    let err = RuleConfig::from_toml("[rule.\"ride.no_daily_check\"]\nfor_s = 60").unwrap_err();
    assert!(err.to_string().contains("for_s"), "{err}");
}

#[test]
fn a_resolved_ride_alarm_is_raised_afresh_while_the_condition_holds() {
    let mut h = ride_h("");
    let unlocked = RideSample {
        restraints_locked: false,
        ..running()
    };
    let a = one(
        &send(&mut h, 0, unlocked.clone()),
        "ride.running_unrestrained",
    );
    h.engine
        .resolve(&a.alarm_id, "supervisor", "checked on site", T0 + 500)
        .unwrap();
    let b = one(&send(&mut h, 1_000, unlocked), "ride.running_unrestrained");
    assert_ne!(b.alarm_id, a.alarm_id);
    assert_eq!((b.count, b.raised_at), (1, T0 + 1_000));
}

#[test]
fn ride_alarms_do_not_count_as_elevator_faults() {
    let mut h = ride_h("");
    let mut changes = Vec::new();
    for k in 0..4 {
        let faulty = RideSample {
            brake: Brake::Fault,
            ..running()
        };
        changes.extend(send(&mut h, k * 20_000, faulty));
        changes.extend(send(&mut h, k * 20_000 + 1_000, running()));
        changes.extend(h.tick(k * 20_000 + 12_000));
    }
    assert_eq!(
        of(&changes, "ride.brake_fault").len(),
        8,
        "4 raises, 4 clears"
    );
    none(&changes, "elevator.frequent_faults");
}

#[test]
fn a_restored_ride_alarm_continues() {
    let mut h = ride_h("");
    let braking = RideSample {
        brake: Brake::Fault,
        ..running()
    };
    let a = one(&send(&mut h, 0, braking.clone()), "ride.brake_fault");
    let mut after = ride_h("");
    after.engine.restore(vec![a.clone()], T0 + 5_000);
    after.seq = 100;
    none(&send(&mut after, 6_000, braking), "ride.brake_fault");
    assert_eq!(after.open("ride.brake_fault").unwrap().alarm_id, a.alarm_id);
    none(&send(&mut after, 7_000, running()), "ride.brake_fault");
    let c = one(&after.tick(17_000), "ride.brake_fault");
    assert_eq!(
        (c.alarm_id, c.state, c.cleared_at),
        (a.alarm_id, AlarmState::Cleared, Some(T0 + 17_000))
    );
}

mod daily_check {
    use vigil_model::reading::{Brake, RideSample, RideState};
    use vigil_model::{Alarm, AlarmState, Payload, Severity};

    use crate::harness::*;

    const RULE: &str = "ride.no_daily_check";
    /// T0 is 18:26:40 UTC; the next UTC midnight is this much later.
    const MIDNIGHT: i64 = 20_000_000;

    fn run(h: &mut H, at: i64, passengers: Option<u16>) -> Vec<Alarm> {
        let sample = RideSample {
            state: RideState::Running,
            speed_mps: 5.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake: Brake::Ok,
            passengers,
        };
        let r = h.reading(at, Payload::Ride(sample));
        h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
    }

    fn ride() -> H {
        let mut h = H::new();
        h.ctx = ctx_for("RIDE1", "amusement_ride");
        h
    }

    #[test]
    fn passengers_before_a_trial_run_raise_it_once_a_day_and_it_ends_at_midnight() {
        let mut h = ride();
        let a = one(&run(&mut h, 0, Some(12)), RULE);
        assert_eq!((a.severity, a.state), (Severity::Major, AlarmState::Active));
        assert_eq!(a.details["passengers"], 12);
        // More runs that day: no repeats, even after a late trial run.
        none(&run(&mut h, 60_000, Some(20)), RULE);
        none(&run(&mut h, 120_000, Some(0)), RULE);
        none(&run(&mut h, 180_000, Some(20)), RULE);
        // Midnight passes while the ride is closed: the alarm ends then.
        let c = one(&h.tick(MIDNIGHT + 1_000), RULE);
        assert_eq!(
            (c.state, c.cleared_at),
            (AlarmState::Cleared, Some(T0 + MIDNIGHT))
        );
        // Next morning: trial run first, then passengers. Nothing to say.
        none(&run(&mut h, MIDNIGHT + 30_000_000, Some(0)), RULE);
        none(&run(&mut h, MIDNIGHT + 30_060_000, Some(24)), RULE);
    }

    #[test]
    fn a_trial_run_first_or_no_passenger_count_raises_nothing() {
        let mut h = ride();
        none(&run(&mut h, 0, Some(0)), RULE);
        none(&run(&mut h, 60_000, Some(30)), RULE);
        let mut h = ride();
        none(&run(&mut h, 0, None), RULE);
        none(&run(&mut h, 60_000, None), RULE);
        // Elevators have no daily trial run.
        let mut h = H::new();
        none(&run(&mut h, 0, Some(3)), RULE);
    }

    #[test]
    fn the_day_is_the_local_day() {
        // At UTC+8, T0 (18:26 UTC) is already 02:26 the next local day,
        // whose midnight was 2 h 26 min 40 s ago.
        let mut h = ride();
        h.engine.set_local_offset(8 * 3600);
        let a = one(&run(&mut h, 0, Some(5)), RULE);
        assert_eq!(a.details["day_start"], T0 - 8_800_000);
    }
}

mod daily_check_record {
    use serde_json::json;
    use vigil_model::reading::{Brake, RideSample, RideState};
    use vigil_model::{Alarm, Payload};

    use crate::harness::*;

    const RULE: &str = "ride.no_daily_check";

    fn sample(state: RideState, passengers: Option<u16>) -> RideSample {
        RideSample {
            state,
            speed_mps: 5.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake: Brake::Ok,
            passengers,
        }
    }

    /// A run: running at `at`, stopped 60 s later.
    fn run(h: &mut H, at: i64, passengers: Option<u16>) -> Vec<Alarm> {
        let r = h.reading(at, Payload::Ride(sample(RideState::Running, passengers)));
        let mut out = h.engine.on_reading(&r, &h.ctx.clone(), T0 + at);
        let r = h.reading(
            at + 60_000,
            Payload::Ride(sample(RideState::Stopped, passengers)),
        );
        out.extend(h.engine.on_reading(&r, &h.ctx.clone(), T0 + at + 60_000));
        out
    }

    fn ride(records_by_event: bool) -> H {
        let mut h = H::new();
        h.ctx = ctx_for("RIDE1", "amusement_ride");
        if records_by_event {
            std::sync::Arc::make_mut(&mut h.ctx.params)
                .insert("daily_check".into(), json!("event"));
        }
        h
    }

    #[test]
    fn a_check_event_is_the_days_record_and_no_controller_fault() {
        let mut h = ride(false);
        let changes = h.event(0, "daily_check", true);
        none(&changes, RULE);
        none(&changes, "elevator.controller_fault");
        none(&run(&mut h, 60_000, Some(24)), RULE);
    }

    #[test]
    fn a_ride_that_records_by_event_is_judged_without_passenger_counts() {
        // The first run of the day is the trial; the second without a
        // check event carries passengers unchecked.
        let mut h = ride(true);
        none(&run(&mut h, 0, None), RULE);
        let a = one(&run(&mut h, 120_000, None), RULE);
        assert_eq!(
            (a.details["run"].clone(), a.raised_at),
            (json!(2), T0 + 120_000)
        );
        // Checked after the trial run: nothing.
        let mut h = ride(true);
        none(&run(&mut h, 0, None), RULE);
        none(&h.event(65_000, "daily_check", true), RULE);
        none(&run(&mut h, 120_000, None), RULE);
        none(&run(&mut h, 240_000, None), RULE);
        // Without the registry entry, runs without passengers stay unjudged.
        let mut h = ride(false);
        none(&run(&mut h, 0, None), RULE);
        none(&run(&mut h, 120_000, None), RULE);
    }
}

/// A device that sends ride samples and elevator samples keeps the latest
/// of each (the engine keeps one place for a device's latest sample, and
/// boxes the second kind): ticks carry both samples' periods to their end.
#[test]
fn a_device_sending_both_kinds_of_sample_keeps_both() {
    let mut h = ride_h("");
    let fast = RideSample {
        speed_mps: 12.0,
        ..running()
    };
    none(&send(&mut h, 0, fast), "ride.overspeed");
    let on_battery = ElevatorSample {
        power: Power::Battery,
        ..healthy()
    };
    none(&h.send(100, on_battery.clone()), "elevator.power_loss");
    let mut changes = Vec::new();
    for at in (1_000..=6_000).step_by(1_000) {
        changes.extend(h.tick(at));
    }
    let overspeed = one(&changes, "ride.overspeed");
    assert_eq!(overspeed.raised_at, T0 + 2_000, "{overspeed:#?}");
    let power = one(&changes, "elevator.power_loss");
    assert_eq!(power.raised_at, T0 + 5_100, "{power:#?}");
    // Each kind replaces only its own latest sample: a healthy ride sample
    // clears the overspeed after the clear period, the car stays on battery.
    none(&send(&mut h, 6_500, running()), "elevator.power_loss");
    let mut changes = Vec::new();
    for at in (7_000..=17_000).step_by(1_000) {
        changes.extend(h.tick(at));
    }
    let cleared = one(&changes, "ride.overspeed");
    assert_eq!(cleared.state, AlarmState::Cleared);
    assert_eq!(cleared.cleared_at, Some(T0 + 16_500));
    none(&changes, "elevator.power_loss");
    assert!(h.open("elevator.power_loss").is_some());
    assert!(h.open("ride.overspeed").is_none());
}
