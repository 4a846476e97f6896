//! What the engine runs with: the plain data `ServerConfig` and its
//! sections, with the built-in defaults. The `vigil` binary layers a TOML
//! file, the environment and its flags over these defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// (`--mqtt-addr`) and environment variables (`VIGIL_MQTT_ADDR`); sections
/// nest with `__` in the environment (`VIGIL_ENGINE__RULE_SHARDS=4`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Registry, write-ahead log and Parquet files live here.
    pub data_dir: PathBuf,
    /// Plain MQTT listener for devices (loopback unless `ingest.allow_public_plain`).
    pub mqtt_addr: SocketAddr,
    /// Mutual-TLS MQTT listener for devices and supervisors; off unless set.
    /// A host without a port listens on 8883.
    #[serde(
        default,
        deserialize_with = "listen_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub mqtts_addr: Option<SocketAddr>,
    /// HTTP API, SSE feed and metrics.
    pub http_addr: SocketAddr,
    /// Bearer token of the `admin` role; without one only registry-issued
    /// tokens work. After [`Config::load`] it also holds what
    /// `admin_token_file` named.
    pub admin_token: Option<String>,
    /// A file holding the admin token (first line; read at start). Preferred
    /// over `admin_token`, which shows in `ps` when given as a flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Where readings, alarms and dead letters are stored: `embedded` (files
    /// under `data_dir`) or a `postgres://…` URL (docs/postgres.md).
    pub store: String,
    pub engine: EngineConfig,
    pub ingest: IngestTuning,
    /// The device CA and the TLS listener's certificate (docs/security.md).
    pub tls: TlsTuning,
    pub embedded: EmbeddedTuning,
    pub postgres: PostgresTuning,
    /// Rule thresholds and overrides (docs/rules.md).
    pub rules: toml::Table,
    /// A rule file laid over `[rules]`: rules defined without recompiling,
    /// re-read on SIGHUP and `POST /api/v1/rules/reload` (docs/rules.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<PathBuf>,
    /// Webhooks (docs/delivery.md).
    pub delivery: DeliveryConfig,
    /// Risk grading weights and thresholds (docs/risk.md).
    pub risk: crate::risk::RiskConfig,
    /// The browser console at `/` (docs/console.md).
    pub console: crate::console::ConsoleConfig,
    /// Lifetimes of issued API tokens.
    pub tokens: TokenConfig,
}

/// `[tokens]`: how long API tokens issued by `POST /api/v1/tokens` live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Lifetime of a token whose request names none, days.
    pub default_ttl_days: u64,
    /// Longest lifetime a request may ask for (`expires_in_s`), days.
    pub max_ttl_days: u64,
}

// The registry's token policy holds the defaults.
impl Default for TokenConfig {
    fn default() -> Self {
        let p = vigil_registry::TokenPolicy::default();
        Self {
            default_ttl_days: p.default_ttl.as_secs() / 86_400,
            max_ttl_days: p.max_ttl.as_secs() / 86_400,
        }
    }
}

impl TokenConfig {
    pub fn policy(&self) -> anyhow::Result<vigil_registry::TokenPolicy> {
        anyhow::ensure!(
            (1..=36_500).contains(&self.max_ttl_days),
            "tokens.max_ttl_days must be from 1 to 36500, not {}",
            self.max_ttl_days
        );
        anyhow::ensure!(
            (1..=self.max_ttl_days).contains(&self.default_ttl_days),
            "tokens.default_ttl_days must be from 1 to tokens.max_ttl_days ({}), not {}",
            self.max_ttl_days,
            self.default_ttl_days
        );
        let days = |d: u64| std::time::Duration::from_secs(d * 86_400);
        Ok(vigil_registry::TokenPolicy {
            default_ttl: days(self.default_ttl_days),
            max_ttl: days(self.max_ttl_days),
        })
    }
}

