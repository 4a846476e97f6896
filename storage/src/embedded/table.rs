//! What is committed, as queries see it: per table, Arrow chunks and a short
//! row tail in memory (`active`), rows being written to Parquet (`frozen`),
//! and the Parquet files already on disk. All three sit behind one lock so a
//! query's snapshot holds every committed row exactly once.
//!
//! ```text
//!  writer ──apply──▶ active tail ──seal every SEAL_ROWS──▶ active chunks
//!  writer ──freeze (WAL rotated)──▶ frozen generation ──flusher──▶ Parquet file
//!                                   (dropped in the same critical section
//!                                    that makes the file visible)
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::reference::RefData;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::object_store::path::Path as ObjectPath;
use parking_lot::RwLock;
use tracing::error;

use super::batch::to_batch;
use super::parquet::FileName;
use crate::schema::Table;
use crate::{Record, StoreError};

/// Rows per sealed Arrow chunk: large enough for vectorised scans, small
/// enough that converting the tail on each query stays cheap.
pub(crate) const SEAL_ROWS: usize = 8192;

/// One table's rows in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    pub(crate) sealed: Vec<RecordBatch>,
    pub(crate) tail: Vec<Arc<Record>>,
}

impl Rows {
    /// Every row as Arrow (the tail converted now).
    pub(crate) fn batches(&self, table: Table) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut out = self.sealed.clone();
        if !self.tail.is_empty() {
            out.push(to_batch(table, &self.tail)?);
        }
        Ok(out)
    }
}

/// Converts full tails to Arrow chunks; the conversion runs without the lock
/// so queries are not held up by it.
pub(crate) fn seal_due(tables: &RwLock<Tables>, due: &[Table]) {
    for &table in due {
        loop {
            let Some(rows) = tables.read().tail_to_seal(table) else {
                break;
            };
            match to_batch(table, &rows) {
                Ok(batch) => tables.write().seal(table, batch),
                Err(e) => {
                    error!(table = table.name(), error = %e, "Could not convert rows to Arrow; they stay as rows.");
                    break;
                }
            }
        }
    }
}

fn per_table<T>(f: impl FnMut(usize) -> T) -> [T; 7] {
    std::array::from_fn(f)
}

/// Rows moved out of `active` when the WAL was rotated; every record of WAL
/// segments `<= wal_upto` is in this generation or an earlier one.
#[derive(Debug, Clone)]
pub(crate) struct Frozen {
    pub(crate) id: u64,
    pub(crate) wal_upto: u64,
    pub(crate) tables: [Rows; 7],
}

/// One Parquet file of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParquetFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// With `size`, tells the query engine's metadata cache whether what it
    /// holds for this path is still this file's.
    pub(crate) modified: chrono::DateTime<chrono::Utc>,
    /// The same path as DataFusion's local object store names it.
    pub(crate) location: ObjectPath,
    /// Earliest and latest value of the table's time column (ms, inclusive),
    /// as its name says; `None` for a file named without them.
    pub(crate) time: Option<(i64, i64)>,
}

impl ParquetFile {
    /// `path` must be absolute (the store's root is canonicalised at open).
    pub(crate) fn new(path: PathBuf, meta: &std::fs::Metadata) -> Result<Self, StoreError> {
        let location = ObjectPath::from_absolute_path(&path).map_err(|e| {
            StoreError::Other(format!(
                "Parquet file {} has no object-store path: {e}",
                path.display()
            ))
        })?;
        let time = path
            .file_name()
            .and_then(|n| FileName::parse(&n.to_string_lossy()))
            .and_then(|n| n.time);
        Ok(Self {
            path,
            time,
            size: meta.len(),
            modified: meta
                .modified()
                .map_or(chrono::DateTime::UNIX_EPOCH, chrono::DateTime::from),
            location,
        })
    }
}

#[derive(Debug)]
pub(crate) struct Tables {
    active: [Rows; 7],
    active_rows: usize,
    frozen: Vec<Frozen>,
    next_frozen_id: u64,
    files: [Vec<ParquetFile>; 7],
    refs: BTreeMap<String, RefData>,
    /// Views over the tables, in the order they were defined (a view may
    /// read an earlier one): name and SELECT.
    views: Vec<(String, String)>,
}

