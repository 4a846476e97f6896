//! Rows on disk and rows in memory answer one query, each row once.

use std::fs;
use std::path::Path;

use vigil_storage::Store;
use vigil_storage::embedded::EmbeddedConfig;

use crate::fixtures::*;

fn parquet_files(dir: &Path, table: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("tables").join(table))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_query_spans_parquet_and_memory_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws((1..=100).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.write(ws([dead_letter(b"x")])).await.unwrap();
    store.flush_parquet().await.unwrap();
    let files = parquet_files(dir.path(), "elevator_readings");
    // `{first_ts}_{last_ts}-{n}.parquet`: ts of seq 1 and 100, and the WAL
    // segment covered.
    assert_eq!(files, [format!("{}_{}-1.parquet", T0 + 1000, T0 + 100_000)]);
    assert_eq!(parquet_files(dir.path(), "dead_letters").len(), 1);
    assert!(
        parquet_files(dir.path(), "ride_readings").is_empty(),
        "no file for a table without rows"
    );

    store
        .write(ws((101..=150).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let sql = "SELECT count(*) FROM elevator_readings";
    assert_eq!(count(&store, sql).await, 150);
    assert_eq!(
        count(&store, "SELECT count(DISTINCT seq) FROM elevator_readings").await,
        150
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM elevator_readings WHERE seq BETWEEN 95 AND 105"
        )
        .await,
        11
    );
    assert_eq!(
        count(
            &store,
            "SELECT max(seq) FROM (SELECT CAST(seq AS BIGINT) AS seq FROM elevator_readings)"
        )
        .await,
        150
    );
    // A limit pushed into both halves still limits the whole.
    assert_eq!(
        query(&store, "SELECT * FROM elevator_readings LIMIT 7")
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        7
    );

    // The WAL segments the file holds are gone; reopening reads the file
    // and replays only the newer segment.
    assert!(
        !dir.path()
            .join("wal")
            .join(format!("{:020}.log", 1))
            .exists()
    );
    drop(store);
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(count(&store, sql).await, 150);
    assert_eq!(count(&store, "SELECT count(*) FROM dead_letters").await, 1);
    store.close().await.unwrap();
    // After close everything is in Parquet and survives another open.
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(count(&store, sql).await, 150);
    assert_eq!(parquet_files(dir.path(), "elevator_readings").len(), 2);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_flushes_never_see_a_row_twice_or_miss_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    let mut total = 0i64;
    for round in 0..4u64 {
        // Over a sealed chunk's worth, so chunks and tails are both involved.
        let n = 9000u64;
        store
            .write(ws((1..=n).map(|s| elevator("EL1", round * n + s))))
            .await
            .unwrap();
        store.flush().await.unwrap();
        total += n as i64;
        let watcher = {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let mut checks = 0;
                loop {
                    assert_eq!(
                        count(&store, "SELECT count(*) FROM elevator_readings").await,
                        total
                    );
                    checks += 1;
                    if checks >= 3 && store.flush().await.is_ok() {
                        return checks;
                    }
                }
            })
        };
        store.flush_parquet().await.unwrap();
        assert!(watcher.await.unwrap() >= 3);
        assert_eq!(
            count(&store, "SELECT count(*) FROM elevator_readings").await,
            total
        );
    }
    assert_eq!(
        count(&store, "SELECT count(DISTINCT seq) FROM elevator_readings").await,
        total
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn flush_rows_moves_rows_to_parquet_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        flush_rows: 100,
        ..config(dir.path())
    };
    let (store, _tokens) = open_with(config).await;
    store
        .write(ws((1..=250).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.flush().await.unwrap();
    // The flush runs in the background: wait for the first file (10 s at most).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while parquet_files(dir.path(), "elevator_readings").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no Parquet file appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        250
    );
    store.close().await.unwrap();
}
