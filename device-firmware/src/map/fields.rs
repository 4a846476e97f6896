//! protocol.md's fields per stream, and which register types fit each.

use vigil_model::Stream;
use vigil_model::reading::{
    Brake, Direction, Door, ElevatorMode, FillResult, Limit, Power, RideState,
};

use super::{Register, ValueType};

/// What a field holds on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldKind {
    Bool,
    /// A whole number.
    Int,
    Float,
    /// One of these words.
    Word(&'static [&'static str]),
    /// Free text (codes, ids, a gas name).
    Text,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
}

const fn f(name: &'static str, kind: FieldKind, required: bool) -> FieldDef {
    FieldDef {
        name,
        kind,
        required,
    }
}

const ELEVATOR: &[FieldDef] = &[
    f("floor", FieldKind::Int, true),
    f("direction", FieldKind::Word(Direction::WORDS), true),
    f("speed_mps", FieldKind::Float, true),
    f("door", FieldKind::Word(Door::WORDS), true),
    f("leveled", FieldKind::Bool, true),
    f("occupied", FieldKind::Bool, true),
    f("mode", FieldKind::Word(ElevatorMode::WORDS), true),
    f("safety_circuit", FieldKind::Bool, true),
    f("door_lock", FieldKind::Bool, true),
    f("alarm_button", FieldKind::Bool, true),
    f("power", FieldKind::Word(Power::WORDS), true),
    f("limit", FieldKind::Word(Limit::WORDS), true),
    f("run_count", FieldKind::Int, false),
    f("load_pct", FieldKind::Float, false),
];

const RIDE: &[FieldDef] = &[
    f("state", FieldKind::Word(RideState::WORDS), true),
    f("speed_mps", FieldKind::Float, true),
    f("wind_mps", FieldKind::Float, false),
    f("restraints_locked", FieldKind::Bool, true),
    f("vibration_mm_s", FieldKind::Float, false),
    f("brake", FieldKind::Word(Brake::WORDS), true),
    f("passengers", FieldKind::Int, false),
];

/// `duration_s` is the gateway's own: `started_ms` = `ts` − duration, for
/// scales that count the filling time rather than keep a clock.
const FILLING: &[FieldDef] = &[
    f("cylinder_code", FieldKind::Text, true),
    f("operator_id", FieldKind::Text, true),
    f("medium", FieldKind::Text, true),
    f("tare_kg", FieldKind::Float, true),
    f("net_kg", FieldKind::Float, true),
    f("pressure_mpa", FieldKind::Float, false),
    f("temp_c", FieldKind::Float, false),
    f("started_ms", FieldKind::Int, true),
    f("duration_s", FieldKind::Float, false),
    f("result", FieldKind::Word(FillResult::WORDS), true),
];

const RECORD_ID: FieldDef = f("record_id", FieldKind::Int, true);

pub(crate) fn fields(stream: Stream) -> &'static [FieldDef] {
    match stream {
        Stream::Elevator => ELEVATOR,
        Stream::Ride => RIDE,
        Stream::Filling => FILLING,
        Stream::Video | Stream::Event => &[],
    }
}

/// The definition of a field name of any stream (names mean the same
/// wherever they occur).
pub(crate) fn field_def(name: &str) -> Option<FieldDef> {
    if name == "record_id" {
        return Some(RECORD_ID);
    }
    [ELEVATOR, RIDE, FILLING]
        .iter()
        .flat_map(|l| l.iter())
        .find(|d| d.name == name)
        .copied()
}

impl FieldKind {
    /// Whether a register entry can produce this kind of value.
    pub(crate) fn accepts(self, reg: &Register) -> Result<(), String> {
        match self {
            FieldKind::Bool if reg.ty == ValueType::Bool => Ok(()),
            FieldKind::Bool => Err("a true/false field needs type bool".to_owned()),
            FieldKind::Int | FieldKind::Float if reg.ty.numeric() => Ok(()),
            FieldKind::Int | FieldKind::Float => Err(format!(
                "a number field needs a number type (u16, i16, u32, i32, f32, u64), not {:?}",
                reg.ty
            )),
            FieldKind::Word(words) => {
                if reg.ty != ValueType::Enum {
                    return Err(format!(
                        "a word field needs type enum with values among {}",
                        words.join(", ")
                    ));
                }
                match reg.values.values().find(|w| !words.contains(&w.as_str())) {
                    Some(bad) => Err(format!(
                        "{bad:?} is not a protocol.md word for this field ({})",
                        words.join(", ")
                    )),
                    None => Ok(()),
                }
            }
            FieldKind::Text if matches!(reg.ty, ValueType::Str | ValueType::Enum) => Ok(()),
            FieldKind::Text => Err("a text field needs type string (or enum)".to_owned()),
        }
    }
}
