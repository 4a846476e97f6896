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
    if let cli::Command::Run(_) | cli::Command::Demo(_) | cli::Command::Bench(_) = cli.command {
        cap_malloc_arenas();
    }
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

/// glibc's malloc gives a thread that finds an arena busy an arena of its
/// own, up to 8 per core, and what one arena frees the others do not
/// reuse. An engine holding 10 000 device connections kept 26.7 KiB for
/// each with that default, 20.8 KiB with 2 arenas per core
/// (docs/benchmarks.md). glibc reads the cap (`MALLOC_ARENA_MAX`) as the
/// process starts, before `main`; setting it later takes `mallopt`, which
/// is unsafe and the workspace forbids. So the engine runs itself again
/// with the cap in its environment, unless the environment already sets
/// it (`MALLOC_ARENA_MAX`, or any `GLIBC_TUNABLES`). `exec` returns only
/// if it failed: the engine then runs on glibc's default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cap_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let error = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("MALLOC_ARENA_MAX", (2 * cores).to_string())
        .exec();
    eprintln!(
        "vigil: could not start again with MALLOC_ARENA_MAX set ({error}); running with glibc's default arenas."
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}
