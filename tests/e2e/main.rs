//! End-to-end tests of the real `vigil` binary: registry import over HTTP,
//! devices over MQTT (rumqttc on TCP; Mosquitto's clients on TCP and TLS), alarms over HTTP and SSE, readings
//! over SQL, crashes with SIGKILL.

mod harness;

/// This target runs on the embedded store (tests/e2e/postgres.rs: PostgreSQL).
pub fn store_url() -> Option<String> {
    None
}

mod bad_input;
mod burst;
mod crash;
mod delivery;
mod demo;
mod elevator_rules;
mod filling;
mod replay;
mod risk;
mod roles;
mod rule_files;
mod schedule;
mod security;
mod streams;
