//! Every rejection reason: a dead letter with the raw bytes, a counter, and
//! an engine (and connection) that keeps working.

use serde_json::json;
use vigil_model::{MAX_PAYLOAD_BYTES, RejectReason};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_becomes_a_dead_letter_and_the_device_carries_on() {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add("EL9", SECRET, false);
    let mut device = Device::connect(rig.addr(), "EL1").await;

    let mut oversize = json!({"seq": 3, "ts": T0, "code": "E01", "active": true});
    oversize["pad"] = "x".repeat(MAX_PAYLOAD_BYTES + 100).into();
    let oversize = oversize.to_string().into_bytes();
    let mut out_of_range = elevator(6);
    out_of_range["speed_mps"] = json!(-1.0);

    // (topic, payload, reason, device named in the dead letter)
    let cases: Vec<(&str, Vec<u8>, RejectReason, Option<&str>)> = vec![
        (
            "/tenants/EL1/v1/weather",
            event(1),
            RejectReason::BadTopic,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v2/event",
            event(2),
            RejectReason::BadTopic,
            Some("EL1"),
        ),
        (
            "no/tenants/at/all",
            event(102),
            RejectReason::ForeignTopic,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v1/event",
            oversize.clone(),
            RejectReason::Oversize,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v1/event",
            b"{\"seq\": 4, not json".to_vec(),
            RejectReason::MalformedJson,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v1/event",
            json!({"seq": 4, "ts": T0, "active": true})
                .to_string()
                .into_bytes(),
            RejectReason::MissingField,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v1/event",
            json!({"seq": 5, "ts": T0, "code": "E01", "active": "yes"})
                .to_string()
                .into_bytes(),
            RejectReason::WrongType,
            Some("EL1"),
        ),
        (
            "/tenants/EL1/v1/elevator",
            out_of_range.to_string().into_bytes(),
            RejectReason::OutOfRange,
            Some("EL1"),
        ),
        // Under another device's name, registered or not: moved under EL1's
        // own by the broker's guard, never a reading of the device it names.
        (
            "/tenants/NOPE1/v1/event",
            event(1),
            RejectReason::ForeignTopic,
            Some("EL1"),
        ),
        (
            "/tenants/EL9/v1/event",
            event(1),
            RejectReason::ForeignTopic,
            Some("EL1"),
        ),
    ];
    for (topic, payload, ..) in &cases {
        device.send_on(topic, payload.clone()).await;
    }
    device.event(7).await;
    // 1 to 6 were dead-lettered durably, so the device need not re-send
    // them: the ack covers them together with 7. (The malformed message's
    // seq cannot be read; its re-send with seq 4 failed validation again.)
    device.expect_ack(7).await;

    let letters = rig.store.dead_letters();
    assert_eq!(letters.len(), cases.len(), "{letters:#?}");
    for ((topic, payload, reason, device_id), (letter, token)) in cases.iter().zip(&letters) {
        assert_eq!(letter.reason, *reason, "{topic}: {}", letter.detail);
        if *reason == RejectReason::ForeignTopic {
            // Kept under the publisher's name; the detail names the topic.
            assert_eq!(letter.topic, format!("/tenants/EL1/v1/foreign:{topic}"));
            assert!(letter.detail.contains(topic), "{}", letter.detail);
        } else {
            assert_eq!(letter.topic, *topic);
        }
        assert_eq!(letter.device_id.as_deref(), *device_id, "{reason}");
        assert_eq!(letter.received_at, T0);
        assert_eq!(letter.payload_size, payload.len() as u64);
        let kept = &payload[..payload.len().min(MAX_PAYLOAD_BYTES)];
        assert!(
            letter.payload == kept,
            "{reason}: raw payload kept (cut to 64 KiB)"
        );
        assert!(!letter.detail.is_empty());
        // Every message of a registered device whose seq can be read; a
        // message under another name carries someone else's seq, not EL1's.
        let acked = device_id == &Some("EL1")
            && !matches!(
                reason,
                RejectReason::MalformedJson | RejectReason::ForeignTopic
            );
        assert_eq!(token.is_some(), acked, "{reason}: token {token:?}");
    }
    let oversize_letter = &letters[3].0;
    assert_eq!(oversize_letter.payload.len(), MAX_PAYLOAD_BYTES);

    let stats = rig.ingest.stats();
    for reason in RejectReason::ALL {
        let expected = cases.iter().filter(|c| c.2 == reason).count() as u64;
        assert_eq!(stats.rejected(reason), expected, "{reason}");
        let sample = format!(r#"vigil_ingest_rejected_total{{reason="{reason}"}}"#);
        assert_eq!(rig.metric(&sample), expected as f64, "{sample}");
    }
    assert_eq!(stats.rejected_total(), cases.len() as u64);
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![7]);
    // The ack can overtake the rules hand-off of the same batch.
    rig.until("7 reached the rules", |r| !r.accepted.lock().is_empty())
        .await;
    assert_eq!(
        rig.accepted
            .lock()
            .iter()
            .map(|a| a.reading.seq)
            .collect::<Vec<_>>(),
        vec![7]
    );

    // The same bad message again is a duplicate: acked, not stored twice.
    device.send_on(cases[6].0, cases[6].1.clone()).await;
    device.expect_ack(7).await;
    device.event(8).await;
    device.expect_ack(8).await;
    assert_eq!(rig.store.dead_letters().len(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_disabled_or_removed_while_connected_is_dead_lettered() {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add("EL2", SECRET, true);
    rig.directory.add("EL3", SECRET, true);
    let el2 = Device::connect(rig.addr(), "EL2").await;
    let el3 = Device::connect(rig.addr(), "EL3").await;
    // The registry changes under live sessions.
    rig.directory.add("EL2", SECRET, false);
    rig.directory.remove("EL3");
    el2.event(1).await;
    el3.event(1).await;
    rig.until("two dead letters", |r| r.store.dead_letters().len() == 2)
        .await;
    let mut letters: Vec<_> = rig
        .store
        .dead_letters()
        .into_iter()
        .map(|(l, _)| (l.device_id, l.reason))
        .collect();
    letters.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        letters,
        vec![
            (Some("EL2".into()), RejectReason::DisabledDevice),
            (Some("EL3".into()), RejectReason::UnknownDevice),
        ]
    );
    assert!(rig.store.readings().is_empty());
}
