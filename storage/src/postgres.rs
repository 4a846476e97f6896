//! The PostgreSQL / TimescaleDB backend: the same [`Store`] on a real
//! database, for analysts and Grafana.
//!
//! ```text
//!  write ─▶ queue (bounded) ─▶ writer thread ─▶ local log file per batch (fsync)
//!                                                  │ shipper task (one connection)
//!                                                  ▼
//!            COPY binary into the tables ─▶ commit ─▶ tokens on `durable`
//!            (a duplicate key: the batch again via temp staging and INSERT … ON CONFLICT DO NOTHING)
//!  query ─▶ fresh connection as {prefix}_reader (or _analyst: scoped views) ─▶ READ ONLY,
//!          statement_timeout, work_mem ─▶ Arrow (streamed, cut at the row and byte caps)
//!  recover / reference tables ─▶ the engine's own connection
//! ```
//!
//! Modules: [`config`] (settings), [`migrate`] (versioned schema, roles,
//! policies), `writer` (local log and shipper), `copy` (binary COPY
//! encoding), `query` (SQL to Arrow), `recover`, `reference`.
//! See docs/postgres.md.

pub mod config;
mod copy;
pub mod migrate;
mod query;
mod recover;
mod reference;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};

use parking_lot::{Condvar, Mutex};
use tokio::sync::{Semaphore, oneshot};
use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

pub use config::{PostgresConfig, TimescaleMode};
pub use migrate::{Migrated, Mode};

use self::writer::{Batch, Msg, Ship, Shipper, Writer};
use crate::{
    AckToken, QueryOptions, QueryOutput, Recovery, RefTable, SeqKey, Store, StoreError, StoreStats,
    Write,
};

/// What the store's handle, the writer thread and the shipper share.
pub(crate) struct Shared {
    /// Records accepted and not yet in the local log (`queue_capacity` permits).
    queue: Semaphore,
    /// Batches in the local log not yet in PostgreSQL; the writer waits on
    /// `room` while PostgreSQL is up and this is over the limit.
    backlog: Mutex<usize>,
    room: Condvar,
    backlog_now: AtomicUsize,
    /// Records in those batches (for metrics).
    backlog_records: AtomicU64,
    /// Outages begun since open (for metrics).
    outages: AtomicU64,
    /// PostgreSQL's trouble, if any (an outage: the local log takes over).
    db_health: Mutex<Option<String>>,
    /// The local log's trouble, if any (writes are stuck).
    local_health: Mutex<Option<String>>,
}

impl Shared {
    fn set_db_health(&self, reason: Option<String>) {
        let up = reason.is_none();
        let was_up = std::mem::replace(&mut *self.db_health.lock(), reason).is_none();
        if was_up && !up {
            self.outages.fetch_add(1, Ordering::Relaxed);
        }
        if !up {
            // An outage lifts the back-pressure: the local log takes over.
            self.room.notify_all();
        }
    }

    fn set_local_health(&self, reason: Option<String>) {
        *self.local_health.lock() = reason;
    }

    fn db_up(&self) -> bool {
        self.db_health.lock().is_none()
    }

    /// Counts a new batch; returns the backlog including it.
    fn add_backlog(&self, records: u64) -> usize {
        self.backlog_records.fetch_add(records, Ordering::Relaxed);
        let mut n = self.backlog.lock();
        *n += 1;
        self.backlog_now.store(*n, Ordering::Relaxed);
        *n
    }

    fn remove_backlog(&self, records: u64) {
        // Saturating: a batch whose count could not be read counts as 0.
        let _ = self
            .backlog_records
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(records))
            });
        let mut n = self.backlog.lock();
        *n = n.saturating_sub(1);
        self.backlog_now.store(*n, Ordering::Relaxed);
        self.room.notify_all();
    }

    fn backlog(&self) -> usize {
        self.backlog_now.load(Ordering::Relaxed)
    }

    fn wait_for_room(&self, max: usize) {
        let mut n = self.backlog.lock();
        while *n >= max && self.db_up() {
            // Timed: the outage flag is set without this lock held.
            self.room
                .wait_for(&mut n, std::time::Duration::from_millis(200));
        }
    }
}

/// The PostgreSQL store. Cheap to share (`Arc`); every method takes `&self`.
pub struct PostgresStore {
    shared: Arc<Shared>,
    config: PostgresConfig,
    mode: Mode,
    /// `None` once closed.
    sender: Mutex<Option<Sender<Msg>>>,
    /// The engine's own connection for recovery, reference tables and query scopes.
    owner: tokio::sync::Mutex<Option<Client>>,
    shipper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Bounds how many of people's queries run at once (`sql.max_concurrent`).
    gate: crate::limits::Gate,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.config.schema)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Connects as the configured (owning) user, with the schema as search path.
