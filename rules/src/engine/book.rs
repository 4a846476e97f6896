//! The alarm book: ids, versions, the open alarm of each `(equipment,
//! rule)` and who keeps it open, and the ids of recently cleared alarms.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault};

use serde_json::Value;
use tracing::{debug, info, warn};
use vigil_model::log_limit::LogLimit;
use vigil_model::{Alarm, AlarmId, AlarmState, DeviceId, EpochMs, RuleId, Severity};

use super::state::EquipmentCore;
use crate::catalogue::{Key, rule_id, rules};
use crate::family::{DevIx, EqIx, IndexHasher};

/// "Alarm repeated." lines across every shard.
static REPEAT_LOG: LogLimit = LogLimit::per_second(5);

/// The open alarm of one `(equipment, rule)` and who keeps it open.
#[derive(Debug)]
pub(crate) struct Slot {
    pub key: Key,
    /// The open alarm with null details: they are kept apart as JSON text,
    /// because a details map is one B-tree node of 11 places (about 640 B)
    /// whatever its size, and a third of all devices have an alarm open.
    head: Alarm,
    details: Box<str>,
    /// The details carry the escalation marks (read on every tick).
    escalated: bool,
    /// Devices (by the engine's index) whose condition holds this alarm
    /// open (per-device rules). Empty for equipment-level rules, and for a
    /// restored alarm until a device adopts it.
    pub holders: Vec<DevIx>,
}

impl Slot {
    pub(crate) fn new(key: Key, mut alarm: Alarm, holders: Vec<DevIx>) -> Slot {
        let details = alarm.details.take();
        let mut slot = Slot {
            key,
            head: alarm,
            details: Box::default(),
            escalated: false,
            holders,
        };
        slot.set_details(&details);
        slot
    }

    /// The alarm's fields but its details (null here).
    pub(crate) fn head(&self) -> &Alarm {
        &self.head
    }

    pub(crate) fn head_mut(&mut self) -> &mut Alarm {
        &mut self.head
    }

    pub(crate) fn details(&self) -> Value {
        // Written by `set_details` from a `Value`: it reads back as written
        // (floats bit for bit with `float_roundtrip`).
        serde_json::from_str(&self.details).unwrap_or(Value::Null)
    }

    fn set_details(&mut self, details: &Value) {
        self.details = details.to_string().into_boxed_str();
        self.escalated = super::escalation::is_escalated(details);
    }

    pub(crate) fn escalated(&self) -> bool {
        self.escalated
    }

    /// New details for a changed alarm, keeping its escalation marks.
    pub(crate) fn carry(&self, new: Value) -> Value {
        if !self.escalated {
            return new;
        }
        super::escalation::carried(&self.details(), new)
    }

    /// The current version as a whole.
    pub(crate) fn alarm(&self) -> Alarm {
        Alarm {
            details: self.details(),
            ..self.head.clone()
        }
    }

    /// Stores new `details` and returns the whole alarm with them.
    pub(crate) fn with_details(&mut self, details: Value) -> Alarm {
        self.set_details(&details);
        Alarm {
            details,
            ..self.head.clone()
        }
    }

    pub(crate) fn into_alarm(self) -> Alarm {
        let details = self.details();
        Alarm {
            details,
            ..self.head
        }
    }
}

/// One firing of a rule: which, how severe, when, with what details.
pub(crate) struct Fire {
    pub key: Key,
    pub severity: Severity,
    pub at: EpochMs,
    pub details: Value,
}

/// Remembers ids of cleared alarms so a late acknowledge says "already
/// cleared" rather than "not found"; bounded, oldest forgotten first.
///
/// Each id is kept as a 64-bit hash (seeded per process), not as text: 16
/// bytes an id where the text kept its whole `Arc` alive (a UUID's is 56).
/// Two ids share a hash with odds of about 2^-48 per question when the
/// set is full: an unknown id asked about would then be answered "already
/// cleared" instead of "not found", nothing else (an open alarm is found
/// by its id before this set is asked).
#[derive(Default)]
pub(crate) struct RecentlyCleared {
    order: VecDeque<u64>,
    hashes: HashSet<u64, BuildHasherDefault<IndexHasher>>,
    hasher: foldhash::quality::RandomState,
}

const REMEMBER_CLEARED: usize = 65_536;

impl RecentlyCleared {
    pub(crate) fn insert(&mut self, id: &AlarmId) {
        let h = self.hasher.hash_one(id.as_str());
        if self.hashes.insert(h) {
            self.order.push_back(h);
            if self.order.len() > REMEMBER_CLEARED
                && let Some(old) = self.order.pop_front()
            {
                self.hashes.remove(&old);
            }
        }
    }

