//! The ingest thread: device publishes → classify → one store write per
//! batch → rules.
//!
//! Device publishes (QoS 0 and 1) come straight from the connections'
//! socket tasks (`direct`, vendored patch 7); the broker link brings what
//! still passes the router (QoS 2 publishes). Each message goes parse_topic
//! → size check → resolve → decode → de-dup. A batch is whatever the two
//! already hold (up to [`MAX_BATCH`]); it is
//! written to the store in one call, and only then are its readings handed
//! to the rules, so a write the store refuses leaves nothing half-done: the
//! seqs are released and the device's re-send is accepted. Seqs older than
//! a device's history in memory wait for one store look-up per batch
//! (`Store::stored_seqs`) before the write.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttd::local::{LinkError, LinkRx};
use rumqttd::{DirectPublish, Forward, Notification};
use tracing::{debug, error, info, warn};
use vigil_model::codec::{self, Rejection};
use vigil_model::log_limit::LogLimit;
use vigil_model::{
    DeadLetter, DeviceContext, DeviceId, EpochMs, MAX_PAYLOAD_BYTES, Reading, RejectReason,
    Resolution,
};
use vigil_storage::{AckToken, Record, SeqKey, Store, StoredReading, Write};

use crate::Health;
use crate::acks::AckPublisher;
use crate::broker::Relink;
use crate::metrics::Metrics;
use crate::seqs::{MAX_SEQ, SeqBook, Take, TooFar};
use crate::{Accepted, Clock, Directory, RulesSink};

/// Skips should never happen (the ingest log is lossless); if they do, a
/// flood of them must not flood the log.
static SKIP_LOG: LogLimit = LogLimit::per_second(1);

/// Most messages taken into one store write (and so the most readings in
/// one [`RulesSink`](crate::RulesSink) call).
pub const MAX_BATCH: usize = 512;

/// How often an idle ingest thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

pub(crate) struct Pipeline {
    pub link: LinkRx,
    /// Makes the broker link again if rumqttd drops it.
    pub relink: Relink,
    /// Device publishes past the router; each holds its share of the
    /// broker's byte budget until it is dropped here.
    pub direct: flume::Receiver<DirectPublish>,
    pub health: Arc<Health>,
    pub directory: Arc<dyn Directory>,
    pub store: Arc<dyn Store>,
    pub rules: RulesSink,
    pub seqs: Arc<SeqBook>,
    /// Least time between the starts of two batches (`batch_interval_us`).
    pub batch_interval: Duration,
    pub acks: Arc<AckPublisher>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub runtime: tokio::runtime::Handle,
    pub stop: Arc<AtomicBool>,
    /// Every message the broker took before this time has been handed to
    /// the rules or refused ([`crate::HeardThrough`]).
    pub heard_through: crate::HeardThrough,
}

#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    /// Seqs this batch took, released again if the write fails.
    taken: Vec<(DeviceId, u64)>,
    /// How many of them were at or below their device's watermark.
    late: u64,
    accepted: Vec<Accepted>,
    rejected: Vec<RejectReason>,
    /// Messages whose seq only the store can place (older than the
    /// device's history in memory), in arrival order.
    deferred: Vec<Deferred>,
    /// Devices that sent a duplicate: they get the current watermark again.
    reack: HashSet<DeviceId>,
    notifications: usize,
    /// When the batch's last device publish was queued by its connection.
    last_queued_at: Option<Instant>,
}

/// A message waiting for the batch's store look-up.
struct Deferred {
    device: DeviceId,
    seq: u64,
    received_at: EpochMs,
    message: Taking,
}

/// What a message becomes once its seq is taken.
enum Taking {
    Reading(Reading, Arc<DeviceContext>),
    Letter(Letter),
}

/// A refused message on its way to `dead_letters`.
struct Letter {
    topic: String,
    device: Option<DeviceId>,
    rejection: Rejection,
    /// Cut to [`MAX_PAYLOAD_BYTES`].
    payload: Vec<u8>,
    payload_size: u64,
    received_at: EpochMs,
}

impl Letter {
    fn new(
        topic: &str,
        device: Option<DeviceId>,
        rejection: Rejection,
        payload: &[u8],
        now: EpochMs,
    ) -> Letter {
        Letter {
            topic: topic.to_owned(),
            device,
            rejection,
            payload: payload[..payload.len().min(MAX_PAYLOAD_BYTES)].to_vec(),
            payload_size: payload.len() as u64,
            received_at: now,
        }
    }
}

/// How long a stopping ingest thread keeps taking what the broker already
/// accepted, at most.
const DRAIN_CAP: Duration = Duration::from_secs(10);

