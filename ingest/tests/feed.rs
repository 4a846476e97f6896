//! The MQTT alarm feed's access rules, with real clients: a reader sees
//! only its granted regions, devices cannot read or forge alarms.

use rumqttc::QoS;
use vigil_ingest::FeedGrant;
use vigil_model::Region;

use crate::harness::*;

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
    let jm_id = feed_client_id("jiangmen", "jm");
    let (jm, mut jm_seen) = session(&rig, &jm_id, "token:jm", "jiangmen").await.unwrap();
    let gz_id = feed_client_id("guangzhou", "gz");
    let (gz, mut gz_seen) = session(&rig, &gz_id, "token:gz", "guangzhou")
        .await
        .unwrap();
    let all_id = feed_client_id("admin", "all");
    let (all, mut all_seen) = session(&rig, &all_id, "token:", "admin").await.unwrap();
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
    rig.assert_topic_refusals(2, 1);
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
async fn feed_logins_need_a_granting_token_and_a_client_id_bound_to_it() {
    let rig = rig_with_readers();
    let refused = [
        (feed_client_id("nope", "x"), "nope", "connect_bad_token"),
        ("EL1".to_owned(), "jiangmen", "connect_bad_client_id"),
        ("sup-x".to_owned(), "jiangmen", "connect_bad_client_id"),
        // Another token's prefix.
        (
            feed_client_id("guangzhou", "x"),
            "jiangmen",
            "connect_bad_client_id",
        ),
        (String::new(), "jiangmen", "connect_bad_client_id"),
        (
            "vigil-ingest".to_owned(),
            "jiangmen",
            "connect_reserved_client_id",
        ),
    ];
    for (client_id, token, _) in &refused {
        assert!(
            session(&rig, client_id, "token:x", token).await.is_err(),
            "{client_id:?} with token {token} got in"
        );
    }
    for reason in [
        "connect_bad_token",
        "connect_bad_client_id",
        "connect_reserved_client_id",
    ] {
        let expected = refused.iter().filter(|(_, _, r)| *r == reason).count();
        assert_eq!(
            rig.metric(&format!(
                r#"vigil_ingest_rejected_total{{reason="{reason}"}}"#
            )),
            expected as f64,
            "{reason}"
        );
    }
    assert!(
        session(
            &rig,
            &feed_client_id("jiangmen", "x"),
            "token:x",
            "jiangmen"
        )
        .await
        .is_ok()
    );
}

/// Voluntary context switches of each `vigil-mqtt-feed` thread of this
/// process (every engine a test started has one), by thread id.
fn feed_thread_wakeups() -> std::collections::HashMap<String, u64> {
    let mut wakeups = std::collections::HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue; // a thread that ended meanwhile
        };
        if comm.trim() != "vigil-mqtt-feed" {
            continue;
        }
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        wakeups.insert(task.display().to_string(), switches);
    }
    wakeups
}

/// A supervisor's screen is served on a thread of its own, not behind the
/// devices on the socket thread: each alarm wakes that thread to write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_reader_is_served_on_the_feed_thread() {
    let rig = rig_with_readers();
    let jm_id = feed_client_id("jiangmen", "screen");
    let (jm, mut seen) = session(&rig, &jm_id, "token:jm", "jiangmen").await.unwrap();
    jm.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::SubAck);

    let before = feed_thread_wakeups();
    const ALARMS: u64 = 20;
    for _ in 0..ALARMS {
        rig.ingest.alarm_publisher().publish(&alarm_in("440703"));
        assert_eq!(
            next(&mut seen).await,
            Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL1".into())
        );
        // Apart, so that each alarm wakes whichever thread writes it.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let after = feed_thread_wakeups();
    let most = (after.iter())
        .map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(
        most >= ALARMS / 2,
        "{ALARMS} alarms written to the reader woke no feed thread as often \
         (most: {most}; feed threads before {before:?}, after {after:?})"
    );
}

