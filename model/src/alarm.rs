//! Alarms as supervisors see them (protocol.md, "Alarm JSON").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EpochMs;
use crate::ids::{AlarmId, DeviceId, EquipmentId, OwnerId, Region, RuleId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Warning,
            Severity::Minor,
            Severity::Major,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// `active` → `acknowledged` → `cleared`; an alarm may clear straight from
/// `active`. Only `cleared` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Active,
    Acknowledged,
    Cleared,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Active => "active",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Cleared => "cleared",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        [
            AlarmState::Active,
            AlarmState::Acknowledged,
            AlarmState::Cleared,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        self != AlarmState::Cleared
    }
}

/// One alarm at one moment. Every change is a new value with the same
/// `alarm_id` and a `version` one higher; the JSON is protocol.md's, with
/// `version`, `acknowledged_by`, `acknowledged_at` and `note` added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub alarm_id: AlarmId,
    pub rule: RuleId,
    pub severity: Severity,
    pub state: AlarmState,
    pub equipment_id: EquipmentId,
    /// The device whose reading raised it; absent for registry-time rules.
    pub device_id: Option<DeviceId>,
    pub category: String,
    pub owner_id: OwnerId,
    pub region: Region,
    pub raised_at: EpochMs,
    pub updated_at: EpochMs,
    pub cleared_at: Option<EpochMs>,
    pub count: u32,
    pub details: Value,
    /// Starts at 1 and grows by one with every change of this alarm.
    pub version: u32,
    pub acknowledged_at: Option<EpochMs>,
    pub acknowledged_by: Option<String>,
    /// How it was handled, given when a person resolves it.
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_json_has_the_protocol_fields() {
        let alarm = Alarm {
            alarm_id: AlarmId::new("a1").unwrap(),
            rule: RuleId::new("elevator.trapped").unwrap(),
            severity: Severity::Critical,
            state: AlarmState::Active,
            equipment_id: EquipmentId::new("EQ1").unwrap(),
            device_id: Some(DeviceId::new("EL1").unwrap()),
            category: "elevator".into(),
            owner_id: OwnerId::new("O1").unwrap(),
            region: Region::new("440703").unwrap(),
            raised_at: 1,
            updated_at: 2,
            cleared_at: None,
            count: 1,
            details: serde_json::json!({"floor": 3}),
            version: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            note: None,
        };
        let v = serde_json::to_value(&alarm).unwrap();
        for key in [
            "alarm_id",
            "rule",
            "severity",
            "state",
            "equipment_id",
            "device_id",
            "category",
            "owner_id",
            "region",
            "raised_at",
            "updated_at",
            "cleared_at",
            "count",
            "details",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["region"], "440703");
        assert!(v["cleared_at"].is_null());
        let back: Alarm = serde_json::from_value(v).unwrap();
        assert_eq!(back, alarm);
    }
}
