//! Fuzzing `POST /api/v1/sql` through a running engine (the real HTTP
//! listener, the real query path, small limits): hostile bodies (wrong
//! types, damaged JSON, stray bytes), `Accept` and `Content-Type` headers,
//! query parameters, and SQL-ish text from a grammar (every table, joins,
//! table functions, casts, CASE, windows, comments, DDL and DML, several
//! statements, unicode and quoting) with tokens cut and inserted. Whatever
//! comes in: no panic, no hang, an answer under 500 that is either rows in
//! the asked format or a JSON error, and `/healthz` still answering.
//!
//! Known killers that the SQL compartment (issue 11, item 1) must survive
//! are left out unless `VIGIL_FUZZ_SQL_HOSTILE=1`: expressions thousands
//! of terms deep and table functions of billions of rows.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

use crate::config::ServerConfig;
use crate::engine::{Engine, system_clock};

const ADMIN: &str = "fuzz-admin-token";

fn hostile() -> bool {
    std::env::var("VIGIL_FUZZ_SQL_HOSTILE").is_ok_and(|v| v == "1")
}

/// Rows a table function may make, and terms an expression may have.
fn bounds() -> (u64, usize) {
    if hostile() {
        (100_000_000, 3000)
    } else {
        (20_000, 40)
    }
}

const TABLES: &[&str] = &[
    "elevator_readings",
    "ride_readings",
    "video_events",
    "filling_records",
    "device_events",
    "alarm_changes",
    "alarms",
    "dead_letters",
    "owners",
    "maintainers",
    "stations",
    "equipment",
    "devices",
    "persons",
    "cylinders",
    "maintenance_records",
    "risk",
    "owner_risk",
    "nope",
    "information_schema.tables",
    "\"elevator_readings\"",
];

const COLUMNS: &[&str] = &[
    "*",
    "device_id",
    "equipment_id",
    "region",
    "ts",
    "seq",
    "floor",
    "speed_mps",
    "\"limit\"",
    "door",
    "owner_id",
    "name",
    "params",
    "details",
    "state",
    "severity",
    "payload",
    "nope",
    "1",
    "NULL",
];

