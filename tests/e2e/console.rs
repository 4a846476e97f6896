//! The console at `/` in a real headless Chromium: sign-in, the live alarm
//! board fed by a device over MQTT, acknowledging and resolving from the
//! page, another region's supervisor who never sees it, a dropped
//! connection, and the map, statistics and equipment pages against what the
//! API and the registry say. Screenshots of each page go to
//! docs/screenshots/.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::browser::{Driver, Page};
use crate::harness::*;

/// Saves what `page` shows to docs/screenshots/{name}.png, `height` px tall.
async fn screenshot(page: &Page<'_>, name: &str, height: u32) {
    page.resize(1280, height).await;
    page.js("document.getElementById('toast').hidden = true", json!([]))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join(format!("docs/screenshots/{name}.png"));
    page.screenshot(&path).await;
}

/// Jiangmen (4407xx): six elevators and a ride of three owners, one
/// elevator past its inspection date, one without a position, a filling
/// station; Guangzhou (4401xx): one elevator.
fn fleet_doc() -> Value {
    let (maintained, inspection, overdue) = (cst_day(0), cst_day(365), cst_day(-3));
    let elevator =
        |id: &str, owner: &str, region: &str, addr: &str, pos: Option<(f64, f64)>, next: &str| {
            let mut e = json!({
                "equipment_id": id, "reg_code": format!("3110{region}{id}"), "category": "elevator",
                "owner_id": owner, "maintainer_id": "MT1", "region": region, "address": addr,
                "status": "in_use", "next_inspection": next, "last_maintenance": maintained,
                "params": {"rated_speed_mps": 1.75, "floors": [-1, 18]}
            });
            if let Some((lat, lon)) = pos {
                e["lat"] = json!(lat);
                e["lon"] = json!(lon);
            }
            e
        };
    json!({
        "owners": [
            {"owner_id": "OW1", "name": "Jiangmen Harbour Property Management Co.", "credit_code": "91440703MA4UABCD1X", "region": "440703"},
            {"owner_id": "OW2", "name": "Tianhe Towers Ltd.", "credit_code": "91440106MA5UEFGH2Y", "region": "440106"},
            {"owner_id": "OW3", "name": "Jianghai Leisure Park Co.", "credit_code": "91440704MA6UJKLM3X", "region": "440704"}
        ],
        "maintainers": [{"maintainer_id": "MT1", "name": "South China Lift Service", "credit_code": "91440700MA6UJKLM3X", "licence_expires": "2028-01-31"}],
        "stations": [{"station_id": "STJ1", "owner_id": "OW1", "region": "440703", "address": "8 Gangkou Road", "working_hours": "08:00-18:00"}],
        "equipment": [
            elevator("EQJ1", "OW1", "440703", "1 Harbour Road", Some((22.5905, 113.0815)), &inspection),
            elevator("EQJ2", "OW1", "440703", "2 Harbour Road", Some((22.5952, 113.0731)), &inspection),
            elevator("EQJ3", "OW1", "440703", "3 Binjiang Avenue", Some((22.6021, 113.0902)), &inspection),
            elevator("EQJ4", "OW1", "440703", "4 Binjiang Avenue", Some((22.6105, 113.0688)), &inspection),
            elevator("EQJ5", "OW3", "440704", "5 Jianghai Road", Some((22.5604, 113.1116)), &overdue),
            elevator("EQJ6", "OW1", "440703", "6 Harbour Road (no survey yet)", None, &inspection),
            {"equipment_id": "EQJR", "reg_code": "6110440705EQJR", "category": "amusement_ride", "owner_id": "OW3",
             "region": "440705", "address": "Xinhui Fun Park, Ferris wheel", "lat": 22.4583, "lon": 113.0342,
             "status": "in_use", "next_inspection": inspection, "last_maintenance": maintained,
             "params": {"wind_limit_mps": 15.0}},
            elevator("EQG1", "OW2", "440106", "1 Tianhe Road", Some((23.1353, 113.3245)), &inspection),
        ],
        "devices": [
            {"device_id": "DJ1", "equipment_id": "EQJ1", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJ2", "equipment_id": "EQJ2", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJ3", "equipment_id": "EQJ3", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJ4", "equipment_id": "EQJ4", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJ5", "equipment_id": "EQJ5", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJ6", "equipment_id": "EQJ6", "kind": "elevator", "report_interval_s": 300},
            {"device_id": "DJR", "equipment_id": "EQJR", "kind": "ride", "report_interval_s": 300},
            {"device_id": "DJS", "station_id": "STJ1", "kind": "filling", "report_interval_s": 300},
            {"device_id": "DG1", "equipment_id": "EQG1", "kind": "elevator", "report_interval_s": 300},
        ],
    })
}

/// Ten minutes of ordinary service: up and down, doors open for a few
/// seconds at each stop; the last sample is idle and closed, 5 s ago.
async fn service_history(device: &mut Device, now: i64) {
    let end = now - 5_000;
    let mut samples = Vec::new();
    let mut floor = 1i64;
    let mut up = true;
    let mut ts = now - 600_000;
    while ts < end {
        // Travel for 8 s, 2 s per floor.
        for step in 0..4 {
            let speed = if step == 0 || step == 3 { 0.8 } else { 1.6 };
            samples.push((
                ts,
                json!({"floor": floor, "direction": if up { "up" } else { "down" }, "speed_mps": speed,
                       "leveled": false, "occupied": true, "load_pct": 35.0 + (floor as f64) * 2.0}),
            ));
            ts += 2_000;
            floor += if up { 1 } else { -1 };
        }
        // Stop, doors open for 4–9 s, close.
        let open_s = 4 + floor.rem_euclid(6);
        samples.push((
            ts,
            json!({"floor": floor, "door": "open", "occupied": true, "load_pct": 20.0}),
        ));
        ts += open_s * 1_000;
        samples.push((
            ts,
            json!({"floor": floor, "occupied": false, "load_pct": 0.0}),
        ));
        ts += 12_000;
        if floor >= 14 {
            up = false;
        }
        if floor <= 2 {
            up = true;
        }
    }
    samples.retain(|(t, _)| *t < end);
    samples.push((end, json!({"floor": floor})));
    let mut last = 0;
    for (t, changes) in samples {
        last = device.send(t, changes).await;
    }
    device.wait_ack(last, 30).await;
}

async fn sign_in(page: &Page<'_>, base: &str, token: &str) {
    page.goto(base).await;
    page.wait_for(
        20,
        "the sign-in form",
        "return !document.getElementById('login').hidden",
    )
    .await;
    page.type_into("#token", token).await;
    page.click("#login-button").await;
}

async fn wait_live(page: &Page<'_>, what: &str) {
    page.wait_for(
        20,
        what,
        "return window.vigilConsole.feed.state === 'live' && window.vigilConsole.feed.synced",
    )
    .await;
}

/// Alarm ids of the rows on a page's board, in order.
async fn board_ids(page: &Page<'_>) -> Vec<String> {
    let v = page
        .js(
            "return [...document.querySelectorAll('#board-rows tr')].map(tr => tr.dataset.alarmId)",
            json!([]),
        )
        .await;
    serde_json::from_value(v).unwrap()
}

async fn token(vigil: &Vigil, name: &str, regions: &[&str]) -> String {
    let (status, body) = vigil
        .post(
            "/tokens",
            &json!({"name": name, "role": "supervisor", "regions": regions}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn get_as(vigil: &Vigil, token: &str, path: &str) -> Value {
    let r = vigil
        .client
        .get(vigil.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_region_live_and_only_that_region() {
    // Registry-time rules every second, so the overdue inspection shows
    // as soon as its elevator's device is heard.
    let vigil = Vigil::start_with_config("[engine]\nregistry_check_s = 1\n").await;
    let secrets = secrets(&vigil.import(&fleet_doc()).await);
    let jiangmen = token(&vigil, "jiangmen-duty", &["440700"]).await;
    let guangzhou = token(&vigil, "guangzhou-duty", &["440100"]).await;
    let base = format!("http://{}/", vigil.http);

    // The page and its files come from the engine itself, with types and
    // revalidation.
    let index = vigil.client.get(&base).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        index.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let app = vigil
        .client
        .get(format!("{base}console/app.js"))
        .send()
        .await
        .unwrap();
    assert!(
        app.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = app.headers()["etag"].clone();
    let again = vigil
        .client
        .get(format!("{base}console/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Devices: EQJ1 with ten minutes of service, EQJ2, EQJ3, EQJ5 and the
    // ride heard from once; EQJ4, EQJ6 and the station silent.
    let now = now_ms();
    let mut dj1 = Device::connect(vigil.mqtt, "DJ1", &secrets["DJ1"])
        .await
        .unwrap();
    service_history(&mut dj1, now).await;
    let mut dj2 = Device::connect(vigil.mqtt, "DJ2", &secrets["DJ2"])
        .await
        .unwrap();
    let mut dj3 = Device::connect(vigil.mqtt, "DJ3", &secrets["DJ3"])
        .await
        .unwrap();
    let mut dj5 = Device::connect(vigil.mqtt, "DJ5", &secrets["DJ5"])
        .await
        .unwrap();
    let mut dg1 = Device::connect(vigil.mqtt, "DG1", &secrets["DG1"])
        .await
        .unwrap();
    let s2 = dj2.send(now_ms(), json!({})).await;
    let s5 = dj5.send(now_ms(), json!({})).await;
    let s3 = dj3.send(now_ms(), json!({})).await;
    let sg = dg1.send(now_ms(), json!({})).await;
    let mut djr = Device::connect(vigil.mqtt, "DJR", &secrets["DJR"])
        .await
        .unwrap();
    djr.seq += 1;
    djr.publish(
        "ride",
        &json!({"seq": djr.seq, "ts": now_ms(), "state": "running", "speed_mps": 0.4, "wind_mps": 4.2,
                "restraints_locked": true, "vibration_mm_s": 2.1, "brake": "ok", "passengers": 12}),
    )
    .await;
    let sr = djr.seq;
    dj2.wait_ack(s2, 20).await;
    dj3.wait_ack(s3, 20).await;
    dj5.wait_ack(s5, 20).await;
    dg1.wait_ack(sg, 20).await;
    djr.wait_ack(sr, 20).await;

    let driver = Driver::start().await;
    let jm = driver.page().await;
    let gz = driver.page().await;

    // A wrong token is refused with the API's own message.
    jm.goto(&base).await;
    jm.wait_for(
        20,
        "the sign-in form",
        "return !document.getElementById('login').hidden",
    )
    .await;
    jm.type_into("#token", "not-a-token").await;
    jm.click("#login-button").await;
    let refused = jm
        .wait_for(
            20,
            "the refusal",
            "const e = document.getElementById('login-error'); return !e.hidden && e.textContent",
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("unknown bearer token"),
        "{refused}"
    );

    sign_in(&jm, &base, &jiangmen).await;
    sign_in(&gz, &base, &guangzhou).await;
    wait_live(&jm, "Jiangmen's feed").await;
    wait_live(&gz, "Guangzhou's feed").await;
    let who = jm
        .js(
            "return document.getElementById('whoami').textContent",
            json!([]),
        )
        .await;
    assert!(who.as_str().unwrap().contains("supervisor"), "{who}");

    // EQJ5's overdue inspection is on Jiangmen's board (a registry-time
    // rule, critical since the elevator is evidently in use).
    jm.wait_for(
        20,
        "the overdue inspection",
        "return [...window.vigilConsole.alarms.values()].some(a => a.rule === 'registry.inspection_overdue' && a.equipment_id === 'EQJ5')",
    )
    .await;

    // A door opening while the car moves: the condition starts 1 s before
    // the trigger sample, which completes the 0.6 s.
    let before = dj1
        .send(now_ms() - 1_000, json!({"door": "opening", "direction": "down", "speed_mps": 0.9, "leveled": false, "floor": 5}))
        .await;
    dj1.wait_ack(before, 20).await;
    let gz_before = dg1
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9}),
        )
        .await;
    dg1.wait_ack(gz_before, 20).await;
    let published = now_ms();
    dj1.send(now_ms(), json!({"door": "opening", "direction": "down", "speed_mps": 0.9, "leveled": false, "floor": 4}))
        .await;
    let seen = jm
        .wait_for(
            20,
            "the door-open-moving alarm on the board",
            "const a = [...window.vigilConsole.alarms.values()].find(a => a.rule === 'elevator.door_open_moving');
             return a && document.querySelector(`#board-rows tr[data-alarm-id='${a.alarm_id}']`)
               ? {id: a.alarm_id, seen: window.vigilConsole.seen[a.alarm_id]} : null",
        )
        .await;
    let alarm_id = seen["id"].as_str().unwrap().to_owned();
    let latency_ms = seen["seen"].as_i64().unwrap() - published;
    eprintln!("console: critical alarm on the board {latency_ms} ms after the device published it");
    // The visible and audible cue.
    let cue = jm
        .js(
            "const b = document.getElementById('banner'); return {beeps: window.vigilConsole.beeps, banner: !b.hidden && b.textContent}",
            json!([]),
        )
        .await;
    assert!(cue["beeps"].as_u64().unwrap() >= 1, "{cue}");
    assert!(
        cue["banner"]
            .as_str()
            .unwrap()
            .contains("elevator.door_open_moving"),
        "{cue}"
    );
    // Newest critical first: the door alarm sits above the overdue inspection.
    let rows = board_ids(&jm).await;
    assert_eq!(rows.first(), Some(&alarm_id), "{rows:?}");

    // Guangzhou's supervisor sees its own overspeed, never Jiangmen's alarms.
    gz.wait_for(
        20,
        "Guangzhou's overspeed",
        "return [...window.vigilConsole.alarms.values()].some(a => a.equipment_id === 'EQG1')",
    )
    .await;
    screenshot(&jm, "board", 720).await;

    // Acknowledge from the page; the API agrees.
    jm.click(&format!("tr[data-alarm-id='{alarm_id}'] button.ack"))
        .await;
    let acked = eventually(20, "the acknowledgement in the API", || {
        let vigil = &vigil;
        let id = alarm_id.clone();
        async move {
            let (_, a) = vigil.get(&format!("/alarms/{id}")).await;
            (a["state"] == "acknowledged").then_some(a)
        }
    })
    .await;
    assert_eq!(acked["acknowledged_by"], "supervisor[440700]");
    jm.wait_for(
        20,
        "the row marked acknowledged",
        &format!("const tr = document.querySelector(\"tr[data-alarm-id='{alarm_id}']\"); return tr && tr.dataset.state === 'acknowledged'"),
    )
    .await;

    let gz_view = gz
        .js(
            "return {ids: [...window.vigilConsole.alarms.values()].map(a => a.region), seen: Object.keys(window.vigilConsole.seen)}",
            json!([]),
        )
        .await;
    assert!(
        gz_view["ids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("4401")),
        "{gz_view}"
    );
    assert!(
        !gz_view["seen"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &json!(alarm_id)),
        "Guangzhou's page saw Jiangmen's alarm: {gz_view}"
    );
    let jm_regions = jm
        .js(
            "return [...window.vigilConsole.alarms.values()].map(a => a.region)",
            json!([]),
        )
        .await;
    assert!(
        jm_regions
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("4407")),
        "{jm_regions}"
    );

    // A dropped connection: the engine restarts under the page, which is
    // held offline meanwhile; behind its back the acknowledged alarm is
    // resolved and a new one raised. Back online, the board re-syncs: the
    // resolved alarm gone, the new one there once.
    let connects = jm
        .js("return window.vigilConsole.feed.connects", json!([]))
        .await;
    jm.set_offline(true).await;
    let dj2_seq = dj2.seq;
    for device in [dj1, dj2, dj3, dj5, djr, dg1] {
        device.disconnect().await;
    }
    let mut old = vigil;
    assert!(old.stop().success(), "clean stop; log:\n{}", old.log());
    jm.wait_for(
        30,
        "the feed to notice the drop",
        "return window.vigilConsole.feed.state !== 'live'",
    )
    .await;
    let vigil = Vigil::start_in(&old.data_dir, Some((old.mqtt, old.http))).await;
    let (status, body) = vigil
        .post(
            &format!("/alarms/{alarm_id}/resolve"),
            &json!({"note": "door operator replaced"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut dj2 = Device::connect(vigil.mqtt, "DJ2", &secrets["DJ2"])
        .await
        .unwrap();
    dj2.seq = dj2_seq;
    let overspeed = dj2
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9}),
        )
        .await;
    dj2.wait_ack(overspeed, 20).await;
    let new_id = eventually(20, "the overspeed in the API", || {
        let vigil = &vigil;
        async move {
            let (_, body) = vigil.get("/alarms?state=open&equipment_id=EQJ2").await;
            body["alarms"][0]["alarm_id"].as_str().map(str::to_owned)
        }
    })
    .await;
    assert_eq!(
        jm.js("return window.vigilConsole.feed.connects", json!([]))
            .await,
        connects,
        "the page stayed away while offline"
    );
    jm.set_offline(false).await;
    jm.wait_for(
        60,
        "the feed to reconnect",
        &format!("return window.vigilConsole.feed.connects > {connects} && window.vigilConsole.feed.state === 'live'"),
    )
    .await;
    jm.wait_for(
        20,
        "the re-synced board",
        &format!("return !!document.querySelector(\"tr[data-alarm-id='{new_id}']\")"),
    )
    .await;
    let rows = board_ids(&jm).await;
    let unique: HashSet<&String> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "duplicate rows: {rows:?}");
    assert!(
        !rows.contains(&alarm_id),
        "the resolved alarm is still shown: {rows:?}"
    );
    let open = get_as(&vigil, &jiangmen, "/alarms?state=open").await;
    let mut api_ids: Vec<String> = open["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alarm_id"].as_str().unwrap().to_owned())
        .collect();
    let mut page_ids = rows.clone();
    api_ids.sort();
    page_ids.sort();
    assert_eq!(page_ids, api_ids, "the board is the API's open set");

    // Resolve with a note from the page.
    jm.click(&format!("tr[data-alarm-id='{new_id}'] button.resolve"))
        .await;
    jm.type_into(
        &format!("tr[data-alarm-id='{new_id}'] .resolve-form input"),
        "governor checked, speed sensor recalibrated",
    )
    .await;
    jm.click(&format!(
        "tr[data-alarm-id='{new_id}'] .resolve-form button[type=submit]"
    ))
    .await;
    let resolved = eventually(20, "the resolve in the API", || {
        let vigil = &vigil;
        let id = new_id.clone();
        async move {
            let (_, a) = vigil.get(&format!("/alarms/{id}")).await;
            (a["state"] == "cleared").then_some(a)
        }
    })
    .await;
    assert_eq!(
        resolved["note"],
        "governor checked, speed sensor recalibrated"
    );
    jm.wait_for(
        20,
        "the resolved row to leave",
        &format!("return !document.querySelector(\"tr[data-alarm-id='{new_id}']\")"),
    )
    .await;

    // Map: one marker per unit with a position in the grant, coloured as
    // the risk grading says.
    let fleet = get_as(&vigil, &jiangmen, "/fleet").await;
    let units = fleet["units"].as_array().unwrap();
    assert!(
        units
            .iter()
            .all(|u| u["region"].as_str().unwrap().starts_with("4407"))
    );
    let placed: Vec<&Value> = units.iter().filter(|u| !u["lat"].is_null()).collect();
    assert_eq!(placed.len(), 6, "EQJ1–5 and the ride have positions");
    let mut colours: BTreeMap<String, usize> = BTreeMap::new();
    for u in &placed {
        *colours
            .entry(u["risk_colour"].as_str().unwrap_or("ungraded").to_owned())
            .or_default() += 1;
    }
    let eqj5 = units.iter().find(|u| u["equipment_id"] == "EQJ5").unwrap();
    assert_eq!(
        eqj5["risk_colour"], "red",
        "open critical + overdue + a critical alarm: {eqj5}"
    );
    jm.goto(&format!("{base}#/map")).await;
    let legend = jm
        .wait_for(
            20,
            "the map",
            "const l = document.getElementById('map-legend');
             if (!l.dataset.rendered) return null;
             const counts = {};
             for (const b of l.querySelectorAll('b[data-count]')) counts[b.dataset.count] = Number(b.textContent);
             return {counts, markers: document.querySelectorAll('#map path.unit-marker').length,
                     outline: document.querySelectorAll('#map path.leaflet-interactive:not(.unit-marker)').length}",
        )
        .await;
    assert_eq!(legend["markers"], json!(placed.len()), "{legend}");
    assert_eq!(legend["counts"]["placed"], json!(placed.len()), "{legend}");
    assert_eq!(
        legend["counts"]["unplaced"],
        json!(units.len() - placed.len()),
        "{legend}"
    );
    for (colour, n) in &colours {
        assert_eq!(legend["counts"][colour], json!(n), "{colour}: {legend}");
    }
    assert!(
        legend["outline"].as_u64().unwrap() >= 7,
        "Jiangmen's counties are drawn: {legend}"
    );
    screenshot(&jm, "map", 860).await;

    // Statistics: the page shows what /stats says, and /stats what the
    // registry and the devices say.
    let stats = get_as(&vigil, &jiangmen, "/stats").await;
    let t = &stats["totals"];
    assert_eq!(t["units"], 8, "7 equipment + 1 station: {stats}");
    assert_eq!(t["connected"], 8);
    assert_eq!(t["online"], 5, "DJ1, DJ2, DJ3, DJ5, DJR were heard");
    assert_eq!(t["in_use"], 7);
    assert_eq!(t["inspection_overdue"], 1);
    assert_eq!(
        stats["by_category"],
        json!({"amusement_ride": 1, "elevator": 6, "filling_station": 1})
    );
    assert_eq!(stats["ranking"]["level"], "county");
    let ranked: BTreeMap<String, u64> = stats["ranking"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_owned(),
                r["units"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        BTreeMap::from([
            ("440703".into(), 6),
            ("440704".into(), 1),
            ("440705".into(), 1)
        ])
    );
    assert_eq!(
        stats["owner_classes"]["D"], 1,
        "OW3 has the red EQJ5: {stats}"
    );
    jm.goto(&format!("{base}#/stats")).await;
    let shown = jm
        .wait_for(
            20,
            "the statistics",
            "const root = document.getElementById('stats');
             if (!root.dataset.rendered || !document.querySelector('#chart-categories .uplot')) return null;
             const v = (k, f) => Number(document.querySelector(`[data-stat=${k}] [data-${f}]`).textContent);
             const rows = sel => Object.fromEntries([...document.querySelectorAll(sel)].map(tr => [Object.values(tr.dataset)[0], Number(tr.querySelector('.num').textContent)]));
             return {units: v('units', 'value'), online: v('online', 'value'), connected: v('online', 'of'),
                     overdue: v('overdue', 'value'), in_use: v('overdue', 'of'), open: v('open', 'value'), alarms: v('alarms', 'value'),
                     categories: rows('#by-category tr'), classes: rows('#by-class tr'),
                     ranking: Object.fromEntries([...document.querySelectorAll('#ranking tbody tr')].map(tr => [tr.dataset.region, Number(tr.querySelector('[data-units]').textContent)]))}",
        )
        .await;
    assert_eq!(shown["units"], t["units"], "{shown}");
    assert_eq!(shown["online"], t["online"], "{shown}");
    assert_eq!(shown["connected"], t["connected"], "{shown}");
    assert_eq!(shown["overdue"], t["inspection_overdue"], "{shown}");
    assert_eq!(shown["in_use"], t["in_use"], "{shown}");
    assert_eq!(shown["open"], t["open_alarms"], "{shown}");
    assert_eq!(shown["alarms"], t["alarms"], "{shown}");
    assert_eq!(shown["categories"], stats["by_category"], "{shown}");
    assert_eq!(shown["classes"], stats["owner_classes"], "{shown}");
    assert_eq!(shown["ranking"], json!(ranked), "{shown}");
    screenshot(&jm, "statistics", 1500).await;

    // Equipment page: charts of the recent readings, the alarm history and
    // the risk grade as the API has them.
    let history = get_as(&vigil, &jiangmen, "/alarms?equipment_id=EQJ1&limit=50").await;
    let risk = get_as(&vigil, &jiangmen, "/equipment/EQJ1/risk").await;
    jm.goto(&format!("{base}#/equipment/EQJ1")).await;
    let page = jm
        .wait_for(
            20,
            "the equipment page",
            "const root = document.getElementById('equipment');
             if (root.dataset.rendered !== 'EQJ1') return null;
             return {charts: document.querySelectorAll('#charts .uplot').length,
                     history: document.querySelectorAll('#history tbody tr').length,
                     colour: document.querySelector('[data-risk-colour]').dataset.riskColour,
                     latest: !!document.getElementById('latest')}",
        )
        .await;
    assert_eq!(page["charts"], 4, "speed, floor, door times, load: {page}");
    assert_eq!(
        page["history"],
        json!(history["alarms"].as_array().unwrap().len()),
        "{page}"
    );
    assert!(page["history"].as_u64().unwrap() >= 1, "{page}");
    assert_eq!(page["colour"], risk["colour"], "{page}");
    assert_eq!(page["latest"], true, "{page}");
    screenshot(&jm, "equipment", 1500).await;

    // Another region's equipment page is simply not there.
    jm.goto(&format!("{base}#/equipment/EQG1")).await;
    jm.wait_for(
        20,
        "the refusal of EQG1",
        "return document.getElementById('equipment').textContent.includes('No equipment EQG1')",
    )
    .await;
}
