//! Every rejection reason of protocol.md: not stored as a reading, counted
//! by reason, kept as a dead letter with the raw bytes, and the engine (and
//! the device's connection) keeps going.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_become_counted_dead_letters_and_nothing_stalls() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let ts = now_ms();
    let topic = dev.topic("elevator");

    let mut missing = idle(100, ts);
    missing.as_object_mut().unwrap().remove("door");
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "malformed_json",
            topic.clone(),
            b"{\"seq\": 1, \"ts\": ".to_vec(),
        ),
        ("malformed_json", topic.clone(), vec![0xff, 0xfe, 0x00]),
        (
            "missing_field",
            topic.clone(),
            missing.to_string().into_bytes(),
        ),
        (
            "wrong_type",
            topic.clone(),
            sample(101, ts, json!({"floor": "third"}))
                .to_string()
                .into_bytes(),
        ),
        (
            "wrong_type",
            topic.clone(),
            sample(102, ts, json!({"door": "ajar"}))
                .to_string()
                .into_bytes(),
        ),
        (
            "out_of_range",
            topic.clone(),
            sample(103, ts, json!({"speed_mps": -0.5}))
                .to_string()
                .into_bytes(),
        ),
        (
            "out_of_range",
            topic.clone(),
            sample(104, 1_000, json!({})).to_string().into_bytes(),
        ),
        ("oversize", topic.clone(), {
            let mut big = sample(105, ts, json!({})).to_string().into_bytes();
            big.truncate(big.len() - 1);
            big.extend(format!(",\"padding\":\"{}\"}}", "x".repeat(70 * 1024)).into_bytes());
            big
        }),
        // Under another device's name (unknown, disabled, or a real one
        // being forged): kept as DEV0000's own mistake, never a reading.
        (
            "foreign_topic",
            "/tenants/NOBODY/v1/elevator".into(),
            idle(1, ts).to_string().into_bytes(),
        ),
        (
            "foreign_topic",
            "/tenants/DEVOFF/v1/elevator".into(),
            idle(1, ts).to_string().into_bytes(),
        ),
        (
            "foreign_topic",
            "/tenants/DEV0001/v1/elevator".into(),
            sample(
                1,
                ts,
                json!({"speed_mps": 9.0, "direction": "up", "leveled": false}),
            )
            .to_string()
            .into_bytes(),
        ),
        (
            "bad_topic",
            "/tenants/DEV0000/v1/weather".into(),
            idle(106, ts).to_string().into_bytes(),
        ),
    ];
    for (_, topic, payload) in &cases {
        dev.publish_raw(topic, payload.clone()).await;
    }
    // A good message after all the bad ones is accepted and acked: the
    // rejected seqs of this device count as handled, nothing stalled.
    dev.seq = 106;
    let seq = dev.send(ts, json!({})).await;
    dev.wait_ack(seq, 20).await;

    let expected = cases.len() as i64;
    eventually(20, "every dead letter stored", || async {
        (vigil
            .sql_count("SELECT count(*) AS n FROM dead_letters")
            .await
            == expected)
            .then_some(())
    })
    .await;
    for reason in [
        "malformed_json",
        "missing_field",
        "wrong_type",
        "out_of_range",
        "oversize",
        "foreign_topic",
        "bad_topic",
    ] {
        let want = cases.iter().filter(|(r, _, _)| *r == reason).count() as i64;
        let stored = vigil
            .sql_count(&format!(
                "SELECT count(*) AS n FROM dead_letters WHERE reason = '{reason}'"
            ))
            .await;
        assert_eq!(stored, want, "dead letters with reason {reason}");
        let counted = vigil
            .metric(&format!(
                "vigil_ingest_rejected_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert_eq!(counted as i64, want, "metric for {reason}");
    }
    // The raw bytes are kept, and the detail says what was wrong.
    let rows = vigil.sql("SELECT detail, payload_text, payload_size FROM dead_letters WHERE reason = 'wrong_type' ORDER BY detail").await;
    assert!(
        rows.iter()
            .any(|r| r["detail"].as_str().unwrap().contains("`door`")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["payload_text"].as_str().unwrap().contains("\"third\"")),
        "{rows:?}"
    );
    let big = vigil
        .sql("SELECT payload_size FROM dead_letters WHERE reason = 'oversize'")
        .await;
    assert!(
        big[0]["payload_size"].as_i64().unwrap() > 64 * 1024,
        "{big:?}"
    );
    // Only the good message is a reading.
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_and_disabled_devices_are_refused_at_connect() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let r = Device::connect(vigil.mqtt, "DEV0000", "not-the-secret").await;
    assert!(matches!(r, Err(ConnectError::Refused(_))), "{:?}", r.err());
    assert!(matches!(
        Device::connect(vigil.mqtt, "NOBODY", "whatever").await,
        Err(ConnectError::Refused(_))
    ));
    let off = secrets.get("DEVOFF").cloned().unwrap_or_default();
    assert!(matches!(
        Device::connect(vigil.mqtt, "DEVOFF", &off).await,
        Err(ConnectError::Refused(_))
    ));
    assert!(
        Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
            .await
            .is_ok()
    );
    // The engine counted the three refusals: it was not some other failure.
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_connects_total{result="refused"}"#)
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_once_and_still_acked() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let ts = now_ms();
    for seq in 1..=5u64 {
        dev.publish("elevator", &idle(seq, ts + seq as i64 * 1000))
            .await;
    }
    dev.wait_ack(5, 20).await;
    // The device lost its acks and sends 3..5 again.
    for seq in 3..=5u64 {
        dev.publish("elevator", &idle(seq, ts + seq as i64 * 1000))
            .await;
    }
    dev.publish("elevator", &idle(6, ts + 6000)).await;
    dev.wait_ack(6, 20).await;
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings")
            .await,
        6
    );
    assert_eq!(
        vigil
            .sql_count("SELECT count(DISTINCT seq) AS n FROM elevator_readings")
            .await,
        6
    );
    assert_eq!(
        vigil.metric("vigil_ingest_duplicates_total").await as i64,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reading_is_nobody_s_and_raises_nothing() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    // DEV0000 tries to report an overspeed in DEV0001's name.
    let forged = sample(
        1,
        now_ms(),
        json!({"speed_mps": 9.0, "direction": "up", "leveled": false}),
    );
    dev.publish_raw(
        "/tenants/DEV0001/v1/elevator",
        forged.to_string().into_bytes(),
    )
    .await;
    let row = eventually(20, "the forged message as a dead letter", || async {
        vigil
            .sql("SELECT device_id, topic, detail FROM dead_letters WHERE reason = 'foreign_topic'")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(row["device_id"], "DEV0000", "{row}");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("/tenants/DEV0001/v1/elevator"),
        "{row}"
    );
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings WHERE device_id = 'DEV0001'")
            .await,
        0
    );
    let (_, alarms) = vigil.get("/alarms?state=active").await;
    assert_eq!(
        alarms["alarms"],
        json!([]),
        "no alarm from a forged reading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_disabled_or_deleted_while_connected_are_cut_off_at_once() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let _d1 = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let _gz = Device::connect(vigil.mqtt, "DEVGZ", &secrets["DEVGZ"])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let put = client
        .put(vigil.url("/devices/DEV0001"))
        .bearer_auth(TOKEN)
        .json(&json!({"device_id": "DEV0001", "equipment_id": "EQ0001", "kind": "elevator", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let delete = client
        .delete(vigil.url("/devices/DEVGZ"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(delete.status().is_success(), "{:?}", delete.text().await);

    // Both sessions end without the devices doing anything.
    vigil
        .wait_metrics(
            20,
            &[
                (
                    r#"vigil_ingest_disconnects_total{reason="device_inactive"}"#,
                    2.0,
                ),
                (r#"vigil_ingest_sessions{login="device"}"#, 0.0),
            ],
        )
        .await;
    // And they cannot come back, each refused for its own reason.
    for (device, reason) in [
        ("DEV0001", "connect_disabled_device"),
        ("DEVGZ", "connect_unknown_device"),
    ] {
        assert!(
            Device::connect(vigil.mqtt, device, &secrets[device])
                .await
                .is_err()
        );
        let counted = vigil
            .metric(&format!(
                "vigil_ingest_rejected_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert_eq!(counted, 1.0, "{reason}");
    }
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings")
            .await,
        0
    );
}
