//! Records for unit tests.

use serde_json::json;
use vigil_model::reading::*;
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeadLetter, DeviceId, EquipmentId, OwnerId, Region,
    RejectReason, RuleId, Severity,
};

use crate::{Record, StoredReading};

pub(crate) fn binding() -> Binding {
    Binding {
        equipment_id: EquipmentId::new("EQ1").unwrap(),
        category: "elevator".into(),
        owner_id: OwnerId::new("O1").unwrap(),
        region: Region::new("440703").unwrap(),
    }
}

pub(crate) fn elevator(device: &str, seq: u64) -> Record {
    reading(
        device,
        seq,
        Payload::Elevator(ElevatorSample {
            run_count: Some(7),
            ..ElevatorSample::moving()
        }),
    )
}

pub(crate) fn reading(device: &str, seq: u64, payload: Payload) -> Record {
    Record::Reading(StoredReading {
        reading: Reading {
            device_id: DeviceId::new(device).unwrap(),
            seq,
            ts: 1_732_300_000_000 + seq as i64,
            received_at: 1_732_300_000_100 + seq as i64,
            payload,
            extra: Some(r#"{"fw":"1.2"}"#.into()),
        },
        binding: binding(),
    })
}

pub(crate) fn alarm(id: &str, version: u32, state: AlarmState) -> Alarm {
    Alarm {
        alarm_id: AlarmId::new(id).unwrap(),
        rule: RuleId::new("elevator.trapped").unwrap(),
        severity: Severity::Critical,
        state,
        equipment_id: EquipmentId::new("EQ1").unwrap(),
        device_id: Some(DeviceId::new("EL1").unwrap()),
        category: "elevator".into(),
        owner_id: OwnerId::new("O1").unwrap(),
        region: Region::new("440703").unwrap(),
        raised_at: 1_732_300_000_000,
        updated_at: 1_732_300_000_000 + version as i64,
        cleared_at: None,
        count: version,
        details: json!({"floor": 3, "stopped_for_s": 62}),
        version,
        acknowledged_at: None,
        acknowledged_by: None,
        note: None,
    }
}

/// One record of every kind, readings with sequence numbers from `seq`.
pub(crate) fn one_of_each(seq: u64) -> Vec<Record> {
    vec![
        elevator("EL1", seq),
        reading(
            "RD1",
            seq + 1,
            Payload::Ride(RideSample {
                state: RideState::Running,
                speed_mps: 3.0,
                wind_mps: Some(4.5),
                restraints_locked: true,
                vibration_mm_s: None,
                brake: Brake::Ok,
                passengers: Some(12),
            }),
        ),
        reading(
            "CAM1",
            seq + 2,
            Payload::Video(VideoEvent {
                camera_id: "c1".into(),
                event: VideoKind::ElectricBike,
                confidence: 0.9,
                snapshot: None,
            }),
        ),
        reading(
            "FS1",
            seq + 3,
            Payload::Filling(FillingRecord {
                cylinder_code: "CY1".into(),
                operator_id: "OP1".into(),
                medium: "LPG".into(),
                tare_kg: 15.0,
                net_kg: 14.5,
                pressure_mpa: None,
                temp_c: Some(21.0),
                started_ms: 1_732_299_000_000,
                result: FillResult::Ok,
            }),
        ),
        reading(
            "EL1",
            seq + 4,
            Payload::Event(ControllerEvent {
                code: "E42".into(),
                text: Some("door fault".into()),
                active: true,
            }),
        ),
        Record::Alarm(alarm("a1", 1, AlarmState::Active)),
        Record::DeadLetter(DeadLetter {
            received_at: 1_732_300_000_000,
            topic: "/tenants/EL9/v1/elevator".into(),
            device_id: Some("EL9".into()),
            reason: RejectReason::MalformedJson,
            detail: "expected value at line 1".into(),
            payload: vec![0xff, b'{', b'x'],
            payload_size: 3,
            seq: None,
        }),
    ]
}
