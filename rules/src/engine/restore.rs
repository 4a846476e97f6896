//! Rebuilding alarm state after a restart from stored alarm versions.

use std::collections::HashMap;

use serde_json::Value;
use tracing::info;
use vigil_model::{Alarm, AlarmId, Binding, DeviceId, EpochMs, Severity};

use super::RuleEngine;
use super::state::{ActiveCode, EquipmentState, Occurrence};
use crate::catalogue::{Key, Rule};

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
        let Some(rule) = Rule::parse(latest.rule.as_str()) else {
            defined += usize::from(restore_defined(engine, latest));
            continue;
        };
        let eq = engine
            .equipment
            .entry(latest.equipment_id.clone())
            .or_insert_with(|| {
                EquipmentState::new(binding_of(latest), engine.resolver.defaults.clone())
            });
        engine.resolver.refresh(eq);
        if rule.counts_as_fault() {
            let cutoff = now - eq.params.get(Rule::FrequentFaults).window_ms;
            let before = eq.history.len();
            for (at, severity) in occurrences(&versions) {
                if severity >= Severity::Major && at > cutoff {
                    eq.history.push(Occurrence { at, rule });
                }
            }
            if eq.history.len() > before {
                eq.ff_device = latest.device_id.clone().or(eq.ff_device.take());
            }
        }
        if !latest.state.is_open() {
            engine.book.cleared.insert(latest.alarm_id.clone());
            cleared += 1;
            continue;
        }
        match rule {
            Rule::ControllerFault => {
                eq.codes.clear();
                for c in latest
                    .details
                    .get("codes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(code) = c.get("code").and_then(Value::as_str) else {
                        continue;
                    };
                    let severity = c
                        .get("severity")
                        .and_then(Value::as_str)
                        .and_then(Severity::parse)
                        .unwrap_or(latest.severity);
                    let since = c
                        .get("since")
                        .and_then(Value::as_i64)
                        .unwrap_or(latest.raised_at);
                    let text = c.get("text").and_then(Value::as_str).map(str::to_owned);
                    eq.codes.insert(
                        code.to_owned(),
                        ActiveCode {
                            text,
                            severity,
                            since,
                        },
                    );
                }
            }
            Rule::DeviceOffline => {
                eq.offline.clear();
                let listed = latest
                    .details
                    .get("devices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str);
                eq.offline
                    .extend(listed.filter_map(|d| DeviceId::new(d).ok()));
                eq.offline.extend(latest.device_id.clone());
            }
            _ if rule.is_video() => super::video::restored(eq, rule, latest),
            // Raised for a silence that goes on: not again until a record.
            Rule::FillingRecordsMissing => eq.filling.missing_fired = true,
            _ if rule.is_filling() || rule == Rule::CertificateExpired => {
                super::filling::restored(eq, rule, latest)
            }
            _ => {}
        }
        engine.book.reopen(eq, rule.key(), latest);
        open += 1;
    }
    info!(open, cleared, defined, "Rule engine restored its alarms.");
}

/// The latest version of an alarm of a rule the configuration defines (or
/// defined: a rule dropped while the engine was down is an empty slot, and
/// its open alarm clears at the next tick). Returns whether it was open.
fn restore_defined(engine: &mut RuleEngine, latest: &Alarm) -> bool {
    if !latest.state.is_open() {
        engine.book.cleared.insert(latest.alarm_id.clone());
        return false;
    }
    let known = engine.book.rule_ids[Rule::COUNT..].contains(&latest.rule);
    if !known {
        info!(rule = %latest.rule, alarm = %latest.alarm_id, "Open alarm of a rule no longer configured; it clears at the next tick.");
        engine.retick_all = true;
    }
    let n = engine.defined_slot(&latest.rule);
    let key = Key::defined(n);
    let eq = engine
        .equipment
        .entry(latest.equipment_id.clone())
        .or_insert_with(|| {
            EquipmentState::new(binding_of(latest), engine.resolver.defaults.clone())
        });
    engine.resolver.refresh(eq);
    engine.book.reopen(eq, key, latest);
    // Event rules clear a quiet period after the last matching event.
    let event_rule = engine.resolver.defined[n]
        .as_ref()
        .is_some_and(|d| !d.source.is_state());
    if event_rule && let Some(device) = &latest.device_id {
        if eq.defined_last.len() <= n {
            eq.defined_last.resize(n + 1, None);
        }
        eq.defined_last[n] = Some((latest.updated_at, device.clone()));
    }
    true
}

const MAX_REPEATS_PER_VERSION: usize = 1_000;

/// When each raise and repeat of one alarm happened, with the severity it
/// had. Versions given carry exact times; repeats whose own version is
/// missing are placed at the next known `updated_at` (never earlier than
/// they happened, so the frequent-faults window errs on the side of alarming).
fn occurrences(versions: &[Alarm]) -> Vec<(EpochMs, Severity)> {
    let mut out = Vec::new();
    let mut seen = 0u32;
    for v in versions {
        if v.count <= seen {
            continue;
        }
        if seen == 0 {
            out.push((v.raised_at, v.severity));
            seen = 1;
        }
        // Bounded: a corrupt count must not allocate without limit, and no
        // window needs more occurrences than this.
        let repeats = ((v.count - seen) as usize).min(MAX_REPEATS_PER_VERSION);
        out.extend(std::iter::repeat_n((v.updated_at, v.severity), repeats));
        seen = v.count;
    }
    out
}

fn binding_of(a: &Alarm) -> Binding {
    Binding {
        equipment_id: a.equipment_id.clone(),
        category: a.category.clone(),
        owner_id: a.owner_id.clone(),
        region: a.region,
    }
}