/// Runs until the stop flag is set (and what the broker holds is taken) or
/// the router goes away.
pub(crate) fn run(mut p: Pipeline) {
    let mut state = LoopState::default();
    let mut stopping_since: Option<Instant> = None;
    // When the last batch began, unless it was full (ingest is behind).
    let mut last_start: Option<Instant> = None;
    'run: loop {
        // Batches closer than `batch_interval` wait for it. The thread
        // sleeps instead of waiting on the channel, so that the publishes
        // meanwhile do not wake it one by one: under load fewer, larger
        // batches (each one store write and one hand-over to the rules,
        // each a wake-up of another thread); a publish after a quiet spell
        // is taken at once.
        if let Some(left) =
            last_start.and_then(|t| (t + p.batch_interval).checked_duration_since(Instant::now()))
        {
            std::thread::sleep(left);
        }
        let mut batch = Batch::default();
        // Block for the first device publish, but wake up to see the stop
        // flag and what came through the router.
        match p.direct.recv_deadline(Instant::now() + STOP_POLL) {
            Ok(publish) => p.direct_message(publish, &mut batch, &mut state),
            Err(flume::RecvTimeoutError::Timeout) => {}
            // The listeners are gone (stopping): only the link is left.
            Err(flume::RecvTimeoutError::Disconnected) => std::thread::sleep(STOP_POLL),
        }
        // Then take what is already there, never waiting for more: first
        // what passed the router, then device publishes. If both run dry
        // before the batch is full, everything the broker took before
        // `looked` is in this batch (or an earlier one).
        let looked = (p.clock)();
        let looked_at = Instant::now();
        while batch.notifications < MAX_BATCH {
            match p.link.recv_deadline(Instant::now()) {
                Ok(Some(n)) => p.notification(n, &mut batch, &mut state),
                Ok(None) => {}
                Err(LinkError::RecvTimeout(flume::RecvTimeoutError::Timeout)) => break,
                // A dropped link shows up as a disconnected channel here.
                Err(e) => {
                    // What is in it counts once a batch drains both again.
                    p.commit(batch, &mut state);
                    if !p.relink(&e.to_string()) {
                        break 'run;
                    }
                    continue 'run;
                }
            }
        }
        while batch.notifications < MAX_BATCH {
            match p.direct.try_recv() {
                Ok(publish) => p.direct_message(publish, &mut batch, &mut state),
                Err(_) => break,
            }
        }
        let idle = batch.notifications == 0;
        // Ingest is behind: the next batch does not wait, and this one
        // covers what was queued up to its last device publish (the
        // channel is in order).
        let full = batch.notifications >= MAX_BATCH;
        last_start = (!idle && !full).then_some(looked_at);
        let covered = if full {
            (batch.last_queued_at).map(|at| (p.clock)() - at.elapsed().as_millis() as EpochMs)
        } else {
            Some(looked)
        };
        p.commit(batch, &mut state);
        // While the store fails, what devices sent is not heard: they
        // re-send it, and silence in between is not theirs.
        if let Some(covered) = covered.filter(|_| !state.store_failing) {
            p.heard_through.advance(covered);
        }
        // Stopping: devices are no longer read, so everything the broker
        // PUBACKed is in its log; take it all before stopping (a quiet
        // moment says the log is empty).
        if p.stop.load(Ordering::Acquire) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if idle {
                break;
            }
            if since.elapsed() > DRAIN_CAP {
                warn!(
                    "Ingest stops with messages still in the broker's log; devices will re-send them."
                );
                break;
            }
        }
    }
    info!("Ingest thread stopped taking messages.");
}

