//! `vigil sim --load`: many MQTT connections from this process against a
//! running engine, at a paced rate, with publish→ack latency percentiles
//! and errors (`vigil_simulator::load`). Its own devices are imported into
//! the engine's registry first (ids tagged with the run), in chunks.
//!
//! Against another broker (`--no-registry`, `--ack puback`: Mosquitto, a
//! bare rumqttd) nothing is imported and the clients log in with their ids
//! and an empty password; `vigil bench ingest` drives all three that way
//! from separate processes, which `--start-at-ms` starts together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use vigil_simulator::{AckMode, Fleet, FleetConfig, LoadConfig};

use super::{Api, SimArgs, default_run_id};

/// Connections from one loopback source address before the next is used:
/// under the 28 232 ephemeral ports of Linux's default range.
const PER_SOURCE: usize = 25_000;
/// Open files kept spare beyond the connections (HTTP client, runtime, logs).
const FD_MARGIN: u64 = 64;
/// Devices per registry import request.
const IMPORT_CHUNK: usize = 2_000;

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Run a load instead of scenarios: many connections publishing
    /// healthy samples at a paced rate; reports rate, ack latency, errors.
    #[arg(long)]
    pub load: bool,
    /// Connections (one simulated device each).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Readings per second over all connections.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Seconds to wait for the last acks after sending.
    #[arg(long, default_value_t = 5)]
    pub drain_s: u64,
    /// Source addresses to connect from, comma-separated [default: for a
    /// loopback engine, 127.0.0.1, 127.0.0.2, … one per 25 000 connections].
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// New connections per second while connecting.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_per_s: f64,
    /// What acknowledges a reading: Vigil's ack message on the device's ack
    /// topic (durable), or the broker's PUBACK (for a broker that only
    /// relays, e.g. Mosquitto).
    #[arg(long, value_enum, default_value_t = Ack::Topic)]
    pub ack: Ack,
    /// The broker at --mqtt has no Vigil registry: import nothing, log in
    /// with the device ids and an empty password (Mosquitto with
    /// `allow_anonymous`, a bare rumqttd).
    #[arg(long)]
    pub no_registry: bool,
    /// Start sending at this time (milliseconds since 1970) if connected by
    /// then, so that several load processes send together.
    #[arg(long)]
    pub start_at_ms: Option<u64>,
    /// Seconds for every client to connect and have its warm-up reading
    /// acked [default: 60 + connections / connect-per-s, longer than the
    /// engine's default gap grace].
    #[arg(long)]
    pub ready_timeout_s: Option<f64>,
}

/// `--ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Ack {
    Topic,
    Puback,
}

