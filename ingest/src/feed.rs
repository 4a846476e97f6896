//! Engine → supervisors: every alarm change on the MQTT alarm feed
//! (protocol.md, "Alarm feed"), through the same in-process link as acks.

use std::sync::Arc;

use prometheus::IntCounterVec;
use tracing::warn;
use vigil_model::Alarm;

use crate::acks::AckPublisher;
use crate::guard::region_tenant;

/// Publishes alarm changes on `/tenants/r{region}/v1/alarms/{category}/{equipment_id}`
/// under the alarm's county, city and province. Cheap to clone; never
/// blocks for long (one hand-off into the router's queue per topic).
#[derive(Clone)]
pub struct AlarmPublisher {
    link: Arc<AckPublisher>,
    /// `vigil_alarm_feed_publishes_total{result}`.
    published: IntCounterVec,
}

impl AlarmPublisher {
    pub(crate) fn new(link: Arc<AckPublisher>, published: IntCounterVec) -> AlarmPublisher {
        AlarmPublisher { link, published }
    }

    /// The topics of one alarm: county, city, province, without repeats
    /// (a city-level region is its own city).
    pub fn topics(alarm: &Alarm) -> Vec<String> {
        let mut regions = vec![alarm.region, alarm.region.city(), alarm.region.province()];
        regions.dedup();
        regions
            .iter()
            .map(|r| {
                format!(
                    "/tenants/{}/v1/alarms/{}/{}",
                    region_tenant(r),
                    alarm.category,
                    alarm.equipment_id
                )
            })
            .collect()
    }

    /// Publishes the alarm JSON on each of its topics. rumqttd takes
    /// in-process publishes at QoS 0 and forwards them at the subscriber's
    /// QoS, so a QoS 1 subscription gets QoS 1 deliveries.
    pub fn publish(&self, alarm: &Alarm) {
        let payload = match serde_json::to_vec(alarm) {
            Ok(p) => p,
            Err(e) => {
                warn!(alarm = %alarm.alarm_id, error = %e, "Alarm cannot be encoded for the MQTT feed.");
                return;
            }
        };
        for topic in Self::topics(alarm) {
            match self.link.publish(topic, payload.clone()) {
                Ok(()) => self.published.with_label_values(&["published"]).inc(),
                Err(e) => {
                    self.published.with_label_values(&["failed"]).inc();
                    warn!(alarm = %alarm.alarm_id, error = %e, "Alarm change not published on the MQTT feed.");
                }
            }
        }
    }
}
