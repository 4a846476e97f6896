//! The ride and video streams through the real binary: a ride's PLC gateway
//! and its camera publish over MQTT; a wind alarm and a restraint alarm
//! come out over HTTP and SSE; the readings are in SQL. Device time is
//! compressed as in elevator_rules.rs: a sample a device-second, sent as
//! fast as the device can.

use serde_json::{Value, json};

use crate::harness::*;

fn registry() -> Value {
    json!({
        "owners": [{"owner_id": "OWPARK", "name": "Harbour Bay Amusement Park Co.", "credit_code": "91440703MA4UPARK1X",
                    "region": "440703", "contact": "Wu Fang", "phone": "0750-7654321"}],
        "equipment": [{
            "equipment_id": "EQCOASTER", "reg_code": "6110440703000001", "category": "amusement_ride",
            "owner_id": "OWPARK", "region": "440703", "address": "Harbour Bay Park, ride 3",
            "status": "in_use", "next_inspection": cst_day(365),
            "params": {"rated_speed_mps": 22.0}
        }],
        "devices": [
            {"device_id": "COASTERPLC", "equipment_id": "EQCOASTER", "kind": "ride"},
            {"device_id": "COASTERCAM", "equipment_id": "EQCOASTER", "kind": "video"}
        ],
    })
}

fn ride(seq: u64, ts: i64, state: &str, wind: f64) -> Value {
    json!({
        "seq": seq, "ts": ts, "state": state, "speed_mps": if state == "running" { 18.5 } else { 0.0 },
        "wind_mps": wind, "restraints_locked": true, "vibration_mm_s": 2.8, "brake": "ok", "passengers": 20
    })
}

fn video(seq: u64, ts: i64, event: &str, confidence: f64) -> Value {
    json!({
        "seq": seq, "ts": ts, "camera_id": "row3", "event": event, "confidence": confidence,
        "snapshot": format!("snapshots/row3/{seq}.jpg")
    })
}

/// Publishes a ride sample `s` device-seconds after `t0`; its seq.
async fn send_ride(plc: &mut Device, t0: i64, s: i64, state: &str, wind: f64) -> u64 {
    plc.seq += 1;
    plc.publish("ride", &ride(plc.seq, t0 + s * 1000, state, wind))
        .await;
    plc.seq
}

