//! Engine → device: the ack task turns the store's durable reports into
//! per-device watermarks and publishes them on `/tenants/{id}/v1/ack`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntCounter;
use rumqttd::Mailboxes;
use rumqttd::local::LinkTx;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};
use vigil_model::DeviceId;
use vigil_model::codec::ack_topic;
use vigil_storage::AckToken;

use crate::metrics::Metrics;
use crate::seqs::{Progress, SeqBook};
use crate::{Clock, IngestError};

/// How often devices held below a seq hole are looked at again.
const TICK: Duration = Duration::from_millis(200);

/// Acks go into each device's mailbox, which its socket task writes at the
/// QoS the device subscribed with (a lost ack is covered by the next one);
/// anything else the engine publishes goes through the in-process link.
pub(crate) struct AckPublisher {
    /// The link's sender is not shareable; the lock is held for one
    /// hand-off into the router's queue.
    link: Mutex<LinkTx>,
    mailboxes: Mailboxes,
    acks_published: IntCounter,
}

impl AckPublisher {
    pub(crate) fn new(
        link: LinkTx,
        mailboxes: Mailboxes,
        acks_published: IntCounter,
    ) -> AckPublisher {
        AckPublisher {
            link: Mutex::new(link),
            mailboxes,
            acks_published,
        }
    }

    /// Has rumqttd drop the link: it disconnects a client that subscribes
    /// to a `$` filter (`Ingest::sever_link`, a drill).
    pub(crate) fn sever(&self) -> Result<(), IngestError> {
        let filter = "$vigil-sever-drill";
        self.link
            .lock()
            .subscribe(filter)
            .map(|_| ())
            .map_err(|e| IngestError::Publish {
                topic: filter.to_owned(),
                why: e.to_string(),
            })
    }

    /// The broker link was made again (`pipeline`'s re-link).
    pub(crate) fn replace_link(&self, link: LinkTx) {
        *self.link.lock() = link;
    }

    pub(crate) fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), IngestError> {
        self.link
            .lock()
            .publish(topic.clone(), payload)
            .map(|_| ())
            .map_err(|e| IngestError::Publish {
                topic,
                why: e.to_string(),
            })
    }

    /// A device not subscribed to its acks (now, or in a persistent
    /// session) gets none; it is still counted, as a publish without
    /// subscribers was.
    pub(crate) fn ack(&self, device: &DeviceId, seq: u64) {
        let payload = format!(r#"{{"seq":{seq}}}"#);
        let delivered = self.mailboxes.put(&ack_topic(device), payload.into());
        self.acks_published.inc();
        debug!(device = %device, seq, delivered, "Ack published.");
    }
}

pub(crate) struct AckTask {
    pub seqs: Arc<SeqBook>,
    pub publisher: Arc<AckPublisher>,
    pub metrics: Metrics,
    pub clock: Clock,
}

impl AckTask {
    pub(crate) async fn run(
        self,
        mut durable: mpsc::Receiver<Vec<AckToken>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut durable_open = true;
        loop {
            tokio::select! {
                tokens = durable.recv(), if durable_open => match tokens {
                    Some(tokens) => self.durable(tokens),
                    None => {
                        info!("The store closed its durable channel; no more acks.");
                        durable_open = false;
                    }
                },
                _ = tick.tick() => {
                    let progress = self.seqs.tick((self.clock)());
                    self.apply(progress);
                }
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        // Whatever the store reported before we were told to stop.
        while let Ok(tokens) = durable.try_recv() {
            self.durable(tokens);
        }
    }

    fn durable(&self, tokens: Vec<AckToken>) {
        let progress = self.seqs.durable(
            tokens.into_iter().map(|t| (t.device_id, t.seq)),
            (self.clock)(),
        );
        self.apply(progress);
    }

    fn apply(&self, progress: Progress) {
        for latency in &progress.latencies {
            self.metrics.commit_latency.observe(latency.as_secs_f64());
        }
        for gap in &progress.gaps {
            self.metrics.seq_gaps.inc();
            // A device skipping seqs all the time would fill the log: one
            // line per device a minute, saying how many went unlogged.
            match gap.log {
                Some(unlogged) => info!(device = %gap.device, first_missing = gap.first,
                    last_missing = gap.last, gaps_not_logged_since_last_line = unlogged,
                    "Seq gap not filled within the grace period; the ack moves past it (a late re-send is still stored)."),
                None => {
                    debug!(device = %gap.device, first_missing = gap.first, last_missing = gap.last,
                    "Seq gap not filled within the grace period; the ack moves past it.")
                }
            }
        }
        for (device, seq) in &progress.acks {
            self.publisher.ack(device, *seq);
        }
    }
}
