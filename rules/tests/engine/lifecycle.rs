//! People acting on alarms, restarts, and configuration.

use vigil_model::reading::{Door, ElevatorSample, Power};
use vigil_model::{Alarm, AlarmId, AlarmState, DeviceId, Payload, Reading, Severity};
use vigil_rules::{AlarmOpError, RuleConfig, RuleEngine};

use crate::harness::*;

const OVERSPEED: &str = "elevator.overspeed";

fn overspeed() -> ElevatorSample {
    ElevatorSample {
        speed_mps: 2.5,
        ..moving()
    }
}

#[test]
fn acknowledge_then_resolve() {
    let mut h = H::new();
    let a = one(&h.send(0, overspeed()), OVERSPEED);

    let ack = h
        .engine
        .acknowledge(&a.alarm_id, "inspector Li", T0 + 5_000)
        .unwrap();
    assert_eq!(ack.state, AlarmState::Acknowledged);
    assert_eq!(
        (ack.acknowledged_by.as_deref(), ack.acknowledged_at),
        (Some("inspector Li"), Some(T0 + 5_000))
    );
    assert_eq!((ack.version, ack.updated_at), (2, T0 + 5_000));
    // Twice: unchanged, no new version.
    let again = h
        .engine
        .acknowledge(&a.alarm_id, "someone else", T0 + 6_000)
        .unwrap();
    assert_eq!(again, ack);

    // A repeat keeps it acknowledged and counts.
    h.send(7_000, moving());
    let r = one(&h.send(8_000, overspeed()), OVERSPEED);
    assert_eq!(
        (r.state, r.count, r.version),
        (AlarmState::Acknowledged, 2, 3)
    );

    let done = h
        .engine
        .resolve(
            &a.alarm_id,
            "inspector Li",
            "governor re-set, tested",
            T0 + 20_000,
        )
        .unwrap();
    assert_eq!(done.state, AlarmState::Cleared);
    assert_eq!(
        (done.cleared_at, done.note.as_deref(), done.version),
        (Some(T0 + 20_000), Some("governor re-set, tested"), 4)
    );
    assert_eq!(done.acknowledged_by.as_deref(), Some("inspector Li"));
    assert!(h.open(OVERSPEED).is_none());

    assert_eq!(
        h.engine.resolve(&a.alarm_id, "x", "y", T0 + 21_000),
        Err(AlarmOpError::AlreadyCleared(a.alarm_id.clone()))
    );
    assert_eq!(
        h.engine.acknowledge(&a.alarm_id, "x", T0 + 21_000),
        Err(AlarmOpError::AlreadyCleared(a.alarm_id.clone()))
    );
    let unknown = AlarmId::new("nope").unwrap();
    assert_eq!(
        h.engine.acknowledge(&unknown, "x", T0),
        Err(AlarmOpError::NotFound(unknown.clone()))
    );
    assert_eq!(
        h.engine.resolve(&unknown, "x", "y", T0),
        Err(AlarmOpError::NotFound(unknown))
    );
}

#[test]
fn resolving_also_acknowledges_and_rule_cleared_alarms_are_already_cleared() {
    let mut h = H::new();
    let a = one(&h.send(0, overspeed()), OVERSPEED);
    let done = h
        .engine
        .resolve(
            &a.alarm_id,
            "Wang",
            "false alarm: sensor swapped",
            T0 + 1_000,
        )
        .unwrap();
    assert_eq!(
        (
            done.acknowledged_by.as_deref(),
            done.acknowledged_at,
            done.version
        ),
        (Some("Wang"), Some(T0 + 1_000), 2)
    );

    let b = one(&h.send(2_000, overspeed()), OVERSPEED);
    assert_ne!(
        b.alarm_id, a.alarm_id,
        "the overspeed still holds: a fresh alarm"
    );
    h.send(3_000, moving());
    let c = one(&h.tick(13_000), OVERSPEED);
    assert_eq!(
        (c.alarm_id.clone(), c.state),
        (b.alarm_id, AlarmState::Cleared)
    );
    assert_eq!(
        h.engine.acknowledge(&c.alarm_id, "x", T0 + 14_000),
        Err(AlarmOpError::AlreadyCleared(c.alarm_id))
    );
}

