//! Reference tables (registry data) to Arrow, checked once when set.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use crate::schema::ts_type;
use crate::{ColumnType, RefTable, StoreError};

/// A reference table as Arrow: what the embedded store serves to SQL, and
/// what the PostgreSQL backend checks a table against before storing it.
#[derive(Debug, Clone)]
pub(crate) struct RefData {
    pub(crate) schema: SchemaRef,
    pub(crate) batch: RecordBatch,
}

fn bad(table: &str, why: String) -> StoreError {
    StoreError::InvalidReferenceTable {
        table: table.to_owned(),
        why,
    }
}

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Text => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => ts_type(),
    }
}

/// Checks names and cell types and builds the batch.
pub(crate) fn convert(table: RefTable) -> Result<(String, RefData), StoreError> {
    let name = table.name;
    if name.is_empty() || crate::TABLES.contains(&name.as_str()) || name == "alarms" {
        return Err(bad(
            &name,
            "the name is empty or belongs to a stored table".into(),
        ));
    }
    if table.columns.is_empty() {
        return Err(bad(&name, "a table needs at least one column".into()));
    }
    for (i, row) in table.rows.iter().enumerate() {
        if row.len() != table.columns.len() {
            return Err(bad(
                &name,
                format!(
                    "row {i} has {} values for {} columns",
                    row.len(),
                    table.columns.len()
                ),
            ));
        }
    }
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for (c, col) in table.columns.iter().enumerate() {
        if fields.iter().any(|f: &Field| f.name() == &col.name) {
            return Err(bad(&name, format!("column {:?} appears twice", col.name)));
        }
        let cells = table.rows.iter().map(|row| &row[c]);
        let cell_err = |row: usize, v: &Value, want: &str| {
            bad(
                &name,
                format!("row {row}, column {:?}: {v} is not {want}", col.name),
            )
        };
        // Each type reads its cells the same way: null stays null, any
        // other value must convert, or the row and column are named.
        macro_rules! column {
            ($array:ty, $want:expr, $get:expr) => {
                cells
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Null => Ok(None),
                        other => $get(other)
                            .map(Some)
                            .ok_or_else(|| cell_err(i, other, $want)),
                    })
                    .collect::<Result<$array, _>>()?
            };
        }
        let array: ArrayRef = match col.ty {
            ColumnType::Text => Arc::new(column!(StringArray, "text", Value::as_str)),
            ColumnType::Int => Arc::new(column!(Int64Array, "an integer", Value::as_i64)),
            ColumnType::Float => Arc::new(column!(Float64Array, "a number", Value::as_f64)),
            ColumnType::Bool => Arc::new(column!(BooleanArray, "true or false", Value::as_bool)),
            ColumnType::Date => Arc::new(column!(Date32Array, "a YYYY-MM-DD date", |v: &Value| v
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map(|d| d.num_days_from_ce() - UNIX_EPOCH_CE_DAYS))),
            ColumnType::Timestamp => Arc::new(
                column!(
                    TimestampMillisecondArray,
                    "epoch milliseconds",
                    Value::as_i64
                )
                .with_timezone("UTC"),
            ),
        };
        if !col.nullable && array.null_count() > 0 {
            return Err(bad(
                &name,
                format!("column {:?} is not nullable but has nulls", col.name),
            ));
        }
        fields.push(Field::new(&col.name, data_type(col.ty), col.nullable));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|e| bad(&name, e.to_string()))?;
    Ok((name, RefData { schema, batch }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RefColumn;
    use arrow::array::Array;
    use serde_json::json;

    fn col(name: &str, ty: ColumnType, nullable: bool) -> RefColumn {
        RefColumn {
            name: name.into(),
            ty,
            nullable,
        }
    }

    #[test]
    fn converts_every_column_type_and_refuses_bad_cells() {
        let table = RefTable {
            name: "equipment".into(),
            columns: vec![
                col("id", ColumnType::Text, false),
                col("floors", ColumnType::Int, true),
                col("speed", ColumnType::Float, true),
                col("enabled", ColumnType::Bool, false),
                col("inspected", ColumnType::Date, true),
                col("created_at", ColumnType::Timestamp, true),
            ],
            rows: vec![
                vec![
                    json!("EQ1"),
                    json!(12),
                    json!(1.5),
                    json!(true),
                    json!("1970-01-02"),
                    json!(1000),
                ],
                vec![
                    json!("EQ2"),
                    json!(null),
                    json!(2),
                    json!(false),
                    json!(null),
                    json!(null),
                ],
            ],
        };
        let (name, data) = convert(table.clone()).unwrap();
        assert_eq!(name, "equipment");
        assert_eq!(data.batch.num_rows(), 2);
        let dates = data
            .batch
            .column(4)
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap();
        assert_eq!(dates.value(0), 1);
        assert!(dates.is_null(1));

        let mut wrong = table.clone();
        wrong.rows[1][3] = json!(null);
        assert!(matches!(
            convert(wrong),
            Err(StoreError::InvalidReferenceTable { .. })
        ));
        let mut wrong = table.clone();
        wrong.rows[0][1] = json!("twelve");
        let err = convert(wrong).unwrap_err().to_string();
        assert!(err.contains("floors") && err.contains("row 0"), "{err}");
        let mut wrong = table;
        wrong.name = "elevator_readings".into();
        assert!(convert(wrong).is_err());
    }
}
