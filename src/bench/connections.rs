//! `vigil bench connections`: how many device connections one engine holds,
//! each with its keep-alive and a reading every 30 s, and the memory they
//! take, against Mosquitto holding the same connections in the same run.
//!
//! ```text
//!  vigil sim --load (× processes, 127.0.0.x sources, 2000 connects/s each)
//!      ─▶ Mosquitto (child process; its RSS)        ack: PUBACK
//!      ─▶ Vigil (this process, embedded store; RSS)  ack: {"seq":N}, durable
//! ```
//!
//! Every connection is a file descriptor in the broker and in a load
//! process, so the open-file limit decides where one process stops. The
//! bench raises its own limit as far as it may (to the hard limit; past it
//! only with `CAP_SYS_RESOURCE`), holds as many connections as that allows,
//! and says in the report what capped it.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::Serialize;
use serde_json::Value;

use super::ingest::{LoadProcess, sources_of};
use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

/// Files a broker process keeps besides its connections (store, logs,
/// listeners, the runtime's own).
const BROKER_FD_MARGIN: u64 = 400;
/// Files a load process keeps besides its connections (`vigil sim` asks
/// for 64 spare; a little more for its HTTP import).
const LOAD_FD_MARGIN: u64 = 128;

#[derive(Debug, Args)]
pub(crate) struct ConnectionsArgs {
    /// Device connections to hold, over all load processes.
    #[arg(long, default_value_t = 50_000)]
    pub connections: usize,
    /// Seconds between two readings of a device.
    #[arg(long, default_value_t = 30.0)]
    pub interval_s: f64,
    /// Seconds of holding (and sending) once every connection is up.
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Loopback source addresses 127.0.0.1 … 127.0.0.N, dealt out to the
    /// load processes in turn (a source address has ~28 000 ports).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// New connections per second, per load process.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_per_s: f64,
    /// The brokers to measure; the ratios need both.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mosquitto,vigil"
    )]
    pub brokers: Vec<Broker>,
    /// Small and short: 200 connections, a reading every 2 s, 5 s (a
    /// smoke run that every figure is produced).
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
    Vigil,
}

impl ConnectionsArgs {
    fn effective(mut self) -> ConnectionsArgs {
        if self.quick {
            self.connections = 200;
            self.interval_s = 2.0;
            self.duration_s = 5;
            self.sources = 2;
        }
        self
    }
}

/// What the open-file limit allows, after raising it as far as possible.
#[derive(Debug, Serialize)]
struct FileLimit {
    /// The limit this process (and its children) now have.
    soft: u64,
    hard: u64,
    /// `/proc/sys/fs/nr_open`: what a privileged process could raise it to.
    nr_open: Option<u64>,
    /// Why the limit could not be raised to what the connections need.
    raise_failed: Option<String>,
}

