//! Group-commit throughput of the embedded store against the disk's own
//! limit, measured in the same run.
//!
//! For each group size (1, 64, 4096 records per WAL frame) the store takes
//! records as fast as one producer can queue them and the time runs until the
//! last durable token arrives (WAL append + `sync_data`, memory apply, token
//! delivery). The baseline then writes the very frames that run produced (read
//! back from the WAL) with plain `write_all` + `sync_data` each, so the ratio
//! is the store's overhead over the fsyncs it cannot avoid.
//!
//! `cargo bench -p vigil-storage --bench wal` (set `VIGIL_BENCH_DIR` to
//! measure another disk; the default is Cargo's target tmp dir).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_model::reading::{Direction, ElevatorSample};
use vigil_model::{Binding, DeviceId, EquipmentId, OwnerId, Payload, Reading, Region};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::{AckToken, Record, Store, StoredReading, Write};

fn record(device: &DeviceId, binding: &Binding, seq: u64) -> Write {
    let reading = Reading {
        device_id: device.clone(),
        seq,
        ts: 1_732_300_000_000 + seq as i64,
        received_at: 1_732_300_000_050 + seq as i64,
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

struct StoreRun {
    elapsed: Duration,
    frames: Vec<Vec<u8>>,
}

fn run_store(rt: &tokio::runtime::Runtime, dir: &Path, group: usize, n: usize) -> StoreRun {
    rt.block_on(async {
        let config = EmbeddedConfig {
            queue_capacity: (4 * group).max(16_384),
            group_commit_max: group,
            flush_rows: usize::MAX,
            flush_interval: Duration::from_secs(3600),
            ..EmbeddedConfig::new(dir)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let store = EmbeddedStore::open(config, tx).await.expect("open");
        let device = DeviceId::new("BENCH1").expect("id");
        let binding = Binding {
            equipment_id: EquipmentId::new("EQ1").expect("id"),
            category: "elevator".into(),
            owner_id: OwnerId::new("O1").expect("id"),
            region: Region::new("440703").expect("region"),
        };
        // Built before the clock starts: we measure the store, not the fixtures.
        let mut batches: Vec<Vec<Write>> = Vec::new();
        let mut seq = 0u64;
        while (seq as usize) < n {
            let size = group.min(n - seq as usize);
            batches.push(
                (0..size)
                    .map(|i| record(&device, &binding, seq + i as u64 + 1))
                    .collect(),
            );
            seq += size as u64;
        }
        let start = Instant::now();
        let producer = {
            let store = store.clone();
            tokio::spawn(async move {
                for b in batches {
                    store.write(b).await.expect("write");
                }
            })
        };
        let mut acked = 0usize;
        while acked < n {
            acked += rx.recv().await.expect("tokens").len();
        }
        let elapsed = start.elapsed();
        producer.await.expect("producer");
        let frames = read_frames(&dir.join("wal"));
        drop(store);
        StoreRun { elapsed, frames }
    })
}

/// The frames of every WAL segment, header included.
fn read_frames(wal: &Path) -> Vec<Vec<u8>> {
    let mut segments: Vec<PathBuf> = fs::read_dir(wal)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    segments.sort();
    let mut frames = Vec::new();
    for seg in segments {
        let data = fs::read(&seg).expect("segment");
        let mut at = 0;
        while at + 8 <= data.len() {
            let len =
                u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
            frames.push(data[at..at + 8 + len].to_vec());
            at += 8 + len;
        }
    }
    frames
}

fn run_baseline(dir: &Path, frames: &[Vec<u8>]) -> Duration {
    let path = dir.join("baseline.log");
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("baseline file");
    let start = Instant::now();
    for f in frames {
        file.write_all(f).expect("write");
        file.sync_data().expect("sync");
    }
    start.elapsed()
}

fn main() {
    let base = std::env::var_os("VIGIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    fs::create_dir_all(&base).expect("bench dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "WAL group commit vs raw write+sync_data of the same frames ({})",
        base.display()
    );
    println!(
        "{:>6} {:>8} {:>7} {:>9} {:>13} {:>13} {:>7}",
        "group", "records", "frames", "B/frame", "store rec/s", "raw rec/s", "ratio"
    );
    for (group, n) in [(1usize, 2_000usize), (64, 100_000), (4096, 400_000)] {
        let dir = tempfile::Builder::new()
            .prefix("wal-bench")
            .tempdir_in(&base)
            .expect("temp dir");
        let store = run_store(&rt, dir.path(), group, n);
        let baseline_dir = tempfile::Builder::new()
            .prefix("wal-bench-raw")
            .tempdir_in(&base)
            .expect("temp dir");
        let raw = run_baseline(baseline_dir.path(), &store.frames);
        let bytes: usize = store.frames.iter().map(Vec::len).sum();
        let frames = store.frames.len().max(1);
        let store_rate = n as f64 / store.elapsed.as_secs_f64();
        let raw_rate = n as f64 / raw.as_secs_f64();
        println!(
            "{group:>6} {n:>8} {frames:>7} {:>9} {store_rate:>13.0} {raw_rate:>13.0} {:>7.2}",
            bytes / frames,
            store_rate / raw_rate
        );
    }
}
