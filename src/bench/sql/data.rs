//! The data set of `vigil bench sql`: a seeded elevator fleet over a month,
//! written into the embedded store's own Parquet files as its flushes
//! would have written them.
//!
//! ```text
//!  Fleet (simulator, seeded) ──▶ one Car per elevator ──▶ generator thread:
//!     per flush interval of data time, every car's readings and alarm
//!     changes ──chunk (bounded channel, 4)──▶ 2 writer threads ──▶ Importer::write
//!     (the store's Arrow conversion, sort, Parquet writer and file naming)
//! ```
//!
//! A car does what the protocol says a device reports (docs/protocol.md):
//! a sample on every change and at 1 Hz while moving, at least every 30 s
//! when idle. Calls come at a rate that follows the hour of the day (China
//! time), each a trip: to the caller's floor, doors, to the destination,
//! doors. Now and then something goes wrong, more often on fault-prone cars:
//! a car stops between floors with people inside, a door stays open, the
//! supply is cut, the safety circuit opens, the device goes silent. Each of
//! those makes the alarm changes the rule engine would (rule ids and
//! timings of docs/rules.md), acknowledged by a supervisor when severe, and
//! cleared. Every 15 days a maintainer visits (maintenance mode). Files
//! are cut every `flush_interval` of data time, as the running store does
//! for a fleet this size (its row limit is never reached).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region,
    RuleId, Severity,
};
use vigil_simulator::{Fleet, FleetConfig};
use vigil_storage::embedded::{Imported, Importer};
use vigil_storage::{Record, StoredReading};

/// 2026-11-01T00:00:00Z: the data set starts here, whatever the day of the run.
pub(super) const START_MS: i64 = 1_793_491_200_000;
const DAY_MS: i64 = 86_400_000;
const HEARTBEAT_MS: i64 = 30_000;
/// A floor is this high (m).
const FLOOR_M: f64 = 3.0;
/// Acceleration of a car (m/s²).
const ACCEL: f64 = 0.9;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spec {
    pub seed: u64,
    pub elevators: usize,
    pub days: u32,
    /// Mean calls per elevator and day; each car's own rate is spread around it.
    pub trips_per_day: f64,
    /// Data time per Parquet file (the store's `flush_interval_s`).
    pub flush_interval_ms: i64,
}

/// The time the data set covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Spec {
    pub(super) fn period(&self) -> Period {
        Period {
            start_ms: START_MS,
            end_ms: START_MS + i64::from(self.days) * DAY_MS,
        }
    }

    /// The registry side: equipment, devices, owners, maintainers.
    pub(super) fn fleet(&self) -> Fleet {
        Fleet::generate(&FleetConfig {
            devices: self.elevators,
            seed: self.seed,
            fault_fraction: 0.0,
            // Guangdong: a few cities, each with its counties.
            region: "440000".into(),
            ..FleetConfig::default()
        })
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Generated {
    pub readings: u64,
    pub alarm_changes: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes the data set into the (closed) store at `dir`.
pub(super) fn generate(dir: &Path, spec: &Spec, fleet: &Fleet) -> anyhow::Result<Generated> {
    let started = Instant::now();
    let period = spec.period();
    let mut cars = cars(spec, fleet)?;
    let importer = Importer::open(dir).context("opening the store for the import")?;
    // Bounded: the generator runs ahead of the writers by at most 4 files' rows.
    let (tx, rx) = mpsc::sync_channel::<Vec<Record>>(4);
    let rx = std::sync::Mutex::new(rx);
    let mut totals = Generated::default();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let writers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<Imported> {
                    let mut sum = Imported::default();
                    loop {
                        let chunk = match rx.lock().map(|r| r.recv()) {
                            Ok(Ok(chunk)) => chunk,
                            _ => return Ok(sum),
                        };
                        let done = importer.write(chunk)?;
                        sum.rows += done.rows;
                        sum.files += done.files;
                        sum.bytes += done.bytes;
                    }
                })
            })
            .collect();
        let mut t = period.start_ms;
        while t < period.end_ms {
            let end = (t + spec.flush_interval_ms).min(period.end_ms);
            let mut chunk = Vec::new();
            for car in &mut cars {
                car.advance(end, &mut chunk);
            }
            totals.readings += chunk
                .iter()
                .filter(|r| matches!(r, Record::Reading(_)))
                .count() as u64;
            totals.alarm_changes += chunk
                .iter()
                .filter(|r| matches!(r, Record::Alarm(_)))
                .count() as u64;
            if !chunk.is_empty() && tx.send(chunk).is_err() {
                break;
            }
            t = end;
        }
        drop(tx);
        for w in writers {
            let done = w
                .join()
                .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
            totals.files += done.files as u64;
            totals.bytes += done.bytes;
        }
        Ok(())
    })?;
    importer.finish()?;
    totals.seconds = started.elapsed().as_secs_f64();
    Ok(totals)
}

