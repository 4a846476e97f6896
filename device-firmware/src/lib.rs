//! Vigil's edge gateway (`vigil-edge`): it sits beside a controller (an
//! elevator controller, a ride PLC, a filling scale), polls it over Modbus
//! TCP or RTU, turns registers into protocol.md messages, keeps each one in
//! an on-disk spool until the engine's ack covers it, and publishes it over
//! MQTT (mutual TLS, or id + secret for development).
//!
//! ```text
//!  controller ──Modbus──▶ poller (map: registers → fields) ─▶ sampler (cadence, faults → events)
//!                                                                  │ append (seq)
//!                                                                  ▼
//!  engine ◀──MQTT QoS 1── uplink ◀── durable records ◀── spool (segments, fsync'd in groups)
//!     └── /tenants/{id}/v1/ack {"seq": N} ──▶ spool releases ≤ N
//! ```
//!
//! - [`map`]: register maps (TOML), checked with file:line:column errors.
//! - [`config`]: the gateway's own TOML file.
//! - [`spool`]: the crash-safe, bounded store and forward log.
//! - `modbus`, `sampler`, `uplink`, [`gateway`]: the running parts;
//!   `tls`: the uplink's mutual-TLS client configuration.
//! - `error`: the gateway's error type.
//! - [`emulate`]: serves the simulator's machines over Modbus TCP through
//!   the same maps, so the gateway can be tried (and tested) without hardware.

pub mod config;
pub mod emulate;
mod error;
pub mod gateway;
pub mod map;
mod modbus;
mod sampler;
pub mod spool;
mod tls;
mod uplink;

pub use error::EdgeError;
