//! Rules a configuration defines: a table under `[rule."ID"]` with a `when`
//! condition over one stream's fields, registry parameters (`param.x`) and
//! the rule's own thresholds (`rule.x`), checked here into a [`Definition`]
//! the engine evaluates like a built-in rule.
//!
//! ```toml
//! [rule."site.car_overload"]
//! stream = "elevator"
//! when = "load_pct > rule.limit_pct and speed_mps > 0"
//! for_s = 5
//! clear_when = "load_pct < rule.limit_pct - 10"
//! clear_s = 30
//! severity = "major"
//! cooldown_s = 600
//! limit_pct = 110
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use vigil_model::reading::{
    Brake, Direction, Door, ElevatorMode, ElevatorSample, FillResult, FillingRecord, Limit, Power,
    RideSample, RideState, VideoEvent, VideoKind,
};
use vigil_model::{EpochMs, Payload, RuleId};

use crate::catalogue::Params;
use crate::expr::{Env, Expr, Field, Type, Val};

/// Keys of a definition that are not thresholds.
pub(crate) const DEFINITION_KEYS: &[&str] = &[
    "stream",
    "when",
    "clear_when",
    "description",
    "categories",
    "enabled",
    "severity",
    "for_s",
    "clear_s",
    "cooldown_s",
];

/// Keys a category or equipment table may set for a defined rule, besides
/// the rule's own thresholds.
pub(crate) const OVERRIDE_KEYS: &[&str] =
    &["enabled", "severity", "for_s", "clear_s", "cooldown_s"];

/// The streams a defined rule can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Elevator status samples: a state that holds until the next sample.
    Elevator,
    /// Ride and ropeway samples: a state, like elevator samples.
    Ride,
    /// Video-analytics events: each one is a moment.
    Video,
    /// Filling records: each one is a moment.
    Filling,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Elevator,
        Source::Ride,
        Source::Video,
        Source::Filling,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Elevator => "elevator",
            Source::Ride => "ride",
            Source::Video => "video",
            Source::Filling => "filling",
        }
    }

    fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Samples describe a state that lasts (`for`, `clear_when`); events
    /// are moments (an alarm clears `clear_s` after the last matching one).
    pub(crate) fn is_state(self) -> bool {
        matches!(self, Source::Elevator | Source::Ride)
    }

    pub(crate) fn fields(self) -> &'static [Field] {
        match self {
            Source::Elevator => ELEVATOR_FIELDS,
            Source::Ride => RIDE_FIELDS,
            Source::Video => VIDEO_FIELDS,
            Source::Filling => FILLING_FIELDS,
        }
    }
}

const fn num(name: &'static str) -> Field {
    Field {
        name,
        ty: Type::Num,
        values: &[],
    }
}

const fn flag(name: &'static str) -> Field {
    Field {
        name,
        ty: Type::Bool,
        values: &[],
    }
}

