//! CONNECT: only a registered, enabled device with its own secret gets in.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_right_secret_of_an_enabled_device_connects() {
    let rig = Rig::start(RigOptions::default());
    rig.directory.add("EL8", SECRET, false);

    let refused = [
        ("connect_bad_secret", "EL1", "EL1", "guess"),
        ("connect_unknown_device", "NOPE1", "NOPE1", SECRET),
        ("connect_disabled_device", "EL8", "EL8", SECRET),
        ("connect_bad_client_id", "EL2", "EL1", SECRET),
        // Not a device id at all.
        ("connect_unknown_device", "EL-1", "EL-1", SECRET),
        (
            "connect_reserved_client_id",
            "vigil-ingest",
            "vigil-ingest",
            SECRET,
        ),
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
    // Each refusal under its own reason; the dead-letter reasons untouched.
    for (reason, ..) in refused {
        let expected = refused.iter().filter(|(r, ..)| *r == reason).count();
        assert_eq!(
            rig.metric(&format!(
                r#"vigil_ingest_rejected_total{{reason="{reason}"}}"#
            )),
            expected as f64,
            "{reason}"
        );
        assert_eq!(stats.refused[reason], expected as u64, "{reason}");
    }
    assert_eq!(
        rig.metric(r#"vigil_ingest_rejected_total{reason="unknown_device"}"#),
        0.0
    );
}
