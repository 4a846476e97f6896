//! `registry.maintenance_unverified` reads the store's telemetry around a
//! maintenance record with SQL: its shipped scenario on this target's store.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_records_are_checked_against_the_stored_telemetry() {
    let engine = Vigil::start_with_config(QUOTA_OFF).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let file =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("scenarios/registry/maintenance_unverified.toml");
    let args = vec![
        "sim".to_owned(),
        "--scenario".into(),
        file.display().to_string(),
        "--check".into(),
        "--run-id".into(),
        format!("P{:X}", now_ms() % 0xFFFF),
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
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        out.status.success(),
        "{}\n{report:#}",
        String::from_utf8_lossy(&out.stdout)
    );
    let expected = report["scenarios"][0]["expected"].as_array().unwrap();
    assert_eq!(expected.len(), 2);
    assert!(expected.iter().all(|o| o["status"] == "ok"), "{report:#}");
}
