//! A scenario becomes a run: a fleet whose ids carry the scenario's tag and
//! the run's id (so runs never share a device, and never inherit an alarm),
//! its registry document with the scenario's changes, its faults planned,
//! and the expectations the checker holds the engine to.

use chrono::{Duration as Days, NaiveDate};
use serde_json::{Map, Value, json};
use vigil_model::{EpochMs, RuleId, Stream};

use super::{Action, DeviceKind, Scenario};
use crate::MachineKind;
use crate::error::SimError;
use crate::fleet::{Fleet, FleetConfig};

/// One declared device as generated.
#[derive(Debug, Clone)]
pub struct PreparedDevice {
    pub name: String,
    pub kind: DeviceKind,
    pub device_id: String,
    /// Its equipment (a scale: its station).
    pub equipment_id: String,
}

/// An alarm the scenario expects.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Index of the step in the scenario, and its line.
    pub step: usize,
    pub line: usize,
    pub rule: RuleId,
    /// The device named in the step, and the equipment the alarm is on.
    pub device: String,
    pub equipment_id: String,
    /// Device time of the step after the start.
    pub at_ms: EpochMs,
    pub clears: bool,
    pub within_ms: Option<EpochMs>,
}

/// A scenario ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    /// The scenario's tag with the run's id: in every id of this run.
    pub run_tag: String,
    pub fleet: Fleet,
    /// The registry import document (registry.md).
    pub import: Value,
    pub devices: Vec<PreparedDevice>,
    /// Every equipment (and station) id of the run, sorted.
    pub equipment: Vec<String>,
    pub expectations: Vec<Expectation>,
    /// The scenario's rule overrides for this run's equipment, as a rule
    /// file (`[equipment."<id>"."<rule>"]`); empty when it has none.
    pub rules_file: toml::Table,
}

/// When the scenario happens: its device clock starts in the past and runs
/// `speed` times the wall clock, so it reaches the wall clock at the end
/// (a gateway emptying its spool: honest times, delivered fast).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    pub wall_start: EpochMs,
    pub device_start: EpochMs,
    pub speed: f64,
}

impl Timeline {
    pub fn new(wall_start: EpochMs, duration_ms: EpochMs, speed: f64) -> Timeline {
        let lead = duration_ms as f64 * (1.0 - 1.0 / speed);
        Timeline {
            wall_start,
            device_start: wall_start - lead.round() as EpochMs,
            speed,
        }
    }

    /// The device time at wall time `wall`.
    pub fn device_at(&self, wall: EpochMs) -> EpochMs {
        self.device_start + ((wall - self.wall_start) as f64 * self.speed) as EpochMs
    }

    /// The wall time when the device clock is `at_ms` after its start.
    pub fn wall_of(&self, at_ms: EpochMs) -> EpochMs {
        self.wall_start + (at_ms as f64 / self.speed).round() as EpochMs
    }
}

