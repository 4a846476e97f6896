//! Gas-cylinder filling rules, one record at a time, and
//! `registry.certificate_expired` over the operators those records used
//! (and, from the registry's facts, over the workers of elevators'
//! maintenance records), and `filling.records_missing` over a station's
//! silence.
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

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use vigil_model::reading::FillingRecord;
use vigil_model::{Alarm, DeviceId, EpochMs, EquipmentId, Payload, Severity};

use super::RegistryFacts;
use super::elevator::round3;
use super::{
    Cx, DevCx, DevIx, DeviceTick, Family, Few, Hooks, Local, Msg, SmallMap, Streams, TickDue,
    parse_hours, rules,
};
use crate::catalogue::{Clear, Decl, Key, Kind, Lit, Ms, Param, Period};

/// What `clear_s` means for the per-record rules.
const AFTER_LAST: &str = "seconds without a record breaking the rule before the alarm clears (breaking records within it repeat the alarm)";
/// One bad record is one occurrence; a station that keeps breaking the
/// rule keeps one alarm open, counted, for an hour past its last bad record.
const HOUR: f64 = 3600.0;

rules! {
    /// The filling-station rules: seven per record, then two over time.
    pub(crate) enum Rule {
        CylinderUnregistered = Decl {
            id: "filling.cylinder_unregistered",
            description: "A filling record names a cylinder_code the registry does not know (nothing else is checked about that cylinder).",
            basis: "TSG 23 no-fill rule: unregistered cylinder",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        CylinderOverdue = Decl {
            id: "filling.cylinder_overdue",
            description: "A cylinder filled after its next periodic inspection day (filling on that day is allowed).",
            basis: "TSG 23 no-fill rule: inspection expired",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        CylinderScrapped = Decl {
            id: "filling.cylinder_scrapped",
            description: "A cylinder filled while scrapped, or from the day made_on + design_life_years (29 February → 28 February).",
            basis: "TSG 23 no-fill rule: scrapped or past design life",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        ForeignCylinder = Decl {
            id: "filling.foreign_cylinder",
            severity: Severity::Major,
            description: "A cylinder registered to another station filled here.",
            basis: "stations fill only their own cylinders",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        Overfill = Decl {
            id: "filling.overfill",
            description: "net_kg (to the gram) above the cylinder's max_fill_kg, or above the LPG model table (YSP12 5.0, YSP35.5 14.9, YSP118 49.5 kg) where that is lower; neither: not evaluated.",
            basis: "TSG 23 filling limits",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        Overpressure = Decl {
            id: "filling.overpressure",
            description: "pressure_mpa, corrected to 20 °C as an ideal gas, above the cylinder's working_pressure_mpa (no pressure_mpa: not evaluated).",
            basis: "TSG 23 compressed gases: settled pressure at 20 °C",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        OperatorUncertified = Decl {
            id: "filling.operator_uncertified",
            severity: Severity::Major,
            description: "The operator is unknown, or holds no `filling` certificate valid on the day of the record (valid through its expires day).",
            basis: "Safety Law Art. 14: certified operators",
            clear_s: Clear::own(HOUR, AFTER_LAST),
            ..Decl::BASE
        },
        CertificateExpired = Decl {
            id: "registry.certificate_expired",
            severity: Severity::Major,
            description: "A personnel certificate used within window_h has expired: a filling operator's `filling` certificate (valid when used) since, or the `elevator_maintenance` certificate of a worker on a maintenance record.",
            basis: "Safety Law Art. 14",
            clear_s: Clear::None,
            params: &[Param::new(
                "window_h",
                Kind::Hours,
                Lit::Num(24.0),
                "hours since an operator's last filling record (a worker's maintenance record) that count as use",
            )],
            ..Decl::BASE
        },
        RecordsMissing = Decl {
            id: "filling.records_missing",
            severity: Severity::Warning,
            description: "A station whose scale is online sends no filling record for for_s of its working hours.",
            basis: "filling records must be uploaded",
            for_s: Some(Period::of(4.0 * HOUR).meaning("seconds of the station's working hours without a filling record (wall time)")),
            clear_s: Clear::None,
            ..Decl::BASE
        },
    }
}

const WINDOW: Ms = Ms::of(Rule::CertificateExpired.decl(), "window_h");

/// The rules judged on each record, in the order of [`Rule`].
const PER_RECORD: [Rule; 7] = [
    Rule::CylinderUnregistered,
    Rule::CylinderOverdue,
    Rule::CylinderScrapped,
    Rule::ForeignCylinder,
    Rule::Overfill,
    Rule::Overpressure,
    Rule::OperatorUncertified,
];

const DAY_MS: EpochMs = 86_400_000;

/// Absolute zero and 20 °C in kelvin: the ideal-gas correction.
const KELVIN_0C: f64 = 273.15;
const KELVIN_20C: f64 = 293.15;

/// The category filling scales are bound to (their station).
const STATION: &str = "filling_station";

/// The certificate kind of an elevator maintenance worker (registry.md).
const MAINTENANCE_CERTIFICATE: &str = "elevator_maintenance";

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

/// The filling rules and what they keep of each station, and the
/// maintenance workers' expired certificates people have handled.
#[derive(Default)]
pub(crate) struct Filling {
    stations: Few<Station>,
    /// By equipment: `person_id done_at` of the uses a person resolved.
    workers_handled: HashMap<EquipmentId, HashSet<String>>,
}

/// Per station: which device's record last broke each rule, and the
/// operators whose valid certificates its records used.
#[derive(Debug, Default)]
struct Station {
    /// Latest breaking record per rule of [`PER_RECORD`]: its device time
    /// and device.
    last: [Option<(EpochMs, DeviceId)>; PER_RECORD.len()],
    /// By operator id: the latest use of a valid filling certificate.
    used: SmallMap<Use>,
    /// Engine time of the latest record (or of the first message heard).
    quiet_since: Option<EpochMs>,
    /// `filling.records_missing` fired for this silence.
    missing_fired: bool,
    /// Working hours as local minutes since midnight `(open, close)`;
    /// `None`: always open.
    hours: Option<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Use {
    /// Engine (wall) time of the record's receipt.
    at: EpochMs,
    device: DeviceId,
    certificate: String,
    expires: EpochMs,
    expires_date: String,
}

impl Family for Filling {
    fn name(&self) -> &'static str {
        "filling"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            heard: Streams::ALL,
            rebase: true,
            // Every message: its timer ends quiet periods on the device's clock.
            message: Streams::ALL,
            device_tick: true,
            equipment_tick: true,
            ..Hooks::NONE
        }
    }

    /// A message of a station's device: the station's working hours, and
    /// the start of its silence if nothing started it yet.
    fn on_heard(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if *cx.eq.binding.category != *STATION {
            return;
        }
        let station = self.stations.at(cx.eq.ix());
        station.hours = msg
            .ctx
            .params
            .get("working_hours")
            .and_then(Value::as_str)
            .and_then(parse_hours);
        station.quiet_since.get_or_insert(cx.now);
    }

    /// `dev_id`'s clock stepped back to `t`: its quiet periods run from `t`.
    fn on_rebase(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        if let Some(station) = self.stations.get_mut(cx.eq.ix()) {
            for (at, by) in station.last.iter_mut().flatten() {
                if *by == cx.dev.id {
                    *at = (*at).min(t);
                }
            }
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let t = cx.dev.last_ts;
        self.timer(cx, t);
        if let (Payload::Filling(record), Some(facts)) = (msg.payload, msg.facts) {
            self.on_record(cx, record, facts, msg.ts);
        }
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        self.timer(cx, tick.device_now);
        self.records_missing(cx);
    }

    /// Both act only at stations (equipment with state here), the timer
    /// also wherever a per-record alarm is open.
    fn tick_due(&self, base: usize, due: &mut TickDue) -> bool {
        due.equipment.union_with(self.stations.kept());
        for rule in PER_RECORD {
            due.open(base, rule);
        }
        true
    }

    fn on_equipment_tick(&mut self, cx: &mut Cx<'_>) {
        // Elevators' workers are judged on the registry's schedule instead.
        if *cx.eq.binding.category == *STATION {
            self.certificates(cx);
        }
    }

    /// `registry.certificate_expired` for the maintenance workers of a
    /// piece of equipment (elevators): a record done within `window_h` by a
    /// worker whose latest `elevator_maintenance` certificate has expired
    /// (whether before the work or since). One alarm per equipment lists
    /// them; it clears when none is left.
    fn on_registry(
        &mut self,
        cx: &mut Cx<'_>,
        facts: Option<&RegistryFacts>,
        _heard: Option<EpochMs>,
    ) {
        let rule = Rule::CertificateExpired;
        if *cx.eq.binding.category == *STATION {
            return;
        }
        let now = cx.now;
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        let handled = self.workers_handled.get(&cx.eq.binding.equipment_id);
        let mut workers: Vec<Value> = Vec::new();
        for m in facts
            .filter(|_| p.enabled)
            .map_or(&[][..], |f| &f.maintenance)
        {
            if now.saturating_sub(m.at) > p.ms(WINDOW) || now < m.at {
                continue;
            }
            let Some(cert) = m
                .certificates
                .iter()
                .filter(|c| c.kind == MAINTENANCE_CERTIFICATE)
                .max_by_key(|c| c.expires)
            else {
                continue;
            };
            if cert.valid_at(now) {
                continue;
            }
            let w = json!({
                "person_id": m.person_id,
                "certificate": cert.number,
                "expires": cert.expires_date,
                "done_at": m.done_at,
                "kind": m.kind,
                "last_used": m.at,
            });
            if handled.is_some_and(|h| h.contains(&worker_key(&w))) {
                continue;
            }
            workers.push(w);
        }
        if workers.is_empty() {
            if cx
                .slot(rule)
                .is_some_and(|s| s.details().get("workers").is_some())
            {
                cx.clear(rule, now);
            }
            if facts.is_none() {
                self.workers_handled.remove(&cx.eq.binding.equipment_id);
            }
            return;
        }
        let details = json!({ "workers": workers });
        match cx.slot(rule) {
            None => cx.raise(rule, p.severity, now, details),
            Some(slot) if slot.details().get("workers") != details.get("workers") => {
                cx.update(rule, p.severity, now, details)
            }
            Some(_) => {}
        }
    }

    /// Resolved by a person: the next breaking record raises a new alarm;
    /// the expired certificates listed are taken as handled.
    fn on_resolve(&mut self, cx: &mut Cx<'_>, rule: Local, alarm: &Alarm) {
        if rule == Rule::CertificateExpired.into() && alarm.details.get("workers").is_some() {
            let handled = self
                .workers_handled
                .entry(cx.eq.binding.equipment_id.clone())
                .or_default();
            for w in workers(alarm) {
                handled.insert(worker_key(w));
            }
            return;
        }
        let Some(station) = self.stations.get_mut(cx.eq.ix()) else {
            return;
        };
        if rule == Rule::CertificateExpired.into() {
            for op in operators(alarm) {
                if let Some(id) = op.get("operator_id").and_then(Value::as_str) {
                    station.used.remove(id);
                }
            }
        } else if let Some(last) = station.last.get_mut(rule.index()) {
            *last = None;
        }
    }

    /// `dev_id` is bound elsewhere: the filling alarms its records were
    /// keeping open on this station clear now.
    fn on_release(&mut self, cx: &mut Cx<'_>, _dev: DevIx, dev_id: &DeviceId, at: EpochMs) {
        let Some(station) = self.stations.get_mut(cx.eq.ix()) else {
            return;
        };
        cx.let_go(&PER_RECORD, &mut station.last, dev_id, at);
    }

    /// A restored open alarm: its latest version is the latest record (or
    /// the operators) we know.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        let Some(rule) = cx.local(key, Rule::ALL.len()) else {
            return;
        };
        let station = self.stations.at(cx.eq.ix());
        if rule == Rule::RecordsMissing.into() {
            // Raised for a silence that goes on: not again until a record.
            station.missing_fired = true;
        } else if rule == Rule::CertificateExpired.into() {
            for op in operators(latest) {
                let text = |k: &str| op.get(k).and_then(Value::as_str).map(str::to_owned);
                let (Some(id), Some(device), Some(at), Some(expires)) = (
                    text("operator_id"),
                    text("device_id").and_then(|d| DeviceId::new(d).ok()),
                    op.get("last_used").and_then(Value::as_i64),
                    op.get("expires_ms").and_then(Value::as_i64),
                ) else {
                    continue;
                };
                station.used.insert(
                    &id,
                    Use {
                        at,
                        device,
                        certificate: text("certificate").unwrap_or_default(),
                        expires,
                        expires_date: text("expires").unwrap_or_default(),
                    },
                );
            }
        } else if let Some(device) = &latest.device_id {
            station.last[rule.index()] = Some((latest.updated_at, device.clone()));
        }
    }
}

fn workers(alarm: &Alarm) -> impl Iterator<Item = &Value> {
    alarm
        .details
        .get("workers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn worker_key(w: &Value) -> String {
    let text = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or_default();
    format!("{} {}", text("person_id"), text("done_at"))
}

fn operators(alarm: &Alarm) -> impl Iterator<Item = &Value> {
    alarm
        .details
        .get("operators")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl Filling {
    /// One record at its device time `t`, received at engine time `now`.
    fn on_record(
        &mut self,
        cx: &mut DevCx<'_>,
        rec: &FillingRecord,
        facts: &FillingFacts,
        t: EpochMs,
    ) {
        self.timer(cx, t);
        let now = cx.now;
        let station = self.stations.at(cx.eq.ix());
        station.quiet_since = Some(now);
        station.missing_fired = false;
        cx.clear(Rule::RecordsMissing, now);
        let valid_cert = facts.operator.as_ref().and_then(|op| {
            op.certificates
                .iter()
                .filter(|c| c.kind == "filling" && c.valid_at(t))
                .max_by_key(|c| c.expires)
        });
        if let Some(c) = valid_cert {
            station.used.insert(
                &rec.operator_id,
                Use {
                    at: now,
                    device: cx.dev.id.clone(),
                    certificate: c.number.clone(),
                    expires: c.expires,
                    expires_date: c.expires_date.clone(),
                },
            );
        }
        let tuning = cx.tuning();
        let name = cx.eq.binding.equipment_id.as_str().to_owned();
        for (rule, last) in PER_RECORD.into_iter().zip(station.last.iter_mut()) {
            let p = tuning.of(rule);
            if !p.enabled {
                continue;
            }
            let Some(extra) = breaks(rule, rec, facts, valid_cert.is_some(), &name, t) else {
                continue;
            };
            let mut details = record_details(rec);
            details.extend(extra);
            if last.as_ref().is_none_or(|(at, _)| t >= *at) {
                *last = Some((t, cx.dev.id.clone()));
            }
            cx.fire(rule, p.severity, t, Value::Object(details));
        }
    }

    /// Clears the filling alarms whose quiet period has ended on the
    /// device's clock `t`, and every filling alarm of a disabled rule.
    fn timer(&mut self, cx: &mut DevCx<'_>, t: EpochMs) {
        let ix = cx.eq.ix();
        if !PER_RECORD.iter().any(|&r| cx.is_open(r)) {
            // No alarm open: no quiet period to end; each forgets its last
            // record (as `quiet_periods` does). No record: nothing at all.
            if let Some(station) = self.stations.get_mut(ix) {
                station.last.iter_mut().for_each(|last| *last = None);
            }
            return;
        }
        let station = self.stations.at(ix);
        cx.quiet_periods(&PER_RECORD, &mut station.last, t);
    }

    /// `filling.records_missing` for the device's station at engine time
    /// `now`: the device is online and `for_s` of working hours passed
    /// since the station's latest record. One alarm per silence; the next
    /// record clears it.
    fn records_missing(&mut self, cx: &mut DevCx<'_>) {
        let rule = Rule::RecordsMissing;
        let Some(station) = self.stations.get_mut(cx.eq.ix()) else {
            return;
        };
        let Some(since) = station.quiet_since else {
            return;
        };
        let now = cx.now;
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            cx.clear(rule, now);
            return;
        }
        if cx.dev.offline || station.missing_fired {
            return;
        }
        let silent = working_ms(since, now, station.hours, cx.local_offset_ms);
        if silent < p.for_ms {
            return;
        }
        station.missing_fired = true;
        let details = json!({
            "since": since,
            "working_hours_silent_s": silent / 1000,
            "for_s": p.for_ms / 1000,
            "working_hours": station.hours.map(|(o, c)| format!(
                "{:02}:{:02}-{:02}:{:02}",
                o / 60,
                o % 60,
                c / 60,
                c % 60
            )),
        });
        cx.fire(rule, p.severity, now, details);
    }

    /// `registry.certificate_expired` at wall time `now`: the operators
    /// used within `window_h` whose certificate (valid when used) has
    /// expired since. One alarm per station lists them all.
    fn certificates(&mut self, cx: &mut Cx<'_>) {
        let rule = Rule::CertificateExpired;
        let ix = cx.eq.ix();
        let open = cx.is_open(rule);
        if !open && self.stations.get(ix).is_none_or(|s| s.used.is_empty()) {
            return;
        }
        let station = self.stations.at(ix);
        let now = cx.now;
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        station
            .used
            .retain(|_, u| now.saturating_sub(u.at) <= p.ms(WINDOW));
        let expired: Vec<(&String, &Use)> = station
            .used
            .iter()
            .filter(|(_, u)| now >= u.expires.saturating_add(DAY_MS))
            .collect();
        if !p.enabled || expired.is_empty() {
            cx.clear(rule, now);
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
        match cx.slot(rule) {
            None => cx.fire_by(rule, &device, p.severity, now, details),
            Some(slot) if slot.details().get("operators") != details.get("operators") => {
                cx.update(rule, p.severity, now, details)
            }
            Some(_) => {}
        }
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
    if rule == Rule::OperatorUncertified {
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
        return (rule == Rule::CylinderUnregistered).then_some(d);
    };
    match rule {
        Rule::CylinderOverdue if t >= cyl.next_inspection.saturating_add(DAY_MS) => {
            d.insert("next_inspection".into(), json!(cyl.next_inspection_date));
            d.insert(
                "days_overdue".into(),
                json!((t - cyl.next_inspection).div_euclid(DAY_MS)),
            );
        }
        Rule::CylinderScrapped if cyl.scrapped || t >= cyl.end_of_life => {
            let reason = if cyl.scrapped {
                "scrapped"
            } else {
                "past design life"
            };
            d.insert("reason".into(), json!(reason));
            d.insert("end_of_life".into(), json!(cyl.end_of_life_date));
        }
        Rule::ForeignCylinder if cyl.station_id != station => {
            d.insert("cylinder_station_id".into(), json!(cyl.station_id));
        }
        Rule::Overfill => {
            // The LPG model table is the legal maximum: a registry value
            // above it (a typo, a wrong model) does not raise the limit.
            let table = vigil_model::reading::lpg_max_fill_kg(&cyl.model);
            let (limit, from) = match (cyl.max_fill_kg, table) {
                (Some(reg), Some(t)) if t < reg => (t, "model_table"),
                (Some(reg), _) => (reg, "registry"),
                (None, Some(t)) => (t, "model_table"),
                (None, None) => return None,
            };
            // Scales weigh to the gram; f32 noise must not tip the balance.
            let net = round3(f64::from(rec.net_kg));
            if net <= limit {
                return None;
            }
            d.insert("model".into(), json!(cyl.model));
            d.insert("max_fill_kg".into(), json!(limit));
            d.insert("limit_from".into(), json!(from));
            if from == "model_table"
                && let Some(reg) = cyl.max_fill_kg
            {
                d.insert("registry_max_fill_kg".into(), json!(reg));
            }
            d.insert("over_kg".into(), json!(round3(net - limit)));
        }
        Rule::Overpressure => {
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
fn at_20c(p: f64, temp_c: Option<f64>) -> f64 {
    match temp_c {
        Some(c) if c.is_finite() && c > -KELVIN_0C => p * KELVIN_20C / (KELVIN_0C + c),
        _ => p,
    }
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

/// Milliseconds of working hours between `from` and `to` (engine time),
/// with local time `offset_ms` ahead of UTC. Looks back at most 31 days.
fn working_ms(from: EpochMs, to: EpochMs, hours: Option<(i64, i64)>, offset_ms: i64) -> i64 {
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
