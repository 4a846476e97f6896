//! Every elevator rule of rules.md, driven by a device through its
//! condition with realistic samples, then back to healthy. Device time
//! (`ts`) is compressed: a sample a second of device time, published as fast
//! as the device can, so a 180 s rule takes well under a second here.

use serde_json::{Value, json};

use crate::harness::*;

struct Scenario {
    rule: &'static str,
    severity: &'static str,
    /// Samples (device-seconds offset, field changes) that raise the alarm.
    raise: Vec<(i64, Value)>,
    /// Samples that make the condition false long enough to clear.
    clear: Vec<(i64, Value)>,
}

fn seconds(from: i64, to: i64, changes: Value) -> Vec<(i64, Value)> {
    (from..to).map(|s| (s, changes.clone())).collect()
}

fn healthy(from: i64) -> Vec<(i64, Value)> {
    seconds(from, from + 15, json!({}))
}

fn scenarios() -> Vec<Scenario> {
    let moving =
        |speed: f64| json!({"direction": "up", "speed_mps": speed, "leveled": false, "floor": 7});
    let mut door_cycling = Vec::new();
    for i in 0..14 {
        let door = if i % 2 == 0 { "open" } else { "closed" };
        door_cycling.push((i * 2, json!({"door": door})));
    }
    // Three overspeeds 5 s apart: each comes back within the 10 s clear
    // period, so they repeat one alarm rather than raising three.
    let mut frequent = Vec::new();
    for i in 0..3 {
        frequent.push((i * 5, moving(2.2)));
        frequent.push((i * 5 + 1, json!({})));
    }
    vec![
        Scenario {
            rule: "elevator.trapped",
            severity: "critical",
            raise: seconds(0, 185, json!({"occupied": true})),
            clear: seconds(185, 200, json!({"door": "open", "occupied": false})),
        },
        Scenario {
            rule: "elevator.stopped_outside_zone",
            severity: "major",
            raise: seconds(0, 185, json!({"leveled": false, "floor": 5})),
            clear: healthy(185),
        },
        Scenario {
            rule: "elevator.door_open_moving",
            severity: "critical",
            raise: seconds(
                0,
                3,
                json!({"door": "opening", "direction": "down", "speed_mps": 0.9, "leveled": false}),
            ),
            clear: healthy(3),
        },
        Scenario {
            rule: "elevator.overspeed",
            severity: "critical",
            raise: vec![(0, moving(2.2))],
            clear: healthy(1),
        },
        Scenario {
            rule: "elevator.overtravel_top",
            severity: "critical",
            raise: vec![(0, json!({"limit": "top", "floor": 18}))],
            clear: healthy(1),
        },
        Scenario {
            rule: "elevator.overtravel_bottom",
            severity: "critical",
            raise: seconds(
                0,
                10,
                json!({"floor": -2, "direction": "down", "speed_mps": 0.4, "leveled": false}),
            ),
            clear: healthy(10),
        },
        Scenario {
            rule: "elevator.safety_circuit_open",
            severity: "critical",
            raise: vec![(0, json!({"safety_circuit": false}))],
            clear: healthy(1),
        },
        Scenario {
            rule: "elevator.door_lock_open_moving",
            severity: "critical",
            raise: vec![(
                0,
                json!({"door_lock": false, "direction": "up", "speed_mps": 1.0, "leveled": false}),
            )],
            clear: healthy(1),
        },
        Scenario {
            rule: "elevator.door_wont_close",
            severity: "minor",
            raise: seconds(0, 185, json!({"door": "open"})),
            clear: healthy(185),
        },
        Scenario {
            rule: "elevator.door_cycling",
            severity: "minor",
            raise: door_cycling,
            clear: seconds(130, 260, json!({})),
        },
        Scenario {
            rule: "elevator.power_loss",
            severity: "major",
            raise: seconds(0, 7, json!({"power": "battery"})),
            clear: healthy(7),
        },
        Scenario {
            rule: "elevator.floor_out_of_range",
            severity: "minor",
            raise: vec![(0, json!({"floor": 25}))],
            clear: healthy(1),
        },
        Scenario {
            rule: "elevator.frequent_faults",
            severity: "major",
            raise: frequent,
            clear: vec![],
        },
    ]
}

