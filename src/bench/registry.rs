//! `vigil bench registry`: the registry at a province's size (Zhejiang
//! watches 1.75 M pieces of equipment). Imports that many elevators with
//! their devices, owners and maintainers (the simulator's seeded fleet,
//! generated part by part) into a registry on disk, then times the
//! operations that must not grow with it:
//!
//! - a device update (an import of one changed device: validate, commit,
//!   append to the change log, fsync);
//! - a token issue (the same path, for a token);
//! - a device's CONNECT check (`verify_device_secret`, what ingest's
//!   `Directory::verify` runs for every MQTT login: id + secret);
//! - a device's first resolve (its context, built once, then cached).
//!
//! The baseline is the same run at a hundredth of the size, in the same
//! process, on the same disk: a ratio near 1 means the operation does not
//! depend on the registry's size. Import speed, memory per equipment and
//! the time to open (restart) are compared the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use vigil_model::DeviceId;
use vigil_registry::{ImportDoc, Registry, Role, TokenPolicy, TokenRequest};
use vigil_simulator::{Fleet, FleetConfig};

use super::percentile;

/// A province (Guangdong's known cities, in the simulator).
const REGION: &str = "440000";
/// Elevators per generated fleet part: the simulator gives a part at most
/// 14 owners and 7 maintainers, so small parts keep about 40 elevators per
/// owner and 80 per maintainer.
const PART: usize = 400;

#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// Equipment to import (elevators, one device each).
    #[arg(long, default_value_t = 1_750_000)]
    pub equipment: usize,
    /// The baseline's size, run first in the same process (default: a
    /// hundredth of --equipment).
    #[arg(long)]
    pub baseline: Option<usize>,
    /// Equipment per import call (an import body is at most 64 MiB, about
    /// 80,000 equipment with their devices).
    #[arg(long, default_value_t = 25_000)]
    pub batch: usize,
    /// Operations timed per figure and size.
    #[arg(long, default_value_t = 300)]
    pub ops: usize,
    #[arg(long, default_value_t = 14)]
    pub seed: u64,
    /// Where the registries are written (a fresh temporary folder under it,
    /// removed after): its disk's fsync is part of every change.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Small sizes (10,000 equipment against 1,000, 40 operations): a
    /// smoke run, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures to this file as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// p50 and p99 of one operation, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ops: usize,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        Latency {
            p50_ms: percentile(&samples, 0.50),
            p99_ms: percentile(&samples, 0.99),
            ops: samples.len(),
        }
    }
}

/// Everything measured at one size.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SizeRun {
    pub equipment: usize,
    pub devices: usize,
    pub owners: usize,
    pub maintainers: usize,
    /// Generating the fleet and turning it into import documents (the
    /// load's own cost, not the registry's).
    pub generate_s: f64,
    /// Inside `Registry::import`, all batches.
    pub import_s: f64,
    pub import_equipment_per_s: f64,
    /// Resident memory before the import, after it, and the peak during
    /// this size's run (VmHWM, reset before it where the kernel allows).
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_mib: f64,
    /// (after − before) ÷ equipment: the registry's memory per equipment
    /// with its device, secret and share of owners and maintainers.
    pub rss_bytes_per_equipment: f64,
    /// The registry's files after the import (snapshot and log).
    pub disk_mib: f64,
    /// Opening the registry again (a restart): snapshot and log read,
    /// every reference checked.
    pub open_s: f64,
    pub device_update: Latency,
    /// Bytes the registry's files grew by per device update: its change
    /// record, whatever the registry's size.
    pub written_per_update: f64,
    pub token_issue: Latency,
    pub connect_auth: Latency,
    pub first_resolve: Latency,
}

/// One figure against its baseline.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Ratio {
    pub figure: String,
    pub baseline: f64,
    pub measured: f64,
    /// measured ÷ baseline.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub baseline: SizeRun,
    pub province: SizeRun,
    pub ratios: Vec<Ratio>,
}

