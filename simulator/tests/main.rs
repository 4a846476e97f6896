//! The simulator's public surface: the registry document a fleet imports,
//! and the argument checks of `run` and `load` (the MQTT path itself is
//! exercised by the engine's end-to-end tests against the real broker).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use vigil_model::{DeviceId, EquipmentId, MaintainerId, OwnerId, Region};
use vigil_simulator::{Fleet, FleetConfig, LoadConfig, SimError, SimStats};

const CATEGORIES: [&str; 9] = [
    "elevator",
    "escalator",
    "amusement_ride",
    "passenger_ropeway",
    "boiler",
    "pressure_vessel",
    "pressure_piping",
    "lifting_machinery",
    "in_plant_vehicle",
];

fn cfg(devices: usize, seed: u64) -> FleetConfig {
    FleetConfig {
        devices,
        seed,
        ..FleetConfig::default()
    }
}

fn list<'a>(doc: &'a Value, key: &str) -> &'a Vec<Value> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not a list"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` missing or not a string in {v}"))
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// GB 32100-2015: 18 characters of the code alphabet, the last a mod-31 check.
fn credit_code_ok(code: &str) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    let values: Option<Vec<u32>> = code
        .chars()
        .map(|c| ALPHABET.find(c).map(|i| i as u32))
        .collect();
    let Some(values) = values else { return false };
    if values.len() != 18 {
        return false;
    }
    let mut weight = 1;
    let mut sum = 0;
    for v in &values[..17] {
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    (31 - sum % 31) % 31 == values[17]
}

