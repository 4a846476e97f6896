//! `vigil bench flood`: what one device flooding QoS 0 does to its
//! neighbours. A well-behaved device publishes paced QoS 1 readings and
//! times each one until its ack: first alone, then while another device
//! (`mosquitto_pub -l -q 0`, fed as fast as it reads) floods. The engine
//! runs with its default quotas.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use vigil_simulator::{Fleet, FleetConfig, LoadConfig, LoadReport};

use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

#[derive(Debug, Args)]
pub(crate) struct FloodArgs {
    /// Seconds of each phase (alone, under the flood).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Readings per second of the well-behaved device.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Phase {
    sent: u64,
    acked: u64,
    ack_ms_p50: f64,
    ack_ms_p99: f64,
}

impl From<&LoadReport> for Phase {
    fn from(r: &LoadReport) -> Phase {
        Phase {
            sent: r.sent,
            acked: r.acked,
            ack_ms_p50: r.ack_latency_ms_p50,
            ack_ms_p99: r.ack_latency_ms_p99,
        }
    }
}

#[derive(Debug, Serialize)]
struct FloodReport {
    seconds: u64,
    alone: Phase,
    under_flood: Phase,
    /// Under-flood p50 over alone p50.
    p50_ratio: f64,
    flood_lines_written: u64,
    flood_readings_taken: u64,
    flood_throttled: u64,
    flood_disconnects: u64,
}

pub(super) async fn run(args: FloodArgs) -> anyhow::Result<()> {
    let fleet = Fleet::generate(&FleetConfig {
        devices: 2,
        seed: 3,
        fault_fraction: 0.0,
        ..FleetConfig::default()
    });
    let mut ids = fleet.device_ids();
    ids.sort();
    let (good, flooder) = (ids[0].clone(), ids[1].clone());
    let work = tempfile::Builder::new().prefix("vigil-flood-").tempdir()?;
    let mut config = ServerConfig {
        data_dir: work.path().join("vigil"),
        mqtt_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    // The second phase starts the device's seqs afresh, above the first's
    // (the load generator's way); its warm-up waits out this grace.
    config.ingest.gap_grace_s = 1;
    let engine = Engine::start(config, system_clock()).await?;
    let report = engine
        .state()
        .registry()
        .import(serde_json::from_value(fleet.import_doc())?)?;
    let secrets: std::collections::HashMap<String, String> = report
        .devices
        .into_iter()
        .map(|d| (d.device_id.to_string(), d.secret))
        .collect();
    let good_secret = std::collections::HashMap::from([(good.clone(), secrets[&good].clone())]);
    let load = LoadConfig {
        devices: 1,
        rate_hz: args.rate,
        duration: Duration::from_secs(args.seconds),
        drain: Duration::from_secs(5),
        ..LoadConfig::default()
    };

    eprintln!("Alone: {} readings/s for {} s …", args.rate, args.seconds);
    let alone =
        vigil_simulator::load(load.clone(), engine.mqtt_addr(), good_secret.clone()).await?;

    eprintln!("Under a QoS 0 flood from {flooder} …");
    let mut flood = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &engine.mqtt_addr().port().to_string(),
        ])
        .args(["-i", &flooder, "-u", &flooder, "-P", &secrets[&flooder]])
        .args([
            "-t",
            &format!("/tenants/{flooder}/v1/event"),
            "-q",
            "0",
            "-l",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run mosquitto_pub (apt-get install mosquitto-clients)")?;
    let mut stdin = flood.stdin.take().context("no stdin")?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || {
            let ts = chrono::Utc::now().timestamp_millis();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let line = json!({"seq": seq, "ts": ts, "code": "F", "active": true});
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let under = vigil_simulator::load(load, engine.mqtt_addr(), good_secret).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = flood.kill();
    let _ = flood.wait();
    let _ = feeder.join();

    let stats = engine.state().ingest_stats();
    let taken = engine
        .state()
        .store()
        .query(
            &format!("SELECT count(*) AS n FROM device_events WHERE device_id = '{flooder}'"),
            &Default::default(),
        )
        .await
        .ok()
        .and_then(|out| out.batches.first().cloned())
        .and_then(|b| {
            use arrow::array::AsArray;
            b.column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
                .map(|a| a.value(0) as u64)
        })
        .unwrap_or(0);
    engine.shutdown().await?;

    let report = FloodReport {
        seconds: args.seconds,
        p50_ratio: under.ack_latency_ms_p50 / alone.ack_latency_ms_p50,
        alone: Phase::from(&alone),
        under_flood: Phase::from(&under),
        flood_lines_written: written.load(Ordering::Relaxed),
        flood_readings_taken: taken,
        flood_throttled: stats.throttled,
        flood_disconnects: stats.disconnects.get("quota").copied().unwrap_or(0),
    };
    println!("\n### A neighbour's acks while one device floods QoS 0\n");
    println!("| phase | sent | acked | ack p50 ms | ack p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, p) in [
        ("alone", &report.alone),
        ("under the flood", &report.under_flood),
    ] {
        println!(
            "| {name} | {} | {} | {:.1} | {:.1} |",
            p.sent, p.acked, p.ack_ms_p50, p.ack_ms_p99
        );
    }
    println!(
        "\nUnder-flood p50 / alone p50 = {:.2}. The flooder wrote {} lines; {} were taken, it was throttled {} time(s), disconnected {} time(s).",
        report.p50_ratio,
        report.flood_lines_written,
        report.flood_readings_taken,
        report.flood_throttled,
        report.flood_disconnects
    );
    super::write_json(args.json.as_deref(), &report)
}
