//! The mutual-TLS listener with real TLS clients (rumqttc on rustls, and
//! the `openssl` command line for a foreign CA and a client without a
//! certificate): a certificate names its device or region, and keeps it to
//! its own topics.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rumqttc::QoS;
use vigil_model::Region;

use crate::harness::*;

fn tls_rig(devices: &[&str]) -> Rig {
    Rig::start(RigOptions {
        devices: devices.iter().map(|d| d.to_string()).collect(),
        tls: true,
        ..RigOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certificate_keeps_to_its_own_topics() {
    let rig = tls_rig(&["EL1", "EL2"]);
    let mut el1 = Device::connect_tls(&rig, "EL1").await.unwrap();
    el1.event(1).await;
    el1.expect_ack(1).await;
    assert_eq!(seqs_of(&rig.store.readings(), "EL1"), vec![1]);

    // Publishing under EL2's name: refused, the connection closed, counted.
    let (cert, key) = rig.device_cert("EL1");
    let opts = || {
        tls_options(
            "EL1",
            rig.tls_addr(),
            rig.ca().ca_pem(),
            Some((&cert, &key)),
        )
    };
    let (client, mut seen) = session_with(opts()).await.unwrap();
    client
        .publish("/tenants/EL2/v1/event", QoS::AtLeastOnce, false, event(7))
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::Closed);
    // Reading EL2's acks: refused the same way.
    let (client, mut seen) = session_with(opts()).await.unwrap();
    client
        .subscribe("/tenants/EL2/v1/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::Closed);
    rig.assert_topic_refusals(1, 1);
    assert!(seqs_of(&rig.store.readings(), "EL2").is_empty());
    assert!(rig.store.dead_letters().is_empty());

    // The certificate names the device: another client id is refused.
    let wrong_id = tls_options(
        "EL2",
        rig.tls_addr(),
        rig.ca().ca_pem(),
        Some((&cert, &key)),
    );
    assert!(session_with(wrong_id).await.is_err());
    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="connect_bad_client_id"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_an_unregistered_or_disabled_device_is_refused() {
    let rig = tls_rig(&["EL1"]);
    rig.directory.add("EL9", SECRET, false);
    for (id, reason) in [
        ("NOPE1", "connect_unknown_device"),
        ("EL9", "connect_disabled_device"),
    ] {
        assert!(Device::connect_tls(&rig, id).await.is_err(), "{id} got in");
        assert_eq!(
            rig.metric(&format!(
                r#"vigil_ingest_rejected_total{{reason="{reason}"}}"#
            )),
            1.0
        );
    }
}

/// `openssl` with `args`, in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_and_no_certificate_are_refused() {
    let rig = tls_rig(&["EL1"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Another CA, made with openssl as a device maker would, and a
    // certificate for a registered device id signed by it.
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "other-ca.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "other-ca.key",
            "-subj",
            "/O=Elsewhere/CN=Other CA",
            "-days",
            "30",
            "-out",
            "other-ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "el1.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "el1.key",
            "-subj",
            "/O=EL1/OU=device/CN=EL1",
            "-out",
            "el1.csr",
        ],
    );
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "el1.csr",
            "-CA",
            "other-ca.pem",
            "-CAkey",
            "other-ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "client.ext",
            "-out",
            "el1.pem",
        ],
    );
    // PKCS#8, as rustls reads it.
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "el1.key", "-out", "el1.p8",
        ],
    );
    let cert = std::fs::read_to_string(d.join("el1.pem")).unwrap();
    let key = std::fs::read_to_string(d.join("el1.p8")).unwrap();
    let foreign = tls_options(
        "EL1",
        rig.tls_addr(),
        rig.ca().ca_pem(),
        Some((&cert, &key)),
    );
    assert!(
        session_with(foreign).await.is_err(),
        "a foreign certificate got in"
    );

    // A TLS client without a certificate: rustls, then openssl s_client.
    let anonymous = tls_options("EL1", rig.tls_addr(), rig.ca().ca_pem(), None);
    assert!(
        session_with(anonymous).await.is_err(),
        "no certificate got in"
    );
    std::fs::write(d.join("ca.pem"), rig.ca().ca_pem()).unwrap();
    let addr = rig.tls_addr().to_string();
    let s_client = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(["s_client", "-connect", &addr, "-CAfile", "ca.pem", "-quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs")
    });
    let s_client = tokio::time::timeout(Duration::from_secs(20), s_client)
        .await
        .expect("s_client ends")
        .unwrap();
    let said = String::from_utf8_lossy(&s_client.stderr).to_lowercase();
    assert!(
        said.contains("alert") || said.contains("certificate required"),
        "s_client: {said}"
    );

    rig.until("the three refusals are counted", |r| {
        r.metric(r#"vigil_ingest_rejected_total{reason="bad_certificate"}"#) == 3.0
    })
    .await;
    assert_eq!(
        rig.metric(r#"vigil_ingest_connects_total{result="accepted"}"#),
        0.0
    );
    // The listener still serves the CA's own certificates.
    let mut el1 = Device::connect_tls(&rig, "EL1").await.unwrap();
    el1.event(1).await;
    el1.expect_ack(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_certificate_receives_its_citys_alarms_and_nothing_else() {
    let rig = tls_rig(&["EL1"]);
    let issued = rig
        .ca()
        .issue_feed(
            &Region::new("440700").unwrap(),
            "alice",
            Duration::from_secs(3600),
            None,
        )
        .unwrap();
    let key = issued.key_pem.unwrap();
    let opts = |client_id: &str| {
        tls_options(
            client_id,
            rig.tls_addr(),
            rig.ca().ca_pem(),
            Some((&issued.cert_pem, &key)),
        )
    };
    let (city, mut seen) = session_with(opts("alice-desk")).await.unwrap();
    city.subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Seen::SubAck);

    // A Jiangmen county's alarm, a Guangzhou one, a province-level one.
    for region in ["440703", "440106", "440000"] {
        rig.ingest.alarm_publisher().publish(&alarm_in(region));
    }
    assert_eq!(
        next(&mut seen).await,
        Seen::Publish("/tenants/r440700/v1/alarms/elevator/EQ-EL1".into())
    );
    let more = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await;
    assert!(more.is_err(), "only the city's alarm arrives, got {more:?}");

    // Another city, a county of its own city, every region, a write: each
    // closes its session and is counted.
    for filter in [
        "/tenants/r440100/v1/alarms/#",
        "/tenants/r440703/v1/alarms/#",
        "/tenants/+/v1/alarms/#",
    ] {
        let (c, mut s) = session_with(opts("alice-tries")).await.unwrap();
        c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(next(&mut s).await, Seen::Closed, "{filter}");
    }
    // The live session's client id is its own: a second login with it is refused.
    assert!(session_with(opts("alice-desk")).await.is_err());
    let (c, mut s) = session_with(opts("alice-writes")).await.unwrap();
    c.publish(
        "/tenants/r440700/v1/alarms/elevator/X",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut s).await, Seen::Closed);
    rig.assert_topic_refusals(3, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_device_disabled_while_connected_is_cut_off() {
    let rig = tls_rig(&["EL1"]);
    let (cert, key) = rig.device_cert("EL1");
    let opts = tls_options(
        "EL1",
        rig.tls_addr(),
        rig.ca().ca_pem(),
        Some((&cert, &key)),
    );
    let (_client, mut seen) = session_with(opts).await.unwrap();
    rig.directory.add("EL1", SECRET, false);
    assert_eq!(rig.ingest.sessions().recheck(), 1);
    assert_eq!(next(&mut seen).await, Seen::Closed);
    assert!(Device::connect_tls(&rig, "EL1").await.is_err());
}
