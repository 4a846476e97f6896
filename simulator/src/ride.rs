//! One simulated large amusement ride (a coaster-like train) or passenger
//! ropeway: a pure state machine with an injected clock, like the elevator.
//!
//! ```text
//!  coaster:  Loading (restraints open, then locked) ─▶ Running (a cycle) ─▶ Loading …
//!                 └── wind ≥ 80 % of the limit ─▶ Stopped (until calm for 60 s)
//!  ropeway:  Running (line speed, riders come and go) ─▶ slowed / Stopped in wind
//! ```
//!
//! The wind is a slow random process around the site's mean. The operator
//! stops the ride at 80 % of its wind limit, so a healthy ride never runs in
//! wind at its limit. The first cycle of each local day is the trial run
//! (`passengers: 0`); when it ends the operator records the daily check
//! (an `event` with code `daily_check`). Vibration at the main drive is
//! reported while running, around the drive's own level.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigil_model::reading::{Brake, ControllerEvent, DAILY_CHECK_CODE, RideSample, RideState};
use vigil_model::{EpochMs, Payload};

use crate::elevator::{FaultKind, FaultPlan, TICK_MS};
use crate::machine::{Emitted, FaultEdge};

const IDLE_REPORT_MS: EpochMs = 30_000;
const RUNNING_REPORT_MS: EpochMs = 1_000;
const MAX_BACKLOG_MS: EpochMs = 10_000;
/// The operator stops at this share of the wind limit, restarts below
/// `CALM_SHARE` after `CALM_MS`.
const STOP_SHARE: f64 = 0.8;
const CALM_SHARE: f64 = 0.65;
const CALM_MS: EpochMs = 60_000;
/// The registry's local day (China Standard Time) for the daily trial run.
const LOCAL_OFFSET_MS: EpochMs = 8 * 3_600_000;
const DAY_MS: EpochMs = 86_400_000;
/// A `bearing_wear` fault raises the vibration up to this multiple of the
/// drive's own level over `BEARING_WEAR_MS`, never to `ride.vibration_high`.
const BEARING_WEAR_FACTOR: f64 = 2.5;
const BEARING_WEAR_MS: EpochMs = 30 * 60_000;
const BEARING_WEAR_CAP_MM_S: f64 = 10.5;

/// Everything needed to build one ride; made by the fleet generator.
#[derive(Debug, Clone)]
pub(crate) struct RideSpec {
    pub device_id: String,
    /// A passenger ropeway (runs all day at line speed) rather than a ride.
    pub ropeway: bool,
    pub rated_speed_mps: f64,
    pub wind_limit_mps: f64,
    /// The site's mean wind.
    pub mean_wind_mps: f64,
    pub seed: u64,
    pub fault: Option<FaultPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Guests board; restraints lock at `lock_at`, the run starts at `until`.
    Loading { until: EpochMs, lock_at: EpochMs },
    /// One cycle of the ride (a coaster, `total_s` long) or the endless
    /// line (a ropeway).
    Running {
        t0: EpochMs,
        until: EpochMs,
        total_s: f64,
    },
    /// Stopped for wind (or a brake fault) until it is calm again.
    Stopped { calm_since: Option<EpochMs> },
}

#[derive(Debug, Clone)]
enum FaultState {
    None,
    Planned(FaultPlan),
    Armed(FaultKind),
    /// Active until this time.
    Until(FaultKind, EpochMs),
    /// A chronic fault (bearing wear) since this time.
    Wearing(EpochMs),
    Done,
}

pub(crate) struct Ride {
    spec: RideSpec,
    rng: StdRng,
    t: Option<EpochMs>,
    phase: Phase,
    speed: f64,
    wind: f64,
    /// The site's wind mean right now (a storm fault raises it).
    wind_mean: f64,
    restraints_locked: bool,
    brake: Brake,
    passengers: u16,
    /// Vibration level of this drive while running, and right now.
    vibration_base: f64,
    vibration: f64,
    /// Local day of the last trial run.
    trial_day: Option<EpochMs>,
    /// This cycle is the day's trial run.
    trial: bool,
    cycle_s: f64,
    /// Peak speed of the current cycle, as a share of the rated speed.
    peak: f64,
    fault: FaultState,
    last_report: Option<(EpochMs, (RideState, bool, Brake, u16))>,
    burst: bool,
    /// Events (the daily check) to publish with the next report.
    events: Vec<Emitted>,
    edges: Vec<FaultEdge>,
}

