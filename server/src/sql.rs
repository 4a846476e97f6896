//! SQL for people: running a statement for a principal, rendering the
//! answer as JSON, CSV or Arrow IPC, and the engine's own reads of alarms
//! and readings.

use arrow::array::RecordBatch;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::sync::watch;
use vigil_model::{Alarm, AlarmId, EpochMs, EquipmentId, Region};
use vigil_registry::api::ApiError;
use vigil_storage::{AlarmQuery, QueryOptions, QueryOutput, Store, StoreError};

use crate::registry_tables::RegistrySync;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    ArrowStream,
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    pub(crate) fn from_accept(accept: &str) -> Format {
        if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains(ARROW_STREAM) {
            Format::ArrowStream
        } else {
            Format::Json
        }
    }
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::InvalidQuery(m) => ApiError::bad_request("invalid_sql", m),
        StoreError::QueryTimeout(d) => ApiError::bad_request(
            "sql_timeout",
            format!("the query ran longer than {d:?} and was cancelled"),
        ),
        StoreError::Query(m) => ApiError::bad_request("sql_failed", m),
        StoreError::QueryTooComplex(m) => ApiError::bad_request("sql_too_complex", m),
        StoreError::QueryMemory(m) => ApiError::bad_request(
            "sql_memory",
            format!(
                "the query needs more memory than SQL may use (engine.sql_memory_mib); \
                 aggregate or filter more, or add LIMIT: {m}"
            ),
        ),
        StoreError::QueryBusy(n) => ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "sql_busy",
            format!("{n} SQL queries are already running (engine.sql_max_concurrent); try again"),
        ),
        other if other.is_retryable() => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            other.to_string(),
        ),
        other => ApiError::internal(other.to_string()),
    }
}

/// Runs a person's `sql` within the SQL limits; `regions` limits it to a
/// grant (analysts, supervisors). Stopping the engine cancels it.
pub(crate) async fn run(
    store: &dyn Store,
    opts: &QueryOptions,
    registry_sync: &RegistrySync,
    mut stopping: watch::Receiver<bool>,
    sql: &str,
    regions: Option<Vec<Region>>,
) -> Result<QueryOutput, ApiError> {
    registry_sync.ensure().await;
    let opts = QueryOptions {
        regions,
        guarded: true,
        ..opts.clone()
    };
    tokio::select! {
        answer = store.query(sql, &opts) => answer.map_err(store_error),
        _ = stopping.wait_for(|s| *s) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the engine is stopping; the query was cancelled",
        )),
    }
}

/// Rows as JSON objects, one per row.
pub(crate) fn rows_as_json(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::ArrayWriter::new(&mut buf);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        writer
            .write_batches(&refs)
            .map_err(|e| ApiError::internal(format!("cannot render rows as JSON: {e}")))?;
        writer
            .finish()
            .map_err(|e| ApiError::internal(format!("cannot render rows as JSON: {e}")))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ApiError::internal(format!("cannot render rows as JSON: {e}")))
}

/// Rows as JSON objects while their text stays within `max_bytes`; true
/// when rows were left out.
fn rows_as_json_within(
    batches: &[RecordBatch],
    max_bytes: usize,
) -> Result<(Vec<Value>, bool), ApiError> {
    let fail =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("cannot render rows as JSON: {e}"));
    let mut rows = Vec::new();
    let mut left = max_bytes;
    for batch in batches {
        let mut buf = Vec::new();
        {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
            writer.write(batch).map_err(|e| fail(&e))?;
            writer.finish().map_err(|e| fail(&e))?;
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if line.len() > left {
                return Ok((rows, true));
            }
            left -= line.len();
            rows.push(serde_json::from_slice(line).map_err(|e| fail(&e))?);
        }
    }
    Ok((rows, false))
}

