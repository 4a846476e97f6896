//! What every fuzz target shares (each crate's tests include this file with
//! `#[path]`): how many cases to run, the near-valid building blocks the
//! generators mutate with, and one summary line per run for
//! docs/security.md.
//!
//! A normal `cargo test` runs a few hundred cases per target; set
//! `VIGIL_FUZZ_CASES` for long runs, e.g.
//! `VIGIL_FUZZ_CASES=2000000 nice -n 19 cargo test --release -p vigil-model --test fuzz`.
//! Seeds are random per run (proptest's default); a failure prints the
//! shrunk input, which becomes a regression test.

#![allow(dead_code)] // Each target uses its own part.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Cases for this run: `VIGIL_FUZZ_CASES`, else `default`.
pub(super) fn cases(default: u32) -> u32 {
    std::env::var("VIGIL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `check` on `cases(default)` inputs of `strategy`; panics with the
/// shrunk failing input. Prints `fuzz <name>: <cases> cases in <s> s`, and
/// the same with `(running)` every minute of a long run, so that a run cut
/// short still says how far it got.
pub(super) fn run<S: Strategy>(
    name: &str,
    default: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let done = std::cell::Cell::new(0u64);
    let last_report = std::cell::Cell::new(Instant::now());
    let began = Instant::now();
    let check = |value: S::Value| {
        done.set(done.get() + 1);
        if last_report.get().elapsed().as_secs() >= 60 {
            last_report.set(Instant::now());
            eprintln!(
                "fuzz {name}: {} cases in {:.1} s (running)",
                done.get(),
                began.elapsed().as_secs_f64()
            );
        }
        check(value)
    };
    let cases = cases(default);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // A failing input is shrunk, but not for ever.
        max_shrink_iters: 4096,
        // The generators filter next to nothing, but over millions of
        // cases a few filtered values add up past the default 65 536.
        max_local_rejects: u32::MAX,
        ..Config::default()
    });
    let result = runner.run(&strategy, check);
    // Calls of `check`: the cases, plus any shrinking after a failure.
    eprintln!(
        "fuzz {name}: {} cases in {:.1} s",
        done.get(),
        began.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name} failed: {e}");
    }
}

/// How the cases of a run came out (accepted, refused by reason, …), so a
/// run shows that its generator reaches both sides of every check.
#[derive(Default)]
pub(super) struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    pub(super) fn add(&self, outcome: impl Into<String>) {
        *self.0.lock().unwrap().entry(outcome.into()).or_default() += 1;
    }

    /// `fuzz <name> outcomes: accepted 31.0%, missing_field 12.5%, …`
    pub(super) fn print(&self, name: &str) {
        let counts = self.0.lock().unwrap();
        let total: u64 = counts.values().sum();
        let shown: Vec<String> = counts
            .iter()
            .map(|(k, n)| format!("{k} {:.1}%", 100.0 * *n as f64 / total.max(1) as f64))
            .collect();
        eprintln!("fuzz {name} outcomes: {}", shown.join(", "));
    }
}

/// Strings people and programs get wrong: empty, padded, control and
/// bidi characters, NUL, CJK, emoji, long.
pub(super) fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\0".to_owned()),
        Just("\u{202e}evil\u{202c}".to_owned()),
        Just("电梯 🛗 \u{fffd}".to_owned()),
        Just("\"quoted\"\\\n".to_owned()),
        Just("Robert'); DROP TABLE owners;--".to_owned()),
        "[a-zA-Z0-9_]{1,16}",
        any::<String>(),
        (1usize..5000).prop_map(|n| "x".repeat(n)),
        (1usize..300).prop_map(|n| "界".repeat(n)),
    ]
    .boxed()
}

/// Numbers at and beyond every kind of edge.
pub(super) fn edge_number() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(5e-324)),
        Just(json!(-0.0)),
        Just(json!(1e300)),
        Just(json!(3.4028236e38)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        // JSON has no NaN or infinity: those become 0.
        any::<f64>().prop_map(|f| json!(if f.is_finite() { f } else { 0.0 })),
        (-1000.0f64..1000.0).prop_map(|f| json!(f)),
    ]
    .boxed()
}

