//! Vigil's simulator: fleets of realistic elevators publishing over MQTT,
//! with injected faults, and a paced load generator for benchmarks.
//!
//! [`Fleet::generate`] makes a city's registry (owners, maintainers,
//! equipment, devices: [`Fleet::import_doc`]) and one simulated car per
//! device; [`run`] connects every car to the broker as its own MQTT client
//! and publishes protocol.md's `elevator` and `event` messages until told to
//! stop, keeping each message until the engine's ack covers it. [`load`]
//! drives N clients at a fixed rate and reports publish→ack latency.
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
//! - `elevator`: the car's state machine and injected faults ([`FaultKind`]).
//! - `buffer`: unacked messages and re-sending from the watermark.
//! - `run`, `load`: the MQTT clients.

mod buffer;
mod elevator;
mod error;
mod fleet;
mod load;
mod run;
mod wire;

pub use elevator::FaultKind;
pub use error::SimError;
pub use fleet::{Fleet, FleetConfig, PlannedFault};
pub use load::{LoadConfig, LoadReport, load};
pub use run::{SimSnapshot, SimStats, run};
