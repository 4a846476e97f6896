//! Rule replay: the stored history through a fresh rule engine gives the
//! same alarms as live evaluation did, and a changed threshold can be tried
//! on it without touching the live alarms.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::*;

/// What must agree between live and replay: rule, equipment, times, count.
fn summary(alarms: &[Value]) -> BTreeSet<(String, String, i64, Option<i64>, i64)> {
    alarms
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_owned(),
                a["equipment_id"].as_str().unwrap().to_owned(),
                a["raised_at"].as_i64().unwrap(),
                a["cleared_at"].as_i64(),
                a["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The final version of each alarm among a list of changes.
fn finals(changes: &[Value]) -> Vec<Value> {
    let mut last: std::collections::BTreeMap<String, Value> = Default::default();
    for a in changes {
        last.insert(a["alarm_id"].as_str().unwrap().to_owned(), a.clone());
    }
    last.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_gives_the_live_alarms_and_tries_a_threshold_on_history() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let t0 = now_ms() - 120_000;
    let moving = json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9});

    // EQ0000: an overspeed, then stopped for longer than the clear period.
    let mut d0 = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    d0.send(t0, moving.clone()).await;
    d0.send(t0 + 1_000, json!({})).await;
    let last0 = d0.send(t0 + 12_000, json!({})).await;
    // A second overspeed later: a new alarm.
    d0.send(t0 + 30_000, moving.clone()).await;
    d0.send(t0 + 31_000, json!({})).await;
    let last0b = d0.send(t0 + 42_000, json!({})).await;
    d0.wait_ack(last0.max(last0b), 20).await;

    // EQ0001: the door opens while moving, then all is well.
    let mut d1 = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let door = json!({"direction": "up", "speed_mps": 1.0, "leveled": false, "door": "opening", "floor": 4});
    d1.send(t0 + 5_000, door.clone()).await;
    d1.send(t0 + 6_000, door).await;
    d1.send(t0 + 7_000, json!({})).await;
    let last1 = d1.send(t0 + 20_000, json!({})).await;
    d1.wait_ack(last1, 20).await;

    // Live: three alarms, all cleared (the history is the store's).
    let live = eventually(20, "three cleared alarms live", || async {
        let (_, body) = vigil.get("/alarms?state=cleared").await;
        let list = body["alarms"].as_array().cloned().unwrap_or_default();
        (list.len() == 3).then_some(list)
    })
    .await;

    let window = json!({"from": t0 - 1_000, "to": now_ms() + 1_000});
    let (status, replayed) = vigil.post("/rules/replay", &window).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["readings"], 10);
    let changes = replayed["alarms"].as_array().unwrap().clone();
    assert_eq!(
        summary(&finals(&changes)),
        summary(&live),
        "replay and live agree:\nreplay {changes:#?}\nlive {live:#?}"
    );

    // Try a laxer overspeed threshold on the same history: no overspeed,
    // the door alarm as before; the live alarms are untouched.
    let mut lax = window.clone();
    lax["rules"] = json!("[rule.\"elevator.overspeed\"]\nfactor = 3.0\n");
    let (status, tried) = vigil.post("/rules/replay", &lax).await;
    assert_eq!(status, 200, "{tried}");
    let rules: BTreeSet<String> = tried["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        rules,
        BTreeSet::from(["elevator.door_open_moving".to_owned()])
    );
    let (_, after) = vigil.get("/alarms?state=cleared").await;
    assert_eq!(after["alarms"].as_array().unwrap().len(), 3);

    // The CLI prints the same changes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "replay", "--from", &(t0 - 1_000).to_string()])
        .args(["--url", &format!("http://{}", vigil.http), "--token", TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("RAISED").count(), 3, "{text}");
    assert!(
        text.contains("elevator.overspeed") && text.contains("10 readings replayed"),
        "{text}"
    );

    // Mistakes are refused with a reason.
    let mut bad = window.clone();
    bad["rules"] = json!("[rule.\"elevator.overspeed\"]\nfactor = \"fast\"\n");
    let (status, body) = vigil.post("/rules/replay", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("factor"),
        "{body}"
    );
    let (status, _) = vigil
        .post("/rules/replay", &json!({"from": t0, "to": t0 - 1}))
        .await;
    assert_eq!(status, 400);
}
