//! Exact de-duplication through the real binary: a `(device_id, seq)` is
//! dropped as a duplicate only when that very message is stored, across
//! the gap grace, clean restarts and SIGKILL; an implausible seq is refused
//! and silences nobody.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::*;

const DEV: &str = "DEV0000";

async fn device(vigil: &Vigil, secret: &str) -> Device {
    Device::connect(vigil.mqtt, DEV, secret).await.unwrap()
}

async fn send_all(dev: &Device, seqs: impl IntoIterator<Item = u64>, ts: i64) {
    for seq in seqs {
        dev.publish("elevator", &idle(seq, ts + seq as i64 * 100))
            .await;
    }
}

async fn stored(vigil: &Vigil) -> i64 {
    vigil
        .sql_count(&format!(
            "SELECT count(*) AS n FROM elevator_readings WHERE device_id = '{DEV}'"
        ))
        .await
}

/// Waits until the store holds `n` readings of the device.
async fn until_stored(vigil: &Vigil, n: i64) {
    eventually(30, &format!("{n} readings stored"), || async {
        (stored(vigil).await == n).then_some(())
    })
    .await;
}

/// Every `(device, seq)` of the device's readings is there exactly once,
/// and these are the seqs.
async fn assert_each_once(vigil: &Vigil, seqs: &[u64]) {
    let twice = vigil
        .sql_count(&format!(
            "SELECT count(*) AS n FROM (SELECT seq FROM elevator_readings WHERE device_id = '{DEV}' \
             GROUP BY seq HAVING count(*) > 1) AS d"
        ))
        .await;
    assert_eq!(twice, 0, "a seq stored twice");
    let rows = vigil
        .sql(&format!(
            "SELECT seq FROM elevator_readings WHERE device_id = '{DEV}' ORDER BY seq"
        ))
        .await;
    let got: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, seqs);
}

/// A data dir whose engine passes seq holes after 1 s.
fn short_grace(dir: &Path) {
    std::fs::write(dir.join("vigil.toml"), "[ingest]\ngap_grace_s = 1\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_open_at_sigkill_is_stored_once_when_re_sent_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let ts = now_ms() - 60_000;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    // 6 is lost on the way: the ack stays below it.
    send_all(&dev, (1..=5).chain(7..=10), ts).await;
    dev.wait_ack(5, 20).await;
    until_stored(&vigil, 9).await;
    assert_eq!(*dev.acked.borrow(), 5, "the ack waits below the hole");
    dev.disconnect().await;
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();

    // The device re-sends everything not acked: the hole and what follows.
    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, 6..=10, ts).await;
    dev.wait_ack(10, 20).await;
    assert_each_once(&vigil, &(1..=10).collect::<Vec<_>>()).await;
    assert_eq!(vigil.metric("vigil_ingest_duplicates_total").await, 4.0);
    // And once more, now that everything is acked: all duplicates.
    send_all(&dev, 1..=10, ts).await;
    eventually(20, "ten more duplicates", || async {
        (vigil.metric("vigil_ingest_duplicates_total").await == 14.0).then_some(())
    })
    .await;
    assert_each_once(&vigil, &(1..=10).collect::<Vec<_>>()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_send_after_the_grace_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    short_grace(dir.path());
    let vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let ts = now_ms() - 60_000;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, [1, 2, 4, 5], ts).await;
    // After the grace the ack passes the hole at 3.
    dev.wait_ack(5, 20).await;
    assert_eq!(vigil.metric("vigil_ingest_seq_gaps_total").await, 1.0);
    // 3 comes late: below the ack, never stored, so it is stored now.
    send_all(&dev, [3], ts).await;
    eventually(20, "the late 3 stored", || async {
        (stored(&vigil).await == 5).then_some(())
    })
    .await;
    eventually(20, "the late 3 counted", || async {
        (vigil.metric("vigil_ingest_late_total").await == 1.0).then_some(())
    })
    .await;
    // A copy of it now is a duplicate.
    send_all(&dev, [3, 4], ts).await;
    eventually(20, "two duplicates", || async {
        (vigil.metric("vigil_ingest_duplicates_total").await == 2.0).then_some(())
    })
    .await;
    assert_each_once(&vigil, &[1, 2, 3, 4, 5]).await;
}