#[test]
fn import_doc_is_a_valid_registry_document() {
    let fleet = Fleet::generate(&cfg(200, 11));
    let doc = fleet.import_doc();
    let city = Region::new("440700").unwrap();

    let owners: HashSet<&str> = list(&doc, "owners")
        .iter()
        .map(|o| text(o, "owner_id"))
        .collect();
    assert!(
        (3..=12).contains(&owners.len()),
        "a handful of owners, got {}",
        owners.len()
    );
    assert_eq!(
        owners.len(),
        list(&doc, "owners").len(),
        "owner ids are unique"
    );
    for o in list(&doc, "owners") {
        OwnerId::new(text(o, "owner_id")).unwrap();
        assert!(
            credit_code_ok(text(o, "credit_code")),
            "{}",
            text(o, "credit_code")
        );
        assert!(city.covers(&Region::new(text(o, "region")).unwrap()));
        for key in ["name", "contact", "phone"] {
            assert!(!text(o, key).is_empty());
        }
    }
    let maintainers: HashSet<&str> = list(&doc, "maintainers")
        .iter()
        .map(|m| text(m, "maintainer_id"))
        .collect();
    assert!(!maintainers.is_empty());
    for m in list(&doc, "maintainers") {
        MaintainerId::new(text(m, "maintainer_id")).unwrap();
        assert!(credit_code_ok(text(m, "credit_code")));
        assert!(is_date(text(m, "licence_expires")));
    }

    let mut equipment = HashSet::new();
    let mut counties = BTreeSet::new();
    for e in list(&doc, "equipment") {
        let id = text(e, "equipment_id");
        EquipmentId::new(id).unwrap();
        assert!(equipment.insert(id), "duplicate equipment {id}");
        let category = text(e, "category");
        assert!(CATEGORIES.contains(&category));
        assert_eq!(category, "elevator");
        assert_eq!(text(e, "status"), "in_use");
        assert!(owners.contains(text(e, "owner_id")), "unknown owner in {e}");
        assert!(
            maintainers.contains(text(e, "maintainer_id")),
            "unknown maintainer in {e}"
        );
        let region = Region::new(text(e, "region")).unwrap();
        assert!(
            city.covers(&region) && region != city,
            "{region:?} is not a county of the city"
        );
        counties.insert(region);
        assert!(is_date(text(e, "next_inspection")) && is_date(text(e, "last_maintenance")));
        assert!(!text(e, "reg_code").is_empty() && !text(e, "address").is_empty());
        let (lat, lon) = (e["lat"].as_f64().unwrap(), e["lon"].as_f64().unwrap());
        assert!((21.0..24.0).contains(&lat) && (112.0..115.0).contains(&lon));
        let speed = e["params"]["rated_speed_mps"].as_f64().unwrap();
        assert!((1.0..=2.5).contains(&speed), "rated speed {speed}");
        let floors = e["params"]["floors"].as_array().unwrap();
        let (lo, hi) = (floors[0].as_i64().unwrap(), floors[1].as_i64().unwrap());
        assert!((-5..=1).contains(&lo) && hi > lo + 5, "floors {lo}..{hi}");
    }
    assert!(
        counties.len() >= 5,
        "200 elevators spread over the city's counties: {counties:?}"
    );

    let devices = list(&doc, "devices");
    assert_eq!(devices.len(), 200);
    let mut bound = HashSet::new();
    for d in devices {
        let id = text(d, "device_id");
        DeviceId::new(id).unwrap();
        assert!(id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(
            equipment.contains(text(d, "equipment_id")),
            "unknown equipment in {d}"
        );
        assert!(
            bound.insert(text(d, "equipment_id")),
            "two devices on one elevator"
        );
        assert_eq!(text(d, "kind"), "elevator");
        assert_eq!(d["enabled"], true);
        assert_eq!(d["report_interval_s"], 30);
    }
    let ids: Vec<&str> = devices.iter().map(|d| text(d, "device_id")).collect();
    assert_eq!(fleet.device_ids(), ids);
    assert_eq!(fleet.len(), 200);
}

#[test]
fn a_seed_always_makes_the_same_fleet() {
    let a = Fleet::generate(&cfg(60, 5));
    let b = Fleet::generate(&cfg(60, 5));
    assert_eq!(a.import_doc(), b.import_doc());
    assert_eq!(a.planned_faults(), b.planned_faults());
    let c = Fleet::generate(&cfg(60, 6));
    assert_ne!(a.import_doc(), c.import_doc());
    assert_eq!(Fleet::generate(&cfg(1, 5)).device_ids().len(), 1);
    assert!(Fleet::generate(&cfg(0, 5)).is_empty());
}

#[test]
fn other_regions_and_fault_shares() {
    let fleet = Fleet::generate(&FleetConfig {
        devices: 40,
        region: "440305".into(),
        fault_fraction: 0.25,
        ..cfg(40, 3)
    });
    for e in list(&fleet.import_doc(), "equipment") {
        assert_eq!(text(e, "region"), "440305");
        assert!(text(e, "address").starts_with("深圳市南山区"));
    }
    let faults = fleet.planned_faults();
    assert_eq!(faults.len(), 10);
    let ids: HashSet<String> = fleet.device_ids().into_iter().collect();
    assert!(
        faults
            .iter()
            .all(|f| ids.contains(&f.device_id) && f.after_s >= 60.0)
    );
    let rules: HashSet<&str> = faults.iter().map(|f| f.kind.rule()).collect();
    assert!(rules.contains("elevator.trapped") && rules.len() == 5);

    let unknown = Fleet::generate(&FleetConfig {
        region: "510100".into(),
        ..cfg(30, 3)
    });
    let sichuan = Region::new("510100").unwrap();
    for e in list(&unknown.import_doc(), "equipment") {
        assert!(sichuan.covers(&Region::new(text(e, "region")).unwrap()));
        assert!(
            e.get("lat").is_none(),
            "no made-up coordinates for an unknown city"
        );
    }
}

#[tokio::test]
async fn run_refuses_a_fleet_without_secrets_and_stops_on_request() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let fleet = Fleet::generate(&cfg(3, 1));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut secrets: HashMap<String, String> = fleet
        .device_ids()
        .into_iter()
        .map(|id| (id, "s".to_owned()))
        .collect();
    let missing = fleet.device_ids()[2].clone();
    secrets.remove(&missing);
    let err = vigil_simulator::run(
        fleet.clone(),
        addr,
        secrets.clone(),
        Arc::new(SimStats::default()),
        rx,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SimError::MissingSecret { ref device } if *device == missing),
        "{err}"
    );

    // Already asked to stop: returns without connecting anywhere.
    secrets.insert(missing, "s".into());
    let (_tx, rx) = tokio::sync::watch::channel(true);
    let stats = Arc::new(SimStats::default());
    vigil_simulator::run(fleet, addr, secrets, Arc::clone(&stats), rx)
        .await
        .unwrap();
    assert_eq!(stats.snapshot().published, 0);
}

