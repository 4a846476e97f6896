//! Memory and start-up time of ingest's de-duplication bookkeeping, per
//! device: `Ingest::start` on a recovered history of N devices, measured
//! as the growth of the process's resident memory against a start with no
//! history in the same process (same broker, same store). Two shapes: a
//! device with 4 runs of seqs (it skipped 3 numbers in its recent history),
//! and the bound, a device with `MAX_RUNS` runs (a timestamp used as seq).
//!
//! `cargo run -p vigil-ingest --example seq_memory [-- DEVICES]` (default 50 000).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use vigil_ingest::{Directory, Ingest, IngestConfig};
use vigil_model::{DeviceId, Resolution};
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::{MAX_RUNS, Recovery, Store, StoredSeqs};

/// No device is registered: nothing connects, only the history matters.
struct NoDevices;

impl Directory for NoDevices {
    fn verify(&self, _device_id: &str, _secret: &str) -> bool {
        false
    }

    fn resolve(&self, _device_id: &DeviceId) -> Resolution {
        Resolution::Unknown
    }
}

/// Resident memory of this process in bytes.
fn rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn history(devices: usize, runs: usize) -> Recovery {
    let mut seqs = HashMap::new();
    for d in 0..devices {
        let mut stored = StoredSeqs::new();
        for r in 0..runs as u64 {
            // Runs of 100 seqs, one number skipped between them.
            stored.insert_run(r * 101 + 1, r * 101 + 100);
        }
        seqs.insert(DeviceId::new(format!("EL{d:06}")).unwrap(), stored);
    }
    Recovery {
        seqs,
        ..Recovery::default()
    }
}

/// Starts ingest on `recovery`; returns its RSS growth and start time.
async fn start(store: &Arc<dyn Store>, recovery: &Recovery) -> (Ingest, i64, f64) {
    let (_tx, durable) = tokio::sync::mpsc::channel(16);
    let config = IngestConfig {
        mqtt_addr: "127.0.0.1:0".parse().unwrap(),
        ..IngestConfig::default()
    };
    let before = rss();
    let started = Instant::now();
    let ingest = Ingest::start(
        config,
        Arc::new(NoDevices),
        Arc::clone(store),
        recovery,
        durable,
        Box::new(|_| {}),
        &prometheus::Registry::new(),
        Arc::new(|| 1_732_300_000_000),
    )
    .expect("ingest starts");
    let took = started.elapsed().as_secs_f64() * 1000.0;
    (ingest, rss() - before, took)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let devices: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let store: Arc<dyn Store> = EmbeddedStore::open(EmbeddedConfig::new(dir.path()), tx)
        .await
        .expect("store opens");

    // The broker's own memory, and the allocator warmed up.
    let (empty, base, base_ms) = start(&store, &Recovery::default()).await;
    println!(
        "ingest start, no history: +{} KiB RSS, {base_ms:.0} ms",
        base / 1024
    );
    for runs in [4, MAX_RUNS] {
        let recovery = history(devices, runs);
        let (ingest, grew, took) = start(&store, &recovery).await;
        let per_device = (grew - base) as f64 / devices as f64;
        println!(
            "ingest start, {devices} devices × {runs} runs: +{} KiB RSS over the empty start = {per_device:.0} bytes per device; start {took:.0} ms ({:.0} ms more than without history)",
            (grew - base) / 1024,
            took - base_ms,
        );
        drop(recovery);
        ingest.shutdown().await.expect("stops");
    }
    empty.shutdown().await.expect("stops");
}
