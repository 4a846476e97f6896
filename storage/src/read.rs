//! Typed reads of what the engine stored: alarms by filter and readings of a
//! time range. The SQL is plain enough to run unchanged on both backends;
//! rows come back as Arrow and are decoded here, once, whichever backend
//! answered (types are normalised first: PostgreSQL gives `int4` counts,
//! the embedded store `u32`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType, UInt32Type};
use serde_json::{Map, Value};
use vigil_model::{
    Alarm, AlarmFilter, AlarmId, AlarmState, DeviceId, EpochMs, EquipmentId, Grant, OwnerId,
    Payload, Reading, Region, RuleId, Severity, Stream,
};

use crate::StoreError;
use crate::schema::Table;

/// Which stored alarms (latest version of each) a reader may see and asked for.
#[derive(Debug, Clone)]
pub struct AlarmQuery<'a> {
    /// What the reader asked for.
    pub filter: AlarmFilter,
    /// What the reader may see (the one access rule, in SQL).
    pub grant: Grant<'a>,
    /// One alarm by id.
    pub alarm_id: Option<AlarmId>,
    /// At most this many, newest change first.
    pub limit: usize,
}

/// Everything, at most 1000: narrow it with `..AlarmQuery::default()`.
impl Default for AlarmQuery<'_> {
    fn default() -> Self {
        AlarmQuery {
            filter: AlarmFilter::default(),
            grant: Grant::All,
            alarm_id: None,
            limit: 1000,
        }
    }
}

