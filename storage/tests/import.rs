//! Bulk loads written straight into Parquet: the store reads them as its
//! own files, knows their seqs, and loses nothing written through it.

use std::sync::Arc;

use vigil_model::{AlarmState, DeviceId};
use vigil_storage::Store;
use vigil_storage::embedded::Importer;

use crate::fixtures::*;

#[tokio::test]
async fn imported_rows_are_the_stores_own_and_the_wal_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let importer = Arc::new(Importer::open(dir.path()).unwrap());
    // Two threads, two files each, as a benchmark's generator writes them.
    std::thread::scope(|s| {
        for part in 0..2u64 {
            let importer = Arc::clone(&importer);
            s.spawn(move || {
                for chunk in 0..2u64 {
                    let first = 1 + (part * 2 + chunk) * 50;
                    let mut records: Vec<_> = (first..first + 50)
                        .map(|seq| elevator("EL1", seq))
                        .collect();
                    // Alarms at distinct times: a file is named by its rows' time range.
                    let at = T0 + (part * 2 + chunk) as i64 * 1000;
                    records.push(alarm_record(&format!("a{part}{chunk}"), at));
                    let done = importer.write(records).unwrap();
                    assert_eq!((done.rows, done.files), (51, 2));
                    assert!(done.bytes > 0);
                }
            });
        }
    });
    Arc::into_inner(importer).unwrap().finish().unwrap();
    // A file of the same time range as one there is (the same name) is refused.
    let again = Importer::open(dir.path()).unwrap();
    assert!(
        again
            .write((1..=50).map(|seq| elevator("EL1", seq)).collect())
            .is_err()
    );
    again.finish().unwrap();

    let (store, mut tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        200
    );
    assert_eq!(
        count(&store, "SELECT count(DISTINCT seq) FROM elevator_readings").await,
        200
    );
    assert_eq!(count(&store, "SELECT count(*) FROM alarms").await, 4);
    let rec = store.recover().await.unwrap();
    assert_eq!(rec.seqs[&DeviceId::new("EL1").unwrap()].runs(), [(1, 200)]);
    // Written through the store after the import, then a crash (no close):
    // replay must bring it back, not skip it as already in Parquet.
    store
        .write(ws((201..=210).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    take_tokens(&mut tokens, 10).await;
    drop(store);
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        210
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_import_waits_for_the_wal_to_be_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut tokens) = open(dir.path()).await;
    store
        .write(ws((1..=5).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    take_tokens(&mut tokens, 5).await;
    drop(store);
    let refused = Importer::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("5 records"), "{refused}");
    let (store, _tokens) = open(dir.path()).await;
    store.close().await.unwrap();
    let importer = Importer::open(dir.path()).unwrap();
    importer
        .write((6..=9).map(|s| elevator("EL1", s)).collect())
        .unwrap();
    importer.finish().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        9
    );
    store.close().await.unwrap();
}

fn alarm_record(id: &str, at: i64) -> vigil_storage::Record {
    vigil_storage::Record::Alarm(alarm(id, 1, AlarmState::Active, at))
}
