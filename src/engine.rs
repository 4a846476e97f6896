//! Wires the stages into one running engine and takes them down in order.
//!
//! ```text
//!  ingest ──Accepted──▶ rule shard (by equipment) ──Alarm──▶ hub ──▶ board (open alarms) ─▶ SSE
//!     │                      ▲ tick                            ├──▶ delivery: MQTT alarm topics, webhooks
//!     │                                                        └──▶ store (alarm_changes)
//!     └──Write──▶ store ──durable──▶ ingest (acks)
//!  registry ──(on change)──▶ store reference tables (SQL)
//! ```
//! Shutdown: HTTP stops (SSE streams end), ingest hands everything it took
//! to the store and drains acks, shards drain, the hub drains, the store
//! flushes to Parquet.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vigil_ingest::{Accepted, Directory, FeedGrant, Ingest, IngestConfig};
use vigil_model::{Alarm, AlarmId, DeviceId, EpochMs, EquipmentId, Resolution};
use vigil_registry::Registry;
use vigil_registry::auth::{Authenticator, Principal};
use vigil_rules::{AlarmOpError, RuleConfig, RuleEngine};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::postgres::PostgresStore;
use vigil_storage::{QueryOptions, Record, Store, Write};

use crate::alarms::AlarmBoard;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::metrics::EngineMetrics;
use crate::registry_tables::RegistrySync;

/// The engine's notion of now: wall-clock epoch milliseconds.
pub type Clock = Arc<dyn Fn() -> EpochMs + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_millis() as EpochMs
    })
}

/// The rule configuration: the `[rules]` section with the rule file (if
/// any) laid over it, checked. The error names the file, line and column.
pub fn load_rules(base: &toml::Table, file: Option<&Path>) -> anyhow::Result<RuleConfig> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read rule file {}", path.display()))?,
        ),
        None => None,
    };
    let name = file.map(|p| p.display().to_string()).unwrap_or_default();
    let file = text.as_deref().map(|t| (name.as_str(), t));
    RuleConfig::load(base, file).map_err(|e| anyhow::anyhow!("invalid rules: {e}"))
}

/// Where the running rules come from, and what they are now.
pub struct RuleSource {
    base: toml::Table,
    file: Option<PathBuf>,
    current: RwLock<RuleConfig>,
    reloading: tokio::sync::Mutex<()>,
}

impl RuleSource {
    pub fn current(&self) -> RuleConfig {
        self.current.read().clone()
    }

    /// Re-reads the rule file and hands the result to every shard; a file
    /// that does not check is refused and the running rules stay.
    pub async fn reload(
        &self,
        shards: &Shards,
        metrics: &EngineMetrics,
    ) -> anyhow::Result<RuleConfig> {
        let loaded = load_rules(&self.base, self.file.as_deref());
        let config = match loaded {
            Ok(config) => config,
            Err(e) => {
                metrics.rule_reloads.with_label_values(&["refused"]).inc();
                warn!(error = %e, "Rule reload refused; the running rules stay.");
                return Err(e);
            }
        };
        // One reload at a time, so every shard ends with the same rules.
        let _one = self.reloading.lock().await;
        for tx in shards.senders.iter() {
            tx.send(ShardMsg::Rules(Box::new(config.clone())))
                .await
                .map_err(|_| anyhow::anyhow!("the engine is stopping"))?;
        }
        *self.current.write() = config.clone();
        metrics.rule_reloads.with_label_values(&["ok"]).inc();
        info!(file = ?self.file, "Rules reloaded.");
        Ok(config)
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// What the HTTP API and the demo share with the running engine.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub board: Arc<AlarmBoard>,
    pub shards: Shards,
    pub metrics: prometheus::Registry,
    pub engine_metrics: EngineMetrics,
    pub sql: QueryOptions,
    pub clock: Clock,
    pub liveness: Arc<Liveness>,
    pub registry_sync: Arc<RegistrySync>,
    pub ingest_stats: Arc<dyn Fn() -> vigil_ingest::IngestStats + Send + Sync>,
    /// `Err` while ingest cannot take messages (for `/readyz`).
    pub ingest_health: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// Closes live MQTT sessions by identity.
    pub mqtt_sessions: vigil_ingest::SessionControl,
    /// The device CA (certificate endpoints).
    pub pki: Arc<crate::certs::Pki>,
    /// The running rule configuration (rule replay starts from it) and
    /// where it is re-read from.
    pub rules: RuleSource,
    /// Flips to true when the engine stops; long-lived responses (SSE) end.
    pub stopping: watch::Receiver<bool>,
    /// The registry's dates are days at this UTC offset.
    pub registry_offset: chrono::FixedOffset,
    /// The browser console at `/` (src/console.rs).
    pub console: crate::console::ConsoleConfig,
}

/// Last time each device was heard from, for "devices online".
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<DeviceId, EpochMs>>,
}

