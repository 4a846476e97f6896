//! Parquet files: `dir/tables/{table}/{first_ts}_{last_ts}-{n}.parquet`,
//! where `first_ts` and `last_ts` are the file's earliest and latest time
//! (ms) and `n` the last WAL segment whose rows of that table the file (with
//! the files before it) holds. At open, `n` tells replay which WAL records
//! are already on disk, so a crash between writing a file and removing the
//! WAL never stores a row twice. The time range lets a query skip a file
//! without opening it; files written before it was named
//! (`{first_ts}-{n}.parquet`) are still read, and always opened.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tracing::{info, warn};

use super::Shared;
use super::seq_index::save as save_seq_index;
use super::table::ParquetFile;
use crate::StoreError;
use crate::schema::Table;
use crate::wal::{remove_segments_upto, sync_dir};

pub(crate) fn table_dir(root: &Path, table: Table) -> PathBuf {
    root.join("tables").join(table.name())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("writing Parquet file {}: {e}", path.display()))
}

/// What a file's name says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileName {
    /// Earliest and latest time of its rows (ms, inclusive); `None` in the
    /// names of files written before the range was named.
    pub(crate) time: Option<(i64, i64)>,
    /// The WAL segment it covers.
    pub(crate) covered: u64,
}

impl FileName {
    /// `{first_ts}_{last_ts}-{n}.parquet` or `{first_ts}-{n}.parquet`.
    pub(crate) fn parse(file_name: &str) -> Option<FileName> {
        let stem = file_name.strip_suffix(".parquet")?;
        let (times, n) = stem.rsplit_once('-')?;
        let covered = n.parse().ok()?;
        let time = match times.split_once('_') {
            Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
            None => {
                times.parse::<i64>().ok()?;
                None
            }
        };
        Some(FileName { time, covered })
    }

    fn format(first: i64, last: i64, covered: u64) -> String {
        format!("{first}_{last}-{covered}.parquet")
    }
}

/// `n` of a file's name.
pub(crate) fn covered_segment(file_name: &str) -> Option<u64> {
    FileName::parse(file_name).map(|f| f.covered)
}

/// Existing files per table, and per table the WAL segment up to which its
/// rows are in those files. Leftovers of an interrupted flush (`*.tmp`) are removed.
pub(crate) fn open_files(root: &Path) -> Result<([Vec<ParquetFile>; 7], [u64; 7]), StoreError> {
    let mut files: [Vec<(u64, ParquetFile)>; 7] = Default::default();
    let mut covered = [0u64; 7];
    for table in Table::ALL {
        let dir = table_dir(root, table);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                info!(path = %path.display(), "Removing a Parquet file left unfinished by a crash.");
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let Some(n) = covered_segment(&name) else {
                if name.ends_with(".parquet") {
                    warn!(path = %path.display(), "Ignoring a Parquet file whose name is not {{first_ts}}_{{last_ts}}-{{n}}.parquet.");
                }
                continue;
            };
            let meta = entry.metadata().map_err(io_err(&path))?;
            covered[table.index()] = covered[table.index()].max(n);
            files[table.index()].push((n, ParquetFile::new(path, &meta)?));
        }
    }
    let files = files.map(|mut v| {
        v.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
        v.into_iter().map(|(_, f)| f).collect()
    });
    Ok((files, covered))
}

/// The name of the file holding `batch` and covering WAL segment `n`: the
/// earliest and latest time of its rows (ms; 0 for a table without them).
pub(crate) fn file_name(table: Table, batch: &RecordBatch, n: u64) -> String {
    let times = batch
        .column_by_name(table.time_column())
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>());
    let first = times.and_then(arrow::compute::min).unwrap_or(0);
    let last = times.and_then(arrow::compute::max).unwrap_or(0);
    FileName::format(first, last, n)
}

