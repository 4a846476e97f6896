//! The gas-cylinder filling rules: a record that breaks a rule raises the
//! station's alarm, further breaking records repeat it, and it clears
//! `clear_s` after the last one; each condition at its boundaries; per
//! category and per station overrides; `registry.certificate_expired` over
//! the operators the records used.

use vigil_model::reading::{FillResult, FillingRecord};
use vigil_model::{Alarm, AlarmState, DeviceId, EpochMs, Payload, Severity};
use vigil_rules::{CertificateFacts, CylinderFacts, FillingFacts, OperatorFacts};

use crate::harness::*;

const DAY: EpochMs = 86_400_000;
const HOUR: EpochMs = 3_600_000;
/// Start of the day of `T0` (the registry's dates are day starts).
const TODAY: EpochMs = -(T0 % DAY);

const UNREGISTERED: &str = "filling.cylinder_unregistered";
const OVERDUE: &str = "filling.cylinder_overdue";
const SCRAPPED: &str = "filling.cylinder_scrapped";
const FOREIGN: &str = "filling.foreign_cylinder";
const OVERFILL: &str = "filling.overfill";
const OVERPRESSURE: &str = "filling.overpressure";
const UNCERTIFIED: &str = "filling.operator_uncertified";
const EXPIRED: &str = "registry.certificate_expired";
const MISSING: &str = "filling.records_missing";
const ALL: [&str; 7] = [
    UNREGISTERED,
    OVERDUE,
    SCRAPPED,
    FOREIGN,
    OVERFILL,
    OVERPRESSURE,
    UNCERTIFIED,
];

fn station(config: &str) -> H {
    let mut h = H::with_toml(config);
    h.ctx = ctx_for("ST1", "filling_station");
    h.ctx.kind = "filling".into();
    // A scale reports when a filling ends; liveness is not under test here.
    h.ctx.report_interval_s = 86_400;
    h.device = DeviceId::new("SC1").unwrap();
    h
}

fn record() -> FillingRecord {
    FillingRecord {
        cylinder_code: "CYL-1".into(),
        operator_id: "P1".into(),
        medium: "LPG".into(),
        tare_kg: 15.2,
        net_kg: 14.5,
        pressure_mpa: None,
        temp_c: None,
        started_ms: T0,
        result: FillResult::Ok,
    }
}

/// A healthy YSP35.5 cylinder of ST1 and a certified operator.
fn facts() -> FillingFacts {
    FillingFacts {
        cylinder: Some(CylinderFacts {
            station_id: "ST1".into(),
            model: "YSP35.5".into(),
            max_fill_kg: Some(14.9),
            working_pressure_mpa: 2.1,
            next_inspection: T0 + TODAY + 400 * DAY,
            next_inspection_date: "2025-12-27".into(),
            scrapped: false,
            end_of_life: T0 + TODAY + 3000 * DAY,
            end_of_life_date: "2033-02-07".into(),
        }),
        operator: Some(operator(T0 + TODAY + 100 * DAY)),
    }
}

fn operator(expires: EpochMs) -> OperatorFacts {
    OperatorFacts {
        certificates: vec![
            CertificateFacts {
                kind: "elevator_maintenance".into(),
                number: "T-9".into(),
                expires: T0 + TODAY + 1000 * DAY,
                expires_date: "2027-08-19".into(),
            },
            CertificateFacts {
                kind: "filling".into(),
                number: "R2-0001".into(),
                expires,
                expires_date: "2025-03-02".into(),
            },
        ],
    }
}

fn fill(h: &mut H, at: EpochMs, rec: FillingRecord, facts: &FillingFacts) -> Vec<Alarm> {
    let r = h.reading(at, Payload::Filling(rec));
    h.engine.on_filling(&r, &h.ctx.clone(), facts, T0 + at)
}

/// The clearing of `rule` among `changes`, if any (ticks may also carry
/// the escalation of a critical alarm left unacknowledged).
fn cleared(changes: &[Alarm], rule: &str) -> Option<Alarm> {
    let mut c: Vec<Alarm> = of(changes, rule)
        .into_iter()
        .filter(|a| a.state == AlarmState::Cleared)
        .collect();
    assert!(c.len() <= 1, "{changes:#?}");
    c.pop()
}

