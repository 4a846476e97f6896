use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use vigil_registry::auth::Clock;
use vigil_registry::{ImportDoc, Registry};

/// 2024-11-22T18:26:40Z: the tests' now.
pub const NOW: i64 = 1_732_300_000_000;

/// A clock standing at [`NOW`].
pub fn clock() -> Clock {
    Arc::new(|| NOW)
}

/// A clock the test moves (model's manual clock, started at [`NOW`]).
#[derive(Clone)]
pub struct ManualClock(Clock, Arc<AtomicI64>);

impl ManualClock {
    pub fn new() -> ManualClock {
        let (clock, now) = vigil_model::clock::manual_clock(NOW);
        ManualClock(clock, now)
    }

    pub fn advance_s(&self, s: i64) {
        self.1.fetch_add(s * 1000, Ordering::SeqCst);
    }

    pub fn clock(&self) -> Clock {
        Arc::clone(&self.0)
    }
}

pub const EXAMPLE: &str = include_str!("data/example_import.json");

pub fn example_json() -> Value {
    serde_json::from_str(EXAMPLE).expect("example document is JSON")
}

pub fn doc(v: &Value) -> ImportDoc {
    ImportDoc::from_json(v.to_string().as_bytes()).expect("document parses")
}

/// A registry with the example imported.
pub fn example_registry() -> Registry {
    let reg = Registry::in_memory();
    reg.import(doc(&example_json())).expect("example imports");
    reg
}

/// The error text of importing `v`, whether parsing or validation refused it.
pub fn import_error(reg: &Registry, v: &Value) -> String {
    match ImportDoc::from_json(v.to_string().as_bytes()) {
        Err(e) => e.to_string(),
        Ok(d) => match reg.import(d) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("import of {v} should have failed"),
        },
    }
}
