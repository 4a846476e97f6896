//! Device time: silence advances the clock, late readings cannot rewind
//! state, replay equals live.

use vigil_model::reading::{Door, ElevatorSample};
use vigil_model::{Alarm, AlarmState, EpochMs};

use crate::harness::*;

#[test]
fn silence_advances_the_device_clock_so_a_pending_for_fires_on_time() {
    let rule = "elevator.door_open_moving";
    let mut h = H::new();
    // One bad 1 Hz sample, then nothing.
    none(
        &h.send(
            0,
            ElevatorSample {
                door: Door::Open,
                speed_mps: 0.5,
                ..moving()
            },
        ),
        rule,
    );
    none(&h.tick(599), rule);
    let a = one(&h.tick(600), rule);
    assert_eq!(a.raised_at, T0 + 600);
}

#[test]
fn a_trapped_car_that_falls_silent_still_raises_at_180_s() {
    let rule = "elevator.trapped";
    let mut h = H::new();
    h.send(
        0,
        ElevatorSample {
            occupied: true,
            ..healthy()
        },
    );
    let mut raised = Vec::new();
    for s in 1..=200 {
        raised.extend(of(&h.tick(s * 1_000), rule));
    }
    assert_eq!(raised.len(), 1, "{raised:#?}");
    assert_eq!(raised[0].raised_at, T0 + 180_000);
}

#[test]
fn silence_after_the_condition_ends_clears_on_time() {
    let rule = "elevator.overspeed";
    let mut h = H::new();
    one(
        &h.send(
            0,
            ElevatorSample {
                speed_mps: 2.5,
                ..moving()
            },
        ),
        rule,
    );
    h.send(1_000, moving());
    none(&h.tick(10_999), rule);
    let a = one(&h.tick(11_000), rule);
    assert_eq!(
        (a.state, a.cleared_at),
        (AlarmState::Cleared, Some(T0 + 11_000))
    );
}

#[test]
fn the_clock_advances_from_the_device_time_not_the_engine_time() {
    // The device clock runs 5 s behind the engine's: the `for` is still
    // 0.6 s of silence after the bad sample.
    let rule = "elevator.door_open_moving";
    let mut h = H::new();
    h.send_received(
        0,
        5_000,
        ElevatorSample {
            door: Door::Open,
            speed_mps: 0.5,
            ..moving()
        },
    );
    none(&h.tick(5_599), rule);
    assert_eq!(one(&h.tick(5_600), rule).raised_at, T0 + 600);
}

#[test]
fn a_late_reading_is_not_evaluated() {
    let rule = "elevator.overspeed";
    let mut h = H::new();
    h.seq = 100;
    let a = one(
        &h.send(
            10_000,
            ElevatorSample {
                speed_mps: 2.5,
                ..moving()
            },
        ),
        rule,
    );
    // A healthy sample from before (seq 50, late from a spool) does not
    // start the clear period…
    none(&h.send_seq(50, 5_000, 10_500, moving()), rule);
    none(&h.tick(30_000), rule);
    assert!(h.open(rule).is_some());
    // …and a bad one from before does not repeat.
    h.send(31_000, moving());
    none(
        &h.send_seq(
            51,
            30_500,
            31_500,
            ElevatorSample {
                speed_mps: 2.5,
                ..moving()
            },
        ),
        rule,
    );
    assert_eq!(
        h.open(rule).map(|x| (x.alarm_id, x.count)),
        Some((a.alarm_id, 1))
    );
}

#[test]
fn a_late_reading_still_proves_the_device_alive() {
    let mut h = H::new();
    h.seq = 100;
    h.send(100_000, healthy());
    // 80 s later a spooled sample from before arrives.
    h.send_seq(60, 50_000, 180_000, healthy());
    none(&h.tick(269_999), "device.offline");
    one(&h.tick(270_000), "device.offline");
}