fn cyl(f: &mut FillingFacts) -> &mut CylinderFacts {
    f.cylinder.as_mut().unwrap()
}

/// A record breaking `rule`, and the facts it is checked against.
fn breaking(rule: &str) -> (FillingRecord, FillingFacts) {
    let (mut rec, mut f) = (record(), facts());
    match rule {
        UNREGISTERED => f.cylinder = None,
        OVERDUE => cyl(&mut f).next_inspection = T0 + TODAY - DAY,
        SCRAPPED => cyl(&mut f).scrapped = true,
        FOREIGN => cyl(&mut f).station_id = "ST2".into(),
        OVERFILL => rec.net_kg = 15.3,
        OVERPRESSURE => {
            cyl(&mut f).working_pressure_mpa = 15.0;
            rec.pressure_mpa = Some(16.0);
            rec.temp_c = Some(20.0);
        }
        UNCERTIFIED => f.operator = None,
        _ => unreachable!(),
    }
    (rec, f)
}

#[test]
fn a_good_record_breaks_no_rule() {
    let mut h = station("");
    let changes = fill(&mut h, 1_000, record(), &facts());
    assert!(changes.is_empty(), "{changes:#?}");
    let later = h.tick(2 * DAY);
    assert!(
        later.iter().all(|a| a.rule.as_str() == MISSING),
        "only the silence afterwards: {later:#?}"
    );
}

/// Every per-record rule: raise with the record's details, repeat on the
/// next breaking record (good records in between change nothing), clear
/// exactly `clear_s` (1 h) after the last breaking record, then raise anew.
#[test]
fn every_filling_rule_raises_repeats_and_clears_after_an_hour() {
    let severities = [
        Severity::Critical,
        Severity::Critical,
        Severity::Critical,
        Severity::Major,
        Severity::Critical,
        Severity::Critical,
        Severity::Major,
    ];
    for (rule, severity) in ALL.into_iter().zip(severities) {
        let mut h = station("");
        let (rec, f) = breaking(rule);
        let changes = fill(&mut h, 1_000, rec.clone(), &f);
        let a = one(&changes, rule);
        assert_eq!(changes.len(), 1, "only {rule}: {changes:#?}");
        assert_eq!((a.state, a.count, a.version), (AlarmState::Active, 1, 1));
        assert_eq!(a.severity, severity, "{rule}");
        assert_eq!(a.raised_at, T0 + 1_000);
        assert_eq!(
            (a.equipment_id.as_str(), a.category.as_str()),
            ("ST1", "filling_station")
        );
        assert_eq!(a.device_id.as_ref().map(DeviceId::as_str), Some("SC1"));
        assert_eq!(a.details["cylinder_code"], "CYL-1", "{rule}");
        assert_eq!(a.details["operator_id"], "P1", "{rule}");

        // A good record neither clears nor repeats it.
        assert!(fill(&mut h, 600_000, record(), &facts()).is_empty());
        let mut again = rec.clone();
        again.cylinder_code = "CYL-1".into();
        let r = one(&fill(&mut h, 1_800_000, again, &f), rule);
        assert_eq!(
            (r.alarm_id.clone(), r.count, r.version),
            (a.alarm_id.clone(), 2, 2)
        );
        assert_eq!(r.updated_at, T0 + 1_800_000);

        assert_eq!(cleared(&h.tick(1_800_000 + HOUR - 1), rule), None);
        let c = cleared(&h.tick(1_800_000 + HOUR), rule).unwrap();
        assert_eq!(c.state, AlarmState::Cleared);
        assert_eq!(c.cleared_at, Some(T0 + 1_800_000 + HOUR));
        assert_eq!(c.count, 2);

        let n = one(&fill(&mut h, 2 * HOUR + 1_800_000, rec, &f), rule);
        assert_ne!(n.alarm_id, a.alarm_id, "{rule}: a new alarm after clearing");
        assert_eq!(n.count, 1);
    }
}

