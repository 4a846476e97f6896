//! `vigil bench rules`: rules per core. Readings per second through the
//! whole built-in catalogue and a rule file (docs/rules.md's example,
//! `rules/examples/site-rules.toml`) for a fleet of many devices, one
//! engine on one thread, ticked every simulated second as the engine does;
//! and the bytes of rule state the engine keeps per device.
//!
//! The fleet: of every 20 devices, 16 are elevators (one car each), one
//! an elevator whose controller also reports fault codes, one a large
//! amusement ride, one a camera in the first elevator's car and one a
//! filling scale of its own station.
//! Each device sends one reading per round (one simulated second); the
//! samples follow a trip cycle with faults now and then (a door opening
//! while moving, a power cut, a trapped car, an overfilled cylinder), so
//! periods run, alarms are raised, repeated and cleared. Everything is
//! deterministic: the alarm summary printed at the end must be the same
//! for two builds that evaluate the rules the same way.
//!
//! Throughput is the engine's share of each round (the round's readings
//! are made before the clock starts), per second of CPU time (the machine
//! is shared, so wall time mostly measures the neighbours; the thread's
//! own CPU clock) and of wall time. The baseline, timed on the same readings in the same rounds, is
//! the least any per-device stream processor does with a reading: find
//! the device's state in a `HashMap` by its id and update it. Rule state
//! per device is measured over the warm-up rounds, from an empty engine
//! to one that has seen every device, divided by the number of devices:
//! the growth of the process's resident memory (Linux `/proc/self/statm`).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use serde_json::json;
use vigil_model::reading::{
    Brake, ControllerEvent, Direction, Door, ElevatorSample, FillResult, FillingRecord, Power,
    RideSample, RideState, VideoEvent, VideoKind,
};
use vigil_model::{
    Alarm, AlarmId, Binding, DeviceContext, DeviceId, EpochMs, EquipmentId, OwnerId, Payload,
    Reading, Region,
};
use vigil_rules::{
    CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts, RuleConfig, RuleEngine,
};

const T0: EpochMs = 1_732_300_000_000;
const DAY_MS: EpochMs = 86_400_000;

/// docs/rules.md's example rule file: three defined rules (elevator,
/// ride, video) and an override for one equipment (`EQ440703000012`, an
/// elevator of the fleet) and one category.
const RULE_FILE: &str = include_str!("../../rules/examples/site-rules.toml");

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Elevator,
    Controller,
    Ride,
    Camera,
    Scale,
}

struct Device {
    id: DeviceId,
    ctx: DeviceContext,
    kind: Kind,
    seq: u64,
}

fn kind_of(i: usize) -> Kind {
    match i % 20 {
        15 => Kind::Controller,
        16 => Kind::Ride,
        17 => Kind::Camera,
        18 => Kind::Scale,
        _ => Kind::Elevator,
    }
}

