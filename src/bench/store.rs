//! `vigil bench store`: what the stores' writers manage against what the
//! disk or the database manages by itself, in the same run.
//!
//! - **WAL group commit** (embedded store): for each group size, records
//!   through `Store::write` until the last durable token arrives (WAL
//!   append + `sync_data`, memory apply, token delivery); the baseline
//!   writes the very frames that run produced (read back from the WAL) with
//!   plain `write_all` + `sync_data` each.
//! - **PostgreSQL COPY**: rows through `Store::write` until the last ack
//!   token (local log with fsync, binary COPY, log position, commit); the
//!   ceiling is `psql \copy` of the very rows the store stored, in CSV and
//!   in binary, into a freshly migrated table of the same shape. PostgreSQL
//!   is `--postgres URL`, `VIGIL_TEST_DATABASE_URL`, or a throw-away cluster
//!   (initdb + pg_ctl, as the tests start one).

#[path = "../../storage/tests/postgres/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_model::reading::ElevatorSample;
use vigil_model::{Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::postgres::{PostgresConfig, PostgresStore, migrate_only};
use vigil_storage::{AckToken, Record, Store, StoredReading, Write};

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A smoke run: small sizes, one round.
    #[arg(long)]
    pub quick: bool,
    /// The disk to measure the WAL on [default: the temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL to measure COPY on [default: VIGIL_TEST_DATABASE_URL, else a throw-away cluster].
    #[arg(long)]
    pub postgres: Option<String>,
    /// Only the WAL (no PostgreSQL).
    #[arg(long)]
    pub no_postgres: bool,
    /// Rows per COPY round.
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    /// COPY rounds (the median ratio is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The PostgreSQL store's `batch_rows` [default: its default].
    #[arg(long)]
    pub batch_rows: Option<usize>,
}

pub(super) async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&base)?;
    let sizes: &[(usize, usize)] = if args.quick {
        &[(1, 200), (64, 6_400), (4096, 40_960)]
    } else {
        &[(1, 2_000), (64, 100_000), (4096, 400_000)]
    };
    println!(
        "WAL group commit vs raw write+sync_data of the same frames ({})",
        base.display()
    );
    println!(
        "{:>6} {:>8} {:>7} {:>9} {:>13} {:>13} {:>7}",
        "group", "records", "frames", "B/frame", "store rec/s", "raw rec/s", "ratio"
    );
    let mut wal = Vec::new();
    for &(group, n) in sizes {
        let dir = tempfile::Builder::new()
            .prefix("vigil-bench-wal-")
            .tempdir_in(&base)?;
        let store = wal_store_run(dir.path(), group, n).await?;
        let raw_dir = tempfile::Builder::new()
            .prefix("vigil-bench-raw-")
            .tempdir_in(&base)?;
        let raw = raw_run(raw_dir.path(), &store.frames)?;
        let bytes: usize = store.frames.iter().map(Vec::len).sum();
        let frames = store.frames.len().max(1);
        let store_rate = n as f64 / store.elapsed.as_secs_f64();
        let raw_rate = n as f64 / raw.as_secs_f64();
        println!(
            "{group:>6} {n:>8} {frames:>7} {:>9} {store_rate:>13.0} {raw_rate:>13.0} {:>7.2}",
            bytes / frames,
            store_rate / raw_rate
        );
        wal.push(json!({
            "group": group, "records": n, "frames": frames, "bytes_per_frame": bytes / frames,
            "store_records_per_s": store_rate, "raw_records_per_s": raw_rate,
            "ratio": store_rate / raw_rate,
        }));
    }

    let copy = if args.no_postgres {
        println!("PostgreSQL COPY: skipped (--no-postgres)");
        Value::Null
    } else {
        copy_bench(&args).await?
    };
    if let Some(path) = &args.json {
        let report = json!({
            "bench": "store",
            "date": chrono::Utc::now().to_rfc3339(),
            "machine": crate::bench::machine(),
            "quick": args.quick,
            "wal_dir": base,
            "wal": wal,
            "copy": copy,
        });
        fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("Figures written to {}", path.display());
    }
    Ok(())
}

/// A moving elevator sample of `device` at `seq`, acked.
fn write(device: &DeviceId, binding: &Binding, seq: u64, ts: i64) -> Write {
    let reading = Reading {
        device_id: device.clone(),
        seq,
        ts,
        received_at: ts + 40,
        payload: Payload::Elevator(ElevatorSample {
            floor: (seq % 30) as i16,
            speed_mps: 1.75,
            run_count: Some(100_000 + seq),
            load_pct: Some(40.0),
            ..ElevatorSample::moving()
        }),
        extra: None,
    };
    Write {
        record: Record::Reading(StoredReading {
            reading,
            binding: binding.clone(),
        }),
        ack: Some(AckToken {
            device_id: device.clone(),
            seq,
        }),
    }
}

