//! Scenario files: a small fleet, faults injected at given times on given
//! devices, and the alarms each should raise (docs/simulator.md,
//! "Scenarios").
//!
//! ```text
//!  FILE.toml ─▶ Scenario::load (checked, file:line:column) ─▶ prepare(run id) ─▶ Prepared
//!     Prepared.import ─▶ registry import ─▶ secrets ─▶ drive (MQTT, a fast device clock)
//!     Prepared.expectations ─▶ the caller's checker (`vigil sim --check`)
//! ```
//!
//! - `scenario/plan.rs`: a scenario becomes a fleet with tagged ids, the
//!   registry document to import, and the rule overrides it needs.
//! - `scenario/drive.rs`: every device as an MQTT client, its machine on
//!   the scenario's clock, with the steps' overlays, messages, silences
//!   and held-back (late) messages.

mod drive;
mod plan;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;
use vigil_model::{EpochMs, RuleId, Stream};

use crate::MachineKind;
use crate::elevator::FaultKind;
use crate::error::SimError;

pub use drive::{DriveStats, Happening, MaintenancePost, drive};
pub use plan::{Expectation, Prepared, PreparedDevice, Timeline};

/// Device kinds a scenario declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Elevator,
    Ride,
    Ropeway,
    Camera,
    Scale,
}

impl DeviceKind {
    fn parse(s: &str) -> Option<DeviceKind> {
        Some(match s {
            "elevator" => DeviceKind::Elevator,
            "ride" => DeviceKind::Ride,
            "ropeway" => DeviceKind::Ropeway,
            "camera" => DeviceKind::Camera,
            "scale" => DeviceKind::Scale,
            _ => return None,
        })
    }

    pub fn machine(self) -> MachineKind {
        match self {
            DeviceKind::Elevator => MachineKind::Elevator,
            DeviceKind::Ride | DeviceKind::Ropeway => MachineKind::Ride,
            DeviceKind::Camera => MachineKind::Camera,
            DeviceKind::Scale => MachineKind::Scale,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Elevator => "elevator",
            DeviceKind::Ride => "ride",
            DeviceKind::Ropeway => "ropeway",
            DeviceKind::Camera => "camera",
            DeviceKind::Scale => "scale",
        }
    }
}

/// One checked scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    /// Letters and digits every id of the scenario carries.
    pub tag: String,
    /// Device time runs this many times faster than the wall clock.
    pub speed: f64,
    /// Device time the scenario lasts.
    pub duration_ms: EpochMs,
    /// Wall time to wait for alarms after the end.
    pub settle_ms: EpochMs,
    pub seed: u64,
    /// Rule overrides for the scenario's own equipment (rule file syntax,
    /// without the equipment level).
    pub rules: toml::Table,
    /// Extra registry records (`persons`, `maintenance`, `cylinders`, …).
    pub registry: Map<String, Value>,
    pub devices: Vec<DeviceDef>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct DeviceDef {
    pub name: String,
    pub kind: DeviceKind,
    /// A camera's equipment: the device it watches (index in `devices`).
    pub on: Option<usize>,
    /// Merged into the generated equipment (a scale: station) record.
    pub equipment: Map<String, Value>,
    /// Merged into the generated device record.
    pub record: Map<String, Value>,
    /// Rule overrides for this device's equipment only.
    pub rules: toml::Table,
    /// A scale's station registers its cylinders with `max_fill_kg` times
    /// this (a registry mistake the LPG table catches).
    pub max_fill_factor: Option<f64>,
}

