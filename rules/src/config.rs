//! Rule configuration: overrides of the built-in defaults per rule, per
//! equipment category and per piece of equipment, checked before use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_model::EquipmentId;

use crate::catalogue::{DEFAULT_CLEAR_S, ParamSet, Params, lookup, rules, secs_to_ms};
use crate::define::Definition;
use crate::engine::Escalation;
use crate::error::ConfigError;

/// The registry's equipment categories (registry.md); a category override
/// naming anything else is a typo that would silently do nothing.
pub(crate) const CATEGORIES: &[&str] = &vigil_model::BINDING_CATEGORIES;

/// Parameter overrides of one rule: `key = value` as written in TOML.
type Overrides = BTreeMap<String, Value>;

/// How the rules are tuned. `Default` is the shipped catalogue of rules.md.
///
/// ```toml
/// clear_s = 10                              # default clear period of every rule
/// [rule."elevator.trapped"]                 # every equipment
/// for_s = 120
/// [category.escalator."elevator.trapped"]   # every equipment of a category
/// enabled = false
/// [equipment."EQ-0042"."elevator.overspeed"]  # one equipment
/// factor = 1.2
/// severity = "major"
/// ```
/// A parameter resolves as built-in default (for the category) ← `rule` ←
/// `category` ← `equipment`. Deserialising accepts any rule and key so that
/// [`RuleConfig::validate`] can name the offending one; the engine ignores
/// what validation would refuse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clear_s: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    rule: BTreeMap<String, Overrides>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    category: BTreeMap<String, BTreeMap<String, Overrides>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    equipment: BTreeMap<String, BTreeMap<String, Overrides>>,
    /// `[escalation]`: how long an alarm may stay unacknowledged.
    #[serde(default, skip_serializing_if = "Escalation::is_default")]
    escalation: Escalation,
}

impl RuleConfig {
    pub(crate) fn escalation(&self) -> &Escalation {
        &self.escalation
    }

    /// Parses a TOML document (the `[rules]` table's content) and validates it.
    pub fn from_toml(text: &str) -> Result<RuleConfig, ConfigError> {
        let config: RuleConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A rule file (the same format as the `[rules]` table) laid over
    /// `base` (the application configuration's `[rules]`): tables merge,
    /// the file's values win. A mistake is reported with the file, line and
    /// column of the key or the very token that is wrong.
    pub fn load(
        base: &toml::Table,
        file: Option<(&str, &str)>,
    ) -> Result<RuleConfig, RuleFileError> {
        let mut merged = base.clone();
        if let Some((name, text)) = file {
            let table: toml::Table = toml::from_str(text).map_err(|e| {
                let at = e
                    .span()
                    .map_or((1, 1), |span| line_column(text, span.start));
                RuleFileError {
                    file: name.to_owned(),
                    at: Some(at),
                    error: Box::new(ConfigError::Parse {
                        message: e.message().to_owned(),
                    }),
                }
            })?;
            merge(&mut merged, table);
        }
        let located = |mistake: Located| {
            let in_file = file.and_then(|(name, text)| {
                crate::locate::find(text, &mistake.path, mistake.offset).map(|at| (name, at))
            });
            match in_file {
                Some((name, at)) => RuleFileError {
                    file: name.to_owned(),
                    at: Some(at),
                    error: mistake.error,
                },
                None => RuleFileError {
                    file: BASE.to_owned(),
                    at: None,
                    error: mistake.error,
                },
            }
        };
        let config: RuleConfig = toml::Value::Table(merged).try_into().map_err(|e| {
            located(Located {
                path: Vec::new(),
                offset: None,
                error: Box::new(ConfigError::Parse {
                    message: e.to_string(),
                }),
            })
        })?;
        config.check().map_err(located)?;
        Ok(config)
    }

    /// Refuses unknown rule ids, unknown parameter names, values of the
    /// wrong type or range, unknown categories, invalid equipment ids and
    /// defined rules that do not check, naming the table and key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(|_| ()).map_err(|m| *m.error)
    }

