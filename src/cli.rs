//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing::info;

use crate::config::Overrides;
use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "Watches special equipment: MQTT telemetry in, alarms out, every reading queryable by SQL."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the engine for real devices.
    Run(RunArgs),
    /// Run the engine with a simulated elevator fleet and print alarms live.
    Demo(crate::demo::DemoArgs),
    /// Work with the registry of a running engine.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Certificates of devices for the mutual-TLS listener.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Certificates of supervisors for the MQTT alarm feed.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Run a read-only SQL query on a running engine.
    Sql(SqlArgs),
    /// Apply the PostgreSQL schema migrations (and roles, grants, policies)
    /// of the configured `postgres://` store, then exit.
    Migrate(RunArgs),
    /// The rule catalogue, rule files, reload and replay.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Issue, list and revoke API tokens on a running engine.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure readings/s through the whole path and alarm latency to SSE,
    /// against a bare MQTT broker in the same run (see docs/benchmarks.md).
    Bench(crate::bench::BenchArgs),
    /// Simulate against a running engine: scenario files that inject faults
    /// (`--check`: hold the engine to the alarms they expect), or `--load`.
    Sim(crate::sim::SimArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// TOML config file (see config/vigil.example.toml).
    #[arg(long, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the registry, write-ahead log and Parquet files live [default: vigil-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Plain MQTT listener for devices [default: 127.0.0.1:1883].
    #[arg(long)]
    pub mqtt_addr: Option<SocketAddr>,
    /// Mutual-TLS MQTT listener (also VIGIL_MQTTS_ADDR); a host alone
    /// listens on port 8883 [default: off].
    #[arg(long, value_parser = vigil_server::parse_listen_addr)]
    pub mqtts_addr: Option<SocketAddr>,
    /// HTTP API [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Bearer token of the admin role. Visible to every user in `ps`:
    /// prefer --admin-token-file or VIGIL_ADMIN_TOKEN.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// A file whose first line is the admin token (also VIGIL_ADMIN_TOKEN_FILE).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// `embedded` or a `postgres://…` URL (also VIGIL_STORE) [default: embedded].
    #[arg(long)]
    pub store: Option<String>,
    /// A rule file laid over the config's `[rules]` (also VIGIL_RULES_FILE);
    /// SIGHUP or `vigil rules reload` re-reads it (docs/rules.md).
    #[arg(long)]
    pub rules_file: Option<PathBuf>,
}

