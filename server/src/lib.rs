//! `vigil-server`: the runtime that wires the stages together. Device
//! messages come in over MQTT (`vigil-ingest`), go through the rule shards
//! (`vigil-rules`), and land with their alarms in the store
//! (`vigil-storage`); alarms fan out to the open-alarm board, the live feed,
//! MQTT alarm topics and webhooks; the registry (`vigil-registry`) decides
//! who and what is known; HTTP serves the API, SQL and the console.
//!
//! - `engine`: `Engine::start` in named steps, the shard and hub tasks,
//!   ordered shutdown; `state`: what the API and the tasks share.
//! - `api`: the HTTP router; `sql`: people's SQL and its rendering;
//!   `replay`: rules over stored readings; `fleet`, `risk`: fleet pages and
//!   risk grading; `console`: the browser console; `certs`: device and feed
//!   certificates.
//! - `alarms`: the open-alarm board and live feed; `delivery`, `webhooks`:
//!   MQTT alarm topics and webhooks.
//! - `schedule`, `filling`: registry-time checks and a filling record's
//!   registry facts; `registry_tables`: the registry's SQL tables kept fresh.
//! - `config`: the plain-data `ServerConfig` (the `vigil` binary loads it);
//!   `metrics`, `data_dir`: Prometheus metrics, the data directory.
//! - `fuzz_sql` (tests only): `POST /api/v1/sql` fuzzed through a running
//!   engine (hostile bodies and headers, grammar-generated SQL).
//!
//! The public API is small: `ServerConfig` and its sections (plain data),
//! `Engine` (`start`, its addresses, `shutdown`), the HTTP `router`,
//! `load_rules` and `parse_listen_addr` for the CLI, and `AppState`, an
//! opaque read-only window (accessor methods, no public fields) for what
//! the demo and the bench watch.

mod alarms;
mod api;
mod certs;
mod config;
mod console;
mod data_dir;
mod delivery;
mod engine;
mod filling;
mod fleet;
#[cfg(test)]
mod fuzz_sql;
mod metrics;
mod registry_tables;
mod replay;
mod risk;
mod schedule;
mod sql;
mod state;
mod webhooks;

pub use api::router;
pub use config::{
    DEFAULT_HTTP_ADDR, DEFAULT_URL, DeliveryConfig, EmbeddedTuning, EngineConfig, IngestTuning,
    PostgresTuning, ServerConfig, TlsTuning, TokenConfig, parse_listen_addr,
};
pub use console::ConsoleConfig;
pub use engine::{Clock, Engine, system_clock};
pub use risk::RiskConfig;
pub use sql::ARROW_STREAM;
pub use state::{AppState, load_rules};
pub use webhooks::WebhookConfig;