const fn word(name: &'static str, values: &'static [&'static str]) -> Field {
    Field {
        name,
        ty: Type::Str,
        values,
    }
}

/// protocol.md's elevator sample, field by field (the order of [`Sample`]'s
/// `field`).
pub(crate) const ELEVATOR_FIELDS: &[Field] = &[
    num("floor"),
    word("direction", Direction::WORDS),
    num("speed_mps"),
    word("door", Door::WORDS),
    flag("leveled"),
    flag("occupied"),
    word("mode", ElevatorMode::WORDS),
    flag("safety_circuit"),
    flag("door_lock"),
    flag("alarm_button"),
    word("power", Power::WORDS),
    word("limit", Limit::WORDS),
    num("run_count"),
    num("load_pct"),
];

pub(crate) const RIDE_FIELDS: &[Field] = &[
    word("state", RideState::WORDS),
    num("speed_mps"),
    num("wind_mps"),
    flag("restraints_locked"),
    num("vibration_mm_s"),
    word("brake", Brake::WORDS),
    num("passengers"),
];

pub(crate) const VIDEO_FIELDS: &[Field] = &[
    word("camera_id", &[]),
    word("event", VideoKind::WORDS),
    num("confidence"),
];

/// A filling record, plus `fill_s`: seconds from `started_ms` to `ts`.
pub(crate) const FILLING_FIELDS: &[Field] = &[
    word("cylinder_code", &[]),
    word("operator_id", &[]),
    word("medium", &[]),
    num("tare_kg"),
    num("net_kg"),
    num("pressure_mpa"),
    num("temp_c"),
    word("result", FillResult::WORDS),
    num("fill_s"),
];

/// One reading of any watched stream, as a condition reads it.
#[derive(Clone, Copy)]
pub(crate) enum Sample<'a> {
    Elevator(&'a ElevatorSample),
    Ride(&'a RideSample),
    Video(&'a VideoEvent),
    Filling(&'a FillingRecord, EpochMs),
}

impl<'a> Sample<'a> {
    /// The message as a condition reads it (`None`: a stream no defined
    /// rule watches, such as controller events). `ts` is its device time.
    pub(crate) fn of(payload: &'a Payload, ts: EpochMs) -> Option<Sample<'a>> {
        match payload {
            Payload::Elevator(s) => Some(Sample::Elevator(s)),
            Payload::Ride(s) => Some(Sample::Ride(s)),
            Payload::Video(e) => Some(Sample::Video(e)),
            Payload::Filling(r) => Some(Sample::Filling(r, ts)),
            Payload::Event(_) => None,
        }
    }

    pub(crate) fn source(self) -> Source {
        match self {
            Sample::Elevator(_) => Source::Elevator,
            Sample::Ride(_) => Source::Ride,
            Sample::Video(_) => Source::Video,
            Sample::Filling(..) => Source::Filling,
        }
    }

    /// The value of field `index` (of [`Source::fields`]).
    pub(crate) fn value(&self, index: usize) -> Val<'_> {
        match self.field_str(index) {
            Some(s) => Val::Str(s),
            None => self.field(index),
        }
    }

    fn field(self, index: usize) -> Val<'static> {
        let n = |x: f32| Val::Num(decimal(x));
        let opt = |x: Option<f32>| x.map_or(Val::Null, n);
        // Strings of events and records live as long as the sample; the
        // closed words are 'static. Open strings are read via `field_str`.
        match self {
            Sample::Elevator(s) => match index {
                0 => Val::Num(f64::from(s.floor)),
                1 => Val::Str(s.direction.as_str()),
                2 => n(s.speed_mps),
                3 => Val::Str(s.door.as_str()),
                4 => Val::Bool(s.leveled),
                5 => Val::Bool(s.occupied),
                6 => Val::Str(s.mode.as_str()),
                7 => Val::Bool(s.safety_circuit),
                8 => Val::Bool(s.door_lock),
                9 => Val::Bool(s.alarm_button),
                10 => Val::Str(s.power.as_str()),
                11 => Val::Str(s.limit.as_str()),
                12 => s.run_count.map_or(Val::Null, |c| Val::Num(c as f64)),
                13 => opt(s.load_pct),
                _ => Val::Null,
            },
            Sample::Ride(s) => match index {
                0 => Val::Str(s.state.as_str()),
                1 => n(s.speed_mps),
                2 => opt(s.wind_mps),
                3 => Val::Bool(s.restraints_locked),
                4 => opt(s.vibration_mm_s),
                5 => Val::Str(s.brake.as_str()),
                6 => s.passengers.map_or(Val::Null, |p| Val::Num(f64::from(p))),
                _ => Val::Null,
            },
            Sample::Video(e) => match index {
                1 => Val::Str(e.event.as_str()),
                2 => n(e.confidence),
                _ => Val::Null,
            },
            Sample::Filling(r, ts) => match index {
                3 => n(r.tare_kg),
                4 => n(r.net_kg),
                5 => opt(r.pressure_mpa),
                6 => opt(r.temp_c),
                7 => Val::Str(r.result.as_str()),
                8 => Val::Num((ts - r.started_ms) as f64 / 1000.0),
                _ => Val::Null,
            },
        }
    }

    /// For a field with a closed set of values, the place of the value in
    /// the field's `values` ([`Env::word`]): `WORDS` lists the variants in
    /// declaration order, so it is the variant's number.
    pub(crate) fn word(&self, index: usize) -> Option<usize> {
        Some(match (self, index) {
            (Sample::Elevator(s), 1) => s.direction as usize,
            (Sample::Elevator(s), 3) => s.door as usize,
            (Sample::Elevator(s), 6) => s.mode as usize,
            (Sample::Elevator(s), 10) => s.power as usize,
            (Sample::Elevator(s), 11) => s.limit as usize,
            (Sample::Ride(s), 0) => s.state as usize,
            (Sample::Ride(s), 5) => s.brake as usize,
            (Sample::Video(e), 1) => e.event as usize,
            (Sample::Filling(r, _), 7) => r.result as usize,
            _ => return None,
        })
    }

    fn field_str(&self, index: usize) -> Option<&str> {
        match (self, index) {
            (Sample::Video(e), 0) => Some(&e.camera_id),
            (Sample::Filling(r, _), 0) => Some(&r.cylinder_code),
            (Sample::Filling(r, _), 1) => Some(&r.operator_id),
            (Sample::Filling(r, _), 2) => Some(&r.medium),
            _ => None,
        }
    }
}

/// What a condition sees at one evaluation: the sample, the equipment's
/// registry parameters and the rule's resolved thresholds.
pub(crate) struct Scope<'a> {
    pub sample: Sample<'a>,
    pub params: &'a Map<String, Value>,
    pub settings: &'a [f64],
}

impl Env for Scope<'_> {
    fn field(&self, index: usize) -> Val<'_> {
        self.sample.value(index)
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }

    fn word(&self, index: usize) -> Option<usize> {
        self.sample.word(index)
    }

    fn setting(&self, index: usize) -> f64 {
        self.settings.get(index).copied().unwrap_or(f64::NAN)
    }
}

