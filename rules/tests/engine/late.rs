//! Late readings (overtaken by newer ones on their stream) are judged by
//! when they happened for what they decide on their own: point conditions
//! of samples and video incidents. Rules that need a run of samples in
//! order (a `for`, door cycling, occlusion) do not judge them.

use vigil_model::reading::{RideSample, RideState, VideoEvent, VideoKind};
use vigil_model::{AlarmState, DeviceId, Payload};

use crate::harness::*;

const OVERSPEED: &str = "elevator.overspeed";

/// 1.75 m/s rated: 2.2 m/s is over 115 %.
fn fast() -> vigil_model::reading::ElevatorSample {
    vigil_model::reading::ElevatorSample {
        speed_mps: 2.2,
        ..moving()
    }
}

#[test]
fn a_late_overspeed_sample_raises_at_its_own_time_and_the_live_samples_clear_it() {
    let mut h = H::new();
    h.send_seq(10, 0, 0, healthy());
    h.send_seq(12, 20_000, 20_000, healthy());
    // seq 11 was lost and re-sent after seq 12: an overspeed at 10 s.
    let a = one(&h.send_seq(11, 10_000, 21_000, fast()), OVERSPEED);
    assert_raised(&a, OVERSPEED, 10_000);
    assert_eq!(a.details["speed_mps"], 2.2);
    // The live condition takes it over at the next tick (the device's
    // clock: 20 s + 4 s of silence) and is false: a clear period later
    // the alarm ends.
    none(&h.tick(25_000), OVERSPEED);
    none(&h.tick(34_000), OVERSPEED);
    let c = one(&h.tick(35_000), OVERSPEED);
    assert_eq!(c.cleared_at, Some(T0 + 34_000));
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
}

#[test]
fn a_late_run_is_one_occurrence_and_an_earlier_episode_a_repeat() {
    let mut h = H::new();
    h.send_seq(100, 100_000, 100_000, fast());
    // One occurrence while it holds: the second sample repeats nothing.
    none(&h.send_seq(101, 101_000, 101_000, fast()), OVERSPEED);
    let open = h.open(OVERSPEED).unwrap();
    assert_eq!(open.raised_at, T0 + 100_000);
    // Late samples from the same episode (just before it) change nothing.
    none(&h.send_seq(99, 99_500, 102_000, fast()), OVERSPEED);
    // Late samples of an earlier episode, three in a row: one repeat.
    let r = one(&h.send_seq(50, 50_000, 103_000, fast()), OVERSPEED);
    assert_eq!((r.count, r.updated_at), (2, T0 + 100_000));
    none(&h.send_seq(51, 51_000, 103_100, fast()), OVERSPEED);
    none(&h.send_seq(52, 52_000, 103_200, fast()), OVERSPEED);
    assert_eq!(h.open(OVERSPEED).unwrap().count, 2);
}

#[test]
fn a_late_sample_of_a_rule_with_a_for_is_not_judged() {
    // A trapped passenger needs 180 s of samples in order; one late sample
    // (or a late run behind newer ones) cannot show that.
    let mut h = H::new();
    h.send_seq(10, 0, 0, healthy());
    h.send_seq(20, 400_000, 400_000, healthy());
    let trapped = vigil_model::reading::ElevatorSample {
        occupied: true,
        ..healthy()
    };
    for (k, at) in (0..=200).step_by(10).enumerate() {
        none(
            &h.send_seq(11 + k as u64 / 10, at * 1000, 400_001, trapped.clone()),
            "elevator.trapped",
        );
    }
}

#[test]
fn late_video_incidents_raise_and_end_their_quiet_period_after_them() {
    let mut h = H::new();
    h.device = DeviceId::new("CAM1").unwrap();
    let event = |kind, confidence| {
        Payload::Video(VideoEvent {
            camera_id: "car".into(),
            event: kind,
            confidence,
            snapshot: None,
        })
    };
    let send = |h: &mut H, seq, at, received, p: Payload| {
        let mut r = h.reading(at, p);
        r.seq = seq;
        r.received_at = T0 + received;
        h.engine.on_reading(&r, &h.ctx.clone(), T0 + received)
    };
    send(
        &mut h,
        10,
        1_000_000,
        1_000_000,
        event(VideoKind::Crowding, 0.9),
    );
    // A fall 15 min ago, delivered now: raised then; its 10 min quiet
    // period has long passed, so it ends at once on the device's clock.
    let a = one(
        &send(
            &mut h,
            9,
            100_000,
            1_000_100,
            event(VideoKind::PersonFall, 0.9),
        ),
        "video.person_fall",
    );
    assert_eq!(a.raised_at, T0 + 100_000);
    let c = one(&h.tick(1_001_000), "video.person_fall");
    assert_eq!(
        (c.state, c.cleared_at),
        (AlarmState::Cleared, Some(T0 + 700_000))
    );
    // A late occlusion report is not judged: occlusion needs its run in order.
    for k in 0..8 {
        none(
            &send(
                &mut h,
                1 + k,
                200_000 + k as i64 * 60_000,
                1_002_000,
                event(VideoKind::CameraOccluded, 1.0),
            ),
            "video.camera_occluded",
        );
    }
}

#[test]
fn a_late_ride_sample_with_the_brake_in_fault() {
    let mut h = H::new();
    h.ctx = ctx_for("RIDE1", "amusement_ride");
    h.device = DeviceId::new("RD1").unwrap();
    let ride = |brake| {
        Payload::Ride(RideSample {
            state: RideState::Stopped,
            speed_mps: 0.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake,
            passengers: None,
        })
    };
    use vigil_model::reading::Brake;
    let send = |h: &mut H, seq, at, received, p: Payload| {
        let mut r = h.reading(at, p);
        r.seq = seq;
        r.received_at = T0 + received;
        h.engine.on_reading(&r, &h.ctx.clone(), T0 + received)
    };
    send(&mut h, 10, 60_000, 60_000, ride(Brake::Ok));
    let a = one(
        &send(&mut h, 9, 30_000, 61_000, ride(Brake::Fault)),
        "ride.brake_fault",
    );
    assert_eq!((a.raised_at, a.count), (T0 + 30_000, 1));
    // The next live sample adopts it and the brake is fine: it clears.
    none(
        &send(&mut h, 11, 62_000, 62_000, ride(Brake::Ok)),
        "ride.brake_fault",
    );
    let c = one(
        &send(&mut h, 12, 73_000, 73_000, ride(Brake::Ok)),
        "ride.brake_fault",
    );
    assert_eq!(c.state, AlarmState::Cleared);
}
