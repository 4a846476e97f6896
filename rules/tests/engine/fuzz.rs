//! Hostile rule files and conditions: near-valid TOML built from the real
//! catalogue (every built-in rule id and parameter, given edge values and
//! wrong types), defined rules whose `when` / `clear_when` come from a
//! grammar of the condition language (fields, `param.x`, `rule.x`,
//! functions, deep nesting, long flat chains, huge and tiny numbers,
//! strings with escapes) and then get a character cut or inserted. Loading
//! must never panic and must point inside the file when it refuses; a file
//! that loads must then run readings and ticks without a panic.

#[path = "../../../tests/fuzz/support.rs"]
mod support;

use proptest::prelude::*;
use serde_json::Value;
use support::*;
use vigil_model::reading::{
    Brake, Direction, Door, ElevatorMode, ElevatorSample, Limit, Power, RideSample, RideState,
};
use vigil_model::{DeviceId, Payload, Reading};
use vigil_rules::{RuleConfig, RuleEngine};

use crate::harness::*;

const ELEVATOR_FIELDS: &[&str] = &[
    "floor",
    "direction",
    "speed_mps",
    "door",
    "leveled",
    "occupied",
    "mode",
    "safety_circuit",
    "door_lock",
    "alarm_button",
    "power",
    "limit",
    "run_count",
    "load_pct",
];

/// A number as the condition language or TOML may spell it.
fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        (-1000i64..1000).prop_map(|n| n.to_string()),
        (0.0f64..100.0).prop_map(|f| format!("{f}")),
        Just("0".to_owned()),
        Just("1e308".to_owned()),
        Just("1e309".to_owned()),
        Just("1e-400".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("0.0000001".to_owned()),
        Just("1.".to_owned()),
        Just(".5".to_owned()),
        Just("1e".to_owned()),
    ]
    .boxed()
}

/// A condition, mostly well-formed, over the elevator stream.
fn condition() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        4 => prop::sample::select(ELEVATOR_FIELDS).prop_map(str::to_owned),
        2 => number_text(),
        1 => prop_oneof![
            Just("\"closed\"".to_owned()),
            Just("\"up\"".to_owned()),
            Just("\"\"".to_owned()),
            Just("\"界\\\"\\\\\"".to_owned()),
            Just("\"unterminated".to_owned()),
        ],
        1 => prop::sample::select(&["param.rated_speed_mps", "param.floors", "param.nope", "param."][..])
            .prop_map(str::to_owned),
        1 => prop::sample::select(&["rule.limit", "rule.other", "rule.", "rule"][..]).prop_map(str::to_owned),
        1 => prop::sample::select(&["true", "false", "null", "and", "not", "abs", "min"][..])
            .prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
    .boxed();
    let small = leaf.clone();
    leaf.prop_recursive(6, 64, 4, move |inner| {
        prop_oneof![
            4 => (inner.clone(), prop::sample::select(&[" + ", " - ", " * ", " / ", " == ", " != ", " < ", " <= ", " > ", " >= ", " and ", " or ", " = ", " ! "][..]), inner.clone())
                .prop_map(|(a, op, b)| format!("{a}{op}{b}")),
            1 => inner.clone().prop_map(|a| format!("not {a}")),
            1 => inner.clone().prop_map(|a| format!("-{a}")),
            2 => inner.clone().prop_map(|a| format!("({a})")),
            1 => (prop::sample::select(&["abs", "min", "max", "nope"][..]), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            // Deep nesting and long flat chains: the parser's and the
            // evaluator's stack.
            1 => (inner.clone(), 1usize..200).prop_map(|(a, n)| format!("{}{a}{}", "(".repeat(n), ")".repeat(n))),
            1 => (small.clone(), 1usize..1500).prop_map(|(a, n)| vec![a; n].join(" + ")),
            1 => (1usize..1200).prop_map(|n| vec!["leveled"; n].join(" or ")),
        ]
    })
    .boxed()
}

/// A numeric expression that type-checks over the elevator stream.
fn typed_number() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(&["floor", "speed_mps", "run_count", "load_pct"][..]).prop_map(str::to_owned),
        2 => prop_oneof![
            (-1000i64..1000).prop_map(|n| n.to_string()),
            (0.0f64..100.0).prop_map(|f| format!("{f}")),
            Just("1e308".to_owned()),
            Just("1e-400".to_owned()),
            Just("99999999999999999999999999".to_owned()),
        ],
        1 => Just("rule.limit".to_owned()),
        1 => prop::sample::select(&["param.rated_speed_mps", "param.floors", "param.missing"][..]).prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("abs({a})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            prop::collection::vec(inner, 2..4).prop_map(|a| format!("max({})", a.join(", "))),
        ]
    })
    .boxed()
}

