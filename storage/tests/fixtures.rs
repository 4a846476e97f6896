//! Records, an open store and small query helpers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::json::writer::{JsonArray, WriterBuilder};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use vigil_model::reading::*;
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeadLetter, DeviceId, EquipmentId, OwnerId, Region,
    RejectReason, RuleId, Severity,
};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::{
    AckToken, QueryOptions, Record, SqlLimits, Store, StoreError, StoredReading, Write,
};

/// Base time of the fixtures: 2024-11-22T18:26:40Z.
pub(crate) const T0: i64 = 1_732_300_000_000;

pub(crate) fn config(dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig::new(dir)
}

pub(crate) type Tokens = mpsc::Receiver<Vec<AckToken>>;

pub(crate) async fn open_with(config: EmbeddedConfig) -> (Arc<EmbeddedStore>, Tokens) {
    let (tx, rx) = mpsc::channel(4096);
    let store = EmbeddedStore::open(config, tx).await.expect("store opens");
    (store, rx)
}

pub(crate) async fn open(dir: &Path) -> (Arc<EmbeddedStore>, Tokens) {
    open_with(config(dir)).await
}

/// A store whose SQL runs under `sql`, and the options of a person's
/// query on it (held to those limits).
pub(crate) async fn open_with_sql(
    dir: &Path,
    sql: SqlLimits,
) -> (Arc<EmbeddedStore>, Tokens, QueryOptions) {
    let (store, tokens) = open_with(EmbeddedConfig { sql, ..config(dir) }).await;
    let person = QueryOptions {
        guarded: true,
        ..QueryOptions::default()
    };
    (store, tokens, person)
}

pub(crate) fn binding(equipment: &str) -> Binding {
    Binding {
        equipment_id: EquipmentId::new(equipment).unwrap(),
        category: "elevator".into(),
        owner_id: OwnerId::new("OWN1").unwrap(),
        region: Region::new("440703").unwrap(),
    }
}

pub(crate) fn reading(device: &str, seq: u64, payload: Payload) -> Record {
    Record::Reading(StoredReading {
        reading: Reading {
            device_id: DeviceId::new(device).unwrap(),
            seq,
            ts: T0 + seq as i64 * 1000,
            received_at: T0 + seq as i64 * 1000 + 40,
            payload,
            extra: None,
        },
        binding: binding(&format!("EQ-{device}")),
    })
}

pub(crate) fn elevator_sample(floor: i16) -> ElevatorSample {
    ElevatorSample {
        floor,
        run_count: Some(123_456),
        ..ElevatorSample::moving()
    }
}

pub(crate) fn elevator(device: &str, seq: u64) -> Record {
    reading(
        device,
        seq,
        Payload::Elevator(elevator_sample((seq % 20) as i16 - 2)),
    )
}

pub(crate) fn alarm(id: &str, version: u32, state: AlarmState, raised_at: i64) -> Alarm {
    Alarm {
        alarm_id: AlarmId::new(id).unwrap(),
        rule: RuleId::new("elevator.trapped").unwrap(),
        severity: Severity::Critical,
        state,
        equipment_id: EquipmentId::new("EQ-EL1").unwrap(),
        device_id: Some(DeviceId::new("EL1").unwrap()),
        category: "elevator".into(),
        owner_id: OwnerId::new("OWN1").unwrap(),
        region: Region::new("440703").unwrap(),
        raised_at,
        updated_at: raised_at + version as i64 * 1000,
        cleared_at: (state == AlarmState::Cleared).then_some(raised_at + version as i64 * 1000),
        count: version,
        details: json!({"floor": 3, "stopped_for_s": 62, "version": version}),
        version,
        acknowledged_at: (state == AlarmState::Acknowledged).then_some(raised_at + 500),
        acknowledged_by: (state == AlarmState::Acknowledged).then(|| "zhang.wei".to_owned()),
        note: None,
    }
}

pub(crate) fn dead_letter(payload: &[u8]) -> Record {
    Record::DeadLetter(DeadLetter {
        received_at: T0 + 7,
        topic: "/tenants/EL9/v1/elevator".into(),
        device_id: Some("EL9".into()),
        reason: RejectReason::MalformedJson,
        detail: "expected value at line 1 column 1".into(),
        payload: payload.to_vec(),
        payload_size: payload.len() as u64,
        seq: None,
    })
}

