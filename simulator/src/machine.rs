//! One simulated piece of equipment of any kind, behind one interface: the
//! MQTT runner publishes what it emits, and `vigil-edge emulate` serves its
//! state as Modbus registers, so both are driven by the same models.

use vigil_model::reading::{ControllerEvent, ElevatorSample, RideSample};
use vigil_model::{EpochMs, Payload};

use crate::camera::{Camera, CameraSpec};
use crate::elevator::{Elevator, ElevatorSpec, FaultKind};
use crate::ride::{Ride, RideSpec};
use crate::scale::{Scale, ScaleSpec};

/// One message a device publishes, with its device time.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub ts: EpochMs,
    pub payload: Payload,
}

/// A fault starting or ending, for the runner's log and counters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultEdge {
    pub ts: EpochMs,
    pub kind: FaultKind,
    pub started: bool,
}

/// The kind of equipment (and so of device) a machine simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineKind {
    Elevator,
    /// A large amusement ride or a passenger ropeway (`ride` samples).
    Ride,
    /// A video-analytics box.
    Camera,
    /// A gas-cylinder filling scale.
    Scale,
}

impl MachineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::Elevator => "elevator",
            MachineKind::Ride => "ride",
            MachineKind::Camera => "camera",
            MachineKind::Scale => "scale",
        }
    }
}

/// What a machine is built from; the fleet generator makes these.
#[derive(Debug, Clone)]
pub(crate) enum MachineSpec {
    Elevator(ElevatorSpec),
    Ride(RideSpec),
    Camera(CameraSpec),
    Scale(ScaleSpec),
}

impl MachineSpec {
    pub(crate) fn device_id(&self) -> &str {
        match self {
            MachineSpec::Elevator(s) => &s.device_id,
            MachineSpec::Ride(s) => &s.device_id,
            MachineSpec::Camera(s) => &s.device_id,
            MachineSpec::Scale(s) => &s.device_id,
        }
    }

    pub(crate) fn fault(&self) -> Option<(FaultKind, EpochMs)> {
        let plan = match self {
            MachineSpec::Elevator(s) => &s.fault,
            MachineSpec::Ride(s) => &s.fault,
            MachineSpec::Camera(s) => &s.fault,
            MachineSpec::Scale(s) => &s.fault,
        };
        plan.as_ref().map(|p| (p.kind, p.after_ms))
    }
}

enum Model {
    Elevator(Box<Elevator>),
    Ride(Box<Ride>),
    Camera(Box<Camera>),
    Scale(Box<Scale>),
}

/// One simulated device: a pure state machine on an injected clock.
pub struct Machine {
    device_id: String,
    model: Model,
    /// Controller codes active right now (from the events it emitted).
    active_codes: Vec<ControllerEvent>,
}

impl Machine {
    pub(crate) fn new(spec: &MachineSpec) -> Machine {
        let model = match spec {
            MachineSpec::Elevator(s) => Model::Elevator(Box::new(Elevator::new(s))),
            MachineSpec::Ride(s) => Model::Ride(Box::new(Ride::new(s))),
            MachineSpec::Camera(s) => Model::Camera(Box::new(Camera::new(s))),
            MachineSpec::Scale(s) => Model::Scale(Box::new(Scale::new(s))),
        };
        Machine {
            device_id: spec.device_id().to_owned(),
            model,
            active_codes: Vec::new(),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn kind(&self) -> MachineKind {
        match self.model {
            Model::Elevator(_) => MachineKind::Elevator,
            Model::Ride(_) => MachineKind::Ride,
            Model::Camera(_) => MachineKind::Camera,
            Model::Scale(_) => MachineKind::Scale,
        }
    }

    /// Advances to `now` (in 250 ms ticks) and returns what the device
    /// published meanwhile, oldest first.
    pub fn step(&mut self, now: EpochMs) -> Vec<Emitted> {
        let out = match &mut self.model {
            Model::Elevator(m) => m.step(now),
            Model::Ride(m) => m.step(now),
            Model::Camera(m) => m.step(now),
            Model::Scale(m) => m.step(now),
        };
        for e in &out {
            if let Payload::Event(ev) = &e.payload {
                self.active_codes.retain(|c| c.code != ev.code);
                if ev.active {
                    self.active_codes.push(ev.clone());
                }
            }
        }
        out
    }

    pub(crate) fn take_fault_edges(&mut self) -> Vec<FaultEdge> {
        match &mut self.model {
            Model::Elevator(m) => m.take_fault_edges(),
            Model::Ride(m) => m.take_fault_edges(),
            Model::Camera(m) => m.take_fault_edges(),
            Model::Scale(m) => m.take_fault_edges(),
        }
    }

    /// The elevator controller's state now (elevators only).
    pub fn elevator_state(&self) -> Option<ElevatorSample> {
        match &self.model {
            Model::Elevator(m) => Some(m.observe()),
            _ => None,
        }
    }

    /// The ride controller's state now (rides and ropeways only).
    pub fn ride_state(&self) -> Option<RideSample> {
        match &self.model {
            Model::Ride(m) => Some(m.observe()),
            _ => None,
        }
    }

    /// A scale with a cylinder on it (scales only; false otherwise).
    pub fn filling(&self) -> bool {
        match &self.model {
            Model::Scale(m) => m.filling(),
            _ => false,
        }
    }

    /// Fault codes the controller reports as active right now.
    pub fn active_codes(&self) -> &[ControllerEvent] {
        &self.active_codes
    }
}