#[tokio::test]
async fn load_checks_its_arguments() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let secrets: HashMap<String, String> = [("EL1".to_owned(), "a".to_owned())].into();
    let err = vigil_simulator::load(
        LoadConfig {
            devices: 2,
            ..LoadConfig::default()
        },
        addr,
        secrets.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::NotEnoughDevices {
                wanted: 2,
                available: 1
            }
        ),
        "{err}"
    );
    let err = vigil_simulator::load(
        LoadConfig {
            devices: 1,
            rate_hz: 0.0,
            ..LoadConfig::default()
        },
        addr,
        secrets,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::InvalidConfig {
                field: "rate_hz",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_whole_fleet_has_every_kind_bound_to_its_registry_records() {
    let all = FleetConfig {
        rides: 5,
        ropeways: 2,
        cameras: 12,
        stations: 4,
        fault_fraction: 1.0,
        ..cfg(40, 9)
    };
    let fleet = Fleet::generate(&all);
    let doc = fleet.import_doc();
    let ids = |key: &str, field: &str| -> HashSet<String> {
        list(&doc, key)
            .iter()
            .map(|v| text(v, field).to_owned())
            .collect()
    };
    let owners = ids("owners", "owner_id");
    let equipment = ids("equipment", "equipment_id");
    let stations = ids("stations", "station_id");
    assert_eq!(stations.len(), 4);
    for s in list(&doc, "stations") {
        assert!(owners.contains(text(s, "owner_id")));
    }
    for p in list(&doc, "persons") {
        assert!(owners.contains(text(p, "employer_id")));
        assert_eq!(p["certificates"][0]["kind"], "filling");
    }
    let cylinders = list(&doc, "cylinders");
    assert!(cylinders.len() >= 4 * 32);
    assert!(
        cylinders
            .iter()
            .all(|c| stations.contains(text(c, "station_id")))
    );
    assert!(cylinders.iter().any(|c| text(c, "status") == "scrapped"));
    let categories: BTreeSet<&str> = list(&doc, "equipment")
        .iter()
        .map(|e| text(e, "category"))
        .collect();
    assert_eq!(
        categories,
        BTreeSet::from(["amusement_ride", "elevator", "passenger_ropeway"])
    );
    let mut kinds = BTreeSet::new();
    for d in list(&doc, "devices") {
        let bound = match (d.get("equipment_id"), d.get("station_id")) {
            (Some(e), None) => equipment.contains(e.as_str().unwrap()),
            (None, Some(s)) => stations.contains(s.as_str().unwrap()),
            _ => false,
        };
        assert!(bound, "{d}");
        kinds.insert(text(d, "kind"));
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["elevator", "filling", "ride", "video"])
    );
    assert_eq!(fleet.len(), 40 + 7 + 12 + 4);
    assert_eq!(fleet.machines().len(), fleet.len());

    // Every device faulty (fraction 1): each kind's faults, each for a rule.
    let faults = fleet.planned_faults();
    assert_eq!(faults.len(), fleet.len());
    let rules: BTreeSet<&str> = faults.iter().map(|f| f.kind.rule()).collect();
    for prefix in ["elevator.", "ride.", "video.", "filling."] {
        assert!(rules.iter().any(|r| r.starts_with(prefix)), "{rules:?}");
    }
    // Scale faults name the station, not an equipment.
    assert!(faults.iter().any(|f| stations.contains(&f.equipment_id)));

    // Adding the other kinds leaves the elevators as they were.
    let alone = Fleet::generate(&FleetConfig {
        fault_fraction: 1.0,
        ..cfg(40, 9)
    });
    let elevators = |doc: &Value| -> Vec<Value> {
        list(doc, "equipment")
            .iter()
            .filter(|e| e["category"] == "elevator")
            .cloned()
            .collect()
    };
    assert_eq!(elevators(&alone.import_doc()), elevators(&doc));
}
