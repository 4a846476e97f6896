//! The engine's own Prometheus metrics (ingest registers its own).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EngineMetrics {
    /// Receipt of the reading to the alarm change leaving its rule shard.
    pub rule_latency: Histogram,
    pub alarm_changes: IntCounterVec,
    pub open_alarms: IntGauge,
    pub sse_clients: IntGauge,
    pub sql_queries: IntCounterVec,
}

impl EngineMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
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
            Opts::new("vigil_sql_queries_total", "SQL queries by outcome."),
            &["outcome"],
        )?;
        registry.register(Box::new(rule_latency.clone()))?;
        registry.register(Box::new(alarm_changes.clone()))?;
        registry.register(Box::new(open_alarms.clone()))?;
        registry.register(Box::new(sse_clients.clone()))?;
        registry.register(Box::new(sql_queries.clone()))?;
        Ok(Self {
            rule_latency,
            alarm_changes,
            open_alarms,
            sse_clients,
            sql_queries,
        })
    }
}
