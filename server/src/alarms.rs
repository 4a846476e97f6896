//! The open alarms of the whole engine and the live feed of every change.
//!
//! Shards own alarm state; the board is a read-side copy kept by the hub so
//! that `GET /alarms` and the SSE feed never wait on a shard.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast;
pub(crate) use vigil_model::AlarmFilter;
use vigil_model::{Alarm, AlarmId};

pub(crate) struct AlarmBoard {
    open: RwLock<HashMap<AlarmId, Alarm>>,
    /// Sized for bursts; a subscriber that falls further behind is told it
    /// lagged and should re-read the open set.
    feed: broadcast::Sender<Arc<Alarm>>,
}

impl AlarmBoard {
    pub(crate) fn new(feed_capacity: usize) -> Self {
        Self {
            open: RwLock::new(HashMap::new()),
            feed: broadcast::channel(feed_capacity).0,
        }
    }

    /// Records a change: open alarms are kept (latest version wins), cleared
    /// ones leave the board.
    pub(crate) fn apply(&self, alarm: &Alarm) {
        let mut open = self.open.write();
        if alarm.state.is_open() {
            match open.get(&alarm.alarm_id) {
                Some(known) if known.version > alarm.version => {}
                _ => {
                    open.insert(alarm.alarm_id.clone(), alarm.clone());
                }
            }
        } else {
            open.remove(&alarm.alarm_id);
        }
    }

    pub(crate) fn publish(&self, alarm: Alarm) {
        // No subscribers is fine.
        let _ = self.feed.send(Arc::new(alarm));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Alarm>> {
        self.feed.subscribe()
    }

    pub(crate) fn get(&self, id: &AlarmId) -> Option<Alarm> {
        self.open.read().get(id).cloned()
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.read().len()
    }

    /// Open alarms matching `filter`, newest change first.
    pub(crate) fn open_alarms(&self, filter: &AlarmFilter) -> Vec<Alarm> {
        let mut list: Vec<Alarm> = self
            .open
            .read()
            .values()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.alarm_id.cmp(&b.alarm_id))
        });
        list
    }
}
