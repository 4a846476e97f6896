//! Topic parsing, JSON decoding and validation of device messages.
//!
//! Decoding goes through the object's members rather than derived structs
//! so that every rejection can name the field and what was wrong with it,
//! and so that unknown extra fields are kept rather than dropped.

use std::borrow::Cow;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::ids::DeviceId;
use crate::reading::*;
use crate::{EpochMs, MAX_PAYLOAD_BYTES};

/// Why a message was not stored as a reading. The `snake_case` name is the
/// `reason` label of `vigil_ingest_rejected_total` and of `dead_letters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The topic is not `/tenants/{device_id}/v1/{stream}` with a known stream.
    BadTopic,
    /// Larger than 64 KiB.
    Oversize,
    /// Not UTF-8 JSON, or not a JSON object.
    MalformedJson,
    /// A required field is absent (or null).
    MissingField,
    /// A field has the wrong JSON type or an unknown enum word.
    WrongType,
    /// A field is of the right type but outside its unit range.
    OutOfRange,
    /// The device is not in the registry.
    UnknownDevice,
    /// The device is registered but disabled.
    DisabledDevice,
    /// A logged-in device published under another device's topic.
    ForeignTopic,
    /// An implausible `seq`: above 2^63 − 1, or further above the device's
    /// highest seq than `ingest.max_seq_rate` lets it advance.
    SeqJump,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::BadTopic,
        RejectReason::Oversize,
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::OutOfRange,
        RejectReason::UnknownDevice,
        RejectReason::DisabledDevice,
        RejectReason::ForeignTopic,
        RejectReason::SeqJump,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadTopic => "bad_topic",
            RejectReason::Oversize => "oversize",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::DisabledDevice => "disabled_device",
            RejectReason::ForeignTopic => "foreign_topic",
            RejectReason::SeqJump => "seq_jump",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the reason (a metric label) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Where the broker puts what `device` published outside its own topics
/// (another device's, or no device's): still under the publisher's name,
/// so the message is judged and dead-lettered as the publisher's, never as a
/// reading of the device it names. The original topic follows verbatim.
pub fn foreign_topic(device: &str, topic: &str) -> String {
    format!("/tenants/{device}/v1/foreign:{topic}")
}

/// Splits `/tenants/{device_id}/v1/{stream}`.
pub fn parse_topic(topic: &str) -> Result<(DeviceId, Stream), Rejection> {
    let bad = |why: &str| Rejection::new(RejectReason::BadTopic, format!("topic {topic:?}: {why}"));
    let rest = topic
        .strip_prefix("/tenants/")
        .ok_or_else(|| bad("expected /tenants/{device_id}/v1/{stream}"))?;
    if let Some((device, original)) = rest
        .split_once('/')
        .and_then(|(d, after)| Some((d, after.strip_prefix("v1/foreign:")?)))
    {
        return Err(Rejection::new(
            RejectReason::ForeignTopic,
            format!("device {device} published outside its own topics, on {original:?}"),
        ));
    }
    let mut parts = rest.split('/');
    let (Some(device), Some(version), Some(stream), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected /tenants/{device_id}/v1/{stream}"));
    };
    let device_id = DeviceId::new(device).map_err(|e| bad(&e.to_string()))?;
    if version != "v1" {
        return Err(bad("only protocol version v1 is supported"));
    }
    let stream = Stream::parse(stream)
        .ok_or_else(|| bad("unknown stream; expected elevator, ride, video, filling or event"))?;
    Ok((device_id, stream))
}

/// The topic a device publishes a stream on.
pub fn topic_for(device_id: &DeviceId, stream: Stream) -> String {
    format!("/tenants/{device_id}/v1/{}", stream.as_str())
}

/// The topic the engine publishes a device's ack watermark on.
pub fn ack_topic(device_id: &DeviceId) -> String {
    format!("/tenants/{device_id}/v1/ack")
}

/// Limits on the device clock: a `ts` before 2000 or more than a day ahead
/// of the engine is a broken clock, and rules measure durations on `ts`.
const EARLIEST_TS: EpochMs = 946_684_800_000;
const MAX_CLOCK_AHEAD_MS: EpochMs = 24 * 3600 * 1000;

