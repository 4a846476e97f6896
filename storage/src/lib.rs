//! Where readings, alarms and dead letters go to stay, and where SQL reads
//! them back.
//!
//! ```text
//!  ingest ──Write{record, ack token}──▶ Store::write (bounded: back-pressure)
//!                                          │ group commit (one fsync per batch)
//!                                          ├──▶ durable tokens ──▶ ingest (ack watermarks)
//!                                          ▼
//!                               tables: elevator_readings, ride_readings, video_events,
//!                                       filling_records, device_events, alarm_changes
//!                                       (+ the `alarms` view), dead_letters,
//!                                       and reference tables set by the registry
//!  Store::query(sql) ──▶ one answer over what is in memory and on disk
//!                       (a person's: shape check, slot, grant below the query,
//!                        memory and time limits, capped answer, scrubbed errors)
//!  Store::recover ──▶ per device: stored seqs (recent, bounded: StoredSeqs), last seen; alarms
//!  Store::stored_seqs ──▶ exact answer for older (device_id, seq) ──▶ ingest's de-duplication
//! ```
//!
//! The [`Store`] trait is the whole surface the engine uses, and [`open`]
//! picks the backend a [`StoreConfig`] names: [`embedded`] is the default
//! (write-ahead log, Arrow in memory, Parquet on disk, DataFusion for SQL
//! on its own runtime), [`postgres`] keeps rows in PostgreSQL/TimescaleDB.
//!
//! What both backends share sits beside them: `schema` (every table's Arrow
//! schema), `wal` (the log format: the embedded store's write-ahead log and
//! the PostgreSQL backend's outage log), `reference` (registry tables to
//! Arrow), `read` (the typed reads [`Store::alarms`] and [`Store::readings`],
//! and the one decoder of stored alarms), `limits` (what is done to people's
//! SQL: [`SqlLimits`]), `record` (what goes in and comes back), `seqs`, and
//! `error` ([`StoreError`], saying whether a retry can help); `testdata`
//! holds the unit tests' shared records.

pub mod embedded;
mod error;
mod limits;
pub mod postgres;
mod read;
mod record;
mod reference;
mod schema;
mod seqs;
#[cfg(test)]
mod testdata;
mod wal;

pub use error::StoreError;
pub use limits::SqlLimits;
pub use read::{AlarmQuery, epoch_ms, lit, region_condition, scope_condition, time_literal};
pub use record::{
    AckToken, ColumnType, Record, Recovery, RefColumn, RefTable, StoredReading, Write,
};
pub use seqs::{MAX_RUNS, StoredSeqs};

/// A device message's identity: ingest de-duplicates on it.
pub type SeqKey = (vigil_model::DeviceId, u64);

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use vigil_model::{Alarm, EpochMs, Reading, Stream};

/// Which backend to open, with its settings.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Embedded(embedded::EmbeddedConfig),
    Postgres(postgres::PostgresConfig),
}

/// Opens the backend `config` names. Records with an [`AckToken`] are
/// reported on `durable` once they are durable.
pub async fn open(
    config: StoreConfig,
    durable: tokio::sync::mpsc::Sender<Vec<AckToken>>,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match config {
        StoreConfig::Embedded(c) => embedded::EmbeddedStore::open(c, durable).await?,
        StoreConfig::Postgres(c) => postgres::PostgresStore::open(c, durable).await?,
    };
    Ok(store)
}

/// The reading and event tables by stream, as analysts see them.
pub const TABLES: &[&str] = &[
    "elevator_readings",
    "ride_readings",
    "video_events",
    "filling_records",
    "device_events",
    "alarm_changes",
    "dead_letters",
];

/// Takes room for `n` records in a store's bounded write queue (all of it
/// for a batch larger than the queue), waiting while it is full: the
/// back-pressure writers feel. The writer thread gives the permits back.
pub(crate) async fn reserve(
    queue: &tokio::sync::Semaphore,
    n: usize,
    capacity: usize,
) -> Result<u32, StoreError> {
    let permits = n.min(capacity) as u32;
    queue
        .acquire_many(permits)
        .await
        .map_err(|_| StoreError::Closed)?
        .forget();
    Ok(permits)
}

/// The table a stream's readings are stored in.
pub fn readings_table(stream: vigil_model::Stream) -> &'static str {
    schema::Table::of_stream(stream).name()
}

