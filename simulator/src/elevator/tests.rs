//! The model against rules.md, with an injected clock: a healthy car never
//! meets a rule's condition for its duration; each injected fault meets its
//! own rule's condition long enough, then clears.

use std::collections::BTreeSet;

use vigil_model::DeviceId;
use vigil_model::codec::decode;
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};

use super::*;
use crate::wire;

const T0: EpochMs = 1_750_000_000_000;
const HOUR_MS: EpochMs = 3_600_000;
const FAULT_AFTER_MS: EpochMs = 600_000;
/// rules.md: an alarm clears when its condition has been false this long.
const CLEAR_MS: EpochMs = 10_000;

/// Buildings of the kinds the fleet generator makes.
const BUILDINGS: [((i16, i16), f64); 4] = [
    ((1, 8), 1.0),
    ((-1, 12), 1.5),
    ((-2, 18), 1.75),
    ((-3, 32), 2.5),
];

fn spec(floors: (i16, i16), rated: f64, seed: u64, fault: Option<FaultKind>) -> ElevatorSpec {
    ElevatorSpec {
        device_id: "EL000001".into(),
        floors,
        rated_speed_mps: rated,
        seed,
        fault: fault.map(|kind| FaultPlan {
            kind,
            after_ms: FAULT_AFTER_MS,
        }),
    }
}

struct Run {
    messages: Vec<Emitted>,
    edges: Vec<FaultEdge>,
}

fn simulate(
    spec: &ElevatorSpec,
    duration_ms: EpochMs,
    mut next_step: impl FnMut() -> EpochMs,
) -> Run {
    let mut car = Elevator::new(spec);
    let (mut messages, mut edges) = (Vec::new(), Vec::new());
    let mut t = T0;
    while t <= T0 + duration_ms {
        messages.extend(car.step(t));
        edges.extend(car.take_fault_edges());
        t += next_step();
    }
    Run { messages, edges }
}

fn hour(spec: &ElevatorSpec) -> Run {
    simulate(spec, HOUR_MS, || TICK_MS)
}

fn samples(run: &Run) -> Vec<(EpochMs, &ElevatorSample)> {
    run.messages
        .iter()
        .filter_map(|m| match &m.payload {
            Payload::Elevator(s) => Some((m.ts, s)),
            _ => None,
        })
        .collect()
}

/// A stretch of consecutive samples meeting a condition. `held_ms` is the
/// least it can have lasted (first to last such sample); `upper_ms` the
/// most (until the next sample that contradicts it, or the end of data).
#[derive(Debug)]
struct Stretch {
    start: EpochMs,
    last: EpochMs,
    held_ms: EpochMs,
    upper_ms: EpochMs,
}

fn stretches(
    s: &[(EpochMs, &ElevatorSample)],
    cond: impl Fn(&ElevatorSample) -> bool,
) -> Vec<Stretch> {
    let mut out = Vec::new();
    let mut open: Option<(EpochMs, EpochMs)> = None;
    for &(ts, sample) in s {
        match (cond(sample), open) {
            (true, None) => open = Some((ts, ts)),
            (true, Some((start, _))) => open = Some((start, ts)),
            (false, Some((start, last))) => {
                out.push(Stretch {
                    start,
                    last,
                    held_ms: last - start,
                    upper_ms: ts - start,
                });
                open = None;
            }
            (false, None) => {}
        }
    }
    if let (Some((start, last)), Some(&(end, _))) = (open, s.last()) {
        out.push(Stretch {
            start,
            last,
            held_ms: last - start,
            upper_ms: end - start,
        });
    }
    out
}

/// A rules.md elevator rule as a predicate on one sample, with its "for".
struct Rule {
    id: &'static str,
    for_ms: EpochMs,
    cond: Box<dyn Fn(&ElevatorSample) -> bool>,
}

