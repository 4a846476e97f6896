use std::path::Path;

use chrono::NaiveDate;

use super::*;

const OK: &str = r#"
name = "demo"
tag = "DEMO"
duration_s = 120
speed = 4

[rules."filling.records_missing"]
for_s = 30

[[device]]
name = "car"
kind = "elevator"
equipment = { next_inspection = "today+10", params = { rated_load_kg = 630 } }

[[device]]
name = "cam"
kind = "camera"
on = "car"

[[device]]
name = "scale"
kind = "scale"
record = { report_interval_s = 60 }
rules = { "filling.records_missing" = { for_s = 20 } }

[[registry.persons]]
person_id = "W{tag}1"
name = "W"
employer_id = "{maintainer:car}"

[[step]]
at_s = 10
device = "car"
fault = "trapped"
expect = ["elevator.trapped"]
clears = true

[[step]]
at_s = 20
device = "car"
set = { limit = "top" }
for_s = 2

[[step]]
at_s = 30
device = "scale"
send = { stream = "filling", cylinder_code = "{cylinder:scale}", operator_id = "{operator:scale}", medium = "LPG", tare_kg = 16.0, net_kg = 4.0, started_ms = "{ts-60}", result = "ok" }
ts_offset_s = -60

[[step]]
at_s = 40
device = "car"
hold_s = 5
release_at_s = 60

[[step]]
at_s = 50
device = "car"
maintenance = { done_at_s = 20, person = "W{tag}1" }
"#;

fn parse(text: &str) -> Result<Scenario, SimError> {
    Scenario::parse(text, Path::new("s.toml"))
}

/// The `file:line:column: message` of a refused scenario.
fn refused(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()
}

#[test]
fn a_documented_scenario_parses_into_devices_and_steps() {
    let s = parse(OK).unwrap();
    assert_eq!(
        (s.name.as_str(), s.tag.as_str(), s.speed),
        ("demo", "DEMO", 4.0)
    );
    assert_eq!((s.duration_ms, s.settle_ms), (120_000, 10_000));
    assert_eq!(s.devices.len(), 3);
    assert_eq!(s.devices[1].on, Some(0));
    assert_eq!(s.steps.len(), 5);
    assert!(matches!(
        s.steps[0].action,
        Action::Fault(FaultKind::Trapped)
    ));
    assert!(s.steps[0].clears);
    assert_eq!(s.steps[0].line, 31, "the [[step]] line");
    assert!(matches!(
        &s.steps[1].action,
        Action::Set {
            for_ms: 2000,
            every_ms: 1000,
            ..
        }
    ));
    assert!(matches!(
        &s.steps[2].action,
        Action::Send {
            stream: Stream::Filling,
            count: 1,
            ts_offset_ms: -60_000,
            ..
        }
    ));
    assert!(matches!(
        s.steps[3].action,
        Action::Hold {
            for_ms: 5000,
            release_at_ms: 60_000
        }
    ));
    let Action::Maintenance(m) = &s.steps[4].action else {
        panic!("{:?}", s.steps[4].action)
    };
    assert_eq!((m.kind.as_str(), m.confirmed), ("half_month", true));
    assert!(matches!(m.done_at, DoneAt::Offset(20_000)));
    assert_eq!(s.expected_rules().len(), 1);
    assert_eq!(s.wall_ms(), 30_000);
}