/// Something that happens at one moment of the scenario.
#[derive(Debug, Clone)]
pub struct Step {
    /// Device time after the start.
    pub at_ms: EpochMs,
    /// Index in `devices`.
    pub device: usize,
    pub action: Action,
    /// Rules whose alarm this step should raise, on its device's equipment.
    pub expect: Vec<RuleId>,
    /// Those alarms must have cleared by the end.
    pub clears: bool,
    /// Wall time after the step within which each must come.
    pub within_ms: Option<EpochMs>,
    /// Line of the step in its file.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Only expectations (e.g. what the registry import itself raises).
    None,
    /// A fault of the device's machine, due at the step.
    Fault(FaultKind),
    /// Fields replaced in every sample for `for_ms`, and the device's
    /// state sent (with them) every `every_ms` meanwhile.
    Set {
        fields: Map<String, Value>,
        for_ms: EpochMs,
        every_ms: EpochMs,
    },
    /// `count` messages of `stream`, `every_ms` apart.
    Send {
        stream: Stream,
        fields: Map<String, Value>,
        count: u32,
        every_ms: EpochMs,
        /// Added to the device time for each message's `ts` (negative: a
        /// record the device kept and uploads late).
        ts_offset_ms: EpochMs,
    },
    /// The device sends nothing for this long (switched off).
    Silence { for_ms: EpochMs },
    /// What the device makes for `for_ms` is held back and sent at
    /// `release_at_ms`, after newer messages: late and out of order.
    Hold {
        for_ms: EpochMs,
        release_at_ms: EpochMs,
    },
    /// A maintenance record posted to the registry at the step.
    Maintenance(MaintenanceStep),
}

#[derive(Debug, Clone)]
pub struct MaintenanceStep {
    pub kind: String,
    /// Person id (macros allowed).
    pub person: String,
    pub done_at: DoneAt,
    pub confirmed: bool,
}

#[derive(Debug, Clone)]
pub enum DoneAt {
    /// Device time after the start.
    Offset(EpochMs),
    /// A date as written (`today`, `today-1`, `2026-05-01`).
    Date(String),
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::ScenarioIo {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Scenario::parse(&text, path)
    }

