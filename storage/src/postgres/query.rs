//! SQL from the API or the CLI to Arrow batches, like the embedded backend
//! answers.
//!
//! Each query gets a fresh connection as a read-only login role: the reader
//! (every table of the schema) or, for a grant of regions (analysts,
//! supervisors), the analyst role whose search path is the scoped schema
//! (`security_barrier` views that show only rows of the grant, filtered
//! before any expression of the query sees a row; tables without a region
//! are not there). The connection runs one statement in a READ ONLY
//! transaction under `statement_timeout` and, for people's queries,
//! `work_mem` (the roles carry `temp_file_limit`). Rows are streamed and
//! the answer is cut at the row and byte caps, so the engine holds no more
//! than that; a query given up on is cancelled on the server. Result
//! types Arrow has a natural form for are decoded from the binary protocol;
//! any other column (numeric, interval, json, arrays, …) is cast to
//! `double precision` (numeric) or `text` by wrapping the statement.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, ToSql, Type};

use super::PostgresStore;
use super::config::ident;
use super::copy::PG_EPOCH_MS;
use crate::limits::{self, AnswerBudget};
use crate::{QueryOptions, QueryOutput, StoreError};

/// Rows per Arrow batch of the answer.
const BATCH_ROWS: usize = 8192;

pub(crate) async fn run(
    store: &PostgresStore,
    sql: &str,
    opts: &QueryOptions,
) -> Result<QueryOutput, StoreError> {
    let config = &store.config;
    let started = std::time::Instant::now();
    let _slot = match opts.guarded {
        true => {
            // Off the engine's worker threads: counting a long text takes milliseconds.
            let (text, sql_limits) = (sql.to_owned(), config.sql.clone());
            tokio::task::spawn_blocking(move || {
                let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
                limits::check_shape(&text, &dialect, &sql_limits)
            })
            .await
            .map_err(|e| StoreError::Other(format!("the SQL shape check failed: {e}")))??;
            Some(store.gate.enter(opts.timeout).await?)
        }
        false => None,
    };
    let (role, search_path) = match &opts.regions {
        None => (
            config.reader_role(),
            format!("{}, public", ident(&config.schema)),
        ),
        Some(_) => (
            config.analyst_role(),
            format!("{}, public", ident(&config.scoped_schema())),
        ),
    };
    let secret = super::migrate::role_secret(store.owner().await?.client()?, &role).await?;
    let mut pg: tokio_postgres::Config = config
        .url
        .parse()
        .map_err(StoreError::db("parsing the store URL"))?;
    pg.user(&role).password(secret);
    let mut client = super::connect(&pg).await?;

    let scoped_pid = match &opts.regions {
        None => None,
        Some(regions) => {
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(StoreError::db("asking the query's process id"))?
                .get(0);
            let patterns: Vec<String> =
                regions.iter().map(|r| format!("{}%", r.prefix())).collect();
            store
                .owner()
                .await?
                .client()?
                .execute(
                    "INSERT INTO vigil_query_scope (pid, patterns) VALUES ($1, $2)
                     ON CONFLICT (pid) DO UPDATE SET patterns = EXCLUDED.patterns",
                    &[&pid, &patterns],
                )
                .await
                .map_err(StoreError::db("setting the query's scope"))?;
            Some(pid)
        }
    };
    let left = opts.timeout.saturating_sub(started.elapsed());
    let timeout_ms = left.as_millis().clamp(1, i32::MAX as u128);
    let work_mem = match opts.guarded {
        true => format!(" SET work_mem = {};", config.sql_work_mem_kb),
        false => String::new(),
    };
    // Cancels the statement on the server if this future is dropped before
    // the answer is in (timed out, caller gone, engine stopping).
    let mut cancel = CancelOnDrop(Some(client.cancel_token()));
    let result = async {
        client
            .batch_execute(&format!(
                "SET search_path TO {search_path}; SET statement_timeout = {timeout_ms};{work_mem} BEGIN READ ONLY"
            ))
            .await
            .map_err(StoreError::db("preparing the query session"))?;
        // The database cancels at statement_timeout; this only guards the network.
        let limit = left + std::time::Duration::from_secs(5);
        let budget = AnswerBudget::new(opts.max_rows, opts.max_bytes);
        tokio::time::timeout(limit, execute(&mut client, sql, budget))
            .await
            .map_err(|_| StoreError::QueryTimeout(opts.timeout))?
    }
    .await;
    // An answer, or PostgreSQL's own error, means the statement is over;
    // only a network timeout leaves it possibly running.
    if !matches!(result, Err(StoreError::QueryTimeout(_))) {
        cancel.0 = None;
    }
    drop(cancel);
    drop(client);
    if let Some(pid) = scoped_pid
        && let Ok(mut owner) = store.owner().await
        && let Ok(c) = owner.client()
    {
        let _ = c
            .execute("DELETE FROM vigil_query_scope WHERE pid = $1", &[&pid])
            .await;
    }
    result.map_err(|e| user_error(e, opts))
}

