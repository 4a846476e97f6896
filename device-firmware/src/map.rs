//! Register maps: which Modbus registers of a controller hold which
//! protocol.md field, and how to decode them (and, for the emulator,
//! encode them). A map is a TOML file; see docs/edge.md for the format.
//!
//! A map with a mistake is refused as a whole, naming the file, line and
//! column of the mistake.

mod fields;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Number, Value};
use toml::Spanned;
use vigil_model::Stream;

use crate::error::{EdgeError, line_col};
pub(crate) use fields::{FieldKind, field_def, fields};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// Read/write bits (function 1; written with function 5).
    Coil,
    /// Read-only bits (function 2).
    Discrete,
    /// Read/write 16-bit registers (function 3).
    Holding,
    /// Read-only 16-bit registers (function 4).
    Input,
}

impl Function {
    fn parse(s: &str) -> Option<Function> {
        Some(match s {
            "coil" => Function::Coil,
            "discrete" | "discrete_input" => Function::Discrete,
            "holding" | "holding_register" => Function::Holding,
            "input" | "input_register" => Function::Input,
            _ => return None,
        })
    }

    pub fn is_bit(self) -> bool {
        matches!(self, Function::Coil | Function::Discrete)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Coil => "coil",
            Function::Discrete => "discrete",
            Function::Holding => "holding",
            Function::Input => "input",
        }
    }
}

/// How the raw words of one register entry are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    /// A raw u16 (or bit) looked up in the entry's `values` table.
    Enum,
    /// ASCII, two characters per register, high byte first; NULs and
    /// trailing spaces are dropped.
    Str,
}

impl ValueType {
    fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "bool" => ValueType::Bool,
            "u16" => ValueType::U16,
            "i16" => ValueType::I16,
            "u32" => ValueType::U32,
            "i32" => ValueType::I32,
            "f32" => ValueType::F32,
            "u64" => ValueType::U64,
            "enum" => ValueType::Enum,
            "string" => ValueType::Str,
            _ => return None,
        })
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            ValueType::U16
                | ValueType::I16
                | ValueType::U32
                | ValueType::I32
                | ValueType::F32
                | ValueType::U64
        )
    }
}

/// One field of the samples, where it lives and how to decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub field: String,
    pub function: Function,
    pub address: u16,
    pub ty: ValueType,
    /// value = raw × scale + offset.
    pub scale: f64,
    pub offset: f64,
    /// 32/64-bit values: the high word first (Modbus' usual order).
    pub high_word_first: bool,
    /// A bool (or enum) taken from one bit of a register.
    pub bit: Option<u8>,
    /// Bool: true when the bit is 0.
    pub invert: bool,
    /// Enum: raw value → protocol word.
    pub values: BTreeMap<u16, String>,
    /// String: registers.
    pub count: u16,
    /// A change of this field alone sends a sample (false for analogue
    /// values such as speed, which change all the time).
    pub on_change: bool,
    /// A raw value that means "not measured": the field is left out.
    pub absent: Option<i64>,
}

impl Register {
    /// Registers (or bits) this entry spans.
    pub fn width(&self) -> u16 {
        match self.ty {
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            ValueType::U64 => 4,
            ValueType::Str => self.count,
            _ => 1,
        }
    }

    /// Decimal places worth keeping after scaling (0.01 → 2; a float
    /// keeps 4 more).
    fn decimals(&self) -> i32 {
        let mut d = if self.ty == ValueType::F32 { 4 } else { 0 };
        let mut s = self.scale.abs();
        while d < 8 && (s - s.round()).abs() > 1e-9 {
            s *= 10.0;
            d += 1;
        }
        d
    }

