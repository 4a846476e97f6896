//! The built-in sample rules' conditions, read from `catalogue.toml` (the
//! rule-file format) and compiled once per family: what users read there
//! is what the engine evaluates. The rules themselves (severity,
//! parameters, …) are declared in their family's file; the file holds
//! only their `when`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::catalogue::{Decl, Params};
use crate::define::{Sample, Source};
use crate::expr::{Env, Expr, Val};

const CATALOGUE: &str = include_str!("../catalogue.toml");

/// `catalogue.toml`'s conditions by rule id.
static TEXTS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    // Checked by `the_catalogue_file_compiles`: a broken file cannot ship.
    texts(CATALOGUE).unwrap_or_else(|e| panic!("rules/catalogue.toml: {e}"))
});

fn texts(text: &str) -> Result<HashMap<String, String>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let rules = doc
        .get("rule")
        .and_then(toml::Value::as_table)
        .ok_or("no [rule] tables")?;
    rules
        .iter()
        .map(|(id, table)| {
            let when = table
                .get("when")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| format!("{id} has no `when`"))?;
            Ok((id.clone(), when.to_owned()))
        })
        .collect()
}

/// A built-in rule's condition, compiled against its stream's fields and
/// its own parameters (`rule.x`, in the order of its declaration).
pub(crate) struct Condition {
    expr: Expr,
    /// The family's place ([`Conditions::params`]) of each registry
    /// parameter the condition reads, in the order of `Expr::params`.
    slots: Vec<usize>,
}

impl Condition {
    /// Whether it holds on `sample`, with the equipment's registry
    /// parameters (as [`Conditions::registry`] read them) and the rule's
    /// resolved thresholds.
    pub(crate) fn holds(&self, sample: Sample<'_>, registry: &Registry<'_>, p: &Params) -> bool {
        self.expr.holds(&BuiltinScope {
            sample,
            registry,
            slots: &self.slots,
            settings: &p.settings,
        })
    }
}

/// The conditions of one family's rules, by their index, and the registry
/// parameters they read between them.
pub(crate) struct Conditions {
    each: Vec<Option<Condition>>,
    /// Every registry parameter any of them reads, once: a sample's
    /// conditions read them from the registry map (a lookup by name each)
    /// once per sample, not once per mention.
    params: Vec<Box<str>>,
    /// A bit per stream field (by its index) any of them reads.
    fields: u64,
}

/// At most this many distinct registry parameters in one family's
/// conditions (checked when they compile).
const MAX_PARAMS: usize = 4;

/// The registry parameters of one [`Conditions`], read from one
/// equipment's registry.
pub(crate) struct Registry<'a> {
    values: [Option<&'a Value>; MAX_PARAMS],
}

impl Conditions {
    /// Rule `index`'s condition, if `catalogue.toml` writes one.
    pub(crate) fn get(&self, index: usize) -> Option<&Condition> {
        self.each.get(index).and_then(Option::as_ref)
    }

    /// Whether any of them reads the stream's field `index`: samples that
    /// agree on every field read hold the same conditions.
    pub(crate) fn read(&self, index: usize) -> bool {
        index < 64 && self.fields & (1 << index) != 0
    }

    /// Reads the parameters the conditions use from `registry`.
    pub(crate) fn registry<'a>(&self, registry: &'a Map<String, Value>) -> Registry<'a> {
        let mut values = [None; MAX_PARAMS];
        for (value, name) in values.iter_mut().zip(&self.params) {
            *value = registry.get(&**name);
        }
        Registry { values }
    }
}

/// The conditions of a family's rules (`decls`, on `source`'s samples), by
/// their index; `None` for a rule `catalogue.toml` has no condition for.
/// Panics on a condition that does not compile (a test compiles them all).
pub(crate) fn compile(decls: &[Decl], source: Source) -> Conditions {
    let mut params: Vec<Box<str>> = Vec::new();
    let mut fields = 0u64;
    let each = decls
        .iter()
        .map(|decl| {
            let when = TEXTS.get(decl.id)?;
            let settings: Vec<&str> = decl.params.iter().map(|p| p.name).collect();
            let expr = Expr::compile(when, source.fields(), &settings).unwrap_or_else(|e| {
                panic!(
                    "rules/catalogue.toml: {}: {e} (at byte {})",
                    decl.id, e.offset
                )
            });
            for i in expr.fields() {
                assert!(i < 64, "a stream has fewer than 64 fields");
                fields |= 1 << i;
            }
            let slots = (expr.params().into_iter())
                .map(|name| match params.iter().position(|p| **p == *name) {
                    Some(slot) => slot,
                    None => {
                        params.push(name.into());
                        params.len() - 1
                    }
                })
                .collect();
            Some(Condition { expr, slots })
        })
        .collect();
    assert!(
        params.len() <= MAX_PARAMS,
        "rules/catalogue.toml: more than {MAX_PARAMS} registry parameters in one family: {params:?}"
    );
    Conditions {
        each,
        params,
        fields,
    }
}

/// The condition text of a built-in rule, where `catalogue.toml` writes one.
pub(crate) fn text(id: &str) -> Option<&'static str> {
    TEXTS.get(id).map(String::as_str)
}

/// A built-in rule's thresholds are its resolved parameters.
struct BuiltinScope<'a> {
    sample: Sample<'a>,
    registry: &'a Registry<'a>,
    slots: &'a [usize],
    settings: &'a [f64],
}

impl Env for BuiltinScope<'_> {
    fn field(&self, index: usize) -> Val<'_> {
        self.sample.value(index)
    }

    fn param(&self, name: &str) -> Option<&Value> {
        // Only reached by a condition compiled elsewhere: every name a
        // built-in condition reads has a slot.
        debug_assert!(false, "registry parameter {name} read by name");
        None
    }

    fn param_at(&self, slot: usize, _name: &str) -> Option<&Value> {
        let slot = *self.slots.get(slot)?;
        self.registry.values.get(slot).copied().flatten()
    }

    fn word(&self, index: usize) -> Option<usize> {
        self.sample.word(index)
    }

    fn setting(&self, index: usize) -> f64 {
        self.settings.get(index).copied().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{elevator, rides};

    #[test]
    fn the_catalogue_file_compiles() {
        let families = [
            (elevator::Rule::DECLS, Source::Elevator),
            (rides::Rule::DECLS, Source::Ride),
        ];
        let mut compiled = 0;
        for (decls, source) in families {
            let conditions = compile(decls, source).each;
            for (decl, condition) in decls.iter().zip(&conditions) {
                let in_code = matches!(
                    decl.id,
                    "elevator.overtravel_top"
                        | "elevator.overtravel_bottom"
                        | "elevator.door_cycling"
                );
                assert_eq!(
                    condition.is_none(),
                    in_code,
                    "{}: every sample rule without memory is written in catalogue.toml",
                    decl.id
                );
            }
            compiled += conditions.iter().flatten().count();
        }
        assert_eq!(
            compiled,
            TEXTS.len(),
            "every condition in catalogue.toml belongs to a sample rule"
        );
    }
}
