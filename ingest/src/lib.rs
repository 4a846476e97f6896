//! Vigil's ingest: the embedded MQTT broker, device logins, per-connection
//! quotas, decoding, de-duplication, and the ack watermarks that tell each
//! device what is durably stored.
//!
//! ```text
//!  devices ──MQTT v4, plain TCP (user = device_id, pass = secret)──┐
//!  devices ──MQTT v4, mutual TLS (certificate O = device_id)───────┤  our accept loops (broker.rs, tls.rs)
//!  supervisors ──token:… login, or certificate O = r{region}───────┘  Metered stream: quota (quota.rs, sessions.rs)
//!      │ CONNECT ─▶ guard.rs: login check, client id claim (sessions.rs)
//!      ▼ socket task: QoS 0/1 publish ─▶ direct channel (vendored patch 7; PUBACK written by the socket task)
//!        QoS 2 ─▶ rumqttd router (vendored, lossless ingest log) ─▶ in-process link subscribed to /tenants/#
//!  ingest thread (pipeline.rs): parse_topic → size → Directory::resolve → codec::decode → de-dup (seqs.rs;
//!      seqs older than a device's history in memory: one Store::stored_seqs look-up per batch)
//!      │  bad  → Record::DeadLetter ─┐
//!      │  good → Record::Reading ────┴─▶ Store::write (one call per batch) ─▶ then `rules(Accepted)`
//!      ▼
//!  store's durable channel ─▶ ack task (acks.rs): per-device watermark ─▶ {"seq": N} on /tenants/{id}/v1/ack
//!  alarm hub ─▶ AlarmPublisher (feed.rs) ─▶ /tenants/r{region}/v1/alarms/{category}/{equipment_id}
//! ```
//!
//! Every connection's packets pass the guard (guard.rs): a device may
//! subscribe only to its acks, an alarm-feed reader only to the alarm topics
//! of its granted regions; nobody but the engine writes acks or alarms.
//! [`SessionControl`] closes live sessions by identity; [`pki::DeviceCa`]
//! issues the certificates the TLS listener trusts.
//!
//! The broker acknowledges a QoS 1 publish once it sits in the direct
//! channel to the ingest thread (bounded by bytes; a connection that finds
//! it full stops reading its socket), so a PUBACKed message is stored or
//! dead-lettered. The ack watermark says more: every message of a device
//! with `seq ≤ N` is durable, or was given up on after the gap grace. A
//! message is a duplicate only when that very `(device_id, seq)` is stored;
//! the history that decides it is rebuilt from the store at start
//! (`Recovery::seqs`). See `docs/ingest.md` and `docs/security.md`.
//!
//! Modules: `broker` (rumqttd, listeners, logins), `guard` (topic guard,
//! [`FeedGrant`]), `pipeline` (the ingest thread), `seqs` (de-duplication
//! history), `acks` (ack watermarks), `feed` ([`AlarmPublisher`]),
//! `metrics` (Prometheus), `error` ([`IngestError`]).

mod acks;
mod broker;
mod error;
mod feed;
mod guard;
mod metrics;
mod pipeline;
pub mod pki;
mod quota;
mod seqs;
mod sessions;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vigil_model::{DeviceContext, DeviceId, EpochMs, Reading, RejectReason, Resolution};
use vigil_storage::{AckToken, Recovery, Store};

pub use error::IngestError;
pub use feed::AlarmPublisher;
pub use guard::{FEED_USER_PREFIX, FeedGrant, RESERVED_CLIENT_PREFIX, region_tenant};
pub use pipeline::MAX_BATCH;
pub use quota::QuotaConfig;
pub use sessions::{SessionControl, feed_client_prefix};
pub use tls::{TlsMaterial, crypto_provider};

use acks::{AckPublisher, AckTask};
use broker::ServerHandle;
use guard::GuardShared;
use metrics::Metrics;
use pipeline::Pipeline;
use seqs::SeqBook;
use sessions::{Disconnect, Refusal, Sessions};

/// The engine's clock, injected so tests control time.
pub use vigil_model::Clock;

/// Where accepted readings go: called on the ingest thread once per stored
/// batch, with the batch's readings that passed de-duplication, in order.
/// One call per batch rather than per reading, so that the receiver is woken
/// once for many readings. Blocking in it is back-pressure.
pub type RulesSink = Box<dyn Fn(Vec<Accepted>) + Send + Sync>;