/// One car per elevator of the fleet, each with its own seeded randomness.
fn cars(spec: &Spec, fleet: &Fleet) -> anyhow::Result<Vec<Car>> {
    let doc = fleet.import_doc();
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed_da7a);
    let equipment: std::collections::HashMap<&str, &Value> = doc["equipment"]
        .as_array()
        .context("fleet without equipment")?
        .iter()
        .filter_map(|e| Some((e["equipment_id"].as_str()?, e)))
        .collect();
    let mut cars = Vec::new();
    for device in doc["devices"].as_array().context("fleet without devices")? {
        let (Some(device_id), Some(eq)) = (
            device["device_id"].as_str(),
            device["equipment_id"]
                .as_str()
                .and_then(|id| equipment.get(id)),
        ) else {
            continue;
        };
        if eq["category"] != "elevator" {
            continue;
        }
        let floors = &eq["params"]["floors"];
        let lo = floors[0].as_i64().unwrap_or(1) as i16;
        let hi = floors[1].as_i64().unwrap_or(10) as i16;
        let binding = Binding {
            equipment_id: EquipmentId::new(eq["equipment_id"].as_str().unwrap_or_default())?,
            category: "elevator".into(),
            owner_id: OwnerId::new(eq["owner_id"].as_str().unwrap_or_default())?,
            region: Region::new(eq["region"].as_str().unwrap_or_default())?,
        };
        // Lognormal spreads: a few busy cars and a few fault-prone ones.
        let busy = (normal(&mut rng) * 0.6 - 0.18).exp();
        let prone = (normal(&mut rng) * 1.0 - 0.5).exp();
        cars.push(Car::new(
            DeviceId::new(device_id)?,
            binding,
            (lo, hi),
            eq["params"]["rated_speed_mps"].as_f64().unwrap_or(1.5),
            spec.trips_per_day * busy,
            prone,
            rng.r#gen(),
            spec.period(),
        ));
    }
    anyhow::ensure!(!cars.is_empty(), "the fleet has no elevators");
    Ok(cars)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let (u, v): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.r#gen());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Calls per hour of the day (China time), relative to the daily mean.
const HOURLY: [f64; 24] = [
    0.15, 0.08, 0.05, 0.05, 0.08, 0.3, 0.9, 1.9, 2.3, 1.5, 1.1, 1.2, 1.7, 1.3, 1.0, 1.0, 1.2, 1.9,
    2.1, 1.6, 1.3, 1.0, 0.6, 0.3,
];

/// Per elevator and day, for a car of mean proneness.
const OFFLINE_PER_DAY: f64 = 0.03;
const POWER_LOSS_PER_DAY: f64 = 0.02;
const SAFETY_OPEN_PER_DAY: f64 = 0.01;
const TRAPPED_PER_DAY: f64 = 0.01;
const DOOR_STUCK_PER_DAY: f64 = 0.03;
/// A car whose monitoring box dies for days (a SIM card, a cut cable).
const DEAD_BOX_SHARE: f64 = 0.04;

struct Car {
    device: DeviceId,
    binding: Binding,
    lo: i16,
    hi: i16,
    /// The floor most trips start or end at.
    lobby: i16,
    rated: f64,
    /// This car's usual closing time (ms).
    door_close_ms: f64,
    trips_per_day: f64,
    prone: f64,
    rng: StdRng,
    seq: u64,
    runs: u64,
    state: ElevatorSample,
    /// Readings planned, in time order.
    planned: VecDeque<(i64, ElevatorSample)>,
    /// Alarm changes planned (an episode's; popped in `updated_at` order).
    alarms: Vec<Alarm>,
    /// Planned up to here.
    cursor: i64,
    /// Time of the last planned reading.
    last_ts: i64,
    next_maintenance: i64,
    /// A dead monitoring box: silent from .0 to .1.
    dead: Option<(i64, i64)>,
}

