//! Vigil patch: device publishes handed from the connection's socket task
//! straight to the embedder, past the router.
//!
//! In a broker whose only reader of device topics is the embedder itself, a
//! publish that goes through the router costs three thread hand-offs (socket
//! task → router → subscriber link, and the PUBACK back from the router to
//! the socket task), each a wake-up. Here the socket task puts the publish
//! on a channel the embedder reads and writes the PUBACK itself, in the same
//! turn in which it read the publish.
//!
//! The channel is as lossless as the router's lossless log it replaces: a
//! publish is PUBACKed only once it is on the channel, and the channel is
//! bounded by bytes. Each publish holds its share of the byte budget until
//! the embedder drops it; while the budget is spent, the connection stops
//! reading its socket and PUBACKs nothing more, so the client waits with its
//! unacknowledged messages.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::protocol::{Publish, QoS};

/// What a publish costs of the budget besides its topic and payload (the
/// channel's own bookkeeping), so that empty payloads are bounded too.
const OVERHEAD: usize = 64;

/// Where the publishes of every connection on topics under a prefix go
/// instead of the router (`ConnectionSettings::direct`).
#[derive(Clone)]
pub struct DirectIngest {
    prefix: Arc<str>,
    sink: flume::Sender<DirectPublish>,
    budget: Arc<Semaphore>,
    /// The whole budget: a publish larger than it costs all of it, so it
    /// still passes once everything before it is taken.
    budget_bytes: usize,
}

/// A publish taken from a device. Its share of the budget is given back when
/// it is dropped.
pub struct DirectPublish {
    pub topic: Bytes,
    pub payload: Bytes,
    /// When the connection put it in the channel: the channel is in order,
    /// so everything queued before it was taken before it.
    pub queued_at: std::time::Instant,
    _budget: OwnedSemaphorePermit,
}

/// The embedder stopped reading the channel.
#[derive(Debug)]
pub(crate) struct Gone;

impl DirectIngest {
    /// Publishes at QoS 0 and 1 on topics starting with `prefix` go to the
    /// returned receiver, at most `budget_bytes` of them (topic and payload)
    /// not yet dropped by the embedder. QoS 2 publishes, which need the
    /// router's PUBREC/PUBREL exchange, still go through the router.
    pub fn new(
        prefix: &str,
        budget_bytes: usize,
    ) -> (DirectIngest, flume::Receiver<DirectPublish>) {
        let budget_bytes =
            budget_bytes.clamp(OVERHEAD, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (sink, receiver) = flume::unbounded();
        let direct = DirectIngest {
            prefix: prefix.into(),
            sink,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        };
        (direct, receiver)
    }

    pub(crate) fn takes(&self, publish: &Publish) -> bool {
        publish.qos != QoS::ExactlyOnce && publish.topic.starts_with(self.prefix.as_bytes())
    }

    fn cost(&self, publish: &Publish) -> u32 {
        let bytes = publish.topic.len() + publish.payload.len() + OVERHEAD;
        bytes.min(self.budget_bytes) as u32
    }

    /// The budget for `publish` if it is there now.
    pub(crate) fn try_budget(&self, publish: &Publish) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.budget)
            .try_acquire_many_owned(self.cost(publish))
            .ok()
    }

    /// Waits for the budget for `publish`.
    pub(crate) fn budget(
        &self,
        publish: &Publish,
    ) -> impl std::future::Future<Output = OwnedSemaphorePermit> + Send + 'static {
        let (budget, cost) = (Arc::clone(&self.budget), self.cost(publish));
        async move {
            // The semaphore is never closed, so this only ends with a permit.
            match budget.acquire_many_owned(cost).await {
                Ok(permit) => permit,
                Err(_) => std::future::pending().await,
            }
        }
    }

    pub(crate) fn give(&self, publish: Publish, budget: OwnedSemaphorePermit) -> Result<(), Gone> {
        self.sink
            .send(DirectPublish {
                topic: publish.topic,
                payload: publish.payload,
                queued_at: std::time::Instant::now(),
                _budget: budget,
            })
            .map_err(|_| Gone)
    }
}
