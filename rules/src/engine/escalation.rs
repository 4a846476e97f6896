//! Escalation: an alarm that stays `active` (nobody acknowledged it) for
//! longer than its severity's limit gets a new version marked
//! `details.escalated_at` and `details.escalation`, once. The hub publishes
//! that version on every channel like any other change.
//!
//! The limit runs on the equipment's device clock, like every rule period:
//! `raised_at` is device time, so a device whose clock is off does not
//! escalate early or late, and replay escalates as live evaluation did.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::info;
use vigil_model::{Alarm, AlarmState, EpochMs, Severity};

use super::state::EquipmentCore;
use crate::catalogue::secs_to_ms;
use crate::error::ConfigError;

/// `[escalation]` of the rule configuration: seconds an alarm of each
/// severity may stay unacknowledged. A severity without a value never
/// escalates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Escalation {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_s: Option<f64>,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            enabled: true,
            critical_s: Some(300.0),
            major_s: None,
            minor_s: None,
            warning_s: None,
        }
    }
}

impl Escalation {
    pub(crate) fn is_default(&self) -> bool {
        *self == Escalation::default()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in self.limits() {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(ConfigError::BadValue {
                    scope: "escalation".into(),
                    rule: "(all rules)".into(),
                    key: key.into(),
                    expected: "a number of seconds > 0",
                    got: v.to_string(),
                });
            }
        }
        Ok(())
    }

    fn limits(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("critical_s", self.critical_s),
            ("major_s", self.major_s),
            ("minor_s", self.minor_s),
            ("warning_s", self.warning_s),
        ]
    }

    /// The limit for `severity`, if it escalates (invalid values never do).
    fn limit_s(&self, severity: Severity) -> Option<f64> {
        if !self.enabled {
            return None;
        }
        let s = match severity {
            Severity::Critical => self.critical_s,
            Severity::Major => self.major_s,
            Severity::Minor => self.minor_s,
            Severity::Warning => self.warning_s,
        }?;
        (s.is_finite() && s > 0.0).then_some(s)
    }
}

/// Escalates every open alarm past its limit. `now` (engine time) stands in
/// for equipment that has no device clock yet (restored, never heard).
pub(super) fn escalate(
    equipment: &mut [EquipmentCore],
    config: &Escalation,
    now: EpochMs,
    out: &mut Vec<Alarm>,
) {
    for eq in equipment.iter_mut() {
        let clock = eq.clock().unwrap_or(now);
        for slot in &mut eq.slots {
            let a = slot.head();
            if a.state != AlarmState::Active {
                continue;
            }
            let Some(limit_s) = config.limit_s(a.severity) else {
                continue;
            };
            // Looked up in the details last: most alarms are not due.
            if clock < a.raised_at.saturating_add(secs_to_ms(limit_s)) || slot.escalated() {
                continue;
            }
            let note = format!("unacknowledged {}", duration_words(limit_s));
            let mut details = slot.details();
            let map = as_object(&mut details);
            map.insert("escalated_at".into(), Value::from(clock));
            map.insert("escalation".into(), Value::from(note.as_str()));
            let a = slot.head_mut();
            a.updated_at = a.updated_at.max(clock);
            a.version += 1;
            info!(alarm = %a.alarm_id, rule = %a.rule, equipment = %a.equipment_id, severity = a.severity.as_str(), escalation = %note, "Alarm escalated.");
            out.push(slot.with_details(details));
        }
    }
}

/// New details for a changed alarm, keeping the escalation marks of the
/// old ones: a repeat must not make an escalated alarm escalate again.
pub(super) fn carried(old: &Value, mut new: Value) -> Value {
    if !is_escalated(old) {
        return new;
    }
    let details = as_object(&mut new);
    for key in ["escalated_at", "escalation"] {
        if let Some(v) = old.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    new
}

pub(super) fn is_escalated(details: &Value) -> bool {
    details.get("escalated_at").is_some_and(|v| !v.is_null())
}

/// Details are objects; anything else is kept under `value`.
fn as_object(details: &mut Value) -> &mut Map<String, Value> {
    if !details.is_object() {
        let old = details.take();
        let mut map = Map::new();
        if !old.is_null() {
            map.insert("value".into(), old);
        }
        *details = Value::Object(map);
    }
    details.as_object_mut().expect("made an object above")
}

/// `300` → `5 min`, `90` → `90 s`, `7200` → `2 h`.
fn duration_words(secs: f64) -> String {
    let s = secs.round() as i64;
    if s >= 3600 && s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_read_as_people_say_them() {
        assert_eq!(duration_words(300.0), "5 min");
        assert_eq!(duration_words(7200.0), "2 h");
        assert_eq!(duration_words(90.0), "90 s");
        assert_eq!(duration_words(1.5), "1.5 s");
    }

    #[test]
    fn a_repeat_keeps_the_escalation_marks() {
        let old = json!({"floor": 3, "escalated_at": 5, "escalation": "unacknowledged 5 min"});
        assert_eq!(
            carried(&old, json!({"floor": 4})),
            json!({"floor": 4, "escalated_at": 5, "escalation": "unacknowledged 5 min"})
        );
        assert_eq!(
            carried(&json!({"floor": 3}), json!({"floor": 4})),
            json!({"floor": 4})
        );
    }
}
