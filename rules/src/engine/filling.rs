//! Gas-cylinder filling rules, one record at a time, and
//! `registry.certificate_expired` over the operators those records used.
//!
//! The rules see only what the caller hands them with the record
//! ([`FillingFacts`], looked up in the registry): no lookups here.
//!
//! Lifecycle of a per-record rule: a record that breaks it raises the
//! station's alarm, or repeats the open one (count + 1, details of the
//! latest record); the alarm clears `clear_s` (default 1 h) after the last
//! breaking record, on the clock of the scale that sent it. Good records
//! in between neither clear nor extend it: one bad fill among good ones is
//! still one to look at.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use vigil_model::reading::FillingRecord;
use vigil_model::{Alarm, DeviceContext, DeviceId, EpochMs};

use super::state::{Book, EquipmentState, quiet_period};
use crate::catalogue::Rule;

const DAY_MS: EpochMs = 86_400_000;

/// Absolute zero and 20 °C in kelvin: the ideal-gas correction.
const KELVIN_0C: f64 = 273.15;
const KELVIN_20C: f64 = 293.15;

/// Maximum LPG fill mass by cylinder model (GB 5842), for a cylinder the
/// registry gives no `max_fill_kg` for.
const LPG_MAX_FILL_KG: &[(&str, f64)] = &[("YSP12", 5.0), ("YSP35.5", 14.9), ("YSP118", 49.5)];

/// What the registry says of a filling record's cylinder and operator.
/// `None` means the registry does not know it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FillingFacts {
    pub cylinder: Option<CylinderFacts>,
    pub operator: Option<OperatorFacts>,
}

/// A registered cylinder. Dates are the epoch ms of the start of that day
/// in the registry's local time, with the day as written (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq)]
pub struct CylinderFacts {
    /// The station it is registered to.
    pub station_id: String,
    pub model: String,
    /// `None`: the LPG model table decides (YSP12, YSP35.5, YSP118).
    pub max_fill_kg: Option<f64>,
    pub working_pressure_mpa: f64,
    pub next_inspection: EpochMs,
    pub next_inspection_date: String,
    /// Status `scrapped`.
    pub scrapped: bool,
    /// The day its design life ends (made_on + design_life_years): from
    /// then on it counts as scrapped.
    pub end_of_life: EpochMs,
    pub end_of_life_date: String,
}

/// A registered person's certificates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorFacts {
    pub certificates: Vec<CertificateFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertificateFacts {
    /// e.g. `filling`; only `filling` certificates count here.
    pub kind: String,
    pub number: String,
    /// Start of the last day it is valid.
    pub expires: EpochMs,
    pub expires_date: String,
}

impl CertificateFacts {
    fn valid_at(&self, t: EpochMs) -> bool {
        t < self.expires.saturating_add(DAY_MS)
    }
}

/// Per station: which device's record last broke each rule, and the
/// operators whose valid certificates its records used.
#[derive(Debug, Default)]
pub(crate) struct FillingEquipment {
    /// Latest breaking record per rule: its device time and device.
    pub last: [Option<(EpochMs, DeviceId)>; Rule::FILLING.len()],
    /// By operator id: the latest use of a valid filling certificate.
    pub used: BTreeMap<String, Use>,
    /// Engine time of the latest record (or of the first message heard).
    pub quiet_since: Option<EpochMs>,
    /// `filling.records_missing` fired for this silence.
    pub missing_fired: bool,
    /// Working hours as local minutes since midnight `(open, close)`;
    /// `None`: always open.
    pub hours: Option<(i64, i64)>,
}

/// The category filling scales are bound to (their station).
pub(crate) const STATION: &str = "filling_station";

/// A message of a station's device at engine time `now`: the station's
/// working hours, and the start of its silence if nothing started it yet.
pub(crate) fn heard(eq: &mut EquipmentState, ctx: &DeviceContext, now: EpochMs) {
    if eq.binding.category != STATION {
        return;
    }
    eq.filling.hours = ctx
        .params
        .get("working_hours")
        .and_then(Value::as_str)
        .and_then(parse_hours);
    eq.filling.quiet_since.get_or_insert(now);
}

