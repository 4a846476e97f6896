//! Start-up cost of ingest's de-duplication history, on both backends: a
//! store holding `VIGIL_BENCH_DEVICES` devices (default 10 000) ×
//! `VIGIL_BENCH_READINGS` readings each (default 100; every 25th seq
//! skipped, so 4 runs per device), then
//!
//! - embedded: open + `recover` with the seq index; the same after deleting
//!   the index (rebuilt from every Parquet file: the cost the index saves);
//!   the same with everything still in the WAL (a crash before any flush);
//! - PostgreSQL: open + `recover` (loose index scan and the top seqs per
//!   device from the keys);
//! - both: one `stored_seqs` look-up of 512 old keys, as a batch of
//!   re-sends older than the history in memory would ask;
//! - the heap the recovered history takes per device.
//!
//! `cargo bench -p vigil-storage --bench recovery` (PostgreSQL: a
//! throw-away cluster as in the tests, or `VIGIL_TEST_DATABASE_URL`).

#[path = "../tests/postgres/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_model::DeviceId;
use vigil_storage::embedded::{EmbeddedConfig, EmbeddedStore};
use vigil_storage::postgres::{PostgresConfig, PostgresStore};
use vigil_storage::{AckToken, Recovery, SeqKey, Store, Write};

/// Writes per `Store::write` call, as ingest hands them over.
const CALL: usize = 512;
/// Keys in the look-up measured: a full ingest batch of old re-sends.
const LOOKUP_KEYS: usize = 512;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn device(d: usize) -> DeviceId {
    DeviceId::new(format!("EL{d:05}")).unwrap()
}

fn write(device: &DeviceId, seq: u64) -> Write {
    fixtures::w(fixtures::elevator(device.as_str(), seq))
}

/// Every device's seqs 1..=readings except multiples of 25, in rounds (one
/// reading of each device, then the next), as a fleet reports; made as
/// they are written, in calls of [`CALL`].
fn history(devices: usize, readings: usize) -> impl Iterator<Item = Vec<Write>> {
    let ids: Vec<DeviceId> = (0..devices).map(device).collect();
    let mut all = (1..=readings as u64)
        .filter(|seq| seq % 25 != 0)
        .flat_map(move |seq| ids.clone().into_iter().map(move |id| write(&id, seq)));
    std::iter::from_fn(move || {
        let call: Vec<Write> = all.by_ref().take(CALL).collect();
        (!call.is_empty()).then_some(call)
    })
}