impl Car {
    #[allow(clippy::too_many_arguments)]
    fn new(
        device: DeviceId,
        binding: Binding,
        (lo, hi): (i16, i16),
        rated: f64,
        trips_per_day: f64,
        prone: f64,
        seed: u64,
        period: Period,
    ) -> Car {
        let mut rng = StdRng::seed_from_u64(seed);
        let lobby = if lo <= 1 && hi >= 1 { 1 } else { lo };
        let door_close_ms = rng.gen_range(2_600.0..4_800.0);
        let next_maintenance = period.start_ms + rng.gen_range(0..15 * DAY_MS);
        let span = period.end_ms - period.start_ms;
        let dead = rng.gen_bool(DEAD_BOX_SHARE).then(|| {
            let from = period.start_ms + rng.gen_range(0..span);
            (from, from + rng.gen_range(DAY_MS..8 * DAY_MS))
        });
        let start = period.start_ms + rng.gen_range(0..HEARTBEAT_MS);
        let floor = rng.gen_range(lo..=hi);
        Car {
            device,
            binding,
            lo,
            hi,
            lobby,
            rated,
            door_close_ms,
            trips_per_day,
            prone,
            rng,
            seq: rng_seq_start(seed),
            runs: 20_000 + seed % 400_000,
            state: ElevatorSample {
                floor,
                direction: Direction::Stop,
                speed_mps: 0.0,
                door: Door::Closed,
                leveled: true,
                occupied: false,
                mode: ElevatorMode::Normal,
                safety_circuit: true,
                door_lock: true,
                alarm_button: false,
                power: Power::Mains,
                limit: Limit::None,
                run_count: None,
                load_pct: Some(0.0),
            },
            planned: VecDeque::new(),
            alarms: Vec::new(),
            cursor: start,
            last_ts: start - HEARTBEAT_MS,
            next_maintenance,
            dead,
        }
    }

    /// Moves every reading and alarm change before `end` into `out`.
    fn advance(&mut self, end: i64, out: &mut Vec<Record>) {
        loop {
            while self.planned.front().is_some_and(|(ts, _)| *ts < end) {
                let (ts, sample) = self.planned.pop_front().expect("checked");
                out.push(self.reading(ts, sample));
            }
            if !self.planned.is_empty() || self.cursor >= end {
                break;
            }
            self.plan_next();
        }
        self.alarms.sort_by_key(|a| a.updated_at);
        let due = self.alarms.partition_point(|a| a.updated_at < end);
        out.extend(self.alarms.drain(..due).map(Record::Alarm));
    }

    fn reading(&mut self, ts: i64, sample: ElevatorSample) -> Record {
        self.seq += 1;
        Record::Reading(StoredReading {
            reading: Reading {
                device_id: self.device.clone(),
                seq: self.seq,
                ts,
                received_at: ts + self.rng.gen_range(30..400),
                payload: Payload::Elevator(sample),
                extra: None,
            },
            binding: self.binding.clone(),
        })
    }

    /// Plans a sample of the current state (with the runs so far) at `ts`.
    fn emit(&mut self, ts: i64) {
        let mut sample = self.state.clone();
        sample.run_count = Some(self.runs);
        self.planned.push_back((ts, sample));
        self.last_ts = ts;
    }

    /// Heartbeats until `until`, then the plan stands there.
    fn idle_until(&mut self, until: i64) {
        while self.last_ts + HEARTBEAT_MS < until {
            let ts = (self.last_ts + HEARTBEAT_MS + self.rng.gen_range(0..400)).min(until - 1);
            self.emit(ts);
        }
        self.cursor = until;
    }