/// The answer to a person's query in `format`; JSON text is cut at
/// `max_bytes` too (it is larger than the rows it shows).
pub(crate) fn render(
    output: &QueryOutput,
    format: Format,
    max_bytes: usize,
) -> Result<Response, ApiError> {
    let fail =
        |e: arrow::error::ArrowError| ApiError::internal(format!("cannot render the result: {e}"));
    match format {
        Format::Json => {
            let columns: Vec<Value> = output
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let (rows, cut) = rows_as_json_within(&output.batches, max_bytes)?;
            let body = serde_json::json!({
                "columns": columns,
                "rows": rows,
                "row_count": rows.len(),
                "truncated": output.truncated || cut,
            });
            Ok(axum::Json(body).into_response())
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for batch in &output.batches {
                    writer.write(batch).map_err(fail)?;
                }
            }
            if output.batches.is_empty() {
                let names: Vec<&str> = output
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                buf = format!("{}\n", names.join(",")).into_bytes();
            }
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], buf).into_response())
        }
        Format::ArrowStream => {
            let mut buf = Vec::new();
            {
                let mut writer =
                    arrow::ipc::writer::StreamWriter::try_new(&mut buf, &output.schema)
                        .map_err(fail)?;
                for batch in &output.batches {
                    writer.write(batch).map_err(fail)?;
                }
                writer.finish().map_err(fail)?;
            }
            Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], buf).into_response())
        }
    }
}

pub(crate) use vigil_storage::lit;

/// Alarms from the store's `alarms` view (latest version of each).
pub(crate) async fn stored_alarms(
    store: &dyn Store,
    opts: &QueryOptions,
    query: &AlarmQuery<'_>,
) -> Result<Vec<Alarm>, ApiError> {
    // A time the store cannot take is the caller's mistake, said as such.
    if let Some(since) = query.filter.since {
        time_literal(since)?;
    }
    store.alarms(query, opts).await.map_err(store_error)
}

pub(crate) async fn stored_alarm(
    store: &dyn Store,
    opts: &QueryOptions,
    id: &AlarmId,
) -> Result<Option<Alarm>, ApiError> {
    let query = AlarmQuery {
        alarm_id: Some(id.clone()),
        limit: 1,
        ..AlarmQuery::default()
    };
    Ok(stored_alarms(store, opts, &query).await?.into_iter().next())
}

/// The newest elevator or ride sample of an equipment, as JSON.
pub(crate) async fn latest_reading(
    store: &dyn Store,
    opts: &QueryOptions,
    id: &EquipmentId,
) -> Result<Option<Value>, ApiError> {
    for table in ["elevator_readings", "ride_readings"] {
        let sql = format!(
            "SELECT * FROM {table} WHERE equipment_id = {} ORDER BY ts DESC LIMIT 1",
            lit(id.as_str())
        );
        let output = store.query(&sql, opts).await.map_err(store_error)?;
        if let Some(row) = rows_as_json(&output.batches)?.into_iter().next() {
            let mut row = row;
            row.insert("table".into(), Value::String(table.into()));
            return Ok(Some(Value::Object(row)));
        }
    }
    Ok(None)
}

/// An epoch-ms time as a SQL literal that compares with a timestamp column
/// on both backends; a time out of range is the caller's mistake.
pub(crate) fn time_literal(ms: EpochMs) -> Result<String, ApiError> {
    vigil_storage::time_literal(ms).map_err(|_| {
        ApiError::bad_request("invalid_time", format!("{ms} is not a time in epoch ms"))
    })
}

/// The batches with every timestamp column as Int64 epoch milliseconds, the
/// form of the alarm JSON.
fn epoch_ms(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ApiError> {
    batches
        .iter()
        .map(vigil_storage::epoch_ms)
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal(format!("cannot convert times: {e}")))
}

/// Rows of a query the engine runs itself (risk, replay), at most
/// `max_rows`, with every timestamp as epoch ms.
pub(crate) async fn epoch_rows(
    store: &dyn Store,
    opts: &QueryOptions,
    sql: &str,
    max_rows: usize,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let opts = QueryOptions {
        max_rows,
        ..opts.clone()
    };
    let output = store.query(sql, &opts).await.map_err(store_error)?;
    rows_as_json(&epoch_ms(&output.batches)?)
}
