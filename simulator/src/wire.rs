//! protocol.md JSON for what the simulated devices publish.

use serde::Serialize;
use vigil_model::reading::ElevatorSample;
use vigil_model::{EpochMs, Payload, Stream};

/// An elevator sample on the wire; optional fields are left out, not null.
#[derive(Serialize)]
struct ElevatorWire<'a> {
    seq: u64,
    ts: EpochMs,
    floor: i16,
    direction: &'a str,
    speed_mps: f32,
    door: &'a str,
    leveled: bool,
    occupied: bool,
    mode: &'a str,
    safety_circuit: bool,
    door_lock: bool,
    alarm_button: bool,
    power: &'a str,
    limit: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_pct: Option<f32>,
}

#[derive(Serialize)]
struct EventWire<'a> {
    seq: u64,
    ts: EpochMs,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    active: bool,
}

#[derive(Serialize)]
struct RideWire<'a> {
    seq: u64,
    ts: EpochMs,
    state: &'a str,
    speed_mps: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    wind_mps: Option<f32>,
    restraints_locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    vibration_mm_s: Option<f32>,
    brake: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    passengers: Option<u16>,
}

#[derive(Serialize)]
struct VideoWire<'a> {
    seq: u64,
    ts: EpochMs,
    camera_id: &'a str,
    event: &'a str,
    confidence: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a str>,
}

#[derive(Serialize)]
struct FillingWire<'a> {
    seq: u64,
    ts: EpochMs,
    cylinder_code: &'a str,
    operator_id: &'a str,
    medium: &'a str,
    tare_kg: f32,
    net_kg: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pressure_mpa: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temp_c: Option<f32>,
    started_ms: EpochMs,
    result: &'a str,
}

/// The payload bytes for `seq`; the topic suffix is `payload.stream()`.
pub(crate) fn encode(
    seq: u64,
    ts: EpochMs,
    payload: &Payload,
) -> Result<Vec<u8>, serde_json::Error> {
    match payload {
        Payload::Elevator(s) => serde_json::to_vec(&elevator(seq, ts, s)),
        Payload::Event(e) => serde_json::to_vec(&EventWire {
            seq,
            ts,
            code: &e.code,
            text: e.text.as_deref(),
            active: e.active,
        }),
        Payload::Ride(r) => serde_json::to_vec(&RideWire {
            seq,
            ts,
            state: r.state.as_str(),
            speed_mps: r.speed_mps,
            wind_mps: r.wind_mps,
            restraints_locked: r.restraints_locked,
            vibration_mm_s: r.vibration_mm_s,
            brake: r.brake.as_str(),
            passengers: r.passengers,
        }),
        Payload::Video(v) => serde_json::to_vec(&VideoWire {
            seq,
            ts,
            camera_id: &v.camera_id,
            event: v.event.as_str(),
            confidence: v.confidence,
            snapshot: v.snapshot.as_deref(),
        }),
        Payload::Filling(f) => serde_json::to_vec(&FillingWire {
            seq,
            ts,
            cylinder_code: &f.cylinder_code,
            operator_id: &f.operator_id,
            medium: &f.medium,
            tare_kg: f.tare_kg,
            net_kg: f.net_kg,
            pressure_mpa: f.pressure_mpa,
            temp_c: f.temp_c,
            started_ms: f.started_ms,
            result: f.result.as_str(),
        }),
    }
}

fn elevator(seq: u64, ts: EpochMs, s: &ElevatorSample) -> ElevatorWire<'static> {
    ElevatorWire {
        seq,
        ts,
        floor: s.floor,
        direction: s.direction.as_str(),
        speed_mps: s.speed_mps,
        door: s.door.as_str(),
        leveled: s.leveled,
        occupied: s.occupied,
        mode: s.mode.as_str(),
        safety_circuit: s.safety_circuit,
        door_lock: s.door_lock,
        alarm_button: s.alarm_button,
        power: s.power.as_str(),
        limit: s.limit.as_str(),
        run_count: s.run_count,
        load_pct: s.load_pct,
    }
}

/// `/tenants/{device_id}/v1/{stream}`.
pub(crate) fn topic(device_id: &str, stream: Stream) -> String {
    format!("/tenants/{device_id}/v1/{}", stream.as_str())
}

pub(crate) fn ack_topic(device_id: &str) -> String {
    format!("/tenants/{device_id}/v1/ack")
}

/// The `seq` of an ack payload `{"seq": N}`.
pub(crate) fn parse_ack(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Ack {
        seq: u64,
    }
    serde_json::from_slice::<Ack>(payload).ok().map(|a| a.seq)
}

#[cfg(test)]
mod tests {
    use vigil_model::DeviceId;
    use vigil_model::codec::decode;
    use vigil_model::reading::*;

    use super::*;

    const TS: EpochMs = 1_732_300_000_000;

    #[test]
    fn samples_decode_back_to_themselves() {
        let sample = ElevatorSample {
            floor: -2,
            direction: Direction::Up,
            speed_mps: 1.23,
            leveled: false,
            occupied: true,
            run_count: Some(10_234),
            load_pct: Some(35.0),
            ..ElevatorSample::idle()
        };
        let dev = DeviceId::new("EL000001").unwrap();
        for p in [
            Payload::Elevator(sample.clone()),
            Payload::Elevator(ElevatorSample {
                run_count: None,
                load_pct: None,
                ..sample
            }),
            Payload::Event(ControllerEvent {
                code: "E30".into(),
                text: Some("x".into()),
                active: true,
            }),
            Payload::Event(ControllerEvent {
                code: "E30".into(),
                text: None,
                active: false,
            }),
            Payload::Ride(RideSample {
                state: RideState::Running,
                speed_mps: 21.5,
                wind_mps: Some(4.2),
                restraints_locked: true,
                vibration_mm_s: None,
                brake: Brake::Ok,
                passengers: Some(0),
            }),
            Payload::Video(VideoEvent {
                camera_id: "car".into(),
                event: VideoKind::ElectricBike,
                confidence: 0.91,
                snapshot: None,
            }),
            Payload::Filling(FillingRecord {
                cylinder_code: "LPG44070301".into(),
                operator_id: "P1".into(),
                medium: "LPG".into(),
                tare_kg: 16.5,
                net_kg: 14.2,
                pressure_mpa: None,
                temp_c: None,
                started_ms: TS - 180_000,
                result: FillResult::Ok,
            }),
        ] {
            let bytes = encode(42, TS, &p).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("null"), "{text}");
            let r = decode(dev.clone(), p.stream(), &bytes, TS).unwrap();
            assert_eq!((r.seq, r.ts, r.extra.as_deref()), (42, TS, None));
            assert_eq!(r.payload, p);
        }
        assert!(
            String::from_utf8(encode(1, TS, &Payload::Elevator(sample_with_speed(1.23))).unwrap())
                .unwrap()
                .contains("\"speed_mps\":1.23")
        );
    }

    fn sample_with_speed(v: f32) -> ElevatorSample {
        ElevatorSample {
            floor: 1,
            direction: Direction::Up,
            speed_mps: v,
            leveled: false,
            ..ElevatorSample::idle()
        }
    }

    #[test]
    fn acks_parse() {
        assert_eq!(parse_ack(br#"{"seq": 17}"#), Some(17));
        assert_eq!(parse_ack(br#"{"seq": -1}"#), None);
        assert_eq!(parse_ack(b"garbage"), None);
        assert_eq!(topic("EL1", Stream::Elevator), "/tenants/EL1/v1/elevator");
        assert_eq!(ack_topic("EL1"), "/tenants/EL1/v1/ack");
    }
}