/// `"HH:MM-HH:MM"` (may wrap midnight) as minutes; anything else, or a
/// zero-length span, is taken as always open.
pub(crate) fn parse_hours(text: &str) -> Option<(i64, i64)> {
    let minutes = |hm: &str| -> Option<i64> {
        let (h, m) = hm.trim().split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
    };
    let (open, close) = text.split_once('-')?;
    let (open, close) = (minutes(open)?, minutes(close)?);
    (open % 1440 != close % 1440).then_some((open, close))
}

/// Milliseconds of working hours between `from` and `to` (engine time),
/// with local time `offset_ms` ahead of UTC. Looks back at most 31 days.
pub(crate) fn working_ms(
    from: EpochMs,
    to: EpochMs,
    hours: Option<(i64, i64)>,
    offset_ms: i64,
) -> i64 {
    let from = from.max(to.saturating_sub(31 * DAY_MS));
    if to <= from {
        return 0;
    }
    let Some((open, close)) = hours else {
        return to - from;
    };
    let (open, mut close) = (open * 60_000, close * 60_000);
    if close <= open {
        close += DAY_MS;
    }
    let mut total = 0;
    // From the local day before `from` (a span wrapping midnight) to `to`'s.
    let mut day = (from + offset_ms).div_euclid(DAY_MS) - 1;
    let last = (to + offset_ms).div_euclid(DAY_MS);
    while day <= last {
        let midnight = day * DAY_MS - offset_ms;
        let (a, b) = ((midnight + open).max(from), (midnight + close).min(to));
        total += (b - a).max(0);
        day += 1;
    }
    total
}

/// `filling.records_missing` for `dev_id`'s station at engine time `now`:
/// the device is online (`online`) and `for_s` of working hours passed
/// since the station's latest record. One alarm per silence; the next
/// record clears it.
pub(crate) fn records_missing(
    book: &mut Book,
    dev_id: &DeviceId,
    online: bool,
    eq: &mut EquipmentState,
    now: EpochMs,
    offset_ms: i64,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::FillingRecordsMissing;
    let Some(since) = eq.filling.quiet_since else {
        return;
    };
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    if !p.enabled {
        book.clear(eq, rule, now, out);
        return;
    }
    if !online || eq.filling.missing_fired {
        return;
    }
    let silent = working_ms(since, now, eq.filling.hours, offset_ms);
    if silent < p.for_ms {
        return;
    }
    eq.filling.missing_fired = true;
    let details = json!({
        "since": since,
        "working_hours_silent_s": silent / 1000,
        "for_s": p.for_ms / 1000,
        "working_hours": eq.filling.hours.map(|(o, c)| format!(
            "{:02}:{:02}-{:02}:{:02}",
            o / 60,
            o % 60,
            c / 60,
            c % 60
        )),
    });
    book.fire(eq, rule, p.severity, dev_id, now, details, false, out);
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Use {
    /// Engine (wall) time of the record's receipt.
    pub at: EpochMs,
    pub device: DeviceId,
    pub certificate: String,
    pub expires: EpochMs,
    pub expires_date: String,
}

fn slot_of(rule: Rule) -> usize {
    rule.index() - Rule::FILLING[0].index()
}

/// One record at its device time `t`, received at engine time `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_record(
    book: &mut Book,
    dev_id: &DeviceId,
    eq: &mut EquipmentState,
    rec: &FillingRecord,
    facts: &FillingFacts,
    t: EpochMs,
    now: EpochMs,
    out: &mut Vec<Alarm>,
) {
    timer(book, eq, dev_id, t, out);
    eq.filling.quiet_since = Some(now);
    eq.filling.missing_fired = false;
    book.clear(eq, Rule::FillingRecordsMissing, now, out);
    let station = eq.binding.equipment_id.as_str().to_owned();
    let valid_cert = facts.operator.as_ref().and_then(|op| {
        op.certificates
            .iter()
            .filter(|c| c.kind == "filling" && c.valid_at(t))
            .max_by_key(|c| c.expires)
    });
    if let Some(c) = valid_cert {
        eq.filling.used.insert(
            rec.operator_id.clone(),
            Use {
                at: now,
                device: dev_id.clone(),
                certificate: c.number.clone(),
                expires: c.expires,
                expires_date: c.expires_date.clone(),
            },
        );
    }
    let params = Arc::clone(&eq.params);
    for rule in Rule::FILLING {
        let p = params.get(rule);
        if !p.enabled {
            continue;
        }
        let Some(extra) = breaks(rule, rec, facts, valid_cert.is_some(), &station, t) else {
            continue;
        };
        let mut details = record_details(rec);
        details.extend(extra);
        let last = &mut eq.filling.last[slot_of(rule)];
        if last.as_ref().is_none_or(|(at, _)| t >= *at) {
            *last = Some((t, dev_id.clone()));
        }
        book.fire(
            eq,
            rule,
            p.severity,
            dev_id,
            t,
            Value::Object(details),
            false,
            out,
        );
    }
}