pub(super) async fn run(args: &SimArgs) -> anyhow::Result<()> {
    let l = &args.load;
    anyhow::ensure!(l.connections > 0, "--connections must be positive");
    anyhow::ensure!(
        l.ready_timeout_s.is_none_or(|s| s.is_finite() && s > 0.0),
        "--ready-timeout-s must be a positive number of seconds"
    );
    anyhow::ensure!(
        l.rate.is_finite() && l.rate > 0.0,
        "--rate must be a positive number of readings per second"
    );
    // Each connection is a file descriptor; past the limit they would all
    // fail as connect errors, so say it before importing anything.
    if let Some(limit) = process_figures()["open_files_limit"].as_u64() {
        anyhow::ensure!(
            l.connections as u64 + FD_MARGIN <= limit,
            "--connections {} needs as many open files, and this process may open {limit} \
             (`ulimit -n`; keep {FD_MARGIN} spare)",
            l.connections,
        );
    }
    let run_id = args.run_id.clone().unwrap_or_else(default_run_id);
    let fleet = Fleet::generate(&FleetConfig {
        devices: l.connections,
        seed: 23,
        fault_fraction: 0.0,
        id_tag: format!("LD{run_id}"),
        ..FleetConfig::default()
    });
    let secrets = if l.no_registry {
        fleet
            .device_ids()
            .into_iter()
            .map(|id| (id, String::new()))
            .collect()
    } else {
        import(&Api::new(&args.remote)?, &fleet).await?
    };
    let sources = if !l.sources.is_empty() {
        l.sources.clone()
    } else if args.mqtt.ip().is_loopback() && args.mqtt.is_ipv4() {
        let n = l.connections.div_ceil(PER_SOURCE).clamp(1, 254);
        (1..=n as u8)
            .map(|k| IpAddr::from([127, 0, 0, k]))
            .collect()
    } else {
        Vec::new()
    };
    eprintln!(
        "load {run_id}: {} connections from {} at {} readings/s for {} s against {}",
        l.connections,
        if sources.is_empty() {
            "the default address".to_owned()
        } else {
            sources
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
        l.rate,
        l.duration_s,
        args.mqtt
    );
    let cfg = LoadConfig {
        devices: l.connections,
        rate_hz: l.rate / l.connections as f64,
        duration: Duration::from_secs(l.duration_s),
        drain: Duration::from_secs(l.drain_s),
        sources,
        connect_per_s: l.connect_per_s,
        connect_timeout: Duration::from_secs_f64(
            l.ready_timeout_s
                .unwrap_or_else(|| 60.0 + l.connections as f64 / l.connect_per_s.max(1.0)),
        ),
        ack: match l.ack {
            Ack::Topic => AckMode::Topic,
            Ack::Puback => AckMode::PubAck,
        },
        start_at: l
            .start_at_ms
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
    };
    let report = vigil_simulator::load(cfg, args.mqtt, secrets).await?;
    let process = process_figures();
    let e = &report.errors;
    let summary = format!(
        "held {}/{} connections (ready {} in {:.1} s); offered {:.0}/s, sent {:.0}/s, acked {:.0}/s ({} of {}); \
         ack latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms; \
         errors {} (connect {}, refused {}, not ready {}, lost {}, protocol {}); skipped ticks {}\n\
         this process: peak RSS {:.0} MiB, open files limit {}",
        report.held,
        report.devices,
        report.connected,
        report.connect_s,
        report.offered_per_s,
        report.sent_per_s,
        report.acked_per_s,
        report.acked,
        report.sent,
        report.ack_latency_ms_p50,
        report.ack_latency_ms_p99,
        report.ack_latency_ms_p999,
        report.ack_latency_ms_max,
        e.total(),
        e.connect,
        e.refused,
        e.not_ready,
        e.lost,
        e.protocol,
        report.skipped,
        process["rss_peak_mib"].as_f64().unwrap_or_default(),
        process["open_files_limit"]
    );
    let doc = json!({
        "run_id": run_id,
        "mqtt": args.mqtt.to_string(),
        "report": report,
        "process": process,
    });
    match args.json.as_deref() {
        // `--json -`: the JSON is the only thing on stdout, for a harness.
        Some(path) if path == Path::new("-") => {
            eprintln!("{summary}");
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Some(path) => {
            println!("{summary}");
            std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => println!("{summary}"),
    }
    Ok(())
}

/// Imports the load fleet into the engine's registry, a chunk of devices
/// (with their equipment, owners and maintainers) per request; the secrets.
async fn import(api: &Api, fleet: &Fleet) -> anyhow::Result<HashMap<String, String>> {
    let doc = fleet.import_doc();
    let list = |k: &str| doc[k].as_array().cloned().unwrap_or_default();
    let (equipment, devices) = (list("equipment"), list("devices"));
    let mut secrets = HashMap::new();
    for (eq, dev) in equipment
        .chunks(IMPORT_CHUNK)
        .zip(devices.chunks(IMPORT_CHUNK))
    {
        let chunk = json!({
            "owners": doc["owners"],
            "maintainers": doc["maintainers"],
            "equipment": eq,
            "devices": dev,
        });
        let report = api
            .post("/registry/import", &chunk)
            .await
            .context("registry import of the load fleet")?;
        for d in report["devices"].as_array().into_iter().flatten() {
            if let (Some(id), Some(s)) = (d["device_id"].as_str(), d["secret"].as_str()) {
                secrets.insert(id.to_owned(), s.to_owned());
            }
        }
    }
    anyhow::ensure!(
        secrets.len() == devices.len(),
        "the registry answered {} secrets for {} new devices (a --run-id used before?)",
        secrets.len(),
        devices.len()
    );
    Ok(secrets)
}

/// This process's peak memory and file limit, from /proc (Linux).
fn process_figures() -> Value {
    let status = |key| crate::bench::proc_status_kib("self", key);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "rss_peak_mib": status("VmHWM:").map(|k| k as f64 / 1024.0),
        "rss_mib": status("VmRSS:").map(|k| k as f64 / 1024.0),
        "threads": status("Threads:"),
        "open_files_limit": files,
    })
}
