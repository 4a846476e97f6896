//! Per-device quotas: a device flooding QoS 0 as fast as it can is throttled
//! (its socket is not read) and then disconnected, and counted; a
//! well-behaved neighbour loses nothing meanwhile. (Its ack latency under
//! the flood is measured by `vigil bench flood`, not asserted here.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use vigil_ingest::QuotaConfig;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_is_throttled_and_cut_off_while_a_neighbour_loses_nothing() {
    let rig = Rig::start(RigOptions {
        devices: vec!["GOOD1".into(), "FLOOD1".into()],
        // Devices report every 30 s: 100 messages/s sustained, 200 at once,
        // and 2 s over the quota ends the session.
        quota: QuotaConfig {
            rate_multiple: 3000,
            min_msgs_per_s: 1,
            burst_factor: 2,
            disconnect_after_s: 2,
            ..QuotaConfig::default()
        },
        ..RigOptions::default()
    });
    let mut good = Device::connect(rig.addr(), "GOOD1").await;

    // The flooder: QoS 0, no pause, until its connection is gone.
    let mut opts = MqttOptions::new("FLOOD1", rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials("FLOOD1", SECRET);
    opts.set_keep_alive(Duration::from_secs(60));
    let (flood, mut eventloop) = AsyncClient::new(opts, 4096);
    let cut_off = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let loop_cut = Arc::clone(&cut_off);
    tokio::spawn(async move {
        while eventloop.poll().await.is_ok() {}
        loop_cut.store(true, Ordering::SeqCst);
    });
    let flooding = Arc::clone(&cut_off);
    let flood_sent = Arc::clone(&sent);
    let flooder = tokio::spawn(async move {
        let mut seq = 0u64;
        while !flooding.load(Ordering::SeqCst) {
            seq += 1;
            if flood
                .try_publish(
                    "/tenants/FLOOD1/v1/event",
                    QoS::AtMostOnce,
                    false,
                    event(seq),
                )
                .is_ok()
            {
                flood_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                tokio::task::yield_now().await;
            }
        }
    });

    // The neighbour: 150 readings at 30/s, QoS 1, while the flood runs.
    for seq in 1..=150 {
        good.event(seq).await;
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    good.expect_ack(150).await;
    assert_eq!(
        seqs_of(&rig.store.readings(), "GOOD1"),
        (1..=150).collect::<Vec<_>>(),
        "the neighbour lost nothing"
    );

    rig.until("the flooder is throttled and then cut off", |r| {
        r.metric(r#"vigil_ingest_disconnects_total{reason="quota"}"#) >= 1.0
    })
    .await;
    assert!(rig.metric(r#"vigil_ingest_throttled_total{reason="messages"}"#) >= 1.0);
    rig.until("only the neighbour is still connected", |r| {
        r.metric(r#"vigil_ingest_sessions{login="device"}"#) == 1.0
    })
    .await;
    flooder.abort();
    // Held to its quota: 200 at once, then 100/s for the ~2 s it stayed
    // over, plus what one read brings in. Unthrottled, a QoS 0 flood puts
    // tens of thousands through in that time.
    let taken = rig
        .store
        .readings()
        .iter()
        .filter(|r| r.reading.device_id.as_str() == "FLOOD1")
        .count();
    assert!(
        taken <= 2_000,
        "{taken} flood messages taken of {} queued",
        sent.load(Ordering::Relaxed)
    );
}
