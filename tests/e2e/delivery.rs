//! Alarm delivery through the real binary: the MQTT alarm topics with
//! supervisors logging in by token, escalation, and webhooks against a
//! real local HTTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::*;

const OVERSPEED: &str = "elevator.overspeed";

/// An elevator going 2.2 m/s on a 1.75 m/s rating: critical at once.
fn too_fast() -> Value {
    json!({"direction": "up", "speed_mps": 2.2, "leveled": false, "floor": 7})
}

#[derive(Debug)]
enum Seen {
    SubAck,
    Alarm(String, Value),
    Closed,
}

/// An MQTT session (rumqttc) that reports what it sees.
async fn mqtt(
    vigil: &Vigil,
    client_id: &str,
    user: &str,
    password: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<Seen>) {
    let mut opts = MqttOptions::new(client_id, vigil.mqtt.ip().to_string(), vigil.mqtt.port());
    opts.set_credentials(user, password);
    let (client, mut events) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let seen = match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Seen::Alarm(p.topic, serde_json::from_slice(&p.payload).unwrap())
                }
                Ok(_) => continue,
                Err(_) => Seen::Closed,
            };
            let closed = matches!(seen, Seen::Closed);
            if tx.send(seen).is_err() || closed {
                return;
            }
        }
    });
    (client, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>, what: &str) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("session task alive")
}

async fn supervisor_token(vigil: &Vigil, region: &str) -> String {
    let (status, body) = vigil
        .post(
            "/tokens",
            &json!({"name": format!("supervisor {region}"), "role": "supervisor", "regions": [region]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_get_their_regions_alarms_over_mqtt_and_devices_cannot_listen() {
    // Critical alarms escalate after 1 s unacknowledged.
    let vigil = Vigil::start_with_config("[rules.escalation]\ncritical_s = 1\n").await;
    let report = vigil.import(&registry_doc(1)).await;
    let secrets = secrets(&report);
    let jiangmen = supervisor_token(&vigil, "440700").await;
    let guangzhou = supervisor_token(&vigil, "440100").await;

    // A reader's client id starts with its token's prefix.
    let jm_id = format!("{}-jm", vigil_ingest::feed_client_prefix(&jiangmen));
    let (jm, mut jm_seen) = mqtt(&vigil, &jm_id, "token:jm", &jiangmen).await;
    jm.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(next(&mut jm_seen, "SUBACK").await, Seen::SubAck));
    let gz_id = format!("{}-gz", vigil_ingest::feed_client_prefix(&guangzhou));
    let (gz, mut gz_seen) = mqtt(&vigil, &gz_id, "token:gz", &guangzhou).await;
    gz.subscribe("/tenants/r440100/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(next(&mut gz_seen, "SUBACK").await, Seen::SubAck));

    // A device of county 440703 (city 440700) overspeeds.
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    dev.send(now_ms(), too_fast()).await;
    let Seen::Alarm(topic, alarm) = next(&mut jm_seen, "the alarm").await else {
        panic!("expected an alarm");
    };
    assert_eq!(topic, "/tenants/r440700/v1/alarms/elevator/EQ0000");
    assert_eq!(
        (
            &alarm["rule"],
            &alarm["severity"],
            &alarm["state"],
            &alarm["region"],
            &alarm["version"]
        ),
        (
            &json!(OVERSPEED),
            &json!("critical"),
            &json!("active"),
            &json!("440703"),
            &json!(1)
        )
    );

    // Nobody acknowledges it: escalated, and published again.
    let Seen::Alarm(_, escalated) = next(&mut jm_seen, "the escalation").await else {
        panic!("expected an alarm");
    };
    assert_eq!(escalated["alarm_id"], alarm["alarm_id"]);
    assert_eq!(escalated["version"], 2);
    assert_eq!(escalated["details"]["escalation"], "unacknowledged 1 s");
    assert!(
        escalated["details"]["escalated_at"].as_i64().unwrap()
            >= alarm["raised_at"].as_i64().unwrap() + 1_000
    );
    let (_, open) = vigil.get("/alarms?state=open").await;
    assert_eq!(
        open["alarms"][0]["details"]["escalation"], "unacknowledged 1 s",
        "{open}"
    );

    // Guangzhou's supervisor: its first alarm is Guangzhou's own, so the
    // Jiangmen alarm (published first) never reached it.
    let mut gz_dev = Device::connect(vigil.mqtt, "DEVGZ", &secrets["DEVGZ"])
        .await
        .unwrap();
    gz_dev
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.2, "leveled": false, "floor": 9}),
        )
        .await;
    let Seen::Alarm(topic, alarm) = next(&mut gz_seen, "Guangzhou's alarm").await else {
        panic!("expected an alarm");
    };
    assert_eq!(topic, "/tenants/r440100/v1/alarms/elevator/EQGZ");
    assert_eq!(alarm["equipment_id"], "EQGZ");
    // Reaching into Jiangmen closes its connection.
    gz.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(
        next(&mut gz_seen, "the refusal").await,
        Seen::Closed
    ));

    // A device cannot listen to alarms, even with its own valid login.
    let (spy, mut spy_seen) = mqtt(&vigil, "DEV0000", "DEV0000", &secrets["DEV0000"]).await;
    spy.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(
        next(&mut spy_seen, "the refusal").await,
        Seen::Closed
    ));
    // An unknown token gets no session at all.
    let (_nobody, mut nobody_seen) = mqtt(&vigil, "sup-x", "token:x", "not-a-token").await;
    assert!(matches!(
        next(&mut nobody_seen, "the refusal").await,
        Seen::Closed
    ));

    let refused = vigil
        .metric(r#"vigil_mqtt_refused_total{packet="subscribe"}"#)
        .await;
    assert_eq!(refused, 2.0);
    drop(dev);
}

