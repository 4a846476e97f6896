//! The registry on disk, in `data_dir/registry/` (0700, files 0600):
//!
//! - `log-{S}`: the changes after version S, one framed JSON record each
//!   ([`Change`]), appended and fsync'd before the change is seen. A
//!   change costs one append of its own size, whatever the registry's.
//! - `snapshot-{V}`: the whole registry at version V, in chunks of
//!   entities, closed by an end record. Written in the background from a
//!   frozen [`Snapshot`] (an O(1) copy) when the log has grown as large as
//!   the last snapshot, so start-up reads at most about twice the
//!   registry, and the total written stays linear in what was changed.
//!
//! Compaction first opens a new segment `log-{V}` for the changes after V,
//! then writes `snapshot-{V}.tmp`, fsyncs it, renames it, fsyncs the
//! folder, and only then deletes the older snapshot and segments. A crash
//! at any point leaves a snapshot and the segments that follow it.
//!
//! Opening reads the newest snapshot, replays the segments from its
//! version on (each record must be the next version), drops a torn last
//! record (an append the crash cut), and checks the whole state as an
//! import would. A `registry.json` of an older engine is migrated once
//! into a snapshot and renamed `registry.json.migrated`.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::legacy;
use super::log::{self, Appender, End};
use super::snapshot::{Change, Snapshot, Txn, commit};
use crate::entity::*;
use crate::error::RegistryError;
use crate::table::Entity;

/// The folder inside the data dir.
pub(crate) const DIR: &str = "registry";
const FORMAT: u32 = 2;
/// Entities per snapshot record: big enough to parse fast, small enough
/// that reading never holds much more than one in memory.
const CHUNK: usize = 10_000;

/// When the log is compacted: once it is larger than the last snapshot and
/// than `compact_min_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    pub compact_min_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            compact_min_bytes: 64 << 20,
        }
    }
}

/// The first record of every file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// `log` or `snapshot`.
    vigil_registry: String,
    format: u32,
    /// A log holds the changes after it; a snapshot is the state at it.
    version: u64,
}

/// The records of a snapshot after its header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SnapshotRecord {
    Chunk(Box<Change>),
    /// The last record: how many entities came before it.
    End {
        entities: u64,
    },
}

fn header(kind: &str, version: u64) -> Vec<u8> {
    log::encode(&Header {
        vigil_registry: kind.to_owned(),
        format: FORMAT,
        version,
    })
}

fn log_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("log-{start:020}"))
}

fn snapshot_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("snapshot-{version:020}"))
}

/// The snapshots and log segments in `dir`, each sorted by version.
/// Leftover temporary files of an interrupted compaction are removed.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), RegistryError> {
    let read_err = |source| RegistryError::Read {
        path: dir.to_owned(),
        source,
    };
    let (mut snaps, mut logs) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(read_err)?;
        } else if let Some(v) = name.strip_prefix("snapshot-").and_then(|v| v.parse().ok()) {
            snaps.push(v);
        } else if let Some(v) = name.strip_prefix("log-").and_then(|v| v.parse().ok()) {
            logs.push(v);
        }
    }
    snaps.sort_unstable();
    logs.sort_unstable();
    Ok((snaps, logs))
}

/// The change log and snapshots of one registry. Owned by the registry's
/// writer: one change at a time.
pub(crate) struct Disk {
    dir: PathBuf,
    options: DiskOptions,
    log: Appender,
    snapshot_bytes: u64,
    /// The compaction running in the background, if any: its result is the
    /// new snapshot's size.
    compaction: Option<JoinHandle<Result<u64, RegistryError>>>,
}

