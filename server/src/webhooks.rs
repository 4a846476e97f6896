//! Webhooks: every alarm change POSTed as the alarm JSON to configured URLs.
//!
//! Each webhook has its own bounded queue and one worker, so a slow or dead
//! endpoint delays only itself: the hub only appends (never waits), and when
//! the queue is full the oldest change is dropped and counted. One worker
//! sending one change at a time keeps every equipment's changes in order
//! (a retried change holds back the ones behind it). A change is retried
//! with doubling back-off up to `max_attempts`; 4xx answers other than 408
//! and 429 are not retried. See docs/delivery.md.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use vigil_model::{Alarm, Region, Severity};

/// `[[delivery.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// `http://…` (this build has no TLS client: put a TLS proxy in front
    /// for `https://` endpoints).
    pub url: String,
    /// Label in logs and metrics; defaults to `webhook{index}`.
    pub name: Option<String>,
    /// Only alarms in these regions (each covering its sub-regions); empty
    /// means every region.
    pub regions: Vec<Region>,
    /// Only alarms of this severity or higher.
    pub min_severity: Option<Severity>,
    /// Sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// Signs each body: `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub hmac_secret: Option<String>,
    /// Changes waiting for this webhook; the oldest is dropped beyond it.
    pub queue: usize,
    /// Tries per change, the first included.
    pub max_attempts: u32,
    /// Back-off before the second try; doubles per try up to `backoff_max_ms`.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// Per request.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            name: None,
            regions: Vec::new(),
            min_severity: None,
            bearer: None,
            hmac_secret: None,
            queue: 10_000,
            max_attempts: 10,
            backoff_ms: 500,
            backoff_max_ms: 60_000,
            timeout_ms: 10_000,
        }
    }
}

impl WebhookConfig {
    fn wants(&self, alarm: &Alarm) -> bool {
        self.min_severity.is_none_or(|min| alarm.severity >= min)
            && (self.regions.is_empty() || self.regions.iter().any(|r| r.covers(&alarm.region)))
    }

    fn check(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.url.starts_with("http://"),
            "webhook {name}: url must be http://… (got {:?}); this build has no TLS client",
            self.url
        );
        anyhow::ensure!(self.queue > 0, "webhook {name}: queue must be > 0");
        anyhow::ensure!(
            self.max_attempts > 0,
            "webhook {name}: max_attempts must be > 0"
        );
        Ok(())
    }
}

/// `vigil_webhook_deliveries_total{webhook, result}` and
/// `vigil_webhook_queue_depth{webhook}`.
#[derive(Clone)]
pub(crate) struct WebhookMetrics {
    pub deliveries: IntCounterVec,
    pub queue_depth: IntGaugeVec,
}

/// Outcomes counted per change (`retried` per extra try).
const RESULTS: [&str; 4] = ["delivered", "retried", "failed", "dropped"];

/// The running webhooks.
pub(crate) struct Webhooks {
    hooks: Vec<Arc<Hook>>,
    workers: Vec<JoinHandle<()>>,
}

struct Hook {
    name: String,
    config: WebhookConfig,
    queue: Mutex<VecDeque<Arc<Alarm>>>,
    /// Wakes the worker when the queue gains a change or on shutdown.
    wake: Notify,
    closing: AtomicBool,
    metrics: WebhookMetrics,
}

impl Webhooks {
    pub(crate) fn start(
        configs: &[WebhookConfig],
        metrics: WebhookMetrics,
    ) -> anyhow::Result<Webhooks> {
        let mut hooks = Vec::new();
        let mut workers = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let name = config.name.clone().unwrap_or_else(|| format!("webhook{i}"));
            config.check(&name)?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(config.timeout_ms))
                .build()?;
            for result in RESULTS {
                metrics.deliveries.with_label_values(&[&name, result]);
            }
            metrics.queue_depth.with_label_values(&[&name]).set(0);
            let hook = Arc::new(Hook {
                name,
                config: config.clone(),
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                closing: AtomicBool::new(false),
                metrics: metrics.clone(),
            });
            info!(webhook = %hook.name, url = %config.url, "Webhook delivery started.");
            workers.push(tokio::spawn(Arc::clone(&hook).run(client)));
            hooks.push(hook);
        }
        Ok(Webhooks { hooks, workers })
    }

    /// Queues the change for every webhook that wants it. Never waits.
    pub(crate) fn enqueue(&self, alarm: &Arc<Alarm>) {
        for hook in &self.hooks {
            if hook.config.wants(alarm) {
                hook.push(Arc::clone(alarm));
            }
        }
    }

    /// Lets the workers deliver what is queued for up to `grace`, then stops
    /// them; what is left is logged.
    pub(crate) async fn shutdown(self, grace: Duration) {
        for hook in &self.hooks {
            hook.closing.store(true, Ordering::Release);
            hook.wake.notify_one();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for mut worker in self.workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
            }
        }
        for hook in &self.hooks {
            let left = hook.queue.lock().len();
            if left > 0 {
                warn!(webhook = %hook.name, left, "Webhook changes not delivered before shutdown.");
            }
        }
    }
}

