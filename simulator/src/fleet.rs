//! A fleet: the registry records for a city's elevators and, for each, the
//! parameters and planned fault of its simulated car. Everything derives
//! from the seed (and the generation day, for inspection dates).

mod credit;
mod parks;
mod regions;
mod stations;

use chrono::{Duration as Days, NaiveDate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;
use vigil_model::Region;

use crate::elevator::{ElevatorSpec, FaultKind, FaultPlan};
use crate::machine::MachineSpec;
use regions::Place;

/// Faults start at a random time in this window after `first_fault_after_s`.
const FAULT_WINDOW_S: f64 = 240.0;
const DEFAULT_REGION: &str = "440700";

/// What fleet to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Number of elevators (one device each).
    pub devices: usize,
    pub seed: u64,
    /// Share of elevators that develop one fault during a run.
    pub fault_fraction: f64,
    /// No fault starts earlier than this after the run starts; each faulty
    /// elevator's fault is due at a random time in the following 4 minutes.
    pub first_fault_after_s: f64,
    /// A 6-digit division code; a city (`440700`) spreads the fleet over
    /// its counties, a county keeps it there, a province over a few cities.
    pub region: String,
    /// Large amusement rides (coaster-like trains), one device each.
    pub rides: usize,
    /// Passenger ropeways, one device each.
    pub ropeways: usize,
    /// Video-analytics boxes, on elevator cars (and, with rides, at a
    /// quarter of the rides' platforms).
    pub cameras: usize,
    /// Gas-cylinder filling stations, one scale each, with their cylinders
    /// and operators.
    pub stations: usize,
    /// Letters and digits put into every generated id (`EL{tag}000001`,
    /// `EQ440703{tag}000001`, …), so several fleets share one registry.
    pub id_tag: String,
    /// Elevators, their devices, owners and maintainers are numbered from
    /// `first_number + 1`: fleets generated part by part (a province, each
    /// part with its own seed) then share no id. Rides, ropeways, cameras
    /// and stations are not renumbered.
    pub first_number: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            devices: 200,
            seed: 1,
            fault_fraction: 0.1,
            first_fault_after_s: 60.0,
            region: DEFAULT_REGION.to_owned(),
            rides: 0,
            ropeways: 0,
            cameras: 0,
            stations: 0,
            id_tag: String::new(),
            first_number: 0,
        }
    }
}

/// A fault the fleet will inject, for narrating a demo or checking alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub device_id: String,
    /// The equipment, or for a filling scale its station.
    pub equipment_id: String,
    pub kind: FaultKind,
    /// Seconds after the start of `run` when the fault is due; it starts at
    /// the next fitting moment (an occupied trip, an idle car, …).
    pub after_s: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Owner {
    owner_id: String,
    name: String,
    credit_code: String,
    region: String,
    contact: String,
    phone: String,
}

#[derive(Debug, Clone, Serialize)]
struct Maintainer {
    maintainer_id: String,
    name: String,
    credit_code: String,
    licence_expires: String,
}

#[derive(Debug, Clone, Serialize)]
struct Equipment {
    equipment_id: String,
    reg_code: String,
    category: &'static str,
    owner_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintainer_id: Option<String>,
    region: String,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lon: Option<f64>,
    status: &'static str,
    next_inspection: String,
    last_maintenance: String,
    params: Value,
}

#[derive(Debug, Clone, Serialize)]
struct Device {
    device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    equipment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    station_id: Option<String>,
    kind: &'static str,
    enabled: bool,
    report_interval_s: u32,
}

/// A generated fleet: registry records plus one simulated machine per
/// device.
#[derive(Debug, Clone)]
pub struct Fleet {
    owners: Vec<Owner>,
    maintainers: Vec<Maintainer>,
    equipment: Vec<Equipment>,
    devices: Vec<Device>,
    stations: Vec<stations::Station>,
    persons: Vec<stations::Person>,
    cylinders: Vec<stations::Cylinder>,
    /// Each device's machine with its equipment (or station) id, in the
    /// order of `devices`.
    pub(crate) machines: Vec<(MachineSpec, String)>,
    /// Per scale: what its faults fill with.
    pub(crate) odds: Vec<(String, stations::Odds)>,
}

