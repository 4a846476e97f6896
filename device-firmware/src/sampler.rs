//! Polls become messages: decoded registers become a sample when something
//! changed, at 1 Hz while the equipment moves and at least every
//! `idle_report_s`; fault codes that appear or go become `event`s; a
//! filling scale's ready record becomes a `filling` record; a controller
//! that stops answering becomes an event too.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use vigil_model::{EpochMs, Stream};

use crate::map::RegisterMap;
use crate::modbus::Image;
use crate::spool::Class;

/// The gateway's own event codes.
pub(crate) const MODBUS_CODE: &str = "EDGE_MODBUS";
pub(crate) const SPOOL_FULL_CODE: &str = "EDGE_SPOOL_FULL";

const MOVING_REPORT_MS: EpochMs = 1_000;

/// One message to spool (the spool adds `seq`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub stream: Stream,
    pub class: Class,
    pub ts: EpochMs,
    pub fields: Map<String, Value>,
}

impl Message {
    /// protocol.md JSON with `seq` and `ts` first.
    pub(crate) fn json(&self, seq: u64) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str(&format!("{{\"seq\":{seq},\"ts\":{}", self.ts));
        for (k, v) in &self.fields {
            out.push(',');
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        out.into_bytes()
    }

    pub(crate) fn event(ts: EpochMs, code: &str, text: Option<String>, active: bool) -> Message {
        let mut fields = Map::new();
        fields.insert("code".into(), Value::from(code));
        if let Some(t) = text {
            fields.insert("text".into(), Value::from(t));
        }
        fields.insert("active".into(), Value::from(active));
        Message {
            stream: Stream::Event,
            class: Class::Event,
            ts,
            fields,
        }
    }
}

/// A filling record waiting for the handshake.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadyRecord {
    pub id: u64,
    pub message: Message,
}

/// Per-device sampling state.
pub(crate) struct Sampler {
    map: RegisterMap,
    /// The last sample sent: when (monotonic ms) and its change-triggering fields.
    last: Option<(EpochMs, Map<String, Value>)>,
    codes: BTreeMap<String, Option<String>>,
    /// Codes known only once a poll succeeded (not at start).
    codes_known: bool,
    /// An `EDGE_MODBUS` event is active.
    link_down: bool,
    /// Polls whose sample lacked a required field (logged, counted).
    pub incomplete: u64,
}

impl Sampler {
    pub(crate) fn new(map: RegisterMap) -> Sampler {
        Sampler {
            map,
            last: None,
            codes: BTreeMap::new(),
            codes_known: false,
            link_down: false,
            incomplete: 0,
        }
    }

    /// The fields a poll decoded (absent values left out).
    fn values(&self, image: &Image) -> Map<String, Value> {
        let mut out = Map::new();
        for r in &self.map.registers {
            if let Some(v) = image
                .words(r.function, r.address, r.width())
                .and_then(|w| r.decode(w))
            {
                out.insert(r.field.clone(), v);
            }
        }
        out
    }

