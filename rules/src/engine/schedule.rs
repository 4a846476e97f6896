//! Registry-time rules: what the registry says of each piece of equipment
//! (inspection date, last maintenance, status) against the wall clock, run
//! on a schedule rather than per reading.
//!
//! The caller passes the facts of every equipment of this engine's shard at
//! each check. A condition that holds raises one alarm and keeps it without
//! repeats (it is one long occurrence); one that no longer holds (the
//! registry was updated) clears at once. An alarm a person resolved while
//! the condition still held stays resolved until the condition has been
//! false once: nobody is nagged every minute about a date they know of.
//! Equipment for which nothing holds gets no state at all, so a province of
//! 1.75 million pieces of equipment costs memory only for its alarms.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use vigil_model::{Alarm, Binding, EpochMs, EquipmentId};

use super::RuleEngine;
use super::state::EquipmentState;
use crate::catalogue::Rule;

const DAY_MS: i64 = 86_400_000;

/// What the registry says of one piece of equipment, with its dates as the
/// epoch ms of the start of that day in the registry's local time.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryFacts {
    pub binding: Binding,
    /// Status `in_use` (not `stopped` or `scrapped`).
    pub in_use: bool,
    /// Start of the day of the next periodic inspection, and that day as
    /// the registry writes it (`YYYY-MM-DD`, shown in the alarm).
    pub next_inspection: EpochMs,
    pub next_inspection_date: String,
    /// Start of the day of the last maintenance, if any, and that day.
    pub last_maintenance: Option<(EpochMs, String)>,
}

/// Alarms resolved by a person while their condition still held.
#[derive(Debug, Default)]
pub(crate) struct ScheduleState {
    quiet: HashSet<(EquipmentId, Rule)>,
}

impl ScheduleState {
    pub fn resolved(&mut self, equipment: &EquipmentId, rule: Rule) {
        self.quiet.insert((equipment.clone(), rule));
    }
}

/// Runs every registry-time rule over `facts` at wall time `now`.
pub(crate) fn check(engine: &mut RuleEngine, facts: &[RegistryFacts], now: EpochMs) -> Vec<Alarm> {
    let RuleEngine {
        resolver,
        book,
        devices,
        equipment,
        schedule,
        ..
    } = engine;
    let mut out = Vec::new();
    // When each equipment's devices were last heard: "in use" for the
    // overdue-inspection rule means readings are flowing.
    let mut heard: HashMap<EquipmentId, EpochMs> = HashMap::new();
    for dev in devices.values() {
        let t = heard
            .entry(dev.equipment_id.clone())
            .or_insert(dev.last_received);
        *t = (*t).max(dev.last_received);
    }

    let mut seen = HashSet::with_capacity(facts.len());
    for f in facts {
        let id = &f.binding.equipment_id;
        seen.insert(id.clone());
        // Equipment without state gets some only if a rule raises.
        let mut fresh = None;
        let eq: &mut EquipmentState = match equipment.get_mut(id) {
            Some(eq) => eq,
            None => fresh.insert(EquipmentState::new(
                f.binding.clone(),
                resolver.defaults.clone(),
            )),
        };
        eq.rebind(&f.binding);
        resolver.refresh(eq);
        let mut changes = Vec::new();
        for rule in Rule::REGISTRY {
            let params = Arc::clone(&eq.params);
            let p = params.get(rule);
            let holds = p.enabled
                && match rule {
                    Rule::InspectionDue => {
                        f.in_use
                            && now >= f.next_inspection - i64::from(p.days) * DAY_MS
                            && now < f.next_inspection + DAY_MS
                    }
                    Rule::InspectionOverdue => {
                        f.in_use
                            && now >= f.next_inspection + DAY_MS
                            && heard
                                .get(id)
                                .is_some_and(|&t| now.saturating_sub(t) <= p.flowing_ms)
                    }
                    Rule::MaintenanceOverdue => {
                        f.in_use
                            && f.last_maintenance.as_ref().is_none_or(|(day, _)| {
                                now >= day + (i64::from(p.days) + 1) * DAY_MS
                            })
                    }
                    _ => false,
                };
            let key = (id.clone(), rule);
            if !holds {
                schedule.quiet.remove(&key);
                book.clear(eq, rule, now, &mut changes);
                continue;
            }
            if eq.slot(rule).is_some() || schedule.quiet.contains(&key) {
                continue;
            }
            let details = match rule {
                Rule::InspectionDue => json!({
                    "next_inspection": f.next_inspection_date,
                    // Calendar days: the inspection day itself is 0 days left.
                    "days_left": (f.next_inspection - now + DAY_MS - 1).div_euclid(DAY_MS),
                }),
                Rule::InspectionOverdue => json!({
                    "next_inspection": f.next_inspection_date,
                    "days_overdue": (now - f.next_inspection).div_euclid(DAY_MS),
                }),
                _ => json!({
                    "last_maintenance": f.last_maintenance.as_ref().map(|(_, d)| d),
                    "days_since": f.last_maintenance.as_ref().map(|(t, _)| (now - t).div_euclid(DAY_MS)),
                    "max_days": p.days,
                }),
            };
            // No device: the registry raised it.
            changes.push(book.raise(eq, rule, p.severity, None, now, details, Vec::new()));
        }
        if let Some(eq) = fresh
            && !changes.is_empty()
        {
            equipment.insert(id.clone(), eq);
        }
        out.extend(changes);
    }
    // Equipment gone from the registry (or moved to another shard): its
    // registry-time alarms end.
    for (id, eq) in equipment.iter_mut() {
        if !seen.contains(id) {
            for rule in Rule::REGISTRY {
                book.clear(eq, rule, now, &mut out);
            }
        }
    }
    schedule.quiet.retain(|(id, _)| seen.contains(id));
    out
}