/// Decodes and validates one payload. `now` is the engine's clock, used only
/// to refuse device timestamps far in the future.
pub fn decode(
    device_id: DeviceId,
    stream: Stream,
    payload: &[u8],
    now: EpochMs,
) -> Result<Reading, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            RejectReason::Oversize,
            format!(
                "payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    let object: Object = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("not valid JSON: {e}")))?;
    let Object(Some(members)) = object else {
        return Err(Rejection::new(
            RejectReason::MalformedJson,
            "payload must be a JSON object",
        ));
    };
    let mut f = Fields { members, stream };
    let seq = f.u64("seq")?;
    let ts = f.i64("ts")?;
    if !(EARLIEST_TS..=now + MAX_CLOCK_AHEAD_MS).contains(&ts) {
        return Err(Rejection::new(
            RejectReason::OutOfRange,
            format!(
                "field `ts` = {ts} is not a plausible device time (epoch milliseconds, UTC, from 2000 up to a day ahead of the engine)"
            ),
        ));
    }
    let payload = match stream {
        Stream::Elevator => Payload::Elevator(ElevatorSample {
            floor: f.int_in("floor", i16::MIN as i64, i16::MAX as i64)? as i16,
            direction: f.word("direction", Direction::parse, Direction::WORDS)?,
            speed_mps: f.f32_in("speed_mps", 0.0, 30.0)?,
            door: f.word("door", Door::parse, Door::WORDS)?,
            leveled: f.bool("leveled")?,
            occupied: f.bool("occupied")?,
            mode: f.word("mode", ElevatorMode::parse, ElevatorMode::WORDS)?,
            safety_circuit: f.bool("safety_circuit")?,
            door_lock: f.bool("door_lock")?,
            alarm_button: f.bool("alarm_button")?,
            power: f.word("power", Power::parse, Power::WORDS)?,
            limit: f.word("limit", Limit::parse, Limit::WORDS)?,
            run_count: f.opt(|f| f.u64("run_count"), "run_count")?,
            load_pct: f.opt(|f| f.f32_in("load_pct", 0.0, 300.0), "load_pct")?,
        }),
        Stream::Ride => Payload::Ride(RideSample {
            state: f.word("state", RideState::parse, RideState::WORDS)?,
            speed_mps: f.f32_in("speed_mps", 0.0, 200.0)?,
            wind_mps: f.opt(|f| f.f32_in("wind_mps", 0.0, 100.0), "wind_mps")?,
            restraints_locked: f.bool("restraints_locked")?,
            vibration_mm_s: f.opt(
                |f| f.f32_in("vibration_mm_s", 0.0, 1000.0),
                "vibration_mm_s",
            )?,
            brake: f.word("brake", Brake::parse, Brake::WORDS)?,
            passengers: f.opt(
                |f| f.int_in("passengers", 0, u16::MAX as i64).map(|v| v as u16),
                "passengers",
            )?,
        }),
        Stream::Video => Payload::Video(VideoEvent {
            camera_id: f.string("camera_id")?,
            event: f.word("event", VideoKind::parse, VideoKind::WORDS)?,
            confidence: f.f32_in("confidence", 0.0, 1.0)?,
            snapshot: f.opt(|f| f.string("snapshot"), "snapshot")?,
        }),
        Stream::Filling => Payload::Filling(FillingRecord {
            cylinder_code: f.string("cylinder_code")?,
            operator_id: f.string("operator_id")?,
            medium: f.string("medium")?,
            tare_kg: f.f32_in("tare_kg", 0.0, 10_000.0)?,
            net_kg: f.f32_in("net_kg", 0.0, 10_000.0)?,
            pressure_mpa: f.opt(|f| f.f32_in("pressure_mpa", 0.0, 200.0), "pressure_mpa")?,
            temp_c: f.opt(|f| f.f32_in("temp_c", -80.0, 200.0), "temp_c")?,
            started_ms: {
                let started = f.i64("started_ms")?;
                if started > ts {
                    return Err(Rejection::new(
                        RejectReason::OutOfRange,
                        format!("field `started_ms` = {started} is after the record's `ts` = {ts}"),
                    ));
                }
                started
            },
            result: f.word("result", FillResult::parse, FillResult::WORDS)?,
        }),
        Stream::Event => Payload::Event(ControllerEvent {
            code: f.string("code")?,
            text: f.opt(|f| f.string("text"), "text")?,
            active: f.bool("active")?,
        }),
    };
    let extra = if f.members.is_empty() {
        None
    } else {
        let extras: Map<String, Value> = f
            .members
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect();
        Some(Value::Object(extras).to_string())
    };
    Ok(Reading {
        device_id,
        seq,
        ts,
        received_at: now,
        payload,
        extra,
    })
}