/// Limits on one SQL query from the API or the CLI.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// The query is cancelled after this long.
    pub timeout: std::time::Duration,
    /// At most this many rows are returned; `truncated` says when more existed.
    pub max_rows: usize,
    /// At most this many bytes of rows (Arrow memory) are returned; like
    /// `max_rows`, more sets `truncated`.
    pub max_bytes: usize,
    /// `Some` limits the query to these regions (an analyst's or a
    /// supervisor's grant): tables with a `region` column show only rows
    /// inside it, filtered below anything the query itself computes; the
    /// others are not visible at all. `None` sees everything.
    pub regions: Option<Vec<vigil_model::Region>>,
    /// A person's SQL (the API, the CLI): held to the store's
    /// [`SqlLimits`] (concurrency, memory budget, expression depth and plan
    /// size) and answered with errors that carry no row values. The engine's
    /// own queries are not.
    pub guarded: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(30),
            max_rows: 100_000,
            max_bytes: 64 << 20,
            regions: None,
            guarded: false,
        }
    }
}

/// The answer to one query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

/// The storage stage. One instance is shared by every task of the engine.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Queues records for the next group commit. Returns once they are
    /// queued; waits (back-pressure) while the queue is full. Each record
    /// with an [`AckToken`] is reported on the durable channel given at open
    /// once it is durable.
    async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError>;

    /// Runs one read-only SQL statement over every table.
    async fn query(&self, sql: &str, opts: &QueryOptions) -> Result<QueryOutput, StoreError>;

    /// What the engine needs back after a restart.
    async fn recover(&self) -> Result<Recovery, StoreError>;

    /// Which of `keys` are stored, as a reading or as a dead letter that
    /// took its seq: for seqs older than the history [`Recovery::seqs`]
    /// holds. Sees every write reported durable before the call.
    async fn stored_seqs(&self, keys: &[SeqKey]) -> Result<HashSet<SeqKey>, StoreError>;

    /// Replaces a reference table (registry data) visible to SQL.
    async fn set_reference_table(&self, table: RefTable) -> Result<(), StoreError>;

    /// Defines (or replaces) the read-only view `name` as `select`, a query
    /// over the tables, reference tables and earlier views. It is checked at
    /// once: a view that does not plan is refused and the old one kept.
    /// Analysts see it through their regions like any table with a `region`.
    async fn set_view(&self, name: &str, select: &str) -> Result<(), StoreError>;

    /// Makes everything queued durable and visible, e.g. before shutdown.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Stored alarms (the latest version of each) that `q` asks for,
    /// newest change first.
    async fn alarms(&self, q: &AlarmQuery, opts: &QueryOptions) -> Result<Vec<Alarm>, StoreError> {
        let output = self.query(&read::alarms_sql(q)?, opts).await?;
        let mut alarms = Vec::new();
        for batch in &output.batches {
            read::alarms_from(batch, &mut alarms)?;
        }
        Ok(alarms)
    }

    /// Readings of `stream` with `ts` in `[from, to)` as the devices sent
    /// them, at most `max` (in no particular order).
    async fn readings(
        &self,
        stream: Stream,
        from: EpochMs,
        to: EpochMs,
        max: usize,
        opts: &QueryOptions,
    ) -> Result<Vec<Reading>, StoreError> {
        let opts = QueryOptions {
            max_rows: max,
            ..opts.clone()
        };
        let output = self
            .query(&read::readings_sql(stream, from, to)?, &opts)
            .await?;
        let mut readings = Vec::new();
        for batch in &output.batches {
            read::readings_from(stream, batch, &mut readings)?;
        }
        Ok(readings)
    }

    /// Makes everything queued durable, stops the store's threads and
    /// refuses further writes. A second call answers [`StoreError::Closed`].
    async fn close(&self) -> Result<(), StoreError>;

    /// Ready to accept writes (for `/readyz`); the reason when not.
    fn health(&self) -> Result<(), String>;

    /// Outages and backlog, for metrics. A backend that never waits on a
    /// remote database has nothing to report.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// What a store with a remote database reports for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The database cannot be reached now; writes go to the local log only.
    pub outage: bool,
    /// Outages begun since the store opened.
    pub outages: u64,
    /// Batches (and their records) in the local log that the database does not have yet.
    pub backlog_batches: u64,
    pub backlog_records: u64,
}
