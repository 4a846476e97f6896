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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use vigil_ingest::{Accepted, Directory, FeedGrant, HeardThrough, Ingest, IngestConfig};
use vigil_model::{Alarm, DeviceId, Grant, Resolution};
use vigil_registry::Registry;
use vigil_registry::auth::Authenticator;
use vigil_rules::{RuleConfig, RuleEngine};
use vigil_storage::{QueryOptions, Record, Recovery, Store, StoreConfig, Write};

use crate::alarms::AlarmBoard;
use crate::config::ServerConfig;
use crate::delivery::Delivery;
use crate::metrics::EngineMetrics;
use crate::registry_tables::RegistrySync;
use crate::state::{
    AppState, Liveness, RuleSource, ShardMsg, Shards, ToEvaluate, load_rules, shard_of,
};

pub use vigil_model::{Clock, system_clock};

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
        match self.1.authenticate(token)?.grant() {
            Grant::All => Some(FeedGrant::All),
            Grant::Regions(regions) => Some(FeedGrant::Regions(regions.to_vec())),
            Grant::Owner(_) => None,
        }
    }
}

pub struct Engine {
    http_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    /// The mutual-TLS listener, when `mqtts_addr` is set.
    mqtts_addr: Option<SocketAddr>,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    store: Arc<dyn Store>,
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
    /// Where the HTTP API, SSE feed and metrics listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the plain MQTT listener listens.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The mutual-TLS MQTT listener, when `mqtts_addr` is set.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// What the API and the tasks share (the demo and the bench watch it).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Starts every stage in data-path order: rules and registry, the
    /// store and what it recovers, the alarm hub, the rule shards, the
    /// ticker, the registry's SQL tables, MQTT ingest, then HTTP.
    pub async fn start(config: ServerConfig, clock: Clock) -> anyhow::Result<Engine> {
        let rules = load_rules(&config.rules, config.rules_file.as_deref())?;
        crate::data_dir::secure(&config.data_dir)?;
        let registry =
            Arc::new(Registry::open(&config.data_dir).context("cannot open the registry")?);
        let (durable_tx, durable_rx) = mpsc::channel(1024);
        let (store, mut recovery) = open_store(&config, durable_tx).await?;

        let metrics = prometheus::Registry::new();
        let (stop, stopping) = watch::channel(false);
        let wiring = Wiring {
            config: &config,
            engine_metrics: EngineMetrics::register(&metrics)?,
            metrics: metrics.clone(),
            offset: config.engine.registry_offset()?,
            pki: Arc::new(crate::certs::Pki::open(&config)?),
            clock,
            registry,
            store,
            stopping,
        };
        let hub = wiring.alarm_hub(&recovery)?;
        let liveness = Arc::new(Liveness::default());
        let (shards, shard_tasks) =
            wiring.rule_shards(&rules, &mut recovery, hub.changes, &liveness);
        let (registry_sync, sync) = wiring.registry_tables().await?;
        let auth = Arc::new(
            Authenticator::new(
                config.admin_token.clone(),
                Arc::clone(&wiring.registry),
                Arc::clone(&wiring.clock),
            )
            .with_policy(config.tokens.policy()?),
        );
        let ingest = wiring.ingest(&shards, &liveness, &auth, &recovery, durable_rx)?;
        let ticker = wiring.ticker(&shards, ingest.heard_through());
        let mqtt_addr = ingest.mqtt_addr();
        let mqtts_addr = ingest.mqtts_addr();
        hub.delivery.set_mqtt(ingest.alarm_publisher());
        let mqtt_sessions = ingest.sessions();
        let sessions_recheck = tokio::spawn(recheck_sessions(
            wiring.registry.subscribe(),
            wiring.registry.token_changes(),
            mqtt_sessions.clone(),
            wiring.stopping.clone(),
        ));

        let state = Arc::new(AppState {
            registry: Arc::clone(&wiring.registry),
            store: Arc::clone(&wiring.store),
            board: hub.board,
            shards,
            metrics,
            engine_metrics: wiring.engine_metrics.clone(),
            sql: config.engine.query_options(),
            clock: Arc::clone(&wiring.clock),
            liveness,
            registry_sync,
            ingest_stats: ingest.stats_handle(),
            ingest_health: ingest.health_handle(),
            ingest_heard: ingest.heard_through(),
            mqtt_sessions,
            pki: Arc::clone(&wiring.pki),
            rules: RuleSource {
                base: config.rules.clone(),
                file: config.rules_file.clone(),
                current: RwLock::new(rules),
                reloading: tokio::sync::Mutex::new(()),
            },
            stopping: wiring.stopping.clone(),
            registry_offset: wiring.offset,
            console: config.console.clone(),
        });
        let (http_addr, http) = serve_http(config.http_addr, &state, auth).await?;
        spawn_reload_on_hangup(Arc::clone(&state), wiring.stopping.clone())?;
        info!(%mqtt_addr, mqtts_addr = ?mqtts_addr, %http_addr, data_dir = %config.data_dir.display(), "Vigil is running.");
        Ok(Engine {
            http_addr,
            mqtt_addr,
            mqtts_addr,
            state,
            stop,
            store: wiring.store,
            ingest,
            http,
            ticker,
            sync,
            sessions_recheck,
            shard_tasks,
            hub: hub.task,
            delivery: hub.delivery,
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

/// Opens the configured store and reads back what the engine needs after
/// a restart.
async fn open_store(
    config: &ServerConfig,
    durable: mpsc::Sender<Vec<vigil_storage::AckToken>>,
) -> anyhow::Result<(Arc<dyn Store>, Recovery)> {
    let store_config = config.store_config()?;
    let backend = match store_config {
        StoreConfig::Embedded(_) => "embedded",
        StoreConfig::Postgres(_) => "PostgreSQL",
    };
    let store = vigil_storage::open(store_config, durable)
        .await
        .with_context(|| format!("cannot open the {backend} store"))?;
    let recovery = store
        .recover()
        .await
        .context("cannot recover state from the store")?;
    let open_restored = recovery.alarms.iter().filter(|a| a.state.is_open()).count();
    info!(
        devices = recovery.seqs.len(),
        open_alarms = open_restored,
        "Recovered state from the store."
    );
    Ok((store, recovery))
}

/// What every start step shares.
struct Wiring<'a> {
    config: &'a ServerConfig,
    clock: Clock,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    engine_metrics: EngineMetrics,
    /// The Prometheus registry the API serves (a handle: clones share it).
    metrics: prometheus::Registry,
    stopping: watch::Receiver<bool>,
    /// The registry's dates and stations' hours are in this local time.
    offset: chrono::FixedOffset,
    /// The device CA: the TLS listener's and the certificate endpoints'.
    pki: Arc<crate::certs::Pki>,
}

/// The alarm hub, started: where shards send changes, the board it keeps
/// and the delivery channels it feeds.
struct Hub {
    changes: mpsc::Sender<Alarm>,
    board: Arc<AlarmBoard>,
    delivery: Arc<Delivery>,
    task: JoinHandle<()>,
}

impl Wiring<'_> {
    /// One consumer of alarm changes, so that the board, the feed and the
    /// store see them in one order. The board starts with the recovered
    /// open alarms.
    fn alarm_hub(&self, recovery: &Recovery) -> anyhow::Result<Hub> {
        let board = Arc::new(AlarmBoard::new(4096));
        for alarm in recovery.alarms.iter().filter(|a| a.state.is_open()) {
            board.apply(alarm);
        }
        let webhooks = crate::webhooks::Webhooks::start(
            &self.config.delivery.webhooks,
            self.engine_metrics.webhooks.clone(),
        )
        .context("invalid [delivery] configuration")?;
        let delivery = Arc::new(Delivery::new(webhooks));
        // Sized for a burst of changes from every shard at once.
        let (changes, alarm_rx) = mpsc::channel::<Alarm>(16_384);
        let task = tokio::spawn(run_hub(
            alarm_rx,
            Arc::clone(&board),
            Arc::clone(&self.store),
            self.engine_metrics.clone(),
            Arc::clone(&delivery),
        ));
        Ok(Hub {
            changes,
            board,
            delivery,
            task,
        })
    }

    /// One rule engine per shard (by equipment), each given back its
    /// recovered alarms and when its devices were last heard, so that one
    /// silent since before the restart still goes offline on schedule (and
    /// counts as online until then).
    fn rule_shards(
        &self,
        rules: &RuleConfig,
        recovery: &mut Recovery,
        changes: mpsc::Sender<Alarm>,
        liveness: &Liveness,
    ) -> (Shards, Vec<JoinHandle<()>>) {
        let shard_count = self.config.engine.rule_shards.max(1);
        let mut restored: Vec<Vec<Alarm>> = vec![Vec::new(); shard_count];
        for alarm in std::mem::take(&mut recovery.alarms) {
            restored[shard_of(&alarm.equipment_id, shard_count)].push(alarm);
        }
        let mut heard: Vec<Vec<_>> = vec![Vec::new(); shard_count];
        for (device, last_seen) in std::mem::take(&mut recovery.last_seen) {
            liveness.saw(&device, last_seen);
            if let Resolution::Active(ctx) = self.registry.resolve(&device) {
                heard[shard_of(&ctx.binding.equipment_id, shard_count)]
                    .push((device, ctx, last_seen));
            }
        }
        let mut senders = Vec::with_capacity(shard_count);
        let mut tasks = Vec::with_capacity(shard_count);
        for ((index, alarms), heard) in restored.into_iter().enumerate().zip(heard) {
            // Bounded: a full queue blocks ingest (back-pressure). A message
            // is one ingest batch of at most `MAX_BATCH` readings, so this
            // many of them hold at most `shard_queue` readings.
            let batches = (self.config.engine.shard_queue / vigil_ingest::MAX_BATCH).max(2);
            let (tx, rx) = mpsc::channel(batches);
            let mut engine = RuleEngine::new(rules.clone());
            // Stations' working hours are in the registry's local time.
            engine.set_local_offset(self.offset.local_minus_utc());
            engine.restore(alarms, (self.clock)());
            for (device, ctx, last_seen) in heard {
                engine.last_heard(&device, &ctx, last_seen);
            }
            senders.push(tx);
            tasks.push(tokio::spawn(run_shard(
                index,
                engine,
                rx,
                changes.clone(),
                Arc::clone(&self.clock),
                self.engine_metrics.clone(),
            )));
        }
        let shards = Shards {
            senders: Arc::new(senders),
        };
        (shards, tasks)
    }

    /// Clock ticks to every shard, and the registry-time checks
    /// (inspections, maintenance) on their own period.
    fn ticker(&self, shards: &Shards, heard: HeardThrough) -> JoinHandle<()> {
        let engine = &self.config.engine;
        let tick_every = Duration::from_millis(engine.tick_ms.max(50));
        let offset = self.offset;
        let shard_total = shards.senders.len();
        let registry_checks = crate::schedule::run(
            crate::schedule::Schedule {
                registry: Arc::clone(&self.registry),
                store: Arc::clone(&self.store),
                sql: QueryOptions {
                    timeout: Duration::from_secs(engine.sql_timeout_s),
                    ..QueryOptions::default()
                },
                clock: Arc::clone(&self.clock),
                offset,
                every: Duration::from_secs(engine.registry_check_s.max(1)),
            },
            self.stopping.clone(),
            move |e| shard_of(e, shard_total),
            shards.senders.to_vec(),
            ShardMsg::Registry,
        );
        let ticks = run_ticker(
            shards.clone(),
            Arc::clone(&self.clock),
            heard,
            self.engine_metrics.ingest_behind.clone(),
            tick_every,
            self.stopping.clone(),
        );
        tokio::spawn(async move {
            tokio::join!(ticks, registry_checks);
        })
    }

    /// The registry's reference tables and the risk views over them, in
    /// the store before anyone queries; kept fresh by a background task.
    async fn registry_tables(&self) -> anyhow::Result<(Arc<RegistrySync>, JoinHandle<()>)> {
        let registry_sync = Arc::new(RegistrySync::new(
            Arc::clone(&self.registry),
            Arc::clone(&self.store),
        ));
        registry_sync.ensure().await;
        // Risk grading as views over alarms and the registry's tables.
        self.config.risk.check()?;
        self.config.console.check()?;
        for (name, select) in self.config.risk.views() {
            self.store
                .set_view(name, &select)
                .await
                .with_context(|| format!("cannot define the {name} view"))?;
        }
        let task = tokio::spawn(Arc::clone(&registry_sync).run(self.stopping.clone()));
        Ok((registry_sync, task))
    }

    /// MQTT ingest: each accepted reading goes to its equipment's shard
    /// (filling records with the registry's facts of cylinder and operator).
    fn ingest(
        &self,
        shards: &Shards,
        liveness: &Arc<Liveness>,
        auth: &Arc<Authenticator>,
        recovery: &Recovery,
        durable: mpsc::Receiver<Vec<vigil_storage::AckToken>>,
    ) -> anyhow::Result<Ingest> {
        let route = shards.clone();
        let seen = Arc::clone(liveness);
        let lookups = Arc::clone(&self.registry);
        let offset = self.offset;
        let to_rules: vigil_ingest::RulesSink = Box::new(move |batch: Vec<Accepted>| {
            let mut per_shard: Vec<Vec<ToEvaluate>> = Vec::new();
            per_shard.resize_with(route.senders.len(), Vec::new);
            for accepted in batch {
                seen.saw(&accepted.reading.device_id, accepted.reading.received_at);
                let facts = match &accepted.reading.payload {
                    vigil_model::Payload::Filling(record) => {
                        Some(crate::filling::facts(&lookups, record, offset))
                    }
                    _ => None,
                };
                let shard = shard_of(&accepted.context.binding.equipment_id, per_shard.len());
                per_shard[shard].push(ToEvaluate { accepted, facts });
            }
            for (tx, readings) in route.senders.iter().zip(per_shard) {
                if readings.is_empty() {
                    continue;
                }
                // Blocking on a full shard queue is the back-pressure we
                // want: the ingest thread slows down instead of memory growing.
                if tx.blocking_send(ShardMsg::Readings(readings)).is_err() {
                    warn!("Rule shard is gone; readings not evaluated.");
                }
            }
        });
        let config = self.config;
        let ingest_config = IngestConfig {
            mqtt_addr: config.mqtt_addr,
            allow_public_plain: config.ingest.allow_public_plain,
            mqtts: self.pki.listener(config)?,
            max_connections: config.ingest.max_connections,
            io_threads: config.ingest.io_threads,
            puback_hold_ms: config.ingest.puback_hold_ms,
            batch_interval_us: config.ingest.batch_interval_us,
            gap_grace_s: config.ingest.gap_grace_s,
            quota: config.ingest.quota.clone(),
            max_seq_rate: config.ingest.max_seq_rate,
        };
        Ingest::start(
            ingest_config,
            Arc::new(RegistryDirectory(
                Arc::clone(&self.registry),
                Arc::clone(auth),
            )),
            Arc::clone(&self.store),
            recovery,
            durable,
            to_rules,
            &self.metrics,
            Arc::clone(&self.clock),
        )
        .context("cannot start MQTT ingest")
    }
}

/// The HTTP API on `addr`, until the engine stops.
async fn serve_http(
    addr: SocketAddr,
    state: &Arc<AppState>,
    auth: Arc<Authenticator>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
    let http_addr = listener.local_addr()?;
    let app = crate::api::router(Arc::clone(state), auth);
    let mut http_stop = state.stopping.clone();
    let http = tokio::spawn(async move {
        // Without TCP_NODELAY an SSE event written after a previous one waits
        // for the client's delayed ACK (~40 ms at p99 in `vigil bench ingest`).
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .tcp_nodelay(true);
        if let Err(e) = serve.await {
            warn!(error = %e, "HTTP server failed.");
        }
    });
    Ok((http_addr, http))
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
            ShardMsg::Readings(readings) => {
                for ToEvaluate { accepted: a, facts } in readings {
                    let now = clock();
                    let timer = metrics.rule_evaluation.start_timer();
                    let new = match facts {
                        Some(facts) => engine.on_filling(&a.reading, &a.context, &facts, now),
                        None => engine.on_reading(&a.reading, &a.context, now),
                    };
                    timer.observe_duration();
                    if !new.is_empty() {
                        metrics
                            .rule_latency
                            .observe((now - a.reading.received_at).max(0) as f64 / 1000.0);
                        // Out at once, not after the rest of the batch.
                        send_changes(&out, index, new).await;
                    }
                }
                Vec::new()
            }
            ShardMsg::Tick { now, heard_through } => engine.tick_heard(now, heard_through),
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
        send_changes(&out, index, changes).await;
    }
}

async fn send_changes(out: &mpsc::Sender<Alarm>, shard: usize, changes: Vec<Alarm>) {
    for alarm in changes {
        if out.send(alarm).await.is_err() {
            warn!(shard, "Alarm hub is gone; alarm change dropped.");
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

/// Ingest this far behind is said in the log (once, and once when it has
/// caught up): devices' silence is not judged meanwhile.
const BEHIND_WARNING_MS: i64 = 10_000;

async fn run_ticker(
    shards: Shards,
    clock: Clock,
    heard: HeardThrough,
    behind_gauge: prometheus::Gauge,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut warned = false;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        // Read after ingest handed those readings to the shards, and sent
        // after them: a shard evaluates them before the tick.
        let heard_through = heard.get();
        let now = clock();
        let behind = (now - heard_through).max(0);
        behind_gauge.set(behind as f64 / 1000.0);
        if behind >= BEHIND_WARNING_MS && !warned {
            warned = true;
            warn!(
                behind_s = behind / 1000,
                "Ingest has not caught up (store or rule shards slow); device.offline waits for it."
            );
        } else if behind < BEHIND_WARNING_MS && warned {
            warned = false;
            info!("Ingest has caught up; device.offline judges silence again.");
        }
        for tx in shards.senders.iter() {
            // A full shard is busy with readings; the next tick catches up.
            let _ = tx.try_send(ShardMsg::Tick { now, heard_through });
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
