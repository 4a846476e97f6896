//! The Grafana dashboards in dashboards/grafana/ against a real engine on
//! PostgreSQL: every panel's SQL, with Grafana's macros expanded to plain
//! SQL, runs as a read-only role set up as docs/dashboards.md says and
//! returns rows of the shape its panel needs (seeded through MQTT); every
//! PromQL expression names only metrics the engine's /metrics exports.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

use crate::harness::*;

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("dashboards/grafana/dashboards");
    let mut all: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        all.len(),
        6,
        "six dashboards: {:?}",
        all.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    all
}

/// Grafana's PostgreSQL macros and the `region` variable as Grafana would
/// expand them for a time range; anything else starting with `$` fails.
fn expand(sql: &str, from: &str, to: &str, region: &str) -> String {
    let mut out = sql.replace("${region}", region).replace("$region", region);
    out = out
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"));
    while let Some(start) = out.find("$__timeFilter(") {
        let rest = &out[start + "$__timeFilter(".len()..];
        let end = rest.find(')').expect("closed $__timeFilter");
        let column = rest[..end].trim().to_owned();
        out.replace_range(
            start..start + "$__timeFilter(".len() + end + 1,
            &format!("{column} BETWEEN '{from}' AND '{to}'"),
        );
    }
    assert!(!out.contains('$'), "a macro this test does not know: {out}");
    out
}

fn is_number(t: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
    ]
    .contains(t)
}

/// Metric names a PromQL expression reads: identifiers that are not
/// functions, keywords or label names.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "topk",
        "bottomk",
        "abs",
        "clamp_min",
        "clamp_max",
        "delta",
        "deriv",
        "offset",
        "bool",
    ];
    // Drop label matchers, range selectors and grouping clauses first.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    for c in expr.chars() {
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace == 0 && depth_bracket == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if word == "by" || word == "without" {
                grouping = true;
            } else if grouping {
                // label names inside `by (…)`
            } else if !WORDS.contains(&word.as_str()) && next != Some(&'(') {
                names.insert(word);
            }
        } else {
            if c == ')' {
                grouping = false;
            }
            i += 1;
        }
    }
    names
}

fn registry() -> Value {
    let (maintained, inspection, overdue) = (cst_day(0), cst_day(365), cst_day(-10));
    json!({
        "owners": [
            {"owner_id": "OWE", "name": "Pengjiang Lift Users Co.", "credit_code": "91440703MA4UABCD1X", "region": "440703"},
            {"owner_id": "OWR", "name": "Xinhui Fun Park Co.", "credit_code": "91440705MA5UEFGH2Y", "region": "440705"},
            {"owner_id": "OWG", "name": "Jiangmen Harbour Gas Co.", "credit_code": "91440703MA4UGA801X", "region": "440703"}
        ],
        "stations": [{"station_id": "ST1", "owner_id": "OWG", "region": "440703", "address": "8 Refinery Road"}],
        "persons": [{"person_id": "OP1", "name": "Liang Hua", "employer_id": "OWG",
                     "certificates": [{"kind": "filling", "number": "R2-4407-0001", "expires": cst_day(200)}]}],
        "cylinders": [
            {"cylinder_code": "CYL1", "station_id": "ST1", "medium": "LPG", "model": "YSP35.5", "capacity_l": 35.5,
             "max_fill_kg": 14.9, "working_pressure_mpa": 2.1, "next_inspection": cst_day(300), "status": "in_use",
             "made_on": "2022-03-01", "design_life_years": 8},
            {"cylinder_code": "CYL2", "station_id": "ST1", "medium": "LPG", "model": "YSP35.5", "capacity_l": 35.5,
             "max_fill_kg": 14.9, "working_pressure_mpa": 2.1, "next_inspection": cst_day(300), "status": "in_use",
             "made_on": "2022-03-01", "design_life_years": 8}
        ],
        "equipment": [
            {"equipment_id": "EL1", "reg_code": "311044070301", "category": "elevator", "owner_id": "OWE", "region": "440703",
             "address": "1 Harbour Road", "status": "in_use", "next_inspection": inspection, "last_maintenance": maintained,
             "params": {"rated_speed_mps": 1.75, "floors": [-1, 18]}},
            {"equipment_id": "EL2", "reg_code": "311044070302", "category": "elevator", "owner_id": "OWE", "region": "440703",
             "address": "2 Harbour Road", "status": "in_use", "next_inspection": overdue, "last_maintenance": maintained,
             "params": {"rated_speed_mps": 1.75, "floors": [-1, 18]}},
            {"equipment_id": "RIDE1", "reg_code": "611044070501", "category": "amusement_ride", "owner_id": "OWR", "region": "440705",
             "address": "Xinhui Fun Park, Ferris wheel", "status": "in_use", "next_inspection": inspection,
             "last_maintenance": maintained, "params": {"wind_limit_mps": 15.0}}
        ],
        "devices": [
            {"device_id": "DEL1", "equipment_id": "EL1", "kind": "elevator", "report_interval_s": 600},
            {"device_id": "DEL2", "equipment_id": "EL2", "kind": "elevator", "report_interval_s": 600},
            {"device_id": "DRIDE", "equipment_id": "RIDE1", "kind": "ride", "report_interval_s": 600},
            {"device_id": "DSCALE", "station_id": "ST1", "kind": "filling", "report_interval_s": 3600}
        ],
    })
}

