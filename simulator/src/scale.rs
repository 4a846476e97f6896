//! One simulated gas-cylinder filling scale at a station: operators take
//! the station's cylinders one after another, the scale fills each to its
//! target and publishes one `filling` record when the filling ends.
//!
//! ```text
//!  Changeover (20–90 s) ─▶ Filling (net ÷ the station's rate, ±4 %) ─▶ record ─▶ Changeover …
//! ```
//!
//! Healthy fillings use the station's own registered, inspected cylinders
//! and certified operators, stay under each cylinder's `max_fill_kg` and,
//! for compressed gases, under its working pressure once settled to 20 °C.
//! A fault is one irregular filling: a cylinder that is overdue, scrapped,
//! another station's or unregistered, an overfill, an overpressure, or an
//! operator without a valid certificate.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigil_model::reading::{FillResult, FillingRecord};
use vigil_model::{EpochMs, Payload};

use crate::elevator::{FaultKind, FaultPlan, TICK_MS};
use crate::machine::{Emitted, FaultEdge};

const MAX_BACKLOG_MS: EpochMs = 10_000;
/// A `pump_wear` fault makes every filling take up to this much longer per
/// kg, reached after `PUMP_WEAR_MS`.
const PUMP_WEAR_EXTRA: f64 = 0.6;
const PUMP_WEAR_MS: EpochMs = 3 * 3_600_000;
/// Share of fillings the operator stops early.
const ABORT_CHANCE: f64 = 0.02;

/// A cylinder as the scale sees it: the registry's facts it fills by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CylinderSpec {
    pub code: String,
    pub medium: String,
    pub max_fill_kg: f64,
    pub tare_kg: f64,
    /// Compressed gases report pressure; liquefied ones (LPG) do not.
    pub working_pressure_mpa: Option<f64>,
}

/// Everything needed to build one scale.
#[derive(Debug, Clone)]
pub(crate) struct ScaleSpec {
    pub device_id: String,
    /// The station's own good cylinders.
    pub cylinders: Vec<CylinderSpec>,
    /// Operators with a valid filling certificate.
    pub operators: Vec<String>,
    /// What the fault fills with: the irregular cylinder, or (operator
    /// fault) the operator without a valid certificate.
    pub odd_cylinder: Option<CylinderSpec>,
    pub odd_operator: Option<String>,
    /// Filling rate, kg/s.
    pub rate_kg_s: f64,
    pub seed: u64,
    pub fault: Option<FaultPlan>,
}

#[derive(Debug, Clone)]
enum Phase {
    Changeover {
        until: EpochMs,
    },
    Filling {
        started: EpochMs,
        until: EpochMs,
        cylinder: CylinderSpec,
        operator: String,
        net_kg: f64,
        aborted: bool,
        /// This filling is the fault.
        fault: Option<FaultKind>,
    },
}

pub(crate) struct Scale {
    spec: ScaleSpec,
    rng: StdRng,
    t: Option<EpochMs>,
    phase: Phase,
    fault: Option<FaultPlan>,
    /// The pump wears (a `pump_wear` fault) since this time.
    wearing: Option<EpochMs>,
    out: Vec<Emitted>,
    edges: Vec<FaultEdge>,
}

impl Scale {
    pub(crate) fn new(spec: &ScaleSpec) -> Scale {
        Scale {
            rng: StdRng::seed_from_u64(spec.seed),
            t: None,
            phase: Phase::Changeover { until: 0 },
            fault: spec.fault.clone(),
            wearing: None,
            out: Vec::new(),
            edges: Vec::new(),
            spec: spec.clone(),
        }
    }

    pub(crate) fn step(&mut self, now: EpochMs) -> Vec<Emitted> {
        let Some(mut t) = self.t else {
            self.t = Some(now);
            if let Some(plan) = &mut self.fault {
                plan.after_ms += now;
            }
            let first = now + self.rng.gen_range(2_000..=30_000);
            self.phase = Phase::Changeover { until: first };
            return Vec::new();
        };
        while t + TICK_MS <= now {
            t += TICK_MS;
            self.tick(t, t >= now - MAX_BACKLOG_MS);
        }
        self.t = Some(t);
        std::mem::take(&mut self.out)
    }

