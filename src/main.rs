//! `vigil`: the engine binary. The command line (`cli`, `client`), config
//! loading (`config`), the demo and the bench; and, until it moves into a
//! `server/` crate, the runtime that wires the crates (docs/architecture.md):
//!
//! - `engine`: `Engine::start` in named steps, the shard and hub tasks,
//!   ordered shutdown; `state`: what the API and the tasks share.
//! - `api`: the HTTP router; `sql`: people's SQL and its rendering;
//!   `replay`: rules over stored readings; `fleet`, `risk`: fleet pages and
//!   risk grading; `console`: the browser console.
//! - `alarms`: the open-alarm board and live feed; `delivery`, `webhooks`:
//!   MQTT alarm topics and webhooks.
//! - `schedule`, `filling`: registry-time checks and a filling record's
//!   registry facts; `registry_tables`: the registry's SQL tables kept fresh.
//! - `metrics`, `data_dir`: Prometheus metrics, the data directory.

mod alarms;
mod api;
mod bench;
mod certs;
mod cli;
mod client;
mod config;
mod console;
mod data_dir;
mod delivery;
mod demo;
mod engine;
mod filling;
mod fleet;
#[cfg(test)]
mod fuzz_sql;
mod metrics;
mod registry_tables;
mod replay;
mod risk;
mod schedule;
mod sim;
mod sql;
mod state;
mod webhooks;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    // Everything the engine writes (registry, WAL, Parquet) is for its own
    // user only: files 0600, folders 0700 (see data_dir.rs).
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    // rumqttd logs every ordinary client disconnect as an ERROR; ingest logs
    // connects, refusals and listener failures itself, so rumqttd stays
    // quiet unless RUST_LOG asks for it (e.g. `RUST_LOG=info,rumqttd=info`).
    let default_filter = match cli.command {
        // The demo and the bench print what matters themselves.
        cli::Command::Demo(_) | cli::Command::Bench(_) | cli::Command::Sim(_) => "warn,rumqttd=off",
        _ => "info,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vigil")
        .build()?;
    runtime.block_on(cli::dispatch(cli))
}