pub(crate) async fn connect_owner(config: &PostgresConfig) -> Result<Client, StoreError> {
    let pg: tokio_postgres::Config = config
        .url
        .parse()
        .map_err(StoreError::db("parsing the store URL"))?;
    let client = connect(&pg).await?;
    migrate::use_schema(&client, &config.schema).await?;
    Ok(client)
}

pub(crate) async fn connect(pg: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let (client, connection) = pg
        .connect(NoTls)
        .await
        .map_err(StoreError::db("connecting"))?;
    tokio::spawn(async move {
        // Ends with an error when the server goes away; the client notices.
        let _ = connection.await;
    });
    Ok(client)
}

/// What [`PostgresStore`]'s `recover` reads, on a connection of the
/// caller's whose search path is the schema (tools and tests).
pub async fn recover_with(client: &mut Client) -> Result<Recovery, StoreError> {
    recover::recover(client).await
}

/// What [`PostgresStore`]'s `stored_seqs` asks, on a connection of the
/// caller's whose search path is the schema (tools and tests).
pub async fn stored_seqs_with(
    client: &mut Client,
    keys: &[SeqKey],
) -> Result<HashSet<SeqKey>, StoreError> {
    recover::stored_seqs(client, keys).await
}

/// Applies the migrations and access rules, as `vigil migrate` does.
pub async fn migrate_only(config: &PostgresConfig) -> Result<Migrated, StoreError> {
    let mut client = connect_owner(config).await?;
    let migrated = migrate::migrate(&mut client, config, None).await?;
    migrate::prepare_access(&mut client, config, migrated.mode).await?;
    Ok(migrated)
}

impl PostgresStore {
    /// Migrates the schema, ships what an earlier run left in the local log,
    /// then starts the writer. Needs PostgreSQL to be reachable.
    pub async fn open(
        config: PostgresConfig,
        durable: tokio::sync::mpsc::Sender<Vec<AckToken>>,
    ) -> Result<Arc<PostgresStore>, StoreError> {
        let config = config.normalized();
        let io_err = |source| StoreError::Io {
            path: config.wal_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.wal_dir).map_err(io_err)?;
        let wal_id = wal_id(&config.wal_dir)?;
        let mut owner = connect_owner(&config).await?;
        let migrated = migrate::migrate(&mut owner, &config, None).await?;
        migrate::prepare_access(&mut owner, &config, migrated.mode).await?;
        match migrated.mode {
            Mode::Timescale => {
                info!(schema = %config.schema, version = migrated.version, "PostgreSQL store in TimescaleDB mode: hypertables, compression, retention and continuous aggregates.")
            }
            Mode::Plain => {
                info!(schema = %config.schema, version = migrated.version, "PostgreSQL store in plain PostgreSQL mode (no TimescaleDB): BRIN indexes on time, rollups as views.")
            }
        }

        let shipper_client = connect_owner(&config).await?;
        writer::create_staging(&shipper_client).await?;
        let shared = Arc::new(Shared {
            queue: Semaphore::new(config.queue_capacity),
            backlog: Mutex::new(0),
            room: Condvar::new(),
            backlog_now: AtomicUsize::new(0),
            backlog_records: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            db_health: Mutex::new(None),
            local_health: Mutex::new(None),
        });
        let (ship_tx, ship_rx) = tokio::sync::mpsc::unbounded_channel();
        let left = writer::backlog(&config.wal_dir)?;
        // Numbers go on from the last batch PostgreSQL took from this log,
        // even when the log is empty now: the shipper skips a batch numbered
        // at or below that position as one shipped before, so numbering
        // from 1 again would ack new batches without storing them.
        let shipped: Option<i64> = owner
            .query_opt(
                "SELECT segment FROM vigil_wal_position WHERE wal_id = $1",
                &[&wal_id],
            )
            .await
            .map_err(StoreError::db("reading the log position"))?
            .map(|row| row.get(0));
        let next_no = left
            .last()
            .map_or(1, |(no, _)| no + 1)
            .max(shipped.map_or(1, |n| n as u64 + 1));
        if !left.is_empty() {
            info!(
                batches = left.len(),
                "Shipping what the local log holds from an earlier run."
            );
        }
        for (no, path) in &left {
            let rows = writer::count_records(path);
            shared.add_backlog(rows);
            let _ = ship_tx.send(Ship::Batch(Batch {
                no: *no,
                rows,
                records: None,
                tokens: Vec::new(),
            }));
        }
        let shipper = Shipper {
            shared: Arc::clone(&shared),
            config: config.clone(),
            wal_id,
            rx: ship_rx,
            durable,
            client: Some(shipper_client),
        };
        let shipper = tokio::spawn(shipper.run());

        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            config: config.clone(),
            rx,
            ship: ship_tx,
            next_no,
            pending: Vec::new(),
            permits: 0,
            since: None,
        };
        std::thread::Builder::new()
            .name("vigil-pg-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Other(format!("cannot start the log writer thread: {e}")))?;

        let store = Arc::new(PostgresStore {
            shared,
            gate: crate::limits::Gate::new(config.sql.max_concurrent),
            config,
            mode: migrated.mode,
            sender: Mutex::new(Some(tx)),
            owner: tokio::sync::Mutex::new(Some(owner)),
            shipper: Mutex::new(Some(shipper)),
        });
        // Recovery must see what the last run left behind.
        store.flush().await?;
        Ok(store)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Batches in the local log that PostgreSQL does not have yet.
    pub fn backlog_batches(&self) -> usize {
        self.shared.backlog()
    }

    /// Ships everything and stops. If PostgreSQL stays away longer than
    /// `close_timeout`, the rest stays in the local log for the next start.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut sender = self.sender.lock();
            let Some(s) = sender.take() else {
                return Err(StoreError::Closed);
            };
            self.shared.queue.close();
            s.send(Msg::Close(tx)).map_err(|_| StoreError::Closed)?;
        }
        match tokio::time::timeout(self.config.close_timeout, rx).await {
            Ok(r) => r.unwrap_or(Err(StoreError::Closed)),
            Err(_) => {
                warn!(
                    backlog = self.shared.backlog(),
                    "PostgreSQL did not take the backlog in time; it stays in the local log for the next start."
                );
                if let Some(h) = self.shipper.lock().take() {
                    h.abort();
                }
                Ok(())
            }
        }
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let sender = self.sender.lock();
        let s = sender.as_ref().ok_or(StoreError::Closed)?;
        s.send(msg).map_err(|_| StoreError::Closed)
    }

    /// The engine's own connection, reconnected when it was lost.
    pub(crate) async fn owner(&self) -> Result<OwnerGuard<'_>, StoreError> {
        let mut guard = self.owner.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect_owner(&self.config).await?);
        }
        Ok(OwnerGuard(guard))
    }
}