#[test]
fn a_device_clock_that_steps_back_is_followed() {
    let rule = "elevator.trapped";
    let mut h = H::new();
    h.send(3_600_000, healthy());
    // The device reboots with its clock an hour behind; seq keeps growing.
    h.send_received(
        0,
        3_601_000,
        ElevatorSample {
            occupied: true,
            ..healthy()
        },
    );
    none(
        &h.send_received(
            179_000,
            3_780_000,
            ElevatorSample {
                occupied: true,
                ..healthy()
            },
        ),
        rule,
    );
    let a = one(
        &h.send_received(
            180_000,
            3_781_000,
            ElevatorSample {
                occupied: true,
                ..healthy()
            },
        ),
        rule,
    );
    assert_eq!(a.raised_at, T0 + 180_000);
}

/// A morning as a device reports it (on every change, at least every 30 s
/// when idle, 1 Hz while moving): a trapped passenger, a door left open, an
/// overspeed with its repeat, one door-open-while-moving sample.
fn scenario() -> Vec<(EpochMs, ElevatorSample)> {
    let mut s = Vec::new();
    let mut hold = |from: EpochMs, to: EpochMs, every: EpochMs, sample: ElevatorSample| {
        let mut t = from;
        while t < to {
            s.push((t, sample.clone()));
            t += every;
        }
    };
    hold(0, 2_000, 30_000, healthy());
    hold(
        2_000,
        250_000,
        30_000,
        ElevatorSample {
            occupied: true,
            ..healthy()
        },
    );
    hold(
        250_000,
        260_000,
        30_000,
        ElevatorSample {
            door: Door::Open,
            occupied: true,
            ..healthy()
        },
    );
    hold(
        260_000,
        500_000,
        30_000,
        ElevatorSample {
            door: Door::Open,
            ..healthy()
        },
    );
    hold(500_000, 530_000, 30_000, healthy());
    hold(530_000, 531_000, 1_000, moving());
    hold(
        531_000,
        532_000,
        1_000,
        ElevatorSample {
            speed_mps: 2.4,
            ..moving()
        },
    );
    hold(532_000, 535_500, 1_000, moving());
    hold(
        535_500,
        536_500,
        1_000,
        ElevatorSample {
            speed_mps: 2.3,
            ..moving()
        },
    );
    hold(536_500, 540_000, 1_000, moving());
    hold(
        540_000,
        541_000,
        1_000,
        ElevatorSample {
            door: Door::Open,
            speed_mps: 0.5,
            ..moving()
        },
    );
    hold(541_000, 560_000, 1_000, moving());
    hold(560_000, 650_000, 30_000, healthy());
    s
}

fn sorted(mut v: Vec<Alarm>) -> Vec<Alarm> {
    v.sort_by(|a, b| (a.alarm_id.as_str(), a.version).cmp(&(b.alarm_id.as_str(), b.version)));
    v
}

#[test]
fn replaying_history_raises_the_same_alarms_as_live_evaluation() {
    // Live: readings as they happen and a tick every second in between.
    let mut live = H::new();
    let mut live_out = Vec::new();
    let mut next_tick = 1_000;
    for (at, sample) in scenario() {
        while next_tick < at {
            live_out.extend(live.tick(next_tick));
            next_tick += 1_000;
        }
        live_out.extend(live.send(at, sample));
    }
    // Replay: the same readings a week later, as fast as they come, no ticks.
    let mut replay = H::new();
    let mut replay_out = Vec::new();
    let week = 7 * 86_400_000;
    for (i, (at, sample)) in scenario().into_iter().enumerate() {
        replay_out.extend(replay.send_received(at, week + i as EpochMs, sample));
    }
    let rules: Vec<&str> = live_out.iter().map(|a| a.rule.as_str()).collect();
    for expected in [
        "elevator.trapped",
        "elevator.door_wont_close",
        "elevator.overspeed",
        "elevator.door_open_moving",
    ] {
        assert!(
            rules.contains(&expected),
            "scenario should raise {expected}: {rules:?}"
        );
    }
    let overspeed: Vec<_> = of(&live_out, "elevator.overspeed")
        .iter()
        .map(|a| (a.count, a.state))
        .collect();
    assert_eq!(
        overspeed,
        [
            (1, AlarmState::Active),
            (2, AlarmState::Active),
            (2, AlarmState::Cleared)
        ]
    );
    assert!(live_out.iter().all(|a| a.rule.as_str() != "device.offline"));
    assert_eq!(sorted(live_out), sorted(replay_out));
}