impl Disk {
    /// Opens (creating, or migrating from `registry.json`) the registry
    /// kept in `data_dir`.
    pub(crate) fn open(
        data_dir: &Path,
        options: DiskOptions,
    ) -> Result<(Snapshot, Disk), RegistryError> {
        let started = Instant::now();
        let dir = data_dir.join(DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| RegistryError::Read {
                path: dir.clone(),
                source,
            })?;
        let legacy_file = data_dir.join(legacy::FILE_NAME);
        let (snaps, logs) = list(&dir)?;
        let (snapshot, disk) = if snaps.is_empty() && logs.is_empty() {
            match legacy::load(&legacy_file)? {
                Some(snapshot) => migrate(&dir, &legacy_file, snapshot, options)?,
                None => {
                    let log = Appender::create(&log_path(&dir, 0), &header("log", 0))?;
                    let disk = Disk {
                        dir: dir.clone(),
                        options,
                        log,
                        snapshot_bytes: 0,
                        compaction: None,
                    };
                    (Snapshot::default(), disk)
                }
            }
        } else {
            if legacy_file.exists() {
                // Migrated before, and the rename did not happen.
                retire_legacy(&legacy_file)?;
            }
            load(&dir, &snaps, &logs, options)?
        };
        snapshot
            .check_all()
            .map_err(|message| RegistryError::Corrupt {
                path: dir.clone(),
                message,
            })?;
        info!(
            path = %disk.dir.display(),
            version = snapshot.data.version,
            took_ms = started.elapsed().as_millis() as u64,
            "Registry read from disk."
        );
        Ok((snapshot, disk))
    }

    /// Makes `change` durable: one frame appended and fsync'd.
    pub(crate) fn append(&mut self, change: &Change) -> Result<(), RegistryError> {
        self.log.append(&log::encode(change))
    }

    /// After a commit: collects a finished compaction, and starts one when
    /// the log has outgrown the last snapshot.
    pub(crate) fn after_commit(&mut self, snapshot: &Arc<Snapshot>) {
        if self.compaction.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.compaction.take()
        {
            self.collect(h);
        }
        let due = self.log.len >= self.options.compact_min_bytes.max(self.snapshot_bytes);
        if self.compaction.is_some() || !due {
            return;
        }
        let version = snapshot.data.version;
        // Changes after `version` go to a new segment from now on; the old
        // one stays until the snapshot that covers it is durable.
        match Appender::create(&log_path(&self.dir, version), &header("log", version)) {
            Ok(log) => self.log = log,
            Err(e) => {
                warn!(error = %e, "Registry log not rotated; compaction postponed.");
                return;
            }
        }
        let (dir, snapshot) = (self.dir.clone(), Arc::clone(snapshot));
        let spawned = std::thread::Builder::new()
            .name("registry-compact".into())
            .spawn(move || compact(&dir, &snapshot));
        match spawned {
            Ok(h) => self.compaction = Some(h),
            Err(e) => warn!(error = %e, "Registry compaction not started."),
        }
    }

    fn collect(&mut self, h: JoinHandle<Result<u64, RegistryError>>) {
        match h.join() {
            Ok(Ok(bytes)) => self.snapshot_bytes = bytes,
            // The log still holds everything; the next commit tries again.
            Ok(Err(e)) => {
                warn!(error = %e, "Registry compaction failed; the log keeps every change.")
            }
            Err(_) => warn!("Registry compaction panicked; the log keeps every change."),
        }
    }
}

impl Drop for Disk {
    /// A compaction in progress finishes: its files are then complete, and
    /// a registry opened on the same folder next does not race it.
    fn drop(&mut self) {
        if let Some(h) = self.compaction.take() {
            self.collect(h);
        }
    }
}

/// Writes the snapshot of `snapshot` and deletes what it makes obsolete.
fn compact(dir: &Path, snapshot: &Snapshot) -> Result<u64, RegistryError> {
    let started = Instant::now();
    let version = snapshot.data.version;
    let bytes = write_snapshot(dir, snapshot)?;
    let (snaps, logs) = list(dir)?;
    let remove = |path: PathBuf| {
        fs::remove_file(&path).map_err(|source| RegistryError::Write { path, source })
    };
    for v in snaps.into_iter().filter(|v| *v < version) {
        remove(snapshot_path(dir, v))?;
    }
    for s in logs.into_iter().filter(|s| *s < version) {
        remove(log_path(dir, s))?;
    }
    info!(
        version,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "Registry snapshot written; older log segments removed."
    );
    Ok(bytes)
}

