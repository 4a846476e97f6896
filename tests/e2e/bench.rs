//! `vigil bench sql|store|ingest|connections --quick` and `vigil bench all
//! --quick`: smoke runs that every figure is produced. No time is asserted (docs/benchmarks.md
//! holds the figures of full runs).

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str], json: &std::path::Path) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("vigil runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "vigil bench {args:?} failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = serde_json::from_slice(&std::fs::read(json).expect("the JSON report"))
        .expect("the report is JSON");
    (report, stderr)
}

#[test]
fn the_sql_bench_gives_every_query_for_both_principals() {
    let dir = tempfile::tempdir().unwrap();
    let (report, stderr) = bench(&["sql", "--quick"], &dir.path().join("sql.json"));
    assert!(
        report["data"]["readings"].as_u64().unwrap() > 10_000,
        "{report}"
    );
    assert!(
        report["data"]["alarm_changes"].as_u64().unwrap() > 0,
        "{report}"
    );
    let queries = report["queries"].as_array().unwrap();
    let ids: std::collections::BTreeSet<&str> =
        queries.iter().map(|q| q["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(queries.len(), 10, "each query as admin and as analyst");
    let duckdb = !report["duckdb"].is_null();
    if !duckdb {
        // Said out loud, never silently.
        assert!(stderr.contains("WITHOUT DuckDB"), "{stderr}");
        assert!(report["duckdb_missing"].is_string(), "{report}");
    }
    for q in queries {
        let v = &q["vigil"];
        assert!(v["warm_median_ms"].as_f64().is_some(), "{q}");
        assert!(v["rows"].as_u64().is_some(), "{q}");
        if q["principal"] == "admin" {
            assert!(v["cold_ms"].as_f64().is_some(), "{q}");
        }
        if duckdb {
            assert!(q["duckdb"]["warm_median_ms"].as_f64().is_some(), "{q}");
            assert!(q["ratio_warm"].as_f64().is_some(), "{q}");
            assert_eq!(q["rows_match"], true, "both engines give as many rows: {q}");
        }
    }
    // The analyst sees one city: never more rows than the admin.
    for id in &ids {
        let rows = |p: &str| {
            queries
                .iter()
                .find(|q| q["id"] == *id && q["principal"] == p)
                .and_then(|q| q["vigil"]["rows"].as_u64())
                .unwrap()
        };
        assert!(rows("analyst") <= rows("admin"), "{id}");
    }
}

#[test]
fn the_store_bench_gives_wal_and_copy_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = bench(&["store", "--quick"], &dir.path().join("store.json"));
    let wal = report["wal"].as_array().unwrap();
    assert_eq!(wal.len(), 3, "{report}");
    for w in wal {
        assert!(w["ratio"].as_f64().is_some_and(|r| r > 0.0), "{w}");
    }
    let copy = &report["copy"];
    assert!(
        copy["median_ratio_csv"].as_f64().is_some_and(|r| r > 0.0),
        "{copy}"
    );
    assert_eq!(copy["rounds"].as_array().unwrap().len(), 1);
}

#[test]
fn the_ingest_bench_gives_ceilings_ratios_and_alarm_latencies() {
    // Needs Debian's mosquitto and mosquitto-clients (the baseline).
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = bench(&["ingest", "--quick"], &dir.path().join("ingest.json"));
    let positive = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite());
    for broker in ["mosquitto", "rumqttd", "vigil"] {
        let c = &report[broker];
        assert!(positive(&c["ceiling_per_s"]), "{broker}: {c}");
        assert!(c["limited_by"].is_string(), "{broker}: {c}");
        let steps = c["steps"].as_array().unwrap();
        assert!(!steps.is_empty(), "{broker}: {c}");
        for s in steps {
            assert!(s["sent"].as_u64().unwrap() > 0, "{broker}: {s}");
            let (p50, p99, p999) = (
                s["ack_ms_p50"].as_f64().unwrap(),
                s["ack_ms_p99"].as_f64().unwrap(),
                s["ack_ms_p999"].as_f64().unwrap(),
            );
            assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{broker}: {s}");
            // What a message cost each side, mid-step (at these rates a
            // few clock ticks: present and sane, not compared).
            let cpu = &s["cpu"];
            for k in ["broker_us_per_msg", "load_us_per_msg", "broker_cores"] {
                let x = cpu[k].as_f64().unwrap_or(-1.0);
                assert!(x >= 0.0 && x.is_finite(), "{broker} {k}: {s}");
            }
            let busy = cpu["machine_busy"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&busy), "{broker}: {s}");
        }
        let spent: f64 = steps
            .iter()
            .map(|s| s["cpu"]["broker_us_per_msg"].as_f64().unwrap())
            .sum();
        assert!(spent > 0.0, "{broker} used no CPU at all: {c}");
    }
    let cpu = &report["cpu_per_msg"];
    assert!(positive(&cpu["at_offered_per_s"]), "{report}");
    assert!(positive(&cpu["vigil_us"]), "{report}");
    // The Mosquitto relay's subscriber got the messages.
    assert!(
        report["mosquitto"]["steps"][0]["relayed"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["mosquitto"]["ack"], "puback");
    for ratio in ["vigil_over_mosquitto", "vigil_over_rumqttd"] {
        assert!(positive(&report[ratio]), "{ratio}: {report}");
    }
    let alarms = &report["alarm_latency"];
    assert!(positive(&alarms["load_per_s"]), "{alarms}");
    for feed in ["sse", "mqtt"] {
        let p = &alarms[feed];
        assert!(p["timed"].as_u64().unwrap() > 0, "{feed}: {p}");
        let (p50, p99, p999) = (
            p["p50_ms"].as_f64().unwrap(),
            p["p99_ms"].as_f64().unwrap(),
            p["p999_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{feed}: {p}");
    }
    let (ack50, ack99) = (
        alarms["device_ack_ms_p50"].as_f64().unwrap(),
        alarms["device_ack_ms_p99"].as_f64().unwrap(),
    );
    assert!(ack50 > 0.0 && ack50 <= ack99, "{alarms}");
    assert!(report["machine"]["cores"].as_u64().unwrap() > 0);
}

#[test]
fn the_connections_bench_gives_held_connections_and_memory_against_mosquitto() {
    // Needs Debian's mosquitto and mosquitto-clients (the baseline).
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = bench(
        &["connections", "--quick"],
        &dir.path().join("connections.json"),
    );
    let tried = report["tried"].as_u64().unwrap();
    assert_eq!(tried, 200, "{report}");
    assert!(report["files"]["soft"].as_u64().unwrap() > tried);
    for broker in ["mosquitto", "vigil"] {
        let h = &report[broker];
        assert_eq!(h["held"].as_u64(), Some(tried), "{broker}: {h}");
        let sent = h["sent"].as_u64().unwrap();
        assert!(
            sent > 0 && h["acked"].as_u64() == Some(sent),
            "{broker}: {h}"
        );
        assert_eq!(h["errors"].as_u64(), Some(0), "{broker}: {h}");
        let (idle, held) = (
            h["rss_idle_mib"].as_f64().unwrap(),
            h["rss_held_mib"].as_f64().unwrap(),
        );
        assert!(idle > 0.0 && held >= idle, "{broker}: {h}");
        assert!(h["kib_per_connection"].as_f64().is_some(), "{broker}: {h}");
        let (idle, held) = (
            h["anon_idle_mib"].as_f64().unwrap(),
            h["anon_held_mib"].as_f64().unwrap(),
        );
        assert!(idle > 0.0 && held >= idle, "{broker}: {h}");
    }
    assert_eq!(report["vigil_held_over_mosquitto"].as_f64(), Some(1.0));
    assert!(report["vigil_memory_over_mosquitto"].as_f64().is_some());
}

#[test]
fn the_suite_runs_each_mode_in_turn_and_sums_up_their_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "bench",
            "all",
            "--quick",
            "--only",
            "store,connections",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .expect("vigil runs");
    assert!(
        out.status.success(),
        "vigil bench all failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let suite: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("suite.json")).unwrap()).unwrap();
    let modes = suite["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    // In the suite's own order, whatever the order asked.
    assert_eq!(names, ["store", "connections"]);
    for m in modes {
        assert_eq!(m["ok"], true, "{m}");
        assert!(m["seconds"].as_f64().unwrap() > 0.0, "{m}");
        let json = std::path::Path::new(m["json"].as_str().unwrap());
        assert!(json.exists(), "{m}");
        assert!(!m["ratios"].as_array().unwrap().is_empty(), "{m}");
    }
    let ratios: Vec<&str> = modes[1]["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert!(ratios.contains(&"vigil_held_over_mosquitto"), "{ratios:?}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("| connections | ok |"), "{summary}");
}

#[test]
fn the_rules_bench_gives_readings_per_core_state_per_device_and_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = bench(&["rules", "--quick"], &dir.path().join("rules.json"));
    assert_eq!(report["devices"].as_u64(), Some(2_000), "{report}");
    for key in [
        "readings_per_cpu_s",
        "baseline_readings_per_cpu_s",
        "rss_bytes_per_device",
        "alarm_changes",
    ] {
        assert!(report[key].as_u64().unwrap() > 0, "{key}: {report}");
    }
    let ratio = report["engine_over_baseline_time_ratio"].as_f64().unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "{report}");
    assert_eq!(report["summary"].as_str().unwrap().len(), 16);
}