/// A condition that type-checks: what an operator means to write.
fn typed_condition() -> BoxedStrategy<String> {
    let atom = prop_oneof![
        3 => (typed_number(), prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]), typed_number())
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        2 => prop::sample::select(&["leveled", "occupied", "safety_circuit", "door_lock", "alarm_button"][..]).prop_map(str::to_owned),
        2 => prop::sample::select(&[
            "door == \"closed\"",
            "door != \"open\"",
            "direction == \"up\"",
            "direction != \"stop\"",
            "mode != \"normal\"",
            "power == \"battery\"",
            "limit != \"none\"",
        ][..])
            .prop_map(str::to_owned),
    ];
    atom.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&["and", "or"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
    .boxed()
}

/// A defined rule an operator could have written.
fn typed_rule() -> BoxedStrategy<String> {
    (
        "[a-z]{1,8}",
        typed_condition(),
        prop::option::of(typed_condition()),
        0u32..120,
        prop::sample::select(&["critical", "major", "minor", "warning"][..]),
        -100.0f64..100.0,
    )
        .prop_map(|(name, when, clear, for_s, severity, limit)| {
            let mut t = format!(
                "[rule.\"site.{name}\"]\nstream = \"elevator\"\nwhen = {}\nfor_s = {for_s}\nseverity = \"{severity}\"\nlimit = {limit:?}\n",
                toml_string(&when)
            );
            if let Some(c) = clear {
                t.push_str(&format!("clear_when = {}\n", toml_string(&c)));
            }
            t
        })
        .boxed()
}

/// A condition with a character cut or a stray one put in.
fn damaged_condition() -> BoxedStrategy<String> {
    typo(condition())
}

/// A TOML value: right, wrong type, or edge.
fn toml_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => number_text(),
        1 => Just("inf".to_owned()),
        1 => Just("nan".to_owned()),
        1 => Just("-0.0".to_owned()),
        1 => Just("true".to_owned()),
        1 => prop::sample::select(&["\"critical\"", "\"major\"", "\"minor\"", "\"warning\"", "\"CRITICAL\"", "\"\""][..])
            .prop_map(str::to_owned),
        1 => nasty_string().prop_map(|s| toml_string(&s)),
        1 => Just("1979-05-27T07:32:00Z".to_owned()),
        1 => Just("[1, \"a\", [true]]".to_owned()),
        1 => Just("{ a = 1, b = { c = \"d\" } }".to_owned()),
    ]
    .boxed()
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every built-in rule id and its parameter names.
fn catalogue() -> Vec<(String, Vec<String>)> {
    vigil_rules::catalogue()
        .into_iter()
        .map(|r| {
            let params = r.params.iter().map(|p| p.name.to_string()).collect();
            (r.id.as_str().to_owned(), params)
        })
        .collect()
}

/// One table of a rule file.
fn section() -> BoxedStrategy<String> {
    let rules = catalogue();
    let ids: Vec<String> = rules.iter().map(|r| r.0.clone()).collect();
    let builtin = (
        prop::sample::select(rules),
        prop::collection::vec((any::<prop::sample::Index>(), toml_value()), 0..4),
    )
        .prop_map(|((id, params), sets)| {
            let mut t = format!("[rule.\"{id}\"]\n");
            for (i, v) in sets {
                let key = if params.is_empty() {
                    "enabled".to_owned()
                } else {
                    i.get(&params).clone()
                };
                t.push_str(&format!("{key} = {v}\n"));
            }
            t
        });
    let scoped = (
        prop::sample::select(ids),
        prop_oneof![
            Just("category.elevator".to_owned()),
            Just("category.nonsense".to_owned()),
            Just("equipment.\"EQ1\"".to_owned()),
            Just("equipment.\"bad id/\"".to_owned()),
        ],
        prop::sample::select(&["enabled", "severity", "for_s", "factor", "limit"][..]),
        toml_value(),
    )
        .prop_map(|(id, scope, key, v)| format!("[{scope}.\"{id}\"]\n{key} = {v}\n"));
    let defined = (
        "[a-z]{1,8}",
        prop_oneof![
            8 => Just("elevator"),
            1 => Just("ride"),
            1 => Just("video"),
            1 => Just("nope"),
        ],
        damaged_condition(),
        prop::option::of(damaged_condition()),
        prop::collection::vec(
            (
                prop::sample::select(
                    &[
                        "for_s",
                        "clear_s",
                        "cooldown_s",
                        "severity",
                        "enabled",
                        "limit",
                        "other",
                        "description",
                        "categories",
                    ][..],
                ),
                toml_value(),
            ),
            0..5,
        ),
    )
        .prop_map(|(name, stream, when, clear, keys)| {
            let mut t = format!(
                "[rule.\"site.{name}\"]\nstream = \"{stream}\"\nwhen = {}\n",
                toml_string(&when)
            );
            if let Some(c) = clear {
                t.push_str(&format!("clear_when = {}\n", toml_string(&c)));
            }
            for (k, v) in keys {
                t.push_str(&format!("{k} = {v}\n"));
            }
            t
        });
    prop_oneof![
        3 => builtin,
        1 => scoped,
        4 => defined,
        1 => Just("[escalation]\nafter_s = -5\n".to_owned()),
        1 => nasty_string().prop_map(|s| format!("{s}\n")),
    ]
    .boxed()
}