/// A rule a configuration defines, checked and ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub id: RuleId,
    pub source: Source,
    pub description: String,
    pub when: Expr,
    /// Absent: the alarm clears when `when` has been false for `clear_s`.
    pub clear_when: Option<Expr>,
    /// Names of the rule's own thresholds, in the order of `Params::settings`.
    pub settings: Vec<String>,
    /// Equipment categories it applies to (`None`: every one).
    pub categories: Option<Vec<String>>,
    /// The defaults of the definition itself (before category and
    /// equipment overrides).
    pub defaults: Params,
}

/// A definition's mistake: the key, and where in its value when the value
/// is a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DefinitionError {
    pub key: String,
    /// Byte offset inside the key's string value.
    pub offset: Option<usize>,
    pub message: String,
}

fn wrong(key: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        key: key.to_owned(),
        offset: None,
        message: message.into(),
    }
}

impl Definition {
    /// Checks the table of rule `id` that has a `when` key. `default_clear_ms`
    /// is the configuration's top-level `clear_s`.
    pub(crate) fn parse(
        id: &str,
        table: &BTreeMap<String, Value>,
        default_clear_ms: i64,
    ) -> Result<Definition, DefinitionError> {
        let rule_id = RuleId::new(id).map_err(|_| {
            wrong(
                "when",
                format!("rule id {id:?} must be lower-case words joined by '.' and '_' (e.g. \"site.car_overload\")"),
            )
        })?;
        if !id.contains('.') {
            return Err(wrong(
                "when",
                format!(
                    "rule id {id:?} needs a prefix, e.g. \"site.{id}\", so it cannot be taken for a future built-in rule"
                ),
            ));
        }
        let text = |key: &str| -> Result<Option<&str>, DefinitionError> {
            match table.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(wrong(key, format!("{key} must be a string, got {other}"))),
            }
        };
        let stream = text("stream")?.ok_or_else(|| {
            wrong(
                "when",
                "a defined rule needs `stream = \"elevator\"` (or \"ride\", \"video\", \"filling\")",
            )
        })?;
        let source = Source::parse(stream).ok_or_else(|| {
            wrong(
                "stream",
                format!(
                    "unknown stream {stream:?}; rules can watch: elevator, ride, video, filling"
                ),
            )
        })?;
        // Every other key is one of the rule's own thresholds.
        let mut settings = Vec::new();
        let mut values = Vec::new();
        for (key, value) in table {
            if DEFINITION_KEYS.contains(&key.as_str()) {
                continue;
            }
            if !is_name(key) {
                return Err(wrong(
                    key,
                    format!("{key:?} is not a valid threshold name (letters, digits and '_')"),
                ));
            }
            let x = value.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                wrong(
                    key,
                    format!(
                        "{key} is not a key of a rule definition ({}), so it is one of the rule's thresholds, and a threshold must be a number; got {value}",
                        DEFINITION_KEYS.join(", ")
                    ),
                )
            })?;
            settings.push(key.clone());
            values.push(x);
        }
        let names: Vec<&str> = settings.iter().map(String::as_str).collect();
        let condition = |key: &str| -> Result<Option<Expr>, DefinitionError> {
            let Some(src) = text(key)? else {
                return Ok(None);
            };
            Expr::compile(src, source.fields(), &names)
                .map(Some)
                .map_err(|e| DefinitionError {
                    key: key.to_owned(),
                    offset: Some(e.offset),
                    message: e.message,
                })
        };
        let when =
            condition("when")?.ok_or_else(|| wrong("when", "a defined rule needs `when`"))?;
        let clear_when = condition("clear_when")?;
        if clear_when.is_some() && !source.is_state() {
            return Err(wrong(
                "clear_when",
                format!(
                    "{} messages are moments, not a state: the alarm clears `clear_s` after the last matching one, so there is no clear condition",
                    source.name()
                ),
            ));
        }
        let mut defaults = Params::defined(default_clear_ms, values);
        for key in OVERRIDE_KEYS {
            if let Some(value) = table.get(*key) {
                set(&mut defaults, &names, key, value).map_err(|expected| {
                    wrong(key, format!("{key} must be {expected}, got {value}"))
                })?;
            }
        }
        if defaults.for_ms > 0 && !source.is_state() {
            return Err(wrong(
                "for_s",
                format!(
                    "{} messages are moments: a condition on one cannot hold for a duration (leave for_s out)",
                    source.name()
                ),
            ));
        }
        let categories = match table.get("categories") {
            None => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|c| {
                        c.as_str()
                            .filter(|c| crate::config::CATEGORIES.contains(c))
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                wrong(
                                    "categories",
                                    format!(
                                        "{c} is not an equipment category; the categories are: {}",
                                        crate::config::CATEGORIES.join(", ")
                                    ),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => {
                return Err(wrong(
                    "categories",
                    format!("categories must be a list of equipment categories, got {other}"),
                ));
            }
        };
        let description = match text("description")? {
            Some(d) => d.to_owned(),
            None => when.text().to_owned(),
        };
        Ok(Definition {
            id: rule_id,
            source,
            description,
            when,
            clear_when,
            settings,
            categories,
            defaults,
        })
    }

    /// The keys a category or equipment table may set for this rule.
    pub(crate) fn override_keys(&self) -> Vec<&str> {
        OVERRIDE_KEYS
            .iter()
            .copied()
            .chain(self.settings.iter().map(String::as_str))
            .collect()
    }

    /// Applies one override (`key` is one of [`Definition::override_keys`]).
    pub(crate) fn set(&self, p: &mut Params, key: &str, value: &Value) -> Result<(), &'static str> {
        let names: Vec<&str> = self.settings.iter().map(String::as_str).collect();
        set(p, &names, key, value)
    }

    /// What an alarm of this rule shows: every field, registry parameter
    /// and threshold the condition reads, as they were.
    pub(crate) fn details(&self, scope: &Scope<'_>) -> Value {
        let mut out = Map::new();
        let fields = self.source.fields();
        for i in self.when.fields() {
            let value = match scope.field(i) {
                Val::Null => Value::Null,
                Val::Num(x) => json!(round4(x)),
                Val::Bool(b) => json!(b),
                Val::Str(s) => json!(s),
            };
            out.insert(fields[i].name.to_owned(), value);
        }
        for name in self.when.params() {
            let value = scope.params.get(name).cloned().unwrap_or(Value::Null);
            out.insert(format!("param.{name}"), value);
        }
        for i in self.when.settings() {
            out.insert(
                format!("rule.{}", self.settings[i]),
                json!(scope.setting(i)),
            );
        }
        Value::Object(out)
    }
}