/// What the test's webhook server received, in order.
#[derive(Default)]
struct Received {
    alarms: Vec<(Value, HeaderMap)>,
    /// Answer 500 to this many requests first.
    fail_first: usize,
    failed: usize,
}

async fn webhook_server(fail_first: usize) -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received {
        fail_first,
        ..Received::default()
    }));
    let state = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut r = state.lock().unwrap();
                if r.failed < r.fail_first {
                    r.failed += 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let alarm: Value = serde_json::from_slice(&body).unwrap();
                let signature = headers["x-vigil-signature"].to_str().unwrap().to_owned();
                assert_eq!(signature, sign("hook-secret", &body), "signed body");
                r.alarms.push((alarm, headers));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_every_change_in_order_with_retries_and_a_dead_one_holds_nothing_up() {
    let (url, received) = webhook_server(3).await;
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let config = format!(
        "[[delivery.webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nhmac_secret = \"hook-secret\"\n\
         backoff_ms = 20\nbackoff_max_ms = 100\n\
         [[delivery.webhooks]]\nname = \"dead\"\nurl = \"{dead}\"\nbackoff_ms = 2000\n\
         [[delivery.webhooks]]\nname = \"guangzhou\"\nurl = \"{url}\"\nregions = [\"440100\"]\n"
    );
    let vigil = Vigil::start_with_config(&config).await;
    let report = vigil.import(&registry_doc(2)).await;
    let secrets = secrets(&report);
    let feed = Feed::open(&vigil, TOKEN, "").await;

    // Two elevators, each raising, repeating and clearing an overspeed, in
    // compressed device time.
    let mut changes = 0;
    for id in ["DEV0000", "DEV0001"] {
        let mut dev = Device::connect(vigil.mqtt, id, &secrets[id]).await.unwrap();
        let t0 = now_ms();
        dev.send(t0, too_fast()).await;
        dev.send(t0 + 1_000, json!({})).await;
        dev.send(t0 + 2_000, too_fast()).await;
        for s in 3..20 {
            dev.send(t0 + s * 1_000, json!({})).await;
        }
        let last = dev.send(t0 + 20_000, json!({})).await;
        dev.wait_ack(last, 20).await;
        changes += 3;
    }
    // SSE has every change while the dead webhook has delivered nothing.
    let cleared =
        |eq: &'static str| move |a: &Value| a["equipment_id"] == eq && a["state"] == "cleared";
    feed.wait_for(20, "EQ0000 cleared", cleared("EQ0000")).await;
    feed.wait_for(20, "EQ0001 cleared", cleared("EQ0001")).await;
    assert_eq!(
        vigil
            .metric(r#"vigil_webhook_deliveries_total{result="delivered",webhook="dead"}"#)
            .await,
        0.0
    );
    assert!(
        vigil
            .metric(r#"vigil_webhook_queue_depth{webhook="dead"}"#)
            .await
            >= 1.0,
        "the dead webhook still holds its changes"
    );

    // The live webhook gets all of them after three 500s, in order per
    // equipment, as the SSE feed saw them.
    eventually(20, "every change at the webhook", || {
        let n = received.lock().unwrap().alarms.len();
        async move { (n == changes).then_some(()) }
    })
    .await;
    let sse = feed.alarms();
    for eq in ["EQ0000", "EQ0001"] {
        let via_hook: Vec<(Value, Value)> = received
            .lock()
            .unwrap()
            .alarms
            .iter()
            .filter(|(a, _)| a["equipment_id"] == eq)
            .map(|(a, _)| (a["version"].clone(), a["state"].clone()))
            .collect();
        let via_sse: Vec<(Value, Value)> = sse
            .iter()
            .filter(|a| a["equipment_id"] == eq)
            .map(|a| (a["version"].clone(), a["state"].clone()))
            .collect();
        assert_eq!(via_hook, via_sse, "{eq}");
        assert_eq!(
            via_hook,
            vec![
                (json!(1), json!("active")),
                (json!(2), json!("active")),
                (json!(3), json!("cleared"))
            ],
            "{eq}: raise, repeat, clear"
        );
    }
    let (first, headers) = received.lock().unwrap().alarms[0].clone();
    assert_eq!(
        headers["x-vigil-alarm"].to_str().unwrap(),
        format!("{}:1", first["alarm_id"].as_str().unwrap())
    );
    assert_eq!(first["rule"], OVERSPEED);
    assert_eq!(
        vigil
            .metric(r#"vigil_webhook_deliveries_total{result="retried",webhook="ops"}"#)
            .await,
        3.0
    );
    assert_eq!(
        vigil
            .metric(r#"vigil_webhook_deliveries_total{result="delivered",webhook="ops"}"#)
            .await,
        changes as f64
    );
    // The Guangzhou-only webhook had nothing to send.
    assert_eq!(
        vigil
            .metric(r#"vigil_webhook_deliveries_total{result="delivered",webhook="guangzhou"}"#)
            .await,
        0.0
    );
    assert_eq!(
        vigil
            .metric(r#"vigil_webhook_queue_depth{webhook="guangzhou"}"#)
            .await,
        0.0
    );
}