/// Half the files are what an operator means to write (so the engine runs
/// defined rules), half are hostile.
fn rule_file() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(typed_rule(), 1..4),
        prop::collection::vec(section(), 1..5),
    ]
    .prop_map(|s| s.join("\n"))
}

/// Elevator and ride samples with values anywhere the codec accepts.
fn payload() -> BoxedStrategy<Payload> {
    let elevator = (
        any::<i16>(),
        prop::sample::select(vec![Direction::Up, Direction::Down, Direction::Stop]),
        prop_oneof![Just(0.0f32), Just(30.0f32), 0.0f32..30.0],
        prop::sample::select(vec![Door::Open, Door::Closed, Door::Opening, Door::Closing]),
        any::<[bool; 6]>(),
        prop::sample::select(vec![
            ElevatorMode::Normal,
            ElevatorMode::Inspection,
            ElevatorMode::Fire,
        ]),
        prop::sample::select(vec![Power::Mains, Power::Battery, Power::Off]),
        prop::sample::select(vec![Limit::None, Limit::Top, Limit::Bottom]),
        prop::option::of(any::<u64>()),
        prop::option::of(0.0f32..300.0),
    )
        .prop_map(
            |(floor, direction, speed_mps, door, b, mode, power, limit, run_count, load_pct)| {
                Payload::Elevator(ElevatorSample {
                    floor,
                    direction,
                    speed_mps,
                    door,
                    leveled: b[0],
                    occupied: b[1],
                    mode,
                    safety_circuit: b[2],
                    door_lock: b[3],
                    alarm_button: b[4],
                    power,
                    limit,
                    run_count,
                    load_pct,
                })
            },
        );
    let ride = (
        0.0f32..200.0,
        prop::option::of(0.0f32..100.0),
        any::<bool>(),
    )
        .prop_map(|(speed_mps, wind_mps, locked)| {
            Payload::Ride(RideSample {
                state: RideState::Running,
                speed_mps,
                wind_mps,
                restraints_locked: locked,
                vibration_mm_s: None,
                brake: Brake::Ok,
                passengers: Some(3),
            })
        });
    prop_oneof![4 => elevator, 1 => ride].boxed()
}

#[test]
fn hostile_rule_files_never_panic() {
    let case = (
        rule_file(),
        prop::collection::vec((0i64..600_000, payload()), 0..12),
    );
    let tally = Tally::default();
    run("rules.load+evaluate", 1500, case, |(text, readings)| {
        let lines = text.lines().count() + 1;
        match RuleConfig::load(&toml::Table::new(), Some(("site.toml", &text))) {
            Err(e) => {
                let msg = e.to_string();
                tally.add(if msg.starts_with("site.toml:") {
                    "refused at file:line:col"
                } else {
                    "refused (merged config)"
                });
                prop_assert!(!msg.is_empty());
                if let Some(rest) = msg.strip_prefix("site.toml:") {
                    let line: usize = rest
                        .split(':')
                        .next()
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    prop_assert!(
                        (1..=lines).contains(&line),
                        "line {} of a {}-line file: {}",
                        line,
                        lines,
                        msg
                    );
                }
            }
            Ok(config) => {
                tally.add(if config.defined_rules().is_empty() {
                    "loaded"
                } else {
                    "loaded with defined rules"
                });
                let raised = std::cell::Cell::new(false);
                let mut engine = RuleEngine::with_id_source(config, counter_ids());
                let ctx = ctx();
                let device = DeviceId::new("EL1").unwrap();
                let mut at = T0;
                for (seq, (step, payload)) in readings.into_iter().enumerate() {
                    at += step;
                    let r = Reading {
                        device_id: device.clone(),
                        seq: seq as u64 + 1,
                        ts: at,
                        received_at: at,
                        payload,
                        extra: None,
                    };
                    let mut alarms = engine.on_reading(&r, &ctx, at);
                    alarms.extend(engine.tick(at + 1000));
                    for alarm in alarms {
                        if alarm.rule.as_str().starts_with("site.") {
                            raised.set(true);
                        }
                        // What the API and the store will do with it.
                        let json: Value = serde_json::to_value(&alarm).unwrap();
                        prop_assert!(json["details"].is_object() || json["details"].is_null());
                    }
                }
                if raised.get() {
                    tally.add("  of which a defined rule raised an alarm");
                }
            }
        }
        Ok(())
    });
    tally.print("rules.load+evaluate");
}
