use std::time::Duration;

use vigil_storage::{Store, StoreStats};

use crate::cluster::{SERVER, cluster};
use crate::fixtures::{elevator, take_tokens, ws};
use crate::support::{client, count, db, open};

/// Polls until `f` holds (no timing assertion: only a generous bound).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn postgres_going_away_mid_stream_loses_nothing_and_duplicates_nothing() {
    let _server = SERVER.write().unwrap_or_else(|e| e.into_inner());
    let pg = cluster();
    assert!(
        pg.is_local(),
        "the outage test stops the server: run it against the test harness's own cluster (unset VIGIL_TEST_DATABASE_URL)"
    );
    let db = db("outage");
    let (store, mut tokens) = open(&db.config).await;
    let mut seq = 0u64;
    let mut next = |n: u64| {
        let batch = ws((seq + 1..=seq + n).map(|i| elevator(&format!("EL{}", i % 7), i)));
        seq += n;
        batch
    };
    for _ in 0..10 {
        store.write(next(100)).await.unwrap();
    }
    take_tokens(&mut tokens, 1000).await;

    pg.stop();
    // Writes keep being accepted into the local log.
    for _ in 0..10 {
        store.write(next(100)).await.unwrap();
    }
    eventually("the outage is reported", || store.health().is_err()).await;
    eventually("the batches wait in the local log", || {
        store.backlog_batches() > 0
    })
    .await;
    assert!(
        tokens.try_recv().is_err(),
        "nothing is acked while PostgreSQL does not have it"
    );
    let reason = store.health().unwrap_err();
    assert!(reason.contains("PostgreSQL unavailable"), "{reason}");
    // The metrics: one outage, every record accepted since waits in the log.
    eventually("all 1000 records are counted in the backlog", || {
        store.stats().backlog_records == 1000
    })
    .await;
    let stats = store.stats();
    assert!(stats.outage);
    assert_eq!(stats.outages, 1);
    assert!(stats.backlog_batches > 0);

    pg.start();
    for _ in 0..5 {
        store.write(next(100)).await.unwrap();
    }
    store.flush().await.unwrap();
    let acked = take_tokens(&mut tokens, 1500).await;
    assert_eq!(acked.len(), 1500);
    eventually("health is back", || store.health().is_ok()).await;
    assert_eq!(store.backlog_batches(), 0);
    assert_eq!(
        store.stats(),
        StoreStats {
            outage: false,
            outages: 1,
            backlog_batches: 0,
            backlog_records: 0
        }
    );

    let c = client(&db.config).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        2500
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(DISTINCT (device_id, seq)) FROM elevator_readings"
        )
        .await,
        2500
    );
    assert_eq!(
        count(&c, "SELECT max(seq) FROM elevator_readings").await,
        2500
    );

    // With nothing to write, the outage still shows (an idle check).
    drop(c);
    pg.stop();
    eventually("an idle outage is reported", || store.stats().outage).await;
    assert!(store.health().is_err());
    assert_eq!(store.stats().outages, 2);
    pg.start();
    eventually("health is back while idle", || store.health().is_ok()).await;
    store.close().await.unwrap();
}