/// A device's f32 as the decimal it sent: `13.9` compares equal to a
/// limit of 13.9, not to 13.899999618530273 (the f32 widened as it is).
/// Conditions read fields on every evaluation, so the usual values take a
/// short way to the same result as [`decimal_by_text`].
fn decimal(x: f32) -> f64 {
    let wide = f64::from(x);
    // Whole numbers below 2^24 are exact in f32, and print as themselves.
    if wide.trunc() == wide && wide.abs() < 16_777_216.0 {
        return wide;
    }
    let bits = x.to_bits();
    // A power of two has a narrower gap below it than above: the text way.
    if bits & 0x007f_ffff == 0 || !(1e-3..8_388_608.0).contains(&wide.abs()) {
        return decimal_by_text(x);
    }
    // Half the gap to the neighbouring f32s: a decimal closer than this
    // reads back as `x`. The shortest such decimal (fewest fraction digits)
    // is the one Display prints, and its nearest f64 is
    // `round(x · 10^k) / 10^k`: `x · 10^k` is exact in f64 for k ≤ 12
    // (24 + 28 bits), and the division is correctly rounded.
    let exponent = i32::from(((bits >> 23) & 0xff) as u8) - 127;
    let half_gap = 2f64.powi(exponent - 24);
    let mut scale = 1.0;
    for _ in 1..=12 {
        scale *= 10.0;
        let scaled = wide * scale;
        if (scaled - scaled.trunc()).abs() == 0.5 {
            // A tie between two decimals: the text way decides.
            return decimal_by_text(x);
        }
        let candidate = scaled.round() / scale;
        let distance = (candidate - wide).abs();
        if distance < half_gap * (1.0 - 1e-9) {
            return candidate;
        }
        if distance <= half_gap * (1.0 + 1e-9) {
            // On the edge of reading back: the text way decides.
            return decimal_by_text(x);
        }
    }
    decimal_by_text(x)
}

