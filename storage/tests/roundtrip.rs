//! Every kind of record goes in and comes back by SQL with the same values.

use serde_json::{Value, json};
use vigil_storage::embedded::EmbeddedStore;
use vigil_storage::{AckToken, Store};

use crate::fixtures::*;

fn pick(row: &serde_json::Map<String, Value>, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .map(|k| {
                (
                    k.to_string(),
                    row.get(*k)
                        .cloned()
                        .unwrap_or(Value::String("<missing>".into())),
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn every_record_kind_is_queryable_with_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut tokens) = open(dir.path()).await;
    store.write(ws(one_of_each())).await.unwrap();
    let got = take_tokens(&mut tokens, 5).await;
    let seqs: Vec<u64> = got.iter().map(|t: &AckToken| t.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_values(&store).await;
    // The same values after a trip through Parquet, and after a reopen.
    store.flush_parquet().await.unwrap();
    assert_values(&store).await;
    store.close().await.unwrap();
    let (store, _tokens) = open(dir.path()).await;
    assert_values(&store).await;
    store.close().await.unwrap();
}

async fn assert_values(store: &EmbeddedStore) {
    let r = rows(store, "SELECT * FROM elevator_readings").await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        Value::Object(r[0].clone()),
        json!({
            "device_id": "EL1", "equipment_id": "EQ-EL1", "category": "elevator", "owner_id": "OWN1",
            "region": "440703", "seq": 1, "ts": "2024-11-22T18:26:41Z", "received_at": "2024-11-22T18:26:41.040Z",
            "floor": -1, "direction": "up", "speed_mps": 1.5, "door": "closed", "leveled": false, "occupied": true,
            "mode": "normal", "safety_circuit": true, "door_lock": true, "alarm_button": false, "power": "mains",
            "limit": "none", "run_count": 123456, "load_pct": null, "extra": "{\"fw\":\"2.1\"}"
        })
    );

    let r = rows(store, "SELECT * FROM ride_readings").await;
    assert_eq!(
        pick(
            &r[0],
            &[
                "device_id",
                "seq",
                "state",
                "speed_mps",
                "wind_mps",
                "restraints_locked",
                "vibration_mm_s",
                "brake",
                "passengers",
                "extra"
            ]
        ),
        json!({"device_id": "RD1", "seq": 2, "state": "running", "speed_mps": 3.25, "wind_mps": 11.5, "restraints_locked": true,
               "vibration_mm_s": null, "brake": "ok", "passengers": 24, "extra": null})
    );

    let r = rows(store, "SELECT * FROM video_events").await;
    assert_eq!(
        pick(
            &r[0],
            &["device_id", "camera_id", "event", "confidence", "snapshot"]
        ),
        json!({"device_id": "CAM1", "camera_id": "cam-2", "event": "electric_bike", "confidence": 0.875, "snapshot": "s3://snaps/1.jpg"})
    );

    let r = rows(store, "SELECT * FROM filling_records").await;
    assert_eq!(
        pick(
            &r[0],
            &[
                "cylinder_code",
                "operator_id",
                "medium",
                "tare_kg",
                "net_kg",
                "pressure_mpa",
                "temp_c",
                "started_ms",
                "result"
            ]
        ),
        json!({"cylinder_code": "CY-0001", "operator_id": "OP7", "medium": "LPG", "tare_kg": 15.5, "net_kg": 14.25,
               "pressure_mpa": null, "temp_c": 21.5, "started_ms": T0 - 60_000, "result": "aborted"})
    );

    let r = rows(store, "SELECT * FROM device_events").await;
    assert_eq!(
        pick(&r[0], &["device_id", "seq", "code", "text", "active"]),
        json!({"device_id": "EL1", "seq": 5, "code": "E42", "text": null, "active": true})
    );

    let r = rows(store, "SELECT * FROM alarm_changes").await;
    assert_eq!(
        Value::Object(r[0].clone()),
        json!({
            "alarm_id": "alarm-1", "version": 1, "rule": "elevator.trapped", "severity": "critical", "state": "active",
            "equipment_id": "EQ-EL1", "device_id": "EL1", "category": "elevator", "owner_id": "OWN1", "region": "440703",
            "raised_at": "2024-11-22T18:26:40Z", "updated_at": "2024-11-22T18:26:41Z", "cleared_at": null, "count": 1,
            "details": "{\"floor\":3,\"stopped_for_s\":62,\"version\":1}",
            "acknowledged_at": null, "acknowledged_by": null, "note": null
        })
    );
    // `details` is JSON text that SQL can take apart.
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM alarm_changes WHERE details LIKE '%\"floor\":3%'"
        )
        .await,
        1
    );

    // Binary renders as hex; the lossy text column is for people.
    let r = rows(store, "SELECT * FROM dead_letters").await;
    assert_eq!(
        Value::Object(r[0].clone()),
        json!({
            "received_at": "2024-11-22T18:26:40.007Z", "topic": "/tenants/EL9/v1/elevator", "device_id": "EL9",
            "reason": "malformed_json", "detail": "expected value at line 1 column 1",
            "payload": "ff7b6e6f74206a736f6e", "payload_text": "\u{fffd}{not json", "payload_size": 10,
            "seq": null
        })
    );
}

#[tokio::test]
async fn the_default_json_writer_renders_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut tokens) = open(dir.path()).await;
    store.write(ws(one_of_each())).await.unwrap();
    take_tokens(&mut tokens, 5).await;
    for table in vigil_storage::TABLES.iter().chain(&["alarms"]) {
        let batches = query(&store, &format!("SELECT * FROM {table}"))
            .await
            .unwrap();
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer
            .write_batches(&batches.iter().collect::<Vec<_>>())
            .unwrap();
        writer.finish().unwrap();
        let out: Value = serde_json::from_slice(&writer.into_inner()).unwrap();
        assert_eq!(out.as_array().map(Vec::len), Some(1), "{table}: {out}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn flush_makes_everything_written_before_it_visible() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    for seq in 1..=300u64 {
        // Separate batches, so that several group commits are involved.
        store.write(vec![w(elevator("EL2", seq))]).await.unwrap();
    }
    store.flush().await.unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        300
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(DISTINCT seq) FROM elevator_readings WHERE device_id = 'EL2'"
        )
        .await,
        300
    );
    store.close().await.unwrap();
}
