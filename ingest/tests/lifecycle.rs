//! Start-up checks, engine publications, store failures and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vigil_ingest::{AlarmPublisher, FeedGrant, Ingest, IngestConfig, IngestError};
use vigil_model::{Alarm, Region};
use vigil_storage::Recovery;

use crate::harness::*;

fn start_with(config: IngestConfig) -> Result<Ingest, IngestError> {
    let (store, durable) = RecordingStore::new();
    Ingest::start(
        config,
        TestDirectory::with(&["EL1"]),
        store,
        &Recovery::default(),
        durable,
        Box::new(|_| {}),
        &prometheus::Registry::new(),
        Arc::new(|| T0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_plain_listener_needs_explicit_consent() {
    let public = IngestConfig {
        mqtt_addr: "0.0.0.0:0".parse().unwrap(),
        ..IngestConfig::default()
    };
    assert!(matches!(
        start_with(public),
        Err(IngestError::PublicPlainListener { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = IngestConfig {
        mqtt_addr: taken.local_addr().unwrap(),
        ..IngestConfig::default()
    };
    let err = start_with(config).err().expect("port in use");
    assert!(matches!(err, IngestError::Bind { .. }), "{err}");
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let config = IngestConfig {
        mqtt_addr: "127.0.0.1:0".parse().unwrap(),
        ..IngestConfig::default()
    };
    assert!(matches!(start_with(config), Err(IngestError::NoRuntime)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_defaults_and_partial_toml_like_input() {
    let config: IngestConfig = serde_json::from_str(r#"{"gap_grace_s": 5}"#).unwrap();
    assert_eq!(config.gap_grace_s, 5);
    assert_eq!(config.mqtt_addr, "127.0.0.1:1883".parse().unwrap());
    assert_eq!(
        (config.allow_public_plain, config.max_connections),
        (false, 10_000)
    );
    assert!(
        serde_json::from_str::<IngestConfig>(r#"{"gap_grace": 5}"#).is_err(),
        "typos are errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_feed_reaches_a_granted_reader_and_is_not_taken_as_device_data() {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add_feed_token(
        "city-token",
        FeedGrant::Regions(vec![Region::new("440700").unwrap()]),
    );
    let client_id = feed_client_id("city-token", "1");
    let mut opts = MqttOptions::new(client_id, rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials("token:city", "city-token");
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    client
        .subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (got_tx, mut got) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = got_tx.send((p.topic, p.qos, p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(PATIENCE, subscribed)
        .await
        .unwrap()
        .unwrap();

    let alarm = alarm_in("440703");
    assert_eq!(
        AlarmPublisher::topics(&alarm),
        vec![
            "/tenants/r440703/v1/alarms/elevator/EQ-EL1",
            "/tenants/r440700/v1/alarms/elevator/EQ-EL1",
            "/tenants/r440000/v1/alarms/elevator/EQ-EL1",
        ]
    );
    rig.ingest.alarm_publisher().publish(&alarm);
    let (topic, qos, payload) = tokio::time::timeout(PATIENCE, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topic, "/tenants/r440700/v1/alarms/elevator/EQ-EL1");
    assert_eq!(qos, QoS::AtLeastOnce);
    let received: Alarm = serde_json::from_slice(&payload).unwrap();
    assert_eq!(received, alarm);

    // Neither a message nor a dead letter: the engine's own output.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rig.ingest.stats().messages, 0);
    assert!(rig.store.writes.lock().is_empty());
    assert_eq!(
        rig.metric(r#"vigil_alarm_feed_publishes_total{result="published"}"#),
        3.0
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_store_write_leaves_the_messages_unacked_for_a_re_send() {
    let rig = Rig::start(RigOptions::default());
    let mut device = Device::connect(rig.addr(), "EL1").await;
    rig.store.fail.store(true, Ordering::SeqCst);
    device.event(1).await;
    rig.until("the store refused a batch", |r| {
        r.ingest.stats().store_errors == 1
    })
    .await;
    assert!(
        rig.accepted.lock().is_empty(),
        "rules only see stored readings"
    );
    device
        .expect_no_ack_above(0, Duration::from_millis(200))
        .await;

    rig.store.fail.store(false, Ordering::SeqCst);
    device.event(1).await;
    device.expect_ack(1).await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![1]);
    assert_eq!(
        rig.ingest.stats().duplicates,
        0,
        "the re-send is not a duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_everything_to_the_store_acks_it_then_closes() {
    let rig = Rig::start(RigOptions::default());
    let addr = rig.addr();
    rig.store.hold.store(true, Ordering::SeqCst);
    let mut device = Device::connect(addr, "EL1").await;
    for seq in 1..=5 {
        device.event(seq).await;
    }
    rig.until("all five are written", |r| r.store.readings().len() == 5)
        .await;

    // The store reports durability only at its flush, which shutdown calls;
    // the acks still reach the device before its connection closes.
    let Rig {
        ingest,
        store,
        accepted,
        ..
    } = rig;
    ingest.shutdown().await.expect("clean shutdown");
    device.expect_ack(5).await;
    assert_eq!(accepted.lock().len(), 5);
    assert_eq!(seqs_of(&store.readings(), "EL1"), vec![1, 2, 3, 4, 5]);

    // The listener is gone.
    let err = Device::connect_with(addr, "EL1", "EL1", SECRET)
        .await
        .err()
        .expect("listener closed");
    assert!(err.starts_with("connection failed"), "{err}");
}