    /// The rules this configuration defines, as `vigil rules check` and
    /// the reload answer list them.
    pub fn defined_rules(&self) -> Vec<DefinedRule> {
        self.definitions()
            .into_iter()
            .map(|d| DefinedRule {
                id: d.id.as_str().to_owned(),
                stream: d.source.name(),
                severity: d.defaults.severity,
                when: d.when.text().to_owned(),
                description: d.description,
            })
            .collect()
    }

    /// The rules this configuration defines that check (the engine ignores
    /// the others, as `validate` would refuse them).
    pub(crate) fn definitions(&self) -> Vec<Definition> {
        let clear = self.default_clear_ms();
        self.rule
            .iter()
            .filter(|(id, table)| lookup(id).is_none() && is_definition(table))
            .filter_map(|(id, table)| Definition::parse(id, table, clear).ok())
            .collect()
    }

    fn default_clear_ms(&self) -> i64 {
        self.global_clear_ms()
            .unwrap_or_else(|| secs_to_ms(DEFAULT_CLEAR_S))
    }

    /// The top-level `clear_s`, if it sets a valid one.
    fn global_clear_ms(&self) -> Option<i64> {
        self.clear_s
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(secs_to_ms)
    }

    /// Everything `validate` checks, with where each mistake is; returns
    /// the definitions.
    fn check(&self) -> Result<Vec<Definition>, Located> {
        if let Err(error) = self.escalation.validate() {
            let key = match &error {
                ConfigError::BadValue { key, .. } => key.clone(),
                _ => String::new(),
            };
            return Err(Located::at(["escalation", key.as_str()], error));
        }
        if let Some(clear) = self.clear_s
            && !(clear.is_finite() && clear >= 0.0)
        {
            return Err(Located::at(
                ["clear_s"],
                ConfigError::BadValue {
                    scope: "top level".into(),
                    rule: "(all rules)".into(),
                    key: "clear_s".into(),
                    expected: "a number of seconds ≥ 0",
                    got: clear.to_string(),
                },
            ));
        }
        let mut defined = BTreeMap::new();
        for (id, table) in &self.rule {
            if !is_definition(table) || lookup(id).is_some() {
                continue;
            }
            let scope = format!("rule.{}", quoted(id));
            let def = Definition::parse(id, table, self.default_clear_ms()).map_err(|e| {
                let key = e.key.clone();
                Located {
                    path: vec!["rule".into(), id.clone(), key.clone()],
                    offset: e.offset,
                    error: Box::new(ConfigError::BadDefinition {
                        scope,
                        key,
                        message: e.message,
                    }),
                }
            })?;
            defined.insert(id.clone(), def);
        }
        let check = |path: Vec<String>, scope: String, id: &str, overrides: &Overrides| {
            check_rule(&scope, id, overrides, defined.get(id), &defined).map_err(|(key, error)| {
                let mut path = path;
                path.extend(key);
                Located {
                    path,
                    offset: None,
                    error,
                }
            })
        };
        for (id, overrides) in &self.rule {
            if !defined.contains_key(id) {
                let path = vec!["rule".to_owned(), id.clone()];
                check(path, format!("rule.{}", quoted(id)), id, overrides)?;
            }
        }
        for (category, rules) in &self.category {
            if !CATEGORIES.contains(&category.as_str()) {
                return Err(Located::at(
                    ["category", category.as_str()],
                    ConfigError::UnknownCategory {
                        category: category.clone(),
                        known: CATEGORIES.join(", "),
                    },
                ));
            }
            for (id, overrides) in rules {
                let path = vec!["category".to_owned(), category.clone(), id.clone()];
                let scope = format!("category.{category}.{}", quoted(id));
                check(path, scope, id, overrides)?;
            }
        }
        for (equipment, rules) in &self.equipment {
            EquipmentId::new(equipment).map_err(|e| {
                Located::at(
                    ["equipment", equipment.as_str()],
                    ConfigError::BadEquipment {
                        equipment: equipment.clone(),
                        reason: e.to_string(),
                    },
                )
            })?;
            for (id, overrides) in rules {
                let path = vec!["equipment".to_owned(), equipment.clone(), id.clone()];
                let scope = format!("equipment.{}.{}", quoted(equipment), quoted(id));
                check(path, scope, id, overrides)?;
            }
        }
        Ok(defined.into_values().collect())
    }