/// `snapshot-{V}`, durable (file and folder entry); its size.
fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<u64, RegistryError> {
    let version = snapshot.data.version;
    let path = snapshot_path(dir, version);
    let tmp = path.with_extension("tmp");
    let err = |source| RegistryError::Write {
        path: tmp.clone(),
        source,
    };
    let mut out = BufWriter::with_capacity(1 << 20, log::create_private(&tmp).map_err(err)?);
    let mut bytes = 0u64;
    let mut write = |frame: Vec<u8>| -> Result<(), RegistryError> {
        bytes += frame.len() as u64;
        out.write_all(&frame).map_err(err)
    };
    write(header("snapshot", version))?;
    let mut entities = 0u64;
    let mut chunk = Change {
        version,
        ..Change::default()
    };
    let mut flush = |chunk: &mut Change, force: bool| -> Result<(), RegistryError> {
        if chunk.len() >= CHUNK || (force && !chunk.is_empty()) {
            entities += chunk.len() as u64;
            let full = std::mem::replace(
                chunk,
                Change {
                    version,
                    ..Change::default()
                },
            );
            write(log::encode(&SnapshotRecord::Chunk(Box::new(full))))?;
        }
        Ok(())
    };
    fn table<E: Entity>(
        d: &super::snapshot::Data,
        chunk: &mut Change,
        flush: &mut impl FnMut(&mut Change, bool) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        for (id, e) in E::table(d).iter() {
            E::changes_mut(chunk).push((id.clone(), Some(Arc::clone(e))));
            flush(chunk, false)?;
        }
        Ok(())
    }
    let d = &snapshot.data;
    // References come before what refers to them (owners before
    // equipment, …), though loading does not depend on it.
    table::<Owner>(d, &mut chunk, &mut flush)?;
    table::<Maintainer>(d, &mut chunk, &mut flush)?;
    table::<Station>(d, &mut chunk, &mut flush)?;
    table::<Equipment>(d, &mut chunk, &mut flush)?;
    table::<Device>(d, &mut chunk, &mut flush)?;
    table::<Person>(d, &mut chunk, &mut flush)?;
    table::<Cylinder>(d, &mut chunk, &mut flush)?;
    for (key, m) in d.maintenance.iter() {
        chunk.maintenance.push((key.clone(), Some(Arc::clone(m))));
        flush(&mut chunk, false)?;
    }
    for (device, hash) in d.secrets.iter() {
        chunk.secrets.push((device.clone(), Some(*hash)));
        flush(&mut chunk, false)?;
    }
    for t in d.tokens.iter() {
        chunk.tokens.push(t.clone());
        flush(&mut chunk, false)?;
    }
    flush(&mut chunk, true)?;
    write(log::encode(&SnapshotRecord::End { entities }))?;
    let file = out.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, &path).map_err(err)?;
    log::sync_dir(dir).map_err(err)?;
    Ok(bytes)
}

/// Reads `snapshot-{version}`.
fn read_snapshot(dir: &Path, version: u64) -> Result<Snapshot, RegistryError> {
    let path = snapshot_path(dir, version);
    let mut state = Arc::new(Snapshot::default());
    let mut seen_header = false;
    let mut ended = false;
    let mut entities = 0u64;
    let end = log::read_frames(&path, |json| {
        if !seen_header {
            let h: Header = log::decode(json)?;
            if h.vigil_registry != "snapshot" || h.format != FORMAT || h.version != version {
                return Err(format!(
                    "header {h:?} is not that of a format {FORMAT} snapshot at version {version}"
                ));
            }
            seen_header = true;
            return Ok(());
        }
        if ended {
            return Err("records after the end record".into());
        }
        match log::decode::<SnapshotRecord>(json)? {
            SnapshotRecord::Chunk(change) => {
                entities += change.len() as u64;
                state = Arc::new(replay(Arc::clone(&state), &change, version));
            }
            SnapshotRecord::End { entities: n } if n == entities => ended = true,
            SnapshotRecord::End { entities: n } => {
                return Err(format!(
                    "the end record counts {n} entities, the chunks {entities}"
                ));
            }
        }
        Ok(())
    })?;
    if end != End::Clean || !ended {
        // Snapshots are renamed into place only once complete and synced.
        return Err(RegistryError::Corrupt {
            path,
            message: "the snapshot is incomplete".into(),
        });
    }
    Ok(Arc::unwrap_or_clone(state))
}

/// `change` applied to `base`, at `version`.
fn replay(base: Arc<Snapshot>, change: &Change, version: u64) -> Snapshot {
    let mut tx = Txn::new(base);
    tx.data.version = version;
    tx.replay(change);
    commit(tx).0
}

