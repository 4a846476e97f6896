//! The registry as a library: import, validation, secrets, resolve, persistence.

use std::sync::Arc;

use serde_json::{Value, json};
use vigil_model::{DeviceId, EquipmentId, OwnerId, Region, Resolution};
use vigil_registry::auth::{Authenticator, Principal};
use vigil_registry::{ImportDoc, Registry, RegistryError, Role, TokenPolicy, TokenRequest};

use crate::common::*;

fn secret_of(report: &vigil_registry::ImportReport, device: &str) -> String {
    report
        .devices
        .iter()
        .find(|s| s.device_id.as_str() == device)
        .map(|s| s.secret.clone())
        .unwrap_or_else(|| panic!("no secret for {device} in {report:?}"))
}

#[test]
fn import_answers_counts_and_secrets_of_new_devices() {
    let reg = Registry::in_memory();
    let report = reg.import(doc(&example_json())).unwrap();
    assert_eq!(report.counts.owners.created, 2);
    assert_eq!(report.counts.equipment.created, 3);
    assert_eq!(report.counts.devices.created, 5);
    assert_eq!(report.counts.maintenance.created, 1);
    assert_eq!(report.counts.devices.updated, 0);
    assert_eq!(report.devices.len(), 5);
    for s in &report.devices {
        assert_eq!(s.secret.len(), 64, "32 random bytes, hex");
        assert!(s.secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(report.devices[0].secret, report.devices[1].secret);
    assert!(report.secrets_kept.is_empty());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.version, reg.version());
}

/// The rule engine knows an equipment's params unchanged when a reading's
/// context carries the `Arc` it already holds: every device of the
/// equipment shares one copy until the params change.
#[test]
fn devices_of_one_equipment_share_its_params() {
    let reg = Registry::in_memory();
    let mut v = example_json();
    v["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"device_id": "CAM002", "equipment_id": "EL001", "kind": "video"}));
    reg.import(doc(&v)).unwrap();
    let active = |id: &str| match reg.resolve(&DeviceId::new(id).unwrap()) {
        Resolution::Active(ctx) => ctx,
        other => panic!("{id} is active, not {other:?}"),
    };
    let (car, camera) = (active("D001"), active("CAM002"));
    assert!(Arc::ptr_eq(&car.params, &camera.params));
    assert!(!Arc::ptr_eq(&car.params, &active("D002").params));

    let equipment = v["equipment"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["equipment_id"] == "EL001")
        .unwrap();
    equipment["params"]["rated_speed_mps"] = json!(2.5);
    reg.import(doc(&v)).unwrap();
    let (car_now, camera_now) = (active("D001"), active("CAM002"));
    assert_eq!(car_now.param_f64("rated_speed_mps"), Some(2.5));
    assert!(Arc::ptr_eq(&car_now.params, &camera_now.params));
    assert!(!Arc::ptr_eq(&car_now.params, &car.params));
}

#[test]
fn resolve_binds_devices_to_equipment_and_stations() {
    let reg = example_registry();
    let Resolution::Active(ctx) = reg.resolve(&DeviceId::new("D001").unwrap()) else {
        panic!("D001 is active")
    };
    assert_eq!(ctx.binding.equipment_id.as_str(), "EL001");
    assert_eq!(ctx.binding.category, "elevator");
    assert_eq!(ctx.binding.owner_id.as_str(), "OWN001");
    assert_eq!(ctx.binding.region.as_str(), "440703");
    assert_eq!(ctx.kind, "elevator");
    assert_eq!(ctx.report_interval_s, 30, "default interval");
    assert_eq!(ctx.param_f64("rated_speed_mps"), Some(1.75));
    assert_eq!(ctx.floor_range(), Some((-2, 18)));

    let Resolution::Active(ctx) = reg.resolve(&DeviceId::new("D002").unwrap()) else {
        panic!("D002 is active")
    };
    assert_eq!(ctx.report_interval_s, 60);

    let Resolution::Active(scale) = reg.resolve(&DeviceId::new("FS001").unwrap()) else {
        panic!("FS001 is active")
    };
    assert_eq!(
        scale.binding.equipment_id.as_str(),
        "ST001",
        "a station stands in for equipment"
    );
    assert_eq!(scale.binding.category, "filling_station");
    assert_eq!(scale.binding.owner_id.as_str(), "OWN001");
    assert_eq!(scale.binding.region.as_str(), "440703");
    assert_eq!(scale.kind, "filling");
    assert_eq!(
        scale.params.get("working_hours"),
        Some(&json!("08:00-18:00"))
    );

    assert_eq!(
        reg.resolve(&DeviceId::new("CAM001").unwrap()),
        Resolution::Disabled
    );
    assert_eq!(
        reg.resolve(&DeviceId::new("NOPE").unwrap()),
        Resolution::Unknown
    );
}

#[test]
fn each_kind_of_mistake_names_the_entity_and_field() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "bad credit code",
            |d| d["owners"][1]["credit_code"] = json!("91440106MA59C1LQ8"),
            &["owners[1]", "credit_code"],
        ),
        (
            "credit code letter outside the alphabet",
            |d| d["owners"][0]["credit_code"] = json!("91440703MA4UJ8XKZQ"),
            &["owners[0]", "credit_code"],
        ),
        (
            "bad region",
            |d| d["equipment"][2]["region"] = json!("4407"),
            &["equipment[2]", "region"],
        ),
        (
            "bad date",
            |d| d["equipment"][0]["next_inspection"] = json!("2026-5-20"),
            &["equipment[0]", "next_inspection", "YYYY-MM-DD"],
        ),
        (
            "impossible date",
            |d| d["maintainers"][0]["licence_expires"] = json!("2027-02-30"),
            &["maintainers[0]", "licence_expires"],
        ),
        (
            "unknown category",
            |d| d["equipment"][1]["category"] = json!("lift"),
            &["equipment[1]", "category", "lift"],
        ),
        (
            "unknown status",
            |d| d["cylinders"][0]["status"] = json!("retired"),
            &["cylinders[0]", "status"],
        ),
        (
            "unknown device kind",
            |d| d["devices"][3]["kind"] = json!("camera"),
            &["devices[3]", "kind"],
        ),
        (
            "bad device id",
            |d| d["devices"][0]["device_id"] = json!("D-001"),
            &["devices[0]", "device_id"],
        ),
        (
            "missing field",
            |d| {
                d["stations"][0].as_object_mut().unwrap().remove("address");
            },
            &["stations[0]", "address"],
        ),
        (
            "unknown field",
            |d| d["owners"][0]["adress"] = json!("x"),
            &["owners[0]", "adress"],
        ),
        (
            "unknown list",
            |d| d["equipments"] = json!([]),
            &["equipments"],
        ),
        (
            "missing owner",
            |d| d["equipment"][1]["owner_id"] = json!("OWN404"),
            &["equipment[1]", "\"EL002\"", "owner_id", "OWN404"],
        ),
        (
            "missing maintainer",
            |d| d["equipment"][0]["maintainer_id"] = json!("MNT404"),
            &["equipment[0]", "maintainer_id", "MNT404"],
        ),
        (
            "missing equipment",
            |d| d["devices"][2]["equipment_id"] = json!("RIDE404"),
            &["devices[2]", "\"D003\"", "equipment_id"],
        ),
        (
            "missing station",
            |d| d["cylinders"][0]["station_id"] = json!("ST404"),
            &["cylinders[0]", "station_id"],
        ),
        (
            "missing employer",
            |d| d["persons"][1]["employer_id"] = json!("NOBODY"),
            &["persons[1]", "employer_id"],
        ),
        (
            "missing person",
            |d| d["maintenance"][0]["person_id"] = json!("P404"),
            &["maintenance[0]", "person_id"],
        ),
        (
            "duplicate id",
            |d| d["devices"][4]["device_id"] = json!("D001"),
            &["devices[4]", "device_id", "duplicate", "devices[0]"],
        ),
        (
            "device bound twice",
            |d| d["devices"][0]["station_id"] = json!("ST001"),
            &["devices[0]", "station_id"],
        ),
        (
            "device bound nowhere",
            |d| {
                d["devices"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("equipment_id");
            },
            &["devices[1]", "equipment_id"],
        ),
        (
            "filling device on equipment",
            |d| {
                d["devices"][4] =
                    json!({"device_id": "FS001", "equipment_id": "EL001", "kind": "filling"})
            },
            &["devices[4]", "equipment_id"],
        ),
        (
            "zero report interval",
            |d| d["devices"][0]["report_interval_s"] = json!(0),
            &["devices[0]", "report_interval_s"],
        ),
        (
            "latitude out of range",
            |d| d["equipment"][0]["lat"] = json!(122.5),
            &["equipment[0]", "lat"],
        ),
        (
            "floors reversed",
            |d| d["equipment"][0]["params"]["floors"] = json!([18, -2]),
            &["equipment[0]", "params.floors"],
        ),
        (
            "speed not a number",
            |d| d["equipment"][0]["params"]["rated_speed_mps"] = json!("fast"),
            &["equipment[0]", "params.rated_speed_mps"],
        ),
        (
            "bad working hours",
            |d| d["stations"][0]["working_hours"] = json!("8-18"),
            &["stations[0]", "working_hours"],
        ),
        (
            "bad done_at",
            |d| d["maintenance"][0]["done_at"] = json!("yesterday"),
            &["maintenance[0]", "done_at"],
        ),
        (
            "empty name",
            |d| d["owners"][0]["name"] = json!("  "),
            &["owners[0]", "name"],
        ),
        (
            "bad certificate kind",
            |d| d["persons"][0]["certificates"][0]["kind"] = json!("Elevator Maintenance"),
            &["persons[0]", "certificates[0].kind"],
        ),
        (
            "negative capacity",
            |d| d["cylinders"][0]["capacity_l"] = json!(-1.0),
            &["cylinders[0]", "capacity_l"],
        ),
        (
            "station id taken by equipment",
            |d| d["stations"][0]["station_id"] = json!("EL001"),
            &["stations[0]", "station_id"],
        ),
    ];
    for (what, edit, needles) in cases {
        let reg = Registry::in_memory();
        let mut d = example_json();
        edit(&mut d);
        let msg = import_error(&reg, &d);
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{what}: {msg:?} should mention {needle:?}"
            );
        }
        assert_eq!(reg.version(), 0, "{what}: nothing changed");
        assert!(reg.export().owners.is_empty(), "{what}: nothing changed");
    }
}