/// [`decimal`] the long way: Display, then parse.
fn decimal_by_text(x: f32) -> f64 {
    use std::fmt::Write;
    struct Buf([u8; 48], usize);
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(std::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut buf = Buf([0; 48], 0);
    // f32's Display is the shortest decimal that reads back as the same f32.
    if write!(buf, "{x}").is_err() {
        return f64::from(x);
    }
    std::str::from_utf8(&buf.0[..buf.1])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::from(x))
}

/// Device floats are f32: four decimals keep `1.2000000476` out of alarms.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn is_name(key: &str) -> bool {
    key.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One key of a defined rule: a threshold by name, or one of the
/// parameters every rule has ([`OVERRIDE_KEYS`], set as a built-in's are).
fn set(p: &mut Params, settings: &[&str], key: &str, value: &Value) -> Result<(), &'static str> {
    match settings.iter().position(|s| *s == key) {
        Some(i) => {
            let x = value.as_f64().filter(|x| x.is_finite()).ok_or("a number")?;
            if let Some(slot) = p.settings.get_mut(i) {
                *slot = x;
            }
            Ok(())
        }
        None if OVERRIDE_KEYS.contains(&key) => p.set_common(key, value).map(|_| ()),
        None => Err("a known parameter"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every elevator, ride, video and filling sample with each value of
    /// each closed-word field in turn.
    fn every_word() -> Vec<Payload> {
        let elevator = ElevatorSample::moving();
        let ride = RideSample {
            state: RideState::Running,
            speed_mps: 2.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake: Brake::Ok,
            passengers: None,
        };
        let video = VideoEvent {
            camera_id: "cam".into(),
            event: VideoKind::Crowding,
            confidence: 0.9,
            snapshot: None,
        };
        let filling = FillingRecord {
            cylinder_code: "C1".into(),
            operator_id: "op".into(),
            medium: "LPG".into(),
            tare_kg: 10.0,
            net_kg: 14.0,
            pressure_mpa: None,
            temp_c: None,
            started_ms: 0,
            result: FillResult::Ok,
        };
        let mut out = Vec::new();
        for w in Direction::WORDS.iter().filter_map(|w| Direction::parse(w)) {
            out.push(Payload::Elevator(ElevatorSample {
                direction: w,
                ..elevator.clone()
            }));
        }
        for w in Door::WORDS.iter().filter_map(|w| Door::parse(w)) {
            out.push(Payload::Elevator(ElevatorSample {
                door: w,
                ..elevator.clone()
            }));
        }
        for w in ElevatorMode::WORDS
            .iter()
            .filter_map(|w| ElevatorMode::parse(w))
        {
            out.push(Payload::Elevator(ElevatorSample {
                mode: w,
                ..elevator.clone()
            }));
        }
        for w in Power::WORDS.iter().filter_map(|w| Power::parse(w)) {
            out.push(Payload::Elevator(ElevatorSample {
                power: w,
                ..elevator.clone()
            }));
        }
        for w in Limit::WORDS.iter().filter_map(|w| Limit::parse(w)) {
            out.push(Payload::Elevator(ElevatorSample {
                limit: w,
                ..elevator.clone()
            }));
        }
        for w in RideState::WORDS.iter().filter_map(|w| RideState::parse(w)) {
            out.push(Payload::Ride(RideSample {
                state: w,
                ..ride.clone()
            }));
        }
        for w in Brake::WORDS.iter().filter_map(|w| Brake::parse(w)) {
            out.push(Payload::Ride(RideSample {
                brake: w,
                ..ride.clone()
            }));
        }
        for w in VideoKind::WORDS.iter().filter_map(|w| VideoKind::parse(w)) {
            out.push(Payload::Video(VideoEvent {
                event: w,
                ..video.clone()
            }));
        }
        for w in FillResult::WORDS
            .iter()
            .filter_map(|w| FillResult::parse(w))
        {
            out.push(Payload::Filling(FillingRecord {
                result: w,
                ..filling.clone()
            }));
        }
        out
    }

    /// The same scope without word places: every comparison reads text.
    struct ByText<'a>(Scope<'a>);

    impl Env for ByText<'_> {
        fn field(&self, index: usize) -> Val<'_> {
            self.0.field(index)
        }
        fn param(&self, name: &str) -> Option<&Value> {
            self.0.param(name)
        }
        fn setting(&self, index: usize) -> f64 {
            self.0.setting(index)
        }
    }

    #[test]
    fn words_compared_by_place_equal_words_compared_as_text() {
        let params = Map::new();
        let mut compared = 0;
        for payload in every_word() {
            let sample = Sample::of(&payload, 1_000).expect("a watched stream");
            let fields = sample.source().fields();
            for (i, field) in fields.iter().enumerate() {
                if field.values.is_empty() {
                    assert_eq!(sample.word(i), None, "{}: an open text field", field.name);
                    continue;
                }
                let Val::Str(text) = sample.value(i) else {
                    panic!("{} is text", field.name);
                };
                assert_eq!(
                    sample.word(i),
                    field.values.iter().position(|v| *v == text),
                    "{} = {text}: its place in the field's words",
                    field.name
                );
                for word in field.values {
                    for op in ["==", "!="] {
                        for text in [
                            format!("{} {op} {word:?}", field.name),
                            format!("{word:?} {op} {}", field.name),
                        ] {
                            let expr = Expr::compile(&text, fields, &[]).expect(&text);
                            let scope = || Scope {
                                sample,
                                params: &params,
                                settings: &[],
                            };
                            assert_eq!(expr.eval(&scope()), expr.eval(&ByText(scope())), "{text}");
                            let expected = (sample.value(i) == Val::Str(word)) == (op == "==");
                            assert_eq!(expr.holds(&scope()), expected, "{text}");
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared > 200, "{compared} comparisons");
    }

    #[test]
    fn decimals_the_short_way_equal_the_text_way() {
        use super::{decimal, decimal_by_text};
        let check = |x: f32| {
            let (fast, text) = (decimal(x), decimal_by_text(x));
            assert!(
                fast.to_bits() == text.to_bits(),
                "{x}: {fast} by the short way, {text} by text"
            );
        };
        // What devices send: a few decimals, in every magnitude.
        for i in 0..200_000 {
            for scale in [1.0, 10.0, 100.0, 1000.0, 1e4, 1e5] {
                check(i as f32 / scale);
                check(-(i as f32) / scale);
            }
        }
        // And a spread of every other f32 (sign, exponent and mantissa).
        for bits in (0..u32::MAX).step_by(4099) {
            check(f32::from_bits(bits));
        }
        for x in [
            0.0,
            -0.0,
            0.5,
            0.1,
            1e-3,
            8_388_607.5,
            f32::MAX,
            f32::MIN_POSITIVE,
        ] {
            check(x);
        }
    }
}
