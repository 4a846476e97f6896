use serde_json::Value;
use vigil_registry::{ImportDoc, Registry};

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