#[test]
fn a_failed_import_changes_nothing() {
    let reg = example_registry();
    let before = reg.export();
    let version = reg.version();
    let bad = json!({
        "owners": [{"owner_id": "OWN003", "name": "新业主", "credit_code": "91440703MA4UJ8XK2Q", "region": "440703"}],
        "equipment": [
            {"equipment_id": "EL003", "reg_code": "梯X", "category": "elevator", "owner_id": "OWN003", "region": "440703",
             "address": "A", "status": "in_use", "next_inspection": "2026-01-01", "params": {"rated_speed_mps": 1.0, "floors": [1, 5]}},
            {"equipment_id": "EL004", "reg_code": "梯Y", "category": "elevator", "owner_id": "OWN999", "region": "440703",
             "address": "B", "status": "in_use", "next_inspection": "2026-01-01"}
        ],
        "devices": [{"device_id": "D009", "equipment_id": "EL003", "kind": "elevator"}]
    });
    let msg = import_error(&reg, &bad);
    assert!(
        msg.contains("equipment[1]") && msg.contains("owner_id"),
        "{msg}"
    );
    assert_eq!(reg.version(), version);
    assert_eq!(reg.export(), before);
    assert_eq!(
        reg.resolve(&DeviceId::new("D009").unwrap()),
        Resolution::Unknown
    );
    assert!(
        !reg.verify_device_secret("D009", ""),
        "no device was half-created"
    );
}