#[test]
fn a_condition_still_true_after_resolve_raises_afresh_once_it_qualifies_again() {
    let rule = "elevator.trapped";
    let mut h = H::new();
    let trapped = ElevatorSample {
        occupied: true,
        ..healthy()
    };
    h.send(0, trapped.clone());
    let a = one(&h.send(180_000, trapped.clone()), rule);
    h.engine
        .resolve(
            &a.alarm_id,
            "rescue team",
            "released, car sensor faulty",
            T0 + 200_000,
        )
        .unwrap();
    // Still reporting trapped: a new alarm only after another full 180 s
    // from the next reading.
    none(&h.send(210_000, trapped.clone()), rule);
    none(&h.tick(389_999), rule);
    let b = one(&h.tick(390_000), rule);
    assert_ne!(b.alarm_id, a.alarm_id);
    assert_eq!((b.count, b.version, b.raised_at), (1, 1, T0 + 390_000));
}

#[test]
fn resolved_frequent_faults_wait_for_a_new_occurrence() {
    let rule = "elevator.frequent_faults";
    let mut h = H::new();
    for k in 0..3 {
        h.send(k * 8_000, overspeed());
        h.send(k * 8_000 + 4_000, moving());
    }
    let ff = h
        .open(rule)
        .expect("three overspeeds raise frequent_faults");
    h.engine
        .resolve(&ff.alarm_id, "Zhou", "governor replaced", T0 + 30_000)
        .unwrap();
    none(&h.tick(31_000), rule);
    none(&h.send(40_000, moving()), rule);
    // The next major fault within the window raises it afresh.
    let again = one(&h.send(50_000, overspeed()), rule);
    assert_ne!(again.alarm_id, ff.alarm_id);
    assert_eq!(again.details["occurrences"], 4);
}

fn restarted(alarms: Vec<Alarm>, at: i64) -> H {
    let mut h = H::new();
    let mut n = 0;
    let ids = Box::new(move || {
        n += 1;
        AlarmId::new(format!("R{n}")).unwrap()
    });
    h.engine = RuleEngine::with_id_source(RuleConfig::default(), ids);
    h.engine.restore(alarms, T0 + at);
    h.seq = 1_000;
    h
}

#[test]
fn restore_continues_open_alarms_without_duplicates() {
    let mut before = H::new();
    let mut versions = before.send(0, overspeed());
    versions.extend(
        before
            .engine
            .acknowledge(&versions[0].alarm_id.clone(), "Li", T0 + 500),
    );
    let a = versions[0].clone();

    let mut h = restarted(versions, 60_000);
    assert_eq!(h.engine.open_alarms().count(), 1);
    assert_eq!(h.open(OVERSPEED).unwrap().state, AlarmState::Acknowledged);
    // Still overspeeding after the restart: the same occurrence.
    none(&h.send(61_000, overspeed()), OVERSPEED);
    none(&h.send(62_000, overspeed()), OVERSPEED);
    // A new occurrence: the restored alarm keeps counting.
    h.send(63_000, moving());
    let r = one(&h.send(65_000, overspeed()), OVERSPEED);
    assert_eq!(
        (r.alarm_id.clone(), r.count, r.version, r.state),
        (a.alarm_id.clone(), 2, 3, AlarmState::Acknowledged)
    );
    // And clears like any other.
    h.send(66_000, moving());
    let c = one(&h.tick(76_000), OVERSPEED);
    assert_eq!(
        (c.alarm_id, c.state),
        (a.alarm_id.clone(), AlarmState::Cleared)
    );
    // People can act on restored alarms; cleared ones are known as cleared.
    assert_eq!(
        h.engine.acknowledge(&a.alarm_id, "x", T0),
        Err(AlarmOpError::AlreadyCleared(a.alarm_id))
    );
}

