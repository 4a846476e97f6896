//! One people's query's share of the SQL memory pool, and its gate slot.
//!
//! Every reservation a query makes goes through its own `Share`, which
//! forwards it to the pool of all people's queries and counts what this
//! query still holds. The query's gate slot is given back only once that
//! count is zero: when a query ends (answered, failed, timed out), the
//! sub-tasks DataFusion spawned are aborted and drop their buffers a moment
//! later on other SQL threads. Without the wait, the next query would find
//! the pool still full of a finished query's memory and fail for it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::error::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use tokio::sync::OwnedSemaphorePermit;
use tracing::warn;

/// How long a slot waits for its query's memory to come back: aborted
/// tasks drop theirs at their next poll, well within this.
const RETURN_WAIT: Duration = Duration::from_secs(2);

/// A query's view of the shared pool, counting its own bytes.
#[derive(Debug)]
pub(crate) struct Share {
    shared: Arc<dyn MemoryPool>,
    held: AtomicUsize,
}

impl Share {
    pub(crate) fn new(shared: Arc<dyn MemoryPool>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes this query holds in the shared pool now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.shared)
    }
}

impl MemoryPool for Share {
    fn name(&self) -> &str {
        self.shared.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.held.fetch_add(additional, Ordering::AcqRel);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.held.fetch_sub(shrink, Ordering::AcqRel);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.shared.try_grow(reservation, additional)?;
        self.held.fetch_add(additional, Ordering::AcqRel);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.shared.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.shared.memory_limit()
    }
}

/// A gate slot that is released once its query's share is empty. Dropped
/// with memory still held (the usual case right after an abort), it hands
/// the wait to a task on the current runtime instead of blocking.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    share: Arc<Share>,
}

impl Slot {
    pub(crate) fn new(permit: OwnedSemaphorePermit, share: Arc<Share>) -> Self {
        Self {
            permit: Some(permit),
            share,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        if self.share.held() == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let share = Arc::clone(&self.share);
        runtime.spawn(async move {
            let started = Instant::now();
            while share.held() > 0 {
                if started.elapsed() > RETURN_WAIT {
                    warn!(
                        bytes = share.held(),
                        "A finished SQL query still holds memory; its slot is released anyway."
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use tokio::sync::Semaphore;

    #[test]
    fn a_share_counts_its_own_bytes_and_forwards_them() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let a = Share::new(Arc::clone(&shared));
        let b = Share::new(Arc::clone(&shared));
        let pool_a: Arc<dyn MemoryPool> = Arc::<Share>::clone(&a);
        let pool_b: Arc<dyn MemoryPool> = Arc::<Share>::clone(&b);
        let ra = MemoryConsumer::new("a").register(&pool_a);
        let rb = MemoryConsumer::new("b").register(&pool_b);
        ra.try_grow(600).unwrap();
        assert!(rb.try_grow(600).is_err(), "the pool is shared");
        rb.try_grow(300).unwrap();
        assert_eq!((a.held(), b.held(), shared.reserved()), (600, 300, 900));
        drop(ra);
        assert_eq!((a.held(), b.held(), shared.reserved()), (0, 300, 300));
    }

    #[tokio::test]
    async fn a_slot_waits_for_its_query_memory_before_letting_the_next_in() {
        let gate = Arc::new(Semaphore::new(1));
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let share = Share::new(shared);
        let pool: Arc<dyn MemoryPool> = Arc::<Share>::clone(&share);
        let held = MemoryConsumer::new("aborted task").register(&pool);
        held.grow(500);
        drop(Slot::new(
            Arc::clone(&gate).acquire_owned().await.unwrap(),
            Arc::clone(&share),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            Arc::clone(&gate).try_acquire_owned().is_err(),
            "memory still held"
        );
        drop(held);
        let next = tokio::time::timeout(Duration::from_secs(1), gate.acquire_owned()).await;
        assert!(next.is_ok(), "the slot comes back once the memory has");
    }
}