    pub(crate) fn contains(&self, id: &AlarmId) -> bool {
        self.hashes.contains(&self.hasher.hash_one(id.as_str()))
    }
}

/// The alarm lifecycle: ids, versions, the index by alarm id.
pub(crate) struct Book {
    pub next_id: Box<dyn FnMut() -> AlarmId + Send>,
    /// By [`Key`]: the built-in rules' ids, then the defined rules'.
    pub rule_ids: Vec<RuleId>,
    pub by_alarm: HashMap<AlarmId, (EqIx, Key)>,
    pub cleared: RecentlyCleared,
}

impl Book {
    pub(crate) fn new(next_id: Box<dyn FnMut() -> AlarmId + Send>) -> Book {
        Book {
            next_id,
            rule_ids: rules().iter().map(|d| rule_id(d)).collect(),
            by_alarm: HashMap::new(),
            cleared: RecentlyCleared::default(),
        }
    }

    /// The rule qualified on `device`'s word: raise a new alarm, or repeat
    /// the open one (count + 1). `holder`: the device (by index) whose
    /// condition keeps it open, if one does.
    pub(crate) fn fire(
        &mut self,
        eq: &mut EquipmentCore,
        f: Fire,
        device: &DeviceId,
        holder: Option<DevIx>,
        out: &mut Vec<Alarm>,
    ) {
        match eq.slot_mut(f.key) {
            Some(slot) => {
                let details = slot.carry(f.details);
                let a = &mut slot.head;
                a.count += 1;
                a.updated_at = a.updated_at.max(f.at);
                a.severity = f.severity;
                a.version += 1;
                if let Some(dix) = holder
                    && !slot.holders.contains(&dix)
                {
                    slot.holders.push(dix);
                }
                // A device stuck on a fault repeats its alarm with every
                // message: the count has every repeat, the log a few a second.
                match REPEAT_LOG.allow() {
                    Some(held_back) => {
                        info!(equipment = %a.equipment_id, device = %device, rule = %a.rule, alarm = %a.alarm_id, count = a.count, held_back, "Alarm repeated.")
                    }
                    None => {
                        debug!(equipment = %a.equipment_id, device = %device, rule = %a.rule, alarm = %a.alarm_id, count = a.count, "Alarm repeated.")
                    }
                }
                out.push(slot.with_details(details));
            }
            None => {
                let holders = holder.into_iter().collect();
                out.push(self.raise(eq, f, Some(device), holders));
            }
        }
    }

    /// A new alarm on `eq`, raised by `device` (none for the registry-time
    /// rules), now its open alarm; returns its first version.
    pub(crate) fn raise(
        &mut self,
        eq: &mut EquipmentCore,
        f: Fire,
        device: Option<&DeviceId>,
        holders: Vec<DevIx>,
    ) -> Alarm {
        let alarm = Alarm {
            alarm_id: (self.next_id)(),
            rule: self.rule_ids[f.key.index()].clone(),
            severity: f.severity,
            state: AlarmState::Active,
            equipment_id: eq.binding.equipment_id.clone(),
            device_id: device.cloned(),
            category: eq.binding.category.to_string(),
            owner_id: eq.binding.owner_id.clone(),
            region: eq.binding.region,
            raised_at: f.at,
            updated_at: f.at,
            cleared_at: None,
            count: 1,
            details: f.details,
            version: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            note: None,
        };
        info!(equipment = %alarm.equipment_id, device = ?device.map(DeviceId::as_str), rule = %alarm.rule, alarm = %alarm.alarm_id, severity = f.severity.as_str(), "Alarm raised.");
        self.by_alarm
            .insert(alarm.alarm_id.clone(), (eq.ix(), f.key));
        eq.put_slot(Slot::new(f.key, alarm.clone(), holders));
        alarm
    }

    /// After a restart: the stored open `alarm` is `key`'s open alarm on
    /// `eq` again, held by no device until one adopts it. An open alarm
    /// already there (two stored for one rule) gives way to it.
    pub(crate) fn reopen(&mut self, eq: &mut EquipmentCore, key: Key, alarm: &Alarm) {
        let slot = Slot::new(key, alarm.clone(), Vec::new());
        if let Some(existing) = eq.put_slot(slot) {
            warn!(equipment = %alarm.equipment_id, rule = %alarm.rule, kept = %alarm.alarm_id, dropped = %existing.head.alarm_id, "Two open alarms for one equipment and rule; keeping the later one.");
            self.by_alarm.remove(&existing.head.alarm_id);
        }
        self.by_alarm.insert(alarm.alarm_id.clone(), (eq.ix(), key));
    }

