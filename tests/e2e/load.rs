//! `vigil sim --load` as its own process against a live `vigil run`, the
//! way a benchmark harness drives it: a few hundred connections spread
//! over two loopback source addresses, the JSON report on stdout.

use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

async fn sim(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("sim")
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("vigil runs")
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn load_holds_its_connections_over_two_source_addresses_and_reports_every_count() {
    let engine = Vigil::start().await;
    let (connections, rate, seconds) = (300u64, 300u64, 4u64);
    let args: Vec<String> = [
        "--load",
        "--connections",
        &connections.to_string(),
        "--rate",
        &rate.to_string(),
        "--duration-s",
        &seconds.to_string(),
        "--drain-s",
        "30",
        "--sources",
        "127.0.0.1,127.0.0.2",
        "--mqtt",
        &engine.mqtt.to_string(),
        "--url",
        &format!("http://{}", engine.http),
        "--token",
        TOKEN,
        "--json",
        "-",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = sim(args).await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {}", text(&out)));
    let r = &doc["report"];

    assert_eq!(r["devices"], connections, "{r:#}");
    assert_eq!(r["connected"], connections, "{r:#}");
    assert_eq!(r["held"], connections, "{r:#}");
    assert_eq!(r["offered_per_s"].as_f64(), Some(rate as f64), "{r:#}");
    // Half the connections from each source address.
    assert_eq!(
        r["by_source"],
        serde_json::json!([["127.0.0.1", 150], ["127.0.0.2", 150]]),
        "{r:#}"
    );
    // A late tick is dropped, not sent in a burst: at most the offered
    // count, and on a busy machine most of it.
    let sent = r["sent"].as_u64().unwrap();
    let offered = rate * seconds;
    assert!(sent <= offered && sent >= offered / 2, "{r:#}");
    assert_eq!(r["acked"], sent, "everything sent is acked: {r:#}");
    assert_eq!(r["errors"]["connect"], 0, "{r:#}");
    assert_eq!(r["errors"]["refused"], 0, "{r:#}");
    assert_eq!(r["errors"]["not_ready"], 0, "{r:#}");
    assert_eq!(r["errors"]["lost"], 0, "{r:#}");
    assert_eq!(r["errors"]["protocol"], 0, "{r:#}");
    let ms = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("no {k} in the report: {r:#}"))
    };
    let (p50, p99, p999, max) = (
        ms("ack_latency_ms_p50"),
        ms("ack_latency_ms_p99"),
        ms("ack_latency_ms_p999"),
        ms("ack_latency_ms_max"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{r:#}"
    );
    // The summary for people goes to stderr, beside the JSON.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("held {connections}/{connections} connections")),
        "{stderr}"
    );

    // The engine stored every message once: the acked ones and each
    // client's warm-up.
    let expected = (sent + connections) as i64;
    eventually(30, "every load reading stored", || async {
        (engine
            .sql_count("SELECT count(*) AS n FROM elevator_readings")
            .await
            == expected)
            .then_some(())
    })
    .await;
    assert_eq!(
        engine
            .sql_count("SELECT count(DISTINCT device_id) AS n FROM elevator_readings")
            .await,
        connections as i64
    );
}

#[tokio::test]
async fn load_with_a_bad_rate_or_too_many_connections_says_what_is_wrong() {
    for (flag, value, says) in [
        ("--rate", "0", "--rate must be a positive number"),
        ("--connections", "0", "--connections must be positive"),
        ("--connections", "4000000000", "needs as many open files"),
    ] {
        let out = sim(vec![
            "--load".into(),
            flag.into(),
            value.into(),
            "--token".into(),
            TOKEN.into(),
        ])
        .await;
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{flag} {value}: {}",
            text(&out)
        );
    }
}
