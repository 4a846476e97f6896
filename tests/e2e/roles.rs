//! Supervisors see their region and nothing else, live and in lists; the
//! API refuses bad bodies and missing tokens with JSON errors.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_only_its_region() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let (status, jiangmen) = vigil
        .post(
            "/tokens",
            &json!({"name": "jiangmen-duty", "role": "supervisor", "regions": ["440700"]}),
        )
        .await;
    assert_eq!(status, 201, "{jiangmen}");
    let jiangmen = jiangmen["token"].as_str().unwrap().to_owned();
    let (_, guangzhou) = vigil
        .post(
            "/tokens",
            &json!({"name": "gz-duty", "role": "supervisor", "regions": ["440100"]}),
        )
        .await;
    let guangzhou = guangzhou["token"].as_str().unwrap().to_owned();

    let jm_feed = Feed::open(&vigil, &jiangmen, "").await;
    let gz_feed = Feed::open(&vigil, &guangzhou, "").await;
    let ts = now_ms();
    let overspeed = json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9});
    let mut jm = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let mut gz = Device::connect(vigil.mqtt, "DEVGZ", &secrets["DEVGZ"])
        .await
        .unwrap();
    let a = jm.send(ts, overspeed.clone()).await;
    let b = gz.send(ts, overspeed.clone()).await;
    jm.wait_ack(a, 20).await;
    gz.wait_ack(b, 20).await;

    let jm_alarm = jm_feed
        .wait_for(20, "Jiangmen alarm", |a| a["equipment_id"] == "EQ0000")
        .await;
    gz_feed
        .wait_for(20, "Guangzhou alarm", |a| a["equipment_id"] == "EQGZ")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        jm_feed
            .alarms()
            .iter()
            .all(|a| a["region"].as_str().unwrap().starts_with("4407")),
        "{:?}",
        jm_feed.alarms()
    );
    assert!(
        gz_feed
            .alarms()
            .iter()
            .all(|a| a["region"].as_str().unwrap().starts_with("4401")),
        "{:?}",
        gz_feed.alarms()
    );

    let list = |token: String| {
        let vigil = &vigil;
        async move {
            let r = vigil
                .client
                .get(vigil.url("/alarms?state=active"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            body["alarms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["equipment_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(jiangmen.clone()).await, ["EQ0000"]);
    assert_eq!(list(guangzhou.clone()).await, ["EQGZ"]);
    // Another region's alarm is not there at all for this supervisor.
    let id = jm_alarm["alarm_id"].as_str().unwrap();
    let (status, _) = vigil
        .post_as(&guangzhou, &format!("/alarms/{id}/ack"), &json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = vigil
        .post_as(&jiangmen, &format!("/alarms/{id}/ack"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Supervisors' SQL sees their regions only.
    let (status, body) = vigil
        .post_as(
            &jiangmen,
            "/sql",
            &json!({"sql": "SELECT DISTINCT equipment_id FROM alarms"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{"equipment_id": "EQ0000"}]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let vigil = Vigil::start().await;
    let r = vigil.client.get(vigil.url("/alarms")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, body) = vigil
        .post_as("wrong-token", "/sql", &json!({"sql": "SELECT 1"}))
        .await;
    assert_eq!(status, 401, "{body}");

    let r = vigil
        .client
        .post(vigil.url("/sql"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"sql\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, body) = vigil.post("/sql", &json!({"query": "SELECT 1"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = vigil
        .post("/sql", &json!({"sql": "DROP TABLE elevator_readings"}))
        .await;
    assert_eq!(status, 400, "SQL is read-only: {body}");
    let (status, body) = vigil
        .post(
            "/sql",
            &json!({"sql": "SELECT nope FROM elevator_readings"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let (status, body) = vigil.get("/alarms?state=sleeping").await;
    assert_eq!(status, 400, "{body}");

    let mut doc = registry_doc(1);
    doc["equipment"][0]["region"] = json!("44070");
    let (status, body) = vigil.post("/registry/import", &doc).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("region"),
        "{body}"
    );
    // All or nothing: the owners of the refused document are not there.
    let (status, body) = vigil.get("/owners/OW1").await;
    assert_eq!(status, 404, "{body}");
}