/// `[delivery]`: where alarm changes go besides SSE and MQTT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// Seconds webhooks get at shutdown to deliver what is queued.
    pub shutdown_grace_s: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            shutdown_grace_s: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Rule-engine shards; readings are routed by equipment so each
    /// equipment's state lives in exactly one shard.
    pub rule_shards: usize,
    /// How often silent devices' clocks advance and timers fire.
    pub tick_ms: u64,
    /// Readings queued in front of each shard (back-pressure to ingest),
    /// in ingest batches of at most `vigil_ingest::MAX_BATCH`.
    pub shard_queue: usize,
    /// SQL statement timeout, seconds.
    pub sql_timeout_s: u64,
    /// Rows returned by one SQL query at most.
    pub sql_max_rows: usize,
    /// Bytes (MiB) of rows one SQL answer holds at most; beyond, it is cut
    /// like at `sql_max_rows` (docs/sql.md, "Limits").
    pub sql_max_answer_mib: usize,
    /// Memory (MiB) people's SQL may hold together (embedded store).
    pub sql_memory_mib: usize,
    /// Threads of the embedded store's SQL runtime.
    pub sql_threads: usize,
    /// Nice steps the embedded store's SQL threads run below the engine's
    /// (0–19): people's queries yield the CPU to the alarm path.
    pub sql_nice: i32,
    /// People's SQL queries running at once; more wait within their timeout.
    pub sql_max_concurrent: usize,
    /// Operators one SQL expression may chain (`a + b + …`).
    pub sql_max_expr_depth: usize,
    /// Relations and operators one SQL query may plan to.
    pub sql_max_plan_nodes: usize,
    /// Length (KiB) of one SQL query's text.
    pub sql_max_query_kib: usize,
    /// Registry-time rules run this often (and within a second of any
    /// registry change).
    pub registry_check_s: u64,
    /// UTC offset of the registry's dates, hours (China Standard Time: 8).
    pub registry_utc_offset_h: i32,
}

impl EngineConfig {
    /// The engine's own queries (alarm history, replay, the fleet pages)
    /// and the base of people's SQL: time, row and answer-size limits.
    pub fn query_options(&self) -> vigil_storage::QueryOptions {
        vigil_storage::QueryOptions {
            timeout: std::time::Duration::from_secs(self.sql_timeout_s),
            max_rows: self.sql_max_rows,
            max_bytes: self.sql_max_answer_mib.saturating_mul(1 << 20),
            ..vigil_storage::QueryOptions::default()
        }
    }

    /// What people's SQL may use, for either store.
    pub fn sql_limits(&self) -> vigil_storage::SqlLimits {
        vigil_storage::SqlLimits {
            threads: self.sql_threads,
            memory_bytes: self.sql_memory_mib.saturating_mul(1 << 20),
            max_concurrent: self.sql_max_concurrent,
            max_expr_depth: self.sql_max_expr_depth,
            max_plan_nodes: self.sql_max_plan_nodes,
            max_query_bytes: self.sql_max_query_kib.saturating_mul(1024),
            nice: self.sql_nice,
        }
    }

    pub fn registry_offset(&self) -> anyhow::Result<chrono::FixedOffset> {
        chrono::FixedOffset::east_opt(self.registry_utc_offset_h * 3600).ok_or_else(|| {
            anyhow::anyhow!(
                "engine.registry_utc_offset_h must be from -23 to 23, not {}",
                self.registry_utc_offset_h
            )
        })
    }
}