/// Writes one table's rows, sorted, as `{first_ts}_{last_ts}-{wal_upto}.parquet`:
/// temporary name, fsync, rename, fsync of the directory.
pub(crate) fn write_file(
    root: &Path,
    table: Table,
    batches: &[RecordBatch],
    wal_upto: u64,
) -> Result<ParquetFile, StoreError> {
    let dir = table_dir(root, table);
    let schema = table.schema();
    let all = concat_batches(&schema, batches).map_err(|e| parquet_err(&dir, e))?;
    let sort: Vec<SortColumn> = table
        .sort_columns()
        .iter()
        .filter_map(|c| all.column_by_name(c))
        .map(|values| SortColumn {
            values: std::sync::Arc::clone(values),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&sort, None).map_err(|e| parquet_err(&dir, e))?;
    let sorted = take_record_batch(&all, &indices).map_err(|e| parquet_err(&dir, e))?;
    let name = file_name(table, &sorted, wal_upto);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let result = (|| {
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_err(&tmp, e))?;
        writer.write(&sorted).map_err(|e| parquet_err(&tmp, e))?;
        let file = writer.into_inner().map_err(|e| parquet_err(&tmp, e))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&dir).map_err(io_err(&dir))?;
        let meta = fs::metadata(&path).map_err(io_err(&path))?;
        ParquetFile::new(path.clone(), &meta)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes every frozen generation to Parquet, publishes the files while
/// dropping those generations, then removes the WAL segments they covered.
pub(crate) fn flush_frozen(shared: &Shared) -> Result<(), StoreError> {
    let generations = shared.tables.read().frozen();
    let Some(wal_upto) = generations.iter().map(|g| g.wal_upto).max() else {
        return Ok(());
    };
    let ids: Vec<u64> = generations.iter().map(|g| g.id).collect();
    let mut written = Vec::new();
    let mut converted = Vec::new();
    let mut rows = 0usize;
    for table in Table::ALL {
        let mut batches = Vec::new();
        for g in &generations {
            let converted = g.tables[table.index()]
                .batches(table)
                .map_err(|e| parquet_err(&table_dir(&shared.root, table), e))?;
            batches.extend(converted);
        }
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if n == 0 {
            continue;
        }
        match write_file(&shared.root, table, &batches, wal_upto) {
            Ok(file) => {
                rows += n;
                written.push((table, file));
                converted.push((table, batches));
            }
            Err(e) => {
                // These rows stay in memory and in the WAL; their next file
                // must not meet this one at open, or they would count twice.
                for (_, f) in &written {
                    if let Err(rm) = fs::remove_file(&f.path) {
                        warn!(path = %f.path.display(), error = %rm, "Could not remove a Parquet file of a failed flush.");
                    }
                }
                return Err(e);
            }
        }
    }
    let files = written.len();
    let index = {
        // One step for `recover`: these rows leave memory and enter the index.
        let mut index = shared.seq_index.lock();
        shared.tables.write().publish(&ids, written);
        for (table, batches) in &converted {
            for batch in batches {
                index.fold(*table, batch);
            }
        }
        index.covered = index.covered.max(wal_upto);
        index.encode()
    };
    // Harmless if it fails: the next open reads the files the index misses.
    if let Err(e) = index.and_then(|bytes| save_seq_index(&shared.root, &bytes)) {
        warn!(error = %e, "Cannot write the seq index; the next start reads the newer Parquet files instead.");
    }
    let wal_dir = shared.root.join("wal");
    match remove_segments_upto(&wal_dir, wal_upto) {
        Ok(segments) => info!(
            rows,
            files, wal_upto, segments, "Flushed memory to Parquet."
        ),
        // Harmless: replay skips what the files already hold, and the next flush retries.
        Err(e) => {
            warn!(error = %e, wal_upto, "Flushed to Parquet but could not remove old WAL segments.")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{FileName, covered_segment};

    #[test]
    fn file_names_carry_the_covered_segment() {
        assert_eq!(covered_segment("1732300000000-17.parquet"), Some(17));
        assert_eq!(covered_segment("-5-3.parquet"), Some(3));
        assert_eq!(covered_segment("17.parquet"), None);
        assert_eq!(covered_segment("a-1.parquet"), None);
        assert_eq!(covered_segment("1-2.parquet.tmp"), None);
        assert_eq!(covered_segment("1_2-3.parquet"), Some(3));
        assert_eq!(covered_segment("1_-3.parquet"), None);
    }

    #[test]
    fn file_names_carry_the_time_range() {
        let name = FileName::format(-5, 1732300000000, 17);
        assert_eq!(name, "-5_1732300000000-17.parquet");
        assert_eq!(
            FileName::parse(&name),
            Some(FileName {
                time: Some((-5, 1732300000000)),
                covered: 17
            })
        );
        // Written before the range was named: read, with no range.
        assert_eq!(
            FileName::parse("1732300000000-17.parquet"),
            Some(FileName {
                time: None,
                covered: 17
            })
        );
        assert_eq!(FileName::parse("1_x-3.parquet"), None);
    }
}
