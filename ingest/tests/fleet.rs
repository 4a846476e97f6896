//! Many devices at once: every message accepted exactly once, every device
//! acked to its last seq.

use rumqttc::QoS;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_sending_twenty_messages_each_are_all_accepted_once() {
    const DEVICES: usize = 50;
    const MESSAGES: u64 = 20;
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("D{i}")).collect();
    let rig = Rig::start(RigOptions {
        devices: ids.clone(),
        ..RigOptions::default()
    });
    let addr = rig.addr();

    let mut tasks = Vec::new();
    for id in ids.clone() {
        tasks.push(tokio::spawn(async move {
            let mut device = Device::connect(addr, &id).await;
            for seq in 1..=MESSAGES {
                device
                    .send("elevator", elevator(seq).to_string().into_bytes())
                    .await;
            }
            device.expect_ack(MESSAGES).await;
        }));
    }
    for task in tasks {
        task.await.expect("device task");
    }

    // An ack can overtake the rules hand-off of the same batch (the store
    // reports durability before the write call returns).
    rig.until("every reading reached the rules", |r| {
        r.accepted.lock().len() == DEVICES * MESSAGES as usize
    })
    .await;
    let stored = rig.store.readings();
    assert_eq!(stored.len(), DEVICES * MESSAGES as usize);
    for id in &ids {
        assert_eq!(
            seqs_of(&stored, id),
            (1..=MESSAGES).collect::<Vec<_>>(),
            "{id}"
        );
    }
    let stats = rig.ingest.stats();
    assert_eq!(stats.accepted, DEVICES as u64 * MESSAGES);
    assert_eq!(rig.accepted.lock().len(), DEVICES * MESSAGES as usize);
    assert_eq!(
        (
            stats.duplicates,
            stats.rejected_total(),
            stats.seq_gaps,
            stats.broker_skipped
        ),
        (0, 0, 0, 0)
    );
    assert!(
        *rig.store.calls.lock() <= stored.len(),
        "no more than one write per message"
    );
}

/// QoS 0 and 1 publishes go from the socket task straight to ingest; QoS 2
/// still passes the broker's router (its PUBREC/PUBREL exchange). A device
/// mixing all three gets every reading stored once and acked (the spec has
/// devices publish at QoS 1; the others must not be lost either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_at_every_qos_are_stored_and_acked() {
    let rig = Rig::start(RigOptions {
        devices: vec!["Q1".to_owned()],
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "Q1").await;
    let topic = "/tenants/Q1/v1/elevator";
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for seq in 1..=9u64 {
        device
            .client
            .publish(
                topic,
                qos[(seq % 3) as usize],
                false,
                elevator(seq).to_string().into_bytes(),
            )
            .await
            .expect("publish queued");
    }
    device.expect_ack(9).await;
    rig.until("every reading reached the rules", |r| {
        r.accepted.lock().len() == 9
    })
    .await;
    // The two paths may store them in another order than they were sent.
    let mut stored = seqs_of(&rig.store.readings(), "Q1");
    stored.sort_unstable();
    assert_eq!(stored, (1..=9).collect::<Vec<_>>());
}
