//! `vigil demo`: the engine on the embedded store with a simulated fleet
//! (elevators, rides and ropeways, camera boxes, filling stations)
//! connected over real MQTT, printing alarms as they change and a short
//! summary every few seconds.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::Rng;
use tokio::sync::watch;
use vigil_model::{Alarm, AlarmState, DeviceId, EpochMs, Severity};
use vigil_simulator::{Fleet, FleetConfig, MachineKind, SimStats};

use vigil_server::AppState;
use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Simulated elevators.
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Simulated large amusement rides.
    #[arg(long, default_value_t = 6)]
    pub rides: usize,
    /// Simulated passenger ropeways.
    #[arg(long, default_value_t = 2)]
    pub ropeways: usize,
    /// Simulated video-analytics boxes (in elevator cars and at ride platforms).
    #[arg(long, default_value_t = 20)]
    pub cameras: usize,
    /// Simulated gas-cylinder filling stations (one scale each).
    #[arg(long, default_value_t = 4)]
    pub stations: usize,
    /// Share of elevators that develop a fault during the run.
    #[arg(long, default_value_t = 0.15)]
    pub fault_fraction: f64,
    /// Seconds before the first fault.
    #[arg(long, default_value_t = 5.0)]
    pub first_fault_after_s: f64,
    /// Fleet generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the data here [default: a new temporary directory].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = vigil_ingest::DEFAULT_MQTT_ADDR)]
    pub mqtt_addr: SocketAddr,
    #[arg(long, default_value = vigil_server::DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Stop by itself after this many seconds (otherwise Ctrl-C).
    #[arg(long)]
    pub duration_s: Option<u64>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => tempfile::Builder::new()
            .prefix("vigil-demo-")
            .tempdir()
            .context("cannot make a temporary directory")?
            .keep(),
    };
    let token: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        mqtt_addr: args.mqtt_addr,
        http_addr: args.http_addr,
        admin_token: Some(token.clone()),
        ..ServerConfig::default()
    };
    let engine = Engine::start(config, system_clock()).await?;

    let fleet = Fleet::generate(&FleetConfig {
        devices: args.devices,
        seed: args.seed,
        fault_fraction: args.fault_fraction,
        first_fault_after_s: args.first_fault_after_s,
        rides: args.rides,
        ropeways: args.ropeways,
        cameras: args.cameras,
        stations: args.stations,
        ..FleetConfig::default()
    });
    let secrets = fleet_secrets(engine.state(), &fleet, &data_dir)?;
    let kinds = FleetKinds::of(&fleet);

    println!(
        "Vigil demo: {} elevators, {} rides, {} ropeways, {} camera boxes and {} filling stations on the embedded store",
        args.devices, args.rides, args.ropeways, args.cameras, args.stations
    );
    println!(
        "  MQTT  {}   HTTP  http://{}   data  {}",
        engine.mqtt_addr(),
        engine.http_addr(),
        data_dir.display()
    );
    println!(
        "  live feed:  curl -N -H 'Authorization: Bearer {token}' http://{}/api/v1/alarms/stream",
        engine.http_addr()
    );
    println!(
        "  SQL:        VIGIL_ADMIN_TOKEN={token} vigil sql --url http://{} \"SELECT rule, count(*) FROM alarms GROUP BY rule\"",
        engine.http_addr()
    );
    println!("  Ctrl-C stops the demo cleanly.\n");

    let stats = Arc::new(SimStats::default());
    let (stop_sim, sim_stopping) = watch::channel(false);
    let sim = tokio::spawn(vigil_simulator::run(
        fleet,
        engine.mqtt_addr(),
        secrets,
        Arc::clone(&stats),
        sim_stopping,
    ));
    let printer = tokio::spawn(print_alarms(Arc::clone(engine.state())));
    let summary = tokio::spawn(print_summaries(Arc::clone(engine.state()), kinds));

    let deadline = async {
        match args.duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = crate::cli::wait_for_stop_signal() => r?,
        _ = deadline => {}
    }
    println!("\nStopping: simulator first, then the engine flushes everything to disk …");
    let _ = stop_sim.send(true);
    match tokio::time::timeout(Duration::from_secs(10), sim).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Simulator stopped with an error."),
        Err(_) => tracing::warn!("Simulator did not stop in 10 s."),
        _ => {}
    }
    summary.abort();
    let state = Arc::clone(engine.state());
    engine.shutdown().await?;
    printer.abort();
    let ingest = state.ingest_stats();
    println!(
        "Stopped. {} readings accepted, {} rejected, {} alarms still open. Data kept in {}",
        ingest.accepted,
        ingest.rejected_total(),
        state.open_count(),
        data_dir.display()
    );
    Ok(())
}