/// What ingest asks the registry. Every method runs on the broker's I/O
/// threads (at CONNECT) or the ingest thread (per message), so each must be
/// a cache lookup: no I/O, no slow key derivation.
pub trait Directory: Send + Sync + 'static {
    /// Whether `device_id` is registered, enabled and `secret` is its secret.
    fn verify(&self, device_id: &str, secret: &str) -> bool;
    fn resolve(&self, device_id: &DeviceId) -> Resolution;
    /// What an alarm-feed login's bearer token may read; `None` refuses
    /// it. The default grants nothing.
    fn feed_grant(&self, _token: &str) -> Option<FeedGrant> {
        None
    }
    /// The client-id prefix bound to a feed token: a reader must log in
    /// with a client id that starts with it. The default derives it from
    /// the token's SHA-256 ([`feed_client_prefix`]).
    fn feed_client_prefix(&self, token: &str) -> String {
        feed_client_prefix(token)
    }
}

/// A reading that passed validation and de-duplication, with the registry
/// context it was accepted under.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub reading: Reading,
    pub context: Arc<DeviceContext>,
}

/// The plain MQTT listener's address unless configured (loopback: the
/// plain listener sends device secrets in clear).
pub const DEFAULT_MQTT_ADDR: &str = "127.0.0.1:1883";

/// 10^9 a second: no device sends that many messages, and a seq that is a
/// timestamp advances that fast only in nanoseconds.
pub const DEFAULT_MAX_SEQ_RATE: u64 = 1_000_000_000;

/// Plain data; see `docs/ingest.md` for what each setting does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Plain MQTT listener; port 0 picks a free port (see [`Ingest::mqtt_addr`]).
    pub mqtt_addr: SocketAddr,
    /// A plain listener on a non-loopback address is refused unless true.
    pub allow_public_plain: bool,
    /// The mutual-TLS listener; off when `None`. Its key material is not
    /// configuration text, so it is never (de)serialized.
    #[serde(skip)]
    pub mqtts: Option<MqttsListener>,
    /// Most connections (both listeners, TLS handshakes included) at once.
    pub max_connections: usize,
    /// Threads that serve the connections' sockets; 0 picks half the cores
    /// (at least 1, at most 4), see [`IngestConfig::io_workers`].
    pub io_threads: usize,
    /// A device subscribed to its acks has its PUBACKs held until its next
    /// ack is written, at most this many ms, so that one segment carries
    /// both; 0 writes them at once.
    pub puback_hold_ms: u64,
    /// Least µs between the starts of two batches of the ingest thread:
    /// publishes that come sooner wait for it, and go together in one
    /// store write and one hand-over to the rules. A publish after a quiet
    /// spell is taken at once. 0: none.
    pub batch_interval_us: u64,
    /// How long a device's ack waits below a missing seq for the device to
    /// re-send it before the hole is counted as a gap and passed.
    pub gap_grace_s: u64,
    /// Per-connection message and byte quotas.
    pub quota: QuotaConfig,
    /// How fast a device's seq may advance, per second since its highest
    /// was received (plus one second's worth); a seq further ahead is
    /// refused (`seq_jump` dead letter) instead of taken.
    pub max_seq_rate: u64,
}

/// Where the mutual-TLS listener listens and what it serves and trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttsListener {
    /// Port 0 picks a free port (see [`Ingest::mqtts_addr`]).
    pub addr: SocketAddr,
    pub material: TlsMaterial,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            mqtt_addr: DEFAULT_MQTT_ADDR.parse().expect("valid literal"),
            allow_public_plain: false,
            mqtts: None,
            max_connections: 10_000,
            io_threads: 0,
            puback_hold_ms: 20,
            batch_interval_us: 500,
            gap_grace_s: 30,
            quota: QuotaConfig::default(),
            max_seq_rate: DEFAULT_MAX_SEQ_RATE,
        }
    }
}

impl IngestConfig {
    /// The socket threads to run: `io_threads`, or for 0 half the cores
    /// (at least 1, at most 4). The rest of a message's path runs on one
    /// thread per stage (the router, the ingest thread, the WAL writer):
    /// socket threads that take every core starve those, and the whole
    /// path slows down (docs/benchmarks.md, "The ingest ceiling").
    pub fn io_workers(&self) -> usize {
        if self.io_threads > 0 {
            return self.io_threads;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores / 2).clamp(1, 4)
    }
}

