//! The built-in sample rules' conditions, read from `catalogue.toml` (the
//! rule-file format) and compiled once: what users read there is what the
//! engine evaluates.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::catalogue::{Params, Rule};
use crate::define::{Sample, Source};
use crate::expr::{Env, Expr, Val};

const CATALOGUE: &str = include_str!("../catalogue.toml");

/// Keys of a built-in rule that are not numeric thresholds.
const NOT_THRESHOLDS: &[&str] = &[
    "enabled",
    "severity",
    "for_s",
    "clear_s",
    "codes",
    "operating_severity",
];

struct Condition {
    expr: Expr,
    /// The rule's threshold names, in the order `rule.x` indexes them.
    settings: Vec<&'static str>,
}

static CONDITIONS: LazyLock<Vec<Option<Condition>>> = LazyLock::new(|| {
    // Checked by `the_catalogue_file_compiles`: a broken file cannot ship.
    compile(CATALOGUE).unwrap_or_else(|e| panic!("rules/catalogue.toml: {e}"))
});

fn compile(text: &str) -> Result<Vec<Option<Condition>>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<Option<Condition>> = Rule::ALL.iter().map(|_| None).collect();
    let rules = doc
        .get("rule")
        .and_then(toml::Value::as_table)
        .ok_or("no [rule] tables")?;
    for (id, table) in rules {
        let rule = Rule::parse(id).ok_or_else(|| format!("{id} is not a built-in rule"))?;
        let source = if Rule::SAMPLE.contains(&rule) {
            Source::Elevator
        } else if rule.is_ride() {
            Source::Ride
        } else {
            return Err(format!("{id} is not evaluated on samples"));
        };
        let when = table
            .get("when")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("{id} has no `when`"))?;
        let settings: Vec<&'static str> = rule
            .keys()
            .iter()
            .copied()
            .filter(|k| !NOT_THRESHOLDS.contains(k))
            .collect();
        let expr = Expr::compile(when, source.fields(), &settings)
            .map_err(|e| format!("{id}: {e} (at byte {})", e.offset))?;
        out[rule.index()] = Some(Condition { expr, settings });
    }
    Ok(out)
}

/// The condition text of a built-in rule, where it is written as one.
pub(crate) fn text(rule: Rule) -> Option<&'static str> {
    CONDITIONS[rule.index()].as_ref().map(|c| c.expr.text())
}

/// Whether `rule`'s condition holds on `sample`; `None` for a rule whose
/// condition is evaluated in code.
pub(crate) fn holds(
    rule: Rule,
    sample: Sample<'_>,
    registry: &Map<String, Value>,
    p: &Params,
) -> Option<bool> {
    let c = CONDITIONS[rule.index()].as_ref()?;
    Some(c.expr.holds(&BuiltinScope {
        sample,
        registry,
        p,
        settings: &c.settings,
    }))
}

/// A built-in rule's thresholds are its resolved [`Params`].
struct BuiltinScope<'a> {
    sample: Sample<'a>,
    registry: &'a Map<String, Value>,
    p: &'a Params,
    settings: &'a [&'static str],
}

impl Env for BuiltinScope<'_> {
    fn field(&self, index: usize) -> Val<'_> {
        self.sample.value(index)
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.registry.get(name)
    }

    fn setting(&self, index: usize) -> f64 {
        self.settings
            .get(index)
            .and_then(|key| self.p.get(key).as_f64())
            .unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_file_compiles() {
        let conditions = compile(CATALOGUE).unwrap();
        for rule in Rule::SAMPLE.into_iter().chain(Rule::RIDE) {
            let in_code = matches!(
                rule,
                Rule::OvertravelTop | Rule::OvertravelBottom | Rule::DoorCycling
            );
            assert_eq!(
                conditions[rule.index()].is_none(),
                in_code,
                "{}: every sample rule without memory is written in catalogue.toml",
                rule.id()
            );
        }
    }
}