fn catalogue(floors: (i16, i16), rated: f64) -> Vec<Rule> {
    let (lo, hi) = floors;
    let normal = |s: &ElevatorSample| s.mode == ElevatorMode::Normal;
    let rule = |id, for_ms, cond: Box<dyn Fn(&ElevatorSample) -> bool>| Rule { id, for_ms, cond };
    vec![
        rule(
            "elevator.trapped",
            180_000,
            Box::new(move |s| {
                s.door == Door::Closed && s.occupied && s.speed_mps == 0.0 && normal(s)
            }),
        ),
        rule(
            "elevator.trapped",
            60_000,
            Box::new(move |s| {
                s.door == Door::Closed
                    && s.occupied
                    && s.speed_mps == 0.0
                    && normal(s)
                    && s.alarm_button
            }),
        ),
        rule(
            "elevator.stopped_outside_zone",
            180_000,
            Box::new(move |s| s.speed_mps == 0.0 && !s.leveled && normal(s)),
        ),
        rule(
            "elevator.door_open_moving",
            600,
            Box::new(|s| s.door != Door::Closed && s.speed_mps > 0.1 && !s.leveled),
        ),
        rule(
            "elevator.overspeed",
            0,
            Box::new(move |s| f64::from(s.speed_mps) > 1.15 * rated),
        ),
        rule(
            "elevator.overtravel_top",
            0,
            Box::new(move |s| {
                s.limit == Limit::Top
                    || (s.floor == hi && s.direction == Direction::Up && s.speed_mps > 0.0)
            }),
        ),
        // Judged as immediate (stricter than its 8 s).
        rule(
            "elevator.overtravel_bottom",
            0,
            Box::new(move |s| {
                s.limit == Limit::Bottom
                    || (s.floor == lo && s.direction == Direction::Down && s.speed_mps > 0.0)
            }),
        ),
        rule(
            "elevator.safety_circuit_open",
            0,
            Box::new(move |s| !s.safety_circuit && (s.speed_mps > 0.0 || normal(s))),
        ),
        rule(
            "elevator.door_lock_open_moving",
            0,
            Box::new(|s| !s.door_lock && s.speed_mps > 0.0),
        ),
        rule(
            "elevator.door_wont_close",
            180_000,
            Box::new(move |s| s.door == Door::Open && s.leveled && normal(s)),
        ),
        rule(
            "elevator.power_loss",
            5_000,
            Box::new(|s| s.power != Power::Mains),
        ),
        rule(
            "elevator.floor_out_of_range",
            0,
            Box::new(move |s| s.floor < lo || s.floor > hi),
        ),
    ]
}

/// Most door state changes seen within 120 s while the floor stayed the same.
fn max_door_changes(s: &[(EpochMs, &ElevatorSample)]) -> usize {
    let mut worst = 0;
    let mut changes: Vec<EpochMs> = Vec::new();
    for pair in s.windows(2) {
        let ((_, a), (ts, b)) = (pair[0], pair[1]);
        if a.floor != b.floor {
            changes.clear();
        }
        if a.door != b.door {
            changes.push(ts);
            worst = worst.max(changes.iter().filter(|&&c| c > ts - 120_000).count());
        }
    }
    worst
}

/// Every rule an engine could raise on these samples, judging each duration
/// as long as it could possibly have lasted.
fn could_raise(run: &Run, floors: (i16, i16), rated: f64) -> BTreeSet<&'static str> {
    let s = samples(run);
    let mut raised = BTreeSet::new();
    for rule in catalogue(floors, rated) {
        if stretches(&s, &rule.cond)
            .iter()
            .any(|st| st.upper_ms >= rule.for_ms)
        {
            raised.insert(rule.id);
        }
    }
    if max_door_changes(&s) > 11 {
        raised.insert("elevator.door_cycling");
    }
    if run
        .messages
        .iter()
        .any(|m| matches!(&m.payload, Payload::Event(e) if e.active))
    {
        raised.insert("elevator.controller_fault");
    }
    raised
}

/// What every run must look like on the wire, healthy or not.
fn assert_well_formed(run: &Run, label: &str) {
    let s = samples(run);
    assert!(s.len() > 100, "{label}: only {} samples", s.len());
    for pair in run.messages.windows(2) {
        assert!(pair[0].ts <= pair[1].ts, "{label}: time went back");
    }
    let max_gap = s.windows(2).map(|p| p[1].0 - p[0].0).max().unwrap_or(0);
    assert!(
        max_gap <= 30_000,
        "{label}: silent for {max_gap} ms (device.offline is 90 s, reports every 30 s)"
    );
}