fn literal() -> BoxedStrategy<String> {
    prop_oneof![
        (-1000i64..1000).prop_map(|n| n.to_string()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("1e308".to_owned()),
        Just("1e309".to_owned()),
        Just("-0.0".to_owned()),
        Just("'440703'".to_owned()),
        Just("'电梯'".to_owned()),
        Just("'it''s'".to_owned()),
        Just("''".to_owned()),
        Just("'unterminated".to_owned()),
        Just("TRUE".to_owned()),
        Just("NULL".to_owned()),
        Just("$1".to_owned()),
        Just("?".to_owned()),
        Just("INTERVAL '1 day'".to_owned()),
        Just("TIMESTAMP '2024-01-01T00:00:00Z'".to_owned()),
        Just("[1, 2, 3]".to_owned()),
        Just("{'a': 1}".to_owned()),
        "[a-z_]{1,8}".prop_map(|s| format!("'{s}'")),
    ]
    .boxed()
}

fn expr() -> BoxedStrategy<String> {
    let (_, terms) = bounds();
    let leaf = prop_oneof![
        3 => prop::sample::select(COLUMNS).prop_map(str::to_owned),
        3 => literal(),
    ]
    .boxed();
    let small = leaf.clone();
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            4 => (inner.clone(), prop::sample::select(&["+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "||", "LIKE", "IS", "IS NOT"][..]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            2 => (prop::sample::select(&["abs", "length", "upper", "coalesce", "concat", "concat_ws", "repeat", "substr", "round", "date_trunc", "to_timestamp", "regexp_match", "nullif", "greatest", "md5", "arrow_typeof", "count", "sum", "max", "string_agg", "array_agg", "row_number"][..]), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            1 => (inner.clone(), prop::sample::select(&["INT", "BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP", "BOOLEAN", "DECIMAL(38, 10)", "nope"][..]))
                .prop_map(|(a, t)| format!("CAST({a} AS {t})")),
            1 => (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
            1 => inner.clone().prop_map(|a| format!("NOT {a}")),
            1 => inner.clone().prop_map(|a| format!("{a} OVER (PARTITION BY device_id ORDER BY ts)")),
            1 => (small.clone(), 1..terms).prop_map(|(a, n)| vec![a; n].join(" + ")),
            1 => (1..terms).prop_map(|n| (0..n).map(|i| format!("equipment_id = 'EQ{i}'")).collect::<Vec<_>>().join(" OR ")),
        ]
    })
    .boxed()
}

fn from() -> BoxedStrategy<String> {
    let (rows, _) = bounds();
    prop_oneof![
        6 => prop::sample::select(TABLES).prop_map(str::to_owned),
        1 => (1..rows).prop_map(|n| format!("generate_series(1, {n})")),
        1 => (1..rows).prop_map(|n| format!("range({n})")),
        1 => (prop::sample::select(TABLES), prop::sample::select(TABLES))
            .prop_map(|(a, b)| format!("{a} x CROSS JOIN {b} y")),
        1 => (prop::sample::select(TABLES), prop::sample::select(TABLES))
            .prop_map(|(a, b)| format!("{a} x JOIN {b} y ON x.equipment_id = y.equipment_id")),
        1 => prop::sample::select(TABLES).prop_map(|t| format!("(SELECT * FROM {t} LIMIT 5) s")),
        1 => Just("unnest([1, 2, 3])".to_owned()),
    ]
    .boxed()
}

fn select() -> BoxedStrategy<String> {
    (
        prop::collection::vec(expr(), 1..4),
        from(),
        prop::option::of(expr()),
        prop::option::of(expr()),
        prop::option::of(0u64..2000),
        any::<bool>(),
    )
        .prop_map(|(cols, from, filter, group, limit, distinct)| {
            let mut s = format!(
                "SELECT {}{} FROM {from}",
                if distinct { "DISTINCT " } else { "" },
                cols.join(", ")
            );
            if let Some(f) = filter {
                s.push_str(&format!(" WHERE {f}"));
            }
            if let Some(g) = group {
                s.push_str(&format!(" GROUP BY {g}"));
            }
            if let Some(l) = limit {
                s.push_str(&format!(" LIMIT {l}"));
            }
            s
        })
        .boxed()
}

/// Queries an analyst means to write: a table's own columns, simple
/// filters, aggregates, ordering; so that rows come back, in every format.
fn sensible() -> BoxedStrategy<String> {
    let reading = &[
        "device_id",
        "equipment_id",
        "category",
        "owner_id",
        "region",
        "seq",
        "ts",
        "received_at",
        "floor",
        "direction",
        "speed_mps",
        "door",
        "leveled",
        "occupied",
        "\"limit\"",
        "run_count",
        "load_pct",
        "extra",
    ][..];
    let tables: Vec<(&'static str, &'static [&'static str])> = vec![
        ("elevator_readings", reading),
        (
            "equipment",
            &[
                "equipment_id",
                "owner_id",
                "region",
                "category",
                "status",
                "params",
                "next_inspection",
            ][..],
        ),
        ("owners", &["owner_id", "name", "region", "credit_code"][..]),
        (
            "devices",
            &[
                "device_id",
                "equipment_id",
                "kind",
                "enabled",
                "report_interval_s",
            ][..],
        ),
        (
            "alarms",
            &[
                "alarm_id", "rule", "severity", "state", "region", "details", "count",
            ][..],
        ),
        (
            "dead_letters",
            &[
                "device_id",
                "reason",
                "detail",
                "payload",
                "payload_text",
                "payload_size",
            ][..],
        ),
    ];
    (
        prop::sample::select(tables),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        0usize..6,
        literal(),
        0u32..600,
    )
        .prop_map(|((table, cols), a, b, shape, lit, n)| {
            let a = a.get(cols);
            let b = b.get(cols);
            match shape {
                0 => format!("SELECT {a}, {b} FROM {table} LIMIT {n}"),
                1 => format!("SELECT {a}, count(*) AS n FROM {table} GROUP BY {a} ORDER BY n DESC"),
                2 => format!("SELECT * FROM {table} WHERE {a} IS NOT NULL ORDER BY {b} LIMIT {n}"),
                3 => format!("SELECT {a} FROM {table} WHERE CAST({b} AS VARCHAR) <> {lit}"),
                4 => format!(
                    "SELECT min({a}) AS lo, max({a}) AS hi, count(DISTINCT {b}) FROM {table}"
                ),
                _ => format!(
                    "SELECT {a}, length(CAST({b} AS VARCHAR)) FROM {table} ORDER BY 1 LIMIT {n}"
                ),
            }
        })
        .boxed()
}

/// SQL-ish text: mostly SELECTs, some of everything else.
fn sqlish() -> BoxedStrategy<String> {
    let statement = prop_oneof![
        8 => sensible(),
        6 => select(),
        1 => (select(), select()).prop_map(|(a, b)| format!("{a} UNION ALL {b}")),
        1 => select().prop_map(|s| format!("WITH t AS ({s}) SELECT count(*) FROM t")),
        1 => select().prop_map(|s| format!("EXPLAIN {s}")),
        1 => prop::sample::select(&[
            "DROP TABLE elevator_readings",
            "CREATE TABLE x AS SELECT 1",
            "INSERT INTO owners VALUES ('x')",
            "DELETE FROM alarms",
            "UPDATE equipment SET region = '440100'",
            "COPY elevator_readings TO '/tmp/x.csv'",
            "SET datafusion.execution.batch_size = 1",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "SELECT 1; SELECT 2",
            "SELECT 1; DROP TABLE owners",
            "",
            ";",
            "--",
            "/* unterminated",
            "SELECT /* a /* nested */ comment */ 1",
            "SELECT \"\u{202e}\" FROM owners",
            "SELECT '\0'",
            "PREPARE p AS SELECT $1",
            "SHOW ALL",
            "DESCRIBE elevator_readings",
        ][..])
        .prop_map(str::to_owned),
        1 => prop::collection::vec(
            prop::sample::select(&["SELECT", "FROM", "WHERE", "(", ")", ",", "*", "'", "\"", "1", "owners", "JOIN", "ON", "GROUP", "BY", "ORDER", "LIMIT", "OVER", "CASE", "END", ";", "--", "/*"][..]),
            0..30,
        )
        .prop_map(|t| t.join(" ")),
    ];
    typo(statement.boxed())
}

#[derive(Debug, Clone)]
enum Body {
    Sql(String),
    /// `{"sql": <not a string>}`
    WrongType(Value),
    Extra(String, String, Value),
    Json(Value),
    Damaged(String, Damage),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        12 => sqlish().prop_map(Body::Sql),
        1 => any_json(2).prop_map(Body::WrongType),
        1 => (sqlish(), "[a-z_]{1,10}", any_json(1)).prop_map(|(s, k, v)| Body::Extra(s, k, v)),
        1 => any_json(3).prop_map(Body::Json),
        2 => (sqlish(), damage()).prop_map(|(s, d)| Body::Damaged(s, d)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
    ]
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Sql(s) => json!({ "sql": s }).to_string().into_bytes(),
            Body::WrongType(v) => json!({ "sql": v }).to_string().into_bytes(),
            Body::Extra(s, k, v) => json!({ "sql": s, (k.as_str()): v })
                .to_string()
                .into_bytes(),
            Body::Json(v) => v.to_string().into_bytes(),
            Body::Damaged(s, d) => damaged(&json!({ "sql": s }), d),
            Body::Bytes(b) => b.clone(),
        }
    }
}

fn header_value() -> BoxedStrategy<Option<String>> {
    prop::option::of(prop_oneof![
        Just("application/json".to_owned()),
        Just("text/csv".to_owned()),
        Just(crate::sql::ARROW_STREAM.to_owned()),
        Just("*/*".to_owned()),
        Just("text/csv;q=0.1, application/json;q=0.9".to_owned()),
        Just("text/html".to_owned()),
        Just("application/json; charset=utf-16".to_owned()),
        Just(String::new()),
        "[ -~]{0,80}",
    ])
    .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    analyst: bool,
    body: Body,
    accept: Option<String>,
    content_type: Option<String>,
    query: Vec<(String, String)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        body(),
        header_value(),
        header_value(),
        prop::collection::vec(
            (
                prop_oneof![
                    Just("format".to_owned()),
                    Just("sql".to_owned()),
                    "[a-z]{1,6}"
                ],
                "[ -~]{0,20}",
            ),
            0..3,
        ),
    )
        .prop_map(|(analyst, body, accept, content_type, query)| Case {
            analyst,
            body,
            accept,
            content_type,
            query,
        })
}