#[test]
fn references_may_point_forward_within_a_document() {
    // Devices listed before their equipment, equipment before its owner.
    let d = json!({
        "devices": [{"device_id": "D1", "equipment_id": "E1", "kind": "elevator"}],
        "equipment": [{"equipment_id": "E1", "reg_code": "R1", "category": "escalator", "owner_id": "O1", "region": "440703",
                       "address": "A", "status": "stopped", "next_inspection": "2026-01-01"}],
        "owners": [{"owner_id": "O1", "name": "N", "credit_code": "91440703MA4UJ8XK2Q", "region": "440703"}]
    });
    let reg = Registry::in_memory();
    let report = reg.import(doc(&d)).unwrap();
    assert_eq!(report.counts.devices.created, 1);
    assert!(matches!(
        reg.resolve(&DeviceId::new("D1").unwrap()),
        Resolution::Active(_)
    ));
}

#[test]
fn reimport_updates_and_keeps_secrets() {
    let reg = Registry::in_memory();
    let first = reg.import(doc(&example_json())).unwrap();
    let secret = secret_of(&first, "D001");
    let v1 = reg.version();

    let mut d = example_json();
    d["equipment"][0]["status"] = json!("stopped");
    d["devices"][0]["report_interval_s"] = json!(10);
    d["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"device_id": "D004", "equipment_id": "EL002", "kind": "video"}));
    let second = reg.import(doc(&d)).unwrap();

    assert_eq!(second.counts.equipment.updated, 3);
    assert_eq!(second.counts.equipment.created, 0);
    assert_eq!(second.counts.devices.created, 1);
    assert_eq!(second.counts.devices.updated, 5);
    assert_eq!(
        second.counts.maintenance.updated, 1,
        "same key: updated, not duplicated"
    );
    assert_eq!(second.devices.len(), 1, "only the new device gets a secret");
    assert_eq!(second.devices[0].device_id.as_str(), "D004");
    assert_eq!(second.secrets_kept.len(), 5);
    assert!(second.note.contains("keep their secret"), "{}", second.note);
    assert!(second.version > v1);

    assert!(
        reg.verify_device_secret("D001", &secret),
        "old secret still valid"
    );
    assert!(reg.verify_device_secret("D004", &second.devices[0].secret));
    let eq = reg.equipment(&EquipmentId::new("EL001").unwrap()).unwrap();
    assert_eq!(eq.status, vigil_registry::EquipmentStatus::Stopped);
    let Resolution::Active(ctx) = reg.resolve(&DeviceId::new("D001").unwrap()) else {
        panic!()
    };
    assert_eq!(ctx.report_interval_s, 10);
    assert_eq!(reg.export().maintenance.len(), 1);
}

#[test]
fn device_secrets_verify_right_wrong_disabled_unknown() {
    let reg = Registry::in_memory();
    let report = reg.import(doc(&example_json())).unwrap();
    let d001 = secret_of(&report, "D001");
    let cam = secret_of(&report, "CAM001");
    assert!(reg.verify_device_secret("D001", &d001));
    assert!(
        !reg.verify_device_secret("D001", &secret_of(&report, "D002")),
        "another device's secret"
    );
    assert!(!reg.verify_device_secret("D001", ""));
    assert!(!reg.verify_device_secret("D001", &d001[..63]));
    assert!(!reg.verify_device_secret("CAM001", &cam), "disabled device");
    assert!(!reg.verify_device_secret("NOPE", &d001), "unknown device");
    assert!(!reg.verify_device_secret("D 001", &d001), "not a device id");

    // Enabling the device makes its (kept) secret work.
    let mut d = json!({"devices": [example_json()["devices"][3].clone()]});
    d["devices"][0]["enabled"] = json!(true);
    reg.import(doc(&d)).unwrap();
    assert!(reg.verify_device_secret("CAM001", &cam));
    assert!(matches!(
        reg.resolve(&DeviceId::new("CAM001").unwrap()),
        Resolution::Active(_)
    ));
}

#[test]
fn maintenance_advances_last_maintenance() {
    let reg = example_registry();
    let el001 = EquipmentId::new("EL001").unwrap();
    // The example's record (2025-06-16) is newer than its last_maintenance (2025-06-01).
    let eq = reg.equipment(&el001).unwrap();
    assert_eq!(
        eq.last_maintenance.map(|d| d.to_string()),
        Some("2025-06-16".to_owned())
    );
    // An older record does not move it back.
    let older = json!({"maintenance": [{"equipment_id": "EL001", "kind": "quarter", "done_at": "2025-04-01", "person_id": "P001"}]});
    reg.import(doc(&older)).unwrap();
    assert_eq!(
        reg.equipment(&el001)
            .unwrap()
            .last_maintenance
            .map(|d| d.to_string()),
        Some("2025-06-16".to_owned())
    );
    assert_eq!(reg.export().maintenance.len(), 2);
}

#[test]
fn version_bumps_on_every_change() {
    let reg = Registry::in_memory();
    assert_eq!(reg.version(), 0);
    reg.import(doc(&example_json())).unwrap();
    let v1 = reg.version();
    assert!(v1 > 0);
    reg.create_token(
        TokenRequest {
            name: "ops".into(),
            role: Role::Admin,
            regions: vec![],
            owner_id: None,
            expires_in_s: None,
        },
        NOW,
        &TokenPolicy::default(),
    )
    .unwrap();
    assert!(reg.version() > v1);
}

#[test]
fn lookups_for_rules() {
    let reg = example_registry();
    let cyl = reg.cylinder("LPG4407030001").unwrap();
    assert_eq!(cyl.station_id.as_str(), "ST001");
    assert_eq!(cyl.max_fill_kg, 14.9);
    assert!(reg.cylinder("LPG0000").is_none());
    assert!(reg.cylinder("not a code").is_none());
    let p = reg.person("P002").unwrap();
    assert_eq!(p.certificates[0].kind, "filling");
    assert_eq!(
        reg.station("ST001").unwrap().working_hours.as_deref(),
        Some("08:00-18:00")
    );
    let export = reg.export();
    assert_eq!(export.devices.len(), 5);
    let json = serde_json::to_string(&export).unwrap();
    assert!(
        !json.contains("secret") && !json.contains("sha256") && !json.contains("salt"),
        "no secrets in the export"
    );
}

#[test]
fn tokens_carry_their_grant() {
    let reg = Arc::new(example_registry());
    let auth = Authenticator::new(Some("root-token".into()), Arc::clone(&reg), clock());
    let sup = reg
        .create_token(
            TokenRequest {
                name: "jm".into(),
                role: Role::Supervisor,
                regions: vec![Region::new("440700").unwrap()],
                owner_id: None,
                expires_in_s: None,
            },
            NOW,
            &TokenPolicy::default(),
        )
        .unwrap();
    let own = reg
        .create_token(
            TokenRequest {
                name: "wanda".into(),
                role: Role::Owner,
                regions: vec![],
                owner_id: Some(OwnerId::new("OWN001").unwrap()),
                expires_in_s: None,
            },
            NOW,
            &TokenPolicy::default(),
        )
        .unwrap();
    assert!(sup.token.starts_with("vgl_") && sup.token.len() > 60);
    assert_eq!(auth.authenticate("root-token"), Some(Principal::Admin));
    assert_eq!(
        auth.authenticate(&sup.token),
        Some(Principal::Supervisor {
            regions: vec![Region::new("440700").unwrap()]
        })
    );
    assert_eq!(
        auth.authenticate(&own.token),
        Some(Principal::Owner {
            owner_id: OwnerId::new("OWN001").unwrap()
        })
    );
    assert_eq!(auth.authenticate("vgl_0000"), None);
    assert_eq!(auth.authenticate(""), None);
    assert_eq!(
        Authenticator::new(Some(String::new()), Arc::clone(&reg), clock()).authenticate(""),
        None,
        "an empty admin token is no token"
    );

    let bad = |req: TokenRequest, field: &str| {
        let msg = reg
            .create_token(req, NOW, &TokenPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(field), "{msg} should name {field}");
    };
    bad(
        TokenRequest {
            name: "x".into(),
            role: Role::Supervisor,
            regions: vec![],
            owner_id: None,
            expires_in_s: None,
        },
        "regions",
    );
    bad(
        TokenRequest {
            name: "x".into(),
            role: Role::Owner,
            regions: vec![],
            owner_id: None,
            expires_in_s: None,
        },
        "owner_id",
    );
    bad(
        TokenRequest {
            name: "x".into(),
            role: Role::Owner,
            regions: vec![],
            owner_id: Some(OwnerId::new("OWN404").unwrap()),
            expires_in_s: None,
        },
        "owner_id",
    );
    bad(
        TokenRequest {
            name: " ".into(),
            role: Role::Admin,
            regions: vec![],
            owner_id: None,
            expires_in_s: None,
        },
        "name",
    );
}

#[test]
fn principals_see_by_region_and_owner() {
    let jm = Principal::Supervisor {
        regions: vec![Region::new("440700").unwrap()],
    };
    let own = OwnerId::new("OWN001").unwrap();
    let other = OwnerId::new("OWN002").unwrap();
    let r703 = Region::new("440703").unwrap();
    let r106 = Region::new("440106").unwrap();
    assert!(jm.sees_region(&r703) && !jm.sees_region(&r106));
    assert!(jm.sees_equipment(&other, &r703) && !jm.sees_equipment(&own, &r106));
    let owner = Principal::Owner {
        owner_id: own.clone(),
    };
    assert!(owner.sees_equipment(&own, &r106) && !owner.sees_equipment(&other, &r703));
    assert!(!owner.sees_region(&r703));
    assert!(Principal::Admin.sees_equipment(&other, &r106));
    assert_eq!(jm.name(), "supervisor[440700]");
    assert_eq!(owner.name(), "owner[OWN001]");
}

#[test]
fn persistence_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, token, before) = {
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.version(), 0, "a fresh folder is an empty registry");
        let report = reg.import(doc(&example_json())).unwrap();
        let issued = reg
            .create_token(
                TokenRequest {
                    name: "jm".into(),
                    role: Role::Analyst,
                    regions: vec![Region::new("440700").unwrap()],
                    owner_id: None,
                    expires_in_s: None,
                },
                NOW,
                &TokenPolicy::default(),
            )
            .unwrap();
        (secret_of(&report, "D001"), issued.token, reg.export())
    };
    let files = registry_files(dir.path());
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(&secret),
            "{path:?}: the secret itself is never stored"
        );
        assert!(
            !text.contains(&token),
            "{path:?}: the token itself is never stored"
        );
    }

    let reg = Arc::new(Registry::open(dir.path()).unwrap());
    assert_eq!(reg.export(), before);
    assert_eq!(reg.version(), before.version);
    assert!(reg.verify_device_secret("D001", &secret));
    assert!(!reg.verify_device_secret("D001", "wrong"));
    assert!(matches!(
        reg.resolve(&DeviceId::new("FS001").unwrap()),
        Resolution::Active(_)
    ));
    let auth = Authenticator::new(None, Arc::clone(&reg), clock());
    assert_eq!(
        auth.authenticate(&token),
        Some(Principal::Analyst {
            regions: vec![Region::new("440700").unwrap()]
        })
    );
    assert!(
        files.iter().all(|(p, _)| p.extension().is_none()),
        "no temporary files are left: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

/// Every file of the registry's folder in `data`, with its content.
fn registry_files(data: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    std::fs::read_dir(data.join("registry"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    std::fs::write(&path, b"{\"format\": 1, \"version\": 3, \"owners\": [").unwrap();
    let err = Registry::open(dir.path())
        .err()
        .expect("corrupt file refused");
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Well-formed JSON with a dangling reference is corrupt too.
    let mut d = example_json();
    d["format"] = json!(1);
    d["version"] = json!(1);
    d["equipment"][0]["owner_id"] = json!("OWN404");
    std::fs::write(&path, d.to_string()).unwrap();
    let err = Registry::open(dir.path())
        .err()
        .expect("dangling reference refused");
    let msg = err.to_string();
    assert!(
        msg.contains("registry.json") && msg.contains("owner_id"),
        "{msg}"
    );
}

#[test]
fn import_doc_parses_from_json_with_paths() {
    let err = ImportDoc::from_json(b"{\"owners\": [{\"owner_id\": 5}]}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("owners[0].owner_id"), "{err}");
    let err = ImportDoc::from_json(b"{\"owners\": [")
        .unwrap_err()
        .to_string();
    assert!(err.contains("JSON"), "{err}");
    assert_eq!(ImportDoc::from_json(b"{}").unwrap(), ImportDoc::default());
}

#[test]
fn a_max_fill_above_the_lpg_model_table_is_imported_with_a_warning() {
    let reg = Registry::in_memory();
    let mut d = example_json();
    d["cylinders"][0]["model"] = json!("YSP35.5");
    d["cylinders"][0]["max_fill_kg"] = json!(15.5);
    let report = reg.import(doc(&d)).unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert!(
        w.contains("cylinders[0]") && w.contains("15.5") && w.contains("14.9"),
        "{w}"
    );
    // The table's own value, or less, is fine.
    d["cylinders"][0]["max_fill_kg"] = json!(14.9);
    assert!(reg.import(doc(&d)).unwrap().warnings.is_empty());
}

#[test]
fn revocations_and_file_modes_survive_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (kept, revoked) = {
        let reg = Registry::open(&data).unwrap();
        reg.import(doc(&example_json())).unwrap();
        let issue = |name: &str| {
            reg.create_token(
                TokenRequest {
                    name: name.into(),
                    role: Role::Analyst,
                    regions: vec![Region::new("440700").unwrap()],
                    owner_id: None,
                    expires_in_s: Some(3600),
                },
                NOW,
                &TokenPolicy::default(),
            )
            .unwrap()
        };
        let kept = issue("kept");
        let revoked = issue("revoked");
        reg.revoke_token(&revoked.id, NOW + 1000).unwrap();
        (kept, revoked)
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("registry")), 0o700, "the registry's folder");
    for (path, _) in registry_files(&data) {
        assert_eq!(mode(&path), 0o600, "{path:?}: token and secret hashes");
    }

    let reg = Arc::new(Registry::open(&data).unwrap());
    let auth = Authenticator::new(None, Arc::clone(&reg), clock());
    assert!(auth.authenticate(&kept.token).is_some());
    assert_eq!(
        auth.verify(&revoked.token).unwrap_err(),
        vigil_registry::auth::Refusal::Revoked { at: NOW + 1000 }
    );
    let list = reg.tokens(NOW);
    assert_eq!(
        list.iter()
            .map(|t| (t.name.as_str(), t.status.as_str()))
            .collect::<Vec<_>>(),
        [("kept", "active"), ("revoked", "revoked")]
    );
    let later = Authenticator::new(None, Arc::clone(&reg), Arc::new(|| NOW + 3_600_000));
    assert_eq!(
        later.verify(&kept.token).unwrap_err(),
        vigil_registry::auth::Refusal::Expired {
            at: NOW + 3_600_000
        },
        "an hour's token is expired after an hour"
    );
}

#[test]
fn tokens_from_before_expiry_get_a_stable_id_and_keep_working() {
    // SHA-256 hex of the token, as the registry stores it.
    let hash = |t: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(t.as_bytes()))
    };
    let dir = tempfile::tempdir().unwrap();
    let legacy = serde_json::json!({
        "format": 1, "version": 4,
        "tokens": [{"name": "old", "role": "admin", "regions": [], "owner_id": null,
                    "sha256": hash("vgl_legacy"), "created_at": "2024-01-01T00:00:00Z"}]
    });
    std::fs::write(dir.path().join("registry.json"), legacy.to_string()).unwrap();
    let reg = Arc::new(Registry::open(dir.path()).unwrap());
    let auth = Authenticator::new(None, Arc::clone(&reg), clock());
    assert_eq!(auth.authenticate("vgl_legacy"), Some(Principal::Admin));
    let first = reg.tokens(NOW);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].expires_at, None);
    assert_eq!(first[0].status, "active");
    assert!(first[0].id.as_str().starts_with("tok_"));
    let again = Registry::open(dir.path()).unwrap().tokens(NOW);
    assert_eq!(again[0].id, first[0].id, "the same id on every start");
    reg.revoke_token(&first[0].id, NOW).unwrap();
    assert_eq!(auth.authenticate("vgl_legacy"), None);
}