// The SQL limits are the store's own defaults, written once there.
impl Default for EngineConfig {
    fn default() -> Self {
        let q = vigil_storage::QueryOptions::default();
        let l = vigil_storage::SqlLimits::default();
        Self {
            rule_shards: 2,
            tick_ms: 500,
            shard_queue: 8192,
            sql_timeout_s: q.timeout.as_secs(),
            sql_max_rows: q.max_rows,
            sql_max_answer_mib: q.max_bytes >> 20,
            sql_memory_mib: l.memory_bytes >> 20,
            sql_threads: l.threads,
            sql_nice: l.nice,
            sql_max_concurrent: l.max_concurrent,
            sql_max_expr_depth: l.max_expr_depth,
            sql_max_plan_nodes: l.max_plan_nodes,
            sql_max_query_kib: l.max_query_bytes >> 10,
            registry_check_s: 60,
            registry_utc_offset_h: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestTuning {
    /// Allow the plain (password) MQTT listener on a non-loopback address.
    pub allow_public_plain: bool,
    pub max_connections: usize,
    /// Threads serving the MQTT sockets; 0 = half the cores (1 to 4).
    pub io_threads: usize,
    /// Ms a device subscribed to its acks waits at most for a PUBACK, held
    /// to go out with its next ack; 0 = at once (docs/ingest.md).
    pub puback_hold_ms: u64,
    /// Least µs between two batches of the ingest thread; publishes that
    /// come sooner wait and go together; 0 = none (docs/ingest.md).
    pub batch_interval_us: u64,
    /// Seconds an ack watermark waits below a `seq` gap for the device to re-send.
    pub gap_grace_s: u64,
    /// Per-connection message and byte quotas (docs/security.md).
    pub quota: vigil_ingest::QuotaConfig,
    /// Seqs a second a device's `seq` may advance; further jumps are refused (docs/ingest.md).
    pub max_seq_rate: u64,
}

// Defaults are the stages' own, written once there.
impl Default for IngestTuning {
    fn default() -> Self {
        let d = vigil_ingest::IngestConfig::default();
        Self {
            allow_public_plain: d.allow_public_plain,
            max_connections: d.max_connections,
            io_threads: d.io_threads,
            puback_hold_ms: d.puback_hold_ms,
            batch_interval_us: d.batch_interval_us,
            gap_grace_s: d.gap_grace_s,
            quota: d.quota.clone(),
            max_seq_rate: d.max_seq_rate,
        }
    }
}

/// `[tls]`: the device CA and what the mTLS listener serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsTuning {
    /// The device CA's certificate and key (PEM). Unset: `{data_dir}/pki/ca.pem`
    /// and `ca.key`, created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<PathBuf>,
    /// The listener's certificate chain and key (PEM). Unset: issued from the
    /// device CA at every start for `server_names`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key: Option<PathBuf>,
    /// DNS names and IP addresses devices use to reach the TLS listener.
    pub server_names: Vec<String>,
    /// Validity of device and alarm-feed certificates issued by the API.
    pub device_cert_days: u32,
    pub feed_cert_days: u32,
}

impl Default for TlsTuning {
    fn default() -> Self {
        Self {
            ca_cert: None,
            ca_key: None,
            server_cert: None,
            server_key: None,
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            device_cert_days: 825,
            feed_cert_days: 397,
        }
    }
}

/// The default port of the TLS listener when only a host is given.
pub(crate) const MQTTS_PORT: u16 = 8883;

/// `host:port`, or a host alone for port 8883.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, MQTTS_PORT))
        })
        .map_err(|_| format!("{s:?} is neither host:port nor an IP address"))
}

fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.filter(|t| !t.is_empty())
        .map(|t| parse_listen_addr(&t).map_err(serde::de::Error::custom))
        .transpose()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedTuning {
    pub queue_capacity: usize,
    pub group_commit_max: usize,
    /// Least milliseconds between the starts of two WAL commits (0: none).
    pub commit_interval_ms: u64,
    pub flush_rows: usize,
    pub flush_interval_s: u64,
}

impl Default for EmbeddedTuning {
    fn default() -> Self {
        let d = vigil_storage::embedded::EmbeddedConfig::default();
        Self {
            queue_capacity: d.queue_capacity,
            group_commit_max: d.group_commit_max,
            commit_interval_ms: d.commit_interval.as_millis() as u64,
            flush_rows: d.flush_rows,
            flush_interval_s: d.flush_interval.as_secs(),
        }
    }
}

/// The PostgreSQL backend, used when `store` is a `postgres://` URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresTuning {
    /// Schema of Vigil's tables (created when missing).
    pub schema: String,
    /// Read-only login roles are `{role_prefix}_reader` and `{role_prefix}_analyst`.
    pub role_prefix: String,
    /// `auto` (TimescaleDB when available), `on` (required) or `off`.
    pub timescale: String,
    pub queue_capacity: usize,
    /// A COPY batch closes at this many records or this age, whichever first.
    pub batch_rows: usize,
    pub batch_age_ms: u64,
    /// Batches waiting for PostgreSQL (while it is up) before writes wait.
    pub max_backlog_batches: usize,
    /// TimescaleDB: compress chunks older than this; drop readings older than
    /// `retention_days` (0 keeps everything).
    pub compress_after_days: u32,
    pub retention_days: u32,
    /// `work_mem` (MiB) of each sort or hash step of people's SQL.
    pub sql_work_mem_mib: u32,
    /// `temp_file_limit` (MiB) of one SQL query's temporary files; -1: none.
    pub sql_temp_file_limit_mib: i64,
}