    /// Plans what the car does next from `cursor`: idles to the next call
    /// (or the next hour, where the call rate changes), then serves it.
    fn plan_next(&mut self) {
        let t = self.cursor;
        if let Some((from, to)) = self.dead
            && t >= from
        {
            self.dead = None;
            if to > t {
                self.offline(to);
                return;
            }
        }
        if t >= self.next_maintenance {
            self.next_maintenance += 15 * DAY_MS + self.rng.gen_range(-DAY_MS..DAY_MS);
            self.maintenance(t);
            return;
        }
        let hour = ((t / 3_600_000 + 8) % 24) as usize;
        let per_ms = self.trips_per_day * HOURLY[hour] / hourly_mean() / DAY_MS as f64;
        let wait = (-self.rng.gen_range(f64::EPSILON..1.0f64).ln() / per_ms) as i64;
        let hour_end = (t / 3_600_000 + 1) * 3_600_000;
        if t + wait >= hour_end {
            self.idle_until(hour_end);
            return;
        }
        let at = t + wait.max(1);
        self.idle_until(at);
        // Something other than a call, at the rates per day above.
        let per_call = self.prone / (self.trips_per_day * HOURLY[hour] / hourly_mean()).max(1.0);
        let roll: f64 = self.rng.r#gen();
        let mut edge = 0.0;
        let mut hit = |rate: f64| {
            edge += rate * per_call;
            roll < edge
        };
        if hit(OFFLINE_PER_DAY) {
            let silent = self
                .exp_ms(2.0 * 3_600_000.0)
                .clamp(10 * 60_000, 48 * 3_600_000);
            self.offline(at + silent);
        } else if hit(POWER_LOSS_PER_DAY) {
            self.power_loss(at);
        } else if hit(SAFETY_OPEN_PER_DAY) {
            self.safety_open(at);
        } else {
            let trapped = hit(TRAPPED_PER_DAY);
            let stuck = hit(DOOR_STUCK_PER_DAY);
            self.trip(at, trapped, stuck);
        }
    }

    fn exp_ms(&mut self, mean_ms: f64) -> i64 {
        (-self.rng.gen_range(f64::EPSILON..1.0f64).ln() * mean_ms) as i64
    }

    /// A passenger's call: to the caller's floor, board, to the destination, alight.
    fn trip(&mut self, at: i64, trapped: bool, stuck: bool) {
        let (lo, hi, lobby) = (self.lo, self.hi, self.lobby);
        let call = if self.rng.gen_bool(0.45) {
            lobby
        } else {
            self.rng.gen_range(lo..=hi)
        };
        let mut dest = if call == lobby {
            self.rng.gen_range(lo..=hi)
        } else if self.rng.gen_bool(0.7) {
            lobby
        } else {
            self.rng.gen_range(lo..=hi)
        };
        if dest == call {
            dest = if call < hi { call + 1 } else { call - 1 };
        }
        let mut t = self.drive(at, call, None);
        t = self.doors(t, true, false);
        if trapped {
            let share = self.rng.gen_range(0.3..0.7);
            let stop = self.drive(t, dest, Some(share));
            self.trapped(stop);
            return;
        }
        t = self.drive(t, dest, None);
        t = self.doors(t, false, stuck);
        self.cursor = t;
    }

    /// A run from the current floor to `dest`, one sample a second; with
    /// `stop_at`, the car stops for good after that share of the run.
    fn drive(&mut self, t: i64, dest: i16, stop_at: Option<f64>) -> i64 {
        let from = self.state.floor;
        if dest == from {
            return t;
        }
        let up = dest > from;
        let distance = f64::from((dest - from).abs()) * FLOOR_M;
        let v = self.rated;
        let (peak, total_s) = if distance < v * v / ACCEL {
            let peak = (distance * ACCEL).sqrt();
            (peak, 2.0 * peak / ACCEL)
        } else {
            (v, distance / v + v / ACCEL)
        };
        let start = t + self.rng.gen_range(400..900);
        self.state.direction = if up { Direction::Up } else { Direction::Down };
        self.state.leveled = false;
        let steps = total_s.ceil() as i64;
        for k in 0..steps {
            let s = k as f64;
            if stop_at.is_some_and(|share| s >= share * total_s) {
                let ts = start + k * 1000;
                self.state.speed_mps = 0.0;
                self.state.direction = Direction::Stop;
                self.emit(ts);
                return ts;
            }
            let (pos, speed) = profile(s, total_s, peak, distance);
            let moved = (pos / FLOOR_M).floor() as i16;
            self.state.floor = if up { from + moved } else { from - moved };
            self.state.speed_mps = speed as f32;
            self.emit(start + k * 1000);
        }
        let arrive = start + (total_s * 1000.0) as i64;
        self.state.floor = dest;
        self.state.speed_mps = 0.0;
        self.state.direction = Direction::Stop;
        self.state.leveled = true;
        self.runs += 1;
        self.emit(arrive);
        arrive
    }