    fn active(&self, values: &Map<String, Value>) -> bool {
        let Some(a) = &self.map.active else {
            return false;
        };
        match values.get(&a.field) {
            Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x > 0.0),
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => a.is.iter().any(|w| w == s),
            _ => false,
        }
    }

    /// The messages one successful poll makes; `ts` is wall-clock device
    /// time, `mono` a monotonic clock for the cadence.
    pub(crate) fn on_poll(&mut self, image: &Image, ts: EpochMs, mono: EpochMs) -> Vec<Message> {
        let mut out = Vec::new();
        if std::mem::take(&mut self.link_down) {
            out.push(Message::event(
                ts,
                MODBUS_CODE,
                Some("Controller answers again".into()),
                false,
            ));
        }
        self.fault_codes(image, ts, &mut out);
        if self.map.stream == Stream::Filling {
            return out;
        }
        let values = self.values(image);
        let missing: Vec<&str> = crate::map::fields(self.map.stream)
            .iter()
            .filter(|d| d.required && !values.contains_key(d.name))
            .map(|d| d.name)
            .collect();
        if !missing.is_empty() {
            self.incomplete += 1;
            if self.incomplete == 1 || self.incomplete.is_multiple_of(100) {
                tracing::warn!(map = %self.map.name, ?missing, polls = self.incomplete, "Poll skipped: required fields have no valid value (a raw value not in the map's table?).");
            }
            return out;
        }
        let key: Map<String, Value> = self
            .map
            .registers
            .iter()
            .filter(|r| r.on_change)
            .filter_map(|r| Some((r.field.clone(), values.get(&r.field)?.clone())))
            .collect();
        let class = match &self.last {
            None => Some(Class::Change),
            Some((_, last_key)) if *last_key != key => Some(Class::Change),
            Some((at, _)) => {
                let since = mono - at;
                let due = (self.active(&values) && since >= MOVING_REPORT_MS)
                    || since >= EpochMs::from(self.map.idle_report_s) * 1000;
                due.then_some(Class::Periodic)
            }
        };
        if let Some(class) = class {
            self.last = Some((mono, key));
            out.push(Message {
                stream: self.map.stream,
                class,
                ts,
                fields: values,
            });
        }
        out
    }

    /// Codes that appeared or went since the last poll.
    fn fault_codes(&mut self, image: &Image, ts: EpochMs, out: &mut Vec<Message>) {
        let mut now: BTreeMap<String, Option<String>> = BTreeMap::new();
        if let Some(f) = &self.map.faults
            && let Some(words) = image.words(f.function, f.address, f.count)
        {
            for &raw in words.iter().filter(|w| **w != 0) {
                let (code, text) = f.code(raw);
                now.insert(code, text);
            }
        }
        for b in &self.map.fault_bits {
            if let Some(w) = image.words(b.function, b.address, 1) {
                let set = match b.bit {
                    Some(bit) => (w[0] >> bit) & 1 == 1,
                    None => w[0] != 0,
                };
                if set {
                    now.insert(b.code.clone(), b.text.clone());
                }
            }
        }
        for (code, text) in &now {
            if !self.codes.contains_key(code) {
                out.push(Message::event(ts, code, text.clone(), true));
            }
        }
        if self.codes_known {
            for (code, text) in &self.codes {
                if !now.contains_key(code) {
                    out.push(Message::event(ts, code, text.clone(), false));
                }
            }
        }
        self.codes = now;
        self.codes_known = true;
    }

    /// A failed poll: the first failure of an outage is an event.
    pub(crate) fn on_error(&mut self, ts: EpochMs, error: &str) -> Option<Message> {
        if self.link_down {
            return None;
        }
        self.link_down = true;
        Some(Message::event(
            ts,
            MODBUS_CODE,
            Some(format!("Controller not answering: {error}")),
            true,
        ))
    }

    /// A filling scale's record, when the scale shows one as ready.
    pub(crate) fn ready_record(&self, image: &Image, ts: EpochMs) -> Option<ReadyRecord> {
        let h = self.map.record.as_ref()?;
        let ready = image.words(h.ready.function, h.ready.address, 1)?[0] != 0;
        if !ready {
            return None;
        }
        let id =
            h.id.decode(image.words(h.id.function, h.id.address, h.id.width())?)?
                .as_u64()?;
        let mut fields = self.values(image);
        if let Some(d) = fields.remove("duration_s").and_then(|v| v.as_f64()) {
            fields.insert(
                "started_ms".into(),
                Value::from(ts - (d * 1000.0) as EpochMs),
            );
        }
        // The scale's record number travels along (stored as an extra field).
        fields.insert("record_id".into(), Value::from(id));
        Some(ReadyRecord {
            id,
            message: Message {
                stream: Stream::Filling,
                class: Class::Event,
                ts,
                fields,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::map::Function;
    use crate::modbus::{Block, plan};

    /// An image with the given register values of the elevator map.
    fn elevator_image(map: &RegisterMap, set: &[(&str, Value)], codes: &[u16]) -> Image {
        let blocks = plan(map);
        let mut img: Vec<(Block, Vec<u16>)> = blocks
            .iter()
            .map(|b| (*b, vec![0; usize::from(b.count)]))
            .collect();
        let mut put = |function: Function, address: u16, words: &[u16], bit: bool| {
            for (b, ws) in &mut img {
                if b.function == function && address >= b.start && address < b.start + b.count {
                    for (i, w) in words.iter().enumerate() {
                        let at = usize::from(address - b.start) + i;
                        if bit {
                            ws[at] |= *w;
                        } else {
                            ws[at] = *w;
                        }
                    }
                }
            }
        };
        for (field, v) in set {
            let r = map.registers.iter().find(|r| r.field == *field).unwrap();
            put(
                r.function,
                r.address,
                &r.encode(v).unwrap(),
                r.bit.is_some(),
            );
        }
        let f = map.faults.as_ref().unwrap();
        put(f.function, f.address, codes, false);
        Image::from_blocks(img)
    }

    fn idle() -> Vec<(&'static str, Value)> {
        vec![
            ("floor", json!(3)),
            ("direction", json!("stop")),
            ("speed_mps", json!(0.0)),
            ("door", json!("closed")),
            ("leveled", json!(true)),
            ("occupied", json!(false)),
            ("mode", json!("normal")),
            ("safety_circuit", json!(true)),
            ("door_lock", json!(true)),
            ("alarm_button", json!(false)),
            ("power", json!("mains")),
            ("limit", json!("none")),
            ("run_count", json!(1000)),
            ("load_pct", json!(0.0)),
        ]
    }

    fn with(
        mut base: Vec<(&'static str, Value)>,
        k: &'static str,
        v: Value,
    ) -> Vec<(&'static str, Value)> {
        base.retain(|(f, _)| *f != k);
        base.push((k, v));
        base
    }

    #[test]
    fn cadence_changes_motion_and_idle() {
        let map = RegisterMap::load("elevator").unwrap();
        let mut s = Sampler::new(map.clone());
        let idle_img = elevator_image(&map, &idle(), &[]);
        let first = s.on_poll(&idle_img, 10, 0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].class, Class::Change);
        assert_eq!(first[0].fields["floor"], json!(3));
        assert_eq!(first[0].fields["door_lock"], json!(true));
        // Nothing changes: nothing until 30 s have passed.
        assert!(s.on_poll(&idle_img, 10, 29_999).is_empty());
        let repeat = s.on_poll(&idle_img, 10, 30_000);
        assert_eq!(repeat[0].class, Class::Periodic);
        // A door change goes out at once.
        let opening = elevator_image(&map, &with(idle(), "door", json!("opening")), &[]);
        let out = s.on_poll(&opening, 10, 30_250);
        assert_eq!((out.len(), out[0].class), (1, Class::Change));
        // Moving: speed alone is no change, but 1 Hz applies.
        let moving = with(
            with(idle(), "direction", json!("up")),
            "speed_mps",
            json!(1.2),
        );
        let m1 = elevator_image(&map, &moving, &[]);
        assert_eq!(s.on_poll(&m1, 10, 31_000).len(), 1, "direction changed");
        let m2 = elevator_image(&map, &with(moving.clone(), "speed_mps", json!(1.5)), &[]);
        assert!(s.on_poll(&m2, 10, 31_500).is_empty());
        let out = s.on_poll(&m2, 10, 32_000);
        assert_eq!(out[0].class, Class::Periodic);
        assert_eq!(out[0].fields["speed_mps"], json!(1.5));
        // JSON: seq and ts first, then the fields.
        let text = String::from_utf8(out[0].json(77)).unwrap();
        assert!(text.starts_with("{\"seq\":77,\"ts\":10,"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["direction"], "up");
    }

    #[test]
    fn fault_codes_and_outages_become_events() {
        let map = RegisterMap::load("elevator").unwrap();
        let mut s = Sampler::new(map.clone());
        let events = |out: &[Message]| -> Vec<(String, bool)> {
            out.iter()
                .filter(|m| m.stream == Stream::Event)
                .map(|m| {
                    (
                        m.fields["code"].as_str().unwrap().to_owned(),
                        m.fields["active"].as_bool().unwrap(),
                    )
                })
                .collect()
        };
        let out = s.on_poll(&elevator_image(&map, &idle(), &[30, 1]), 1, 0);
        assert_eq!(
            events(&out),
            vec![("01".to_owned(), true), ("E30".to_owned(), true)]
        );
        let e30 = out
            .iter()
            .find(|m| m.fields.get("code") == Some(&json!("E30")))
            .unwrap();
        assert_eq!(
            e30.fields["text"],
            json!("Car position abnormal (电梯位置异常)")
        );
        assert_eq!(e30.class, Class::Event);
        // Still active: nothing new. One goes: active false.
        assert!(events(&s.on_poll(&elevator_image(&map, &idle(), &[1, 30]), 1, 250)).is_empty());
        let out = s.on_poll(&elevator_image(&map, &idle(), &[0, 30]), 1, 500);
        assert_eq!(events(&out), vec![("01".to_owned(), false)]);
        // The controller stops answering: one event, however long it lasts.
        assert!(s.on_error(2, "timeout").is_some());
        assert!(s.on_error(3, "timeout").is_none());
        let out = s.on_poll(&elevator_image(&map, &idle(), &[30]), 4, 5_000);
        assert_eq!(events(&out), vec![(MODBUS_CODE.to_owned(), false)]);
    }
}