impl Default for PostgresTuning {
    fn default() -> Self {
        let d = vigil_storage::postgres::PostgresConfig::default();
        Self {
            schema: d.schema,
            role_prefix: d.role_prefix,
            timescale: d.timescale.as_str().into(),
            queue_capacity: d.queue_capacity,
            batch_rows: d.batch_rows,
            batch_age_ms: d.batch_age.as_millis() as u64,
            max_backlog_batches: d.max_backlog_batches,
            compress_after_days: d.compress_after_days,
            retention_days: d.retention_days,
            sql_work_mem_mib: d.sql_work_mem_kb / 1024,
            sql_temp_file_limit_mib: d.sql_temp_file_limit_kb / 1024,
        }
    }
}

impl ServerConfig {
    /// The PostgreSQL settings when `store` is a `postgres://` URL.
    /// The store backend this configuration names: PostgreSQL when `store`
    /// is a URL, the embedded store under `data_dir/store` otherwise.
    pub fn store_config(&self) -> anyhow::Result<vigil_storage::StoreConfig> {
        if let Some(pg) = self.postgres()? {
            return Ok(vigil_storage::StoreConfig::Postgres(pg));
        }
        Ok(vigil_storage::StoreConfig::Embedded(
            vigil_storage::embedded::EmbeddedConfig {
                dir: self.data_dir.join("store"),
                queue_capacity: self.embedded.queue_capacity,
                group_commit_max: self.embedded.group_commit_max,
                commit_interval: std::time::Duration::from_millis(self.embedded.commit_interval_ms),
                flush_rows: self.embedded.flush_rows,
                flush_interval: std::time::Duration::from_secs(self.embedded.flush_interval_s),
                sql: self.engine.sql_limits(),
            },
        ))
    }

    pub fn postgres(&self) -> anyhow::Result<Option<vigil_storage::postgres::PostgresConfig>> {
        use vigil_storage::postgres::{PostgresConfig, TimescaleMode};
        let url = self.store.trim();
        if url == "embedded" || url.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "store must be \"embedded\" or a postgres:// URL, not {url:?}"
        );
        let p = &self.postgres;
        let timescale = TimescaleMode::parse(&p.timescale).ok_or_else(|| {
            anyhow::anyhow!(
                "postgres.timescale must be auto, on or off, not {:?}",
                p.timescale
            )
        })?;
        Ok(Some(PostgresConfig {
            url: url.to_owned(),
            schema: p.schema.clone(),
            role_prefix: p.role_prefix.clone(),
            wal_dir: self.data_dir.join("pg-wal"),
            queue_capacity: p.queue_capacity,
            batch_rows: p.batch_rows,
            batch_age: std::time::Duration::from_millis(p.batch_age_ms),
            max_backlog_batches: p.max_backlog_batches,
            timescale,
            compress_after_days: p.compress_after_days,
            retention_days: p.retention_days,
            sql: self.engine.sql_limits(),
            sql_work_mem_kb: p.sql_work_mem_mib.saturating_mul(1024),
            sql_temp_file_limit_kb: match p.sql_temp_file_limit_mib {
                n if n < 0 => -1,
                n => n.saturating_mul(1024),
            },
            ..PostgresConfig::default()
        }))
    }
}

/// The HTTP API's address unless configured, and the URL the CLI's
/// commands reach it at by default.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("vigil-data"),
            mqtt_addr: vigil_ingest::IngestConfig::default().mqtt_addr,
            mqtts_addr: None,
            http_addr: DEFAULT_HTTP_ADDR.parse().expect("valid literal"),
            admin_token: None,
            admin_token_file: None,
            store: "embedded".into(),
            engine: EngineConfig::default(),
            ingest: IngestTuning::default(),
            tls: TlsTuning::default(),
            embedded: EmbeddedTuning::default(),
            postgres: PostgresTuning::default(),
            rules: toml::Table::new(),
            rules_file: None,
            delivery: DeliveryConfig::default(),
            risk: crate::risk::RiskConfig::default(),
            console: crate::console::ConsoleConfig::default(),
            tokens: TokenConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// `vigil alarms`, `vigil sql`, … reach an engine started with the
    /// defaults without `--url`.
    #[test]
    fn the_cli_default_url_reaches_the_default_http_address() {
        assert_eq!(
            super::DEFAULT_URL,
            format!("http://{}", super::DEFAULT_HTTP_ADDR)
        );
    }
}