impl Ride {
    pub(crate) fn new(spec: &RideSpec) -> Ride {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let wind = spec.mean_wind_mps * rng.gen_range(0.6..1.2);
        Ride {
            vibration_base: rng.gen_range(1.5..4.0),
            vibration: 0.0,
            cycle_s: if spec.ropeway {
                0.0
            } else {
                rng.gen_range(60.0..120.0)
            },
            wind,
            wind_mean: spec.mean_wind_mps,
            rng,
            t: None,
            phase: Phase::Stopped { calm_since: None },
            speed: 0.0,
            restraints_locked: true,
            brake: Brake::Ok,
            passengers: 0,
            trial_day: None,
            trial: false,
            peak: 0.85,
            fault: spec
                .fault
                .clone()
                .map_or(FaultState::None, FaultState::Planned),
            last_report: None,
            burst: false,
            events: Vec::new(),
            edges: Vec::new(),
            spec: spec.clone(),
        }
    }

    /// Advances to `now`; what the ride's gateway published meanwhile.
    pub(crate) fn step(&mut self, now: EpochMs) -> Vec<Emitted> {
        let mut out = Vec::new();
        let Some(mut t) = self.t else {
            self.t = Some(now);
            if let FaultState::Planned(plan) = &self.fault {
                self.fault = FaultState::Planned(FaultPlan {
                    kind: plan.kind,
                    after_ms: now + plan.after_ms,
                });
            }
            self.start_loading(now);
            self.report(now, now, &mut out);
            return out;
        };
        while t + TICK_MS <= now {
            t += TICK_MS;
            self.tick(t);
            self.report(t, now, &mut out);
        }
        self.t = Some(t);
        out
    }

    pub(crate) fn take_fault_edges(&mut self) -> Vec<FaultEdge> {
        std::mem::take(&mut self.edges)
    }

    /// What the ride's controller shows right now.
    pub(crate) fn observe(&self) -> RideSample {
        let running = matches!(self.phase, Phase::Running { .. });
        RideSample {
            state: self.state(),
            speed_mps: ((self.speed * 100.0).round() / 100.0) as f32,
            wind_mps: Some(((self.wind * 10.0).round() / 10.0) as f32),
            restraints_locked: self.restraints_locked,
            vibration_mm_s: running.then(|| ((self.vibration * 100.0).round() / 100.0) as f32),
            brake: self.brake,
            passengers: Some(self.passengers),
        }
    }

    fn state(&self) -> RideState {
        match self.phase {
            Phase::Loading { .. } => RideState::Loading,
            Phase::Running { .. } => RideState::Running,
            Phase::Stopped { .. } => RideState::Stopped,
        }
    }

    fn active(&self) -> Option<FaultKind> {
        match self.fault {
            FaultState::Until(kind, _) => Some(kind),
            _ => None,
        }
    }

    fn edge(&mut self, ts: EpochMs, kind: FaultKind, started: bool) {
        self.edges.push(FaultEdge { ts, kind, started });
    }

    fn limit(&self) -> f64 {
        self.spec.wind_limit_mps
    }

