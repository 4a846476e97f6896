//! Records to Arrow: one function per table shape, columns in schema order.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Int16Array, Int64Array, StringArray,
    TimestampMillisecondArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use vigil_model::reading::{
    ControllerEvent, ElevatorSample, FillingRecord, RideSample, VideoEvent,
};
use vigil_model::{Alarm, Binding, DeadLetter, Payload, Reading};

use crate::Record;
use crate::schema::Table;

/// Converts rows that all belong to `table` (others are skipped: the writer
/// routes by [`Table::of_record`], so there are none).
pub(crate) fn to_batch(table: Table, rows: &[Arc<Record>]) -> Result<RecordBatch, ArrowError> {
    match table {
        Table::Elevator => elevator(&readings(rows, |p| match p {
            Payload::Elevator(s) => Some(s),
            _ => None,
        })),
        Table::Ride => ride(&readings(rows, |p| match p {
            Payload::Ride(s) => Some(s),
            _ => None,
        })),
        Table::Video => video(&readings(rows, |p| match p {
            Payload::Video(s) => Some(s),
            _ => None,
        })),
        Table::Filling => filling(&readings(rows, |p| match p {
            Payload::Filling(s) => Some(s),
            _ => None,
        })),
        Table::Event => event(&readings(rows, |p| match p {
            Payload::Event(s) => Some(s),
            _ => None,
        })),
        Table::AlarmChanges => {
            let alarms: Vec<&Alarm> = rows
                .iter()
                .filter_map(|r| match &**r {
                    Record::Alarm(a) => Some(a),
                    _ => None,
                })
                .collect();
            alarm_changes(&alarms)
        }
        Table::DeadLetters => {
            let letters: Vec<&DeadLetter> = rows
                .iter()
                .filter_map(|r| match &**r {
                    Record::DeadLetter(d) => Some(d),
                    _ => None,
                })
                .collect();
            dead_letters(&letters)
        }
    }
}

type Row<'a, T> = (&'a Reading, &'a Binding, &'a T);

fn readings<'a, T>(
    rows: &'a [Arc<Record>],
    pick: impl Fn(&'a Payload) -> Option<&'a T>,
) -> Vec<Row<'a, T>> {
    rows.iter()
        .filter_map(|r| match &**r {
            Record::Reading(s) => pick(&s.reading.payload).map(|p| (&s.reading, &s.binding, p)),
            _ => None,
        })
        .collect()
}

fn text<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(it))
}

fn text_null<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(it.collect::<StringArray>())
}

fn times(it: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(it).with_timezone("UTC"))
}

fn times_null(it: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        it.collect::<TimestampMillisecondArray>()
            .with_timezone("UTC"),
    )
}

fn f32s(it: impl Iterator<Item = f32>) -> ArrayRef {
    Arc::new(Float32Array::from_iter_values(it))
}

fn f32s_null(it: impl Iterator<Item = Option<f32>>) -> ArrayRef {
    Arc::new(it.collect::<Float32Array>())
}

fn bools(it: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(it.collect::<Vec<bool>>()))
}

/// The common prefix, the payload columns, then `extra`.
fn reading_batch<T>(
    table: Table,
    rows: &[Row<'_, T>],
    payload: Vec<ArrayRef>,
) -> Result<RecordBatch, ArrowError> {
    let mut cols = vec![
        text(rows.iter().map(|r| r.0.device_id.as_str())),
        text(rows.iter().map(|r| r.1.equipment_id.as_str())),
        text(rows.iter().map(|r| r.1.category.as_str())),
        text(rows.iter().map(|r| r.1.owner_id.as_str())),
        text(rows.iter().map(|r| r.1.region.as_str())),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0.seq))) as ArrayRef,
        times(rows.iter().map(|r| r.0.ts)),
        times(rows.iter().map(|r| r.0.received_at)),
    ];
    cols.extend(payload);
    cols.push(text_null(rows.iter().map(|r| r.0.extra.as_deref())));
    RecordBatch::try_new(table.schema(), cols)
}