/// `idle` with any seq (its `run_count` is derived from small seqs only).
fn with_seq(seq: u64, ts: i64) -> Value {
    let mut v = idle(1, ts);
    v["seq"] = json!(seq);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_of_u64_max_does_not_silence_the_device_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let ts = now_ms() - 60_000;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, [1], ts).await;
    dev.publish("elevator", &with_seq(u64::MAX, ts)).await;
    // Further than max_seq_rate (10^9 a second by default) lets a device
    // jump a moment after its highest seq, 1.
    dev.publish("elevator", &with_seq(2 + 1_000_000_000_000, ts))
        .await;
    send_all(&dev, [2, 3], ts).await;
    dev.wait_ack(3, 20).await;
    assert_each_once(&vigil, &[1, 2, 3]).await;
    let letters = vigil
        .sql(&format!(
            "SELECT detail, seq FROM dead_letters WHERE device_id = '{DEV}' AND reason = 'seq_jump'"
        ))
        .await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let said = |what: &str| {
        letters
            .iter()
            .any(|l| l["detail"].as_str().is_some_and(|d| d.contains(what)))
    };
    assert!(
        said("18446744073709551615") && said("max_seq_rate"),
        "{letters:?}"
    );
    assert!(
        letters.iter().all(|l| l["seq"].is_null()),
        "a refused seq is not taken"
    );
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_rejected_total{reason="seq_jump"}"#)
            .await,
        2.0
    );
    dev.disconnect().await;

    // After a crash the device (which never got an ack for it) re-sends it.
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();
    let mut vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    dev.publish("elevator", &with_seq(u64::MAX, ts)).await;
    send_all(&dev, [4], ts).await;
    dev.wait_ack(4, 20).await;
    assert_eq!(*dev.acked.borrow(), 4, "never acked past the refused seq");
    dev.disconnect().await;
    // And after a clean restart.
    assert!(vigil.stop().success());
    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, [5], ts).await;
    dev.wait_ack(5, 20).await;
    assert_each_once(&vigil, &[1, 2, 3, 4, 5]).await;
    assert_eq!(
        vigil
            .sql_count(&format!(
                "SELECT count(*) AS n FROM dead_letters WHERE device_id = '{DEV}' AND reason = 'seq_jump'"
            ))
            .await,
        3,
        "each copy of a refused message is kept, none taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_stay_duplicates_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let ts = now_ms() - 60_000;
    let dev = device(&vigil, &secrets[DEV]).await;
    // Killed as soon as the rows are in, whether or not the acks made it.
    send_all(&dev, 1..=20, ts).await;
    until_stored(&vigil, 20).await;
    dev.disconnect().await;
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();

    let mut vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, 1..=20, ts).await;
    dev.wait_ack(20, 20).await;
    eventually(20, "twenty duplicates", || async {
        (vigil.metric("vigil_ingest_duplicates_total").await == 20.0).then_some(())
    })
    .await;
    assert_each_once(&vigil, &(1..=20).collect::<Vec<_>>()).await;
    dev.disconnect().await;

    // After a clean stop everything is in Parquet (or PostgreSQL) and the
    // history comes from there.
    assert!(vigil.stop().success());
    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    send_all(&dev, 15..=21, ts).await;
    dev.wait_ack(21, 20).await;
    assert_each_once(&vigil, &(1..=21).collect::<Vec<_>>()).await;
    assert_eq!(vigil.metric("vigil_ingest_duplicates_total").await, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sends_older_than_the_history_in_memory_are_looked_up_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    short_grace(dir.path());
    let mut vigil = Vigil::start_in(dir.path(), None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let ts = now_ms() - 60_000;
    let mut dev = device(&vigil, &secrets[DEV]).await;
    // Odd seqs only: each one a run of its own, more than a device keeps
    // in memory (32), so the oldest are the store's to know.
    let odd: Vec<u64> = (0..41).map(|i| 2 * i + 1).collect();
    send_all(&dev, odd.iter().copied(), ts).await;
    dev.wait_ack(81, 30).await;
    dev.disconnect().await;
    let ports = (vigil.mqtt, vigil.http);
    vigil.kill();

    let vigil = Vigil::start_in(dir.path(), Some(ports)).await;
    let dev = device(&vigil, &secrets[DEV]).await;
    // 1 is stored; 2 never was.
    send_all(&dev, [1, 2, 1, 2], ts).await;
    eventually(20, "2 stored", || async {
        (stored(&vigil).await == 42).then_some(())
    })
    .await;
    // Both copies of 1 and the second 2.
    eventually(20, "three duplicates", || async {
        (vigil.metric("vigil_ingest_duplicates_total").await == 3.0).then_some(())
    })
    .await;
    assert!(vigil.metric("vigil_ingest_seq_lookups_total").await >= 3.0);
    assert_eq!(vigil.metric("vigil_ingest_late_total").await, 1.0);
    let mut all = odd.clone();
    all.push(2);
    all.sort_unstable();
    assert_each_once(&vigil, &all).await;
}