    /// Opening, open, closing, closed (reopening now and then); `boarding`
    /// fills the car, else empties it; `stuck` keeps the door open minutes.
    fn doors(&mut self, t: i64, boarding: bool, stuck: bool) -> i64 {
        self.state.door = Door::Opening;
        let mut t = t + self.rng.gen_range(200..600);
        self.emit(t);
        t += self.rng.gen_range(1_800..2_600);
        self.state.door = Door::Open;
        self.state.occupied = boarding;
        self.state.load_pct = Some(if boarding {
            self.rng.gen_range(8.0..70.0)
        } else {
            0.0
        });
        self.emit(t);
        let opened = t;
        if stuck {
            let held = self.rng.gen_range(4 * 60_000..30 * 60_000);
            self.idle_until(t + held);
            t += held;
        } else {
            t += self.rng.gen_range(2_500..9_000);
        }
        for attempt in 0..4 {
            self.state.door = Door::Closing;
            self.emit(t);
            let took = (self.door_close_ms * (normal(&mut self.rng) * 0.12).exp()) as i64;
            if attempt < 3 && self.rng.gen_bool(0.04) {
                // Something in the doorway: the door opens again.
                t += took / 2;
                self.state.door = Door::Opening;
                self.emit(t);
                t += 1_500;
                self.state.door = Door::Open;
                self.emit(t);
                t += 2_000;
                continue;
            }
            t += took;
            break;
        }
        self.state.door = Door::Closed;
        self.emit(t);
        if stuck && t - opened > 180_000 {
            let details = json!({"floor": self.state.floor, "door": "open"});
            self.alarm(
                "elevator.door_wont_close",
                Severity::Minor,
                opened + 180_000,
                t + 10_000,
                details,
            );
        }
        t
    }

    /// Stopped between floors with people inside until a maintainer
    /// comes, moves the car to a floor in inspection mode and lets them out.
    fn trapped(&mut self, stop: i64) {
        let floor = self.state.floor;
        let rescue = stop + self.rng.gen_range(8 * 60_000..70 * 60_000);
        let mut raise = stop + 180_000;
        if self.rng.gen_bool(0.7) {
            let press = stop + self.rng.gen_range(20_000..180_000);
            self.idle_until(press);
            self.state.alarm_button = true;
            self.emit(press);
            raise = raise.min(press + 60_000);
        }
        self.idle_until(rescue);
        self.state.mode = ElevatorMode::Inspection;
        self.state.alarm_button = false;
        self.emit(rescue);
        self.alarm(
            "elevator.trapped",
            Severity::Critical,
            raise,
            rescue + 10_000,
            json!({"floor": floor, "occupied": true}),
        );
        // Inching to the nearest floor.
        let mut t = rescue + 60_000;
        self.state.direction = Direction::Up;
        for _ in 0..4 {
            self.state.speed_mps = 0.3;
            self.emit(t);
            t += 1_000;
        }
        self.state.speed_mps = 0.0;
        self.state.direction = Direction::Stop;
        self.state.leveled = true;
        self.emit(t);
        let t = self.doors(t, false, false);
        self.state.mode = ElevatorMode::Normal;
        let back = t + self.rng.gen_range(5 * 60_000..20 * 60_000);
        self.idle_until(back);
        self.emit(back);
        self.cursor = back;
    }

    /// The device is silent from now to `to`, then reports again.
    fn offline(&mut self, to: i64) {
        let last = self.last_ts;
        let raise = last + 3 * HEARTBEAT_MS;
        self.cursor = to;
        self.last_ts = to - HEARTBEAT_MS;
        self.emit(to);
        if raise < to {
            let details = json!({
                "devices": [self.device.as_str()], "silent_s": (to - last) / 1000,
                "last_ts": last, "report_interval_s": 30
            });
            self.alarm("device.offline", Severity::Minor, raise, to, details);
        }
    }