const BRANDS: &[&str] = &[
    "华悦", "锦绣", "天禾", "恒信", "嘉和", "宏达", "万家", "新城", "东湖", "江景", "金桂", "丰泽",
    "碧湾", "海棠",
];
const OWNER_KINDS: &[&str] = &[
    "物业管理有限公司",
    "置业有限公司",
    "商业管理有限公司",
    "酒店有限公司",
    "实业有限公司",
];
const MAINTAINER_BRANDS: &[&str] = &["安捷", "恒达", "利通", "顺安", "卓越", "鸿运", "速升"];
const SURNAMES: &[&str] = &[
    "陈", "李", "黄", "张", "梁", "吴", "林", "刘", "何", "谭", "区", "伍",
];
const GIVEN: &[&str] = &[
    "伟", "敏", "静", "强", "丽", "军", "洁", "杰", "婷", "磊", "志明", "嘉欣", "建华", "秀英",
];
const ROADS: &[&str] = &[
    "建设路",
    "迎宾大道",
    "港口路",
    "五邑路",
    "东华路",
    "白沙大道",
    "跃进路",
    "华园路",
    "中山路",
    "人民路",
    "发展大道",
    "育德街",
];

impl Fleet {
    /// Generates the fleet; dates are relative to today (UTC).
    pub fn generate(cfg: &FleetConfig) -> Fleet {
        Fleet::generate_on(cfg, chrono::Utc::now().date_naive())
    }