    fn tick(&mut self, t: EpochMs) {
        self.burst = false;
        self.fault_clock(t);
        self.blow(t);
        let windy = self.wind >= STOP_SHARE * self.limit();
        // A storm the operator ignores (the wind fault) keeps the ride going.
        let ignoring_wind = self.active() == Some(FaultKind::RideWind);
        match self.phase {
            Phase::Loading { until, lock_at } => {
                if !self.restraints_locked && t >= lock_at {
                    self.restraints_locked = true;
                }
                if self.brake == Brake::Fault {
                    // The brake test at the station failed: no departure.
                } else if windy && !ignoring_wind {
                    self.stop();
                } else if t >= until {
                    self.depart(t);
                }
            }
            Phase::Running { t0, until, total_s } => {
                let new_day = self.trial_day != Some(local_day(t));
                if (windy && !ignoring_wind) || new_day {
                    // Emergency stop for wind (the train brakes to the next
                    // block), or the nightly stop before the day's trial run.
                    self.speed = 0.0;
                    self.stop();
                    return;
                }
                let e = (t - t0) as f64 / 1000.0;
                self.speed = self.speed_at(e, total_s);
                self.vibration = if self.active() == Some(FaultKind::RideVibration) {
                    self.rng.gen_range(13.5..16.0)
                } else {
                    let jitter = self.rng.gen_range(0.9..1.1);
                    match self.fault {
                        FaultState::Wearing(since) => {
                            let worn = ((t - since) as f64 / BEARING_WEAR_MS as f64).min(1.0);
                            let level = 1.0 + (BEARING_WEAR_FACTOR - 1.0) * worn;
                            (self.vibration_base * level * jitter).min(BEARING_WEAR_CAP_MM_S)
                        }
                        _ => self.vibration_base * jitter,
                    }
                };
                if self.spec.ropeway {
                    // The trial run: the empty line for 3 minutes.
                    if self.trial && e > 180.0 {
                        self.trial = false;
                        self.daily_check(t);
                    }
                    if !self.trial && self.passengers_change() {
                        self.burst = true;
                    }
                }
                if !self.spec.ropeway && t >= until {
                    self.speed = 0.0;
                    if std::mem::take(&mut self.trial) {
                        self.daily_check(t);
                    }
                    self.start_loading(t);
                }
            }
            Phase::Stopped { calm_since } => {
                self.speed = 0.0;
                let calm = self.wind < CALM_SHARE * self.limit() && self.brake == Brake::Ok;
                match (calm, calm_since) {
                    (true, None) => {
                        self.phase = Phase::Stopped {
                            calm_since: Some(t),
                        }
                    }
                    (true, Some(since)) if t - since >= CALM_MS => self.start_loading(t),
                    (false, Some(_)) => self.phase = Phase::Stopped { calm_since: None },
                    _ => {}
                }
            }
        }
    }

    fn stop(&mut self) {
        self.phase = Phase::Stopped { calm_since: None };
        self.burst = true;
    }

    /// The trial run went well: the operator records the daily check.
    fn daily_check(&mut self, t: EpochMs) {
        self.events.push(Emitted {
            ts: t,
            payload: Payload::Event(ControllerEvent {
                code: DAILY_CHECK_CODE.to_owned(),
                text: Some("日检及试运行完成 (daily check and trial run done)".to_owned()),
                active: true,
            }),
        });
    }

    /// Speed `e` seconds into the cycle: a ramp up, then the ride's shape
    /// (hills for a coaster; a steady line with a little jitter for a ropeway).
    fn speed_at(&self, e: f64, total: f64) -> f64 {
        let rated = self.spec.rated_speed_mps;
        if self.spec.ropeway {
            let ramp = (e / 20.0).min(1.0);
            return rated * self.peak * ramp;
        }
        let ramp = (e / 8.0).min(1.0) * ((total - e) / 8.0).clamp(0.0, 1.0);
        // Lift hill, drops and hills: the speed swings between 40 % and the
        // cycle's peak.
        let shape = 0.7 + 0.3 * (e / total * std::f64::consts::TAU * 3.0).sin();
        rated * self.peak * ramp * shape
    }

    /// Ropeway riders board and alight all the time; true when the count moved.
    fn passengers_change(&mut self) -> bool {
        if !self.rng.gen_bool(0.02) {
            return false;
        }
        let delta: i32 = self.rng.gen_range(-6..=6);
        let n = (i32::from(self.passengers) + delta).clamp(0, 120) as u16;
        let changed = n != self.passengers;
        self.passengers = n;
        changed
    }

    fn start_loading(&mut self, t: EpochMs) {
        self.speed = 0.0;
        if self.spec.ropeway {
            // A ropeway has no loading cycle: it starts the line again.
            self.depart(t);
            return;
        }
        let dur = self.rng.gen_range(40_000..=70_000);
        self.restraints_locked = false;
        self.phase = Phase::Loading {
            until: t + dur,
            lock_at: t + dur - self.rng.gen_range(8_000..=15_000),
        };
        self.burst = true;
    }