#[test]
fn preparing_tags_every_id_binds_cameras_and_expands_macros() {
    let s = parse(OK).unwrap();
    let p = s.prepare("R7", today()).unwrap();
    assert_eq!(p.run_tag, "DEMOR7");
    for d in &p.devices {
        assert!(d.device_id.contains("DEMOR7"), "{d:?}");
        assert!(d.equipment_id.contains("DEMOR7"), "{d:?}");
    }
    let (car, cam, scale) = (
        p.device("car").unwrap(),
        p.device("cam").unwrap(),
        p.device("scale").unwrap(),
    );
    assert_eq!(
        cam.equipment_id, car.equipment_id,
        "the camera watches the car"
    );
    let eq = p.import["equipment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["equipment_id"] == car.equipment_id.as_str())
        .unwrap();
    assert_eq!(eq["next_inspection"], "2026-05-11");
    assert_eq!(eq["params"]["rated_load_kg"], 630);
    assert!(
        eq["params"]["rated_speed_mps"].is_number(),
        "params merged, not replaced"
    );
    let dev = p.import["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == scale.device_id.as_str())
        .unwrap();
    assert_eq!(dev["report_interval_s"], 60);
    let person = p.import["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["person_id"] == "WDEMOR71")
        .unwrap();
    assert_eq!(person["employer_id"], eq["maintainer_id"]);
    // The scenario's override for all its equipment, the device's for its own.
    let rules = &p.rules_file["equipment"];
    assert_eq!(
        rules[&car.equipment_id]["filling.records_missing"]["for_s"].as_integer(),
        Some(30)
    );
    assert_eq!(
        rules[&scale.equipment_id]["filling.records_missing"]["for_s"].as_integer(),
        Some(20)
    );
    assert_eq!(p.expectations.len(), 1);
    assert_eq!(p.expectations[0].equipment_id, car.equipment_id);
    // A scale's macros: a cylinder and an operator of its own station.
    let code = p.expand("{cylinder:scale}", today());
    assert!(code.starts_with("LPG") && code.contains("DEMOR7"), "{code}");
    let op = p.expand("{operator:scale}", today());
    assert!(op.starts_with('P') && op.contains("DEMOR7"), "{op}");
}

#[test]
fn the_device_clock_starts_in_the_past_and_meets_the_wall_at_the_end() {
    let t = Timeline::new(1_000_000, 120_000, 4.0);
    assert_eq!(t.device_start, 1_000_000 - 90_000);
    assert_eq!(t.device_at(1_000_000 + 30_000), 1_000_000 + 30_000);
    assert_eq!(t.wall_of(60_000), 1_000_000 + 15_000);
    let same = Timeline::new(5, 1000, 1.0);
    assert_eq!((same.device_start, same.device_at(105)), (5, 105));
}

#[test]
fn mistakes_are_refused_with_file_line_and_column() {
    let base = "tag = \"T\"\nduration_s = 60\n[[device]]\nname = \"car\"\nkind = \"elevator\"\n";
    let cases = [
        (
            "tag = \"T\"\nduration_s = 60\nspeed = \"fast\"\n",
            "s.toml:3:9:",
            "invalid type",
        ),
        (
            "tag = \"T\"\nduration_s = 60\nspeeed = 2\n",
            "s.toml:3:1:",
            "unknown field `speeed`",
        ),
        (
            "tag = \"T-1\"\nduration_s = 60\n",
            "s.toml:1:7:",
            "letters and digits",
        ),
        (
            "tag = \"T\"\nduration_s = 60\n",
            "s.toml:1:1:",
            "at least one [[device]]",
        ),
        (
            &format!("{base}[[step]]\nat_s = 1\ndevice = \"lift\"\n"),
            "s.toml:8:10:",
            "no [[device]] named \"lift\"",
        ),
        (
            &format!("{base}[[step]]\nat_s = 90\ndevice = \"car\"\n"),
            "s.toml:7:8:",
            "within the scenario",
        ),
        (
            &format!("{base}[[step]]\nat_s = 1\ndevice = \"car\"\nfault = \"trapt\"\n"),
            "s.toml:9:9:",
            "no fault \"trapt\"",
        ),
        (
            &format!(
                "{base}[[step]]\nat_s = 1\ndevice = \"car\"\nset = {{ speed_mps = \"fast\" }}\n"
            ),
            "s.toml:9:7:",
            "speed_mps",
        ),
        (
            &format!("{base}[[step]]\nat_s = 1\ndevice = \"car\"\nsend = {{ floor = 1 }}\n"),
            "s.toml:9:8:",
            "needs stream",
        ),
        (
            &format!("{base}[[step]]\nat_s = 1\ndevice = \"car\"\nhold_s = 5\n"),
            "s.toml:9:10:",
            "needs `release_at_s`",
        ),
        (
            &format!(
                "{base}[[step]]\nat_s = 1\ndevice = \"car\"\nsilence_s = 5\nfault = \"trapped\"\n"
            ),
            "s.toml:9:13:",
            "does one thing",
        ),
        (
            &format!("{base}[[device]]\nname = \"cam\"\nkind = \"camera\"\n"),
            "s.toml:8:8:",
            "needs `on`",
        ),
        (
            &format!(
                "{base}[[step]]\nat_s = 1\ndevice = \"car\"\nexpect = [\"Elevator.Trapped\"]\n"
            ),
            "s.toml:9:11:",
            "rule",
        ),
    ];
    for (text, at, says) in cases {
        let e = refused(text);
        assert!(
            e.starts_with(at) && e.contains(says),
            "expected {at} … {says}, got: {e}"
        );
    }
}
