//! Accepted readings, de-duplication and the ack watermark.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_model::{Payload, RejectReason, Stream};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_reach_rules_and_store_and_are_acked() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    for seq in 1..=3 {
        device
            .send("elevator", elevator(seq).to_string().into_bytes())
            .await;
    }
    device.expect_ack(3).await;
    // The ack may overtake the hand-over to the rules: it waits for the
    // store, the rules wait for the store call to return.
    rig.until("the rules saw all three", |r| r.accepted.lock().len() == 3)
        .await;

    let accepted = rig.accepted.lock().clone();
    assert_eq!(
        accepted.iter().map(|a| a.reading.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let first = &accepted[0];
    assert_eq!(first.reading.device_id.as_str(), "EL1");
    assert_eq!(
        (first.reading.ts, first.reading.received_at),
        (T0 - 1000, T0)
    );
    assert!(matches!(&first.reading.payload, Payload::Elevator(s) if s.floor == 3));
    assert_eq!(
        first.reading.extra.as_deref(),
        Some(r#"{"firmware":"2.1"}"#)
    );
    assert_eq!(first.context.binding.equipment_id.as_str(), "EQ-EL1");

    let stored = rig.store.readings();
    assert_eq!(seqs_of(&stored, "EL1"), vec![1, 2, 3]);
    assert_eq!(stored[0].binding.equipment_id.as_str(), "EQ-EL1");
    assert_eq!(stored[0].reading.stream(), Stream::Elevator);
    // Every stored reading carries the token the store reports back.
    let tokens: Vec<u64> = rig
        .store
        .writes
        .lock()
        .iter()
        .filter_map(|w| w.ack.as_ref().map(|t| t.seq))
        .collect();
    assert_eq!(tokens, vec![1, 2, 3]);

    // The ack is counted once it was put into the device's mailbox, which
    // can be just after the device already has it.
    rig.until("the ack is counted", |r| {
        r.ingest.stats().acks_published >= 1
    })
    .await;
    let stats = rig.ingest.stats();
    assert_eq!(
        (
            stats.messages,
            stats.accepted,
            stats.duplicates,
            stats.rejected_total()
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(rig.metric("vigil_ingest_accepted_total"), 3.0);
    assert!(rig.metric("vigil_ingest_commit_latency_seconds_count") >= 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_waits_until_the_store_reports_durable() {
    let rig = Rig::start(RigOptions::default());
    rig.store.hold.store(true, Ordering::SeqCst);
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    device.event(2).await;
    rig.until("both are written", |r| r.store.readings().len() == 2)
        .await;
    device
        .expect_no_ack_above(0, Duration::from_millis(300))
        .await;
    rig.store.release().await;
    device.expect_ack(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_once_and_acked_again() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    for seq in 1..=3 {
        device.event(seq).await;
    }
    device.expect_ack(3).await;
    // A device that missed the ack re-sends; it must hear the ack again.
    device.event(2).await;
    device.event(3).await;
    device.expect_ack(3).await;
    rig.until("both duplicates are counted", |r| {
        r.ingest.stats().duplicates == 2
    })
    .await;
    device.event(4).await;
    device.expect_ack(4).await;

    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![1, 2, 3, 4]);
    rig.until("4 reached the rules", |r| r.accepted.lock().len() >= 4)
        .await;
    assert_eq!(rig.accepted.lock().len(), 4, "rules see each reading once");
    assert_eq!(rig.metric("vigil_ingest_duplicates_total"), 2.0);
}

/// A device's mailbox keeps only the newest watermark: acks go on arriving
/// one at a time, and after a burst the last one covers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_keep_coming_one_at_a_time_and_after_a_burst() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    for seq in 1..=150 {
        device.event(seq).await;
        device.expect_ack(seq).await;
    }
    for seq in 151..=450 {
        device.event(seq).await;
    }
    device.expect_ack(450).await;
    assert_eq!(
        seqs_of(&rig.store.readings(), "EL1"),
        (1..=450).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_the_store_counts_for_de_duplication() {
    let rig = Rig::start(RigOptions {
        history: HashMap::from([("EL1".into(), (1..=10).collect())]),
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(9).await;
    device.event(10).await;
    device.expect_ack(10).await;
    device.event(11).await;
    device.expect_ack(11).await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![11]);
    assert_eq!(rig.ingest.stats().duplicates, 2);
    assert!(rig.store.lookups.lock().is_empty(), "memory knew them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_open_before_the_restart_is_stored_when_re_sent() {
    // The store holds 1..=4 and 6..=8: 5 was missing when the last run ended.
    let rig = Rig::start(RigOptions {
        history: HashMap::from([("EL1".into(), vec![1, 2, 3, 4, 6, 7, 8])]),
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(7).await;
    device.expect_ack(4).await;
    device
        .expect_no_ack_above(4, Duration::from_millis(300))
        .await;
    device.event(5).await;
    device.expect_ack(8).await;
    device.event(5).await;
    device.expect_ack(8).await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![5]);
    let stats = rig.ingest.stats();
    assert_eq!((stats.duplicates, stats.seq_gaps, stats.late), (2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_older_than_the_history_in_memory_are_looked_up_in_the_store() {
    // Recovery knows seqs from 100 up; the store also holds 40 (and not 41).
    let rig = Rig::start(RigOptions {
        history: HashMap::from([("EL1".into(), vec![40, 100, 101])]),
        floor: HashMap::from([("EL1".into(), 100)]),
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(40).await;
    device.event(41).await;
    device.event(41).await;
    device.event(102).await;
    device.expect_ack(102).await;
    rig.until("41 is written", |r| r.store.readings().len() == 2)
        .await;
    let mut stored = seqs_of(&rig.store.readings(), "EL1");
    stored.sort_unstable();
    assert_eq!(stored, vec![41, 102]);
    let looked_up: Vec<u64> = rig.store.lookups.lock().iter().map(|k| k.1).collect();
    assert!(
        looked_up.contains(&40) && looked_up.contains(&41) && !looked_up.contains(&102),
        "{looked_up:?}"
    );
    let stats = rig.ingest.stats();
    assert_eq!((stats.duplicates, stats.late), (2, 1));
    assert_eq!(
        rig.metric("vigil_ingest_seq_lookups_total"),
        stats.seq_lookups as f64
    );
    // Durable now, 41 is the store's to know: a copy is found there.
    device.event(41).await;
    rig.until("the copy is counted", |r| r.ingest.stats().duplicates == 3)
        .await;
    assert_eq!(rig.store.readings().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implausible_seq_is_dead_lettered_and_does_not_silence_the_device() {
    let rig = Rig::start(RigOptions {
        history: HashMap::from([("EL1".into(), (1..=5).collect())]),
        max_seq_rate: 1000,
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(u64::MAX).await;
    device.event(5 + 2000).await;
    device.event(6).await;
    device.expect_ack(6).await;
    device.event(5 + 2000).await;
    device.event(7).await;
    device.expect_ack(7).await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![6, 7]);
    let letters = rig.store.dead_letters();
    assert_eq!(letters.len(), 3, "every copy of a refused message is kept");
    for (letter, ack) in &letters {
        assert_eq!(letter.reason, RejectReason::SeqJump);
        assert_eq!((letter.seq, ack), (None, &None), "no seq taken, no ack");
    }
    assert!(
        letters[0].0.detail.contains("18446744073709551615")
            && letters[0].0.detail.contains("9223372036854775807"),
        "{}",
        letters[0].0.detail
    );
    assert!(
        letters[1]
            .0
            .detail
            .contains("jumps 2000 past this device's highest seq 5")
            && letters[1].0.detail.contains("max_seq_rate (1000 a second)"),
        "{}",
        letters[1].0.detail
    );
    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="seq_jump"}"#),
        3.0
    );
    // Never acked past the refused seq.
    device
        .expect_no_ack_above(7, Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_seq_holds_the_ack_until_the_device_fills_it() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    for seq in [1, 2, 4, 5] {
        device.event(seq).await;
    }
    device.expect_ack(2).await;
    rig.until("4 and 5 are written", |r| r.store.readings().len() == 4)
        .await;
    device
        .expect_no_ack_above(2, Duration::from_millis(300))
        .await;
    device.event(3).await;
    device.expect_ack(5).await;
    assert_eq!(rig.ingest.stats().seq_gaps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfilled_gap_is_counted_and_passed_after_the_grace() {
    let rig = Rig::start(RigOptions {
        gap_grace_s: 30,
        ..RigOptions::default()
    });
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    device.event(3).await;
    device.expect_ack(1).await;
    rig.until("3 is written", |r| r.store.readings().len() == 2)
        .await;
    rig.advance_clock(29_000);
    device
        .expect_no_ack_above(1, Duration::from_millis(300))
        .await;
    rig.advance_clock(1_000);
    device.expect_ack(3).await;
    assert_eq!(rig.ingest.stats().seq_gaps, 1);
    assert_eq!(rig.metric("vigil_ingest_seq_gaps_total"), 1.0);
    // A late 2 was never stored: it is stored now, and the device hears
    // the watermark (unchanged) again once it is durable.
    let acks_before = rig.ingest.stats().acks_published;
    device.event(2).await;
    rig.until("the late 2 is acked", |r| {
        r.ingest.stats().acks_published > acks_before
    })
    .await;
    device.expect_ack(3).await;
    device.event(2).await;
    rig.until("its copy is a duplicate", |r| {
        r.ingest.stats().duplicates == 1
    })
    .await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![1, 3, 2]);
    assert_eq!(rig.ingest.stats().late, 1);
    assert_eq!(rig.metric("vigil_ingest_late_total"), 1.0);
}

/// A device's MQTT client, seen packet by packet: what it receives comes
/// out of `incoming`, and its QoS 1 publishes are PUBACKed only when asked.
struct Raw {
    client: rumqttc::AsyncClient,
    incoming: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Raw {
    async fn connect(rig: &Rig, id: &str, clean_session: bool) -> Raw {
        let addr = rig.addr();
        let mut opts = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_credentials(id, SECRET);
        opts.set_clean_session(clean_session);
        opts.set_manual_acks(true);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
        let (tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let rumqttc::Event::Incoming(packet) = event {
                    let _ = tx.send(packet);
                }
            }
        });
        match next_packet(&mut incoming).await {
            rumqttc::Packet::ConnAck(ack) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
            }
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
        Raw {
            client,
            incoming,
            task,
        }
    }

    async fn next(&mut self) -> rumqttc::Packet {
        next_packet(&mut self.incoming).await
    }

    /// The next ack: its seq, QoS and the publish (for a manual PUBACK).
    async fn ack(&mut self) -> (u64, rumqttc::QoS, rumqttc::Publish) {
        loop {
            if let rumqttc::Packet::Publish(p) = self.next().await {
                let seq: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                return (seq["seq"].as_u64().unwrap(), p.qos, p);
            }
        }
    }

    /// Nothing is published to this client for a short while.
    async fn expect_no_publish(&mut self) {
        let quiet = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                () = &mut quiet => return,
                p = self.incoming.recv() => {
                    assert!(!matches!(p, Some(rumqttc::Packet::Publish(_))), "unexpected {p:?}")
                }
            }
        }
    }

    /// Waits up to `within` for a PUBACK; `None` if none came. Acks that
    /// come meanwhile are PUBACKed and counted in `acks`.
    async fn puback(&mut self, within: Duration, acks: &mut Vec<u64>) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Err(_) => return None,
                Ok(None) => panic!("the client's event loop ended"),
                Ok(Some(rumqttc::Packet::PubAck(ack))) => return Some(ack.pkid),
                Ok(Some(rumqttc::Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    acks.push(v["seq"].as_u64().unwrap());
                    self.client.ack(&p).await.unwrap();
                }
                Ok(Some(_)) => {}
            }
        }
    }

    async fn event(&self, id: &str, seq: u64) {
        self.client
            .publish(
                format!("/tenants/{id}/v1/event"),
                rumqttc::QoS::AtLeastOnce,
                false,
                event(seq),
            )
            .await
            .unwrap();
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drops the device's connection and waits until the engine saw it end.
async fn gone(rig: &Rig, device: Raw) {
    drop(device);
    rig.until("the session ended", |r| {
        r.metric(r#"vigil_ingest_sessions{login="device"}"#) == 0.0
    })
    .await;
}

async fn next_packet(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Packet>,
) -> rumqttc::Packet {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a packet within PATIENCE")
        .expect("the client's event loop runs")
}

/// Acks are written by the device's own connection (not rumqttd's router):
/// at the QoS it subscribed with (QoS 2 asked is granted as 1), and none
/// once it unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_hears_its_acks_at_the_qos_it_subscribed_with_until_it_unsubscribes() {
    use rumqttc::{Packet, QoS, SubscribeReasonCode};
    let rig = Rig::start(RigOptions {
        devices: vec!["EL1".into(), "EL2".into()],
        ..RigOptions::default()
    });
    for (id, asked, granted) in [
        ("EL1", QoS::AtMostOnce, QoS::AtMostOnce),
        ("EL2", QoS::ExactlyOnce, QoS::AtLeastOnce),
    ] {
        let mut device = Raw::connect(&rig, id, true).await;
        let topic = format!("/tenants/{id}/v1/ack");
        device.client.subscribe(&topic, asked).await.unwrap();
        match device.next().await {
            Packet::SubAck(ack) => {
                assert_eq!(
                    ack.return_codes,
                    vec![SubscribeReasonCode::Success(granted)]
                )
            }
            other => panic!("{id}: expected SUBACK, got {other:?}"),
        }
        device.event(id, 1).await;
        let (seq, qos, publish) = device.ack().await;
        assert_eq!(
            (seq, qos, publish.topic.as_str()),
            (1, granted, topic.as_str())
        );
        if qos == QoS::AtLeastOnce {
            assert_ne!(publish.pkid, 0);
            device.client.ack(&publish).await.unwrap();
        }

        device.client.unsubscribe(&topic).await.unwrap();
        loop {
            match device.next().await {
                Packet::UnsubAck(_) => break,
                Packet::PubAck(_) => {}
                other => panic!("{id}: expected UNSUBACK, got {other:?}"),
            }
        }
        device.event(id, 2).await;
        rig.until("2 is stored", |r| {
            seqs_of(&r.store.readings(), id).len() == 2
        })
        .await;
        device.expect_no_publish().await;
    }
}

/// A persistent session keeps its ack subscription while the device is
/// away: the next connection hears the watermark put meanwhile (the newest,
/// in place of one never PUBACKed), without subscribing again. A clean
/// session ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_hears_the_ack_it_missed_while_away() {
    use rumqttc::QoS;
    let rig = Rig::start(RigOptions::default());
    let mut device = Raw::connect(&rig, "EL1", false).await;
    device
        .client
        .subscribe("/tenants/EL1/v1/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    device.event("EL1", 1).await;
    let (seq, _, _) = device.ack().await;
    assert_eq!(seq, 1, "not PUBACKed");

    // 2 is durable only once the device is gone.
    rig.store.hold.store(true, Ordering::SeqCst);
    device.event("EL1", 2).await;
    rig.until("2 is written", |r| r.store.readings().len() == 2)
        .await;
    gone(&rig, device).await;
    rig.store.release().await;
    rig.until("the ack of 2 is published", |r| {
        r.ingest.stats().acks_published >= 2
    })
    .await;

    let mut device = Raw::connect(&rig, "EL1", false).await;
    let (seq, qos, publish) = device.ack().await;
    assert_eq!((seq, qos), (2, QoS::AtLeastOnce));
    device.client.ack(&publish).await.unwrap();
    device.expect_no_publish().await;
    gone(&rig, device).await;

    // Acknowledged: nothing is owed to the next connection of the session.
    let mut device = Raw::connect(&rig, "EL1", false).await;
    device.expect_no_publish().await;
    gone(&rig, device).await;

    // A clean session starts without the subscription.
    let mut device = Raw::connect(&rig, "EL1", true).await;
    device.event("EL1", 3).await;
    rig.until("3 is stored", |r| r.store.readings().len() == 3)
        .await;
    device.expect_no_publish().await;
}

/// The broker keeps a session for a client that is away only if it asked
/// for one (clean session off), and `vigil_mqtt_sessions_away` counts
/// them. Clean sessions leave nothing behind, however many client ids come
/// and go (rumqttd kept an entry for each for its life).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_persistent_sessions_are_kept_while_their_clients_are_away() {
    use rumqttc::QoS;
    let rig = Rig::start(RigOptions::default());
    let city = vigil_model::Region::new("440700").unwrap();
    rig.directory
        .add_feed_token("jiangmen", vigil_ingest::FeedGrant::Regions(vec![city]));
    let away = |r: &Rig| r.metric("vigil_mqtt_sessions_away");

    // Clean sessions: a device twice, and readers under five client ids.
    for _ in 0..2 {
        let device = Raw::connect(&rig, "EL1", true).await;
        gone(&rig, device).await;
    }
    for i in 0..5 {
        let id = feed_client_id("jiangmen", &format!("desk{i}"));
        let (reader, mut seen) = session(&rig, &id, "token:desk", "jiangmen").await.unwrap();
        reader
            .subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        assert_eq!(next(&mut seen).await, Seen::SubAck);
        reader.disconnect().await.unwrap();
        rig.until("the reader left", |r| {
            r.metric(r#"vigil_ingest_sessions{login="feed"}"#) == 0.0
        })
        .await;
    }

    // Its CONNACK comes once the broker has taken the connection, after
    // every departure above.
    let device = Raw::connect(&rig, "EL1", false).await;
    assert_eq!(away(&rig), 0.0, "clean sessions left nothing behind");
    gone(&rig, device).await;
    rig.until("the away device's session is kept", |r| away(r) == 1.0)
        .await;
    let device = Raw::connect(&rig, "EL1", false).await;
    assert_eq!(away(&rig), 0.0, "its session was taken back");
    gone(&rig, device).await;
    rig.until("kept again", |r| away(r) == 1.0).await;
    // A clean session of the same client ends the kept one.
    let device = Raw::connect(&rig, "EL1", true).await;
    assert_eq!(away(&rig), 0.0);
    gone(&rig, device).await;
    assert_eq!(away(&rig), 0.0);
}

/// A device subscribed to its acks has the PUBACK of a publish held until
/// its next ack is written (one segment for both; `puback_hold_ms`, here
/// 10 s): while the store holds the reading there is neither, then both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puback_goes_out_with_the_devices_next_ack() {
    let rig = Rig::start(RigOptions {
        puback_hold_ms: 10_000,
        ..RigOptions::default()
    });
    let mut device = Raw::connect(&rig, "EL1", true).await;
    device
        .client
        .subscribe("/tenants/EL1/v1/ack", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    rig.store.hold.store(true, Ordering::SeqCst);
    device.event("EL1", 1).await;
    rig.until("1 is written", |r| r.store.readings().len() == 1)
        .await;
    let mut acks = Vec::new();
    assert_eq!(
        device.puback(Duration::from_millis(300), &mut acks).await,
        None,
        "PUBACK while the reading is not durable"
    );
    rig.store.release().await;
    // Well before the hold's 10 s: it came with the ack.
    assert!(
        device
            .puback(Duration::from_secs(5), &mut acks)
            .await
            .is_some()
    );
    device.puback(Duration::from_millis(200), &mut acks).await;
    assert_eq!(acks, vec![1]);
}

/// No ack comes (the store is stuck): the held PUBACK still goes out once
/// the hold is over, and a device that does not read acks is PUBACKed at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_puback_goes_out_without_an_ack_and_one_for_a_device_without_acks_at_once() {
    for (subscribed, hold_ms) in [(true, 200), (false, 10_000)] {
        let rig = Rig::start(RigOptions {
            puback_hold_ms: hold_ms,
            ..RigOptions::default()
        });
        rig.store.hold.store(true, Ordering::SeqCst);
        let mut device = Raw::connect(&rig, "EL1", true).await;
        if subscribed {
            device
                .client
                .subscribe("/tenants/EL1/v1/ack", rumqttc::QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        device.event("EL1", 1).await;
        let mut acks = Vec::new();
        assert!(
            device
                .puback(Duration::from_secs(5), &mut acks)
                .await
                .is_some(),
            "no PUBACK (subscribed to acks: {subscribed}, hold {hold_ms} ms)"
        );
        assert!(acks.is_empty(), "the store never made it durable");
        // The PUBACK says the reading is in ingest's channel; the store gets
        // it from there.
        rig.until("the store holds the reading", |rig| {
            rig.store.readings().len() == 1
        })
        .await;
    }
}