    /// Decodes this entry from the words (or bits, as 0/1) it spans;
    /// `None` when the value is absent (or not a number at all).
    pub fn decode(&self, words: &[u16]) -> Option<Value> {
        if words.len() < usize::from(self.width()) {
            return None;
        }
        if let Some(absent) = self.absent {
            let raw = match self.ty {
                ValueType::I16 => i64::from(words[0] as i16),
                _ => i64::from(words[0]),
            };
            if raw == absent {
                return None;
            }
        }
        let join = |ws: &[u16]| -> u64 {
            let ordered: Vec<u16> = if self.high_word_first {
                ws.to_vec()
            } else {
                ws.iter().rev().copied().collect()
            };
            ordered
                .iter()
                .fold(0u64, |acc, w| (acc << 16) | u64::from(*w))
        };
        let raw_bit = |w: u16| match self.bit {
            Some(b) => (w >> b) & 1,
            None => w,
        };
        let numeric = |raw: f64| -> Value {
            let v = raw * self.scale + self.offset;
            let f = 10f64.powi(self.decimals());
            let v = (v * f).round() / f;
            match field_def(&self.field).map(|d| d.kind) {
                Some(FieldKind::Int) => Value::from(v.round() as i64),
                _ => Number::from_f64(v).map_or(Value::Null, Value::Number),
            }
        };
        Some(match self.ty {
            ValueType::Bool => Value::Bool((raw_bit(words[0]) != 0) != self.invert),
            ValueType::U16 => numeric(f64::from(words[0])),
            ValueType::I16 => numeric(f64::from(words[0] as i16)),
            ValueType::U32 => numeric(join(&words[..2]) as f64),
            ValueType::I32 => numeric(f64::from(join(&words[..2]) as u32 as i32)),
            ValueType::F32 => {
                let v = f32::from_bits(join(&words[..2]) as u32);
                if !v.is_finite() {
                    return None;
                }
                numeric(f64::from(v))
            }
            ValueType::U64 => numeric(join(&words[..4]) as f64),
            ValueType::Enum => Value::String(self.values.get(&raw_bit(words[0]))?.clone()),
            ValueType::Str => {
                let bytes: Vec<u8> = words[..usize::from(self.count)]
                    .iter()
                    .flat_map(|w| w.to_be_bytes())
                    .filter(|b| *b != 0)
                    .collect();
                Value::String(String::from_utf8_lossy(&bytes).trim_end().to_owned())
            }
        })
    }

    /// The words (or bits) that decode to `value`, for the emulator. A bit
    /// of a register is returned as the whole word with only that bit set
    /// or clear (the emulator merges it).
    pub fn encode(&self, value: &Value) -> Option<Vec<u16>> {
        if value.is_null() {
            return self.absent.map(|a| vec![a as u16]);
        }
        let split = |x: u64, n: usize| -> Vec<u16> {
            let mut ws: Vec<u16> = (0..n).rev().map(|i| (x >> (16 * i)) as u16).collect();
            if !self.high_word_first {
                ws.reverse();
            }
            ws
        };
        let raw = |v: f64| ((v - self.offset) / self.scale).round();
        let with_bit = |b: u16| match self.bit {
            Some(bit) => b << bit,
            None => b,
        };
        Some(match self.ty {
            ValueType::Bool => vec![with_bit(u16::from(value.as_bool()? != self.invert))],
            ValueType::U16 => vec![raw(value.as_f64()?).clamp(0.0, 65535.0) as u16],
            ValueType::I16 => vec![raw(value.as_f64()?).clamp(-32768.0, 32767.0) as i16 as u16],
            ValueType::U32 => split(raw(value.as_f64()?).clamp(0.0, u32::MAX as f64) as u64, 2),
            ValueType::I32 => split(
                raw(value.as_f64()?).clamp(i32::MIN as f64, i32::MAX as f64) as i32 as u32 as u64,
                2,
            ),
            ValueType::F32 => split(
                u64::from((((value.as_f64()? - self.offset) / self.scale) as f32).to_bits()),
                2,
            ),
            ValueType::U64 => split(raw(value.as_f64()?).max(0.0) as u64, 4),
            ValueType::Enum => {
                let word = value.as_str()?;
                let raw = self.values.iter().find(|(_, w)| *w == word)?.0;
                vec![with_bit(*raw)]
            }
            ValueType::Str => {
                let mut bytes: Vec<u8> = value.as_str()?.bytes().collect();
                bytes.resize(usize::from(self.count) * 2, 0);
                bytes
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            }
        })
    }
}

/// A list of registers holding the controller's active fault codes
/// (0 = empty slot).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultCodes {
    pub function: Function,
    pub address: u16,
    pub count: u16,
    /// A number not in `codes` is written with at least this many digits.
    pub digits: usize,
    /// Raw value → (code, description).
    pub codes: BTreeMap<u16, (String, Option<String>)>,
}