/// Counters since start (the same numbers as the Prometheus metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    /// Device messages received on `/tenants/…` topics.
    pub messages: u64,
    pub bytes: u64,
    /// Readings handed to the store and the rules.
    pub accepted: u64,
    /// Dead letters by reason (every reason is present).
    pub rejected: HashMap<RejectReason, u64>,
    pub duplicates: u64,
    /// Messages stored at or below their device's watermark (late re-sends).
    pub late: u64,
    /// Seqs looked up in the store (older than the history in memory).
    pub seq_lookups: u64,
    pub seq_gaps: u64,
    pub acks_published: u64,
    /// Messages the broker dropped before ingest read them.
    pub broker_skipped: u64,
    /// Alarm-feed messages readers never got (they fell too far behind).
    pub feed_skipped: u64,
    pub store_errors: u64,
    /// MQTT CONNECTs let in and refused by Vigil's login check.
    pub connects_accepted: u64,
    pub connects_refused: u64,
    /// Refusals before a session exists, by reason (`connect_bad_secret`,
    /// `bad_certificate`, `oversize_packet`, …; every reason is present).
    pub refused: BTreeMap<&'static str, u64>,
    /// Spells of a connection over its quota (messages or bytes).
    pub throttled: u64,
    /// Sessions the engine closed, by reason (every reason is present).
    pub disconnects: BTreeMap<&'static str, u64>,
    /// Live sessions now: devices and alarm-feed readers.
    pub sessions_devices: u64,
    pub sessions_feeds: u64,
    /// Times the engine's broker link was lost and made again.
    pub link_restarts: u64,
}

impl IngestStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }
}

/// How far ingest has heard: every message the broker took before
/// [`HeardThrough::get`] has been stored and handed to the rules, or
/// refused (engine clock, ms). It stands still while ingest cannot go on
/// (the store stalls or refuses, a rule shard's queue is full), so that a
/// device is not taken for silent only because the engine did not read
/// what it sent: the rules judge liveness up to this time
/// (`RuleEngine::tick_heard`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct HeardThrough(Arc<AtomicI64>);

impl HeardThrough {
    fn new(start: EpochMs) -> HeardThrough {
        HeardThrough(Arc::new(AtomicI64::new(start)))
    }

    pub fn get(&self) -> EpochMs {
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self, to: EpochMs) {
        self.0.fetch_max(to, Ordering::AcqRel);
    }
}

/// The running ingest stage. Stop it with [`Ingest::shutdown`]; dropping it
/// stops the threads without draining.
pub struct Ingest {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    metrics: Metrics,
    sessions: SessionControl,
    health: Arc<Health>,
    store: Arc<dyn Store>,
    seqs: Arc<SeqBook>,
    publisher: Arc<AckPublisher>,
    stop_ingest: Arc<AtomicBool>,
    heard_through: HeardThrough,
    ingest_thread: Option<std::thread::JoinHandle<()>>,
    stop_acks: watch::Sender<bool>,
    ack_task: Option<JoinHandle<()>>,
    server: Option<ServerHandle>,
}

/// How long shutdown waits for the store to report what ingest handed it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the listener stays open after the last acks were published.
const ACK_LINGER: Duration = Duration::from_millis(250);

