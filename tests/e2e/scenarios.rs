//! The shipped scenarios (`scenarios/`) through the real binaries: `vigil
//! sim --check` against a live `vigil run`, as a trainer would run them.
//! Every rule id of the catalogue must be expected by some scenario and
//! come; a scenario that expects the wrong alarm fails the check; a
//! scenario file with a mistake is refused with its file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("vigil runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn shipped() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("scenarios")
}

/// `vigil sim --check` of `scenarios` against `engine`; its exit and report.
async fn check(engine: &Vigil, scenarios: &Path, run_id: &str, json: &Path) -> (Output, Value) {
    let args: Vec<String> = vec![
        "sim".into(),
        "--scenario".into(),
        scenarios.display().to_string(),
        "--check".into(),
        "--run-id".into(),
        run_id.into(),
        "--mqtt".into(),
        engine.mqtt.to_string(),
        "--url".into(),
        format!("http://{}", engine.http),
        "--token".into(),
        TOKEN.into(),
        "--json".into(),
        json.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        vigil(&refs)
    })
    .await
    .unwrap();
    let report = std::fs::read(json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

/// A run id of letters and digits, new for every test run.
fn run_id(prefix: &str) -> String {
    format!("{prefix}{:X}", now_ms() % 0xFFFF)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_scenario_passes_against_a_live_engine_and_covers_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("E");
    // The overrides the scenarios need (filling.records_missing in 20 s),
    // for this run's equipment only, loaded by the engine like any rule file.
    let rules = dir.path().join("rules.toml");
    let out = vigil(&[
        "sim",
        "--scenario",
        &shipped().display().to_string(),
        "--run-id",
        &run,
        "--rules-out",
        &rules.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let engine = Vigil::start_with_config(&format!(
        "rules_file = {:?}\n{QUOTA_OFF}",
        rules.display().to_string()
    ))
    .await;

    let json = dir.path().join("report.json");
    let (out, report) = check(&engine, &shipped(), &run, &json).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report["passed"], true, "{report:#}");

    // Every rule id of the catalogue is expected by a scenario, and came.
    let mut covered = BTreeSet::new();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 44, "{} scenarios", scenarios.len());
    for s in scenarios {
        assert!(s["unexpected"].as_array().unwrap().is_empty(), "{s:#}");
        // Healthy twins are part of every scenario.
        assert!(s["devices"].as_array().unwrap().len() >= 2, "{s:#}");
        for o in s["expected"].as_array().unwrap() {
            assert_eq!(o["status"], "ok", "{s:#}");
            covered.insert(o["rule"].as_str().unwrap().to_owned());
        }
    }
    let catalogue: BTreeSet<String> = vigil_rules::catalogue()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    // docs/rules.md lists the same rule ids (its tables are generated from
    // the catalogue; this reads what a reader reads).
    let doc = std::fs::read_to_string(
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("docs/rules.md"),
    )
    .unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(id, _)| id.to_owned()))
        .filter(|id| id.contains('.') && vigil_model::RuleId::new(id).is_ok())
        .collect();
    assert_eq!(documented, catalogue, "docs/rules.md against the catalogue");
    let missing: Vec<&String> = catalogue.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "rules without a passing scenario: {missing:?}"
    );
    // The new rule and the fixed ones are among them.
    for rule in [
        "registry.maintenance_unverified",
        "ride.no_daily_check",
        "registry.certificate_expired",
        "filling.overfill",
    ] {
        assert!(covered.contains(rule), "{rule}");
    }
    // The overfill came from the LPG table over a wrong registry value.
    let overfill = scenarios
        .iter()
        .find(|s| s["name"] == "filling.overfill")
        .unwrap();
    let id = overfill["expected"][0]["alarm_id"].as_str().unwrap();
    let alarm: Value = engine
        .client
        .get(format!("http://{}/api/v1/alarms/{id}", engine.http))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alarm["details"]["limit_from"], "model_table", "{alarm:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_expecting_the_wrong_alarm_fails_the_check_and_says_why() {
    let engine = Vigil::start_with_config(QUOTA_OFF).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.toml");
    // The limit switch trips, but the file expects the safety circuit.
    std::fs::write(
        &file,
        r#"
name = "wrong expectation"
tag = "WRNG"
duration_s = 30
speed = 2
settle_s = 5

[[device]]
name = "car"
kind = "elevator"

[[step]]
at_s = 10
device = "car"
set = { limit = "top" }
for_s = 2
expect = ["elevator.safety_circuit_open"]
"#,
    )
    .unwrap();
    let json = dir.path().join("report.json");
    let (out, report) = check(&engine, &file, &run_id("W"), &json).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = &report["scenarios"][0];
    assert_eq!(report["passed"], false);
    assert_eq!(s["expected"][0]["status"], "missing", "{s:#}");
    assert_eq!(s["expected"][0]["line"], 12, "the [[step]] line");
    assert_eq!(
        s["unexpected"][0]["rule"], "elevator.overtravel_top",
        "{s:#}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MISSING") && stdout.contains("UNEXPECTED"),
        "{stdout}"
    );
}

#[test]
fn scenario_files_with_mistakes_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (body, at, says) in [
        (
            "tag = \"OK\"\nduration_s = 10\nspeed = 0.5\n[[device]]\nname = \"a\"\nkind = \"elevator\"\n",
            ":3:9:",
            "speed",
        ),
        (
            "tag = \"OK\"\nduration_s = 10\n[[device]]\nname = \"a\"\nkind = \"tram\"\n",
            ":5:8:",
            "kind \"tram\"",
        ),
        (
            "tag = \"OK\"\nduration_s = 10\n[[device]]\nname = \"a\"\nkind = \"elevator\"\n[[step]]\nat_s = 1\ndevice = \"a\"\nfault = \"pump_wear\"\n",
            ":9:9:",
            "for a scale",
        ),
        (
            "tag = \"OK\"\nduration_s = 10\n[[device]]\nname = \"a\"\nkind = \"elevator\"\n[[step]]\nat_s = 1\ndevice = \"a\"\nexpect = [\"elevator.trapt\"]\n",
            ":6:1:",
            "no built-in rule",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, body).unwrap();
        let out = vigil(&[
            "sim",
            "--scenario",
            &file.display().to_string(),
            "--dry-run",
        ]);
        assert!(!out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("bad.toml{at}")) && stderr.contains(says),
            "expected bad.toml{at} … {says}:\n{stderr}"
        );
    }
}
