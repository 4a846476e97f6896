//! Ingest's Prometheus metrics, registered in the registry the engine gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use vigil_model::RejectReason;

use crate::IngestError;
use crate::quota::Excess;
use crate::sessions::{Disconnect, Refusal};

#[derive(Clone)]
pub(crate) struct Metrics {
    pub messages: IntCounter,
    pub bytes: IntCounter,
    pub accepted: IntCounter,
    pub rejected: IntCounterVec,
    pub duplicates: IntCounter,
    pub late: IntCounter,
    pub seq_lookups: IntCounter,
    pub seq_gaps: IntCounter,
    pub acks_published: IntCounter,
    pub broker_skipped: IntCounter,
    /// Added to by the broker's router (it knows nothing of Prometheus):
    /// messages an alarm-feed reader never got.
    pub feed_skipped: Arc<AtomicU64>,
    /// Set by the router too: the feed filters whose logs it holds.
    pub feed_filter_logs: Arc<AtomicU64>,
    /// And the persistent sessions it keeps for clients that are away.
    pub sessions_away: Arc<AtomicU64>,
    pub store_errors: IntCounter,
    pub connects: IntCounterVec,
    pub feed_publishes: IntCounterVec,
    pub topic_refusals: IntCounterVec,
    pub commit_latency: Histogram,
    /// Times a connection went over its quota and stopped being read.
    pub throttled: IntCounterVec,
    /// Sessions the engine ended, by reason.
    pub disconnects: IntCounterVec,
    /// Live MQTT sessions by login kind (`device`, `feed`).
    pub sessions: IntGaugeVec,
    pub link_restarts: IntCounter,
}

