//! Vigil's simulator: fleets of realistic elevators, amusement rides and
//! ropeways, camera boxes and gas-cylinder filling scales publishing over
//! MQTT, with injected faults, and a paced load generator for benchmarks.
//!
//! [`Fleet::generate`] makes a city's registry (owners, maintainers,
//! equipment, stations, operators, cylinders, devices: [`Fleet::import_doc`])
//! and one simulated [`Machine`] per device; [`run`] connects every device
//! to the broker as its own MQTT client and publishes protocol.md's
//! `elevator`, `ride`, `video`, `filling` and `event` messages until told to
//! stop, keeping each message until the engine's ack covers it. The same
//! machines drive `vigil-edge emulate`, which serves their state as Modbus
//! registers ([`Fleet::machines`]). [`load`] drives N clients at a fixed
//! rate and reports publish→ack latency.
//!
//! ```text
//!  FleetConfig ─▶ fleet ─▶ import_doc() ─▶ POST /api/v1/registry/import ─▶ secrets
//!                   │
//!                   ▼ per device
//!  elevator (pure: step(now) → samples) ─▶ wire (JSON) ─▶ buffer (unacked, cursor)
//!                                                           │  ▲
//!                          run: rumqttc client ◀────────────┘  └── /tenants/{id}/v1/ack
//!                               └─▶ /tenants/{id}/v1/elevator, …/event (QoS 1)
//! ```
//!
//! - [`fleet`](Fleet): registry records and per-car parameters, from a seed.
//! - [`Machine`]: one device's model behind one interface: `elevator` (the
//!   car and its injected faults, [`FaultKind`]), `ride` (rides and
//!   ropeways: cycles, restraints, wind), `camera` (incidents with
//!   confidences), `scale` (filling records).
//! - `buffer`: unacked messages and re-sending from the watermark.
//! - `wire`: samples and events as protocol.md JSON.
//! - `run`, `load`: the MQTT clients.
//! - `error`: [`SimError`].

mod buffer;
mod camera;
mod elevator;
mod error;
mod fleet;
mod load;
mod machine;
mod ride;
mod run;
mod scale;
pub mod scenario;
mod wire;

pub use elevator::FaultKind;
pub use error::SimError;
pub use fleet::{Fleet, FleetConfig, PlannedFault};
pub use load::{AckMode, LoadConfig, LoadErrors, LoadReport, load};
pub use machine::{Emitted, Machine, MachineKind};
pub use run::{SimSnapshot, SimStats, run};
