//! CONNECT: only a registered, enabled device with its own secret gets in.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_right_secret_of_an_enabled_device_connects() {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add("EL8", SECRET, false);

    let refused = [
        ("wrong secret", "EL1", "EL1", "guess"),
        ("unknown device", "NOPE1", "NOPE1", SECRET),
        ("disabled device", "EL8", "EL8", SECRET),
        ("client id is not the device id", "EL2", "EL1", SECRET),
        ("not a device id", "EL-1", "EL-1", SECRET),
    ];
    for (case, client_id, user, secret) in refused {
        let result = Device::connect_with(rig.addr(), client_id, user, secret).await;
        // rumqttd closes the connection without a CONNACK on failed auth.
        let err = result.err().unwrap_or_else(|| panic!("{case}: connected"));
        assert!(err.starts_with("connection failed"), "{case}: {err}");
    }

    let mut device = Device::connect(rig.addr(), "EL1").await;
    device.event(1).await;
    device.expect_ack(1).await;

    let stats = rig.ingest.stats();
    assert_eq!(
        (stats.connects_accepted, stats.connects_refused),
        (1, refused.len() as u64)
    );
    assert_eq!(
        rig.metric(r#"vigil_ingest_connects_total{result="refused"}"#),
        refused.len() as f64
    );
}
