//! `vigil bench ingest`: the highest rate each broker holds with the load in
//! separate processes, and alarm latency at half of Vigil's.
//!
//! ```text
//!  vigil sim --load (× processes, 127.0.0.x sources) ─▶ Mosquitto ─▶ mosquitto_sub  (ack: PUBACK)
//!                                                   ─▶ bare rumqttd + echo link   (ack: {"seq":N})
//!                                                   ─▶ Vigil (this process)       (ack: {"seq":N}, durable)
//!  each: offered rate doubled until a step fails, then bisected (--refine times)
//!  each step: CPU per message of the broker side and of the load, mid-step
//!  Vigil at ½ ceiling: probe devices' overspeed ─▶ SSE feed, MQTT alarm feed
//!                     (vigil bench probe: the probes and both readers, a process of their own;
//!                      --sql-load: analysts' queries beside them)
//! ```
//!
//! A step holds when ack p99 ≤ 1 s, acked/sent ≥ 99.9 % and the load
//! processes managed to send ≥ 95 % of the offer (below that the load
//! generator, not the broker, is the limit, and the report says so). The
//! ceiling is the acked/s of the highest step that held. The load
//! processes are the current executable's `vigil sim --load --json -`, so
//! the three brokers see the very same publishers; they share the machine's
//! cores with the broker under test, as any client on the same host would.
//! That is why each step also reports what a message costs in CPU on each
//! side (from `/proc`, over the middle of its sending): with the cores
//! full, the ceiling is the machine's, and the cost per message is what
//! tells the brokers apart.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use vigil_simulator::{Fleet, FleetConfig};

use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

