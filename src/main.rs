//! `vigil`: the engine binary. The command line (`cli`) turns flags, the
//! config file and the environment into a `vigil_server::ServerConfig`
//! (`config`) and runs the engine from the `vigil-server` crate; `client`
//! talks to a running engine over HTTP; `demo`, `sim` and `bench` start an
//! engine with simulated devices and print what they see or measure.

mod bench;
mod cli;
mod client;
mod config;
mod demo;
mod sim;

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