/// What one query reads: taken under the lock, converted outside it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) tables: [TableSnapshot; 7],
    pub(crate) refs: Vec<(String, RefData)>,
    pub(crate) views: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub(crate) struct TableSnapshot {
    pub(crate) memory: Vec<Rows>,
    pub(crate) files: Vec<ParquetFile>,
}

impl Tables {
    pub(crate) fn new(files: [Vec<ParquetFile>; 7]) -> Self {
        Self {
            active: per_table(|_| Rows::default()),
            active_rows: 0,
            frozen: Vec::new(),
            next_frozen_id: 1,
            files,
            refs: BTreeMap::new(),
            views: Vec::new(),
        }
    }

    /// Appends committed records; returns the tables whose tail is due for sealing.
    pub(crate) fn apply(&mut self, records: impl IntoIterator<Item = Arc<Record>>) -> Vec<Table> {
        for record in records {
            let table = Table::of_record(&record);
            self.active[table.index()].tail.push(record);
            self.active_rows += 1;
        }
        Table::ALL
            .into_iter()
            .filter(|t| self.active[t.index()].tail.len() >= SEAL_ROWS)
            .collect()
    }

    /// The first [`SEAL_ROWS`] of a tail, to be converted without the lock.
    pub(crate) fn tail_to_seal(&self, table: Table) -> Option<Vec<Arc<Record>>> {
        let tail = &self.active[table.index()].tail;
        (tail.len() >= SEAL_ROWS).then(|| tail[..SEAL_ROWS].to_vec())
    }

    /// Replaces the first `rows` of the tail by their converted chunk. Only
    /// the writer changes `active`, so the tail still starts with those rows.
    pub(crate) fn seal(&mut self, table: Table, batch: RecordBatch) {
        let rows = &mut self.active[table.index()];
        let n = batch.num_rows().min(rows.tail.len());
        rows.tail.drain(..n);
        rows.sealed.push(batch);
    }

    pub(crate) fn active_rows(&self) -> usize {
        self.active_rows
    }

    pub(crate) fn has_frozen(&self) -> bool {
        !self.frozen.is_empty()
    }

    /// Moves every active row into a new frozen generation covering WAL
    /// segments up to `wal_upto`. No-op when nothing is active.
    pub(crate) fn freeze(&mut self, wal_upto: u64) {
        if self.active_rows == 0 {
            return;
        }
        let tables = std::mem::replace(&mut self.active, per_table(|_| Rows::default()));
        self.active_rows = 0;
        self.frozen.push(Frozen {
            id: self.next_frozen_id,
            wal_upto,
            tables,
        });
        self.next_frozen_id += 1;
    }

    pub(crate) fn frozen(&self) -> Vec<Frozen> {
        self.frozen.clone()
    }

    /// Makes new files visible and drops the generations they hold, in one
    /// step: a query sees those rows either in memory or on disk, once.
    pub(crate) fn publish(&mut self, generations: &[u64], files: Vec<(Table, ParquetFile)>) {
        self.frozen.retain(|f| !generations.contains(&f.id));
        for (table, file) in files {
            self.files[table.index()].push(file);
        }
    }

    pub(crate) fn set_ref(&mut self, name: String, data: RefData) {
        self.refs.insert(name, data);
    }

    /// Defines or replaces a view (a replaced one keeps its place).
    pub(crate) fn set_view(&mut self, name: String, sql: String) -> Option<String> {
        match self.views.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => Some(std::mem::replace(old, sql)),
            None => {
                self.views.push((name, sql));
                None
            }
        }
    }

    pub(crate) fn remove_view(&mut self, name: &str, previous: Option<String>) {
        match previous {
            Some(sql) => {
                self.set_view(name.to_owned(), sql);
            }
            None => self.views.retain(|(n, _)| n != name),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let tables = per_table(|i| {
            let mut memory = Vec::with_capacity(self.frozen.len() + 1);
            memory.extend(self.frozen.iter().map(|f| f.tables[i].clone()));
            memory.push(self.active[i].clone());
            TableSnapshot {
                memory,
                files: self.files[i].clone(),
            }
        });
        let refs = self
            .refs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Snapshot {
            tables,
            refs,
            views: self.views.clone(),
        }
    }
}
