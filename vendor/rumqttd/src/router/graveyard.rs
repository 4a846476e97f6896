use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{
    scheduler::{PauseReason, Tracker},
    ConnectionEvents,
};

pub struct Graveyard {
    connections: HashMap<String, SavedState>,
    /// Vigil patch: how many there are, for the embedder to read.
    away: Arc<AtomicU64>,
}

impl Graveyard {
    pub fn new(away: Arc<AtomicU64>) -> Graveyard {
        Graveyard {
            connections: HashMap::new(),
            away,
        }
    }

    /// Add a new connection.
    /// Return tracker of previous connection if connection id already exists
    pub fn retrieve(&mut self, id: &str) -> Option<SavedState> {
        let saved = self.connections.remove(id);
        self.count();
        saved
    }

    /// Vigil patch: publishes how many sessions are kept.
    fn count(&self) {
        self.away
            .store(self.connections.len() as u64, Ordering::Relaxed);
    }

    /// Vigil patch: whether a saved session subscribes to `filter`.
    pub fn subscribes(&self, filter: &str) -> bool {
        self.connections.values().any(|saved| {
            saved
                .session_state
                .as_ref()
                .is_some_and(|state| state.subscriptions.contains(filter))
        })
    }

    /// Save connection tracker
    pub fn save_state(
        &mut self,
        mut tracker: Tracker,
        subscriptions: HashSet<String>,
        metrics: ConnectionEvents,
        unacked_pubrels: VecDeque<u16>,
    ) {
        tracker.pause(PauseReason::Busy);
        let id = tracker.id.clone();

        let session_state = SessionState {
            tracker,
            subscriptions,
            unacked_pubrels,
        };

        self.connections.insert(
            id,
            SavedState {
                session_state: Some(session_state),
                metrics,
            },
        );
        self.count();
    }

    // Vigil patch: `save_metrics` (a clean session's events, kept under its
    // client id for the router's life) is gone; see `handle_disconnection`.
}

#[derive(Debug)]
pub struct SavedState {
    pub session_state: Option<SessionState>,
    pub metrics: ConnectionEvents,
}

#[derive(Debug)]
pub struct SessionState {
    pub tracker: Tracker,
    pub subscriptions: HashSet<String>,
    // used for pubrel in qos2
    pub unacked_pubrels: VecDeque<u16>,
}