    /// A new version of the open alarm without a new occurrence (the set of
    /// active codes or offline devices changed).
    pub(crate) fn update(
        &mut self,
        eq: &mut EquipmentCore,
        key: Key,
        severity: Severity,
        at: EpochMs,
        details: Value,
        out: &mut Vec<Alarm>,
    ) {
        if let Some(slot) = eq.slot_mut(key) {
            let details = slot.carry(details);
            let a = &mut slot.head;
            a.updated_at = a.updated_at.max(at);
            a.severity = severity;
            a.version += 1;
            out.push(slot.with_details(details));
        }
    }

    /// `device` no longer holds the alarm; the last holder clears it.
    pub(crate) fn release(
        &mut self,
        eq: &mut EquipmentCore,
        key: Key,
        device: DevIx,
        at: EpochMs,
        out: &mut Vec<Alarm>,
    ) {
        if let Some(slot) = eq.slot_mut(key) {
            slot.holders.retain(|&d| d != device);
            if slot.holders.is_empty() {
                self.clear(eq, key, at, out);
            }
        }
    }

    /// The rule clears its open alarm at device time `at`.
    pub(crate) fn clear(
        &mut self,
        eq: &mut EquipmentCore,
        key: Key,
        at: EpochMs,
        out: &mut Vec<Alarm>,
    ) {
        let Some(slot) = eq.take_slot(key) else {
            return;
        };
        let mut a = slot.into_alarm();
        let at = at.max(a.raised_at);
        a.state = AlarmState::Cleared;
        a.cleared_at = Some(at);
        a.updated_at = at;
        a.version += 1;
        eq.set_cleared_at(key, at);
        info!(equipment = %a.equipment_id, rule = %a.rule, alarm = %a.alarm_id, count = a.count, "Alarm cleared.");
        self.by_alarm.remove(&a.alarm_id);
        self.cleared.insert(&a.alarm_id);
        out.push(a);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigil_model::{EquipmentId, OwnerId, Region};

    use super::*;

    fn alarm(details: Value) -> Alarm {
        Alarm {
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
            details,
            version: 1,
            acknowledged_at: None,
            acknowledged_by: None,
            note: None,
        }
    }

    #[test]
    fn recently_cleared_ids_are_remembered_until_many_more_cleared() {
        let id = |n: usize| AlarmId::new(format!("A{n}")).unwrap();
        let mut cleared = RecentlyCleared::default();
        cleared.insert(&id(0));
        cleared.insert(&id(0));
        assert!(cleared.contains(&id(0)));
        assert!(!cleared.contains(&id(1)), "never cleared");
        for n in 1..=REMEMBER_CLEARED {
            cleared.insert(&id(n));
        }
        assert!(!cleared.contains(&id(0)), "the oldest is forgotten first");
        assert!(cleared.contains(&id(1)) && cleared.contains(&id(REMEMBER_CLEARED)));
        assert!(!cleared.contains(&id(REMEMBER_CLEARED + 1)));
        assert_eq!(cleared.order.len(), REMEMBER_CLEARED);
    }

    #[test]
    fn a_slot_gives_back_the_details_it_was_given() {
        let details = [
            json!({
                "speed_mps": 0.1, "tiny": 1e-300, "minus_zero": -0.0, "whole_float": 1.0,
                "big": u64::MAX, "low": i64::MIN, "text": "a \"quoted\"\nline ✓",
                "nested": {"workers": [{"id": "W1", "until": 17.25}], "none": null},
            }),
            json!({}),
            Value::Null,
            json!("not an object"),
        ];
        for d in details {
            let a = alarm(d.clone());
            let slot = Slot::new(Key::from_index(0), a.clone(), Vec::new());
            assert!(slot.head().details.is_null());
            assert_eq!(slot.details(), d);
            let back = slot.alarm();
            assert_eq!(back, a);
            // Floats bit for bit, not only equal.
            assert_eq!(back.details.to_string(), d.to_string());
            assert!(!slot.escalated());
            assert_eq!(slot.into_alarm(), a);
        }
    }

    #[test]
    fn a_slot_knows_its_escalation_marks_and_carries_them() {
        let escalated =
            json!({"floor": 3, "escalated_at": 9, "escalation": "unacknowledged 5 minutes"});
        let mut slot = Slot::new(Key::from_index(0), alarm(escalated), Vec::new());
        assert!(slot.escalated());
        let carried = slot.carry(json!({"floor": 4}));
        assert_eq!(
            carried,
            json!({"floor": 4, "escalated_at": 9, "escalation": "unacknowledged 5 minutes"})
        );
        let handed = slot.with_details(json!({"floor": 5}));
        assert_eq!(handed.details, json!({"floor": 5}));
        assert!(!slot.escalated());
        assert_eq!(slot.carry(json!({"floor": 6})), json!({"floor": 6}));
    }
}
