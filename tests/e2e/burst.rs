//! A burst from plain MQTT clients that never re-send: 8 `mosquitto_pub -l`
//! (Debian's mosquitto-clients) push 200 000 QoS 1 readings as fast as the
//! engine PUBACKs them. Every PUBACKed reading must be stored: the broker
//! slows the publishers down when ingest falls behind instead of dropping.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;

const CLIENTS: usize = 8;
const PER_CLIENT: u64 = 25_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_qos1_burst_from_mosquitto_pub_is_stored_whole() {
    // The burst is far above any device's quota on purpose: this is about
    // the broker's log, so quotas are off.
    let vigil = Vigil::start_with_config("[ingest.quota]\nenabled = false\n").await;
    let secrets = secrets(&vigil.import(&registry_doc(CLIENTS)).await);
    let lines = tempfile::tempdir().unwrap();
    let ts = now_ms();
    let mut publishers = Vec::new();
    for i in 0..CLIENTS {
        let id = format!("DEV{i:04}");
        let file = lines.path().join(format!("{id}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for seq in 1..=PER_CLIENT {
            writeln!(out, "{}", idle(seq, ts)).unwrap();
        }
        out.flush().unwrap();
        drop(out);
        let child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &vigil.mqtt.port().to_string()])
            .args(["-i", &id, "-u", &id, "-P", &secrets[&id]])
            .args(["-t", &format!("/tenants/{id}/v1/elevator"), "-q", "1", "-l"])
            .stdin(std::fs::File::open(&file).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs (apt-get install mosquitto-clients)");
        publishers.push((id, child));
    }
    for (id, child) in publishers {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // mosquitto_pub exits once every message is PUBACKed: all are in.
    let total = (CLIENTS as u64 * PER_CLIENT) as i64;
    let stored = eventually(60, "every reading is stored", || async {
        let n = vigil
            .sql_count("SELECT count(*) AS n FROM elevator_readings")
            .await;
        (n >= total).then_some(n)
    })
    .await;
    assert_eq!(stored, total);
    assert_eq!(
        vigil
            .sql_count("SELECT count(DISTINCT device_id || ':' || CAST(seq AS VARCHAR)) AS n FROM elevator_readings")
            .await,
        total,
        "each reading once"
    );
    assert_eq!(vigil.metric("vigil_ingest_broker_skipped_total").await, 0.0);
}
