//! Device and supervisor identity through the real binary: certificates
//! from the engine's device CA (`vigil device cert`, `vigil feed cert`),
//! Mosquitto's own clients on the mutual-TLS listener, a device cut off
//! when it is disabled, and logins that try to take the engine's session.
//! Needs `mosquitto-clients` (mosquitto_pub, mosquitto_sub) from Debian.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::harness::*;

/// `mosquitto_pub` over TLS with the certificate in `dir`, as `client_id`.
fn tls_publish(vigil: &Vigil, dir: &Path, client_id: &str, topic: &str, payload: &Value) -> Output {
    let mqtts = vigil.mqtts.unwrap();
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &mqtts.port().to_string(),
            "-i",
            client_id,
            "-q",
            "1",
        ])
        .args(["-t", topic, "-m", &payload.to_string()])
        .args(tls_files(dir))
        .output()
        .expect("mosquitto_pub runs (apt-get install mosquitto-clients)")
}

fn tls_files(dir: &Path) -> Vec<String> {
    let mut args = vec![
        "--cafile".to_owned(),
        dir.join("ca.pem").display().to_string(),
    ];
    if dir.join("cert.pem").exists() {
        for (flag, file) in [("--cert", "cert.pem"), ("--key", "key.pem")] {
            args.push(flag.into());
            args.push(dir.join(file).display().to_string());
        }
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_certificates_log_in_on_the_tls_listener_and_keep_to_their_own_topics() {
    let vigil = Vigil::start_tls().await;
    vigil.import(&registry_doc(2)).await;
    let certs = tempfile::tempdir().unwrap();
    let dev0 = certs.path().join("DEV0000");
    vigil_cli_ok(
        &vigil,
        &["device", "cert", "DEV0000", "--out", dev0.to_str().unwrap()],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dev0.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is for its owner only");

    // Only registered devices, only for the admin.
    let out = vigil_cli(
        &vigil,
        &[
            "device",
            "cert",
            "NOPE1",
            "--out",
            certs.path().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));
    let (_, token) = vigil
        .post(
            "/tokens",
            &json!({"name": "duty", "role": "supervisor", "regions": ["440700"]}),
        )
        .await;
    let (status, _) = vigil
        .post_as(
            token["token"].as_str().unwrap(),
            "/devices/DEV0000/certificate",
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);

    // Mosquitto's own client with the certificate: stored and readable.
    let ts = now_ms();
    let out = tls_publish(
        &vigil,
        &dev0,
        "DEV0000",
        "/tenants/DEV0000/v1/elevator",
        &idle(1, ts),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(20, "the reading is stored", || async {
        let n = vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings WHERE device_id = 'DEV0000'")
            .await;
        (n == 1).then_some(())
    })
    .await;

    // DEV0000's certificate on DEV0001's topic: refused and counted.
    let _ = tls_publish(
        &vigil,
        &dev0,
        "DEV0000",
        "/tenants/DEV0001/v1/elevator",
        &idle(2, ts),
    );
    vigil
        .wait_metrics(
            20,
            &[(r#"vigil_mqtt_refused_total{packet="publish"}"#, 1.0)],
        )
        .await;
    // A TLS client without a certificate: refused and counted.
    let anonymous = certs.path().join("anonymous");
    std::fs::create_dir_all(&anonymous).unwrap();
    std::fs::copy(dev0.join("ca.pem"), anonymous.join("ca.pem")).unwrap();
    let out = tls_publish(
        &vigil,
        &anonymous,
        "DEV0001",
        "/tenants/DEV0001/v1/elevator",
        &idle(3, ts),
    );
    assert!(!out.status.success());
    vigil
        .wait_metrics(
            20,
            &[(
                r#"vigil_ingest_rejected_total{reason="bad_certificate"}"#,
                1.0,
            )],
        )
        .await;
    assert_eq!(
        vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings WHERE device_id = 'DEV0001'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_disabled_while_connected_is_cut_off_at_once() {
    let vigil = Vigil::start_tls().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let certs = tempfile::tempdir().unwrap();
    vigil_cli_ok(
        &vigil,
        &[
            "device",
            "cert",
            "DEV0001",
            "--out",
            certs.path().to_str().unwrap(),
        ],
    );
    // One session per listener: Mosquitto's client on TLS, rumqttc plain.
    let mqtts = vigil.mqtts.unwrap();
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &mqtts.port().to_string(),
            "-i",
            "DEV0001",
        ])
        .args(["-t", "/tenants/DEV0001/v1/ack", "-q", "1"])
        .args(tls_files(certs.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub runs");
    let plain = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    vigil
        .wait_metrics(20, &[(r#"vigil_ingest_sessions{login="device"}"#, 2.0)])
        .await;

    let (status, body) = vigil
        .put(
            "/devices/DEV0001",
            &json!({"device_id": "DEV0001", "equipment_id": "EQ0001", "kind": "elevator", "enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    vigil
        .wait_metrics(
            10,
            &[
                (
                    r#"vigil_ingest_disconnects_total{reason="device_inactive"}"#,
                    2.0,
                ),
                (r#"vigil_ingest_sessions{login="device"}"#, 0.0),
            ],
        )
        .await;
    let _ = sub.kill();
    let _ = sub.wait();
    drop(plain);
    assert!(
        Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_certificate_reads_its_citys_alarms_and_nothing_else() {
    let vigil = Vigil::start_tls().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let certs = tempfile::tempdir().unwrap();
    vigil_cli_ok(
        &vigil,
        &[
            "feed",
            "cert",
            "--region",
            "440700",
            "--name",
            "alice",
            "--out",
            certs.path().to_str().unwrap(),
        ],
    );
    let mqtts = vigil.mqtts.unwrap();
    // Up to two messages within 15 s: with only one for its city, it waits
    // out the time and shows exactly that one.
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &mqtts.port().to_string(),
            "-i",
            "alice-desk",
            "-v",
        ])
        .args([
            "-t",
            "/tenants/r440700/v1/alarms/#",
            "-q",
            "1",
            "-C",
            "2",
            "-W",
            "15",
        ])
        .args(tls_files(certs.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    vigil
        .wait_metrics(20, &[(r#"vigil_ingest_sessions{login="feed"}"#, 1.0)])
        .await;

    let overspeed = json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9});
    let ts = now_ms();
    // Guangzhou first, then Jiangmen.
    for id in ["DEVGZ", "DEV0000"] {
        let mut device = Device::connect(vigil.mqtt, id, &secrets[id]).await.unwrap();
        let seq = device.send(ts, overspeed.clone()).await;
        device.wait_ack(seq, 20).await;
    }
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    let topics: Vec<&str> = seen.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        topics,
        vec!["/tenants/r440700/v1/alarms/elevator/EQ0000"],
        "{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reader login as rumqttc makes it: `Ok` once CONNACKed.
async fn reader(
    vigil: &Vigil,
    client_id: &str,
    token: &str,
) -> Result<(AsyncClient, tokio::sync::mpsc::UnboundedReceiver<String>), String> {
    let mut opts = MqttOptions::new(client_id, vigil.mqtt.ip().to_string(), vigil.mqtt.port());
    opts.set_credentials("token:duty", token);
    let (client, mut events) = AsyncClient::new(opts, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no CONNACK".into()),
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(p.topic);
            }
        }
    });
    Ok((client, rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_the_ingest_links_or_a_live_readers_client_id_leaves_both_untouched() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let (_, issued) = vigil
        .post(
            "/tokens",
            &json!({"name": "duty", "role": "supervisor", "regions": ["440700"]}),
        )
        .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let desk = format!("{}-desk", vigil_ingest::feed_client_prefix(&token));
    let (live, mut seen) = reader(&vigil, &desk, &token).await.unwrap();
    live.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    assert!(reader(&vigil, "vigil-ingest", &token).await.is_err());
    assert!(reader(&vigil, &desk, &token).await.is_err());
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_rejected_total{reason="connect_reserved_client_id"}"#)
            .await,
        1.0
    );
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_rejected_total{reason="connect_client_id_in_use"}"#)
            .await,
        1.0
    );

    // Ingest still stores and acks; the reader still reads.
    let mut device = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let overspeed = json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9});
    let seq = device.send(now_ms(), overspeed).await;
    device.wait_ack(seq, 20).await;
    let topic = tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("the alarm reaches the reader")
        .unwrap();
    assert_eq!(topic, "/tenants/r440700/v1/alarms/elevator/EQ0000");
    assert_eq!(vigil.metric("vigil_ingest_link_restarts_total").await, 0.0);
    let ready = vigil
        .client
        .get(format!("http://{}/readyz", vigil.http))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