/// Publishes `alarms` alarms of distinct equipment at once; returns their
/// topics (three each: county, city, province).
fn publish_burst(rig: &Rig, label: &str, alarms: usize) -> std::collections::HashSet<String> {
    let mut published = std::collections::HashSet::new();
    for i in 0..alarms {
        let mut alarm = alarm_in("440703");
        alarm.equipment_id = vigil_model::EquipmentId::new(format!("EQ-{label}{i:05}")).unwrap();
        published.extend(vigil_ingest::AlarmPublisher::topics(&alarm));
        rig.ingest.alarm_publisher().publish(&alarm);
    }
    published
}

/// Subscribes an admin reader to every region's alarms, publishes
/// `alarms` alarms of distinct equipment at once, and returns the topics
/// published and the ones the reader got before the feed went quiet.
async fn burst(
    rig: &Rig,
    label: &str,
    alarms: usize,
) -> (
    std::collections::HashSet<String>,
    std::collections::HashSet<String>,
) {
    let id = feed_client_id("admin", label);
    let (all, mut seen) = session(rig, &id, "token:", "admin").await.unwrap();
    all.subscribe("/tenants/+/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::SubAck);
    let published = publish_burst(rig, label, alarms);
    let mut got = std::collections::HashSet::new();
    let quiet = std::time::Duration::from_secs(3);
    while got.len() < published.len() {
        match tokio::time::timeout(quiet, seen.recv()).await {
            Ok(Some(Seen::Publish(topic))) => {
                assert!(published.contains(&topic), "unexpected {topic}");
                got.insert(topic);
            }
            Ok(other) => panic!("the reader's session ended: {other:?}"),
            Err(_) => break,
        }
    }
    (published, got)
}

/// A power cut takes a district's devices offline together: a thousand
/// alarms at once, each on its county, city and province topics. A
/// supervisor's feed gets every one of them, none dropped in the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_alarms_reaches_a_feed_reader_whole() {
    let rig = rig_with_readers();
    let (published, got) = burst(&rig, "burst", 1000).await;
    assert_eq!(published.len(), 3000);
    assert_eq!(
        got.len(),
        published.len(),
        "the reader got {} of the burst's {} publishes",
        got.len(),
        published.len()
    );
    assert_eq!(rig.ingest.stats().feed_skipped, 0);
    assert_eq!(rig.metric("vigil_alarm_feed_skipped_total"), 0.0);
}

/// A reader that stops reading while a burst larger than its filter's log
/// goes out (it sends no PUBACK, so the broker sends it no more than its
/// in-flight window): it loses the oldest, and every message it lost is
/// counted, none silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_feed_reader_loses_beyond_its_log_is_counted() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let rig = rig_with_readers();
    let id = feed_client_id("admin", "stalled");
    let mut opts = MqttOptions::new(&id, rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials("token:", "admin");
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    client
        .subscribe("/tenants/+/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::SubAck(_)))
        ) {}
    })
    .await
    .expect("SUBACK");

    // 8 000 alarms, 24 000 messages of some 600 bytes: four times the log.
    let published = publish_burst(&rig, "flood", 8000);

    // Reading again: the router finds the reader's place dropped (and
    // counts what it skipped), and what is left arrives, until the feed is
    // quiet.
    let mut got = std::collections::HashSet::new();
    let quiet = std::time::Duration::from_secs(3);
    while let Ok(event) = tokio::time::timeout(quiet, eventloop.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
            assert!(published.contains(&p.topic), "unexpected {}", p.topic);
            got.insert(p.topic);
        }
    }
    let skipped = rig.ingest.stats().feed_skipped;
    assert!(!got.is_empty(), "the reader got nothing after the burst");
    assert!(
        skipped > 0,
        "the whole burst fit in the log ({} got)",
        got.len()
    );
    assert_eq!(
        got.len() as u64 + skipped,
        published.len() as u64,
        "every message the reader did not get is counted as skipped"
    );
    assert_eq!(rig.metric("vigil_alarm_feed_skipped_total"), skipped as f64);
}