/// Imports the fleet (new devices get secrets) or, when the data dir has a
/// fleet already, reuses the secrets saved with it.
fn fleet_secrets(
    state: &AppState,
    fleet: &Fleet,
    data_dir: &std::path::Path,
) -> anyhow::Result<HashMap<String, String>> {
    let path = data_dir.join("demo-secrets.json");
    let mut secrets: HashMap<String, String> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a secrets file", path.display()))?,
        Err(_) => HashMap::new(),
    };
    let doc = serde_json::from_value(fleet.import_doc())
        .context("the simulator's registry document does not parse")?;
    let report = state
        .registry()
        .import(doc)
        .context("the simulated fleet was refused by the registry")?;
    for new in report.devices {
        secrets.insert(new.device_id.to_string(), new.secret);
    }
    let missing = fleet
        .device_ids()
        .into_iter()
        .filter(|d| !secrets.contains_key(d))
        .count();
    anyhow::ensure!(
        missing == 0,
        "{missing} simulated devices have no known secret; use a fresh --data-dir"
    );
    std::fs::write(&path, serde_json::to_vec_pretty(&secrets)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secrets)
}

fn paint(text: &str, severity: Severity, state: AlarmState) -> String {
    if !std::io::stdout().is_terminal() {
        return text.to_owned();
    }
    let colour = match (state, severity) {
        (AlarmState::Cleared, _) => "32",
        (_, Severity::Critical) => "1;31",
        (_, Severity::Major) => "31",
        (_, Severity::Minor) => "33",
        (_, Severity::Warning) => "36",
    };
    format!("\x1b[{colour}m{text}\x1b[0m")
}

pub(crate) fn describe(alarm: &Alarm) -> String {
    let what = match alarm.state {
        AlarmState::Active if alarm.version == 1 => "RAISED".to_owned(),
        AlarmState::Active => format!("REPEAT x{}", alarm.count),
        AlarmState::Acknowledged => "ACKED".to_owned(),
        AlarmState::Cleared => "CLEARED".to_owned(),
    };
    let time = chrono::DateTime::from_timestamp_millis(alarm.updated_at)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let device = alarm
        .device_id
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    format!(
        "{time}  {what:<9} {:<8}  {:<31} {} ({device})  r{}  owner {}  {}",
        alarm.severity.as_str(),
        alarm.rule.as_str(),
        alarm.equipment_id,
        alarm.region,
        alarm.owner_id,
        alarm.details
    )
}

async fn print_alarms(state: Arc<AppState>) {
    let mut feed = state.alarm_feed();
    loop {
        match feed.recv().await {
            Ok(alarm) => println!("{}", paint(&describe(&alarm), alarm.severity, alarm.state)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                println!("({n} alarm changes not shown: the terminal is too slow)")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The fleet's device ids by kind, with the silence after which each kind
/// counts as offline (3 report intervals, as `device.offline` has it).
struct FleetKinds(Vec<(&'static str, Vec<DeviceId>, EpochMs)>);

impl FleetKinds {
    fn of(fleet: &Fleet) -> FleetKinds {
        let ids = |kind| {
            fleet
                .device_ids_of(kind)
                .into_iter()
                .filter_map(|id| DeviceId::new(&id).ok())
                .collect::<Vec<_>>()
        };
        FleetKinds(vec![
            ("elevators", ids(MachineKind::Elevator), 90_000),
            ("rides", ids(MachineKind::Ride), 90_000),
            ("camera boxes", ids(MachineKind::Camera), 3 * 3_600_000),
            ("scales", ids(MachineKind::Scale), 1_800_000),
        ])
    }

    /// `online 40/40 elevators, 8/8 rides, …` for the kinds the fleet has.
    fn online(&self, state: &AppState) -> String {
        let now = state.now();
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(_, ids, _)| !ids.is_empty())
            .map(|(name, ids, silent_ms)| {
                let online = ids
                    .iter()
                    .filter(|id| state.last_heard(id).is_some_and(|t| t >= now - silent_ms))
                    .count();
                format!("{online}/{} {name}", ids.len())
            })
            .collect();
        format!("online {}", parts.join(", "))
    }
}

async fn print_summaries(state: Arc<AppState>, kinds: FleetKinds) {
    let every = Duration::from_secs(5);
    let mut last = (Instant::now(), state.ingest_stats().accepted);
    loop {
        tokio::time::sleep(every).await;
        let stats = state.ingest_stats();
        let elapsed = last.0.elapsed().as_secs_f64().max(0.001);
        let rate = (stats.accepted - last.1) as f64 / elapsed;
        last = (Instant::now(), stats.accepted);
        let online = kinds.online(&state);
        let connected = state.mqtt_devices();
        let open = state.open_alarms();
        let critical = open
            .iter()
            .filter(|a| a.severity == Severity::Critical)
            .count();
        println!(
            "-- {online} ({connected} connected) | {rate:.0} readings/s | open alarms {} ({critical} critical) | stored {} | rejected {} | duplicates {}",
            open.len(),
            stats.accepted,
            stats.rejected_total(),
            stats.duplicates,
        );
    }
}
