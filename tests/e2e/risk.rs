//! Risk grading through the real binary: colours and classes from alarms
//! and the registry, the same over the API and over SQL, weights from the
//! configuration, and owners see only their own.

use serde_json::{Value, json};

use crate::harness::*;

async fn graded(vigil: &Vigil, path: &str, field: &str, want: &str) -> Value {
    eventually(20, &format!("{path} {field} = {want}"), || async {
        let (status, body) = vigil.get(path).await;
        (status == 200 && body[field] == want).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equipment_colours_and_owner_classes_follow_alarms_and_registry() {
    let vigil = Vigil::start().await;
    let mut doc = registry_doc(3);
    doc["equipment"][1]["last_maintenance"] = json!(cst_day(-20));
    let secrets = secrets(&vigil.import(&doc).await);
    // Everything blue before anything happens (EQ0001 turns yellow as soon
    // as its maintenance alarm is raised).
    graded(&vigil, "/equipment/EQ0002/risk", "colour", "blue").await;

    // EQ0000 over speed: an open critical alarm nobody has acknowledged.
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let seq = dev
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9}),
        )
        .await;
    dev.wait_ack(seq, 20).await;

    // 5 (open critical) + 1 (a critical alarm in the window) = 6: orange.
    let eq0 = graded(&vigil, "/equipment/EQ0000/risk", "colour", "orange").await;
    assert_eq!(eq0["score"], 6.0, "{eq0}");
    assert_eq!(eq0["open_critical"], 1);
    assert_eq!(eq0["owner_id"], "OW1");
    // Maintenance 20 days ago: 2 points, yellow.
    let eq1 = graded(&vigil, "/equipment/EQ0001/risk", "colour", "yellow").await;
    assert_eq!(eq1["maintenance_overdue"], 1, "{eq1}");
    assert_eq!(eq1["score"], 2.0);

    // OW1 has an orange elevator: class C. OW2's one elevator is blue: A.
    let ow1 = graded(&vigil, "/owners/OW1/risk", "class", "C").await;
    assert_eq!(ow1["equipment"], 3, "{ow1}");
    let colours: Vec<(&str, &str)> = ow1["equipment_risk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["equipment_id"].as_str().unwrap(),
                e["colour"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        colours,
        [
            ("EQ0000", "orange"),
            ("EQ0001", "yellow"),
            ("EQ0002", "blue")
        ]
    );
    graded(&vigil, "/owners/OW2/risk", "class", "A").await;

    // An analyst gets the same from SQL.
    let rows = vigil
        .sql("SELECT equipment_id, colour FROM risk ORDER BY equipment_id")
        .await;
    let from_sql: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["equipment_id"].as_str().unwrap().into(),
                r["colour"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        from_sql,
        [
            ("EQ0000".into(), "orange".into()),
            ("EQ0001".into(), "yellow".into()),
            ("EQ0002".into(), "blue".into()),
            ("EQGZ".into(), "blue".into()),
        ]
    );
    let classes = vigil
        .sql("SELECT owner_id, class FROM owner_risk ORDER BY owner_id")
        .await;
    assert_eq!(
        classes,
        [
            json!({"owner_id": "OW1", "class": "C"}),
            json!({"owner_id": "OW2", "class": "A"})
        ]
    );

    // A Guangzhou analyst's SQL sees only Guangzhou's equipment and owners.
    let (_, body) = vigil
        .post(
            "/tokens",
            &json!({"name": "gz-analyst", "role": "analyst", "regions": ["440100"]}),
        )
        .await;
    let analyst = body["token"].as_str().unwrap().to_owned();
    let (status, answer) = vigil
        .post_as(&analyst, "/sql", &json!({"sql": "SELECT equipment_id FROM risk UNION ALL SELECT owner_id FROM owner_risk ORDER BY 1"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rows"],
        json!([{"equipment_id": "EQGZ"}, {"equipment_id": "OW2"}]),
        "{answer}"
    );

    // OW2's own token sees its grade and nothing of OW1's.
    let (status, body) = vigil
        .post(
            "/tokens",
            &json!({"name": "ow2", "role": "owner", "owner_id": "OW2"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    let get = |path: &'static str| {
        let client = reqwest::Client::new();
        let url = vigil.url(path);
        let token = token.to_owned();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("/owners/OW2/risk").await, 200);
    assert_eq!(get("/owners/OW1/risk").await, 404);
    assert_eq!(get("/equipment/EQ0000/risk").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weights_are_configuration() {
    let vigil =
        Vigil::start_with_config("[risk]\nred_at = 8.0\n[risk.weights]\nopen_critical = 10.0\n")
            .await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    let seq = dev
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9}),
        )
        .await;
    dev.wait_ack(seq, 20).await;
    let eq = graded(&vigil, "/equipment/EQ0000/risk", "colour", "red").await;
    assert_eq!(eq["score"], 11.0, "{eq}");
    graded(&vigil, "/owners/OW1/risk", "class", "D").await;
}