/// Ack p99 above this fails a step.
const P99_LIMIT_MS: f64 = 1000.0;
/// Acked/sent below this fails a step.
const ACKED_SHARE_MIN: f64 = 0.999;
/// Sent/offered below this: the load processes could not offer the rate.
const SENT_SHARE_MIN: f64 = 0.95;
/// A probe's alarm must reach both feeds within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Load connections over all load processes.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Load processes (`vigil sim --load`), each with an equal share.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// Loopback source addresses 127.0.0.1 … 127.0.0.N, dealt out to the
    /// load processes in turn.
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// First offered rate (readings/s); doubled while steps hold.
    #[arg(long, default_value_t = 4000)]
    pub start_rate: u32,
    /// Never offer more than this.
    #[arg(long, default_value_t = 256_000)]
    pub max_rate: u32,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 8)]
    pub step_s: u64,
    /// Seconds to wait for a step's last acks.
    #[arg(long, default_value_t = 4)]
    pub drain_s: u64,
    /// Steps that halve the gap between the last rate that held and the
    /// first that failed (2: the ceiling within an eighth of the doubling).
    #[arg(long, default_value_t = 2)]
    pub refine: u32,
    /// The brokers to measure (Vigil's alarm latency needs `vigil`; the
    /// ratios need it and their baseline).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mosquitto,rumqttd,vigil"
    )]
    pub brokers: Vec<Broker>,
    /// Overspeed alarms to time at half of Vigil's ceiling.
    #[arg(long, default_value_t = 1000)]
    pub probes: usize,
    /// Only the alarm-latency phase, with this background rate
    /// (readings/s) instead of half a ceiling: no search, Vigil only.
    #[arg(long)]
    pub latency_at: Option<u32>,
    /// Analysts running a query that keeps the SQL threads busy (a cross
    /// join, until its timeout, then again) during the alarm-latency phase.
    #[arg(long, default_value_t = 0)]
    pub sql_load: usize,
    /// The engine's `sql_nice` (default: the engine's default).
    #[arg(long)]
    pub sql_nice: Option<i32>,
    /// Small and short: 20 connections, 2 steps of 2 s per broker, 20
    /// probes (a smoke run that every figure is produced).
    #[arg(long)]
    pub quick: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `--brokers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Broker {
    Mosquitto,
    Rumqttd,
    Vigil,
}

impl IngestArgs {
    fn effective(mut self) -> IngestArgs {
        if self.quick {
            self.connections = 20;
            self.processes = 2;
            self.sources = 2;
            self.start_rate = 200;
            self.max_rate = 400;
            self.step_s = 2;
            self.drain_s = 2;
            self.probes = 20;
            self.refine = 1;
        }
        self
    }
}

/// One load step against one broker, over all load processes.
#[derive(Debug, Clone, Serialize)]
struct Step {
    offered_per_s: f64,
    sent_per_s: f64,
    acked_per_s: f64,
    sent: u64,
    acked: u64,
    /// Clients ready when sending started / still connected at its end.
    connected: u64,
    held: u64,
    /// The worst of the load processes' percentiles (each process has its
    /// own distribution; they are not merged).
    ack_ms_p50: f64,
    ack_ms_p99: f64,
    ack_ms_p999: f64,
    ack_ms_max: f64,
    errors: u64,
    /// Mosquitto only: messages the subscriber received during the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    relayed: Option<u64>,
    /// What the messages cost in CPU mid-step (`None`: not on Linux, or
    /// the step sent nothing).
    cpu: Option<StepCpu>,
    held_up: bool,
    /// Why the step failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

impl Step {
    fn acked_share(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.acked as f64 / self.sent as f64
        }
    }

    /// Judges the step: whether it held, and if not why (and whose limit).
    fn judge(&mut self) {
        let why = if self.sent == 0 {
            Some(format!("nothing sent ({} errors)", self.errors))
        } else if self.acked_share() < ACKED_SHARE_MIN {
            Some(format!(
                "acked {:.2}% of sent (< {:.1}%)",
                100.0 * self.acked_share(),
                100.0 * ACKED_SHARE_MIN
            ))
        } else if self.ack_ms_p99 > P99_LIMIT_MS {
            Some(format!(
                "ack p99 {:.0} ms (> {P99_LIMIT_MS:.0} ms)",
                self.ack_ms_p99
            ))
        } else if self.sent_per_s < SENT_SHARE_MIN * self.offered_per_s {
            // A client skips a tick while its last publish is still being
            // written: the broker not reading (backpressure) or the load
            // processes short of CPU. Acks on time point at the latter.
            Some(format!(
                "sent only {:.0}/s of {:.0}/s offered ({})",
                self.sent_per_s,
                self.offered_per_s,
                if self.ack_ms_p99 < 100.0 {
                    "the load processes' limit"
                } else {
                    "backpressure or the load processes' limit"
                }
            ))
        } else {
            None
        };
        self.held_up = why.is_none();
        self.failed = why;
    }
}

/// CPU over the middle of a step's sending (its first and last eighth left
/// out), per message the load processes sent in that time.
#[derive(Debug, Clone, Serialize)]
struct StepCpu {
    window_s: f64,
    /// Cores the broker side kept busy: Vigil or the bare rumqttd with this
    /// bench process that hosts them; Mosquitto with its subscriber and
    /// this process (which counts the subscriber's lines).
    broker_cores: f64,
    broker_us_per_msg: f64,
    /// The load processes' CPU per message: publishing and taking acks.
    load_us_per_msg: f64,
    /// Share of all the machine's cores busy (anyone's work) in the window.
    machine_busy: f64,
}

/// The CPU seconds of some processes and the machine's busy ticks at one
/// moment.
struct CpuMark {
    at: Instant,
    broker_s: f64,
    load_s: f64,
    machine: (u64, u64),
}

impl CpuMark {
    fn take(broker: &[String], load: &[String]) -> Option<CpuMark> {
        let sum = |pids: &[String]| {
            pids.iter()
                .map(|p| super::proc_cpu_s(p))
                .sum::<Option<f64>>()
        };
        Some(CpuMark {
            at: Instant::now(),
            broker_s: sum(broker)?,
            load_s: sum(load)?,
            machine: super::machine_cpu_ticks()?,
        })
    }

    /// From this mark to `end`, with `per_s` messages sent per second.
    fn to(&self, end: &CpuMark, per_s: f64) -> Option<StepCpu> {
        let window_s = end.at.duration_since(self.at).as_secs_f64();
        let messages = per_s * window_s;
        let (busy, total) = (
            end.machine.0.saturating_sub(self.machine.0),
            end.machine.1.saturating_sub(self.machine.1),
        );
        (messages >= 1.0 && total > 0).then(|| StepCpu {
            window_s,
            broker_cores: (end.broker_s - self.broker_s) / window_s,
            broker_us_per_msg: (end.broker_s - self.broker_s) / messages * 1e6,
            load_us_per_msg: (end.load_s - self.load_s) / messages * 1e6,
            machine_busy: busy as f64 / total as f64,
        })
    }
}

/// Marks the CPU at the end of the first eighth of a step's sending and at
/// the start of its last eighth.
async fn cpu_window(
    start: SystemTime,
    seconds: u64,
    broker: Vec<String>,
    load: Vec<String>,
) -> Option<(CpuMark, CpuMark)> {
    let step = Duration::from_secs(seconds);
    let until = |t: SystemTime| t.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(until(start + step / 8)).await;
    let first = CpuMark::take(&broker, &load)?;
    tokio::time::sleep(until(start + step - step / 8)).await;
    Some((first, CpuMark::take(&broker, &load)?))
}

/// One broker's search for its ceiling.
#[derive(Debug, Serialize)]
struct Ceiling {
    /// Acked/s of the highest step that held (0 if none did).
    ceiling_per_s: f64,
    /// The offered rate of that step.
    ceiling_offered_per_s: f64,
    /// What stopped the search: the reason of the lowest rate that failed,
    /// or `max rate` when every step up to `--max-rate` held.
    limited_by: String,
    ack: &'static str,
    steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    timed: usize,
    missed: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Percentiles {
    fn of(mut d: Vec<Duration>, missed: usize) -> Percentiles {
        d.sort();
        Percentiles {
            timed: d.len(),
            missed,
            p50_ms: super::percentile(&d, 0.5),
            p99_ms: super::percentile(&d, 0.99),
            p999_ms: super::percentile(&d, 0.999),
            max_ms: super::percentile(&d, 1.0),
        }
    }
}

#[derive(Debug, Serialize)]
struct AlarmLatency {
    /// The background load offered while the probes ran (½ of Vigil's
    /// ceiling, or `--latency-at`).
    load_per_s: f64,
    sse: Percentiles,
    mqtt: Percentiles,
    /// Other alarms on the SSE and MQTT feeds while the probes were timed.
    others_sse: usize,
    others_mqtt: usize,
    /// The background devices' publish→ack at that load.
    device_ack_ms_p50: f64,
    device_ack_ms_p99: f64,
    background: Step,
    /// `--sql-load`: the analysts' queries beside the probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<SqlLoadReport>,
}

#[derive(Debug, Serialize)]
struct IngestReport {
    machine: Value,
    quick: bool,
    connections: usize,
    processes: usize,
    sources: u8,
    step_s: u64,
    mosquitto: Option<Ceiling>,
    rumqttd: Option<Ceiling>,
    vigil: Option<Ceiling>,
    /// The disk under Vigil's store just before its steps: 4 KiB write +
    /// `sync_data`, the cost below every durable ack (Mosquitto and the bare
    /// rumqttd keep nothing on disk).
    vigil_disk_fsync: Option<Percentiles>,
    vigil_over_mosquitto: Option<f64>,
    vigil_over_rumqttd: Option<f64>,
    /// The broker side's CPU per message, Vigil against Mosquitto, at the
    /// highest offered rate both held.
    cpu_per_msg: Option<CpuCompare>,
    alarm_latency: Option<AlarmLatency>,
}

#[derive(Debug, Serialize)]
struct CpuCompare {
    at_offered_per_s: f64,
    vigil_us: f64,
    mosquitto_us: f64,
    /// The bare rumqttd at the same rate, when it held it too.
    rumqttd_us: Option<f64>,
    vigil_over_mosquitto: f64,
}

impl Ceiling {
    /// What a message cost at `rate`, if a step at that rate held.
    fn cpu_at(&self, rate: f64) -> Option<&StepCpu> {
        self.steps
            .iter()
            .find(|s| s.held_up && s.offered_per_s == rate)?
            .cpu
            .as_ref()
    }
}

impl CpuCompare {
    fn of(vigil: &Ceiling, mosquitto: &Ceiling, rumqttd: Option<&Ceiling>) -> Option<CpuCompare> {
        let held = |c: &Ceiling, rate: f64| Some(c.cpu_at(rate)?.broker_us_per_msg);
        let (rate, vigil_us, mosquitto_us) = vigil
            .steps
            .iter()
            .filter(|s| s.held_up)
            .filter_map(|s| {
                let v = s.cpu.as_ref()?.broker_us_per_msg;
                Some((s.offered_per_s, v, held(mosquitto, s.offered_per_s)?))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        Some(CpuCompare {
            at_offered_per_s: rate,
            vigil_us,
            mosquitto_us,
            rumqttd_us: rumqttd.and_then(|r| held(r, rate)),
            vigil_over_mosquitto: vigil_us / mosquitto_us,
        })
    }
}

/// A broker the load processes are pointed at.
struct Target {
    name: &'static str,
    mqtt: SocketAddr,
    /// Vigil: its HTTP API and admin token (the load imports its devices).
    api: Option<(String, String)>,
    /// Mosquitto: messages its subscriber has received so far.
    relayed: Option<Arc<AtomicU64>>,
    /// Messages the broker has dealt with so far (relayed, echoed,
    /// taken in): a step ends once this stops moving.
    progress: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The processes whose CPU is the broker side's (`self`: this one).
    cpu_pids: Vec<String>,
}

pub(super) async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let args = args.effective();
    anyhow::ensure!(
        args.connections > 0 && args.processes > 0 && args.connections >= args.processes,
        "need at least one connection per load process"
    );
    anyhow::ensure!(
        args.start_rate > 0 && args.max_rate >= args.start_rate,
        "need 0 < --start-rate <= --max-rate"
    );
    anyhow::ensure!(
        f64::from(args.max_rate) / args.connections as f64 <= 1000.0,
        "--max-rate over --connections is above 1000 readings/s per connection"
    );
    anyhow::ensure!(args.sources > 0, "--sources must be at least 1");
    anyhow::ensure!(args.probes > 0, "--probes must be at least 1");
    if let Some(rate) = args.latency_at {
        anyhow::ensure!(
            args.brokers.contains(&Broker::Vigil),
            "--latency-at measures Vigil: keep vigil in --brokers"
        );
        anyhow::ensure!(
            rate > 0 && f64::from(rate) / args.connections as f64 <= 1000.0,
            "--latency-at must be above 0 and at most 1000 readings/s per connection"
        );
    }
    let work = tempfile::Builder::new()
        .prefix("vigil-bench-ingest-")
        .tempdir()?;
    let wants =
        |b: Broker| args.brokers.contains(&b) && (args.latency_at.is_none() || b == Broker::Vigil);

    let mut mosquitto_ceiling = None;
    if wants(Broker::Mosquitto) {
        eprintln!(
            "Mosquitto ({}), relaying to one subscriber; ack = PUBACK …",
            super::burst::mosquitto_binary()
        );
        let mosquitto = Mosquitto::start(work.path()).await?;
        let relayed = Arc::clone(&mosquitto.relayed);
        let target = Target {
            name: "M",
            mqtt: mosquitto.addr,
            api: None,
            relayed: Some(Arc::clone(&mosquitto.relayed)),
            progress: Arc::new(move || relayed.load(Ordering::Relaxed)),
            cpu_pids: vec![
                "self".to_owned(),
                mosquitto.pid().to_string(),
                mosquitto.sub.id().to_string(),
            ],
        };
        let c = ceiling(&args, &target, "puback").await;
        mosquitto.stop();
        mosquitto_ceiling = Some(c?);
    }

    let mut rumqttd_ceiling = None;
    if wants(Broker::Rumqttd) {
        eprintln!("Bare rumqttd answering each message with {{\"seq\":N}} …");
        let echo = super::EchoBroker::start()?;
        let seen = Arc::clone(&echo.seen);
        let target = Target {
            name: "R",
            mqtt: echo.addr,
            api: None,
            relayed: None,
            progress: Arc::new(move || seen.load(Ordering::Relaxed)),
            cpu_pids: vec!["self".to_owned()],
        };
        let c = ceiling(&args, &target, "topic").await;
        echo.stop();
        rumqttd_ceiling = Some(c?);
    }

    let (mut vigil_ceiling, mut alarms_timed, mut fsync) = (None, None, None);
    if wants(Broker::Vigil) {
        let disk = fsync_latency(work.path())?;
        eprintln!(
            "Vigil: the whole engine on the embedded store (disk fsync p50 {:.1} ms, p99 {:.1} ms) …",
            disk.p50_ms, disk.p99_ms
        );
        fsync = Some(disk);
        let token = "bench-ingest-admin-token".to_owned();
        let rate = match args.latency_at {
            Some(rate) => rate,
            None => {
                let (engine, target) =
                    start_vigil(&args, &work.path().join("vigil"), &token).await?;
                let measured = ceiling(&args, &target, "topic").await;
                engine.shutdown().await?;
                // The search wrote millions of readings; the kernel writing
                // them back, and the files, must not weigh on the probes.
                std::fs::remove_dir_all(work.path().join("vigil"))?;
                let _ = std::process::Command::new("sync").status();
                let vigil = measured?;
                let half = half_ceiling(&args, &vigil);
                vigil_ceiling = Some(vigil);
                half
            }
        };
        // A fresh engine for the probes: the ramp's fleets (ids of their
        // own per step) fell silent when their steps ended, and in the same
        // engine each would go offline in the middle of the probes, 1 000
        // `device.offline` alarms at once on both feeds.
        let (engine, target) =
            start_vigil(&args, &work.path().join("vigil-latency"), &token).await?;
        let measured = alarm_latency(&args, &engine, &target, &token, rate).await;
        engine.shutdown().await?;
        alarms_timed = Some(measured?);
    }

    let ratio = |base: &Option<Ceiling>| {
        Some(vigil_ceiling.as_ref()?.ceiling_per_s / base.as_ref()?.ceiling_per_s)
    };
    let cpu_per_msg = match (&vigil_ceiling, &mosquitto_ceiling) {
        (Some(v), Some(m)) => CpuCompare::of(v, m, rumqttd_ceiling.as_ref()),
        _ => None,
    };
    let report = IngestReport {
        cpu_per_msg,
        machine: super::machine(),
        quick: args.quick,
        connections: args.connections,
        processes: args.processes,
        sources: args.sources,
        step_s: args.step_s,
        vigil_over_mosquitto: ratio(&mosquitto_ceiling),
        vigil_over_rumqttd: ratio(&rumqttd_ceiling),
        mosquitto: mosquitto_ceiling,
        rumqttd: rumqttd_ceiling,
        vigil: vigil_ceiling,
        vigil_disk_fsync: fsync,
        alarm_latency: alarms_timed,
    };
    print_report(&report);
    super::write_json(args.json.as_deref(), &report)
}

/// The whole engine on the embedded store in `data_dir`, as the load
/// and the probes reach it.
async fn start_vigil(
    args: &IngestArgs,
    data_dir: &Path,
    token: &str,
) -> anyhow::Result<(Engine, Target)> {
    let mut config = ServerConfig {
        data_dir: data_dir.to_owned(),
        mqtt_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        admin_token: Some(token.to_owned()),
        ..ServerConfig::default()
    };
    // Capacity, not fairness: the steps offer far above a device's quota.
    config.ingest.quota.enabled = false;
    if let Some(nice) = args.sql_nice {
        config.engine.sql_nice = nice;
    }
    let engine = Engine::start(config, system_clock()).await?;
    let state = Arc::clone(engine.state());
    let target = Target {
        name: "V",
        mqtt: engine.mqtt_addr(),
        api: Some((format!("http://{}", engine.http_addr()), token.to_owned())),
        relayed: None,
        progress: Arc::new(move || state.ingest_stats().messages),
        cpu_pids: vec!["self".to_owned()],
    };
    Ok((engine, target))
}

/// Doubles the offered rate from `--start-rate` until a step fails, then
/// halves the gap between the last good and the first failed rate
/// `--refine` times.
async fn ceiling(args: &IngestArgs, target: &Target, ack: &'static str) -> anyhow::Result<Ceiling> {
    let mut steps: Vec<Step> = Vec::new();
    let mut good: Option<usize> = None;
    let mut rate = args.start_rate;
    let mut limited_by = "max rate".to_owned();
    let mut failed_at = None;
    while failed_at.is_none() {
        let s = load_step(args, target, ack, steps.len(), rate, args.step_s).await?;
        print_step(&s);
        match &s.failed {
            None => {
                good = Some(steps.len());
                if rate >= args.max_rate {
                    steps.push(s);
                    break;
                }
                rate = rate.saturating_mul(2).min(args.max_rate);
            }
            Some(reason) => {
                limited_by.clone_from(reason);
                failed_at = Some(rate);
            }
        }
        steps.push(s);
    }
    // Only between a rate that held and one that failed: with none held,
    // the start rate itself is too high and halving it says little more.
    if let (Some(mut bad), Some(_)) = (failed_at, good) {
        for _ in 0..args.refine {
            let last_good = steps[good.unwrap_or_default()].offered_per_s as u32;
            let middle = last_good + (bad - last_good) / 2;
            if middle <= last_good || middle >= bad {
                break;
            }
            let s = load_step(args, target, ack, steps.len(), middle, args.step_s).await?;
            print_step(&s);
            match &s.failed {
                None => good = Some(steps.len()),
                Some(reason) => {
                    limited_by.clone_from(reason);
                    bad = middle;
                }
            }
            steps.push(s);
        }
    }
    let (ceiling_per_s, ceiling_offered_per_s) = good.map_or((0.0, 0.0), |i| {
        (steps[i].acked_per_s, steps[i].offered_per_s)
    });
    eprintln!("  ceiling {ceiling_per_s:.0}/s ({limited_by})");
    Ok(Ceiling {
        ceiling_per_s,
        ceiling_offered_per_s,
        limited_by,
        ack,
        steps,
    })
}

fn print_step(s: &Step) {
    eprintln!(
        "  {:>7.0}/s offered: sent {:>7.0}/s, acked {:>7.0}/s ({:.2}%), ack p50 {:.1} ms p99 {:.1} ms p99.9 {:.1} ms{}{}",
        s.offered_per_s,
        s.sent_per_s,
        s.acked_per_s,
        100.0 * s.acked_share(),
        s.ack_ms_p50,
        s.ack_ms_p99,
        s.ack_ms_p999,
        s.cpu.as_ref().map_or(String::new(), |c| format!(
            "; CPU per message: broker {:.1} µs ({:.2} cores), load {:.1} µs; machine {:.0}% busy",
            c.broker_us_per_msg,
            c.broker_cores,
            c.load_us_per_msg,
            100.0 * c.machine_busy
        )),
        s.failed
            .as_ref()
            .map_or(String::new(), |f| format!(": FAILED, {f}"))
    );
}

/// Runs `vigil sim --load` in `--processes` child processes at `rate` in
/// all, started together, and adds up what they report.
async fn load_step(
    args: &IngestArgs,
    target: &Target,
    ack: &str,
    index: usize,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<Step> {
    let exe = std::env::current_exe().context("cannot find the vigil executable")?;
    let relayed_before = target.relayed.as_ref().map(|r| r.load(Ordering::Relaxed));
    let per_process = args.connections / args.processes;
    let start = SystemTime::now() + lead(args, target);
    let start_at = start.duration_since(UNIX_EPOCH)?.as_millis();
    let mut children = Vec::new();
    for p in 0..args.processes {
        let connections = if p + 1 == args.processes {
            args.connections - per_process * (args.processes - 1)
        } else {
            per_process
        };
        let process = LoadProcess {
            mqtt: target.mqtt,
            connections,
            rate: f64::from(rate) * connections as f64 / args.connections as f64,
            duration_s: seconds,
            drain_s: args.drain_s,
            start_at_ms: start_at,
            // A broker still choking on the last step fails this one
            // quickly rather than after the default minute.
            ready_timeout_s: lead(args, target).as_secs_f64() + 10.0,
            connect_per_s: None,
            ack,
            // Ids unique per broker, step and process.
            run_id: format!("{}{index}P{p}", target.name),
            sources: sources_of(p, args.processes, args.sources),
            api: target.api.as_ref(),
        };
        children.push(process.spawn(&exe)?);
    }
    let load_pids = children.iter().map(|c| c.id().to_string()).collect();
    let window = tokio::spawn(cpu_window(
        start,
        seconds,
        target.cpu_pids.clone(),
        load_pids,
    ));
    let mut reports = Vec::new();
    for child in children {
        reports.push(finish(child).await?);
    }
    // The broker (and Mosquitto's subscriber) finishes the step's backlog
    // before the next step starts, or that step would pay for this one.
    settle(target).await;
    let relayed = match (&target.relayed, relayed_before) {
        (Some(r), Some(before)) => Some(r.load(Ordering::Relaxed) - before),
        _ => None,
    };
    let sum = |k: &str| {
        reports
            .iter()
            .map(|r| r[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let sum_f = |k: &str| {
        reports
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let worst = |k: &str| {
        reports
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
            .fold(0.0, f64::max)
    };
    let errors = reports
        .iter()
        .map(|r| {
            r["errors"]
                .as_object()
                .map_or(0, |e| e.values().filter_map(Value::as_u64).sum::<u64>())
        })
        .sum();
    let mut step = Step {
        offered_per_s: f64::from(rate),
        sent_per_s: sum_f("sent_per_s"),
        acked_per_s: sum_f("acked_per_s"),
        sent: sum("sent"),
        acked: sum("acked"),
        connected: sum("connected"),
        held: sum("held"),
        ack_ms_p50: worst("ack_latency_ms_p50"),
        ack_ms_p99: worst("ack_latency_ms_p99"),
        ack_ms_p999: worst("ack_latency_ms_p999"),
        ack_ms_max: worst("ack_latency_ms_max"),
        errors,
        relayed,
        cpu: None,
        held_up: false,
        failed: None,
    };
    if let Ok(Some((first, last))) = window.await {
        step.cpu = first.to(&last, step.sent_per_s);
    }
    step.judge();
    Ok(step)
}

/// One `vigil sim --load --json -` process of a bench: its share of the
/// connections and of the rate, started together with the others.
pub(super) struct LoadProcess<'a> {
    pub(super) mqtt: SocketAddr,
    pub(super) connections: usize,
    /// Readings per second over this process's connections.
    pub(super) rate: f64,
    pub(super) duration_s: u64,
    pub(super) drain_s: u64,
    pub(super) start_at_ms: u128,
    pub(super) ready_timeout_s: f64,
    /// New connections per second (`None`: the simulator's default).
    pub(super) connect_per_s: Option<f64>,
    pub(super) ack: &'a str,
    pub(super) run_id: String,
    pub(super) sources: Vec<String>,
    /// Vigil's HTTP API and admin token (the load imports its devices);
    /// `None` for another broker.
    pub(super) api: Option<&'a (String, String)>,
}

impl LoadProcess<'_> {
    pub(super) fn spawn(&self, exe: &Path) -> anyhow::Result<Child> {
        let mut cmd = Command::new(exe);
        cmd.args(["sim", "--load", "--json", "-"])
            .args(["--mqtt", &self.mqtt.to_string()])
            .args(["--connections", &self.connections.to_string()])
            .args(["--rate", &self.rate.to_string()])
            .args(["--duration-s", &self.duration_s.to_string()])
            .args(["--drain-s", &self.drain_s.to_string()])
            .args(["--start-at-ms", &self.start_at_ms.to_string()])
            .args(["--ready-timeout-s", &self.ready_timeout_s.to_string()])
            .args(["--ack", self.ack])
            .args(["--run-id", &self.run_id])
            .env_remove("VIGIL_ADMIN_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(per_s) = self.connect_per_s {
            cmd.args(["--connect-per-s", &per_s.to_string()]);
        }
        if !self.sources.is_empty() {
            cmd.args(["--sources", &self.sources.join(",")]);
        }
        match self.api {
            Some((url, token)) => {
                cmd.args(["--url", url]).env("VIGIL_ADMIN_TOKEN", token);
            }
            None => {
                cmd.arg("--no-registry").env_remove("VIGIL_ADMIN_TOKEN");
            }
        }
        cmd.spawn().context("cannot start a load process")
    }
}

/// Load process `p`'s share of the source addresses 127.0.0.1 …
/// 127.0.0.`sources`, dealt out in turn.
pub(super) fn sources_of(p: usize, processes: usize, sources: u8) -> Vec<String> {
    (1..=sources)
        .filter(|k| usize::from(*k - 1) % processes == p)
        .map(|k| format!("127.0.0.{k}"))
        .collect()
}

/// Waits until the broker's progress counter has not moved for 600 ms (at
/// most 30 s).
async fn settle(target: &Target) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut still) = ((target.progress)(), 0);
    while still < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = (target.progress)();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
}

/// How long after they are started the load processes start sending
/// together: every client connected and warmed up well before (the
/// processes start, connect 2000 clients/s, and import into Vigil first).
fn lead(args: &IngestArgs, target: &Target) -> Duration {
    let import = if target.api.is_some() { 1.0 } else { 0.0 };
    Duration::from_secs_f64(2.0 + args.connections as f64 / 2000.0 + import)
}

/// Waits for a load process and returns its report (`report` of its JSON).
async fn finish(child: Child) -> anyhow::Result<Value> {
    Ok(finish_doc(child).await?["report"].take())
}

/// Waits for a load process and returns its whole JSON (`report`, and
/// `process`: its own memory and file limit).
pub(super) async fn finish_doc(child: Child) -> anyhow::Result<Value> {
    child_json(child, "a load process").await
}

/// Waits for a child of the bench (`what`, for errors) and reads the JSON
/// it wrote on its stdout; its stderr goes with any error.
async fn child_json<T: serde::de::DeserializeOwned>(child: Child, what: &str) -> anyhow::Result<T> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{what} wrote no JSON report:\n{stderr}"))
}

/// 200 appends of 4 KiB, each followed by `sync_data`, in `dir`.
fn fsync_latency(dir: &Path) -> anyhow::Result<Percentiles> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5a_u8; 4096];
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Percentiles::of(times, 0))
}

/// Mosquitto on a free port (no persistence, no queue limits, no Nagle),
/// with one `mosquitto_sub` at QoS 1 whose lines a thread counts.
pub(super) struct Mosquitto {
    pub(super) addr: SocketAddr,
    broker: Child,
    sub: Child,
    relayed: Arc<AtomicU64>,
}

impl Mosquitto {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<Mosquitto> {
        let (broker, mut sub, port) = super::burst::start_relay(dir, "relay-sink").await?;
        let out = sub.stdout.take().context("no stdout")?;
        let relayed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&relayed);
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::with_capacity(1 << 16, out);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                counter.fetch_add(1, Ordering::Relaxed);
                line.clear();
            }
        });
        // The subscription must be in place before the first publish.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Mosquitto {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            broker,
            sub,
            relayed,
        })
    }

    /// The broker's process id (for its memory).
    pub(super) fn pid(&self) -> u32 {
        self.broker.id()
    }

    pub(super) fn stop(mut self) {
        for child in [&mut self.sub, &mut self.broker] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Half of Vigil's ceiling. With no step held there is no ceiling to
/// halve: half the first step then, said in the output (`load_per_s` shows
/// it in the JSON).
fn half_ceiling(args: &IngestArgs, vigil: &Ceiling) -> u32 {
    if vigil.ceiling_per_s > 0.0 {
        ((vigil.ceiling_per_s / 2.0).round() as u32).max(1)
    } else {
        eprintln!("Vigil held no step: alarm latency at half the first step's rate instead.");
        (args.start_rate / 2).max(1)
    }
}

/// With the load processes offering `load_rate` (half of Vigil's ceiling,
/// or `--latency-at`), one probe device at a time publishes an overspeed
/// sample; the time until its alarm is on the SSE feed and on the MQTT
/// alarm feed. The probes and both feed readers run in a process of their
/// own (`vigil bench probe`), as a device and a supervisor's screen would:
/// in this process they would wait for the engine's own tasks to be polled.
async fn alarm_latency(
    args: &IngestArgs,
    engine: &Engine,
    target: &Target,
    token: &str,
    load_rate: u32,
) -> anyhow::Result<AlarmLatency> {
    let fleet = Fleet::generate(&FleetConfig {
        devices: args.probes,
        seed: 13,
        fault_fraction: 0.0,
        id_tag: "PROBE".into(),
        ..FleetConfig::default()
    });
    let report = engine
        .state()
        .registry()
        .import(serde_json::from_value(fleet.import_doc())?)?;
    let mut probes: Vec<(String, String)> = report
        .devices
        .into_iter()
        .map(|d| (d.device_id.to_string(), d.secret))
        .collect();
    probes.sort();

    // Long enough for every probe (a few ms each, unless something is slow).
    let seconds = args.step_s.max(5) + (args.probes as u64).div_ceil(25);
    eprintln!(
        "Alarm latency: {} overspeed alarms under {load_rate} readings/s{} …",
        args.probes,
        if args.latency_at.is_some() {
            ""
        } else {
            " (½ of Vigil's ceiling)"
        }
    );
    // Probes start once the load is sending.
    let probes_at = SystemTime::now() + lead(args, target) + Duration::from_secs(1);
    let prober = ProbeProcess {
        mqtt: engine.mqtt_addr(),
        http: engine.http_addr(),
        token,
        start_at_ms: probes_at.duration_since(UNIX_EPOCH)?.as_millis(),
    }
    .spawn(&probes)?;
    let analysts = SqlLoad::start(args.sql_load, engine.http_addr(), token);
    let load = load_step(args, target, "topic", 99, load_rate, seconds);
    let timed = child_json::<ProbeTimes>(prober, "the probe process");
    let (load, timed) = tokio::join!(load, timed);
    let sql = analysts.stop().await;
    let (step, times) = (load?, timed?);
    let ProbeTimes {
        sse: sse_times,
        mqtt: mqtt_times,
        missed_sse,
        missed_mqtt,
        others_sse,
        others_mqtt,
    } = times;
    print_step(&step);
    anyhow::ensure!(
        !sse_times.is_empty() && !mqtt_times.is_empty(),
        "no probe alarm arrived on the {} feed",
        if sse_times.is_empty() { "SSE" } else { "MQTT" }
    );
    Ok(AlarmLatency {
        load_per_s: f64::from(load_rate),
        sse: Percentiles::of(sse_times, missed_sse),
        mqtt: Percentiles::of(mqtt_times, missed_mqtt),
        others_sse,
        others_mqtt,
        device_ack_ms_p50: step.ack_ms_p50,
        device_ack_ms_p99: step.ack_ms_p99,
        sql,
        background: step,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Sse,
    Mqtt,
}

/// What a feed reader hands the prober: which feed, when, and the device
/// of an overspeed alarm (`None`: any other alarm).
type Arrival = (Feed, Instant, Option<String>);
type Arrivals = mpsc::UnboundedReceiver<Arrival>;

/// `--sql-load`: analysts whose query keeps the SQL threads busy for its
/// whole timeout, asked again as soon as it ends.
struct SqlLoad {
    stop: tokio::sync::watch::Sender<bool>,
    analysts: Vec<tokio::task::JoinHandle<SqlLoadReport>>,
}

/// What the analysts of `--sql-load` did.
#[derive(Debug, Default, Serialize)]
struct SqlLoadReport {
    analysts: usize,
    /// Queries that ended (at their timeout, or earlier).
    queries: u64,
    /// Queries the engine answered with an error other than the timeout.
    failed: u64,
    first_error: Option<String>,
}

/// A cross join of 10¹⁰ rows, each computed (a `count(*)` of it would be
/// answered from the row counts): busy until the SQL timeout stops it.
const ANALYST_SQL: &str =
    "SELECT sum((a.value * b.value) % 7) FROM range(100000) a, range(100000) b";

impl SqlLoad {
    fn start(analysts: usize, http: SocketAddr, token: &str) -> SqlLoad {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let url = format!("http://{http}/api/v1/sql");
        let analysts = (0..analysts)
            .map(|_| {
                let (url, token, mut stopped) = (url.clone(), token.to_owned(), stopped.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut report = SqlLoadReport::default();
                    while !*stopped.borrow() {
                        let ask = client
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&serde_json::json!({ "sql": ANALYST_SQL }))
                            .send();
                        let answer = tokio::select! {
                            a = ask => a,
                            _ = stopped.wait_for(|s| *s) => break,
                        };
                        report.queries += 1;
                        let text = match answer {
                            Ok(r) => r.text().await.unwrap_or_else(|e| e.to_string()),
                            Err(e) => e.to_string(),
                        };
                        if !text.contains("sql_timeout") && !text.contains("\"rows\"") {
                            report.failed += 1;
                            report.first_error.get_or_insert(text);
                        }
                    }
                    report
                })
            })
            .collect();
        SqlLoad { stop, analysts }
    }

    async fn stop(self) -> Option<SqlLoadReport> {
        if self.analysts.is_empty() {
            return None;
        }
        let _ = self.stop.send(true);
        let mut all = SqlLoadReport {
            analysts: self.analysts.len(),
            ..SqlLoadReport::default()
        };
        for analyst in self.analysts {
            if let Ok(r) = analyst.await {
                all.queries += r.queries;
                all.failed += r.failed;
                all.first_error = all.first_error.or(r.first_error);
            }
        }
        Some(all)
    }
}

/// `vigil bench probe` (hidden; started by `vigil bench ingest`).
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The engine's MQTT listener.
    #[arg(long)]
    mqtt: SocketAddr,
    /// The engine's HTTP API (the SSE feed).
    #[arg(long)]
    http: SocketAddr,
    /// When the first probe publishes (Unix ms): once the load is sending.
    #[arg(long)]
    start_at_ms: u128,
}

/// What the probe process reports on its stdout: each probe's time to
/// either feed, and how many never arrived there.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeTimes {
    sse: Vec<Duration>,
    mqtt: Vec<Duration>,
    missed_sse: usize,
    missed_mqtt: usize,
    /// Other alarms the feeds carried while the probes were timed (each
    /// MQTT one once per region level): what the probes queued behind.
    #[serde(default)]
    others_sse: usize,
    #[serde(default)]
    others_mqtt: usize,
}

/// The probe process of one latency phase: it opens both feeds, waits for
/// `start_at_ms`, then times the probes it reads (id and secret pairs, as
/// JSON) from its stdin.
struct ProbeProcess<'a> {
    mqtt: SocketAddr,
    http: SocketAddr,
    token: &'a str,
    start_at_ms: u128,
}

impl ProbeProcess<'_> {
    fn spawn(&self, probes: &[(String, String)]) -> anyhow::Result<Child> {
        use std::io::Write;
        let exe = std::env::current_exe().context("cannot find the vigil executable")?;
        let mut child = Command::new(exe)
            .args(["bench", "probe"])
            .args(["--mqtt", &self.mqtt.to_string()])
            .args(["--http", &self.http.to_string()])
            .args(["--start-at-ms", &self.start_at_ms.to_string()])
            .env("VIGIL_ADMIN_TOKEN", self.token)
            .env_remove("VIGIL_ADMIN_TOKEN_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the probe process")?;
        let mut stdin = child
            .stdin
            .take()
            .context("the probe process has no stdin")?;
        stdin.write_all(&serde_json::to_vec(probes)?)?;
        Ok(child)
    }
}

/// The probe process: both feeds open and settled, then every probe in
/// turn from `start_at_ms`; the times on stdout as JSON.
pub(super) async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let token = std::env::var("VIGIL_ADMIN_TOKEN").context("VIGIL_ADMIN_TOKEN is not set")?;
    let probes: Vec<(String, String)> =
        serde_json::from_reader(std::io::stdin().lock()).context("stdin holds no probe list")?;
    let (tx, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
    let sse = tokio::spawn(follow_sse(
        format!("http://{}/api/v1/alarms/stream", args.http),
        token.clone(),
        tx.clone(),
    ));
    let mqtt = follow_mqtt(args.mqtt, &token, tx).await?;
    // The SSE feed answers with the open alarms first: let it settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while arrivals.try_recv().is_ok() {}
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let wait_ms = u64::try_from(args.start_at_ms.saturating_sub(now_ms)).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let times = time_probes(args.mqtt, &probes, &mut arrivals).await?;
    sse.abort();
    mqtt.abort();
    serde_json::to_writer(std::io::stdout().lock(), &times)?;
    Ok(())
}

/// Each probe in turn: connect, publish one overspeed sample, wait until
/// its alarm is on both feeds (or `PROBE_TIMEOUT`), disconnect.
async fn time_probes(
    mqtt: SocketAddr,
    probes: &[(String, String)],
    arrivals: &mut Arrivals,
) -> anyhow::Result<ProbeTimes> {
    let mut t = ProbeTimes::default();
    for (id, secret) in probes {
        let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
        opts.set_credentials(id, secret);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        let connected = tokio::time::timeout(PROBE_TIMEOUT, async {
            loop {
                if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
                    return anyhow::Ok(());
                }
            }
        })
        .await;
        if !matches!(connected, Ok(Ok(()))) {
            // Counted as missed on both feeds; the next probe goes on.
            tracing::warn!(device = %id, "A probe device could not connect.");
            t.missed_sse += 1;
            t.missed_mqtt += 1;
            continue;
        }
        let mut pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let sample = super::overspeed_sample().to_string();
        let sent = Instant::now();
        client
            .publish(
                format!("/tenants/{id}/v1/elevator"),
                QoS::AtLeastOnce,
                false,
                sample,
            )
            .await?;
        let (mut on_sse, mut on_mqtt) = (None, None);
        let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
        while on_sse.is_none() || on_mqtt.is_none() {
            match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                Ok(Some((which, at, Some(device)))) if device == *id => {
                    let slot = match which {
                        Feed::Sse => &mut on_sse,
                        Feed::Mqtt => &mut on_mqtt,
                    };
                    slot.get_or_insert(at.saturating_duration_since(sent));
                }
                Ok(Some((Feed::Sse, _, None))) => t.others_sse += 1,
                Ok(Some((Feed::Mqtt, _, None))) => t.others_mqtt += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        match on_sse {
            Some(d) => t.sse.push(d),
            None => t.missed_sse += 1,
        }
        match on_mqtt {
            Some(d) => t.mqtt.push(d),
            None => t.missed_mqtt += 1,
        }
        // Let the DISCONNECT go out, so the engine does not hold a
        // thousand half-dead probe sessions until their keep-alive runs out.
        let _ = client.disconnect().await;
        if tokio::time::timeout(Duration::from_secs(1), &mut pump)
            .await
            .is_err()
        {
            pump.abort();
        }
    }
    Ok(t)
}

/// Reads the SSE alarm feed, reporting each overspeed alarm's device and
/// when its event was read.
async fn follow_sse(url: String, token: String, tx: mpsc::UnboundedSender<Arrival>) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    let Ok(response) = response else {
        tracing::warn!("The bench could not open the SSE alarm feed.");
        return;
    };
    super::sse_data(response, |at, data| {
        let _ = tx.send((Feed::Sse, at, overspeed_device(data.as_bytes())));
    })
    .await;
}

/// Subscribes to every region's alarm topics with the admin token, as a
/// supervisor's feed reader would (docs/delivery.md), and reports each
/// overspeed alarm's device and when it arrived. Each alarm comes once per
/// region level (county, city, province); the first one counts.
async fn follow_mqtt(
    mqtt: SocketAddr,
    token: &str,
    tx: mpsc::UnboundedSender<Arrival>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client_id = format!("{}-bench", vigil_ingest::feed_client_prefix(token));
    let mut opts = MqttOptions::new(client_id, mqtt.ip().to_string(), mqtt.port());
    opts.set_credentials("token:bench", token);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .subscribe("/tenants/+/v1/alarms/#", QoS::AtLeastOnce)
        .await?;
    // An engine still working off the last step can take longer than the
    // client's connect timeout (5 s) to answer: poll again (the client
    // reconnects, the subscription still queued) until the whole wait is up.
    let subscribed = tokio::time::timeout(3 * PROBE_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(a))) => return a,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "The MQTT alarm feed is not connected yet.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
    .await
    .context("no SUBACK from the MQTT alarm feed")?;
    anyhow::ensure!(
        subscribed
            .return_codes
            .iter()
            .all(|c| matches!(c, rumqttc::mqttbytes::v4::SubscribeReasonCode::Success(_))),
        "the engine refused the alarm feed subscription"
    );
    Ok(tokio::spawn(async move {
        // Keeps the client (and so the session) alive while reading.
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let at = Instant::now();
                let _ = tx.send((Feed::Mqtt, at, overspeed_device(&p.payload)));
            }
        }
    }))
}

/// The device of an overspeed alarm's JSON, if that is what it is.
fn overspeed_device(json: &[u8]) -> Option<String> {
    let alarm: Value = serde_json::from_slice(json).ok()?;
    (alarm["rule"] == "elevator.overspeed")
        .then(|| alarm["device_id"].as_str().map(str::to_owned))
        .flatten()
}

fn print_report(r: &IngestReport) {
    println!(
        "\n### Ingest ceiling ({} connections in {} load processes from {} source addresses, {} s steps)\n",
        r.connections, r.processes, r.sources, r.step_s
    );
    println!(
        "| broker | ack | ceiling acked/s | at offered/s | broker CPU µs/msg there | load CPU µs/msg | machine busy | stopped by |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for (name, c) in [
        ("Mosquitto (relay to one subscriber)", &r.mosquitto),
        ("bare rumqttd (echo)", &r.rumqttd),
        ("Vigil (whole path, durable)", &r.vigil),
    ] {
        if let Some(c) = c {
            let cpu = c.cpu_at(c.ceiling_offered_per_s);
            let show = |f: fn(&StepCpu) -> f64, scale: f64| {
                cpu.map_or("–".to_owned(), |c| format!("{:.1}", scale * f(c)))
            };
            println!(
                "| {name} | {} | {:.0} | {:.0} | {} | {} | {}% | {} |",
                c.ack,
                c.ceiling_per_s,
                c.ceiling_offered_per_s,
                show(|c| c.broker_us_per_msg, 1.0),
                show(|c| c.load_us_per_msg, 1.0),
                show(|c| c.machine_busy, 100.0),
                c.limited_by
            );
        }
    }
    if let Some(d) = &r.vigil_disk_fsync {
        println!(
            "\nThe disk under Vigil's store: 4 KiB write + fsync p50 {:.2} ms, p99 {:.2} ms.",
            d.p50_ms, d.p99_ms
        );
    }
    let show = |r: Option<f64>| r.map_or("not measured".to_owned(), |r| format!("{r:.2}"));
    println!(
        "\nVigil ÷ Mosquitto = {}; Vigil ÷ bare rumqttd = {}",
        show(r.vigil_over_mosquitto),
        show(r.vigil_over_rumqttd)
    );
    if let Some(c) = &r.cpu_per_msg {
        println!(
            "Broker-side CPU per message at {:.0}/s (the highest rate both held): Vigil {:.1} µs, \
             Mosquitto {:.1} µs{}; Vigil ÷ Mosquitto = {:.2}",
            c.at_offered_per_s,
            c.vigil_us,
            c.mosquitto_us,
            c.rumqttd_us
                .map_or(String::new(), |u| format!(", bare rumqttd {u:.1} µs")),
            c.vigil_over_mosquitto
        );
    }
    let Some(a) = &r.alarm_latency else {
        return;
    };
    println!(
        "\n### Alarm latency under {:.0} readings/s{}, {} probes\n",
        a.load_per_s,
        if r.vigil.is_some() {
            " (½ of Vigil's ceiling)"
        } else {
            ""
        },
        a.sse.timed + a.sse.missed
    );
    println!("| | p50 ms | p99 ms | p99.9 ms | max ms | missed |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, p) in [
        ("publish → alarm on SSE", &a.sse),
        ("publish → alarm on MQTT feed", &a.mqtt),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms, p.missed
        );
    }
    println!(
        "| background devices' publish → ack | {:.2} | {:.2} | {:.2} | {:.2} | |",
        a.device_ack_ms_p50, a.device_ack_ms_p99, a.background.ack_ms_p999, a.background.ack_ms_max
    );
    println!(
        "\nOther alarms on the feeds meanwhile: {} on SSE, {} MQTT messages.",
        a.others_sse, a.others_mqtt
    );
    if let Some(sql) = &a.sql {
        println!(
            "\nBeside them, {} analysts kept the SQL threads busy: {} queries ended (answered or \
             timed out), {} with another error{}.",
            sql.analysts,
            sql.queries,
            sql.failed,
            sql.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
    }
}
