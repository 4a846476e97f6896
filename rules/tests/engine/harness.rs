//! Readings, contexts and an engine with deterministic alarm ids. Times in
//! tests are milliseconds after `T0`; unless a test says otherwise the
//! engine receives a reading at the moment the device stamped it.

use serde_json::json;
use vigil_model::reading::{Brake, ControllerEvent, ElevatorSample, RideSample, RideState};
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeviceContext, DeviceId, EpochMs, EquipmentId, OwnerId,
    Payload, Reading, Region,
};
use vigil_rules::{RuleConfig, RuleEngine};

pub(crate) const T0: EpochMs = 1_732_300_000_000;

pub(crate) fn ctx_for(equipment: &str, category: &str) -> DeviceContext {
    let params = json!({"rated_speed_mps": 1.75, "floors": [-1, 10]});
    DeviceContext {
        binding: Binding {
            equipment_id: EquipmentId::new(equipment).unwrap(),
            category: category.into(),
            owner_id: OwnerId::new("O1").unwrap(),
            region: Region::new("440703").unwrap(),
        },
        kind: "elevator".into(),
        report_interval_s: 30,
        params: std::sync::Arc::new(params.as_object().unwrap().clone()),
        engine_slot: Default::default(),
    }
}

pub(crate) fn ctx() -> DeviceContext {
    ctx_for("EQ1", "elevator")
}

/// An idle car at floor 3, doors closed, everything healthy.
pub(crate) fn healthy() -> ElevatorSample {
    ElevatorSample::idle()
}

/// Travelling up between floors at a normal speed.
pub(crate) fn moving() -> ElevatorSample {
    ElevatorSample {
        occupied: false,
        ..ElevatorSample::moving()
    }
}

pub(crate) fn counter_ids() -> Box<dyn FnMut() -> AlarmId + Send> {
    let mut n = 0;
    Box::new(move || {
        n += 1;
        AlarmId::new(format!("A{n}")).unwrap()
    })
}

pub(crate) struct H {
    pub engine: RuleEngine,
    pub ctx: DeviceContext,
    pub device: DeviceId,
    pub seq: u64,
}

impl H {
    pub(crate) fn new() -> H {
        H::with_config(RuleConfig::default())
    }

    pub(crate) fn with_toml(text: &str) -> H {
        H::with_config(RuleConfig::from_toml(text).unwrap())
    }

    pub(crate) fn with_config(config: RuleConfig) -> H {
        H {
            engine: RuleEngine::with_id_source(config, counter_ids()),
            ctx: ctx(),
            device: DeviceId::new("EL1").unwrap(),
            seq: 0,
        }
    }

    pub(crate) fn reading(&mut self, at: EpochMs, payload: Payload) -> Reading {
        self.seq += 1;
        Reading {
            device_id: self.device.clone(),
            seq: self.seq,
            ts: T0 + at,
            received_at: T0 + at,
            payload,
            extra: None,
        }
    }

    /// A sample stamped and received at `at`.
    pub(crate) fn send(&mut self, at: EpochMs, sample: ElevatorSample) -> Vec<Alarm> {
        self.send_received(at, at, sample)
    }

    /// A sample stamped at `at`, received by the engine at `received`.
    pub(crate) fn send_received(
        &mut self,
        at: EpochMs,
        received: EpochMs,
        sample: ElevatorSample,
    ) -> Vec<Alarm> {
        let mut r = self.reading(at, Payload::Elevator(sample));
        r.received_at = T0 + received;
        self.engine.on_reading(&r, &self.ctx.clone(), T0 + received)
    }

    /// A sample with an explicit `seq` (a spooled message sent late keeps
    /// the lower seq it was given when it was taken).
    pub(crate) fn send_seq(
        &mut self,
        seq: u64,
        at: EpochMs,
        received: EpochMs,
        sample: ElevatorSample,
    ) -> Vec<Alarm> {
        let r = Reading {
            device_id: self.device.clone(),
            seq,
            ts: T0 + at,
            received_at: T0 + received,
            payload: Payload::Elevator(sample),
            extra: None,
        };
        self.engine.on_reading(&r, &self.ctx.clone(), T0 + received)
    }

    pub(crate) fn event(&mut self, at: EpochMs, code: &str, active: bool) -> Vec<Alarm> {
        let r = self.reading(
            at,
            Payload::Event(ControllerEvent {
                code: code.into(),
                text: None,
                active,
            }),
        );
        self.engine.on_reading(&r, &self.ctx.clone(), T0 + at)
    }

    pub(crate) fn ride(&mut self, at: EpochMs) -> Vec<Alarm> {
        let sample = RideSample {
            state: RideState::Stopped,
            speed_mps: 0.0,
            wind_mps: None,
            restraints_locked: true,
            vibration_mm_s: None,
            brake: Brake::Ok,
            passengers: None,
        };
        let r = self.reading(at, Payload::Ride(sample));
        self.engine.on_reading(&r, &self.ctx.clone(), T0 + at)
    }

    pub(crate) fn tick(&mut self, at: EpochMs) -> Vec<Alarm> {
        self.engine.tick(T0 + at)
    }

    /// The open alarm of `rule`, if any.
    pub(crate) fn open(&self, rule: &str) -> Option<Alarm> {
        self.engine.open_alarms().find(|a| a.rule.as_str() == rule)
    }
}

/// The changes of one rule among what the engine returned.
pub(crate) fn of(changes: &[Alarm], rule: &str) -> Vec<Alarm> {
    changes
        .iter()
        .filter(|a| a.rule.as_str() == rule)
        .cloned()
        .collect()
}

/// Exactly one change of `rule`.
pub(crate) fn one(changes: &[Alarm], rule: &str) -> Alarm {
    let mine = of(changes, rule);
    assert_eq!(
        mine.len(),
        1,
        "expected one change of {rule}, got {changes:#?}"
    );
    mine.into_iter().next().unwrap()
}

pub(crate) fn none(changes: &[Alarm], rule: &str) {
    assert!(
        of(changes, rule).is_empty(),
        "expected no change of {rule}, got {changes:#?}"
    );
}

pub(crate) fn assert_raised(a: &Alarm, rule: &str, at: EpochMs) {
    assert_eq!(a.rule.as_str(), rule);
    assert_eq!(a.state, AlarmState::Active, "{a:#?}");
    assert_eq!((a.count, a.version), (1, 1), "{a:#?}");
    assert_eq!(a.raised_at, T0 + at, "raised_at of {rule}");
    assert_eq!(a.updated_at, T0 + at);
    assert_eq!(a.cleared_at, None);
    assert_eq!(a.equipment_id.as_str(), "EQ1");
    assert_eq!(a.device_id.as_ref().map(DeviceId::as_str), Some("EL1"));
    assert_eq!(
        (a.category.as_str(), a.owner_id.as_str(), a.region.as_str()),
        ("elevator", "O1", "440703")
    );
}