impl Liveness {
    fn saw(&self, device: &DeviceId, at: EpochMs) {
        let mut seen = self.seen.lock();
        match seen.get_mut(device) {
            Some(t) => *t = at,
            None => {
                seen.insert(device.clone(), at);
            }
        }
    }

    /// When `device` was last heard from.
    pub fn last_heard(&self, device: &DeviceId) -> Option<EpochMs> {
        self.seen.lock().get(device).copied()
    }

    /// When `device` was last heard (since this engine started, or as the
    /// store remembered it at start).
    pub fn heard(&self, device: &DeviceId) -> Option<EpochMs> {
        self.seen.lock().get(device).copied()
    }
}

enum ShardMsg {
    Reading(Accepted),
    /// A filling record with the registry's facts of its cylinder and operator.
    Filling(Accepted, vigil_rules::FillingFacts),
    /// Shutdown: everything queued before it has been evaluated.
    Stop,
    /// The registry's facts of this shard's equipment (registry-time rules).
    Registry(Vec<vigil_rules::RegistryFacts>),
    Tick(EpochMs),
    /// A reloaded rule configuration.
    Rules(Box<RuleConfig>),
    Acknowledge {
        id: AlarmId,
        by: String,
        reply: oneshot::Sender<Result<Alarm, AlarmOpError>>,
    },
    Resolve {
        id: AlarmId,
        by: String,
        note: String,
        reply: oneshot::Sender<Result<Alarm, AlarmOpError>>,
    },
}

/// Senders into the rule shards, routed by equipment.
#[derive(Clone)]
pub struct Shards {
    senders: Arc<Vec<mpsc::Sender<ShardMsg>>>,
}

