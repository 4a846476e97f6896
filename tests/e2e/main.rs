//! End-to-end tests of the real `vigil` binary: registry import over HTTP,
//! devices over MQTT (rumqttc on TCP; Mosquitto's clients on TCP and TLS), alarms over HTTP and SSE, readings
//! over SQL, crashes with SIGKILL.

// For its port picker; this target starts no PostgreSQL.
#[path = "../../storage/tests/postgres/cluster.rs"]
#[allow(dead_code)]
mod cluster;
mod harness;

/// This target runs on the embedded store (tests/e2e/postgres.rs: PostgreSQL).
pub fn store_url() -> Option<String> {
    None
}

mod bad_input;
mod bench;
mod bench_compare;
mod bench_registry;
mod browser;
mod burst;
mod console;
mod crash;
mod dedup;
mod delivery;
mod demo;
mod edge;
mod elevator_rules;
mod filling;
mod fleet;
mod hostile_sql;
mod load;
mod memory;
mod people;
mod replay;
mod risk;
mod roles;
mod rule_files;
mod scenarios;
mod schedule;
mod security;
mod streams;
