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

use std::collections::HashSet;

use serde_json::json;
use vigil_model::{Alarm, Binding, EpochMs, EquipmentId, Severity};

use super::{Cx, Family, Local, rules};
use crate::catalogue::{Clear, Decl, Kind, Lit, Ms, Param, Whole};

rules! {
    pub(crate) enum Rule {
        InspectionDue = Decl {
            id: "registry.inspection_due",
            severity: Severity::Warning,
            description: "Equipment in use whose next periodic inspection is within `days`, the inspection day included (registry, on a schedule).",
            basis: "Safety Law Art. 40: request inspection 1 month before",
            clear_s: Clear::None,
            params: &[Param::new(
                "days",
                Kind::Whole,
                Lit::Whole(30),
                "days before the inspection date the warning starts",
            )],
            ..Decl::BASE
        },
        InspectionOverdue = Decl {
            id: "registry.inspection_overdue",
            description: "Next periodic inspection date passed while the equipment is in use and its devices were heard within flowing_h.",
            basis: "Safety Law Art. 40: uninspected equipment must stop",
            clear_s: Clear::None,
            params: &[Param::new(
                "flowing_h",
                Kind::Hours,
                Lit::Num(24.0),
                "hours within which a device of the equipment must have been heard (in use)",
            )],
            ..Decl::BASE
        },
        MaintenanceOverdue = Decl {
            id: "registry.maintenance_overdue",
            severity: Severity::Major,
            description: "More than `days` whole days since the last maintenance (or never maintained) of an elevator or escalator in use (registry).",
            basis: "Regulation Art. 31; TSG T5002 half-monthly maintenance",
            clear_s: Clear::None,
            params: &[Param::new(
                "days",
                Kind::Whole,
                Lit::Whole(15),
                "days since the last maintenance that are tolerated",
            )],
            // Half-monthly maintenance is the elevator regulation's.
            categories: Some(&["elevator", "escalator"]),
            ..Decl::BASE
        },
    }
}

const DUE_DAYS: Whole = Whole::of(Rule::InspectionDue.decl(), "days");
const FLOWING: Ms = Ms::of(Rule::InspectionOverdue.decl(), "flowing_h");
const MAINTENANCE_DAYS: Whole = Whole::of(Rule::MaintenanceOverdue.decl(), "days");

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

/// The registry-time rules and the alarms people resolved while their
/// condition still held.
#[derive(Default)]
pub(crate) struct Registry {
    quiet: HashSet<(EquipmentId, Local)>,
}

impl Family for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    /// Every registry-time rule over one equipment's `facts` at wall time
    /// `cx.now`; without facts (gone from the registry or this shard) its
    /// alarms end.
    fn on_registry(
        &mut self,
        cx: &mut Cx<'_>,
        facts: Option<&RegistryFacts>,
        heard: Option<EpochMs>,
    ) {
        let id = cx.eq.binding.equipment_id.clone();
        let Some(f) = facts else {
            for &rule in Rule::ALL {
                cx.clear(rule, cx.now);
                self.quiet.remove(&(id.clone(), rule.into()));
            }
            return;
        };
        let now = cx.now;
        let tuning = cx.tuning();
        for &rule in Rule::ALL {
            let p = tuning.of(rule);
            let holds = p.enabled
                && f.in_use
                && match rule {
                    Rule::InspectionDue => {
                        now >= f.next_inspection - i64::from(p.whole(DUE_DAYS)) * DAY_MS
                            && now < f.next_inspection + DAY_MS
                    }
                    Rule::InspectionOverdue => {
                        now >= f.next_inspection + DAY_MS
                            && heard.is_some_and(|t| now.saturating_sub(t) <= p.ms(FLOWING))
                    }
                    Rule::MaintenanceOverdue => {
                        f.last_maintenance.as_ref().is_none_or(|(day, _)| {
                            now >= day + (i64::from(p.whole(MAINTENANCE_DAYS)) + 1) * DAY_MS
                        })
                    }
                };
            let key = (id.clone(), rule.into());
            if !holds {
                self.quiet.remove(&key);
                cx.clear(rule, now);
                continue;
            }
            if cx.is_open(rule) || self.quiet.contains(&key) {
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
                Rule::MaintenanceOverdue => json!({
                    "last_maintenance": f.last_maintenance.as_ref().map(|(_, d)| d),
                    "days_since": f.last_maintenance.as_ref().map(|(t, _)| (now - t).div_euclid(DAY_MS)),
                    "max_days": p.whole(MAINTENANCE_DAYS),
                }),
            };
            // No device: the registry raised it.
            cx.raise(rule, p.severity, now, details);
        }
    }

    fn on_resolve(&mut self, cx: &mut Cx<'_>, rule: Local, _alarm: &Alarm) {
        self.quiet
            .insert((cx.eq.binding.equipment_id.clone(), rule));
    }
}
