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
pub(crate) struct Condition(Expr);

impl Condition {
    /// Whether it holds on `sample`, with the equipment's registry
    /// parameters and the rule's resolved thresholds.
    pub(crate) fn holds(
        &self,
        sample: Sample<'_>,
        registry: &Map<String, Value>,
        p: &Params,
    ) -> bool {
        self.0.holds(&BuiltinScope {
            sample,
            registry,
            settings: &p.settings,
        })
    }
}

/// The conditions of a family's rules (`decls`, on `source`'s samples), by
/// their index; `None` for a rule `catalogue.toml` has no condition for.
/// Panics on a condition that does not compile (a test compiles them all).
pub(crate) fn compile(decls: &[Decl], source: Source) -> Vec<Option<Condition>> {
    decls
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
            Some(Condition(expr))
        })
        .collect()
}

/// The condition text of a built-in rule, where `catalogue.toml` writes one.
pub(crate) fn text(id: &str) -> Option<&'static str> {
    TEXTS.get(id).map(String::as_str)
}

/// A built-in rule's thresholds are its resolved parameters.
struct BuiltinScope<'a> {
    sample: Sample<'a>,
    registry: &'a Map<String, Value>,
    settings: &'a [f64],
}

impl Env for BuiltinScope<'_> {
    fn field(&self, index: usize) -> Val<'_> {
        self.sample.value(index)
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.registry.get(name)
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
            let conditions = compile(decls, source);
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
