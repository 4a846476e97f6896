//! The MQTT alarm feed's access rules, with real clients: a reader sees
//! only its granted regions, devices cannot read or forge alarms.

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vigil_ingest::FeedGrant;
use vigil_model::Region;

use crate::harness::*;

#[derive(Debug, PartialEq)]
enum Seen {
    SubAck,
    Publish(String),
    Closed,
}

/// A client session: its CONNACK result, then what it sees.
async fn session(
    rig: &Rig,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Seen>), String> {
    let mut opts = MqttOptions::new(client_id, rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials(user, password);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let connack = tokio::time::timeout(PATIENCE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK".to_owned())??;
    if connack != ConnectReturnCode::Success {
        return Err(format!("{connack:?}"));
    }
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Seen::SubAck);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Seen::Publish(p.topic));
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send(Seen::Closed);
                    return;
                }
            }
        }
    });
    Ok((client, rx))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("something within PATIENCE")
        .expect("session task alive")
}

fn rig_with_readers() -> Rig {
    let rig = Rig::start(RigOptions::default());
    let city = |c: &str| FeedGrant::Regions(vec![Region::new(c).unwrap()]);
    rig.directory.add_feed_token("jiangmen", city("440700"));
    rig.directory.add_feed_token("guangzhou", city("440100"));
    rig.directory.add_feed_token("admin", FeedGrant::All);
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_their_regions_and_are_cut_off_outside_them() {
    let rig = rig_with_readers();
    let (jm, mut jm_seen) = session(&rig, "sup-jm", "token:jm", "jiangmen")
        .await
        .unwrap();
    let (gz, mut gz_seen) = session(&rig, "sup-gz", "token:gz", "guangzhou")
        .await
        .unwrap();
    let (all, mut all_seen) = session(&rig, "sup-all", "token:", "admin").await.unwrap();
    jm.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    gz.subscribe("/tenants/r440100/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    all.subscribe("/tenants/+/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut jm_seen).await, Seen::SubAck);
    assert_eq!(next(&mut gz_seen).await, Seen::SubAck);
    assert_eq!(next(&mut all_seen).await, Seen::SubAck);

    // A Jiangmen county alarm, then a Guangzhou one.
    rig.ingest.alarm_publisher().publish(&alarm_in("440703"));
    rig.ingest.alarm_publisher().publish(&alarm_in("440106"));
    assert_eq!(
        next(&mut jm_seen).await,
        Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL1".into())
    );
    assert_eq!(
        next(&mut gz_seen).await,
        Seen::Publish("/tenants/r440100/v1/alarms/elevator/EQ-EL1".into()),
        "Guangzhou's reader sees its own alarm first: the Jiangmen one never reached it"
    );
    let mut admin_topics = Vec::new();
    for _ in 0..6 {
        match next(&mut all_seen).await {
            Seen::Publish(t) => admin_topics.push(t),
            other => panic!("{other:?}"),
        }
    }
    // County, city and province of each; the province is the same.
    admin_topics.sort();
    admin_topics.dedup();
    assert_eq!(admin_topics.len(), 5, "{admin_topics:?}");

    // Reaching into another city closes the connection; nothing is acked.
    gz.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut gz_seen).await, Seen::Closed);
    // So does a wildcard over every region, or a write.
    jm.subscribe("/tenants/+/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut jm_seen).await, Seen::Closed);
    all.publish(
        "/tenants/r440700/v1/alarms/elevator/X",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut all_seen).await, Seen::Closed);
    assert_eq!(
        rig.metric(r#"vigil_mqtt_refused_total{packet="subscribe"}"#),
        2.0
    );
    assert_eq!(
        rig.metric(r#"vigil_mqtt_refused_total{packet="publish"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cannot_read_or_forge_alarms() {
    let rig = rig_with_readers();
    let (dev, mut seen) = session(&rig, "EL1", "EL1", SECRET).await.unwrap();
    dev.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::Closed);

    let (dev, mut seen) = session(&rig, "EL1", "EL1", SECRET).await.unwrap();
    dev.subscribe("/tenants/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(next(&mut seen).await, Seen::Closed);

    let (dev, mut seen) = session(&rig, "EL1", "EL1", SECRET).await.unwrap();
    dev.publish(
        "/tenants/r440700/v1/alarms/elevator/EQ-EL1",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut seen).await, Seen::Closed);

    // Its own topics still work as before.
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    device.expect_ack(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_logins_need_a_granting_token_and_a_non_device_client_id() {
    let rig = rig_with_readers();
    assert!(session(&rig, "sup-x", "token:x", "nope").await.is_err());
    assert!(
        session(&rig, "EL1", "token:x", "jiangmen").await.is_err(),
        "client id EL1 would take over the device"
    );
    assert!(session(&rig, "sup-x", "token:x", "jiangmen").await.is_ok());
}