/// Any JSON value, nested up to `depth`, biased to edges.
pub(super) fn any_json(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        edge_number(),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// `text`, one time in five with a character cut or a stray one put in:
/// the typo that turns a good statement or condition into a bad one.
pub(super) fn typo(text: BoxedStrategy<String>) -> BoxedStrategy<String> {
    let edit = prop_oneof![
        4 => Just(None),
        1 => (0.0f64..1.0, prop::option::of(any::<char>())).prop_map(Some),
    ];
    (text, edit)
        .prop_map(|(text, edit)| match edit {
            None => text,
            Some((p, c)) => {
                let mut chars: Vec<char> = text.chars().collect();
                let i = ((p * chars.len() as f64) as usize).min(chars.len());
                match c {
                    Some(c) => chars.insert(i, c),
                    None if i < chars.len() => {
                        chars.remove(i);
                    }
                    None => {}
                }
                chars.into_iter().collect()
            }
        })
        .boxed()
}

/// Text-level damage to serialized JSON: what a broken device or client
/// sends. Applied after the structured mutations.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    None,
    /// Cut at this fraction of the length.
    Truncate(f64),
    /// Overwrite one byte.
    Byte(f64, u8),
    /// Insert text (a huge number literal, a stray quote, …).
    Insert(f64, String),
    /// Wrap in this many arrays (`[[[…]]]`).
    Nest(usize),
    /// Repeat the first key with another value (a duplicate key).
    DuplicateKey(String),
    /// A byte-order mark or garbage before the document.
    Prefix(Vec<u8>),
}

pub(super) fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => (0.0f64..1.0).prop_map(Damage::Truncate),
        1 => (0.0f64..1.0, any::<u8>()).prop_map(|(p, b)| Damage::Byte(p, b)),
        1 => (
            0.0f64..1.0,
            prop_oneof![
                Just("1e999999".to_owned()),
                Just("-0".to_owned()),
                Just("123456789012345678901234567890".to_owned()),
                Just("0.".to_owned()),
                Just("\"".to_owned()),
                Just("\\u0000".to_owned()),
                Just("\\ud800".to_owned()),
                Just(",".to_owned()),
                Just("}".to_owned()),
            ]
        )
            .prop_map(|(p, s)| Damage::Insert(p, s)),
        1 => prop_oneof![1usize..200, Just(5000usize)].prop_map(Damage::Nest),
        1 => any_json(1).prop_map(|v| Damage::DuplicateKey(v.to_string())),
        1 => prop_oneof![
            Just(vec![0xef, 0xbb, 0xbf]),
            Just(vec![0xff, 0xfe]),
            Just(b" \t\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 1..8),
        ]
        .prop_map(Damage::Prefix),
    ]
    .boxed()
}

/// The serialized document with `damage` done to it.
pub(super) fn damaged(doc: &Value, damage: &Damage) -> Vec<u8> {
    let mut bytes = doc.to_string().into_bytes();
    let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
    match damage {
        Damage::None => {}
        Damage::Truncate(p) => bytes.truncate(at(*p, bytes.len())),
        Damage::Byte(p, b) => {
            if !bytes.is_empty() {
                let i = at(*p, bytes.len() - 1);
                bytes[i] = *b;
            }
        }
        Damage::Insert(p, s) => {
            let i = at(*p, bytes.len());
            bytes.splice(i..i, s.bytes());
        }
        Damage::Nest(n) => {
            let mut out = "[".repeat(*n).into_bytes();
            out.extend_from_slice(&bytes);
            out.extend(std::iter::repeat_n(b']', *n));
            bytes = out;
        }
        Damage::DuplicateKey(value) => {
            if let Value::Object(map) = doc
                && let Some(key) = map.keys().next()
                && bytes.first() == Some(&b'{')
            {
                let field = format!("{}:{value},", Value::String(key.clone()));
                bytes.splice(1..1, field.into_bytes());
            }
        }
        Damage::Prefix(p) => {
            bytes.splice(0..0, p.iter().copied());
        }
    }
    bytes
}