/// An engine on loopback with small SQL limits and a little data.
struct Target {
    runtime: tokio::runtime::Runtime,
    engine: Option<Engine>,
    client: reqwest::Client,
    analyst: String,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start() -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().join("data"),
            mqtt_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN.to_owned()),
            ..ServerConfig::default()
        };
        config.engine.sql_timeout_s = 3;
        config.engine.sql_max_rows = 500;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (engine, analyst) = runtime.block_on(async {
            let engine = Engine::start(config, system_clock()).await.unwrap();
            let base = format!("http://{}/api/v1", engine.http_addr());
            let post = |path: &str, body: Value| {
                client
                    .post(format!("{base}{path}"))
                    .bearer_auth(ADMIN)
                    .json(&body)
                    .send()
            };
            let import = json!({
                "owners": [
                    {"owner_id": "OW1", "name": "Harbour Co.", "credit_code": "91440703MA4UABCD1X", "region": "440703"},
                    {"owner_id": "OW2", "name": "Tianhe Ltd.", "credit_code": "91440106MA5UEFGH2Y", "region": "440106"}
                ],
                "equipment": [
                    {"equipment_id": "EQ1", "reg_code": "r1", "category": "elevator", "owner_id": "OW1", "region": "440703", "address": "a", "status": "in_use", "next_inspection": "2030-01-01", "params": {"rated_speed_mps": 1.75}},
                    {"equipment_id": "EQ2", "reg_code": "r2", "category": "elevator", "owner_id": "OW2", "region": "440106", "address": "b", "status": "in_use", "next_inspection": "2030-01-01"}
                ],
                "devices": [
                    {"device_id": "D1", "equipment_id": "EQ1", "kind": "elevator"},
                    {"device_id": "D2", "equipment_id": "EQ2", "kind": "elevator"}
                ]
            });
            let r = post("/registry/import", import).await.unwrap();
            assert!(r.status().is_success(), "{:?}", r.text().await);
            let r = post(
                "/tokens",
                json!({"name": "fuzz", "role": "analyst", "regions": ["440700"]}),
            )
            .await
            .unwrap();
            let analyst = r.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
            seed(&engine).await;
            (engine, analyst)
        });
        Target {
            runtime,
            engine: Some(engine),
            client,
            analyst,
            _dir: dir,
        }
    }

    fn http(&self) -> std::net::SocketAddr {
        self.engine.as_ref().unwrap().http_addr()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            let _ = self.runtime.block_on(engine.shutdown());
        }
    }
}

