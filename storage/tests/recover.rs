//! What the engine gets back after a restart.

use vigil_model::{AlarmState, DeviceId};
use vigil_storage::{Record, Store};

use crate::fixtures::*;

#[tokio::test]
async fn recover_returns_last_seq_per_device_and_the_alarms_rules_need() {
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
    assert_eq!(rec.last_seq.get(&id("EL1")), Some(&45));
    assert_eq!(rec.last_seq.get(&id("RD1")), Some(&2));
    assert_eq!(rec.last_seq.get(&id("FS1")), Some(&4));
    assert_eq!(rec.last_seq.len(), 4);
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
    assert!(rec.last_seq.is_empty() && rec.last_seen.is_empty() && rec.alarms.is_empty());
    store.close().await.unwrap();
}