/// Where a running engine is and how to log in to it.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// The engine's HTTP address.
    #[arg(long, env = "VIGIL_URL", default_value = vigil_server::DEFAULT_URL)]
    pub url: String,
    /// Bearer token (the admin token, or one issued by POST /api/v1/tokens).
    /// Visible in `ps`: prefer VIGIL_ADMIN_TOKEN or --token-file.
    #[arg(long, env = "VIGIL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file whose first line is the bearer token.
    #[arg(long, env = "VIGIL_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl Remote {
    /// The bearer token: `--token` / VIGIL_ADMIN_TOKEN, or the first line
    /// of `--token-file` / VIGIL_ADMIN_TOKEN_FILE.
    pub(crate) fn bearer(&self) -> anyhow::Result<String> {
        if let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(token.to_owned());
        }
        let Some(path) = &self.token_file else {
            anyhow::bail!(
                "no token: set VIGIL_ADMIN_TOKEN or VIGIL_ADMIN_TOKEN_FILE (or pass --token-file)"
            );
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        anyhow::ensure!(!token.is_empty(), "token file {} is empty", path.display());
        Ok(token.to_owned())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a token; prints it once (it is stored only as a hash).
    Create(TokenCreateArgs),
    /// Every issued token: id, name, role, grant, created, expires, last
    /// used, status. Never the token itself.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token by its id (`tok_…`): refused from now on, on every
    /// surface; its open feeds end.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// Who holds it (a label for people).
    #[arg(long)]
    pub name: String,
    /// admin, supervisor, owner or analyst.
    #[arg(long, value_parser = ["admin", "supervisor", "owner", "analyst"])]
    pub role: String,
    /// A granted region (supervisor, analyst); repeat for several.
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// The owner an owner token speaks for.
    #[arg(long)]
    pub owner_id: Option<String>,
    /// Lifetime: seconds, or with a unit: 90d, 12h, 30m [default: the engine's tokens.default_ttl_days].
    #[arg(long)]
    pub expires_in: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Bulk upsert from a JSON file in the format of POST /api/v1/registry/import;
    /// prints the counts and the secrets of new devices.
    Import {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Has a running engine's device CA issue a client certificate for a
    /// registered device (O = the device id) and writes cert.pem, key.pem
    /// (mode 0600) and ca.pem into DIR.
    Cert {
        /// The device id.
        id: String,
        #[command(flatten)]
        cert: CertArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FeedCommand {
    /// Has a running engine's device CA issue a supervisor certificate for
    /// a region's MQTT alarm feed (O = r + region code) and writes cert.pem,
    /// key.pem (mode 0600) and ca.pem into DIR.
    Cert {
        /// The 6-digit region code (`440700`: that city and its counties).
        #[arg(long)]
        region: String,
        /// Who holds it (the certificate's CN).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        cert: CertArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CertArgs {
    /// Directory to write the files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Validity in days [default: the engine's tls.device_cert_days / feed_cert_days].
    #[arg(long)]
    pub days: Option<u32>,
    /// A PEM certificate signing request: the key stays where it was made
    /// and no key.pem is written.
    #[arg(long)]
    pub csr: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// One SELECT statement.
    pub sql: String,
    /// Output: a table for people, or json / csv for programs.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    pub format: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// List the built-in rules with their conditions and defaults.
    List,
    /// Check a rule file without starting anything: prints the rules it
    /// defines, or the file, line and column of the first mistake (exit 1).
    Check {
        file: PathBuf,
        /// An engine config whose `[rules]` the file is laid over.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make a running engine re-read its rule file (as SIGHUP does); a file
    /// with a mistake is refused and the running rules stay.
    Reload(Remote),
    /// Re-run the rules over stored readings of a time range on a running
    /// engine and print the alarm changes they would make (nothing is
    /// stored): try a threshold on history before it goes live.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Start, RFC 3339 (`2026-11-24T08:00:00+08:00`) or epoch ms.
    #[arg(long)]
    pub from: String,
    /// End (exclusive), RFC 3339 or epoch ms [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// A rule file (or an engine config's `[rules]`) to try instead of the running rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Sim(args) => crate::sim::run(args).await,
        Command::Registry(RegistryCommand::Import { file, remote }) => {
            crate::client::import(&file, &remote).await
        }
        Command::Sql(args) => crate::client::sql(&args).await,
        Command::Device(DeviceCommand::Cert { id, cert }) => {
            let path = format!("/devices/{id}/certificate");
            crate::client::certificate(&path, serde_json::json!({}), &cert).await
        }
        Command::Feed(FeedCommand::Cert { region, name, cert }) => {
            let body = serde_json::json!({"region": region, "name": name});
            crate::client::certificate("/alarm-feed/certificates", body, &cert).await
        }
        Command::Token(TokenCommand::Create(args)) => crate::client::token_create(&args).await,
        Command::Token(TokenCommand::List { remote }) => crate::client::token_list(&remote).await,
        Command::Token(TokenCommand::Revoke { id, remote }) => {
            crate::client::token_revoke(&id, &remote).await
        }
        Command::Migrate(args) => migrate(args).await,
        Command::Rules(RulesCommand::Replay(args)) => crate::client::replay(&args).await,
        Command::Rules(RulesCommand::List) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for rule in vigil_rules::catalogue() {
                // A closed pipe (`| head`) ends the listing, not in a panic.
                if writeln!(out, "{rule}").is_err() {
                    break;
                }
            }
            Ok(())
        }
        Command::Rules(RulesCommand::Check { file, config }) => check_rules(&file, config),
        Command::Rules(RulesCommand::Reload(remote)) => crate::client::reload(&remote).await,
    }
}

fn load(args: RunArgs) -> anyhow::Result<ServerConfig> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        mqtt_addr: args.mqtt_addr,
        mqtts_addr: args.mqtts_addr,
        http_addr: args.http_addr,
        admin_token: args.admin_token,
        admin_token_file: args.admin_token_file,
        store: args.store,
        rules_file: args.rules_file,
    };
    crate::config::load(args.config.as_deref(), overrides)
}

fn check_rules(file: &std::path::Path, config: Option<PathBuf>) -> anyhow::Result<()> {
    let base = match config {
        Some(path) => crate::config::load(Some(&path), Overrides::default())?.rules,
        None => toml::Table::new(),
    };
    let rules = vigil_server::load_rules(&base, Some(file))?;
    let defined = rules.defined_rules();
    println!("{}: ok, {} rule(s) defined", file.display(), defined.len());
    for r in defined {
        println!(
            "  {:<32} {:<8} {:<9} when {}",
            r.id,
            r.stream,
            r.severity.as_str(),
            r.when.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

async fn migrate(args: RunArgs) -> anyhow::Result<()> {
    let config = load(args)?;
    let pg = config.postgres()?.context(
        "`vigil migrate` needs a postgres:// store (--store, VIGIL_STORE or `store` in the config)",
    )?;
    let done = vigil_storage::postgres::migrate_only(&pg)
        .await
        .context("migration failed")?;
    println!(
        "schema {} at version {} ({} mode); applied now: {:?}",
        pg.schema,
        done.version,
        done.mode.as_str(),
        done.applied
    );
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.admin_token.is_some() {
        tracing::warn!(
            "--admin-token is visible to every user of this machine (ps, /proc); use --admin-token-file or VIGIL_ADMIN_TOKEN instead."
        );
    }
    let config = load(args)?;
    if config.admin_token.as_deref().is_none_or(str::is_empty) {
        tracing::warn!(
            "No admin token configured (--admin-token-file, VIGIL_ADMIN_TOKEN_FILE or VIGIL_ADMIN_TOKEN): only registry-issued tokens can use the API."
        );
    }
    let engine = Engine::start(config, system_clock()).await?;
    info!(mqtt = %engine.mqtt_addr(), mqtts = ?engine.mqtts_addr(), http = %engine.http_addr(), "Listening. Ctrl-C or SIGTERM stops the engine cleanly.");
    wait_for_stop_signal().await?;
    engine.shutdown().await
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
