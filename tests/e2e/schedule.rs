//! Registry-time rules through the real binary: dates in the registry raise
//! and clear alarms without any device message, within a second of an import
//! or a maintenance record.

use serde_json::{Value, json};

use crate::harness::*;

async fn open_alarm(vigil: &Vigil, equipment: &str, rule: &str) -> Option<Value> {
    let (_, body) = vigil
        .get(&format!("/alarms?state=active&equipment_id={equipment}"))
        .await;
    body["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_and_maintenance_dates_raise_and_clear_alarms() {
    let vigil = Vigil::start().await;
    let feed = Feed::open(&vigil, TOKEN, "").await;
    let mut doc = registry_doc(2);
    // EQ0000: inspection in 10 days. EQ0001: last maintained 20 days ago.
    doc["equipment"][0]["next_inspection"] = json!(cst_day(10));
    doc["equipment"][1]["last_maintenance"] = json!(cst_day(-20));
    doc["persons"] = json!([{"person_id": "P1", "name": "Zhao Gang", "employer_id": "MT1",
        "certificates": [{"kind": "elevator_maintenance", "number": "T-0001", "expires": cst_day(400)}]}]);
    vigil.import(&doc).await;

    let due = feed
        .wait_for(20, "registry.inspection_due on EQ0000", |a| {
            a["rule"] == "registry.inspection_due" && a["equipment_id"] == "EQ0000"
        })
        .await;
    assert_eq!(due["severity"], "warning");
    assert_eq!(
        due["device_id"],
        Value::Null,
        "raised by the registry: {due}"
    );
    assert_eq!(due["owner_id"], "OW1");
    assert_eq!(due["details"]["next_inspection"], json!(cst_day(10)));
    assert_eq!(due["details"]["days_left"], 10);
    let maint = feed
        .wait_for(20, "registry.maintenance_overdue on EQ0001", |a| {
            a["rule"] == "registry.maintenance_overdue" && a["equipment_id"] == "EQ0001"
        })
        .await;
    assert_eq!(maint["severity"], "major");
    assert_eq!(maint["details"]["days_since"], 20);
    // Nothing else: EQ0001 is inspected next year, EQ0000 maintained today.
    assert!(
        open_alarm(&vigil, "EQ0001", "registry.inspection_due")
            .await
            .is_none()
    );
    assert!(
        open_alarm(&vigil, "EQ0000", "registry.maintenance_overdue")
            .await
            .is_none()
    );

    // The maintainer records today's half-monthly job: the alarm clears.
    let (status, body) = vigil
        .post(
            "/maintenance",
            &json!({"equipment_id": "EQ0001", "kind": "half_month", "done_at": cst_day(0),
                    "person_id": "P1", "confirmed_by_owner": true}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    feed.wait_for(20, "maintenance_overdue cleared", |a| {
        a["alarm_id"] == maint["alarm_id"] && a["state"] == "cleared"
    })
    .await;

    // EQ0000 was inspected: the registry gets next year's date.
    doc["equipment"][0]["next_inspection"] = json!(cst_day(365));
    vigil.import(&doc).await;
    feed.wait_for(20, "inspection_due cleared", |a| {
        a["alarm_id"] == due["alarm_id"] && a["state"] == "cleared"
    })
    .await;

    // And the history is queryable like any other alarm.
    let rows = eventually(10, "registry alarms in SQL", || async {
        let n = vigil
            .sql_count("SELECT count(DISTINCT alarm_id) AS n FROM alarms WHERE rule LIKE 'registry.%' AND state = 'cleared'")
            .await;
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(rows, 2);
}
