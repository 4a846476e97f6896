//! Rules a configuration defines: raise, repeat and clear on the injected
//! clock, clear conditions, cool-down, overrides, reloads and restarts;
//! and rule files refused with file, line and column.

use serde_json::json;
use vigil_model::reading::{RideSample, VideoEvent, VideoKind};
use vigil_model::{AlarmState, Payload, Severity};
use vigil_rules::RuleConfig;

use crate::harness::*;

const OVERLOAD: &str = r#"
[rule."site.overload"]
stream = "elevator"
description = "Car loaded beyond its rating while moving"
when = "load_pct > rule.limit_pct and speed_mps > 0"
for_s = 5
severity = "major"
limit_pct = 100
"#;

fn loaded(pct: f32) -> vigil_model::reading::ElevatorSample {
    vigil_model::reading::ElevatorSample {
        load_pct: Some(pct),
        ..moving()
    }
}

fn file(text: &str) -> RuleConfig {
    RuleConfig::load(&toml::Table::new(), Some(("site.toml", text))).unwrap()
}

fn refused(text: &str) -> String {
    RuleConfig::load(&toml::Table::new(), Some(("site.toml", text)))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_defined_state_rule_raises_after_for_repeats_and_clears() {
    let mut h = H::with_config(file(OVERLOAD));
    none(&h.send(0, loaded(120.0)), "site.overload");
    none(&h.send(3_000, loaded(120.0)), "site.overload");
    let a = one(&h.tick(5_200), "site.overload");
    assert_raised(&a, "site.overload", 5_000);
    assert_eq!(a.severity, Severity::Major);
    assert_eq!(
        a.details,
        json!({"load_pct": 120.0, "speed_mps": 1.5, "rule.limit_pct": 100.0}),
        "the alarm shows what the condition read"
    );
    // The load drops, comes back within the clear period: one more occurrence.
    none(&h.send(6_000, loaded(80.0)), "site.overload");
    none(&h.send(8_000, loaded(130.0)), "site.overload");
    let repeat = one(&h.tick(13_000), "site.overload");
    assert_eq!(
        (repeat.count, repeat.alarm_id.clone()),
        (2, a.alarm_id.clone())
    );
    none(&h.send(14_000, loaded(50.0)), "site.overload");
    none(&h.tick(23_000), "site.overload");
    let cleared = one(&h.tick(24_100), "site.overload");
    assert_eq!(cleared.state, AlarmState::Cleared);
    assert_eq!(
        cleared.cleared_at,
        Some(T0 + 24_000),
        "10 s after it went false"
    );
}

#[test]
fn a_missing_optional_field_is_not_a_condition_that_holds() {
    let mut h = H::with_config(file(OVERLOAD));
    h.send(0, moving());
    none(&h.tick(60_000), "site.overload");
}

#[test]
fn a_clear_condition_keeps_the_alarm_open_in_between() {
    let mut h = H::with_config(file(
        r#"
[rule."site.fast"]
stream = "elevator"
when = "speed_mps > 2"
clear_when = "speed_mps < 1"
clear_s = 0
"#,
    ));
    let a = one(
        &h.send(
            0,
            vigil_model::reading::ElevatorSample {
                speed_mps: 2.5,
                ..moving()
            },
        ),
        "site.fast",
    );
    none(
        &h.send(
            1_000,
            vigil_model::reading::ElevatorSample {
                speed_mps: 1.5,
                ..moving()
            },
        ),
        "site.fast",
    );
    none(&h.tick(100_000), "site.fast");
    assert!(
        h.open("site.fast").is_some(),
        "1.5 m/s is neither fast nor slow"
    );
    let c = one(
        &h.send(
            101_000,
            vigil_model::reading::ElevatorSample {
                speed_mps: 0.5,
                ..moving()
            },
        ),
        "site.fast",
    );
    assert_eq!((c.alarm_id, c.state), (a.alarm_id, AlarmState::Cleared));
}

#[test]
fn cool_down_holds_a_new_alarm_back_until_it_ends() {
    let mut h = H::with_config(file(
        r#"
[rule."site.fast"]
stream = "elevator"
when = "speed_mps > 2"
clear_s = 0
cooldown_s = 60
"#,
    ));
    let fast = vigil_model::reading::ElevatorSample {
        speed_mps: 2.5,
        ..moving()
    };
    let first = one(&h.send(0, fast.clone()), "site.fast");
    let c = one(&h.send(1_000, moving()), "site.fast");
    assert_eq!(c.cleared_at, Some(T0 + 1_000));
    // A blip inside the cool-down: no alarm at all.
    none(&h.send(10_000, fast.clone()), "site.fast");
    none(&h.send(11_000, moving()), "site.fast");
    none(&h.tick(70_000), "site.fast");
    // Fast again inside the cool-down and still fast when it ends.
    none(&h.send(50_000, fast.clone()), "site.fast");
    none(&h.tick(60_500), "site.fast");
    let second = one(&h.tick(61_200), "site.fast");
    assert_raised(&second, "site.fast", 61_000);
    assert_ne!(second.alarm_id, first.alarm_id);
}

#[test]
fn registry_parameters_and_overrides_per_category_and_equipment() {
    let config = r#"
[rule."site.near_overspeed"]
stream = "elevator"
when = "speed_mps > rule.share * param.rated_speed_mps"
share = 0.8
[equipment.EQ2."site.near_overspeed"]
share = 0.95
[category.escalator."site.near_overspeed"]
enabled = false
"#;
    // rated 1.75 m/s: 1.5 m/s is above 80 % of it (1.4), below 95 % (1.6625).
    let mut h = H::with_config(file(config));
    let a = one(&h.send(0, moving()), "site.near_overspeed");
    assert_eq!(a.details["param.rated_speed_mps"], json!(1.75));
    assert_eq!(a.details["rule.share"], json!(0.8));
    let mut eq2 = H::with_config(file(config));
    eq2.ctx = ctx_for("EQ2", "elevator");
    none(&eq2.send(0, moving()), "site.near_overspeed");
    let mut esc = H::with_config(file(config));
    esc.ctx = ctx_for("EQ3", "escalator");
    none(&esc.send(0, moving()), "site.near_overspeed");
    // No rated speed in the registry: not evaluated, not an alarm.
    let mut bare = H::with_config(file(config));
    std::sync::Arc::make_mut(&mut bare.ctx.params).remove("rated_speed_mps");
    none(&bare.send(0, moving()), "site.near_overspeed");
}

#[test]
fn categories_limit_a_rule_to_the_equipment_it_is_for() {
    let config = r#"
[rule."site.moving"]
stream = "elevator"
when = "speed_mps > 0"
categories = ["escalator"]
"#;
    let mut h = H::with_config(file(config));
    none(&h.send(0, moving()), "site.moving");
    h.ctx = ctx_for("EQ1", "escalator");
    one(&h.send(1_000, moving()), "site.moving");
}

fn video_event(h: &mut H, at: i64, event: VideoKind, confidence: f32) -> Vec<vigil_model::Alarm> {
    let r = h.reading(
        at,
        Payload::Video(VideoEvent {
            camera_id: "CAM1".into(),
            event,
            confidence,
            snapshot: None,
        }),
    );
    h.engine.on_reading(&r, &h.ctx.clone(), T0 + at)
}

#[test]
fn an_event_rule_counts_matching_events_and_clears_after_a_quiet_period() {
    let mut h = H::with_config(file(
        r#"
[rule."site.crowding"]
stream = "video"
when = 'event == "crowding" and confidence >= 0.6'
severity = "minor"
clear_s = 60
"#,
    ));
    none(
        &video_event(&mut h, 0, VideoKind::Crowding, 0.5),
        "site.crowding",
    );
    let a = one(
        &video_event(&mut h, 1_000, VideoKind::Crowding, 0.6),
        "site.crowding",
    );
    assert_eq!(
        (a.severity, a.details["camera_id"].clone()),
        (Severity::Minor, json!(null))
    );
    assert_eq!(
        a.details["confidence"],
        json!(0.6),
        "the decimal the camera sent"
    );
    let r = one(
        &video_event(&mut h, 30_000, VideoKind::Crowding, 0.9),
        "site.crowding",
    );
    assert_eq!((r.count, r.alarm_id.clone()), (2, a.alarm_id.clone()));
    none(&h.tick(89_000), "site.crowding");
    let c = one(&h.tick(90_500), "site.crowding");
    assert_eq!(
        (c.state, c.cleared_at),
        (AlarmState::Cleared, Some(T0 + 90_000))
    );
}

#[test]
fn a_ride_rule_reads_ride_samples() {
    let mut h = H::with_config(file(
        r#"
[rule."site.crowded_car"]
stream = "ride"
when = 'state == "running" and passengers > rule.max'
max = 20
"#,
    ));
    let sample = RideSample {
        state: vigil_model::reading::RideState::Running,
        speed_mps: 3.0,
        wind_mps: None,
        restraints_locked: true,
        vibration_mm_s: None,
        brake: vigil_model::reading::Brake::Ok,
        passengers: Some(24),
    };
    let r = h.reading(0, Payload::Ride(sample));
    let a = one(
        &h.engine.on_reading(&r, &h.ctx.clone(), T0),
        "site.crowded_car",
    );
    assert_eq!(a.details["passengers"], json!(24.0));
}

#[test]
fn a_reload_keeps_the_alarms_of_rules_it_keeps_and_clears_the_others() {
    let both = format!(
        "{OVERLOAD}\n[rule.\"site.fast\"]\nstream = \"elevator\"\nwhen = \"speed_mps > 1\"\n"
    );
    let mut h = H::with_config(file(&both));
    h.send(0, loaded(120.0));
    let overload = one(&h.tick(5_500), "site.overload");
    assert!(h.open("site.fast").is_some());
    // The new file drops site.fast and raises the overload threshold.
    h.engine.replace_config(file(
        &OVERLOAD.replace("limit_pct = 100", "limit_pct = 150"),
    ));
    let changes = h.tick(6_000);
    let gone = one(&changes, "site.fast");
    assert_eq!(gone.state, AlarmState::Cleared);
    none(&changes, "site.overload");
    // 120 % is no longer an overload: the kept alarm clears on its own.
    let c = one(&h.tick(16_500), "site.overload");
    assert_eq!(
        (c.alarm_id, c.state),
        (overload.alarm_id, AlarmState::Cleared)
    );
    // Loading the dropped rule again starts it afresh.
    h.engine.replace_config(file(&both));
    one(&h.send(20_000, moving()), "site.fast");
}

#[test]
fn after_a_restart_a_defined_rule_continues_its_open_alarm() {
    let mut before = H::with_config(file(OVERLOAD));
    before.send(0, loaded(120.0));
    let a = one(&before.tick(5_500), "site.overload");
    let mut h = H::with_config(file(OVERLOAD));
    h.engine.restore(vec![a.clone()], T0 + 6_000);
    none(&h.send(6_000, loaded(120.0)), "site.overload");
    none(&h.tick(20_000), "site.overload");
    assert_eq!(
        h.open("site.overload").map(|o| o.alarm_id),
        Some(a.alarm_id)
    );
}

#[test]
fn the_builtin_catalogue_is_a_rule_file_users_can_read() {
    let listed = vigil_rules::catalogue();
    let overspeed = listed
        .iter()
        .find(|r| r.id.as_str() == "elevator.overspeed")
        .unwrap();
    assert_eq!(
        overspeed.when,
        Some("param.rated_speed_mps > 0 and speed_mps > rule.factor * param.rated_speed_mps")
    );
    let cycling = listed
        .iter()
        .find(|r| r.id.as_str() == "elevator.door_cycling")
        .unwrap();
    assert_eq!(
        cycling.when, None,
        "needs earlier samples: evaluated in code"
    );
    // A built-in condition cannot be replaced, only tuned or disabled.
    let e = refused("[rule.\"elevator.overspeed\"]\nwhen = \"speed_mps > 3\"\n");
    assert!(e.starts_with("site.toml:2:1: "), "{e}");
    assert!(e.contains("built in"), "{e}");
}

#[test]
fn mistakes_are_refused_with_file_line_column_and_what_is_wrong() {
    let e = refused("[rule.\"site.x\"]\nstream = \"elevator\"\nwhen = \"sped_mps > 1\"\n");
    assert!(e.starts_with("site.toml:3:9: "), "{e}");
    assert!(e.contains("sped_mps") && e.contains("speed_mps"), "{e}");

    let e = refused("[rule.\"site.x\"]\nstream = \"elevator\"\nwhen = 'door == \"clsoed\"'\n");
    assert!(e.starts_with("site.toml:3:17: "), "{e}");
    assert!(e.contains("closed"), "{e}");

    let e = refused("[rule.\"site.x\"]\nstream = \"lift\"\nwhen = \"speed_mps > 1\"\n");
    assert!(
        e.starts_with("site.toml:2:1: ") && e.contains("elevator, ride"),
        "{e}"
    );

    let e = refused(
        "[rule.\"site.x\"]\nstream = \"video\"\nwhen = 'event == \"crowding\"'\nclear_when = 'confidence < 0.2'\n",
    );
    assert!(
        e.starts_with("site.toml:4:1: ") && e.contains("moments"),
        "{e}"
    );

    let e = refused(
        "[rule.\"site.x\"]\nstream = \"elevator\"\nwhen = \"speed_mps > rule.max\"\nmax = \"fast\"\n",
    );
    assert!(
        e.starts_with("site.toml:4:1: ") && e.contains("number"),
        "{e}"
    );

    let e = refused(&format!(
        "{OVERLOAD}\n[equipment.EQ1.\"site.overload\"]\nlimit = 3\n"
    ));
    assert!(e.starts_with("site.toml:11:1: "), "{e}");
    assert!(e.contains("limit_pct"), "the keys it could set: {e}");

    let e = refused("[rule.\"site.x\"]\nstream = \"elevator\"\nwhen = \"speed_mps > \"\n");
    assert!(e.starts_with("site.toml:3:"), "{e}");

    let e = refused("[rule.\"x\"]\nstream = \"elevator\"\nwhen = \"speed_mps > 1\"\n");
    assert!(e.contains("prefix"), "{e}");

    let e = refused("[rule.\"site.x\"\nstream = 1\n");
    assert!(e.starts_with("site.toml:1:"), "TOML syntax errors too: {e}");
}

#[test]
fn a_rule_file_lays_over_the_configured_rules() {
    // The application configuration's [rules] sets the clear period; the
    // file defines a rule that inherits it.
    let base: toml::Table = toml::from_str("clear_s = 30").unwrap();
    let config = RuleConfig::load(&base, Some(("site.toml", OVERLOAD))).unwrap();
    let mut h = H::with_config(config);
    h.send(0, loaded(120.0));
    one(&h.tick(5_500), "site.overload");
    h.send(6_000, loaded(50.0));
    none(&h.tick(35_000), "site.overload");
    let c = one(&h.tick(36_500), "site.overload");
    assert_eq!(c.cleared_at, Some(T0 + 36_000));
    let e = RuleConfig::load(
        &base,
        Some(("site.toml", "[rule.\"elevator.trapped\"]\nfor_s = -1")),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("site.toml:2:1: "), "{e}");
}