/// A filter's log in the broker lives as long as some reader subscribes
/// to it: when the last one unsubscribes or leaves, the log and the alarms
/// it held go (`vigil_alarm_feed_filter_logs` counts those held), and the
/// next reader of that filter gets what is published from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filters_log_goes_when_its_last_reader_leaves() {
    let rig = rig_with_readers();
    let logs = |rig: &Rig| rig.metric("vigil_alarm_feed_filter_logs");
    let city = "/tenants/r440700/v1/alarms/#";
    let reader = |label: &'static str, token: &'static str| {
        let rig = &rig;
        async move {
            let user = format!("token:{label}");
            let (client, mut seen) = session(rig, &feed_client_id(token, label), &user, token)
                .await
                .unwrap();
            let filter = if token == "admin" {
                "/tenants/+/v1/alarms/#"
            } else {
                city
            };
            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            assert_eq!(next(&mut seen).await, Seen::SubAck);
            (client, seen)
        }
    };
    assert_eq!(logs(&rig), 0.0);
    let (first, _first_seen) = reader("jm1", "jiangmen").await;
    let (second, mut second_seen) = reader("jm2", "jiangmen").await;
    let (admin, _admin_seen) = reader("all", "admin").await;
    assert_eq!(logs(&rig), 2.0, "one log per distinct filter");

    // One of the city's two readers goes, and the admin unsubscribes.
    first.disconnect().await.unwrap();
    admin.unsubscribe("/tenants/+/v1/alarms/#").await.unwrap();
    rig.until("the admin's filter is released", |rig| logs(rig) == 1.0)
        .await;
    rig.ingest.alarm_publisher().publish(&alarm_in("440703"));
    assert_eq!(
        next(&mut second_seen).await,
        Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL1".into()),
        "the city's filter stays while a reader is left"
    );

    // The last reader leaves: the city's log goes too.
    second.disconnect().await.unwrap();
    rig.until("the city's filter is released", |rig| logs(rig) == 0.0)
        .await;

    // A later reader of that filter gets what comes next.
    let (_third, mut third_seen) = reader("jm3", "jiangmen").await;
    assert_eq!(logs(&rig), 1.0);
    let mut alarm = alarm_in("440703");
    alarm.equipment_id = vigil_model::EquipmentId::new("EQ-EL2").unwrap();
    rig.ingest.alarm_publisher().publish(&alarm);
    assert_eq!(
        next(&mut third_seen).await,
        Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL2".into())
    );
}

/// Supervisors' feed does not wait on ingest. With the store stalled, the
/// ingest thread is held in a write and reads nothing; a burst of alarms
/// larger than the broker's ingest log (16 MiB) still reaches a city's
/// reader, the newest included. The engine's own alarms used to be
/// appended to that lossless log too (its filter `/tenants/#` matches them),
/// and once it was full the feed stood still until the store moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_does_not_wait_for_a_stalled_ingest() {
    let rig = rig_with_readers();
    rig.store
        .stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    // Not acked: the ingest thread waits in the store's write.
    device
        .expect_no_ack_above(0, std::time::Duration::from_millis(300))
        .await;

    let id = feed_client_id("jiangmen", "stalled-ingest");
    let (reader, mut seen) = session(&rig, &id, "token:", "jiangmen").await.unwrap();
    reader
        .subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::SubAck);
    // 20 000 alarms on three topics each, some 430 bytes a message: 25 MiB.
    const ALARMS: usize = 20_000;
    let published = publish_burst(&rig, "stall", ALARMS);
    let newest = format!(
        "/tenants/r440700/v1/alarms/elevator/EQ-stall{:05}",
        ALARMS - 1
    );
    assert!(published.contains(&newest));
    let got_newest = tokio::time::timeout(PATIENCE, async {
        loop {
            match seen.recv().await {
                Some(Seen::Publish(topic)) if topic == newest => return,
                Some(Seen::Publish(_)) => {}
                other => panic!("the reader's session ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(
        got_newest.is_ok(),
        "the city's reader did not get the newest alarm while ingest was stalled"
    );
    assert_eq!(
        rig.metric("vigil_alarm_feed_publishes_total{result=\"failed\"}"),
        0.0
    );

    rig.store
        .stall
        .store(false, std::sync::atomic::Ordering::SeqCst);
    device.expect_ack(1).await;
}
