//! Anomaly rules: a device against its own learned normal, on synthetic
//! but realistic streams (noisy door closings, a wearing motor, a vibrating
//! drive), with an injected clock.

use vigil_model::reading::{Brake, Door, RideSample, RideState};
use vigil_model::{Alarm, AlarmState, Payload, Severity};

use crate::harness::*;

const DOOR: &str = "anomaly.door_close_s";
const VIB: &str = "anomaly.vibration_mm_s";

/// Deterministic noise in [-1, 1).
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// One door closing of `close_ms`, starting at `t` ms after T0; returns
/// the changes and the time after it.
fn closing(h: &mut H, t: i64, close_ms: i64) -> (Vec<Alarm>, i64) {
    let mut s = healthy();
    s.door = Door::Closing;
    let mut out = h.send(t, s.clone());
    s.door = Door::Closed;
    out.extend(h.send(t + close_ms, s));
    (out, t + close_ms + 30_000)
}

/// `n` closings of about `ms(i)` ± 300 ms of noise.
fn closings(
    h: &mut H,
    t: &mut i64,
    n: usize,
    noise: &mut Noise,
    ms: impl Fn(usize) -> f64,
) -> Vec<Alarm> {
    let mut out = Vec::new();
    for i in 0..n {
        let (c, next) = closing(h, *t, (ms(i) + 300.0 * noise.next()) as i64);
        out.extend(c);
        *t = next;
    }
    out
}

#[test]
fn normal_door_variation_never_alarms_nor_does_the_warm_up() {
    let mut h = H::new();
    let mut noise = Noise(5);
    let mut t = 0;
    // Warm-up with wild values: a door held, a slow first morning.
    let wild = closings(&mut h, &mut t, 200, &mut noise, |i| {
        if i % 7 == 0 { 12_000.0 } else { 3_000.0 }
    });
    none(&wild, DOOR);
    let normal = closings(&mut h, &mut t, 3_000, &mut noise, |_| 3_000.0);
    none(&normal, DOOR);
}

#[test]
fn a_wearing_door_motor_is_caught_and_cleared_after_the_repair() {
    let mut h = H::new();
    let mut noise = Noise(9);
    let mut t = 0;
    none(
        &closings(&mut h, &mut t, 600, &mut noise, |_| 3_000.0),
        DOOR,
    );
    // The motor wears: +2 s spread over 300 closings.
    let drift = closings(&mut h, &mut t, 300, &mut noise, |i| {
        3_000.0 + 2_000.0 * i as f64 / 300.0
    });
    let a = one(&drift, DOOR);
    assert_eq!((a.severity, a.state), (Severity::Minor, AlarmState::Active));
    assert_eq!(a.details["metric"], "door_close_s");
    let normal = a.details["normal"].as_f64().unwrap();
    let recent = a.details["recent"].as_f64().unwrap();
    assert!(
        (normal - 3.0).abs() < 0.2,
        "normal stays near 3 s: {}",
        a.details
    );
    assert!(recent > normal + 0.3, "{}", a.details);
    // Caught before the drift reached +1 s.
    assert!(
        a.raised_at < T0 + (t - 150 * 33_000),
        "raised late: {}",
        a.raised_at - T0
    );
    // Still worn: no repeats, no second alarm.
    none(
        &closings(&mut h, &mut t, 100, &mut noise, |_| 5_000.0),
        DOOR,
    );
    // The motor is replaced: back to 3 s, the alarm clears.
    let repaired = closings(&mut h, &mut t, 200, &mut noise, |_| 3_000.0);
    let c = one(&repaired, DOOR);
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
}