    /// Same as `generate` with an explicit "today", so tests are stable.
    pub(crate) fn generate_on(cfg: &FleetConfig, today: NaiveDate) -> Fleet {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let region = Region::new(&cfg.region).unwrap_or_else(|e| {
            warn!(region = %cfg.region, error = %e, "Fleet region is not a division code; using {DEFAULT_REGION}.");
            Region::new(DEFAULT_REGION).unwrap_or_else(|_| unreachable!("the default region is valid"))
        });
        let places = regions::counties(&region);
        let date = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let tag: String = cfg
            .id_tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();

        let n_owners = (cfg.devices / 40).clamp(3, BRANDS.len());
        let mut brands: Vec<&str> = BRANDS.to_vec();
        brands.shuffle(&mut rng);
        let owners: Vec<Owner> = (0..n_owners)
            .map(|i| {
                let place = &places[rng.gen_range(0..places.len())];
                let city = place.city;
                Owner {
                    owner_id: format!("OW{}{tag}{:03}", place.code, cfg.first_number + i + 1),
                    name: format!(
                        "{city}{}{}",
                        brands[i],
                        OWNER_KINDS[rng.gen_range(0..OWNER_KINDS.len())]
                    ),
                    credit_code: credit::enterprise_code(&mut rng, &place.code),
                    region: place.code.clone(),
                    contact: person(&mut rng),
                    phone: phone(&mut rng),
                }
            })
            .collect();

        let n_maintainers = (cfg.devices / 80).clamp(2, MAINTAINER_BRANDS.len());
        let city_code = region.city();
        let maintainers: Vec<Maintainer> = (0..n_maintainers)
            .map(|i| {
                let place = &places[rng.gen_range(0..places.len())];
                let city = place.city;
                Maintainer {
                    maintainer_id: format!(
                        "MT{}{tag}{:02}",
                        city_code.as_str(),
                        cfg.first_number + i + 1
                    ),
                    name: format!("{city}{}电梯工程有限公司", MAINTAINER_BRANDS[i]),
                    credit_code: credit::enterprise_code(&mut rng, &place.code),
                    licence_expires: date(today + Days::days(rng.gen_range(200..=900))),
                }
            })
            .collect();

        let mut equipment = Vec::with_capacity(cfg.devices);
        let mut devices = Vec::with_capacity(cfg.devices);
        let mut elevators = Vec::with_capacity(cfg.devices);
        while equipment.len() < cfg.devices {
            // A building: a few identical cars under one owner and address.
            let cars = rng.gen_range(1..=4).min(cfg.devices - equipment.len());
            let place: &Place = &places[rng.gen_range(0..places.len())];
            let owner = &owners[rng.gen_range(0..owners.len())];
            let maintainer = &maintainers[rng.gen_range(0..maintainers.len())];
            let lowest = [1, 1, 1, -1, -1, -1, -2, -2, -3][rng.gen_range(0..9)];
            let highest: i16 = rng.gen_range(8..=32);
            let rated = match highest {
                ..=11 => 1.0,
                12..=18 => [1.5, 1.6, 1.75][rng.gen_range(0..3)],
                19..=26 => [1.75, 2.0][rng.gen_range(0..2)],
                _ => [2.0, 2.5][rng.gen_range(0..2)],
            };
            let address = format!(
                "{}{}{}号",
                place.name,
                ROADS[rng.gen_range(0..ROADS.len())],
                rng.gen_range(1..=399)
            );
            let position = place.centre.map(|(lat, lon)| {
                (
                    lat + rng.gen_range(-0.08..0.08),
                    lon + rng.gen_range(-0.08..0.08),
                )
            });
            let registered = rng.gen_range(10..=24);
            let rated_load = [630, 800, 1000, 1050, 1350][rng.gen_range(0..5)];
            for car in 1..=cars {
                let n = cfg.first_number + equipment.len() + 1;
                let equipment_id = format!("EQ{}{tag}{n:06}", place.code);
                let device_id = format!("EL{tag}{n:06}");
                equipment.push(Equipment {
                    equipment_id: equipment_id.clone(),
                    reg_code: format!("梯11{}{n:05}({registered:02})", place.code),
                    category: "elevator",
                    owner_id: owner.owner_id.clone(),
                    maintainer_id: Some(maintainer.maintainer_id.clone()),
                    region: place.code.clone(),
                    address: format!("{address}{car}号梯"),
                    lat: position.map(|p| round6(p.0)),
                    lon: position.map(|p| round6(p.1)),
                    status: "in_use",
                    next_inspection: date(today + Days::days(rng.gen_range(45..=360))),
                    last_maintenance: date(today - Days::days(rng.gen_range(1..=12))),
                    params: json!({
                        "rated_speed_mps": rated,
                        "floors": [lowest, highest],
                        "rated_load_kg": rated_load,
                    }),
                });
                devices.push(Device {
                    device_id: device_id.clone(),
                    equipment_id: Some(equipment_id),
                    station_id: None,
                    kind: "elevator",
                    enabled: true,
                    report_interval_s: 30,
                });
                elevators.push(ElevatorSpec {
                    device_id,
                    floors: (lowest, highest),
                    rated_speed_mps: rated,
                    seed: rng.r#gen(),
                    fault: None,
                });
            }
        }

        // Faulty cars: a seeded choice, kinds dealt round-robin so a fleet
        // shows a mix.
        let faulty = ((cfg.devices as f64 * cfg.fault_fraction.clamp(0.0, 1.0)).round() as usize)
            .min(cfg.devices);
        let mut order: Vec<usize> = (0..cfg.devices).collect();
        order.shuffle(&mut rng);
        let mut kinds = FaultKind::ALL.to_vec();
        kinds.shuffle(&mut rng);
        let first = cfg.first_fault_after_s.max(0.0);
        for (k, &i) in order.iter().take(faulty).enumerate() {
            let after_s = first + rng.gen_range(0.0..FAULT_WINDOW_S);
            elevators[i].fault = Some(FaultPlan {
                kind: kinds[k % kinds.len()],
                after_ms: (after_s * 1000.0) as i64,
            });
        }

        let machines = elevators
            .into_iter()
            .zip(&equipment)
            .map(|(spec, eq)| (MachineSpec::Elevator(spec), eq.equipment_id.clone()))
            .collect();
        let mut fleet = Fleet {
            owners,
            maintainers,
            equipment,
            devices,
            stations: Vec::new(),
            persons: Vec::new(),
            cylinders: Vec::new(),
            machines,
            odds: Vec::new(),
        };
        // The other kinds draw from their own random stream, so an elevator
        // fleet is the same whatever else comes with it.
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_0f07_4e5c_e11e);
        let ctx = Context {
            places: &places,
            tag: &tag,
            today,
            first_fault_ms: (first * 1000.0) as i64,
            fault_fraction: cfg.fault_fraction.clamp(0.0, 1.0),
        };
        parks::add(&mut fleet, cfg, &ctx, &mut rng);
        stations::add(&mut fleet, cfg, &ctx, &mut rng);
        fleet
    }

    /// The registry import document (registry.md): owners, maintainers,
    /// equipment and devices, for `POST /api/v1/registry/import`.
    pub fn import_doc(&self) -> Value {
        let mut doc = json!({
            "owners": self.owners,
            "maintainers": self.maintainers,
            "equipment": self.equipment,
            "devices": self.devices,
        });
        // Only fleets with filling stations have these lists, so an
        // elevator fleet's document stays as it was.
        if !self.stations.is_empty() {
            doc["stations"] = json!(self.stations);
            doc["persons"] = json!(self.persons);
            doc["cylinders"] = json!(self.cylinders);
        }
        doc
    }

    /// One simulated machine per device, in the order of `device_ids`:
    /// what the MQTT runner publishes from, and what `vigil-edge emulate`
    /// serves over Modbus.
    pub fn machines(&self) -> Vec<crate::Machine> {
        self.machines
            .iter()
            .map(|(spec, _)| crate::Machine::new(spec))
            .collect()
    }

    /// Device ids of one kind, in order.
    pub fn device_ids_of(&self, kind: crate::MachineKind) -> Vec<String> {
        self.machines
            .iter()
            .filter(|(spec, _)| machine_kind(spec) == kind)
            .map(|(spec, _)| spec.device_id().to_owned())
            .collect()
    }

    pub fn device_ids(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.device_id.clone()).collect()
    }

    /// Plans a fault on one device: due `after_ms` after its machine's
    /// first step. The fault must fit the device's kind; a scale's fault
    /// fills with the station's own odd cylinder or operator (a foreign
    /// cylinder needs a second station).
    pub fn plan_fault(
        &mut self,
        device_id: &str,
        kind: FaultKind,
        after_ms: i64,
    ) -> Result<(), String> {
        let odds = self
            .odds
            .iter()
            .position(|(d, _)| d == device_id)
            .map(|i| (i, self.odds[i].1.clone()));
        let foreign = odds.as_ref().and_then(|(i, _)| {
            let next = &self.odds[(i + 1) % self.odds.len()];
            (next.0 != device_id).then(|| next.1.good.clone())
        });
        let Some((spec, _)) = self
            .machines
            .iter_mut()
            .find(|(spec, _)| spec.device_id() == device_id)
        else {
            return Err(format!("no device {device_id} in the fleet"));
        };
        if machine_kind(spec) != kind.machine() {
            return Err(format!(
                "fault {kind} is for a {}, and {device_id} is a {}",
                kind.machine().as_str(),
                machine_kind(spec).as_str()
            ));
        }
        let plan = Some(FaultPlan { kind, after_ms });
        match spec {
            MachineSpec::Elevator(s) => s.fault = plan,
            MachineSpec::Ride(s) => s.fault = plan,
            MachineSpec::Camera(s) => s.fault = plan,
            MachineSpec::Scale(s) => {
                let Some((_, odds)) = odds else {
                    return Err(format!("no station facts for scale {device_id}"));
                };
                s.odd_operator = Some(odds.uncertified.clone());
                s.odd_cylinder = match kind {
                    FaultKind::FillingOverdue => Some(odds.overdue.clone()),
                    FaultKind::FillingScrapped => Some(odds.scrapped.clone()),
                    FaultKind::FillingUnregistered => Some(odds.unregistered.clone()),
                    FaultKind::FillingForeign => Some(foreign.ok_or_else(|| {
                        format!("{device_id}: a foreign cylinder needs a second station")
                    })?),
                    _ => None,
                };
                s.fault = plan;
            }
        }
        Ok(())
    }

    /// Binds camera box `device_id` to `equipment_id` (a ride's platform
    /// when `at_ride`, else an elevator car).
    pub fn bind_camera(
        &mut self,
        device_id: &str,
        equipment_id: &str,
        at_ride: bool,
    ) -> Result<(), String> {
        let Some((MachineSpec::Camera(spec), eq)) = self
            .machines
            .iter_mut()
            .find(|(spec, _)| spec.device_id() == device_id)
        else {
            return Err(format!("{device_id} is not a camera box of the fleet"));
        };
        spec.at_ride = at_ride;
        spec.cameras = if at_ride {
            vec!["platform".to_owned(), "queue".to_owned()]
        } else {
            vec!["car".to_owned()]
        };
        *eq = equipment_id.to_owned();
        if let Some(d) = self.devices.iter_mut().find(|d| d.device_id == device_id) {
            d.equipment_id = Some(equipment_id.to_owned());
        }
        Ok(())
    }

    /// The equipment (a scale: its station) a device is bound to.
    pub fn equipment_of(&self, device_id: &str) -> Option<&str> {
        self.machines
            .iter()
            .find(|(spec, _)| spec.device_id() == device_id)
            .map(|(_, eq)| eq.as_str())
    }

    /// The faults `run` will inject, in no particular order.
    pub fn planned_faults(&self) -> Vec<PlannedFault> {
        self.machines
            .iter()
            .filter_map(|(spec, equipment_id)| {
                spec.fault().map(|(kind, after_ms)| PlannedFault {
                    device_id: spec.device_id().to_owned(),
                    equipment_id: equipment_id.clone(),
                    kind,
                    after_s: after_ms as f64 / 1000.0,
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

fn machine_kind(spec: &MachineSpec) -> crate::MachineKind {
    match spec {
        MachineSpec::Elevator(_) => crate::MachineKind::Elevator,
        MachineSpec::Ride(_) => crate::MachineKind::Ride,
        MachineSpec::Camera(_) => crate::MachineKind::Camera,
        MachineSpec::Scale(_) => crate::MachineKind::Scale,
    }
}

/// What the generators of the other kinds share with the elevators'.
struct Context<'a> {
    places: &'a [Place],
    /// [`FleetConfig::id_tag`], letters and digits only.
    tag: &'a str,
    today: NaiveDate,
    first_fault_ms: i64,
    fault_fraction: f64,
}

impl Context<'_> {
    /// How many of `n` devices develop a fault.
    fn faulty(&self, n: usize) -> usize {
        ((n as f64 * self.fault_fraction).round() as usize).min(n)
    }

    /// A fault plan due in the usual window.
    fn plan(&self, rng: &mut impl Rng, kind: FaultKind) -> FaultPlan {
        FaultPlan {
            kind,
            after_ms: self.first_fault_ms + (rng.gen_range(0.0..FAULT_WINDOW_S) * 1000.0) as i64,
        }
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn person(rng: &mut impl Rng) -> String {
    format!(
        "{}{}",
        SURNAMES[rng.gen_range(0..SURNAMES.len())],
        GIVEN[rng.gen_range(0..GIVEN.len())]
    )
}

fn phone(rng: &mut impl Rng) -> String {
    let prefix = ["135", "137", "138", "139", "150", "186", "189"][rng.gen_range(0..7)];
    format!("{prefix}{:08}", rng.gen_range(0..100_000_000u32))
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes_and_dates_are_well_formed() {
        let today = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let fleet = Fleet::generate_on(
            &FleetConfig {
                devices: 50,
                ..FleetConfig::default()
            },
            today,
        );
        for o in &fleet.owners {
            assert!(credit::is_valid(&o.credit_code), "{}", o.credit_code);
            assert!(o.name.starts_with("江门市"), "{}", o.name);
        }
        for m in &fleet.maintainers {
            assert!(credit::is_valid(&m.credit_code), "{}", m.credit_code);
        }
        for e in &fleet.equipment {
            let next = NaiveDate::parse_from_str(&e.next_inspection, "%Y-%m-%d").unwrap();
            assert!(
                next > today + Days::days(30),
                "no inspection due during a demo"
            );
        }
    }

    #[test]
    fn fault_kinds_are_mixed_and_counted() {
        let cfg = FleetConfig {
            devices: 100,
            fault_fraction: 0.2,
            first_fault_after_s: 30.0,
            ..FleetConfig::default()
        };
        let faults = Fleet::generate(&cfg).planned_faults();
        assert_eq!(faults.len(), 20);
        for kind in FaultKind::ALL {
            assert_eq!(
                faults.iter().filter(|f| f.kind == kind).count(),
                4,
                "{kind}"
            );
        }
        assert!(
            faults
                .iter()
                .all(|f| (30.0..30.0 + FAULT_WINDOW_S).contains(&f.after_s))
        );
    }
}