/// The newest snapshot and the log after it.
fn load(
    dir: &Path,
    snaps: &[u64],
    logs: &[u64],
    options: DiskOptions,
) -> Result<(Snapshot, Disk), RegistryError> {
    let (mut state, snapshot_bytes) = match snaps.last() {
        Some(&v) => {
            let path = snapshot_path(dir, v);
            let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (Arc::new(read_snapshot(dir, v)?), bytes)
        }
        None => (Arc::new(Snapshot::default()), 0),
    };
    let base = state.data.version;
    // Segments before the snapshot are covered by it (a compaction that
    // ended before deleting them).
    let segments: Vec<u64> = logs.iter().copied().filter(|s| *s >= base).collect();
    let mut open = None;
    for (i, &start) in segments.iter().enumerate() {
        let path = log_path(dir, start);
        let corrupt = |message: String| RegistryError::Corrupt {
            path: path.clone(),
            message,
        };
        if start != state.data.version {
            return Err(corrupt(format!(
                "the segment starts after version {start}, but what precedes it ends at version {}",
                state.data.version
            )));
        }
        let mut seen_header = false;
        let mut good = 0u64;
        let end = log::read_frames(&path, |json| {
            if !seen_header {
                let h: Header = log::decode(json)?;
                if h.vigil_registry != "log" || h.format != FORMAT || h.version != start {
                    return Err(format!(
                        "header {h:?} is not that of a format {FORMAT} log after version {start}"
                    ));
                }
                seen_header = true;
            } else {
                let change: Change = log::decode(json)?;
                let expected = state.data.version + 1;
                if change.version != expected {
                    return Err(format!(
                        "the change is version {}, expected {expected}",
                        change.version
                    ));
                }
                state = Arc::new(replay(Arc::clone(&state), &change, change.version));
            }
            good += 8 + json.len() as u64;
            Ok(())
        })?;
        let last = i + 1 == segments.len();
        match end {
            End::Clean => {}
            End::Torn { at } if last => {
                warn!(path = %path.display(), at, "Registry log ends in a torn record (an append a crash interrupted); dropped.");
            }
            End::Torn { at } => {
                return Err(corrupt(format!(
                    "the record at byte {at} is cut short, and later segments follow"
                )));
            }
        }
        if last {
            open = Some(if seen_header {
                Appender::open(&path, good)?
            } else {
                // The crash came while the segment was being created.
                Appender::create(&path, &header("log", start))?
            });
        }
    }
    let log = match open {
        Some(log) => log,
        None => Appender::create(&log_path(dir, base), &header("log", base))?,
    };
    // What an interrupted compaction left behind.
    for v in snaps.iter().filter(|v| **v < base) {
        let _ = fs::remove_file(snapshot_path(dir, *v));
    }
    for s in logs.iter().filter(|s| **s < base) {
        let _ = fs::remove_file(log_path(dir, *s));
    }
    let disk = Disk {
        dir: dir.to_owned(),
        options,
        log,
        snapshot_bytes,
        compaction: None,
    };
    Ok((Arc::unwrap_or_clone(state), disk))
}

/// Turns an older engine's `registry.json` into the first snapshot.
fn migrate(
    dir: &Path,
    legacy_file: &Path,
    snapshot: Snapshot,
    options: DiskOptions,
) -> Result<(Snapshot, Disk), RegistryError> {
    let version = snapshot.data.version;
    let snapshot_bytes = write_snapshot(dir, &snapshot)?;
    let log = Appender::create(&log_path(dir, version), &header("log", version))?;
    retire_legacy(legacy_file)?;
    info!(
        from = %legacy_file.display(),
        to = %dir.display(),
        version,
        "Registry migrated from registry.json to a snapshot and change log; the old file is kept as registry.json.migrated."
    );
    let disk = Disk {
        dir: dir.to_owned(),
        options,
        log,
        snapshot_bytes,
        compaction: None,
    };
    Ok((snapshot, disk))
}

fn retire_legacy(legacy_file: &Path) -> Result<(), RegistryError> {
    let to = legacy_file.with_extension("json.migrated");
    let err = |source| RegistryError::Write {
        path: to.clone(),
        source,
    };
    fs::rename(legacy_file, &to).map_err(err)?;
    if let Some(parent) = legacy_file.parent() {
        log::sync_dir(parent).map_err(err)?;
    }
    Ok(())
}