/// What breaks `rule` in this record (the details to add), or `None`.
fn breaks(
    rule: Rule,
    rec: &FillingRecord,
    facts: &FillingFacts,
    certified: bool,
    station: &str,
    t: EpochMs,
) -> Option<Map<String, Value>> {
    let mut d = Map::new();
    if rule == Rule::FillingOperatorUncertified {
        if certified {
            return None;
        }
        let reason = match &facts.operator {
            None => "unknown operator",
            Some(op) if op.certificates.iter().any(|c| c.kind == "filling") => {
                "filling certificate expired"
            }
            Some(_) => "no filling certificate",
        };
        d.insert("reason".into(), json!(reason));
        if let Some(latest) = facts.operator.as_ref().and_then(|op| {
            op.certificates
                .iter()
                .filter(|c| c.kind == "filling")
                .max_by_key(|c| c.expires)
        }) {
            d.insert("certificate".into(), json!(latest.number));
            d.insert("expires".into(), json!(latest.expires_date));
        }
        return Some(d);
    }
    let Some(cyl) = &facts.cylinder else {
        // Nothing else is known of an unregistered cylinder.
        return (rule == Rule::FillingCylinderUnregistered).then_some(d);
    };
    match rule {
        Rule::FillingCylinderOverdue if t >= cyl.next_inspection.saturating_add(DAY_MS) => {
            d.insert("next_inspection".into(), json!(cyl.next_inspection_date));
            d.insert(
                "days_overdue".into(),
                json!((t - cyl.next_inspection).div_euclid(DAY_MS)),
            );
        }
        Rule::FillingCylinderScrapped if cyl.scrapped || t >= cyl.end_of_life => {
            let reason = if cyl.scrapped {
                "scrapped"
            } else {
                "past design life"
            };
            d.insert("reason".into(), json!(reason));
            d.insert("end_of_life".into(), json!(cyl.end_of_life_date));
        }
        Rule::FillingForeignCylinder if cyl.station_id != station => {
            d.insert("cylinder_station_id".into(), json!(cyl.station_id));
        }
        Rule::FillingOverfill => {
            let limit = cyl.max_fill_kg.or_else(|| {
                LPG_MAX_FILL_KG
                    .iter()
                    .find(|(m, _)| *m == cyl.model)
                    .map(|(_, kg)| *kg)
            })?;
            // Scales weigh to the gram; f32 noise must not tip the balance.
            let net = round3(f64::from(rec.net_kg));
            if net <= limit {
                return None;
            }
            d.insert("model".into(), json!(cyl.model));
            d.insert("max_fill_kg".into(), json!(limit));
            d.insert("over_kg".into(), json!(round3(net - limit)));
        }
        Rule::FillingOverpressure => {
            let p = f64::from(rec.pressure_mpa?);
            let p20 = round3(at_20c(p, rec.temp_c.map(f64::from)));
            if p20 <= cyl.working_pressure_mpa {
                return None;
            }
            d.insert("pressure_20c_mpa".into(), json!(p20));
            d.insert(
                "working_pressure_mpa".into(),
                json!(cyl.working_pressure_mpa),
            );
        }
        _ => return None,
    }
    Some(d)
}

