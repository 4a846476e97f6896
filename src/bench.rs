//! `vigil bench`: readings per second through the whole path (MQTT in,
//! decode, de-duplication, rules, WAL group commit, ack out) and alarm
//! latency from publish to the SSE feed, each reported against a baseline
//! measured in the same run on the same machine:
//!
//! - throughput: the same paced load against a bare rumqttd that answers
//!   every message with an ack at once (no auth, no decode, no disk), i.e.
//!   what the broker and the load generator manage by themselves;
//! - alarm latency: the publish→ack round trip of that bare broker.
//!
//! `vigil bench registry` ([`registry`]) measures the registry at a
//! province's size instead.
//!
//! The load generator runs in this process, so on a small machine it takes
//! its share of the cores from whichever side it measures: both sides pay
//! it alike, which is why the ratios matter more than the absolute figures.
//!
//! Two more modes: `vigil bench burst` (a QoS 1 burst from `mosquitto_pub
//! -l` against a Mosquitto relay of the same burst, `bench/burst.rs`) and
//! `vigil bench flood` (a neighbour's ack latency while a device floods,
//! `bench/flood.rs`).
//!
//! `vigil bench sql` ([`sql`]) and `vigil bench store` ([`store`]) measure
//! analysts' SQL against DuckDB and the stores' writes against the disk and
//! `psql \copy`, each with `--json FILE`.
//!
//! `vigil bench ingest` ([`ingest`]) finds the ceiling this default mode
//! cannot: the load in separate processes, the offered rate raised until
//! acks fall behind, against Mosquitto and this bare rumqttd in the same
//! run, and alarm latency to SSE and the MQTT feed at half of it. This
//! default mode stays as it was (fixed rates, load in this process).
//! Every mode takes `--json FILE`.

mod all;
mod burst;
mod compare;
mod connections;
mod flood;
mod ingest;
mod registry;
mod rules;
mod sql;
mod store;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::local::LinkBuilder;
use rumqttd::protocol::v4::V4;
use rumqttd::{
    ConnectionSettings, LinkType, Notification, Router, RouterConfig, Server, ServerSettings,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_simulator::{Fleet, FleetConfig, LoadConfig, LoadReport};

use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    /// Another bench than the whole path (readings/s, alarm latency).
    #[command(subcommand)]
    pub what: Option<BenchCommand>,
    /// Load clients (simulated devices publishing at a steady rate).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Offered loads to try, in readings per second over all clients.
    #[arg(long, value_delimiter = ',', default_value = "1000,2500,5000,10000")]
    pub rates: Vec<u32>,
    /// Seconds of load per step.
    #[arg(long, default_value_t = 15)]
    pub step_s: u64,
    /// Alarms to time from publish to SSE.
    #[arg(long, default_value_t = 40)]
    pub probes: usize,
    /// Background load (readings/s) while alarms are timed.
    #[arg(long, default_value_t = 2500)]
    pub probe_load: u32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The whole suite, mode by mode in processes of their own: every
    /// mode's JSON in one directory, and all ratios and times in a summary.
    All(all::AllArgs),
    /// A QoS 1 burst from `mosquitto_pub -l` clients (which never re-send)
    /// into the engine, against a Mosquitto relay of the same burst:
    /// stored/s, relayed/s, and how many PUBACKed messages were lost.
    Burst(burst::BurstArgs),
    /// The ingest ceiling: load from separate `vigil sim --load` processes,
    /// raised until acks fall behind, on Vigil, Mosquitto and a bare
    /// rumqttd in the same run; then alarm latency to SSE and the MQTT feed
    /// at half of Vigil's ceiling (docs/benchmarks.md).
    Ingest(ingest::IngestArgs),
    /// The probes and feed readers of `ingest`'s alarm-latency phase, in a
    /// process of their own (started by `vigil bench ingest`).
    #[command(hide = true)]
    Probe(ingest::ProbeArgs),
    /// Device connections one engine holds (keep-alive, a reading every
    /// 30 s) and their memory, against Mosquitto holding the same.
    Connections(connections::ConnectionsArgs),
    /// A well-behaved device's ack latency alone and while another device
    /// floods QoS 0 as fast as it can.
    Flood(flood::FloodArgs),
    /// The registry at a province's size: import, memory, and the latency
    /// of a device update and a CONNECT check, against a hundredth of it.
    Registry(registry::RegistryArgs),
    /// Rules per core: readings/s through the whole catalogue and a rule
    /// file on one thread, and rule state per device, against a bare
    /// per-device state update on the same readings.
    Rules(rules::RulesArgs),
    /// Analyst SQL on a month of a fleet's readings in the embedded store,
    /// against DuckDB on the same Parquet files (docs/benchmarks.md).
    Sql(sql::SqlArgs),
    /// Store writes: WAL group commit against raw fsync, PostgreSQL COPY
    /// against `psql \copy` (docs/benchmarks.md).
    Store(store::StoreArgs),
    /// This binary against another `vigil` (e.g. the previous commit's),
    /// mode by mode in alternating rounds: ratios and regression verdicts.
    Compare(compare::CompareArgs),
}

