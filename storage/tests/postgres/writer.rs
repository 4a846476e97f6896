use vigil_model::AlarmState;
use vigil_storage::{QueryOptions, Record, Store, Write};

use crate::cluster::SERVER;
use crate::fixtures::{self, alarm, elevator, one_of_each, take_tokens, ws};
use crate::support::{client, count, db, open};

/// Every table through COPY reads back exactly as the embedded store shows it.
#[tokio::test]
async fn every_table_reads_back_like_the_embedded_store() {
    let _server = SERVER.read().unwrap();
    let db = db("copy_all");
    let (pg, mut pg_tokens) = open(&db.config).await;
    let dir = tempfile::tempdir().unwrap();
    let (embedded, mut e_tokens) = fixtures::open(dir.path()).await;
    let mut records = one_of_each();
    records.push(Record::Alarm(alarm(
        "alarm-1",
        2,
        AlarmState::Acknowledged,
        fixtures::T0,
    )));
    records.push(fixtures::dead_letter(b"with \0 a NUL"));
    pg.write(ws(records.clone())).await.unwrap();
    embedded.write(ws(records)).await.unwrap();
    take_tokens(&mut pg_tokens, 5).await;
    take_tokens(&mut e_tokens, 5).await;
    pg.flush().await.unwrap();
    embedded.flush().await.unwrap();

    for t in vigil_storage::TABLES.iter().chain(&["alarms"]) {
        let order = match *t {
            "alarm_changes" | "alarms" => "alarm_id, version",
            "dead_letters" => "payload_size",
            _ => "device_id, seq",
        };
        let sql = format!("SELECT * FROM {t} ORDER BY {order}");
        let mut from_pg = fixtures::json_rows(
            &pg.query(&sql, &QueryOptions::default())
                .await
                .unwrap()
                .batches,
        );
        let from_embedded = fixtures::json_rows(&fixtures::query(&embedded, &sql).await.unwrap());
        if *t == "dead_letters" {
            // PostgreSQL text cannot hold NUL: the lossy text has U+FFFD there.
            let text = from_pg[1]["payload_text"].as_str().unwrap().to_owned();
            assert_eq!(text, "with \u{FFFD} a NUL");
            from_pg[1]["payload_text"] = "with \0 a NUL".into();
        }
        assert!(!from_pg.is_empty(), "{t} is empty");
        assert_eq!(from_pg, from_embedded, "{t}");
    }
    pg.close().await.unwrap();
}

