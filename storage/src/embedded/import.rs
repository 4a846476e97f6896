//! Bulk loads straight into Parquet, bypassing the WAL: a migration from
//! another system, or a benchmark's data set of 10⁸ readings, that would
//! take an hour of group commits.
//!
//! ```text
//!  Importer::open(dir) ── store closed, WAL empty (else refused)
//!  write(records) ──▶ per table: to Arrow (as the writer) ──▶ `{first_ts}_{last_ts}-{n}.parquet`
//!                     (as a flush: same sort, encoding, naming) ──▶ fold into the seq index
//!  finish() ──▶ seq index saved once
//! ```
//!
//! `n`, the WAL segment an imported file claims to cover, is the newest
//! segment there is: empty (checked at open), so replay skips nothing it
//! should not, and no later than any segment the store will write after it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch::to_batch;
use super::parquet::{file_name, open_files, table_dir, write_file};
use super::seq_index::{self, SeqIndex};
use crate::schema::Table;
use crate::wal::{self, WalWriter};
use crate::{Record, StoreError};

/// Writes records into the Parquet files of a store that is not open. Each
/// [`Importer::write`] call makes one file per table it has rows of, as one
/// flush of the running store would. Share it between threads to write
/// files in parallel; call [`Importer::finish`] at the end.
pub struct Importer {
    root: PathBuf,
    /// The WAL segment every imported file covers.
    segment: u64,
    /// The seq index with every file so far folded in; saved by `finish`.
    /// Locked only to fold one file's rows.
    index: Mutex<SeqIndex>,
    /// Names being written, so two threads never pick the same one.
    names: Mutex<HashSet<PathBuf>>,
}

/// What one [`Importer::write`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub rows: usize,
    pub files: usize,
    pub bytes: u64,
}

impl Importer {
    /// Opens the store directory `dir` (created if missing) for a bulk load.
    /// Refused while its WAL holds records: open and close the store first,
    /// which flushes them. The store itself must not be open meanwhile.
    pub fn open(dir: &Path) -> Result<Importer, StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let root = std::fs::canonicalize(dir).map_err(io_err(dir))?;
        let wal_dir = root.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        let mut pending = 0usize;
        let replayed = wal::replay(&wal_dir, |_, records| pending += records.len())?;
        if pending > 0 {
            return Err(StoreError::Other(format!(
                "{}: the write-ahead log holds {pending} records not yet in Parquet; \
                 open and close the store before importing",
                root.display()
            )));
        }
        let (files, covered) = open_files(&root)?;
        let mut segment = replayed
            .last_segment
            .max(covered.into_iter().max().unwrap_or(0));
        if segment == 0 {
            // A new store: make segment 1 so the files can name it. The
            // store then opens its log at 2, and replay never skips a
            // segment it writes.
            WalWriter::open(wal_dir.clone(), 1).map_err(io_err(&wal_dir))?;
            segment = 1;
        }
        let index = super::open_seq_index(&root, &files)?;
        Ok(Importer {
            root,
            segment,
            index: Mutex::new(index),
            names: Mutex::new(HashSet::new()),
        })
    }

    /// Stores `records` as one Parquet file per table they belong to,
    /// sorted, encoded and named as a flush writes them. A record is stored
    /// as it is: nothing is de-duplicated against earlier imports.
    pub fn write(&self, records: Vec<Record>) -> Result<Imported, StoreError> {
        let mut by_table: [Vec<Arc<Record>>; 7] = Default::default();
        for record in records {
            by_table[Table::of_record(&record).index()].push(Arc::new(record));
        }
        let mut done = Imported::default();
        for table in Table::ALL {
            let rows = &by_table[table.index()];
            if rows.is_empty() {
                continue;
            }
            let batch = to_batch(table, rows).map_err(|e| {
                StoreError::Other(format!("{}: converting rows: {e}", table.name()))
            })?;
            let file = {
                let _name = self.reserve(table, &batch)?;
                write_file(
                    &self.root,
                    table,
                    std::slice::from_ref(&batch),
                    self.segment,
                )?
            };
            self.index.lock().fold(table, &batch);
            done.rows += batch.num_rows();
            done.files += 1;
            done.bytes += file.size;
        }
        Ok(done)
    }

    /// Saves the seq index, so that the store's next start knows every
    /// imported seq without reading the files again.
    pub fn finish(self) -> Result<(), StoreError> {
        let mut index = self.index.into_inner();
        index.covered = index.covered.max(self.segment);
        seq_index::save(&self.root, &index.encode()?)
    }

    /// The file `write_file` will make for `batch`, held until dropped;
    /// refused when it exists or another thread is writing it.
    fn reserve(
        &self,
        table: Table,
        batch: &arrow::array::RecordBatch,
    ) -> Result<Name<'_>, StoreError> {
        let path = table_dir(&self.root, table).join(file_name(table, batch, self.segment));
        if path.exists() || !self.names.lock().insert(path.clone()) {
            return Err(StoreError::Other(format!(
                "{}: an imported file with the same first and last millisecond exists; \
                 import those rows in one call",
                path.display()
            )));
        }
        Ok(Name {
            names: &self.names,
            path,
        })
    }
}

/// A reserved file name.
struct Name<'a> {
    names: &'a Mutex<HashSet<PathBuf>>,
    path: PathBuf,
}

impl Drop for Name<'_> {
    fn drop(&mut self) {
        self.names.lock().remove(&self.path);
    }
}
