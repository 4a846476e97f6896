use std::path::PathBuf;

/// Storage failures. `is_retryable` tells the caller whether trying again
/// later can help (an outage) or not (a bad query).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log {path} is corrupt at byte {offset}: {why}")]
    CorruptWal {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("invalid SQL: {0}")]
    InvalidQuery(String),
    #[error("query took longer than {0:?} and was cancelled")]
    QueryTimeout(std::time::Duration),
    #[error("query failed: {0}")]
    Query(String),
    #[error("reference table {table:?} is invalid: {why}")]
    InvalidReferenceTable { table: String, why: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::Closed)
    }
}