fn trips(run: &Run) -> usize {
    samples(run)
        .windows(2)
        .filter(|p| p[0].1.direction == Direction::Stop && p[1].1.direction != Direction::Stop)
        .count()
}

#[test]
fn healthy_elevators_raise_nothing_in_an_hour() {
    for (b, &(floors, rated)) in BUILDINGS.iter().enumerate() {
        for seed in 0..3 {
            let label = format!("building {b} seed {seed}");
            let run = hour(&spec(floors, rated, 1000 * b as u64 + seed, None));
            assert_well_formed(&run, &label);
            let raised = could_raise(&run, floors, rated);
            assert!(
                raised.is_empty(),
                "{label}: a healthy car could raise {raised:?}"
            );
            // And it is not healthy by standing still: it serves calls at its rated speed.
            assert!(trips(&run) >= 15, "{label}: only {} trips", trips(&run));
            let top = samples(&run)
                .iter()
                .map(|(_, s)| f64::from(s.speed_mps))
                .fold(0.0, f64::max);
            assert!((top - rated).abs() < 0.02, "{label}: top speed {top}");
            assert!(
                samples(&run)
                    .iter()
                    .any(|(_, s)| s.occupied && s.run_count.is_some() && s.load_pct.is_some())
            );
            assert!(run.edges.is_empty());
        }
    }
}

#[test]
fn irregular_steps_change_nothing_that_matters() {
    let (floors, rated) = BUILDINGS[2];
    let mut n: u64 = 7;
    let run = simulate(&spec(floors, rated, 42, None), HOUR_MS, || {
        // Steps of 0.1–2.4 s, as a loaded runtime would deliver.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        100 + ((n >> 33) % 2300) as EpochMs
    });
    assert_well_formed(&run, "irregular");
    assert!(could_raise(&run, floors, rated).is_empty());
    assert!(
        run.messages.iter().all(|m| (m.ts - T0) % TICK_MS == 0),
        "samples sit on the model's tick"
    );
}

#[test]
fn every_message_is_valid_protocol_json() {
    let dev = DeviceId::new("EL000001").unwrap_or_else(|e| panic!("{e}"));
    for kind in [
        None,
        Some(FaultKind::Trapped),
        Some(FaultKind::ControllerFault),
    ] {
        let run = simulate(&spec((-2, 18), 1.75, 5, kind), 1_200_000, || TICK_MS);
        for (i, m) in run.messages.iter().enumerate() {
            let seq = i as u64 + 1;
            let bytes = wire::encode(seq, m.ts, &m.payload).unwrap_or_else(|e| panic!("{e}"));
            let reading =
                decode(dev.clone(), m.payload.stream(), &bytes, m.ts).unwrap_or_else(|e| {
                    panic!(
                        "{kind:?} message {seq} rejected: {e}: {}",
                        String::from_utf8_lossy(&bytes)
                    )
                });
            assert_eq!((reading.seq, reading.ts), (seq, m.ts));
            assert_eq!(reading.payload, m.payload);
        }
    }
}

/// One injected fault: its edges, the rules it could raise, and the stretch
/// of its own condition.
fn fault_run(kind: FaultKind, b: usize, seed: u64) -> (Run, String) {
    let (floors, rated) = BUILDINGS[b];
    let label = format!("{kind} building {b} seed {seed}");
    let run = hour(&spec(
        floors,
        rated,
        7000 + 100 * b as u64 + seed,
        Some(kind),
    ));
    assert_well_formed(&run, &label);
    let starts: Vec<_> = run.edges.iter().filter(|e| e.started).collect();
    let ends: Vec<_> = run.edges.iter().filter(|e| !e.started).collect();
    assert_eq!(
        (starts.len(), ends.len()),
        (1, 1),
        "{label}: edges {:?}",
        run.edges
    );
    assert!(starts[0].kind == kind && ends[0].kind == kind);
    assert!(
        starts[0].ts >= T0 + FAULT_AFTER_MS,
        "{label}: started before it was due"
    );
    assert!(
        starts[0].ts <= T0 + FAULT_AFTER_MS + 600_000,
        "{label}: took more than 10 min to start"
    );
    assert!(ends[0].ts > starts[0].ts);
    // Nothing but the intended alarm.
    let raised = could_raise(&run, floors, rated);
    assert_eq!(raised, BTreeSet::from([kind.rule()]), "{label}");
    (run, label)
}