    /// Whether some parameter is set for this one piece of equipment (its
    /// parameters then cannot be shared with its category).
    pub(crate) fn has_equipment_overrides(&self, equipment: &str) -> bool {
        self.equipment.contains_key(equipment)
    }

    /// Every rule's parameters for equipment of `category` (and, when
    /// given, this one piece of equipment): the built-in rules, then the
    /// engine's defined-rule slots (`None`: a rule a reload dropped).
    pub(crate) fn resolve(
        &self,
        category: &str,
        equipment: Option<&str>,
        defined: &[Option<std::sync::Arc<Definition>>],
    ) -> ParamSet {
        let layers = |id: &str| {
            [
                self.rule.get(id),
                self.category.get(category).and_then(|c| c.get(id)),
                equipment
                    .and_then(|e| self.equipment.get(e))
                    .and_then(|e| e.get(id)),
            ]
        };
        let global_clear_ms = self.global_clear_ms();
        let builtin = rules().iter().map(|decl| {
            let mut p = decl.defaults(category, global_clear_ms);
            for overrides in layers(decl.id).into_iter().flatten() {
                for (key, value) in overrides {
                    // Refused by `validate`; the engine keeps the value it had.
                    if decl.has_key(key) {
                        let _ = p.set(decl, key, value);
                    }
                }
            }
            p
        });
        let custom = defined.iter().map(|def| {
            let Some(def) = def else {
                return Params::DISABLED;
            };
            let mut p = def.defaults.clone();
            let [_, by_category, by_equipment] = layers(def.id.as_str());
            for overrides in [by_category, by_equipment].into_iter().flatten() {
                for (key, value) in overrides {
                    let _ = def.set(&mut p, key, value);
                }
            }
            if def
                .categories
                .as_ref()
                .is_some_and(|list| !list.iter().any(|c| c == category))
            {
                p.enabled = false;
            }
            p
        });
        ParamSet(builtin.chain(custom).collect())
    }
}

/// One rule a configuration defines.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DefinedRule {
    pub id: String,
    pub stream: &'static str,
    pub severity: vigil_model::Severity,
    pub when: String,
    pub description: String,
}

/// A mistake and where it is: the table path and key, and for a condition
/// the byte offset inside its text.
pub(crate) struct Located {
    pub path: Vec<String>,
    pub offset: Option<usize>,
    pub error: Box<ConfigError>,
}

impl Located {
    fn at<const N: usize>(path: [&str; N], error: ConfigError) -> Located {
        Located {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            offset: None,
            error: Box::new(error),
        }
    }
}

/// What a rule file's mistakes are reported against when they are not in
/// the file but in the application configuration.
const BASE: &str = "the configuration's [rules]";

/// A rule configuration refused at load, with where the mistake is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {error}", at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct RuleFileError {
    pub file: String,
    /// Line and column, from 1.
    pub at: Option<(usize, usize)>,
    pub error: Box<ConfigError>,
}

/// Line and column (from 1, in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Lays `top` over `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A `[rule."ID"]` table with a condition defines a rule.
fn is_definition(table: &Overrides) -> bool {
    table.contains_key("when") || table.contains_key("stream")
}