fn shard_of(equipment: &EquipmentId, shards: usize) -> usize {
    // SipHash with fixed keys: stable across runs, so restored alarms land
    // in the shard that will see their equipment's readings.
    let mut h = std::hash::DefaultHasher::new();
    equipment.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// Why an alarm operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AlarmOpFailure {
    #[error(transparent)]
    Rule(#[from] AlarmOpError),
    #[error("the engine is shutting down")]
    Stopping,
}

impl Shards {
    /// Messages waiting in the shards' queues.
    pub fn queued(&self) -> usize {
        self.senders
            .iter()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .sum()
    }

    fn sender(&self, equipment: &EquipmentId) -> &mpsc::Sender<ShardMsg> {
        &self.senders[shard_of(equipment, self.senders.len())]
    }

    pub async fn acknowledge(
        &self,
        equipment: &EquipmentId,
        id: AlarmId,
        by: String,
    ) -> Result<Alarm, AlarmOpFailure> {
        let (reply, rx) = oneshot::channel();
        self.sender(equipment)
            .send(ShardMsg::Acknowledge { id, by, reply })
            .await
            .map_err(|_| AlarmOpFailure::Stopping)?;
        Ok(rx.await.map_err(|_| AlarmOpFailure::Stopping)??)
    }

    pub async fn resolve(
        &self,
        equipment: &EquipmentId,
        id: AlarmId,
        by: String,
        note: String,
    ) -> Result<Alarm, AlarmOpFailure> {
        let (reply, rx) = oneshot::channel();
        self.sender(equipment)
            .send(ShardMsg::Resolve {
                id,
                by,
                note,
                reply,
            })
            .await
            .map_err(|_| AlarmOpFailure::Stopping)?;
        Ok(rx.await.map_err(|_| AlarmOpFailure::Stopping)??)
    }
}

struct RegistryDirectory(Arc<Registry>, Arc<Authenticator>);

impl Directory for RegistryDirectory {
    fn verify(&self, device_id: &str, secret: &str) -> bool {
        self.0.verify_device_secret(device_id, secret)
    }

    fn resolve(&self, device_id: &DeviceId) -> Resolution {
        self.0.resolve(device_id)
    }

    /// The MQTT alarm feed follows the SSE feed's grants, except owners:
    /// region topics would show them other owners' alarms.
    fn feed_grant(&self, token: &str) -> Option<FeedGrant> {
        match self.1.authenticate(token)? {
            Principal::Admin => Some(FeedGrant::All),
            Principal::Supervisor { regions } | Principal::Analyst { regions } => {
                Some(FeedGrant::Regions(regions))
            }
            Principal::Owner { .. } => None,
        }
    }
}

/// The store behind `Arc<dyn Store>`, kept concrete for its `close`.
enum Backend {
    Embedded(Arc<EmbeddedStore>),
    Postgres(Arc<PostgresStore>),
}

impl Backend {
    async fn open(
        config: &Config,
        durable: mpsc::Sender<Vec<vigil_storage::AckToken>>,
    ) -> anyhow::Result<Backend> {
        if let Some(pg) = config.postgres()? {
            let store = PostgresStore::open(pg, durable)
                .await
                .context("cannot open the PostgreSQL store")?;
            return Ok(Backend::Postgres(store));
        }
        let embedded = EmbeddedConfig {
            dir: config.data_dir.join("store"),
            queue_capacity: config.embedded.queue_capacity,
            group_commit_max: config.embedded.group_commit_max,
            flush_rows: config.embedded.flush_rows,
            flush_interval: Duration::from_secs(config.embedded.flush_interval_s),
            sql: config.engine.sql_limits(),
        };
        let store = EmbeddedStore::open(embedded, durable)
            .await
            .context("cannot open the embedded store")?;
        Ok(Backend::Embedded(store))
    }

    fn as_dyn(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    async fn close(&self) -> Result<(), vigil_storage::StoreError> {
        match self {
            Backend::Embedded(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }
}

pub struct Engine {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// The mutual-TLS listener, when `mqtts_addr` is set.
    pub mqtts_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    store: Backend,
    ingest: Ingest,
    http: JoinHandle<()>,
    ticker: JoinHandle<()>,
    sync: JoinHandle<()>,
    sessions_recheck: JoinHandle<()>,
    shard_tasks: Vec<JoinHandle<()>>,
    hub: JoinHandle<()>,
    delivery: Arc<Delivery>,
    delivery_grace: Duration,
}

impl Engine {
    pub async fn start(config: Config, clock: Clock) -> anyhow::Result<Engine> {
        let rules = load_rules(&config.rules, config.rules_file.as_deref())?;
        crate::data_dir::secure(&config.data_dir)?;
        let registry =
            Arc::new(Registry::open(&config.data_dir).context("cannot open the registry")?);

        let (durable_tx, durable_rx) = mpsc::channel(1024);
        let store = Backend::open(&config, durable_tx).await?;
        let dyn_store: Arc<dyn Store> = store.as_dyn();
        let mut recovery = dyn_store
            .recover()
            .await
            .context("cannot recover state from the store")?;
        let open_restored = recovery.alarms.iter().filter(|a| a.state.is_open()).count();
        info!(
            devices = recovery.seqs.len(),
            open_alarms = open_restored,
            "Recovered state from the store."
        );

        let metrics = prometheus::Registry::new();
        let engine_metrics = EngineMetrics::register(&metrics)?;
        let (stop, stopping) = watch::channel(false);

        // Alarm hub: one consumer so the board, the feed and the store see
        // alarm changes in one order.
        let board = Arc::new(AlarmBoard::new(4096));
        for alarm in recovery.alarms.iter().filter(|a| a.state.is_open()) {
            board.apply(alarm);
        }
        let webhooks = crate::webhooks::Webhooks::start(
            &config.delivery.webhooks,
            engine_metrics.webhooks.clone(),
        )
        .context("invalid [delivery] configuration")?;
        let delivery = Arc::new(Delivery::new(webhooks));
        let (alarm_tx, alarm_rx) = mpsc::channel::<Alarm>(16_384);
        let hub = tokio::spawn(run_hub(
            alarm_rx,
            board.clone(),
            dyn_store.clone(),
            engine_metrics.clone(),
            delivery.clone(),
        ));

        // Rule shards.
        let shard_count = config.engine.rule_shards.max(1);
        let mut restored: Vec<Vec<Alarm>> = vec![Vec::new(); shard_count];
        for alarm in std::mem::take(&mut recovery.alarms) {
            restored[shard_of(&alarm.equipment_id, shard_count)].push(alarm);
        }
        // When each registered device was last heard, so that one silent
        // since before the restart still goes offline on schedule (and
        // counts as online until then).
        let liveness = Arc::new(Liveness::default());
        let mut heard: Vec<Vec<_>> = vec![Vec::new(); shard_count];
        for (device, last_seen) in std::mem::take(&mut recovery.last_seen) {
            liveness.saw(&device, last_seen);
            if let Resolution::Active(ctx) = registry.resolve(&device) {
                heard[shard_of(&ctx.binding.equipment_id, shard_count)]
                    .push((device, ctx, last_seen));
            }
        }
        let mut senders = Vec::with_capacity(shard_count);
        let mut shard_tasks = Vec::with_capacity(shard_count);
        for ((index, alarms), heard) in restored.into_iter().enumerate().zip(heard) {
            let (tx, rx) = mpsc::channel(config.engine.shard_queue);
            let mut engine = RuleEngine::new(rules.clone());
            // Stations' working hours are in the registry's local time.
            engine.set_local_offset(config.engine.registry_offset()?.local_minus_utc());
            engine.restore(alarms, clock());
            for (device, ctx, last_seen) in heard {
                engine.last_heard(&device, &ctx, last_seen);
            }
            senders.push(tx);
            shard_tasks.push(tokio::spawn(run_shard(
                index,
                engine,
                rx,
                alarm_tx.clone(),
                clock.clone(),
                engine_metrics.clone(),
            )));
        }
        drop(alarm_tx);
        let shards = Shards {
            senders: Arc::new(senders),
        };

        let tick_every = Duration::from_millis(config.engine.tick_ms.max(50));
        let offset = config.engine.registry_offset()?;
        let shard_total = shards.senders.len();
        let registry_checks = crate::schedule::run(
            registry.clone(),
            Duration::from_secs(config.engine.registry_check_s.max(1)),
            stopping.clone(),
            move |r: &Registry| {
                crate::schedule::facts_by_shard(
                    r,
                    offset,
                    |e| shard_of(e, shard_total),
                    shard_total,
                )
            },
            shards.senders.to_vec(),
            ShardMsg::Registry,
        );
        let ticks = run_ticker(shards.clone(), clock.clone(), tick_every, stopping.clone());
        let ticker = tokio::spawn(async move {
            tokio::join!(ticks, registry_checks);
        });

        let registry_sync = Arc::new(RegistrySync::new(registry.clone(), dyn_store.clone()));
        registry_sync.ensure().await;
        // Risk grading as views over alarms and the registry's tables.
        config.risk.check()?;
        config.console.check()?;
        for (name, select) in config.risk.views() {
            dyn_store
                .set_view(name, &select)
                .await
                .with_context(|| format!("cannot define the {name} view"))?;
        }
        let sync = tokio::spawn(registry_sync.clone().run(stopping.clone()));

        let route = shards.clone();
        let seen = liveness.clone();
        let lookups = registry.clone();
        let to_rules: Box<dyn Fn(Accepted) + Send + Sync> = Box::new(move |accepted: Accepted| {
            seen.saw(&accepted.reading.device_id, accepted.reading.received_at);
            let tx = route.sender(&accepted.context.binding.equipment_id);
            let msg = match &accepted.reading.payload {
                vigil_model::Payload::Filling(record) => {
                    let facts = crate::filling::facts(&lookups, record, offset);
                    ShardMsg::Filling(accepted, facts)
                }
                _ => ShardMsg::Reading(accepted),
            };
            // Blocking on a full shard queue is the back-pressure we want:
            // the ingest thread slows down instead of memory growing.
            if tx.blocking_send(msg).is_err() {
                warn!("Rule shard is gone; reading not evaluated.");
            }
        });
        let auth = Arc::new(
            Authenticator::new(config.admin_token.clone(), registry.clone(), clock.clone())
                .with_policy(config.tokens.policy()?),
        );
        let pki = Arc::new(crate::certs::Pki::open(&config)?);
        let ingest_config = IngestConfig {
            mqtt_addr: config.mqtt_addr,
            allow_public_plain: config.ingest.allow_public_plain,
            mqtts: pki.listener(&config)?,
            max_connections: config.ingest.max_connections,
            gap_grace_s: config.ingest.gap_grace_s,
            quota: config.ingest.quota.clone(),
            max_seq_rate: config.ingest.max_seq_rate,
        };
        let ingest = Ingest::start(
            ingest_config,
            Arc::new(RegistryDirectory(registry.clone(), auth.clone())),
            dyn_store.clone(),
            &recovery,
            durable_rx,
            to_rules,
            &metrics,
            clock.clone(),
        )
        .context("cannot start MQTT ingest")?;
        let mqtt_addr = ingest.mqtt_addr();
        let mqtts_addr = ingest.mqtts_addr();
        delivery.set_mqtt(ingest.alarm_publisher());
        let ingest_stats = ingest.stats_handle();
        let mqtt_sessions = ingest.sessions();
        let sessions_recheck = tokio::spawn(recheck_sessions(
            registry.changes(),
            auth.registry().token_changes(),
            mqtt_sessions.clone(),
            stopping.clone(),
        ));

        let state = Arc::new(AppState {
            registry,
            store: dyn_store,
            board,
            shards,
            metrics,
            engine_metrics,
            sql: QueryOptions {
                timeout: Duration::from_secs(config.engine.sql_timeout_s),
                max_rows: config.engine.sql_max_rows,
                max_bytes: config.engine.sql_max_answer_mib.saturating_mul(1 << 20),
                ..QueryOptions::default()
            },
            clock,
            liveness,
            registry_sync,
            ingest_stats,
            ingest_health: ingest.health_handle(),
            mqtt_sessions,
            pki,
            rules: RuleSource {
                base: config.rules.clone(),
                file: config.rules_file.clone(),
                current: RwLock::new(rules.clone()),
                reloading: tokio::sync::Mutex::new(()),
            },
            stopping: stopping.clone(),
            registry_offset: offset,
            console: config.console.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let app = crate::api::router(state.clone(), auth);
        let mut http_stop = stopping.clone();
        let http = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "HTTP server failed.");
            }
        });
        spawn_reload_on_hangup(state.clone(), stopping.clone())?;
        info!(%mqtt_addr, mqtts_addr = ?mqtts_addr, %http_addr, data_dir = %config.data_dir.display(), "Vigil is running.");
        Ok(Engine {
            http_addr,
            mqtt_addr,
            mqtts_addr,
            state,
            stop,
            store,
            ingest,
            http,
            ticker,
            sync,
            sessions_recheck,
            shard_tasks,
            hub,
            delivery,
            delivery_grace: Duration::from_secs(config.delivery.shutdown_grace_s),
        })
    }

    /// Ordered stop: HTTP, ingest (its taken messages reach the store and
    /// acks go out), rules, alarm hub, then the store flushes to Parquet.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        info!("Stopping: no new connections; draining.");
        let _ = self.stop.send(true);
        let _ = self.http.await;
        self.ingest
            .shutdown()
            .await
            .context("ingest did not drain cleanly")?;
        let _ = self.ticker.await;
        let _ = self.sync.await;
        let _ = self.sessions_recheck.await;
        // Ingest and the API are stopped, so nothing new reaches the shards;
        // a Stop behind what is queued ends each one. (Waiting for the queues
        // to close would hang on any `AppState` a caller still holds.)
        let Engine {
            state,
            store,
            shard_tasks,
            hub,
            delivery,
            delivery_grace,
            ..
        } = self;
        for tx in state.shards.senders.iter() {
            let _ = tx.send(ShardMsg::Stop).await;
        }
        drop(state);
        for task in shard_tasks {
            let _ = task.await;
        }
        let _ = hub.await;
        // The hub held the only other handle.
        if let Ok(delivery) = Arc::try_unwrap(delivery) {
            delivery.shutdown(delivery_grace).await;
        }
        store.close().await.context("store did not flush cleanly")?;
        info!("Stopped; everything is stored.");
        Ok(())
    }
}

/// How often live MQTT sessions are asked about again without a change: a
/// feed token that reaches its expiry is closed within this.
const SESSION_RECHECK_EVERY: Duration = Duration::from_secs(5);

/// Closes the MQTT sessions the registry no longer lets in, at once: after
/// every registry change (a device disabled or deleted), every token
/// revocation, and every [`SESSION_RECHECK_EVERY`] (tokens expire without a
/// change). HTTP needs nothing from here: `require_auth` ends a revoked
/// token's requests and SSE streams itself.
async fn recheck_sessions(
    mut changes: watch::Receiver<u64>,
    mut revocations: watch::Receiver<u64>,
    sessions: vigil_ingest::SessionControl,
    mut stopping: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SESSION_RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            changed = changes.changed() => match changed {
                Ok(()) => "registry change",
                Err(_) => return,
            },
            revoked = revocations.changed() => match revoked {
                Ok(()) => "token revoked",
                Err(_) => return,
            },
            _ = tick.tick() => "periodic",
            _ = stopping.wait_for(|s| *s) => return,
        };
        let sessions = sessions.clone();
        // The directory lookups are quick, but not for an async worker to wait on.
        let closed = tokio::task::spawn_blocking(move || sessions.recheck())
            .await
            .unwrap_or(0);
        if closed > 0 {
            info!(
                closed,
                why, "MQTT sessions the registry no longer allows are closed."
            );
        }
    }
}

