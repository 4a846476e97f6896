//! Tokens, group commits and what survives a crash.

use std::fs;

use vigil_storage::embedded::EmbeddedConfig;
use vigil_storage::{Store, StoreError};

use crate::fixtures::*;

fn wal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_arrive_in_write_order_in_groups_no_larger_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        group_commit_max: 64,
        ..config(dir.path())
    };
    let (store, mut tokens) = open_with(config).await;
    let writer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            for chunk in (1..=2000u64).collect::<Vec<_>>().chunks(50) {
                store
                    .write(ws(chunk.iter().map(|&s| elevator("EL1", s))))
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 2000 {
        let batch = tokens.recv().await.unwrap();
        assert!(
            !batch.is_empty() && batch.len() <= 64,
            "a group of {}",
            batch.len()
        );
        seen.extend(batch.into_iter().map(|t| t.seq));
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=2000).collect::<Vec<_>>());
    store.close().await.unwrap();
}

/// Commits closer together than `commit_interval` wait for it and go as
/// one frame: writes made while the writer waits are made durable together,
/// not before the interval since the last commit began; the first write
/// after a quiet spell, and a flush, do not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_within_the_commit_interval_go_in_one_commit() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_secs(2);
    let (store, mut tokens) = open_with(EmbeddedConfig {
        commit_interval: interval,
        ..config(dir.path())
    })
    .await;
    let before_first = Instant::now();
    store.write(ws([elevator("EL1", 1)])).await.unwrap();
    // Nothing committed before it: at once (take_tokens waits 10 s at most).
    assert_eq!(take_tokens(&mut tokens, 1).await.len(), 1);

    for seq in 2..=5u64 {
        store.write(ws([elevator("EL1", seq)])).await.unwrap();
    }
    let group = tokio::time::timeout(Duration::from_secs(10), tokens.recv())
        .await
        .expect("tokens within 10 s")
        .unwrap();
    assert!(
        before_first.elapsed() >= interval,
        "the second commit waited for the interval"
    );
    assert_eq!(
        group.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5],
        "four writes, one commit"
    );

    // A flush asks for what is queued at once: it does not wait 60 s.
    let (store, mut tokens) = {
        store.close().await.unwrap();
        open_with(EmbeddedConfig {
            commit_interval: Duration::from_secs(60),
            ..config(dir.path())
        })
        .await
    };
    store.write(ws([elevator("EL1", 6)])).await.unwrap();
    take_tokens(&mut tokens, 1).await;
    store.write(ws([elevator("EL1", 7)])).await.unwrap();
    // The writer is waiting out the interval with 7 by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(10), store.flush())
        .await
        .expect("a flush does not wait for the commit interval")
        .unwrap();
    assert_eq!(take_tokens(&mut tokens, 1).await[0].seq, 7);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_delivered_token_means_the_row_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut tokens) = open(dir.path()).await;
    for seq in 1..=50u64 {
        store
            .write(ws([elevator("EL1", seq), elevator("EL2", seq)]))
            .await
            .unwrap();
    }
    let delivered = take_tokens(&mut tokens, 100).await;
    // A crash: no close, no Parquet flush; only the WAL holds the rows.
    drop(store);
    drop(tokens);

    let (store, _tokens) = open(dir.path()).await;
    for t in &delivered {
        let sql = format!(
            "SELECT count(*) FROM elevator_readings WHERE device_id = '{}' AND seq = {}",
            t.device_id, t.seq
        );
        assert_eq!(count(&store, &sql).await, 1, "{sql}");
    }
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        100
    );

    // A second crash and reopen replays the same log once, not twice.
    store.write(ws([elevator("EL3", 1)])).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        101
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_torn_last_frame_is_cut_off_and_the_rest_survives() {
    // The crash hit while the last frame (seq 21) was being written: its
    // last bytes are still the zeros written ahead, or (a file system that
    // had to grow the file) not there at all.
    for zeroed in [true, false] {
        torn_last_frame(zeroed).await;
    }
}

async fn torn_last_frame(zeroed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws((1..=20).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store.write(ws([elevator("EL1", 21)])).await.unwrap();
    store.flush().await.unwrap();
    drop(store);

    let last = wal_segments(dir.path()).pop().unwrap();
    let mut data = fs::read(&last).unwrap();
    let end = crate::fixtures::end_of_frames(&data);
    if zeroed {
        data[end - 5..end].fill(0);
    } else {
        data.truncate(end - 5);
    }
    fs::write(&last, &data).unwrap();

    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        20
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM elevator_readings WHERE seq = 21"
        )
        .await,
        0
    );
    // The store goes on as usual after the cut.
    store.write(ws([elevator("EL1", 21)])).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(DISTINCT seq) FROM elevator_readings").await,
        21
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn damage_before_the_end_of_the_log_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    for s in 1..=3 {
        store.write(ws([elevator("EL1", s)])).await.unwrap();
        store.flush().await.unwrap();
    }
    drop(store);
    let seg = wal_segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[12] ^= 0x55; // inside the first frame's body
    fs::write(&seg, bytes).unwrap();

    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    match vigil_storage::embedded::EmbeddedStore::open(config(dir.path()), tx).await {
        Err(StoreError::CorruptWal { path, offset, .. }) => {
            assert_eq!(path, fs::canonicalize(&seg).unwrap());
            assert_eq!(offset, 0);
        }
        other => panic!("expected CorruptWal, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store.write(ws([elevator("EL1", 1)])).await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.write(ws([elevator("EL1", 2)])).await,
        Err(StoreError::Closed)
    ));
    assert!(store.health().is_err());
    assert!(matches!(store.close().await, Err(StoreError::Closed)));
    // What was written before close is on disk.
    let (store, _tokens) = open(dir.path()).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        1
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_writers_wait_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        queue_capacity: 8,
        group_commit_max: 4,
        ..config(dir.path())
    };
    let (store, mut tokens) = open_with(config).await;
    let mut tasks = Vec::new();
    for d in 0..4 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for seq in 1..=100u64 {
                // Batches larger than the queue are accepted too (they take all of it).
                let n = if seq % 10 == 0 { 12 } else { 1 };
                let recs = (0..n).map(|i| elevator(&format!("D{d}"), seq * 100 + i));
                store.write(ws(recs)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = 4 * (90 + 10 * 12);
    take_tokens(&mut tokens, expected).await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        expected as i64
    );
    store.close().await.unwrap();
}