struct WalRun {
    elapsed: Duration,
    frames: Vec<Vec<u8>>,
}

async fn wal_store_run(dir: &Path, group: usize, n: usize) -> anyhow::Result<WalRun> {
    let config = EmbeddedConfig {
        queue_capacity: (4 * group).max(16_384),
        group_commit_max: group,
        // The frame size is the variable here; the interval would only pace
        // frames capped that small (the engine's own frames grow instead).
        commit_interval: Duration::ZERO,
        flush_rows: usize::MAX,
        flush_interval: Duration::from_secs(3600),
        ..EmbeddedConfig::new(dir)
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let store = EmbeddedStore::open(config, tx).await?;
    let device = DeviceId::new("BENCH1")?;
    let binding = Binding {
        equipment_id: EquipmentId::new("EQ1")?,
        category: "elevator".into(),
        owner_id: OwnerId::new("O1")?,
        region: Region::new("440703")?,
    };
    // Built before the clock starts: we measure the store, not the fixtures.
    let mut batches: Vec<Vec<Write>> = Vec::new();
    let mut seq = 0u64;
    while (seq as usize) < n {
        let size = group.min(n - seq as usize);
        batches.push(
            (0..size)
                .map(|i| {
                    let s = seq + i as u64 + 1;
                    write(&device, &binding, s, 1_732_300_000_000 + s as i64)
                })
                .collect(),
        );
        seq += size as u64;
    }
    let start = Instant::now();
    let producer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            for b in batches {
                store.write(b).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut acked = 0usize;
    while acked < n {
        acked += rx
            .recv()
            .await
            .context("the store stopped sending tokens")?
            .len();
    }
    let elapsed = start.elapsed();
    producer.await??;
    let frames = read_frames(&dir.join("wal"))?;
    drop(store);
    Ok(WalRun { elapsed, frames })
}

/// The frames of every WAL segment, header included (`[u32 len][u32 crc]`),
/// up to the segment's zeros.
fn read_frames(wal: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut segments: Vec<PathBuf> = fs::read_dir(wal)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segments.sort();
    let mut frames = Vec::new();
    for seg in segments {
        let data = fs::read(&seg)?;
        let mut at = 0;
        while at + 8 <= data.len() {
            let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            if len == 0 {
                break; // the zeros a segment is written with ahead of its frames
            }
            let end = (at + 8 + len as usize).min(data.len());
            frames.push(data[at..end].to_vec());
            at = end;
        }
    }
    Ok(frames)
}

fn raw_run(dir: &Path, frames: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline.log"))?;
    let start = Instant::now();
    for f in frames {
        file.write_all(f)?;
        file.sync_data()?;
    }
    Ok(start.elapsed())
}

const DEVICES: u64 = 500;
/// Writes per `Store::write` call, as ingest hands them over.
const CALL: usize = 256;

fn fleet() -> anyhow::Result<Vec<(DeviceId, Binding)>> {
    (0..DEVICES)
        .map(|d| {
            Ok((
                DeviceId::new(format!("EL{d:04}"))?,
                Binding {
                    equipment_id: EquipmentId::new(format!("EQ-EL{d:04}"))?,
                    category: "elevator".into(),
                    owner_id: OwnerId::new("OWN1")?,
                    region: Region::new(format!("4407{:02}", d % 20))?,
                },
            ))
        })
        .collect()
}

fn pg_config(url: &str, schema: &str, wal: &Path, batch_rows: usize) -> PostgresConfig {
    let mut config = PostgresConfig::new(url, wal);
    config.schema = schema.into();
    config.role_prefix = "bench".into();
    config.batch_rows = batch_rows;
    config
}

/// The store from the first write to the last ack.
async fn copy_store_run(
    url: &str,
    schema: &str,
    rows: usize,
    batch_rows: usize,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let config = pg_config(url, schema, &dir.path().join("pg-wal"), batch_rows);
    let (tx, mut rx) = mpsc::channel(4096);
    let store = PostgresStore::open(config, tx).await?;
    let devices = fleet()?;
    // Built beforehand: the producer is ingest, not what is measured.
    let mut calls: Vec<Vec<Write>> = Vec::with_capacity(rows / CALL + 1);
    let mut i = 0u64;
    while (i as usize) < rows {
        let n = CALL.min(rows - i as usize);
        calls.push(
            (i..i + n as u64)
                .map(|i| {
                    let (device, binding) = &devices[(i % DEVICES) as usize];
                    write(
                        device,
                        binding,
                        i / DEVICES + 1,
                        1_732_300_000_000 + i as i64 * 10,
                    )
                })
                .collect(),
        );
        i += n as u64;
    }
    let started = Instant::now();
    let producer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            for call in calls {
                store.write(call).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut acked = 0;
    while acked < rows {
        acked += rx
            .recv()
            .await
            .context("the store stopped sending tokens")?
            .len();
    }
    let took = started.elapsed();
    producer.await??;
    store.close().await?;
    Ok(took)
}

fn psql(url: &str, command: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
        .output()
        .context("psql (apt-get install -y postgresql-client)")?;
    let took = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "psql -c {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

async fn copy_bench(args: &StoreArgs) -> anyhow::Result<Value> {
    let rows = if args.quick { 20_000 } else { args.rows.max(1) };
    let rounds = if args.quick { 1 } else { args.rounds.max(1) };
    let batch_rows = args
        .batch_rows
        .unwrap_or(PostgresConfig::default().batch_rows);
    let url = match &args.postgres {
        Some(url) => url.clone(),
        // Starting a cluster blocks (initdb, pg_ctl): off the runtime's threads.
        None => tokio::task::spawn_blocking(|| cluster::cluster().url.clone()).await?,
    };
    let version = Command::new("psql")
        .args([url.as_str(), "-X", "-A", "-t", "-c", "SHOW server_version"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let csv = tempfile::NamedTempFile::new()?;
    let bin = tempfile::NamedTempFile::new()?;
    println!(
        "PostgreSQL {} COPY writer: {rows} elevator_readings rows, batch_rows {batch_rows}, {rounds} round(s)",
        version.as_deref().unwrap_or("?")
    );
    let tag = std::process::id();
    let mut out = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let store_schema = format!("bench{tag}_store_{round}");
        let copy_schema = format!("bench{tag}_copy_{round}");
        let store_rate = rows as f64
            / copy_store_run(&url, &store_schema, rows, batch_rows)
                .await?
                .as_secs_f64();
        // The same rows, the same freshly migrated table, loaded by psql:
        // CSV (the plain ceiling) and binary (what the store sends).
        let mut rates = Vec::new();
        for (format, file) in [("csv", csv.path()), ("binary", bin.path())] {
            let schema = format!("{copy_schema}_{format}");
            let file = file.display();
            psql(
                &url,
                &format!("\\copy {store_schema}.elevator_readings TO '{file}' (FORMAT {format})"),
            )?;
            let dir = tempfile::tempdir()?;
            migrate_only(&pg_config(&url, &schema, dir.path(), batch_rows)).await?;
            let took = psql(
                &url,
                &format!("\\copy {schema}.elevator_readings FROM '{file}' (FORMAT {format})"),
            )?;
            rates.push(rows as f64 / took.as_secs_f64());
        }
        let ratio = store_rate / rates[0];
        ratios.push(ratio);
        println!(
            "round {round}: store {store_rate:>7.0} rows/s   psql \\copy csv {:>7.0} rows/s ({:.0}%)   binary {:>7.0} rows/s ({:.0}%)",
            rates[0],
            ratio * 100.0,
            rates[1],
            store_rate / rates[1] * 100.0
        );
        out.push(json!({
            "round": round, "store_rows_per_s": store_rate, "psql_csv_rows_per_s": rates[0],
            "psql_binary_rows_per_s": rates[1], "ratio_csv": ratio, "ratio_binary": store_rate / rates[1],
        }));
        psql(
            &url,
            &format!(
                "DROP SCHEMA {store_schema} CASCADE; DROP SCHEMA {store_schema}_scoped CASCADE; \
                 DROP SCHEMA {copy_schema}_csv CASCADE; DROP SCHEMA {copy_schema}_csv_scoped CASCADE; \
                 DROP SCHEMA {copy_schema}_binary CASCADE; DROP SCHEMA {copy_schema}_binary_scoped CASCADE"
            ),
        )?;
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "median ratio: {:.0}% of the psql \\copy CSV ceiling",
        median * 100.0
    );
    Ok(json!({
        "server_version": version, "rows": rows, "batch_rows": batch_rows,
        "rounds": out, "median_ratio_csv": median,
    }))
}
