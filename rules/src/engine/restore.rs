//! Rebuilding alarm state after a restart from stored alarm versions.

use std::collections::HashMap;

use tracing::info;
use vigil_model::{Alarm, AlarmId, Binding, EpochMs};

use super::RuleEngine;
use crate::catalogue::{Key, lookup, rules};
use crate::family::EqIx;

pub(super) fn restore(engine: &mut RuleEngine, alarms: Vec<Alarm>, now: EpochMs) {
    let mut by_id: HashMap<AlarmId, Vec<Alarm>> = HashMap::new();
    for alarm in alarms {
        by_id.entry(alarm.alarm_id.clone()).or_default().push(alarm);
    }
    let mut groups: Vec<Vec<Alarm>> = by_id.into_values().collect();
    for versions in &mut groups {
        versions.sort_by_key(|a| a.version);
    }
    // Oldest first, so that when two open alarms claim one (equipment,
    // rule) the later one wins deterministically.
    groups.sort_by_key(|v| v.last().map(|a| (a.raised_at, a.alarm_id.clone())));
    let (mut open, mut cleared, mut defined) = (0usize, 0usize, 0usize);
    for versions in groups {
        let Some(latest) = versions.last() else {
            continue;
        };
        let key = match lookup(latest.rule.as_str()) {
            Some(key) => key,
            None => {
                // A rule the configuration defines (or defined: a rule
                // dropped while the engine was down is an empty slot, and
                // its open alarm clears at the next tick).
                if !latest.state.is_open() {
                    engine.world.book.cleared.insert(&latest.alarm_id);
                    continue;
                }
                let known = engine.world.book.rule_ids[rules().len()..].contains(&latest.rule);
                if !known {
                    info!(rule = %latest.rule, alarm = %latest.alarm_id, "Open alarm of a rule no longer configured; it clears at the next tick.");
                    engine.retick_all = true;
                }
                let n = engine.defined_slot(&latest.rule);
                defined += 1;
                Key::defined(n)
            }
        };
        let eix = engine.restored_equipment(latest);
        let time = (now, engine.local_offset_ms);
        let mut ignored = Vec::new();
        engine.each_on_equipment(eix, time, &mut ignored, super::ANY, |f, cx| {
            f.on_restore(cx, key, &versions)
        });
        if !latest.state.is_open() {
            engine.world.book.cleared.insert(&latest.alarm_id);
            cleared += 1;
            continue;
        }
        let eq = &mut engine.world.equipment[eix];
        engine.world.book.reopen(eq, key, latest);
        if key.defined_index().is_none() {
            open += 1;
        }
    }
    // Slots made for rules no longer defined: the families learn of them.
    engine.announce_defined();
    info!(open, cleared, defined, "Rule engine restored its alarms.");
}

impl RuleEngine {
    /// The equipment of a restored alarm: the one known, as it is, or one
    /// made from what the alarm says of it.
    fn restored_equipment(&mut self, a: &Alarm) -> EqIx {
        let eix = match self.world.equipment_ix.get(&a.equipment_id) {
            Some(&eix) => eix,
            None => {
                let binding = Binding {
                    equipment_id: a.equipment_id.clone(),
                    category: a.category.clone(),
                    owner_id: a.owner_id.clone(),
                    region: a.region,
                };
                self.equipment_of(&binding, None)
            }
        };
        self.resolver.refresh(&mut self.world.equipment[eix]);
        eix
    }
}