fn fleet(n: usize) -> Vec<Device> {
    let mut fleet: Vec<Device> = Vec::with_capacity(n);
    for i in 0..n {
        let kind = kind_of(i);
        // A camera watches the car of the first elevator of its group: it
        // is bound to that equipment, so (as the registry hands out) its
        // context carries the same binding and the same params `Arc`.
        let (binding, params) = if kind == Kind::Camera {
            let car = &fleet[i - 17].ctx;
            (car.binding.clone(), Arc::clone(&car.params))
        } else {
            let (category, params) = match kind {
                Kind::Ride => (
                    "amusement_ride",
                    json!({"rated_speed_mps": 12.0, "operating_hours": "09:00-21:00"}),
                ),
                Kind::Scale => ("filling_station", json!({"working_hours": "07:00-19:00"})),
                _ => (
                    "elevator",
                    json!({"rated_speed_mps": 1.75, "floors": [-1, 20]}),
                ),
            };
            let binding = Binding {
                equipment_id: EquipmentId::new(format!("EQ440703{i:06}")).unwrap(),
                category: category.into(),
                owner_id: OwnerId::new(format!("O{}", i % 97)).unwrap(),
                region: Region::new("440703").unwrap(),
            };
            (binding, Arc::new(params.as_object().unwrap().clone()))
        };
        fleet.push(Device {
            id: DeviceId::new(format!("DEV440703{i:06}")).unwrap(),
            ctx: DeviceContext {
                binding,
                kind: "elevator".into(),
                report_interval_s: 30,
                params,
                engine_slot: Default::default(),
            },
            kind,
            seq: 0,
        });
    }
    fleet
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Device `i`'s elevator sample in round `r`: a 12-round trip cycle, with
/// a fault in some cycles of some cars.
fn elevator(i: usize, r: u64, rng: &mut Rng) -> ElevatorSample {
    let phase = (r + i as u64) % 12;
    let floor = ((r / 12 + i as u64) % 20) as i16;
    let mut s = ElevatorSample {
        floor,
        occupied: phase < 8,
        run_count: Some(r),
        load_pct: Some(40.0 + (rng.below(80)) as f32),
        ..ElevatorSample::idle()
    };
    match phase {
        0..=4 => {
            s.direction = Direction::Up;
            s.speed_mps = 1.5;
            s.leveled = false;
        }
        5 => s.door = Door::Opening,
        6 | 7 => s.door = Door::Open,
        8 => s.door = Door::Closing,
        _ => {}
    }
    // Now and then a fault, so periods run and alarms come and go.
    match rng.below(400) {
        0 => s.power = Power::Battery,
        1 if phase < 5 => s.door = Door::Open,
        2 => s.safety_circuit = false,
        3 if phase < 5 => s.speed_mps = 2.5,
        4 => s.floor = 30,
        _ => {}
    }
    // One car in 50 gets stuck with people inside for a while.
    if i % 50 == 3 && (r / 40) % 3 == 1 {
        s.direction = Direction::Stop;
        s.speed_mps = 0.0;
        s.door = Door::Closed;
        s.occupied = true;
        s.leveled = true;
        s.alarm_button = r % 40 > 20;
    }
    s
}

fn ride(i: usize, r: u64, rng: &mut Rng) -> RideSample {
    let running = (r + i as u64) % 10 < 7;
    RideSample {
        state: if running {
            RideState::Running
        } else {
            RideState::Loading
        },
        speed_mps: if running { 8.0 } else { 0.0 },
        wind_mps: Some(4.0 + rng.below(90) as f32 / 10.0),
        restraints_locked: running || rng.below(3) > 0,
        vibration_mm_s: Some(2.0 + rng.below(20) as f32 / 10.0),
        brake: if rng.below(500) == 0 {
            Brake::Fault
        } else {
            Brake::Ok
        },
        passengers: Some(if r.is_multiple_of(10) { 0 } else { 12 }),
    }
}

fn video(rng: &mut Rng) -> VideoEvent {
    let kinds = [
        VideoKind::ElectricBike,
        VideoKind::PersonFall,
        VideoKind::DangerZoneIntrusion,
        VideoKind::Crowding,
        VideoKind::SmokeFire,
        VideoKind::CameraOccluded,
    ];
    VideoEvent {
        camera_id: format!("cam{}", rng.below(2)),
        event: kinds[rng.below(kinds.len() as u64) as usize],
        confidence: 0.5 + rng.below(50) as f32 / 100.0,
        snapshot: None,
    }
}

fn filling(station: &str, ts: EpochMs, rng: &mut Rng) -> (FillingRecord, FillingFacts) {
    let cylinder = rng.below(1000);
    let record = FillingRecord {
        cylinder_code: format!("CYL{cylinder}"),
        operator_id: format!("P{}", rng.below(5)),
        medium: "LPG".into(),
        tare_kg: 14.0,
        net_kg: 14.0 + rng.below(12) as f32 / 10.0,
        pressure_mpa: Some(1.2),
        temp_c: Some(20.0),
        started_ms: ts - 180_000,
        result: FillResult::Ok,
    };
    let facts = FillingFacts {
        cylinder: (!cylinder.is_multiple_of(100)).then(|| CylinderFacts {
            station_id: station.to_owned(),
            model: "YSP35.5".into(),
            max_fill_kg: None,
            working_pressure_mpa: 2.1,
            next_inspection: T0 + 400 * DAY_MS,
            next_inspection_date: "2026-01-01".into(),
            scrapped: false,
            end_of_life: T0 + 4000 * DAY_MS,
            end_of_life_date: "2035-01-01".into(),
        }),
        operator: Some(OperatorFacts {
            certificates: vec![CertificateFacts {
                kind: "filling".into(),
                number: "C1".into(),
                expires: T0 + 100 * DAY_MS,
                expires_date: "2025-03-01".into(),
            }],
        }),
    };
    (record, facts)
}

/// Device `i`'s reading in round `r` (at device time `ts`), with the
/// registry's facts when it is a filling record.
fn reading(dev: &mut Device, i: usize, r: u64, rng: &mut Rng) -> (Reading, Option<FillingFacts>) {
    let ts = T0 + r as i64 * 1000;
    dev.seq += 1;
    let mut facts = None;
    let payload = match dev.kind {
        Kind::Elevator => Payload::Elevator(elevator(i, r, rng)),
        Kind::Controller if r.is_multiple_of(25) || r % 25 == 7 => {
            Payload::Event(ControllerEvent {
                code: format!("{:02}", 1 + (r / 25) % 10),
                text: None,
                active: r.is_multiple_of(25),
            })
        }
        Kind::Controller => Payload::Elevator(elevator(i, r, rng)),
        Kind::Ride => Payload::Ride(ride(i, r, rng)),
        Kind::Camera => Payload::Video(video(rng)),
        Kind::Scale => {
            let (record, f) = filling(dev.ctx.binding.equipment_id.as_str(), ts, rng);
            facts = Some(f);
            Payload::Filling(record)
        }
    };
    let reading = Reading {
        device_id: dev.id.clone(),
        seq: dev.seq,
        ts,
        received_at: ts,
        payload,
        extra: None,
    };
    (reading, facts)
}

/// Hands one reading to the engine with the device's context, as the
/// engine binary does: one context per device, kept from reading to
/// reading (the registry's cache), so the engine finds the device by the
/// place it noted there.
fn evaluate(
    engine: &mut RuleEngine,
    dev: &Device,
    (reading, facts): &(Reading, Option<FillingFacts>),
) -> Vec<Alarm> {
    match facts {
        Some(f) => engine.on_filling(reading, &dev.ctx, f, reading.ts),
        None => engine.on_reading(reading, &dev.ctx, reading.ts),
    }
}

/// One round made and evaluated device by device (the warm-up: no batch
/// of readings in memory while rule state is measured). Returns the
/// alarm changes.
fn round(engine: &mut RuleEngine, fleet: &mut [Device], r: u64, rng: &mut Rng) -> Vec<Alarm> {
    let mut changes = Vec::new();
    for (i, dev) in fleet.iter_mut().enumerate() {
        let msg = reading(dev, i, r, rng);
        changes.extend(evaluate(engine, dev, &msg));
    }
    changes.extend(engine.tick(T0 + r as i64 * 1000 + 500));
    changes
}

/// CPU and wall time of the engine's part of the rounds, and of the
/// baseline's on the same readings.
#[derive(Default)]
struct Spent {
    cpu_s: f64,
    wall_s: f64,
    baseline_cpu_s: f64,
}

/// The baseline's state: per device, the time and seq of its last reading.
type Latest = HashMap<DeviceId, (EpochMs, u64)>;

/// One round: the readings are made first (not measured), then handed to
/// the baseline, then evaluated by the engine and the engine ticked.
fn timed_round(
    engine: &mut RuleEngine,
    latest: &mut Latest,
    fleet: &mut [Device],
    r: u64,
    rng: &mut Rng,
    spent: &mut Spent,
) -> Vec<Alarm> {
    let batch: Vec<_> = (fleet.iter_mut().enumerate())
        .map(|(i, dev)| reading(dev, i, r, rng))
        .collect();
    let cpu_start = cpu_seconds();
    for (reading, _) in &batch {
        if let Some(state) = latest.get_mut(&reading.device_id) {
            *state = black_box((reading.ts, reading.seq));
        }
    }
    spent.baseline_cpu_s += cpu_seconds() - cpu_start;
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let mut changes = Vec::new();
    for (dev, msg) in fleet.iter_mut().zip(&batch) {
        changes.extend(black_box(evaluate(engine, dev, msg)));
    }
    changes.extend(black_box(engine.tick(T0 + r as i64 * 1000 + 500)));
    spent.cpu_s += cpu_seconds() - cpu_start;
    spent.wall_s += start.elapsed().as_secs_f64();
    changes
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`, in ns): on
/// a shared machine wall time mostly measures the neighbours.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// An order-independent summary of alarm changes: the count, and the sum
/// of a hash of each change's rule, equipment, state, times, count and
/// version.
#[derive(Default)]
struct Summary {
    count: u64,
    hash: u64,
}

impl Summary {
    fn add(&mut self, changes: &[Alarm]) {
        for a in changes {
            let line = format!(
                "{} {} {} {} {:?} {} {} {}",
                a.rule,
                a.equipment_id,
                a.state.as_str(),
                a.raised_at,
                a.cleared_at,
                a.updated_at,
                a.count,
                a.version
            );
            // FNV-1a: stable across builds, unlike the std hasher's seed.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in line.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            self.count += 1;
            self.hash = self.hash.wrapping_add(h);
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RulesArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    pub devices: usize,
    /// Timed rounds (one reading per device each), after 3 warm-up rounds.
    #[arg(long, default_value_t = 30)]
    pub rounds: u64,
    /// Small and short: 2 000 devices, 5 rounds (a smoke run that every
    /// figure is produced).
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub(super) fn run(args: RulesArgs) -> anyhow::Result<()> {
    let (devices, rounds) = if args.quick {
        (2_000, 5)
    } else {
        (args.devices, args.rounds)
    };
    anyhow::ensure!(devices > 0 && rounds > 0, "need devices and rounds");
    let warmup = 3;

    let config = RuleConfig::load(&toml::Table::new(), Some(("site-rules.toml", RULE_FILE)))?;
    let mut fleet = fleet(devices);
    let mut n = 0u64;
    let ids = Box::new(move || {
        n += 1;
        AlarmId::new(format!("A{n}")).expect("a well-formed alarm id")
    });
    let mut summary = Summary::default();
    let rss_before = resident_bytes();
    let mut engine = RuleEngine::with_id_source(config, ids);
    let mut rng = Rng(42);
    for r in 0..warmup {
        summary.add(&round(&mut engine, &mut fleet, r, &mut rng));
    }
    let rss = resident_bytes().saturating_sub(rss_before);
    let mut latest: Latest = fleet.iter().map(|d| (d.id.clone(), (0, 0))).collect();

    let mut spent = Spent::default();
    for r in warmup..warmup + rounds {
        summary.add(&timed_round(
            &mut engine,
            &mut latest,
            &mut fleet,
            r,
            &mut rng,
            &mut spent,
        ));
    }
    let readings = devices as f64 * rounds as f64;
    let per_device = |bytes: u64| bytes / devices.max(1) as u64;
    let baseline_cpu_s = spent.baseline_cpu_s.max(1e-9);
    let figures = json!({
        "machine": super::machine(),
        "quick": args.quick,
        "devices": devices,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "readings_per_cpu_s": (readings / spent.cpu_s).round() as u64,
        "readings_per_wall_s": (readings / spent.wall_s).round() as u64,
        "cpu_ns_per_reading": (spent.cpu_s * 1e9 / readings).round() as u64,
        "baseline_readings_per_cpu_s": (readings / baseline_cpu_s).round() as u64,
        "engine_over_baseline_time_ratio": spent.cpu_s / baseline_cpu_s,
        "rss_bytes_per_device": per_device(rss),
        "alarm_changes": summary.count,
        "summary": format!("{:016x}", summary.hash),
        "open_alarms": engine.open_alarms().count(),
    });
    println!("devices                   {devices}");
    println!("rounds                    {rounds} (+{warmup} warm-up)");
    println!(
        "readings/s (CPU time)     {}",
        figures["readings_per_cpu_s"]
    );
    println!(
        "readings/s (wall time)    {}",
        figures["readings_per_wall_s"]
    );
    println!(
        "CPU ns/reading            {}",
        figures["cpu_ns_per_reading"]
    );
    println!(
        "baseline readings/s (CPU) {} (engine takes {:.1}x its time)",
        figures["baseline_readings_per_cpu_s"],
        spent.cpu_s / baseline_cpu_s
    );
    println!("rule state bytes/device   {}", per_device(rss));
    println!(
        "alarm changes             {} (summary {:016x})",
        summary.count, summary.hash
    );
    println!("open alarms               {}", figures["open_alarms"]);
    super::write_json(args.json.as_deref(), &figures)
}