impl FaultCodes {
    /// The code string of a raw value.
    pub fn code(&self, raw: u16) -> (String, Option<String>) {
        match self.codes.get(&raw) {
            Some((code, text)) => (code.clone(), text.clone()),
            None => (format!("{raw:0width$}", width = self.digits), None),
        }
    }

    /// The raw value of a code string (the emulator's direction).
    pub fn raw(&self, code: &str) -> Option<u16> {
        self.codes
            .iter()
            .find(|(_, (c, _))| c == code)
            .map(|(raw, _)| *raw)
            .or_else(|| code.parse().ok())
    }
}

/// One bit that, when set, means a fault code is active.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultBit {
    pub function: Function,
    pub address: u16,
    pub bit: Option<u8>,
    pub code: String,
    pub text: Option<String>,
}

/// One bit or register location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub function: Function,
    pub address: u16,
}

/// A filling scale's record handshake: the scale raises `ready` when a
/// finished filling is in the record registers; the gateway spools it and
/// writes `ack` (a coil) true; the scale then clears `ready` and the coil.
/// `id` (a counter the scale increments per record) lets the gateway
/// recognise a record it already spooled before a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordHandshake {
    pub ready: Location,
    pub ack: Location,
    pub id: Register,
}

/// When the 1 Hz cadence applies (the equipment is moving or running).
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub field: String,
    /// A word field: active while it is one of these; a number: while > 0;
    /// a bool: while true.
    pub is: Vec<String>,
}

/// A parsed, checked register map.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    pub name: String,
    pub stream: Stream,
    pub registers: Vec<Register>,
    pub faults: Option<FaultCodes>,
    pub fault_bits: Vec<FaultBit>,
    pub record: Option<RecordHandshake>,
    pub active: Option<Activity>,
    /// Samples at least this often when nothing moves or changes.
    pub idle_report_s: u32,
}

/// The maps that ship with the gateway (device-firmware/maps/).
pub const BUILTIN: &[(&str, &str)] = &[
    ("elevator", include_str!("../maps/elevator.toml")),
    ("ride", include_str!("../maps/ride.toml")),
    ("filling-scale", include_str!("../maps/filling-scale.toml")),
];