/// The pressure the gas settles to at 20 °C, as an ideal gas at constant
/// volume: p20 = p · 293.15 / (273.15 + temp_c). Without a temperature
/// (or an impossible one) the reading is taken as it is.
pub(crate) fn at_20c(p: f64, temp_c: Option<f64>) -> f64 {
    match temp_c {
        Some(c) if c.is_finite() && c > -KELVIN_0C => p * KELVIN_20C / (KELVIN_0C + c),
        _ => p,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn record_details(rec: &FillingRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("cylinder_code".into(), json!(rec.cylinder_code));
    m.insert("operator_id".into(), json!(rec.operator_id));
    m.insert("medium".into(), json!(rec.medium));
    m.insert("net_kg".into(), json!(round3(f64::from(rec.net_kg))));
    if let Some(p) = rec.pressure_mpa {
        m.insert("pressure_mpa".into(), json!(round3(f64::from(p))));
    }
    if let Some(c) = rec.temp_c {
        m.insert("temp_c".into(), json!(round3(f64::from(c))));
    }
    m.insert("started_ms".into(), json!(rec.started_ms));
    m
}

/// Clears the filling alarms whose quiet period has ended on `dev_id`'s
/// clock `t`, and every filling alarm of a disabled rule.
pub(crate) fn timer(
    book: &mut Book,
    eq: &mut EquipmentState,
    dev_id: &DeviceId,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    for (k, rule) in Rule::FILLING.into_iter().enumerate() {
        let last = eq.filling.last[k].take();
        eq.filling.last[k] = quiet_period(book, eq, rule, last, dev_id, t, out);
    }
}

/// `registry.certificate_expired` at wall time `now`: the operators used
/// within `window_h` whose certificate (valid when used) has expired since.
/// One alarm per station lists them all.
pub(crate) fn certificates(
    book: &mut Book,
    eq: &mut EquipmentState,
    now: EpochMs,
    out: &mut Vec<Alarm>,
) {
    let rule = Rule::CertificateExpired;
    if eq.filling.used.is_empty() && eq.slot(rule).is_none() {
        return;
    }
    let params = Arc::clone(&eq.params);
    let p = params.get(rule);
    eq.filling
        .used
        .retain(|_, u| now.saturating_sub(u.at) <= p.window_ms);
    let expired: Vec<(String, Use)> = eq
        .filling
        .used
        .iter()
        .filter(|(_, u)| now >= u.expires.saturating_add(DAY_MS))
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect();
    if !p.enabled || expired.is_empty() {
        book.clear(eq, rule, now, out);
        return;
    }
    let operators: Vec<Value> = expired
        .iter()
        .map(|(id, u)| {
            json!({
                "operator_id": id,
                "certificate": u.certificate,
                "expires": u.expires_date,
                "expires_ms": u.expires,
                "last_used": u.at,
                "device_id": u.device.as_str(),
            })
        })
        .collect();
    let details = json!({ "operators": operators });
    let device = expired[0].1.device.clone();
    match eq.slot(rule) {
        None => book.fire(eq, rule, p.severity, &device, now, details, false, out),
        Some(slot) if slot.alarm.details.get("operators") != details.get("operators") => {
            book.update(eq, rule, p.severity, now, details, out)
        }
        Some(_) => {}
    }
}

/// A restored open alarm: its latest version is the latest record (or
/// the operators) we know.
pub(crate) fn restored(eq: &mut EquipmentState, rule: Rule, alarm: &Alarm) {
    if rule == Rule::CertificateExpired {
        for op in alarm
            .details
            .get("operators")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = |k: &str| op.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(id), Some(device), Some(at), Some(expires)) = (
                text("operator_id"),
                text("device_id").and_then(|d| DeviceId::new(d).ok()),
                op.get("last_used").and_then(Value::as_i64),
                op.get("expires_ms").and_then(Value::as_i64),
            ) else {
                continue;
            };
            eq.filling.used.insert(
                id,
                Use {
                    at,
                    device,
                    certificate: text("certificate").unwrap_or_default(),
                    expires,
                    expires_date: text("expires").unwrap_or_default(),
                },
            );
        }
    } else if let Some(device) = &alarm.device_id {
        eq.filling.last[slot_of(rule)] = Some((alarm.updated_at, device.clone()));
    }
}

