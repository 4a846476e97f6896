//! Settings of the PostgreSQL backend: plain data; [`super::PostgresStore::open`]
//! turns them into a running store.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

vigil_model::word_enum!(
    /// Whether to use TimescaleDB: `auto` uses it when
    /// `pg_available_extensions` lists it, `on` requires it (opening fails
    /// without it), `off` keeps plain PostgreSQL even where it is available.
    TimescaleMode { Auto = "auto", On = "on", Off = "off" }
);

// `word_enum!` writes the enum, so `#[default]` cannot be put on a variant.
#[allow(clippy::derivable_impls)]
impl Default for TimescaleMode {
    fn default() -> Self {
        TimescaleMode::Auto
    }
}

/// Where the store connects, how it batches, and what TimescaleDB keeps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`. The user owns the schema and
    /// needs CREATEROLE (for the read-only roles) on first start.
    pub url: String,
    /// Schema of the tables; created when missing.
    pub schema: String,
    /// Prefix of the read-only login roles `{prefix}_reader` (everything)
    /// and `{prefix}_analyst` (scoped views only). Roles are per cluster.
    pub role_prefix: String,
    /// The local write-ahead log that holds batches until PostgreSQL has them.
    pub wal_dir: PathBuf,
    /// Records accepted but not yet in the local log; `write` waits while full.
    pub queue_capacity: usize,
    /// A batch closes at this many records …
    pub batch_rows: usize,
    /// … or when its first record is this old.
    #[serde(rename = "batch_age_ms", deserialize_with = "millis")]
    pub batch_age: Duration,
    /// While PostgreSQL is up, at most this many batches wait to be copied
    /// in; more and `write` waits (back-pressure). During an outage the
    /// local log takes everything.
    pub max_backlog_batches: usize,
    pub timescale: TimescaleMode,
    /// TimescaleDB: chunks older than this are compressed.
    pub compress_after_days: u32,
    /// TimescaleDB: readings and dead letters older than this are dropped; 0 keeps them.
    pub retention_days: u32,
    /// How long `close` waits for PostgreSQL to take the backlog before it
    /// leaves the rest in the local log for the next start.
    #[serde(rename = "close_timeout_s", deserialize_with = "seconds")]
    pub close_timeout: Duration,
    /// What people's SQL may use (concurrency and shape; `threads` and
    /// `memory_bytes` are the embedded store's).
    pub sql: crate::SqlLimits,
    /// `work_mem` of people's queries (kB): what each sort or hash step may
    /// use before it spills to temporary files.
    pub sql_work_mem_kb: u32,
    /// `temp_file_limit` of the query roles (kB; -1: none): one query's
    /// temporary files together. Setting it needs a superuser (or, from
    /// PostgreSQL 15, the SET privilege on it); otherwise a warning is
    /// logged and the server's setting holds.
    pub sql_temp_file_limit_kb: i64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://localhost/vigil".into(),
            schema: "vigil".into(),
            role_prefix: "vigil".into(),
            wal_dir: PathBuf::from("vigil-data/pg-wal"),
            queue_capacity: 16_384,
            batch_rows: 8_192,
            batch_age: Duration::from_millis(100),
            max_backlog_batches: 16,
            timescale: TimescaleMode::default(),
            compress_after_days: 7,
            retention_days: 0,
            close_timeout: Duration::from_secs(30),
            sql: crate::SqlLimits::default(),
            sql_work_mem_kb: 16 * 1024,
            sql_temp_file_limit_kb: 1024 * 1024,
        }
    }
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>, wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            wal_dir: wal_dir.into(),
            ..Self::default()
        }
    }

    /// Zero sizes would stall the writer; clamp them to something that works.
    pub(crate) fn normalized(mut self) -> Self {
        self.queue_capacity = self.queue_capacity.clamp(1, u32::MAX as usize);
        self.batch_rows = self.batch_rows.max(1);
        self.max_backlog_batches = self.max_backlog_batches.max(1);
        if self.batch_age.is_zero() {
            self.batch_age = Duration::from_millis(1);
        }
        self.compress_after_days = self.compress_after_days.max(1);
        self.sql = self.sql.normalized();
        self.sql_work_mem_kb = self.sql_work_mem_kb.max(64);
        self
    }

    pub(crate) fn reader_role(&self) -> String {
        format!("{}_reader", self.role_prefix)
    }

    pub(crate) fn analyst_role(&self) -> String {
        format!("{}_analyst", self.role_prefix)
    }

    /// Where analysts' views live.
    pub(crate) fn scoped_schema(&self) -> String {
        format!("{}_scoped", self.schema)
    }
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_millis(u64::deserialize(d)?))
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_secs(u64::deserialize(d)?))
}

/// A SQL identifier in double quotes.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