#[test]
fn a_restored_alarm_whose_condition_is_gone_clears_after_the_clear_period() {
    let rule = "elevator.trapped";
    let mut before = H::new();
    before.send(
        0,
        ElevatorSample {
            occupied: true,
            ..healthy()
        },
    );
    let a = one(&before.tick(180_000), rule);
    let mut h = restarted(vec![a.clone()], 300_000);
    none(
        &h.send(
            300_000,
            ElevatorSample {
                door: Door::Open,
                ..healthy()
            },
        ),
        rule,
    );
    none(&h.tick(309_999), rule);
    let c = one(&h.tick(310_000), rule);
    assert_eq!(
        (c.alarm_id, c.state, c.version),
        (a.alarm_id, AlarmState::Cleared, 2)
    );
}

#[test]
fn restored_open_alarms_can_be_acknowledged_and_resolved() {
    let mut before = H::new();
    let a = one(&before.event(0, "01", true), "elevator.controller_fault");
    let mut h = restarted(vec![a.clone()], 10_000);
    let ack = h
        .engine
        .acknowledge(&a.alarm_id, "Li", T0 + 11_000)
        .unwrap();
    assert_eq!((ack.version, ack.state), (2, AlarmState::Acknowledged));
    // The restored code list lets the controller clear it.
    let c = one(&h.event(12_000, "01", false), "elevator.controller_fault");
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
}

#[test]
fn restored_history_feeds_frequent_faults() {
    let mut before = H::new();
    let mut history = Vec::new();
    for k in 0..2 {
        history.extend(before.send(k * 20_000, overspeed()));
        history.extend(before.send(k * 20_000 + 1_000, moving()));
        history.extend(before.tick(k * 20_000 + 11_000));
    }
    assert_eq!(of(&history, OVERSPEED).len(), 4, "two raises, two clears");
    let mut h = restarted(history, 60_000);
    h.send(60_000, moving());
    let ff = one(&h.send(61_000, overspeed()), "elevator.frequent_faults");
    assert_eq!(ff.details["occurrences"], 3);
}

#[test]
fn restore_clears_open_alarms_of_rules_no_longer_configured() {
    // A rule file defined `site.door_slow` before the restart and no longer
    // does: its open alarm must not stay open for ever.
    let mut before = H::new();
    let mut a = one(&before.send(0, overspeed()), OVERSPEED);
    a.rule = vigil_model::RuleId::new("site.door_slow").unwrap();
    let mut h = restarted(vec![a.clone()], 1_000);
    let cleared = one(&h.tick(2_000), "site.door_slow");
    assert_eq!(
        (cleared.alarm_id, cleared.state, cleared.version),
        (a.alarm_id, AlarmState::Cleared, a.version + 1)
    );
    assert_eq!(h.engine.open_alarms().count(), 0);
}

#[test]
fn per_category_and_per_equipment_overrides() {
    let config = "[rule.\"elevator.trapped\"]\nfor_s = 120\n\
                  [category.escalator.\"elevator.trapped\"]\nenabled = false\n\
                  [equipment.EQ2.\"elevator.overspeed\"]\nfactor = 1.5\nseverity = \"major\"";
    let trapped = ElevatorSample {
        occupied: true,
        ..healthy()
    };

    let mut elevator = H::with_toml(config);
    elevator.send(0, trapped.clone());
    none(&elevator.tick(119_999), "elevator.trapped");
    one(&elevator.tick(120_000), "elevator.trapped");

    let mut escalator = H::with_toml(config);
    escalator.ctx = ctx_for("ES1", "escalator");
    escalator.send(0, trapped);
    none(&escalator.tick(600_000), "elevator.trapped");

    // EQ2 trips at 1.5 × 1.75 = 2.625 m/s, and as major; EQ1 at the default.
    let mut eq2 = H::with_toml(config);
    eq2.ctx = ctx_for("EQ2", "elevator");
    none(
        &eq2.send(
            0,
            ElevatorSample {
                speed_mps: 2.5,
                ..moving()
            },
        ),
        OVERSPEED,
    );
    assert_eq!(
        one(
            &eq2.send(
                1_000,
                ElevatorSample {
                    speed_mps: 2.7,
                    ..moving()
                }
            ),
            OVERSPEED
        )
        .severity,
        Severity::Major
    );
    let mut eq1 = H::with_toml(config);
    assert_eq!(
        one(
            &eq1.send(
                0,
                ElevatorSample {
                    speed_mps: 2.5,
                    ..moving()
                }
            ),
            OVERSPEED
        )
        .severity,
        Severity::Critical
    );
}