/// The stretch of `cond` that the fault produced; checks that it then
/// stays false long enough for the alarm to clear.
fn only_stretch(run: &Run, label: &str, cond: impl Fn(&ElevatorSample) -> bool) -> Stretch {
    let s = samples(run);
    let mut all = stretches(&s, cond);
    assert_eq!(all.len(), 1, "{label}: {all:?}");
    let st = all.remove(0);
    let end = s.last().map_or(0, |x| x.0);
    assert!(end - st.last >= CLEAR_MS, "{label}: no time to clear");
    st
}

#[test]
fn trapped_passenger_presses_the_alarm_and_is_rescued() {
    for b in 0..BUILDINGS.len() {
        for seed in 0..3 {
            let (run, label) = fault_run(FaultKind::Trapped, b, seed);
            let trapped = |s: &ElevatorSample| {
                s.door == Door::Closed
                    && s.occupied
                    && s.speed_mps == 0.0
                    && s.mode == ElevatorMode::Normal
                    && !s.leveled
            };
            let st = only_stretch(&run, &label, |s| trapped(s) && s.alarm_button);
            assert!(
                st.held_ms >= 60_000,
                "{label}: alarm button held only {} ms",
                st.held_ms
            );
            let stuck = only_stretch(&run, &label, trapped);
            assert!(
                stuck.held_ms >= 80_000 && stuck.upper_ms < 180_000,
                "{label}: {stuck:?}"
            );
            // Rescued: the door opens at a level and the passenger leaves.
            let s = samples(&run);
            assert!(s.iter().any(|(ts, x)| *ts > stuck.last
                && *ts < stuck.last + 30_000
                && x.door == Door::Open
                && x.leveled));
        }
    }
}

#[test]
fn door_opens_while_leaving_the_landing() {
    for b in 0..BUILDINGS.len() {
        for seed in 0..3 {
            let (run, label) = fault_run(FaultKind::DoorOpenMoving, b, seed);
            let st = only_stretch(&run, &label, |s| {
                s.door != Door::Closed && s.speed_mps > 0.1 && !s.leveled
            });
            assert!(st.held_ms >= 600, "{label}: held {} ms", st.held_ms);
        }
    }
}

#[test]
fn overspeed_trip_exceeds_the_governor_point() {
    for (b, &(_, rated)) in BUILDINGS.iter().enumerate() {
        for seed in 0..3 {
            let (run, label) = fault_run(FaultKind::Overspeed, b, seed);
            let st = only_stretch(&run, &label, |s| f64::from(s.speed_mps) > 1.15 * rated);
            assert!(
                st.held_ms >= 1_000,
                "{label}: only {} ms above 115 %",
                st.held_ms
            );
            let top = samples(&run)
                .iter()
                .map(|(_, s)| f64::from(s.speed_mps))
                .fold(0.0, f64::max);
            assert!((top - 1.25 * rated).abs() < 0.02, "{label}: top {top}");
        }
    }
}

#[test]
fn power_loss_runs_on_battery_at_a_floor() {
    for b in 0..BUILDINGS.len() {
        for seed in 0..3 {
            let (run, label) = fault_run(FaultKind::PowerLoss, b, seed);
            let st = only_stretch(&run, &label, |s| s.power != Power::Mains);
            assert!(
                st.held_ms >= 15_000,
                "{label}: on battery {} ms",
                st.held_ms
            );
            let s = samples(&run);
            assert!(
                s.iter()
                    .filter(|(ts, _)| (st.start..=st.last).contains(ts))
                    .all(|(_, x)| x.speed_mps == 0.0 && x.leveled)
            );
        }
    }
}