/// One broker holding the connections.
#[derive(Debug, Serialize)]
struct Held {
    asked: usize,
    /// Clients connected, with their warm-up reading acked, when sending
    /// started / still connected when it ended.
    connected: u64,
    held: u64,
    /// Seconds from the first connection to all ready (the slowest process).
    ready_after_s: f64,
    sent: u64,
    acked: u64,
    ack_ms_p50: f64,
    ack_ms_p99: f64,
    ack_ms_p999: f64,
    ack_ms_max: f64,
    errors: u64,
    error_kinds: Value,
    /// The broker's resident memory before the load connected and the
    /// most seen while it held them (sampled every 250 ms).
    rss_idle_mib: f64,
    rss_held_mib: f64,
    /// (held − idle) ÷ held connections.
    kib_per_connection: f64,
    /// The same for anonymous memory only (`RssAnon`: heap and stacks),
    /// without the executable's pages, which differ from build to build
    /// by megabytes and are not per connection.
    anon_idle_mib: f64,
    anon_held_mib: f64,
    anon_kib_per_connection: f64,
    /// The load processes' own peak memory, added up.
    load_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct ConnectionsReport {
    machine: Value,
    quick: bool,
    asked: usize,
    /// What was tried: `asked`, or less where the open-file limit stops a
    /// process first.
    tried: usize,
    /// Why `tried` is below `asked`, if it is.
    capped_by: Option<String>,
    files: FileLimit,
    load_processes: usize,
    interval_s: f64,
    duration_s: u64,
    mosquitto: Option<Held>,
    vigil: Option<Held>,
    /// Vigil's held connections ÷ Mosquitto's.
    vigil_held_over_mosquitto: Option<f64>,
    /// Vigil's memory per connection ÷ Mosquitto's.
    vigil_memory_over_mosquitto: Option<f64>,
    /// The same for anonymous memory.
    vigil_anon_memory_over_mosquitto: Option<f64>,
}

pub(super) async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    let args = args.effective();
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    anyhow::ensure!(
        args.interval_s.is_finite() && args.interval_s > 0.0,
        "--interval-s must be a positive number of seconds"
    );
    anyhow::ensure!(args.sources > 0, "--sources must be at least 1");
    anyhow::ensure!(
        args.connect_per_s.is_finite() && args.connect_per_s > 0.0,
        "--connect-per-s must be positive"
    );
    let files = raise_file_limit(args.connections as u64 + BROKER_FD_MARGIN);
    let broker_room = files.soft.saturating_sub(BROKER_FD_MARGIN) as usize;
    let tried = args.connections.min(broker_room);
    anyhow::ensure!(
        tried > 0,
        "the open-file limit ({}) leaves no room for connections",
        files.soft
    );
    let capped_by = (tried < args.connections).then(|| {
        format!(
            "the open-file limit: {} per process (hard limit {}{}), and every connection is a \
             file in the broker",
            files.soft,
            files.hard,
            files
                .raise_failed
                .as_ref()
                .map_or(String::new(), |e| format!("; raising it failed: {e}")),
        )
    });
    let per_load = files.soft.saturating_sub(LOAD_FD_MARGIN).max(1) as usize;
    let processes = tried.div_ceil(per_load).max(1);
    if let Some(why) = &capped_by {
        eprintln!(
            "Holding {tried} of {} connections: {why}.",
            args.connections
        );
    }
    eprintln!(
        "{tried} connections from {processes} load process(es), a reading every {} s each, \
         held for {} s …",
        args.interval_s, args.duration_s
    );
    let work = tempfile::Builder::new()
        .prefix("vigil-bench-connections-")
        .tempdir()?;
    let plan = Plan {
        args: &args,
        tried,
        processes,
    };

    let mut mosquitto = None;
    if args.brokers.contains(&Broker::Mosquitto) {
        eprintln!("Mosquitto ({}) …", super::burst::mosquitto_binary());
        let relay = super::ingest::Mosquitto::start(work.path()).await?;
        let pid = relay.pid();
        let held = hold(&plan, relay.addr, None, "puback", "MC", || mem_mib(pid)).await;
        relay.stop();
        mosquitto = Some(held?);
    }

    let mut vigil = None;
    if args.brokers.contains(&Broker::Vigil) {
        eprintln!("Vigil: the whole engine on the embedded store …");
        let token = "bench-connections-admin-token".to_owned();
        let mut config = ServerConfig {
            data_dir: work.path().join("vigil"),
            mqtt_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            admin_token: Some(token.clone()),
            ..ServerConfig::default()
        };
        config.ingest.max_connections = tried + 64;
        let engine = Engine::start(config, system_clock()).await?;
        let api = (format!("http://{}", engine.http_addr()), token);
        let pid = std::process::id();
        let held = hold(&plan, engine.mqtt_addr(), Some(&api), "topic", "VC", || {
            mem_mib(pid)
        })
        .await;
        engine.shutdown().await?;
        vigil = Some(held?);
    }

    let report = ConnectionsReport {
        machine: super::machine(),
        quick: args.quick,
        asked: args.connections,
        tried,
        capped_by,
        files,
        load_processes: processes,
        interval_s: args.interval_s,
        duration_s: args.duration_s,
        vigil_held_over_mosquitto: match (&vigil, &mosquitto) {
            (Some(v), Some(m)) if m.held > 0 => Some(v.held as f64 / m.held as f64),
            _ => None,
        },
        vigil_memory_over_mosquitto: match (&vigil, &mosquitto) {
            (Some(v), Some(m)) if m.kib_per_connection > 0.0 => {
                Some(v.kib_per_connection / m.kib_per_connection)
            }
            _ => None,
        },
        vigil_anon_memory_over_mosquitto: match (&vigil, &mosquitto) {
            (Some(v), Some(m)) if m.anon_kib_per_connection > 0.0 => {
                Some(v.anon_kib_per_connection / m.anon_kib_per_connection)
            }
            _ => None,
        },
        mosquitto,
        vigil,
    };
    print_report(&report);
    super::write_json(args.json.as_deref(), &report)
}

struct Plan<'a> {
    args: &'a ConnectionsArgs,
    tried: usize,
    processes: usize,
}