impl Ingest {
    /// Starts the broker, the ingest thread and the ack task. Must be called
    /// inside a (multi-threaded) tokio runtime; returns once the listener
    /// accepts connections.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: IngestConfig,
        directory: Arc<dyn Directory>,
        store: Arc<dyn Store>,
        recovery: &Recovery,
        durable: mpsc::Receiver<Vec<AckToken>>,
        rules: RulesSink,
        metrics: &prometheus::Registry,
        clock: Clock,
    ) -> Result<Ingest, IngestError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| IngestError::NoRuntime)?;
        let metrics = Metrics::register(metrics)?;
        let rebuilt = std::time::Instant::now();
        let seqs = Arc::new(SeqBook::new(
            &recovery.seqs,
            &recovery.last_seen,
            config.gap_grace_s,
            config.max_seq_rate,
            clock(),
        ));
        let rebuild_ms = rebuilt.elapsed().as_millis() as u64;

        let sessions = Arc::new(Sessions::new(metrics.clone()));
        let shared = Arc::new(GuardShared {
            directory: Arc::clone(&directory),
            sessions: Arc::clone(&sessions),
            metrics: metrics.clone(),
            quota: config.quota.clone(),
        });
        let broker = broker::start(&config, shared)?;
        let health = Arc::new(Health::default());
        let publisher = Arc::new(AckPublisher::new(
            broker.link_tx,
            broker.mailboxes,
            metrics.acks_published.clone(),
        ));

        let (stop_acks, stop_acks_rx) = watch::channel(false);
        let ack_task = runtime.spawn(
            AckTask {
                seqs: Arc::clone(&seqs),
                publisher: Arc::clone(&publisher),
                metrics: metrics.clone(),
                clock: Arc::clone(&clock),
            }
            .run(durable, stop_acks_rx),
        );

        let stop_ingest = Arc::new(AtomicBool::new(false));
        let heard_through = HeardThrough::new(clock());
        let pipeline = Pipeline {
            link: broker.link_rx,
            relink: broker.relink,
            direct: broker.direct,
            health: Arc::clone(&health),
            directory: Arc::clone(&directory),
            store: Arc::clone(&store),
            rules,
            seqs: Arc::clone(&seqs),
            batch_interval: Duration::from_micros(config.batch_interval_us),
            acks: Arc::clone(&publisher),
            metrics: metrics.clone(),
            clock,
            runtime,
            stop: Arc::clone(&stop_ingest),
            heard_through: heard_through.clone(),
        };
        let ingest_thread = std::thread::Builder::new()
            .name("vigil-ingest".to_owned())
            .spawn(move || pipeline::run(pipeline))
            .map_err(|source| IngestError::Thread {
                name: "vigil-ingest",
                source,
            })?;

        info!(addr = %broker.addr, tls_addr = ?broker.tls_addr, gap_grace_s = config.gap_grace_s, max_seq_rate = config.max_seq_rate,
            devices_with_history = recovery.seqs.len(), rebuild_ms, "Ingest started.");
        Ok(Ingest {
            addr: broker.addr,
            tls_addr: broker.tls_addr,
            metrics,
            sessions: SessionControl {
                sessions,
                directory,
            },
            health,
            store,
            seqs,
            publisher,
            stop_ingest,
            heard_through,
            ingest_thread: Some(ingest_thread),
            stop_acks,
            ack_task: Some(ack_task),
            server: Some(broker.server),
        })
    }

    /// The address the listener is bound to (port 0 resolved).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mutual-TLS listener's address, when it is on.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Closes live sessions by identity (a disabled device, a revoked feed
    /// token); a handle that outlives `self`.
    pub fn sessions(&self) -> SessionControl {
        self.sessions.clone()
    }

    /// `Err` with the reason while ingest cannot take messages (its broker
    /// link is being made again).
    pub fn health(&self) -> Result<(), String> {
        self.health.check()
    }

    /// `health` as a closure that outlives `self` (for `/readyz`).
    pub fn health_handle(&self) -> Arc<dyn Fn() -> Result<(), String> + Send + Sync> {
        let health = Arc::clone(&self.health);
        Arc::new(move || health.check())
    }

    /// Makes rumqttd drop the engine's broker link, as it would for a bad
    /// publish: ingest must notice, report it and link again without losing
    /// a message. For tests and drills only.
    #[doc(hidden)]
    pub fn sever_link(&self) -> Result<(), IngestError> {
        self.publisher.sever()
    }

    /// Publishes on any topic through the broker. rumqttd sends in-process
    /// publishes at QoS 0, upgraded to the subscriber's QoS.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), IngestError> {
        self.publisher.publish(topic, payload)
    }

    /// The MQTT alarm feed, as a handle that outlives `self` (the alarm hub
    /// keeps one).
    pub fn alarm_publisher(&self) -> AlarmPublisher {
        AlarmPublisher::new(
            Arc::clone(&self.publisher),
            self.metrics.feed_publishes.clone(),
        )
    }

    /// See [`HeardThrough`].
    pub fn heard_through(&self) -> HeardThrough {
        self.heard_through.clone()
    }

    pub fn stats(&self) -> IngestStats {
        stats(&self.metrics)
    }

    /// `stats` as a closure that outlives `self` (for the HTTP API).
    pub fn stats_handle(&self) -> Arc<dyn Fn() -> IngestStats + Send + Sync> {
        let metrics = self.metrics.clone();
        Arc::new(move || stats(&metrics))
    }

    /// Ordered stop: read no more from any device (so nothing new is
    /// PUBACKed), take everything the broker already accepted, hand it to
    /// the store, flush it, publish the acks it earns, then close the
    /// listeners and every connection.
    pub async fn shutdown(mut self) -> Result<(), IngestError> {
        let mut first_error = None;
        let acks_before = self.metrics.acks_published.get();

        self.sessions.sessions.pause_reads();
        // Packets read just before reach the router within moments.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stop_ingest.store(true, Ordering::Release);
        if let Some(thread) = self.ingest_thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                first_error.get_or_insert(IngestError::Shutdown {
                    stage: "ingest thread",
                    why: "it panicked".into(),
                });
            }
        }

        if let Err(e) = self.store.flush().await {
            warn!(error = %e, "Store flush failed at ingest shutdown; some acks will not go out.");
            first_error.get_or_insert(IngestError::Shutdown {
                stage: "store flush",
                why: e.to_string(),
            });
        }
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            let waiting = self.seqs.undurable();
            if waiting == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    waiting,
                    "Store did not report every taken message durable; those stay unacked."
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.stop_acks.send(true);
        if let Some(task) = self.ack_task.take()
            && task.await.is_err()
        {
            first_error.get_or_insert(IngestError::Shutdown {
                stage: "ack task",
                why: "it panicked".into(),
            });
        }
        // The router and the connection tasks forward the last acks
        // asynchronously and report nothing back; give them a moment before
        // the sockets close.
        if self.metrics.acks_published.get() != acks_before {
            tokio::time::sleep(ACK_LINGER).await;
        }

        if let Some(server) = self.server.take() {
            match tokio::task::spawn_blocking(move || server.stop_and_join()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(IngestError::Shutdown {
                        stage: "mqtt listener",
                        why: e.to_string(),
                    });
                }
            }
        }
        info!(stats = ?self.stats(), "Ingest stopped.");
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop_ingest.store(true, Ordering::Release);
        let _ = self.stop_acks.send(true);
        if let Some(server) = self.server.as_mut() {
            server.signal_stop();
        }
    }
}