impl Hook {
    fn push(&self, alarm: Arc<Alarm>) {
        let (depth, dropped) = {
            let mut q = self.queue.lock();
            let dropped = if q.len() >= self.config.queue {
                q.pop_front()
            } else {
                None
            };
            q.push_back(alarm);
            (q.len(), dropped)
        };
        if let Some(old) = dropped {
            self.count("dropped");
            warn!(webhook = %self.name, alarm = %old.alarm_id, version = old.version, queue = self.config.queue,
                "Webhook queue full; dropped its oldest alarm change.");
        }
        self.metrics
            .queue_depth
            .with_label_values(&[&self.name])
            .set(depth as i64);
        self.wake.notify_one();
    }

    fn count(&self, result: &str) {
        self.metrics
            .deliveries
            .with_label_values(&[&self.name, result])
            .inc();
    }

    async fn run(self: Arc<Self>, client: reqwest::Client) {
        loop {
            let next = {
                let q = self.queue.lock();
                q.front().cloned()
            };
            let Some(alarm) = next else {
                if self.closing.load(Ordering::Acquire) {
                    return;
                }
                self.wake.notified().await;
                continue;
            };
            self.deliver(&client, &alarm).await;
            let depth = {
                let mut q = self.queue.lock();
                // Unless the full queue dropped it meanwhile.
                if q.front().is_some_and(|a| Arc::ptr_eq(a, &alarm)) {
                    q.pop_front();
                }
                q.len()
            };
            self.metrics
                .queue_depth
                .with_label_values(&[&self.name])
                .set(depth as i64);
        }
    }

    /// Tries one change until it is delivered, refused for good, or out of
    /// attempts.
    async fn deliver(&self, client: &reqwest::Client, alarm: &Alarm) {
        let body = match serde_json::to_vec(alarm) {
            Ok(b) => b,
            Err(e) => {
                self.count("failed");
                warn!(webhook = %self.name, alarm = %alarm.alarm_id, error = %e, "Alarm cannot be encoded for the webhook.");
                return;
            }
        };
        let signature = self
            .config
            .hmac_secret
            .as_deref()
            .map(|secret| sign(secret, &body));
        let mut backoff = Duration::from_millis(self.config.backoff_ms);
        let max_backoff = Duration::from_millis(self.config.backoff_max_ms);
        for attempt in 1..=self.config.max_attempts {
            let mut request = client
                .post(&self.config.url)
                .header("content-type", "application/json")
                .header(
                    "x-vigil-alarm",
                    format!("{}:{}", alarm.alarm_id, alarm.version),
                )
                .body(body.clone());
            if let Some(token) = &self.config.bearer {
                request = request.bearer_auth(token);
            }
            if let Some(sig) = &signature {
                request = request.header("x-vigil-signature", sig.as_str());
            }
            let why = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    self.count("delivered");
                    debug!(webhook = %self.name, alarm = %alarm.alarm_id, version = alarm.version, attempt, "Alarm change delivered.");
                    return;
                }
                Ok(r) => {
                    let status = r.status();
                    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429
                    {
                        self.count("failed");
                        warn!(webhook = %self.name, alarm = %alarm.alarm_id, version = alarm.version, %status,
                            "Webhook refused the alarm change; not retried.");
                        return;
                    }
                    format!("HTTP {status}")
                }
                Err(e) => e.to_string(),
            };
            if attempt == self.config.max_attempts || self.closing.load(Ordering::Acquire) {
                self.count("failed");
                warn!(webhook = %self.name, alarm = %alarm.alarm_id, version = alarm.version, attempts = attempt, error = %why,
                    "Webhook delivery failed; giving up on this change.");
                return;
            }
            self.count("retried");
            info!(webhook = %self.name, alarm = %alarm.alarm_id, attempt, retry_in_ms = backoff.as_millis() as u64, error = %why,
                "Webhook delivery failed; retrying.");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                // Shutdown cuts the wait short; the next failure gives up.
                _ = self.wake.notified(), if self.closing.load(Ordering::Acquire) => {}
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }
}

/// `sha256=` + hex HMAC-SHA256 of `body` under `secret`.
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
