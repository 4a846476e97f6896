//! The rule engine through its public API, with an injected clock.

mod harness;

mod anomaly;
mod controller;
mod defined;
mod escalation;
mod filling;
mod frequent;
mod fuzz;
mod late;
mod lifecycle;
mod offline;
mod rides;
mod sample_rules;
mod schedule;
mod time;
mod video;
