//! The SQL surface: read-only, limits, the `alarms` view.

use std::time::Duration;

use vigil_model::AlarmState;
use vigil_storage::{QueryOptions, Record, Store, StoreError};

use crate::fixtures::*;

#[tokio::test]
async fn only_read_only_single_statements_run() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store.write(ws([elevator("EL1", 1)])).await.unwrap();
    store.flush().await.unwrap();
    let refused = [
        "CREATE TABLE t (x INT)",
        "CREATE VIEW v AS SELECT 1",
        "INSERT INTO elevator_readings SELECT * FROM elevator_readings",
        "DROP TABLE elevator_readings",
        "DELETE FROM elevator_readings",
        "COPY elevator_readings TO '/tmp/vigil-copy-test.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT 1; SELECT 2",
        "SELEC 1",
        "SELECT * FROM no_such_table",
    ];
    for sql in refused {
        match store.query(sql, &QueryOptions::default()).await {
            Err(StoreError::InvalidQuery(msg)) => assert!(!msg.is_empty()),
            other => panic!("{sql}: expected InvalidQuery, got {other:?}"),
        }
    }
    assert!(!std::path::Path::new("/tmp/vigil-copy-test.csv").exists());
    // Still there, still one row.
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        1
    );
    // Reading the catalogue is fine.
    let tables = rows(&store, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name").await;
    let names: Vec<&str> = tables
        .iter()
        .filter_map(|r| r["table_name"].as_str())
        .collect();
    for t in vigil_storage::TABLES.iter().chain(&["alarms"]) {
        assert!(names.contains(t), "{t} missing from {names:?}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn max_rows_truncates_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws((1..=25).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let opts = |max_rows| QueryOptions {
        max_rows,
        ..QueryOptions::default()
    };
    let sql = "SELECT seq FROM elevator_readings ORDER BY seq";
    let out = store.query(sql, &opts(10)).await.unwrap();
    assert!(out.truncated);
    assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    assert_eq!(json_rows(&out.batches).last().unwrap()["seq"], 10);
    let out = store.query(sql, &opts(25)).await.unwrap();
    assert!(!out.truncated, "exactly max_rows rows is not truncated");
    assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 25);
    // The schema is there even without rows.
    let out = store
        .query(
            "SELECT seq, ts FROM elevator_readings WHERE seq > 1000",
            &opts(10),
        )
        .await
        .unwrap();
    assert!(!out.truncated);
    assert_eq!(out.schema.fields().len(), 2);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_is_cancelled_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws((1..=2000).map(|s| elevator("EL1", s))))
        .await
        .unwrap();
    store.flush().await.unwrap();
    // 8·10⁹ combinations: far longer than the timeout.
    let sql = "SELECT count(*) FROM elevator_readings a, elevator_readings b, elevator_readings c WHERE a.seq + b.seq + c.seq = 0";
    let opts = QueryOptions {
        timeout: Duration::from_millis(300),
        max_rows: 10,
        ..QueryOptions::default()
    };
    match store.query(sql, &opts).await {
        Err(StoreError::QueryTimeout(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("expected QueryTimeout, got {other:?}"),
    }
    // The store answers the next query as usual.
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        2000
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_alarms_view_shows_the_latest_version_of_each_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    let changes = [
        alarm("a1", 1, AlarmState::Active, T0),
        alarm("a2", 1, AlarmState::Active, T0 + 10),
        alarm("a1", 2, AlarmState::Acknowledged, T0),
        alarm("a1", 3, AlarmState::Cleared, T0),
    ];
    store
        .write(ws(changes[..2].iter().cloned().map(Record::Alarm)))
        .await
        .unwrap();
    // Half of the history in Parquet, half in memory.
    store.flush_parquet().await.unwrap();
    store
        .write(ws(changes[2..].iter().cloned().map(Record::Alarm)))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM alarm_changes").await, 4);
    let r = rows(
        &store,
        "SELECT alarm_id, version, state, cleared_at FROM alarms ORDER BY alarm_id",
    )
    .await;
    assert_eq!(r.len(), 2);
    assert_eq!(
        (
            r[0]["alarm_id"].as_str(),
            r[0]["version"].as_u64(),
            r[0]["state"].as_str()
        ),
        (Some("a1"), Some(3), Some("cleared"))
    );
    assert!(r[0]["cleared_at"].is_string());
    assert_eq!(
        (
            r[1]["alarm_id"].as_str(),
            r[1]["version"].as_u64(),
            r[1]["state"].as_str()
        ),
        (Some("a2"), Some(1), Some("active"))
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM alarms WHERE state <> 'cleared'"
        )
        .await,
        1
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_region_grant_sees_only_rows_inside_it() {
    use vigil_model::Region;

    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws([
            in_region("JM1", "440703", 1),
            in_region("JM2", "440704", 1),
            in_region("GZ1", "440106", 1),
            dead_letter(b"{"),
        ]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let scoped = |regions: &[&str]| QueryOptions {
        regions: Some(regions.iter().map(|r| Region::new(r).unwrap()).collect()),
        ..QueryOptions::default()
    };
    let devices = |out: vigil_storage::QueryOutput| {
        json_rows(&out.batches)
            .iter()
            .map(|r| r["device_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let sql = "SELECT device_id FROM elevator_readings ORDER BY device_id";
    // A city grant covers its counties; a county grant only itself.
    let out = store.query(sql, &scoped(&["440700"])).await.unwrap();
    assert_eq!(devices(out), ["JM1", "JM2"]);
    let out = store
        .query(sql, &scoped(&["440703", "440106"]))
        .await
        .unwrap();
    assert_eq!(devices(out), ["GZ1", "JM1"]);
    // The filter cannot be escaped with OR in the user's own WHERE.
    let out = store
        .query(
            "SELECT device_id FROM elevator_readings WHERE region = '440106' OR true",
            &scoped(&["440703"]),
        )
        .await
        .unwrap();
    assert_eq!(devices(out), ["JM1"]);
    // Dead letters carry no region: not visible to a grant, visible to admin.
    match store
        .query("SELECT count(*) FROM dead_letters", &scoped(&["440700"]))
        .await
    {
        Err(StoreError::InvalidQuery(msg)) => assert!(msg.contains("dead_letters"), "{msg}"),
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    assert_eq!(count(&store, "SELECT count(*) FROM dead_letters").await, 1);
    assert_eq!(
        count(&store, "SELECT count(*) FROM elevator_readings").await,
        3
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn views_see_new_rows_and_a_broken_one_is_refused_keeping_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .set_view(
            "per_device",
            "SELECT device_id, count(*) AS n FROM elevator_readings GROUP BY device_id",
        )
        .await
        .unwrap();
    store
        .write(ws([elevator("EL1", 1), elevator("EL1", 2)]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        count(&store, "SELECT n FROM per_device WHERE device_id = 'EL1'").await,
        2
    );
    match store
        .set_view("per_device", "SELECT nonsense FROM nowhere")
        .await
    {
        Err(StoreError::InvalidQuery(msg)) => assert!(msg.contains("per_device"), "{msg}"),
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    assert_eq!(
        count(&store, "SELECT n FROM per_device WHERE device_id = 'EL1'").await,
        2,
        "the old definition stays"
    );
}

/// A reading of `device` in `region`.
fn in_region(device: &str, region: &str, seq: u64) -> Record {
    let Record::Reading(mut r) = elevator(device, seq) else {
        unreachable!()
    };
    r.binding.region = vigil_model::Region::new(region).unwrap();
    Record::Reading(r)
}

/// A person's query within `regions`.
fn person(regions: &[&str]) -> QueryOptions {
    QueryOptions {
        regions: Some(
            regions
                .iter()
                .map(|r| vigil_model::Region::new(r).unwrap())
                .collect(),
        ),
        guarded: true,
        ..QueryOptions::default()
    }
}

#[tokio::test]
async fn a_grant_filters_rows_before_any_expression_of_the_query_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws([
            in_region("JM1", "440703", 1),
            in_region("GZSECRET", "440106", 1),
        ]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    // Once from memory, once from Parquet files.
    for stage in ["memory", "parquet"] {
        if stage == "parquet" {
            store.flush_parquet().await.unwrap();
        }
        let jiangmen = person(&["440700"]);
        // Would fail on the Guangzhou row, if it ever reached the cast.
        let side_door = "SELECT device_id FROM elevator_readings WHERE CASE WHEN region <> '440703' \
                         THEN CAST(concat_ws('|', device_id, region) AS INT) ELSE 0 END = 1";
        let out = store.query(side_door, &jiangmen).await.unwrap();
        assert_eq!(json_rows(&out.batches).len(), 0, "{stage}");
        // Dividing by zero on one region's rows: the same answer for a
        // region with rows and one without, both outside the grant.
        let oracle = |region: &str| {
            format!(
                "SELECT count(*) AS n FROM elevator_readings WHERE 1 / (CASE WHEN region = '{region}' THEN 0 ELSE 1 END) = 1"
            )
        };
        for region in ["440106", "440104"] {
            let out = store.query(&oracle(region), &jiangmen).await.unwrap();
            assert_eq!(json_rows(&out.batches)[0]["n"], 1, "{stage} {region}");
        }
        // Errors of the grant's own rows name no value.
        match store.query(&oracle("440703"), &jiangmen).await {
            Err(StoreError::Query(m)) => {
                assert!(m.contains("zero"), "{m}");
                assert!(!m.contains("JM1") && !m.contains("440703"), "{m}");
            }
            other => panic!("{stage}: expected a division by zero, got {other:?}"),
        }
        match store
            .query(
                "SELECT CAST(device_id AS INT) FROM elevator_readings",
                &jiangmen,
            )
            .await
        {
            Err(StoreError::Query(m)) => assert!(m.contains("Cast") && !m.contains("JM1"), "{m}"),
            other => panic!("{stage}: expected a cast error, got {other:?}"),
        }
        // The plan shows the barrier, and no file.
        let out = store
            .query(
                "EXPLAIN SELECT * FROM elevator_readings WHERE seq > 0",
                &jiangmen,
            )
            .await
            .unwrap();
        let plan = format!("{:?}", json_rows(&out.batches));
        assert!(plan.contains("regions=[440700] (filtered first)"), "{plan}");
        assert!(!plan.contains(".parquet"), "{plan}");
        assert!(!plan.contains(&*dir.path().to_string_lossy()), "{plan}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn people_queries_are_held_to_the_sql_limits() {
    use vigil_storage::SqlLimits;

    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        memory_bytes: 64 << 20,
        max_concurrent: 1,
        ..SqlLimits::default()
    };
    let (store, _tokens, everyone) = open_with_sql(dir.path(), limits).await;
    let sum = format!("SELECT {}", vec!["1"; 1000].join(" + "));
    let unions = vec!["SELECT 1"; 600].join(" UNION ALL ");
    for sql in [sum.as_str(), &unions] {
        match store.query(sql, &everyone).await {
            Err(StoreError::QueryTooComplex(m)) => assert!(m.contains("at most"), "{m}"),
            other => panic!("expected QueryTooComplex, got {other:?}"),
        }
    }
    for sql in [
        "SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(20000000)",
        "SELECT repeat('x', 100000) FROM range(3000)",
        "SELECT repeat('x', 100000000)",
    ] {
        match store.query(sql, &everyone).await {
            Err(StoreError::QueryMemory(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: expected QueryMemory, got {other:?}"),
        }
    }
    // The byte cap cuts what the row cap lets through.
    let small = QueryOptions {
        max_bytes: 1 << 20,
        ..everyone.clone()
    };
    let out = store
        .query("SELECT repeat('x', 1000) AS v FROM range(10000)", &small)
        .await
        .unwrap();
    assert!(out.truncated);
    let rows: usize = out.batches.iter().map(|b| b.num_rows()).sum();
    assert!((900..1100).contains(&rows), "{rows} rows of 1 kB in 1 MiB");
    // One slot: a second query waits for it within its timeout, then gives up.
    let endless = {
        let store = std::sync::Arc::clone(&store);
        let opts = QueryOptions {
            timeout: Duration::from_secs(3),
            ..everyone.clone()
        };
        tokio::spawn(async move {
            store
                .query(
                    "SELECT count(*) FROM range(10000) a, range(10000) b, range(10000) c",
                    &opts,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hurried = QueryOptions {
        timeout: Duration::from_millis(300),
        ..everyone.clone()
    };
    match store.query("SELECT 1", &hurried).await {
        Err(StoreError::QueryBusy(1)) => {}
        other => panic!("expected QueryBusy, got {other:?}"),
    }
    assert!(matches!(
        endless.await.unwrap(),
        Err(StoreError::QueryTimeout(_))
    ));
    // The slot is free again; the engine's own queries never needed one.
    assert_eq!(rows_of(&store, "SELECT 1 AS n", &everyone).await, 1);
    store.close().await.unwrap();
}

/// Nothing spills (no disk), so one sort may take most of the pool: a
/// fair pool capped each of a query's spilling operators at the pool over
/// their count, and refused this window (about a quarter of the pool in one
/// sort, beside the other spilling operators) while most of the pool stood idle.
#[tokio::test]
async fn one_sort_of_a_people_query_may_use_most_of_the_pool() {
    use vigil_storage::SqlLimits;

    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        memory_bytes: 64 << 20,
        ..SqlLimits::default()
    };
    let (store, _tokens, everyone) = open_with_sql(dir.path(), limits).await;
    let sql = "SELECT k, count(*) AS n, max(next) AS top FROM ( \
                 SELECT value % 5 AS k, lead(value) OVER (PARTITION BY value % 3 ORDER BY value DESC) AS next \
                 FROM range(1000000)) \
               GROUP BY k ORDER BY k";
    let out = store.query(sql, &everyone).await.unwrap();
    let rows = json_rows(&out.batches);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let total: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(total, 1_000_000);
    // Still a pool: a sort of far more than it holds is refused.
    match store
        .query(
            "SELECT max(v) FROM (SELECT lead(value) OVER (ORDER BY value % 9973, value) AS v \
             FROM range(20000000))",
            &everyone,
        )
        .await
    {
        Err(StoreError::QueryMemory(m)) => assert!(!m.is_empty()),
        other => panic!(
            "expected QueryMemory, got {:?}",
            other.map(|o| o.batches.len())
        ),
    }
    store.close().await.unwrap();
}

async fn rows_of(
    store: &vigil_storage::embedded::EmbeddedStore,
    sql: &str,
    opts: &QueryOptions,
) -> usize {
    let out = store.query(sql, opts).await.unwrap();
    out.batches.iter().map(|b| b.num_rows()).sum()
}

/// Three Parquet files of 100 s each (seq = seconds after T0), each with a
/// device in Jiangmen and one in Guangzhou.
async fn three_files_in_two_cities(store: &vigil_storage::embedded::EmbeddedStore) {
    for part in 0..3u64 {
        let seqs = part * 100 + 1..=part * 100 + 100;
        store
            .write(ws(seqs.flat_map(|s| {
                [in_region("JM1", "440703", s), in_region("GZ1", "440106", s)]
            })))
            .await
            .unwrap();
        store.flush_parquet().await.unwrap();
    }
}

/// `s` seconds after T0 as an SQL timestamp literal's text.
fn t(s: i64) -> String {
    chrono::DateTime::from_timestamp_millis(T0 + s * 1000)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

#[tokio::test]
async fn conditions_that_skip_parquet_row_groups_keep_every_row_they_match() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    three_files_in_two_cities(&store).await;
    // The middle file's span and a bit of its neighbours: seconds 95..=205.
    let window = format!(
        "ts >= TIMESTAMP '{}' AND ts <= TIMESTAMP '{}'",
        t(95),
        t(205)
    );
    let admin = QueryOptions::default();
    let jiangmen = person(&["440700"]);
    let n = |sql: String, opts: QueryOptions| {
        let store = std::sync::Arc::clone(&store);
        async move { rows_of(&store, &sql, &opts).await }
    };
    let all = format!("SELECT seq FROM elevator_readings WHERE {window}");
    assert_eq!(n(all.clone(), admin.clone()).await, 2 * 111);
    assert_eq!(n(all, jiangmen.clone()).await, 111);
    let one = format!("SELECT * FROM elevator_readings WHERE device_id = 'GZ1' AND {window}");
    assert_eq!(n(one.clone(), admin.clone()).await, 111);
    // Outside the grant: nothing, whether or not a file held such rows.
    assert_eq!(n(one, jiangmen.clone()).await, 0);
    let gone = "SELECT * FROM elevator_readings WHERE device_id = 'NOBODY'".to_owned();
    assert_eq!(n(gone, admin.clone()).await, 0);
    // A condition on the time column that pruning cannot read still holds.
    let odd = "SELECT seq FROM elevator_readings WHERE CAST(ts AS BIGINT) % 2000 = 0".to_owned();
    assert_eq!(n(odd.clone(), admin).await, 2 * 150);
    assert_eq!(n(odd, jiangmen).await, 150);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_outside_the_time_range_of_a_query_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (store, tokens) = open(dir.path()).await;
    three_files_in_two_cities(&store).await;
    // The first file (seconds 1..=100) becomes unreadable, under its name.
    let table = dir.path().join("tables").join("elevator_readings");
    let mut names: Vec<_> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| n.split('_').next().unwrap().parse::<i64>().unwrap());
    let first = format!("{}_{}-", T0 + 1000, T0 + 100_000);
    assert!(names[0].starts_with(&first), "{names:?}");
    std::fs::write(table.join(&names[0]), b"not Parquet at all").unwrap();

    let admin = QueryOptions::default();
    let jiangmen = person(&["440700"]);
    let later = format!(
        "SELECT seq FROM elevator_readings WHERE ts >= TIMESTAMP '{}' AND ts < TIMESTAMP '{}'",
        t(150),
        t(250)
    );
    let one = format!(
        "SELECT seq FROM elevator_readings WHERE device_id = 'GZ1' AND ts > TIMESTAMP '{}'",
        t(100)
    );
    for (sql, opts, rows) in [
        (&later, &admin, 2 * 100),
        (&later, &jiangmen, 100),
        (&one, &admin, 200),
        (&one, &jiangmen, 0),
    ] {
        assert_eq!(rows_of(&store, sql, opts).await, rows, "{sql}");
    }
    // A query that needs the file opens it, and says it cannot.
    let early = format!(
        "SELECT seq FROM elevator_readings WHERE ts <= TIMESTAMP '{}'",
        t(100)
    );
    for opts in [&admin, &jiangmen] {
        assert!(
            matches!(store.query(&early, opts).await, Err(StoreError::Query(_))),
            "{early}"
        );
    }
    store.close().await.unwrap();
    drop(tokens);

    // Named without its range (as files were before): opened by every query.
    let old = names[0].replacen(&first, &format!("{}-", T0 + 1000), 1);
    std::fs::rename(table.join(&names[0]), table.join(old)).unwrap();
    let (store, _tokens) = open(dir.path()).await;
    assert!(matches!(
        store.query(&later, &admin).await,
        Err(StoreError::Query(_))
    ));
    store.close().await.unwrap();
}

/// The nice value in a `/proc/…/stat` line (Linux).
fn nice_of(stat: &str) -> i32 {
    // Fields after "pid (comm) ": state is the first, nice the 17th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(16).unwrap().parse().unwrap()
}

/// The nice values of this process's `vigil-sql` threads.
fn sql_thread_nices() -> Vec<i32> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue; // a thread that ended meanwhile
        };
        if comm.trim() == "vigil-sql" {
            nices.push(nice_of(&stat));
        }
    }
    nices
}

/// What `ps -eLo comm,ni` shows an operator: the SQL threads run below the
/// rest of the engine, so a query that keeps them busy yields the cores to
/// ingest, the rules and the alarm feeds.
#[tokio::test]
async fn the_sql_threads_run_below_the_engines_priority() {
    use vigil_storage::SqlLimits;

    let dir = tempfile::tempdir().unwrap();
    // 7 steps, a value no other test's store uses (they run in this
    // process at the same time, with the default).
    let limits = SqlLimits {
        threads: 3,
        nice: 7,
        ..SqlLimits::default()
    };
    let (store, _tokens, everyone) = open_with_sql(dir.path(), limits).await;
    let out = store
        .query("SELECT count(*) AS n FROM range(100000)", &everyone)
        .await
        .unwrap();
    assert_eq!(json_rows(&out.batches)[0]["n"], 100_000);

    let base = nice_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
    // Each worker lowers itself when it first runs, and on a busy machine
    // the last one may not have run yet when the query is answered: wait
    // for it rather than read the threads once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sql_threads = loop {
        let threads = sql_thread_nices();
        let lowered = threads.iter().filter(|n| **n == base + 7).count();
        if lowered >= 3 || std::time::Instant::now() > deadline {
            break threads;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lowered = sql_threads.iter().filter(|n| **n == base + 7).count();
    assert!(
        lowered >= 3,
        "3 SQL workers at nice {} expected, the SQL threads have {sql_threads:?}",
        base + 7
    );
    store.close().await.unwrap();
}
