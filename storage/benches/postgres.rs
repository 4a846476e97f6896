//! Rows/s of the PostgreSQL writer against a plain `psql \copy` of the same
//! rows into the same table shape on the same server, in the same run.
//!
//! The store run goes through `Store::write` (local log with fsync, binary
//! COPY into a staging table, `INSERT … ON CONFLICT DO NOTHING`, log
//! position, commit) and the clock stops when the last ack token arrives. The
//! ceiling is the very rows the store stored, exported to CSV and loaded with
//! `psql \copy` into a freshly migrated schema (same indexes); the same in
//! binary format is printed beside it, as that is what the store sends.
//! Rounds alternate so all see the same server state; the median ratio to
//! the CSV ceiling is printed last.
//!
//! `cargo bench -p vigil-storage --bench postgres` (a throw-away cluster as
//! in the tests, or `VIGIL_TEST_DATABASE_URL`; `VIGIL_BENCH_ROWS`,
//! `VIGIL_BENCH_ROUNDS` and `VIGIL_BENCH_BATCH_ROWS` change the defaults).

#[path = "../tests/postgres/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_model::reading::{Direction, ElevatorSample};
use vigil_model::{Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region};
use vigil_storage::postgres::{PostgresConfig, PostgresStore, migrate_only};
use vigil_storage::{AckToken, Record, Store, StoredReading, Write};

const DEVICES: u64 = 500;
/// Writes per `Store::write` call, as ingest hands them over.
const CALL: usize = 256;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Row `i`: devices take turns, each with its own rising seq and time.
fn write(i: u64, devices: &[(DeviceId, Binding)]) -> Write {
    let (device, binding) = &devices[(i % DEVICES) as usize];
    let seq = i / DEVICES + 1;
    let ts = 1_732_300_000_000 + i as i64 * 10;
    Write {
        record: Record::Reading(StoredReading {
            reading: Reading {
                device_id: device.clone(),
                seq,
                ts,
                received_at: ts + 40,
                payload: Payload::Elevator(ElevatorSample {
                    floor: (seq % 30) as i16,
                    direction: Direction::Up,
                    speed_mps: 1.75,
                    leveled: false,
                    occupied: true,
                    run_count: Some(100_000 + seq),
                    load_pct: Some(40.0),
                    ..ElevatorSample::idle()
                }),
                extra: None,
            },
            binding: binding.clone(),
        }),
        ack: Some(AckToken {
            device_id: device.clone(),
            seq,
        }),
    }
}

fn fleet() -> Vec<(DeviceId, Binding)> {
    (0..DEVICES)
        .map(|d| {
            let device = DeviceId::new(format!("EL{d:04}")).unwrap();
            let binding = Binding {
                equipment_id: EquipmentId::new(format!("EQ-EL{d:04}")).unwrap(),
                category: "elevator".into(),
                owner_id: OwnerId::new("OWN1").unwrap(),
                region: Region::new(format!("4407{:02}", d % 20)).unwrap(),
            };
            (device, binding)
        })
        .collect()
}

fn config(url: &str, schema: &str, wal: &std::path::Path, batch_rows: usize) -> PostgresConfig {
    let mut config = PostgresConfig::new(url, wal);
    config.schema = schema.into();
    config.role_prefix = "bench".into();
    config.batch_rows = batch_rows;
    config
}

/// The store from the first write to the last ack.
async fn store_run(url: &str, schema: &str, rows: usize, batch_rows: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let config = config(url, schema, &dir.path().join("pg-wal"), batch_rows);
    let (tx, mut rx) = mpsc::channel(4096);
    let store = PostgresStore::open(config, tx).await.expect("store opens");
    let devices = fleet();
    // Built beforehand: the producer is ingest, not what is measured.
    let mut calls: Vec<Vec<Write>> = Vec::with_capacity(rows / CALL + 1);
    let mut i = 0u64;
    while (i as usize) < rows {
        let n = CALL.min(rows - i as usize);
        calls.push((i..i + n as u64).map(|i| write(i, &devices)).collect());
        i += n as u64;
    }
    let started = Instant::now();
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            for call in calls {
                store.write(call).await.expect("write");
            }
        })
    };
    let mut acked = 0;
    while acked < rows {
        acked += rx.recv().await.expect("tokens").len();
    }
    let took = started.elapsed();
    producer.await.unwrap();
    store.close().await.unwrap();
    took
}

fn psql(url: &str, command: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
        .output()
        .expect("psql runs (apt-get install -y postgresql-client)");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "psql -c {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn rate(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

fn main() {
    let rows = env_or("VIGIL_BENCH_ROWS", 200_000);
    let rounds = env_or("VIGIL_BENCH_ROUNDS", 3).max(1);
    let batch_rows = env_or(
        "VIGIL_BENCH_BATCH_ROWS",
        PostgresConfig::default().batch_rows,
    );
    let url = cluster::cluster().url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let csv = tempfile::NamedTempFile::new().unwrap();
    let csv_path = csv.path().display().to_string();
    let bin = tempfile::NamedTempFile::new().unwrap();
    let bin_path = bin.path().display().to_string();
    println!(
        "PostgreSQL COPY writer: {rows} elevator_readings rows, batch_rows {batch_rows}, {rounds} round(s)"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let store_schema = format!("bench_store_{round}");
        let copy_schema = format!("bench_copy_{round}");
        let took = rt.block_on(store_run(&url, &store_schema, rows, batch_rows));
        let store_rate = rate(rows, took);

        // The same rows, the same freshly migrated table, loaded by psql:
        // CSV (the plain ceiling) and binary (what the store sends).
        let mut copy_rates = Vec::new();
        for (format, file) in [("csv", &csv_path), ("binary", &bin_path)] {
            let schema = format!("{copy_schema}_{format}");
            psql(
                &url,
                &format!("\\copy {store_schema}.elevator_readings TO '{file}' (FORMAT {format})"),
            );
            let dir = tempfile::tempdir().unwrap();
            rt.block_on(migrate_only(&config(&url, &schema, dir.path(), batch_rows)))
                .expect("migrates");
            let took = psql(
                &url,
                &format!("\\copy {schema}.elevator_readings FROM '{file}' (FORMAT {format})"),
            );
            copy_rates.push(rate(rows, took));
        }
        let ratio = store_rate / copy_rates[0];
        ratios.push(ratio);
        println!(
            "round {round}: store {store_rate:>7.0} rows/s   psql \\copy csv {:>7.0} rows/s ({:.0}%)   binary {:>7.0} rows/s ({:.0}%)",
            copy_rates[0],
            ratio * 100.0,
            copy_rates[1],
            store_rate / copy_rates[1] * 100.0
        );
        psql(
            &url,
            &format!(
                "DROP SCHEMA {store_schema} CASCADE; DROP SCHEMA {store_schema}_scoped CASCADE; \
                 DROP SCHEMA {copy_schema}_csv CASCADE; DROP SCHEMA {copy_schema}_csv_scoped CASCADE; \
                 DROP SCHEMA {copy_schema}_binary CASCADE; DROP SCHEMA {copy_schema}_binary_scoped CASCADE"
            ),
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio: {:.0}% of the psql \\copy ceiling",
        ratios[ratios.len() / 2] * 100.0
    );
}
