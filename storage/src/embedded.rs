//! The default backend: a write-ahead log fsynced in group commits, Arrow in
//! memory, Parquet on disk, one DataFusion query over both.
//!
//! ```text
//!  write ─▶ queue (bounded) ─▶ writer thread: WAL frame + sync_data ─▶ tokens on `durable`
//!                                   │ apply
//!                                   ▼
//!           Tables (one lock): active chunks + tail │ frozen generations │ Parquet files
//!                                   ▲                      │ flusher thread
//!  query ─▶ snapshot under the lock ┘                      └─▶ dir/tables/{table}/*.parquet
//!        ─▶ SQL runtime (own threads): DataFusion, per-query context of sealed
//!           tables (grant filtered inside the scan), `alarms` view, reference tables
//! ```
//!
//! Files: `dir/wal/*.log` (`crate::wal`, the log format both backends
//! share), `dir/tables/{table}/{first_ts}_{last_ts}-{n}.parquet` (`parquet`),
//! `dir/seq-index` (per device the seqs Parquet holds, for
//! ingest's de-duplication at start: `seq_index`). Opening replays the WAL
//! into memory, skipping what Parquet files already hold, and loads the seq
//! index, reading only the Parquet files it does not cover yet.
//!
//! Modules: `config`, `writer` (queue, group commit, apply), `table` (rows
//! in memory: active, frozen, sealed), `batch` (records to Arrow), `sealed`
//! and `capped` (scans DataFusion reads), `parquet`, `seq_index`, `query`
//! (DataFusion, grants, limits), `share` (a people's query's part of the
//! SQL memory pool, and its slot), `recover`, `import` ([`Importer`]: bulk loads written straight into
//! Parquet files, as flushes would, for a store that is not open).
//!
//! Small-file compaction is not done: each flush writes one file per table
//! with rows, so a store flushed every few minutes grows many files a day.

pub(crate) mod batch;
mod capped;
mod config;
mod import;
mod parquet;
mod query;
mod recover;
mod sealed;
mod seq_index;
mod share;
mod table;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, oneshot};
use tracing::info;

pub use config::EmbeddedConfig;
pub use import::{Imported, Importer};

use self::query::QueryEngine;
use self::seq_index::SeqIndex;
use self::table::{Tables, seal_due};
use self::writer::{Msg, Writer};
use crate::schema::Table;
use crate::wal::WalWriter;
use crate::{
    AckToken, QueryOptions, QueryOutput, Recovery, RefTable, SeqKey, Store, StoreError, Write,
};

/// State the store's handle, the writer thread and the flusher thread share.
pub(crate) struct Shared {
    /// Canonical root directory.
    pub(crate) root: PathBuf,
    pub(crate) tables: RwLock<Tables>,
    /// Per device, the seqs the Parquet files hold (see `seq_index`). Lock
    /// order: this, then `tables`, so that a flush publishing files and
    /// folding their rows in looks like one step to `recover`.
    pub(crate) seq_index: Mutex<SeqIndex>,
    /// Records queued and not yet committed (`queue_capacity` permits).
    pub(crate) queue: Semaphore,
    /// Why writes cannot proceed right now; `None` when healthy.
    health: Mutex<Option<String>>,
    /// When the last Parquet flush failed, if the last one did.
    flush_failure: Mutex<Option<Instant>>,
    /// Wakes a writer waiting out `commit_interval` for a control message.
    pub(crate) urgent: writer::Urgent,
    #[cfg(test)]
    inject_faults: std::sync::atomic::AtomicU32,
}

impl Shared {
    pub(crate) fn set_health(&self, reason: Option<String>) {
        *self.health.lock() = reason;
    }

    pub(crate) fn set_flush_failure(&self, at: Option<Instant>) {
        *self.flush_failure.lock() = at;
    }

    pub(crate) fn last_flush_failure(&self) -> Option<Instant> {
        *self.flush_failure.lock()
    }