/// Readings of both elevators, through the store as ingest writes them.
async fn seed(engine: &Engine) {
    use vigil_model::reading::*;
    use vigil_model::{Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region};
    use vigil_storage::{Record, StoredReading, Write};
    let now = (system_clock())();
    let mut writes = Vec::new();
    for (device, eq, owner, region) in [
        ("D1", "EQ1", "OW1", "440703"),
        ("D2", "EQ2", "OW2", "440106"),
    ] {
        for seq in 1..=100u64 {
            let reading = Reading {
                device_id: DeviceId::new(device).unwrap(),
                seq,
                ts: now - 100_000 + seq as i64 * 1000,
                received_at: now,
                payload: Payload::Elevator(ElevatorSample {
                    floor: (seq % 12) as i16,
                    occupied: seq % 3 == 0,
                    run_count: Some(seq),
                    load_pct: Some(seq as f32),
                    ..ElevatorSample::idle()
                }),
                extra: None,
            };
            let binding = Binding {
                equipment_id: EquipmentId::new(eq).unwrap(),
                category: "elevator".into(),
                owner_id: OwnerId::new(owner).unwrap(),
                region: Region::new(region).unwrap(),
            };
            writes.push(Write {
                record: Record::Reading(StoredReading { reading, binding }),
                ack: None,
            });
        }
    }
    engine.state().store.write(writes).await.unwrap();
}

