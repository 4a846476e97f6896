//! The end-to-end suite again, with the engine on PostgreSQL (`--store
//! postgres://…`): the same modules, the harness gives every data dir its
//! own schema. The server is `VIGIL_TEST_DATABASE_URL` or a throw-away
//! cluster started by the storage tests' harness.

#[path = "../../storage/tests/postgres/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "harness.rs"]
mod harness;

pub fn store_url() -> Option<String> {
    Some(cluster::cluster().url.clone())
}

#[path = "bad_input.rs"]
mod bad_input;
#[path = "burst.rs"]
mod burst;
#[path = "claims.rs"]
mod claims;
#[path = "crash.rs"]
mod crash;
#[path = "dashboards.rs"]
mod dashboards;
#[path = "dedup.rs"]
mod dedup;
#[path = "elevator_rules.rs"]
mod elevator_rules;
#[path = "filling.rs"]
mod filling;
#[path = "fleet.rs"]
mod fleet;
#[path = "hostile_sql.rs"]
mod hostile_sql;
#[path = "people.rs"]
mod people;
#[path = "replay.rs"]
mod replay;
#[path = "risk.rs"]
mod risk;
#[path = "roles.rs"]
mod roles;
#[path = "rule_files.rs"]
mod rule_files;
#[path = "schedule.rs"]
mod schedule;
#[path = "streams.rs"]
mod streams;
