//! Rule configuration: overrides of the built-in defaults per rule, per
//! equipment category and per piece of equipment, checked before use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_model::EquipmentId;

use crate::catalogue::{Params, Rule, secs_to_ms};
use crate::engine::Escalation;
use crate::error::ConfigError;

/// The registry's equipment categories (registry.md); a category override
/// naming anything else is a typo that would silently do nothing.
const CATEGORIES: &[&str] = &[
    "elevator",
    "escalator",
    "amusement_ride",
    "passenger_ropeway",
    "boiler",
    "pressure_vessel",
    "pressure_piping",
    "lifting_machinery",
    "in_plant_vehicle",
    // Filling scales are bound to stations (registry `station_id`).
    "filling_station",
];

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

    /// Refuses unknown rule ids, unknown parameter names, values of the
    /// wrong type or range, unknown categories and invalid equipment ids,
    /// naming the table and key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.escalation.validate()?;
        if let Some(clear) = self.clear_s
            && !(clear.is_finite() && clear >= 0.0)
        {
            return Err(ConfigError::BadValue {
                scope: "top level".into(),
                rule: "(all rules)".into(),
                key: "clear_s".into(),
                expected: "a number of seconds ≥ 0",
                got: clear.to_string(),
            });
        }
        for (rule, overrides) in &self.rule {
            check_rule(&format!("rule.{}", quoted(rule)), rule, overrides)?;
        }
        for (category, rules) in &self.category {
            if !CATEGORIES.contains(&category.as_str()) {
                return Err(ConfigError::UnknownCategory {
                    category: category.clone(),
                    known: CATEGORIES.join(", "),
                });
            }
            for (rule, overrides) in rules {
                check_rule(
                    &format!("category.{category}.{}", quoted(rule)),
                    rule,
                    overrides,
                )?;
            }
        }
        for (equipment, rules) in &self.equipment {
            EquipmentId::new(equipment).map_err(|e| ConfigError::BadEquipment {
                equipment: equipment.clone(),
                reason: e.to_string(),
            })?;
            for (rule, overrides) in rules {
                check_rule(
                    &format!("equipment.{}.{}", quoted(equipment), quoted(rule)),
                    rule,
                    overrides,
                )?;
            }
        }
        Ok(())
    }

    /// Whether some parameter is set for this one piece of equipment (its
    /// parameters then cannot be shared with its category).
    pub(crate) fn has_equipment_overrides(&self, equipment: &str) -> bool {
        self.equipment.contains_key(equipment)
    }

    /// Every rule's parameters for equipment of `category` (and, when
    /// given, this one piece of equipment).
    pub(crate) fn resolve(&self, category: &str, equipment: Option<&str>) -> ParamSet {
        ParamSet(std::array::from_fn(|i| {
            let rule = Rule::ALL[i];
            let mut p = Params::default_for_category(rule, category);
            if rule.uses_global_clear()
                && let Some(clear) = self.clear_s.filter(|c| c.is_finite() && *c >= 0.0)
            {
                p.clear_ms = secs_to_ms(clear);
            }
            let layers = [
                self.rule.get(rule.id()),
                self.category.get(category).and_then(|c| c.get(rule.id())),
                equipment
                    .and_then(|e| self.equipment.get(e))
                    .and_then(|e| e.get(rule.id())),
            ];
            for overrides in layers.into_iter().flatten() {
                for (key, value) in overrides {
                    // Refused by `validate`; the engine keeps the value it had.
                    if rule.keys().contains(&key.as_str()) {
                        let _ = p.set(key, value);
                    }
                }
            }
            p
        }))
    }
}

fn check_rule(scope: &str, rule_id: &str, overrides: &Overrides) -> Result<(), ConfigError> {
    let Some(rule) = Rule::parse(rule_id) else {
        let known: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        return Err(ConfigError::UnknownRule {
            scope: scope.to_owned(),
            rule: rule_id.to_owned(),
            known: known.join(", "),
        });
    };
    let mut scratch = Params::default_for(rule);
    for (key, value) in overrides {
        if !rule.keys().contains(&key.as_str()) {
            return Err(ConfigError::UnknownParam {
                scope: scope.to_owned(),
                rule: rule_id.to_owned(),
                key: key.clone(),
                allowed: rule.keys().join(", "),
            });
        }
        scratch
            .set(key, value)
            .map_err(|expected| ConfigError::BadValue {
                scope: scope.to_owned(),
                rule: rule_id.to_owned(),
                key: key.clone(),
                expected,
                got: value.to_string(),
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

/// Every rule's resolved parameters for one piece of equipment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamSet([Params; Rule::COUNT]);

impl ParamSet {
    pub fn get(&self, rule: Rule) -> &Params {
        &self.0[rule.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let elevator = config.resolve("elevator", None);
        assert_eq!(elevator.get(Rule::Trapped).for_ms, 120_000);
        assert!(elevator.get(Rule::Trapped).enabled);
        assert_eq!(elevator.get(Rule::Trapped).clear_ms, 12_000);
        assert_eq!(
            elevator.get(Rule::ControllerFault).clear_ms,
            0,
            "the global clear_s leaves controller faults alone"
        );
        let escalator = config.resolve("escalator", None);
        assert!(!escalator.get(Rule::Trapped).enabled);
        assert_eq!(escalator.get(Rule::Trapped).for_ms, 120_000);
        let one = config.resolve("elevator", Some("EQ-0042"));
        assert_eq!(
            (
                one.get(Rule::Overspeed).factor,
                one.get(Rule::Overspeed).severity
            ),
            (1.2, vigil_model::Severity::Major)
        );
        assert_eq!(one.get(Rule::Trapped).for_ms, 30_000);
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
        let p = config.resolve("elevator", Some("EQ1"));
        let codes = &p.get(Rule::ControllerFault).codes;
        use vigil_model::Severity::*;
        assert_eq!(
            (codes["E77"], codes["01"], codes["E78"], codes["09"]),
            (Critical, Major, Minor, Critical)
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
        let p = config.resolve("elevator", None);
        assert_eq!(
            (
                p.get(Rule::Trapped).for_ms,
                p.get(Rule::Trapped).alarm_button_for_ms
            ),
            (120_000, 45_500)
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