/// Readings and alarms of every kind the dashboards show, through MQTT.
async fn seed(vigil: &Vigil) {
    let secrets = secrets(&vigil.import(&registry()).await);
    let now = now_ms();
    let mut el1 = Device::connect(vigil.mqtt, "DEL1", &secrets["DEL1"])
        .await
        .unwrap();
    // Half an hour of runs (run_count grows with seq), then a trapped
    // passenger: stopped, closed, occupied for 200 s.
    for i in 0..30 {
        el1.send(
            now - 1_800_000 + i * 50_000,
            json!({"direction": "up", "speed_mps": 1.5, "leveled": false, "floor": 3 + i % 10}),
        )
        .await;
    }
    el1.send(
        now - 200_000,
        json!({"occupied": true, "leveled": false, "floor": 6}),
    )
    .await;
    el1.send(
        now - 1_000,
        json!({"occupied": true, "leveled": false, "floor": 6}),
    )
    .await;
    el1.seq += 1;
    el1.publish(
        "event",
        &json!({"seq": el1.seq, "ts": now, "code": "08", "text": "drive fault", "active": true}),
    )
    .await;
    el1.wait_ack(el1.seq, 30).await;

    let mut el2 = Device::connect(vigil.mqtt, "DEL2", &secrets["DEL2"])
        .await
        .unwrap();
    let s = el2.send(now, json!({})).await;
    el2.wait_ack(s, 20).await;

    let mut ride = Device::connect(vigil.mqtt, "DRIDE", &secrets["DRIDE"])
        .await
        .unwrap();
    for i in 0..10 {
        ride.seq += 1;
        ride.publish(
            "ride",
            &json!({"seq": ride.seq, "ts": now - 600_000 + i * 60_000, "state": "running", "speed_mps": 0.4,
                    "wind_mps": 4.0 + i as f64, "restraints_locked": true, "vibration_mm_s": 2.0 + 0.3 * i as f64,
                    "brake": "ok", "passengers": 20 + i}),
        )
        .await;
    }
    ride.wait_ack(ride.seq, 20).await;

    let mut scale = Device::connect(vigil.mqtt, "DSCALE", &secrets["DSCALE"])
        .await
        .unwrap();
    for (i, (cylinder, net)) in [("CYL1", 14.5), ("CYL2", 15.6)].into_iter().enumerate() {
        scale.seq += 1;
        let ts = now - 300_000 + i as i64 * 120_000;
        scale
            .publish(
                "filling",
                &json!({"seq": scale.seq, "ts": ts, "cylinder_code": cylinder, "operator_id": "OP1", "medium": "LPG",
                        "tare_kg": 15.1, "net_kg": net, "started_ms": ts - 90_000, "result": "ok"}),
            )
            .await;
    }
    scale.wait_ack(scale.seq, 20).await;

    // Everything is in PostgreSQL: the alarms each dashboard counts.
    eventually(60, "the seeded alarms in PostgreSQL", || async {
        let rules: Vec<String> = vigil
            .sql("SELECT DISTINCT rule FROM alarms")
            .await
            .iter()
            .filter_map(|r| r["rule"].as_str().map(str::to_owned))
            .collect();
        let wanted = [
            "elevator.trapped",
            "elevator.controller_fault",
            "registry.inspection_overdue",
            "filling.overfill",
        ];
        wanted
            .iter()
            .all(|w| rules.iter().any(|r| r == w))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_and_every_metric_exists() {
    // A webhook (to a closed port) so its metrics exist too.
    let vigil = Vigil::start_with_config(&format!(
        "[engine]\nregistry_check_s = 1\n[[delivery.webhooks]]\nurl = \"http://127.0.0.1:{}/hook\"\nmax_attempts = 1\n",
        free_port()
    ))
    .await;
    let schema = vigil.schema().expect("the PostgreSQL run");
    seed(&vigil).await;

    // The read-only role of docs/dashboards.md: a member of the engine's
    // reader role, searching Vigil's schema.
    let (client, connection) = tokio_postgres::connect(&crate::store_url().unwrap(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let grafana = format!("{schema}_grafana");
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{grafana}\" NOLOGIN IN ROLE \"{schema}_reader\";
             SET ROLE \"{grafana}\";
             SET search_path TO \"{schema}\", public;
             SET default_transaction_read_only = on;"
        ))
        .await
        .unwrap();

    let now = chrono::Utc::now();
    let from =
        (now - chrono::TimeDelta::hours(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to =
        (now + chrono::TimeDelta::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut queries = 0;
    let mut exprs = Vec::new();
    for (file, dash) in dashboards() {
        assert!(
            dash["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("vigil-")),
            "{file}: uid"
        );
        for panel in dash["panels"].as_array().unwrap() {
            let title = format!("{file}: {}", panel["title"].as_str().unwrap());
            let kind = panel["type"].as_str().unwrap();
            for target in panel["targets"].as_array().unwrap() {
                if let Some(expr) = target["expr"].as_str() {
                    assert_eq!(target["datasource"]["uid"], "vigil-prometheus", "{title}");
                    exprs.push((title.clone(), expr.to_owned()));
                    continue;
                }
                assert_eq!(target["datasource"]["uid"], "vigil-postgres", "{title}");
                let raw = target["rawSql"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no rawSql"));
                // A narrower region must parse too; the seed is all in 4407.
                let narrow = expand(raw, &from, &to, "4407");
                client
                    .query(&narrow, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{title}: {e}\n{narrow}"));
                let sql = expand(raw, &from, &to, "");
                let rows = client
                    .query(&sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"));
                queries += 1;
                assert!(
                    !rows.is_empty(),
                    "{title}: no rows from the seeded data\n{sql}"
                );
                let columns: Vec<(String, Type)> = rows[0]
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_owned(), c.type_().clone()))
                    .collect();
                match (target["format"].as_str().unwrap(), kind) {
                    ("time_series", "timeseries") => {
                        let time = columns.iter().position(|(n, _)| n == "time");
                        let time = time
                            .unwrap_or_else(|| panic!("{title}: no `time` column: {columns:?}"));
                        assert_eq!(columns[time].1, Type::TIMESTAMPTZ, "{title}");
                        assert!(
                            columns.iter().any(|(_, t)| is_number(t)),
                            "{title}: no value column"
                        );
                        for (name, t) in &columns {
                            assert!(
                                name == "time" || name == "metric" || is_number(t),
                                "{title}: column {name} ({t}) is neither time, metric nor a number"
                            );
                        }
                        let times: Vec<std::time::SystemTime> =
                            rows.iter().map(|r| r.get(time)).collect();
                        assert!(
                            times.windows(2).all(|w| w[0] <= w[1]),
                            "{title}: not ordered by time"
                        );
                    }
                    ("table", "stat") => {
                        assert_eq!(rows.len(), 1, "{title}: a stat reads one row");
                        assert!(
                            columns.iter().all(|(_, t)| is_number(t)),
                            "{title}: {columns:?}"
                        );
                    }
                    ("table", "barchart") | ("table", "piechart") => {
                        assert_eq!(
                            columns[0].1,
                            Type::TEXT,
                            "{title}: a label first: {columns:?}"
                        );
                        assert!(
                            columns[1..].iter().all(|(_, t)| is_number(t)),
                            "{title}: {columns:?}"
                        );
                    }
                    ("table", "table") => assert!(columns.len() >= 2, "{title}: {columns:?}"),
                    (format, kind) => panic!("{title}: a {kind} panel with format {format}"),
                }
            }
        }
    }
    assert!(queries >= 25, "{queries} SQL panels");

    // PromQL: every metric an expression reads is in the running engine's
    // /metrics (histograms by their _bucket series).
    let exposition = vigil.metrics().await;
    let exported: HashMap<String, ()> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| (n.to_owned(), ()))
        .collect();
    assert!(exprs.len() >= 20, "{} PromQL expressions", exprs.len());
    for (title, expr) in &exprs {
        let names = promql_metrics(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for name in names {
            assert!(
                exported.contains_key(&name),
                "{title}: {expr} reads {name}, which /metrics does not export"
            );
        }
    }
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        promql_metrics(
            "histogram_quantile(0.99, sum by (le) (rate(vigil_a_seconds_bucket{x=\"y\"}[$__rate_interval])))"
        ),
        BTreeSet::from(["vigil_a_seconds_bucket".to_owned()])
    );
    assert_eq!(
        promql_metrics("sum by (reason) (rate(vigil_b_total[5m])) / vigil_c"),
        BTreeSet::from(["vigil_b_total".to_owned(), "vigil_c".to_owned()])
    );
    assert_eq!(
        expand(
            "x WHERE $__timeFilter(ts) AND region LIKE '${region}%'",
            "A",
            "B",
            "44"
        ),
        "x WHERE ts BETWEEN 'A' AND 'B' AND region LIKE '44%'"
    );
}
