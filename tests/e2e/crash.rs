//! Durability: what was acked survives SIGKILL; open alarms survive a
//! restart without being duplicated.

use std::collections::HashMap;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_readings_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(4)).await);
    let ts = now_ms() - 60_000;
    let mut acked: HashMap<String, u64> = HashMap::new();
    for i in 0..4 {
        let id = format!("DEV{i:04}");
        let mut dev = Device::connect(vigil.mqtt, &id, &secrets[&id])
            .await
            .unwrap();
        let mut last = 0;
        for s in 0..250 {
            last = dev.send(ts + s * 100, json!({})).await;
        }
        dev.wait_ack(last, 30).await;
        acked.insert(id, last);
        dev.disconnect().await;
    }
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();

    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    for (id, last) in &acked {
        let n = vigil
            .sql_count(&format!(
                "SELECT count(*) AS n FROM elevator_readings WHERE device_id = '{id}'"
            ))
            .await;
        assert_eq!(
            n, *last as i64,
            "every acknowledged reading of {id} is there, none twice"
        );
    }
    // The devices re-send what they think is unacked: nothing is stored twice.
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    for seq in 240..=250u64 {
        dev.publish("elevator", &idle(seq, ts + seq as i64 * 100))
            .await;
    }
    dev.wait_ack(250, 20).await;
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings WHERE device_id = 'DEV0000'")
            .await,
        250
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_alarms_survive_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let ts = now_ms() - 60_000;
    let moving = json!({"direction": "up", "speed_mps": 2.3, "leveled": false, "floor": 9});
    let seq = dev.send(ts, moving.clone()).await;
    dev.wait_ack(seq, 20).await;
    let (_, body) = eventually(20, "overspeed alarm", || async {
        let (s, b) = vigil.get("/alarms?state=active").await;
        (b["alarms"].as_array().is_some_and(|a| !a.is_empty())).then_some((s, b))
    })
    .await;
    let first = body["alarms"][0].clone();
    dev.disconnect().await;
    let ports = (vigil.mqtt, vigil.http);
    assert!(vigil.stop().success(), "clean exit on SIGTERM");

    let mut vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let (_, body) = vigil.get("/alarms?state=active").await;
    assert_eq!(
        body["alarms"].as_array().unwrap().len(),
        1,
        "the open alarm is back: {body}"
    );
    assert_eq!(body["alarms"][0]["alarm_id"], first["alarm_id"]);
    // The same fault again is a repeat of that alarm, not a second alarm.
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    dev.seq = seq;
    let s = dev.send(ts + 1000, json!({})).await;
    let s2 = dev.send(ts + 2000, moving.clone()).await;
    assert!(s2 > s);
    dev.wait_ack(s2, 20).await;
    let repeated = eventually(20, "repeat on the restored alarm", || async {
        let (_, b) = vigil.get("/alarms?state=active").await;
        let list = b["alarms"].as_array().cloned().unwrap_or_default();
        (list.len() == 1 && list[0]["count"] == 2).then(|| list[0].clone())
    })
    .await;
    assert_eq!(repeated["alarm_id"], first["alarm_id"]);

    // And after SIGKILL too.
    vigil.kill();
    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let (_, body) = vigil.get("/alarms?state=active").await;
    assert_eq!(body["alarms"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["alarms"][0]["alarm_id"], first["alarm_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_silent_across_a_restart_still_goes_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let mut doc = registry_doc(1);
    // Reports every 2 s: offline after 6 s of silence.
    doc["devices"][0]["report_interval_s"] = json!(2);
    let secrets = secrets(&vigil.import(&doc).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let seq = dev.send(now_ms(), json!({})).await;
    dev.wait_ack(seq, 20).await;
    dev.disconnect().await;
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();

    // The device never comes back; the restarted engine must notice.
    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let feed = Feed::open(&vigil, TOKEN, "").await;
    let alarm = feed
        .wait_for(30, "device.offline after the restart", |a| {
            a["rule"] == "device.offline" && a["state"] == "active"
        })
        .await;
    assert_eq!(alarm["equipment_id"], "EQ0000");
    assert_eq!(alarm["details"]["devices"], json!(["DEV0000"]));
}
