//! Gas-cylinder filling stations: the station, its gas company, its
//! operators and cylinders (registry.md), and one filling scale each.
//!
//! Every station registers a few irregular cylinders beside its good ones:
//! one past its inspection date and one scrapped. Healthy fillings never
//! take them; a fault fills one (or another station's cylinder, an
//! unregistered one, too much, too hard, or by the one operator whose
//! certificate has expired).

use chrono::Duration as Days;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{Context, Device, Fleet, FleetConfig, Owner, credit, date, person, phone};
use crate::elevator::FaultKind;
use crate::machine::MachineSpec;
use crate::scale::{CylinderSpec, ScaleSpec};

#[derive(Debug, Clone, Serialize)]
pub(super) struct Station {
    station_id: String,
    owner_id: String,
    region: String,
    address: String,
    working_hours: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Certificate {
    kind: &'static str,
    number: String,
    expires: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Person {
    person_id: String,
    name: String,
    employer_id: String,
    certificates: Vec<Certificate>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Cylinder {
    cylinder_code: String,
    station_id: String,
    medium: &'static str,
    model: &'static str,
    capacity_l: f64,
    max_fill_kg: f64,
    working_pressure_mpa: f64,
    next_inspection: String,
    status: &'static str,
    made_on: String,
    design_life_years: u32,
}

/// A cylinder type: (model, capacity, max fill, tare, working pressure).
type Model = (&'static str, f64, f64, f64, f64);
/// LPG (GB 5842 YSP series) by share, and the 40 L oxygen cylinder.
const LPG: &[(Model, f64)] = &[
    (("YSP35.5", 35.5, 14.9, 16.5, 2.1), 0.7),
    (("YSP12", 12.0, 5.0, 7.0, 2.1), 0.2),
    (("YSP118", 118.0, 49.5, 48.0, 2.1), 0.1),
];
const O2: Model = ("WMA219-40-15", 40.0, 8.3, 52.0, 15.0);
const BRANDS: &[&str] = &["华润", "港华", "中油", "粤海", "新奥", "昆仑"];

/// What a station's faults fill with: its odd cylinders and the operator
/// whose certificate expired, and a good cylinder (another station's
/// foreign one).
#[derive(Debug, Clone)]
pub(crate) struct Odds {
    pub good: CylinderSpec,
    pub overdue: CylinderSpec,
    pub scrapped: CylinderSpec,
    pub unregistered: CylinderSpec,
    pub uncertified: String,
}

pub(super) fn add(fleet: &mut Fleet, cfg: &FleetConfig, ctx: &Context, rng: &mut impl Rng) {
    struct Built {
        spec: ScaleSpec,
        station_id: String,
        compressed: bool,
        overdue: CylinderSpec,
        scrapped: CylinderSpec,
        unregistered: CylinderSpec,
        uncertified: String,
    }
    let mut built = Vec::new();
    for i in 0..cfg.stations {
        let place = &ctx.places[rng.gen_range(0..ctx.places.len())];
        // Every third station fills oxygen (a compressed gas), the rest LPG.
        let compressed = i % 3 == 2;
        let owner = Owner {
            owner_id: format!("OW{}{}{:03}", place.code, ctx.tag, 200 + i),
            name: format!(
                "{}{}{}有限公司",
                place.city,
                BRANDS[i % BRANDS.len()],
                if compressed { "工业气体" } else { "燃气" }
            ),
            credit_code: credit::enterprise_code(rng, &place.code),
            region: place.code.clone(),
            contact: person(rng),
            phone: phone(rng),
        };
        let station_id = format!("ST{}{}{:02}", place.code, ctx.tag, i + 1);
        fleet.stations.push(Station {
            station_id: station_id.clone(),
            owner_id: owner.owner_id.clone(),
            region: place.code.clone(),
            address: format!(
                "{}{}",
                place.name,
                if compressed {
                    "工业气体充装站"
                } else {
                    "液化石油气充装站"
                }
            ),
            working_hours: "06:00-22:00".to_owned(),
        });

        let person_no = |k: usize| format!("P{}{}{:02}{k:02}", place.code, ctx.tag, i + 1);
        let mut operators = Vec::new();
        let n_ops = rng.gen_range(2..=4);
        for k in 0..=n_ops {
            let id = person_no(k + 1);
            // The last one's filling certificate has expired.
            let expired = k == n_ops;
            let expires = if expired {
                ctx.today - Days::days(rng.gen_range(20..=200))
            } else {
                ctx.today + Days::days(rng.gen_range(200..=900))
            };
            fleet.persons.push(Person {
                person_id: id.clone(),
                name: person(rng),
                employer_id: owner.owner_id.clone(),
                certificates: vec![Certificate {
                    kind: "filling",
                    number: format!(
                        "P-{}-{}-{:04}",
                        place.code,
                        2019 + k,
                        rng.gen_range(1..9999)
                    ),
                    expires: date(expires),
                }],
            });
            operators.push(id);
        }
        let uncertified = operators.pop().unwrap_or_default();

        let medium = if compressed { "O2" } else { "LPG" };
        let mut cylinders = Vec::new();
        let n_cyl: usize = rng.gen_range(30..=60);
        let mut odd = Vec::new();
        for k in 0..n_cyl + 2 {
            let model = if compressed {
                O2
            } else {
                let x: f64 = rng.r#gen();
                let mut acc = 0.0;
                LPG.iter()
                    .find(|(_, share)| {
                        acc += share;
                        x < acc
                    })
                    .map_or(LPG[0].0, |(m, _)| *m)
            };
            let code = format!("{medium}{}{}{:02}{k:05}", place.code, ctx.tag, i + 1);
            let life = if compressed { 30 } else { 8 };
            // The two after the good ones: overdue, then scrapped.
            let (next_inspection, status) = match k.checked_sub(n_cyl) {
                Some(0) => (ctx.today - Days::days(rng.gen_range(10..=200)), "in_use"),
                Some(_) => (ctx.today + Days::days(rng.gen_range(30..=700)), "scrapped"),
                None => (ctx.today + Days::days(rng.gen_range(30..=1400)), "in_use"),
            };
            fleet.cylinders.push(Cylinder {
                cylinder_code: code.clone(),
                station_id: station_id.clone(),
                medium,
                model: model.0,
                capacity_l: model.1,
                max_fill_kg: model.2,
                working_pressure_mpa: model.4,
                next_inspection: date(next_inspection),
                status,
                made_on: date(ctx.today - Days::days(rng.gen_range(200..=6 * 365))),
                design_life_years: life,
            });
            let spec = CylinderSpec {
                code,
                medium: medium.to_owned(),
                max_fill_kg: model.2,
                tare_kg: model.3 * rng.gen_range(0.97..1.03),
                working_pressure_mpa: compressed.then_some(model.4),
            };
            if k < n_cyl {
                cylinders.push(spec);
            } else {
                odd.push(spec);
            }
        }
        let scrapped = odd.pop().unwrap_or_else(|| cylinders[0].clone());
        let overdue = odd.pop().unwrap_or_else(|| cylinders[0].clone());
        let unregistered = CylinderSpec {
            code: format!(
                "{medium}{}{}{:02}9{:04}",
                place.code,
                ctx.tag,
                i + 1,
                rng.gen_range(0..9999)
            ),
            ..cylinders[0].clone()
        };

        let device_id = format!("FS{}{:06}", ctx.tag, i + 1);
        fleet.devices.push(Device {
            device_id: device_id.clone(),
            equipment_id: None,
            station_id: Some(station_id.clone()),
            kind: "filling",
            enabled: true,
            // A scale publishes one record per filling (every few minutes).
            report_interval_s: 600,
        });
        fleet.owners.push(owner);
        built.push(Built {
            spec: ScaleSpec {
                device_id,
                cylinders,
                operators,
                odd_cylinder: None,
                odd_operator: None,
                rate_kg_s: if compressed {
                    rng.gen_range(0.02..0.03)
                } else {
                    rng.gen_range(0.07..0.11)
                },
                seed: rng.r#gen(),
                fault: None,
            },
            station_id,
            compressed,
            overdue,
            scrapped,
            unregistered,
            uncertified,
        });
    }

    let faulty = ctx.faulty(built.len());
    let mut order: Vec<usize> = (0..built.len()).collect();
    order.shuffle(rng);
    let mut kinds = FaultKind::FILLING.to_vec();
    kinds.shuffle(rng);
    let mut next = 0;
    for &i in order.iter().take(faulty) {
        let compressed = built[i].compressed;
        let fits = |k: FaultKind| match k {
            FaultKind::FillingForeign => built.len() > 1,
            FaultKind::FillingOverpressure => compressed,
            _ => true,
        };
        let mut tries = 0;
        while !fits(kinds[next % kinds.len()]) && tries < kinds.len() {
            next += 1;
            tries += 1;
        }
        let kind = kinds[next % kinds.len()];
        next += 1;
        let odd = match kind {
            FaultKind::FillingOverdue => Some(built[i].overdue.clone()),
            FaultKind::FillingScrapped => Some(built[i].scrapped.clone()),
            FaultKind::FillingUnregistered => Some(built[i].unregistered.clone()),
            // A good cylinder of the next station.
            FaultKind::FillingForeign => {
                Some(built[(i + 1) % built.len()].spec.cylinders[0].clone())
            }
            _ => None,
        };
        let plan = ctx.plan(rng, kind);
        let b = &mut built[i];
        b.spec.odd_cylinder = odd;
        b.spec.odd_operator = Some(b.uncertified.clone());
        b.spec.fault = Some(plan);
    }
    for b in &built {
        fleet.odds.push((
            b.spec.device_id.clone(),
            Odds {
                good: b.spec.cylinders[0].clone(),
                overdue: b.overdue.clone(),
                scrapped: b.scrapped.clone(),
                unregistered: b.unregistered.clone(),
                uncertified: b.uncertified.clone(),
            },
        ));
    }
    fleet.machines.extend(
        built
            .into_iter()
            .map(|b| (MachineSpec::Scale(b.spec), b.station_id)),
    );
}
