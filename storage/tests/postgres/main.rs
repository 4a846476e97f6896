//! Integration tests of the PostgreSQL backend against a real server (see
//! `cluster`): migrations, the COPY writer, acks after commit, an outage,
//! analyst scoping, SQL and recovery.

mod cluster;
#[path = "../fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
mod support;

mod migrations;
mod outage;
mod sql;
mod writer;
