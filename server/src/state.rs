//! What the HTTP API, the demo and the engine's tasks share while it runs:
//! [`AppState`] (registry, store, alarm board, shards, metrics, SQL
//! options), the senders into the rule shards ([`Shards`]), the running
//! rule configuration ([`RuleSource`]) and when devices were last heard
//! ([`Liveness`]). `engine` builds it, `api` serves it; neither imports the
//! other's internals.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use vigil_ingest::Accepted;
use vigil_model::{Alarm, AlarmId, Clock, DeviceId, EpochMs, EquipmentId};
use vigil_registry::Registry;
use vigil_rules::{AlarmOpError, RuleConfig};
use vigil_storage::{QueryOptions, Store};

use crate::alarms::AlarmBoard;
use crate::metrics::EngineMetrics;
use crate::registry_tables::RegistrySync;

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
pub(crate) struct RuleSource {
    pub(crate) base: toml::Table,
    pub(crate) file: Option<PathBuf>,
    pub(crate) current: RwLock<RuleConfig>,
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl RuleSource {
    pub(crate) fn current(&self) -> RuleConfig {
        self.current.read().clone()
    }

    /// Re-reads the rule file and hands the result to every shard; a file
    /// that does not check is refused and the running rules stay.
    pub(crate) async fn reload(
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

    pub(crate) fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// What the HTTP API and the engine's tasks share. Outside the crate it
/// is a window on the running engine for the demo and the bench: the
/// methods below, read only.
pub struct AppState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) board: Arc<AlarmBoard>,
    pub(crate) shards: Shards,
    pub(crate) metrics: prometheus::Registry,
    pub(crate) engine_metrics: EngineMetrics,
    pub(crate) sql: QueryOptions,
    pub(crate) clock: Clock,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) registry_sync: Arc<RegistrySync>,
    pub(crate) ingest_stats: Arc<dyn Fn() -> vigil_ingest::IngestStats + Send + Sync>,
    /// `Err` while ingest cannot take messages (for `/readyz`).
    pub(crate) ingest_health: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// How far ingest has heard: "online" judges silence up to then, as
    /// `device.offline` does.
    pub(crate) ingest_heard: vigil_ingest::HeardThrough,
    /// Closes live MQTT sessions by identity.
    pub(crate) mqtt_sessions: vigil_ingest::SessionControl,
    /// The device CA (certificate endpoints).
    pub(crate) pki: Arc<crate::certs::Pki>,
    /// The running rule configuration (rule replay starts from it) and
    /// where it is re-read from.
    pub(crate) rules: RuleSource,
    /// Flips to true when the engine stops; long-lived responses (SSE) end.
    pub(crate) stopping: watch::Receiver<bool>,
    /// The registry's dates are days at this UTC offset.
    pub(crate) registry_offset: chrono::FixedOffset,
    /// The browser console at `/` (server/src/console.rs).
    pub(crate) console: crate::console::ConsoleConfig,
}

impl AppState {
    /// The registry (the demo imports its fleet through it).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The store (benches flush it and count what it holds).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Ingest's counters since start.
    pub fn ingest_stats(&self) -> vigil_ingest::IngestStats {
        (self.ingest_stats)()
    }

    /// Every alarm change from now on, as the live feed carries it.
    pub fn alarm_feed(&self) -> tokio::sync::broadcast::Receiver<Arc<Alarm>> {
        self.board.subscribe()
    }

    /// The open alarms.
    pub fn open_alarms(&self) -> Vec<Alarm> {
        self.board.open_alarms(&Default::default())
    }

    pub fn open_count(&self) -> usize {
        self.board.open_count()
    }

    /// The engine's time (its clock), epoch ms.
    pub fn now(&self) -> EpochMs {
        (self.clock)()
    }

    /// When `device` was last heard from.
    pub fn last_heard(&self, device: &DeviceId) -> Option<EpochMs> {
        self.liveness.last_heard(device)
    }

    /// Devices with a live MQTT session.
    pub fn mqtt_devices(&self) -> usize {
        self.mqtt_sessions.counts().0
    }
}

/// Last time each device was heard from, for "devices online".
#[derive(Default)]
pub(crate) struct Liveness {
    seen: Mutex<HashMap<DeviceId, EpochMs>>,
}

impl Liveness {
    pub(crate) fn saw(&self, device: &DeviceId, at: EpochMs) {
        let mut seen = self.seen.lock();
        match seen.get_mut(device) {
            Some(t) => *t = at,
            None => {
                seen.insert(device.clone(), at);
            }
        }
    }

    /// When `device` was last heard from.
    pub(crate) fn last_heard(&self, device: &DeviceId) -> Option<EpochMs> {
        self.seen.lock().get(device).copied()
    }

    /// When `device` was last heard (since this engine started, or as the
    /// store remembered it at start).
    pub(crate) fn heard(&self, device: &DeviceId) -> Option<EpochMs> {
        self.seen.lock().get(device).copied()
    }
}

pub(crate) enum ShardMsg {
    /// The readings of one ingest batch for this shard's equipment, in
    /// order: one message (one wake-up of the shard) for all of them.
    Readings(Vec<ToEvaluate>),
    /// Shutdown: everything queued before it has been evaluated.
    Stop,
    /// The registry's facts of this shard's equipment (registry-time rules).
    Registry(Vec<vigil_rules::RegistryFacts>),
    /// The wall clock, and how far ingest has handed readings on
    /// (`vigil_ingest::HeardThrough`): devices' silence is judged up to then.
    Tick {
        now: EpochMs,
        heard_through: EpochMs,
    },
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

/// One accepted reading for a rule shard.
pub(crate) struct ToEvaluate {
    pub accepted: Accepted,
    /// A filling record's registry facts of its cylinder and operator.
    pub facts: Option<vigil_rules::FillingFacts>,
}

/// Senders into the rule shards, routed by equipment.
#[derive(Clone)]
pub(crate) struct Shards {
    pub(crate) senders: Arc<Vec<mpsc::Sender<ShardMsg>>>,
}

pub(crate) fn shard_of(equipment: &EquipmentId, shards: usize) -> usize {
    // SipHash with fixed keys: stable across runs, so restored alarms land
    // in the shard that will see their equipment's readings.
    let mut h = std::hash::DefaultHasher::new();
    equipment.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// Why an alarm operation did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AlarmOpFailure {
    #[error(transparent)]
    Rule(#[from] AlarmOpError),
    #[error("the engine is shutting down")]
    Stopping,
}

impl Shards {
    /// Messages waiting in the shards' queues.
    pub(crate) fn queued(&self) -> usize {
        self.senders
            .iter()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .sum()
    }

    pub(crate) fn sender(&self, equipment: &EquipmentId) -> &mpsc::Sender<ShardMsg> {
        &self.senders[shard_of(equipment, self.senders.len())]
    }

    pub(crate) async fn acknowledge(
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

    pub(crate) async fn resolve(
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
