//! The Arrow schema of every table. Column names and types are a contract
//! with analysts (their saved queries and dashboards): change them only with
//! a migration.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use vigil_model::Stream;

use crate::Record;

/// The stored tables, in the order of [`crate::TABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Elevator,
    Ride,
    Video,
    Filling,
    Event,
    AlarmChanges,
    DeadLetters,
}

impl Table {
    pub(crate) const ALL: [Table; 7] = [
        Table::Elevator,
        Table::Ride,
        Table::Video,
        Table::Filling,
        Table::Event,
        Table::AlarmChanges,
        Table::DeadLetters,
    ];

    /// The five tables of device readings.
    pub(crate) const READINGS: [Table; 5] = [
        Table::Elevator,
        Table::Ride,
        Table::Video,
        Table::Filling,
        Table::Event,
    ];

    pub(crate) fn name(self) -> &'static str {
        crate::TABLES[self.index()]
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn of_stream(stream: Stream) -> Table {
        match stream {
            Stream::Elevator => Table::Elevator,
            Stream::Ride => Table::Ride,
            Stream::Video => Table::Video,
            Stream::Filling => Table::Filling,
            Stream::Event => Table::Event,
        }
    }

    pub(crate) fn of_record(record: &Record) -> Table {
        match record {
            Record::Reading(r) => Table::of_stream(r.reading.payload.stream()),
            Record::Alarm(_) => Table::AlarmChanges,
            Record::DeadLetter(_) => Table::DeadLetters,
        }
    }

    pub(crate) fn schema(self) -> SchemaRef {
        Arc::clone(&SCHEMAS[self.index()])
    }

    /// The column Parquet files are named and sorted by first (`first_ts`).
    pub(crate) fn time_column(self) -> &'static str {
        match self {
            Table::AlarmChanges => "updated_at",
            Table::DeadLetters => "received_at",
            _ => "ts",
        }
    }

    /// Columns each Parquet file is sorted by, so that one device's (or
    /// alarm's) rows sit together and row-group statistics prune well.
    pub(crate) fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Table::AlarmChanges => &["alarm_id", "version"],
            Table::DeadLetters => &["received_at"],
            _ => &["device_id", "ts"],
        }
    }
}

/// `Timestamp(Millisecond, "UTC")`: every time column.
pub(crate) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn text_null(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn time(name: &str) -> Field {
    Field::new(name, ts_type(), false)
}

fn f32_col(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Float32, nullable)
}

fn bool_col(name: &str) -> Field {
    Field::new(name, DataType::Boolean, false)
}

/// `device_id … received_at`, then the payload, then `extra`.
fn reading_schema(payload: Vec<Field>) -> Schema {
    let mut fields = vec![
        text("device_id"),
        text("equipment_id"),
        text("category"),
        text("owner_id"),
        text("region"),
        Field::new("seq", DataType::UInt64, false),
        time("ts"),
        time("received_at"),
    ];
    fields.extend(payload);
    fields.push(text_null("extra"));
    Schema::new(fields)
}

static SCHEMAS: LazyLock<[SchemaRef; 7]> = LazyLock::new(|| {
    let elevator = reading_schema(vec![
        Field::new("floor", DataType::Int16, false),
        text("direction"),
        f32_col("speed_mps", false),
        text("door"),
        bool_col("leveled"),
        bool_col("occupied"),
        text("mode"),
        bool_col("safety_circuit"),
        bool_col("door_lock"),
        bool_col("alarm_button"),
        text("power"),
        text("limit"),
        Field::new("run_count", DataType::UInt64, true),
        f32_col("load_pct", true),
    ]);
    let ride = reading_schema(vec![
        text("state"),
        f32_col("speed_mps", false),
        f32_col("wind_mps", true),
        bool_col("restraints_locked"),
        f32_col("vibration_mm_s", true),
        text("brake"),
        Field::new("passengers", DataType::UInt16, true),
    ]);
    let video = reading_schema(vec![
        text("camera_id"),
        text("event"),
        f32_col("confidence", false),
        text_null("snapshot"),
    ]);
    let filling = reading_schema(vec![
        text("cylinder_code"),
        text("operator_id"),
        text("medium"),
        f32_col("tare_kg", false),
        f32_col("net_kg", false),
        f32_col("pressure_mpa", true),
        f32_col("temp_c", true),
        Field::new("started_ms", DataType::Int64, false),
        text("result"),
    ]);
    let event = reading_schema(vec![text("code"), text_null("text"), bool_col("active")]);
    let alarm_changes = Schema::new(vec![
        text("alarm_id"),
        Field::new("version", DataType::UInt32, false),
        text("rule"),
        text("severity"),
        text("state"),
        text("equipment_id"),
        text_null("device_id"),
        text("category"),
        text("owner_id"),
        text("region"),
        time("raised_at"),
        time("updated_at"),
        Field::new("cleared_at", ts_type(), true),
        Field::new("count", DataType::UInt32, false),
        text("details"),
        Field::new("acknowledged_at", ts_type(), true),
        text_null("acknowledged_by"),
        text_null("note"),
    ]);
    let dead_letters = Schema::new(vec![
        time("received_at"),
        text("topic"),
        text_null("device_id"),
        text("reason"),
        text("detail"),
        Field::new("payload", DataType::Binary, false),
        text("payload_text"),
        Field::new("payload_size", DataType::UInt64, false),
        // Added later than the others, hence last: null in older Parquet files.
        Field::new("seq", DataType::UInt64, true),
    ]);
    [
        elevator,
        ride,
        video,
        filling,
        event,
        alarm_changes,
        dead_letters,
    ]
    .map(Arc::new)
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_schema_in_tables_order() {
        assert_eq!(Table::ALL.len(), crate::TABLES.len());
        for t in Table::ALL {
            assert_eq!(crate::TABLES[t.index()], t.name());
            let schema = t.schema();
            for c in t.sort_columns().iter().chain([&t.time_column()]) {
                assert!(schema.field_with_name(c).is_ok(), "{} lacks {c}", t.name());
            }
        }
        for t in Table::READINGS {
            let names: Vec<_> = t
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(
                &names[..8],
                [
                    "device_id",
                    "equipment_id",
                    "category",
                    "owner_id",
                    "region",
                    "seq",
                    "ts",
                    "received_at"
                ]
            );
            assert_eq!(names.last().map(String::as_str), Some("extra"));
        }
    }
}
