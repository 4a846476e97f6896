//! `vigil-edge`: the gateway (`run`), its emulator (`emulate`) and map and
//! config checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;
use vigil_edge::config::GatewayConfig;
use vigil_edge::emulate::{self, EmulateConfig};
use vigil_edge::map::{BUILTIN, RegisterMap};

#[derive(Debug, Parser)]
#[command(
    name = "vigil-edge",
    version,
    about = "Vigil's edge gateway: polls a controller over Modbus, spools every sample to disk and publishes it over MQTT until the engine acknowledges it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The gateway's TOML config (see docs/edge.md).
        #[arg(long, env = "VIGIL_EDGE_CONFIG", default_value = "vigil-edge.toml")]
        config: PathBuf,
    },
    /// Serve simulated controllers over Modbus TCP through the shipped
    /// register maps, optionally importing them into a running engine and
    /// writing a gateway config for them.
    Emulate(Box<EmulateArgs>),
    /// Check register maps (files or shipped names) without connecting
    /// anywhere: prints what each maps, or file:line:column of a mistake.
    CheckMap { maps: Vec<String> },
    /// Check a gateway config (and the maps it names).
    CheckConfig { config: PathBuf },
    /// Print a shipped register map, to copy and edit.
    ShowMap {
        /// `elevator`, `ride` or `filling-scale`.
        name: String,
    },
}

#[derive(Debug, Args)]
struct EmulateArgs {
    #[arg(long, default_value_t = 1)]
    elevators: usize,
    #[arg(long, default_value_t = 1)]
    rides: usize,
    #[arg(long, default_value_t = 0)]
    ropeways: usize,
    /// Filling stations (one scale each).
    #[arg(long, default_value_t = 1)]
    stations: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the machines that develop a fault.
    #[arg(long, default_value_t = 0.0)]
    fault_fraction: f64,
    #[arg(long, default_value_t = 60.0)]
    first_fault_after_s: f64,
    /// The first controller's address; the next ones take the next ports.
    #[arg(long, default_value = "127.0.0.1:5020")]
    listen: SocketAddr,
    /// Import the fleet into the engine at this URL (its registry API).
    #[arg(long)]
    import: Option<String>,
    /// The engine's admin token, for --import.
    #[arg(long, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Write a gateway config for the emulated controllers here (with
    /// --import: with the devices' secrets).
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// The engine's MQTT address, for the gateway config.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The gateway's spool directory, for the gateway config.
    #[arg(long, default_value = "vigil-edge-spool")]
    spool_dir: String,
    /// Write the fleet's registry import document here.
    #[arg(long)]
    registry_out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttc=warn,tokio_modbus=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // One thread: the gateway's work is a few sockets and small files.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config } => {
            let cfg = GatewayConfig::load(&config)?;
            rt.block_on(async {
                let (stop, stopping) = watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = stop.send(true);
                });
                vigil_edge::gateway::run(cfg, stopping).await
            })?;
        }
        Command::Emulate(args) => rt.block_on(emulate(*args))?,
        Command::CheckMap { maps } => {
            anyhow::ensure!(!maps.is_empty(), "name at least one map");
            for m in maps {
                let map = RegisterMap::load(&m)?;
                println!(
                    "{m}: {} map {:?}, {} fields{}{}",
                    map.stream.as_str(),
                    map.name,
                    map.registers.len(),
                    map.faults.as_ref().map_or(String::new(), |f| format!(
                        ", {} fault code registers",
                        f.count
                    )),
                    if map.fault_bits.is_empty() {
                        String::new()
                    } else {
                        format!(", {} fault bits", map.fault_bits.len())
                    },
                );
            }
        }
        Command::CheckConfig { config } => {
            let cfg = GatewayConfig::load(&config)?;
            for d in &cfg.devices {
                println!(
                    "{}: {} via {} ({})",
                    d.id,
                    d.map.name,
                    d.controller,
                    d.map.stream.as_str()
                );
            }
        }
        Command::ShowMap { name } => {
            let text = BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
                .with_context(|| {
                    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    format!("no shipped map {name:?}; there are {}", names.join(", "))
                })?;
            print!("{text}");
        }
    }
    Ok(())
}

async fn emulate(args: EmulateArgs) -> anyhow::Result<()> {
    let cfg = EmulateConfig {
        fleet: vigil_simulator::FleetConfig {
            devices: args.elevators,
            rides: args.rides,
            ropeways: args.ropeways,
            stations: args.stations,
            cameras: 0,
            seed: args.seed,
            fault_fraction: args.fault_fraction,
            first_fault_after_s: args.first_fault_after_s,
            ..vigil_simulator::FleetConfig::default()
        },
        listen: args.listen,
        elevator_map: None,
        ride_map: None,
        scale_map: None,
    };
    let emulator = emulate::start(cfg).await?;
    if let Some(path) = &args.registry_out {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&emulator.fleet.import_doc())?,
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut secrets = BTreeMap::new();
    if let Some(url) = &args.import {
        let token = args
            .token
            .as_deref()
            .context("--import needs --token (or VIGIL_ADMIN_TOKEN)")?;
        secrets = emulate::import(&emulator.fleet, url, token).await?;
        let missing: Vec<&str> = emulator
            .served
            .iter()
            .map(|s| s.device_id.as_str())
            .filter(|d| !secrets.contains_key(*d))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "the engine already had {} (their secrets are shown only once): use another --seed or a fresh engine",
            missing.join(", ")
        );
        println!("Imported {} devices into {url}.", secrets.len());
    }
    if let Some(path) = &args.gateway_config {
        let text = emulate::gateway_config(&emulator.served, &secrets, &args.mqtt, &args.spool_dir);
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("Gateway config written to {}.", path.display());
    }
    for s in &emulator.served {
        println!(
            "{:<10} {:<9} tcp://{}  map {}",
            s.device_id,
            s.kind.as_str(),
            s.addr,
            s.map
        );
    }
    println!("Emulating; Ctrl-C stops.");
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    emulator.run_until(stopping).await;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