pub(super) async fn run(args: RegistryArgs) -> anyhow::Result<()> {
    let (equipment, baseline, ops) = if args.quick {
        (10_000, 1_000, 40)
    } else {
        (
            args.equipment,
            args.baseline.unwrap_or(args.equipment / 100),
            args.ops,
        )
    };
    anyhow::ensure!(
        baseline > 0 && equipment >= baseline && ops > 0 && args.batch > 0,
        "need 0 < baseline ≤ equipment, ops > 0 and batch > 0"
    );
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let batch = args.batch;
    let seed = args.seed;
    // Blocking work (hashing, fsync, a few minutes of it) off the runtime.
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Report> {
        eprintln!("Baseline: {baseline} equipment …");
        let small = size_run(&parent, baseline, batch, ops, seed)?;
        eprintln!("Province: {equipment} equipment …");
        let big = size_run(&parent, equipment, batch, ops, seed)?;
        Ok(report(small, big))
    })
    .await??;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn report(small: SizeRun, big: SizeRun) -> Report {
    let mut ratios = Vec::new();
    let mut add = |figure: String, baseline: f64, measured: f64| {
        ratios.push(Ratio {
            figure,
            baseline,
            measured,
            ratio: measured / baseline,
        })
    };
    add(
        "import, equipment/s".into(),
        small.import_equipment_per_s,
        big.import_equipment_per_s,
    );
    add(
        "memory, bytes per equipment".into(),
        small.rss_bytes_per_equipment,
        big.rss_bytes_per_equipment,
    );
    add(
        "bytes written per device update".into(),
        small.written_per_update,
        big.written_per_update,
    );
    add(
        "open, µs per equipment".into(),
        small.open_s * 1e6 / small.equipment as f64,
        big.open_s * 1e6 / big.equipment as f64,
    );
    let pairs = [
        ("device update", small.device_update, big.device_update),
        ("token issue", small.token_issue, big.token_issue),
        ("CONNECT check", small.connect_auth, big.connect_auth),
        ("first resolve", small.first_resolve, big.first_resolve),
    ];
    for (name, s, b) in pairs {
        add(format!("{name} p50, ms"), s.p50_ms, b.p50_ms);
        add(format!("{name} p99, ms"), s.p99_ms, b.p99_ms);
    }
    Report {
        baseline: small,
        province: big,
        ratios,
    }
}

/// A device the operations are timed on, with what they need.
struct Sampled {
    device_id: String,
    equipment_id: String,
    secret: String,
}