    /// Whether the next WAL append should fail (tests of the retry path).
    #[cfg(test)]
    pub(crate) fn take_injected_fault(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.inject_faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The embedded store. Cheap to share (`Arc`); every method takes `&self`.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    /// `None` once closed. The lock orders sends against `close`, so no
    /// write can be accepted after the writer's last message.
    sender: Mutex<Option<Sender<Msg>>>,
    queue_capacity: usize,
    engine: QueryEngine,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store, replays the WAL into memory, starts the writer.
    /// `durable`: receives, in commit order, the ack tokens of each group commit after its fsync.
    pub async fn open(
        config: EmbeddedConfig,
        durable: tokio::sync::mpsc::Sender<Vec<AckToken>>,
    ) -> Result<Arc<EmbeddedStore>, StoreError> {
        let config = config.normalized();
        let prepare_config = config.clone();
        let (shared, wal, next_frame) =
            tokio::task::spawn_blocking(move || prepare(&prepare_config))
                .await
                .map_err(|e| StoreError::Other(format!("opening the store panicked: {e}")))??;
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel();
        let queue_capacity = config.queue_capacity;
        let engine = QueryEngine::new(&shared.root, config.sql.clone())?;
        Writer::spawn(Arc::clone(&shared), config, wal, next_frame, rx, durable)?;
        Ok(Arc::new(EmbeddedStore {
            shared,
            sender: Mutex::new(Some(tx)),
            queue_capacity,
            engine,
        }))
    }

    /// Flush memory to Parquet, fsync, stop the writer. Everything written before is durable after.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut sender = self.sender.lock();
            let Some(s) = sender.take() else {
                return Err(StoreError::Closed);
            };
            self.shared.queue.close();
            s.send(Msg::Close(tx)).map_err(|_| StoreError::Closed)?;
            self.shared.urgent.ask();
        }
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Writes everything committed so far to Parquet and removes the WAL
    /// segments that held it (`close` does this too). For tests, backups and
    /// operators; the store also flushes by itself (`flush_rows`, `flush_interval`).
    pub async fn flush_parquet(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::FlushParquet(tx))?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let sender = self.sender.lock();
        let s = sender.as_ref().ok_or(StoreError::Closed)?;
        let control = !matches!(msg, Msg::Write { .. });
        s.send(msg).map_err(|_| StoreError::Closed)?;
        if control {
            self.shared.urgent.ask();
        }
        Ok(())
    }

    /// Runs SQL for the store itself (no row limit).
    pub(crate) async fn query_all(&self, sql: &str) -> Result<QueryOutput, StoreError> {
        let opts = QueryOptions {
            timeout: std::time::Duration::from_secs(600),
            max_rows: usize::MAX,
            max_bytes: usize::MAX,
            regions: None,
            guarded: false,
        };
        self.query(sql, &opts).await
    }

    #[cfg(test)]
    pub(crate) fn inject_wal_faults(&self, n: u32) {
        self.shared
            .inject_faults
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Blocking part of `open`: directories, Parquet files, WAL replay.
fn prepare(config: &EmbeddedConfig) -> Result<(Shared, WalWriter, u64), StoreError> {
    let io_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(&config.dir).map_err(io_err(&config.dir))?;
    let root = std::fs::canonicalize(&config.dir).map_err(io_err(&config.dir))?;
    let wal_dir = root.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;

    let (files, covered) = parquet::open_files(&root)?;
    let seq_index = open_seq_index(&root, &files)?;
    let shared = Shared {
        root: root.clone(),
        tables: RwLock::new(Tables::new(files)),
        seq_index: Mutex::new(seq_index),
        queue: Semaphore::new(config.queue_capacity),
        health: Mutex::new(None),
        flush_failure: Mutex::new(None),
        urgent: writer::Urgent::default(),
        #[cfg(test)]
        inject_faults: std::sync::atomic::AtomicU32::new(0),
    };
    let mut skipped = 0u64;
    let replayed = crate::wal::replay(&wal_dir, |segment, records| {
        let before = records.len();
        let fresh: Vec<_> = records
            .into_iter()
            .filter(|r| segment > covered[Table::of_record(r).index()])
            .map(Arc::new)
            .collect();
        skipped += (before - fresh.len()) as u64;
        let due = shared.tables.write().apply(fresh);
        seal_due(&shared.tables, &due);
    })?;
    info!(
        dir = %root.display(),
        frames = replayed.frames,
        records = replayed.records,
        already_in_parquet = skipped,
        "Embedded store opened; WAL replayed."
    );
    let wal =
        WalWriter::open(wal_dir.clone(), replayed.last_segment + 1).map_err(io_err(&wal_dir))?;
    Ok((shared, wal, replayed.last_frame + 1))
}

/// The seq index with every Parquet file folded in: files it does not cover
/// yet (written after it, or all of them when it is missing) are read now,
/// and the index is saved again so the next start need not.
fn open_seq_index(
    root: &std::path::Path,
    files: &[Vec<table::ParquetFile>; 7],
) -> Result<SeqIndex, StoreError> {
    let started = Instant::now();
    let mut index = SeqIndex::load(root);
    let mut newest = index.covered;
    let (mut read, mut rows) = (0usize, 0usize);
    for table in Table::ALL {
        for file in &files[table.index()] {
            let n = file
                .path
                .file_name()
                .and_then(|n| parquet::covered_segment(&n.to_string_lossy()))
                .unwrap_or(0);
            if n <= index.covered {
                continue;
            }
            newest = newest.max(n);
            rows += index.fold_file(table, &file.path)?;
            read += 1;
        }
    }
    index.covered = newest;
    if read > 0 {
        seq_index::save(root, &index.encode()?)?;
    }
    info!(
        devices = index.devices.len(),
        parquet_files_read = read,
        rows,
        ms = started.elapsed().as_millis() as u64,
        "Seq index loaded."
    );
    Ok(index)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let permits = crate::reserve(&self.shared.queue, batch.len(), self.queue_capacity).await?;
        self.send(Msg::Write {
            writes: batch,
            permits,
        })
        .inspect_err(|_| self.shared.queue.add_permits(permits as usize))
    }

    async fn query(&self, sql: &str, opts: &QueryOptions) -> Result<QueryOutput, StoreError> {
        let snapshot = self.shared.tables.read().snapshot();
        self.engine.run(snapshot, sql, opts).await
    }

    async fn recover(&self) -> Result<Recovery, StoreError> {
        recover::recover(self).await
    }

    async fn stored_seqs(&self, keys: &[SeqKey]) -> Result<HashSet<SeqKey>, StoreError> {
        recover::stored_seqs(self, keys).await
    }

    async fn set_reference_table(&self, table: RefTable) -> Result<(), StoreError> {
        let (name, data) = crate::reference::convert(table)?;
        self.shared.tables.write().set_ref(name, data);
        Ok(())
    }

    async fn set_view(&self, name: &str, select: &str) -> Result<(), StoreError> {
        let previous = self
            .shared
            .tables
            .write()
            .set_view(name.to_owned(), select.to_owned());
        let check = format!("SELECT * FROM {name} LIMIT 0");
        if let Err(e) = self.query(&check, &QueryOptions::default()).await {
            self.shared.tables.write().remove_view(name, previous);
            return Err(StoreError::InvalidQuery(format!("view {name}: {e}")));
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        EmbeddedStore::close(self).await
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
        match &*self.shared.health.lock() {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}