/// Checks one rule's overrides; on a mistake returns the key (if it is in
/// a key) and the error.
fn check_rule(
    scope: &str,
    rule_id: &str,
    overrides: &Overrides,
    def: Option<&Definition>,
    defined: &BTreeMap<String, Definition>,
) -> Result<(), (Option<String>, Box<ConfigError>)> {
    if let Some(def) = def {
        let allowed = def.override_keys();
        let mut scratch = def.defaults.clone();
        for (key, value) in overrides {
            if !allowed.contains(&key.as_str()) {
                let hint = if crate::define::DEFINITION_KEYS.contains(&key.as_str()) {
                    " (a condition belongs in the rule's own [rule] table)"
                } else {
                    ""
                };
                return Err((
                    Some(key.clone()),
                    Box::new(ConfigError::UnknownParam {
                        scope: scope.to_owned(),
                        rule: rule_id.to_owned(),
                        key: key.clone(),
                        allowed: format!("{}{hint}", allowed.join(", ")),
                    }),
                ));
            }
            def.set(&mut scratch, key, value).map_err(|expected| {
                (
                    Some(key.clone()),
                    Box::new(ConfigError::BadValue {
                        scope: scope.to_owned(),
                        rule: rule_id.to_owned(),
                        key: key.clone(),
                        expected,
                        got: value.to_string(),
                    }),
                )
            })?;
        }
        return Ok(());
    }
    let Some(decl) = lookup(rule_id).and_then(crate::catalogue::decl) else {
        let known: Vec<&str> = rules()
            .iter()
            .map(|d| d.id)
            .chain(defined.keys().map(String::as_str))
            .collect();
        return Err((
            None,
            Box::new(ConfigError::UnknownRule {
                scope: scope.to_owned(),
                rule: rule_id.to_owned(),
                known: known.join(", "),
            }),
        ));
    };
    if is_definition(overrides) {
        return Err((
            overrides
                .keys()
                .find(|k| *k == "when" || *k == "stream")
                .cloned(),
            Box::new(ConfigError::RedefinedBuiltin {
                rule: rule_id.to_owned(),
            }),
        ));
    }
    let mut scratch = decl.defaults("", None);
    for (key, value) in overrides {
        if !decl.has_key(key) {
            return Err((
                Some(key.clone()),
                Box::new(ConfigError::UnknownParam {
                    scope: scope.to_owned(),
                    rule: rule_id.to_owned(),
                    key: key.clone(),
                    allowed: decl.keys().collect::<Vec<_>>().join(", "),
                }),
            ));
        }
        scratch.set(decl, key, value).map_err(|expected| {
            (
                Some(key.clone()),
                Box::new(ConfigError::BadValue {
                    scope: scope.to_owned(),
                    rule: rule_id.to_owned(),
                    key: key.clone(),
                    expected,
                    got: value.to_string(),
                }),
            )
        })?;
    }
    Ok(())
}

