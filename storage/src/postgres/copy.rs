//! Records to PostgreSQL's binary COPY format, one buffer per table, columns
//! in the order of the table (and of the embedded backend's Arrow schema).
//!
//! Format: the `PGCOPY\n\xff\r\n\0` signature, flags and header extension
//! (both 0), then per row a 16-bit field count and per field a 32-bit length
//! (-1 for NULL) and the value in network byte order; a -1 count ends it.

use bytes::{BufMut, BytesMut};
use vigil_model::{Alarm, DeadLetter, Payload, Reading};

use crate::schema::Table;
use crate::{Record, StoredReading};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix milliseconds.
pub(crate) const PG_EPOCH_MS: i64 = 946_684_800_000;

/// One table's rows being encoded.
pub(crate) struct CopyBuffer {
    pub(crate) rows: usize,
    buf: BytesMut,
}

impl CopyBuffer {
    pub(crate) fn new() -> Self {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0);
        buf.put_i32(0);
        CopyBuffer { rows: 0, buf }
    }

    /// The finished COPY data.
    pub(crate) fn finish(mut self) -> bytes::Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }

    fn row(&mut self, fields: i16) {
        self.rows += 1;
        self.buf.put_i16(fields);
    }

    fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// PostgreSQL text cannot hold NUL; a dead letter's lossy text might.
    fn text(&mut self, s: &str) {
        if s.contains('\0') {
            let clean = s.replace('\0', "\u{FFFD}");
            self.buf.put_i32(clean.len() as i32);
            self.buf.put_slice(clean.as_bytes());
        } else {
            self.buf.put_i32(s.len() as i32);
            self.buf.put_slice(s.as_bytes());
        }
    }

    fn text_opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.put_i32(b.len() as i32);
        self.buf.put_slice(b);
    }

    fn i16(&mut self, v: i16) {
        self.buf.put_i32(2);
        self.buf.put_i16(v);
    }

    fn i32(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    fn i32_opt(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.i32(v),
            None => self.null(),
        }
    }

    fn i64(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    fn i64_opt(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    fn f32(&mut self, v: f32) {
        self.buf.put_i32(4);
        self.buf.put_f32(v);
    }

    fn f32_opt(&mut self, v: Option<f32>) {
        match v {
            Some(v) => self.f32(v),
            None => self.null(),
        }
    }

    fn bool(&mut self, v: bool) {
        self.buf.put_i32(1);
        self.buf.put_u8(v as u8);
    }

    /// Epoch milliseconds to `timestamptz` (microseconds since 2000).
    fn ts(&mut self, ms: i64) {
        self.i64(ms.saturating_sub(PG_EPOCH_MS).saturating_mul(1000));
    }

    fn ts_opt(&mut self, ms: Option<i64>) {
        match ms {
            Some(ms) => self.ts(ms),
            None => self.null(),
        }
    }

    /// Appends one record; it must belong to this buffer's table.
    pub(crate) fn push(&mut self, record: &Record) {
        match record {
            Record::Reading(r) => self.reading(r),
            Record::Alarm(a) => self.alarm(a),
            Record::DeadLetter(d) => self.dead_letter(d),
        }
    }

    fn reading_prefix(&mut self, fields: i16, r: &Reading, s: &StoredReading) {
        self.row(fields);
        self.text(r.device_id.as_str());
        self.text(s.binding.equipment_id.as_str());
        self.text(&s.binding.category);
        self.text(s.binding.owner_id.as_str());
        self.text(s.binding.region.as_str());
        self.i64(r.seq as i64);
        self.ts(r.ts);
        self.ts(r.received_at);
    }

    fn reading(&mut self, s: &StoredReading) {
        let r = &s.reading;
        match &r.payload {
            Payload::Elevator(p) => {
                self.reading_prefix(23, r, s);
                self.i16(p.floor);
                self.text(p.direction.as_str());
                self.f32(p.speed_mps);
                self.text(p.door.as_str());
                self.bool(p.leveled);
                self.bool(p.occupied);
                self.text(p.mode.as_str());
                self.bool(p.safety_circuit);
                self.bool(p.door_lock);
                self.bool(p.alarm_button);
                self.text(p.power.as_str());
                self.text(p.limit.as_str());
                self.i64_opt(p.run_count.map(|v| v as i64));
                self.f32_opt(p.load_pct);
            }
            Payload::Ride(p) => {
                self.reading_prefix(16, r, s);
                self.text(p.state.as_str());
                self.f32(p.speed_mps);
                self.f32_opt(p.wind_mps);
                self.bool(p.restraints_locked);
                self.f32_opt(p.vibration_mm_s);
                self.text(p.brake.as_str());
                self.i32_opt(p.passengers.map(i32::from));
            }
            Payload::Video(p) => {
                self.reading_prefix(13, r, s);
                self.text(&p.camera_id);
                self.text(p.event.as_str());
                self.f32(p.confidence);
                self.text_opt(p.snapshot.as_deref());
            }
            Payload::Filling(p) => {
                self.reading_prefix(18, r, s);
                self.text(&p.cylinder_code);
                self.text(&p.operator_id);
                self.text(&p.medium);
                self.f32(p.tare_kg);
                self.f32(p.net_kg);
                self.f32_opt(p.pressure_mpa);
                self.f32_opt(p.temp_c);
                self.i64(p.started_ms);
                self.text(p.result.as_str());
            }
            Payload::Event(p) => {
                self.reading_prefix(12, r, s);
                self.text(&p.code);
                self.text_opt(p.text.as_deref());
                self.bool(p.active);
            }
        }
        self.text_opt(r.extra.as_deref());
    }

    fn alarm(&mut self, a: &Alarm) {
        self.row(18);
        self.text(a.alarm_id.as_str());
        self.i32(a.version as i32);
        self.text(a.rule.as_str());
        self.text(a.severity.as_str());
        self.text(a.state.as_str());
        self.text(a.equipment_id.as_str());
        self.text_opt(a.device_id.as_ref().map(|d| d.as_str()));
        self.text(&a.category);
        self.text(a.owner_id.as_str());
        self.text(a.region.as_str());
        self.ts(a.raised_at);
        self.ts(a.updated_at);
        self.ts_opt(a.cleared_at);
        self.i32(a.count as i32);
        self.text(&a.details.to_string());
        self.ts_opt(a.acknowledged_at);
        self.text_opt(a.acknowledged_by.as_deref());
        self.text_opt(a.note.as_deref());
    }

    fn dead_letter(&mut self, d: &DeadLetter) {
        self.row(9);
        self.ts(d.received_at);
        self.text(&d.topic);
        self.text_opt(d.device_id.as_deref());
        self.text(d.reason.as_str());
        self.text(&d.detail);
        self.bytes(&d.payload);
        self.text(&String::from_utf8_lossy(&d.payload));
        self.i64(d.payload_size as i64);
        self.i64_opt(d.seq.map(|s| s as i64));
    }
}

/// The column list of a table, quoted, in schema order.
pub(crate) fn columns(table: Table) -> String {
    table
        .schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
