//! Rules as configuration through the real binary: a rule file raises its
//! own alarms from MQTT readings; a broken file is refused on reload (API)
//! with file and line while the running rules go on; SIGHUP loads a new
//! file, whose dropped rules' alarms clear; replay uses the file's rules.

use serde_json::{Value, json};

use crate::harness::*;

const HEAVY: &str = r#"# site rules
[rule."site.heavy_car"]
stream = "elevator"
when = "load_pct > rule.limit_pct"
severity = "major"
limit_pct = 100
"#;

const ANY_LOAD: &str = r#"[rule."site.any_load"]
stream = "elevator"
when = "load_pct > 0"
severity = "warning"
"#;

async fn alarms_of(vigil: &Vigil, rule: &str, state: &str) -> Vec<Value> {
    let (_, body) = vigil.get(&format!("/alarms?state={state}")).await;
    body["alarms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["rule"] == rule)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_is_loaded_refused_on_mistakes_and_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("site.toml");
    std::fs::write(&rules, HEAVY).unwrap();
    std::fs::write(
        dir.path().join("vigil.toml"),
        format!("rules_file = {:?}\n", rules.display().to_string()),
    )
    .unwrap();
    let vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(3)).await);
    let t0 = now_ms() - 60_000;

    let mut d0 = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let seq = d0.send(t0, json!({"load_pct": 120.0})).await;
    d0.wait_ack(seq, 20).await;
    let heavy = eventually(20, "the file's rule raises", || async {
        alarms_of(&vigil, "site.heavy_car", "active").await.pop()
    })
    .await;
    assert_eq!(heavy["equipment_id"], "EQ0000");
    assert_eq!(heavy["severity"], "major");
    assert_eq!(heavy["details"]["load_pct"], 120.0);
    assert_eq!(heavy["details"]["rule.limit_pct"], 100.0);

    // A mistake: refused with the file and line, the running rules stay.
    std::fs::write(&rules, HEAVY.replace("load_pct >", "lod_pct >")).unwrap();
    let (status, body) = vigil.post("/rules/reload", &json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rules");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("site.toml:4:9") && message.contains("lod_pct"),
        "{message}"
    );
    assert_eq!(
        vigil
            .metric("vigil_rule_reloads_total{result=\"refused\"}")
            .await,
        1.0
    );
    let mut d1 = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let seq = d1.send(t0 + 1_000, json!({"load_pct": 130.0})).await;
    d1.wait_ack(seq, 20).await;
    eventually(20, "the old rule still evaluates", || async {
        let open = alarms_of(&vigil, "site.heavy_car", "active").await;
        (open.len() == 2).then_some(())
    })
    .await;

    // SIGHUP loads a new file: the dropped rule's alarms clear, the new
    // rule evaluates.
    std::fs::write(&rules, ANY_LOAD).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &vigil.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually(20, "SIGHUP reloads", || async {
        (vigil
            .metric("vigil_rule_reloads_total{result=\"ok\"}")
            .await
            == 1.0)
            .then_some(())
    })
    .await;
    eventually(20, "the dropped rule's alarms clear", || async {
        let cleared = alarms_of(&vigil, "site.heavy_car", "cleared").await;
        (cleared.len() == 2).then_some(())
    })
    .await;
    let mut d2 = Device::connect(vigil.mqtt, "DEV0002", &secrets["DEV0002"])
        .await
        .unwrap();
    let seq = d2.send(t0 + 2_000, json!({"load_pct": 10.0})).await;
    d2.wait_ack(seq, 20).await;
    // Every car's latest sample is judged by the new rule, not only new ones.
    let live = eventually(20, "the new rule raises on all three cars", || async {
        let open = alarms_of(&vigil, "site.any_load", "active").await;
        (open.len() == 3).then_some(open)
    })
    .await;
    let live = live
        .into_iter()
        .find(|a| a["equipment_id"] == "EQ0002")
        .unwrap();

    // Replay runs the running rules, defined ones included: the same alarm.
    // (The window holds only EQ0002's reading.)
    let window = json!({"from": t0 + 1_500, "to": now_ms() + 1_000});
    let (status, replayed) = vigil.post("/rules/replay", &window).await;
    assert_eq!(status, 200, "{replayed}");
    let again: Vec<&Value> = replayed["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "site.any_load")
        .collect();
    assert_eq!(again.len(), 1, "{replayed}");
    assert_eq!(
        (&again[0]["equipment_id"], &again[0]["raised_at"]),
        (&live["equipment_id"], &live["raised_at"])
    );

    // `vigil rules check` says the same as the reload did, and exits 1.
    std::fs::write(&rules, HEAVY.replace("load_pct >", "lod_pct >")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "check"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("site.toml:4:9") && err.contains("lod_pct"),
        "{err}"
    );
    std::fs::write(&rules, ANY_LOAD).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "check"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("site.any_load"));
}