impl Pipeline {
    /// The broker dropped the ingest link: say so (log, metric, `/readyz`)
    /// and make it again until that works or ingest stops. The link is a
    /// persistent session, so the new one reads on where the old stopped,
    /// and the lossless ingest log holds devices back meanwhile.
    fn relink(&mut self, why: &str) -> bool {
        error!(error = %why, "The engine's broker link was lost; ingest takes no messages until it is made again.");
        self.metrics.link_restarts.inc();
        self.health.set(Some(format!(
            "ingest's broker link was lost ({why}); re-linking"
        )));
        let mut wait = Duration::from_millis(10);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            match (self.relink)() {
                Ok((tx, rx)) => {
                    self.link = rx;
                    self.acks.replace_link(tx);
                    self.health.set(None);
                    info!("The engine's broker link is back; ingest takes messages again.");
                    return true;
                }
                Err(e) => {
                    error!(error = %e, "Cannot make the broker link again; retrying.");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

#[derive(Default)]
struct LoopState {
    /// The store's last answer was an error, and no write has succeeded
    /// since: `heard_through` stands still.
    store_failing: bool,
    /// Absolute offset of the last message read from the ingest filter's log.
    last_offset: Option<u64>,
    warn_limit: WarnLimit,
}

impl Pipeline {
    fn direct_message(&mut self, publish: DirectPublish, batch: &mut Batch, state: &mut LoopState) {
        batch.notifications += 1;
        batch.last_queued_at = Some(publish.queued_at);
        self.message(&publish.topic, &publish.payload, batch, state);
        // Dropping `publish` gives its bytes back to the broker's budget.
    }

    fn notification(&mut self, n: Notification, batch: &mut Batch, state: &mut LoopState) {
        batch.notifications += 1;
        match n {
            Notification::Forward(forward) => {
                self.count_skipped(&forward, state);
                self.message(
                    &forward.publish.topic,
                    &forward.publish.payload,
                    batch,
                    state,
                );
            }
            // rumqttd parks a link whose buffer filled up until it says it
            // is ready again; recv has already drained that buffer.
            Notification::Unschedule => {
                if let Err(e) = self.link.ready() {
                    error!(error = %e, "Cannot reschedule the ingest link.");
                }
            }
            _ => {}
        }
    }

    /// rumqttd numbers a filter's log entries consecutively; a jump means it
    /// dropped messages before we read them (its log wrapped under load).
    fn count_skipped(&self, forward: &Forward, state: &mut LoopState) {
        let Some((_, offset)) = forward.cursor else {
            return;
        };
        if let Some(last) = state.last_offset
            && offset > last + 1
        {
            let skipped = offset - last - 1;
            self.metrics.broker_skipped.inc_by(skipped);
            if let Some(held_back) = SKIP_LOG.allow() {
                warn!(
                    skipped,
                    held_back,
                    "The broker dropped messages before ingest read them; devices will re-send them."
                );
            }
        }
        state.last_offset = Some(offset);
    }

    fn message(&mut self, topic: &[u8], payload: &[u8], batch: &mut Batch, state: &mut LoopState) {
        // No engine output comes here: the guard refuses devices' publishes
        // there, and ingest's log in the broker leaves the engine's own out.
        let topic = String::from_utf8_lossy(topic);
        self.metrics.messages.inc();
        self.metrics.bytes.inc_by(payload.len() as u64);
        let now = (self.clock)();

        let (device_id, stream) = match codec::parse_topic(&topic) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                let letter = Letter::new(&topic, topic_device(&topic), rejection, payload, now);
                return self.reject_taking_seq(batch, state, letter, payload);
            }
        };
        if payload.len() > MAX_PAYLOAD_BYTES {
            let rejection = Rejection::new(
                RejectReason::Oversize,
                format!(
                    "payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            );
            let letter = Letter::new(&topic, Some(device_id), rejection, payload, now);
            return self.reject_taking_seq(batch, state, letter, payload);
        }
        let refused = match self.directory.resolve(&device_id) {
            Resolution::Active(context) => Ok(context),
            Resolution::Unknown => Err(Rejection::new(
                RejectReason::UnknownDevice,
                format!("device {device_id} is not registered"),
            )),
            Resolution::Disabled => Err(Rejection::new(
                RejectReason::DisabledDevice,
                format!("device {device_id} is disabled"),
            )),
        };
        let context = match refused {
            Ok(context) => context,
            Err(rejection) => {
                let letter = Letter::new(&topic, Some(device_id), rejection, payload, now);
                return self.reject(batch, state, letter, None);
            }
        };
        match codec::decode(device_id.clone(), stream, payload, now) {
            Ok(reading) => {
                let seq = reading.seq;
                match self.seqs.take(&device_id, seq, now) {
                    Take::New { late } => self.accept(batch, reading, context, late),
                    Take::Duplicate => self.duplicate(batch, device_id, seq),
                    Take::Unknown => batch.deferred.push(Deferred {
                        device: device_id,
                        seq,
                        received_at: now,
                        message: Taking::Reading(reading, context),
                    }),
                    Take::Jump(too_far) => {
                        let rejection = jump_rejection(seq, too_far, self.seqs.max_rate());
                        let letter = Letter::new(&topic, Some(device_id), rejection, payload, now);
                        self.reject(batch, state, letter, None);
                    }
                }
            }
            // A registered device's bad message is acked once its dead
            // letter is durable: re-sending it cannot make it valid.
            Err(rejection) => {
                let letter = Letter::new(&topic, Some(device_id), rejection, payload, now);
                self.reject_taking_seq(batch, state, letter, payload);
            }
        }
    }

    fn accept(&self, batch: &mut Batch, reading: Reading, context: Arc<DeviceContext>, late: bool) {
        let (device_id, seq) = (reading.device_id.clone(), reading.seq);
        self.taken(batch, &device_id, seq, late);
        batch.writes.push(Write {
            record: Record::Reading(StoredReading {
                reading: reading.clone(),
                binding: context.binding.clone(),
            }),
            ack: Some(AckToken { device_id, seq }),
        });
        batch.accepted.push(Accepted { reading, context });
    }

    fn taken(&self, batch: &mut Batch, device_id: &DeviceId, seq: u64, late: bool) {
        batch.taken.push((device_id.clone(), seq));
        batch.late += u64::from(late);
    }

    /// Dead-letters a message, taking its seq when it has one to take: an
    /// active device's message whose payload still says its `seq`. Its
    /// watermark then moves past it once the dead letter is durable, since
    /// re-sending cannot make the message valid; a copy of it is a
    /// duplicate. An implausible seq is not taken.
    fn reject_taking_seq(
        &self,
        batch: &mut Batch,
        state: &mut LoopState,
        letter: Letter,
        payload: &[u8],
    ) {
        let seq = letter.device.as_ref().and_then(|device| {
            let seq = envelope_seq(letter.rejection.reason, payload)?;
            matches!(self.directory.resolve(device), Resolution::Active(_))
                .then(|| (device.clone(), seq))
        });
        let Some((device, seq)) = seq else {
            return self.reject(batch, state, letter, None);
        };
        match self.seqs.take(&device, seq, letter.received_at) {
            Take::New { late } => {
                self.taken(batch, &device, seq, late);
                self.reject(batch, state, letter, Some(seq));
            }
            Take::Duplicate => self.duplicate(batch, device, seq),
            Take::Unknown => batch.deferred.push(Deferred {
                device,
                seq,
                received_at: letter.received_at,
                message: Taking::Letter(letter),
            }),
            Take::Jump(_) => self.reject(batch, state, letter, None),
        }
    }

    fn duplicate(&self, batch: &mut Batch, device_id: DeviceId, seq: u64) {
        self.metrics.duplicates.inc();
        debug!(device = %device_id, seq, "Duplicate message: acked again, not stored.");
        batch.reack.insert(device_id);
    }

    /// Dead-letters a message; with `seq` when it took one (the seq is
    /// already taken and in `batch.taken`).
    fn reject(&self, batch: &mut Batch, state: &mut LoopState, letter: Letter, seq: Option<u64>) {
        let Letter {
            topic,
            device,
            rejection,
            payload,
            payload_size,
            received_at,
        } = letter;
        let reason = rejection.reason;
        let shown = device.as_ref().map(DeviceId::to_string).unwrap_or_default();
        if state.warn_limit.allow() {
            warn!(device = %shown, %topic, %reason, detail = %rejection.detail, "Message rejected.");
        } else {
            debug!(device = %shown, %topic, %reason, detail = %rejection.detail, "Message rejected.");
        }
        let ack = match (&device, seq) {
            (Some(device_id), Some(seq)) => Some(AckToken {
                device_id: device_id.clone(),
                seq,
            }),
            _ => None,
        };
        batch.rejected.push(reason);
        batch.writes.push(Write {
            record: Record::DeadLetter(DeadLetter {
                received_at,
                topic,
                device_id: device.map(|d| d.to_string()),
                reason,
                detail: rejection.detail,
                payload,
                payload_size,
                seq: ack.as_ref().map(|a| a.seq),
            }),
            ack,
        });
    }

    /// Places the batch's deferred seqs with one store look-up. If the
    /// store cannot answer, they are not taken: like a refused write, the
    /// devices re-send them because their acks do not move.
    fn resolve_deferred(&self, batch: &mut Batch, state: &mut LoopState) {
        let deferred = std::mem::take(&mut batch.deferred);
        if deferred.is_empty() {
            return;
        }
        let keys: Vec<SeqKey> = deferred.iter().map(|d| (d.device.clone(), d.seq)).collect();
        self.metrics.seq_lookups.inc_by(keys.len() as u64);
        let found = match self.runtime.block_on(self.store.stored_seqs(&keys)) {
            Ok(found) => found,
            Err(e) => {
                self.metrics.store_errors.inc();
                error!(error = %e, messages = keys.len(),
                    "Store cannot say whether old seqs are stored; those messages stay unacked and devices will re-send them.");
                state.store_failing = true;
                return;
            }
        };
        for d in deferred {
            let in_store = found.contains(&(d.device.clone(), d.seq));
            match self
                .seqs
                .take_looked_up(&d.device, d.seq, in_store, d.received_at)
            {
                Take::New { late } => match d.message {
                    Taking::Reading(reading, context) => self.accept(batch, reading, context, late),
                    Taking::Letter(letter) => {
                        self.taken(batch, &d.device, d.seq, late);
                        self.reject(batch, state, letter, Some(d.seq));
                    }
                },
                _ => self.duplicate(batch, d.device, d.seq),
            }
        }
    }

    /// Stores the batch, then hands its readings to the rules.
    fn commit(&self, mut batch: Batch, state: &mut LoopState) {
        self.resolve_deferred(&mut batch, state);
        let Batch {
            writes,
            taken,
            late,
            accepted,
            rejected,
            reack,
            ..
        } = batch;
        for reason in &rejected {
            self.metrics.rejected(*reason).inc();
        }
        if !writes.is_empty() {
            let records = writes.len();
            match self.runtime.block_on(self.store.write(writes)) {
                Ok(()) => {
                    state.store_failing = false;
                    self.metrics.accepted.inc_by(accepted.len() as u64);
                    self.metrics.late.inc_by(late);
                    if !accepted.is_empty() {
                        (self.rules)(accepted);
                    }
                }
                Err(e) => {
                    state.store_failing = true;
                    self.metrics.store_errors.inc();
                    self.seqs.release(&taken);
                    error!(error = %e, records, retryable = e.is_retryable(),
                        "Store refused a batch; its messages stay unacked and devices will re-send them.");
                }
            }
        }
        for device in reack {
            if let Some(seq) = self.seqs.reack(&device) {
                self.acks.ack(&device, seq);
            }
        }
    }
}

/// Why an implausible seq is refused, for people.
fn jump_rejection(seq: u64, too_far: Option<TooFar>, max_rate: u64) -> Rejection {
    let detail = match too_far {
        None => format!(
            "`seq` {seq} is above {MAX_SEQ}, the highest seq Vigil takes; the message is kept here and not acknowledged"
        ),
        Some(f) => format!(
            "`seq` {seq} jumps {} past this device's highest seq {}, received {} s ago: more than the {} that \
             ingest.max_seq_rate ({max_rate} a second) allows; the message is kept here and not acknowledged",
            seq - f.highest,
            f.highest,
            f.silent_s,
            f.allowed
        ),
    };
    Rejection::new(RejectReason::SeqJump, detail)
}

/// The device named by a topic that failed to parse, when it names one.
fn topic_device(topic: &str) -> Option<DeviceId> {
    let rest = topic.strip_prefix("/tenants/")?;
    DeviceId::new(rest.split('/').next()?).ok()
}

/// The `seq` of a payload that decoded as JSON but failed validation
/// elsewhere; `None` when the envelope itself is unusable.
fn envelope_seq(reason: RejectReason, payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        seq: u64,
    }
    match reason {
        // Oversize payloads are at most the broker's packet limit (1 MiB):
        // parsing one for its seq is cheap, and spares the device a stall.
        RejectReason::MissingField
        | RejectReason::WrongType
        | RejectReason::OutOfRange
        | RejectReason::Oversize
        | RejectReason::BadTopic => serde_json::from_slice::<Envelope>(payload)
            .ok()
            .map(|e| e.seq),
        _ => None,
    }
}

/// At most one rejection warning per second: a device stuck sending bad
/// messages must not flood the log (the counter has every one).
#[derive(Default)]
struct WarnLimit {
    last: Option<Instant>,
}

impl WarnLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_device_of_a_bad_topic_when_it_names_one() {
        assert_eq!(
            topic_device("/tenants/EL1/v1/weather"),
            Some(DeviceId::new("EL1").unwrap())
        );
        assert_eq!(topic_device("/tenants/E-1/v1/event"), None);
        assert_eq!(topic_device("elsewhere"), None);
    }

    #[test]
    fn reads_the_seq_of_an_invalid_but_parseable_payload() {
        assert_eq!(
            envelope_seq(RejectReason::WrongType, br#"{"seq": 9, "floor": "x"}"#),
            Some(9)
        );
        assert_eq!(
            envelope_seq(RejectReason::MissingField, br#"{"ts": 1}"#),
            None
        );
        assert_eq!(
            envelope_seq(RejectReason::MalformedJson, br#"{"seq": 9"#),
            None
        );
    }
}