impl Scenario {
    /// The run `run_id` (letters and digits) of this scenario, with
    /// registry dates relative to `today`.
    pub fn prepare(&self, run_id: &str, today: NaiveDate) -> Result<Prepared, SimError> {
        let fail = |line: usize, message: String| SimError::Scenario {
            file: self.path.display().to_string(),
            line,
            column: 1,
            message,
        };
        let run_tag: String = format!("{}{run_id}", self.tag)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let count = |k: DeviceKind| self.devices.iter().filter(|d| d.kind == k).count();
        let mut fleet = Fleet::generate_on(
            &FleetConfig {
                devices: count(DeviceKind::Elevator),
                seed: self.seed,
                fault_fraction: 0.0,
                first_fault_after_s: 0.0,
                region: "440700".into(),
                rides: count(DeviceKind::Ride),
                ropeways: count(DeviceKind::Ropeway),
                cameras: count(DeviceKind::Camera),
                stations: count(DeviceKind::Scale),
                id_tag: run_tag.clone(),
                first_number: 0,
            },
            today,
        );
        // Declared devices take the generated ones of their kind in order
        // (rides before ropeways, as the generator makes them).
        let elevators = fleet.device_ids_of(MachineKind::Elevator);
        let rides = fleet.device_ids_of(MachineKind::Ride);
        let cameras = fleet.device_ids_of(MachineKind::Camera);
        let scales = fleet.device_ids_of(MachineKind::Scale);
        let n_rides = count(DeviceKind::Ride);
        let mut taken = [0usize; 5];
        let mut devices = Vec::new();
        for d in &self.devices {
            let (list, offset, slot) = match d.kind {
                DeviceKind::Elevator => (&elevators, 0, 0),
                DeviceKind::Ride => (&rides, 0, 1),
                DeviceKind::Ropeway => (&rides, n_rides, 2),
                DeviceKind::Camera => (&cameras, 0, 3),
                DeviceKind::Scale => (&scales, 0, 4),
            };
            let id = list.get(offset + taken[slot]).cloned().ok_or_else(|| {
                fail(
                    1,
                    format!("the fleet has no {} for {:?}", d.kind.as_str(), d.name),
                )
            })?;
            taken[slot] += 1;
            let equipment_id = fleet.equipment_of(&id).unwrap_or_default().to_owned();
            devices.push(PreparedDevice {
                name: d.name.clone(),
                kind: d.kind,
                device_id: id,
                equipment_id,
            });
        }
        // Cameras watch the equipment they are declared on.
        for i in 0..devices.len() {
            if let Some(on) = self.devices[i].on {
                let target = devices[on].equipment_id.clone();
                let at_ride = matches!(devices[on].kind, DeviceKind::Ride | DeviceKind::Ropeway);
                fleet
                    .bind_camera(&devices[i].device_id, &target, at_ride)
                    .map_err(|e| fail(1, e))?;
                devices[i].equipment_id = target;
            }
        }
        for s in &self.steps {
            if let Action::Fault(kind) = s.action {
                fleet
                    .plan_fault(&devices[s.device].device_id, kind, s.at_ms)
                    .map_err(|e| fail(s.line, e))?;
            }
        }

        let mut import = fleet.import_doc();
        let macros = Macros {
            tag: &run_tag,
            devices: &devices,
            doc: import.clone(),
            today,
        };
        for (d, def) in devices.iter().zip(&self.devices) {
            let (list, key) = if d.kind == DeviceKind::Scale {
                ("stations", "station_id")
            } else {
                ("equipment", "equipment_id")
            };
            if !def.equipment.is_empty() {
                merge_into(
                    &mut import,
                    list,
                    key,
                    &d.equipment_id,
                    &macros.expand_map(&def.equipment),
                )
                .map_err(|e| fail(1, format!("device {:?}: {e}", d.name)))?;
            }
            if !def.record.is_empty() {
                merge_into(
                    &mut import,
                    "devices",
                    "device_id",
                    &d.device_id,
                    &macros.expand_map(&def.record),
                )
                .map_err(|e| fail(1, format!("device {:?}: {e}", d.name)))?;
            }
        }
        for (d, def) in devices.iter().zip(&self.devices) {
            let Some(factor) = def.max_fill_factor else {
                continue;
            };
            for c in import["cylinders"].as_array_mut().into_iter().flatten() {
                if c["station_id"] == d.equipment_id.as_str()
                    && let Some(kg) = c["max_fill_kg"].as_f64()
                {
                    c["max_fill_kg"] = json!((kg * factor * 100.0).round() / 100.0);
                }
            }
        }
        for (key, records) in &self.registry {
            let expanded = macros.expand(records);
            let Value::Array(extra) = expanded else {
                continue;
            };
            match import.get_mut(key) {
                Some(Value::Array(list)) => list.extend(extra),
                _ => {
                    import[key.as_str()] = Value::Array(extra);
                }
            }
        }

        let mut equipment: Vec<String> = devices.iter().map(|d| d.equipment_id.clone()).collect();
        equipment.sort();
        equipment.dedup();
        let mut expectations = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            for rule in &s.expect {
                let d = &devices[s.device];
                expectations.push(Expectation {
                    step: i,
                    line: s.line,
                    rule: rule.clone(),
                    device: d.name.clone(),
                    equipment_id: d.equipment_id.clone(),
                    at_ms: s.at_ms,
                    clears: s.clears,
                    within_ms: s.within_ms,
                });
            }
        }
        // The scenario's overrides for all its equipment, a device's own
        // for its equipment.
        let mut by_equipment = toml::Table::new();
        for id in &equipment {
            if !self.rules.is_empty() {
                by_equipment.insert(id.clone(), toml::Value::Table(self.rules.clone()));
            }
        }
        for (d, def) in devices.iter().zip(&self.devices) {
            if def.rules.is_empty() {
                continue;
            }
            let entry = by_equipment
                .entry(d.equipment_id.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                for (rule, keys) in &def.rules {
                    t.insert(rule.clone(), keys.clone());
                }
            }
        }
        let mut rules_file = toml::Table::new();
        if !by_equipment.is_empty() {
            rules_file.insert("equipment".into(), toml::Value::Table(by_equipment));
        }
        Ok(Prepared {
            scenario: self.clone(),
            run_tag,
            fleet,
            import,
            devices,
            equipment,
            expectations,
            rules_file,
        })
    }
}

impl Prepared {
    /// The device of each declared name.
    pub fn device(&self, name: &str) -> Option<&PreparedDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// `text` with the run's macros expanded.
    pub fn expand(&self, text: &str, today: NaiveDate) -> String {
        self.macros(today)
            .expand(&Value::String(text.to_owned()))
            .as_str()
            .unwrap_or(text)
            .to_owned()
    }