/// A payload's top-level members, or `None` when it is valid JSON but not an
/// object. Kept as a short list with the names borrowed from the payload: a
/// reading has a dozen fields, and building a `serde_json::Map` (a B-tree
/// of owned keys) was a third of the ingest thread's decoding time.
struct Object<'a>(Option<Vec<(Cow<'a, str>, Value)>>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Value)> = Vec::with_capacity(16);
        while let Some(Key(name)) = map.next_key()? {
            let value: Value = map.next_value()?;
            // A repeated name keeps its last value, as `serde_json::Map` does.
            match members.iter_mut().find(|(n, _)| *n == name) {
                Some(member) => member.1 = value,
                None => members.push((name, value)),
            }
        }
        Ok(Object(Some(members)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Object(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Object(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Object(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Object(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Object(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Object(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Object(None))
    }
}

/// A member name, borrowed from the payload unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The object being decoded; each getter removes its field so that what is
/// left at the end are the unknown extras.
struct Fields<'a> {
    members: Vec<(Cow<'a, str>, Value)>,
    stream: Stream,
}

impl Fields<'_> {
    fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.members.iter().position(|(n, _)| n == name)?;
        Some(self.members.swap_remove(at).1)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn take(&mut self, name: &str) -> Result<Value, Rejection> {
        match self.remove(name) {
            None | Some(Value::Null) => Err(Rejection::new(
                RejectReason::MissingField,
                format!(
                    "{} message lacks required field `{name}`",
                    self.stream.as_str()
                ),
            )),
            Some(v) => Ok(v),
        }
    }

    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, Rejection>,
        name: &str,
    ) -> Result<Option<T>, Rejection> {
        match self.get(name) {
            None | Some(Value::Null) => {
                self.remove(name);
                Ok(None)
            }
            Some(_) => get(self).map(Some),
        }
    }

    fn wrong(name: &str, expected: &str, got: &Value) -> Rejection {
        let shown = match got {
            Value::String(s) if s.len() > 40 => format!("a {}-byte string", s.len()),
            Value::Array(_) => "an array".to_owned(),
            Value::Object(_) => "an object".to_owned(),
            other => other.to_string(),
        };
        Rejection::new(
            RejectReason::WrongType,
            format!("field `{name}` must be {expected}, got {shown}"),
        )
    }

    fn range(name: &str, value: impl std::fmt::Display, range: &str) -> Rejection {
        Rejection::new(
            RejectReason::OutOfRange,
            format!("field `{name}` = {value} is outside {range}"),
        )
    }

    fn u64(&mut self, name: &str) -> Result<u64, Rejection> {
        let v = self.take(name)?;
        match &v {
            Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
            Value::Number(n) if n.is_i64() => Err(Self::range(name, n, "0 ..= 2^64-1")),
            _ => Err(Self::wrong(name, "a non-negative integer", &v)),
        }
    }

    fn i64(&mut self, name: &str) -> Result<i64, Rejection> {
        let v = self.take(name)?;
        match &v {
            Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
            Value::Number(n) if n.is_u64() => Err(Self::range(name, n, "the 64-bit signed range")),
            _ => Err(Self::wrong(name, "an integer (epoch milliseconds)", &v)),
        }
    }

    fn int_in(&mut self, name: &str, lo: i64, hi: i64) -> Result<i64, Rejection> {
        let v = self.take(name)?;
        let Value::Number(n) = &v else {
            return Err(Self::wrong(name, "an integer", &v));
        };
        let Some(i) = n.as_i64() else {
            return if n.is_u64() {
                Err(Self::range(name, n, &format!("{lo} ..= {hi}")))
            } else {
                Err(Self::wrong(name, "an integer", &v))
            };
        };
        if (lo..=hi).contains(&i) {
            Ok(i)
        } else {
            Err(Self::range(name, i, &format!("{lo} ..= {hi}")))
        }
    }

    fn f32_in(&mut self, name: &str, lo: f32, hi: f32) -> Result<f32, Rejection> {
        let v = self.take(name)?;
        let Some(x) = v.as_f64() else {
            return Err(Self::wrong(name, "a number", &v));
        };
        let x = x as f32;
        if x.is_finite() && (lo..=hi).contains(&x) {
            Ok(x)
        } else {
            Err(Self::range(name, x, &format!("{lo} ..= {hi}")))
        }
    }

    fn bool(&mut self, name: &str) -> Result<bool, Rejection> {
        let v = self.take(name)?;
        v.as_bool()
            .ok_or_else(|| Self::wrong(name, "true or false", &v))
    }

    fn string(&mut self, name: &str) -> Result<String, Rejection> {
        let v = self.take(name)?;
        match v {
            Value::String(s) if s.len() <= 256 => Ok(s),
            Value::String(s) => Err(Self::range(
                name,
                format!("a {}-byte string", s.len()),
                "at most 256 bytes",
            )),
            other => Err(Self::wrong(name, "a string", &other)),
        }
    }

    fn word<T>(
        &mut self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        words: &[&str],
    ) -> Result<T, Rejection> {
        let v = self.take(name)?;
        let expected = || {
            format!(
                "one of {}",
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match &v {
            Value::String(s) => parse(s).ok_or_else(|| Self::wrong(name, &expected(), &v)),
            _ => Err(Self::wrong(name, &expected(), &v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: EpochMs = 1_732_300_000_000;

    fn dev() -> DeviceId {
        DeviceId::new("EL1").unwrap()
    }

    fn elevator_json() -> Value {
        serde_json::json!({
            "seq": 7, "ts": NOW - 1000, "floor": 3, "direction": "up", "speed_mps": 1.5,
            "door": "closed", "leveled": false, "occupied": true, "mode": "normal",
            "safety_circuit": true, "door_lock": true, "alarm_button": false,
            "power": "mains", "limit": "none", "run_count": 1200, "firmware": "2.1"
        })
    }

    fn decode_value(stream: Stream, v: &Value) -> Result<Reading, Rejection> {
        decode(dev(), stream, v.to_string().as_bytes(), NOW)
    }

    #[test]
    fn decodes_an_elevator_sample_and_keeps_extras() {
        let r = decode_value(Stream::Elevator, &elevator_json()).unwrap();
        assert_eq!((r.seq, r.ts, r.received_at), (7, NOW - 1000, NOW));
        let Payload::Elevator(s) = &r.payload else {
            panic!("wrong payload {r:?}")
        };
        assert_eq!(
            (s.floor, s.direction, s.door, s.run_count, s.load_pct),
            (3, Direction::Up, Door::Closed, Some(1200), None)
        );
        assert_eq!(r.extra.as_deref(), Some(r#"{"firmware":"2.1"}"#));
    }

    #[test]
    fn names_the_reason_and_the_field() {
        type Edit = Box<dyn Fn(&mut Map<String, Value>)>;
        let cases: Vec<(Edit, RejectReason, &str)> = vec![
            (
                Box::new(|m| {
                    m.remove("door");
                }),
                RejectReason::MissingField,
                "`door`",
            ),
            (
                Box::new(|m| {
                    m.insert("seq".into(), Value::Null);
                }),
                RejectReason::MissingField,
                "`seq`",
            ),
            (
                Box::new(|m| {
                    m.insert("floor".into(), "3".into());
                }),
                RejectReason::WrongType,
                "`floor`",
            ),
            (
                Box::new(|m| {
                    m.insert("door".into(), "ajar".into());
                }),
                RejectReason::WrongType,
                "\"closing\"",
            ),
            (
                Box::new(|m| {
                    m.insert("speed_mps".into(), (-1.0).into());
                }),
                RejectReason::OutOfRange,
                "`speed_mps`",
            ),
            (
                Box::new(|m| {
                    m.insert("floor".into(), 40000.into());
                }),
                RejectReason::OutOfRange,
                "`floor`",
            ),
            (
                Box::new(|m| {
                    m.insert("seq".into(), (-5).into());
                }),
                RejectReason::OutOfRange,
                "`seq`",
            ),
            (
                Box::new(|m| {
                    m.insert("ts".into(), (NOW + 2 * 86_400_000).into());
                }),
                RejectReason::OutOfRange,
                "`ts`",
            ),
            (
                Box::new(|m| {
                    m.insert("ts".into(), 1732300000.into());
                }),
                RejectReason::OutOfRange,
                "`ts`",
            ),
        ];
        for (mutate, reason, mention) in cases {
            let mut v = elevator_json();
            mutate(v.as_object_mut().unwrap());
            let err = decode_value(Stream::Elevator, &v).unwrap_err();
            assert_eq!(err.reason, reason, "{err}");
            assert!(
                err.detail.contains(mention),
                "{err} should mention {mention}"
            );
        }
    }

    /// The member list behaves as `serde_json::Map` did: a repeated name
    /// keeps its last value, escaped names are unescaped, extras come out
    /// sorted by name, and any JSON that is not an object is refused.
    #[test]
    fn members_read_as_a_json_object_would() {
        let raw = br#"{"seq": 1, "ts": 1732299999000, "code": "E01", "active": false,
            "zeta": [1, {"a": null}], "\u0061ctive": true, "alpha": {"x": "y"}, "seq": 2}"#;
        let r = decode(dev(), Stream::Event, raw, NOW).unwrap();
        assert_eq!(r.seq, 2, "the last of two `seq` members counts");
        let Payload::Event(e) = &r.payload else {
            panic!("wrong payload {r:?}")
        };
        assert!(
            e.active,
            "an escaped name is the same name, and the later value counts"
        );
        assert_eq!(
            r.extra.as_deref(),
            Some(r#"{"alpha":{"x":"y"},"zeta":[1,{"a":null}]}"#)
        );
        for not_an_object in [
            &b"[{\"seq\": 1}]"[..],
            b"7",
            b"-1.5e3",
            b"\"{}\"",
            b"true",
            b"null",
        ] {
            let rejection = decode(dev(), Stream::Event, not_an_object, NOW).unwrap_err();
            assert_eq!(
                (rejection.reason, rejection.detail.as_str()),
                (RejectReason::MalformedJson, "payload must be a JSON object"),
                "{}",
                String::from_utf8_lossy(not_an_object)
            );
        }
        let trailing = decode(dev(), Stream::Event, b"{} {}", NOW).unwrap_err();
        assert_eq!(trailing.reason, RejectReason::MalformedJson);
    }

    #[test]
    fn refuses_non_json_non_objects_and_oversize() {
        assert_eq!(
            decode(dev(), Stream::Event, b"{\"seq\":", NOW)
                .unwrap_err()
                .reason,
            RejectReason::MalformedJson
        );
        assert_eq!(
            decode(dev(), Stream::Event, b"[1,2]", NOW)
                .unwrap_err()
                .reason,
            RejectReason::MalformedJson
        );
        assert_eq!(
            decode(dev(), Stream::Event, &[0xff, 0xfe], NOW)
                .unwrap_err()
                .reason,
            RejectReason::MalformedJson
        );
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode(dev(), Stream::Event, &big, NOW).unwrap_err().reason,
            RejectReason::Oversize
        );
    }

    #[test]
    fn decodes_every_stream() {
        let ev = serde_json::json!({"seq": 1, "ts": NOW, "code": "E01", "active": true});
        assert!(matches!(
            decode_value(Stream::Event, &ev).unwrap().payload,
            Payload::Event(ControllerEvent { active: true, .. })
        ));
        let ride = serde_json::json!({"seq": 1, "ts": NOW, "state": "running", "speed_mps": 3.0, "restraints_locked": true, "brake": "ok"});
        assert!(matches!(
            decode_value(Stream::Ride, &ride).unwrap().payload,
            Payload::Ride(_)
        ));
        let video = serde_json::json!({"seq": 1, "ts": NOW, "camera_id": "c1", "event": "electric_bike", "confidence": 0.9});
        assert!(matches!(
            decode_value(Stream::Video, &video).unwrap().payload,
            Payload::Video(_)
        ));
        let fill = serde_json::json!({"seq": 1, "ts": NOW, "cylinder_code": "C1", "operator_id": "P1", "medium": "LPG",
            "tare_kg": 15.0, "net_kg": 14.5, "started_ms": NOW - 60_000, "result": "ok"});
        assert!(matches!(
            decode_value(Stream::Filling, &fill).unwrap().payload,
            Payload::Filling(_)
        ));
    }

    #[test]
    fn parses_topics() {
        assert_eq!(
            parse_topic("/tenants/EL1/v1/elevator").unwrap(),
            (dev(), Stream::Elevator)
        );
        for bad in [
            "tenants/EL1/v1/elevator",
            "/tenants/EL1/v2/elevator",
            "/tenants/EL1/v1/weather",
            "/tenants/E-1/v1/event",
            "/tenants/EL1/v1/event/x",
        ] {
            assert_eq!(
                parse_topic(bad).unwrap_err().reason,
                RejectReason::BadTopic,
                "{bad}"
            );
        }
    }
}