#[test]
fn an_interrupted_closing_is_not_measured() {
    let mut h = H::new();
    let mut noise = Noise(1);
    let mut t = 0;
    closings(&mut h, &mut t, 400, &mut noise, |_| 3_000.0);
    // Someone blocks the door 100 times: closing, opening, then closed
    // much later. None of these is a slow motor.
    let mut out = Vec::new();
    for _ in 0..100 {
        let mut s = healthy();
        s.door = Door::Closing;
        out.extend(h.send(t, s.clone()));
        s.door = Door::Opening;
        out.extend(h.send(t + 1_000, s.clone()));
        s.door = Door::Open;
        out.extend(h.send(t + 3_000, s.clone()));
        s.door = Door::Closed;
        out.extend(h.send(t + 9_000, s));
        t += 40_000;
    }
    none(&out, DOOR);
}

fn vibration(h: &mut H, at: i64, mm_s: f32) -> Vec<Alarm> {
    let sample = RideSample {
        state: RideState::Running,
        speed_mps: 5.0,
        wind_mps: None,
        restraints_locked: true,
        vibration_mm_s: Some(mm_s),
        brake: Brake::Ok,
        passengers: None,
    };
    let r = h.reading(at, Payload::Ride(sample));
    h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
}

#[test]
fn a_vibrating_drive_is_caught_long_before_the_fixed_limit() {
    let mut h = H::new();
    h.ctx = ctx_for("RIDE1", "amusement_ride");
    let mut noise = Noise(3);
    let mut out = Vec::new();
    for i in 0..1_000 {
        out.extend(vibration(
            &mut h,
            i * 1_000,
            2.0 + 0.2 * noise.next() as f32,
        ));
    }
    none(&out, VIB);
    // A bearing starts to go: 4 mm/s, far below ride.vibration_high's 11.2.
    let mut fault = Vec::new();
    for i in 1_000..1_100 {
        fault.extend(vibration(
            &mut h,
            i * 1_000,
            4.0 + 0.4 * noise.next() as f32,
        ));
    }
    let a = one(&fault, VIB);
    assert!(
        a.raised_at < T0 + 1_030_000,
        "caught in {} s",
        (a.raised_at - T0) / 1000 - 1000
    );
    none(&fault, "ride.vibration_high");
}

#[test]
fn detectors_watch_their_own_categories_and_can_be_tuned() {
    // Escalators have no car door; elevators no ride vibration.
    let mut h = H::new();
    h.ctx = ctx_for("ESC1", "escalator");
    let mut noise = Noise(2);
    let mut t = 0;
    closings(&mut h, &mut t, 300, &mut noise, |_| 3_000.0);
    none(
        &closings(&mut h, &mut t, 300, &mut noise, |_| 9_000.0),
        DOOR,
    );

    // A shorter warm-up and a wider threshold for one elevator.
    let mut h =
        H::with_toml("[equipment.EQ1.\"anomaly.door_close_s\"]\nwarmup = 50\nthreshold = 6.0");
    let mut t = 0;
    closings(&mut h, &mut t, 60, &mut noise, |_| 3_000.0);
    // +1 s is within 6 deviations of this door's normal.
    none(
        &closings(&mut h, &mut t, 200, &mut noise, |_| 3_600.0),
        DOOR,
    );
    one(
        &closings(&mut h, &mut t, 200, &mut noise, |_| 6_000.0),
        DOOR,
    );
}

/// One trip of `floors` floors taking `ms`, starting at `t`; returns the
/// changes and the time after it.
fn trip(h: &mut H, t: i64, floors: i16, ms: i64) -> (Vec<Alarm>, i64) {
    let mut s = healthy();
    s.floor = 1;
    s.direction = vigil_model::reading::Direction::Up;
    s.speed_mps = 1.0;
    s.leveled = false;
    let mut out = h.send(t, s.clone());
    s.floor = 1 + floors;
    s.direction = vigil_model::reading::Direction::Stop;
    s.speed_mps = 0.0;
    s.leveled = true;
    out.extend(h.send(t + ms, s.clone()));
    // Back down to floor 1 at the normal pace, unmeasured noise aside.
    s.floor = 1;
    out.extend(h.send(t + ms + 20_000, s));
    (out, t + ms + 60_000)
}