    /// Checks a scenario's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, SimError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |r| line_col(text, r.start));
            SimError::Scenario {
                file: path.display().to_string(),
                line,
                column,
                message,
            }
        };
        let file: File = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_owned()))?;
        let tag_ok = (1..=8).contains(&file.tag.get_ref().len())
            && file
                .tag
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !tag_ok {
            return Err(at(
                Some(file.tag.span()),
                format!(
                    "tag {:?} must be 1 to 8 letters and digits",
                    file.tag.get_ref()
                ),
            ));
        }
        let speed = *file.speed.get_ref();
        if !(speed.is_finite() && (1.0..=10_000.0).contains(&speed)) {
            return Err(at(
                Some(file.speed.span()),
                format!("speed {speed} must be from 1 to 10000"),
            ));
        }
        let duration = *file.duration_s.get_ref();
        if !(duration.is_finite() && duration > 0.0 && duration <= 7.0 * 86_400.0) {
            return Err(at(
                Some(file.duration_s.span()),
                format!("duration_s {duration} must be > 0 and at most a week"),
            ));
        }
        let duration_ms = secs(duration);

        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, d) in file.devices.iter().enumerate() {
            let name = d.name.get_ref();
            if name.is_empty() || names.insert(name.clone(), i).is_some() {
                return Err(at(
                    Some(d.name.span()),
                    format!("device name {name:?} is empty or used twice"),
                ));
            }
        }
        if file.devices.is_empty() {
            return Err(at(None, "a scenario needs at least one [[device]]".into()));
        }
        let device = |name: &Spanned<String>| -> Result<usize, SimError> {
            names.get(name.get_ref()).copied().ok_or_else(|| {
                at(
                    Some(name.span()),
                    format!("no [[device]] named {:?}", name.get_ref()),
                )
            })
        };
        let mut devices = Vec::new();
        for d in &file.devices {
            let kind = DeviceKind::parse(d.kind.get_ref()).ok_or_else(|| {
                at(
                    Some(d.kind.span()),
                    format!(
                        "kind {:?} is not one of elevator, ride, ropeway, camera, scale",
                        d.kind.get_ref()
                    ),
                )
            })?;
            let on = match (&d.on, kind) {
                (Some(on), DeviceKind::Camera) => {
                    let target = device(on)?;
                    if !matches!(
                        DeviceKind::parse(file.devices[target].kind.get_ref()),
                        Some(DeviceKind::Elevator | DeviceKind::Ride | DeviceKind::Ropeway)
                    ) {
                        return Err(at(
                            Some(on.span()),
                            "a camera watches an elevator, ride or ropeway".into(),
                        ));
                    }
                    Some(target)
                }
                (None, DeviceKind::Camera) => {
                    return Err(at(
                        Some(d.kind.span()),
                        "a camera needs `on`: the device whose equipment it watches".into(),
                    ));
                }
                (Some(on), _) => {
                    return Err(at(Some(on.span()), "only cameras have `on`".into()));
                }
                (None, _) => None,
            };
            if d.max_fill_factor.is_some() && kind != DeviceKind::Scale {
                return Err(at(
                    Some(d.kind.span()),
                    "max_fill_factor is for scales".into(),
                ));
            }
            devices.push(DeviceDef {
                name: d.name.get_ref().clone(),
                kind,
                on,
                equipment: json_table(d.equipment.as_ref()),
                record: json_table(d.record.as_ref()),
                rules: d.rules.clone().unwrap_or_default(),
                max_fill_factor: d.max_fill_factor,
            });
        }

        let mut steps = Vec::new();
        for spanned in &file.steps {
            let line = line_col(text, spanned.span().start).0;
            let s = spanned.get_ref();
            let dev = device(&s.device)?;
            let at_s = *s.at_s.get_ref();
            if !(at_s.is_finite() && at_s >= 0.0 && at_s <= duration) {
                return Err(at(
                    Some(s.at_s.span()),
                    format!("at_s {at_s} must be within the scenario (0 to {duration})"),
                ));
            }
            let kind = devices[dev].kind;
            let action = step_action(s, kind, duration, &at)?;
            let mut expect = Vec::new();
            for r in &s.expect {
                let id = RuleId::new(r.get_ref()).map_err(|e| at(Some(r.span()), e.to_string()))?;
                expect.push(id);
            }
            if s.clears.is_some() && expect.is_empty() {
                return Err(at(Some(spanned.span()), "`clears` without `expect`".into()));
            }
            steps.push(Step {
                at_ms: secs(at_s),
                device: dev,
                action,
                expect,
                clears: s.clears.unwrap_or(false),
                within_ms: s.within_s.map(secs),
                line,
            });
        }
        let registry = json_table(file.registry.as_ref());
        for (key, value) in &registry {
            if !value.is_array() {
                return Err(at(
                    None,
                    format!("[registry] {key} must be a list of records ([[registry.{key}]])"),
                ));
            }
        }
        let name = file.name.unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        });
        Ok(Scenario {
            path: path.to_path_buf(),
            name,
            description: file.description.unwrap_or_default(),
            tag: file.tag.into_inner(),
            speed,
            duration_ms,
            settle_ms: secs(file.settle_s.unwrap_or(10.0).clamp(0.0, 600.0)),
            seed: file.seed.unwrap_or(1),
            rules: file.rules.unwrap_or_default(),
            registry,
            devices,
            steps,
        })
    }

    /// The rule ids the scenario expects, each once, in order.
    pub fn expected_rules(&self) -> Vec<RuleId> {
        let mut out: Vec<RuleId> = Vec::new();
        for r in self.steps.iter().flat_map(|s| &s.expect) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Wall time from the start to the end of the device clock.
    pub fn wall_ms(&self) -> EpochMs {
        (self.duration_ms as f64 / self.speed).ceil() as EpochMs
    }
}

