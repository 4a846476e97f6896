//! Accepted records to the local log, the local log to PostgreSQL.
//!
//! ```text
//!  Store::write ──Msg (std mpsc; records bounded by the queue semaphore)──▶ writer thread
//!     batch closes at batch_rows or batch_age ─▶ wal/NNNN.log (write, fsync, rename, fsync dir)
//!     ─▶ queue permits back ─▶ Ship::Batch (records kept in memory for the
//!        first max_backlog_batches, read back from disk beyond) ─▶ shipper task
//!  shipper: one transaction per batch: COPY (binary) into the tables (on a
//!     duplicate key: again, into temp staging tables, then INSERT … SELECT …
//!     ON CONFLICT DO NOTHING), move vigil_wal_position ─▶ commit
//!     ─▶ tokens on `durable` ─▶ remove the log file
//! ```
//!
//! PostgreSQL going away only stops the shipper: it retries the same batch
//! with backoff, reports the outage through `health`, and the writer keeps
//! taking records into the local log. Back then, the backlog drains in
//! order. A batch whose commit reply was lost is recognised by its position
//! and skipped, so nothing is stored twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use futures::SinkExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tracing::{debug, error, info, warn};

use super::Shared;
use super::config::PostgresConfig;
use super::copy::{CopyBuffer, columns};
use crate::schema::Table;
use crate::wal::{encode_frame, read_segment, segment_path, sync_dir};
use crate::{AckToken, Record, StoreError, Write};

pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Msg {
    Write {
        writes: Vec<Write>,
        permits: u32,
    },
    /// Answered once everything sent before is in PostgreSQL.
    Flush(Reply),
    /// Like `Flush`, then the writer stops (the shipper once it is done).
    Close(Reply),
}

/// One closed batch on its way to PostgreSQL.
pub(crate) struct Batch {
    pub(crate) no: u64,
    /// Records in it (0 when unknown), for the backlog metric.
    pub(crate) rows: u64,
    /// `None`: read it back from the log file (backlog beyond what memory holds).
    pub(crate) records: Option<Vec<Record>>,
    pub(crate) tokens: Vec<AckToken>,
}