#[test]
fn a_slowing_drive_shows_in_the_time_per_floor() {
    const TRIP: &str = "anomaly.trip_s_per_floor";
    let mut h = H::new();
    let mut noise = Noise(17);
    let mut t = 0;
    let mut out = Vec::new();
    // Trips of 1 to 5 floors at about 3 s per floor.
    for i in 0..600 {
        let floors = (i % 5 + 1) as i16;
        let (c, next) = trip(
            &mut h,
            t,
            floors,
            (3_000.0 * f64::from(floors) + 400.0 * noise.next()) as i64,
        );
        out.extend(c);
        t = next;
    }
    none(&out, TRIP);
    // The drive tires: 4 s per floor.
    let mut slow = Vec::new();
    for i in 0..100 {
        let floors = (i % 5 + 1) as i16;
        let (c, next) = trip(
            &mut h,
            t,
            floors,
            (4_000.0 * f64::from(floors) + 400.0 * noise.next()) as i64,
        );
        slow.extend(c);
        t = next;
    }
    let a = one(&slow, TRIP);
    assert_eq!(a.details["metric"], "trip_s_per_floor");
}

fn fill(h: &mut H, at: i64, seconds: f64, kg: f32, ok: bool) -> Vec<Alarm> {
    use vigil_model::reading::{FillResult, FillingRecord};
    let record = FillingRecord {
        cylinder_code: "C1".into(),
        operator_id: "P1".into(),
        medium: "LPG".into(),
        tare_kg: 15.0,
        net_kg: kg,
        pressure_mpa: None,
        temp_c: None,
        started_ms: T0 + at - (seconds * 1000.0) as i64,
        result: if ok {
            FillResult::Ok
        } else {
            FillResult::Aborted
        },
    };
    let r = h.reading(at, Payload::Filling(record));
    h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
}

#[test]
fn a_failing_pump_shows_in_the_seconds_per_kg() {
    const FILL: &str = "anomaly.fill_s_per_kg";
    let mut h = H::new();
    h.ctx = ctx_for("ST1", "filling_station");
    let mut noise = Noise(23);
    let mut out = Vec::new();
    // 14.9 kg in about 180 s; aborted fillings say nothing about the pump.
    for i in 0..600 {
        out.extend(fill(
            &mut h,
            i * 300_000,
            180.0 + 10.0 * noise.next(),
            14.9,
            true,
        ));
        out.extend(fill(&mut h, i * 300_000 + 1_000, 20.0, 2.0, false));
    }
    none(&out, FILL);
    let mut slow = Vec::new();
    for i in 600..650 {
        slow.extend(fill(
            &mut h,
            i * 300_000,
            250.0 + 10.0 * noise.next(),
            14.9,
            true,
        ));
    }
    let a = one(&slow, FILL);
    let (recent, normal) = (
        a.details["recent"].as_f64().unwrap(),
        a.details["normal"].as_f64().unwrap(),
    );
    assert!((normal - 180.0 / 14.9).abs() < 0.3, "{}", a.details);
    assert!(recent > normal + 0.5, "{}", a.details);
}

/// Found by fuzzing (rules.load+evaluate): a trip from floor 32767 to
/// -32768, both floors a device may send, overflowed an i16 subtraction
/// and took the rule shard down.
#[test]
fn a_trip_across_the_whole_floor_range_is_measured_without_overflow() {
    let mut h = H::new();
    let mut s = moving();
    s.floor = i16::MAX;
    h.send(0, s.clone());
    s.floor = i16::MIN;
    s.direction = vigil_model::reading::Direction::Stop;
    s.speed_mps = 0.0;
    s.leveled = true;
    // 65535 floors in 10 s: far outside a plausible trip, so not learned.
    let changes = h.send(10_000, s);
    assert!(
        changes
            .iter()
            .all(|a| !a.rule.as_str().starts_with("anomaly.")),
        "{changes:?}"
    );
}
