//! Many devices at once: every message accepted exactly once, every device
//! acked to its last seq.

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