pub(crate) enum Ship {
    Batch(Batch),
    Flush(Reply),
    Close(Reply),
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// How often an idle shipper checks that PostgreSQL is there, and how long it waits.
const IDLE_PING: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: PostgresConfig,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) ship: mpsc::UnboundedSender<Ship>,
    pub(crate) next_no: u64,
    pub(crate) pending: Vec<Write>,
    pub(crate) permits: u32,
    pub(crate) since: Option<Instant>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        loop {
            let wait = match self.since {
                Some(t) => self.config.batch_age.saturating_sub(t.elapsed()),
                None => IDLE_WAKE,
            };
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Write { writes, permits }) => {
                    self.since.get_or_insert_with(Instant::now);
                    self.pending.extend(writes);
                    self.permits += permits;
                    if self.pending.len() >= self.config.batch_rows {
                        self.close_batch();
                    }
                }
                Ok(Msg::Flush(reply)) => {
                    self.close_batch();
                    let _ = self.ship.send(Ship::Flush(reply));
                }
                Ok(Msg::Close(reply)) => {
                    self.close_batch();
                    let _ = self.ship.send(Ship::Close(reply));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self
                        .since
                        .is_some_and(|t| t.elapsed() >= self.config.batch_age)
                    {
                        self.close_batch();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.close_batch();
                    info!(
                        "PostgreSQL store dropped without close; the local log keeps what is not shipped."
                    );
                    return;
                }
            }
        }
    }

    /// Writes the pending records as one log file and hands them to the shipper.
    fn close_batch(&mut self) {
        self.since = None;
        if self.pending.is_empty() {
            return;
        }
        // Back-pressure while PostgreSQL is up but behind; during an outage
        // the local log takes everything.
        self.shared.wait_for_room(self.config.max_backlog_batches);

        let writes = std::mem::take(&mut self.pending);
        let no = self.next_no;
        self.next_no += 1;
        let frame = match encode_frame(no, writes.iter().map(|w| &w.record)) {
            Ok(frame) => frame,
            Err(e) => {
                error!(error = %e, records = writes.len(), "Cannot encode records for the local log; they are dropped.");
                self.release();
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            match write_file(&self.config.wal_dir, no, &frame) {
                Ok(()) => break,
                Err(e) => {
                    error!(dir = %self.config.wal_dir.display(), error = %e, "Local log write failed; retrying.");
                    self.shared
                        .set_local_health(Some(format!("local write-ahead log: {e} (retrying)")));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.shared.set_local_health(None);
        self.release();

        let mut tokens = Vec::new();
        let mut records = Vec::with_capacity(writes.len());
        for w in writes {
            tokens.extend(w.ack);
            records.push(w.record);
        }
        let rows = records.len() as u64;
        let in_memory = self.shared.add_backlog(rows) <= self.config.max_backlog_batches;
        let batch = Batch {
            no,
            rows,
            records: in_memory.then_some(records),
            tokens,
        };
        if self.ship.send(Ship::Batch(batch)).is_err() {
            warn!(
                batch = no,
                "The shipper is gone; the batch stays in the local log."
            );
        }
    }

    fn release(&mut self) {
        self.shared.queue.add_permits(self.permits as usize);
        self.permits = 0;
    }
}

/// Written under a temporary name and renamed once synced, so a log file
/// is either whole or absent.
fn write_file(dir: &Path, no: u64, frame: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = segment_path(dir, no);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(frame)?;
    file.sync_data()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// The shipper task: batches in order into PostgreSQL, tokens out after commit.
pub(crate) struct Shipper {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: PostgresConfig,
    pub(crate) wal_id: String,
    pub(crate) rx: mpsc::UnboundedReceiver<Ship>,
    pub(crate) durable: mpsc::Sender<Vec<AckToken>>,
    pub(crate) client: Option<Client>,
}

impl Shipper {
    pub(crate) async fn run(mut self) {
        loop {
            let msg = match tokio::time::timeout(IDLE_PING, self.rx.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(_) => {
                    self.ping().await;
                    continue;
                }
            };
            match msg {
                Ship::Batch(batch) => self.ship(batch).await,
                Ship::Flush(reply) => {
                    let _ = reply.send(Ok(()));
                }
                Ship::Close(reply) => {
                    let _ = reply.send(Ok(()));
                    return;
                }
            }
        }
    }

    /// The shipper's connection, made again (with its staging tables) when lost.
    async fn connection(&mut self) -> Result<Client, StoreError> {
        match self.client.take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => {
                let c = super::connect_owner(&self.config).await?;
                create_staging(&c).await?;
                Ok(c)
            }
        }
    }

    /// While no batch comes, a trivial query now and then: an outage shows
    /// in health and metrics before the next write runs into it.
    async fn ping(&mut self) {
        let result = tokio::time::timeout(PING_TIMEOUT, async {
            let client = self.connection().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(StoreError::db("checking the connection"))?;
            Ok::<_, StoreError>(client)
        })
        .await
        .unwrap_or_else(|_| Err(StoreError::Other("no answer in time".into())));
        match result {
            Ok(client) => {
                if !self.shared.db_up() {
                    info!("PostgreSQL is back.");
                }
                self.shared.set_db_health(None);
                self.client = Some(client);
            }
            Err(e) => {
                if self.shared.db_up() {
                    error!(error = %e, "PostgreSQL is unavailable; readings are kept in the local log until it is back.");
                }
                self.shared.set_db_health(Some(format!(
                    "PostgreSQL unavailable ({e}); {} batch(es) waiting in the local log",
                    self.shared.backlog()
                )));
            }
        }
    }

    async fn ship(&mut self, batch: Batch) {
        let path = segment_path(&self.config.wal_dir, batch.no);
        let records = match batch.records {
            Some(r) => r,
            None => {
                let (no, p) = (batch.no, path.clone());
                match tokio::task::spawn_blocking(move || read_segment(no, p)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        error!(path = %path.display(), error = %e, "Cannot read a batch back from the local log; it is left there.");
                        self.shared.remove_backlog(batch.rows);
                        return;
                    }
                    Err(e) => {
                        error!(error = %e, "Reading the local log panicked.");
                        self.shared.remove_backlog(batch.rows);
                        return;
                    }
                }
            }
        };
        let mut backoff = FIRST_BACKOFF;
        let mut outage_since: Option<Instant> = None;
        loop {
            let outcome = match self.connection().await {
                Ok(mut client) => {
                    let r = ship_batch(&mut client, &self.wal_id, batch.no, &records).await;
                    if r.is_ok() || !client.is_closed() {
                        self.client = Some(client);
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => break,
                Err(e) if is_data_error(&e) => {
                    // PostgreSQL will never take it; keep it on disk for a person.
                    let aside = path.with_extension("rejected");
                    error!(batch = batch.no, error = %e, path = %aside.display(), "PostgreSQL refuses this batch; it is kept aside in the local log directory.");
                    let _ = std::fs::rename(&path, &aside);
                    self.shared.remove_backlog(batch.rows);
                    return;
                }
                Err(e) => {
                    // Logged once per outage (an idle ping may have seen it first).
                    if self.shared.db_up() {
                        error!(batch = batch.no, error = %e, "PostgreSQL is unavailable; readings are kept in the local log until it is back.");
                    }
                    outage_since.get_or_insert_with(Instant::now);
                    self.shared.set_db_health(Some(format!(
                        "PostgreSQL unavailable ({e}); {} batch(es) waiting in the local log",
                        self.shared.backlog()
                    )));
                    self.client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if !self.shared.db_up() {
            info!(
                retried_s = outage_since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                backlog = self.shared.backlog(),
                "PostgreSQL is back; draining the local log."
            );
        }
        self.shared.set_db_health(None);
        if !batch.tokens.is_empty() && self.durable.send(batch.tokens).await.is_err() {
            // Nobody listens for acks any more (shutting down).
        }
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "Cannot remove a shipped batch from the local log; it will be skipped on replay.");
        }
        self.shared.remove_backlog(batch.rows);
    }
}

/// A value PostgreSQL refuses (class 22) will be refused again.
fn is_data_error(e: &StoreError) -> bool {
    match e {
        StoreError::Database { source, .. } => {
            source.code().is_some_and(|c| c.code().starts_with("22"))
        }
        _ => false,
    }
}

/// Temp staging tables, one per stored table, emptied at every commit.
pub(crate) async fn create_staging(client: &Client) -> Result<(), StoreError> {
    let mut sql = String::new();
    for t in Table::ALL {
        sql.push_str(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS vigil_stage_{n} (LIKE {n}) ON COMMIT DELETE ROWS;\n",
            n = t.name()
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(StoreError::db("creating staging tables"))
}

/// How a batch's rows reach their tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// COPY straight into the tables: the common case, as fast as a plain COPY.
    Direct,
    /// COPY into temp staging, then `INSERT … ON CONFLICT DO NOTHING`: for a
    /// batch holding rows PostgreSQL already has (a device re-sent them).
    Staging,
}

/// One batch in one transaction; `Ok` also when it was shipped before.
pub(crate) async fn ship_batch(
    client: &mut Client,
    wal_id: &str,
    no: u64,
    records: &[Record],
) -> Result<(), StoreError> {
    let mut buffers: HashMap<Table, CopyBuffer> = HashMap::new();
    for r in records {
        let t = Table::of_record(r);
        buffers.entry(t).or_insert_with(CopyBuffer::new).push(r);
    }
    let data: Vec<(Table, bytes::Bytes)> = Table::ALL
        .into_iter()
        .filter_map(|t| buffers.remove(&t).map(|b| (t, b.finish())))
        .collect();
    // A duplicate breaks a unique key and rolls the direct attempt back
    // whole; the batch then goes again through staging, which skips it.
    match ship_route(client, wal_id, no, &data, Route::Direct).await {
        Err(e) if is_unique_violation(&e) => {
            debug!(
                batch = no,
                "Batch holds rows PostgreSQL already has; shipping it through staging."
            );
            ship_route(client, wal_id, no, &data, Route::Staging).await
        }
        other => other,
    }
}

fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Database { source, .. }
        if source.code().is_some_and(|c| c.code() == "23505"))
}

async fn ship_route(
    client: &mut Client,
    wal_id: &str,
    no: u64,
    data: &[(Table, bytes::Bytes)],
    route: Route,
) -> Result<(), StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(StoreError::db("starting a batch"))?;
    let done = tx
        .query_opt(
            "SELECT segment FROM vigil_wal_position WHERE wal_id = $1 FOR UPDATE",
            &[&wal_id],
        )
        .await
        .map_err(StoreError::db("reading the log position"))?;
    if done.is_some_and(|row| row.get::<_, i64>(0) >= no as i64) {
        tx.rollback().await.ok();
        info!(
            batch = no,
            "Batch already in PostgreSQL (its commit reply was lost); skipped."
        );
        return Ok(());
    }
    for (t, bytes) in data {
        let name = t.name();
        let cols = columns(*t);
        let target = match route {
            Route::Direct => name.to_owned(),
            Route::Staging => format!("pg_temp.vigil_stage_{name}"),
        };
        let sink = tx
            .copy_in(&format!(
                "COPY {target} ({cols}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(StoreError::db(format!("starting COPY into {name}")))?;
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes.clone())
            .await
            .map_err(StoreError::db(format!("COPY into {name}")))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(StoreError::db(format!("finishing COPY into {name}")))?;
        if route == Route::Staging {
            tx.execute(
                &format!(
                    "INSERT INTO {name} ({cols}) SELECT {cols} FROM pg_temp.vigil_stage_{name} ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await
            .map_err(StoreError::db(format!("inserting into {name}")))?;
        }
    }
    tx.execute(
        "INSERT INTO vigil_wal_position (wal_id, segment) VALUES ($1, $2)
         ON CONFLICT (wal_id) DO UPDATE SET segment = EXCLUDED.segment, updated_at = now()",
        &[&wal_id, &(no as i64)],
    )
    .await
    .map_err(StoreError::db("moving the log position"))?;
    tx.commit()
        .await
        .map_err(StoreError::db("committing a batch"))
}

/// Records in a log file, from its first bytes (0 when unreadable).
pub(crate) fn count_records(path: &Path) -> u64 {
    use crate::wal::{HEADER_LEN, frame_record_count};
    use std::io::Read as _;
    let mut head = Vec::new();
    match std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_LEN as u64 + 20).read_to_end(&mut head))
    {
        Ok(n) if n > HEADER_LEN => frame_record_count(&head[HEADER_LEN..]).unwrap_or(0),
        _ => 0,
    }
}

/// Log files left by an earlier run, in order; stray temporary files removed.
pub(crate) fn backlog(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let io_err = |source| StoreError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = std::fs::remove_file(&path);
        }
    }
    crate::wal::list_segments(dir)
}