#[test]
fn the_next_breaking_record_after_the_quiet_period_raises_anew_without_a_tick() {
    let mut h = station("");
    let (rec, f) = breaking(OVERFILL);
    let a = one(&fill(&mut h, 0, rec.clone(), &f), OVERFILL);
    let changes = of(&fill(&mut h, HOUR, rec, &f), OVERFILL);
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert_eq!(
        (
            changes[0].alarm_id.clone(),
            changes[0].state,
            changes[0].cleared_at
        ),
        (a.alarm_id, AlarmState::Cleared, Some(T0 + HOUR))
    );
    assert_eq!(
        (changes[1].state, changes[1].count),
        (AlarmState::Active, 1)
    );
}

#[test]
fn an_unregistered_cylinder_is_checked_for_nothing_else() {
    let mut h = station("");
    let (mut rec, f) = breaking(UNREGISTERED);
    rec.net_kg = 60.0;
    rec.pressure_mpa = Some(99.0);
    let changes = fill(&mut h, 0, rec, &f);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    one(&changes, UNREGISTERED);
}

#[test]
fn overdue_from_the_day_after_the_inspection_date() {
    let mut h = station("");
    let mut f = facts();
    // The inspection day is the day of the record: still allowed that day.
    cyl(&mut f).next_inspection = T0 + TODAY;
    cyl(&mut f).next_inspection_date = "2024-11-22".into();
    let last_ok = TODAY + DAY - 1;
    none(&fill(&mut h, last_ok, record(), &f), OVERDUE);
    let a = one(&fill(&mut h, TODAY + DAY, record(), &f), OVERDUE);
    assert_eq!(a.details["next_inspection"], "2024-11-22");
    assert_eq!(a.details["days_overdue"], 1);
}

#[test]
fn scrapped_by_status_or_from_the_end_of_its_design_life() {
    let mut h = station("");
    let mut f = facts();
    cyl(&mut f).end_of_life = T0 + TODAY + DAY;
    cyl(&mut f).end_of_life_date = "2024-11-23".into();
    none(&fill(&mut h, TODAY + DAY - 1, record(), &f), SCRAPPED);
    let a = one(&fill(&mut h, TODAY + DAY, record(), &f), SCRAPPED);
    assert_eq!(
        (&a.details["reason"], &a.details["end_of_life"]),
        (&"past design life".into(), &"2024-11-23".into())
    );
    let mut h = station("");
    let (rec, f) = breaking(SCRAPPED);
    let a = one(&fill(&mut h, 0, rec, &f), SCRAPPED);
    assert_eq!(a.details["reason"], "scrapped");
}

#[test]
fn foreign_cylinder_names_its_own_station() {
    let mut h = station("");
    let (rec, f) = breaking(FOREIGN);
    let a = one(&fill(&mut h, 0, rec, &f), FOREIGN);
    assert_eq!(a.details["cylinder_station_id"], "ST2");
}

#[test]
fn overfill_above_max_fill_kg_or_the_lpg_model_table() {
    let mut h = station("");
    let mut rec = record();
    rec.net_kg = 14.9;
    none(&fill(&mut h, 0, rec.clone(), &facts()), OVERFILL);
    rec.net_kg = 14.91;
    let a = one(&fill(&mut h, 1_000, rec.clone(), &facts()), OVERFILL);
    assert_eq!(a.details["net_kg"], 14.91);
    assert_eq!(a.details["max_fill_kg"], 14.9);
    assert_eq!(a.details["over_kg"], 0.01);

    // No max_fill_kg: the model decides (YSP12 5.0, YSP35.5 14.9, YSP118 49.5 kg).
    for (model, limit) in [("YSP12", 5.0), ("YSP35.5", 14.9), ("YSP118", 49.5)] {
        let mut h = station("");
        let mut f = facts();
        cyl(&mut f).max_fill_kg = None;
        cyl(&mut f).model = model.into();
        let mut rec = record();
        rec.net_kg = limit as f32;
        none(&fill(&mut h, 0, rec.clone(), &f), OVERFILL);
        rec.net_kg = limit as f32 + 0.1;
        let a = one(&fill(&mut h, 1_000, rec, &f), OVERFILL);
        assert_eq!(a.details["max_fill_kg"], limit, "{model}");
        assert_eq!(a.details["model"], model);
    }
    // Neither: nothing to compare against.
    let mut h = station("");
    let mut f = facts();
    cyl(&mut f).max_fill_kg = None;
    cyl(&mut f).model = "CNG-80".into();
    rec.net_kg = 100.0;
    none(&fill(&mut h, 0, rec, &f), OVERFILL);
}