impl Metrics {
    pub(crate) fn register(registry: &Registry) -> Result<Metrics, IngestError> {
        let counter = |name: &'static str, help: &str| -> Result<IntCounter, IngestError> {
            let c = IntCounter::with_opts(Opts::new(name, help))
                .map_err(|source| IngestError::Metrics { name, source })?;
            registry
                .register(Box::new(c.clone()))
                .map_err(|source| IngestError::Metrics { name, source })?;
            Ok(c)
        };
        let counter_vec =
            |name: &'static str, help: &str, label: &str| -> Result<IntCounterVec, IngestError> {
                let c = IntCounterVec::new(Opts::new(name, help), &[label])
                    .map_err(|source| IngestError::Metrics { name, source })?;
                registry
                    .register(Box::new(c.clone()))
                    .map_err(|source| IngestError::Metrics { name, source })?;
                Ok(c)
            };
        let latency_name = "vigil_ingest_commit_latency_seconds";
        let commit_latency = Histogram::with_opts(
            HistogramOpts::new(
                latency_name,
                "Time from receiving a device message to the store reporting it durable.",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ]),
        )
        .map_err(|source| IngestError::Metrics {
            name: latency_name,
            source,
        })?;
        registry
            .register(Box::new(commit_latency.clone()))
            .map_err(|source| IngestError::Metrics {
                name: latency_name,
                source,
            })?;

        let sessions_name = "vigil_ingest_sessions";
        let sessions = IntGaugeVec::new(
            Opts::new(
                sessions_name,
                "MQTT sessions logged in right now, by login kind.",
            ),
            &["login"],
        )
        .map_err(|source| IngestError::Metrics {
            name: sessions_name,
            source,
        })?;
        registry
            .register(Box::new(sessions.clone()))
            .map_err(|source| IngestError::Metrics {
                name: sessions_name,
                source,
            })?;

        let metrics = Metrics {
            messages: counter(
                "vigil_ingest_messages_total",
                "Device messages received on /tenants/… topics.",
            )?,
            bytes: counter(
                "vigil_ingest_bytes_total",
                "Payload bytes of received device messages.",
            )?,
            accepted: counter(
                "vigil_ingest_accepted_total",
                "Readings accepted and handed to the store and the rules.",
            )?,
            rejected: counter_vec(
                "vigil_ingest_rejected_total",
                "Refused device input by reason: messages kept as dead letters, CONNECTs and TLS handshakes refused, oversize packets.",
                "reason",
            )?,
            duplicates: counter(
                "vigil_ingest_duplicates_total",
                "Messages whose (device_id, seq) is stored already (or on its way); acked again, not stored again.",
            )?,
            late: counter(
                "vigil_ingest_late_total",
                "Messages stored at or below their device's ack watermark: a hole filled after its grace or after a restart.",
            )?,
            seq_lookups: counter(
                "vigil_ingest_seq_lookups_total",
                "Seqs older than a device's history in memory, looked up in the store to tell a re-send from a new message.",
            )?,
            seq_gaps: counter(
                "vigil_ingest_seq_gaps_total",
                "Holes in a device's seq that stayed unfilled for the grace period; the ack moved past them.",
            )?,
            acks_published: counter(
                "vigil_ingest_acks_published_total",
                "Ack watermarks published to devices.",
            )?,
            broker_skipped: counter(
                "vigil_ingest_broker_skipped_total",
                "Messages the embedded broker dropped before ingest read them (its in-memory log overflowed).",
            )?,
            feed_skipped: router_value(
                registry,
                "vigil_alarm_feed_skipped_total",
                "Alarm-feed messages a reader never got: it fell further behind than its filter's log \
                 in the broker holds, and the oldest were dropped before it read them.",
                Kind::Counter,
            )?,
            feed_filter_logs: router_value(
                registry,
                "vigil_alarm_feed_filter_logs",
                "Distinct alarm-feed filters whose log the broker holds: those some reader subscribes to \
                 (a log goes when its last reader leaves).",
                Kind::Gauge,
            )?,
            sessions_away: router_value(
                registry,
                "vigil_mqtt_sessions_away",
                "Persistent sessions (clean session off) the broker keeps for clients that are away, \
                 with what they subscribed to and what they were not sent; a clean session leaves nothing.",
                Kind::Gauge,
            )?,
            store_errors: counter(
                "vigil_ingest_store_errors_total",
                "Batches the store refused; their messages stay unacked.",
            )?,
            connects: counter_vec(
                "vigil_ingest_connects_total",
                "MQTT CONNECTs decided by Vigil's login check (both listeners), by result.",
                "result",
            )?,
            feed_publishes: counter_vec(
                "vigil_alarm_feed_publishes_total",
                "Alarm changes handed to the broker for the MQTT alarm feed, one per topic, by result.",
                "result",
            )?,
            topic_refusals: counter_vec(
                "vigil_mqtt_refused_total",
                "SUBSCRIBE or PUBLISH packets outside the login's topics, or (packet=\"token\") a packet to or from a feed login whose token was revoked or expired; each closed its connection.",
                "packet",
            )?,
            commit_latency,
            throttled: counter_vec(
                "vigil_ingest_throttled_total",
                "Times a connection went over its quota (messages or bytes) and its socket stopped being read for a while.",
                "reason",
            )?,
            disconnects: counter_vec(
                "vigil_ingest_disconnects_total",
                "MQTT sessions the engine closed, by reason.",
                "reason",
            )?,
            sessions,
            link_restarts: counter(
                "vigil_ingest_link_restarts_total",
                "Times the engine's in-process broker link was lost and made again.",
            )?,
        };
        // Every label exists from the start, so dashboards and rate() see zeros.
        for reason in RejectReason::ALL {
            metrics.rejected.with_label_values(&[reason.as_str()]);
        }
        for refusal in Refusal::ALL {
            metrics.rejected.with_label_values(&[refusal.as_str()]);
        }
        for excess in Excess::ALL {
            metrics.throttled.with_label_values(&[excess.as_str()]);
        }
        for reason in Disconnect::ALL {
            metrics.disconnects.with_label_values(&[reason.as_str()]);
        }
        for login in ["device", "feed"] {
            metrics.sessions.with_label_values(&[login]);
        }
        for result in ["accepted", "refused"] {
            metrics.connects.with_label_values(&[result]);
        }
        for result in ["published", "failed"] {
            metrics.feed_publishes.with_label_values(&[result]);
        }
        for packet in ["subscribe", "publish", "token"] {
            metrics.topic_refusals.with_label_values(&[packet]);
        }
        Ok(metrics)
    }

    pub(crate) fn rejected(&self, reason: RejectReason) -> IntCounter {
        self.rejected.with_label_values(&[reason.as_str()])
    }

    pub(crate) fn refused(&self, refusal: Refusal) -> IntCounter {
        self.rejected.with_label_values(&[refusal.as_str()])
    }
}

/// A value the broker's router keeps in an atomic (it knows nothing of
/// Prometheus), read at each scrape.
struct RouterValue {
    value: Arc<AtomicU64>,
    kind: Kind,
    opts: Opts,
    desc: Desc,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Registers `name`, read from the atomic it returns for the router to
/// write.
fn router_value(
    registry: &Registry,
    name: &'static str,
    help: &str,
    kind: Kind,
) -> Result<Arc<AtomicU64>, IngestError> {
    let value = Arc::new(AtomicU64::new(0));
    let opts = Opts::new(name, help);
    let collector = opts.describe().map(|desc| RouterValue {
        value: Arc::clone(&value),
        kind,
        opts,
        desc,
    });
    collector
        .and_then(|c| registry.register(Box::new(c)))
        .map_err(|source| IngestError::Metrics { name, source })?;
    Ok(value)
}

impl Collector for RouterValue {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = self.value.load(Ordering::Relaxed);
        match self.kind {
            Kind::Counter => IntCounter::with_opts(self.opts.clone()).map(|c| {
                c.inc_by(value);
                c.collect()
            }),
            Kind::Gauge => IntGauge::with_opts(self.opts.clone()).map(|g| {
                g.set(i64::try_from(value).unwrap_or(i64::MAX));
                g.collect()
            }),
        }
        .unwrap_or_default()
    }
}