#[test]
fn a_disabled_rule_raises_nothing_and_disabling_clears_its_open_alarm() {
    let battery = ElevatorSample {
        power: Power::Battery,
        ..healthy()
    };
    let mut h = H::with_toml("[rule.\"elevator.power_loss\"]\nenabled = false");
    h.send(0, battery.clone());
    none(&h.tick(60_000), "elevator.power_loss");

    let mut h = H::new();
    h.send(0, battery.clone());
    let a = one(&h.tick(5_000), "elevator.power_loss");
    h.engine.replace_config(
        RuleConfig::from_toml("[rule.\"elevator.power_loss\"]\nenabled = false").unwrap(),
    );
    let c = one(&h.tick(6_000), "elevator.power_loss");
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
    none(&h.send(7_000, battery.clone()), "elevator.power_loss");
    // Enabled again: the condition must qualify afresh.
    h.engine.replace_config(RuleConfig::default());
    none(&h.send(8_000, battery.clone()), "elevator.power_loss");
    none(&h.tick(12_999), "elevator.power_loss");
    one(&h.tick(13_000), "elevator.power_loss");
}

#[test]
fn two_devices_of_one_elevator_share_the_alarm() {
    let mut h = H::new();
    let a = one(&h.send(0, overspeed()), OVERSPEED);
    h.device = DeviceId::new("EL2").unwrap();
    let r = one(&h.send(500, overspeed()), OVERSPEED);
    assert_eq!((r.alarm_id, r.count), (a.alarm_id.clone(), 2));
    // EL2 sees normal speed, EL1 has said nothing since: EL1 still holds it.
    h.send(1_000, moving());
    none(&h.send(20_000, moving()), OVERSPEED);
    assert!(h.open(OVERSPEED).is_some());
    h.device = DeviceId::new("EL1").unwrap();
    h.send(21_000, moving());
    assert_eq!(one(&h.tick(31_000), OVERSPEED).state, AlarmState::Cleared);
}

#[test]
fn default_alarm_ids_are_uuids() {
    let mut engine = RuleEngine::new(RuleConfig::default());
    let mut h = H::new();
    let r = h.reading(0, vigil_model::Payload::Elevator(overspeed()));
    let a = engine.on_reading(&r, &ctx(), T0);
    assert_eq!(a.len(), 1);
    let id = a[0].alarm_id.as_str();
    assert_eq!((id.len(), id.matches('-').count()), (36, 4), "{id}");
}