fn stats(m: &Metrics) -> IngestStats {
    IngestStats {
        messages: m.messages.get(),
        bytes: m.bytes.get(),
        accepted: m.accepted.get(),
        rejected: RejectReason::ALL
            .into_iter()
            .map(|r| (r, m.rejected(r).get()))
            .collect(),
        duplicates: m.duplicates.get(),
        late: m.late.get(),
        seq_lookups: m.seq_lookups.get(),
        seq_gaps: m.seq_gaps.get(),
        acks_published: m.acks_published.get(),
        broker_skipped: m.broker_skipped.get(),
        feed_skipped: m.feed_skipped.load(std::sync::atomic::Ordering::Relaxed),
        store_errors: m.store_errors.get(),
        connects_accepted: m.connects.with_label_values(&["accepted"]).get(),
        connects_refused: m.connects.with_label_values(&["refused"]).get(),
        refused: Refusal::ALL
            .into_iter()
            .map(|r| (r.as_str(), m.refused(r).get()))
            .collect(),
        throttled: quota::Excess::ALL
            .into_iter()
            .map(|e| m.throttled.with_label_values(&[e.as_str()]).get())
            .sum(),
        disconnects: Disconnect::ALL
            .into_iter()
            .map(|d| {
                (
                    d.as_str(),
                    m.disconnects.with_label_values(&[d.as_str()]).get(),
                )
            })
            .collect(),
        sessions_devices: m.sessions.with_label_values(&["device"]).get().max(0) as u64,
        sessions_feeds: m.sessions.with_label_values(&["feed"]).get().max(0) as u64,
        link_restarts: m.link_restarts.get(),
    }
}

/// Whether ingest can take messages; set while its broker link is down.
#[derive(Default)]
pub(crate) struct Health {
    /// `Some(why)` while degraded. Read by `/readyz`, written on link loss.
    problem: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn set(&self, problem: Option<String>) {
        *self.problem.lock() = problem;
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        match self.problem.lock().as_ref() {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}