impl RegisterMap {
    /// Loads `spec`: the name of a shipped map (`elevator`, `ride`,
    /// `filling-scale`) or a path to a TOML file.
    pub fn load(spec: &str) -> Result<RegisterMap, EdgeError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            return RegisterMap::parse(text, Path::new(&format!("builtin:{name}")));
        }
        let path = PathBuf::from(spec);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EdgeError::io("cannot read register map", &path, e))?;
        RegisterMap::parse(&text, &path)
    }

    /// Parses and checks a map; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<RegisterMap, EdgeError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            EdgeError::Config {
                file: file.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawMap = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', "; ");
            at(e.span().unwrap_or(0..0), msg)
        })?;
        raw.check(&at)
    }

    /// Every bit/register location the gateway polls, with its width.
    pub fn locations(&self) -> Vec<(Function, u16, u16)> {
        let mut out: Vec<(Function, u16, u16)> = self
            .registers
            .iter()
            .map(|r| (r.function, r.address, r.width()))
            .collect();
        if let Some(f) = &self.faults {
            out.push((f.function, f.address, f.count));
        }
        out.extend(self.fault_bits.iter().map(|b| (b.function, b.address, 1)));
        if let Some(r) = &self.record {
            out.push((r.ready.function, r.ready.address, 1));
            out.push((r.id.function, r.id.address, r.id.width()));
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    name: Option<String>,
    stream: Spanned<String>,
    idle_report_s: Option<Spanned<i64>>,
    active: Option<Spanned<RawActive>>,
    #[serde(default, rename = "register")]
    registers: Vec<Spanned<RawRegister>>,
    faults: Option<Spanned<RawFaults>>,
    #[serde(default, rename = "fault_bit")]
    fault_bits: Vec<Spanned<RawFaultBit>>,
    record: Option<Spanned<RawRecord>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActive {
    field: Spanned<String>,
    #[serde(default)]
    is: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    field: Spanned<String>,
    function: Spanned<String>,
    address: Spanned<i64>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    scale: Option<Spanned<f64>>,
    offset: Option<f64>,
    word_order: Option<Spanned<String>>,
    bit: Option<Spanned<i64>>,
    invert: Option<bool>,
    values: Option<Spanned<BTreeMap<String, String>>>,
    count: Option<Spanned<i64>>,
    change: Option<bool>,
    absent: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    function: Spanned<String>,
    address: Spanned<i64>,
    count: Spanned<i64>,
    digits: Option<Spanned<i64>>,
    #[serde(default)]
    codes: BTreeMap<String, Spanned<RawCode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCode {
    code: String,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaultBit {
    function: Spanned<String>,
    address: Spanned<i64>,
    bit: Option<Spanned<i64>>,
    code: Spanned<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    ready: Spanned<RawLocation>,
    ack: Spanned<RawLocation>,
    id: Spanned<RawRegister>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    function: Spanned<String>,
    address: Spanned<i64>,
}

type At<'a> = dyn Fn(std::ops::Range<usize>, String) -> EdgeError + 'a;

fn function(f: &Spanned<String>, at: &At) -> Result<Function, EdgeError> {
    Function::parse(f.get_ref()).ok_or_else(|| {
        at(
            f.span(),
            format!(
                "unknown function {:?}: one of coil, discrete, holding, input",
                f.get_ref()
            ),
        )
    })
}

fn address(a: &Spanned<i64>, width: u16, at: &At) -> Result<u16, EdgeError> {
    let v = *a.get_ref();
    if v < 0 || v + i64::from(width) > 65536 {
        return Err(at(
            a.span(),
            format!("address {v} is outside 0–65535 (0-based protocol addresses)"),
        ));
    }
    Ok(v as u16)
}

fn bit(b: &Option<Spanned<i64>>, func: Function, at: &At) -> Result<Option<u8>, EdgeError> {
    let Some(b) = b else { return Ok(None) };
    if func.is_bit() {
        return Err(at(
            b.span(),
            format!(
                "`bit` is for registers; a {} is one bit already",
                func.as_str()
            ),
        ));
    }
    if !(0..16).contains(b.get_ref()) {
        return Err(at(b.span(), format!("bit {} is outside 0–15", b.get_ref())));
    }
    Ok(Some(*b.get_ref() as u8))
}

impl RawRegister {
    fn check(&self, at: &At, field_ok: &dyn Fn(&str) -> bool) -> Result<Register, EdgeError> {
        let field = self.field.get_ref().clone();
        if !field_ok(&field) {
            return Err(at(self.field.span(), format!("unknown field {field:?}")));
        }
        let func = function(&self.function, at)?;
        let ty = ValueType::parse(self.ty.get_ref()).ok_or_else(|| {
            at(
                self.ty.span(),
                format!(
                    "unknown type {:?}: one of bool, u16, i16, u32, i32, f32, u64, enum, string",
                    self.ty.get_ref()
                ),
            )
        })?;
        if func.is_bit() && !matches!(ty, ValueType::Bool | ValueType::Enum) {
            return Err(at(
                self.ty.span(),
                format!(
                    "a {} holds one bit: its type is bool or enum, not {}",
                    func.as_str(),
                    self.ty.get_ref()
                ),
            ));
        }
        let bit = bit(&self.bit, func, at)?;
        if bit.is_some() && !matches!(ty, ValueType::Bool | ValueType::Enum) {
            return Err(at(
                self.ty.span(),
                "`bit` needs type bool or enum".to_owned(),
            ));
        }
        let count = match (&self.count, ty) {
            (Some(c), ValueType::Str) if (1..=64).contains(c.get_ref()) => *c.get_ref() as u16,
            (Some(c), ValueType::Str) => {
                return Err(at(
                    c.span(),
                    format!("count {} is outside 1–64", c.get_ref()),
                ));
            }
            (None, ValueType::Str) => {
                return Err(at(
                    self.ty.span(),
                    "a string needs `count` (registers, two characters each)".to_owned(),
                ));
            }
            (Some(c), _) => {
                return Err(at(c.span(), "`count` is for strings only".to_owned()));
            }
            (None, _) => 0,
        };
        let scale = match &self.scale {
            Some(s) if !ty.numeric() => {
                return Err(at(
                    s.span(),
                    format!("`scale` needs a number type, not {}", self.ty.get_ref()),
                ));
            }
            Some(s) if *s.get_ref() == 0.0 || !s.get_ref().is_finite() => {
                return Err(at(s.span(), "scale must be a non-zero number".to_owned()));
            }
            Some(s) => *s.get_ref(),
            None => 1.0,
        };
        let high_word_first = match &self.word_order {
            None => true,
            Some(w) => match w.get_ref().as_str() {
                "high_first" | "big" => true,
                "low_first" | "little" => false,
                other => {
                    return Err(at(
                        w.span(),
                        format!("word_order {other:?}: high_first or low_first"),
                    ));
                }
            },
        };
        let mut values = BTreeMap::new();
        match (&self.values, ty) {
            (Some(v), ValueType::Enum) => {
                for (k, word) in v.get_ref() {
                    let raw: u16 = k.parse().map_err(|_| {
                        at(
                            v.span(),
                            format!("values key {k:?} is not a number 0–65535"),
                        )
                    })?;
                    values.insert(raw, word.clone());
                }
                if values.is_empty() {
                    return Err(at(v.span(), "an enum needs at least one value".to_owned()));
                }
            }
            (None, ValueType::Enum) => {
                return Err(at(
                    self.ty.span(),
                    "an enum needs a `values` table (raw value = \"word\")".to_owned(),
                ));
            }
            (Some(v), _) => {
                return Err(at(v.span(), "`values` is for type enum only".to_owned()));
            }
            (None, _) => {}
        }
        let absent = match &self.absent {
            None => None,
            Some(a) if !matches!(ty, ValueType::U16 | ValueType::I16) => {
                return Err(at(
                    a.span(),
                    "`absent` is for u16 and i16 registers".to_owned(),
                ));
            }
            Some(a) => {
                let ok = match ty {
                    ValueType::I16 => (-32768..=32767).contains(a.get_ref()),
                    _ => (0..=65535).contains(a.get_ref()),
                };
                if !ok {
                    return Err(at(
                        a.span(),
                        format!("absent {} does not fit the type", a.get_ref()),
                    ));
                }
                Some(*a.get_ref())
            }
        };
        let reg = Register {
            address: address(&self.address, ty_width(ty, count), at)?,
            field,
            function: func,
            ty,
            scale,
            offset: self.offset.unwrap_or(0.0),
            high_word_first,
            bit,
            invert: self.invert.unwrap_or(false),
            values,
            count,
            on_change: self.change.unwrap_or(true),
            absent,
        };
        Ok(reg)
    }
}

fn ty_width(ty: ValueType, count: u16) -> u16 {
    match ty {
        ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        ValueType::U64 => 4,
        ValueType::Str => count,
        _ => 1,
    }
}

impl RawMap {
    fn check(self, at: &At) -> Result<RegisterMap, EdgeError> {
        let stream = match Stream::parse(self.stream.get_ref()) {
            Some(s @ (Stream::Elevator | Stream::Ride | Stream::Filling)) => s,
            _ => {
                return Err(at(
                    self.stream.span(),
                    format!(
                        "stream {:?}: a controller map is for elevator, ride or filling",
                        self.stream.get_ref()
                    ),
                ));
            }
        };
        let defs = fields(stream);
        let known = |f: &str| defs.iter().any(|d| d.name == f);
        let mut registers: Vec<Register> = Vec::new();
        for r in &self.registers {
            let reg = r.get_ref().check(at, &known)?;
            let def = defs
                .iter()
                .find(|d| d.name == reg.field)
                .ok_or_else(|| at(r.span(), format!("unknown field {:?}", reg.field)))?;
            def.kind
                .accepts(&reg)
                .map_err(|m| at(r.get_ref().ty.span(), format!("{}: {m}", reg.field)))?;
            if registers.iter().any(|o| o.field == reg.field) {
                return Err(at(
                    r.get_ref().field.span(),
                    format!("field {:?} is mapped twice", reg.field),
                ));
            }
            registers.push(reg);
        }
        let missing: Vec<&str> = defs
            .iter()
            .filter(|d| d.required && !registers.iter().any(|r| r.field == d.name))
            .filter(|d| {
                !(d.name == "started_ms" && registers.iter().any(|r| r.field == "duration_s"))
            })
            .map(|d| d.name)
            .collect();
        if !missing.is_empty() {
            return Err(at(
                self.stream.span(),
                format!(
                    "a {} map must map {} (protocol.md required fields)",
                    stream.as_str(),
                    missing.join(", ")
                ),
            ));
        }

        let faults = match &self.faults {
            None => None,
            Some(f) => {
                let raw = f.get_ref();
                let func = function(&raw.function, at)?;
                if func.is_bit() {
                    return Err(at(raw.function.span(), "fault codes live in registers (holding or input); use [[fault_bit]] for bits".to_owned()));
                }
                let count = *raw.count.get_ref();
                if !(1..=32).contains(&count) {
                    return Err(at(
                        raw.count.span(),
                        format!("count {count} is outside 1–32"),
                    ));
                }
                let mut codes = BTreeMap::new();
                for (k, c) in &raw.codes {
                    let n: u16 = k.parse().map_err(|_| {
                        at(
                            c.span(),
                            format!("fault code key {k:?} is not a number 1–65535"),
                        )
                    })?;
                    codes.insert(n, (c.get_ref().code.clone(), c.get_ref().text.clone()));
                }
                let digits = match &raw.digits {
                    Some(d) if (1..=5).contains(d.get_ref()) => *d.get_ref() as usize,
                    Some(d) => return Err(at(d.span(), "digits is 1–5".to_owned())),
                    None => 1,
                };
                Some(FaultCodes {
                    function: func,
                    address: address(&raw.address, count as u16, at)?,
                    count: count as u16,
                    digits,
                    codes,
                })
            }
        };
        let mut fault_bits = Vec::new();
        for b in &self.fault_bits {
            let raw = b.get_ref();
            let func = function(&raw.function, at)?;
            if raw.code.get_ref().is_empty() {
                return Err(at(raw.code.span(), "empty fault code".to_owned()));
            }
            fault_bits.push(FaultBit {
                function: func,
                address: address(&raw.address, 1, at)?,
                bit: bit(&raw.bit, func, at)?,
                code: raw.code.get_ref().clone(),
                text: raw.text.clone(),
            });
        }

        let record = match (&self.record, stream) {
            (None, Stream::Filling) => {
                return Err(at(
                    self.stream.span(),
                    "a filling map needs a [record] handshake (ready, ack, id)".to_owned(),
                ));
            }
            (Some(r), Stream::Elevator | Stream::Ride) => {
                return Err(at(r.span(), "[record] is for filling maps only".to_owned()));
            }
            (None, _) => None,
            (Some(r), _) => {
                let raw = r.get_ref();
                let loc = |l: &Spanned<RawLocation>| -> Result<Location, EdgeError> {
                    Ok(Location {
                        function: function(&l.get_ref().function, at)?,
                        address: address(&l.get_ref().address, 1, at)?,
                    })
                };
                let ready = loc(&raw.ready)?;
                let ack = loc(&raw.ack)?;
                if ack.function != Function::Coil {
                    return Err(at(
                        raw.ack.span(),
                        "the record ack is a coil the gateway writes".to_owned(),
                    ));
                }
                let id = raw.id.get_ref().check(at, &|f| f == "record_id")?;
                if !id.ty.numeric() {
                    return Err(at(
                        raw.id.get_ref().ty.span(),
                        "the record id is a number".to_owned(),
                    ));
                }
                Some(RecordHandshake { ready, ack, id })
            }
        };

        let active = match &self.active {
            None => None,
            Some(a) => {
                let raw = a.get_ref();
                let name = raw.field.get_ref();
                let Some(reg) = registers.iter().find(|r| &r.field == name) else {
                    return Err(at(
                        raw.field.span(),
                        format!("active: field {name:?} is not mapped by any [[register]]"),
                    ));
                };
                if reg.ty == ValueType::Enum && raw.is.is_empty() {
                    return Err(at(
                        a.span(),
                        format!(
                            "active: a word field needs `is = [\"…\"]` (the words of {name} that mean active)"
                        ),
                    ));
                }
                Some(Activity {
                    field: name.clone(),
                    is: raw.is.clone(),
                })
            }
        };
        let idle_report_s = match &self.idle_report_s {
            None => 30,
            Some(s) if (1..=3600).contains(s.get_ref()) => *s.get_ref() as u32,
            Some(s) => return Err(at(s.span(), "idle_report_s is 1–3600".to_owned())),
        };
        Ok(RegisterMap {
            name: self.name.unwrap_or_else(|| stream.as_str().to_owned()),
            stream,
            registers,
            faults,
            fault_bits,
            record,
            active,
            idle_report_s,
        })
    }
}

#[cfg(test)]
mod tests;
