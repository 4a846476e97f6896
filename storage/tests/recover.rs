//! What the engine gets back after a restart.

use vigil_model::{AlarmState, DeviceId};
use vigil_storage::{Record, Store};

use crate::fixtures::*;
use crate::seq_history::{check_history, history};

fn index_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("seq-index")
}

#[tokio::test]
async fn recover_returns_the_seqs_per_device_and_the_alarms_rules_need() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    let day = 24 * 3600 * 1000;
    let newest = T0 + 10 * day;
    store
        .write(ws((1..=40).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.write(ws(one_of_each())).await.unwrap(); // EL1 seq 1 and 5 again, RD1 2, CAM1 3, FS1 4
    store
        .write(ws([
            // Open for ten days: comes back.
            Record::Alarm(alarm("old-open", 1, AlarmState::Active, T0)),
            // Cleared long ago: does not.
            Record::Alarm(alarm("old-closed", 1, AlarmState::Active, T0)),
            Record::Alarm(alarm("old-closed", 2, AlarmState::Cleared, T0)),
            // Cleared, but raised within 24 h of the newest change: comes back (rules count repeats).
            Record::Alarm(alarm(
                "recent-closed",
                1,
                AlarmState::Active,
                newest - 3_600_000,
            )),
            Record::Alarm(alarm(
                "recent-closed",
                2,
                AlarmState::Cleared,
                newest - 3_600_000,
            )),
            Record::Alarm(alarm("acked", 1, AlarmState::Active, newest - 2 * day)),
            Record::Alarm(alarm(
                "acked",
                2,
                AlarmState::Acknowledged,
                newest - 2 * day,
            )),
        ]))
        .await
        .unwrap();
    store.flush_parquet().await.unwrap();
    store
        .write(ws((41..=45).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store
        .write(ws([Record::Alarm(alarm(
            "newest",
            1,
            AlarmState::Active,
            newest - 1000,
        ))]))
        .await
        .unwrap();
    store.flush().await.unwrap();

    let rec = store.recover().await.unwrap();
    let id = |s: &str| DeviceId::new(s).unwrap();
    let highest = |d: &str| rec.seqs.get(&id(d)).and_then(|s| s.highest());
    assert_eq!(highest("EL1"), Some(45));
    assert_eq!(rec.seqs[&id("EL1")].runs(), [(1, 45)]);
    assert_eq!(highest("RD1"), Some(2));
    assert_eq!(highest("FS1"), Some(4));
    assert_eq!(rec.seqs.len(), 4);
    assert_eq!(rec.last_seen.get(&id("EL1")), Some(&(T0 + 45 * 1000 + 40)));

    let mut got: Vec<(String, u32, AlarmState)> = rec
        .alarms
        .iter()
        .map(|a| (a.alarm_id.to_string(), a.version, a.state))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("acked".to_owned(), 2, AlarmState::Acknowledged),
            ("alarm-1".to_owned(), 1, AlarmState::Active), // from one_of_each
            ("newest".to_owned(), 1, AlarmState::Active),
            ("old-open".to_owned(), 1, AlarmState::Active),
            ("recent-closed".to_owned(), 2, AlarmState::Cleared),
        ]
    );
    // Every field comes back as it was written.
    let acked = rec
        .alarms
        .iter()
        .find(|a| a.alarm_id.as_str() == "acked")
        .unwrap();
    assert_eq!(
        acked,
        &alarm("acked", 2, AlarmState::Acknowledged, newest - 2 * day)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn recover_on_an_empty_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    let rec = store.recover().await.unwrap();
    assert!(rec.seqs.is_empty() && rec.last_seen.is_empty() && rec.alarms.is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn seq_history_comes_back_from_memory_parquet_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, batches) = history();
    let (store, _tokens) = open(dir.path()).await;
    // Half in Parquet (and the index), half only in memory and the WAL.
    store.write(batches[0].clone()).await.unwrap();
    store.flush_parquet().await.unwrap();
    assert!(index_file(dir.path()).exists(), "a flush writes the index");
    store.write(batches[1].clone()).await.unwrap();
    store.flush().await.unwrap();
    check_history(&*store, &stored).await;

    // A crash: the WAL replays the second half.
    drop(store);
    let (store, _tokens) = open(dir.path()).await;
    check_history(&*store, &stored).await;
    store.close().await.unwrap();

    // Everything in Parquet now.
    let (store, _tokens) = open(dir.path()).await;
    check_history(&*store, &stored).await;
    store.close().await.unwrap();

    // No index, or a damaged one: rebuilt from the Parquet files, and saved.
    std::fs::remove_file(index_file(dir.path())).unwrap();
    let (store, _tokens) = open(dir.path()).await;
    assert!(index_file(dir.path()).exists(), "rebuilt at open");
    check_history(&*store, &stored).await;
    store.close().await.unwrap();
    std::fs::write(index_file(dir.path()), b"VGSEQIX1 not an index").unwrap();
    let (store, _tokens) = open(dir.path()).await;
    check_history(&*store, &stored).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_between_a_flush_and_its_index_loses_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, batches) = history();
    let (store, _tokens) = open(dir.path()).await;
    store.write(batches[0].clone()).await.unwrap();
    store.flush_parquet().await.unwrap();
    let older = std::fs::read(index_file(dir.path())).unwrap();
    store.write(batches[1].clone()).await.unwrap();
    store.close().await.unwrap();
    // The second flush's files made it to disk, its index did not.
    std::fs::write(index_file(dir.path()), older).unwrap();
    let (store, _tokens) = open(dir.path()).await;
    check_history(&*store, &stored).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn dead_letters_keep_the_seq_they_took() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(vec![
            crate::seq_history::letter_with_seq("EL3", 5),
            w(dead_letter(b"{")),
        ])
        .await
        .unwrap();
    store.flush_parquet().await.unwrap();
    let rows = json_rows(
        &store
            .query(
                "SELECT device_id, seq FROM dead_letters ORDER BY seq NULLS LAST",
                &Default::default(),
            )
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows[0]["seq"], 5);
    assert!(rows[1].get("seq").is_none_or(|v| v.is_null()), "{rows:?}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn dead_letter_files_from_before_the_seq_column_still_read() {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, StringArray, TimestampMillisecondArray, UInt64Array,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("tables").join("dead_letters");
    std::fs::create_dir_all(&table).unwrap();
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("received_at", ts, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("device_id", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
        Field::new("payload_text", DataType::Utf8, false),
        Field::new("payload_size", DataType::UInt64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(vec![T0]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec!["/tenants/EL1/v1/elevator"])),
        Arc::new(StringArray::from(vec![Some("EL1")])),
        Arc::new(StringArray::from(vec!["wrong_type"])),
        Arc::new(StringArray::from(vec!["`floor` is not an integer"])),
        Arc::new(BinaryArray::from(vec![&b"{\"seq\":1}"[..]])),
        Arc::new(StringArray::from(vec!["{\"seq\":1}"])),
        Arc::new(UInt64Array::from(vec![9])),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let file = std::fs::File::create(table.join(format!("{T0}-1.parquet"))).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let (store, _tokens) = open(dir.path()).await;
    let rows = json_rows(
        &store
            .query("SELECT reason, seq FROM dead_letters", &Default::default())
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["reason"], "wrong_type");
    assert!(rows[0].get("seq").is_none_or(|v| v.is_null()), "{rows:?}");
    let rec = store.recover().await.unwrap();
    assert!(rec.seqs.is_empty(), "such a file says nothing of seqs");
    store.close().await.unwrap();
}
