//! Failure paths that need the writer's fault injection.

use std::time::Duration;

use super::{EmbeddedConfig, EmbeddedStore};
use crate::testdata;
use crate::{AckToken, QueryOptions, Store, Write};

fn write_of(record: crate::Record) -> Write {
    let ack = match &record {
        crate::Record::Reading(r) => Some(AckToken {
            device_id: r.reading.device_id.clone(),
            seq: r.reading.seq,
        }),
        _ => None,
    };
    Write { record, ack }
}

async fn count(store: &EmbeddedStore, table: &str) -> i64 {
    let out = store
        .query(
            &format!("SELECT count(*) FROM {table}"),
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    let col = out.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    col.value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_marks_the_store_unhealthy_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()), tx)
        .await
        .unwrap();
    store
        .write(vec![write_of(testdata::elevator("EL1", 1))])
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap()[0].seq, 1);

    store.inject_wal_faults(3);
    store
        .write(vec![write_of(testdata::elevator("EL1", 2))])
        .await
        .unwrap();
    // While the writer retries, health says why (polled: the retry takes ~350 ms).
    let mut saw_unhealthy = None;
    for _ in 0..200 {
        if let Err(reason) = store.health() {
            saw_unhealthy = Some(reason);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reason = saw_unhealthy.expect("health reported the failing WAL");
    assert!(
        reason.contains("write-ahead log") && reason.contains("No space left"),
        "{reason}"
    );

    let tokens = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tokens,
        vec![AckToken {
            device_id: "EL1".parse().unwrap(),
            seq: 2
        }]
    );
    assert_eq!(store.health(), Ok(()));
    assert_eq!(count(&store, "elevator_readings").await, 2);

    // Each failure moved on to a new segment; replay still sees each row once.
    drop(store);
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()), tx)
        .await
        .unwrap();
    assert_eq!(count(&store, "elevator_readings").await, 2);
    store.close().await.unwrap();
}
