//! `vigil`: the engine binary. Wires the crates (see `engine`) and owns the
//! command line; everything else lives in the workspace crates.

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
mod sql;
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
        cli::Command::Demo(_) | cli::Command::Bench(_) => "warn,rumqttd=off",
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
