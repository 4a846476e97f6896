//! Hostile payloads and topics through the v1 codec: valid messages of
//! every stream, mutated field by field (removed, wrong type, edge numbers,
//! nasty strings, unknown extras) and then damaged as text (truncated, a
//! byte flipped, huge number literals, deep nesting, duplicate keys, BOMs).
//! The codec must never panic, must accept what is valid, and must answer
//! everything else with a short, bounded reason.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::*;
use vigil_model::codec::{decode, parse_topic, topic_for};
use vigil_model::reading::*;
use vigil_model::{DeviceId, Payload, RejectReason, Stream};

const NOW: i64 = 1_732_300_000_000;
const EARLIEST_TS: i64 = 946_684_800_000;
const LATEST_TS: i64 = NOW + 86_400_000;

#[derive(Debug, Clone, Copy)]
enum Kind {
    U64,
    Ts,
    Started,
    Int(i64, i64),
    Float(f64, f64),
    Bool,
    Word(&'static [&'static str]),
    Text,
}

/// (field, kind, required) of each stream, as protocol.md has them.
fn fields(stream: Stream) -> Vec<(&'static str, Kind, bool)> {
    use Kind::*;
    let mut f = vec![("seq", U64, true), ("ts", Ts, true)];
    f.extend(match stream {
        Stream::Elevator => vec![
            ("floor", Int(i16::MIN as i64, i16::MAX as i64), true),
            ("direction", Word(Direction::WORDS), true),
            ("speed_mps", Float(0.0, 30.0), true),
            ("door", Word(Door::WORDS), true),
            ("leveled", Bool, true),
            ("occupied", Bool, true),
            ("mode", Word(ElevatorMode::WORDS), true),
            ("safety_circuit", Bool, true),
            ("door_lock", Bool, true),
            ("alarm_button", Bool, true),
            ("power", Word(Power::WORDS), true),
            ("limit", Word(Limit::WORDS), true),
            ("run_count", U64, false),
            ("load_pct", Float(0.0, 300.0), false),
        ],
        Stream::Ride => vec![
            ("state", Word(RideState::WORDS), true),
            ("speed_mps", Float(0.0, 200.0), true),
            ("wind_mps", Float(0.0, 100.0), false),
            ("restraints_locked", Bool, true),
            ("vibration_mm_s", Float(0.0, 1000.0), false),
            ("brake", Word(Brake::WORDS), true),
            ("passengers", Int(0, u16::MAX as i64), false),
        ],
        Stream::Video => vec![
            ("camera_id", Text, true),
            ("event", Word(VideoKind::WORDS), true),
            ("confidence", Float(0.0, 1.0), true),
            ("snapshot", Text, false),
        ],
        Stream::Filling => vec![
            ("cylinder_code", Text, true),
            ("operator_id", Text, true),
            ("medium", Text, true),
            ("tare_kg", Float(0.0, 10_000.0), true),
            ("net_kg", Float(0.0, 10_000.0), true),
            ("pressure_mpa", Float(0.0, 200.0), false),
            ("temp_c", Float(-80.0, 200.0), false),
            ("started_ms", Started, true),
            ("result", Word(FillResult::WORDS), true),
        ],
        Stream::Event => vec![
            ("code", Text, true),
            ("text", Text, false),
            ("active", Bool, true),
        ],
    });
    f
}

/// A valid value of `kind` (`ts` is the message's own time).
fn valid(kind: Kind, ts: i64) -> BoxedStrategy<Value> {
    match kind {
        Kind::U64 => any::<u64>().prop_map(|n| json!(n)).boxed(),
        Kind::Ts => Just(json!(ts)).boxed(),
        Kind::Started => (0i64..=ts).prop_map(|n| json!(n)).boxed(),
        Kind::Int(lo, hi) => (lo..=hi).prop_map(|n| json!(n)).boxed(),
        Kind::Float(lo, hi) => prop_oneof![
            Just(json!(lo)),
            Just(json!(hi)),
            // What a device's f32 sends, in range.
            (lo..hi).prop_map(|x| json!((x as f32) as f64)),
        ]
        .boxed(),
        Kind::Bool => any::<bool>().prop_map(|b| json!(b)).boxed(),
        Kind::Word(words) => prop::sample::select(words).prop_map(|w| json!(w)).boxed(),
        Kind::Text => prop_oneof!["[A-Z0-9]{1,20}", "\\PC{0,60}", Just("界".repeat(85)),]
            .prop_map(|s| json!(s))
            .boxed(),
    }
}

/// What is done to one field of a valid message.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Null(usize),
    Replace(usize, Value),
    Extra(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..16).prop_map(Mutation::Remove),
        (0usize..16).prop_map(Mutation::Null),
        (0usize..16, any_json(3)).prop_map(|(i, v)| Mutation::Replace(i, v)),
        ("[a-z_]{1,20}", any_json(2)).prop_map(|(k, v)| Mutation::Extra(k, v)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    stream: Stream,
    valid: Map<String, Value>,
    mutations: Vec<Mutation>,
    damage: Damage,
}

fn case() -> impl Strategy<Value = Case> {
    let stream = prop::sample::select(Stream::ALL.to_vec());
    (stream, EARLIEST_TS..LATEST_TS).prop_flat_map(|(stream, ts)| {
        let values: Vec<_> = fields(stream)
            .into_iter()
            .map(|(name, kind, required)| {
                let v = valid(kind, ts);
                // Optional fields come and go.
                let v = if required {
                    v.prop_map(Some).boxed()
                } else {
                    prop::option::of(v).boxed()
                };
                v.prop_map(move |v| v.map(|v| (name, v)))
            })
            .collect();
        (
            Just(stream),
            values,
            prop::collection::vec(mutation(), 0..4),
            damage(),
        )
            .prop_map(|(stream, values, mutations, damage)| Case {
                stream,
                valid: values
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                mutations,
                damage,
            })
    })
}

