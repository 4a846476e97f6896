//! Alarm delivery beyond the engine's own HTTP feed: the MQTT alarm topics
//! (through ingest's broker) and webhooks. The hub calls [`Delivery::deliver`]
//! for every alarm change, in order; nothing here waits on a subscriber or
//! an endpoint.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vigil_ingest::AlarmPublisher;
use vigil_model::Alarm;

use crate::webhooks::Webhooks;

pub(crate) struct Delivery {
    /// Set once ingest (and with it the broker) runs; changes made before
    /// that (none in practice: ticks start with ingest) go without MQTT.
    mqtt: OnceLock<AlarmPublisher>,
    webhooks: Webhooks,
}

impl Delivery {
    pub(crate) fn new(webhooks: Webhooks) -> Delivery {
        Delivery {
            mqtt: OnceLock::new(),
            webhooks,
        }
    }

    pub(crate) fn set_mqtt(&self, publisher: AlarmPublisher) {
        let _ = self.mqtt.set(publisher);
    }

    pub(crate) fn deliver(&self, alarm: &Arc<Alarm>) {
        if let Some(mqtt) = self.mqtt.get() {
            mqtt.publish(alarm);
        }
        self.webhooks.enqueue(alarm);
    }

    /// After the hub has drained: webhooks get `grace` to empty their queues.
    pub(crate) async fn shutdown(self, grace: Duration) {
        self.webhooks.shutdown(grace).await;
    }
}