    fn depart(&mut self, t: EpochMs) {
        let day = local_day(t);
        self.trial = self.trial_day != Some(day);
        self.trial_day = Some(day);
        self.passengers = if self.trial {
            0
        } else if self.spec.ropeway {
            self.rng.gen_range(5..=40)
        } else {
            self.rng.gen_range(8..=24)
        };
        self.peak = self.rng.gen_range(0.82..0.93);
        let mut restraints = true;
        // A check skipped from the start is due at the very first departure.
        let due = match &self.fault {
            FaultState::Planned(plan)
                if plan.kind == FaultKind::RideNoCheck && plan.after_ms <= t =>
            {
                Some(plan.kind)
            }
            _ => self.armed(),
        };
        match due {
            Some(FaultKind::RideNoCheck) if self.trial => {
                // The operator skips the trial run and the check today.
                self.trial = false;
                self.passengers = if self.spec.ropeway {
                    self.rng.gen_range(5..=40)
                } else {
                    self.rng.gen_range(8..=24)
                };
                let dur = if self.spec.ropeway {
                    180_000
                } else {
                    (self.cycle_s * 1000.0) as EpochMs
                };
                self.begin(t, FaultKind::RideNoCheck, dur);
            }
            Some(FaultKind::RideOverspeed) if !self.trial => {
                self.peak = 1.3;
                let dur = if self.spec.ropeway {
                    40_000
                } else {
                    (self.cycle_s * 1000.0) as EpochMs
                };
                self.begin(t, FaultKind::RideOverspeed, dur);
            }
            Some(FaultKind::RideUnrestrained) if !self.trial && !self.spec.ropeway => {
                // One restraint did not lock; the operator's emergency stop
                // comes 3–5 s after departure.
                restraints = false;
                let until = t + self.rng.gen_range(3_000..=5_000);
                self.begin(t, FaultKind::RideUnrestrained, until - t);
            }
            _ => {}
        }
        self.restraints_locked = restraints;
        let until = if self.spec.ropeway {
            EpochMs::MAX
        } else {
            t + (self.cycle_s * 1000.0) as EpochMs
        };
        self.phase = Phase::Running {
            t0: t,
            until,
            total_s: self.cycle_s,
        };
        self.burst = true;
    }

    fn armed(&self) -> Option<FaultKind> {
        match self.fault {
            FaultState::Armed(kind) => Some(kind),
            _ => None,
        }
    }

    fn begin(&mut self, t: EpochMs, kind: FaultKind, dur: EpochMs) {
        self.fault = FaultState::Until(kind, t + dur);
        self.edge(t, kind, true);
        self.burst = true;
    }

    /// Planned faults become due; active ones end.
    fn fault_clock(&mut self, t: EpochMs) {
        match self.fault.clone() {
            FaultState::Planned(plan) if t >= plan.after_ms => match plan.kind {
                FaultKind::RideBrake if !matches!(self.phase, Phase::Running { .. }) => {
                    self.brake = Brake::Fault;
                    let dur = self.rng.gen_range(20_000..=30_000);
                    self.begin(t, FaultKind::RideBrake, dur);
                }
                FaultKind::RideWind => {
                    if let Phase::Running { t0, total_s, .. } = self.phase {
                        // A squall: the wind climbs past the limit within
                        // ~15 s and the operator misses it for 45 s; the
                        // train keeps running meanwhile.
                        self.wind_mean = self.limit() * 1.2;
                        self.begin(t, FaultKind::RideWind, 45_000);
                        if !self.spec.ropeway {
                            let total_s = total_s.max((t - t0) as f64 / 1000.0 + 50.0);
                            self.phase = Phase::Running {
                                t0,
                                until: t0 + (total_s * 1000.0) as EpochMs,
                                total_s,
                            };
                        }
                    }
                }
                FaultKind::RideVibration if matches!(self.phase, Phase::Running { .. }) => {
                    // A worn bearing: the drive vibrates far above its level
                    // for 45 s, then the operator stops for an inspection.
                    self.begin(t, FaultKind::RideVibration, 45_000);
                }
                FaultKind::BearingWear => {
                    self.edge(t, FaultKind::BearingWear, true);
                    self.fault = FaultState::Wearing(t);
                }
                FaultKind::RideNoCheck
                    if self.trial && matches!(self.phase, Phase::Running { .. }) =>
                {
                    // Mid-trial (a ropeway's empty line): riders board now,
                    // and the check is never recorded.
                    self.trial = false;
                    self.passengers = self.rng.gen_range(5..=40);
                    self.begin(t, FaultKind::RideNoCheck, 180_000);
                }
                FaultKind::RideBrake | FaultKind::RideVibration => {}
                kind => self.fault = FaultState::Armed(kind),
            },
            FaultState::Until(kind, until) if t >= until => {
                self.fault = FaultState::Done;
                self.edge(t, kind, false);
                self.burst = true;
                match kind {
                    FaultKind::RideBrake => self.brake = Brake::Ok,
                    FaultKind::RideWind => {
                        self.wind_mean = self.spec.mean_wind_mps;
                        self.speed = 0.0;
                        self.stop();
                    }
                    FaultKind::RideUnrestrained => {
                        self.speed = 0.0;
                        self.restraints_locked = true;
                        self.phase = Phase::Stopped {
                            calm_since: Some(t),
                        };
                    }
                    FaultKind::RideVibration => {
                        self.speed = 0.0;
                        self.phase = Phase::Stopped {
                            calm_since: Some(t),
                        };
                    }
                    _ => self.peak = 0.88,
                }
            }
            _ => {}
        }
    }

