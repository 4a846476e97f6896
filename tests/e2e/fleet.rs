//! The console's JSON (`/me`, `/fleet`, `/stats`, `/equipment/{id}/readings`)
//! through the real binary: each answer is cut to the caller's grant, a
//! region outside it gives empty answers, someone else's equipment is 404.

use serde_json::{Value, json};

use crate::harness::*;

async fn get_as(vigil: &Vigil, token: &str, path: &str) -> (u16, Value) {
    let r = vigil
        .client
        .get(vigil.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn issue(vigil: &Vigil, body: Value) -> String {
    let (status, t) = vigil.post("/tokens", &body).await;
    assert_eq!(status, 201, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_stats_and_readings_are_cut_to_the_grant() {
    let vigil = Vigil::start().await;
    // Three elevators in 440703 (OW1), one in 440106 (OW2).
    let secrets = secrets(&vigil.import(&registry_doc(3)).await);
    let jiangmen = issue(
        &vigil,
        json!({"name": "jm", "role": "supervisor", "regions": ["440700"]}),
    )
    .await;
    let owner2 = issue(
        &vigil,
        json!({"name": "ow2", "role": "owner", "owner_id": "OW2"}),
    )
    .await;
    let analyst = issue(
        &vigil,
        json!({"name": "an", "role": "analyst", "regions": ["440100"]}),
    )
    .await;

    let mut dev = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let t0 = now_ms();
    for i in 0..5 {
        dev.send(
            t0 - 4_000 + i * 1_000,
            json!({"speed_mps": 0.5 * i as f64, "direction": "up", "leveled": i == 0}),
        )
        .await;
    }
    dev.wait_ack(5, 20).await;

    let (status, me) = get_as(&vigil, &jiangmen, "/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "supervisor");
    assert_eq!(me["regions"], json!(["440700"]));
    assert_eq!(me["may_handle_alarms"], true);
    let (_, me) = get_as(&vigil, &owner2, "/me").await;
    assert_eq!(
        (me["role"].as_str(), me["owner_id"].as_str()),
        (Some("owner"), Some("OW2"))
    );
    assert_eq!(me["may_handle_alarms"], false);

    let ids = |body: &Value| -> Vec<String> {
        body["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["equipment_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, fleet) = get_as(&vigil, &jiangmen, "/fleet").await;
    assert_eq!(status, 200, "{fleet}");
    assert_eq!(ids(&fleet), ["EQ0000", "EQ0001", "EQ0002"]);
    let eq1 = &fleet["units"][1];
    assert_eq!(eq1["online"], true, "{eq1}");
    assert_eq!(
        eq1["owner_name"],
        "Jiangmen Harbour Property Management Co."
    );
    assert_eq!(eq1["risk_colour"], "blue", "{eq1}");
    let (_, fleet) = get_as(&vigil, &owner2, "/fleet").await;
    assert_eq!(ids(&fleet), ["EQGZ"]);
    let (_, fleet) = get_as(&vigil, &analyst, "/fleet").await;
    assert_eq!(ids(&fleet), ["EQGZ"]);
    // A region outside the grant narrows to nothing; a bad one is refused.
    let (status, fleet) = get_as(&vigil, &jiangmen, "/fleet?region=440100").await;
    assert_eq!((status, ids(&fleet).len()), (200, 0));
    let (status, err) = get_as(&vigil, &jiangmen, "/fleet?region=44").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_region");

    let (status, stats) = get_as(&vigil, &jiangmen, "/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["totals"]["units"], 3);
    assert_eq!(
        stats["totals"]["connected"], 3,
        "DEVOFF is disabled and does not count"
    );
    assert_eq!(stats["totals"]["online"], 1);
    assert_eq!(stats["by_category"], json!({"elevator": 3}));
    assert_eq!(stats["ranking"]["level"], "county");
    assert_eq!(stats["ranking"]["rows"][0]["region"], "440703");
    assert_eq!(
        stats["owner_classes"],
        json!({"A": 1, "B": 0, "C": 0, "D": 0}),
        "only OW1 is in 4407"
    );
    let (_, admin_stats) = vigil.get("/stats").await;
    assert_eq!(admin_stats["totals"]["units"], 4);
    assert_eq!(
        admin_stats["ranking"]["level"], "city",
        "two cities of one province"
    );
    let (_, outside) = get_as(&vigil, &jiangmen, "/stats?region=440100").await;
    assert_eq!(outside["totals"]["units"], 0, "{outside}");
    assert_eq!(
        outside["owner_classes"],
        json!({"A": 0, "B": 0, "C": 0, "D": 0})
    );

    let (status, readings) =
        get_as(&vigil, &jiangmen, "/equipment/EQ0001/readings?minutes=10").await;
    assert_eq!(status, 200, "{readings}");
    assert_eq!(readings["table"], "elevator_readings");
    let speeds: Vec<f64> = readings["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["speed_mps"].as_f64().unwrap())
        .collect();
    assert_eq!(speeds, [0.0, 0.5, 1.0, 1.5, 2.0], "oldest first");
    let (_, two) = get_as(
        &vigil,
        &jiangmen,
        "/equipment/EQ0001/readings?minutes=10&limit=2",
    )
    .await;
    assert_eq!(two["readings"].as_array().unwrap().len(), 2);
    assert_eq!(two["truncated"], true);
    assert_eq!(two["readings"][1]["speed_mps"], 2.0, "the newest two");
    // Someone else's equipment is as absent as a missing one.
    let (status, err) = get_as(&vigil, &owner2, "/equipment/EQ0001/readings").await;
    assert_eq!(status, 404, "{err}");
    let (status, missing) = get_as(&vigil, &owner2, "/equipment/NOPE/readings").await;
    assert_eq!(status, 404);
    assert_eq!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .replace("EQ0001", "X"),
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("NOPE", "X")
    );
    let (status, _) = get_as(&vigil, &jiangmen, "/equipment/EQ0001/readings?minutes=0").await;
    assert_eq!(status, 400);
    let (status, _) = get_as(&vigil, "wrong", "/fleet").await;
    assert_eq!(status, 401);
}
