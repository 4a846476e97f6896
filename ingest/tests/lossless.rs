//! Nothing the broker PUBACKs is dropped. When ingest cannot keep up (here:
//! the store stalls), the broker holds the publishers back (no PUBACK, their
//! sockets unread) instead of skipping its log. On rumqttd as published,
//! this test fails: every message is PUBACKed and the ones beyond its log
//! are lost (`broker_skipped`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use vigil_ingest::QuotaConfig;

use crate::harness::*;

const DEVICES: usize = 4;
const PER_DEVICE: u64 = 1500;
/// 6 000 messages × ~4 KiB ≈ 24 MiB: more than the broker's 16 MiB ingest log.
const PAD: usize = 4000;

fn padded(seq: u64) -> Vec<u8> {
    json!({"seq": seq, "ts": T0 - 1000, "code": "E01", "active": true, "pad": "x".repeat(PAD)})
        .to_string()
        .into_bytes()
}

/// A device publishing `PER_DEVICE` padded events at QoS 1 as fast as its
/// client lets it; counts the PUBACKs it gets.
fn publisher(rig: &Rig, id: &str, pubacks: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let mut opts = MqttOptions::new(id, rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials(id, SECRET);
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    pubacks.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => panic!("publisher connection failed: {e}"),
            }
        }
    });
    let topic = format!("/tenants/{id}/v1/event");
    tokio::spawn(async move {
        for seq in 1..=PER_DEVICE {
            client
                .publish(&topic, QoS::AtLeastOnce, false, padded(seq))
                .await
                .expect("queued");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_broker_log_is_stored_whole_while_the_store_stalls() {
    let devices: Vec<String> = (1..=DEVICES).map(|i| format!("EL{i}")).collect();
    let rig = Rig::start(RigOptions {
        devices: devices.clone(),
        // This test is about the broker's log, not about fairness.
        quota: QuotaConfig {
            enabled: false,
            ..QuotaConfig::default()
        },
        ..RigOptions::default()
    });
    rig.store
        .stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let pubacks = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = devices
        .iter()
        .map(|id| publisher(&rig, id, Arc::clone(&pubacks)))
        .collect();

    // With the store stalled, the broker PUBACKs only what its log can
    // hold; then the count stands still.
    let total = DEVICES as u64 * PER_DEVICE;
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = pubacks.load(Ordering::SeqCst);
        if now == last || now == total {
            break;
        }
        last = now;
    }
    let held_at = pubacks.load(Ordering::SeqCst);
    assert!(
        held_at < total,
        "the broker PUBACKed all {total} messages while nothing could be stored"
    );

    rig.store
        .stall
        .store(false, std::sync::atomic::Ordering::SeqCst);
    for p in publishers {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .expect("every publish went out once the store moved")
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rig.store.readings().len() < total as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} stored; broker skipped {}",
            rig.store.readings().len(),
            rig.ingest.stats().broker_skipped
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let readings = rig.store.readings();
    for id in &devices {
        let seqs = seqs_of(&readings, id);
        assert_eq!(
            seqs,
            (1..=PER_DEVICE).collect::<Vec<_>>(),
            "{id}: every message once, in order"
        );
    }
    rig.until("every reading reached the rules", |r| {
        r.ingest.stats().accepted == total
    })
    .await;
    assert_eq!(rig.ingest.stats().broker_skipped, 0);
    rig.until("every message is PUBACKed", |_| {
        pubacks.load(Ordering::SeqCst) == total
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ingest_link_is_reported_and_made_again_without_losing_a_message() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    for seq in 1..=5 {
        device.event(seq).await;
    }
    device.expect_ack(5).await;

    rig.ingest.sever_link().unwrap();
    rig.until("ingest noticed and linked again", |r| {
        r.metric("vigil_ingest_link_restarts_total") == 1.0 && r.ingest.health().is_ok()
    })
    .await;

    for seq in 6..=10 {
        device.event(seq).await;
    }
    device.expect_ack(10).await;
    assert_eq!(
        seqs_of(&rig.store.readings(), "EL1"),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(rig.ingest.stats().broker_skipped, 0);
}

/// `Ingest::heard_through` (how far ingest has handed readings on, which
/// the rules judge devices' silence by) follows the clock while ingest
/// keeps up, stands still while a reading waits in a stalled store write,
/// whatever the clock does, and catches up once the write returns; and it
/// stands still while the store refuses, until a write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heard_through_stands_still_while_the_store_stalls() {
    let rig = Rig::start(RigOptions::default());
    let heard = rig.ingest.heard_through();
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    device.expect_ack(1).await;
    rig.advance_clock(5_000);
    let before = rig.now.load(Ordering::SeqCst);
    rig.until("heard_through follows the clock", |_| heard.get() >= before)
        .await;

    rig.store.stall.store(true, Ordering::SeqCst);
    device.event(2).await;
    device
        .expect_no_ack_above(1, Duration::from_millis(300))
        .await;
    rig.advance_clock(120_000);
    // The ingest thread looks every 50 ms when it can.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        heard.get() <= before,
        "heard_through moved {} ms past the stall",
        heard.get() - before
    );

    rig.store.stall.store(false, Ordering::SeqCst);
    device.expect_ack(2).await;
    rig.until("heard_through catches up", |_| {
        heard.get() >= before + 120_000
    })
    .await;

    // A store that refuses: the reading is not heard (the device re-sends
    // it), and nothing after it is, until a write succeeds again.
    let refused_at = heard.get();
    rig.store.fail.store(true, Ordering::SeqCst);
    device.event(3).await;
    rig.until("the write refused", |r| r.ingest.stats().store_errors > 0)
        .await;
    rig.advance_clock(60_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        heard.get() <= rig.now.load(Ordering::SeqCst) - 60_000,
        "heard_through moved {} ms on while the store refused",
        heard.get() - refused_at
    );
    rig.store.fail.store(false, Ordering::SeqCst);
    device.event(4).await;
    rig.until("heard_through moves once a write succeeds", |r| {
        heard.get() >= r.now.load(Ordering::SeqCst)
    })
    .await;
}

/// The ingest thread starts a batch at most every `batch_interval_us`:
/// publishes that come sooner wait for it and go in one store write. The
/// first publish after a quiet spell is taken at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_within_the_batch_interval_go_in_one_write() {
    let interval = Duration::from_secs(2);
    let rig = Rig::start(RigOptions {
        batch_interval_us: interval.as_micros() as u64,
        ..RigOptions::default()
    });
    let device = Device::connect(rig.addr(), "EL1").await;
    let sent_first = std::time::Instant::now();
    device.event(1).await;
    // Nothing came before it: within the rig's patience, not after 2 s.
    rig.until("1 is written", |r| r.store.readings().len() == 1)
        .await;
    let writes = *rig.store.calls.lock();

    for seq in 2..=4 {
        device.event(seq).await;
    }
    rig.until("2 to 4 are written", |r| r.store.readings().len() == 4)
        .await;
    assert_eq!(
        *rig.store.calls.lock(),
        writes + 1,
        "three publishes, one write"
    );
    assert!(
        sent_first.elapsed() >= interval,
        "the second batch waited for the interval"
    );
}
