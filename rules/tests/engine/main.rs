//! The rule engine through its public API, with an injected clock.

mod harness;

mod controller;
mod frequent;
mod lifecycle;
mod offline;
mod sample_rules;
mod time;