/// Raises this process's open-file limit to `want` if it may, else as far as
/// the hard limit; the load processes and Mosquitto inherit it.
fn raise_file_limit(want: u64) -> FileLimit {
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        now.current.unwrap_or(u64::MAX),
        now.maximum.unwrap_or(u64::MAX),
    );
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let set = |current: u64, maximum: Option<u64>| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum,
            },
        )
        .map_err(|e| format!("setrlimit(NOFILE, {current}): {e}"))
    };
    // Past the hard limit only with `CAP_SYS_RESOURCE`; else up to it.
    let mut raise_failed = None;
    if hard < want {
        match set(want, Some(want)) {
            Ok(()) => {
                return FileLimit {
                    soft: want,
                    hard: want,
                    nr_open,
                    raise_failed,
                };
            }
            Err(e) => raise_failed = Some(e),
        }
    }
    let target = hard.min(want).max(soft);
    let soft = if target == soft {
        soft
    } else {
        match set(target, now.maximum) {
            Ok(()) => target,
            Err(e) => {
                raise_failed.get_or_insert(e);
                soft
            }
        }
    };
    FileLimit {
        soft,
        hard,
        nr_open,
        raise_failed,
    }
}

/// A process's resident memory, in MiB.
#[derive(Clone, Copy)]
struct Mem {
    /// `VmRSS`: everything resident, the executable's pages included.
    rss: f64,
    /// `RssAnon`: heap and stacks.
    anon: f64,
}

fn mem_mib(pid: u32) -> Mem {
    let pid = pid.to_string();
    let mib = |key| super::proc_status_kib(&pid, key).map_or(f64::NAN, |kib| kib as f64 / 1024.0);
    Mem {
        rss: mib("VmRSS:"),
        anon: mib("RssAnon:"),
    }
}

/// Connects `plan.tried` devices to the broker at `mqtt` from the load
/// processes, holds them for `--duration-s` with a reading every
/// `--interval-s`, and samples the broker's memory meanwhile.
async fn hold(
    plan: &Plan<'_>,
    mqtt: std::net::SocketAddr,
    api: Option<&(String, String)>,
    ack: &str,
    run_id: &str,
    mem: impl Fn() -> Mem,
) -> anyhow::Result<Held> {
    let args = plan.args;
    let exe = std::env::current_exe().context("cannot find the vigil executable")?;
    let idle = mem();
    let per_process = plan.tried / plan.processes;
    // Everyone connected (and, for Vigil, imported) before sending starts:
    // the processes connect at `--connect-per-s` each, in parallel.
    let import_s = if api.is_some() {
        2.0 + per_process as f64 / 4000.0
    } else {
        0.0
    };
    let lead = Duration::from_secs_f64(3.0 + import_s + per_process as f64 / args.connect_per_s);
    let start_at = (SystemTime::now() + lead)
        .duration_since(UNIX_EPOCH)?
        .as_millis();
    let mut children = Vec::new();
    for p in 0..plan.processes {
        let connections = if p + 1 == plan.processes {
            plan.tried - per_process * (plan.processes - 1)
        } else {
            per_process
        };
        let process = LoadProcess {
            mqtt,
            connections,
            rate: connections as f64 / args.interval_s,
            duration_s: args.duration_s,
            drain_s: 5,
            start_at_ms: start_at,
            ready_timeout_s: lead.as_secs_f64() + 60.0,
            connect_per_s: Some(args.connect_per_s),
            ack,
            run_id: format!("{run_id}{p}"),
            sources: sources_of(p, plan.processes, args.sources),
            api,
        };
        children.push(process.spawn(&exe)?);
    }
    // The broker's memory while the load runs: the most seen.
    let started = Instant::now();
    let waiting = async {
        let mut reports = Vec::new();
        for child in children {
            reports.push(super::ingest::finish_doc(child).await?);
        }
        anyhow::Ok(reports)
    };
    tokio::pin!(waiting);
    let mut most = idle;
    let reports = loop {
        tokio::select! {
            done = &mut waiting => break done?,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let now = mem();
                most.rss = most.rss.max(now.rss);
                most.anon = most.anon.max(now.anon);
            }
        }
    };
    eprintln!("  load done after {:.0} s", started.elapsed().as_secs_f64());
    let sum = |k: &str| {
        reports
            .iter()
            .filter_map(|r| r["report"][k].as_u64())
            .sum::<u64>()
    };
    let worst = |k: &str| {
        reports
            .iter()
            .filter_map(|r| r["report"][k].as_f64())
            .fold(0.0, f64::max)
    };
    let mut error_kinds = serde_json::Map::new();
    for r in &reports {
        if let Some(e) = r["report"]["errors"].as_object() {
            for (kind, n) in e {
                let add = n.as_u64().unwrap_or(0);
                let entry = error_kinds.entry(kind.clone()).or_insert(Value::from(0));
                *entry = Value::from(entry.as_u64().unwrap_or(0) + add);
            }
        }
    }
    let errors = error_kinds.values().filter_map(Value::as_u64).sum();
    let held = sum("held");
    let load_rss_mib = reports
        .iter()
        .filter_map(|r| r["process"]["rss_peak_mib"].as_f64())
        .sum();
    let h = Held {
        asked: plan.tried,
        connected: sum("connected"),
        held,
        ready_after_s: worst("connect_s"),
        sent: sum("sent"),
        acked: sum("acked"),
        ack_ms_p50: worst("ack_latency_ms_p50"),
        ack_ms_p99: worst("ack_latency_ms_p99"),
        ack_ms_p999: worst("ack_latency_ms_p999"),
        ack_ms_max: worst("ack_latency_ms_max"),
        errors,
        error_kinds: Value::Object(error_kinds),
        rss_idle_mib: idle.rss,
        rss_held_mib: most.rss,
        kib_per_connection: per_connection(idle.rss, most.rss, held),
        anon_idle_mib: idle.anon,
        anon_held_mib: most.anon,
        anon_kib_per_connection: per_connection(idle.anon, most.anon, held),
        load_rss_mib,
    };
    eprintln!(
        "  held {} / {} (ready after {:.1} s), sent {} acked {}, ack p50 {:.1} ms p99 {:.1} ms, \
         errors {}, RSS {:.0} → {:.0} MiB ({:.1} KiB per connection; anonymous {:.0} → {:.0} MiB, \
         {:.1} KiB)",
        h.held,
        h.asked,
        h.ready_after_s,
        h.sent,
        h.acked,
        h.ack_ms_p50,
        h.ack_ms_p99,
        h.errors,
        h.rss_idle_mib,
        h.rss_held_mib,
        h.kib_per_connection,
        h.anon_idle_mib,
        h.anon_held_mib,
        h.anon_kib_per_connection
    );
    Ok(h)
}

