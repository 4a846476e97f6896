//! Gas-cylinder filling through the real binary: a station, its operator,
//! its cylinders and a filling scale come in by registry import; the scale
//! publishes filling records over MQTT; an overfill and an unregistered
//! cylinder raise alarms (HTTP, SSE) naming cylinder and operator; the
//! records are in SQL.

use serde_json::{Value, json};

use crate::harness::*;

fn registry() -> Value {
    let cylinder = |code: &str, station: &str, model: &str, max_fill: f64| {
        json!({"cylinder_code": code, "station_id": station, "medium": "LPG", "model": model,
               "capacity_l": 35.5, "max_fill_kg": max_fill, "working_pressure_mpa": 2.1,
               "next_inspection": cst_day(300), "status": "in_use",
               "made_on": "2022-03-01", "design_life_years": 8})
    };
    json!({
        "owners": [{"owner_id": "OWGAS", "name": "Jiangmen Harbour Gas Co.", "credit_code": "91440703MA4UGA801X",
                    "region": "440703", "contact": "Huang Min", "phone": "0750-3333333"}],
        "stations": [
            {"station_id": "STGAS1", "owner_id": "OWGAS", "region": "440703", "address": "8 Refinery Road", "working_hours": "07:00-19:00"},
            {"station_id": "STGAS2", "owner_id": "OWGAS", "region": "440703", "address": "9 Refinery Road"}
        ],
        "persons": [{"person_id": "OP1", "name": "Liang Hua", "employer_id": "OWGAS",
                     "certificates": [{"kind": "filling", "number": "R2-4407-0001", "expires": cst_day(200)}]}],
        "cylinders": [
            cylinder("CYL0001", "STGAS1", "YSP35.5", 14.9),
            cylinder("CYL0002", "STGAS1", "YSP35.5", 14.9)
        ],
        "devices": [{"device_id": "SCALE1", "station_id": "STGAS1", "kind": "filling", "report_interval_s": 3600}],
    })
}

fn record(seq: u64, ts: i64, cylinder: &str, net_kg: f64) -> Value {
    json!({
        "seq": seq, "ts": ts, "cylinder_code": cylinder, "operator_id": "OP1", "medium": "LPG",
        "tare_kg": 15.1, "net_kg": net_kg, "started_ms": ts - 90_000, "result": "ok"
    })
}

async fn open_alarm(vigil: &Vigil, rule: &str) -> Option<Value> {
    let (status, body) = vigil
        .get("/alarms?state=active,acknowledged&equipment_id=STGAS1")
        .await;
    assert_eq!(status, 200, "{body}");
    body["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overfill_and_an_unregistered_cylinder_raise_alarms() {
    let vigil = Vigil::start().await;
    let feed = Feed::open(&vigil, TOKEN, "").await;
    let report = vigil.import(&registry()).await;
    let secret = secrets(&report)["SCALE1"].clone();
    let mut scale = Device::connect(vigil.mqtt, "SCALE1", &secret)
        .await
        .expect("the scale logs in");

    let t0 = now_ms();
    // A correct filling, an overfilled YSP35.5 (15.6 kg > 14.9 kg), and a
    // cylinder the registry does not know.
    for (i, (cylinder, net)) in [("CYL0001", 14.5), ("CYL0002", 15.6), ("CYLX999", 14.2)]
        .into_iter()
        .enumerate()
    {
        scale.seq += 1;
        scale
            .publish(
                "filling",
                &record(scale.seq, t0 + i as i64 * 120_000, cylinder, net),
            )
            .await;
    }
    scale.wait_ack(3, 20).await;

    let over = feed
        .wait_for(20, "filling.overfill", |a| a["rule"] == "filling.overfill")
        .await;
    assert_eq!(
        (
            &over["severity"],
            &over["state"],
            &over["equipment_id"],
            &over["device_id"]
        ),
        (
            &json!("critical"),
            &json!("active"),
            &json!("STGAS1"),
            &json!("SCALE1")
        )
    );
    assert_eq!(over["category"], "filling_station");
    assert_eq!(over["owner_id"], "OWGAS");
    assert_eq!(over["details"]["cylinder_code"], "CYL0002");
    assert_eq!(over["details"]["operator_id"], "OP1");
    assert_eq!(over["details"]["net_kg"], 15.6);
    assert_eq!(over["details"]["max_fill_kg"], 14.9);
    let unknown = feed
        .wait_for(20, "filling.cylinder_unregistered", |a| {
            a["rule"] == "filling.cylinder_unregistered"
        })
        .await;
    assert_eq!(unknown["severity"], "critical");
    assert_eq!(unknown["details"]["cylinder_code"], "CYLX999");
    assert_eq!(unknown["details"]["operator_id"], "OP1");

    // Over HTTP, and nothing else: the certified operator and the station's
    // own, inspected cylinders break no other rule.
    let (status, body) = vigil
        .get("/alarms?state=active,acknowledged&equipment_id=STGAS1")
        .await;
    assert_eq!(status, 200, "{body}");
    let mut rules: Vec<&str> = body["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        ["filling.cylinder_unregistered", "filling.overfill"],
        "{body}"
    );
    assert_eq!(
        open_alarm(&vigil, "filling.overfill").await.unwrap()["alarm_id"],
        over["alarm_id"]
    );

    // The records, over SQL.
    let rows = eventually(10, "filling records in SQL", || async {
        let rows = vigil
            .sql("SELECT cylinder_code, operator_id, net_kg FROM filling_records WHERE device_id = 'SCALE1' ORDER BY seq")
            .await;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    let codes: Vec<&str> = rows
        .iter()
        .map(|r| r["cylinder_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["CYL0001", "CYL0002", "CYLX999"]);
    assert!(rows.iter().all(|r| r["operator_id"] == "OP1"));
    scale.disconnect().await;
}