fn elevator(rows: &[Row<'_, ElevatorSample>]) -> Result<RecordBatch, ArrowError> {
    let s = || rows.iter().map(|r| r.2);
    reading_batch(
        Table::Elevator,
        rows,
        vec![
            Arc::new(Int16Array::from_iter_values(s().map(|s| s.floor))),
            text(s().map(|s| s.direction.as_str())),
            f32s(s().map(|s| s.speed_mps)),
            text(s().map(|s| s.door.as_str())),
            bools(s().map(|s| s.leveled)),
            bools(s().map(|s| s.occupied)),
            text(s().map(|s| s.mode.as_str())),
            bools(s().map(|s| s.safety_circuit)),
            bools(s().map(|s| s.door_lock)),
            bools(s().map(|s| s.alarm_button)),
            text(s().map(|s| s.power.as_str())),
            text(s().map(|s| s.limit.as_str())),
            Arc::new(s().map(|s| s.run_count).collect::<UInt64Array>()),
            f32s_null(s().map(|s| s.load_pct)),
        ],
    )
}

fn ride(rows: &[Row<'_, RideSample>]) -> Result<RecordBatch, ArrowError> {
    let s = || rows.iter().map(|r| r.2);
    reading_batch(
        Table::Ride,
        rows,
        vec![
            text(s().map(|s| s.state.as_str())),
            f32s(s().map(|s| s.speed_mps)),
            f32s_null(s().map(|s| s.wind_mps)),
            bools(s().map(|s| s.restraints_locked)),
            f32s_null(s().map(|s| s.vibration_mm_s)),
            text(s().map(|s| s.brake.as_str())),
            Arc::new(s().map(|s| s.passengers).collect::<UInt16Array>()),
        ],
    )
}

fn video(rows: &[Row<'_, VideoEvent>]) -> Result<RecordBatch, ArrowError> {
    let s = || rows.iter().map(|r| r.2);
    reading_batch(
        Table::Video,
        rows,
        vec![
            text(s().map(|s| s.camera_id.as_str())),
            text(s().map(|s| s.event.as_str())),
            f32s(s().map(|s| s.confidence)),
            text_null(s().map(|s| s.snapshot.as_deref())),
        ],
    )
}

fn filling(rows: &[Row<'_, FillingRecord>]) -> Result<RecordBatch, ArrowError> {
    let s = || rows.iter().map(|r| r.2);
    reading_batch(
        Table::Filling,
        rows,
        vec![
            text(s().map(|s| s.cylinder_code.as_str())),
            text(s().map(|s| s.operator_id.as_str())),
            text(s().map(|s| s.medium.as_str())),
            f32s(s().map(|s| s.tare_kg)),
            f32s(s().map(|s| s.net_kg)),
            f32s_null(s().map(|s| s.pressure_mpa)),
            f32s_null(s().map(|s| s.temp_c)),
            Arc::new(Int64Array::from_iter_values(s().map(|s| s.started_ms))),
            text(s().map(|s| s.result.as_str())),
        ],
    )
}

fn event(rows: &[Row<'_, ControllerEvent>]) -> Result<RecordBatch, ArrowError> {
    let s = || rows.iter().map(|r| r.2);
    reading_batch(
        Table::Event,
        rows,
        vec![
            text(s().map(|s| s.code.as_str())),
            text_null(s().map(|s| s.text.as_deref())),
            bools(s().map(|s| s.active)),
        ],
    )
}

fn alarm_changes(rows: &[&Alarm]) -> Result<RecordBatch, ArrowError> {
    let a = || rows.iter().copied();
    let details: Vec<String> = a().map(|a| a.details.to_string()).collect();
    RecordBatch::try_new(
        Table::AlarmChanges.schema(),
        vec![
            text(a().map(|a| a.alarm_id.as_str())),
            Arc::new(UInt32Array::from_iter_values(a().map(|a| a.version))),
            text(a().map(|a| a.rule.as_str())),
            text(a().map(|a| a.severity.as_str())),
            text(a().map(|a| a.state.as_str())),
            text(a().map(|a| a.equipment_id.as_str())),
            text_null(a().map(|a| a.device_id.as_ref().map(|d| d.as_str()))),
            text(a().map(|a| a.category.as_str())),
            text(a().map(|a| a.owner_id.as_str())),
            text(a().map(|a| a.region.as_str())),
            times(a().map(|a| a.raised_at)),
            times(a().map(|a| a.updated_at)),
            times_null(a().map(|a| a.cleared_at)),
            Arc::new(UInt32Array::from_iter_values(a().map(|a| a.count))),
            text(details.iter().map(String::as_str)),
            times_null(a().map(|a| a.acknowledged_at)),
            text_null(a().map(|a| a.acknowledged_by.as_deref())),
            text_null(a().map(|a| a.note.as_deref())),
        ],
    )
}

fn dead_letters(rows: &[&DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let d = || rows.iter().copied();
    let lossy: Vec<String> = d()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    RecordBatch::try_new(
        Table::DeadLetters.schema(),
        vec![
            times(d().map(|d| d.received_at)),
            text(d().map(|d| d.topic.as_str())),
            text_null(d().map(|d| d.device_id.as_deref())),
            text(d().map(|d| d.reason.as_str())),
            text(d().map(|d| d.detail.as_str())),
            Arc::new(BinaryArray::from_iter_values(
                d().map(|d| d.payload.as_slice()),
            )),
            text(lossy.iter().map(String::as_str)),
            Arc::new(UInt64Array::from_iter_values(d().map(|d| d.payload_size))),
            Arc::new(UInt64Array::from_iter(d().map(|d| d.seq))),
        ],
    )
}