/// (held − idle) ÷ connections, in KiB.
fn per_connection(idle_mib: f64, held_mib: f64, held: u64) -> f64 {
    if held > 0 {
        (held_mib - idle_mib) * 1024.0 / held as f64
    } else {
        f64::NAN
    }
}

fn print_report(r: &ConnectionsReport) {
    println!(
        "Connections: asked {}, tried {}{}",
        r.asked,
        r.tried,
        r.capped_by
            .as_ref()
            .map_or(String::new(), |c| format!(" (capped by {c})"))
    );
    println!(
        "{:<10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>14} {:>7} {:>10} {:>10} {:>9} {:>14}",
        "broker",
        "asked",
        "held",
        "ready s",
        "sent",
        "acked",
        "ack p50/p99 ms",
        "errors",
        "RSS idle",
        "RSS held",
        "KiB/conn",
        "anon KiB/conn"
    );
    for (name, h) in [("Mosquitto", &r.mosquitto), ("Vigil", &r.vigil)] {
        if let Some(h) = h {
            println!(
                "{:<10} {:>8} {:>8} {:>9.1} {:>9} {:>9} {:>14} {:>7} {:>10.0} {:>10.0} {:>9.1} {:>14.1}",
                name,
                h.asked,
                h.held,
                h.ready_after_s,
                h.sent,
                h.acked,
                format!("{:.1}/{:.1}", h.ack_ms_p50, h.ack_ms_p99),
                h.errors,
                h.rss_idle_mib,
                h.rss_held_mib,
                h.kib_per_connection,
                h.anon_kib_per_connection
            );
        }
    }
    if let Some(x) = r.vigil_held_over_mosquitto {
        println!("Vigil ÷ Mosquitto, connections held: {x:.2}");
    }
    if let Some(x) = r.vigil_memory_over_mosquitto {
        println!("Vigil ÷ Mosquitto, memory per connection: {x:.1}");
    }
    if let Some(x) = r.vigil_anon_memory_over_mosquitto {
        println!("Vigil ÷ Mosquitto, anonymous memory per connection: {x:.1}");
    }
}