/// Found by fuzzing (registry.import): re-importing equipment with an older
/// `last_maintenance` than a record it already had moved the date back, and
/// the next start (whose load applies the records again) moved it forward:
/// a restart changed the registry.
#[test]
fn a_reimport_does_not_move_last_maintenance_behind_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.import(doc(&example_json())).unwrap();
    let mut again = example_json();
    again.as_object_mut().unwrap().remove("maintenance");
    reg.import(doc(&again)).unwrap();
    let el001 = |r: &Registry| {
        r.equipment(&EquipmentId::new("EL001").unwrap())
            .unwrap()
            .last_maintenance
            .map(|d| d.to_string())
    };
    assert_eq!(
        el001(&reg).as_deref(),
        Some("2025-06-16"),
        "the recorded half-monthly job of 2025-06-16 stands"
    );
    let before = reg.export();
    drop(reg);
    let reopened = Registry::open(dir.path()).unwrap();
    assert_eq!(reopened.export(), before, "a restart changes nothing");
}

/// Found by fuzzing (registry.import): serde_json's default float parser
/// read 1.1775808382603717632e19 back one ULP off, so a restart changed a
/// cylinder's working pressure.
#[test]
fn floats_survive_a_restart_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = example_json();
    v["cylinders"][0]["working_pressure_mpa"] = json!(11775808382603717632u64);
    v["cylinders"][0]["capacity_l"] = json!(35.500000000000014);
    let before = {
        let reg = Registry::open(dir.path()).unwrap();
        reg.import(doc(&v)).unwrap();
        reg.export()
    };
    assert_eq!(Registry::open(dir.path()).unwrap().export(), before);
}
