//! Alarms as supervisors see them (protocol.md, "Alarm JSON").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EpochMs;
use crate::ids::{AlarmId, DeviceId, EquipmentId, OwnerId, Region, RuleId};

word_enum!(Severity {
    Warning = "warning",
    Minor = "minor",
    Major = "major",
    Critical = "critical",
});

word_enum!(
    /// `active` → `acknowledged` → `cleared`; an alarm may clear straight from
    /// `active`. Only `cleared` is final.
    AlarmState {
        Active = "active",
        Acknowledged = "acknowledged",
        Cleared = "cleared",
    }
);

impl AlarmState {
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

/// Which alarms a reader asked for: the same filter serves the live board
/// (`matches`) and the stored history (the store's typed `alarms` query).
#[derive(Debug, Default, Clone)]
pub struct AlarmFilter {
    pub states: Option<Vec<AlarmState>>,
    /// Any of these regions (each covering its sub-regions).
    pub regions: Option<Vec<Region>>,
    pub category: Option<String>,
    pub equipment_id: Option<String>,
    /// Changed at or after this time.
    pub since: Option<EpochMs>,
}

impl AlarmFilter {
    pub fn matches(&self, alarm: &Alarm) -> bool {
        self.states
            .as_ref()
            .is_none_or(|s| s.contains(&alarm.state))
            && self
                .regions
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r.covers(&alarm.region)))
            && self.category.as_ref().is_none_or(|c| *c == alarm.category)
            && self
                .equipment_id
                .as_ref()
                .is_none_or(|e| e == alarm.equipment_id.as_str())
            && self.since.is_none_or(|t| alarm.updated_at >= t)
    }
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