    pub(crate) fn take_fault_edges(&mut self) -> Vec<FaultEdge> {
        std::mem::take(&mut self.edges)
    }

    /// True while a cylinder is on the scale being filled.
    pub(crate) fn filling(&self) -> bool {
        matches!(self.phase, Phase::Filling { .. })
    }

    fn tick(&mut self, t: EpochMs, publish: bool) {
        match self.phase.clone() {
            Phase::Changeover { until } if t >= until => self.start(t),
            Phase::Filling {
                started,
                until,
                cylinder,
                operator,
                net_kg,
                aborted,
                fault,
            } if t >= until => {
                let (pressure_mpa, temp_c) = match cylinder.working_pressure_mpa {
                    Some(working) => {
                        let temp = self.rng.gen_range(30.0..42.0);
                        // Settled to 20 °C this stays 1–8 % under the
                        // working pressure; the fault fills 12 % over.
                        let p20 = if fault == Some(FaultKind::FillingOverpressure) {
                            working * 1.12
                        } else {
                            working * self.rng.gen_range(0.92..0.99)
                        };
                        let p = p20 * (273.15 + temp) / 293.15;
                        (Some(round(p, 2) as f32), Some(round(temp, 1) as f32))
                    }
                    None => (None, None),
                };
                if publish {
                    self.out.push(Emitted {
                        ts: t,
                        payload: Payload::Filling(FillingRecord {
                            cylinder_code: cylinder.code.clone(),
                            operator_id: operator,
                            medium: cylinder.medium.clone(),
                            tare_kg: round(cylinder.tare_kg + self.rng.gen_range(-0.05..0.05), 2)
                                as f32,
                            net_kg: round(net_kg, 2) as f32,
                            pressure_mpa,
                            temp_c,
                            started_ms: started,
                            result: if aborted {
                                FillResult::Aborted
                            } else {
                                FillResult::Ok
                            },
                        }),
                    });
                }
                if let Some(kind) = fault {
                    self.edges.push(FaultEdge {
                        ts: t,
                        kind,
                        started: false,
                    });
                }
                let gap = self.rng.gen_range(20_000..=90_000);
                self.phase = Phase::Changeover { until: t + gap };
            }
            _ => {}
        }
    }

