//! The seq index: per device, the seqs its Parquet rows hold (a bounded
//! [`StoredSeqs`]) and when a reading of it was last received. It lets a
//! restart rebuild ingest's de-duplication without scanning years of
//! Parquet: the file `dir/seq-index` holds it, rewritten at every Parquet
//! flush (after the flush's files, before the WAL segments they cover are
//! removed).
//!
//! The file records `covered`, the WAL segment up to which it holds the rows
//! of every Parquet file. At open, files that cover more (a crash between a
//! flush and the index write, or a missing or damaged index) are read for
//! `device_id, seq, received_at` and folded in; rows still in memory (WAL
//! replay) are folded in by `recover`.
//!
//! Format: `VGSEQIX1`, then `[u32 len LE][u32 crc32 LE]` and a postcard body.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{TimestampMillisecondType, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tracing::warn;
use vigil_model::{DeviceId, EpochMs};

use crate::schema::Table;
use crate::wal::sync_dir;
use crate::{StoreError, StoredSeqs};

const MAGIC: &[u8; 8] = b"VGSEQIX1";
const FILE_NAME: &str = "seq-index";

/// What the index knows of one device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) seqs: StoredSeqs,
    /// Latest `received_at` of a reading (dead letters do not count).
    pub(crate) last_seen: Option<EpochMs>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SeqIndex {
    /// Every Parquet file covering WAL segments up to this one is folded in.
    pub(crate) covered: u64,
    pub(crate) devices: HashMap<DeviceId, Entry>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("seq index {}: {why}", path.display()))
}

pub(crate) fn path(root: &Path) -> PathBuf {
    root.join(FILE_NAME)
}

impl SeqIndex {
    /// The index as last written; empty (covering nothing) when there is
    /// none or it cannot be read, which costs a scan of the Parquet files.
    pub(crate) fn load(root: &Path) -> SeqIndex {
        let path = path(root);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SeqIndex::default(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Cannot read the seq index; rebuilding it from the Parquet files.");
                return SeqIndex::default();
            }
        };
        match decode(&bytes) {
            Ok(index) => index,
            Err(why) => {
                warn!(path = %path.display(), %why, "The seq index is damaged; rebuilding it from the Parquet files.");
                SeqIndex::default()
            }
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&[0u8; 8]);
        let mut buf = postcard::to_extend(self, buf)
            .map_err(|e| StoreError::Other(format!("encoding the seq index: {e}")))?;
        let body_len = (buf.len() - 16) as u32;
        let crc = crc32fast::hash(&buf[16..]);
        buf[8..12].copy_from_slice(&body_len.to_le_bytes());
        buf[12..16].copy_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }

    /// Folds one batch of a reading table or of `dead_letters` (rows that
    /// took a seq). Other tables, and files older than the `seq` column of
    /// `dead_letters`, hold nothing for it.
    pub(crate) fn fold(&mut self, table: Table, batch: &RecordBatch) {
        let readings = Table::READINGS.contains(&table);
        if !readings && table != Table::DeadLetters {
            return;
        }
        let (Some(ids), Some(seqs)) = (
            batch
                .column_by_name("device_id")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("seq")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
        ) else {
            return;
        };
        let seen = batch
            .column_by_name("received_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>());
        let mut i = 0;
        let n = batch.num_rows();
        while i < n {
            // Rows of one device sit together in Parquet files: one map
            // lookup per device, not per row.
            let mut end = i + 1;
            while end < n && ids.is_valid(i) && ids.is_valid(end) && ids.value(end) == ids.value(i)
            {
                end += 1;
            }
            // A dead letter that took no seq is nobody's history.
            let any = (i..end).any(|row| seqs.is_valid(row));
            let id = (any && ids.is_valid(i))
                .then(|| DeviceId::new(ids.value(i)).ok())
                .flatten();
            if let Some(id) = id {
                let entry = self.devices.entry(id).or_default();
                for row in i..end {
                    if seqs.is_valid(row) {
                        entry.seqs.insert(seqs.value(row));
                    }
                    if readings && let Some(seen) = seen.filter(|s| s.is_valid(row)) {
                        let t = seen.value(row);
                        entry.last_seen = Some(entry.last_seen.map_or(t, |l| l.max(t)));
                    }
                }
            }
            i = end;
        }
    }

    /// Folds a Parquet file of `table`, reading only the columns it needs.
    pub(crate) fn fold_file(&mut self, table: Table, file: &Path) -> Result<usize, StoreError> {
        let f = File::open(file).map_err(|source| StoreError::Io {
            path: file.to_owned(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(file, e))?;
        let mask = ProjectionMask::columns(
            builder.parquet_schema(),
            ["device_id", "seq", "received_at"],
        );
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| bad(file, e))?;
        let mut rows = 0;
        for batch in reader {
            let batch = batch.map_err(|e| bad(file, e))?;
            rows += batch.num_rows();
            self.fold(table, &batch);
        }
        Ok(rows)
    }
}

fn decode(bytes: &[u8]) -> Result<SeqIndex, String> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a seq index".into());
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let body = &bytes[16..];
    if body.len() != len || crc32fast::hash(body) != crc {
        return Err("length or checksum does not match".into());
    }
    postcard::from_bytes(body).map_err(|e| format!("undecodable: {e}"))
}

/// Writes the encoded index under a temporary name and renames it once
/// synced, so the file is either the old index or the new one.
pub(crate) fn save(root: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let path = path(root);
    let tmp = path.with_extension("tmp");
    let io_err = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(io_err)?;
    f.write_all(bytes).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    sync_dir(root).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = SeqIndex {
            covered: 7,
            ..SeqIndex::default()
        };
        let entry = index
            .devices
            .entry(DeviceId::new("EL1").unwrap())
            .or_default();
        entry.seqs.insert_run(1, 40);
        entry.seqs.insert(42);
        entry.last_seen = Some(1_732_300_000_000);
        let bytes = index.encode().unwrap();
        save(dir.path(), &bytes).unwrap();
        let back = SeqIndex::load(dir.path());
        assert_eq!(back.covered, 7);
        let e = &back.devices[&DeviceId::new("EL1").unwrap()];
        assert_eq!(e.seqs.runs(), [(1, 40), (42, 42)]);
        assert_eq!(e.last_seen, Some(1_732_300_000_000));

        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        std::fs::write(path(dir.path()), &damaged).unwrap();
        let back = SeqIndex::load(dir.path());
        assert_eq!((back.covered, back.devices.len()), (0, 0));
    }
}
