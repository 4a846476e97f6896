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
    /// Deeper or larger than the SQL limits allow; refused before it ran.
    #[error("query too complex: {0}")]
    QueryTooComplex(String),
    /// Needed more memory than the SQL budget.
    #[error("query needs too much memory: {0}")]
    QueryMemory(String),
    /// Every query slot stayed taken for as long as the query may run.
    #[error("all {0} query slots are busy")]
    QueryBusy(usize),
    #[error("reference table {table:?} is invalid: {why}")]
    InvalidReferenceTable { table: String, why: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("PostgreSQL: {what}: {source}")]
    Database {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("schema migration: {0}")]
    Migration(String),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { .. } | StoreError::Closed => true,
            StoreError::Database { source, .. } => db_retryable(source),
            _ => false,
        }
    }

    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
        let what = what.into();
        move |source| StoreError::Database { what, source }
    }
}

/// Connection trouble, a server shutting down or out of resources (disk
/// full is class 53) can pass; a statement PostgreSQL refuses will not.
fn db_retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
        }
    }
}
