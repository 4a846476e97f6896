//! What the region barrier costs a person's query, against the plan the
//! earlier scope compiled to, measured in the same run on the same data.
//!
//! The store holds 1 000 000 elevator readings, half in Jiangmen (440703),
//! half in Guangzhou (440106), 800 000 in Parquet files and 200 000 in
//! memory. Each typical query runs in three forms, interleaved:
//!
//! - **barrier**: as a Jiangmen analyst (`regions = [440700]`): sealed scans
//!   that drop the rows outside the grant before the query sees them;
//! - **before**: the same query over a Jiangmen-filtered subquery, the plan
//!   the earlier scope produced (a filtering view, inlined and merged with
//!   the query's own filters by the optimiser);
//! - **all**: the query unscoped (twice the rows), for scale.
//!
//! `cargo bench -p vigil-storage --bench sql` (set `VIGIL_BENCH_DIR` for
//! another disk; `VIGIL_BENCH_ROUNDS` for more rounds than 15).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};
use vigil_model::{Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::{QueryOptions, Record, Store, StoredReading, Write};

const ROWS: usize = 1_000_000;
const IN_PARQUET: usize = 800_000;

fn record(i: usize) -> Write {
    let (region, city) = if i.is_multiple_of(2) {
        ("440703", "JM")
    } else {
        ("440106", "GZ")
    };
    let unit = i % 500;
    let device = DeviceId::new(format!("{city}{unit:04}")).expect("id");
    let reading = Reading {
        device_id: device,
        seq: (i / 500) as u64 + 1,
        ts: 1_732_300_000_000 + i as i64 * 10,
        received_at: 1_732_300_000_050 + i as i64 * 10,
        payload: Payload::Elevator(ElevatorSample {
            floor: (i % 30) as i16,
            direction: if i.is_multiple_of(3) {
                Direction::Up
            } else {
                Direction::Stop
            },
            speed_mps: (i % 25) as f32 / 10.0,
            door: Door::Closed,
            leveled: !i.is_multiple_of(3),
            occupied: i.is_multiple_of(2),
            mode: ElevatorMode::Normal,
            safety_circuit: true,
            door_lock: true,
            alarm_button: false,
            power: Power::Mains,
            limit: Limit::None,
            run_count: Some(100_000 + i as u64),
            load_pct: Some((i % 100) as f32),
        }),
        extra: None,
    };
    Write {
        record: Record::Reading(StoredReading {
            reading,
            binding: Binding {
                equipment_id: EquipmentId::new(format!("EQ{city}{unit:04}")).expect("id"),
                category: "elevator".into(),
                owner_id: OwnerId::new(format!("OW{city}{}", unit % 20)).expect("id"),
                region: Region::new(region).expect("region"),
            },
        }),
        ack: None,
    }
}

async fn fill(store: &EmbeddedStore) {
    for start in (0..ROWS).step_by(10_000) {
        store
            .write((start..start + 10_000).map(record).collect())
            .await
            .expect("write");
        if start + 10_000 == IN_PARQUET {
            store.flush_parquet().await.expect("flush to Parquet");
        }
    }
    store.flush().await.expect("flush");
}

/// Typical analyst queries, with `{t}` for the table.
const QUERIES: &[(&str, &str)] = &[
    (
        "count with a filter",
        "SELECT count(*) AS n FROM {t} WHERE speed_mps > 1.0 AND direction = 'up'",
    ),
    (
        "group by equipment",
        "SELECT equipment_id, count(*) AS n, avg(speed_mps) AS v, max(run_count) - min(run_count) AS runs \
         FROM {t} GROUP BY equipment_id",
    ),
    (
        "hourly per owner",
        "SELECT owner_id, date_bin(INTERVAL '1 hour', ts, TIMESTAMP '2000-01-01') AS h, count(*) AS n \
         FROM {t} WHERE occupied GROUP BY 1, 2",
    ),
    (
        "latest 100",
        "SELECT device_id, ts, floor, speed_mps FROM {t} ORDER BY ts DESC LIMIT 100",
    ),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let base = std::env::var_os("VIGIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("bench dir");
    let rounds: usize = std::env::var("VIGIL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("sql-bench")
        .tempdir_in(&base)
        .expect("temp dir");
    rt.block_on(async {
        let config = EmbeddedConfig {
            flush_rows: usize::MAX,
            flush_interval: Duration::from_secs(3600),
            ..EmbeddedConfig::new(dir.path())
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let store = EmbeddedStore::open(config, tx).await.expect("open");
        fill(&store).await;
        let person = |regions: Option<&str>| QueryOptions {
            regions: regions.map(|r| vec![Region::new(r).expect("region")]),
            guarded: true,
            max_rows: usize::MAX,
            max_bytes: usize::MAX,
            ..QueryOptions::default()
        };
        let (jiangmen, admin) = (person(Some("440700")), person(None));
        let filtered = "(SELECT * FROM elevator_readings WHERE starts_with(region, '4407')) AS elevator_readings";
        println!(
            "{ROWS} readings ({IN_PARQUET} in Parquet), median of {rounds} rounds, ms ({})",
            base.display()
        );
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>16}",
            "query", "barrier", "before", "all", "barrier/before"
        );
        let mut ratios = Vec::new();
        for (name, sql) in QUERIES {
            let barrier_sql = sql.replace("{t}", "elevator_readings");
            let before_sql = sql.replace("{t}", filtered);
            let runs: [(&str, &QueryOptions); 3] = [
                (&barrier_sql, &jiangmen),
                (&before_sql, &admin),
                (&barrier_sql, &admin),
            ];
            // Both scoped forms must answer the same.
            let a = store.query(runs[0].0, runs[0].1).await.expect("barrier");
            let b = store.query(runs[1].0, runs[1].1).await.expect("before");
            let rows = |o: &vigil_storage::QueryOutput| {
                o.batches.iter().map(|b| b.num_rows()).sum::<usize>()
            };
            assert_eq!(rows(&a), rows(&b), "{name}: the two scoped forms differ");
            let mut times = [Vec::new(), Vec::new(), Vec::new()];
            for _ in 0..rounds {
                for (i, (q, o)) in runs.iter().enumerate() {
                    let start = Instant::now();
                    store.query(q, o).await.expect("query");
                    times[i].push(start.elapsed());
                }
            }
            let [barrier, before, all] = times.map(median);
            let ratio = barrier.as_secs_f64() / before.as_secs_f64();
            ratios.push(ratio);
            println!(
                "{name:<20} {:>9.1} {:>9.1} {:>9.1} {ratio:>16.2}",
                barrier.as_secs_f64() * 1e3,
                before.as_secs_f64() * 1e3,
                all.as_secs_f64() * 1e3,
            );
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        println!("mean barrier/before: {mean:.2}");
        store.close().await.expect("close");
    });
}