async fn run_shard(
    index: usize,
    mut engine: RuleEngine,
    mut rx: mpsc::Receiver<ShardMsg>,
    out: mpsc::Sender<Alarm>,
    clock: Clock,
    metrics: EngineMetrics,
) {
    while let Some(msg) = rx.recv().await {
        let changes = match msg {
            ShardMsg::Reading(a) => {
                let now = clock();
                let timer = metrics.rule_evaluation.start_timer();
                let changes = engine.on_reading(&a.reading, &a.context, now);
                timer.observe_duration();
                if !changes.is_empty() {
                    metrics
                        .rule_latency
                        .observe((now - a.reading.received_at).max(0) as f64 / 1000.0);
                }
                changes
            }
            ShardMsg::Filling(a, facts) => {
                let now = clock();
                let timer = metrics.rule_evaluation.start_timer();
                let changes = engine.on_filling(&a.reading, &a.context, &facts, now);
                timer.observe_duration();
                if !changes.is_empty() {
                    metrics
                        .rule_latency
                        .observe((now - a.reading.received_at).max(0) as f64 / 1000.0);
                }
                changes
            }
            ShardMsg::Tick(now) => engine.tick(now),
            ShardMsg::Rules(config) => {
                engine.replace_config(*config);
                Vec::new()
            }
            ShardMsg::Registry(facts) => engine.registry_check(&facts, clock()),
            ShardMsg::Stop => break,
            ShardMsg::Acknowledge { id, by, reply } => {
                let result = engine.acknowledge(&id, &by, clock());
                let change = result.as_ref().ok().cloned();
                let _ = reply.send(result);
                change.into_iter().collect()
            }
            ShardMsg::Resolve {
                id,
                by,
                note,
                reply,
            } => {
                let result = engine.resolve(&id, &by, &note, clock());
                let change = result.as_ref().ok().cloned();
                let _ = reply.send(result);
                change.into_iter().collect()
            }
        };
        for alarm in changes {
            if out.send(alarm).await.is_err() {
                warn!(shard = index, "Alarm hub is gone; alarm change dropped.");
            }
        }
    }
}

