//! The HTTP API through `oneshot`, wrapped in the auth middleware as the
//! engine serves it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::middleware::from_fn_with_state;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vigil_registry::Registry;
use vigil_registry::api;
use vigil_registry::auth::{Authenticator, require_auth};

use crate::common::*;

pub(crate) const ADMIN: &str = "admin-test-token";

pub(crate) struct App {
    router: Router,
    pub(crate) registry: Arc<Registry>,
}

pub(crate) fn app_with(registry: Registry) -> App {
    app_on(registry, clock())
}

fn app_on(registry: Registry, clock: vigil_registry::auth::Clock) -> App {
    let registry = Arc::new(registry);
    let auth = Arc::new(Authenticator::new(
        Some(ADMIN.to_owned()),
        Arc::clone(&registry),
        clock,
    ));
    let api = api::router(Arc::clone(&registry), Arc::clone(&auth))
        .layer(from_fn_with_state(auth, require_auth));
    App {
        router: Router::new().nest("/api/v1", api),
        registry,
    }
}

fn app() -> App {
    app_with(example_registry())
}

impl App {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        };
        let res = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}))
        };
        (status, json)
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    async fn token(&self, body: Value) -> String {
        let (status, v) = self.post("/tokens", ADMIN, body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test]
async fn requests_without_a_known_token_get_401() {
    let app = app();
    let (status, v) = app.call(Method::GET, "/equipment", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v), "unauthorized");
    let (status, v) = app.get("/equipment", "vgl_not_a_token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v), "unauthorized");
    let (status, _) = app.get("/equipment", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn import_over_http() {
    let app = app_with(Registry::in_memory());
    let (status, v) = app.post("/registry/import", ADMIN, example_json()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["counts"]["equipment"],
        json!({"created": 3, "updated": 0})
    );
    assert_eq!(v["devices"].as_array().unwrap().len(), 5);
    let first = &v["devices"][0];
    let secret = first["secret"].as_str().unwrap();
    assert!(
        app.registry
            .verify_device_secret(first["device_id"].as_str().unwrap(), secret)
    );

    let (status, v) = app.post("/registry/import", ADMIN, example_json()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["devices"], json!([]), "no secrets on re-import");
    assert_eq!(v["secrets_kept"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["counts"]["equipment"],
        json!({"created": 0, "updated": 3})
    );
}

#[tokio::test]
async fn bad_imports_answer_400_naming_the_field_and_change_nothing() {
    let app = app_with(Registry::in_memory());
    let mut d = example_json();
    d["equipment"][2]["category"] = json!("roller_coaster");
    let (status, v) = app.post("/registry/import", ADMIN, d).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v), "invalid_field");
    assert!(error_message(&v).contains("equipment[2].category"), "{v}");

    let mut d = example_json();
    d["devices"][1]["equipment_id"] = json!("EL404");
    let (status, v) = app.post("/registry/import", ADMIN, d).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = error_message(&v);
    assert!(
        msg.contains("devices[1]") && msg.contains("D002") && msg.contains("equipment_id"),
        "{msg}"
    );

    let (status, v) = app
        .call(Method::POST, "/registry/import", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v), "invalid_json");
    assert_eq!(app.registry.version(), 0);
}

#[tokio::test]
async fn owner_crud_with_conflicts() {
    let app = app();
    let owner = json!({"owner_id": "OWN003", "name": "江门市新会区物业", "credit_code": "91440705MA4X0Q3B5P", "region": "440705"});
    let (status, v) = app.post("/owners", ADMIN, owner.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v, owner);

    let (status, v) = app.post("/owners", ADMIN, owner.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&v), "already_exists");

    let (status, v) = app.get("/owners/OWN003", ADMIN).await;
    assert_eq!((status, &v), (StatusCode::OK, &owner));

    let mut renamed = owner.clone();
    renamed["name"] = json!("江门市新会区物业（更名）");
    renamed["phone"] = json!("0750-6688123");
    let (status, v) = app.put("/owners/OWN003", ADMIN, renamed.clone()).await;
    assert_eq!((status, &v), (StatusCode::OK, &renamed));

    let (status, v) = app.put("/owners/OWN001", ADMIN, renamed.clone()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "id in body differs from path"
    );
    assert!(error_message(&v).contains("owner_id"), "{v}");

    let (status, v) = app.put("/owners/OWN404", ADMIN, json!({"owner_id": "OWN404", "name": "x", "credit_code": "91440705MA4X0Q3B5P", "region": "440705"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    let mut bad = owner.clone();
    bad["region"] = json!("44070");
    let (status, v) = app.put("/owners/OWN003", ADMIN, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("region"), "{v}");

    let (status, v) = app.delete("/owners/OWN001", ADMIN).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "equipment still references OWN001"
    );
    assert_eq!(error_code(&v), "in_use");
    assert!(error_message(&v).contains("equipment"), "{v}");

    let (status, _) = app.delete("/owners/OWN003", ADMIN).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = app.get("/owners/OWN003", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
    let (status, _) = app.delete("/owners/OWN003", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn devices_show_their_secret_once_and_never_again() {
    let app = app();
    let (status, v) = app
        .post(
            "/devices",
            ADMIN,
            json!({"device_id": "D100", "equipment_id": "EL002", "kind": "elevator"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["device"]["device_id"], "D100");
    assert_eq!(v["device"]["enabled"], true);
    assert_eq!(v["device"]["report_interval_s"], 30);
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(app.registry.verify_device_secret("D100", &secret));

    let (status, v) = app.get("/devices/D100", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"device_id": "D100", "equipment_id": "EL002", "kind": "elevator", "enabled": true, "report_interval_s": 30})
    );
    let (_, list) = app.get("/devices", ADMIN).await;
    let text = list.to_string();
    assert!(
        !text.contains(&secret) && !text.contains("secret") && !text.contains("sha256"),
        "{text}"
    );

    // Disabling over PUT keeps the secret but refuses it.
    let (status, _) = app.put("/devices/D100", ADMIN, json!({"device_id": "D100", "equipment_id": "EL002", "kind": "elevator", "enabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!app.registry.verify_device_secret("D100", &secret));

    let (status, v) = app
        .post(
            "/devices",
            ADMIN,
            json!({"device_id": "D101", "equipment_id": "EL404", "kind": "elevator"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("equipment_id"), "{v}");

    let (status, _) = app.delete("/devices/D100", ADMIN).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!app.registry.verify_device_secret("D100", &secret));
}

async fn add_elevators(app: &App, n: usize) {
    let equipment: Vec<Value> = (0..n)
        .map(|i| {
            let region = if i % 2 == 0 { "440703" } else { "440106" };
            let owner = if i % 2 == 0 { "OWN001" } else { "OWN002" };
            json!({"equipment_id": format!("LIFT{i:02}"), "reg_code": format!("梯{i}"), "category": "elevator", "owner_id": owner,
                   "region": region, "address": "x", "status": if i % 3 == 0 { "stopped" } else { "in_use" },
                   "next_inspection": "2026-01-01", "params": {"rated_speed_mps": 1.0, "floors": [1, 6]}})
        })
        .collect();
    let (status, v) = app
        .post("/registry/import", ADMIN, json!({"equipment": equipment}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn lists_page_by_id() {
    let app = app();
    add_elevators(&app, 7).await;
    let mut seen = Vec::new();
    let mut path = "/equipment?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, v) = app.get(&path, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let page = ids(&v, "equipment_id");
        assert!(page.len() <= 3);
        seen.extend(page);
        pages += 1;
        match v["next_after"].as_str() {
            Some(after) => path = format!("/equipment?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(pages, 4, "10 items in pages of 3");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "sorted by id, no repeats");
    assert_eq!(seen.len(), 10);

    let (_, v) = app.get("/equipment", ADMIN).await;
    assert_eq!(ids(&v, "equipment_id").len(), 10);
    assert_eq!(v["next_after"], Value::Null);

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "after=a%2Fb",
        "limit=5&limit=6",
    ] {
        let (status, v) = app.get(&format!("/equipment?{bad}"), ADMIN).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(&v), "invalid_query");
    }
    let (status, _) = app.get("/equipment?limit=1000", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn lists_filter() {
    let app = app();
    add_elevators(&app, 4).await;
    let (_, v) = app.get("/equipment?region=440700", ADMIN).await;
    assert_eq!(
        ids(&v, "equipment_id"),
        ["EL001", "LIFT00", "LIFT02", "RIDE001"],
        "a city covers its districts"
    );
    let (_, v) = app
        .get("/equipment?region=440106&status=stopped", ADMIN)
        .await;
    assert_eq!(ids(&v, "equipment_id"), ["LIFT03"]);
    let (_, v) = app.get("/equipment?category=amusement_ride", ADMIN).await;
    assert_eq!(ids(&v, "equipment_id"), ["RIDE001"]);
    let (_, v) = app.get("/equipment?owner_id=OWN002", ADMIN).await;
    assert_eq!(ids(&v, "equipment_id"), ["EL002", "LIFT01", "LIFT03"]);
    let (_, v) = app.get("/devices?category=filling_station", ADMIN).await;
    assert_eq!(ids(&v, "device_id"), ["FS001"]);
    let (_, v) = app.get("/devices?region=440106", ADMIN).await;
    assert_eq!(ids(&v, "device_id"), ["D002"]);
    let (_, v) = app.get("/owners?region=440000", ADMIN).await;
    assert_eq!(
        ids(&v, "owner_id"),
        ["OWN001", "OWN002"],
        "a province covers everything in it"
    );
    let (_, v) = app
        .get("/cylinders?status=in_use&region=440703", ADMIN)
        .await;
    assert_eq!(ids(&v, "cylinder_code"), ["LPG4407030001"]);

    for (bad, needle) in [
        ("/owners?category=elevator", "category"),
        ("/equipment?category=lift", "category"),
        ("/equipment?region=4407", "region"),
        ("/equipment?status=broken", "status"),
        ("/equipment?colour=red", "colour"),
        ("/persons?region=440700", "region"),
    ] {
        let (status, v) = app.get(bad, ADMIN).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(error_message(&v).contains(needle), "{bad}: {v}");
    }
}

#[tokio::test]
async fn a_supervisor_sees_only_its_regions() {
    let app = app();
    let sup = app
        .token(json!({"name": "江门市监局", "role": "supervisor", "regions": ["440700"]}))
        .await;

    let (status, v) = app.get("/equipment", &sup).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&v, "equipment_id"),
        ["EL001", "RIDE001"],
        "440703 and 440704, not 440106"
    );
    let (status, _) = app.get("/equipment/EL001", &sup).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = app.get("/equipment/EL002", &sup).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a foreign resource is not found"
    );
    let (_, missing) = app.get("/equipment/EL404", &sup).await;
    assert_eq!(
        v,
        json!({"error": {"code": "not_found", "message": "equipment \"EL002\" not found"}})
    );
    assert_eq!(
        error_code(&missing),
        "not_found",
        "foreign and missing look alike"
    );

    let (_, v) = app.get("/devices", &sup).await;
    assert_eq!(ids(&v, "device_id"), ["CAM001", "D001", "D003", "FS001"]);
    let (_, v) = app.get("/owners", &sup).await;
    assert_eq!(ids(&v, "owner_id"), ["OWN001"]);
    let (status, _) = app.get("/owners/OWN002", &sup).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = app.get("/maintainers", &sup).await;
    assert_eq!(
        ids(&v, "maintainer_id"),
        ["MNT001"],
        "maintains EL001 in its region"
    );
    let (_, v) = app.get("/equipment?region=440106", &sup).await;
    assert_eq!(v["items"], json!([]), "a filter cannot widen the grant");
    let (_, v) = app.get("/maintenance?equipment_id=EL001", &sup).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (status, _) = app.get("/maintenance?equipment_id=EL002", &sup).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A supervisor only reads.
    let (status, v) = app.post("/owners", &sup, json!({"owner_id": "X", "name": "x", "credit_code": "91440705MA4X0Q3B5P", "region": "440705"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&v), "forbidden");
    let (status, _) = app.delete("/equipment/EL001", &sup).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post("/registry/import", &sup, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .post("/tokens", &sup, json!({"name": "me too", "role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post("/maintenance", &sup, json!({"equipment_id": "EL001", "kind": "half_month", "done_at": "2025-07-01", "person_id": "P001"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_analyst_reads_inside_its_regions() {
    let app = app();
    let analyst = app
        .token(json!({"name": "广州数据组", "role": "analyst", "regions": ["440100"]}))
        .await;
    let (_, v) = app.get("/equipment", &analyst).await;
    assert_eq!(ids(&v, "equipment_id"), ["EL002"]);
    let (_, v) = app.get("/stations", &analyst).await;
    assert_eq!(v["items"], json!([]));
    let (status, _) = app.put("/equipment/EL002", &analyst, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_owner_sees_its_own_and_confirms_maintenance() {
    let app = app();
    let owner = app
        .token(json!({"name": "万达物业", "role": "owner", "owner_id": "OWN001"}))
        .await;

    let (_, v) = app.get("/equipment", &owner).await;
    assert_eq!(ids(&v, "equipment_id"), ["EL001", "RIDE001"]);
    let (status, _) = app.get("/equipment/EL002", &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = app.get("/owners", &owner).await;
    assert_eq!(ids(&v, "owner_id"), ["OWN001"]);
    let (_, v) = app.get("/cylinders", &owner).await;
    assert_eq!(ids(&v, "cylinder_code"), ["LPG4407030001"]);
    let (_, v) = app.get("/persons", &owner).await;
    assert_eq!(
        ids(&v, "person_id"),
        ["P001", "P002"],
        "its own operator and its maintainer's worker"
    );

    // Confirming the maintainer's record: same key, so an update (200).
    let record = json!({"equipment_id": "EL001", "kind": "half_month", "done_at": "2025-06-16T09:30:00+08:00", "person_id": "P001", "confirmed_by_owner": true});
    let (status, v) = app.post("/maintenance", &owner, record.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, record);
    let (_, v) = app.get("/maintenance?equipment_id=EL001", &owner).await;
    assert_eq!(v["items"], json!([record]));

    let new = json!({"equipment_id": "EL001", "kind": "half_month", "done_at": "2025-07-01", "person_id": "P001", "confirmed_by_owner": true});
    let (status, _) = app.post("/maintenance", &owner, new).await;
    assert_eq!(status, StatusCode::CREATED);

    let foreign = json!({"equipment_id": "EL002", "kind": "half_month", "done_at": "2025-07-01", "person_id": "P001"});
    let (status, v) = app.post("/maintenance", &owner, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let missing = json!({"equipment_id": "EL404", "kind": "half_month", "done_at": "2025-07-01", "person_id": "P001"});
    let (status2, v2) = app.post("/maintenance", &owner, missing).await;
    assert_eq!(status2, StatusCode::FORBIDDEN, "missing looks like foreign");
    assert_eq!(error_code(&v), error_code(&v2));

    let (status, v) = app.post("/maintenance", ADMIN, json!({"equipment_id": "EL001", "kind": "monthly", "done_at": "2025-07-02", "person_id": "P001"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("kind"), "{v}");

    let (status, _) = app.post("/owners", &owner, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tokens_are_admin_only_and_validated() {
    let app = app();
    let (status, v) = app
        .post("/tokens", ADMIN, json!({"name": "x", "role": "supervisor"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("regions"), "{v}");
    let (status, v) = app
        .post(
            "/tokens",
            ADMIN,
            json!({"name": "x", "role": "owner", "owner_id": "OWN404"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("owner_id"), "{v}");
    let (status, v) = app
        .post("/tokens", ADMIN, json!({"name": "x", "role": "root"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("role"), "{v}");

    let admin2 = app
        .token(json!({"name": "second admin", "role": "admin"}))
        .await;
    let (status, _) = app.post("/owners", &admin2, json!({"owner_id": "OWN009", "name": "n", "credit_code": "91440705MA4X0Q3B5P", "region": "440705"})).await;
    assert_eq!(status, StatusCode::CREATED, "an issued admin token writes");
}

#[tokio::test]
async fn every_entity_has_crud() {
    let app = app();
    let cases = [
        (
            "maintainers",
            "MNT002",
            json!({"maintainer_id": "MNT002", "name": "m", "credit_code": "91440700MA4W2A6E1X", "licence_expires": "2026-01-01"}),
        ),
        (
            "stations",
            "ST002",
            json!({"station_id": "ST002", "owner_id": "OWN002", "region": "440106", "address": "a"}),
        ),
        (
            "equipment",
            "BOILER1",
            json!({"equipment_id": "BOILER1", "reg_code": "锅1", "category": "boiler", "owner_id": "OWN002", "region": "440106", "address": "a", "status": "in_use", "next_inspection": "2026-01-01"}),
        ),
        (
            "persons",
            "P009",
            json!({"person_id": "P009", "name": "p", "employer_id": "OWN002"}),
        ),
        (
            "cylinders",
            "C9",
            json!({"cylinder_code": "C9", "station_id": "ST001", "medium": "LPG", "model": "YSP12", "capacity_l": 12.0, "max_fill_kg": 5.0, "working_pressure_mpa": 2.1, "next_inspection": "2027-01-01", "status": "in_use", "made_on": "2020-01-01", "design_life_years": 8}),
        ),
    ];
    for (key, id, body) in cases {
        let (status, v) = app.post(&format!("/{key}"), ADMIN, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{key}: {v}");
        let (status, v) = app.get(&format!("/{key}/{id}"), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        for (field, value) in body.as_object().unwrap() {
            assert_eq!(&v[field], value, "{key}.{field}");
        }
        let (status, _) = app.put(&format!("/{key}/{id}"), ADMIN, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        let (status, _) = app.post(&format!("/{key}"), ADMIN, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{key}");
    }
    // Deletes, in reference order.
    for (key, id) in [
        ("cylinders", "C9"),
        ("persons", "P009"),
        ("equipment", "BOILER1"),
        ("stations", "ST002"),
        ("maintainers", "MNT002"),
    ] {
        let (status, v) = app.delete(&format!("/{key}/{id}"), ADMIN).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{key}: {v}");
    }
    let (status, _) = app.delete("/stations/ST001", ADMIN).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "devices and cylinders use ST001"
    );
    let (status, _) = app.delete("/persons/P001", ADMIN).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a maintenance record names P001"
    );
}

#[tokio::test]
async fn api_json_rejections_name_the_field() {
    use axum::Extension;
    use axum::routing::post;
    use vigil_registry::Owner;
    use vigil_registry::api::{ApiError, ApiJson};
    use vigil_registry::auth::{Gate, Principal};

    // As another crate would use it for its own endpoints: behind a gate.
    async fn echo(ApiJson(o): ApiJson<Owner>) -> Result<ApiJson<Owner>, ApiError> {
        Ok(ApiJson(o))
    }
    let ungated: Router = Router::new()
        .route("/echo", post(echo))
        .layer(Extension(Principal::Admin));
    let res = ungated
        .oneshot(Request::post("/echo").body(Body::from("{")).unwrap())
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "a body read without a role gate is a bug, refused"
    );
    let router: Router = Router::new()
        .route("/echo", Gate::any("echo owners").around(post(echo)))
        .layer(Extension(Principal::Admin));
    let call = |body: &'static str| {
        let router = router.clone();
        async move {
            let res = router
                .oneshot(Request::post("/echo").body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, v) = call(
        r#"{"owner_id": "O1", "name": "n", "credit_code": "91440703MA4UJ8XK2Q", "region": 440703}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v), "invalid_field");
    assert!(error_message(&v).starts_with("region: "), "{v}");
    let (status, v) = call("{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v), "invalid_json");
    let (status, v) = call(r#"{"owner_id": "O1", "name": "n", "credit_code": "91440703MA4UJ8XK2Q", "region": "440703"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["region"], "440703");
}

/// Every route that changes something, with a body a parser would refuse.
fn writes() -> Vec<(Method, String)> {
    let mut w = vec![
        (Method::POST, "/registry/import".to_owned()),
        (Method::POST, "/tokens".to_owned()),
        (Method::POST, "/maintenance".to_owned()),
    ];
    for kind in [
        "owners",
        "maintainers",
        "equipment",
        "devices",
        "stations",
        "persons",
        "cylinders",
    ] {
        w.push((Method::POST, format!("/{kind}")));
        w.push((Method::PUT, format!("/{kind}/X1")));
        w.push((Method::DELETE, format!("/{kind}/X1")));
    }
    w
}

async fn raw(
    app: &App,
    method: Method,
    path: &str,
    token: &str,
    body: &'static str,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_write_checks_the_role_before_the_body() {
    let app = app();
    let tokens = [
        app.token(json!({"name": "s", "role": "supervisor", "regions": ["440700"]}))
            .await,
        app.token(json!({"name": "a", "role": "analyst", "regions": ["440700"]}))
            .await,
        app.token(json!({"name": "o", "role": "owner", "owner_id": "OWN001"}))
            .await,
    ];
    for (i, token) in tokens.iter().enumerate() {
        for (method, path) in writes() {
            if i == 2 && path == "/maintenance" {
                // Owners may record maintenance: their bad body is a 400.
                let (status, v) = raw(&app, method, &path, token, "{\"equipment_id\":").await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
                continue;
            }
            for body in ["{\"equipment_id\":", "[]", "", "null"] {
                let (status, v) = raw(&app, method.clone(), &path, token, body).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} with {body:?} as role #{i}: {v}"
                );
                assert_eq!(error_code(&v), "forbidden");
            }
        }
        for (method, path) in [
            (Method::GET, "/tokens"),
            (Method::GET, "/tokens/tok_0123456789abcdef"),
            (Method::DELETE, "/tokens/tok_0123456789abcdef"),
        ] {
            let (status, v) = raw(&app, method.clone(), path, token, "").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        }
    }
    // The admin with the same bodies gets the parser's answer.
    for (method, path) in writes() {
        if method == Method::DELETE {
            continue;
        }
        let (status, v) = raw(&app, method.clone(), &path, ADMIN, "{\"equipment_id\":").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
    }
}

#[tokio::test]
async fn tokens_expire_and_lists_show_no_secret() {
    let clock = ManualClock::new();
    let app = app_on(example_registry(), clock.clock());
    let (status, issued) = app
        .post(
            "/tokens",
            ADMIN,
            json!({"name": "night shift", "role": "supervisor", "regions": ["440700"], "expires_in_s": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("tok_") && !token.contains(&id[4..]),
        "{issued}"
    );
    assert_eq!(issued["expires_at"], "2024-11-22T18:27:40Z");
    let (_, default) = app
        .post("/tokens", ADMIN, json!({"name": "d", "role": "admin"}))
        .await;
    assert_eq!(
        default["expires_at"], "2025-02-20T18:26:40Z",
        "90 days by default"
    );
    let (status, v) = app
        .post(
            "/tokens",
            ADMIN,
            json!({"name": "x", "role": "admin", "expires_in_s": 400 * 86_400}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("expires_in_s"), "{v}");

    let (status, _) = app.get("/equipment", &token).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance_s(61);
    let (status, v) = app.get("/equipment", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_message(&v),
        "bearer token expired at 2024-11-22T18:27:40Z; ask an admin for a new one"
    );

    let (status, list) = app.get("/tokens", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(&token[4..]), "no token in the list: {text}");
    assert!(!text.contains("sha256") && !text.contains("hash"), "{text}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["status"], "expired");
    assert_eq!(items[0]["regions"], json!(["440700"]));
    assert_eq!(items[0]["last_used_at"], "2024-11-22T18:26:40Z");
    assert_eq!(items[1]["status"], "active");
    let (status, one) = app.get(&format!("/tokens/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, items[0]);
    let (status, _) = app.get("/tokens/tok_0123456789abcdef", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/tokens/nope", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = app();
    let (_, issued) = app
        .post(
            "/tokens",
            ADMIN,
            json!({"name": "leaver", "role": "analyst", "regions": ["440100"]}),
        )
        .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let (status, _) = app.get("/equipment", &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = app.delete(&format!("/tokens/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revoked_at"], "2024-11-22T18:26:40Z");
    let (status, v) = app.get("/equipment", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_message(&v),
        "bearer token was revoked at 2024-11-22T18:26:40Z"
    );
    let (status, again) = app.delete(&format!("/tokens/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "revoking twice changes nothing");
    assert_eq!(again["revoked_at"], "2024-11-22T18:26:40Z");
    let (status, _) = app.delete("/tokens/tok_0123456789abcdef", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_streaming_answer_ends_when_its_token_is_revoked() {
    use axum::routing::get;
    use vigil_registry::auth::{Gate, Principal};

    let registry = Arc::new(example_registry());
    let auth = Arc::new(Authenticator::new(
        Some(ADMIN.to_owned()),
        Arc::clone(&registry),
        clock(),
    ));
    // An endless body, as the SSE feed is.
    async fn endless() -> Body {
        let ticks = futures::stream::unfold(0u64, |n| async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Some((
                Ok::<_, std::convert::Infallible>(format!("tick {n}\n")),
                n + 1,
            ))
        });
        Body::from_stream(ticks)
    }
    let router: Router = Router::new()
        .route("/stream", Gate::any("watch").around(get(endless)))
        .layer(from_fn_with_state(Arc::clone(&auth), require_auth));
    let issued = auth
        .issue(vigil_registry::TokenRequest {
            name: "watcher".into(),
            role: vigil_registry::Role::Supervisor,
            regions: vec![vigil_model::Region::new("440700").unwrap()],
            owner_id: None,
            expires_in_s: None,
        })
        .unwrap();
    assert!(matches!(
        auth.authenticate(&issued.token),
        Some(Principal::Supervisor { .. })
    ));
    let req = Request::get("/stream")
        .header(header::AUTHORIZATION, format!("Bearer {}", issued.token))
        .body(Body::empty())
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let reader = tokio::spawn(async move { res.into_body().collect().await.unwrap().to_bytes() });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !reader.is_finished(),
        "the stream runs while the token is good"
    );
    registry.revoke_token(&issued.id, NOW).unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .expect("the stream ends once its token is revoked")
        .unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("tick 0\n"));
}