#[test]
fn the_catalogue_lists_every_rule_with_its_defaults() {
    let list = vigil_rules::catalogue();
    let ids: Vec<&str> = list.iter().map(|r| r.id.as_str()).collect();
    for id in [
        "elevator.trapped",
        "elevator.stopped_outside_zone",
        "elevator.door_open_moving",
        "elevator.overspeed",
        "elevator.overtravel_top",
        "elevator.overtravel_bottom",
        "elevator.safety_circuit_open",
        "elevator.door_lock_open_moving",
        "elevator.door_wont_close",
        "elevator.door_cycling",
        "elevator.power_loss",
        "elevator.floor_out_of_range",
        "elevator.controller_fault",
        "elevator.frequent_faults",
        "device.offline",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
    let trapped = &list[0];
    let for_s = trapped.params.iter().find(|p| p.name == "for_s").unwrap();
    assert_eq!(for_s.default, serde_json::json!(180.0));
}

/// A context kept from reading to reading (the registry's cache hands out
/// one per device) carries the device's place in the engine; evaluating
/// through it gives exactly the alarm changes a fresh context (a lookup by
/// id each time) gives.
#[test]
fn a_kept_context_evaluates_as_the_id_does() {
    let mut by_id = H::new();
    let mut kept = H::new();
    let ctx = kept.ctx.clone();
    assert_eq!(ctx.engine_slot.get(), None);
    let samples = [moving(), overspeed(), overspeed(), moving(), overspeed()];
    for (n, sample) in samples.into_iter().enumerate() {
        let at = n as i64 * 2_000;
        let expected = by_id.send(at, sample.clone());
        let r = kept.reading(at, Payload::Elevator(sample));
        let got = kept.engine.on_reading(&r, &ctx, T0 + at);
        assert_eq!(got, expected, "sample {n}");
        assert_eq!(ctx.engine_slot.get(), Some(0), "the place noted");
    }
    assert_eq!(
        (
            kept.engine.open_alarms().count(),
            by_id.engine.open_alarms().count()
        ),
        (1, 1)
    );
}

/// A context whose slot names another device's place (a copy of another
/// device's context, or a place in another engine) is noticed: the reading
/// is judged as its own device's, and the slot corrected.
#[test]
fn a_slot_naming_another_device_is_noticed() {
    let mut h = H::new();
    let first = h.ctx.clone();
    let r = h.reading(0, Payload::Elevator(moving()));
    h.engine.on_reading(&r, &first, T0);
    let place = first.engine_slot.get().expect("the place noted");
    // A second device on other equipment, its context naming the first's place.
    let other = DeviceId::new("EL2").unwrap();
    let ctx = ctx_for("EQ2", "elevator");
    ctx.engine_slot.set(place);
    let r = Reading {
        device_id: other.clone(),
        seq: 1,
        ts: T0 + 1_000,
        received_at: T0 + 1_000,
        payload: Payload::Elevator(overspeed()),
        extra: None,
    };
    let changes = h.engine.on_reading(&r, &ctx, T0 + 1_000);
    let raised = one(&changes, OVERSPEED);
    assert_eq!(
        raised.equipment_id.as_str(),
        "EQ2",
        "judged as EL2's reading"
    );
    let second = ctx.engine_slot.get().unwrap();
    assert_ne!(second, place, "the slot names EL2's own place now");
    // The first device's state is untouched: its next reading raises on EQ1.
    let changes = h.send(2_000, overspeed());
    assert_eq!(one(&changes, OVERSPEED).equipment_id.as_str(), "EQ1");
}

/// The registry moves an equipment to another category (same equipment
/// id): the next reading carries the new binding, the category's
/// parameters apply from there on and new alarms carry the new category;
/// moving back restores the first category's parameters.
#[test]
fn a_category_change_takes_effect_at_the_next_reading() {
    let mut h = H::with_toml("[category.escalator.\"elevator.power_loss\"]\nfor_s = 20\n");
    let on_battery = ElevatorSample {
        power: Power::Battery,
        ..healthy()
    };
    let raised = |h: &mut H, from: i64| -> Alarm {
        let mut changes = h.send(from, on_battery.clone());
        for at in (from + 1_000..from + 30_000).step_by(1_000) {
            changes.extend(h.send(at, on_battery.clone()));
        }
        let a = one(&changes, "elevator.power_loss");
        // Back to mains until the alarm clears.
        let mut changes = Vec::new();
        for at in (from + 30_000..=from + 41_000).step_by(1_000) {
            changes.extend(h.send(at, healthy()));
        }
        assert_eq!(
            one(&changes, "elevator.power_loss").state,
            AlarmState::Cleared
        );
        a
    };
    let a = raised(&mut h, 0);
    assert_eq!((a.raised_at, a.category.as_str()), (T0 + 5_000, "elevator"));
    h.ctx.binding.category = "escalator".into();
    let a = raised(&mut h, 100_000);
    assert_eq!(
        (a.raised_at, a.category.as_str()),
        (T0 + 120_000, "escalator")
    );
    h.ctx.binding.category = "elevator".into();
    let a = raised(&mut h, 200_000);
    assert_eq!(
        (a.raised_at, a.category.as_str()),
        (T0 + 205_000, "elevator")
    );
}
