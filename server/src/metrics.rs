//! The engine's own Prometheus metrics (ingest registers its own).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use vigil_storage::Store;

#[derive(Clone)]
pub(crate) struct EngineMetrics {
    /// Receipt of the reading to the alarm change leaving its rule shard.
    pub rule_latency: Histogram,
    pub alarm_changes: IntCounterVec,
    pub open_alarms: IntGauge,
    pub sse_clients: IntGauge,
    pub sql_queries: IntCounterVec,
    /// The store's outage and backlog, read from it at every scrape.
    pub store_outage: IntGauge,
    pub store_outages: IntCounter,
    pub store_backlog_batches: IntGauge,
    pub store_backlog_records: IntGauge,
    pub webhooks: crate::webhooks::WebhookMetrics,
    /// Rule reloads by result (`ok`, `refused`).
    pub rule_reloads: IntCounterVec,
    /// Time a rule shard spends evaluating one reading or filling record.
    pub rule_evaluation: Histogram,
    /// Messages waiting in the rule shards' queues (read at every scrape).
    pub rule_queue_depth: IntGauge,
    /// Enabled devices heard within 3 report intervals (read at every scrape).
    pub devices_online: IntGauge,
    /// How far ingest's `heard_through` is behind the clock (set every tick).
    pub ingest_behind: Gauge,
}

impl EngineMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rule_latency = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_alarm_latency_seconds",
                "From receipt of a reading to the alarm change it caused.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let alarm_changes = IntCounterVec::new(
            Opts::new(
                "vigil_alarm_changes_total",
                "Alarm changes (raise, repeat, acknowledge, clear) by severity and resulting state.",
            ),
            &["severity", "state"],
        )?;
        let open_alarms = IntGauge::new(
            "vigil_alarms_open",
            "Alarms that are active or acknowledged.",
        )?;
        let sse_clients = IntGauge::new("vigil_sse_clients", "Connected live alarm feed clients.")?;
        let sql_queries = IntCounterVec::new(
            Opts::new(
                "vigil_sql_queries_total",
                "SQL queries from the API by outcome: ok, or the error code (sql_timeout, sql_memory, sql_busy, sql_too_complex, …).",
            ),
            &["outcome"],
        )?;
        let store_outage = IntGauge::new(
            "vigil_store_outage",
            "1 while the store cannot make writes durable where they belong (e.g. PostgreSQL unreachable; accepted readings wait in the local log).",
        )?;
        let store_outages = IntCounter::new(
            "vigil_store_outages_total",
            "Outages of the store's database since the engine started.",
        )?;
        let store_backlog_batches = IntGauge::new(
            "vigil_store_backlog_batches",
            "Batches in the local log that the store's database does not have yet.",
        )?;
        let store_backlog_records = IntGauge::new(
            "vigil_store_backlog_records",
            "Records (readings, alarm changes, dead letters) in the local log that the store's database does not have yet.",
        )?;
        let rule_reloads = IntCounterVec::new(
            Opts::new(
                "vigil_rule_reloads_total",
                "Rule reloads (SIGHUP, POST /api/v1/rules/reload) by result: ok, or refused (the old rules stay).",
            ),
            &["result"],
        )?;
        let rule_evaluation = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_rule_evaluation_seconds",
                "Time a rule shard spends evaluating one reading or filling record.",
            )
            .buckets(vec![
                0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
                0.001, 0.0025, 0.01,
            ]),
        )?;
        let rule_queue_depth = IntGauge::new(
            "vigil_rule_queue_depth",
            "Readings and timer ticks waiting in the rule shards' queues.",
        )?;
        let devices_online = IntGauge::new(
            "vigil_devices_online",
            "Enabled registered devices heard within 3 report intervals (device.offline's notion of online).",
        )?;
        let ingest_behind = Gauge::new(
            "vigil_ingest_behind_seconds",
            "How long ago ingest last had every message the broker took stored and handed to the rules; device.offline judges silence only up to then.",
        )?;
        let webhooks = crate::webhooks::WebhookMetrics {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "vigil_webhook_deliveries_total",
                    "Alarm changes per webhook by result: delivered, retried (one per extra try), failed (gave up), dropped (queue full).",
                ),
                &["webhook", "result"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "vigil_webhook_queue_depth",
                    "Alarm changes waiting for a webhook.",
                ),
                &["webhook"],
            )?,
        };
        registry.register(Box::new(webhooks.deliveries.clone()))?;
        registry.register(Box::new(webhooks.queue_depth.clone()))?;
        registry.register(Box::new(rule_latency.clone()))?;
        registry.register(Box::new(alarm_changes.clone()))?;
        registry.register(Box::new(open_alarms.clone()))?;
        registry.register(Box::new(sse_clients.clone()))?;
        registry.register(Box::new(sql_queries.clone()))?;
        registry.register(Box::new(store_outage.clone()))?;
        registry.register(Box::new(store_outages.clone()))?;
        registry.register(Box::new(rule_reloads.clone()))?;
        registry.register(Box::new(store_backlog_batches.clone()))?;
        registry.register(Box::new(store_backlog_records.clone()))?;
        registry.register(Box::new(rule_evaluation.clone()))?;
        registry.register(Box::new(rule_queue_depth.clone()))?;
        registry.register(Box::new(devices_online.clone()))?;
        registry.register(Box::new(ingest_behind.clone()))?;
        Ok(Self {
            rule_latency,
            alarm_changes,
            open_alarms,
            sse_clients,
            sql_queries,
            store_outage,
            store_outages,
            rule_reloads,
            store_backlog_batches,
            store_backlog_records,
            webhooks,
            rule_evaluation,
            rule_queue_depth,
            devices_online,
            ingest_behind,
        })
    }

    /// Reads the store's state into the gauges (before a scrape).
    pub(crate) fn observe_store(&self, store: &dyn Store) {
        let stats = store.stats();
        self.store_outage
            .set(i64::from(stats.outage || store.health().is_err()));
        // The store counts; the counter catches up with it.
        self.store_outages
            .inc_by(stats.outages.saturating_sub(self.store_outages.get()));
        self.store_backlog_batches.set(stats.backlog_batches as i64);
        self.store_backlog_records.set(stats.backlog_records as i64);
    }
}