    fn power_loss(&mut self, at: i64) {
        let lasts = self.exp_ms(15.0 * 60_000.0).max(60_000);
        self.state.power = Power::Battery;
        self.emit(at);
        self.idle_until(at + lasts);
        self.state.power = Power::Mains;
        self.emit(at + lasts);
        self.cursor = at + lasts;
        let details = json!({"power": "battery"});
        self.alarm(
            "elevator.power_loss",
            Severity::Major,
            at + 5_000,
            at + lasts + 10_000,
            details,
        );
    }

    fn safety_open(&mut self, at: i64) {
        let lasts = self.exp_ms(40.0 * 60_000.0).max(2 * 60_000);
        self.state.safety_circuit = false;
        self.emit(at);
        self.idle_until(at + lasts);
        self.state.safety_circuit = true;
        self.emit(at + lasts);
        self.cursor = at + lasts;
        let details = json!({"safety_circuit": false, "floor": self.state.floor});
        self.alarm(
            "elevator.safety_circuit_open",
            Severity::Critical,
            at,
            at + lasts + 10_000,
            details,
        );
    }

    /// The fortnightly visit: maintenance mode for an hour or two.
    fn maintenance(&mut self, at: i64) {
        let lasts = self.rng.gen_range(45 * 60_000..120 * 60_000);
        self.state.mode = ElevatorMode::Maintenance;
        self.emit(at);
        self.idle_until(at + lasts);
        self.state.mode = ElevatorMode::Normal;
        self.emit(at + lasts);
        self.cursor = at + lasts;
    }

    /// An alarm's changes as the rule engine and a supervisor make them:
    /// raised, acknowledged (critical and major, within 15 min, if still
    /// open), cleared.
    fn alarm(&mut self, rule: &str, severity: Severity, raised: i64, cleared: i64, details: Value) {
        let id = uuid::Uuid::from_u128(self.rng.r#gen()).to_string();
        let (Ok(alarm_id), Ok(rule)) = (AlarmId::new(&id), RuleId::new(rule)) else {
            return;
        };
        let mut alarm = Alarm {
            alarm_id,
            rule,
            severity,
            state: AlarmState::Active,
            equipment_id: self.binding.equipment_id.clone(),
            device_id: Some(self.device.clone()),
            category: "elevator".into(),
            owner_id: self.binding.owner_id.clone(),
            region: self.binding.region,
            raised_at: raised,
            updated_at: raised,
            cleared_at: None,
            count: 1,
            details,
            version: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            note: None,
        };
        self.alarms.push(alarm.clone());
        let ack = raised + self.rng.gen_range(60_000..15 * 60_000);
        if severity >= Severity::Major && ack < cleared {
            alarm.version += 1;
            alarm.state = AlarmState::Acknowledged;
            alarm.updated_at = ack;
            alarm.acknowledged_at = Some(ack);
            alarm.acknowledged_by = Some(format!("sup-{}", &self.binding.region.as_str()[..4]));
            self.alarms.push(alarm.clone());
        }
        alarm.version += 1;
        alarm.state = AlarmState::Cleared;
        alarm.updated_at = cleared;
        alarm.cleared_at = Some(cleared);
        self.alarms.push(alarm);
    }
}

fn hourly_mean() -> f64 {
    HOURLY.iter().sum::<f64>() / 24.0
}

/// Position (m) and speed (m/s) `s` seconds into a run of `total_s` that
/// accelerates to `peak`, cruises, and brakes over `distance`.
fn profile(s: f64, total_s: f64, peak: f64, distance: f64) -> (f64, f64) {
    let ramp = peak / ACCEL;
    if s < ramp {
        (0.5 * ACCEL * s * s, ACCEL * s)
    } else if s > total_s - ramp {
        let left = (total_s - s).max(0.0);
        (distance - 0.5 * ACCEL * left * left, ACCEL * left)
    } else {
        (0.5 * ACCEL * ramp * ramp + peak * (s - ramp), peak)
    }
}

/// Devices have reported for years before the data set starts.
fn rng_seq_start(seed: u64) -> u64 {
    1_000 + seed % 5_000_000
}
