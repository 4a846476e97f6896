//! The chronic and daily-check faults through the real rule engine: each
//! raises its own rule and a healthy twin of the same seed raises nothing.
//! (The acute faults are checked per model in `src/`.)

use std::collections::HashMap;

use serde_json::Value;
use vigil_model::{Alarm, Binding, DeviceContext, DeviceId, EquipmentId, OwnerId, Reading, Region};
use vigil_rules::{
    CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts, RuleConfig, RuleEngine,
};
use vigil_simulator::{FaultKind, Fleet, FleetConfig};

const HOUR: i64 = 3_600_000;
/// 2025-06-02 02:00 UTC: the ride's local day (UTC+8) starts at 10:00.
const T0: i64 = 1_748_829_600_000;

/// Every device of `fleet` stepped for `ms` and fed to a rule engine;
/// the alarms raised (first versions), by rule.
fn raised(fleet: &Fleet, ms: i64) -> HashMap<String, Vec<Alarm>> {
    let doc = fleet.import_doc();
    let mut contexts = HashMap::new();
    for d in doc["devices"].as_array().unwrap() {
        let id = d["device_id"].as_str().unwrap().to_owned();
        let (eq, category, params) = match d["equipment_id"].as_str() {
            Some(eq) => {
                let e = doc["equipment"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["equipment_id"] == eq)
                    .unwrap();
                (
                    eq.to_owned(),
                    e["category"].as_str().unwrap().to_owned(),
                    e["params"].clone(),
                )
            }
            None => (
                d["station_id"].as_str().unwrap().to_owned(),
                "filling_station".to_owned(),
                Value::Object(Default::default()),
            ),
        };
        contexts.insert(
            id,
            DeviceContext {
                binding: Binding {
                    equipment_id: EquipmentId::new(eq).unwrap(),
                    category,
                    owner_id: OwnerId::new("OW1").unwrap(),
                    region: Region::new("440703").unwrap(),
                },
                kind: d["kind"].as_str().unwrap().into(),
                report_interval_s: 86_400,
                params: std::sync::Arc::new(params.as_object().cloned().unwrap_or_default()),
                engine_slot: Default::default(),
            },
        );
    }
    let mut engine = RuleEngine::new(RuleConfig::default());
    engine.set_local_offset(8 * 3600);
    let mut machines = fleet.machines();
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut out: HashMap<String, Vec<Alarm>> = HashMap::new();
    let mut t = T0;
    while t <= T0 + ms {
        for m in &mut machines {
            let id = m.device_id().to_owned();
            let ctx = &contexts[&id];
            for e in m.step(t) {
                let seq = seqs.entry(id.clone()).or_default();
                *seq += 1;
                let reading = Reading {
                    device_id: DeviceId::new(&id).unwrap(),
                    seq: *seq,
                    ts: e.ts,
                    received_at: e.ts,
                    payload: e.payload,
                    extra: None,
                };
                let changes = match &reading.payload {
                    vigil_model::Payload::Filling(r) => {
                        engine.on_filling(&reading, ctx, &facts(&doc, &r.cylinder_code), e.ts)
                    }
                    _ => engine.on_reading(&reading, ctx, e.ts),
                };
                for a in changes.into_iter().filter(|a| a.version == 1) {
                    out.entry(a.rule.to_string()).or_default().push(a);
                }
            }
        }
        t += 1_000;
    }
    out
}

/// The registry's facts of a cylinder, as good as they come, and a
/// certified operator: only the time per kg is under test.
fn facts(doc: &Value, code: &str) -> FillingFacts {
    let far = T0 + 1000 * 24 * HOUR;
    let c = doc["cylinders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cylinder_code"] == code)
        .unwrap();
    FillingFacts {
        cylinder: Some(CylinderFacts {
            station_id: c["station_id"].as_str().unwrap().into(),
            model: c["model"].as_str().unwrap().into(),
            max_fill_kg: c["max_fill_kg"].as_f64(),
            working_pressure_mpa: c["working_pressure_mpa"].as_f64().unwrap(),
            next_inspection: far,
            next_inspection_date: "2028-01-01".into(),
            scrapped: false,
            end_of_life: far,
            end_of_life_date: "2028-01-01".into(),
        }),
        operator: Some(OperatorFacts {
            certificates: vec![CertificateFacts {
                kind: "filling".into(),
                number: "F-1".into(),
                expires: far,
                expires_date: "2028-01-01".into(),
            }],
        }),
    }
}

fn fleet(cfg: FleetConfig) -> Fleet {
    Fleet::generate(&FleetConfig {
        fault_fraction: 0.0,
        ..cfg
    })
}