/// Imports `n` elevators into a fresh registry on disk, reopens it and
/// times `ops` of each operation.
fn size_run(
    parent: &Path,
    n: usize,
    batch: usize,
    ops: usize,
    seed: u64,
) -> anyhow::Result<SizeRun> {
    let dir = tempfile::Builder::new()
        .prefix("vigil-bench-registry-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot make a folder in {}", parent.display()))?;
    reset_peak_rss();
    let rss_before = super::proc_status_kib("self", "VmRSS:");
    let registry = Registry::open(dir.path())?;
    // Every `stride`-th device created is timed later, its secret kept.
    let stride = (n / ops).max(1);
    let mut sampled: Vec<Sampled> = Vec::with_capacity(ops + 1);
    let (mut generate, mut import) = (Duration::ZERO, Duration::ZERO);
    let (mut owners, mut maintainers, mut devices) = (0, 0, 0);
    let mut created = 0usize;
    let mut start = 0;
    while start < n {
        let t = Instant::now();
        let mut doc = ImportDoc::default();
        let end = (start + batch).min(n);
        let mut first = start;
        while first < end {
            let part = PART.min(end - first);
            let fleet = Fleet::generate(&FleetConfig {
                devices: part,
                seed: seed.wrapping_mul(1_000_003).wrapping_add(first as u64),
                fault_fraction: 0.0,
                region: REGION.to_owned(),
                first_number: first,
                ..FleetConfig::default()
            });
            let part_doc: ImportDoc = serde_json::from_value(fleet.import_doc())?;
            doc.owners.extend(part_doc.owners);
            doc.maintainers.extend(part_doc.maintainers);
            doc.equipment.extend(part_doc.equipment);
            doc.devices.extend(part_doc.devices);
            first += part;
        }
        owners += doc.owners.len();
        maintainers += doc.maintainers.len();
        devices += doc.devices.len();
        let equipment_of: Vec<(String, String)> = doc
            .devices
            .iter()
            .map(|d| {
                let eq = d.equipment_id.as_ref().map(|e| e.to_string());
                (d.device_id.to_string(), eq.unwrap_or_default())
            })
            .collect();
        generate += t.elapsed();

        let t = Instant::now();
        let report = registry.import(doc)?;
        import += t.elapsed();
        for (secret, (device_id, equipment_id)) in report.devices.into_iter().zip(equipment_of) {
            debug_assert_eq!(secret.device_id.as_str(), device_id);
            if created.is_multiple_of(stride) && sampled.len() < ops {
                sampled.push(Sampled {
                    device_id,
                    equipment_id,
                    secret: secret.secret,
                });
            }
            created += 1;
        }
        start = end;
    }
    let rss_after = super::proc_status_kib("self", "VmRSS:");
    // Dropping waits for a compaction still writing in the background.
    drop(registry);
    let disk = dir_bytes(dir.path());

    let t = Instant::now();
    let registry = Registry::open(dir.path())?;
    let open_s = t.elapsed().as_secs_f64();
    let mut rng = StdRng::seed_from_u64(seed);
    sampled.shuffle(&mut rng);

    let connect_auth = Latency::of(
        sampled
            .iter()
            .map(|s| {
                let t = Instant::now();
                let ok = registry.verify_device_secret(&s.device_id, &s.secret);
                let took = t.elapsed();
                anyhow::ensure!(ok, "device {} refused its own secret", s.device_id);
                Ok(took)
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let first_resolve = Latency::of(
        sampled
            .iter()
            .map(|s| {
                let id = DeviceId::new(&s.device_id)?;
                let t = Instant::now();
                let r = registry.resolve(&id);
                let took = t.elapsed();
                anyhow::ensure!(
                    matches!(r, vigil_model::Resolution::Active(_)),
                    "device {} does not resolve: {r:?}",
                    s.device_id
                );
                Ok(took)
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let before_updates = dir_bytes(dir.path());
    let device_update = Latency::of(
        sampled
            .iter()
            .map(|s| {
                let doc: ImportDoc = serde_json::from_value(json!({"devices": [{
                    "device_id": s.device_id, "equipment_id": s.equipment_id,
                    "kind": "elevator", "report_interval_s": rng.gen_range(20..=90)}]}))?;
                let t = Instant::now();
                let report = registry.import(doc)?;
                let took = t.elapsed();
                anyhow::ensure!(report.counts.devices.updated == 1, "not an update");
                Ok(took)
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let written_per_update =
        dir_bytes(dir.path()).saturating_sub(before_updates) as f64 / sampled.len() as f64;
    let now = chrono::Utc::now().timestamp_millis();
    let token_issue = Latency::of(
        (0..sampled.len())
            .map(|i| {
                let req = TokenRequest {
                    name: format!("bench supervisor {i}"),
                    role: Role::Supervisor,
                    regions: vec![vigil_model::Region::new(REGION)?],
                    owner_id: None,
                    expires_in_s: Some(3600),
                };
                let t = Instant::now();
                registry.create_token(req, now, &TokenPolicy::default())?;
                Ok(t.elapsed())
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let peak = super::proc_status_kib("self", "VmHWM:");
    drop(registry);
    let sizes_ok = sampled.len() == ops.min(n);
    anyhow::ensure!(sizes_ok, "timed {} devices of {}", sampled.len(), ops);
    let mib = |kib: Option<u64>| kib.map_or(f64::NAN, |k| k as f64 / 1024.0);
    let import_s = import.as_secs_f64();
    Ok(SizeRun {
        equipment: n,
        devices,
        owners,
        maintainers,
        generate_s: generate.as_secs_f64(),
        import_s,
        import_equipment_per_s: n as f64 / import_s,
        rss_before_mib: mib(rss_before),
        rss_after_mib: mib(rss_after),
        peak_rss_mib: mib(peak),
        rss_bytes_per_equipment: match (rss_before, rss_after) {
            (Some(b), Some(a)) => a.saturating_sub(b) as f64 * 1024.0 / n as f64,
            _ => f64::NAN,
        },
        disk_mib: disk as f64 / (1 << 20) as f64,
        open_s,
        device_update,
        written_per_update,
        token_issue,
        connect_auth,
        first_resolve,
    })
}

/// Resets VmHWM to the current RSS, so each size reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn print_report(r: &Report) {
    let (s, b) = (&r.baseline, &r.province);
    println!("\n### Registry at province size\n");
    println!("| | baseline | province |");
    println!("|---|---:|---:|");
    println!(
        "| equipment (one device each) | {} | {} |",
        s.equipment, b.equipment
    );
    println!(
        "| owners / maintainers | {} / {} | {} / {} |",
        s.owners, s.maintainers, b.owners, b.maintainers
    );
    println!(
        "| generate (load, not registry), s | {:.1} | {:.1} |",
        s.generate_s, b.generate_s
    );
    println!("| import, s | {:.2} | {:.1} |", s.import_s, b.import_s);
    println!(
        "| RSS before / after import, MiB | {:.0} / {:.0} | {:.0} / {:.0} |",
        s.rss_before_mib, s.rss_after_mib, b.rss_before_mib, b.rss_after_mib
    );
    println!(
        "| peak RSS, MiB | {:.0} | {:.0} |",
        s.peak_rss_mib, b.peak_rss_mib
    );
    println!("| on disk, MiB | {:.1} | {:.0} |", s.disk_mib, b.disk_mib);
    println!("| open (restart), s | {:.2} | {:.1} |", s.open_s, b.open_s);
    println!("\n| figure | baseline | province | ratio |");
    println!("|---|---:|---:|---:|");
    for x in &r.ratios {
        println!(
            "| {} | {:.4} | {:.4} | {:.2} |",
            x.figure, x.baseline, x.measured, x.ratio
        );
    }
}