/// SIGHUP re-reads the rule file (a refused file is logged and counted;
/// the running rules stay).
fn spawn_reload_on_hangup(
    state: Arc<AppState>,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hangup.recv() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            info!("SIGHUP: reloading rules.");
            // Success and refusal are both logged by `reload`.
            let _ = state
                .rules
                .reload(&state.shards, &state.engine_metrics)
                .await;
        }
    });
    Ok(())
}

async fn run_ticker(
    shards: Shards,
    clock: Clock,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let now = clock();
        for tx in shards.senders.iter() {
            // A full shard is busy with readings; the next tick catches up.
            let _ = tx.try_send(ShardMsg::Tick(now));
        }
    }
}

async fn run_hub(
    mut rx: mpsc::Receiver<Alarm>,
    board: Arc<AlarmBoard>,
    store: Arc<dyn Store>,
    metrics: EngineMetrics,
    delivery: Arc<Delivery>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut writes = Vec::with_capacity(batch.len());
        for alarm in batch.drain(..) {
            metrics
                .alarm_changes
                .with_label_values(&[alarm.severity.as_str(), alarm.state.as_str()])
                .inc();
            board.apply(&alarm);
            board.publish(alarm.clone());
            // Never waits: MQTT is a hand-off to the router, webhooks queue.
            delivery.deliver(&Arc::new(alarm.clone()));
            writes.push(Write {
                record: Record::Alarm(alarm),
                ack: None,
            });
        }
        metrics.open_alarms.set(board.open_count() as i64);
        // The store only refuses when closing, which happens after the hub.
        if let Err(e) = store.write(writes).await {
            warn!(error = %e, "Alarm changes could not be stored.");
        }
    }
}
