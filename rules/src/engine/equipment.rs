//! Rules kept per equipment rather than per sample: the controller's own
//! fault codes, repeat faults over 24 h, and device liveness.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use vigil_model::reading::ControllerEvent;
use vigil_model::{Alarm, DeviceContext, DeviceId, EpochMs, Severity};

use super::state::{ActiveCode, Book, DeviceState, EquipmentState, Step};
use crate::catalogue::Rule;

/// Reporting interval assumed when the registry gives none (registry.md's default).
const DEFAULT_REPORT_INTERVAL_S: u32 = 30;

/// An `event` payload at device time `t`: a code becoming active raises
/// (or repeats) the one controller-fault alarm; the last code going
/// inactive clears it after `clear_s` (immediately by default).
pub(crate) fn on_event(
    book: &mut Book,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    ev: &ControllerEvent,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::ControllerFault;
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        disable_controller(book, eq, t, out);
        return;
    }
    if ev.active {
        if eq.codes.contains_key(&ev.code) {
            // Controllers repeat an active code; it is one occurrence.
            return;
        }
        let severity = p.code_severity(&ev.code);
        eq.codes.insert(
            ev.code.clone(),
            ActiveCode {
                text: ev.text.clone(),
                severity,
                since: t,
            },
        );
        eq.codes_clear_since = None;
        let details = codes_details(eq);
        book.fire(
            eq,
            rule,
            codes_severity(eq, severity),
            dev_id,
            t,
            details,
            false,
            out,
        );
        eq.record(rule, severity, t, dev_id);
    } else {
        let removed = eq.codes.remove(&ev.code).is_some();
        if eq.slot(rule).is_none() {
            return;
        }
        if !eq.codes.is_empty() {
            if removed {
                let details = codes_details(eq);
                book.update(
                    eq,
                    rule,
                    codes_severity(eq, Severity::Warning),
                    t,
                    details,
                    out,
                );
            }
        } else if p.clear_ms == 0 {
            book.clear(eq, rule, t, out);
        } else if eq.codes_clear_since.is_none() {
            eq.codes_clear_since = Some(t);
        }
    }
}

/// Clears the controller-fault alarm once no code has been active for its
/// clear period (only when `clear_s` > 0), or when the rule is disabled.
pub(crate) fn controller_timer(
    book: &mut Book,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::ControllerFault;
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        disable_controller(book, eq, t, out);
        return;
    }
    if eq.slot(rule).is_none() {
        eq.codes_clear_since = None;
        return;
    }
    if let Some(since) = eq.codes_clear_since
        && eq.codes.is_empty()
        && t.saturating_sub(since) >= p.clear_ms
    {
        eq.codes_clear_since = None;
        book.clear(eq, rule, since + p.clear_ms, out);
    }
}

fn disable_controller(book: &mut Book, eq: &mut EquipmentState, t: EpochMs, out: &mut Vec<Alarm>) {
    eq.codes.clear();
    eq.codes_clear_since = None;
    book.clear(eq, Rule::ControllerFault, t, out);
}

fn codes_severity(eq: &EquipmentState, at_least: Severity) -> Severity {
    eq.codes
        .values()
        .map(|c| c.severity)
        .fold(at_least, Severity::max)
}

fn codes_details(eq: &EquipmentState) -> Value {
    let codes: Vec<Value> = eq
        .codes
        .iter()
        .map(|(code, c)| {
            let mut m = Map::new();
            m.insert("code".into(), json!(code));
            if let Some(text) = &c.text {
                m.insert("text".into(), json!(text));
            }
            m.insert("severity".into(), json!(c.severity.as_str()));
            m.insert("since".into(), json!(c.since));
            Value::Object(m)
        })
        .collect();
    json!({ "codes": codes })
}