/// Asks the server to cancel the running statement when dropped armed.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            });
        }
    }
}

/// Errors caused by the statement are the user's (400), a cancel is a
/// timeout, running out of memory or temporary file space is the memory
/// limit. For people's queries, only errors about the statement's text
/// (syntax, names: class 42, 0A) keep their message; the others may quote
/// a value and are scrubbed.
fn user_error(e: StoreError, opts: &QueryOptions) -> StoreError {
    let StoreError::Database { source, what } = e else {
        return e;
    };
    let Some(db) = source.as_db_error() else {
        return StoreError::Database { what, source };
    };
    let code = db.code().code();
    let about_text = code.starts_with("42") || code.starts_with("0A");
    let mut message = db.message().to_owned();
    if about_text && let Some(tokio_postgres::error::ErrorPosition::Original(at)) = db.position() {
        message.push_str(&format!(" (at character {at})"));
    }
    if opts.guarded && !about_text {
        message = limits::scrub(&message);
    }
    if code == "57014" {
        StoreError::QueryTimeout(opts.timeout)
    } else if code == "53200" || code == "53400" || code == "53100" {
        StoreError::QueryMemory(message)
    } else if code.starts_with("54") {
        StoreError::QueryTooComplex(message)
    } else if ["42", "22", "0A", "25", "21", "2F", "3F"]
        .iter()
        .any(|class| code.starts_with(class))
    {
        StoreError::InvalidQuery(message)
    } else {
        StoreError::Query(message)
    }
}