async fn open_alarm(vigil: &Vigil, equipment: &str, rule: &str) -> Option<Value> {
    let (status, body) = vigil
        .get(&format!(
            "/alarms?state=active,acknowledged&equipment_id={equipment}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_elevator_rule_raises_and_clears_through_the_real_engine() {
    let vigil = Vigil::start().await;
    let scenarios = scenarios();
    let report = vigil.import(&registry_doc(scenarios.len() + 2)).await;
    let secrets = secrets(&report);
    let feed = Feed::open(&vigil, TOKEN, "").await;
    let t0 = now_ms() - 3_600_000;

    for (i, s) in scenarios.iter().enumerate() {
        let id = format!("DEV{i:04}");
        let equipment = format!("EQ{i:04}");
        let mut dev = Device::connect(vigil.mqtt, &id, &secrets[&id])
            .await
            .expect("device connects");
        let mut last = 0;
        for (offset, changes) in &s.raise {
            last = dev.send(t0 + offset * 1000, changes.clone()).await;
        }
        dev.wait_ack(last, 20).await;
        let alarm = eventually(20, &format!("{} on {equipment}", s.rule), || {
            open_alarm(&vigil, &equipment, s.rule)
        })
        .await;
        assert_eq!(alarm["severity"], s.severity, "{alarm}");
        assert_eq!(alarm["state"], "active");
        assert_eq!(alarm["device_id"], id.as_str());
        assert_eq!(
            alarm["owner_id"], "OW1",
            "alarms carry the owner from the registry: {alarm}"
        );
        assert_eq!(
            alarm["region"], "440703",
            "alarms carry the region from the registry: {alarm}"
        );
        assert_eq!(alarm["category"], "elevator");
        feed.wait_for(10, &format!("SSE event for {}", s.rule), |a| {
            a["alarm_id"] == alarm["alarm_id"]
        })
        .await;
        if !s.clear.is_empty() {
            for (offset, changes) in &s.clear {
                last = dev.send(t0 + offset * 1000, changes.clone()).await;
            }
            dev.wait_ack(last, 20).await;
            let cleared = feed
                .wait_for(20, &format!("{} cleared", s.rule), |a| {
                    a["alarm_id"] == alarm["alarm_id"] && a["state"] == "cleared"
                })
                .await;
            assert!(cleared["cleared_at"].as_i64().is_some(), "{cleared}");
            assert!(
                open_alarm(&vigil, &equipment, s.rule).await.is_none(),
                "{} still open after clearing",
                s.rule
            );
        }
        let stored = vigil
            .sql_count(&format!(
                "SELECT count(*) AS n FROM elevator_readings WHERE device_id = '{id}'"
            ))
            .await;
        assert_eq!(stored, dev.seq as i64, "every reading of {id} is queryable");
        dev.disconnect().await;
    }

    // The trapped alarm of scenario 0 is in the store with its whole life.
    let rows = vigil.sql("SELECT state, version FROM alarm_changes WHERE rule = 'elevator.trapped' ORDER BY version").await;
    let states: Vec<&str> = rows.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(states, ["active", "cleared"]);
    // frequent_faults counted three overspeed occurrences: one alarm, count 3.
    let overspeed = open_alarm(
        &vigil,
        &format!("EQ{:04}", scenarios.len() - 1),
        "elevator.overspeed",
    )
    .await
    .expect("overspeed open");
    assert_eq!(
        overspeed["count"], 3,
        "repeats raise count on the same alarm: {overspeed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapped_with_the_alarm_button_fires_after_60_s_and_is_handled_over_http() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let feed = Feed::open(&vigil, TOKEN, "?region=440700").await;
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let t0 = now_ms() - 600_000;
    let mut last = 0;
    for s in 0..59 {
        last = dev
            .send(
                t0 + s * 1000,
                json!({"occupied": true, "alarm_button": s > 5}),
            )
            .await;
    }
    dev.wait_ack(last, 20).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        open_alarm(&vigil, "EQ0000", "elevator.trapped")
            .await
            .is_none(),
        "not before 60 s of device time"
    );
    for s in 59..70 {
        last = dev
            .send(
                t0 + s * 1000,
                json!({"occupied": true, "alarm_button": true}),
            )
            .await;
    }
    dev.wait_ack(last, 20).await;
    let alarm = eventually(20, "trapped alarm", || {
        open_alarm(&vigil, "EQ0000", "elevator.trapped")
    })
    .await;
    assert!(
        alarm["details"]["floor"] == 3,
        "details name the floor: {alarm}"
    );
    let id = alarm["alarm_id"].as_str().unwrap().to_owned();

    let (status, acked) = vigil.post(&format!("/alarms/{id}/ack"), &json!({})).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    feed.wait_for(10, "acknowledged on SSE", |a| {
        a["alarm_id"] == id.as_str() && a["state"] == "acknowledged"
    })
    .await;

    let (status, body) = vigil
        .post(&format!("/alarms/{id}/resolve"), &json!({}))
        .await;
    assert_eq!(status, 400, "a resolve needs a note: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("note"));
    let (status, resolved) = vigil
        .post(
            &format!("/alarms/{id}/resolve"),
            &json!({"note": "Passenger released by maintainer at 14:05."}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "cleared");
    assert_eq!(
        resolved["note"],
        "Passenger released by maintainer at 14:05."
    );
    let (status, again) = vigil.post(&format!("/alarms/{id}/ack"), &json!({})).await;
    assert_eq!(
        status, 409,
        "acknowledging a cleared alarm conflicts: {again}"
    );
    let (status, _) = vigil.post("/alarms/nosuchalarm/ack", &json!({})).await;
    assert_eq!(status, 404);

    // The history is the store's: on PostgreSQL a change shows once its COPY
    // batch has committed (batch_age_ms, 100 ms by default).
    eventually(10, "the cleared alarm in the region's history", || async {
        let (_, cleared) = vigil.get("/alarms?state=cleared&region=440703").await;
        cleared["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alarm_id"] == id.as_str())
            .then_some(())
    })
    .await;
    // `since` filters the history by the time of the last change.
    let updated = resolved["updated_at"].as_i64().unwrap();
    let (_, recent) = vigil
        .get(&format!("/alarms?state=cleared&since={updated}"))
        .await;
    let ids: Vec<&str> = recent["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alarm_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{recent}");
    let (_, later) = vigil
        .get(&format!("/alarms?state=cleared&since={}", updated + 1))
        .await;
    assert_eq!(later["alarms"], json!([]), "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_faults_and_silent_devices_raise_and_clear() {
    let vigil = Vigil::start().await;
    let mut doc = registry_doc(2);
    // A device that reports every second goes offline after 3 s of silence.
    doc["devices"][1]["report_interval_s"] = json!(1);
    let secrets = secrets(&vigil.import(&doc).await);
    let feed = Feed::open(&vigil, TOKEN, "").await;

    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let ts = now_ms();
    dev.seq += 1;
    dev.publish("event", &json!({"seq": dev.seq, "ts": ts, "code": "E30", "text": "Door lock contact fault", "active": true})).await;
    let raised = feed
        .wait_for(20, "controller fault", |a| {
            a["rule"] == "elevator.controller_fault"
        })
        .await;
    assert_eq!(raised["equipment_id"], "EQ0000");
    dev.seq += 1;
    dev.publish(
        "event",
        &json!({"seq": dev.seq, "ts": ts + 5000, "code": "E30", "active": false}),
    )
    .await;
    feed.wait_for(20, "controller fault cleared", |a| {
        a["rule"] == "elevator.controller_fault" && a["state"] == "cleared"
    })
    .await;
    // Rules see a reading before the store has it (they do not wait for
    // durability), so the cleared alarm can come before the row.
    eventually(20, "both events stored", || async {
        let n = vigil
            .sql_count(
                "SELECT count(*) AS n FROM device_events WHERE device_id = 'DEV0000' AND code = 'E30'",
            )
            .await;
        (n == 2).then_some(())
    })
    .await;

    let mut quiet = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let seq = quiet.send(now_ms(), json!({})).await;
    quiet.wait_ack(seq, 20).await;
    let offline = feed
        .wait_for(30, "device.offline", |a| {
            a["rule"] == "device.offline" && a["device_id"] == "DEV0001"
        })
        .await;
    assert_eq!(offline["state"], "active");
    let seq = quiet.send(now_ms(), json!({})).await;
    quiet.wait_ack(seq, 20).await;
    feed.wait_for(20, "device.offline cleared", |a| {
        a["rule"] == "device.offline" && a["state"] == "cleared"
    })
    .await;
}