/// `elevator.frequent_faults` at the equipment's device time `t`: the
/// number of critical/major occurrences in the trailing window.
pub(crate) fn frequent_faults(
    book: &mut Book,
    eq: &mut EquipmentState,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::FrequentFaults;
    if eq.history.is_empty() && !eq.ff.held && eq.slot(rule).is_none() {
        return;
    }
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if eq.ff.held && eq.slot(rule).is_none() {
        // Resolved by a person.
        eq.ff = Default::default();
    }
    if !p.enabled {
        eq.ff = Default::default();
        book.clear(eq, rule, t, out);
        return;
    }
    let cutoff = t - p.window_ms;
    eq.history.retain(|o| o.at > cutoff);
    let run_start = eq.ff.true_since.unwrap_or(t);
    let due =
        (!eq.ff_quiet && eq.history.len() >= p.count as usize).then_some(run_start + p.for_ms);
    if !eq.ff.held && eq.slot(rule).is_some() {
        eq.ff.adopt(due.is_some(), t);
    }
    match eq.ff.step(due, t, p.clear_ms) {
        Step::Fire(at) => {
            let mut by_rule = Map::new();
            for o in &eq.history {
                let n = by_rule
                    .get(o.rule.id())
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                by_rule.insert(o.rule.id().to_owned(), json!(n + 1));
            }
            let details = json!({
                "occurrences": eq.history.len(),
                "threshold": p.count,
                "window_h": p.window_ms as f64 / 3_600_000.0,
                "rules": by_rule,
            });
            let Some(device) = eq.ff_device.clone() else {
                return;
            };
            book.fire(eq, rule, p.severity, &device, at, details, false, out);
        }
        Step::Release(at) => book.clear(eq, rule, at, out),
        Step::Idle => {}
    }
}

/// `tick`: a device silent for `intervals` × its reporting interval (wall
/// time) goes offline. `device_now` is its advanced clock.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_offline(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    silent_ms: i64,
    device_now: EpochMs,
    local_offset_ms: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::DeviceOffline;
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        eq.offline.clear();
        book.clear(eq, rule, device_now, out);
        return;
    }
    if dev.offline {
        return;
    }
    let interval_s = if dev.report_interval_s == 0 {
        DEFAULT_REPORT_INTERVAL_S
    } else {
        dev.report_interval_s
    };
    let threshold = (p.intervals * f64::from(interval_s) * 1000.0).round() as i64;
    if silent_ms < threshold {
        return;
    }
    dev.offline = true;
    // rules.md: minor, but major for a ride in its operating hours.
    let severity = match p.operating_severity {
        Some(s) if in_operating_hours(eq.operating_hours, device_now, local_offset_ms) => s,
        _ => p.severity,
    };
    eq.offline.insert(dev_id.clone());
    let details = json!({
        "devices": eq.offline.iter().map(DeviceId::as_str).collect::<Vec<_>>(),
        "silent_s": silent_ms / 1000,
        "last_ts": dev.last_ts,
        "report_interval_s": interval_s,
    });
    book.fire(
        eq,
        rule,
        severity,
        dev_id,
        dev.last_ts + threshold,
        details,
        false,
        out,
    );
}

/// Any message from a device: it is online. The offline alarm clears when
/// no device of the equipment is left offline.
pub(crate) fn back_online(
    book: &mut Book,
    dev_id: &DeviceId,
    dev: &mut DeviceState,
    eq: &mut EquipmentState,
    ts: EpochMs,
    out: &mut Vec<Alarm>,
) {
    dev.offline = false;
    let rule = Rule::DeviceOffline;
    let listed = eq.offline.remove(dev_id);
    if eq.slot(rule).is_none() {
        return;
    }
    if eq.offline.is_empty() {
        // Also clears a restored alarm whose device list was unreadable.
        book.clear(eq, rule, ts, out);
    } else if listed {
        let severity = eq.slot(rule).map_or(Severity::Minor, |s| s.alarm.severity);
        let mut details = eq
            .slot(rule)
            .map_or(Value::Null, |s| s.alarm.details.clone());
        if let Value::Object(m) = &mut details {
            m.insert(
                "devices".into(),
                json!(eq.offline.iter().map(DeviceId::as_str).collect::<Vec<_>>()),
            );
        }
        book.update(eq, rule, severity, ts, details, out);
    }
}

/// Reads a ride's `operating_hours` (`"HH:MM-HH:MM"`, may wrap midnight)
/// from the registry parameters its devices carry.
pub(crate) fn operating_hours(eq: &mut EquipmentState, ctx: &DeviceContext) {
    eq.operating_hours = ctx
        .params
        .get("operating_hours")
        .and_then(serde_json::Value::as_str)
        .and_then(super::filling::parse_hours);
}

/// Whether `t` falls in the local-time span `hours` (none given: always).
pub(crate) fn in_operating_hours(
    hours: Option<(i64, i64)>,
    t: EpochMs,
    offset_ms: EpochMs,
) -> bool {
    let Some((open, close)) = hours else {
        return true;
    };
    let minute = (t + offset_ms).rem_euclid(86_400_000) / 60_000;
    if open < close {
        (open..close).contains(&minute)
    } else {
        minute >= open || minute < close % 1440
    }
}