#[test]
fn hostile_sql_requests_get_rows_or_a_json_error() {
    let target = Arc::new(Target::start());
    let tally = Tally::default();
    let max_rows = 500;
    run("http.sql", 300, case(), |case| {
        let t = Arc::clone(&target);
        let url = format!("http://{}/api/v1/sql", t.http());
        let token = if case.analyst { &t.analyst } else { ADMIN };
        let mut req = t.client.post(&url).bearer_auth(token).query(&case.query);
        if let Some(a) = &case.accept {
            req = req.header("accept", a);
        }
        if let Some(c) = &case.content_type {
            req = req.header("content-type", c);
        }
        let req = req.body(case.body.bytes());
        let (status, content_type, bytes) = t
            .runtime
            .block_on(async {
                let r = req.send().await.map_err(|e| format!("no answer: {e}"))?;
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let bytes = r.bytes().await.map_err(|e| format!("cut answer: {e}"))?;
                Ok::<_, String>((status, ct, bytes))
            })
            .map_err(TestCaseError::fail)?;
        prop_assert!(
            status < 500,
            "status {}: {}",
            status,
            String::from_utf8_lossy(&bytes)
        );
        if status == 200 {
            let accept = case.accept.as_deref().unwrap_or("application/json");
            if accept.contains("text/csv") {
                tally.add("rows as CSV");
                prop_assert!(content_type.starts_with("text/csv"), "{}", content_type);
            } else if accept.contains(crate::sql::ARROW_STREAM) {
                tally.add("rows as Arrow");
                prop_assert_eq!(content_type.as_str(), crate::sql::ARROW_STREAM);
                let reader = arrow::ipc::reader::StreamReader::try_new(
                    std::io::Cursor::new(&bytes[..]),
                    None,
                )
                .map_err(|e| TestCaseError::fail(format!("not Arrow IPC: {e}")))?;
                let rows: usize = reader.map(|b| b.map(|b| b.num_rows()).unwrap_or(0)).sum();
                prop_assert!(rows <= max_rows);
            } else {
                tally.add("rows as JSON");
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("200 without JSON: {e}")))?;
                let rows = v["rows"].as_array().map(Vec::len);
                prop_assert!(rows.is_some_and(|n| n <= max_rows), "{}", v);
            }
        } else {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                TestCaseError::fail(format!(
                    "{status} without a JSON error ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            let code = v["error"]["code"].as_str();
            prop_assert!(code.is_some() && v["error"]["message"].is_string(), "{}", v);
            tally.add(format!("{status} {}", code.unwrap_or_default()));
        }
        // The engine is still there for everyone else.
        let alive = t.runtime.block_on(async {
            t.client
                .get(format!("http://{}/healthz", t.http()))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        prop_assert!(alive, "/healthz stopped answering");
        Ok(())
    });
    tally.print("http.sql");
}