/// The action of a step, checked against its device's kind.
fn step_action(
    s: &StepFile,
    kind: DeviceKind,
    duration: f64,
    at: &impl Fn(Option<Range<usize>>, String) -> SimError,
) -> Result<Action, SimError> {
    let chosen = [
        s.fault.as_ref().map(Spanned::span),
        s.set.as_ref().map(Spanned::span),
        s.send.as_ref().map(Spanned::span),
        s.silence_s.as_ref().map(Spanned::span),
        s.hold_s.as_ref().map(Spanned::span),
        s.maintenance.as_ref().map(Spanned::span),
    ];
    let mut given = chosen.iter().flatten();
    let first = given.next();
    if let Some(second) = given.next() {
        return Err(at(
            Some(second.clone()),
            "a step does one thing: fault, set, send, silence_s, hold_s or maintenance".into(),
        ));
    }
    let positive = |v: Option<f64>, default: f64, what: &str| -> Result<EpochMs, SimError> {
        let v = v.unwrap_or(default);
        if v.is_finite() && v > 0.0 && v <= duration.max(1.0) * 10.0 {
            Ok(secs(v))
        } else {
            Err(at(
                first.cloned(),
                format!("{what} {v} must be a positive number of seconds"),
            ))
        }
    };
    if let Some(f) = &s.fault {
        let fault = FaultKind::parse(f.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = FaultKind::EVERY.iter().map(|k| k.as_str()).collect();
            at(
                Some(f.span()),
                format!("no fault {:?}; known: {}", f.get_ref(), known.join(", ")),
            )
        })?;
        if fault.machine() != kind.machine() {
            return Err(at(
                Some(f.span()),
                format!(
                    "fault {fault} is for a {}, not a {}",
                    fault.machine().as_str(),
                    kind.as_str()
                ),
            ));
        }
        return Ok(Action::Fault(fault));
    }
    if let Some(set) = &s.set {
        let stream = match kind {
            DeviceKind::Elevator => Stream::Elevator,
            DeviceKind::Ride | DeviceKind::Ropeway => Stream::Ride,
            _ => {
                return Err(at(
                    Some(set.span()),
                    "`set` changes elevator or ride samples".into(),
                ));
            }
        };
        let fields = json_table(Some(set.get_ref()));
        check_fields(stream, &fields, true).map_err(|m| at(Some(set.span()), m))?;
        return Ok(Action::Set {
            fields,
            for_ms: positive(s.for_s, 1.0, "for_s")?,
            every_ms: positive(s.every_s, 1.0, "every_s")?,
        });
    }
    if let Some(send) = &s.send {
        let mut fields = json_table(Some(send.get_ref()));
        let stream = fields
            .remove("stream")
            .and_then(|v| v.as_str().and_then(Stream::parse))
            .ok_or_else(|| {
                at(
                    Some(send.span()),
                    "`send` needs stream = \"elevator\", \"ride\", \"video\", \"filling\" or \"event\"".into(),
                )
            })?;
        check_fields(stream, &fields, false).map_err(|m| at(Some(send.span()), m))?;
        let count = s.count.unwrap_or(1);
        if count == 0 || count > 100_000 {
            return Err(at(
                Some(send.span()),
                format!("count {count} must be 1 to 100000"),
            ));
        }
        return Ok(Action::Send {
            stream,
            fields,
            count,
            every_ms: positive(s.every_s, 1.0, "every_s")?,
            ts_offset_ms: secs(s.ts_offset_s.unwrap_or(0.0)),
        });
    }
    if let Some(silence) = &s.silence_s {
        return Ok(Action::Silence {
            for_ms: positive(Some(*silence.get_ref()), 1.0, "silence_s")?,
        });
    }
    if let Some(hold) = &s.hold_s {
        let for_ms = positive(Some(*hold.get_ref()), 1.0, "hold_s")?;
        let release = s.release_at_s.ok_or_else(|| {
            at(
                Some(hold.span()),
                "`hold_s` needs `release_at_s`: when the held messages go".into(),
            )
        })?;
        let release_at_ms = secs(release);
        if !(0.0..=duration).contains(&release) || release_at_ms < secs(*s.at_s.get_ref()) + for_ms
        {
            return Err(at(
                Some(hold.span()),
                format!(
                    "release_at_s {release} must be after the hold ends and within the scenario"
                ),
            ));
        }
        return Ok(Action::Hold {
            for_ms,
            release_at_ms,
        });
    }
    if let Some(m) = &s.maintenance {
        if kind != DeviceKind::Elevator {
            return Err(at(
                Some(m.span()),
                "maintenance records are for elevators".into(),
            ));
        }
        let t = m.get_ref();
        let text = |k: &str| t.get(k).and_then(toml::Value::as_str).map(str::to_owned);
        let kind = text("kind").unwrap_or_else(|| "half_month".into());
        if !["half_month", "quarter", "half_year", "year"].contains(&kind.as_str()) {
            return Err(at(
                Some(m.span()),
                format!("maintenance kind {kind:?} is not half_month, quarter, half_year or year"),
            ));
        }
        let person = text("person").ok_or_else(|| {
            at(
                Some(m.span()),
                "maintenance needs person = \"…\" (a person id)".into(),
            )
        })?;
        let done_at = match (t.get("done_at_s"), text("done_at")) {
            (Some(v), None) => DoneAt::Offset(secs(
                v.as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .ok_or_else(|| at(Some(m.span()), "done_at_s must be a number".into()))?,
            )),
            (None, Some(d)) => DoneAt::Date(d),
            _ => {
                return Err(at(
                    Some(m.span()),
                    "maintenance needs done_at_s (device seconds) or done_at (a date) but not both"
                        .into(),
                ));
            }
        };
        for key in t.keys() {
            if !["kind", "person", "done_at_s", "done_at", "confirmed"].contains(&key.as_str()) {
                return Err(at(
                    Some(m.span()),
                    format!("unknown maintenance key {key:?}"),
                ));
            }
        }
        return Ok(Action::Maintenance(MaintenanceStep {
            kind,
            person,
            done_at,
            confirmed: t
                .get("confirmed")
                .and_then(toml::Value::as_bool)
                .unwrap_or(true),
        }));
    }
    Ok(Action::None)
}

