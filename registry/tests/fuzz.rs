//! Hostile import documents: the example document (every entity kind,
//! every reference kind) with fields removed, replaced by values of the
//! wrong type, edge numbers and nasty strings, ids swapped between entities
//! (dangling and duplicate references), unknown fields, and then damaged as
//! text. Parsing and importing must never panic; a refused document changes
//! nothing; an accepted one leaves a registry whose export imports again
//! into an empty registry unchanged (what a restart's load does).

use proptest::prelude::*;
use serde_json::{Value, json};
use vigil_registry::{ImportDoc, Registry};

use crate::common::*;
#[path = "../../tests/fuzz/support.rs"]
mod support;
use support::*;

const LISTS: &[&str] = &[
    "owners",
    "maintainers",
    "stations",
    "equipment",
    "devices",
    "persons",
    "cylinders",
    "maintenance",
];

#[derive(Debug, Clone)]
enum Edit {
    /// Remove field `k` of entity `i` of list `l` (indices wrap).
    Remove(usize, usize, usize),
    Replace(usize, usize, usize, Value),
    /// Same type, hostile value: a string becomes a nasty string, a number
    /// an edge number, a boolean flips.
    Nudge(usize, usize, usize, String, Value),
    /// Give entity `i` the value of the same field of entity `j` (an id
    /// becomes a duplicate, a reference points elsewhere).
    Copy(usize, usize, usize, usize),
    Unknown(usize, usize, String, Value),
    /// Repeat an entity.
    Duplicate(usize, usize),
    DropList(usize),
    /// Replace a whole list with something that is not a list.
    BadList(usize, Value),
    /// Deeply nested equipment params.
    DeepParams(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let u = || any::<usize>();
    prop_oneof![
        3 => (u(), u(), u()).prop_map(|(l, i, k)| Edit::Remove(l, i, k)),
        2 => (u(), u(), u(), any_json(2)).prop_map(|(l, i, k, v)| Edit::Replace(l, i, k, v)),
        5 => (u(), u(), u(), nasty_string(), edge_number())
            .prop_map(|(l, i, k, s, n)| Edit::Nudge(l, i, k, s, n)),
        3 => (u(), u(), u(), u()).prop_map(|(l, i, j, k)| Edit::Copy(l, i, j, k)),
        1 => (u(), u(), "[a-z_]{1,12}", any_json(1)).prop_map(|(l, i, k, v)| Edit::Unknown(l, i, k, v)),
        1 => (u(), u()).prop_map(|(l, i)| Edit::Duplicate(l, i)),
        1 => u().prop_map(Edit::DropList),
        1 => (u(), any_json(1)).prop_map(|(l, v)| Edit::BadList(l, v)),
        1 => (u(), 1usize..200).prop_map(|(i, d)| Edit::DeepParams(i, d)),
    ]
}

/// The entity at (list, index), if the list has any.
fn entity(doc: &mut Value, l: usize, i: usize) -> Option<&mut serde_json::Map<String, Value>> {
    let list = doc.get_mut(LISTS[l % LISTS.len()])?.as_array_mut()?;
    if list.is_empty() {
        return None;
    }
    let n = list.len();
    list[i % n].as_object_mut()
}

fn key_of(e: &serde_json::Map<String, Value>, k: usize) -> Option<String> {
    let n = e.len();
    (n > 0).then(|| e.keys().nth(k % n).cloned()).flatten()
}

fn apply(doc: &mut Value, edit: &Edit) {
    match edit {
        Edit::Remove(l, i, k) => {
            if let Some(e) = entity(doc, *l, *i)
                && let Some(key) = key_of(e, *k)
            {
                e.remove(&key);
            }
        }
        Edit::Replace(l, i, k, v) => {
            if let Some(e) = entity(doc, *l, *i)
                && let Some(key) = key_of(e, *k)
            {
                e.insert(key, v.clone());
            }
        }
        Edit::Nudge(l, i, k, text, number) => {
            if let Some(e) = entity(doc, *l, *i)
                && let Some(key) = key_of(e, *k)
            {
                let v = match &e[&key] {
                    Value::String(_) => Value::String(text.clone()),
                    Value::Number(_) => number.clone(),
                    Value::Bool(b) => Value::Bool(!b),
                    other => other.clone(),
                };
                e.insert(key, v);
            }
        }
        Edit::Copy(l, i, j, k) => {
            let taken = entity(doc, *l, *j).and_then(|e| {
                let key = key_of(e, *k)?;
                Some((key.clone(), e[&key].clone()))
            });
            if let Some((key, v)) = taken
                && let Some(e) = entity(doc, *l, *i)
            {
                e.insert(key, v);
            }
        }
        Edit::Unknown(l, i, k, v) => {
            if let Some(e) = entity(doc, *l, *i) {
                e.insert(k.clone(), v.clone());
            }
        }
        Edit::Duplicate(l, i) => {
            let copy = entity(doc, *l, *i).map(|e| Value::Object(e.clone()));
            if let (Some(copy), Some(list)) = (
                copy,
                doc.get_mut(LISTS[l % LISTS.len()])
                    .and_then(Value::as_array_mut),
            ) {
                list.push(copy);
            }
        }
        Edit::DropList(l) => {
            doc.as_object_mut().unwrap().remove(LISTS[l % LISTS.len()]);
        }
        Edit::BadList(l, v) => {
            doc[LISTS[l % LISTS.len()]] = v.clone();
        }
        Edit::DeepParams(i, depth) => {
            let mut nested = json!(1);
            for _ in 0..*depth {
                nested = json!({ "x": nested });
            }
            if let Some(e) = entity(doc, 3, *i) {
                e.insert("params".into(), json!({ "deep": nested }));
            }
        }
    }
}

/// The registry's entities as an import document (what `registry.json`
/// holds, without secrets and tokens).
fn as_document(reg: &Registry) -> Value {
    let mut v = serde_json::to_value(reg.export()).unwrap();
    v.as_object_mut().unwrap().remove("version");
    v
}

#[test]
fn hostile_import_documents_never_panic_and_change_all_or_nothing() {
    let base = example_json();
    let case = (any::<bool>(), prop::collection::vec(edit(), 0..4), damage());
    let tally = Tally::default();
    run(
        "registry.import",
        1500,
        case,
        |(preloaded, edits, damage)| {
            let mut doc = base.clone();
            for e in &edits {
                apply(&mut doc, e);
            }
            let bytes = damaged(&doc, &damage);
            let reg = if preloaded {
                example_registry()
            } else {
                Registry::in_memory()
            };
            let before = (reg.version(), reg.export());
            let parsed = match ImportDoc::from_json(&bytes) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tally.add("refused: not JSON, or a field of the wrong shape");
                    prop_assert!(!e.to_string().is_empty());
                    return Ok(());
                }
            };
            match reg.import(parsed) {
                Err(e) => {
                    tally.add("refused by validation");
                    prop_assert!(!e.to_string().is_empty());
                    prop_assert_eq!(
                        (reg.version(), reg.export()),
                        before,
                        "a refused import changes nothing"
                    );
                }
                Ok(report) => {
                    tally.add("imported");
                    prop_assert_eq!(report.version, reg.version());
                    // What a restart does: the same validation over everything.
                    let again = Registry::in_memory();
                    let text = as_document(&reg).to_string();
                    let reloaded = ImportDoc::from_json(text.as_bytes())
                        .map_err(|e| TestCaseError::fail(format!("export does not parse: {e}")))?;
                    again
                        .import(reloaded)
                        .map_err(|e| TestCaseError::fail(format!("export does not import: {e}")))?;
                    prop_assert_eq!(as_document(&again), as_document(&reg));
                }
            }
            Ok(())
        },
    );
    tally.print("registry.import");
}