async fn open_alarm(vigil: &Vigil, rule: &str) -> Option<Value> {
    let (status, body) = vigil
        .get("/alarms?state=active,acknowledged&equipment_id=EQCOASTER")
        .await;
    assert_eq!(status, 200, "{body}");
    body["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ride_and_its_camera_raise_wind_and_restraint_alarms() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry()).await);
    let feed = Feed::open(&vigil, TOKEN, "?region=440700").await;
    let mut plc = Device::connect(vigil.mqtt, "COASTERPLC", &secrets["COASTERPLC"])
        .await
        .expect("the ride gateway connects");
    let mut cam = Device::connect(vigil.mqtt, "COASTERCAM", &secrets["COASTERCAM"])
        .await
        .expect("the camera connects");
    let t0 = now_ms() - 3_600_000;

    // Loading, then running into a 12 m/s wind (the ride limit is 10.8 m/s)
    // for 12 s of device time: the wind alarm fires after 10 s.
    send_ride(&mut plc, t0, 0, "loading", 4.0).await;
    let mut last = 0;
    for s in 1..=12 {
        last = send_ride(&mut plc, t0, s, "running", 12.0).await;
    }
    plc.wait_ack(last, 20).await;
    let wind = eventually(20, "ride.wind_limit", || {
        open_alarm(&vigil, "ride.wind_limit")
    })
    .await;
    assert_eq!(wind["severity"], "major", "{wind}");
    assert_eq!(wind["category"], "amusement_ride");
    assert_eq!(
        (&wind["device_id"], &wind["owner_id"], &wind["region"]),
        (&json!("COASTERPLC"), &json!("OWPARK"), &json!("440703"))
    );
    assert_eq!(
        wind["raised_at"],
        t0 + 11_000,
        "10 s after running into the wind at 1 s"
    );
    assert_eq!(wind["details"]["wind_mps"], 12.0);
    assert_eq!(wind["details"]["limit_mps"], 10.8);
    feed.wait_for(10, "the wind alarm on SSE", |a| {
        a["alarm_id"] == wind["alarm_id"]
    })
    .await;

    // The camera sees an unlocked restraint while the ride runs, twice.
    cam.seq += 1;
    cam.publish(
        "video",
        &video(cam.seq, t0 + 12_500, "restraint_unlocked", 0.91),
    )
    .await;
    cam.seq += 1;
    cam.publish("video", &video(cam.seq, t0 + 13_000, "crowding", 0.95))
        .await;
    cam.seq += 1;
    cam.publish(
        "video",
        &video(cam.seq, t0 + 14_000, "restraint_unlocked", 0.88),
    )
    .await;
    cam.wait_ack(cam.seq, 20).await;
    let restraint = feed
        .wait_for(20, "the restraint alarm repeated on SSE", |a| {
            a["rule"] == "video.restraint_unlocked" && a["count"] == 2
        })
        .await;
    assert_eq!(restraint["severity"], "critical", "{restraint}");
    assert_eq!(restraint["state"], "active");
    assert_eq!(restraint["device_id"], "COASTERCAM");
    assert_eq!(restraint["raised_at"], t0 + 12_500);
    assert_eq!(restraint["updated_at"], t0 + 14_000);
    assert_eq!(restraint["details"]["camera_id"], "row3");
    assert_eq!(restraint["details"]["ride_state"], "running");
    let listed = open_alarm(&vigil, "video.restraint_unlocked")
        .await
        .expect("the restraint alarm is listed over HTTP");
    assert_eq!(listed["alarm_id"], restraint["alarm_id"]);
    assert_eq!(listed["count"], 2);

    // The wind drops and the ride stops: the wind alarm clears 10 s later.
    for s in 13..=26 {
        last = send_ride(&mut plc, t0, s, "stopped", 3.0).await;
    }
    plc.wait_ack(last, 20).await;
    let cleared = feed
        .wait_for(20, "the wind alarm cleared on SSE", |a| {
            a["alarm_id"] == wind["alarm_id"] && a["state"] == "cleared"
        })
        .await;
    assert_eq!(cleared["cleared_at"], t0 + 23_000);
    assert!(open_alarm(&vigil, "ride.wind_limit").await.is_none());

    // Every message is stored and queryable.
    let rides = vigil
        .sql("SELECT state, wind_mps, brake FROM ride_readings WHERE device_id = 'COASTERPLC' ORDER BY ts")
        .await;
    assert_eq!(rides.len() as u64, plc.seq, "{rides:?}");
    assert_eq!(rides[0]["state"], "loading");
    assert_eq!(rides[1]["state"], "running");
    assert_eq!(rides[1]["brake"], "ok");
    let events = vigil
        .sql("SELECT event, camera_id, confidence FROM video_events WHERE device_id = 'COASTERCAM' ORDER BY ts")
        .await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        ["restraint_unlocked", "crowding", "restraint_unlocked"]
    );
    assert_eq!(events[0]["camera_id"], "row3");
    plc.disconnect().await;
    cam.disconnect().await;
}

#[test]
fn rules_list_shows_the_ride_and_video_rules() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "list"])
        .output()
        .expect("vigil rules list runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for rule in [
        "ride.running_unrestrained",
        "ride.wind_limit",
        "ride.overspeed",
        "ride.brake_fault",
        "ride.vibration_high",
        "video.electric_bike",
        "video.person_fall",
        "video.restraint_unlocked",
        "video.danger_zone",
        "video.smoke_fire",
        "video.camera_occluded",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(rule)),
            "{rule} missing from:\n{text}"
        );
    }
    let wind = text
        .lines()
        .find(|l| l.starts_with("ride.wind_limit"))
        .unwrap();
    assert!(
        wind.contains("major") && wind.contains("limit_mps=10.8"),
        "{wind}"
    );
}