#[test]
fn overpressure_is_judged_at_20c() {
    let mut h = station("");
    let mut f = facts();
    cyl(&mut f).working_pressure_mpa = 15.0;
    let mut rec = record();
    // 16 MPa of hot gas (40 °C) settles to 14.98 MPa at 20 °C: fine.
    rec.pressure_mpa = Some(16.0);
    rec.temp_c = Some(40.0);
    none(&fill(&mut h, 0, rec.clone(), &f), OVERPRESSURE);
    // Exactly the working pressure at 20 °C: fine.
    rec.pressure_mpa = Some(15.0);
    rec.temp_c = Some(20.0);
    none(&fill(&mut h, 1_000, rec.clone(), &f), OVERPRESSURE);
    // 15 MPa of cold gas (0 °C) is 16.098 MPa at 20 °C.
    rec.temp_c = Some(0.0);
    let a = one(&fill(&mut h, 2_000, rec.clone(), &f), OVERPRESSURE);
    assert_eq!(a.details["pressure_20c_mpa"], 16.098);
    assert_eq!(a.details["working_pressure_mpa"], 15.0);
    assert_eq!(a.details["pressure_mpa"], 15.0);
    // No temperature: taken as measured.
    let mut h = station("");
    rec.temp_c = None;
    rec.pressure_mpa = Some(15.1);
    one(&fill(&mut h, 0, rec.clone(), &f), OVERPRESSURE);
    // No pressure: not evaluated.
    let mut h = station("");
    rec.pressure_mpa = None;
    none(&fill(&mut h, 0, rec, &f), OVERPRESSURE);
}

#[test]
fn an_operator_needs_a_filling_certificate_valid_on_the_day() {
    // Valid through its expiry day.
    let mut h = station("");
    let mut f = facts();
    f.operator = Some(operator(T0 + TODAY));
    none(&fill(&mut h, TODAY + DAY - 1, record(), &f), UNCERTIFIED);
    let a = one(&fill(&mut h, TODAY + DAY, record(), &f), UNCERTIFIED);
    assert_eq!(a.details["reason"], "filling certificate expired");
    assert_eq!(a.details["certificate"], "R2-0001");

    let mut h = station("");
    let (rec, f) = breaking(UNCERTIFIED);
    let a = one(&fill(&mut h, 0, rec, &f), UNCERTIFIED);
    assert_eq!(a.details["reason"], "unknown operator");

    let mut h = station("");
    let mut f = facts();
    f.operator
        .as_mut()
        .unwrap()
        .certificates
        .retain(|c| c.kind != "filling");
    let a = one(&fill(&mut h, 0, record(), &f), UNCERTIFIED);
    assert_eq!(a.details["reason"], "no filling certificate");
}

#[test]
fn overrides_per_category_and_per_station() {
    let config = "[category.filling_station.\"filling.overfill\"]\nclear_s = 600\n\
                  [equipment.ST1.\"filling.overfill\"]\nseverity = \"major\"\n\
                  [equipment.ST1.\"filling.foreign_cylinder\"]\nenabled = false";
    let mut h = station(config);
    let (rec, f) = breaking(OVERFILL);
    let a = one(&fill(&mut h, 0, rec.clone(), &f), OVERFILL);
    assert_eq!(a.severity, Severity::Major);
    assert_eq!(cleared(&h.tick(599_999), OVERFILL), None);
    assert!(cleared(&h.tick(600_000), OVERFILL).is_some());
    let (rec2, f2) = breaking(FOREIGN);
    none(&fill(&mut h, 700_000, rec2.clone(), &f2), FOREIGN);

    // Another station: the category's clear_s, the default severity, and
    // foreign cylinders still alarm.
    let mut other = station(config);
    other.ctx.binding.equipment_id = vigil_model::EquipmentId::new("ST2").unwrap();
    let a = one(&fill(&mut other, 0, rec, &f), OVERFILL);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(cleared(&other.tick(599_999), OVERFILL), None);
    assert!(cleared(&other.tick(600_000), OVERFILL).is_some());
    let mut f2 = f2;
    cyl(&mut f2).station_id = "ST9".into();
    one(&fill(&mut other, 700_000, rec2, &f2), FOREIGN);
}