    /// Every string of `m` with the run's macros expanded.
    pub fn expand_map(&self, m: &Map<String, Value>, today: NaiveDate) -> Map<String, Value> {
        self.macros(today).expand_map(m)
    }

    fn macros(&self, today: NaiveDate) -> Macros<'_> {
        Macros {
            tag: &self.run_tag,
            devices: &self.devices,
            doc: self.import.clone(),
            today,
        }
    }
}

/// Merges `patch` into the record of `list` whose `key` is `id`.
fn merge_into(
    doc: &mut Value,
    list: &str,
    key: &str,
    id: &str,
    patch: &Map<String, Value>,
) -> Result<(), String> {
    let record = doc
        .get_mut(list)
        .and_then(Value::as_array_mut)
        .and_then(|l| l.iter_mut().find(|r| r[key] == id))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("no {list} record {id}"))?;
    for (k, v) in patch {
        match (record.get_mut(k), v) {
            // Nested objects (equipment params) merge key by key.
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (nk, nv) in new {
                    old.insert(nk.clone(), nv.clone());
                }
            }
            _ => {
                record.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// `{tag}`, `{device:NAME}`, `{equipment:NAME}` (a scale: its station),
/// `{owner:NAME}`, `{maintainer:NAME}`, and for a scale `{cylinder:NAME}`
/// (a good cylinder of its station) and `{operator:NAME}` (a certified
/// operator) in strings, and a whole string `today`, `today+N`,
/// `today-N` as a date.
struct Macros<'a> {
    tag: &'a str,
    devices: &'a [PreparedDevice],
    doc: Value,
    today: NaiveDate,
}

impl Macros<'_> {
    fn expand_map(&self, m: &Map<String, Value>) -> Map<String, Value> {
        match self.expand(&Value::Object(m.clone())) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn expand(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.expand(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.expand(x))).collect())
            }
            other => other.clone(),
        }
    }

    /// `field` of the first record of `list` whose `key` is `value`.
    fn first(&self, list: &str, key: &str, value: &str, field: &str) -> String {
        self.doc[list]
            .as_array()
            .and_then(|l| l.iter().find(|r| r[key] == value))
            .and_then(|r| r[field].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    fn text(&self, s: &str) -> String {
        if let Some(rest) = s.strip_prefix("today") {
            let days = if rest.is_empty() {
                Some(0)
            } else {
                rest.parse::<i64>().ok()
            };
            if let Some(days) = days {
                return (self.today + Days::days(days))
                    .format("%Y-%m-%d")
                    .to_string();
            }
        }
        let mut out = s.replace("{tag}", self.tag);
        for d in self.devices {
            let record = |list: &str, key: &str, field: &str| -> String {
                self.doc[list]
                    .as_array()
                    .and_then(|l| l.iter().find(|r| r[key] == d.equipment_id.as_str()))
                    .and_then(|r| r[field].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let owner = || {
                let o = record("equipment", "equipment_id", "owner_id");
                if o.is_empty() {
                    record("stations", "station_id", "owner_id")
                } else {
                    o
                }
            };
            for (name, value) in [
                (format!("{{device:{}}}", d.name), Some(d.device_id.clone())),
                (
                    format!("{{equipment:{}}}", d.name),
                    Some(d.equipment_id.clone()),
                ),
                (
                    format!("{{station:{}}}", d.name),
                    Some(d.equipment_id.clone()),
                ),
                (format!("{{owner:{}}}", d.name), None),
                (format!("{{maintainer:{}}}", d.name), None),
                (format!("{{cylinder:{}}}", d.name), None),
                (format!("{{operator:{}}}", d.name), None),
            ] {
                if out.contains(&name) {
                    let value = value.unwrap_or_else(|| {
                        if name.starts_with("{owner:") {
                            owner()
                        } else if name.starts_with("{cylinder:") {
                            self.first("cylinders", "station_id", &d.equipment_id, "cylinder_code")
                        } else if name.starts_with("{operator:") {
                            self.first("persons", "employer_id", &owner(), "person_id")
                        } else {
                            record("equipment", "equipment_id", "maintainer_id")
                        }
                    });
                    out = out.replace(&name, &value);
                }
            }
        }
        out
    }
}

/// A healthy sample's fields, as JSON: what `set` overlays are checked on.
pub(crate) fn healthy_fields(stream: Stream) -> Map<String, Value> {
    let v = match stream {
        Stream::Elevator => json!({
            "floor": 1, "direction": "stop", "speed_mps": 0.0, "door": "closed",
            "leveled": true, "occupied": false, "mode": "normal", "safety_circuit": true,
            "door_lock": true, "alarm_button": false, "power": "mains", "limit": "none",
        }),
        Stream::Ride => json!({
            "state": "stopped", "speed_mps": 0.0, "restraints_locked": true, "brake": "ok",
        }),
        _ => json!({}),
    };
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
