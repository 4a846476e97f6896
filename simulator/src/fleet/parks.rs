//! Amusement parks and ropeways, and the camera boxes watching elevator
//! cars and ride platforms.

use chrono::Duration as Days;
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::json;

use super::{Context, Device, Equipment, Fleet, FleetConfig, Owner, credit, date, person, phone};
use crate::camera::CameraSpec;
use crate::elevator::FaultKind;
use crate::machine::MachineSpec;
use crate::ride::RideSpec;

const PARKS: &[&str] = &["欢乐世界", "海洋王国", "梦幻谷", "飞鸟乐园", "星光游乐园"];
const RIDES: &[&str] = &["过山车", "矿山车", "激流勇进", "跳楼机", "大摆锤"];
const MOUNTAINS: &[&str] = &["圭峰山", "白云山", "梧桐山", "古兜山"];

pub(super) fn add(fleet: &mut Fleet, cfg: &FleetConfig, ctx: &Context, rng: &mut impl Rng) {
    let total = cfg.rides + cfg.ropeways;
    let mut ride_equipment = Vec::new();
    if total > 0 {
        // A park (or a mountain) owns up to three rides.
        let mut owner: Option<Owner> = None;
        let mut site = 0usize;
        let mut ride_specs = Vec::new();
        for k in 0..total {
            let ropeway = k >= cfg.rides;
            if k % 3 == 0 || (ropeway && k == cfg.rides) {
                let place = &ctx.places[rng.gen_range(0..ctx.places.len())];
                let name = if ropeway {
                    MOUNTAINS[site % MOUNTAINS.len()]
                } else {
                    PARKS[site % PARKS.len()]
                };
                let o = Owner {
                    owner_id: format!("OW{}{}{:03}", place.code, ctx.tag, 100 + site),
                    name: format!("{}{name}旅游发展有限公司", place.city),
                    credit_code: credit::enterprise_code(rng, &place.code),
                    region: place.code.clone(),
                    contact: person(rng),
                    phone: phone(rng),
                };
                fleet.owners.push(o.clone());
                owner = Some(o);
                site += 1;
            }
            let Some(o) = owner.clone() else { continue };
            let n = fleet.equipment.len() + 1;
            let equipment_id = format!("EQ{}{}{n:06}", o.region, ctx.tag);
            let device_id = format!("RD{}{:06}", ctx.tag, k + 1);
            let (rated, limit, category, what, prefix) = if ropeway {
                let rated = [4.0, 5.0, 6.0][rng.gen_range(0..3)];
                (rated, 13.9, "passenger_ropeway", "客运索道", "索")
            } else {
                let rated = f64::from(rng.gen_range(18..=28));
                let limit = [10.8, 12.0][rng.gen_range(0..2)];
                (rated, limit, "amusement_ride", RIDES[k % RIDES.len()], "游")
            };
            fleet.equipment.push(Equipment {
                equipment_id: equipment_id.clone(),
                reg_code: format!(
                    "{prefix}11{}{n:05}({:02})",
                    o.region,
                    rng.gen_range(10..=24)
                ),
                category,
                owner_id: o.owner_id.clone(),
                maintainer_id: None,
                region: o.region.clone(),
                address: format!("{}{}", o.name.trim_end_matches("旅游发展有限公司"), what),
                lat: None,
                lon: None,
                status: "in_use",
                next_inspection: date(ctx.today + Days::days(rng.gen_range(45..=360))),
                last_maintenance: date(ctx.today - Days::days(rng.gen_range(1..=12))),
                params: json!({"rated_speed_mps": rated, "wind_limit_mps": limit}),
            });
            fleet.devices.push(Device {
                device_id: device_id.clone(),
                equipment_id: Some(equipment_id.clone()),
                station_id: None,
                kind: "ride",
                enabled: true,
                report_interval_s: 30,
            });
            ride_equipment.push(equipment_id.clone());
            ride_specs.push((
                RideSpec {
                    device_id,
                    ropeway,
                    rated_speed_mps: rated,
                    wind_limit_mps: limit,
                    // Most sites are calm; every third is windy enough to
                    // stop now and then.
                    mean_wind_mps: if k % 3 == 2 {
                        rng.gen_range(5.0..7.0)
                    } else {
                        rng.gen_range(1.5..4.0)
                    },
                    seed: rng.r#gen(),
                    fault: None,
                },
                equipment_id,
            ));
        }
        let faulty = ctx.faulty(ride_specs.len());
        let mut order: Vec<usize> = (0..ride_specs.len()).collect();
        order.shuffle(rng);
        let mut kinds = FaultKind::RIDE.to_vec();
        kinds.shuffle(rng);
        let mut next = 0;
        for &i in order.iter().take(faulty) {
            let spec = &mut ride_specs[i].0;
            // A ropeway's cabins have no restraints to forget.
            let mut kind = kinds[next % kinds.len()];
            if spec.ropeway && kind == FaultKind::RideUnrestrained {
                next += 1;
                kind = kinds[next % kinds.len()];
            }
            next += 1;
            spec.fault = Some(ctx.plan(rng, kind));
        }
        fleet.machines.extend(
            ride_specs
                .into_iter()
                .map(|(spec, eq)| (MachineSpec::Ride(spec), eq)),
        );
    }

    // Cameras: a quarter at ride platforms (when there are rides), the rest
    // in elevator cars, spread over the fleet.
    let elevators: Vec<String> = fleet
        .equipment
        .iter()
        .filter(|e| e.category == "elevator")
        .map(|e| e.equipment_id.clone())
        .collect();
    let mut cams = Vec::new();
    for k in 0..cfg.cameras {
        let at_ride = !ride_equipment.is_empty() && (k % 4 == 3 || elevators.is_empty());
        let equipment_id = if at_ride {
            ride_equipment[(k / 4) % ride_equipment.len()].clone()
        } else if !elevators.is_empty() {
            elevators[(k * elevators.len() / cfg.cameras.max(1)) % elevators.len()].clone()
        } else {
            continue;
        };
        let device_id = format!("CM{}{:06}", ctx.tag, k + 1);
        fleet.devices.push(Device {
            device_id: device_id.clone(),
            equipment_id: Some(equipment_id.clone()),
            station_id: None,
            kind: "video",
            enabled: true,
            // A box publishes incidents only; several an hour, never
            // silent for three hours.
            report_interval_s: 3600,
        });
        let cameras = if at_ride {
            vec!["platform".to_owned(), "queue".to_owned()]
        } else if rng.gen_bool(0.5) {
            vec!["car".to_owned()]
        } else {
            vec!["car".to_owned(), "landing".to_owned()]
        };
        cams.push((
            CameraSpec {
                device_id,
                at_ride,
                cameras,
                seed: rng.r#gen(),
                fault: None,
            },
            equipment_id,
        ));
    }
    let faulty = ctx.faulty(cams.len());
    let mut order: Vec<usize> = (0..cams.len()).collect();
    order.shuffle(rng);
    let mut kinds = FaultKind::CAMERA.to_vec();
    kinds.shuffle(rng);
    let mut next = 0;
    for &i in order.iter().take(faulty) {
        let spec = &mut cams[i].0;
        // An e-bike only in a car, an intrusion only at a platform.
        let fits = |k: FaultKind| match k {
            FaultKind::CameraEbike => !spec.at_ride,
            FaultKind::CameraIntrusion => spec.at_ride,
            _ => true,
        };
        let mut tries = 0;
        while !fits(kinds[next % kinds.len()]) && tries < kinds.len() {
            next += 1;
            tries += 1;
        }
        let kind = kinds[next % kinds.len()];
        next += 1;
        spec.fault = Some(ctx.plan(rng, kind));
    }
    fleet.machines.extend(
        cams.into_iter()
            .map(|(spec, eq)| (MachineSpec::Camera(spec), eq)),
    );
}