#[test]
fn resolving_a_filling_alarm_lets_the_next_breaking_record_raise_anew() {
    let mut h = station("");
    let (rec, f) = breaking(UNREGISTERED);
    let a = one(&fill(&mut h, 0, rec.clone(), &f), UNREGISTERED);
    h.engine
        .resolve(&a.alarm_id, "sup", "cylinder seized", T0 + 1_000)
        .unwrap();
    assert_eq!(cleared(&h.tick(HOUR * 2), UNREGISTERED), None);
    let n = one(&fill(&mut h, 2_000, rec, &f), UNREGISTERED);
    assert_ne!(n.alarm_id, a.alarm_id);
    assert_eq!(n.count, 1);
}

#[test]
fn restored_filling_alarms_clear_after_their_quiet_period() {
    let mut h = station("");
    let (rec, f) = breaking(OVERFILL);
    let a = one(&fill(&mut h, 0, rec.clone(), &f), OVERFILL);
    let mut after = station("");
    after.engine.restore(vec![a.clone()], T0 + 1_000);
    let r = one(&fill(&mut after, 600_000, rec, &f), OVERFILL);
    assert_eq!((r.alarm_id.clone(), r.count), (a.alarm_id.clone(), 2));
    assert_eq!(cleared(&after.tick(600_000 + HOUR - 1), OVERFILL), None);
    let c = cleared(&after.tick(600_000 + HOUR), OVERFILL).unwrap();
    assert_eq!(c.cleared_at, Some(T0 + 600_000 + HOUR));
}

