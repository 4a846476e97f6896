//! The writer thread: group commit into the WAL, then memory, then tokens.
//! A second thread writes Parquet so that a flush never stalls commits.
//!
//! ```text
//!  Store::write ──Msg (std mpsc; records bounded by the queue semaphore)──▶ writer thread
//!     take ≤ group_commit_max records ─▶ one WAL frame ─▶ sync_data
//!     ─▶ apply to active tables ─▶ release queue permits ─▶ durable.blocking_send(tokens)
//!  flush due (rows / age / asked) ─▶ rotate WAL, freeze active ─▶ Job ─▶ flusher thread
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::Shared;
use super::config::EmbeddedConfig;
use super::parquet::flush_frozen;
use super::table::seal_due;
use crate::wal::{WalWriter, encode_frame};
use crate::{AckToken, StoreError, Write};

pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Msg {
    /// Records to commit; `permits` go back to the queue semaphore once they are.
    Write { writes: Vec<Write>, permits: u32 },
    /// Answered once everything sent before is committed and visible.
    Flush(Reply),
    /// Answered once everything sent before is in Parquet.
    FlushParquet(Reply),
    /// Like `FlushParquet`, then the threads stop.
    Close(Reply),
}

/// First pause after a failed WAL append; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A failed Parquet flush is tried again after this long (its rows stay in
/// memory and in the WAL meanwhile).
const FLUSH_RETRY: Duration = Duration::from_secs(30);
/// Longest sleep of an idle writer; it wakes earlier for a due flush.
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// Shortest sleep, so that a due flush that has to wait is not polled in a spin.
const MIN_WAKE: Duration = Duration::from_millis(100);

pub(crate) struct Writer {
    shared: Arc<Shared>,
    config: EmbeddedConfig,
    wal: WalWriter,
    next_frame: u64,
    rx: Receiver<Msg>,
    durable: tokio::sync::mpsc::Sender<Vec<AckToken>>,
    durable_open: bool,
    flusher: Flusher,
    /// When the oldest row now in `active` was committed.
    oldest_active: Option<Instant>,
    /// When the last commit began (see [`Writer::linger`]).
    last_commit: Option<Instant>,
}

