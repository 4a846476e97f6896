//! The open alarms of the whole engine and the live feed of every change.
//!
//! Shards own alarm state; the board is a read-side copy kept by the hub so
//! that `GET /alarms` and the SSE feed never wait on a shard.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast;
use vigil_model::{Alarm, AlarmId, AlarmState, Region};

pub struct AlarmBoard {
    open: RwLock<HashMap<AlarmId, Alarm>>,
    /// Sized for bursts; a subscriber that falls further behind is told it
    /// lagged and should re-read the open set.
    feed: broadcast::Sender<Arc<Alarm>>,
}

/// Which alarms a reader asked for, and may see.
#[derive(Debug, Default, Clone)]
pub struct AlarmFilter {
    pub states: Option<Vec<AlarmState>>,
    /// Any of these regions (each covering its sub-regions).
    pub regions: Option<Vec<Region>>,
    pub category: Option<String>,
    pub equipment_id: Option<String>,
    pub since: Option<i64>,
}

impl AlarmFilter {
    pub fn matches(&self, alarm: &Alarm) -> bool {
        self.states
            .as_ref()
            .is_none_or(|s| s.contains(&alarm.state))
            && self
                .regions
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r.covers(&alarm.region)))
            && self.category.as_ref().is_none_or(|c| *c == alarm.category)
            && self
                .equipment_id
                .as_ref()
                .is_none_or(|e| e == alarm.equipment_id.as_str())
            && self.since.is_none_or(|t| alarm.updated_at >= t)
    }
}

impl AlarmBoard {
    pub fn new(feed_capacity: usize) -> Self {
        Self {
            open: RwLock::new(HashMap::new()),
            feed: broadcast::channel(feed_capacity).0,
        }
    }

    /// Records a change: open alarms are kept (latest version wins), cleared
    /// ones leave the board.
    pub fn apply(&self, alarm: &Alarm) {
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

    pub fn publish(&self, alarm: Alarm) {
        // No subscribers is fine.
        let _ = self.feed.send(Arc::new(alarm));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Alarm>> {
        self.feed.subscribe()
    }

    pub fn get(&self, id: &AlarmId) -> Option<Alarm> {
        self.open.read().get(id).cloned()
    }

    pub fn open_count(&self) -> usize {
        self.open.read().len()
    }

    /// Open alarms matching `filter`, newest change first.
    pub fn open_alarms(&self, filter: &AlarmFilter) -> Vec<Alarm> {
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