/// Checks that `fields` make a valid message of `stream` (laid over a
/// healthy sample when `overlay`), by decoding it as the engine would.
fn check_fields(stream: Stream, fields: &Map<String, Value>, overlay: bool) -> Result<(), String> {
    let mut msg = if overlay {
        plan::healthy_fields(stream)
    } else {
        Map::new()
    };
    msg.insert("seq".into(), 1.into());
    msg.insert("ts".into(), 1_700_000_000_000i64.into());
    for (k, v) in fields {
        if k == "seq" || k == "ts" {
            return Err(format!("`{k}` is set by the device, not the scenario"));
        }
        // Macros stand for what the run fills in: a time, an id.
        let v = match v.as_str() {
            Some(t) if ts_macro(t, 1_700_000_000_000).is_some() => {
                Value::from(1_699_999_000_000i64)
            }
            Some(t) if t.contains('{') => Value::String("X".into()),
            _ => v.clone(),
        };
        msg.insert(k.clone(), v);
    }
    let id = vigil_model::DeviceId::new("CHECK").map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(&Value::Object(msg)).map_err(|e| e.to_string())?;
    vigil_model::codec::decode(id, stream, &bytes, 1_700_000_000_000)
        .map(|_| ())
        .map_err(|r| format!("not a valid {} message: {}", stream.as_str(), r.detail))
}

/// `{ts}`, `{ts-300}`, `{ts+5}` (seconds): the message's own `ts` plus that.
pub(crate) fn ts_macro(text: &str, ts: EpochMs) -> Option<EpochMs> {
    let inner = text.strip_prefix("{ts")?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(ts);
    }
    let secs_off: f64 = inner.parse().ok()?;
    Some(ts + secs(secs_off))
}

fn secs(s: f64) -> EpochMs {
    (s * 1000.0).round() as EpochMs
}

fn json_table(t: Option<&toml::Table>) -> Map<String, Value> {
    t.and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

/// 1-based line and column of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    description: Option<String>,
    tag: Spanned<String>,
    #[serde(default = "one")]
    speed: Spanned<f64>,
    duration_s: Spanned<f64>,
    settle_s: Option<f64>,
    seed: Option<u64>,
    rules: Option<toml::Table>,
    registry: Option<toml::Table>,
    #[serde(default, rename = "device")]
    devices: Vec<DeviceFile>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<StepFile>>,
}

fn one() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    name: Spanned<String>,
    kind: Spanned<String>,
    on: Option<Spanned<String>>,
    equipment: Option<toml::Table>,
    record: Option<toml::Table>,
    rules: Option<toml::Table>,
    max_fill_factor: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    at_s: Spanned<f64>,
    device: Spanned<String>,
    fault: Option<Spanned<String>>,
    set: Option<Spanned<toml::Table>>,
    send: Option<Spanned<toml::Table>>,
    silence_s: Option<Spanned<f64>>,
    hold_s: Option<Spanned<f64>>,
    release_at_s: Option<f64>,
    maintenance: Option<Spanned<toml::Table>>,
    for_s: Option<f64>,
    every_s: Option<f64>,
    count: Option<u32>,
    ts_offset_s: Option<f64>,
    #[serde(default)]
    expect: Vec<Spanned<String>>,
    clears: Option<bool>,
    within_s: Option<f64>,
}

#[cfg(test)]
mod tests;