pub(super) async fn execute(
    client: &mut Client,
    sql: &str,
    mut budget: AnswerBudget,
) -> Result<QueryOutput, StoreError> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    // A prepared statement holds exactly one statement: several are refused here.
    let mut stmt = client
        .prepare(sql)
        .await
        .map_err(StoreError::db("preparing the query"))?;
    if !stmt.params().is_empty() {
        return Err(StoreError::InvalidQuery(
            "parameters ($1, …) are not supported".into(),
        ));
    }
    if stmt.columns().iter().any(|c| kind(c.type_()).is_none()) {
        let names: Vec<String> = (1..=stmt.columns().len())
            .map(|i| format!("c{i}"))
            .collect();
        let select: Vec<String> = stmt
            .columns()
            .iter()
            .zip(&names)
            .map(|(c, n)| {
                let cast = match kind(c.type_()) {
                    Some(_) => String::new(),
                    None if *c.type_() == Type::NUMERIC => "::double precision".into(),
                    None => "::text".into(),
                };
                format!("{n}{cast} AS {}", ident(c.name()))
            })
            .collect();
        let wrapped = format!(
            "SELECT {} FROM ({sql}) AS vigil_q ({})",
            select.join(", "),
            names.join(", ")
        );
        stmt = client
            .prepare(&wrapped)
            .await
            .map_err(StoreError::db("preparing the query"))?;
    }
    let kinds: Vec<Kind> = stmt
        .columns()
        .iter()
        .map(|c| kind(c.type_()).unwrap_or(Kind::Text))
        .collect();
    let schema = Arc::new(Schema::new(
        stmt.columns()
            .iter()
            .zip(&kinds)
            .map(|(c, k)| Field::new(c.name(), k.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let rows = client
        .query_raw(&stmt, std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(StoreError::db("running the query"))?;
    let mut rows = std::pin::pin!(rows);
    let mut builders: Vec<Builder> = kinds.iter().map(|k| Builder::new(*k)).collect();
    let mut batches = Vec::new();
    let mut in_batch = 0usize;
    while let Some(row) = rows.next().await {
        let row = row.map_err(StoreError::db("reading the answer"))?;
        let raws = (0..kinds.len())
            .map(|i| row.try_get::<_, Raw>(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("decoding a value"))?;
        // Arrow keeps each value plus about 8 bytes of offsets and validity.
        let bytes = raws.iter().map(|r| r.0.map_or(0, <[u8]>::len) + 8).sum();
        if !budget.take_row(bytes) {
            break;
        }
        for (b, raw) in builders.iter_mut().zip(&raws) {
            b.push(raw.0).map_err(StoreError::Query)?;
        }
        in_batch += 1;
        if in_batch == BATCH_ROWS {
            batches.push(finish(&schema, &mut builders)?);
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        batches.push(finish(&schema, &mut builders)?);
    }
    Ok(QueryOutput {
        schema,
        batches,
        truncated: budget.truncated,
    })
}

fn finish(schema: &Arc<Schema>, builders: &mut [Builder]) -> Result<RecordBatch, StoreError> {
    let cols: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    RecordBatch::try_new(Arc::clone(schema), cols).map_err(|e| StoreError::Query(e.to_string()))
}

/// Any value, undecoded (`None` for NULL).
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Text,
    Bytes,
    TimestampTz,
    Timestamp,
    Date,
}

fn kind(ty: &Type) -> Option<Kind> {
    Some(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::I16,
        Type::INT4 => Kind::I32,
        Type::INT8 => Kind::I64,
        Type::FLOAT4 => Kind::F32,
        Type::FLOAT8 => Kind::F64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
        Type::BYTEA => Kind::Bytes,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::DATE => Kind::Date,
        _ => return None,
    })
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bytes => DataType::Binary,
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            Kind::Date => DataType::Date32,
        }
    }
}

enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Time(TimestampMillisecondBuilder, bool),
    Date(Date32Builder),
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// Microseconds since 2000 to milliseconds since 1970 (±infinity clamp).
fn pg_micros_to_ms(us: i64) -> i64 {
    us.div_euclid(1000).saturating_add(PG_EPOCH_MS)
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::I16 => Builder::I16(Int16Builder::new()),
            Kind::I32 => Builder::I32(Int32Builder::new()),
            Kind::I64 => Builder::I64(Int64Builder::new()),
            Kind::F32 => Builder::F32(Float32Builder::new()),
            Kind::F64 => Builder::F64(Float64Builder::new()),
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Bytes => Builder::Bytes(BinaryBuilder::new()),
            Kind::TimestampTz => Builder::Time(TimestampMillisecondBuilder::new(), true),
            Kind::Timestamp => Builder::Time(TimestampMillisecondBuilder::new(), false),
            Kind::Date => Builder::Date(Date32Builder::new()),
        }
    }

    fn push(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            match self {
                Builder::Bool(b) => b.append_null(),
                Builder::I16(b) => b.append_null(),
                Builder::I32(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::F32(b) => b.append_null(),
                Builder::F64(b) => b.append_null(),
                Builder::Text(b) => b.append_null(),
                Builder::Bytes(b) => b.append_null(),
                Builder::Time(b, _) => b.append_null(),
                Builder::Date(b) => b.append_null(),
            }
            return Ok(());
        };
        match self {
            Builder::Bool(b) => b.append_value(raw.first().is_some_and(|v| *v != 0)),
            Builder::I16(b) => b.append_value(i16::from_be_bytes(fixed(raw)?)),
            Builder::I32(b) => b.append_value(i32::from_be_bytes(fixed(raw)?)),
            Builder::I64(b) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            Builder::F32(b) => b.append_value(f32::from_be_bytes(fixed(raw)?)),
            Builder::F64(b) => b.append_value(f64::from_be_bytes(fixed(raw)?)),
            Builder::Text(b) => {
                b.append_value(std::str::from_utf8(raw).map_err(|e| e.to_string())?)
            }
            Builder::Bytes(b) => b.append_value(raw),
            Builder::Time(b, _) => b.append_value(pg_micros_to_ms(i64::from_be_bytes(fixed(raw)?))),
            Builder::Date(b) => {
                b.append_value(i32::from_be_bytes(fixed(raw)?).saturating_add(10_957))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
            Builder::Time(b, true) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::Time(b, false) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}