/// A SQL string literal (quotes doubled): the same on both backends.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An epoch-ms time as a literal that compares with a timestamp column on
/// both backends (RFC 3339 text).
pub fn time_literal(ms: EpochMs) -> Result<String, StoreError> {
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::InvalidQuery(format!("{ms} is not a time in epoch ms")))?;
    Ok(lit(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// SQL: rows whose `region` is inside any of `regions` (each covering its
/// sub-regions); `FALSE` for none.
pub fn region_condition(regions: &[Region]) -> String {
    let any: Vec<String> = regions
        .iter()
        .map(|r| format!("region LIKE {}", lit(&format!("{}%", r.prefix()))))
        .collect();
    if any.is_empty() {
        "FALSE".to_owned()
    } else {
        format!("({})", any.join(" OR "))
    }
}

/// SQL form of [`Grant::sees`] over tables with `region` and `owner_id`;
/// `None` when it limits nothing.
pub fn scope_condition(grant: Grant<'_>) -> Option<String> {
    match grant {
        Grant::All => None,
        Grant::Regions(r) => Some(region_condition(r)),
        Grant::Owner(o) => Some(format!("owner_id = {}", lit(o.as_str()))),
    }
}

/// The columns of the `alarms` view, named (not `*`) so that both backends
/// answer in the same order.
pub(crate) fn alarm_columns() -> String {
    let schema = Table::AlarmChanges.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}

pub(crate) fn alarms_sql(q: &AlarmQuery) -> Result<String, StoreError> {
    let mut conditions = Vec::new();
    if let Some(id) = &q.alarm_id {
        conditions.push(format!("alarm_id = {}", lit(id.as_str())));
    }
    conditions.extend(scope_condition(q.grant));
    let f = &q.filter;
    if let Some(regions) = &f.regions {
        conditions.push(region_condition(regions));
    }
    if let Some(states) = &f.states {
        let words: Vec<String> = states.iter().map(|s| lit(s.as_str())).collect();
        conditions.push(format!("state IN ({})", words.join(", ")));
    }
    if let Some(category) = &f.category {
        conditions.push(format!("category = {}", lit(category)));
    }
    if let Some(equipment) = &f.equipment_id {
        conditions.push(format!("equipment_id = {}", lit(equipment)));
    }
    if let Some(since) = f.since {
        conditions.push(format!("updated_at >= {}", time_literal(since)?));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    Ok(format!(
        "SELECT {} FROM alarms {where_clause} ORDER BY updated_at DESC, alarm_id LIMIT {}",
        alarm_columns(),
        q.limit
    ))
}

pub(crate) fn readings_sql(
    stream: Stream,
    from: EpochMs,
    to: EpochMs,
) -> Result<String, StoreError> {
    Ok(format!(
        "SELECT * FROM {} WHERE ts >= {} AND ts < {}",
        Table::of_stream(stream).name(),
        time_literal(from)?,
        time_literal(to)?
    ))
}

fn bad(what: String) -> StoreError {
    StoreError::Other(format!("reading stored rows: {what}"))
}

/// `column` of `batch` as `ty` (a cast when the backend stored it otherwise).
fn column_as(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef, StoreError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| bad(format!("alarms.{name} is missing")))?;
    // Any time zone: the values are UTC epoch milliseconds either way.
    let same = match (column.data_type(), ty) {
        (DataType::Timestamp(a, _), DataType::Timestamp(b, _)) => a == b,
        (a, b) => a == b,
    };
    if same {
        return Ok(Arc::clone(column));
    }
    arrow::compute::cast(column, ty).map_err(|e| bad(format!("alarms.{name}: {e}")))
}

/// Rows of the `alarm_changes` shape back to alarms: the one alarm decoder
/// (recovery on both backends and the typed `alarms` query use it).
pub(crate) fn alarms_from(batch: &RecordBatch, out: &mut Vec<Alarm>) -> Result<(), StoreError> {
    let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
    let text = |name: &str| column_as(batch, name, &DataType::Utf8);
    let time = |name: &str| column_as(batch, name, &ms);
    let uint = |name: &str| column_as(batch, name, &DataType::UInt32);
    let (alarm_id, rule, severity, state) = (
        text("alarm_id")?,
        text("rule")?,
        text("severity")?,
        text("state")?,
    );
    let (equipment_id, device_id, category, owner_id) = (
        text("equipment_id")?,
        text("device_id")?,
        text("category")?,
        text("owner_id")?,
    );
    let (region, details, acknowledged_by, note) = (
        text("region")?,
        text("details")?,
        text("acknowledged_by")?,
        text("note")?,
    );
    let (raised_at, updated_at, cleared_at, acknowledged_at) = (
        time("raised_at")?,
        time("updated_at")?,
        time("cleared_at")?,
        time("acknowledged_at")?,
    );
    let (version, count) = (uint("version")?, uint("count")?);
    let s = |a: &ArrayRef| a.as_string::<i32>().clone();
    let (alarm_id, rule, severity, state) = (s(&alarm_id), s(&rule), s(&severity), s(&state));
    let (equipment_id, device_id, category, owner_id) =
        (s(&equipment_id), s(&device_id), s(&category), s(&owner_id));
    let (region, details, acknowledged_by, note) =
        (s(&region), s(&details), s(&acknowledged_by), s(&note));
    let t = |a: &ArrayRef| a.as_primitive::<TimestampMillisecondType>().clone();
    let (raised_at, updated_at, cleared_at, acknowledged_at) = (
        t(&raised_at),
        t(&updated_at),
        t(&cleared_at),
        t(&acknowledged_at),
    );
    let (version, count) = (
        version.as_primitive::<UInt32Type>().clone(),
        count.as_primitive::<UInt32Type>().clone(),
    );
    let opt_text = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
    let opt_time =
        |a: &arrow::array::TimestampMillisecondArray, i: usize| a.is_valid(i).then(|| a.value(i));
    for i in 0..batch.num_rows() {
        let id = alarm_id.value(i);
        let row_err = |what: String| bad(format!("alarm {id:?}: {what}"));
        out.push(Alarm {
            alarm_id: AlarmId::new(id).map_err(|e| row_err(e.to_string()))?,
            rule: RuleId::new(rule.value(i)).map_err(|e| row_err(e.to_string()))?,
            severity: Severity::parse(severity.value(i))
                .ok_or_else(|| row_err(format!("severity {:?}", severity.value(i))))?,
            state: AlarmState::parse(state.value(i))
                .ok_or_else(|| row_err(format!("state {:?}", state.value(i))))?,
            equipment_id: EquipmentId::new(equipment_id.value(i))
                .map_err(|e| row_err(e.to_string()))?,
            device_id: opt_text(&device_id, i)
                .map(DeviceId::new)
                .transpose()
                .map_err(|e| row_err(e.to_string()))?,
            category: category.value(i).to_owned(),
            owner_id: OwnerId::new(owner_id.value(i)).map_err(|e| row_err(e.to_string()))?,
            region: Region::new(region.value(i)).map_err(|e| row_err(e.to_string()))?,
            raised_at: raised_at.value(i),
            updated_at: updated_at.value(i),
            cleared_at: opt_time(&cleared_at, i),
            count: count.value(i),
            details: serde_json::from_str(details.value(i))
                .map_err(|e| row_err(format!("details: {e}")))?,
            version: version.value(i),
            acknowledged_at: opt_time(&acknowledged_at, i),
            acknowledged_by: opt_text(&acknowledged_by, i),
            note: opt_text(&note, i),
        });
    }
    Ok(())
}

/// The batch with every timestamp column as Int64 epoch milliseconds (the
/// form of times in Vigil's JSON), whichever backend answered.
pub fn epoch_ms(batch: &RecordBatch) -> Result<RecordBatch, StoreError> {
    let fail = |e: arrow::error::ArrowError| bad(format!("converting times: {e}"));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Timestamp(_, _) = field.data_type() {
            let ms =
                arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .and_then(|c| arrow::compute::cast(&c, &DataType::Int64))
                    .map_err(fail)?;
            fields.push(Field::new(field.name(), DataType::Int64, true));
            columns.push(ms);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(fail)
}

/// Stored rows of `stream`'s table back into the readings devices sent. The
/// payload columns carry the protocol's field names, so the payload's own
/// serde form reads them (the table's extra columns are ignored).
pub(crate) fn readings_from(
    stream: Stream,
    batch: &RecordBatch,
    out: &mut Vec<Reading>,
) -> Result<(), StoreError> {
    let batch = epoch_ms(batch)?;
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer
            .write(&batch)
            .and_then(|_| writer.finish())
            .map_err(|e| bad(format!("{stream:?} rows: {e}")))?;
    }
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let row: Map<String, Value> =
            serde_json::from_slice(line).map_err(|e| bad(format!("{stream:?} row: {e}")))?;
        out.push(reading_of(stream, row)?);
    }
    Ok(())
}

fn reading_of(stream: Stream, row: Map<String, Value>) -> Result<Reading, StoreError> {
    let bad = |what: &str| bad(format!("stored {stream:?} row: {what}"));
    let device_id = row
        .get("device_id")
        .and_then(Value::as_str)
        .and_then(|d| DeviceId::new(d).ok())
        .ok_or_else(|| bad("no device_id"))?;
    let int = |k: &str| row.get(k).and_then(Value::as_i64).ok_or_else(|| bad(k));
    let seq = row
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("seq"))?;
    let (ts, received_at) = (int("ts")?, int("received_at")?);
    let payload = Value::Object(row);
    let payload = match stream {
        Stream::Elevator => serde_json::from_value(payload).map(Payload::Elevator),
        Stream::Ride => serde_json::from_value(payload).map(Payload::Ride),
        Stream::Video => serde_json::from_value(payload).map(Payload::Video),
        Stream::Filling => serde_json::from_value(payload).map(Payload::Filling),
        Stream::Event => serde_json::from_value(payload).map(Payload::Event),
    }
    .map_err(|e| bad(&e.to_string()))?;
    Ok(Reading {
        device_id,
        seq,
        ts,
        received_at,
        payload,
        extra: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn alarms_read_back_from_either_backends_column_types() {
        let alarm = testdata::alarm("a1", 3, AlarmState::Acknowledged);
        let batch = crate::embedded::batch::to_batch(
            Table::AlarmChanges,
            &[Arc::new(crate::Record::Alarm(alarm.clone()))],
        )
        .unwrap();
        let mut out = Vec::new();
        alarms_from(&batch, &mut out).unwrap();
        assert_eq!(out, vec![alarm.clone()]);

        // PostgreSQL answers int4 counts and versions: the same alarm comes back.
        let cast: Vec<ArrayRef> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| match f.name().as_str() {
                "count" | "version" => arrow::compute::cast(c, &DataType::Int32).unwrap(),
                _ => Arc::clone(c),
            })
            .collect();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&cast)
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        let pg = RecordBatch::try_new(Arc::new(Schema::new(fields)), cast).unwrap();
        let mut out = Vec::new();
        alarms_from(&pg, &mut out).unwrap();
        assert_eq!(out, vec![alarm]);
    }

    #[test]
    fn alarm_filter_becomes_conditions_with_quoted_values() {
        let city = [Region::new("440700").unwrap()];
        let q = AlarmQuery {
            filter: AlarmFilter {
                states: Some(vec![AlarmState::Active]),
                category: Some("it's".into()),
                ..AlarmFilter::default()
            },
            grant: Grant::Regions(&city),
            limit: 5,
            ..AlarmQuery::default()
        };
        let sql = alarms_sql(&q).unwrap();
        assert!(sql.contains("(region LIKE '4407%')"), "{sql}");
        assert!(sql.contains("state IN ('active')"), "{sql}");
        assert!(sql.contains("category = 'it''s'"), "{sql}");
        assert!(sql.ends_with("LIMIT 5"), "{sql}");
        let none = AlarmQuery {
            grant: Grant::Regions(&[]),
            ..AlarmQuery::default()
        };
        assert!(alarms_sql(&none).unwrap().contains("WHERE FALSE"));
    }
}