#[test]
fn a_weakening_drive_is_caught_by_the_trip_time_anomaly() {
    for seed in [3, 4, 5, 6, 7] {
        let cfg = FleetConfig {
            devices: 1,
            seed,
            ..FleetConfig::default()
        };
        let healthy = raised(&fleet(cfg.clone()), 8 * HOUR);
        assert!(
            healthy.is_empty(),
            "seed {seed}: healthy raised {:?}",
            healthy.keys()
        );
        let mut worn = fleet(cfg);
        let id = worn.device_ids()[0].clone();
        worn.plan_fault(&id, FaultKind::DriveWear, 4 * HOUR)
            .unwrap();
        let alarms = raised(&worn, 8 * HOUR);
        let keys: Vec<&String> = alarms.keys().collect();
        assert_eq!(keys, ["anomaly.trip_s_per_floor"], "seed {seed}");
        let at = alarms["anomaly.trip_s_per_floor"][0].raised_at - T0;
        eprintln!(
            "seed {seed}: caught {} min after the wear began",
            at / 60_000 - 240
        );
        assert!(
            (4 * HOUR..6 * HOUR).contains(&at),
            "seed {seed}: caught at {} min",
            at / 60_000
        );
    }
}

#[test]
fn a_wearing_bearing_is_caught_by_the_vibration_anomaly_below_the_fixed_limit() {
    for seed in [3, 4, 5] {
        let cfg = FleetConfig {
            devices: 0,
            rides: 1,
            seed,
            ..FleetConfig::default()
        };
        let healthy = raised(&fleet(cfg.clone()), 3 * HOUR);
        assert!(
            healthy.is_empty(),
            "seed {seed}: healthy raised {:?}",
            healthy.keys()
        );
        let mut worn = fleet(cfg);
        let id = worn.device_ids()[0].clone();
        worn.plan_fault(&id, FaultKind::BearingWear, HOUR).unwrap();
        let alarms = raised(&worn, 3 * HOUR);
        let keys: Vec<&String> = alarms.keys().collect();
        assert_eq!(keys, ["anomaly.vibration_mm_s"], "seed {seed}");
        let after = alarms["anomaly.vibration_mm_s"][0].raised_at - T0 - HOUR;
        eprintln!(
            "seed {seed}: caught {} min after the wear began",
            after / 60_000
        );
        assert!((0..HOUR).contains(&after), "seed {seed}");
    }
}

#[test]
fn a_wearing_pump_is_caught_by_the_fill_time_anomaly() {
    for seed in [3, 4] {
        let cfg = FleetConfig {
            devices: 0,
            stations: 1,
            seed,
            ..FleetConfig::default()
        };
        let healthy = raised(&fleet(cfg.clone()), 20 * HOUR);
        assert!(
            healthy.is_empty(),
            "seed {seed}: healthy raised {:?}",
            healthy.keys()
        );
        let mut worn = fleet(cfg);
        let id = worn.device_ids()[0].clone();
        worn.plan_fault(&id, FaultKind::PumpWear, 14 * HOUR)
            .unwrap();
        let alarms = raised(&worn, 20 * HOUR);
        let keys: Vec<&String> = alarms.keys().collect();
        assert_eq!(keys, ["anomaly.fill_s_per_kg"], "seed {seed}");
        let after = alarms["anomaly.fill_s_per_kg"][0].raised_at - T0 - 14 * HOUR;
        eprintln!(
            "seed {seed}: caught {} min after the wear began",
            after / 60_000
        );
        assert!((0..3 * HOUR).contains(&after), "seed {seed}");
    }
}

#[test]
fn a_ride_that_skips_its_daily_check_raises_no_daily_check_and_a_healthy_one_records_it() {
    for ropeway in [false, true] {
        let cfg = FleetConfig {
            devices: 0,
            rides: usize::from(!ropeway),
            ropeways: usize::from(ropeway),
            seed: 9,
            ..FleetConfig::default()
        };
        let healthy = fleet(cfg.clone());
        let checks = healthy
            .machines()
            .iter_mut()
            .flat_map(|m| (0..3600).flat_map(|s| m.step(T0 + s * 1000)).collect::<Vec<_>>())
            .filter(|e| matches!(&e.payload, vigil_model::Payload::Event(ev) if ev.code == "daily_check" && ev.active))
            .count();
        assert_eq!(checks, 1, "ropeway {ropeway}: one check a day");
        assert!(raised(&healthy, 2 * HOUR).is_empty(), "ropeway {ropeway}");
        let mut skipping = fleet(cfg);
        let id = skipping.device_ids()[0].clone();
        skipping.plan_fault(&id, FaultKind::RideNoCheck, 0).unwrap();
        let alarms = raised(&skipping, 2 * HOUR);
        let keys: Vec<&String> = alarms.keys().collect();
        assert_eq!(keys, ["ride.no_daily_check"], "ropeway {ropeway}");
    }
}

#[test]
fn a_fault_must_fit_the_device() {
    let mut f = fleet(FleetConfig {
        devices: 1,
        stations: 1,
        ..FleetConfig::default()
    });
    let elevator = f.device_ids()[0].clone();
    let err = f.plan_fault(&elevator, FaultKind::PumpWear, 0).unwrap_err();
    assert!(err.contains("scale"), "{err}");
    assert!(f.plan_fault("NOPE", FaultKind::Trapped, 0).is_err());
    let scale = f.device_ids()[1].clone();
    let err = f
        .plan_fault(&scale, FaultKind::FillingForeign, 0)
        .unwrap_err();
    assert!(err.contains("second station"), "{err}");
}