fn apply(case: &Case) -> Value {
    let mut map = case.valid.clone();
    let names: Vec<&str> = fields(case.stream).iter().map(|f| f.0).collect();
    for m in &case.mutations {
        match m {
            Mutation::Remove(i) => {
                map.remove(names[i % names.len()]);
            }
            Mutation::Null(i) => {
                map.insert(names[i % names.len()].to_owned(), Value::Null);
            }
            Mutation::Replace(i, v) => {
                map.insert(names[i % names.len()].to_owned(), v.clone());
            }
            Mutation::Extra(k, v) => {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(map)
}

fn in_range(x: f32, lo: f32, hi: f32) -> bool {
    x.is_finite() && (lo..=hi).contains(&x)
}

/// What an accepted reading must satisfy whatever was sent.
fn sane(r: &vigil_model::Reading, stream: Stream) -> Result<(), String> {
    if !(EARLIEST_TS..=LATEST_TS).contains(&r.ts) {
        return Err(format!("ts {} accepted", r.ts));
    }
    let text_ok = |s: &str| s.len() <= 256;
    let ok = match (&r.payload, stream) {
        (Payload::Elevator(e), Stream::Elevator) => {
            in_range(e.speed_mps, 0.0, 30.0) && e.load_pct.is_none_or(|l| in_range(l, 0.0, 300.0))
        }
        (Payload::Ride(x), Stream::Ride) => {
            in_range(x.speed_mps, 0.0, 200.0)
                && x.wind_mps.is_none_or(|w| in_range(w, 0.0, 100.0))
                && x.vibration_mm_s.is_none_or(|v| in_range(v, 0.0, 1000.0))
        }
        (Payload::Video(v), Stream::Video) => {
            in_range(v.confidence, 0.0, 1.0)
                && text_ok(&v.camera_id)
                && v.snapshot.as_deref().is_none_or(text_ok)
        }
        (Payload::Filling(f), Stream::Filling) => {
            in_range(f.tare_kg, 0.0, 10_000.0)
                && in_range(f.net_kg, 0.0, 10_000.0)
                && f.started_ms <= r.ts
                && text_ok(&f.cylinder_code)
                && text_ok(&f.operator_id)
        }
        (Payload::Event(e), Stream::Event) => text_ok(&e.code),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("accepted out of range: {:?}", r.payload))
    }
}

#[test]
fn hostile_payloads_never_panic_and_get_a_short_reason() {
    let device = DeviceId::new("EL1").unwrap();
    let tally = Tally::default();
    run("codec.decode", 3000, case(), |case| {
        let doc = apply(&case);
        let bytes = damaged(&doc, &case.damage);
        let first = decode(device.clone(), case.stream, &bytes, NOW);
        let again = decode(device.clone(), case.stream, &bytes, NOW);
        prop_assert_eq!(&first, &again, "decoding is deterministic");
        match first {
            Ok(reading) => {
                tally.add("accepted");
                prop_assert_eq!(&reading.device_id, &device);
                if let Err(why) = sane(&reading, case.stream) {
                    return Err(TestCaseError::fail(why));
                }
            }
            Err(rejection) => {
                tally.add(rejection.reason.as_str());
                prop_assert!(!rejection.detail.is_empty());
                prop_assert!(
                    rejection.detail.len() <= 600,
                    "a reason is short, whatever was sent ({} bytes): {}",
                    rejection.detail.len(),
                    rejection.detail.chars().take(200).collect::<String>()
                );
                let untouched = case.mutations.is_empty() && matches!(case.damage, Damage::None);
                prop_assert!(
                    !untouched,
                    "a valid {} message was refused: {}",
                    case.stream.as_str(),
                    rejection.detail
                );
            }
        }
        Ok(())
    });
    tally.print("codec.decode");
}

#[test]
fn hostile_topics_never_panic_and_round_trip() {
    let piece = prop_oneof![
        Just("tenants".to_owned()),
        Just("v1".to_owned()),
        Just("v2".to_owned()),
        Just(String::new()),
        Just("+".to_owned()),
        Just("#".to_owned()),
        Just("v1/foreign:".to_owned()),
        Just("EL1".to_owned()),
        prop::sample::select(Stream::ALL.to_vec()).prop_map(|s| s.as_str().to_owned()),
        "[A-Za-z0-9]{1,70}",
        nasty_string(),
    ];
    let topic = (any::<bool>(), prop::collection::vec(piece, 0..7)).prop_map(|(lead, parts)| {
        let joined = parts.join("/");
        if lead { format!("/{joined}") } else { joined }
    });
    run("codec.parse_topic", 3000, topic, |topic| {
        match parse_topic(&topic) {
            Ok((device, stream)) => {
                prop_assert_eq!(topic_for(&device, stream), topic);
            }
            Err(r) => {
                prop_assert!(
                    matches!(
                        r.reason,
                        RejectReason::BadTopic | RejectReason::ForeignTopic
                    ),
                    "{:?}",
                    r
                );
                prop_assert!(r.detail.len() <= 600 + topic.len() * 2);
            }
        }
        Ok(())
    });
}
