use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use vigil_registry::auth::Clock;
use vigil_registry::{ImportDoc, Registry};

/// 2024-11-22T18:26:40Z: the tests' now.
pub(crate) const NOW: i64 = 1_732_300_000_000;

/// A clock standing at [`NOW`].
pub(crate) fn clock() -> Clock {
    Arc::new(|| NOW)
}

/// A clock the test moves (model's manual clock, started at [`NOW`]).
#[derive(Clone)]
pub(crate) struct ManualClock(Clock, Arc<AtomicI64>);

impl ManualClock {
    pub(crate) fn new() -> ManualClock {
        let (clock, now) = vigil_model::clock::manual_clock(NOW);
        ManualClock(clock, now)
    }

    pub(crate) fn advance_s(&self, s: i64) {
        self.1.fetch_add(s * 1000, Ordering::SeqCst);
    }

    pub(crate) fn clock(&self) -> Clock {
        Arc::clone(&self.0)
    }
}

pub(crate) const EXAMPLE: &str = include_str!("data/example_import.json");

pub(crate) fn example_json() -> Value {
    serde_json::from_str(EXAMPLE).expect("example document is JSON")
}

pub(crate) fn doc(v: &Value) -> ImportDoc {
    ImportDoc::from_json(v.to_string().as_bytes()).expect("document parses")
}

/// A registry with the example imported.
pub(crate) fn example_registry() -> Registry {
    let reg = Registry::in_memory();
    reg.import(doc(&example_json())).expect("example imports");
    reg
}

/// The error text of importing `v`, whether parsing or validation refused it.
pub(crate) fn import_error(reg: &Registry, v: &Value) -> String {
    match ImportDoc::from_json(v.to_string().as_bytes()) {
        Err(e) => e.to_string(),
        Ok(d) => match reg.import(d) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("import of {v} should have failed"),
        },
    }
}