/// The locked owner connection.
pub(crate) struct OwnerGuard<'a>(tokio::sync::MutexGuard<'a, Option<Client>>);

impl OwnerGuard<'_> {
    pub(crate) fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.0.as_mut().ok_or(StoreError::Closed)
    }
}

/// The identity of the local log, kept in it: positions in PostgreSQL are per log.
fn wal_id(dir: &std::path::Path) -> Result<String, StoreError> {
    let path = dir.join("wal-id");
    let io_err = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(id.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &id).map_err(io_err)?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err)?;
            std::fs::rename(&tmp, &path).map_err(io_err)?;
            crate::wal::sync_dir(dir).map_err(io_err)?;
            Ok(id)
        }
        Err(e) => Err(io_err(e)),
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let permits =
            crate::reserve(&self.shared.queue, batch.len(), self.config.queue_capacity).await?;
        self.send(Msg::Write {
            writes: batch,
            permits,
        })
        .inspect_err(|_| self.shared.queue.add_permits(permits as usize))
    }

    async fn query(&self, sql: &str, opts: &QueryOptions) -> Result<QueryOutput, StoreError> {
        query::run(self, sql, opts).await
    }

    async fn recover(&self) -> Result<Recovery, StoreError> {
        let mut owner = self.owner().await?;
        recover::recover(owner.client()?).await
    }

    async fn stored_seqs(&self, keys: &[SeqKey]) -> Result<HashSet<SeqKey>, StoreError> {
        let mut owner = self.owner().await?;
        recover::stored_seqs(owner.client()?, keys).await
    }

    async fn set_reference_table(&self, table: RefTable) -> Result<(), StoreError> {
        let mut owner = self.owner().await?;
        reference::set(owner.client()?, &self.config, &table).await
    }

    async fn set_view(&self, name: &str, select: &str) -> Result<(), StoreError> {
        let mut owner = self.owner().await?;
        reference::set_view(owner.client()?, &self.config, name, select).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        PostgresStore::close(self).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Flush(tx))?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    fn health(&self) -> Result<(), String> {
        if self.sender.lock().is_none() {
            return Err("the store is closed".into());
        }
        if let Some(reason) = &*self.shared.local_health.lock() {
            return Err(reason.clone());
        }
        match &*self.shared.db_health.lock() {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            outage: !self.shared.db_up(),
            outages: self.shared.outages.load(Ordering::Relaxed),
            backlog_batches: self.shared.backlog() as u64,
            backlog_records: self.shared.backlog_records.load(Ordering::Relaxed),
        }
    }
}
