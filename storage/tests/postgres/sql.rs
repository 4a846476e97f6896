use std::time::Duration;

use serde_json::json;
use vigil_model::Region;
use vigil_storage::{ColumnType, QueryOptions, Record, RefColumn, RefTable, Store, StoreError};

use crate::cluster::SERVER;
use crate::fixtures::{self, binding, elevator, json_rows, take_tokens, ws};
use crate::support::{db, open};

fn in_region(mut r: Record, region: &str) -> Record {
    if let Record::Reading(s) = &mut r {
        s.binding.region = Region::new(region).unwrap();
    }
    r
}

fn analyst(regions: &[&str]) -> QueryOptions {
    QueryOptions {
        regions: Some(regions.iter().map(|r| Region::new(r).unwrap()).collect()),
        ..QueryOptions::default()
    }
}

#[tokio::test]
async fn analysts_see_only_their_regions_and_no_tables_without_one() {
    let _server = SERVER.read().unwrap();
    let db = db("scope");
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(ws([
            in_region(elevator("EL1", 1), "440703"),
            in_region(elevator("EL2", 1), "440106"),
            in_region(elevator("EL3", 1), "110101"),
            fixtures::dead_letter(b"x"),
        ]))
        .await
        .unwrap();
    take_tokens(&mut tokens, 3).await;
    store.flush().await.unwrap();

    let sql = "SELECT device_id FROM elevator_readings ORDER BY device_id";
    let all = json_rows(
        &store
            .query(sql, &QueryOptions::default())
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(all.len(), 3);
    // 440700 is a city: it covers 4407xx.
    let city = json_rows(
        &store
            .query(sql, &analyst(&["440700"]))
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(
        city,
        vec![json!({"device_id": "EL1"}).as_object().unwrap().clone()]
    );
    let province = store
        .query(sql, &analyst(&["440000", "110101"]))
        .await
        .unwrap();
    assert_eq!(json_rows(&province.batches).len(), 3);
    let none = store.query(sql, &analyst(&["320000"])).await.unwrap();
    assert_eq!(json_rows(&none.batches).len(), 0);

    // Rollups are scoped too; dead letters have no region: not there at all.
    let hourly = store
        .query(
            "SELECT equipment_id FROM equipment_hourly",
            &analyst(&["440700"]),
        )
        .await
        .unwrap();
    assert_eq!(json_rows(&hourly.batches).len(), 1);
    let err = store
        .query("SELECT * FROM dead_letters", &analyst(&["440700"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
    // Naming the real table, or changing settings, does not get around it.
    let direct = format!("SELECT * FROM \"{}\".elevator_readings", db.config.schema);
    let err = store
        .query(&direct, &analyst(&["440700"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
    let sneaky = "SELECT set_config('search_path', current_setting('search_path'), false), device_id FROM elevator_readings";
    let rows = json_rows(
        &store
            .query(sneaky, &analyst(&["440700"]))
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn queries_are_read_only_limited_and_timed() {
    let _server = SERVER.read().unwrap();
    let db = db("limits");
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(ws((1..=50).map(|i| elevator("EL1", i))))
        .await
        .unwrap();
    take_tokens(&mut tokens, 50).await;

    for bad in [
        "DELETE FROM elevator_readings",
        "CREATE TABLE x (a int)",
        "SELECT 1; SELECT 2",
        "SELECT * FROM no_such_table",
        "SELECT * FROM vigil_role_secrets",
    ] {
        let err = store
            .query(bad, &QueryOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidQuery(_)), "{bad}: {err:?}");
    }
    let opts = QueryOptions {
        max_rows: 10,
        ..QueryOptions::default()
    };
    let out = store
        .query("SELECT seq FROM elevator_readings", &opts)
        .await
        .unwrap();
    assert!(out.truncated);
    assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    let opts = QueryOptions {
        timeout: Duration::from_millis(200),
        ..QueryOptions::default()
    };
    let err = store.query("SELECT pg_sleep(30)", &opts).await.unwrap_err();
    assert!(matches!(err, StoreError::QueryTimeout(_)), "{err:?}");

    // Types without a natural Arrow form come back as numbers or text.
    let rows = json_rows(
        &store
            .query(
                "SELECT sum(seq) AS total, INTERVAL '1 hour' AS i, time_bucket_or_bin FROM (SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01') AS time_bucket_or_bin, seq FROM elevator_readings) t GROUP BY 3",
                &QueryOptions::default(),
            )
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows[0]["total"], json!(1275.0));
    assert_eq!(rows[0]["i"], json!("01:00:00"));
    store.close().await.unwrap();
}

#[tokio::test]
async fn reference_tables_are_replaced_whole() {
    let _server = SERVER.read().unwrap();
    let db = db("refs");
    let (store, _tokens) = open(&db.config).await;
    let col = |name: &str, ty| RefColumn {
        name: name.into(),
        ty,
        nullable: true,
    };
    let mut table = RefTable {
        name: "equipment".into(),
        columns: vec![
            col("equipment_id", ColumnType::Text),
            col("region", ColumnType::Text),
            col("floors", ColumnType::Int),
            col("next_inspection", ColumnType::Date),
            col("updated", ColumnType::Timestamp),
        ],
        rows: vec![
            vec![
                json!("EQ-EL1"),
                json!("440703"),
                json!(12),
                json!("2026-05-20"),
                json!(fixtures::T0),
            ],
            vec![
                json!("EQ-EL2"),
                json!("110101"),
                json!(null),
                json!(null),
                json!(null),
            ],
        ],
    };
    store.set_reference_table(table.clone()).await.unwrap();
    let sql = "SELECT equipment_id, floors, next_inspection, updated FROM equipment ORDER BY 1";
    let rows = json_rows(
        &store
            .query(sql, &QueryOptions::default())
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["next_inspection"], json!("2026-05-20"));
    assert_eq!(rows[0]["floors"], json!(12));
    let scoped = store.query(sql, &analyst(&["440700"])).await.unwrap();
    assert_eq!(json_rows(&scoped.batches).len(), 1);

    table.rows.pop();
    store.set_reference_table(table).await.unwrap();
    let rows = json_rows(
        &store
            .query(sql, &QueryOptions::default())
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 1);
    let _ = binding("EQ");
    store.close().await.unwrap();
}

#[tokio::test]
async fn people_queries_are_capped_scrubbed_and_scoped_below_their_expressions() {
    let _server = SERVER.read().unwrap();
    let db = db("people");
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(ws([
            in_region(elevator("JM1", 1), "440703"),
            in_region(elevator("GZSECRET", 1), "440106"),
        ]))
        .await
        .unwrap();
    take_tokens(&mut tokens, 2).await;
    let person = |regions: Option<&[&str]>| QueryOptions {
        regions: regions.map(|rs| rs.iter().map(|r| Region::new(r).unwrap()).collect()),
        guarded: true,
        ..QueryOptions::default()
    };
    let jiangmen = person(Some(&["440700"]));
    // The cast would fail on the Guangzhou row if it ever reached it.
    let side_door = "SELECT device_id FROM elevator_readings WHERE CASE WHEN region <> '440703' \
                     THEN CAST(concat_ws('|', device_id, region) AS INT) ELSE 0 END = 1";
    let out = store.query(side_door, &jiangmen).await.unwrap();
    assert_eq!(json_rows(&out.batches).len(), 0);
    // On the grant's own rows it fails, naming no value.
    let err = store
        .query(
            "SELECT CAST(device_id AS INT) FROM elevator_readings",
            &jiangmen,
        )
        .await
        .unwrap_err();
    let StoreError::InvalidQuery(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.contains("integer") && !m.contains("JM1"), "{m}");
    // Mistakes in the text keep their position.
    let err = store
        .query("SELECT nope FROM elevator_readings", &jiangmen)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidQuery(m) if m.contains("nope") && m.contains("at character 8")),
        "{err:?}"
    );
    // Too deep, refused before PostgreSQL sees it.
    let sum = format!("SELECT {}", vec!["1"; 1000].join(" + "));
    let err = store.query(&sum, &person(None)).await.unwrap_err();
    assert!(matches!(err, StoreError::QueryTooComplex(_)), "{err:?}");
    // The byte cap cuts the streamed answer.
    let small = QueryOptions {
        max_bytes: 1 << 20,
        ..person(None)
    };
    let out = store
        .query(
            "SELECT repeat('x', 1000) AS v FROM generate_series(1, 10000)",
            &small,
        )
        .await
        .unwrap();
    assert!(out.truncated);
    let rows: usize = out.batches.iter().map(|b| b.num_rows()).sum();
    assert!((900..1100).contains(&rows), "{rows} rows of 1 kB in 1 MiB");
    // The query roles carry the temporary file limit, sessions the work_mem.
    let out = store
        .query(
            "SELECT current_setting('temp_file_limit') AS t, current_setting('work_mem') AS w",
            &jiangmen,
        )
        .await
        .unwrap();
    assert_eq!(
        json_rows(&out.batches),
        [json!({"t": "1GB", "w": "16MB"})
            .as_object()
            .unwrap()
            .clone()]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn typed_reads_give_back_alarms_and_readings_as_written() {
    let _server = SERVER.read().unwrap();
    let db = db("typed_reads");
    let (store, mut tokens) = open(&db.config).await;
    crate::typed_reads::check(&*store, &mut tokens).await;
    store.close().await.unwrap();
}