    /// The wind: mean-reverting with a ~2 min memory and about ±1.2 m/s of
    /// spread at a calm site (more at a windy one).
    fn blow(&mut self, _t: EpochMs) {
        let dt = TICK_MS as f64 / 1000.0;
        let theta = if self.active() == Some(FaultKind::RideWind) {
            1.0 / 8.0
        } else {
            1.0 / 120.0
        };
        let sigma = 0.12 + 0.03 * self.spec.mean_wind_mps;
        let noise: f64 = self.rng.gen_range(-1.0..1.0) * 1.7;
        self.wind += theta * (self.wind_mean - self.wind) * dt + sigma * dt.sqrt() * noise;
        self.wind = self.wind.clamp(0.0, 60.0);
    }

    fn report(&mut self, t: EpochMs, now: EpochMs, out: &mut Vec<Emitted>) {
        out.append(&mut self.events);
        let sample = self.observe();
        let key = (
            sample.state,
            sample.restraints_locked,
            sample.brake,
            sample.passengers.unwrap_or(0),
        );
        let due = match &self.last_report {
            None => true,
            Some((last_t, last_key)) => {
                let since = t - last_t;
                let running = sample.state == RideState::Running;
                self.burst
                    || *last_key != key
                    || (running && since >= RUNNING_REPORT_MS)
                    || since >= IDLE_REPORT_MS
            }
        };
        if due && t >= now - MAX_BACKLOG_MS {
            self.last_report = Some((t, key));
            out.push(Emitted {
                ts: t,
                payload: Payload::Ride(sample),
            });
        }
    }
}

