use vigil_storage::Store;
use vigil_storage::postgres::migrate::{LATEST, Mode, migrate};
use vigil_storage::postgres::migrate_only;

use crate::cluster::SERVER;
use crate::fixtures::{self, T0, take_tokens};
use crate::support::{client, count, db, open};

#[tokio::test]
async fn migrations_from_empty_create_every_table_once() {
    let _server = SERVER.read().unwrap();
    let db = db("mig_empty");
    let first = migrate_only(&db.config).await.expect("migrates");
    assert_eq!(first.version, LATEST);
    assert_eq!(first.applied, (1..=LATEST).collect::<Vec<_>>());
    // Debian's PostgreSQL has no TimescaleDB: plain mode (the TimescaleDB
    // variant is tested by tests/timescaledb.rs against PGlite).
    let c = client(&db.config).await;
    let timescale = count(
        &c,
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'",
    )
    .await;
    assert_eq!(
        first.mode,
        if timescale > 0 {
            Mode::Timescale
        } else {
            Mode::Plain
        }
    );

    let again = migrate_only(&db.config).await.expect("migrates again");
    assert!(again.applied.is_empty(), "nothing left to apply");
    assert_eq!(again.version, LATEST);
    for t in vigil_storage::TABLES
        .iter()
        .chain(&["alarms", "equipment_hourly", "region_daily"])
    {
        count(&c, &format!("SELECT count(*) FROM {t}")).await;
    }
    assert_eq!(
        count(&c, "SELECT count(*) FROM vigil_schema_migrations").await,
        LATEST as i64
    );
}

#[tokio::test]
async fn the_stored_columns_match_the_embedded_schema() {
    let _server = SERVER.read().unwrap();
    let db = db("mig_cols");
    migrate_only(&db.config).await.unwrap();
    let c = client(&db.config).await;
    let (store, _tokens) = open(&db.config).await;
    for t in vigil_storage::TABLES {
        let cols: Vec<String> = c
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&db.config.schema, t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let out = store
            .query(&format!("SELECT * FROM {t}"), &Default::default())
            .await
            .unwrap();
        let arrow: Vec<String> = out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(cols, arrow, "{t}");
        let types: Vec<String> = c
            .query(
                "SELECT data_type::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND data_type NOT IN ('text', 'bigint', 'smallint', 'integer', 'real', 'boolean', 'timestamp with time zone', 'bytea')",
                &[&db.config.schema, t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(types.is_empty(), "{t} has unexpected types {types:?}");
    }
}

#[tokio::test]
async fn migrating_from_before_the_rollup_views_keeps_the_data_and_adds_the_views() {
    let _server = SERVER.read().unwrap();
    let db = db("mig_prev");
    let mut c = client(&db.config).await;
    let old = migrate(&mut c, &db.config, Some(2)).await.unwrap();
    assert_eq!(old.version, 2);
    assert!(
        c.query("SELECT * FROM equipment_hourly", &[])
            .await
            .is_err(),
        "not there yet"
    );
    c.batch_execute(&format!(
        "INSERT INTO elevator_readings (device_id, equipment_id, category, owner_id, region, seq, ts, received_at,
             floor, direction, speed_mps, door, leveled, occupied, mode, safety_circuit, door_lock, alarm_button, power, \"limit\", run_count)
         VALUES ('EL1', 'EQ-EL1', 'elevator', 'OWN1', '440703', 1, to_timestamp({t}), to_timestamp({t}), 1, 'stop', 0, 'closed', true, false, 'normal', true, true, false, 'main', 'none', 100),
                ('EL1', 'EQ-EL1', 'elevator', 'OWN1', '440703', 2, to_timestamp({t} + 60), to_timestamp({t} + 60), 1, 'stop', 0, 'closed', true, false, 'normal', true, true, false, 'main', 'none', 107)",
        t = T0 / 1000
    ))
    .await
    .unwrap();

    let (store, _tokens) = open(&db.config).await;
    let rows = fixtures::json_rows(
        &store
            .query(
                "SELECT equipment_id, runs FROM equipment_hourly",
                &Default::default(),
            )
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["runs"], 7);
    assert_eq!(
        count(
            &c,
            "SELECT max(version)::bigint FROM vigil_schema_migrations"
        )
        .await as i32,
        LATEST
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn dead_letters_of_the_previous_version_get_a_null_seq() {
    let _server = SERVER.read().unwrap();
    let db = db("mig_seq");
    let mut c = client(&db.config).await;
    migrate(&mut c, &db.config, Some(3)).await.unwrap();
    c.batch_execute(
        "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload, payload_text, payload_size)
         VALUES (now(), '/tenants/EL1/v1/elevator', 'EL1', 'wrong_type', 'x', '\\x7b7d', '{}', 2)",
    )
    .await
    .unwrap();
    let (store, mut tokens) = open(&db.config).await;
    store
        .write(vec![crate::seq_history::letter_with_seq("EL1", 9)])
        .await
        .unwrap();
    take_tokens(&mut tokens, 1).await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM dead_letters WHERE seq IS NULL").await,
        1
    );
    let found = store
        .stored_seqs(&[
            (vigil_model::DeviceId::new("EL1").unwrap(), 9),
            (vigil_model::DeviceId::new("EL1").unwrap(), 1),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    store.close().await.unwrap();
}
