//! Live sessions: nobody outside can take the engine's link or another
//! reader's session; the engine knows every disconnect and closes sessions
//! the registry no longer allows, at once.

use std::time::Duration;

use rumqttc::QoS;
use vigil_ingest::FeedGrant;
use vigil_model::{DeviceId, Region};

use crate::harness::*;

fn rig_with_reader() -> Rig {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add_feed_token(
        "jiangmen",
        FeedGrant::Regions(vec![Region::new("440700").unwrap()]),
    );
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_the_ingest_links_or_a_live_readers_client_id_touches_neither() {
    let rig = rig_with_reader();
    let mut device = Device::connect(rig.addr(), "EL1").await;
    let reader_id = feed_client_id("jiangmen", "desk");
    let (reader, mut seen) = session(&rig, &reader_id, "token:jm", "jiangmen")
        .await
        .unwrap();
    reader
        .subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::SubAck);

    // The engine's own link, by a valid reader and by a device login.
    assert!(
        session(&rig, "vigil-ingest", "token:jm", "jiangmen")
            .await
            .is_err()
    );
    assert!(session(&rig, "vigil-ingest", "EL1", SECRET).await.is_err());
    // The live reader's client id, even with the very same token.
    assert!(
        session(&rig, &reader_id, "token:jm", "jiangmen")
            .await
            .is_err()
    );

    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="connect_reserved_client_id"}"#),
        2.0
    );
    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="connect_client_id_in_use"}"#),
        1.0
    );
    // Ingest still takes and acks readings, the reader still reads.
    device.event(1).await;
    device.expect_ack(1).await;
    rig.ingest.alarm_publisher().publish(&alarm_in("440703"));
    assert_eq!(
        next(&mut seen).await,
        Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL1".into())
    );
    assert_eq!(rig.ingest.stats().link_restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_disabled_or_deleted_while_connected_is_cut_off_at_once() {
    let rig = Rig::start(RigOptions {
        devices: vec!["EL1".into(), "EL2".into()],
        ..RigOptions::default()
    });
    let (_el1, mut el1_seen) = session(&rig, "EL1", "EL1", SECRET).await.unwrap();
    let (_el2, mut el2_seen) = session(&rig, "EL2", "EL2", SECRET).await.unwrap();
    rig.until("both sessions are live", |r| {
        r.metric(r#"vigil_ingest_sessions{login="device"}"#) == 2.0
    })
    .await;

    rig.directory.add("EL1", SECRET, false);
    rig.directory.remove("EL2");
    assert_eq!(rig.ingest.sessions().recheck(), 2);
    assert_eq!(next(&mut el1_seen).await, Seen::Closed);
    assert_eq!(next(&mut el2_seen).await, Seen::Closed);
    rig.until("the sessions are gone", |r| {
        r.metric(r#"vigil_ingest_sessions{login="device"}"#) == 0.0
    })
    .await;
    assert_eq!(
        rig.metric(r#"vigil_ingest_disconnects_total{reason="device_inactive"}"#),
        2.0
    );
    // And they cannot come back.
    assert!(session(&rig, "EL1", "EL1", SECRET).await.is_err());
    assert!(session(&rig, "EL2", "EL2", SECRET).await.is_err());
    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="connect_disabled_device"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_feed_token_closes_its_session() {
    let rig = rig_with_reader();
    rig.directory.add_feed_token("admin", FeedGrant::All);
    let (_a, mut a_seen) = session(
        &rig,
        &feed_client_id("jiangmen", "a"),
        "token:a",
        "jiangmen",
    )
    .await
    .unwrap();
    let (_b, mut b_seen) = session(&rig, &feed_client_id("admin", "b"), "token:b", "admin")
        .await
        .unwrap();
    rig.directory.remove_feed_token("jiangmen");
    assert_eq!(rig.ingest.sessions().recheck(), 1);
    assert_eq!(next(&mut a_seen).await, Seen::Closed);
    // By the token itself, as an operator's revocation would.
    assert_eq!(rig.ingest.sessions().close_feed_token("admin"), 1);
    assert_eq!(next(&mut b_seen).await, Seen::Closed);
    assert_eq!(
        rig.metric(r#"vigil_ingest_disconnects_total{reason="feed_revoked"}"#),
        1.0
    );
    assert_eq!(
        rig.metric(r#"vigil_ingest_disconnects_total{reason="closed"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_disconnect_is_known_and_a_device_may_take_over_its_own_session() {
    let rig = Rig::start(RigOptions::default());
    let el1 = DeviceId::new("EL1").unwrap();
    let first = Device::connect(rig.addr(), "EL1").await;
    assert!(rig.ingest.sessions().is_connected(&el1));
    // The same device again (its old TCP connection half-open, say): the
    // new session replaces the old one.
    let mut second = Device::connect(rig.addr(), "EL1").await;
    second.event(1).await;
    second.expect_ack(1).await;
    assert_eq!(rig.ingest.sessions().counts(), (1, 0));
    drop(first);
    drop(second);
    // An unclean end (the client just went away) is known too.
    rig.until("the session ended", |r| {
        r.metric(r#"vigil_ingest_sessions{login="device"}"#) == 0.0
    })
    .await;
    assert!(!rig.ingest.sessions().is_connected(&el1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut again = Device::connect(rig.addr(), "EL1").await;
    again.event(2).await;
    again.expect_ack(2).await;
}
