//! `vigil bench compare`: a smoke run of the real binary against itself. It
//! asserts that every figure of the mode gets a ratio and a verdict, never
//! how fast anything is.

use std::process::Command;

use serde_json::Value;

#[test]
fn comparing_the_binary_with_itself_gives_a_ratio_for_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("compare.json");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let out = Command::new(vigil)
        .args(["bench", "compare", "--rounds", "1", "--json"])
        .arg(&json)
        .arg("--baseline")
        .arg(vigil)
        .args(["store", "--quick", "--no-postgres"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Current vs baseline binary"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let figures = report["figures"].as_array().unwrap();
    // The WAL bench reports three group sizes, each with its rate and its
    // share of the raw disk's.
    for group in [1, 64, 4096] {
        for figure in ["store_records_per_s", "ratio"] {
            let name = format!("wal[group={group}].{figure}");
            let c = figures
                .iter()
                .find(|c| c["figure"] == name.as_str())
                .unwrap_or_else(|| panic!("no {name} in {figures:?}"));
            assert_eq!(c["mode"], "store --quick --no-postgres", "{c}");
            assert_eq!(c["direction"], "higher", "{c}");
            assert!(c["ratio"].as_f64().is_some_and(|r| r > 0.0), "{c}");
            assert!(
                ["regression", "improvement", "same"].contains(&c["verdict"].as_str().unwrap()),
                "{c}"
            );
        }
    }
    // Sizes describe the run, the raw disk is the machine: compared, not judged.
    for name in ["wal[group=64].records", "wal[group=64].raw_records_per_s"] {
        let c = figures.iter().find(|c| c["figure"] == name).unwrap();
        assert!(c["ratio"].as_f64().is_some_and(|r| r > 0.0), "{c}");
        assert_eq!(c["verdict"], "not_judged", "{c}");
    }
    let records = figures
        .iter()
        .find(|c| c["figure"] == "wal[group=64].records")
        .unwrap();
    assert_eq!(records["ratio"], 1.0);
}