/// `registry.certificate_expired`: a certificate valid when an operator
/// used it expires within the next 24 h; the station's alarm lists the
/// operators and clears 24 h after their last use.
#[test]
fn a_certificate_used_within_a_day_that_expires_raises_on_the_wall_clock() {
    let mut h = station("");
    let mut f = facts();
    // Valid through today; used at 10:00 (T0 + TODAY + 10 h).
    f.operator = Some(operator(T0 + TODAY));
    let used = TODAY + 10 * HOUR;
    assert!(fill(&mut h, used, record(), &f).is_empty());
    none(&h.tick(TODAY + DAY - 1), EXPIRED);
    let a = one(&h.tick(TODAY + DAY), EXPIRED);
    assert_eq!((a.state, a.severity), (AlarmState::Active, Severity::Major));
    assert_eq!(a.raised_at, T0 + TODAY + DAY);
    assert_eq!(a.equipment_id.as_str(), "ST1");
    let ops = a.details["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["operator_id"], "P1");
    assert_eq!(ops[0]["certificate"], "R2-0001");
    assert_eq!(ops[0]["last_used"], T0 + used);
    assert!(
        h.tick(TODAY + DAY + 1_000).is_empty(),
        "no change while it holds"
    );

    // The same operator fills again, now uncertified: that record is
    // filling.operator_uncertified, not a new use of the certificate.
    let changes = fill(&mut h, TODAY + DAY + HOUR, record(), &f);
    one(&changes, UNCERTIFIED);
    none(&changes, EXPIRED);

    // 24 h after its last valid use, the alarm ends.
    none(&h.tick(used + DAY), EXPIRED);
    let c = one(&h.tick(used + DAY + 1), EXPIRED);
    assert_eq!(
        (c.alarm_id, c.state, c.cleared_at),
        (a.alarm_id, AlarmState::Cleared, Some(T0 + used + DAY + 1))
    );
}

#[test]
fn one_alarm_per_station_lists_every_operator_and_follows_window_h() {
    let mut h = station("[rule.\"registry.certificate_expired\"]\nwindow_h = 48");
    let mut f = facts();
    f.operator = Some(operator(T0 + TODAY));
    let used = TODAY + 10 * HOUR;
    fill(&mut h, used, record(), &f);
    let a = one(&h.tick(TODAY + DAY), EXPIRED);

    // A second operator whose certificate runs one day longer.
    let mut second = record();
    second.operator_id = "P2".into();
    let mut f2 = facts();
    f2.operator = Some(operator(T0 + TODAY + DAY));
    let later = TODAY + DAY + HOUR;
    none(&fill(&mut h, later, second, &f2), EXPIRED);
    none(&h.tick(TODAY + 2 * DAY - 1), EXPIRED);
    let u = one(&h.tick(TODAY + 2 * DAY), EXPIRED);
    assert_eq!((u.alarm_id.clone(), u.count), (a.alarm_id.clone(), 1));
    let ids = |a: &Alarm| -> Vec<String> {
        a.details["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["operator_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&u), ["P1", "P2"]);

    let u = one(&h.tick(used + 2 * DAY + 1), EXPIRED);
    assert_eq!(ids(&u), ["P2"]);
    none(&h.tick(later + 2 * DAY), EXPIRED);
    let c = one(&h.tick(later + 2 * DAY + 1), EXPIRED);
    assert_eq!(c.state, AlarmState::Cleared);
}

#[test]
fn an_expired_certificate_alarm_resolved_stays_resolved_and_survives_a_restart() {
    let mut h = station("");
    let mut f = facts();
    f.operator = Some(operator(T0 + TODAY));
    fill(&mut h, TODAY + HOUR, record(), &f);
    let a = one(&h.tick(TODAY + DAY), EXPIRED);

    let mut after = station("");
    after.engine.restore(vec![a.clone()], T0 + TODAY + DAY);
    assert!(
        after.tick(TODAY + DAY + 1_000).is_empty(),
        "continues the alarm"
    );
    let c = one(&after.tick(TODAY + HOUR + DAY + 1), EXPIRED);
    assert_eq!(c.alarm_id, a.alarm_id);
    assert_eq!(c.state, AlarmState::Cleared);

    h.engine
        .resolve(&a.alarm_id, "sup", "renewal requested", T0 + TODAY + DAY)
        .unwrap();
    assert!(h.tick(TODAY + DAY + 2_000).is_empty());
}

#[test]
fn a_disabled_certificate_rule_raises_nothing() {
    let mut h = station("[rule.\"registry.certificate_expired\"]\nenabled = false");
    let mut f = facts();
    f.operator = Some(operator(T0 + TODAY));
    fill(&mut h, TODAY + HOUR, record(), &f);
    none(&h.tick(TODAY + DAY), EXPIRED);
}

/// A scale that keeps reporting (an hourly controller event) while its
/// station sends no filling record.
fn heartbeat(h: &mut H, from: EpochMs, to: EpochMs) {
    let mut t = from;
    while t <= to {
        h.event(t, "HB", false);
        t += HOUR;
    }
}

/// Local (CST) midnight of the day of `T0`, relative to `T0`.
fn cst_day0() -> EpochMs {
    (T0 + 8 * HOUR).div_euclid(DAY) * DAY - 8 * HOUR - T0
}

#[test]
fn records_missing_counts_only_working_hours_and_clears_on_the_next_record() {
    let mut h = station("");
    h.engine.set_local_offset(8 * 3600);
    h.ctx.report_interval_s = 3600;
    std::sync::Arc::make_mut(&mut h.ctx.params)
        .insert("working_hours".into(), "07:00-19:00".into());
    let day0 = cst_day0();
    // Last record at 18:00; the station closes at 19:00 and opens at 07:00:
    // 4 h of working hours have passed at 10:00 the next day.
    fill(&mut h, day0 + 18 * HOUR, record(), &facts());
    heartbeat(&mut h, day0 + 19 * HOUR, day0 + DAY + 10 * HOUR);
    none(&h.tick(day0 + DAY + 10 * HOUR - 1), MISSING);
    let a = one(&h.tick(day0 + DAY + 10 * HOUR), MISSING);
    assert_eq!(
        (a.severity, a.state),
        (Severity::Warning, AlarmState::Active)
    );
    assert_eq!(a.raised_at, T0 + day0 + DAY + 10 * HOUR);
    assert_eq!(a.equipment_id.as_str(), "ST1");
    assert_eq!(a.details["since"], T0 + day0 + 18 * HOUR);
    assert_eq!(a.details["working_hours"], "07:00-19:00");
    assert_eq!(a.details["working_hours_silent_s"], 4 * 3600);
    // One occurrence per silence: no repeats while it goes on.
    heartbeat(&mut h, day0 + DAY + 11 * HOUR, day0 + DAY + 15 * HOUR);
    none(&h.tick(day0 + DAY + 15 * HOUR), MISSING);
    // The next record clears it at its arrival.
    let c = one(
        &fill(&mut h, day0 + DAY + 16 * HOUR, record(), &facts()),
        MISSING,
    );
    assert_eq!(
        (c.alarm_id, c.state, c.cleared_at),
        (
            a.alarm_id,
            AlarmState::Cleared,
            Some(T0 + day0 + DAY + 16 * HOUR)
        )
    );
}

#[test]
fn records_missing_needs_an_online_scale_and_follows_per_station_for_s() {
    // No working hours: always open. The scale falls silent too (offline
    // after 3 × 1 h): nothing shows the station is active.
    let mut h = station("");
    h.ctx.report_interval_s = 3600;
    fill(&mut h, 0, record(), &facts());
    let changes = h.tick(5 * HOUR);
    one(&changes, "device.offline");
    none(&changes, MISSING);

    // Online, with for_s = 1 h for this station only.
    let mut h =
        station("[equipment.ST1.\"filling.records_missing\"]\nfor_s = 3600\nseverity = \"minor\"");
    h.ctx.report_interval_s = 3600;
    fill(&mut h, 0, record(), &facts());
    heartbeat(&mut h, HOUR / 2, HOUR);
    none(&h.tick(HOUR - 1), MISSING);
    let a = one(&h.tick(HOUR), MISSING);
    assert_eq!(a.severity, Severity::Minor);
    // Resolved: not again until a record starts a new silence.
    h.engine
        .resolve(&a.alarm_id, "sup", "station closed for the day", T0 + HOUR)
        .unwrap();
    heartbeat(&mut h, 2 * HOUR, 3 * HOUR);
    none(&h.tick(3 * HOUR), MISSING);
    fill(&mut h, 3 * HOUR, record(), &facts());
    heartbeat(&mut h, 3 * HOUR + 1, 4 * HOUR);
    let n = one(&h.tick(4 * HOUR), MISSING);
    assert_ne!(n.alarm_id, a.alarm_id);
}

#[test]
fn the_lpg_table_caps_a_registry_max_fill_above_it() {
    let mut h = station("");
    // Registered with 15.5 kg for a YSP35.5 (the table says 14.9 kg).
    let mut f = facts();
    cyl(&mut f).max_fill_kg = Some(15.5);
    let rec = FillingRecord {
        net_kg: 15.2,
        ..record()
    };
    let a = one(&fill(&mut h, 0, rec, &f), OVERFILL);
    assert_eq!(
        (
            &a.details["max_fill_kg"],
            &a.details["limit_from"],
            &a.details["registry_max_fill_kg"]
        ),
        (
            &serde_json::json!(14.9),
            &serde_json::json!("model_table"),
            &serde_json::json!(15.5)
        )
    );
    // A registry value below the table is the cylinder's own limit.
    let mut h = station("");
    let mut f = facts();
    cyl(&mut f).max_fill_kg = Some(14.0);
    let rec = FillingRecord {
        net_kg: 14.2,
        ..record()
    };
    assert_eq!(
        one(&fill(&mut h, 0, rec, &f), OVERFILL).details["limit_from"],
        "registry"
    );
}