/// One record of every kind (readings get sequence numbers 1..=5).
pub(crate) fn one_of_each() -> Vec<Record> {
    let mut elevator = elevator("EL1", 1);
    if let Record::Reading(r) = &mut elevator {
        r.reading.extra = Some(r#"{"fw":"2.1"}"#.into());
    }
    vec![
        elevator,
        reading(
            "RD1",
            2,
            Payload::Ride(RideSample {
                state: RideState::Running,
                speed_mps: 3.25,
                wind_mps: Some(11.5),
                restraints_locked: true,
                vibration_mm_s: None,
                brake: Brake::Ok,
                passengers: Some(24),
            }),
        ),
        reading(
            "CAM1",
            3,
            Payload::Video(VideoEvent {
                camera_id: "cam-2".into(),
                event: VideoKind::ElectricBike,
                confidence: 0.875,
                snapshot: Some("s3://snaps/1.jpg".into()),
            }),
        ),
        reading(
            "FS1",
            4,
            Payload::Filling(FillingRecord {
                cylinder_code: "CY-0001".into(),
                operator_id: "OP7".into(),
                medium: "LPG".into(),
                tare_kg: 15.5,
                net_kg: 14.25,
                pressure_mpa: None,
                temp_c: Some(21.5),
                started_ms: T0 - 60_000,
                result: FillResult::Aborted,
            }),
        ),
        reading(
            "EL1",
            5,
            Payload::Event(ControllerEvent {
                code: "E42".into(),
                text: None,
                active: true,
            }),
        ),
        Record::Alarm(alarm("alarm-1", 1, AlarmState::Active, T0)),
        dead_letter(b"\xff{not json"),
    ]
}

/// A write whose token ingest wants back (readings only, as ingest does).
pub(crate) fn w(record: Record) -> Write {
    let ack = match &record {
        Record::Reading(r) => Some(AckToken {
            device_id: r.reading.device_id.clone(),
            seq: r.reading.seq,
        }),
        _ => None,
    };
    Write { record, ack }
}

pub(crate) fn ws(records: impl IntoIterator<Item = Record>) -> Vec<Write> {
    records.into_iter().map(w).collect()
}

/// Receives tokens until `n` have arrived (or fails after 10 s).
pub(crate) async fn take_tokens(rx: &mut Tokens, n: usize) -> Vec<AckToken> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("tokens within 10 s")
            .expect("token channel open");
        assert!(!batch.is_empty(), "an empty token batch was sent");
        out.extend(batch);
    }
    out
}

pub(crate) async fn query(
    store: &EmbeddedStore,
    sql: &str,
) -> Result<Vec<RecordBatch>, StoreError> {
    Ok(store.query(sql, &QueryOptions::default()).await?.batches)
}

/// The single integer a `SELECT count(*) …` returns.
pub(crate) async fn count(store: &EmbeddedStore, sql: &str) -> i64 {
    let batches = query(store, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let col = batches[0].column(0);
    let ints = col
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an integer column");
    assert_eq!(ints.len(), 1);
    ints.value(0)
}

/// Rows as the integrator renders them (arrow-json array writer), nulls kept.
pub(crate) fn json_rows(batches: &[RecordBatch]) -> Vec<Map<String, Value>> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for b in batches {
        writer.write(b).expect("renders as JSON");
    }
    writer.finish().unwrap();
    let value: Value = serde_json::from_slice(&writer.into_inner()).unwrap_or(Value::Array(vec![]));
    match value {
        Value::Array(rows) => rows
            .into_iter()
            .map(|r| r.as_object().cloned().unwrap())
            .collect(),
        other => panic!("not an array: {other}"),
    }
}

pub(crate) async fn rows(store: &EmbeddedStore, sql: &str) -> Vec<Map<String, Value>> {
    json_rows(
        &query(store, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

/// Where a segment's frames end (`[u32 len][u32 crc][body]` each): the
/// zeros the store writes ahead of them follow.
pub(crate) fn end_of_frames(data: &[u8]) -> usize {
    let mut at = 0;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
    }
    at
}