/// TOML spelling of a key: bare when it can be, quoted otherwise.
fn quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("\"{key}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Rule `id`'s parameters in `set`.
    fn get<'a>(set: &'a ParamSet, id: &str) -> &'a Params {
        set.get(lookup(id).unwrap())
    }

    /// Rule `id`'s parameter `key` in `set`, as a configuration spells it.
    fn show(set: &ParamSet, id: &str, key: &str) -> Value {
        let key_of = lookup(id).unwrap();
        set.get(key_of)
            .show(crate::catalogue::decl(key_of).unwrap(), key)
    }

    #[test]
    fn the_brief_example_parses_and_resolves_in_order() {
        let config = RuleConfig::from_toml(
            r#"
            clear_s = 12
            [rule."elevator.trapped"]
            for_s = 120
            [category.escalator."elevator.trapped"]
            enabled = false
            [equipment."EQ-0042"."elevator.overspeed"]
            factor = 1.2
            severity = "major"
            [equipment."EQ-0042"."elevator.trapped"]
            for_s = 30
            "#,
        )
        .unwrap();
        let elevator = config.resolve("elevator", None, &[]);
        let trapped = "elevator.trapped";
        assert_eq!(get(&elevator, trapped).for_ms, 120_000);
        assert!(get(&elevator, trapped).enabled);
        assert_eq!(get(&elevator, trapped).clear_ms, 12_000);
        assert_eq!(
            get(&elevator, "elevator.controller_fault").clear_ms,
            0,
            "the global clear_s leaves controller faults alone"
        );
        let escalator = config.resolve("escalator", None, &[]);
        assert!(!get(&escalator, trapped).enabled);
        assert_eq!(get(&escalator, trapped).for_ms, 120_000);
        let one = config.resolve("elevator", Some("EQ-0042"), &[]);
        assert_eq!(
            (
                show(&one, "elevator.overspeed", "factor"),
                get(&one, "elevator.overspeed").severity
            ),
            (json!(1.2), vigil_model::Severity::Major)
        );
        assert_eq!(get(&one, trapped).for_ms, 30_000);
        assert!(
            config.has_equipment_overrides("EQ-0042") && !config.has_equipment_overrides("EQ-1")
        );
    }

    #[test]
    fn unknown_rules_keys_and_values_are_refused_by_name() {
        let err = RuleConfig::from_toml("[rule.\"elevator.trappd\"]\nfor_s = 1").unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownRule { rule, .. } if rule == "elevator.trappd"),
            "{err}"
        );
        assert!(err.to_string().contains("elevator.trappd"), "{err}");

        let err = RuleConfig::from_toml("[category.escalator.\"elevator.overspeed\"]\nfor = 1")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, ConfigError::UnknownParam { key, .. } if key == "for"),
            "{text}"
        );
        assert!(
            text.contains("elevator.overspeed")
                && text.contains("category.escalator")
                && text.contains("factor"),
            "{text}"
        );

        let err =
            RuleConfig::from_toml("[equipment.EQ1.\"elevator.overspeed\"]\nfactor = \"high\"")
                .unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "factor"),
            "{err}"
        );
        assert!(err.to_string().contains("equipment.EQ1"), "{err}");

        let err = RuleConfig::from_toml("[rule.\"elevator.trapped\"]\nseverity = \"urgent\"")
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key, .. } if key == "severity"),
            "{err}"
        );

        let err = RuleConfig::from_toml("[rule.\"device.offline\"]\nclear_s = 5").unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownParam { key, .. } if key == "clear_s"),
            "{err}"
        );

        let err = RuleConfig::from_toml("[category.elevatr.\"elevator.trapped\"]\nenabled = false")
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownCategory { category, .. } if category == "elevatr"),
            "{err}"
        );

        let err =
            RuleConfig::from_toml("[equipment.\"EQ 1\".\"elevator.trapped\"]\nenabled = false")
                .unwrap_err();
        assert!(matches!(err, ConfigError::BadEquipment { .. }), "{err}");

        let err = RuleConfig::from_toml("clear_s = -1").unwrap_err();
        assert!(matches!(err, ConfigError::BadValue { .. }), "{err}");

        assert!(matches!(
            RuleConfig::from_toml("rules = 1").unwrap_err(),
            ConfigError::Parse { .. }
        ));
        assert!(matches!(
            RuleConfig::from_toml("[rule.\"elevator.door_cycling\"]\nmax_changes = 0").unwrap_err(),
            ConfigError::BadValue { .. }
        ));
    }

    #[test]
    fn controller_code_tables_add_to_the_defaults() {
        let config = RuleConfig::from_toml(
            "[rule.\"elevator.controller_fault\".codes]\nE77 = \"critical\"\n\"01\" = \"major\"\n[equipment.EQ1.\"elevator.controller_fault\".codes]\nE78 = \"minor\"",
        )
        .unwrap();
        let p = config.resolve("elevator", Some("EQ1"), &[]);
        let codes = show(&p, "elevator.controller_fault", "codes");
        assert_eq!(
            (&codes["E77"], &codes["01"], &codes["E78"], &codes["09"]),
            (
                &json!("critical"),
                &json!("major"),
                &json!("minor"),
                &json!("critical")
            )
        );
        let err = RuleConfig::from_toml("[rule.\"elevator.controller_fault\".codes]\nE1 = 3")
            .unwrap_err();
        assert!(err.to_string().contains("codes"), "{err}");
    }

    #[test]
    fn loads_from_a_toml_table_as_an_application_config_does() {
        let table: toml::Table = toml::from_str(
            "clear_s = 10\n[rule.\"elevator.trapped\"]\nfor_s = 120\nalarm_button_for_s = 45.5",
        )
        .unwrap();
        let config: RuleConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.validate(), Ok(()));
        let p = config.resolve("elevator", None, &[]);
        assert_eq!(
            (
                get(&p, "elevator.trapped").for_ms,
                show(&p, "elevator.trapped", "alarm_button_for_s")
            ),
            (120_000, json!(45.5))
        );
    }

    #[test]
    fn defaults_are_valid_and_serialise_back() {
        assert_eq!(RuleConfig::default().validate(), Ok(()));
        let config = RuleConfig::from_toml("[rule.\"elevator.trapped\"]\nfor_s = 120").unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(RuleConfig::from_toml(&text).unwrap(), config);
    }
}