#[test]
fn controller_reports_and_clears_e30() {
    for seed in 0..3 {
        let (run, label) = fault_run(FaultKind::ControllerFault, 1, seed);
        let events: Vec<_> = run
            .messages
            .iter()
            .filter_map(|m| match &m.payload {
                Payload::Event(e) => Some((m.ts, e.code.as_str(), e.active)),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 2, "{label}: {events:?}");
        assert_eq!(
            (events[0].1, events[0].2, events[1].1, events[1].2),
            ("E30", true, "E30", false)
        );
        assert!((30_000..=60_000).contains(&(events[1].0 - events[0].0)));
    }
}

#[test]
fn same_seed_same_hour() {
    let s = spec((-2, 18), 1.75, 99, Some(FaultKind::Trapped));
    assert_eq!(hour(&s).messages, hour(&s).messages);
}

#[test]
fn a_busy_car_still_does_not_cycle_its_door_too_often() {
    // A call every ~3 s and every other closing interrupted: the car must
    // hold its door back rather than cycle it past the rule's limit.
    let (floors, rated) = BUILDINGS[0];
    let mut car = Elevator::new(&spec(floors, rated, 3, None));
    car.call_mean_ms = 3_000.0;
    car.reopen_chance = 0.5;
    let mut run = Run {
        messages: Vec::new(),
        edges: Vec::new(),
    };
    let mut t = T0;
    while t <= T0 + HOUR_MS {
        run.messages.extend(car.step(t));
        t += TICK_MS;
    }
    assert_well_formed(&run, "busy");
    let s = samples(&run);
    let most = max_door_changes(&s);
    assert!(
        (8..=11).contains(&most),
        "busy car: at most {most} door changes in 120 s at one floor"
    );
    assert!(could_raise(&run, floors, rated).is_empty());
}

/// The rule engine over a whole simulated run; the alarm changes of `rule`.
fn alarms_of(run: &Run, rule: &str) -> Vec<vigil_model::Alarm> {
    use vigil_model::{Binding, DeviceContext, EquipmentId, OwnerId, Reading, Region};
    let ctx = DeviceContext {
        binding: Binding {
            equipment_id: EquipmentId::new("EQ000001").unwrap(),
            category: "elevator".into(),
            owner_id: OwnerId::new("OW1").unwrap(),
            region: Region::new("440703").unwrap(),
        },
        kind: "elevator".into(),
        report_interval_s: 30,
        params: Default::default(),
        engine_slot: Default::default(),
    };
    let mut engine = vigil_rules::RuleEngine::new(vigil_rules::RuleConfig::default());
    let device = DeviceId::new("EL000001").unwrap();
    let mut out = Vec::new();
    for (seq, m) in run.messages.iter().enumerate() {
        let reading = Reading {
            device_id: device.clone(),
            seq: seq as u64 + 1,
            ts: m.ts,
            received_at: m.ts,
            payload: m.payload.clone(),
            extra: None,
        };
        out.extend(engine.on_reading(&reading, &ctx, m.ts));
    }
    out.retain(|a| a.rule.as_str() == rule);
    out
}

#[test]
fn a_wearing_door_motor_is_caught_by_its_anomaly_rule_and_healthy_doors_never_are() {
    const WEAR_AFTER_MS: EpochMs = 4 * HOUR_MS;
    // Three buildings, 16 h each: a day of service after the wear starts.
    for (i, (floors, rated)) in BUILDINGS.into_iter().take(3).enumerate() {
        let seed = 40 + i as u64;
        let healthy = simulate(&spec(floors, rated, seed, None), 16 * HOUR_MS, || TICK_MS);
        for rule in ["anomaly.door_close_s", "anomaly.trip_s_per_floor"] {
            assert_eq!(
                alarms_of(&healthy, rule),
                vec![],
                "a healthy car in building {i} raised {rule}"
            );
        }

        let mut worn = spec(floors, rated, seed, Some(FaultKind::DoorWear));
        worn.fault.as_mut().unwrap().after_ms = WEAR_AFTER_MS;
        let run = simulate(&worn, 16 * HOUR_MS, || TICK_MS);
        assert_eq!(run.edges.len(), 1, "the wear starts once");
        let alarms = alarms_of(&run, "anomaly.door_close_s");
        let first = alarms
            .first()
            .unwrap_or_else(|| panic!("building {i}: wear not caught"));
        let since = first.raised_at - (T0 + WEAR_AFTER_MS);
        // Not before the wear; caught well before it reaches its full +2 s.
        assert!(
            since > 0 && since < 2 * HOUR_MS,
            "building {i}: raised {} min after the wear began",
            since / 60_000
        );
        assert_eq!(first.details["metric"], "door_close_s");
    }
}
