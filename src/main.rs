//! `vigil`: the engine binary. Wires the crates (see `engine`) and owns the
//! command line; everything else lives in the workspace crates.

mod alarms;
mod api;
mod cli;
mod client;
mod config;
mod demo;
mod engine;
mod metrics;
mod registry_tables;
mod sql;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let default_filter = match cli.command {
        // The demo prints alarms itself; keep the log to warnings.
        cli::Command::Demo(_) => "warn",
        _ => "info",
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