#[tokio::test]
async fn tokens_come_after_the_rows_are_committed_and_duplicates_are_stored_once() {
    let _server = SERVER.read().unwrap();
    let db = db("ack");
    let c = client(&db.config).await;
    let (store, mut tokens) = open(&db.config).await;
    for round in 0..5u64 {
        let batch: Vec<Write> = ws((1..=200).map(|i| elevator("EL1", round * 200 + i)));
        store.write(batch).await.unwrap();
        let got = take_tokens(&mut tokens, 200).await;
        let top = got.iter().map(|t| t.seq).max().unwrap();
        // Whoever holds a token can already read its row in another session.
        let n = count(
            &c,
            &format!(
                "SELECT count(*) FROM elevator_readings WHERE device_id = 'EL1' AND seq <= {top}"
            ),
        )
        .await;
        assert_eq!(n as u64, top, "round {round}");
    }
    // A device re-sending what was stored (a lost ack) does not duplicate it.
    store
        .write(ws((1..=300).map(|i| elevator("EL1", i))))
        .await
        .unwrap();
    take_tokens(&mut tokens, 300).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        1000
    );
    // Old and new rows in one batch, and a row twice in it: the new ones go in once.
    let mixed = (991..=1010).chain([1005]).map(|i| elevator("EL1", i));
    store.write(ws(mixed)).await.unwrap();
    take_tokens(&mut tokens, 21).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        1010
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn recovery_reads_devices_and_alarms_back() {
    let _server = SERVER.read().unwrap();
    let db = db("recover");
    let (store, mut tokens) = open(&db.config).await;
    let now = chrono::Utc::now().timestamp_millis();
    store
        .write(ws([
            elevator("EL1", 7),
            elevator("EL2", 3),
            Record::Alarm(alarm("open", 1, AlarmState::Active, now - 1000)),
            Record::Alarm(alarm("open", 2, AlarmState::Acknowledged, now - 1000)),
            Record::Alarm(alarm("old", 1, AlarmState::Cleared, now - 3 * 86_400_000)),
        ]))
        .await
        .unwrap();
    take_tokens(&mut tokens, 2).await;
    store.close().await.unwrap();

    let (store, _tokens) = open(&db.config).await;
    let r = store.recover().await.unwrap();
    assert_eq!(r.seqs.len(), 2);
    assert_eq!(
        r.seqs[&vigil_model::DeviceId::new("EL1").unwrap()].runs(),
        [(7, 7)]
    );
    assert_eq!(r.alarms.len(), 1, "{:?}", r.alarms);
    assert_eq!(
        r.alarms[0],
        alarm("open", 2, AlarmState::Acknowledged, now - 1000)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn what_the_local_log_holds_at_start_is_shipped_first() {
    let _server = SERVER.read().unwrap();
    let db = db("leftover");
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(ws((1..=10).map(|i| elevator("EL1", i))))
        .await
        .unwrap();
    take_tokens(&mut tokens, 10).await;
    store.close().await.unwrap();
    drop(store);
    // An earlier run that stopped during an outage: its batch is still in the log.
    let wal = db.config.wal_dir.join(format!("{:020}.log", 99));
    let frame = vigil_storage_test_frame(&[elevator("EL1", 11), elevator("EL1", 12)]);
    std::fs::write(&wal, frame).unwrap();

    let (store, _tokens) = open(&db.config).await;
    let c = client(&db.config).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        12
    );
    assert!(!wal.exists(), "shipped batches leave the local log");
    assert_eq!(
        store
            .recover()
            .await
            .unwrap()
            .seqs
            .values()
            .filter_map(|s| s.highest())
            .max(),
        Some(12)
    );
    store.close().await.unwrap();
}

/// A log file as the writer leaves it: one frame, written through the
/// embedded store's WAL (same format), read back from its segment.
fn vigil_storage_test_frame(records: &[Record]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let records = records.to_vec();
    let path = dir.path().to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (store, mut tokens) = fixtures::open(&path).await;
            store.write(ws(records.clone())).await.unwrap();
            take_tokens(&mut tokens, records.len()).await;
            drop(store);
        })
    })
    .join()
    .unwrap();
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .find(|b| !b.is_empty())
        .map(|mut b| {
            // Without the zeros the embedded store writes ahead of its frames.
            b.truncate(fixtures::end_of_frames(&b));
            b
        })
        .expect("a WAL frame")
}

#[tokio::test]
async fn seq_history_and_look_ups_come_from_the_keys() {
    use crate::seq_history::{check_history, history};
    let _server = SERVER.read().unwrap();
    let db = db("seqs");
    let (stored, batches) = history();
    let (store, mut tokens) = open(&db.config).await;
    for batch in batches {
        let n = batch.iter().filter(|w| w.ack.is_some()).count();
        store.write(batch).await.unwrap();
        take_tokens(&mut tokens, n).await;
    }
    check_history(&*store, &stored).await;
    store.close().await.unwrap();
    let (store, _tokens) = open(&db.config).await;
    check_history(&*store, &stored).await;
    let c = client(&db.config).await;
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM dead_letters WHERE device_id = 'EL3' AND seq = 5"
        )
        .await,
        1
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM dead_letters WHERE seq IS NULL").await,
        1
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn batches_after_a_restart_are_stored_not_taken_for_shipped_ones() {
    let _server = SERVER.read().unwrap();
    let db = db("renumber");
    let (store, mut tokens) = open(&db.config).await;
    for seq in 1..=3 {
        store.write(ws([elevator("EL1", seq)])).await.unwrap();
        take_tokens(&mut tokens, 1).await;
    }
    store.close().await.unwrap();
    // The local log is empty now; PostgreSQL remembers batches up to 3.
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(ws([elevator("EL1", 4), elevator("EL1", 5)]))
        .await
        .unwrap();
    take_tokens(&mut tokens, 2).await;
    let c = client(&db.config).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        5,
        "acked after the restart means stored"
    );
    store.close().await.unwrap();
}