impl Writer {
    /// Starts the writer and flusher threads.
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        config: EmbeddedConfig,
        wal: WalWriter,
        next_frame: u64,
        rx: Receiver<Msg>,
        durable: tokio::sync::mpsc::Sender<Vec<AckToken>>,
    ) -> Result<(), StoreError> {
        let flusher = Flusher::spawn(Arc::clone(&shared))?;
        let oldest_active = (shared.tables.read().active_rows() > 0).then(Instant::now);
        let writer = Writer {
            shared,
            config,
            wal,
            next_frame,
            rx,
            durable,
            durable_open: true,
            flusher,
            oldest_active,
            last_commit: None,
        };
        thread::Builder::new()
            .name("vigil-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Other(format!("cannot start the WAL writer thread: {e}")))?;
        Ok(())
    }

    fn run(mut self) {
        let mut backlog: VecDeque<Msg> = VecDeque::new();
        loop {
            if backlog.is_empty() {
                match self.rx.recv_timeout(self.idle_timeout()) {
                    Ok(msg) => backlog.push_back(msg),
                    Err(RecvTimeoutError::Timeout) => {
                        self.maybe_flush();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        // Dropped without close(): everything sent is committed; the WAL holds it.
                        info!("Store dropped without close; WAL writer stops.");
                        return;
                    }
                }
            }
            // Bounded: writes hold queue permits, and control messages are one per caller.
            backlog.extend(self.rx.try_iter());
            self.linger(&mut backlog);

            let (group, permits) = take_group(&mut backlog, self.config.group_commit_max);
            if !group.is_empty() {
                self.commit(group, permits);
            }
            match backlog.front() {
                Some(Msg::Write { .. }) | None => {}
                Some(_) => match backlog.pop_front() {
                    Some(Msg::Flush(reply)) => {
                        let _ = reply.send(Ok(()));
                    }
                    Some(Msg::FlushParquet(reply)) => self.start_flush(Some(reply)),
                    Some(Msg::Close(reply)) => {
                        let result = self.finish();
                        let _ = reply.send(result);
                        return;
                    }
                    Some(Msg::Write { .. }) | None => {}
                },
            }
            self.maybe_flush();
        }
    }

    /// Waits until `commit_interval` has passed since the last commit
    /// began, then takes what came meanwhile: under load fewer and larger
    /// frames, each one `fsync` and one wake-up of the ack path, instead of
    /// one per handful of records. It sleeps rather than receives, so that
    /// each write meanwhile does not wake it. A write after a quiet spell
    /// commits at once, and so does a full frame; a control message (a
    /// flush, the close) ends the wait ([`Urgent`]).
    fn linger(&mut self, backlog: &mut VecDeque<Msg>) {
        let Some(last) = self.last_commit else {
            return;
        };
        let mut records = 0;
        for msg in backlog.iter() {
            match msg {
                Msg::Write { writes, .. } => records += writes.len(),
                _ => return,
            }
        }
        // A full frame is there already.
        if records >= self.config.group_commit_max {
            return;
        }
        let due = last + self.config.commit_interval;
        if due > Instant::now() {
            self.shared.urgent.sleep_until(due);
            backlog.extend(self.rx.try_iter());
        }
    }

    /// How long to wait for work before checking the flush deadline.
    fn idle_timeout(&self) -> Duration {
        let mut wait = IDLE_WAKE;
        if let Some(oldest) = self.oldest_active {
            wait = wait.min(self.config.flush_interval.saturating_sub(oldest.elapsed()));
        }
        if self.shared.tables.read().has_frozen() {
            wait = wait.min(FLUSH_RETRY);
        }
        // Not zero: while a flush runs (or cannot start) a due deadline stays due.
        wait.max(MIN_WAKE)
    }

    /// Appends one frame (retrying, into fresh segments, until the disk takes
    /// it), then makes the records visible and reports their tokens.
    fn commit(&mut self, group: Vec<Write>, permits: u32) {
        self.last_commit = Some(Instant::now());
        let frame = match encode_frame(self.next_frame, group.iter().map(|w| &w.record)) {
            Ok(frame) => frame,
            Err(e) => {
                // Our types always encode; if one ever does not, say so loudly
                // and keep the engine running (the tokens are never sent).
                error!(error = %e, records = group.len(), "Cannot encode records for the WAL; they are dropped.");
                self.shared.queue.add_permits(permits as usize);
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        let mut failed = false;
        loop {
            match self.append(&frame) {
                Ok(()) => break,
                Err(e) => {
                    let path = self.wal.current_path();
                    error!(path = %path.display(), error = %e, retry_in_ms = backoff.as_millis() as u64, "WAL append failed; retrying in a fresh segment.");
                    self.shared.set_health(Some(format!(
                        "write-ahead log {}: {e} (retrying)",
                        path.display()
                    )));
                    failed = true;
                    self.wal.abandon();
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if failed {
            info!(path = %self.wal.current_path().display(), "WAL writes work again.");
            self.shared.set_health(None);
        }
        self.next_frame += 1;

        let mut tokens = Vec::new();
        let mut records = Vec::with_capacity(group.len());
        for w in group {
            tokens.extend(w.ack);
            records.push(Arc::new(w.record));
        }
        let due = self.shared.tables.write().apply(records);
        seal_due(&self.shared.tables, &due);
        self.oldest_active.get_or_insert_with(Instant::now);
        self.shared.queue.add_permits(permits as usize);
        if !tokens.is_empty() && self.durable_open && self.durable.blocking_send(tokens).is_err() {
            warn!("Nobody receives durable tokens any more; committing without reporting them.");
            self.durable_open = false;
        }
    }

    fn append(&mut self, frame: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if self.shared.take_injected_fault() {
            return Err(std::io::Error::other(
                "injected fault (No space left on device)",
            ));
        }
        self.wal.append(frame)
    }

    fn maybe_flush(&mut self) {
        if self.flusher.busy() {
            return;
        }
        let (rows, has_frozen) = {
            let t = self.shared.tables.read();
            (t.active_rows(), t.has_frozen())
        };
        let aged = self
            .oldest_active
            .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
        let retry = has_frozen
            && self
                .shared
                .last_flush_failure()
                .is_none_or(|t| t.elapsed() >= FLUSH_RETRY);
        if rows >= self.config.flush_rows || (rows > 0 && aged) || retry {
            self.start_flush(None);
        }
    }

    /// Starts a new WAL segment, freezes what is in memory and hands it to the flusher.
    fn start_flush(&mut self, reply: Option<Reply>) {
        if self.shared.tables.read().active_rows() > 0 {
            match self.wal.rotate() {
                Ok(upto) => {
                    self.shared.tables.write().freeze(upto);
                    self.oldest_active = None;
                }
                Err(e) => {
                    // The next commit opens a segment again (and retries until it can).
                    let path = self.wal.current_path();
                    error!(path = %path.display(), error = %e, "Cannot start a new WAL segment; Parquet flush postponed.");
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(StoreError::Io { path, source: e }));
                    }
                    return;
                }
            }
        }
        self.flusher.submit(reply);
    }

    /// Final flush at close; waits for the flusher to finish.
    fn finish(&mut self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.start_flush(Some(tx));
        self.flusher.stop();
        let result = rx.blocking_recv().unwrap_or(Err(StoreError::Closed));
        match &result {
            Ok(()) => info!("Store closed; memory flushed to Parquet."),
            Err(e) => {
                error!(error = %e, "Store closed but the last Parquet flush failed; the WAL keeps those rows.")
            }
        }
        result
    }
}

/// Control messages (a flush, the close) wake a writer waiting out
/// `commit_interval`; writes do not, so that each does not cost a wake-up.
#[derive(Default)]
pub(crate) struct Urgent {
    asked: parking_lot::Mutex<bool>,
    cond: parking_lot::Condvar,
}

impl Urgent {
    /// Called after a control message is sent.
    pub(crate) fn ask(&self) {
        *self.asked.lock() = true;
        self.cond.notify_one();
    }

    /// Sleeps until `deadline`, or less if asked meanwhile (or before:
    /// an ask is kept until a sleep takes it).
    fn sleep_until(&self, deadline: Instant) {
        let mut asked = self.asked.lock();
        while !*asked && !self.cond.wait_until(&mut asked, deadline).timed_out() {}
        *asked = false;
    }
}

/// Takes up to `max` records from the front of the backlog (stopping at a
/// control message). Returns them with the permits of every message finished.
fn take_group(backlog: &mut VecDeque<Msg>, max: usize) -> (Vec<Write>, u32) {
    let mut group: Vec<Write> = Vec::new();
    let mut permits = 0u32;
    while group.len() < max {
        let Some(Msg::Write { writes, permits: p }) = backlog.front_mut() else {
            break;
        };
        let room = max - group.len();
        if writes.len() <= room {
            group.append(writes);
            permits += *p;
            backlog.pop_front();
        } else {
            group.extend(writes.drain(..room));
        }
    }
    (group, permits)
}

struct Job {
    reply: Option<Reply>,
}

/// The Parquet thread. Jobs run one at a time; each takes every frozen
/// generation present when it starts, so queued jobs coalesce.
struct Flusher {
    jobs: Option<Sender<Job>>,
    pending: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    fn spawn(shared: Arc<Shared>) -> Result<Flusher, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pending);
        let handle = thread::Builder::new()
            .name("vigil-parquet".into())
            .spawn(move || {
                for job in rx {
                    let result = flush_frozen(&shared);
                    match &result {
                        Ok(()) => shared.set_flush_failure(None),
                        Err(e) => {
                            error!(error = %e, "Parquet flush failed; rows stay in memory and in the WAL.");
                            shared.set_flush_failure(Some(Instant::now()));
                        }
                    }
                    counter.fetch_sub(1, Ordering::SeqCst);
                    if let Some(reply) = job.reply {
                        let _ = reply.send(result);
                    }
                }
            })
            .map_err(|e| StoreError::Other(format!("cannot start the Parquet thread: {e}")))?;
        Ok(Flusher {
            jobs: Some(tx),
            pending,
            handle: Some(handle),
        })
    }

    fn busy(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 0
    }

    fn submit(&mut self, reply: Option<Reply>) {
        let Some(jobs) = &self.jobs else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(StoreError::Closed));
            }
            return;
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::SendError(job)) = jobs.send(Job { reply }) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(StoreError::Closed));
            }
        }
    }

    /// Lets queued jobs finish, then joins the thread.
    fn stop(&mut self) {
        self.jobs = None;
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            error!("The Parquet thread panicked.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn msg(n: usize) -> Msg {
        let writes = testdata::one_of_each(1)
            .into_iter()
            .cycle()
            .take(n)
            .map(|record| Write { record, ack: None })
            .collect();
        Msg::Write {
            writes,
            permits: n as u32,
        }
    }

    #[test]
    fn groups_stop_at_the_size_limit_and_at_control_messages() {
        let (tx, _rx) = oneshot::channel();
        let mut backlog: VecDeque<Msg> = [msg(3), msg(5), Msg::Flush(tx), msg(2)]
            .into_iter()
            .collect();
        let (group, permits) = take_group(&mut backlog, 4);
        // 3 whole + 1 of the second message, whose permits wait for its last record.
        assert_eq!((group.len(), permits), (4, 3));
        let (group, permits) = take_group(&mut backlog, 4);
        assert_eq!((group.len(), permits), (4, 5));
        assert!(matches!(backlog.front(), Some(Msg::Flush(_))));
        assert_eq!(take_group(&mut backlog, 4).0.len(), 0);
    }
}