async fn write_all(
    store: &dyn Store,
    calls: impl Iterator<Item = Vec<Write>>,
    tokens: &mut mpsc::Receiver<Vec<AckToken>>,
) -> usize {
    let done = std::sync::atomic::AtomicBool::new(false);
    let written = std::sync::atomic::AtomicUsize::new(0);
    let producer = async {
        for call in calls {
            written.fetch_add(call.len(), std::sync::atomic::Ordering::SeqCst);
            store.write(call).await.expect("write");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let consumer = async {
        let mut acked = 0;
        loop {
            if done.load(std::sync::atomic::Ordering::SeqCst)
                && acked == written.load(std::sync::atomic::Ordering::SeqCst)
            {
                return acked;
            }
            if let Ok(Some(t)) =
                tokio::time::timeout(Duration::from_millis(50), tokens.recv()).await
            {
                acked += t.len();
            }
        }
    };
    tokio::join!(producer, consumer).1
}

/// Heap and inline bytes of the recovered history, per device.
fn bytes_per_device(rec: &Recovery) -> f64 {
    let total: usize = rec
        .seqs
        .iter()
        .map(|(id, s)| {
            // DeviceId is an Arc<str>: two counters and the text on the heap.
            std::mem::size_of::<DeviceId>()
                + 16
                + id.as_str().len()
                + std::mem::size_of_val(s)
                + s.heap_bytes()
        })
        .sum();
    total as f64 / rec.seqs.len().max(1) as f64
}

/// The oldest seq of `n` devices: what re-sends older than the history in
/// memory ask (all stored).
fn old_keys(rec: &Recovery, n: usize) -> Vec<SeqKey> {
    let mut keys: Vec<SeqKey> = rec.seqs.keys().take(n).map(|id| (id.clone(), 1)).collect();
    keys.sort();
    keys
}

/// One `stored_seqs` call for the oldest seq of 512 devices.
async fn time_lookup(store: &dyn Store, rec: &Recovery) -> (usize, Duration) {
    let keys = old_keys(rec, LOOKUP_KEYS);
    let started = Instant::now();
    let found = store.stored_seqs(&keys).await.unwrap();
    let took = started.elapsed();
    assert_eq!(found.len(), keys.len());
    (keys.len(), took)
}

/// The look-up time and the size of the recovered history.
fn report_history(backend: &str, rec: &Recovery, (keys, lookup): (usize, Duration)) {
    println!("{backend}  stored_seqs, {keys} old keys: {}", ms(lookup));
    let first = &rec.seqs[&device(0)];
    println!(
        "{backend}  recovered history: {:.0} bytes per device ({} runs for EL00000, floor {})",
        bytes_per_device(rec),
        first.runs().len(),
        first.from()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Opens the store and recovers: (store, open time, recover time, history).
async fn embedded_open(
    dir: &std::path::Path,
) -> (Arc<EmbeddedStore>, Duration, Duration, Recovery) {
    let (tx, _rx) = mpsc::channel(16);
    let started = Instant::now();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir), tx)
        .await
        .expect("opens");
    let opened = started.elapsed();
    let started = Instant::now();
    let rec = store.recover().await.expect("recovers");
    (store, opened, started.elapsed(), rec)
}

async fn embedded(devices: usize, readings: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut tokens) = mpsc::channel(4096);
    // Default settings: Parquet flushes every 250 000 rows on its own.
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()), tx)
        .await
        .expect("opens");
    write_all(&*store, history(devices, readings), &mut tokens).await;
    // A crash: what the last flush left in the WAL is replayed.
    drop(store);
    let (store, crash_open, crash_recover, rec) = embedded_open(dir.path()).await;
    assert_eq!(rec.seqs.len(), devices);
    store.close().await.unwrap();

    let (store, opened, recovered, rec) = embedded_open(dir.path()).await;
    assert_eq!(rec.seqs.len(), devices);
    let lookup = time_lookup(&*store, &rec).await;
    store.close().await.unwrap();

    std::fs::remove_file(dir.path().join("seq-index")).unwrap();
    let (store, re_open, re_recover, rec2) = embedded_open(dir.path()).await;
    assert_eq!(rec2.seqs, rec.seqs, "the index holds what the files hold");
    store.close().await.unwrap();

    println!(
        "embedded  after close, seq index:       open {}, recover {}",
        ms(opened),
        ms(recovered)
    );
    println!(
        "embedded  after close, index rebuilt:   open {}, recover {} ({:.1}× the indexed start)",
        ms(re_open),
        ms(re_recover),
        (re_open + re_recover).as_secs_f64() / (opened + recovered).as_secs_f64()
    );
    println!(
        "embedded  after SIGKILL (WAL replay):   open {}, recover {}",
        ms(crash_open),
        ms(crash_recover)
    );
    report_history("embedded", &rec, lookup);
}

async fn postgres(devices: usize, readings: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = PostgresConfig::new(&cluster::cluster().url, dir.path().join("pg-wal"));
    config.schema = cluster::unique_name("bench_recovery");
    config.role_prefix = config.schema.clone();
    let (tx, mut tokens) = mpsc::channel(4096);
    let store = PostgresStore::open(config.clone(), tx)
        .await
        .expect("opens");
    write_all(&*store, history(devices, readings), &mut tokens).await;
    store.close().await.unwrap();
    // ANALYZE and the visibility map, as autovacuum would have them.
    let (client, conn) = tokio_postgres::connect(&config.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "VACUUM ANALYZE {}.elevator_readings",
            config.schema
        ))
        .await
        .unwrap();

    let (tx, _rx) = mpsc::channel(16);
    let started = Instant::now();
    let store = PostgresStore::open(config.clone(), tx)
        .await
        .expect("opens");
    let opened = started.elapsed();
    let started = Instant::now();
    let rec = store.recover().await.expect("recovers");
    let recovered = started.elapsed();
    assert_eq!(rec.seqs.len(), devices);
    let lookup = time_lookup(&*store, &rec).await;
    store.close().await.unwrap();
    println!("postgres  open: {}, recover: {}", ms(opened), ms(recovered));
    report_history("postgres", &rec, lookup);
}

fn main() {
    let devices = env_or("VIGIL_BENCH_DEVICES", 10_000);
    let readings = env_or("VIGIL_BENCH_READINGS", 100);
    let rows = devices * (readings - readings / 25);
    println!("{devices} devices × {readings} seqs (every 25th skipped): {rows} readings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(embedded(devices, readings));
    rt.block_on(postgres(devices, readings));
}