/// The registry's local day of `t`.
fn local_day(t: EpochMs) -> EpochMs {
    (t + LOCAL_OFFSET_MS).div_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMs = 1_750_000_000_000;

    fn spec(ropeway: bool, mean_wind: f64, fault: Option<FaultKind>) -> RideSpec {
        RideSpec {
            device_id: "RD000001".into(),
            ropeway,
            rated_speed_mps: if ropeway { 5.0 } else { 22.0 },
            wind_limit_mps: if ropeway { 13.9 } else { 10.8 },
            mean_wind_mps: mean_wind,
            seed: 9,
            fault: fault.map(|kind| FaultPlan {
                kind,
                after_ms: 600_000,
            }),
        }
    }

    fn run(spec: &RideSpec, ms: EpochMs) -> (Vec<(EpochMs, RideSample)>, Vec<FaultEdge>) {
        let mut ride = Ride::new(spec);
        let (mut out, mut edges) = (Vec::new(), Vec::new());
        let mut t = T0;
        while t <= T0 + ms {
            for m in ride.step(t) {
                if let Payload::Ride(s) = m.payload {
                    out.push((m.ts, s));
                }
            }
            edges.extend(ride.take_fault_edges());
            t += TICK_MS;
        }
        (out, edges)
    }

    /// Longest stretch (first to next contradicting sample) meeting `cond`.
    fn longest(s: &[(EpochMs, RideSample)], cond: impl Fn(&RideSample) -> bool) -> EpochMs {
        let (mut best, mut start) = (0, None);
        for (ts, x) in s {
            match (cond(x), start) {
                (true, None) => start = Some(*ts),
                (false, Some(st)) => {
                    best = best.max(ts - st);
                    start = None;
                }
                _ => {}
            }
        }
        if let (Some(st), Some((end, _))) = (start, s.last()) {
            best = best.max(end - st);
        }
        best
    }

    /// The ride rules of rules.md that these samples could raise.
    fn could_raise(spec: &RideSpec, s: &[(EpochMs, RideSample)]) -> Vec<&'static str> {
        let running = |x: &RideSample| x.state == RideState::Running;
        let limit = spec.wind_limit_mps as f32;
        let over = (1.1 * spec.rated_speed_mps) as f32;
        let mut raised = Vec::new();
        if s.iter().any(|(_, x)| running(x) && !x.restraints_locked) {
            raised.push("ride.running_unrestrained");
        }
        if longest(s, |x| running(x) && x.wind_mps.unwrap_or(0.0) >= limit) >= 10_000 {
            raised.push("ride.wind_limit");
        }
        if longest(s, |x| x.speed_mps > over) >= 2_000 {
            raised.push("ride.overspeed");
        }
        if s.iter().any(|(_, x)| x.brake == Brake::Fault) {
            raised.push("ride.brake_fault");
        }
        if longest(s, |x| x.vibration_mm_s.unwrap_or(0.0) > 11.2) >= 30_000 {
            raised.push("ride.vibration_high");
        }
        raised
    }

    #[test]
    fn healthy_rides_and_ropeways_raise_nothing_in_two_hours() {
        for ropeway in [false, true] {
            for mean_wind in [2.5, 6.0] {
                let spec = spec(ropeway, mean_wind, None);
                let (s, edges) = run(&spec, 2 * 3_600_000);
                let label = format!("ropeway {ropeway} wind {mean_wind}");
                assert!(edges.is_empty());
                assert_eq!(could_raise(&spec, &s), Vec::<&str>::new(), "{label}");
                let max_gap = s.windows(2).map(|p| p[1].0 - p[0].0).max().unwrap();
                assert!(max_gap <= 30_000, "{label}: silent for {max_gap} ms");
                let runs = s
                    .windows(2)
                    .filter(|p| {
                        p[0].1.state != RideState::Running && p[1].1.state == RideState::Running
                    })
                    .count();
                assert!(runs >= 1, "{label}: never ran");
                if !ropeway {
                    assert!(runs >= 20, "{label}: only {runs} cycles");
                    // Restraints open for boarding and locked for every run.
                    assert!(s.iter().any(|(_, x)| !x.restraints_locked));
                }
                // The day's first run is the trial run.
                let first = s
                    .iter()
                    .find(|(_, x)| x.state == RideState::Running)
                    .unwrap();
                assert_eq!(first.1.passengers, Some(0), "{label}");
                assert!(
                    s.iter()
                        .any(|(_, x)| x.state == RideState::Running && x.passengers > Some(0))
                );
            }
        }
    }

    #[test]
    fn a_windy_site_stops_the_ride_before_its_limit() {
        let spec = spec(false, 7.0, None);
        let (s, _) = run(&spec, 4 * 3_600_000);
        assert!(
            s.iter()
                .any(|(_, x)| x.state == RideState::Stopped && x.wind_mps.unwrap() >= 8.6),
            "stops for wind"
        );
        assert!(could_raise(&spec, &s).is_empty());
    }

    #[test]
    fn each_fault_raises_its_own_rule_only() {
        for (kind, rule) in [
            (FaultKind::RideUnrestrained, "ride.running_unrestrained"),
            (FaultKind::RideWind, "ride.wind_limit"),
            (FaultKind::RideOverspeed, "ride.overspeed"),
            (FaultKind::RideBrake, "ride.brake_fault"),
            (FaultKind::RideVibration, "ride.vibration_high"),
        ] {
            let spec = spec(false, 2.5, Some(kind));
            let (s, edges) = run(&spec, 1_800_000);
            assert_eq!(could_raise(&spec, &s), vec![rule], "{kind}");
            assert_eq!(edges.len(), 2, "{kind}: {edges:?}");
            assert!(edges[0].started && !edges[1].started);
        }
    }
}