/// Resolved by a person: the next breaking record raises a new alarm; the
/// expired certificates listed are taken as handled.
pub(crate) fn resolved(eq: &mut EquipmentState, rule: Rule, alarm: &Alarm) {
    if rule == Rule::CertificateExpired {
        for op in alarm
            .details
            .get("operators")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = op.get("operator_id").and_then(Value::as_str) {
                eq.filling.used.remove(id);
            }
        }
    } else {
        eq.filling.last[slot_of(rule)] = None;
    }
}

/// `dev_id`'s clock stepped back to `t`: its quiet periods run from `t`.
pub(crate) fn rebase(eq: &mut EquipmentState, dev_id: &DeviceId, t: EpochMs) {
    for (at, by) in eq.filling.last.iter_mut().flatten() {
        if by == dev_id {
            *at = (*at).min(t);
        }
    }
}

/// `dev_id` is bound elsewhere: the filling alarms its records were
/// keeping open on this station clear now.
pub(crate) fn release_device(
    book: &mut Book,
    eq: &mut EquipmentState,
    dev_id: &DeviceId,
    t: EpochMs,
    out: &mut Vec<Alarm>,
) {
    for (k, rule) in Rule::FILLING.into_iter().enumerate() {
        if eq.filling.last[k]
            .as_ref()
            .is_some_and(|(_, by)| by == dev_id)
        {
            eq.filling.last[k] = None;
            book.clear(eq, rule, t, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_hours_count_only_open_time() {
        const H: i64 = 3_600_000;
        let cst = 8 * H;
        // 2024-11-23 00:00 CST.
        let midnight = 1_732_291_200_000;
        let day = Some((7 * 60, 19 * 60));
        assert_eq!(parse_hours("07:00-19:00"), day);
        assert_eq!(parse_hours("22:00-06:00"), Some((22 * 60, 6 * 60)));
        assert_eq!(parse_hours("00:00-24:00"), None);
        assert_eq!(parse_hours("7-19"), None);
        // 18:00 to 10:00 the next day: 1 h + 3 h.
        let (a, b) = (midnight + 18 * H, midnight + 34 * H);
        assert_eq!(working_ms(a, b, day, cst), 4 * H);
        assert_eq!(working_ms(a, b, None, cst), 16 * H);
        // A night shift: 20:00 to 04:00 of 22:00-06:00 is 6 h.
        let night = Some((22 * 60, 6 * 60));
        assert_eq!(
            working_ms(midnight + 20 * H, midnight + 28 * H, night, cst),
            6 * H
        );
        // Closed the whole time.
        assert_eq!(
            working_ms(midnight + 20 * H, midnight + 30 * H, day, cst),
            0
        );
    }

    #[test]
    fn pressure_settles_to_20c_as_an_ideal_gas() {
        assert!((at_20c(15.0, Some(20.0)) - 15.0).abs() < 1e-12);
        assert!((at_20c(15.0, Some(40.0)) - 15.0 * 293.15 / 313.15).abs() < 1e-12);
        assert!(at_20c(15.0, Some(0.0)) > 15.0);
        assert_eq!(at_20c(15.0, None), 15.0);
        assert_eq!(at_20c(15.0, Some(-300.0)), 15.0);
    }
}