/// A KiB figure of `/proc/{pid}/status` (`VmRSS:`, `VmHWM:`; or a count
/// such as `Threads:`), `pid` a number or `self` (Linux; `None` elsewhere).
pub(crate) fn proc_status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/{pid}/stat`, `pid` a number or `self` (Linux; `None` elsewhere or
/// once it is gone). The kernel counts in USER_HZ, 100 on every Linux port.
fn proc_cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// All cores' busy and total time so far (`/proc/stat`, in USER_HZ ticks;
/// idle and I/O wait count as not busy).
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    let total = ticks.iter().sum::<u64>();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// A probe's first elevator sample, at 9 m/s: an overspeed alarm at once.
fn overspeed_sample() -> Value {
    json!({
        "seq": 1, "ts": chrono::Utc::now().timestamp_millis(), "floor": 1, "direction": "up",
        "speed_mps": 9.0, "door": "closed", "leveled": false, "occupied": true, "mode": "normal",
        "safety_circuit": true, "door_lock": true, "alarm_button": false, "power": "mains",
        "limit": "none"
    })
}

/// Writes a bench report as JSON when `--json` asked for it.
fn write_json(
    path: Option<&std::path::Path>,
    report: &impl serde::Serialize,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The machine a figure was taken on, for JSON reports.
pub(crate) fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_gib": mem_kib.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "load_average": std::fs::read_to_string("/proc/loadavg").ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        "os": std::env::consts::OS,
        "vigil": env!("CARGO_PKG_VERSION"),
    })
}

/// One load step on one side.
struct Step {
    offered: u32,
    report: LoadReport,
}

impl Step {
    fn acked_per_s(&self) -> f64 {
        self.report.acked as f64 / self.report.elapsed.as_secs_f64()
    }

    fn acked_share(&self) -> f64 {
        if self.report.sent == 0 {
            return 0.0;
        }
        self.report.acked as f64 / self.report.sent as f64
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        Some(BenchCommand::All(a)) => return all::run(a),
        Some(BenchCommand::Rules(a)) => return rules::run(a),
        Some(BenchCommand::Sql(a)) => return sql::run(a).await,
        Some(BenchCommand::Store(a)) => return store::run(a).await,
        Some(BenchCommand::Compare(a)) => return compare::run(a).await,
        Some(BenchCommand::Registry(a)) => return registry::run(a).await,
        Some(BenchCommand::Burst(burst)) => return burst::run(burst).await,
        Some(BenchCommand::Flood(flood)) => return flood::run(flood).await,
        Some(BenchCommand::Ingest(a)) => return ingest::run(a).await,
        Some(BenchCommand::Probe(a)) => return ingest::probe(a).await,
        Some(BenchCommand::Connections(a)) => return connections::run(a).await,
        None => {}
    }
    anyhow::ensure!(
        args.devices > 0 && !args.rates.is_empty(),
        "need devices and at least one rate"
    );
    let fleet = Fleet::generate(&FleetConfig {
        devices: args.devices + args.probes,
        seed: 11,
        fault_fraction: 0.0,
        ..FleetConfig::default()
    });
    let mut ids = fleet.device_ids();
    ids.sort();
    // The load takes the first ids in sorted order; the probes the rest.
    let probe_ids: Vec<String> = ids.split_off(args.devices);

    eprintln!("Baseline: bare rumqttd acking every message at once …");
    let echo = EchoBroker::start()?;
    let open: HashMap<String, String> = ids.iter().map(|id| (id.clone(), String::new())).collect();
    // The round trip at the probe load first, before the heavy steps.
    let echo_rtt = step(&args, echo.addr, &open, args.probe_load).await?;
    let mut baseline = Vec::new();
    for &rate in &args.rates {
        baseline.push(step(&args, echo.addr, &open, rate).await?);
    }
    echo.stop();

    eprintln!("Vigil: the whole engine on the embedded store …");
    let data = tempfile::Builder::new().prefix("vigil-bench-").tempdir()?;
    let token = "bench-admin-token".to_owned();
    let mut config = ServerConfig {
        data_dir: data.path().to_path_buf(),
        mqtt_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        admin_token: Some(token.clone()),
        ..ServerConfig::default()
    };
    // Every load step starts its devices' seqs afresh, higher than the last
    // step's: a hole the engine would otherwise hold acks on for the default
    // 30 s grace. Real devices count on; with no loss the grace never matters.
    config.ingest.gap_grace_s = 1;
    // The steps offer up to 20 readings/s per device, above a 30 s-interval
    // device's quota: this run measures capacity, not fairness.
    config.ingest.quota.enabled = false;
    let engine = Engine::start(config, system_clock()).await?;
    let doc = serde_json::from_value(fleet.import_doc())?;
    let report = engine.state().registry().import(doc)?;
    let secrets: HashMap<String, String> = report
        .devices
        .into_iter()
        .map(|d| (d.device_id.to_string(), d.secret))
        .collect();
    let load_secrets: HashMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), secrets[id].clone()))
        .collect();
    let mut vigil = Vec::new();
    for &rate in &args.rates {
        vigil.push(step(&args, engine.mqtt_addr(), &load_secrets, rate).await?);
    }

    eprintln!(
        "Alarm latency: {} overspeed alarms under {} readings/s …",
        args.probes, args.probe_load
    );
    let background = tokio::spawn(vigil_simulator::load(
        LoadConfig {
            devices: args.devices,
            rate_hz: f64::from(args.probe_load) / args.devices as f64,
            duration: Duration::from_secs(args.step_s.max(5) + args.probes as u64),
            drain: Duration::from_secs(5),
            ..LoadConfig::default()
        },
        engine.mqtt_addr(),
        load_secrets.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let latencies = alarm_latencies(&engine, &token, &probe_ids, &secrets).await?;
    let under_load = background.await??;
    engine.shutdown().await?;

    print_report(&args, &baseline, &vigil, &echo_rtt, &under_load, &latencies);
    write_json(
        args.json.as_deref(),
        &json_report(&args, &baseline, &vigil, &echo_rtt, &under_load, &latencies),
    )
}

/// The default mode's figures as JSON: the same as the printed tables.
fn json_report(
    args: &BenchArgs,
    baseline: &[Step],
    vigil: &[Step],
    echo_rtt: &Step,
    under_load: &LoadReport,
    latencies: &[Duration],
) -> Value {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let steps: Vec<Value> = baseline
        .iter()
        .zip(vigil)
        .map(|(b, v)| {
            json!({
                "offered_per_s": v.offered,
                "baseline_acked_per_s": b.acked_per_s(),
                "vigil_acked_per_s": v.acked_per_s(),
                "ratio": v.acked_per_s() / b.acked_per_s(),
                "vigil_acked_share": v.acked_share(),
                "vigil": v.report,
                "baseline": b.report,
            })
        })
        .collect();
    json!({
        "machine": machine(),
        "devices": args.devices,
        "step_s": args.step_s,
        "steps": steps,
        "alarm_latency": {
            "probes": sorted.len(),
            "probe_load_per_s": args.probe_load,
            "sse_ms_p50": percentile(&sorted, 0.5),
            "sse_ms_p90": percentile(&sorted, 0.9),
            "sse_ms_p99": percentile(&sorted, 0.99),
            "sse_ms_max": percentile(&sorted, 1.0),
            "vigil_ack": under_load,
            "baseline_ack": echo_rtt.report,
        },
    })
}

async fn step(
    args: &BenchArgs,
    mqtt: SocketAddr,
    secrets: &HashMap<String, String>,
    rate: u32,
) -> anyhow::Result<Step> {
    let cfg = LoadConfig {
        devices: args.devices,
        rate_hz: f64::from(rate) / args.devices as f64,
        duration: Duration::from_secs(args.step_s),
        drain: Duration::from_secs(5),
        ..LoadConfig::default()
    };
    let report = vigil_simulator::load(cfg, mqtt, secrets.clone())
        .await
        .with_context(|| format!("load step at {rate}/s"))?;
    let s = Step {
        offered: rate,
        report,
    };
    eprintln!(
        "  {:>6}/s offered: {:>8.0}/s acked ({:.1}% of sent), ack p50 {:.1} ms p99 {:.1} ms",
        rate,
        s.acked_per_s(),
        100.0 * s.acked_share(),
        s.report.ack_latency_ms_p50,
        s.report.ack_latency_ms_p99
    );
    Ok(s)
}

/// Publishes one overspeed sample per probe device and times it until its
/// alarm arrives on the SSE feed, one probe at a time.
async fn alarm_latencies(
    engine: &Engine,
    token: &str,
    probes: &[String],
    secrets: &HashMap<String, String>,
) -> anyhow::Result<Vec<Duration>> {
    let (events_tx, mut events) = mpsc::unbounded_channel::<(Instant, Value)>();
    let url = format!("http://{}/api/v1/alarms/stream", engine.http_addr());
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let feed = tokio::spawn(sse_data(response, move |at, data| {
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            let _ = events_tx.send((at, v));
        }
    }));

    let mut latencies = Vec::new();
    for id in probes {
        let mut opts = MqttOptions::new(
            id,
            engine.mqtt_addr().ip().to_string(),
            engine.mqtt_addr().port(),
        );
        opts.set_credentials(id, &secrets[id]);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        // Drive the connection until CONNACK.
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
                break;
            }
        }
        let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let sample = overspeed_sample();
        let sent = Instant::now();
        client
            .publish(
                format!("/tenants/{id}/v1/elevator"),
                QoS::AtLeastOnce,
                false,
                sample.to_string(),
            )
            .await?;
        let arrived = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some((at, alarm)) = events.recv().await {
                if alarm["device_id"] == id.as_str() && alarm["rule"] == "elevator.overspeed" {
                    return Some(at);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .with_context(|| format!("no overspeed alarm for {id} on the feed within 10 s"))?;
        latencies.push(arrived.saturating_duration_since(sent));
        let _ = client.disconnect().await;
        pump.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    feed.abort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

fn print_report(
    args: &BenchArgs,
    baseline: &[Step],
    vigil: &[Step],
    echo_rtt: &Step,
    under_load: &LoadReport,
    latencies: &[Duration],
) {
    println!(
        "\n### Throughput ({} clients, {} s per step)\n",
        args.devices, args.step_s
    );
    println!(
        "| offered/s | baseline acked/s | vigil acked/s | ratio | vigil acked of sent | vigil ack p50 ms | vigil ack p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (b, v) in baseline.iter().zip(vigil) {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1}% | {:.1} | {:.1} |",
            v.offered,
            b.acked_per_s(),
            v.acked_per_s(),
            v.acked_per_s() / b.acked_per_s(),
            100.0 * v.acked_share(),
            v.report.ack_latency_ms_p50,
            v.report.ack_latency_ms_p99,
        );
    }
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let base = echo_rtt.report.ack_latency_ms_p50;
    println!(
        "\n### Alarm latency, publish → SSE ({} alarms under {} readings/s)\n",
        sorted.len(),
        args.probe_load
    );
    println!("| | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| publish → alarm on SSE | {:.1} | {:.1} | {:.1} | {:.1} |",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
    println!(
        "| publish → ack, vigil (WAL fsync) | {:.1} | {:.1} | {:.1} | {:.1} |",
        under_load.ack_latency_ms_p50,
        under_load.ack_latency_ms_p90,
        under_load.ack_latency_ms_p99,
        under_load.ack_latency_ms_max
    );
    println!(
        "| publish → ack, baseline broker | {:.1} | {:.1} | {:.1} | {:.1} |",
        echo_rtt.report.ack_latency_ms_p50,
        echo_rtt.report.ack_latency_ms_p90,
        echo_rtt.report.ack_latency_ms_p99,
        echo_rtt.report.ack_latency_ms_max
    );
    if base > 0.0 {
        println!(
            "\nAlarm p50 / bare broker round-trip p50 = {:.2}",
            percentile(&sorted, 0.5) / base
        );
    } else {
        println!(
            "\nThe bare broker acked nothing at the probe load: no round-trip to compare with."
        );
    }
}

/// A bare rumqttd that answers each `/tenants/{id}/v1/{stream}` message
/// with `{"seq": N}` on the device's ack topic: the ceiling the engine is
/// measured against. It runs rumqttd's own accept loop (`Server::start`),
/// which does not set `TCP_NODELAY`: its round trip shows what Nagle costs.
struct EchoBroker {
    addr: SocketAddr,
    /// Device messages the echo link has seen so far.
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Runtime,
}

impl EchoBroker {
    fn start() -> anyhow::Result<EchoBroker> {
        let router = Router::new(
            0,
            RouterConfig {
                max_connections: 20_000,
                max_outgoing_packet_count: 200,
                max_segment_size: 4 << 20,
                max_segment_count: 4,
                custom_segment: None,
                initialized_filters: None,
                // The patches' counters and lossless logs, none of them used here.
                ..RouterConfig::default()
            },
        )
        .spawn();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let seen = Arc::new(AtomicU64::new(0));
        let counting = Arc::clone(&seen);
        let link_router = router.clone();
        std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                // The router drops a local link that falls behind at high
                // rates; a new link picks up, as a restarted service would.
                while !stopping.load(Ordering::Relaxed) {
                    match LinkBuilder::new("echo", link_router.clone()).build() {
                        Ok((mut tx, mut rx, _)) => {
                            if tx.subscribe("/tenants/#").is_ok() {
                                echo(&mut tx, &mut rx, &stopping, &counting);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "Baseline echo link failed."),
                    }
                    if !stopping.load(Ordering::Relaxed) {
                        tracing::warn!("Baseline echo link lost; reconnecting.");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })?;
        let settings = |listen| ServerSettings {
            name: "bench-echo".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 5_000,
                max_payload_size: 1 << 20,
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                dynamic_filters: false,
                // The bare broker routes every publish and ack, as published.
                direct: None,
                mailboxes: None,
            },
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // A port found free can be taken (by another program's outgoing
        // connection) before rumqttd binds it; its server then ends at
        // once, and a new port is tried.
        let mut attempt = 0;
        let addr = loop {
            attempt += 1;
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let mut server = Server::new(settings(addr), router.clone(), V4);
            let serving = runtime.spawn(async move {
                if let Err(e) = server.start(LinkType::Remote).await {
                    tracing::warn!(error = %e, "Baseline broker stopped.");
                }
            });
            if serving_on(addr, &serving)? {
                break addr;
            }
            anyhow::ensure!(
                attempt < 3,
                "the baseline broker stopped at start 3 times (ports taken?)"
            );
        };
        Ok(EchoBroker {
            addr,
            seen,
            stop,
            runtime,
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.runtime.shutdown_background();
    }
}

/// Waits until the baseline's server listens on `addr` (`true`) or ends
/// without having bound it (`false`: the port was taken).
fn serving_on(addr: SocketAddr, serving: &tokio::task::JoinHandle<()>) -> anyhow::Result<bool> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !serving.is_finished() {
        if std::net::TcpStream::connect(addr).is_ok() {
            // Another program's listener answers too: ours is the one
            // whose server is still running once it has bound.
            std::thread::sleep(Duration::from_millis(50));
            return Ok(!serving.is_finished());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the baseline broker did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(false)
}

/// Answers every device message with its seq until the link fails or
/// `stopping` is set.
fn echo(
    tx: &mut rumqttd::local::LinkTx,
    rx: &mut rumqttd::local::LinkRx,
    stopping: &AtomicBool,
    seen: &AtomicU64,
) {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    while !stopping.load(Ordering::Relaxed) {
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        match rx.recv_deadline(deadline) {
            Ok(Some(Notification::Forward(f))) => {
                let topic = String::from_utf8_lossy(&f.publish.topic).into_owned();
                if topic.ends_with("/ack") {
                    continue;
                }
                let Some(device) = topic.split('/').nth(2) else {
                    continue;
                };
                seen.fetch_add(1, Ordering::Relaxed);
                if let Ok(Seq { seq }) = serde_json::from_slice(&f.publish.payload) {
                    let _ = tx.publish(
                        format!("/tenants/{device}/v1/ack"),
                        format!("{{\"seq\":{seq}}}"),
                    );
                }
            }
            Ok(Some(Notification::Unschedule)) => {
                let _ = rx.ready();
            }
            Ok(_) => {}
            Err(rumqttd::local::LinkError::RecvTimeout(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Baseline echo link closed.");
                return;
            }
        }
    }
}

/// Reads an SSE stream to its end, handing each event's `data:` text to
/// `each` with the moment its chunk was read.
async fn sse_data(response: reqwest::Response, mut each: impl FnMut(Instant, &str)) {
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let at = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    each(at, data.trim());
                }
            }
        }
    }
}
