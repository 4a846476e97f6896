//! Integration tests of the PostgreSQL backend against a real server (see
//! `cluster`): migrations, the COPY writer, acks after commit, an outage,
//! analyst scoping, SQL and recovery.
//!
//! Every test holds `cluster::SERVER` for reading across its awaits on
//! purpose: the outage test takes it for writing to stop the server while
//! no other test is using it. Each test runs on its own runtime.
#![allow(clippy::await_holding_lock)]

mod cluster;
#[path = "../fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
#[path = "../seq_history.rs"]
mod seq_history;
mod support;
#[path = "../typed_reads.rs"]
mod typed_reads;

mod migrations;
mod outage;
mod sql;
mod writer;