    fn start(&mut self, t: EpochMs) {
        let mut due = self
            .fault
            .as_ref()
            .is_some_and(|plan| t >= plan.after_ms)
            .then(|| self.fault.take().map(|p| p.kind))
            .flatten();
        if due == Some(FaultKind::PumpWear) {
            // Chronic: not one odd filling, every filling from now on.
            self.wearing = Some(t);
            self.edges.push(FaultEdge {
                ts: t,
                kind: FaultKind::PumpWear,
                started: true,
            });
            due = None;
        }
        let mut cylinder =
            self.spec.cylinders[self.rng.gen_range(0..self.spec.cylinders.len())].clone();
        let mut operator =
            self.spec.operators[self.rng.gen_range(0..self.spec.operators.len())].clone();
        match due {
            Some(FaultKind::FillingUncertified) => {
                if let Some(op) = &self.spec.odd_operator {
                    operator = op.clone();
                }
            }
            Some(FaultKind::FillingOverfill | FaultKind::FillingOverpressure) => {}
            Some(_) => {
                if let Some(c) = &self.spec.odd_cylinder {
                    cylinder = c.clone();
                }
            }
            None => {}
        }
        let aborted = due.is_none() && self.rng.gen_bool(ABORT_CHANCE);
        let share = if due == Some(FaultKind::FillingOverfill) {
            1.06
        } else if aborted {
            self.rng.gen_range(0.3..0.8)
        } else {
            self.rng.gen_range(0.93..0.995)
        };
        let net_kg = cylinder.max_fill_kg * share;
        let wear = self.wearing.map_or(0.0, |since| {
            PUMP_WEAR_EXTRA * ((t - since) as f64 / PUMP_WEAR_MS as f64).min(1.0)
        });
        let secs = net_kg / self.spec.rate_kg_s * self.rng.gen_range(0.96..1.04) * (1.0 + wear);
        if let Some(kind) = due {
            self.edges.push(FaultEdge {
                ts: t,
                kind,
                started: true,
            });
        }
        self.phase = Phase::Filling {
            started: t,
            until: t + (secs * 1000.0) as EpochMs,
            cylinder,
            operator,
            net_kg,
            aborted,
            fault: due,
        };
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMs = 1_750_000_000_000;

    fn cylinder(code: &str, pressure: Option<f64>) -> CylinderSpec {
        CylinderSpec {
            code: code.into(),
            medium: if pressure.is_some() { "O2" } else { "LPG" }.into(),
            max_fill_kg: if pressure.is_some() { 8.3 } else { 14.9 },
            tare_kg: 16.5,
            working_pressure_mpa: pressure,
        }
    }

    fn run(spec: &ScaleSpec, ms: EpochMs) -> Vec<(EpochMs, FillingRecord)> {
        let mut scale = Scale::new(spec);
        let mut out = Vec::new();
        let mut t = T0;
        while t <= T0 + ms {
            for m in scale.step(t) {
                if let Payload::Filling(f) = m.payload {
                    out.push((m.ts, f));
                }
            }
            t += TICK_MS;
        }
        out
    }

    fn spec(pressure: Option<f64>, fault: Option<FaultKind>) -> ScaleSpec {
        ScaleSpec {
            device_id: "FS000001".into(),
            cylinders: (0..20)
                .map(|i| cylinder(&format!("C{i:04}"), pressure))
                .collect(),
            operators: vec!["P1".into(), "P2".into()],
            odd_cylinder: Some(cylinder("ODD", pressure)),
            odd_operator: Some("P9".into()),
            rate_kg_s: if pressure.is_some() { 0.025 } else { 0.09 },
            seed: 4,
            fault: fault.map(|kind| FaultPlan {
                kind,
                after_ms: 600_000,
            }),
        }
    }

    #[test]
    fn healthy_fillings_stay_within_every_limit() {
        for pressure in [None, Some(15.0)] {
            let records = run(&spec(pressure, None), 4 * 3_600_000);
            assert!(records.len() > 30, "{}", records.len());
            for (ts, r) in &records {
                assert!(f64::from(r.net_kg) <= 14.9 && f64::from(r.net_kg) > 1.0);
                assert!(r.started_ms < *ts);
                assert!(r.cylinder_code.starts_with('C') && r.operator_id != "P9");
                if let (Some(p), Some(temp)) = (r.pressure_mpa, r.temp_c) {
                    let p20 = f64::from(p) * 293.15 / (273.15 + f64::from(temp));
                    assert!(p20 <= 15.0, "{p20}");
                    assert!(f64::from(r.net_kg) <= 8.3);
                }
            }
            // Completed fillings take a steady time per kg (anomaly.fill_s_per_kg).
            let per_kg: Vec<f64> = records
                .iter()
                .filter(|(_, r)| r.result == FillResult::Ok)
                .map(|(ts, r)| (ts - r.started_ms) as f64 / 1000.0 / f64::from(r.net_kg))
                .collect();
            let mean = per_kg.iter().sum::<f64>() / per_kg.len() as f64;
            assert!(per_kg.iter().all(|x| (x / mean - 1.0).abs() < 0.06));
        }
    }

    #[test]
    fn a_fault_is_one_irregular_filling() {
        let odd = |r: &FillingRecord| r.cylinder_code == "ODD";
        let records = run(&spec(None, Some(FaultKind::FillingOverdue)), 3_600_000);
        assert_eq!(records.iter().filter(|(_, r)| odd(r)).count(), 1);
        let records = run(&spec(None, Some(FaultKind::FillingUncertified)), 3_600_000);
        assert_eq!(
            records
                .iter()
                .filter(|(_, r)| r.operator_id == "P9")
                .count(),
            1
        );
        let records = run(&spec(None, Some(FaultKind::FillingOverfill)), 3_600_000);
        assert_eq!(records.iter().filter(|(_, r)| r.net_kg > 14.9).count(), 1);
        let records = run(
            &spec(Some(15.0), Some(FaultKind::FillingOverpressure)),
            3_600_000,
        );
        let over = records
            .iter()
            .filter(|(_, r)| {
                f64::from(r.pressure_mpa.unwrap()) * 293.15
                    / (273.15 + f64::from(r.temp_c.unwrap()))
                    > 15.0
            })
            .count();
        assert_eq!(over, 1);
    }
}
