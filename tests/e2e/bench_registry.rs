//! `vigil bench registry --quick`: a smoke run of the real binary. It
//! asserts that every figure is produced, never how fast (benchmarks are
//! read by people, against their baseline, in docs/benchmarks.md).

use std::process::Command;

use serde_json::Value;

#[test]
fn a_quick_registry_bench_produces_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("registry.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "registry", "--quick", "--json"])
        .arg(&json)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Registry at province size"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for size in ["baseline", "province"] {
        let run = &report[size];
        for key in [
            "equipment",
            "devices",
            "owners",
            "maintainers",
            "import_s",
            "import_equipment_per_s",
            "rss_after_mib",
            "peak_rss_mib",
            "disk_mib",
            "open_s",
            "written_per_update",
        ] {
            let v = run[key].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{size}.{key}: {}", run[key]);
        }
        assert_eq!(run["devices"], run["equipment"], "one device each");
        for op in [
            "device_update",
            "token_issue",
            "connect_auth",
            "first_resolve",
        ] {
            for q in ["p50_ms", "p99_ms"] {
                let v = run[op][q].as_f64();
                assert!(v.is_some_and(|v| v > 0.0), "{size}.{op}.{q}: {}", run[op]);
            }
            assert!(run[op]["ops"].as_u64().is_some_and(|n| n > 0));
        }
    }
    let ratios = report["ratios"].as_array().unwrap();
    let figures: Vec<&str> = ratios
        .iter()
        .map(|r| r["figure"].as_str().unwrap())
        .collect();
    for f in [
        "import, equipment/s",
        "device update p50, ms",
        "device update p99, ms",
        "CONNECT check p50, ms",
        "CONNECT check p99, ms",
    ] {
        assert!(figures.contains(&f), "{f} in {figures:?}");
    }
    for r in ratios {
        assert!(r["ratio"].as_f64().is_some_and(f64::is_finite), "{r}");
    }
    // The registries it wrote are gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("vigil-bench-registry-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
